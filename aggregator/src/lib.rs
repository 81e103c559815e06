//! klaxon-aggregator: evaluates rule files against CloudWatch and alerts on-call people
//! through SNS; also the `klaxon` command line for operators and auditors.
//!
//! # Layout
//! - [`config`]: the aggregator's configuration file.
//! - [`rules`]: rule files, their model and `klaxon rules check`; [`rule_tests`]: `klaxon
//!   rules test`, rule unit tests run through the engine.
//! - [`engine`]: series states (pending, firing, resolved), pure.
//! - [`source`]: CloudWatch metrics and logs read for rules; [`daemon`]: one evaluation
//!   cycle and the state kept between cycles; [`backtest`]: replays over history.
//! - [`service`]: the daemon's process (signals, reloads, heartbeat, `--check`).
//! - [`notify`]: routes, grouping, silences, rate limits, the outbox and SNS.
//! - [`audit`]: what auditors run against shipped logs: query and verify.
//! - State files, diagnostics, logging, systemd and the manifest record format are in
//!   `klaxon-common`, shared with the agent.

// What auditors run against shipped logs: query and verify.
pub mod audit;
pub mod backtest;
pub mod config;
pub mod daemon;
pub mod engine;
// Notifications: routes, grouping, silences, rate limits, the outbox and SNS.
pub mod notify;
pub mod rule_tests;
pub mod rules;
pub mod service;
pub mod source;
