//! `klaxon rules test`: rule unit tests in `*.test.toml` files beside the rules, run on
//! the engine with made-up series, no AWS. promtool's `test rules`, for these rule kinds.
//!
//! ```toml
//! rule_files = ["hosts.toml"]          # relative to this file
//! interval = "1m"                      # one value per interval
//!
//! [[test]]
//! name = "one hot host fires, the others stay quiet"
//! [[test.series]]                      # metric datapoints (or, for metric math, metric = the rule's name)
//! metric = "cpu_usage_active"
//! labels = { InstanceId = "i-01", cpu = "cpu-total" }
//! values = "50 95x12 50x3"             # "_" is a period without data
//! [[test.logs]]                        # log matches per window, per stream
//! log_group = "/web/app"
//! labels = { stream = "i-01" }
//! values = "0 30x3"
//! [[test.expect]]
//! at = "10m"
//! rule = "HighCpu"
//! firing = [{ labels = { InstanceId = "i-01" }, summary = "CPU 95% on i-01 for 10 minutes" }]
//! pending = []                         # optional
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::engine::evaluate::{Engine, Labels, Observation, template_values};
use crate::engine::state::Phase;
use crate::rules::check::{TEST_FILE_SUFFIX, load_rules};
use crate::rules::model::{Rule, RuleSource};
use crate::rules::template::render;
use klaxon_common::config_file;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    rule_files: Vec<PathBuf>,
    #[serde(default = "default_interval")]
    interval: String,
    #[serde(default)]
    test: Vec<TestCase>,
}

fn default_interval() -> String {
    "1m".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestCase {
    name: String,
    #[serde(default)]
    series: Vec<SeriesInput>,
    #[serde(default)]
    logs: Vec<LogInput>,
    #[serde(default)]
    expect: Vec<Expectation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeriesInput {
    metric: String,
    #[serde(default)]
    labels: Labels,
    values: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogInput {
    log_group: String,
    #[serde(default)]
    labels: Labels,
    values: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expectation {
    at: String,
    rule: String,
    #[serde(default)]
    firing: Vec<ExpectedAlert>,
    pending: Option<Vec<ExpectedAlert>>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedAlert {
    labels: Labels,
    summary: Option<String>,
}

/// The outcome of the tests of one or more files.
#[derive(Debug, Default)]
pub struct Report {
    pub passed: usize,
    /// One text per failed expectation: file, test, time, expected and got.
    pub failures: Vec<String>,
}

/// The rule test files under `paths` (files as given, `*.test.toml` in folders).
pub fn test_files(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            found.retain(|p| p.to_string_lossy().ends_with(TEST_FILE_SUFFIX));
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    files
}

/// A test file that cannot be run: unreadable, invalid, or naming what is not there;
/// the message names the file, the test and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadTestFile(String);

impl From<String> for BadTestFile {
    fn from(message: String) -> Self {
        BadTestFile(message)
    }
}

/// Runs every test of `file`.
pub fn run_file(file: &Path, report: &mut Report) -> Result<(), BadTestFile> {
    let (_, parsed): (String, TestFile) =
        config_file::load(file).map_err(|problems| problems.to_string())?;
    let folder = file.parent().unwrap_or(Path::new("."));
    let rule_paths: Vec<PathBuf> = parsed.rule_files.iter().map(|p| folder.join(p)).collect();
    let rules = load_rules(&rule_paths).map_err(|problems| problems.to_string())?;
    let step = humantime::parse_duration(&parsed.interval)
        .map_err(|e| format!("{}: interval {:?}: {e}", file.display(), parsed.interval))?;
    for case in &parsed.test {
        run_case(file, case, &rules, step, report)?;
    }
    Ok(())
}

fn run_case(
    file: &Path,
    case: &TestCase,
    rules: &[Rule],
    step: Duration,
    report: &mut Report,
) -> Result<(), BadTestFile> {
    let where_ = |what: &str| format!("{} test {:?}: {what}", file.display(), case.name);
    let series: Vec<(&SeriesInput, Vec<Option<f64>>)> = case
        .series
        .iter()
        .map(|s| expand_values(&s.values).map(|v| (s, v)).map_err(|e| where_(&e.0)))
        .collect::<Result<_, _>>()?;
    let logs: Vec<(&LogInput, Vec<Option<f64>>)> = case
        .logs
        .iter()
        .map(|l| expand_values(&l.values).map(|v| (l, v)).map_err(|e| where_(&e.0)))
        .collect::<Result<_, _>>()?;
    let mut expectations: BTreeMap<i64, Vec<&Expectation>> = BTreeMap::new();
    for expectation in &case.expect {
        let at = humantime::parse_duration(&expectation.at)
            .map_err(|e| where_(&format!("at {:?}: {e}", expectation.at)))?;
        if !rules.iter().any(|r| r.name == expectation.rule) {
            return Err(
                where_(&format!("no rule named {:?} in the rule files", expectation.rule)).into()
            );
        }
        expectations.entry(at.as_secs() as i64).or_default().push(expectation);
    }
    let step_secs = step.as_secs().max(1) as i64;
    let last = expectations.keys().next_back().copied().unwrap_or(0);
    let mut engine = Engine::default();
    for index in 0..=(last / step_secs) {
        let now = index * step_secs;
        for rule in rules {
            let observation = observe(rule, &series, &logs, index as usize, step_secs);
            engine.evaluate(rule, &observation, now);
        }
        for expectation in expectations.get(&now).into_iter().flatten() {
            let rule = rules
                .iter()
                .find(|r| r.name == expectation.rule)
                .ok_or_else(|| where_("rule vanished"))?;
            compare(file, case, expectation, rule, &engine, report);
        }
    }
    Ok(())
}

/// What the rule's query would have returned at step `index`.
fn observe(
    rule: &Rule,
    series: &[(&SeriesInput, Vec<Option<f64>>)],
    logs: &[(&LogInput, Vec<Option<f64>>)],
    index: usize,
    step_secs: i64,
) -> Observation {
    let labels_of = |labels: &Labels| -> Labels {
        rule.group_by.iter().filter_map(|k| labels.get(k).map(|v| (k.clone(), v.clone()))).collect()
    };
    match &rule.source {
        RuleSource::Metric { queries, expression, .. } => {
            let wanted = |input: &SeriesInput| match expression {
                Some(_) => input.metric == rule.name,
                None => queries.values().any(|q| {
                    q.metric == input.metric
                        && q.dimensions.iter().all(|(k, v)| input.labels.get(k) == Some(v))
                }),
            };
            Observation::Datapoints(
                series
                    .iter()
                    .filter(|(input, _)| wanted(input))
                    .map(|(input, values)| {
                        (labels_of(&input.labels), values[..=index.min(values.len() - 1)].to_vec())
                    })
                    .collect(),
            )
        }
        RuleSource::Log { log_group, .. } => Observation::Matches(
            logs.iter()
                .filter(|(input, _)| input.log_group == *log_group)
                .filter_map(|(input, values)| {
                    Some((labels_of(&input.labels), (*values.get(index)?)?))
                })
                .collect(),
        ),
        RuleSource::Absent { query, .. } => Observation::LastSeen(
            series
                .iter()
                .filter(|(input, _)| input.metric == query.metric)
                .filter_map(|(input, values)| {
                    let upto = &values[..=index.min(values.len() - 1)];
                    let (at, value) =
                        upto.iter().enumerate().rev().find_map(|(i, v)| v.map(|v| (i, v)))?;
                    Some((labels_of(&input.labels), at as i64 * step_secs, value))
                })
                .collect(),
        ),
    }
}

fn compare(
    file: &Path,
    case: &TestCase,
    expectation: &Expectation,
    rule: &Rule,
    engine: &Engine,
    report: &mut Report,
) {
    let active = engine.active(&rule.name);
    let got = |firing: bool| -> Vec<ExpectedAlert> {
        let mut alerts: Vec<ExpectedAlert> = active
            .iter()
            .filter(|(_, phase, _)| matches!(phase, Phase::Firing { .. }) == firing)
            .map(|(labels, _, value)| ExpectedAlert {
                labels: labels.clone(),
                summary: Some(render(&rule.summary, &template_values(rule, labels, *value))),
            })
            .collect();
        alerts.sort();
        alerts
    };
    let mut checks = vec![("firing", expectation.firing.clone(), got(true))];
    if let Some(pending) = &expectation.pending {
        checks.push(("pending", pending.clone(), got(false)));
    }
    for (state, mut expected, mut actual) in checks {
        // An expectation without a summary does not check the summary.
        for (want, have) in expected.iter().zip(actual.iter_mut()) {
            if want.summary.is_none() {
                have.summary = None;
            }
        }
        expected.sort();
        actual.sort();
        if expected == actual {
            report.passed += 1;
        } else {
            let mut text = format!(
                "{} test {:?}: rule {} at {} ({state}):\n  expected:",
                file.display(),
                case.name,
                rule.name,
                expectation.at
            );
            for alert in &expected {
                let _ = write!(text, "\n    {alert:?}");
            }
            text.push_str("\n  got:");
            for alert in &actual {
                let _ = write!(text, "\n    {alert:?}");
            }
            report.failures.push(text);
        }
    }
}

/// Expands "0 0 95x6 _ _x2" into values: `vxN` repeats v N times, `_` is no data.
fn expand_values(text: &str) -> Result<Vec<Option<f64>>, BadTestFile> {
    let mut values = Vec::new();
    for token in text.split_whitespace() {
        let (value, times) = match token.split_once('x') {
            Some((value, times)) => (
                value,
                times.parse::<usize>().map_err(|_| {
                    BadTestFile(format!("{token:?}: the count after x is not a number"))
                })?,
            ),
            None => (token, 1),
        };
        let parsed = match value {
            "_" => None,
            number => Some(
                number
                    .parse::<f64>()
                    .map_err(|_| BadTestFile(format!("{token:?} is not a number or _")))?,
            ),
        };
        values.extend(std::iter::repeat_n(parsed, times));
    }
    if values.is_empty() {
        return Err(BadTestFile(format!("{text:?} has no values")));
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_expand_with_repeats_and_gaps() {
        assert_eq!(
            expand_values("0 95x3 _x2 1.5").expect("valid"),
            [Some(0.0), Some(95.0), Some(95.0), Some(95.0), None, None, Some(1.5)]
        );
        assert!(expand_values("9xx").is_err());
        assert!(expand_values("").is_err());
    }
}
