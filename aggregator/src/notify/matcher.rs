//! Label matchers shared by routes, silences, mute windows and inhibitions:
//! `label = "value"` matches exactly, `label = "=~regex"` matches the whole value.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;

use crate::engine::evaluate::Labels;

/// One label test.
#[derive(Debug, Clone)]
pub enum Matcher {
    Exact { label: String, value: String },
    Regex { label: String, pattern: String, regex: Regex },
}

/// Why a matcher is refused.
#[derive(Debug, thiserror::Error)]
pub enum MatcherError {
    #[error("match {label}: invalid regex {pattern:?}: {source}")]
    Regex { label: String, pattern: String, source: regex::Error },
    #[error("matcher {0:?} is not label=value or label=~regex")]
    NotAMatcher(String),
    #[error("matcher {0:?} has no label name")]
    NoLabel(String),
}

impl Matcher {
    /// `value` exact, or `=~pattern` (anchored at both ends, like Alertmanager's).
    pub fn new(label: &str, value: &str) -> Result<Matcher, MatcherError> {
        match value.strip_prefix("=~") {
            Some(pattern) => {
                let regex = Regex::new(&format!("^(?:{pattern})$")).map_err(|source| {
                    MatcherError::Regex {
                        label: label.to_owned(),
                        pattern: pattern.to_owned(),
                        source,
                    }
                })?;
                Ok(Matcher::Regex { label: label.to_owned(), pattern: pattern.to_owned(), regex })
            }
            None => Ok(Matcher::Exact { label: label.to_owned(), value: value.to_owned() }),
        }
    }

    /// `label=value` or `label=~regex`, as the command line takes them.
    pub fn parse(text: &str) -> Result<Matcher, MatcherError> {
        let (label, rest) =
            text.split_once('=').ok_or_else(|| MatcherError::NotAMatcher(text.to_owned()))?;
        let label = label.trim();
        if label.is_empty() {
            return Err(MatcherError::NoLabel(text.to_owned()));
        }
        match rest.strip_prefix('~') {
            Some(pattern) => Matcher::new(label, &format!("=~{pattern}")),
            None => Matcher::new(label, rest),
        }
    }

    /// Whether the alert's label (missing: the empty string) passes.
    pub fn matches(&self, labels: &Labels) -> bool {
        match self {
            Matcher::Exact { label, value } => {
                labels.get(label).map_or(value.is_empty(), |have| have == value)
            }
            Matcher::Regex { label, regex, .. } => {
                regex.is_match(labels.get(label).map_or("", String::as_str))
            }
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Matcher::Exact { label, value } => write!(f, "{label}={value}"),
            Matcher::Regex { label, pattern, .. } => write!(f, "{label}=~{pattern}"),
        }
    }
}

/// Every matcher must pass; none matches everything.
#[derive(Debug, Clone, Default)]
pub struct Matchers(pub Vec<Matcher>);

impl Matchers {
    /// From a config table (`match = { severity = "critical" }`).
    pub fn from_map(map: &BTreeMap<String, String>) -> Result<Matchers, MatcherError> {
        map.iter()
            .map(|(label, value)| Matcher::new(label, value))
            .collect::<Result<_, _>>()
            .map(Matchers)
    }

    /// From command-line matchers (`label=value`, `label=~regex`).
    pub fn parse<S: AsRef<str>>(texts: &[S]) -> Result<Matchers, MatcherError> {
        texts
            .iter()
            .map(|text| Matcher::parse(text.as_ref()))
            .collect::<Result<_, _>>()
            .map(Matchers)
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.0.iter().all(|matcher| matcher.matches(labels))
    }
}

impl fmt::Display for Matchers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let texts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&texts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn exact_and_anchored_regex_matchers() {
        let alert = labels(&[("severity", "critical"), ("InstanceId", "i-0123")]);
        assert!(Matchers::parse(&["severity=critical"]).expect("valid").matches(&alert));
        assert!(!Matchers::parse(&["severity=warning"]).expect("valid").matches(&alert));
        assert!(Matchers::parse(&["InstanceId=~i-01.*"]).expect("valid").matches(&alert));
        // Anchored: a regex must match the whole value.
        assert!(!Matchers::parse(&["InstanceId=~01"]).expect("valid").matches(&alert));
        // A missing label is the empty string.
        assert!(Matchers::parse(&["team="]).expect("valid").matches(&alert));
        assert!(!Matchers::parse(&["team=web"]).expect("valid").matches(&alert));
        let both = Matchers::parse(&["severity=critical", "InstanceId=~i-9.*"]).expect("valid");
        assert!(!both.matches(&alert));
        assert_eq!(both.to_string(), "severity=critical,InstanceId=~i-9.*");
    }

    #[test]
    fn bad_matchers_name_the_offending_text() {
        let error = Matcher::parse("severity").expect_err("no =");
        assert!(error.to_string().contains("\"severity\""), "{error}");
        let error = Matcher::parse("host=~(").expect_err("bad regex");
        assert!(error.to_string().contains("invalid regex \"(\""), "{error}");
        assert!(Matcher::parse("=x").is_err());
    }
}
