//! `klaxon-agent`: the command line of the daemon. The work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Tails log files and samples host metrics, and ships them to CloudWatch.
#[derive(Debug, Parser)]
#[command(name = "klaxon-agent", version)]
struct Cli {
    /// The agent's configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Validate the configuration and exit: 0 when valid, 1 printing every problem as
    /// FILE:LINE:COL: message.
    #[arg(long, conflicts_with_all = ["status", "cost"])]
    check: bool,
    /// Print, from the state directory, each file's identity, acknowledged offset and
    /// bytes behind, then exit.
    #[arg(long, conflicts_with = "cost")]
    status: bool,
    /// Print the custom metrics and API calls per month this configuration implies on
    /// this host, with their list price, then exit.
    #[arg(long)]
    cost: bool,
    /// Log level or filter (tracing's syntax); overrides RUST_LOG.
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mode = if cli.check {
        "--check"
    } else if cli.status {
        "--status"
    } else if cli.cost {
        "--cost"
    } else {
        "running"
    };
    eprintln!(
        "klaxon-agent: {mode} with {} (log level {}) is not built yet",
        cli.config.display(),
        cli.log_level.as_deref().unwrap_or("from RUST_LOG")
    );
    ExitCode::FAILURE
}
