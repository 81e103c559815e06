//! The aggregator's configuration file (`/etc/klaxon/aggregator.toml`): where the rules
//! are, where state lives, how often to evaluate, and the notification routes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::notify::policy::Policy;
use crate::notify::settings::{InhibitConfig, MuteConfig, Route};
use klaxon_common::config_file::{self, duration};
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

const fn default_max_notifications_per_hour() -> u32 {
    120
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/klaxon-aggregator")
}
const fn default_evaluation_interval() -> Duration {
    Duration::from_secs(60)
}

impl AggregatorConfig {
    /// The notification policy these tables compile to.
    pub fn policy(&self) -> Result<Policy, Vec<(std::ops::Range<usize>, String)>> {
        Policy::compile(&self.route, &self.mute, &self.inhibit, self.max_notifications_per_hour)
    }

    /// Reads and checks `file`; the rules path is made absolute against its folder.
    pub fn load(file: &Path) -> Result<AggregatorConfig, Problems> {
        let (source, mut config): (String, AggregatorConfig) = config_file::load(file)?;
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
        if let Err(errors) = config.policy() {
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
    use crate::notify::settings::Structure;

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
