//! `klaxon`: the command line for operators and auditors.

mod alerting;
mod logs;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use klaxon_aggregator::backtest::replay;
use klaxon_aggregator::config::AggregatorConfig;
use klaxon_aggregator::rule_tests::{Report, run_file, test_files};
use klaxon_aggregator::rules::check::{load_rules, rule_files};
use klaxon_aggregator::source::logs::LogSource;
use klaxon_aggregator::source::metrics::MetricSource;

/// Check and test rules, silence and list alerts, query and verify shipped logs.
#[derive(Debug, Parser)]
#[command(name = "klaxon", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
enum RulesCommand {
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
enum SilenceCommand {
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
enum LogsCommand {
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
enum WatchdogCommand {
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
struct ConfigArg {
    /// The aggregator's configuration file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

#[derive(Debug, Args)]
struct LogRange {
    /// The log group.
    #[arg(long)]
    group: String,
    /// Only this stream.
    #[arg(long)]
    stream: Option<String>,
    /// From this time: RFC 3339, or a duration meaning that long ago (2h).
    #[arg(long)]
    start: Option<String>,
    /// Up to this time: RFC 3339, or a duration meaning that long ago.
    #[arg(long)]
    end: Option<String>,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
    Jsonl,
    Csv,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Rules(RulesCommand::Check { paths, format }) => check_rules(&paths, format),
        Command::Rules(RulesCommand::Test { paths, format }) => test_rules(&paths, format),
        Command::Rules(RulesCommand::Backtest { config, rule, since, format }) => {
            report(backtest(&config.config, rule.as_deref(), since, format))
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

/// A command's exit code, or its error on stderr and exit 1.
fn report(result: anyhow::Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|error| {
        eprintln!("klaxon: {error:#}");
        ExitCode::FAILURE
    })
}

/// `klaxon rules backtest`: every rule (or one) replayed over the last `since`.
fn backtest(
    config: &Path,
    only: Option<&str>,
    since: Duration,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let config =
        AggregatorConfig::load(config).map_err(|problems| anyhow::anyhow!("{problems}"))?;
    let files =
        rule_files(std::slice::from_ref(&config.rules)).map_err(|p| anyhow::anyhow!("{p}"))?;
    let mut rules = load_rules(&files).map_err(|p| anyhow::anyhow!("{p}"))?;
    if let Some(name) = only {
        rules.retain(|rule| rule.name == name);
        anyhow::ensure!(!rules.is_empty(), "no rule named {name:?} in {}", config.rules.display());
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let aws = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
        let mut metrics =
            MetricSource::new(aws_sdk_cloudwatch::Client::new(&aws), Duration::from_secs(3600));
        let mut logs = LogSource::new(aws_sdk_cloudwatchlogs::Client::new(&aws), 2);
        let end = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs())?;
        let start = end - i64::try_from(since.as_secs())?;
        let mut out = std::io::stdout().lock();
        for rule in &rules {
            let report =
                replay(rule, &mut metrics, &mut logs, start, end, config.evaluation_interval)
                    .await?;
            match format {
                Format::Json | Format::Jsonl => {
                    writeln!(out, "{}", serde_json::to_string(&report)?)?
                }
                Format::Text | Format::Csv => {
                    writeln!(
                        out,
                        "{}: {} notifications ({} firing, {} resolved, {} flapping)",
                        report.rule,
                        report.notifications,
                        report.fired,
                        report.resolved,
                        report.flaps
                    )?;
                    for t in report.transitions.iter().filter(|t| t.state != "pending") {
                        let when = humantime::format_rfc3339_seconds(
                            UNIX_EPOCH + Duration::from_secs(t.at.max(0) as u64),
                        );
                        writeln!(out, "  {when} {:<8} {}", t.state, t.summary)?;
                    }
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `klaxon rules test`: runs every `*.test.toml`; prints failures as expected vs got.
fn test_rules(paths: &[PathBuf], format: Format) -> ExitCode {
    let files = test_files(paths);
    let mut report = Report::default();
    let mut broken = Vec::new();
    for file in &files {
        if let Err(error) = run_file(file, &mut report) {
            broken.push(error);
        }
    }
    if matches!(format, Format::Json | Format::Jsonl) {
        let summary = serde_json::json!({
            "files": files.len(),
            "passed": report.passed,
            "failures": report.failures,
            "broken": broken,
        });
        println!("{summary}");
    } else {
        for failure in report.failures.iter().chain(&broken) {
            println!("{failure}");
        }
        println!(
            "{} expectations passed, {} failed, in {} test files{}",
            report.passed,
            report.failures.len(),
            files.len(),
            if broken.is_empty() {
                String::new()
            } else {
                format!(" ({} files could not run)", broken.len())
            }
        );
    }
    if report.failures.is_empty() && broken.is_empty() && !files.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `klaxon rules check`: every problem as FILE:LINE:COL with the rule name; exit 0 or 1.
fn check_rules(paths: &[PathBuf], format: Format) -> ExitCode {
    let checked =
        rule_files(paths).and_then(|files| load_rules(&files).map(|rules| (files.len(), rules)));
    let json = matches!(format, Format::Json | Format::Jsonl);
    match checked {
        Ok((files, rules)) if json => {
            println!(
                "{}",
                serde_json::json!({ "files": files, "rules": rules.len(), "problems": [] })
            );
            ExitCode::SUCCESS
        }
        Ok((files, rules)) => {
            println!("{} rules in {files} files: ok", rules.len());
            ExitCode::SUCCESS
        }
        Err(problems) if json => {
            let listed: Vec<_> = problems
                .0
                .iter()
                .map(|p| serde_json::json!({ "file": p.file, "line": p.line, "column": p.column, "message": p.message }))
                .collect();
            println!("{}", serde_json::json!({ "problems": listed }));
            ExitCode::FAILURE
        }
        Err(problems) => {
            println!("{problems}");
            ExitCode::FAILURE
        }
    }
}
