//! klaxon-agent: tails log files and samples host metrics on a web server, and ships
//! them to CloudWatch Logs and CloudWatch metrics without losing a line.
//!
//! # Layout
//! - [`config`]: the configuration file and its checks.
//! - [`tail`]: files to events (framing, rotation, checkpoint positions). No AWS here.
//! - [`diagnostic`]: problems located as FILE:LINE:COL.

pub mod config;
pub mod diagnostic;
pub mod tail;
