//! klaxon-aggregator: evaluates rule files against CloudWatch and alerts on-call people
//! through SNS; also the `klaxon` command line for operators and auditors.
//!
//! # Layout
//! - [`config`]: the aggregator's configuration file.
//! - [`rules`]: rule files, their model, `klaxon rules check` and `klaxon rules test`.
//! - [`engine`]: series states (pending, firing, resolved), pure.
//! - [`source`]: CloudWatch metrics and logs read for rules; [`daemon`]: one evaluation
//!   cycle and the state kept between cycles; [`backtest`]: replays over history.
//! - [`diagnostic`], [`logging`], [`state_file`]: the agent's files, compiled here too.

// What auditors run against shipped logs: query and verify.
pub mod audit;
pub mod backtest;
pub mod config;
pub mod daemon;
// The agent's diagnostics, compiled here too: one definition of FILE:LINE:COL for both
// daemons, without a crate of its own for thirty lines.
#[path = "../../agent/src/diagnostic.rs"]
pub mod diagnostic;
pub mod engine;
// Notifications: routes, grouping, silences, rate limits, the outbox and SNS.
pub mod notify;
// The agent's tracing set-up, compiled here too, like `diagnostic`.
#[path = "../../agent/src/logging.rs"]
pub mod logging;
// The agent's manifest record format, compiled here to check what the agent wrote.
#[path = "../../agent/src/manifest_record.rs"]
pub mod manifest_record;
pub mod rules;
// The agent's systemd notifications, compiled here too, like `logging`.
#[path = "../../agent/src/service_manager.rs"]
pub mod service_manager;
pub mod source;
// The agent's atomic state-file writer, compiled here too.
#[path = "../../agent/src/state_file.rs"]
pub mod state_file;
