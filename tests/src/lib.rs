//! The local AWS stack Klaxon's end-to-end tests and demo run on, and helpers for them.
//!
//! [`LocalStack`] starts moto (from PyPI, in a virtualenv this crate builds on first
//! use) behind a front that speaks the protocols of the current Rust SDK, enforces the
//! AWS limits moto does not, and injects faults on request. Nothing here talks to
//! anything but loopback.
//!
//! # Layout
//! - `stack/klaxon_stack.py`: the front and moto, one Python process per stack.
//! - [`python_env`]: builds the pinned virtualenv once per machine; [`debian`]: Debian
//!   programs the tests use as oracles (logrotate), unpacked into the same cache.
//! - [`stack`]: the handle a test holds, with fault injection and request statistics.
//! - [`agent`]: runs the real `klaxon-agent` binary and reads back what it shipped.
//! - [`metrics`]: reads CloudWatch metrics back for assertions.
//! - [`inbox`]: an SNS topic with a subscribed SQS queue, where alerts are read back.
//! - `tests/e2e/`: the end-to-end tests, one binary, a module per theme.

pub mod agent;
pub mod cache;
pub mod cargo_tools;
pub mod debian;
pub mod inbox;
pub mod metrics;
pub mod python_env;
pub mod stack;

pub use stack::{FaultKind, LocalStack, Service, Stats, Times};

/// Why the local stack could not be started or driven.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// Building the Python environment failed (no network to PyPI, no python3 …).
    #[error("`{command}` failed:\n{stderr}")]
    Setup { command: String, stderr: String },
    /// A prerequisite the tests cannot prepare themselves is missing.
    #[error("{what} is missing; install it with `{install}`")]
    Missing { what: String, install: String },
    /// The stack process ended; its log says why.
    #[error("the local AWS stack exited:\n{log}")]
    Exited { log: String },
    /// The stack answered something unexpected, or refused a command.
    #[error("local AWS stack: {0}")]
    Protocol(String),
}
