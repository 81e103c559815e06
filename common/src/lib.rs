//! klaxon-common: what the agent and the aggregator share, so each is written once.
//!
//! # Layout
//! - [`state_file`]: atomic, durable state files, and reading them back.
//! - [`diagnostic`]: problems located as `FILE:LINE:COL`; [`config_file`]: reading a TOML
//!   configuration or rule file with a size limit and located errors.
//! - [`logging`]: the tracing set-up; [`service_manager`]: systemd's READY/WATCHDOG;
//!   [`signals`]: the daemons' runtime and the signals they answer.
//! - [`manifest_record`]: what a log manifest record holds (the agent writes them,
//!   `klaxon logs verify` reads them); [`coverage`]: which bytes of each file a manifest
//!   shows shipped, declared lost, or neither.
//! - [`clock`]: the one source of time (wall and monotonic), real or tokio's paused one.
//! - [`backoff`]: exponential back-off with full jitter; [`aws_error`]: what to do about
//!   an AWS error; [`paginate`]: following `NextToken` pages.
//! - [`aws`]: loading the SDK configuration, with Klaxon's own IMDS guard.

pub mod aws;
pub mod aws_error;
pub mod backoff;
pub mod clock;
pub mod config_file;
pub mod coverage;
pub mod diagnostic;
pub mod logging;
pub mod manifest_record;
pub mod paginate;
pub mod service_manager;
pub mod signals;
pub mod state_file;
