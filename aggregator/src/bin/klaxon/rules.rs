//! `klaxon rules check`, `klaxon rules test` and `klaxon rules backtest`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use klaxon_aggregator::backtest::replay;
use klaxon_aggregator::config::AggregatorConfig;
use klaxon_aggregator::rule_tests::{Report, run_file, test_files};
use klaxon_aggregator::rules::check::{load_rules, rule_files};
use klaxon_aggregator::source::logs::LogSource;
use klaxon_aggregator::source::metrics::MetricSource;

use crate::cli::Format;

/// `klaxon rules backtest`: every rule (or one) replayed over the last `since`.
pub fn backtest(
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
        let aws = klaxon_common::aws::load_sdk_config(klaxon_common::aws::Retries::Sdk).await;
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
pub fn test(paths: &[PathBuf], format: Format) -> ExitCode {
    let files = test_files(paths);
    let mut report = Report::default();
    let mut broken = Vec::new();
    for file in &files {
        if let Err(error) = run_file(file, &mut report) {
            broken.push(error.to_string());
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
pub fn check(paths: &[PathBuf], format: Format) -> ExitCode {
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
