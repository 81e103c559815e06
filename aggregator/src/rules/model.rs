//! Rule files as written (`[[rule]]` tables, unknown keys refused) and as checked.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::Refused;

/// A rule file: `[[rule]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    #[serde(default)]
    pub rule: Vec<RawRule>,
}

/// What a rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleKind {
    /// A CloudWatch metric (or metric math) against a threshold.
    Metric,
    /// Matches of a CloudWatch Logs filter pattern counted over a window.
    Log,
    /// A series that reported before and has gone silent.
    Absent,
}

/// How a metric rule treats periods without data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoData {
    /// Missing data is not breaching.
    #[default]
    Ok,
    /// Missing data is breaching.
    Alerting,
    /// Missing data keeps the last state.
    Keep,
}

/// One named query of a metric-math rule (`[rule.metrics.NAME]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuery {
    pub namespace: Spanned<String>,
    pub metric: Spanned<String>,
    pub stat: Spanned<String>,
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
}

/// A `[[rule]]` as written; every key of every kind, checked against its kind later.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: Spanned<String>,
    pub kind: Spanned<RuleKind>,
    pub severity: Spanned<String>,
    pub summary: Spanned<String>,
    pub description: Option<Spanned<String>>,
    pub runbook: Option<Spanned<String>>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    // metric and absent rules
    pub namespace: Option<Spanned<String>>,
    pub metric: Option<Spanned<String>>,
    pub stat: Option<Spanned<String>>,
    pub period: Option<Spanned<String>>,
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
    #[serde(default)]
    pub group_by: Vec<Spanned<String>>,
    pub when: Option<Spanned<String>>,
    #[serde(rename = "for")]
    pub for_: Option<Spanned<String>>,
    pub datapoints: Option<Spanned<String>>,
    pub clear_when: Option<Spanned<String>>,
    pub keep_firing_for: Option<Spanned<String>>,
    pub no_data: Option<Spanned<NoData>>,
    pub metrics: Option<Spanned<BTreeMap<String, RawQuery>>>,
    pub expression: Option<Spanned<String>>,
    // log rules
    pub log_group: Option<Spanned<String>>,
    pub pattern: Option<Spanned<String>>,
    pub window: Option<Spanned<String>>,
    // any kind but absent
    /// More firing/resolved changes than this within `flap_window` mark the series flapping.
    pub flap_threshold: Option<Spanned<u32>>,
    pub flap_window: Option<Spanned<String>>,
}

/// A comparison against a threshold: `> 90`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub op: Comparison,
    pub value: f64,
}

/// The comparison operators of `when` and `clear_when`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Greater,
    GreaterOrEqual,
    Less,
    LessOrEqual,
    Equal,
    NotEqual,
}

impl Threshold {
    /// Whether `value` breaches.
    pub fn holds(&self, value: f64) -> bool {
        match self.op {
            Comparison::Greater => value > self.value,
            Comparison::GreaterOrEqual => value >= self.value,
            Comparison::Less => value < self.value,
            Comparison::LessOrEqual => value <= self.value,
            Comparison::Equal => value == self.value,
            Comparison::NotEqual => value != self.value,
        }
    }

    /// Parses `> 90`, `<= 0.5`, `== 0`.
    pub fn parse(text: &str) -> Result<Threshold, Refused> {
        let text = text.trim();
        let operators = [
            (">=", Comparison::GreaterOrEqual),
            ("<=", Comparison::LessOrEqual),
            ("==", Comparison::Equal),
            ("!=", Comparison::NotEqual),
            (">", Comparison::Greater),
            ("<", Comparison::Less),
        ];
        let Some((symbol, op)) = operators.iter().find(|(symbol, _)| text.starts_with(symbol))
        else {
            return Err(Refused(format!("{text:?} must start with one of > >= < <= == !=")));
        };
        let number = text[symbol.len()..].trim();
        match number.parse::<f64>() {
            Ok(value) if value.is_finite() => Ok(Threshold { op: *op, value }),
            _ => Err(Refused(format!("{number:?} is not a number"))),
        }
    }
}

/// `datapoints = "M/N"`: fire when M of the last N periods breach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datapoints {
    pub breaching: u32,
    pub of: u32,
}

impl Datapoints {
    pub fn parse(text: &str) -> Result<Datapoints, Refused> {
        let (m, n) = text.split_once('/').ok_or_else(|| Refused(format!("{text:?} is not M/N")))?;
        let (breaching, of) = (m.trim().parse::<u32>(), n.trim().parse::<u32>());
        match (breaching, of) {
            (Ok(breaching), Ok(of)) if breaching >= 1 && breaching <= of => {
                Ok(Datapoints { breaching, of })
            }
            _ => Err(Refused(format!("{text:?} is not M/N with 1 <= M <= N"))),
        }
    }
}

/// A rule that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub kind: RuleKind,
    pub severity: String,
    pub summary: String,
    pub description: Option<String>,
    pub runbook: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub group_by: Vec<String>,
    pub source: RuleSource,
    /// Flap detection (on by default: 6 changes in an hour).
    pub flap: Option<Flap>,
    /// The file the rule came from.
    pub file: std::path::PathBuf,
}

/// What each kind of rule reads and decides on.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleSource {
    Metric {
        /// A single metric, or the named queries of an expression.
        queries: BTreeMap<String, MetricQuery>,
        /// Metric math over the queries, evaluated by GetMetricData.
        expression: Option<String>,
        period: Duration,
        when: Threshold,
        clear_when: Option<Threshold>,
        for_: Duration,
        datapoints: Datapoints,
        keep_firing_for: Duration,
        no_data: NoData,
    },
    Log {
        log_group: String,
        pattern: String,
        window: Duration,
        when: Threshold,
    },
    Absent {
        query: MetricQuery,
        for_: Duration,
        /// The resolution at which silence is measured (default 60 s).
        period: Duration,
    },
}

/// One CloudWatch metric and statistic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricQuery {
    pub namespace: String,
    pub metric: String,
    pub stat: String,
    pub dimensions: BTreeMap<String, String>,
}

/// Flap detection: more than `changes` firing/resolved changes within `window` hold the
/// series firing until it has been stable for `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flap {
    pub changes: u32,
    pub window: Duration,
}
