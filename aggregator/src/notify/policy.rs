//! The notification policy of the aggregator config, compiled: routes (first match wins),
//! mute windows and inhibitions. Every problem is returned with the config span it is at.

use std::ops::Range;

use super::matcher::Matchers;
use super::mute::MuteWindow;
use super::settings::{InhibitConfig, MuteConfig, Route};
use crate::engine::evaluate::Labels;
use crate::engine::state::Seconds;

/// A route with its matchers compiled.
#[derive(Debug, Clone)]
pub struct RoutePolicy {
    pub config: Route,
    pub matchers: Matchers,
}

/// A compiled `[[inhibit]]`.
#[derive(Debug, Clone)]
pub struct Inhibit {
    pub source: Matchers,
    pub target: Matchers,
    pub equal: Vec<String>,
}

impl Inhibit {
    /// Whether `source` (a firing alert) holds `target` back. An alert never inhibits itself.
    pub fn holds(&self, source: &Labels, target: &Labels) -> bool {
        self.source.matches(source)
            && self.target.matches(target)
            && !self.source.matches(target)
            && self.equal.iter().all(|label| source.get(label) == target.get(label))
    }
}

/// Everything that decides where an alert goes and whether it may go now.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub routes: Vec<RoutePolicy>,
    pub mutes: Vec<MuteWindow>,
    pub inhibits: Vec<Inhibit>,
    pub max_per_hour: u32,
}

impl Policy {
    /// Compiles the `[[route]]`, `[[mute]]` and `[[inhibit]]` tables and the global
    /// hourly limit; every problem is returned at once, with the span it is about.
    pub fn compile(
        route: &[Route],
        mute: &[MuteConfig],
        inhibit: &[InhibitConfig],
        max_per_hour: u32,
    ) -> Result<Policy, Vec<(Range<usize>, String)>> {
        let mut problems = Vec::new();
        let mut compile = |span: Range<usize>, map| match Matchers::from_map(map) {
            Ok(matchers) => matchers,
            Err(message) => {
                problems.push((span, message.to_string()));
                Matchers::default()
            }
        };
        let routes = route
            .iter()
            .map(|route| RoutePolicy {
                matchers: compile(route.matchers.span(), route.matchers.get_ref()),
                config: route.clone(),
            })
            .collect();
        let inhibits = inhibit
            .iter()
            .map(|inhibit| Inhibit {
                source: compile(inhibit.source.span(), inhibit.source.get_ref()),
                target: compile(inhibit.target.span(), inhibit.target.get_ref()),
                equal: inhibit.equal.clone(),
            })
            .collect();
        let mut mutes = Vec::new();
        for (index, mute) in mute.iter().enumerate() {
            match MuteWindow::compile(mute, index) {
                Ok(window) => mutes.push(window),
                Err(message) => problems.push((mute.matchers.span(), format!("mute: {message}"))),
            }
        }
        if problems.is_empty() {
            Ok(Policy { routes, mutes, inhibits, max_per_hour })
        } else {
            Err(problems)
        }
    }

    /// The first route whose matchers pass.
    pub fn route_of(&self, labels: &Labels) -> Option<usize> {
        self.routes.iter().position(|route| route.matchers.matches(labels))
    }

    /// The mute window covering `labels` at `now`, if any.
    pub fn muted_by(&self, labels: &Labels, now: Seconds) -> Option<&str> {
        self.mutes.iter().find(|window| window.mutes(labels, now)).map(|w| w.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn host_down_inhibits_other_alerts_of_the_same_host_but_not_itself() {
        let inhibit = Inhibit {
            source: Matchers::parse(&["rule=HostDown"]).expect("valid"),
            target: Matchers::parse(&["severity=~.*"]).expect("valid"),
            equal: vec!["InstanceId".to_owned()],
        };
        let down = labels(&[("rule", "HostDown"), ("InstanceId", "i-1"), ("severity", "critical")]);
        let cpu = labels(&[("rule", "HighCpu"), ("InstanceId", "i-1"), ("severity", "warning")]);
        let other = labels(&[("rule", "HighCpu"), ("InstanceId", "i-2"), ("severity", "warning")]);
        assert!(inhibit.holds(&down, &cpu));
        assert!(!inhibit.holds(&down, &other), "another host");
        assert!(!inhibit.holds(&down, &down), "never itself");
        assert!(!inhibit.holds(&cpu, &other), "not a source");
    }
}
