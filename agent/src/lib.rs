//! klaxon-agent: tails log files and samples host metrics on a web server, and ships
//! them to CloudWatch Logs and CloudWatch metrics without losing a line.
//!
//! # Layout
//! - [`config`]: the configuration file and its checks; [`diagnostic`]: FILE:LINE:COL.
//! - [`tail`]: files to events (framing, rotation, checkpoints). No AWS SDK here.
//! - [`ship`]: events to CloudWatch Logs (batches, retries, acknowledgements). No files here.
//! - [`metrics`]: host metrics to CloudWatch (sampling, Values/Counts, spool, heartbeat).
//! - [`state_file`]: atomic, durable state files, and reading them back (shared with the
//!   aggregator).
//! - [`manifest_record`]: what a log manifest record holds (shared with `klaxon logs verify`).
//! - [`budget`]: the memory budget between the two; [`stats`]: the agent's counters.
//! - [`pipeline`]: wires them together and runs until told to stop.
//! - [`logging`]: tracing set-up shared with the aggregator; [`service_manager`]: systemd's
//!   READY/WATCHDOG notifications, shared too.
//! - [`instance`]: the instance id (override, IMDSv2, hostname); [`status`]: `--status`.

pub mod budget;
pub mod config;
pub mod diagnostic;
pub mod instance;
pub mod logging;
pub mod manifest_record;
pub mod metrics;
pub mod pipeline;
pub mod service_manager;
pub mod ship;
pub mod state_file;
pub mod stats;
pub mod status;
pub mod tail;
pub mod warn_limit;
