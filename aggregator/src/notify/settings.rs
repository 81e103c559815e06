//! The notification tables of `aggregator.toml` as written: `[[route]]`, `[[mute]]` and
//! `[[inhibit]]`, with their defaults. `policy.rs` compiles them.

use std::collections::BTreeMap;
use std::time::Duration;

use klaxon_common::config_file::duration;
use serde::Deserialize;
use toml::Spanned;

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
fn default_time_zone() -> String {
    "UTC".to_owned()
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
