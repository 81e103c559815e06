//! `klaxon rules backtest`: replays rules over CloudWatch history with the same engine
//! the daemon runs, so a noisy rule is tuned before it pages anyone.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::daemon::{last_seen, matches_by_group, metric_history, periods};
use crate::engine::evaluate::{Engine, Observation};
use crate::rules::model::{Rule, RuleSource};
use crate::source::SourceError;
use crate::source::logs::{LogApi, LogSource};
use crate::source::metrics::{MetricApi, MetricSource};

/// One transition the rule would have made.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Replayed {
    pub at: i64,
    pub rule: String,
    pub state: &'static str,
    pub labels: BTreeMap<String, String>,
    pub summary: String,
}

/// A rule's replay, summed up.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RuleReport {
    pub rule: String,
    pub fired: usize,
    pub resolved: usize,
    pub flaps: usize,
    /// What would have been sent: firing, resolved and flapping notices.
    pub notifications: usize,
    pub transitions: Vec<Replayed>,
}

/// Replays `rule` from `start` to `end` (Unix seconds), evaluated every `step` seconds
/// for log rules and every period for metric and absent rules.
pub async fn replay<M: MetricApi, L: LogApi>(
    rule: &Rule,
    metrics: &mut MetricSource<M>,
    logs: &mut LogSource<L>,
    start: i64,
    end: i64,
    step: Duration,
) -> Result<RuleReport, SourceError> {
    let mut engine = Engine::default();
    let mut report = RuleReport { rule: rule.name.clone(), ..RuleReport::default() };
    let mut record = |changes: Vec<crate::engine::evaluate::AlertChange>, at: i64| {
        for change in changes {
            let state = change.transition.as_str();
            report.fired += usize::from(state == "firing");
            report.resolved += usize::from(state == "resolved");
            report.flaps += usize::from(state == "flapping");
            report.notifications += usize::from(state != "pending");
            report.transitions.push(Replayed {
                at,
                rule: change.rule,
                state,
                labels: change.labels,
                summary: change.summary,
            });
        }
    };
    match &rule.source {
        RuleSource::Metric { period, datapoints, .. } => {
            let period = i64::try_from(period.as_secs()).unwrap_or(60).max(1);
            let first = start - start.rem_euclid(period);
            let history = metric_history(metrics, rule, first, end).await?;
            let mut at = first + period;
            while at <= end {
                let from = at - i64::from(datapoints.of) * period;
                let observation = Observation::Datapoints(
                    history
                        .iter()
                        .map(|(labels, points)| {
                            (labels.clone(), periods(points, from, period, datapoints.of))
                        })
                        .collect(),
                );
                record(engine.evaluate(rule, &observation, at), at);
                at += period;
            }
        }
        RuleSource::Absent { period, .. } => {
            let period = i64::try_from(period.as_secs()).unwrap_or(60).max(1);
            let history = metric_history(metrics, rule, start, end).await?;
            let mut at = start - start.rem_euclid(period) + period;
            while at <= end {
                let upto: Vec<_> = history
                    .iter()
                    .map(|(labels, points)| {
                        (
                            labels.clone(),
                            points.iter().copied().filter(|(t, _)| t + period <= at).collect(),
                        )
                    })
                    .collect();
                record(engine.evaluate(rule, &last_seen(upto, period), at), at);
                at += period;
            }
        }
        RuleSource::Log { log_group, pattern, window, .. } => {
            let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
            let events =
                logs.matches(log_group, pattern, (start * 1000) - window_ms, end * 1000).await?;
            let step = i64::try_from(step.as_secs()).unwrap_or(60).max(1);
            let mut at = start + step;
            while at <= end {
                let mut counts: BTreeMap<String, u64> = BTreeMap::new();
                for (stream, ts) in &events {
                    if *ts < at * 1000 && *ts >= at * 1000 - window_ms {
                        *counts.entry(stream.clone()).or_default() += 1;
                    }
                }
                record(engine.evaluate(rule, &matches_by_group(rule, counts), at), at);
                at += step;
            }
        }
    }
    Ok(report)
}
