//! klaxon-aggregator: evaluates rule files against CloudWatch and alerts on-call people
//! through SNS; also the `klaxon` command line for operators and auditors.
//!
//! # Layout
//! - [`config`]: the aggregator's configuration file.
//! - [`rules`]: rule files, their model and `klaxon rules check`.
//! - [`engine`]: series states (pending, firing, resolved), pure.
//! - [`diagnostic`]: problems located as FILE:LINE:COL.

pub mod backtest;
pub mod config;
pub mod daemon;
// The agent's diagnostics, compiled here too: one definition of FILE:LINE:COL for both
// daemons, without a crate of its own for thirty lines.
#[path = "../../agent/src/diagnostic.rs"]
pub mod diagnostic;
pub mod engine;
// The agent's tracing set-up, compiled here too, like `diagnostic`.
#[path = "../../agent/src/logging.rs"]
pub mod logging;
pub mod rules;
pub mod source;
