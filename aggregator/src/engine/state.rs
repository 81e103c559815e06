//! The life of one series of one rule: inactive → pending (`for`) → firing → resolved,
//! with M-of-N datapoints, hysteresis (`clear_when`), `keep_firing_for` and missing-data
//! treatment. Pure: the caller supplies the time and the datapoints; no I/O.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::rules::model::{Datapoints, Flap, NoData, Threshold};

/// Unix seconds.
pub type Seconds = i64;

/// Where a series stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Inactive,
    /// The condition holds, not yet for `for`.
    Pending {
        since: Seconds,
    },
    /// Alerting since `since`; `quiet_since`: when the condition stopped holding (for
    /// `keep_firing_for`).
    Firing {
        since: Seconds,
        quiet_since: Option<Seconds>,
    },
}

/// A change the notifier hears about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transition {
    Pending,
    Firing,
    Resolved,
    /// The series changes state too often: it is held firing, and this is said once.
    Flapping,
}

impl Transition {
    /// How alert logs and reports name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Pending => "pending",
            Transition::Firing => "firing",
            Transition::Resolved => "resolved",
            Transition::Flapping => "flapping",
        }
    }
}

/// The persistent state of one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesState {
    pub phase: Phase,
    /// The latest value seen (None: no data).
    pub value: Option<f64>,
    /// When the condition last turned firing or resolved, within the flap window.
    #[serde(default)]
    pub changes: Vec<Seconds>,
    /// Held firing because it flaps.
    #[serde(default)]
    pub flapping: bool,
}

impl Default for SeriesState {
    fn default() -> Self {
        SeriesState { phase: Phase::Inactive, value: None, changes: Vec::new(), flapping: false }
    }
}

/// How a rule decides, whatever its kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub when: Threshold,
    pub clear_when: Option<Threshold>,
    pub datapoints: Datapoints,
    pub for_: Duration,
    pub keep_firing_for: Duration,
    pub no_data: NoData,
    pub flap: Option<Flap>,
}

/// What the condition says at one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition {
    Holds,
    Fails,
    /// No data and `no_data = "keep"`: stay where you are.
    Unknown,
}

impl Decision {
    /// Whether the condition holds on the last N datapoints (oldest first, None missing).
    fn condition(&self, recent: &[Option<f64>], firing: bool) -> Condition {
        let of = self.datapoints.of as usize;
        // `keep` skips periods without data, like CloudWatch's "ignore": the last N
        // datapoints there are decide, and with none at all the state stays.
        let present: Vec<Option<f64>>;
        let window = if self.no_data == NoData::Keep {
            present = recent.iter().filter(|v| v.is_some()).copied().collect();
            if present.is_empty() {
                return Condition::Unknown;
            }
            &present[present.len().saturating_sub(of)..]
        } else {
            &recent[recent.len().saturating_sub(of)..]
        };
        // Hysteresis: a firing series resolves only once the latest value is past `clear_when`.
        if firing && let Some(clear) = self.clear_when {
            let latest = window.iter().rev().find_map(|v| *v);
            return match latest {
                Some(value) if clear.holds(value) => Condition::Fails,
                Some(_) => Condition::Holds,
                None if self.no_data == NoData::Alerting => Condition::Holds,
                None => Condition::Fails,
            };
        }
        let breaching = window
            .iter()
            .filter(|value| match value {
                Some(value) => self.when.holds(*value),
                None => self.no_data == NoData::Alerting,
            })
            .count();
        if breaching >= self.datapoints.breaching as usize {
            Condition::Holds
        } else {
            Condition::Fails
        }
    }
}

impl SeriesState {
    /// Evaluates at `now` with the series' recent datapoints; returns the transition the
    /// notifier hears about, if any (a flapping series' changes are held back).
    pub fn evaluate(
        &mut self,
        decision: &Decision,
        recent: &[Option<f64>],
        now: Seconds,
    ) -> Option<Transition> {
        let underlying = self.step(decision, recent, now);
        let Some(flap) = decision.flap else { return underlying };
        let window = i64::try_from(flap.window.as_secs()).unwrap_or(i64::MAX);
        if matches!(underlying, Some(Transition::Firing | Transition::Resolved)) {
            self.changes.push(now);
        }
        self.changes.retain(|at| now - at < window);
        if self.flapping {
            if !self.changes.is_empty() {
                return None;
            }
            self.flapping = false;
            return match self.phase {
                Phase::Firing { .. } => None,
                _ => Some(Transition::Resolved),
            };
        }
        if self.changes.len() > flap.changes as usize {
            self.flapping = true;
            if underlying == Some(Transition::Resolved) {
                self.phase = Phase::Firing { since: now, quiet_since: Some(now) };
            }
            return Some(Transition::Flapping);
        }
        underlying
    }

    /// The state machine proper, without flap detection.
    fn step(
        &mut self,
        decision: &Decision,
        recent: &[Option<f64>],
        now: Seconds,
    ) -> Option<Transition> {
        if let Some(latest) = recent.iter().rev().find_map(|v| *v) {
            self.value = Some(latest);
        }
        let firing = matches!(self.phase, Phase::Firing { .. });
        let condition = decision.condition(recent, firing);
        let for_secs = i64::try_from(decision.for_.as_secs()).unwrap_or(i64::MAX);
        let keep_secs = i64::try_from(decision.keep_firing_for.as_secs()).unwrap_or(i64::MAX);
        let (phase, transition) = match (self.phase, condition) {
            (phase, Condition::Unknown) => (phase, None),
            (Phase::Inactive, Condition::Holds) if for_secs == 0 => {
                (Phase::Firing { since: now, quiet_since: None }, Some(Transition::Firing))
            }
            (Phase::Inactive, Condition::Holds) => {
                (Phase::Pending { since: now }, Some(Transition::Pending))
            }
            (Phase::Pending { since }, Condition::Holds) if now - since >= for_secs => {
                (Phase::Firing { since: now, quiet_since: None }, Some(Transition::Firing))
            }
            (Phase::Pending { since }, Condition::Holds) => (Phase::Pending { since }, None),
            (Phase::Pending { .. }, Condition::Fails) => (Phase::Inactive, None),
            (Phase::Firing { since, .. }, Condition::Holds) => {
                (Phase::Firing { since, quiet_since: None }, None)
            }
            (Phase::Firing { since, quiet_since }, Condition::Fails) => {
                let quiet = quiet_since.unwrap_or(now);
                if now - quiet >= keep_secs {
                    (Phase::Inactive, Some(Transition::Resolved))
                } else {
                    (Phase::Firing { since, quiet_since: Some(quiet) }, None)
                }
            }
            (Phase::Inactive, Condition::Fails) => (Phase::Inactive, None),
        };
        self.phase = phase;
        transition
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::model::Comparison;

    fn decision(m: u32, n: u32, for_secs: u64) -> Decision {
        Decision {
            when: Threshold { op: Comparison::Greater, value: 90.0 },
            clear_when: None,
            datapoints: Datapoints { breaching: m, of: n },
            for_: Duration::from_secs(for_secs),
            keep_firing_for: Duration::ZERO,
            no_data: NoData::Ok,
            flap: None,
        }
    }

    /// Feeds one value a minute; returns the transitions with their minute.
    fn run(decision: &Decision, values: &[Option<f64>]) -> Vec<(usize, Transition)> {
        let mut state = SeriesState::default();
        let mut out = Vec::new();
        for minute in 0..values.len() {
            if let Some(t) = state.evaluate(decision, &values[..=minute], minute as i64 * 60) {
                out.push((minute, t));
            }
        }
        out
    }

    #[test]
    fn pending_for_its_duration_then_firing_then_resolved() {
        let values: Vec<_> = [50.0, 95.0, 95.0, 95.0, 50.0].iter().map(|v| Some(*v)).collect();
        assert_eq!(
            run(&decision(1, 1, 120), &values),
            [(1, Transition::Pending), (3, Transition::Firing), (4, Transition::Resolved)]
        );
        let blip: Vec<_> = [95.0, 50.0, 95.0].iter().map(|v| Some(*v)).collect();
        assert_eq!(
            run(&decision(1, 1, 120), &blip),
            [(0, Transition::Pending), (2, Transition::Pending)]
        );
    }

    #[test]
    fn m_of_n_fires_on_enough_breaches_in_the_window() {
        let values: Vec<_> = [95.0, 50.0, 95.0, 50.0, 95.0].iter().map(|v| Some(*v)).collect();
        assert_eq!(run(&decision(3, 5, 0), &values), [(4, Transition::Firing)]);
        assert!(run(&decision(3, 3, 0), &values).is_empty());
    }

    #[test]
    fn hysteresis_keeps_firing_until_the_clear_threshold() {
        let mut hysteresis = decision(1, 1, 0);
        hysteresis.clear_when = Some(Threshold { op: Comparison::Less, value: 80.0 });
        let values: Vec<_> = [95.0, 85.0, 89.0, 79.0].iter().map(|v| Some(*v)).collect();
        assert_eq!(run(&hysteresis, &values), [(0, Transition::Firing), (3, Transition::Resolved)]);
    }

    #[test]
    fn missing_data_follows_no_data() {
        let values = [Some(95.0), None, None];
        assert_eq!(
            run(&decision(1, 1, 0), &values),
            [(0, Transition::Firing), (1, Transition::Resolved)]
        );
        let mut keep = decision(1, 1, 0);
        keep.no_data = NoData::Keep;
        assert_eq!(run(&keep, &values), [(0, Transition::Firing)]);
        let mut alerting = decision(1, 1, 0);
        alerting.no_data = NoData::Alerting;
        assert_eq!(run(&alerting, &[None, None]), [(0, Transition::Firing)]);
    }

    #[test]
    fn a_flapping_series_is_held_firing_with_one_notice_and_released_when_stable() {
        let mut flappy = decision(1, 1, 0);
        flappy.flap = Some(Flap { changes: 4, window: Duration::from_secs(600) });
        let mut values: Vec<Option<f64>> = [95.0, 50.0].repeat(4).into_iter().map(Some).collect();
        values.extend(std::iter::repeat_n(Some(50.0), 12));
        let got = run(&flappy, &values);
        assert_eq!(
            got,
            [
                (0, Transition::Firing),
                (1, Transition::Resolved),
                (2, Transition::Firing),
                (3, Transition::Resolved),
                (4, Transition::Flapping),
                (17, Transition::Resolved),
            ]
        );
    }

    #[test]
    fn keep_firing_for_holds_a_resolution_back() {
        let mut sticky = decision(1, 1, 0);
        sticky.keep_firing_for = Duration::from_secs(120);
        let values: Vec<_> = [95.0, 50.0, 50.0, 50.0].iter().map(|v| Some(*v)).collect();
        assert_eq!(run(&sticky, &values), [(0, Transition::Firing), (3, Transition::Resolved)]);
    }
}
