//! The daemon's process: loads the rules, runs an evaluation cycle every
//! `evaluation_interval` until SIGTERM or SIGINT, reloads the rules on SIGHUP or when
//! their folder changes (an invalid edit keeps the running ones, loudly), hands alert
//! changes to the notifier, publishes its own heartbeat, and tells systemd; and
//! `klaxon-aggregator --check`.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use klaxon_common::clock::unix_ms;
use klaxon_common::diagnostic::Problems;
use klaxon_common::service_manager;
use klaxon_common::signals::{Asked, Signals, runtime};
use tracing::{error, info, warn};

use crate::config::AggregatorConfig;
use crate::daemon::{AlertLog, Evaluator};
use crate::notify::publish::SnsPublisher;
use crate::notify::service::HEARTBEAT_METRIC;
use crate::rules::check::{load_rules, rule_files};
use crate::rules::model::Rule;
use crate::source::logs::LogSource;
use crate::source::metrics::MetricSource;

/// Why the daemon stopped other than when told to. An I/O failure reads as the
/// operating system's message, as `klaxon-aggregator` has always printed it.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Rules(#[from] Problems),
    /// The runtime or the signal handlers cannot be set up.
    #[error(transparent)]
    Start(std::io::Error),
    /// The state directory cannot be read or created.
    #[error(transparent)]
    State(std::io::Error),
    #[error("invalid notification policy")]
    Policy,
}

/// The rules the configuration names, or every problem in them.
fn load_rule_set(config: &AggregatorConfig) -> Result<Vec<Rule>, Problems> {
    rule_files(std::slice::from_ref(&config.rules)).and_then(|files| load_rules(&files))
}

/// Evaluates the rules every `evaluation_interval` until SIGTERM/SIGINT. SIGHUP, or a
/// change in the rule folder, reloads the rules; an invalid edit keeps the running ones.
pub fn serve(config: AggregatorConfig) -> Result<(), ServiceError> {
    let mut rules = load_rule_set(&config)?;
    runtime().map_err(ServiceError::Start)?.block_on(async {
        let mut signals = Signals::install().map_err(ServiceError::Start)?;
        let aws = klaxon_common::aws::load_sdk_config(klaxon_common::aws::Retries::Sdk).await;
        let refresh = config.evaluation_interval * SERIES_REFRESH_INTERVALS;
        let cloudwatch = aws_sdk_cloudwatch::Client::new(&aws);
        let metrics = MetricSource::new(cloudwatch.clone(), refresh);
        let logs = LogSource::new(aws_sdk_cloudwatchlogs::Client::new(&aws), FILTER_LOG_EVENTS_PER_SECOND);
        let mut evaluator = Evaluator::new(metrics, logs, &config.state_dir).map_err(ServiceError::State)?;
        let mut alert_log = AlertLog::new(&config.state_dir);
        let policy = config.policy().map_err(|_| ServiceError::Policy)?;
        let region = aws.region().map_or_else(|| "us-east-1".to_owned(), ToString::to_string);
        let console = format!("https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}");
        let notifier = if policy.routes.is_empty() {
            warn!(message = "No [[route]] in the configuration: alerts are only logged.");
            None
        } else {
            let publisher = SnsPublisher::new(aws_sdk_sns::Client::new(&aws));
            Some(crate::notify::service::start(policy, &config.state_dir, console, publisher).map_err(ServiceError::State)?)
        };
        let reload = Arc::new(AtomicBool::new(false));
        let _watcher = watch_rules(&config.rules, Arc::clone(&reload));
        let mut tick = tokio::time::interval(config.evaluation_interval);
        info!(message = "Aggregator running.", rules = rules.len(), interval = ?config.evaluation_interval);
        service_manager::ready(&format!("evaluating {} rules", rules.len()));
        service_manager::spawn_watchdog();
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if reload.swap(false, Ordering::Relaxed) {
                        reload_rules(&config, &mut rules, &cloudwatch).await;
                    }
                    let now = unix_ms(std::time::SystemTime::now()) / 1000;
                    let changes = evaluator.cycle(&rules, now).await;
                    alert_log.record(&changes);
                    let held_back = notifier.as_ref().map_or(0, |n| n.take_held_back());
                    if let Some(notifier) = &notifier {
                        notifier.send(changes);
                    }
                    publish_health(&cloudwatch, held_back).await;
                }
                asked = signals.next() => match asked {
                    Asked::Reload => reload_rules(&config, &mut rules, &cloudwatch).await,
                    Asked::Stop => break,
                },
            }
        }
        service_manager::stopping();
        info!(message = "Aggregator stopped.", cloudwatch_calls = evaluator.calls());
        Ok(())
    })
}

/// A rule's series (ListMetrics) are looked up again after this many evaluations, so
/// new instances of the auto-scaling group are picked up.
const SERIES_REFRESH_INTERVALS: u32 = 5;

/// This aggregator's share of the account's 5 FilterLogEvents calls a second.
const FILTER_LOG_EVENTS_PER_SECOND: u32 = 2;

/// Loads the rules again; an invalid set is refused loudly (error log and
/// `klaxon_aggregator_rules_invalid` = 1) and the running rules stay.
async fn reload_rules(
    config: &AggregatorConfig,
    rules: &mut Vec<Rule>,
    cloudwatch: &aws_sdk_cloudwatch::Client,
) {
    let invalid = match load_rule_set(config) {
        Ok(new) => {
            info!(message = "Rules reloaded.", rules = new.len());
            *rules = new;
            0.0
        }
        Err(problems) => {
            error!(message = "Invalid rules; the previous rules keep running.", %problems);
            1.0
        }
    };
    let datum = aws_sdk_cloudwatch::types::MetricDatum::builder()
        .metric_name("klaxon_aggregator_rules_invalid")
        .value(invalid)
        .unit(aws_sdk_cloudwatch::types::StandardUnit::None)
        .build();
    let sent = cloudwatch.put_metric_data().namespace("Klaxon").metric_data(datum).send().await;
    if let Err(error) = sent {
        warn!(message = "Cannot publish klaxon_aggregator_rules_invalid.", error = %aws_sdk_cloudwatch::error::DisplayErrorContext(error));
    }
}

/// The aggregator's own metrics, once a cycle in one call: `klaxon_aggregator_heartbeat`
/// (the watchdog alarm pages when it stops) and the notifications rate limits held back.
async fn publish_health(cloudwatch: &aws_sdk_cloudwatch::Client, held_back: u64) {
    use aws_sdk_cloudwatch::types::{MetricDatum, StandardUnit};
    let datum = |name: &str, value: f64| {
        MetricDatum::builder().metric_name(name).value(value).unit(StandardUnit::Count).build()
    };
    let sent = cloudwatch
        .put_metric_data()
        .namespace("Klaxon")
        .metric_data(datum(HEARTBEAT_METRIC, 1.0))
        .metric_data(datum("klaxon_aggregator_notifications_held_back", held_back as f64))
        .send()
        .await;
    if let Err(error) = sent {
        warn!(message = "Cannot publish the aggregator's heartbeat.", error = %aws_sdk_cloudwatch::error::DisplayErrorContext(error));
    }
}

/// Watches the rule file or folder; any change asks for a reload.
fn watch_rules(
    path: &std::path::Path,
    reload: Arc<AtomicBool>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Reading the rules opens them too: only changes ask for a reload.
        if event.is_ok_and(|e| !matches!(e.kind, notify::EventKind::Access(_))) {
            reload.store(true, Ordering::Relaxed);
        }
    })
    .ok()?;
    watcher.watch(path, notify::RecursiveMode::NonRecursive).ok()?;
    Some(watcher)
}

/// Checks the configuration and the rules it names; prints every problem.
pub fn check(path: &std::path::Path) -> ExitCode {
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
