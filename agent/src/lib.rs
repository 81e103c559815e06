//! klaxon-agent: tails log files and samples host metrics on a web server, and ships
//! them to CloudWatch Logs and CloudWatch metrics without losing a line.
//!
//! # Layout
//! - [`config`]: the configuration file and its checks.
//! - [`tail`]: files to events (framing, rotation, checkpoints). No AWS SDK here.
//! - [`ship`]: events to CloudWatch Logs (batches, retries, acknowledgements). No files here.
//! - [`metrics`]: host metrics to CloudWatch (sampling, Values/Counts, spool, heartbeat).
//! - [`budget`]: the memory budget between the two; [`stats`]: the agent's counters.
//! - [`pipeline`]: wires them together and runs until told to stop.
//! - State files, diagnostics, logging, systemd and the manifest record format are in
//!   `klaxon-common`, shared with the aggregator.
//! - [`instance`]: the instance id (override, IMDSv2, hostname).
//! - [`cli`]: the command line; [`service`]: the daemon (signals, reload, systemd);
//!   [`commands`]: `--check` and `--cost`; [`status`]: `--status`.
//! - [`destination`]: a log stream in a group, which the tail server routes to.

pub mod budget;
pub mod cli;
pub mod commands;
pub mod config;
pub mod destination;
pub mod instance;
pub mod metrics;
pub mod pipeline;
pub mod service;
pub mod ship;
pub mod stats;
pub mod status;
pub mod tail;
pub mod warn_limit;

#[cfg(test)]
mod model_tests;
