//! `klaxon silence`, `klaxon alerts` and `klaxon watchdog`: the on-call side of the CLI,
//! working on the aggregator's `state_dir` and its CloudWatch account.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use klaxon_aggregator::config::AggregatorConfig;
use klaxon_aggregator::daemon::pending_series;
use klaxon_aggregator::notify::dispatch::{Dispatcher, Suppression};
use klaxon_aggregator::notify::outbox::Outbox;
use klaxon_aggregator::notify::service::{HEARTBEAT_METRIC, load_saved};
use klaxon_aggregator::notify::silence::{Silences, silences_path};

use crate::cli::Format;

fn load_config(path: &Path) -> anyhow::Result<AggregatorConfig> {
    AggregatorConfig::load(path).map_err(|problems| anyhow::anyhow!("{problems}"))
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn time(secs: i64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64))
        .to_string()
}

/// Who is running the command: the user behind sudo, else the login name.
fn author() -> String {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// `klaxon silence add`.
pub fn silence_add(
    config: &Path,
    matchers: &[String],
    duration: Duration,
    comment: &str,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config)?;
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("cannot create {}", config.state_dir.display()))?;
    let path = silences_path(&config.state_dir);
    let mut silences = Silences::load(&path).map_err(anyhow::Error::msg)?;
    let secs = i64::try_from(duration.as_secs()).context("duration too long")?;
    let id = silences
        .add(matchers, now(), secs, &author(), comment)
        .map_err(|error| anyhow::anyhow!("--match: {error}"))?;
    silences.save(&path).with_context(|| format!("cannot write {}", path.display()))?;
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

/// `klaxon silence list`: every silence with whether it is active.
pub fn silence_list(config: &Path, format: Format) -> anyhow::Result<ExitCode> {
    let config = load_config(config)?;
    let silences = Silences::load(&silences_path(&config.state_dir)).map_err(anyhow::Error::msg)?;
    let now = now();
    let mut out = std::io::stdout().lock();
    for silence in silences.list() {
        let state = if silence.is_active(now) {
            "active"
        } else if now < silence.starts_at {
            "pending"
        } else {
            "expired"
        };
        match format {
            Format::Json | Format::Jsonl => {
                let mut row = serde_json::to_value(silence)?;
                row["state"] = state.into();
                writeln!(out, "{row}")?;
            }
            Format::Text | Format::Csv => writeln!(
                out,
                "{}  {state:<7}  {}  until {}  by {}: {}",
                silence.id,
                silence.matchers.join(","),
                time(silence.ends_at),
                silence.author,
                silence.comment
            )?,
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `klaxon silence expire ID`.
pub fn silence_expire(config: &Path, id: &str) -> anyhow::Result<ExitCode> {
    let config = load_config(config)?;
    let path = silences_path(&config.state_dir);
    let mut silences = Silences::load(&path).map_err(anyhow::Error::msg)?;
    anyhow::ensure!(silences.expire(id, now()), "no silence {id:?} in {}", path.display());
    silences.save(&path).with_context(|| format!("cannot write {}", path.display()))?;
    println!("{id} expired");
    Ok(ExitCode::SUCCESS)
}

/// `klaxon alerts`: firing alerts as the running aggregator last saved them (with the
/// messages still in its outbox counted as sent), and pending series.
pub fn alerts(config: &Path, format: Format) -> anyhow::Result<ExitCode> {
    let config = load_config(config)?;
    let policy = config.policy().map_err(|_| anyhow::anyhow!("invalid policy"))?;
    let saved = load_saved(&config.state_dir)
        .with_context(|| format!("cannot read the state in {}", config.state_dir.display()))?;
    let mut dispatcher = Dispatcher::restore(policy, saved);
    if config.state_dir.join("outbox").is_dir() {
        let outbox = Outbox::open(&config.state_dir)?;
        for (sequence, _) in outbox.pending()? {
            dispatcher.apply(&outbox.read(sequence)?.notification);
        }
    }
    let silences = Silences::load(&silences_path(&config.state_dir)).map_err(anyhow::Error::msg)?;
    let now = now();
    let mut out = std::io::stdout().lock();
    for (rule, labels, since) in pending_series(&config.state_dir)? {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        match format {
            Format::Json | Format::Jsonl => {
                let row = serde_json::json!({ "state": "pending", "rule": rule, "labels": labels, "since": since });
                writeln!(out, "{row}")?;
            }
            Format::Text | Format::Csv => {
                writeln!(out, "pending   {rule} {{{}}} since {}", labels.join(","), time(since))?
            }
        }
    }
    for status in dispatcher.status(&silences, now * 1000) {
        let alert = &status.alert;
        let state = if alert.firing() { "firing" } else { "resolved" };
        match format {
            Format::Json | Format::Jsonl => {
                let row = serde_json::json!({
                    "state": state,
                    "rule": alert.latest.rule,
                    "labels": alert.labels,
                    "summary": alert.latest.summary,
                    "since": alert.latest.since,
                    "suppressed": status.suppressed,
                    "last_notified": alert.notified.map(|n| n.at / 1000),
                    "next_repeat": status.next_repeat.map(|at| at / 1000),
                });
                writeln!(out, "{row}")?;
            }
            Format::Text | Format::Csv => {
                let quiet = match &status.suppressed {
                    Some(Suppression::Silenced(id)) => format!("  silenced by {id}"),
                    Some(Suppression::Muted(name)) => format!("  muted by {name}"),
                    Some(Suppression::Inhibited(by)) => format!("  inhibited by {by}"),
                    None => String::new(),
                };
                let notified = alert.notified.map_or_else(
                    || "not yet notified".to_owned(),
                    |n| format!("notified {}", time(n.at / 1000)),
                );
                let repeat = status
                    .next_repeat
                    .map_or(String::new(), |at| format!(", repeat {}", time(at / 1000)));
                writeln!(
                    out,
                    "{state:<9} {}: {} (since {}; {notified}{repeat}){quiet}",
                    alert.latest.rule,
                    alert.latest.summary,
                    time(alert.latest.since)
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `klaxon watchdog install`: an alarm on the aggregator's heartbeat that pages `topic`
/// when the heartbeat stops (missing data breaches) and again when it is back.
pub fn watchdog_install(config: &Path, topic: &str) -> anyhow::Result<ExitCode> {
    use aws_sdk_cloudwatch::types::{ComparisonOperator, StandardUnit, Statistic};
    let config = load_config(config)?;
    // The heartbeat comes once an evaluation; the alarm's period holds at least one.
    let period = config.evaluation_interval.as_secs().div_ceil(60).max(1) * 60;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let aws = klaxon_common::aws::load_sdk_config(klaxon_common::aws::Retries::Sdk).await;
        let cloudwatch = aws_sdk_cloudwatch::Client::new(&aws);
        cloudwatch
            .put_metric_alarm()
            .alarm_name(WATCHDOG_ALARM)
            .alarm_description(
                "klaxon-aggregator stopped sending its heartbeat: alerts are not being evaluated.",
            )
            .namespace("Klaxon")
            .metric_name(HEARTBEAT_METRIC)
            .statistic(Statistic::SampleCount)
            .unit(StandardUnit::Count)
            .period(i32::try_from(period)?)
            .evaluation_periods(3)
            .datapoints_to_alarm(3)
            .threshold(1.0)
            .comparison_operator(ComparisonOperator::LessThanThreshold)
            .treat_missing_data("breaching")
            .alarm_actions(topic)
            .ok_actions(topic)
            .send()
            .await
            .map_err(|error| {
                anyhow::anyhow!(
                    "PutMetricAlarm: {}",
                    aws_sdk_cloudwatch::error::DisplayErrorContext(error)
                )
            })?;
        println!(
            "alarm {WATCHDOG_ALARM} pages {topic} after {} minutes without a heartbeat",
            3 * period / 60
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// The name of the watchdog alarm.
const WATCHDOG_ALARM: &str = "klaxon-aggregator-heartbeat";
