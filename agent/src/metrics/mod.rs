//! Host metrics: sampled with sysinfo, aggregated per flush into Values/Counts datums,
//! sent with PutMetricData, spooled on disk through outages, with the heartbeat.
//! **Invariant:** metrics and logs share no queue.

pub mod cost;
pub mod run;
pub mod sample;
pub mod series;
pub mod sink;
pub mod spool;
