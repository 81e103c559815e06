//! The command line of `klaxon`: its subcommands and flags, and which handler runs each.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{alerting, logs, rules};

/// Check and test rules, silence and list alerts, query and verify shipped logs.
#[derive(Debug, Parser)]
#[command(name = "klaxon", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check, test and backtest rule files.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// List the active alerts.
    Alerts {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Add, list and expire silences.
    #[command(subcommand)]
    Silence(SilenceCommand),
    /// Query and verify logs shipped to CloudWatch Logs.
    #[command(subcommand)]
    Logs(LogsCommand),
    /// Install the CloudWatch alarm that pages when the aggregator itself stops.
    #[command(subcommand)]
    Watchdog(WatchdogCommand),
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Validate rule files: every problem as FILE:LINE:COL with the rule name.
    Check {
        /// Rule files or folders of *.toml.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Run the rule unit tests found beside the rules.
    Test {
        /// Rule test files or folders.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Replay rules over CloudWatch history and report when they would have fired.
    Backtest {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this rule.
        #[arg(long)]
        rule: Option<String>,
        /// How far back to replay (humantime, e.g. 7d).
        #[arg(long, value_parser = humantime::parse_duration)]
        since: std::time::Duration,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
pub enum SilenceCommand {
    /// Silence the alerts matching every matcher for a while.
    Add {
        #[command(flatten)]
        config: ConfigArg,
        /// Matchers: `label=value` or `label=~regex`, comma-separated or repeated.
        #[arg(long = "match", required = true, value_delimiter = ',')]
        matchers: Vec<String>,
        /// How long the silence lasts (humantime, e.g. 2h).
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
        /// Why: shown with the silence.
        #[arg(long)]
        comment: String,
    },
    /// List the silences.
    List {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// End a silence now.
    Expire {
        #[command(flatten)]
        config: ConfigArg,
        /// The silence's id, as `silence list` shows it.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum LogsCommand {
    /// Print the events of a log group in time order, streaming every page.
    Query {
        #[command(flatten)]
        range: LogRange,
        /// A CloudWatch Logs filter pattern.
        #[arg(long)]
        filter: Option<String>,
        /// At most this many events.
        #[arg(long)]
        limit: Option<u64>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Check shipped events against the agent's manifests: missing, altered, extra.
    Verify {
        #[command(flatten)]
        range: LogRange,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
pub enum WatchdogCommand {
    /// Create the alarm on klaxon_aggregator_heartbeat (missing data breaches).
    Install {
        #[command(flatten)]
        config: ConfigArg,
        /// The SNS topic the alarm pages.
        #[arg(long)]
        topic: String,
    },
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The aggregator's configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct LogRange {
    /// The log group.
    #[arg(long)]
    pub group: String,
    /// Only this stream.
    #[arg(long)]
    pub stream: Option<String>,
    /// From this time: RFC 3339, or a duration meaning that long ago (2h).
    #[arg(long)]
    pub start: Option<String>,
    /// Up to this time: RFC 3339, or a duration meaning that long ago.
    #[arg(long)]
    pub end: Option<String>,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Jsonl,
    Csv,
}

impl Cli {
    /// Runs the subcommand; the exit code says how it went.
    pub fn run(self) -> ExitCode {
        match self.command {
            Command::Rules(RulesCommand::Check { paths, format }) => rules::check(&paths, format),
            Command::Rules(RulesCommand::Test { paths, format }) => rules::test(&paths, format),
            Command::Rules(RulesCommand::Backtest { config, rule, since, format }) => {
                report(rules::backtest(&config.config, rule.as_deref(), since, format))
            }
            Command::Alerts { config, format } => report(alerting::alerts(&config.config, format)),
            Command::Silence(SilenceCommand::Add { config, matchers, duration, comment }) => {
                report(alerting::silence_add(&config.config, &matchers, duration, &comment))
            }
            Command::Silence(SilenceCommand::List { config, format }) => {
                report(alerting::silence_list(&config.config, format))
            }
            Command::Silence(SilenceCommand::Expire { config, id }) => {
                report(alerting::silence_expire(&config.config, &id))
            }
            Command::Logs(LogsCommand::Query { range, filter, limit, format }) => {
                report(logs::query(&range, filter, limit, format))
            }
            Command::Logs(LogsCommand::Verify { range, format }) => {
                report(logs::verify(&range, format))
            }
            Command::Watchdog(WatchdogCommand::Install { config, topic }) => {
                report(alerting::watchdog_install(&config.config, &topic))
            }
        }
    }
}

/// A command's exit code, or its error on stderr and exit 1.
fn report(result: anyhow::Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|error| {
        eprintln!("klaxon: {error:#}");
        ExitCode::FAILURE
    })
}
