//! `klaxon rules check`: rule files to [`Rule`]s, or every problem found, each located
//! as FILE:LINE:COL and naming its rule.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::model::{
    Datapoints, Flap, MetricQuery, NoData, RawRule, Rule, RuleFile, RuleKind, RuleSource, Threshold,
};
use super::pattern::check_filter_pattern;
use super::statistic::check_statistic;
use super::template::placeholders;
use klaxon_common::diagnostic::{Problem, Problems};

/// Flap detection's defaults: more than 6 firing/resolved changes in an hour.
const DEFAULT_FLAP_CHANGES: u32 = 6;
const DEFAULT_FLAP_WINDOW: Duration = Duration::from_secs(3600);

/// Rule test files sit beside the rules and are not rules themselves.
pub const TEST_FILE_SUFFIX: &str = ".test.toml";

/// The rule files under `paths`: files as given, folders' `*.toml` (sorted), tests left out.
pub fn rule_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Problems> {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        if path.is_dir() {
            match std::fs::read_dir(path) {
                Ok(entries) => {
                    let mut found: Vec<PathBuf> = entries
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| is_rule_file(p))
                        .collect();
                    found.sort();
                    files.extend(found);
                }
                Err(error) => {
                    problems.push(Problem::whole_file(path, format!("cannot read: {error}")))
                }
            }
        } else {
            files.push(path.clone());
        }
    }
    if problems.is_empty() { Ok(files) } else { Err(Problems(problems)) }
}

fn is_rule_file(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    name.ends_with(".toml") && !name.ends_with(TEST_FILE_SUFFIX)
}

/// Loads and checks every rule of `files`; names must be unique across them all.
pub fn load_rules(files: &[PathBuf]) -> Result<Vec<Rule>, Problems> {
    let mut rules = Vec::new();
    let mut problems = Vec::new();
    let mut names: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in files {
        let source = match std::fs::read_to_string(file) {
            Ok(source) => source,
            Err(error) => {
                problems.push(Problem::whole_file(file, format!("cannot read: {error}")));
                continue;
            }
        };
        let parsed: RuleFile = match toml::from_str(&source) {
            Ok(parsed) => parsed,
            Err(error) => {
                problems.push(Problem::from_toml(file, &source, &error));
                continue;
            }
        };
        let mut checker =
            RuleChecker { file, source: &source, problems: &mut problems, rule: String::new() };
        for raw in &parsed.rule {
            let name = raw.name.get_ref().clone();
            checker.rule.clone_from(&name);
            if let Some(first) = names.get(&name) {
                checker.problem(
                    raw.name.span(),
                    format!("duplicate rule name (first in {})", first.display()),
                );
            } else {
                names.insert(name, file.clone());
            }
            if let Some(rule) = checker.rule(raw) {
                rules.push(rule);
            }
        }
    }
    if problems.is_empty() { Ok(rules) } else { Err(Problems(problems)) }
}

/// Checks one file's rules, adding problems that name the rule.
struct RuleChecker<'a> {
    file: &'a Path,
    source: &'a str,
    problems: &'a mut Vec<Problem>,
    /// The name of the rule being checked.
    rule: String,
}

impl RuleChecker<'_> {
    fn problem(&mut self, span: Range<usize>, message: impl Into<String>) {
        let message = format!("rule {:?}: {}", self.rule, message.into());
        self.problems.push(Problem::at(self.file, self.source, span, message));
    }

    fn duration(&mut self, value: &Spanned<String>, key: &str) -> Option<Duration> {
        match humantime::parse_duration(value.get_ref()) {
            Ok(duration) => Some(duration),
            Err(error) => {
                self.problem(
                    value.span(),
                    format!("{key}: invalid duration {:?}: {error}", value.get_ref()),
                );
                None
            }
        }
    }

    fn optional_duration(
        &mut self,
        value: &Option<Spanned<String>>,
        key: &str,
        default: Duration,
    ) -> Option<Duration> {
        match value {
            Some(value) => self.duration(value, key),
            None => Some(default),
        }
    }

    fn threshold(&mut self, value: &Spanned<String>, key: &str) -> Option<Threshold> {
        Threshold::parse(value.get_ref())
            .map_err(|error| self.problem(value.span(), format!("{key}: {error}")))
            .ok()
    }

    fn required<'v, T>(
        &mut self,
        value: &'v Option<Spanned<T>>,
        key: &str,
        raw: &RawRule,
    ) -> Option<&'v Spanned<T>> {
        if value.is_none() {
            let kind = kind_name(*raw.kind.get_ref());
            self.problem(raw.name.span(), format!("{kind} rule needs `{key}`"));
        }
        value.as_ref()
    }

    /// Keys given that the rule's kind does not use.
    fn not_for_kind(&mut self, raw: &RawRule, keys: &[(&str, Option<Range<usize>>)]) {
        let kind = kind_name(*raw.kind.get_ref());
        for (key, span) in keys {
            if let Some(span) = span {
                self.problem(span.clone(), format!("`{key}` does not apply to {kind} rule"));
            }
        }
    }

    fn rule(&mut self, raw: &RawRule) -> Option<Rule> {
        let before = self.problems.len();
        if raw.name.get_ref().trim().is_empty() {
            self.problem(raw.name.span(), "the name is empty");
        }
        if raw.severity.get_ref().trim().is_empty() {
            self.problem(raw.severity.span(), "the severity is empty");
        }
        let group_by: Vec<String> = raw.group_by.iter().map(|g| g.get_ref().clone()).collect();
        let source = match raw.kind.get_ref() {
            RuleKind::Metric => self.metric_source(raw),
            RuleKind::Log => self.log_source(raw),
            RuleKind::Absent => self.absent_source(raw),
        };
        self.templates(raw, &group_by);
        let flap = self.flap(raw);
        let source = source?;
        (self.problems.len() == before).then(|| Rule {
            name: raw.name.get_ref().clone(),
            kind: *raw.kind.get_ref(),
            severity: raw.severity.get_ref().clone(),
            summary: raw.summary.get_ref().clone(),
            description: raw.description.as_ref().map(|d| d.get_ref().clone()),
            runbook: raw.runbook.as_ref().map(|r| r.get_ref().clone()),
            labels: raw.labels.clone(),
            group_by,
            source,
            flap,
            file: self.file.to_owned(),
        })
    }

    /// Flap detection: default 6 changes in an hour; `flap_threshold = 0` turns it off.
    fn flap(&mut self, raw: &RawRule) -> Option<Flap> {
        let changes = raw.flap_threshold.as_ref().map_or(DEFAULT_FLAP_CHANGES, |t| *t.get_ref());
        let window =
            self.optional_duration(&raw.flap_window, "flap_window", DEFAULT_FLAP_WINDOW)?;
        (changes > 0 && *raw.kind.get_ref() != RuleKind::Absent).then_some(Flap { changes, window })
    }

    fn query(
        &mut self,
        namespace: &Spanned<String>,
        metric: &Spanned<String>,
        stat: &Spanned<String>,
        dimensions: &BTreeMap<String, String>,
    ) -> MetricQuery {
        if let Err(error) = check_statistic(stat.get_ref()) {
            self.problem(stat.span(), format!("stat: {error}"));
        }
        for (key, value) in [("namespace", namespace), ("metric", metric)] {
            if value.get_ref().trim().is_empty() {
                self.problem(value.span(), format!("{key} is empty"));
            }
        }
        MetricQuery {
            namespace: namespace.get_ref().clone(),
            metric: metric.get_ref().clone(),
            stat: stat.get_ref().clone(),
            dimensions: dimensions.clone(),
        }
    }

    fn metric_source(&mut self, raw: &RawRule) -> Option<RuleSource> {
        self.not_for_kind(
            raw,
            &[
                ("log_group", raw.log_group.as_ref().map(Spanned::span)),
                ("pattern", raw.pattern.as_ref().map(Spanned::span)),
                ("window", raw.window.as_ref().map(Spanned::span)),
            ],
        );
        let mut queries = BTreeMap::new();
        let expression = match (&raw.metrics, &raw.expression) {
            (Some(named), Some(expression)) => {
                for (id, query) in named.get_ref() {
                    let valid_id = id.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                    if !valid_id {
                        self.problem(
                            named.span(),
                            format!("query name {id:?} must start with a lower-case letter"),
                        );
                    }
                    let checked =
                        self.query(&query.namespace, &query.metric, &query.stat, &query.dimensions);
                    queries.insert(id.clone(), checked);
                }
                self.not_for_kind(
                    raw,
                    &[
                        ("namespace (with metrics)", raw.namespace.as_ref().map(Spanned::span)),
                        ("metric (with metrics)", raw.metric.as_ref().map(Spanned::span)),
                    ],
                );
                Some(expression.get_ref().clone())
            }
            (Some(named), None) => {
                self.problem(named.span(), "`metrics` needs an `expression`");
                None
            }
            (None, Some(expression)) => {
                self.problem(
                    expression.span(),
                    "`expression` needs named `[rule.metrics.NAME]` queries",
                );
                None
            }
            (None, None) => {
                let namespace = self.required(&raw.namespace, "namespace", raw);
                let metric = self.required(&raw.metric, "metric", raw);
                let stat = self.required(&raw.stat, "stat", raw);
                if let (Some(namespace), Some(metric), Some(stat)) = (namespace, metric, stat) {
                    let query = self.query(namespace, metric, stat, &raw.dimensions);
                    queries.insert("m".to_owned(), query);
                }
                None
            }
        };
        let period = self.optional_duration(&raw.period, "period", Duration::from_secs(60));
        if let (Some(period), Some(span)) = (period, raw.period.as_ref().map(Spanned::span)) {
            let secs = period.as_secs();
            if period.subsec_nanos() != 0
                || !(secs == 1 || secs == 5 || secs == 10 || secs == 30 || secs % 60 == 0)
                || secs == 0
            {
                self.problem(span, "period must be 1s, 5s, 10s, 30s or a multiple of 60s");
            }
        }
        let when = self.required(&raw.when, "when", raw).and_then(|w| self.threshold(w, "when"));
        let clear_when = raw.clear_when.as_ref().and_then(|c| self.threshold(c, "clear_when"));
        let for_ = self.optional_duration(&raw.for_, "for", Duration::ZERO);
        let keep_firing_for =
            self.optional_duration(&raw.keep_firing_for, "keep_firing_for", Duration::ZERO);
        let datapoints = match &raw.datapoints {
            Some(text) => Datapoints::parse(text.get_ref())
                .map_err(|error| self.problem(text.span(), format!("datapoints: {error}")))
                .ok(),
            None => Some(Datapoints { breaching: 1, of: 1 }),
        };
        if queries.is_empty() {
            return None;
        }
        Some(RuleSource::Metric {
            queries,
            expression,
            period: period?,
            when: when?,
            clear_when,
            for_: for_?,
            datapoints: datapoints?,
            keep_firing_for: keep_firing_for?,
            no_data: raw.no_data.as_ref().map_or(NoData::Ok, |n| *n.get_ref()),
        })
    }

    fn log_source(&mut self, raw: &RawRule) -> Option<RuleSource> {
        self.not_for_kind(raw, &metric_only_keys(raw));
        for group in &raw.group_by {
            if group.get_ref() != "stream" {
                self.problem(group.span(), "a log rule groups by `stream` or nothing");
            }
        }
        let log_group = self.required(&raw.log_group, "log_group", raw);
        let pattern = self.required(&raw.pattern, "pattern", raw);
        if let Some(pattern) = pattern
            && let Err(error) = check_filter_pattern(pattern.get_ref())
        {
            self.problem(pattern.span(), format!("pattern: {error}"));
        }
        let window =
            self.required(&raw.window, "window", raw).and_then(|w| self.duration(w, "window"));
        let when = self.required(&raw.when, "when", raw).and_then(|w| self.threshold(w, "when"));
        Some(RuleSource::Log {
            log_group: log_group?.get_ref().clone(),
            pattern: pattern?.get_ref().clone(),
            window: window?,
            when: when?,
        })
    }

    fn absent_source(&mut self, raw: &RawRule) -> Option<RuleSource> {
        self.not_for_kind(
            raw,
            &[
                ("when", raw.when.as_ref().map(Spanned::span)),
                ("log_group", raw.log_group.as_ref().map(Spanned::span)),
                ("pattern", raw.pattern.as_ref().map(Spanned::span)),
                ("window", raw.window.as_ref().map(Spanned::span)),
                ("expression", raw.expression.as_ref().map(Spanned::span)),
            ],
        );
        let namespace = self.required(&raw.namespace, "namespace", raw);
        let metric = self.required(&raw.metric, "metric", raw);
        let for_ = self.required(&raw.for_, "for", raw).and_then(|f| self.duration(f, "for"));
        let period = self.optional_duration(&raw.period, "period", Duration::from_secs(60));
        let (namespace, metric) = (namespace?, metric?);
        let stat = Spanned::new(0..0, "SampleCount".to_owned());
        let query = self.query(namespace, metric, &stat, &raw.dimensions);
        Some(RuleSource::Absent { query, for_: for_?, period: period? })
    }

    /// Templates may name `value`, `rule`, `severity`, and the labels the rule can have.
    fn templates(&mut self, raw: &RawRule, group_by: &[String]) {
        let mut known: Vec<String> =
            ["value", "rule", "severity"].iter().map(|s| (*s).to_owned()).collect();
        known.extend(group_by.iter().cloned());
        known.extend(raw.labels.keys().cloned());
        known.extend(raw.dimensions.keys().cloned());
        let texts = [Some(&raw.summary), raw.description.as_ref(), raw.runbook.as_ref()];
        for text in texts.into_iter().flatten() {
            match placeholders(text.get_ref()) {
                Ok(names) => {
                    for name in names.into_iter().filter(|n| !known.contains(n)) {
                        self.problem(text.span(), format!("the template names {{{{{name}}}}}, a label this rule cannot have (it has: {})", known.join(", ")));
                    }
                }
                Err(error) => self.problem(text.span(), format!("template: {error}")),
            }
        }
    }
}

fn metric_only_keys(raw: &RawRule) -> Vec<(&'static str, Option<Range<usize>>)> {
    vec![
        ("namespace", raw.namespace.as_ref().map(Spanned::span)),
        ("metric", raw.metric.as_ref().map(Spanned::span)),
        ("stat", raw.stat.as_ref().map(Spanned::span)),
        ("period", raw.period.as_ref().map(Spanned::span)),
        ("for", raw.for_.as_ref().map(Spanned::span)),
        ("datapoints", raw.datapoints.as_ref().map(Spanned::span)),
        ("clear_when", raw.clear_when.as_ref().map(Spanned::span)),
        ("keep_firing_for", raw.keep_firing_for.as_ref().map(Spanned::span)),
        ("no_data", raw.no_data.as_ref().map(Spanned::span)),
        ("metrics", raw.metrics.as_ref().map(Spanned::span)),
        ("expression", raw.expression.as_ref().map(Spanned::span)),
    ]
}

/// The kind with its article, for messages: "a metric", "an absent".
fn kind_name(kind: RuleKind) -> &'static str {
    match kind {
        RuleKind::Metric => "a metric",
        RuleKind::Log => "a log",
        RuleKind::Absent => "an absent",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(files: &[(&str, &str)]) -> Result<Vec<Rule>, Vec<String>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut paths = Vec::new();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            paths.push(path);
        }
        load_rules(&paths).map_err(|Problems(problems)| {
            problems
                .iter()
                .map(|p| {
                    let file = p.file.file_name().unwrap_or_default().to_string_lossy();
                    format!("{file}:{}:{}: {}", p.line, p.column, p.message)
                })
                .collect()
        })
    }

    const DESIGN_RULES: &str = r#"
[[rule]]
name = "HighCpu"
kind = "metric"
severity = "critical"
summary = "CPU {{value}}% on {{InstanceId}}"
namespace = "Klaxon"
metric = "cpu_usage_active"
stat = "Average"
period = "60s"
dimensions = { AutoScalingGroupName = "web" }
group_by = ["InstanceId"]
when = "> 90"
for = "5m"

[[rule]]
name = "CheckoutErrors"
kind = "log"
severity = "warning"
summary = "{{value}} errors on {{stream}} in 5m"
log_group = "/web/app"
pattern = '"ERROR" "checkout"'
window = "5m"
group_by = ["stream"]
when = ">= 20"

[[rule]]
name = "HostDown"
kind = "absent"
severity = "critical"
summary = "no heartbeat from {{InstanceId}}"
namespace = "Klaxon"
metric = "klaxon_heartbeat"
group_by = ["InstanceId"]
for = "3m"
"#;

    #[test]
    fn the_design_examples_are_valid_rules() {
        let rules = check(&[("hosts.toml", DESIGN_RULES)]).expect("valid");
        let names: Vec<_> = rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["HighCpu", "CheckoutErrors", "HostDown"]);
        let RuleSource::Metric { when, for_, datapoints, .. } = &rules[0].source else {
            panic!("a metric rule");
        };
        assert!(when.holds(90.5) && !when.holds(90.0));
        assert_eq!(*for_, Duration::from_secs(300));
        assert_eq!(*datapoints, Datapoints { breaching: 1, of: 1 });
    }

    #[test]
    fn every_problem_is_located_and_names_its_rule() {
        let broken = r#"
[[rule]]
name = "A"
kind = "metric"
severity = "warning"
summary = "{{value}} on {{host}}"
namespace = "Klaxon"
metric = "m"
stat = "avg"
period = "7s"
when = "about 90"
datapoints = "4/3"
pattern = "x"

[[rule]]
name = "B"
kind = "log"
severity = "warning"
summary = "x"
log_group = "/g"
pattern = '"unclosed'
window = "five minutes"
when = "> 1"
group_by = ["InstanceId"]
"#;
        let found = check(&[("one.toml", broken), ("two.toml", "[[rule]]\nname = \"A\"\nkind = \"absent\"\nseverity = \"x\"\nsummary = \"s\"\nnamespace = \"n\"\nmetric = \"m\"\nfor = \"3m\"\n")])
            .expect_err("broken");
        let expected = [
            "one.toml:13:11: rule \"A\": `pattern` does not apply to a metric rule",
            "one.toml:9:8: rule \"A\": stat: \"avg\" is not a CloudWatch statistic",
            "one.toml:10:10: rule \"A\": period must be 1s, 5s, 10s, 30s or a multiple of 60s",
            "one.toml:11:8: rule \"A\": when: \"about 90\" must start with one of",
            "one.toml:12:14: rule \"A\": datapoints: \"4/3\" is not M/N",
            "one.toml:6:11: rule \"A\": the template names {{host}}, a label this rule cannot have",
            "one.toml:24:13: rule \"B\": a log rule groups by `stream` or nothing",
            "one.toml:21:11: rule \"B\": pattern: an unclosed quote",
            "one.toml:22:10: rule \"B\": window: invalid duration \"five minutes\"",
            "two.toml:2:8: rule \"A\": duplicate rule name (first in",
        ];
        assert_eq!(found.len(), expected.len(), "{found:#?}");
        for (got, prefix) in found.iter().zip(expected) {
            assert!(got.starts_with(prefix), "{got:?}\nshould start with\n{prefix:?}");
        }
    }

    #[test]
    fn syntax_and_unknown_keys_are_located() {
        let found =
            check(&[("bad.toml", "[[rule]]\nname = \"A\"\nkind = \"metric\"\ncolour = \"red\"\n")])
                .expect_err("unknown key");
        assert_eq!(found.len(), 1);
        assert!(found[0].starts_with("bad.toml:4:1: unknown field `colour`"), "{found:?}");
    }
}
