//! One evaluation cycle of every rule against CloudWatch, and the state that outlives
//! cycles and restarts: series states, log cursors, source health.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::engine::evaluate::{AlertChange, Engine, Labels, Observation};
use crate::engine::state::{Phase, SeriesState, Transition};
use crate::rules::model::{MetricQuery, Rule, RuleSource};
use crate::source::SourceError;
use crate::source::logs::{LogApi, LogCursor, LogSource, SdkLogs};
use crate::source::metrics::{MetricApi, MetricSource, Request, SdkMetrics};
use klaxon_common::state_file::{read_json, write_atomically};

/// How far back an absent rule looks for a series' last datapoint.
const ABSENT_LOOKBACK: Duration = Duration::from_secs(3 * 3600);
/// The first wait after a cycle that could not read CloudWatch, and the longest.
const FIRST_RETRY_SECS: i64 = 15;
const MAX_RETRY_SECS: i64 = 600;
/// The rule name of the one alert that says CloudWatch cannot be read.
pub const SOURCE_DEGRADED: &str = "KlaxonSourceDegraded";

/// What is saved in `state_dir/state.json` after every cycle.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(tag = "version")]
enum StateFile {
    #[default]
    #[serde(rename = "0")]
    Empty,
    #[serde(rename = "1")]
    V1 { series: Vec<(String, Labels, SeriesState)>, cursors: BTreeMap<String, LogCursor> },
}

/// The audit trail of alert changes: logged with tracing and appended to
/// `state_dir/alerts.jsonl`, whether or not a route notifies them.
pub struct AlertLog {
    path: PathBuf,
}

impl AlertLog {
    pub fn new(state_dir: &Path) -> Self {
        AlertLog { path: state_dir.join("alerts.jsonl") }
    }

    pub fn record(&mut self, changes: &[AlertChange]) {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path);
        let mut file = match file {
            Ok(file) => file,
            Err(error) => {
                warn!(message = "Cannot write the alert log.", path = %self.path.display(), %error);
                return;
            }
        };
        for change in changes {
            let state = change.transition.as_str();
            info!(message = "Alert changed.", rule = %change.rule, state, summary = %change.summary);
            let line = serde_json::json!({
                "rule": change.rule,
                "severity": change.severity,
                "state": state,
                "labels": change.labels,
                "summary": change.summary,
                "description": change.description,
                "value": change.value,
                "since": change.since,
            });
            let _ = writeln!(file, "{line}");
        }
    }
}

/// The aggregator between cycles.
pub struct Evaluator<M: MetricApi = SdkMetrics, L: LogApi = SdkLogs> {
    engine: Engine,
    metrics: MetricSource<M>,
    logs: LogSource<L>,
    cursors: BTreeMap<String, LogCursor>,
    /// The failing API and when it started failing, while it fails.
    degraded: Option<(SourceError, i64)>,
    /// Per metric rule, the end of the last period it evaluated.
    looked_at: HashMap<String, i64>,
    /// Cycles in a row that failed to read, and the time before which none is tried.
    failures: u32,
    retry_at: i64,
    state_path: PathBuf,
}

/// Reads `state_dir/state.json`; a missing file is an empty state.
fn read_state(state_path: &Path) -> std::io::Result<StateFile> {
    Ok(read_json(state_path)?.unwrap_or_default())
}

/// The series saved as pending (condition holding, not yet for `for`): rule, labels, since.
pub fn pending_series(state_dir: &Path) -> std::io::Result<Vec<(String, Labels, i64)>> {
    let StateFile::V1 { series, .. } = read_state(&state_dir.join("state.json"))? else {
        return Ok(Vec::new());
    };
    Ok(series
        .into_iter()
        .filter_map(|(rule, labels, state)| match state.phase {
            Phase::Pending { since } => Some((rule, labels, since)),
            _ => None,
        })
        .collect())
}

impl<M: MetricApi, L: LogApi> Evaluator<M, L> {
    /// Restores the state saved in `state_dir`, if any.
    pub fn new(
        metrics: MetricSource<M>,
        logs: LogSource<L>,
        state_dir: &Path,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(state_dir)?;
        let state_path = state_dir.join("state.json");
        let saved = read_state(&state_path)?;
        let (engine, cursors) = match saved {
            StateFile::V1 { series, cursors } => (Engine::restore(series), cursors),
            StateFile::Empty => (Engine::default(), BTreeMap::new()),
        };
        Ok(Evaluator {
            engine,
            metrics,
            logs,
            cursors,
            degraded: None,
            looked_at: HashMap::new(),
            failures: 0,
            retry_at: 0,
            state_path,
        })
    }

    /// Evaluates every rule at `now` (Unix seconds) and saves the state. A rule whose
    /// data cannot be read keeps its state; the failure becomes one degraded alert.
    pub async fn cycle(&mut self, rules: &[Rule], now: i64) -> Vec<AlertChange> {
        if now < self.retry_at {
            return Vec::new();
        }
        let mut changes = Vec::new();
        let mut failure = None;
        // Metric rules that share a window (period, N) are fetched in the same calls, and
        // only when a period completed since they last looked: GetMetricData bills every
        // metric requested, and a 5-minute period has nothing new each minute.
        let mut windows: BTreeMap<(u64, u32), Vec<&Rule>> = BTreeMap::new();
        for rule in rules {
            if let RuleSource::Metric { period, datapoints, .. } = &rule.source {
                let period_secs = i64::try_from(period.as_secs()).unwrap_or(60).max(1);
                let latest_period = now - now.rem_euclid(period_secs);
                if self.looked_at.insert(rule.name.clone(), latest_period) != Some(latest_period) {
                    windows.entry((period.as_secs(), datapoints.of)).or_default().push(rule);
                }
            }
        }
        for ((period, of), members) in windows {
            match self.observe_window(&members, period, of, now).await {
                Ok(observations) => {
                    for (rule, observation) in members.iter().zip(observations) {
                        changes.extend(self.engine.evaluate(rule, &observation, now));
                    }
                }
                Err(error) => {
                    warn!(message = "Cannot read metric rules' data; their state is kept.", rules = members.len(), %error);
                    for rule in &members {
                        self.looked_at.remove(&rule.name);
                    }
                    failure = Some(error);
                }
            }
        }
        for rule in rules.iter().filter(|rule| !matches!(rule.source, RuleSource::Metric { .. })) {
            match self.observe(rule, now).await {
                Ok(observation) => changes.extend(self.engine.evaluate(rule, &observation, now)),
                Err(error) => {
                    warn!(message = "Cannot read a rule's data; its state is kept.", rule = %rule.name, %error);
                    failure = Some(error);
                }
            }
        }
        // While CloudWatch fails, back off: 15 s, 30 s, … up to 10 minutes between tries.
        if failure.is_some() {
            self.failures += 1;
            let wait = (FIRST_RETRY_SECS << (self.failures - 1).min(10)).min(MAX_RETRY_SECS);
            self.retry_at = now + wait;
        } else {
            self.failures = 0;
            self.retry_at = 0;
        }
        changes.extend(self.source_health(failure, now));
        if let Err(error) = self.save() {
            warn!(message = "Cannot save the aggregator state.", %error);
        }
        changes
    }

    /// The last N periods of every series of `rules` (which share `period` and N), in
    /// as few GetMetricData calls as 500 queries a call allow.
    async fn observe_window(
        &mut self,
        rules: &[&Rule],
        period: u64,
        of: u32,
        now: i64,
    ) -> Result<Vec<Observation>, SourceError> {
        let period_secs = i64::try_from(period).unwrap_or(60).max(1);
        let end = now - now.rem_euclid(period_secs);
        let start = end - i64::from(of) * period_secs;
        let mut requests = Vec::new();
        let mut groups_per_rule = Vec::new();
        for (index, rule) in rules.iter().enumerate() {
            let (rule_requests, groups) =
                metric_requests(&mut self.metrics, rule, &format!("r{index}_")).await?;
            requests.extend(rule_requests);
            groups_per_rule.push(groups);
        }
        let mut results =
            self.metrics.fetch(&requests, Duration::from_secs(period), start, end).await?;
        Ok(groups_per_rule
            .into_iter()
            .map(|groups| {
                Observation::Datapoints(
                    groups
                        .into_iter()
                        .map(|(id, labels)| {
                            let points = results.remove(&id).unwrap_or_default();
                            (labels, periods(&points, start, period_secs, of))
                        })
                        .collect(),
                )
            })
            .collect())
    }

    /// CloudWatch calls made so far (ListMetrics, GetMetricData, FilterLogEvents).
    pub fn calls(&self) -> u64 {
        self.metrics.calls + self.logs.calls
    }

    /// Metrics requested from GetMetricData so far: what it bills.
    pub fn metrics_requested(&self) -> u64 {
        self.metrics.metrics_requested
    }

    async fn observe(&mut self, rule: &Rule, now: i64) -> Result<Observation, SourceError> {
        match &rule.source {
            RuleSource::Metric { period, datapoints, .. } => {
                let mut observed =
                    self.observe_window(&[rule], period.as_secs(), datapoints.of, now).await?;
                Ok(observed.pop().unwrap_or(Observation::Datapoints(Vec::new())))
            }
            RuleSource::Log { log_group, pattern, window, .. } => {
                let cursor = self.cursors.entry(rule.name.clone()).or_default();
                self.logs.advance(cursor, log_group, pattern, *window, now * 1000).await?;
                Ok(matches_by_group(rule, cursor.window_counts(*window)))
            }
            RuleSource::Absent { period, .. } => {
                let step = i64::try_from(period.as_secs()).unwrap_or(60).max(1);
                let lookback = i64::try_from(ABSENT_LOOKBACK.as_secs()).unwrap_or(10_800);
                let history =
                    metric_history(&mut self.metrics, rule, now - lookback, now + step).await?;
                Ok(last_seen(history, step))
            }
        }
    }

    /// One `KlaxonSourceDegraded` alert while reads fail, resolved when a cycle reads all.
    fn source_health(&mut self, failure: Option<SourceError>, now: i64) -> Vec<AlertChange> {
        let alert = |error: &SourceError, transition, since| AlertChange {
            rule: SOURCE_DEGRADED.to_owned(),
            severity: "critical".to_owned(),
            labels: [
                ("api".to_owned(), error.api.to_owned()),
                ("error".to_owned(), error.code.clone()),
            ]
            .into(),
            summary: format!("CloudWatch {} failing: {}", error.api, error.code),
            description: Some(error.message.clone()),
            runbook: None,
            console: None,
            value: None,
            transition,
            since,
        };
        match (failure, self.degraded.take()) {
            (Some(error), None) => {
                let change = alert(&error, Transition::Firing, now);
                self.degraded = Some((error, now));
                vec![change]
            }
            (Some(_), Some(known)) => {
                self.degraded = Some(known);
                Vec::new()
            }
            (None, Some((error, since))) => vec![alert(&error, Transition::Resolved, since)],
            (None, None) => Vec::new(),
        }
    }

    fn save(&self) -> std::io::Result<()> {
        let state = StateFile::V1 { series: self.engine.snapshot(), cursors: self.cursors.clone() };
        let bytes = serde_json::to_vec(&state).map_err(std::io::Error::other)?;
        write_atomically(&self.state_path, &bytes)
    }
}

fn no_query(rule: &Rule) -> SourceError {
    SourceError {
        api: "rule",
        code: "NoQuery".to_owned(),
        message: format!("rule {} has no query", rule.name),
    }
}

fn stat(query: &MetricQuery, dimensions: &BTreeMap<String, String>) -> Request {
    Request::Stat {
        namespace: query.namespace.clone(),
        metric: query.metric.clone(),
        dimensions: dimensions.clone(),
        stat: query.stat.clone(),
    }
}

/// The `count` periods from `start`, oldest first, None where CloudWatch had no datapoint.
pub fn periods(points: &[(i64, f64)], start: i64, period: i64, count: u32) -> Vec<Option<f64>> {
    let points: HashMap<i64, f64> = points.iter().copied().collect();
    (0..i64::from(count)).map(|k| points.get(&(start + k * period)).copied()).collect()
}

/// Log match counts as the rule groups them: per stream, or one total.
pub fn matches_by_group(rule: &Rule, counts: BTreeMap<String, u64>) -> Observation {
    if rule.group_by.iter().any(|g| g == "stream") {
        Observation::Matches(
            counts
                .into_iter()
                .map(|(stream, n)| ([("stream".to_owned(), stream)].into(), n as f64))
                .collect(),
        )
    } else {
        Observation::Matches(vec![(Labels::new(), counts.values().sum::<u64>() as f64)])
    }
}

/// Each series' last datapoint as (labels, when it was reported, value).
pub fn last_seen(history: Vec<(Labels, Vec<(i64, f64)>)>, period: i64) -> Observation {
    Observation::LastSeen(
        history
            .into_iter()
            .filter_map(|(labels, points)| {
                let (at, value) = *points.last()?;
                Some((labels, at + period, value))
            })
            .collect(),
    )
}

/// The GetMetricData queries for every series of a metric or absent rule (ids start with
/// `prefix`), and which query id answers for which series.
async fn metric_requests<M: MetricApi>(
    metrics: &mut MetricSource<M>,
    rule: &Rule,
    prefix: &str,
) -> Result<(Vec<(String, Request)>, Vec<(String, Labels)>), SourceError> {
    let (queries, expression) = match &rule.source {
        RuleSource::Metric { queries, expression, .. } => (queries.clone(), expression.clone()),
        RuleSource::Absent { query, .. } => {
            let minimum = MetricQuery { stat: "Minimum".to_owned(), ..query.clone() };
            ([("m".to_owned(), minimum)].into(), None)
        }
        RuleSource::Log { .. } => return Ok((Vec::new(), Vec::new())),
    };
    let first = queries.values().next().ok_or_else(|| no_query(rule))?.clone();
    let mut requests = Vec::new();
    let mut groups = Vec::new();
    for (index, series) in metrics.series(&first, &rule.group_by).await?.into_iter().enumerate() {
        let id = format!("{prefix}s{index}");
        match &expression {
            None => requests.push((id.clone(), stat(&first, &series.dimensions))),
            Some(expression) => {
                let mut substituted = expression.clone();
                for (name, query) in &queries {
                    let query_id = format!("{prefix}{name}_{index}");
                    let mut dimensions = query.dimensions.clone();
                    dimensions.extend(series.labels.clone());
                    requests.push((query_id.clone(), stat(query, &dimensions)));
                    substituted = replace_word(&substituted, name, &query_id);
                }
                requests.push((id.clone(), Request::Expression(substituted)));
            }
        }
        groups.push((id, series.labels));
    }
    Ok((requests, groups))
}

/// The datapoints of every series of a metric or absent rule over `start..end`, at the
/// rule's period: a metric rule's statistic (or expression), an absent rule's minimum.
pub async fn metric_history<M: MetricApi>(
    metrics: &mut MetricSource<M>,
    rule: &Rule,
    start: i64,
    end: i64,
) -> Result<Vec<(Labels, Vec<(i64, f64)>)>, SourceError> {
    let period = match &rule.source {
        RuleSource::Metric { period, .. } | RuleSource::Absent { period, .. } => *period,
        RuleSource::Log { .. } => return Ok(Vec::new()),
    };
    let (requests, groups) = metric_requests(metrics, rule, "").await?;
    let mut results = metrics.fetch(&requests, period, start, end).await?;
    Ok(groups
        .into_iter()
        .map(|(id, labels)| (labels, results.remove(&id).unwrap_or_default()))
        .collect())
}

/// Replaces the identifier `word` in a metric-math expression.
fn replace_word(expression: &str, word: &str, with: &str) -> String {
    let pattern = format!(r"\b{}\b", regex::escape(word));
    match regex::Regex::new(&pattern) {
        Ok(regex) => regex.replace_all(expression, with).into_owned(),
        Err(_) => expression.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::state::Transition;
    use crate::rules::check::load_rules;
    use crate::source::fake::{FakeCloudWatch, Fault};

    const RULES: &str = r#"
[[rule]]
name = "HighCpu"
kind = "metric"
severity = "critical"
summary = "CPU {{value}}% on {{InstanceId}}"
namespace = "Klaxon"
metric = "cpu_usage_active"
stat = "Maximum"
period = "10s"
group_by = ["InstanceId"]
when = "> 90"

[[rule]]
name = "ErrorBurst"
kind = "log"
severity = "warning"
summary = "{{value}} errors on {{stream}}"
log_group = "/web/nginx/error"
pattern = "\"upstream\""
window = "20s"
group_by = ["stream"]
when = ">= 3"
"#;

    fn seen(changes: &[AlertChange]) -> Vec<(String, Transition)> {
        changes.iter().map(|c| (c.rule.clone(), c.transition)).collect()
    }

    /// The evaluator, the engine and the sources' caching, pacing and paging, against
    /// the fake CloudWatch on the paused clock: a hot host and an error burst fire and
    /// resolve; throttling, an expired token, a 5xx and a timeout keep every state and
    /// raise one degraded alert, resolved when reads work again.
    #[tokio::test(start_paused = true)]
    async fn rules_fire_and_resolve_through_the_fakes_and_faults_keep_their_states() {
        let started = std::time::Instant::now();
        let dir = tempfile::tempdir().expect("dir");
        let rules_path = dir.path().join("rules.toml");
        std::fs::write(&rules_path, RULES).expect("rules");
        let rules = load_rules(&[rules_path]).expect("valid rules");
        let fake = FakeCloudWatch::default();
        for host in ["i-1", "i-2"] {
            fake.set("Klaxon", "cpu_usage_active", &[("InstanceId", host)], 20.0);
        }
        let metrics = MetricSource::with_api(fake.clone(), Duration::from_secs(60));
        // Pacing is governor's real clock: unpaced here, tested on its own.
        let logs = LogSource::with_api(fake.clone(), 10_000);
        let mut evaluator = Evaluator::new(metrics, logs, &dir.path().join("state")).expect("new");
        let mut now = 1_800_000_000;
        assert!(seen(&evaluator.cycle(&rules, now).await).is_empty());

        fake.set("Klaxon", "cpu_usage_active", &[("InstanceId", "i-1")], 97.0);
        for n in 0..4 {
            fake.log("/web/nginx/error", "web-1", (now + 1) * 1000 + n, "upstream timed out");
        }
        let mut fired = Vec::new();
        for _ in 0..6 {
            now += 10;
            fired.extend(seen(&evaluator.cycle(&rules, now).await));
        }
        assert!(fired.contains(&("HighCpu".into(), Transition::Firing)), "{fired:?}");
        assert!(fired.contains(&("ErrorBurst".into(), Transition::Firing)), "{fired:?}");
        // The burst's 20 s window passes without new errors.
        assert!(fired.contains(&("ErrorBurst".into(), Transition::Resolved)), "{fired:?}");

        // Faults: no rule resolves or fires, one degraded alert fires.
        fake.fail_next(&[Fault::Throttle, Fault::ExpiredToken, Fault::ServerError, Fault::Timeout]);
        fake.set("Klaxon", "cpu_usage_active", &[("InstanceId", "i-1")], 20.0);
        let mut during = Vec::new();
        for _ in 0..3 {
            now += 10;
            during.extend(seen(&evaluator.cycle(&rules, now).await));
        }
        assert_eq!(during, [(SOURCE_DEGRADED.to_owned(), Transition::Firing)]);

        // Back: the host and the burst resolve, and so does the degraded alert.
        let mut after = Vec::new();
        for _ in 0..90 {
            now += 10;
            after.extend(seen(&evaluator.cycle(&rules, now).await));
        }
        for rule in ["HighCpu", SOURCE_DEGRADED] {
            assert!(after.contains(&(rule.to_owned(), Transition::Resolved)), "{rule}: {after:?}");
        }
        assert!(!after.iter().any(|(rule, t)| rule == "HighCpu" && *t == Transition::Firing));
        assert!(fake.calls() > 10);
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    }

    #[test]
    fn expression_names_are_replaced_as_whole_words() {
        assert_eq!(
            replace_word("100 * errors / requests", "errors", "errors_3"),
            "100 * errors_3 / requests"
        );
        assert_eq!(replace_word("errorsx + errors", "errors", "e_1"), "errorsx + e_1");
    }

    #[test]
    fn periods_line_up_with_missing_ones_as_none() {
        let points = [(60, 1.0), (180, 3.0)];
        assert_eq!(periods(&points, 60, 60, 3), [Some(1.0), None, Some(3.0)]);
        assert_eq!(periods(&[], 60, 60, 2), [None, None]);
    }
}
