//! The command line of `klaxon-agent`: its flags, and which command each runs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::commands::{check, print_cost};
use crate::config::ValidConfig;
use crate::service::serve;
use crate::status::print_status;

/// Tails log files and samples host metrics, and ships them to CloudWatch.
#[derive(Debug, clap::Parser)]
#[command(name = "klaxon-agent", version)]
pub struct Cli {
    /// The agent's configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Validate the configuration and exit: 0 when valid, 1 printing every problem as
    /// FILE:LINE:COL: message (configured files this user cannot read included).
    #[arg(long, conflicts_with_all = ["status", "cost"])]
    pub check: bool,
    /// Print, from the state directory, each file's identity, acknowledged offset and
    /// bytes behind, then exit.
    #[arg(long, conflicts_with = "cost")]
    pub status: bool,
    /// Print the custom metrics and API calls per month this configuration implies on
    /// this host, with their list price, then exit.
    #[arg(long)]
    pub cost: bool,
    /// How --status and --cost print.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Log level or filter (tracing's syntax); overrides RUST_LOG.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

impl Cli {
    /// Runs what the flags ask for; the exit code says how it went.
    pub fn run(self) -> ExitCode {
        if self.check {
            let valid = check(&self.config, &mut std::io::stdout().lock());
            return if valid.unwrap_or(false) { ExitCode::SUCCESS } else { ExitCode::FAILURE };
        }
        let config = match ValidConfig::load(&self.config) {
            Ok(config) => config,
            Err(problems) => {
                eprintln!("{problems}");
                return ExitCode::FAILURE;
            }
        };
        let json = self.format == Format::Json;
        let result: anyhow::Result<()> = if self.status {
            print_status(&config, json, &mut std::io::stdout().lock())
                .context("reading the state directory")
        } else if self.cost {
            print_cost(&config, json, &mut std::io::stdout().lock()).map_err(Into::into)
        } else {
            serve(&self.config, config).map_err(Into::into)
        };
        if let Err(error) = result {
            eprintln!("klaxon-agent: {error:#}");
            return ExitCode::FAILURE;
        }
        ExitCode::SUCCESS
    }
}
