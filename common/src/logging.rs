//! How both daemons log: tracing to stderr (journald adds the time), the level from
//! `--log-level` or `RUST_LOG` (default info), colour only on a terminal and never with
//! `NO_COLOR`.

use std::io::IsTerminal;

/// Installs the global subscriber.
pub fn init_tracing(level: Option<&str>) {
    let filter = level
        .map(tracing_subscriber::EnvFilter::new)
        .or_else(|| tracing_subscriber::EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .without_time()
        .init();
}
