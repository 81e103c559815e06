//! One evaluation of one rule over the series CloudWatch returned for it: each series'
//! state moves, and what changed comes out as [`AlertChange`]s with rendered text.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::state::{Decision, Phase, Seconds, SeriesState, Transition};
use crate::rules::model::{Comparison, Datapoints, NoData, Rule, RuleSource, Threshold};
use crate::rules::template::render;

/// A series' labels: the rule's `group_by` dimensions (or `stream`) with their values.
pub type Labels = BTreeMap<String, String>;

/// What the engine hands the notifier.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AlertChange {
    pub rule: String,
    pub severity: String,
    /// The series' labels and the rule's static labels.
    pub labels: Labels,
    pub summary: String,
    pub description: Option<String>,
    pub runbook: Option<String>,
    /// Where the CloudWatch console shows the data: a URL fragment (`#metricsV2:…`)
    /// that the notifier prefixes with the console of its region.
    pub console: Option<String>,
    pub value: Option<f64>,
    pub transition: Transition,
    pub since: Seconds,
}

/// What one rule's query returned at one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// Recent datapoints per series, oldest first (None: a period without data).
    Datapoints(Vec<(Labels, Vec<Option<f64>>)>),
    /// Log matches in the rule's window per group; groups not listed had none.
    Matches(Vec<(Labels, f64)>),
    /// Per series: when it last reported, and its last value.
    LastSeen(Vec<(Labels, Seconds, f64)>),
}

/// How long an absent series is remembered after it went silent.
const FORGET_AFTER: Seconds = 24 * 3600;

/// Every series state of every rule.
#[derive(Debug, Default)]
pub struct Engine {
    /// Per rule name, per series labels.
    states: HashMap<String, HashMap<Labels, SeriesState>>,
}

impl Engine {
    /// An engine with saved series states (pending timers are not reset by a restart).
    pub fn restore(series: Vec<(String, Labels, SeriesState)>) -> Self {
        let mut engine = Engine::default();
        for (rule, labels, state) in series {
            engine.states.entry(rule).or_default().insert(labels, state);
        }
        engine
    }

    /// Every series state, for saving.
    pub fn snapshot(&self) -> Vec<(String, Labels, SeriesState)> {
        let mut out: Vec<_> = self
            .states
            .iter()
            .flat_map(|(rule, series)| {
                series
                    .iter()
                    .map(move |(labels, state)| (rule.clone(), labels.clone(), state.clone()))
            })
            .collect();
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    }

    /// Evaluates `rule` at `now` on what its query returned.
    pub fn evaluate(
        &mut self,
        rule: &Rule,
        observation: &Observation,
        now: Seconds,
    ) -> Vec<AlertChange> {
        let mut changes = Vec::new();
        match (&rule.source, observation) {
            (RuleSource::Metric { .. }, Observation::Datapoints(series)) => {
                let decision = decision_of(rule);
                for (labels, recent) in series {
                    self.step(rule, &decision, labels, recent, now, &mut changes);
                }
            }
            (RuleSource::Log { .. }, Observation::Matches(groups)) => {
                let decision = decision_of(rule);
                let mut seen: Vec<&Labels> = Vec::new();
                for (labels, count) in groups {
                    seen.push(labels);
                    self.step(rule, &decision, labels, &[Some(*count)], now, &mut changes);
                }
                // Groups that had no match this window count zero: a quiet window resolves.
                let quiet: Vec<Labels> = self
                    .states
                    .get(&rule.name)
                    .into_iter()
                    .flat_map(HashMap::keys)
                    .filter(|labels| !seen.contains(labels))
                    .cloned()
                    .collect();
                for labels in quiet {
                    self.step(rule, &decision, &labels, &[Some(0.0)], now, &mut changes);
                }
            }
            (RuleSource::Absent { for_, .. }, Observation::LastSeen(series)) => {
                let silent_secs = i64::try_from(for_.as_secs()).unwrap_or(i64::MAX);
                let decision = simple_decision(Threshold { op: Comparison::Greater, value: 0.0 });
                for (labels, last_seen, last_value) in series {
                    let silent = now - last_seen;
                    if silent >= FORGET_AFTER {
                        if let Some(series) = self.states.get_mut(&rule.name) {
                            series.remove(labels);
                        }
                        continue;
                    }
                    // The agent's goodbye (0) tells a scale-in from a dead host.
                    let missing = silent >= silent_secs && *last_value != 0.0;
                    let value = if missing { silent as f64 } else { 0.0 };
                    self.step(rule, &decision, labels, &[Some(value)], now, &mut changes);
                }
            }
            _ => {}
        }
        changes
    }

    fn step(
        &mut self,
        rule: &Rule,
        decision: &Decision,
        labels: &Labels,
        recent: &[Option<f64>],
        now: Seconds,
        changes: &mut Vec<AlertChange>,
    ) {
        let series = match self.states.get_mut(&rule.name) {
            Some(series) => series,
            None => self.states.entry(rule.name.clone()).or_default(),
        };
        let state = match series.get_mut(labels) {
            Some(state) => state,
            None => series.entry(labels.clone()).or_default(),
        };
        if let Some(transition) = state.evaluate(decision, recent, now) {
            changes.push(change(rule, labels, state, transition, now));
        }
    }

    /// The series of `rule` in the given phase kind, with their labels and latest value.
    pub fn active(&self, rule: &str) -> Vec<(Labels, Phase, Option<f64>)> {
        let mut out: Vec<_> = self
            .states
            .get(rule)
            .into_iter()
            .flat_map(HashMap::iter)
            .filter(|(_, state)| state.phase != Phase::Inactive)
            .map(|(labels, state)| (labels.clone(), state.phase, state.value))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

fn decision_of(rule: &Rule) -> Decision {
    match &rule.source {
        RuleSource::Metric {
            when, clear_when, datapoints, for_, keep_firing_for, no_data, ..
        } => Decision {
            when: *when,
            clear_when: *clear_when,
            datapoints: *datapoints,
            for_: *for_,
            keep_firing_for: *keep_firing_for,
            no_data: *no_data,
            flap: rule.flap,
        },
        RuleSource::Log { when, .. } => Decision { flap: rule.flap, ..simple_decision(*when) },
        RuleSource::Absent { .. } => {
            simple_decision(Threshold { op: Comparison::Greater, value: 0.0 })
        }
    }
}

/// One datapoint decides, at once.
fn simple_decision(when: Threshold) -> Decision {
    Decision {
        when,
        clear_when: None,
        datapoints: Datapoints { breaching: 1, of: 1 },
        for_: Duration::ZERO,
        keep_firing_for: Duration::ZERO,
        no_data: NoData::Ok,
        flap: None,
    }
}

/// A value as alert text shows it: whole numbers without decimals, others with two.
pub fn format_value(value: Option<f64>) -> String {
    match value {
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
        None => "no data".to_owned(),
    }
}

/// What a rule's templates may name for one series: its labels, the rule's static
/// labels, `value`, `rule` and `severity`.
pub fn template_values(rule: &Rule, labels: &Labels, value: Option<f64>) -> Labels {
    let mut values = rule.labels.clone();
    values.extend(labels.clone());
    values.insert("value".to_owned(), format_value(value));
    values.insert("rule".to_owned(), rule.name.clone());
    values.insert("severity".to_owned(), rule.severity.clone());
    values
}

fn change(
    rule: &Rule,
    labels: &Labels,
    state: &SeriesState,
    transition: Transition,
    now: Seconds,
) -> AlertChange {
    let mut all_labels = rule.labels.clone();
    all_labels.extend(labels.clone());
    let values = template_values(rule, labels, state.value);
    let since = match state.phase {
        Phase::Pending { since } | Phase::Firing { since, .. } => since,
        Phase::Inactive => now,
    };
    AlertChange {
        rule: rule.name.clone(),
        severity: rule.severity.clone(),
        labels: all_labels,
        summary: render(&rule.summary, &values),
        description: rule.description.as_ref().map(|d| render(d, &values)),
        runbook: rule.runbook.as_ref().map(|r| render(r, &values)),
        console: Some(console_fragment(rule, labels)),
        value: state.value,
        transition,
        since,
    }
}

/// The console page of a rule's data: a metrics search for the metric and the series'
/// label values, or the log group.
fn console_fragment(rule: &Rule, labels: &Labels) -> String {
    let search = |metric: &str| {
        let terms: Vec<&str> =
            std::iter::once(metric).chain(labels.values().map(String::as_str)).collect();
        format!("#metricsV2:graph=~();search={}", url_component(&terms.join(" ")))
    };
    match &rule.source {
        RuleSource::Metric { queries, .. } => {
            search(queries.values().next().map_or(rule.name.as_str(), |q| q.metric.as_str()))
        }
        RuleSource::Absent { query, .. } => search(&query.metric),
        // The console's own escaping of a log group name: `/` is `$252F`.
        RuleSource::Log { log_group, .. } => {
            format!("#logsV2:log-groups/log-group/{}", url_component(log_group).replace('%', "$25"))
        }
    }
}

/// Percent-encodes all but unreserved characters (RFC 3986).
fn url_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
