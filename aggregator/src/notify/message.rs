//! A decided notification rendered as one SNS Publish: a one-line ASCII subject under 100
//! characters, a `default` body naming every alert (up to a count), a full `email` body,
//! an `sms` body of at most 140 GSM-7 characters, and the `rule`/`severity`/`status`
//! attributes. A FIFO topic also gets a group id and a deduplication id.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::dispatch::{Alert, GroupReport, Kind, Millis, Notification};
use super::settings::{Route, Structure};
use crate::engine::evaluate::format_value;

/// SNS refuses a message over 256 KB; stay clear of it.
const MAX_MESSAGE_BYTES: usize = 250_000;
/// SNS subjects are under 100 characters.
const MAX_SUBJECT_CHARS: usize = 99;
/// One SMS part is 140 bytes: 160 GSM-7 characters; 140 leaves room for the sender name.
pub const MAX_SMS_CHARS: usize = 140;
/// Two deciders of the same notification within this many seconds produce the same FIFO
/// deduplication id (SNS FIFO deduplicates over 5 minutes).
const DEDUP_BUCKET: Millis = 300_000;

/// The Publish request, as the outbox keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub topic_arn: String,
    pub subject: String,
    /// The body, or with the JSON structure the JSON object of bodies per protocol.
    pub message: String,
    pub structure: Structure,
    /// `rule`, `severity`, `status`.
    pub attributes: BTreeMap<String, String>,
    pub fifo: Option<FifoIds>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FifoIds {
    pub group_id: String,
    pub deduplication_id: String,
}

/// How much detail a rendering may carry; smaller limits are tried when a message is
/// too big for SNS.
#[derive(Debug, Clone, Copy)]
struct Detail {
    /// Names listed per group before "+N more".
    names: usize,
    /// Alerts described in full in the email.
    described: usize,
}

const DETAIL: [Detail; 3] = [
    Detail { names: 1000, described: 100 },
    Detail { names: 50, described: 10 },
    Detail { names: 5, described: 0 },
];

/// Renders `notification` for `route`; `console` is the CloudWatch console base URL of
/// the aggregator's region.
pub fn render(notification: &Notification, route: &Route, console: &str) -> Envelope {
    let group_by = &route.group_by;
    let firing = notification.groups.iter().any(|g| !g.new.is_empty() || !g.still.is_empty());
    let status = if firing { "firing" } else { "resolved" };
    let subject = subject(notification, group_by, status);
    let held = held_line(notification.held_back, route);
    let mut message = String::new();
    for detail in DETAIL {
        let default = default_body(notification, group_by, &held, detail);
        message = match route.structure {
            Structure::String => default,
            Structure::Json => serde_json::json!({
                "default": default,
                "email": email_body(notification, group_by, &subject, &held, console, detail),
                "sms": sms_body(notification, group_by, status),
            })
            .to_string(),
        };
        if message.len() <= MAX_MESSAGE_BYTES {
            break;
        }
    }
    let alerts =
        notification.groups.iter().flat_map(|g| g.new.iter().chain(&g.resolved).chain(&g.still));
    let (rules, severities): (BTreeSet<&str>, BTreeSet<&str>) =
        alerts.map(|a| (a.latest.rule.as_str(), a.latest.severity.as_str())).unzip();
    let attributes = BTreeMap::from([
        ("rule".to_owned(), rules.into_iter().collect::<Vec<_>>().join(",")),
        ("severity".to_owned(), severities.into_iter().collect::<Vec<_>>().join(",")),
        ("status".to_owned(), status.to_owned()),
    ]);
    let fifo = route.topic_arn.get_ref().ends_with(".fifo").then(|| fifo_ids(notification));
    Envelope {
        topic_arn: route.topic_arn.get_ref().clone(),
        subject,
        message,
        structure: route.structure,
        attributes,
        fifo,
    }
}

/// The same notification decided by two aggregators gets the same ids.
fn fifo_ids(notification: &Notification) -> FifoIds {
    let mut hash = Sha256::new();
    for mark in &notification.marks {
        hash.update(mark.fingerprint.as_bytes());
        hash.update(if mark.firing { b"\x01" } else { b"\x00" });
    }
    hash.update((notification.at / DEDUP_BUCKET).to_be_bytes());
    let digest = hash.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    FifoIds { group_id: format!("klaxon-route-{}", notification.route), deduplication_id: hex }
}

fn held_line(held_back: u64, route: &Route) -> Option<String> {
    (held_back > 0).then(|| {
        let limit = route.max_per_hour.map_or(String::new(), |n| format!(" (max_per_hour = {n})"));
        format!("+{held_back} notifications held back by the rate limit{limit}, folded in here")
    })
}

/// `[FIRING] HighCpu firing on 40 hosts`, or for several groups `[FIRING] 2 alert
/// groups: HighCpu firing on i-01; DiskFull firing on i-02` (cut to fit).
fn subject(notification: &Notification, group_by: &[String], status: &str) -> String {
    let text = match notification.groups.as_slice() {
        [only] => headline(only, group_by),
        groups => {
            let headlines: Vec<String> = groups.iter().map(|g| headline(g, group_by)).collect();
            format!("{} alert groups: {}", groups.len(), headlines.join("; "))
        }
    };
    sanitize_subject(&format!("[{}] {text}", status.to_uppercase()))
}

/// One line for a group: what happened to how many.
fn headline(group: &GroupReport, group_by: &[String]) -> String {
    let title = title(group, group_by);
    let on = |alerts: &[Alert]| match alerts {
        [one] if !member_name(one, group_by).is_empty() => member_name(one, group_by),
        many => format!("{} {}", many.len(), noun(many, group_by)),
    };
    match group.kind {
        Kind::Firing => format!("{title} firing on {}", on(&group.new)),
        Kind::Resolved => format!("{title} resolved on {}", on(&group.resolved)),
        Kind::Repeat => format!("{title} still firing on {}", on(&group.still)),
        Kind::Update => {
            let mut parts = Vec::new();
            if !group.new.is_empty() {
                parts.push(format!("+{} new", group.new.len()));
            }
            if !group.resolved.is_empty() {
                parts.push(format!("{} resolved", group.resolved.len()));
            }
            parts.push(format!("{} still firing", group.still.len() + group.new.len()));
            format!("{title}: {}", parts.join(", "))
        }
    }
}

/// The group's name: its rule and the values of its other `group_by` labels.
fn title(group: &GroupReport, group_by: &[String]) -> String {
    let values: Vec<&str> = group
        .key
        .iter()
        .filter(|(label, _)| label.as_str() != "rule")
        .map(|(_, value)| value.as_str())
        .collect();
    let rule = group.key.get("rule").cloned().or_else(|| {
        let rules: BTreeSet<&str> = group
            .new
            .iter()
            .chain(&group.resolved)
            .chain(&group.still)
            .map(|a| a.latest.rule.as_str())
            .collect();
        (rules.len() == 1 || !group_by.iter().any(|l| l != "rule"))
            .then(|| rules.into_iter().collect::<Vec<_>>().join(","))
    });
    match (rule, values.is_empty()) {
        (Some(rule), true) => rule,
        (Some(rule), false) => format!("{rule} ({})", values.join(", ")),
        (None, _) => values.join(", "),
    }
}

/// An alert's name within its group: the labels that tell it from its group mates.
fn member_name(alert: &Alert, group_by: &[String]) -> String {
    let mut parts: Vec<&str> = Vec::new();
    if !group_by.iter().any(|l| l == "rule") {
        parts.push(&alert.latest.rule);
    }
    parts.extend(distinguishing(alert, group_by).map(|(_, value)| value.as_str()));
    parts.join(" ")
}

fn distinguishing<'a>(
    alert: &'a Alert,
    group_by: &'a [String],
) -> impl Iterator<Item = (&'a String, &'a String)> {
    alert.labels.iter().filter(move |(label, _)| {
        !matches!(label.as_str(), "rule" | "severity") && !group_by.contains(label)
    })
}

/// What the members are: hosts (InstanceId), streams, or alerts.
fn noun(alerts: &[Alert], group_by: &[String]) -> &'static str {
    let labels: BTreeSet<&str> =
        alerts.iter().flat_map(|a| distinguishing(a, group_by).map(|(l, _)| l.as_str())).collect();
    let plural = alerts.len() != 1;
    match (labels.into_iter().collect::<Vec<_>>().as_slice(), plural) {
        (["InstanceId"], true) => "hosts",
        (["InstanceId"], false) => "host",
        (["stream"], true) => "streams",
        (["stream"], false) => "stream",
        (_, true) => "alerts",
        (_, false) => "alert",
    }
}

/// `a, b, c, +N more`.
fn listed(names: &[String], limit: usize) -> String {
    let mut text = names.iter().take(limit).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > limit {
        let _ = write!(text, ", +{} more", names.len() - limit);
    }
    text
}

fn names(alerts: &[Alert], group_by: &[String]) -> Vec<String> {
    alerts
        .iter()
        .map(|alert| {
            let name = member_name(alert, group_by);
            if name.is_empty() { alert.latest.rule.clone() } else { name }
        })
        .collect()
}

/// Every group: its headline and the names of its alerts, by what happened to them.
fn default_body(
    notification: &Notification,
    group_by: &[String],
    held: &Option<String>,
    detail: Detail,
) -> String {
    let mut out = String::new();
    if let Some(held) = held {
        let _ = writeln!(out, "{held}");
    }
    for group in &notification.groups {
        let _ = writeln!(out, "{}", headline(group, group_by));
        let sections =
            [("new", &group.new), ("resolved", &group.resolved), ("still firing", &group.still)];
        for (label, alerts) in sections {
            if !alerts.is_empty() {
                let _ =
                    writeln!(out, "  {label}: {}", listed(&names(alerts, group_by), detail.names));
            }
        }
    }
    out
}

/// The default body, then every alert described in full (up to a count).
fn email_body(
    notification: &Notification,
    group_by: &[String],
    subject: &str,
    held: &Option<String>,
    console: &str,
    detail: Detail,
) -> String {
    let mut out = format!("{subject}\n\n{}", default_body(notification, group_by, held, detail));
    let described = notification.groups.iter().flat_map(|group| {
        let firing = group.new.iter().chain(&group.still).map(|alert| (alert, "firing"));
        firing.chain(group.resolved.iter().map(|alert| (alert, "resolved")))
    });
    for (alert, status) in described.take(detail.described) {
        let _ = write!(
            out,
            "\n{} - {status}\n  Summary:     {}\n",
            alert.latest.rule, alert.latest.summary
        );
        if let Some(description) = &alert.latest.description {
            let _ = writeln!(out, "  Description: {description}");
        }
        let since = chrono::DateTime::from_timestamp(alert.latest.since, 0)
            .map_or_else(|| alert.latest.since.to_string(), |t| t.to_rfc3339());
        let labels: Vec<String> =
            distinguishing(alert, &[]).map(|(l, v)| format!("{l}={v}")).collect();
        let _ = write!(
            out,
            "  Severity:    {}\n  Value:       {}\n  Since:       {since}\n  Labels:      {}\n",
            alert.latest.severity,
            format_value(alert.latest.value),
            labels.join(", ")
        );
        if let Some(runbook) = &alert.latest.runbook {
            let _ = writeln!(out, "  Runbook:     {runbook}");
        }
        if let Some(fragment) = &alert.latest.console {
            let _ = writeln!(out, "  Console:     {console}{fragment}");
        }
    }
    out
}

/// `FIRING HighCpu firing on 40 hosts: i-01, i-02, +38 more`, cut to one SMS part.
fn sms_body(notification: &Notification, group_by: &[String], status: &str) -> String {
    let mut text = status.to_uppercase();
    for group in &notification.groups {
        let alerts = match group.kind {
            Kind::Resolved => &group.resolved,
            Kind::Repeat => &group.still,
            Kind::Firing | Kind::Update => &group.new,
        };
        let _ = write!(
            text,
            " {}: {};",
            headline(group, group_by),
            listed(&names(alerts, group_by), 3)
        );
    }
    if notification.held_back > 0 {
        let _ = write!(text, " +{} held back", notification.held_back);
    }
    gsm7_truncate(text.trim_end_matches(';'), MAX_SMS_CHARS)
}

/// One line, printable ASCII only, under 100 characters: what SNS accepts as a subject.
pub fn sanitize_subject(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_SUBJECT_CHARS));
    for c in text.chars() {
        let c = match c {
            ' '..='~' => c,
            c if c.is_whitespace() || c.is_control() => ' ',
            _ => '?',
        };
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        if out.len() == MAX_SUBJECT_CHARS {
            out.truncate(MAX_SUBJECT_CHARS - 3);
            out.push_str("...");
            break;
        }
        out.push(c);
    }
    out.trim_end().to_owned()
}

/// The GSM 03.38 basic character set: one septet each, so one SMS part holds 160.
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// Replaces what is outside GSM-7's basic set (one such character would turn the whole
/// SMS into UCS-2, 70 characters a part) and cuts to `limit` characters.
pub fn gsm7_truncate(text: &str, limit: usize) -> String {
    let mut out: Vec<char> = text
        .chars()
        .map(|c| match c {
            '…' => '.',
            '—' | '–' => '-',
            '‘' | '’' | '`' => '\'',
            '“' | '”' => '"',
            '\t' => ' ',
            c if GSM7_BASIC.contains(c) => c,
            _ => '?',
        })
        .collect();
    if out.len() > limit {
        out.truncate(limit - 3);
        out.extend(['.', '.', '.']);
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::evaluate::{AlertChange, Labels};
    use crate::engine::state::Transition;
    use crate::notify::dispatch::Mark;

    fn host(id: &str) -> Alert {
        let mut labels: Labels = [("InstanceId".to_owned(), id.to_owned())].into();
        let latest = AlertChange {
            rule: "HighCpu".to_owned(),
            severity: "critical".to_owned(),
            labels: labels.clone(),
            summary: format!("CPU 97% on {id}"),
            description: Some("Sustained — check the deploy".to_owned()),
            runbook: Some("https://wiki/cpu".to_owned()),
            console: Some("#metricsV2:graph=~();search=cpu".to_owned()),
            value: Some(97.0),
            transition: Transition::Firing,
            since: 1_800_000_000,
        };
        labels.insert("rule".to_owned(), "HighCpu".to_owned());
        labels.insert("severity".to_owned(), "critical".to_owned());
        Alert { fingerprint: format!("HighCpu{{InstanceId={id}}}"), labels, latest, notified: None }
    }

    fn route(text: &str) -> Route {
        let config: crate::config::AggregatorConfig =
            toml::from_str(&format!("rules = \"r\"\n[[route]]\n{text}")).expect("route");
        config.route[0].clone()
    }

    fn notification(
        kind: Kind,
        new: Vec<Alert>,
        resolved: Vec<Alert>,
        still: Vec<Alert>,
    ) -> Notification {
        let key = Labels::from([("rule".to_owned(), "HighCpu".to_owned())]);
        let marks = new
            .iter()
            .map(|a| Mark {
                group: "g".to_owned(),
                fingerprint: a.fingerprint.clone(),
                firing: true,
            })
            .collect();
        let group = GroupReport { id: "g".to_owned(), key, kind, new, resolved, still };
        Notification { route: 0, at: 1_800_000_100_000, groups: vec![group], held_back: 0, marks }
    }

    fn bodies(envelope: &Envelope) -> serde_json::Value {
        serde_json::from_str(&envelope.message).expect("json structure")
    }

    #[test]
    fn forty_hosts_make_one_message_naming_them_all() {
        let hosts: Vec<Alert> = (1..=40).map(|i| host(&format!("i-{i:02}"))).collect();
        let route = route("topic_arn = \"arn:aws:sns:us-east-1:1:oncall\"");
        let envelope =
            render(&notification(Kind::Firing, hosts, vec![], vec![]), &route, "https://c");
        assert_eq!(envelope.subject, "[FIRING] HighCpu firing on 40 hosts");
        let bodies = bodies(&envelope);
        let default = bodies["default"].as_str().expect("default");
        assert!((1..=40).all(|i| default.contains(&format!("i-{i:02}"))), "{default}");
        let email = bodies["email"].as_str().expect("email");
        for part in [
            "Runbook:     https://wiki/cpu",
            "Console:     https://c#metricsV2",
            "Value:       97",
            "Since:       2027-01-15T08:00:00+00:00",
            "Labels:      InstanceId=i-01",
        ] {
            assert!(email.contains(part), "{part} missing from\n{email}");
        }
        let sms = bodies["sms"].as_str().expect("sms");
        assert_eq!(sms, "FIRING HighCpu firing on 40 hosts: i-01, i-02, i-03, +37 more");
        assert_eq!(envelope.attributes["status"], "firing");
        assert_eq!(envelope.attributes["rule"], "HighCpu");
        assert_eq!(envelope.attributes["severity"], "critical");
        assert_eq!(envelope.fifo, None);
    }

    #[test]
    fn an_update_says_what_changed() {
        let new: Vec<Alert> = (41..=43).map(|i| host(&format!("i-{i:02}"))).collect();
        let gone: Vec<Alert> = (1..=2).map(|i| host(&format!("i-{i:02}"))).collect();
        let still: Vec<Alert> = (3..=40).map(|i| host(&format!("i-{i:02}"))).collect();
        let route = route("topic_arn = \"arn:aws:sns:us-east-1:1:oncall\"\nstructure = \"string\"");
        let envelope = render(&notification(Kind::Update, new, gone, still), &route, "https://c");
        assert_eq!(envelope.subject, "[FIRING] HighCpu: +3 new, 2 resolved, 41 still firing");
        assert!(envelope.message.contains("  new: i-41, i-42, i-43\n"), "{}", envelope.message);
        assert!(envelope.message.contains("  resolved: i-01, i-02\n"), "{}", envelope.message);
    }

    #[test]
    fn subjects_and_sms_stay_within_sns_limits() {
        let subject =
            sanitize_subject("[FIRING] Disk\nfull \u{7}on ünïcode host ".repeat(10).as_str());
        assert!(subject.len() < 100 && subject.is_ascii(), "{subject}");
        assert!(!subject.contains('\n') && !subject.contains('\u{7}'));
        assert!(subject.starts_with("[FIRING] Disk full on ?n?code host"), "{subject}");
        let sms = gsm7_truncate(&"Über “quoted” 🚀 — ".repeat(20), MAX_SMS_CHARS);
        assert_eq!(sms.chars().count(), MAX_SMS_CHARS);
        assert!(sms.chars().all(|c| GSM7_BASIC.contains(c)), "{sms}");
    }

    #[test]
    fn fifo_topics_get_stable_ids_and_huge_groups_fit() {
        let hosts: Vec<Alert> =
            (0..3000).map(|i| host(&format!("i-{i:05}-{}", "x".repeat(60)))).collect();
        let route = route("topic_arn = \"arn:aws:sns:us-east-1:1:oncall.fifo\"");
        let first = render(&notification(Kind::Firing, hosts.clone(), vec![], vec![]), &route, "c");
        let again = render(&notification(Kind::Firing, hosts, vec![], vec![]), &route, "c");
        assert!(first.message.len() <= MAX_MESSAGE_BYTES, "{}", first.message.len());
        assert!(bodies(&first)["default"].as_str().expect("default").contains("more"));
        let ids = first.fifo.expect("fifo ids");
        assert_eq!(Some(ids.clone()), again.fifo, "same notification, same ids");
        assert_eq!(ids.deduplication_id.len(), 64);
    }
}
