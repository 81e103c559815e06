//! Alerts and their groups, in memory and pure (time is an argument): which
//! notifications are due, deduplicated against what on-call last heard, silenced, muted
//! and inhibited; what a rate limit holds back is folded into the route's next message.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::policy::Policy;
use super::silence::Silences;
use crate::engine::evaluate::{AlertChange, Labels};
use crate::engine::state::Transition;

/// Milliseconds since the Unix epoch: the notifier's timers are exact to the
/// millisecond, so a group waits its `group_wait` and not a second less.
pub type Millis = i64;

/// Rule name plus sorted labels: the identity of an alert.
pub type Fingerprint = String;

/// A group's resolutions are sent at most this long after they happen, whatever its
/// `group_interval`: on-call wants to hear "resolved" soon.
pub const RESOLVED_FAST_PATH: Millis = 30_000;
/// How long the send times of a route are remembered (the rate limits' horizon).
const SEND_LOG: Millis = 3_600_000;

/// What on-call last heard about an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notified {
    pub firing: bool,
    pub at: Millis,
}

/// One alert as the notifier keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub fingerprint: Fingerprint,
    /// The series' and rule's labels, plus `rule` and `severity`: what matchers see.
    pub labels: Labels,
    /// What the engine last said of it: its text, value and since when.
    pub latest: AlertChange,
    pub notified: Option<Notified>,
}

impl Alert {
    /// Firing (or held firing while it flaps), rather than resolved.
    pub fn firing(&self) -> bool {
        self.latest.transition != Transition::Resolved
    }
}

/// The alerts of one route that share the values of its `group_by` labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub id: String,
    pub route: usize,
    pub key: Labels,
    pub members: BTreeSet<Fingerprint>,
    /// Since when it has something to say (new firing or resolved alerts).
    pub dirty_since: Option<Millis>,
    pub last_flush: Option<Millis>,
    /// Held back by a rate limit; counted once until it is sent.
    pub held: bool,
}

/// Why an alert is not notified right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "by", content = "name", rename_all = "lowercase")]
pub enum Suppression {
    Silenced(String),
    Muted(String),
    Inhibited(Fingerprint),
}

/// What one group's part of a message says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The group's first message.
    Firing,
    /// Members came or went since the last message.
    Update,
    /// Nothing changed for `repeat_interval`: said again.
    Repeat,
    /// Every member resolved.
    Resolved,
}

/// One group's part of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupReport {
    pub id: String,
    pub key: Labels,
    pub kind: Kind,
    pub new: Vec<Alert>,
    pub resolved: Vec<Alert>,
    pub still: Vec<Alert>,
}

/// A notified state to record once the message carrying it is decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub group: String,
    pub fingerprint: Fingerprint,
    pub firing: bool,
}

/// One message's worth: every group of a route that was due, folded together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub route: usize,
    pub at: Millis,
    pub groups: Vec<GroupReport>,
    /// Notifications a rate limit held back, now folded into this one.
    pub held_back: u64,
    pub marks: Vec<Mark>,
}

/// One row of `klaxon alerts`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertStatus {
    pub alert: Alert,
    pub route: Option<usize>,
    pub suppressed: Option<Suppression>,
    pub next_repeat: Option<Millis>,
}

/// What is saved in `state_dir/notify.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Saved {
    pub alerts: Vec<Alert>,
    pub groups: Vec<Group>,
    pub held_back: Vec<u64>,
    /// Per route, when its recent messages were decided.
    pub sends: Vec<Vec<Millis>>,
}

/// The notifier's memory.
#[derive(Debug, Default)]
pub struct Dispatcher {
    policy: Policy,
    alerts: HashMap<Fingerprint, Alert>,
    groups: BTreeMap<String, Group>,
    /// Per route: notifications held back since its last message.
    held_back: Vec<u64>,
    sends: Vec<Vec<Millis>>,
    /// Held back since this counter was last taken (published as a metric).
    held_unreported: u64,
}

/// `rule{label=value,…}`, labels sorted.
pub fn fingerprint(rule: &str, labels: &Labels) -> Fingerprint {
    let mut out = String::with_capacity(rule.len() + 16 * labels.len());
    out.push_str(rule);
    out.push('{');
    for (index, (label, value)) in labels.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(label);
        out.push('=');
        out.push_str(value);
    }
    out.push('}');
    out
}

impl Dispatcher {
    pub fn new(policy: Policy) -> Self {
        let routes = policy.routes.len();
        Dispatcher {
            policy,
            held_back: vec![0; routes],
            sends: vec![Vec::new(); routes],
            ..Dispatcher::default()
        }
    }

    /// A dispatcher with saved state; alerts are routed again by the current policy and
    /// groups keep their timers where their id is unchanged.
    pub fn restore(policy: Policy, saved: Saved) -> Self {
        let mut dispatcher = Dispatcher::new(policy);
        let old_groups: HashMap<String, Group> =
            saved.groups.into_iter().map(|group| (group.id.clone(), group)).collect();
        for alert in saved.alerts {
            if let Some(id) = dispatcher.place(&alert)
                && let (Some(old), Some(group)) =
                    (old_groups.get(&id), dispatcher.groups.get_mut(&id))
            {
                group.dirty_since = old.dirty_since;
                group.last_flush = old.last_flush;
                group.held = old.held;
            }
            dispatcher.alerts.insert(alert.fingerprint.clone(), alert);
        }
        let routes = dispatcher.policy.routes.len();
        for (index, count) in saved.held_back.into_iter().take(routes).enumerate() {
            dispatcher.held_back[index] = count;
        }
        for (index, sends) in saved.sends.into_iter().take(routes).enumerate() {
            dispatcher.sends[index] = sends;
        }
        dispatcher
    }

    pub fn save(&self) -> Saved {
        let mut alerts: Vec<Alert> = self.alerts.values().cloned().collect();
        alerts.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
        Saved {
            alerts,
            groups: self.groups.values().cloned().collect(),
            held_back: self.held_back.clone(),
            sends: self.sends.clone(),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// When each route's messages of the last hour were decided (to prime rate limits).
    pub fn recent_sends(&self, route: usize) -> &[Millis] {
        self.sends.get(route).map_or(&[], Vec::as_slice)
    }

    /// Notifications held back since the last call.
    pub fn take_held_back(&mut self) -> u64 {
        std::mem::take(&mut self.held_unreported)
    }

    /// Takes the engine's changes in. Pending changes are not notified; flapping holds
    /// an alert firing. Returns the number of alerts no route takes.
    pub fn update(&mut self, changes: &[AlertChange]) -> usize {
        let mut unrouted = 0;
        for change in changes {
            if change.transition == Transition::Pending {
                continue;
            }
            let mut labels = change.labels.clone();
            labels.insert("rule".to_owned(), change.rule.clone());
            labels.insert("severity".to_owned(), change.severity.clone());
            let key = fingerprint(&change.rule, &labels);
            if let Some(alert) = self.alerts.get_mut(&key) {
                alert.latest = change.clone();
                continue;
            }
            if change.transition == Transition::Resolved {
                continue; // resolved before on-call heard of it, or after a state loss
            }
            let alert =
                Alert { fingerprint: key.clone(), labels, latest: change.clone(), notified: None };
            if self.place(&alert).is_none() {
                unrouted += 1;
                warn!(message = "No route takes this alert; it is only logged.", alert = %key);
                continue;
            }
            self.alerts.insert(key, alert);
        }
        unrouted
    }

    /// The route and group an alert belongs to under the current policy.
    fn group_of(&self, labels: &Labels) -> Option<(usize, Labels, String)> {
        let route = self.policy.route_of(labels)?;
        let key: Labels = self.policy.routes[route]
            .config
            .group_by
            .iter()
            .map(|label| (label.clone(), labels.get(label).cloned().unwrap_or_default()))
            .collect();
        let id = fingerprint(&route.to_string(), &key);
        Some((route, key, id))
    }

    /// Puts the alert in its route's group; returns the group id.
    fn place(&mut self, alert: &Alert) -> Option<String> {
        let (route, key, id) = self.group_of(&alert.labels)?;
        let group = self.groups.entry(id.clone()).or_insert_with(|| Group {
            id: id.clone(),
            route,
            key,
            members: BTreeSet::new(),
            dirty_since: None,
            last_flush: None,
            held: false,
        });
        group.members.insert(alert.fingerprint.clone());
        Some(id)
    }

    /// Why `alert` is not notified at `now`, given the firing inhibition sources.
    fn suppression(
        &self,
        alert: &Alert,
        silences: &Silences,
        sources: &[&Alert],
        now: Millis,
    ) -> Option<Suppression> {
        let now_secs = now / 1000;
        if let Some(id) = silences.silencing(&alert.labels, now_secs) {
            return Some(Suppression::Silenced(id.to_owned()));
        }
        if let Some(name) = self.policy.muted_by(&alert.labels, now_secs) {
            return Some(Suppression::Muted(name.to_owned()));
        }
        sources
            .iter()
            .find(|source| {
                self.policy.inhibits.iter().any(|rule| rule.holds(&source.labels, &alert.labels))
            })
            .map(|source| Suppression::Inhibited(source.fingerprint.clone()))
    }

    /// Firing alerts that match some inhibition's source.
    fn inhibition_sources(&self) -> Vec<&Alert> {
        if self.policy.inhibits.is_empty() {
            return Vec::new();
        }
        self.alerts
            .values()
            .filter(|alert| {
                alert.firing()
                    && self.policy.inhibits.iter().any(|rule| rule.source.matches(&alert.labels))
            })
            .collect()
    }

    /// Decides what is due at `now`. `allow(route)` asks the rate limits for one message
    /// of that route; a refusal holds the route's due groups back for a later message.
    /// Returns the messages decided (their marks already applied) and whether anything
    /// changed that must be saved.
    pub fn flush(
        &mut self,
        now: Millis,
        silences: &Silences,
        mut allow: impl FnMut(usize) -> bool,
    ) -> (Vec<Notification>, bool) {
        let sources = self.inhibition_sources();
        let mut due: BTreeMap<usize, Vec<GroupReport>> = BTreeMap::new();
        let mut forgotten: Vec<Fingerprint> = Vec::new();
        let mut dirty: Vec<(String, Option<Millis>)> = Vec::new();
        for group in self.groups.values() {
            let route = &self.policy.routes[group.route].config;
            // Members are in fingerprint order; alerts are cloned only into due reports.
            let (mut new, mut resolved, mut still) = (Vec::new(), Vec::new(), Vec::new());
            for alert in group.members.iter().filter_map(|fp| self.alerts.get(fp)) {
                let heard_firing = alert.notified.is_some_and(|n| n.firing);
                let suppressed = self.suppression(alert, silences, &sources, now).is_some();
                match (alert.firing(), heard_firing, suppressed) {
                    (true, false, false) => new.push(alert),
                    (true, true, false) => still.push(alert),
                    (true, _, true) => {}
                    (false, true, false) if route.send_resolved => resolved.push(alert),
                    // Resolved and nothing (more) to say about it.
                    (false, _, _) => forgotten.push(alert.fingerprint.clone()),
                }
            }
            let kind = if new.is_empty() && resolved.is_empty() {
                let repeat_at = group.last_flush.map(|at| at + millis(route.repeat_interval));
                if group.dirty_since.is_some() {
                    dirty.push((group.id.clone(), None));
                }
                match repeat_at {
                    Some(at) if at <= now && !still.is_empty() => Kind::Repeat,
                    _ => continue,
                }
            } else {
                let since = group.dirty_since.unwrap_or(now);
                if group.dirty_since.is_none() {
                    dirty.push((group.id.clone(), Some(now)));
                }
                let mut due_at = match group.last_flush {
                    None => since + millis(route.group_wait),
                    Some(last) => since.max(last + millis(route.group_interval)),
                };
                if new.is_empty() {
                    due_at = due_at.min(since + RESOLVED_FAST_PATH);
                }
                if due_at > now {
                    continue;
                }
                match (group.last_flush, still.is_empty() && new.is_empty()) {
                    (None, _) => Kind::Firing,
                    (Some(_), true) => Kind::Resolved,
                    (Some(_), false) => Kind::Update,
                }
            };
            let owned = |alerts: Vec<&Alert>| alerts.into_iter().cloned().collect();
            let report = GroupReport {
                id: group.id.clone(),
                key: group.key.clone(),
                kind,
                new: owned(new),
                resolved: owned(resolved),
                still: owned(still),
            };
            due.entry(group.route).or_default().push(report);
        }
        let mut changed = !forgotten.is_empty() || !dirty.is_empty();
        for (id, since) in dirty {
            if let Some(group) = self.groups.get_mut(&id) {
                group.dirty_since = since;
            }
        }
        for fingerprint in forgotten {
            self.forget(&fingerprint);
        }
        let mut notifications = Vec::new();
        for (route, groups) in due {
            changed = true;
            if !allow(route) {
                for report in &groups {
                    if let Some(group) = self.groups.get_mut(&report.id)
                        && !group.held
                    {
                        group.held = true;
                        self.held_back[route] += 1;
                        self.held_unreported += 1;
                    }
                }
                continue;
            }
            let marks = groups
                .iter()
                .flat_map(|report| {
                    let firing = report.new.iter().chain(&report.still).map(|alert| (alert, true));
                    let resolved = report.resolved.iter().map(|alert| (alert, false));
                    firing.chain(resolved).map(|(alert, firing)| Mark {
                        group: report.id.clone(),
                        fingerprint: alert.fingerprint.clone(),
                        firing,
                    })
                })
                .collect();
            let held_back = self.held_back[route];
            let notification = Notification { route, at: now, groups, held_back, marks };
            self.apply(&notification);
            notifications.push(notification);
        }
        (notifications, changed)
    }

    /// Records that `notification` was decided: its alerts' notified states, its groups'
    /// timers, the route's send log. Idempotent, so a message found in the outbox after
    /// a crash can be applied again.
    pub fn apply(&mut self, notification: &Notification) {
        for mark in &notification.marks {
            if mark.firing {
                if let Some(alert) = self.alerts.get_mut(&mark.fingerprint) {
                    alert.notified = Some(Notified { firing: true, at: notification.at });
                }
            } else {
                self.forget(&mark.fingerprint);
            }
        }
        for report in &notification.groups {
            if let Some(group) = self.groups.get_mut(&report.id) {
                group.last_flush = Some(notification.at);
                group.dirty_since = None;
                group.held = false;
            }
        }
        if let Some(held) = self.held_back.get_mut(notification.route) {
            *held = 0;
        }
        if let Some(sends) = self.sends.get_mut(notification.route) {
            if !sends.contains(&notification.at) {
                sends.push(notification.at);
            }
            sends.retain(|at| notification.at - at < SEND_LOG);
        }
    }

    /// Drops an alert and, once empty, its group.
    fn forget(&mut self, fingerprint: &str) {
        let Some(alert) = self.alerts.remove(fingerprint) else { return };
        let Some((_, _, id)) = self.group_of(&alert.labels) else { return };
        if let Some(group) = self.groups.get_mut(&id) {
            group.members.remove(fingerprint);
            if group.members.is_empty() {
                self.groups.remove(&id);
            }
        }
    }

    /// Every alert with why it is quiet and when it is said again.
    pub fn status(&self, silences: &Silences, now: Millis) -> Vec<AlertStatus> {
        let sources = self.inhibition_sources();
        let mut rows: Vec<AlertStatus> = self
            .alerts
            .values()
            .map(|alert| {
                let route = self.policy.route_of(&alert.labels);
                let next_repeat = route
                    .zip(alert.notified)
                    .filter(|(_, n)| n.firing && alert.firing())
                    .map(|(route, notified)| {
                        notified.at + millis(self.policy.routes[route].config.repeat_interval)
                    });
                AlertStatus {
                    alert: alert.clone(),
                    route,
                    suppressed: self.suppression(alert, silences, &sources, now),
                    next_repeat,
                }
            })
            .collect();
        rows.sort_by(|a, b| a.alert.fingerprint.cmp(&b.alert.fingerprint));
        rows
    }
}

fn millis(duration: std::time::Duration) -> Millis {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AggregatorConfig;

    fn dispatcher(config: &str) -> Dispatcher {
        let config: AggregatorConfig =
            toml::from_str(&format!("rules = \"r\"\n{config}")).expect("config");
        Dispatcher::new(config.policy().expect("policy"))
    }

    fn change(host: &str, severity: &str, transition: Transition) -> AlertChange {
        AlertChange {
            rule: "HighCpu".to_owned(),
            severity: severity.to_owned(),
            labels: [("InstanceId".to_owned(), host.to_owned())].into(),
            summary: String::new(),
            description: None,
            runbook: None,
            console: None,
            value: None,
            transition,
            since: 0,
        }
    }

    /// Flushes every 10 s from `from` to `to` (ms); returns the messages' kinds.
    fn run(dispatcher: &mut Dispatcher, from: Millis, to: Millis) -> Vec<Vec<Kind>> {
        let silences = Silences::default();
        (from..=to)
            .step_by(10_000)
            .flat_map(|now| dispatcher.flush(now, &silences, |_| true).0)
            .map(|n| n.groups.iter().map(|g| g.kind).collect())
            .collect()
    }

    #[test]
    fn without_send_resolved_a_resolution_is_forgotten_quietly() {
        let mut quiet = dispatcher(
            "[[route]]\ntopic_arn = \"arn:aws:sns:us-east-1:1:t\"\nsend_resolved = false\n",
        );
        quiet.update(&[change("i-1", "critical", Transition::Firing)]);
        assert_eq!(run(&mut quiet, 0, 60_000), [[Kind::Firing]]);
        quiet.update(&[change("i-1", "critical", Transition::Resolved)]);
        assert!(run(&mut quiet, 70_000, 600_000).is_empty());
        assert!(quiet.save().alerts.is_empty(), "forgotten");
    }

    #[test]
    fn a_mute_window_holds_matching_alerts_and_routes_pick_the_first_match() {
        // 1970-01-01 was a Thursday: the window covers the first hour of the epoch.
        let mut muted = dispatcher(
            "[[route]]\nmatch = { severity = \"critical\" }\ntopic_arn = \"arn:aws:sns:us-east-1:1:pager\"\n[[route]]\ntopic_arn = \"arn:aws:sns:us-east-1:1:mail\"\n[[mute]]\ndays = [\"thu\"]\nfrom = \"00:00\"\nto = \"01:00\"\nmatch = { severity = \"warning\" }\n",
        );
        muted.update(&[
            change("i-1", "critical", Transition::Firing),
            change("i-2", "warning", Transition::Firing),
        ]);
        let silences = Silences::default();
        let (sent, _) = muted.flush(0, &silences, |_| true);
        assert!(sent.is_empty(), "group_wait first");
        let (sent, _) = muted.flush(40_000, &silences, |_| true);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].route, 0, "the critical one, to the pager");
        let (sent, _) = muted.flush(3_600_000, &silences, |_| true);
        assert!(sent.is_empty(), "the window just closed: group_wait starts");
        let (sent, _) = muted.flush(3_640_000, &silences, |_| true);
        assert_eq!(sent.len(), 1, "the warning once the window closed");
        assert_eq!(
            (sent[0].route, sent[0].groups[0].new[0].latest.severity.as_str()),
            (1, "warning")
        );
    }
}
