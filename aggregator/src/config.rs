//! The aggregator's configuration file (`/etc/klaxon/aggregator.toml`): where the rules
//! are, where state lives, how often to evaluate, and the notification routes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use toml::Spanned;

use crate::notify::policy::Policy;
use klaxon_common::diagnostic::{Problem, Problems};

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregatorConfig {
    /// A rule file or a folder of `*.toml`; relative to this file's folder.
    pub rules: PathBuf,
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default = "default_evaluation_interval", deserialize_with = "duration")]
    pub evaluation_interval: Duration,
    /// Notification routes; the first that matches an alert takes it.
    #[serde(default)]
    pub route: Vec<Route>,
    /// Messages all routes together may send in an hour (a safety net above the routes').
    #[serde(default = "default_max_notifications_per_hour")]
    pub max_notifications_per_hour: u32,
    /// Time-of-week windows in which matching alerts are not notified.
    #[serde(default)]
    pub mute: Vec<MuteConfig>,
    /// Alerts that hold others back while they fire.
    #[serde(default)]
    pub inhibit: Vec<InhibitConfig>,
}

/// `[[mute]]`: on `days`, from `from` to `to` (HH:MM, local to `time_zone`), matching
/// alerts are not notified. `to` before `from` runs across midnight.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MuteConfig {
    pub name: Option<String>,
    /// `mon` … `sun`, or ranges `mon-fri`; none: every day.
    #[serde(default)]
    pub days: Vec<String>,
    pub from: String,
    pub to: String,
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    #[serde(rename = "match", default = "match_everything")]
    pub matchers: Spanned<BTreeMap<String, String>>,
}

/// `[[inhibit]]`: while an alert matching `source` fires, alerts matching `target` with
/// the same values of the `equal` labels are not notified.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitConfig {
    pub source: Spanned<BTreeMap<String, String>>,
    pub target: Spanned<BTreeMap<String, String>>,
    #[serde(default)]
    pub equal: Vec<String>,
}

/// `[[route]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Label matchers: `value` exact, `=~regex` a regular expression. None: every alert.
    #[serde(rename = "match", default = "match_everything")]
    pub matchers: Spanned<BTreeMap<String, String>>,
    pub topic_arn: Spanned<String>,
    #[serde(default = "default_group_by")]
    pub group_by: Vec<String>,
    #[serde(default = "default_group_wait", deserialize_with = "duration")]
    pub group_wait: Duration,
    #[serde(default = "default_group_interval", deserialize_with = "duration")]
    pub group_interval: Duration,
    #[serde(default = "default_repeat_interval", deserialize_with = "duration")]
    pub repeat_interval: Duration,
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    /// Messages this route may send in an hour; what is held back is folded into the next.
    pub max_per_hour: Option<u32>,
    /// `json` (email/SMS bodies) or `string` (one body plus message attributes).
    #[serde(default)]
    pub structure: Structure,
}

/// The SNS message structure of a route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Structure {
    #[default]
    Json,
    String,
}

fn match_everything() -> Spanned<BTreeMap<String, String>> {
    Spanned::new(0..0, BTreeMap::new())
}
const fn default_max_notifications_per_hour() -> u32 {
    120
}
fn default_time_zone() -> String {
    "UTC".to_owned()
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/klaxon-aggregator")
}
const fn default_evaluation_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_group_by() -> Vec<String> {
    vec!["rule".to_owned()]
}
const fn default_group_wait() -> Duration {
    Duration::from_secs(30)
}
const fn default_group_interval() -> Duration {
    Duration::from_secs(300)
}
const fn default_repeat_interval() -> Duration {
    Duration::from_secs(4 * 3600)
}
const fn default_true() -> bool {
    true
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text)
        .map_err(|error| serde::de::Error::custom(format!("invalid duration {text:?}: {error}")))
}

impl AggregatorConfig {
    /// Reads and checks `file`; the rules path is made absolute against its folder.
    pub fn load(file: &Path) -> Result<AggregatorConfig, Problems> {
        let source = std::fs::read_to_string(file).map_err(|error| {
            Problems(vec![Problem::whole_file(file, format!("cannot read: {error}"))])
        })?;
        let mut config: AggregatorConfig = toml::from_str(&source)
            .map_err(|error| Problems(vec![Problem::from_toml(file, &source, &error)]))?;
        if config.rules.is_relative() {
            let folder = file.parent().unwrap_or(Path::new("."));
            config.rules = folder.join(&config.rules);
        }
        let mut problems = Vec::new();
        for route in &config.route {
            let arn = route.topic_arn.get_ref();
            let parts: Vec<&str> = arn.split(':').collect();
            if parts.len() != 6 || parts[..3] != ["arn", "aws", "sns"] || parts[5].is_empty() {
                let message = format!(
                    "topic_arn {arn:?} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)"
                );
                problems.push(Problem::at(file, &source, route.topic_arn.span(), message));
            }
            if route.max_per_hour == Some(0) {
                let message = "max_per_hour must be at least 1".to_owned();
                problems.push(Problem::at(file, &source, route.topic_arn.span(), message));
            }
        }
        if let Err(errors) = Policy::compile(&config) {
            for (span, message) in errors {
                problems.push(Problem::at(file, &source, span, message));
            }
        }
        if problems.is_empty() { Ok(config) } else { Err(Problems(problems)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<AggregatorConfig, Problems> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("aggregator.toml");
        std::fs::write(&path, text).expect("write");
        AggregatorConfig::load(&path).map(|mut config| {
            config.rules =
                config.rules.strip_prefix(dir.path()).unwrap_or(&config.rules).to_owned();
            config
        })
    }

    #[test]
    fn the_design_example_loads_with_defaults() {
        let config = load(
            r#"
rules = "rules"
state_dir = "/var/lib/klaxon-aggregator"
evaluation_interval = "60s"

[[route]]
match = { severity = "critical" }
topic_arn = "arn:aws:sns:us-east-1:123456789012:oncall-critical"
group_by = ["rule"]
group_wait = "30s"
group_interval = "5m"
repeat_interval = "4h"
"#,
        )
        .expect("valid");
        assert_eq!(config.rules, PathBuf::from("rules"));
        assert_eq!(config.route[0].repeat_interval, Duration::from_secs(4 * 3600));
        assert!(config.route[0].send_resolved);
        assert_eq!(config.route[0].structure, Structure::Json);
    }

    #[test]
    fn bad_arns_and_regexes_are_located() {
        let Err(Problems(found)) = load(
            "rules = \"r\"\n[[route]]\nmatch = { team = \"=~(web\" }\ntopic_arn = \"oncall\"\n",
        ) else {
            panic!("invalid");
        };
        let found: Vec<String> = found.iter().map(|p| format!("{}:{}", p.line, p.column)).collect();
        assert_eq!(found, ["4:13", "3:9"]);
    }
}
