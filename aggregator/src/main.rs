//! `klaxon-aggregator`: the command line of the central daemon. The work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use klaxon_aggregator::config::AggregatorConfig;
use klaxon_aggregator::service::{check, serve};
use klaxon_common::logging::init_tracing;

/// Evaluates rule files against CloudWatch and sends grouped, deduplicated,
/// rate-limited alerts through SNS.
#[derive(Debug, Parser)]
#[command(name = "klaxon-aggregator", version)]
struct Cli {
    /// The aggregator's configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Validate the configuration and its rules and exit: 0 when valid, 1 printing every
    /// problem as FILE:LINE:COL: message.
    #[arg(long)]
    check: bool,
    /// Log level or filter (tracing's syntax); overrides RUST_LOG.
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_level.as_deref());
    if cli.check {
        return check(&cli.config);
    }
    let config = match AggregatorConfig::load(&cli.config) {
        Ok(config) => config,
        Err(problems) => {
            eprintln!("{problems}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(error) = serve(config) {
        eprintln!("klaxon-aggregator: {error}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
