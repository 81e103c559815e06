//! `klaxon-aggregator`: the command line of the central daemon. The work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use klaxon_aggregator::config::AggregatorConfig;
use klaxon_aggregator::rules::check::{load_rules, rule_files};

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
    if cli.check {
        return check(&cli.config);
    }
    eprintln!(
        "klaxon-aggregator: running with {} (log level {}) is not built yet; --check is",
        cli.config.display(),
        cli.log_level.as_deref().unwrap_or("from RUST_LOG")
    );
    ExitCode::FAILURE
}

/// Checks the configuration and the rules it names; prints every problem.
fn check(path: &std::path::Path) -> ExitCode {
    let checked = AggregatorConfig::load(path)
        .and_then(|config| rule_files(std::slice::from_ref(&config.rules)))
        .and_then(|files| load_rules(&files).map(|rules| (files.len(), rules.len())));
    match checked {
        Ok((files, rules)) => {
            println!("{}: ok ({rules} rules in {files} files)", path.display());
            ExitCode::SUCCESS
        }
        Err(problems) => {
            println!("{problems}");
            ExitCode::FAILURE
        }
    }
}
