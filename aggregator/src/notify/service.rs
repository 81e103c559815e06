//! The notifier at run time: one task decides (changes in, every second a flush through
//! the rate limits into the outbox, state saved), one task delivers (the outbox, oldest
//! first, to the publisher with back-off). Time comes from tokio, so tests pause it.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use governor::clock::Clock;
use governor::{Quota, RateLimiter};
use tokio::sync::{Notify, mpsc};
use tracing::{error, info, warn};

use super::dispatch::{Dispatcher, Millis, Saved};
use super::message::render;
use super::outbox::{Outbox, OutboxEntry};
use super::policy::Policy;
use super::publish::{PublishError, Publisher};
use super::silence::{Silences, silences_path};
use crate::engine::evaluate::AlertChange;
use klaxon_common::state_file::{read_json, write_atomically};

/// The metric the aggregator puts every cycle; `klaxon watchdog install` alarms on it.
pub const HEARTBEAT_METRIC: &str = "klaxon_aggregator_heartbeat";
/// How often due groups are looked for (and silences re-read).
const TICK: Duration = Duration::from_secs(1);
/// Deliveries that fail wait this long, doubling up to the maximum.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);
/// A topic gets at most this many messages a second: SNS deactivates email
/// subscriptions that receive more than 10.
const PER_TOPIC_PER_SECOND: u32 = 2;

/// governor's clock, read from tokio's (pausable) clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    type Instant = std::time::Instant;
    fn now(&self) -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }
}

type Limiter = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    TokioClock,
    governor::middleware::NoOpMiddleware<std::time::Instant>,
>;

/// At most `per_hour` messages in any hour: a burst of a fifth of it, the rest spaced
/// evenly (burst b plus one per 3600/(n-b+1) s never exceeds n within an hour).
fn hourly_limiter(per_hour: u32) -> Option<Limiter> {
    let per_hour = per_hour.max(1);
    let burst = (per_hour / 5).max(1);
    let period = Duration::from_secs(3600) / (per_hour - burst + 1);
    let quota = Quota::with_period(period)?.allow_burst(NonZeroU32::new(burst)?);
    Some(RateLimiter::direct_with_clock(quota, TokioClock))
}

/// Wall-clock milliseconds that advance with tokio's clock.
#[derive(Debug, Clone, Copy)]
struct WallClock {
    start_millis: Millis,
    start: tokio::time::Instant,
}

impl WallClock {
    fn new() -> Self {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        WallClock { start_millis: now.as_millis() as Millis, start: tokio::time::Instant::now() }
    }
    fn now(&self) -> Millis {
        self.start_millis + self.start.elapsed().as_millis() as Millis
    }
}

/// What the daemon keeps of the running notifier.
#[derive(Debug, Clone)]
pub struct NotifierHandle {
    changes: mpsc::UnboundedSender<Vec<AlertChange>>,
    held_back: Arc<AtomicU64>,
}

impl NotifierHandle {
    /// Hands the engine's changes over.
    pub fn send(&self, changes: Vec<AlertChange>) {
        if !changes.is_empty() && self.changes.send(changes).is_err() {
            error!(message = "The notifier has stopped; alert changes are only logged.");
        }
    }

    /// Notifications held back by rate limits since the last call.
    pub fn take_held_back(&self) -> u64 {
        self.held_back.swap(0, Ordering::Relaxed)
    }
}

/// Where the dispatcher's state is saved.
pub fn notify_state_path(state_dir: &Path) -> PathBuf {
    state_dir.join("notify.json")
}

/// Reads the saved dispatcher state; a missing file is a fresh start.
pub fn load_saved(state_dir: &Path) -> std::io::Result<Saved> {
    Ok(read_json(&notify_state_path(state_dir))?.unwrap_or_default())
}

/// Starts both tasks. Messages left in the outbox by a crash are applied to the
/// restored state first (so they are not decided again) and delivered first.
/// `console` is the CloudWatch console URL of the region, for links in emails.
pub fn start<P: Publisher>(
    policy: Policy,
    state_dir: &Path,
    console: String,
    publisher: P,
) -> std::io::Result<NotifierHandle> {
    std::fs::create_dir_all(state_dir)?;
    let mut dispatcher = Dispatcher::restore(policy, load_saved(state_dir)?);
    let outbox = Outbox::open(state_dir)?;
    let waiting = outbox.pending()?;
    for (sequence, _) in &waiting {
        dispatcher.apply(&outbox.read(*sequence)?.notification);
    }
    if !waiting.is_empty() {
        info!(message = "Delivering notifications left in the outbox.", count = waiting.len());
    }
    let (changes, received) = mpsc::unbounded_channel();
    let held_back = Arc::new(AtomicU64::new(0));
    let delivered = Arc::new(Notify::new());
    let decider = Decider {
        dispatcher,
        outbox,
        state_path: notify_state_path(state_dir),
        silences_path: silences_path(state_dir),
        silences: Silences::default(),
        silences_modified: None,
        console,
        held_back: Arc::clone(&held_back),
        wake_delivery: Arc::clone(&delivered),
    };
    tokio::spawn(decider.run(received));
    tokio::spawn(deliver(Outbox::open(state_dir)?, publisher, delivered));
    Ok(NotifierHandle { changes, held_back })
}

struct Decider {
    dispatcher: Dispatcher,
    outbox: Outbox,
    state_path: PathBuf,
    silences_path: PathBuf,
    silences: Silences,
    silences_modified: Option<SystemTime>,
    console: String,
    held_back: Arc<AtomicU64>,
    wake_delivery: Arc<Notify>,
}

impl Decider {
    async fn run(mut self, mut received: mpsc::UnboundedReceiver<Vec<AlertChange>>) {
        let clock = WallClock::new();
        let policy = self.dispatcher.policy().clone();
        let routes: Vec<Option<Limiter>> =
            policy.routes.iter().map(|r| r.config.max_per_hour.and_then(hourly_limiter)).collect();
        let overall = hourly_limiter(policy.max_per_hour);
        // Messages of the last hour count against the limits after a restart too.
        for (index, limiter) in routes.iter().enumerate() {
            for _ in self.dispatcher.recent_sends(index) {
                let _ = limiter.as_ref().map(Limiter::check);
                let _ = overall.as_ref().map(Limiter::check);
            }
        }
        let mut tick = tokio::time::interval(TICK);
        loop {
            let mut changed = false;
            tokio::select! {
                batch = received.recv() => match batch {
                    Some(batch) => {
                        self.dispatcher.update(&batch);
                        changed = true;
                    }
                    None => return,
                },
                _ = tick.tick() => {}
            }
            self.reload_silences();
            let allow = |route: usize| {
                let route_ok = routes[route].as_ref().is_none_or(|l| l.check().is_ok());
                route_ok && overall.as_ref().is_none_or(|l| l.check().is_ok())
            };
            let (notifications, flushed) =
                self.dispatcher.flush(clock.now(), &self.silences, allow);
            self.held_back.fetch_add(self.dispatcher.take_held_back(), Ordering::Relaxed);
            for notification in &notifications {
                let route = &policy.routes[notification.route].config;
                let envelope = render(notification, route, &self.console);
                let entry = OutboxEntry { notification: notification.clone(), envelope };
                // Written before the state that says it was sent: a crash in between is
                // repaired at start by applying the outbox to the state.
                if let Err(error) = self.outbox.put(&entry) {
                    error!(message = "Cannot write the outbox; the notification is lost.", %error, subject = %entry.envelope.subject);
                }
            }
            if changed || flushed {
                self.save();
            }
            if !notifications.is_empty() {
                self.wake_delivery.notify_one();
            }
        }
    }

    fn save(&self) {
        let saved = self.dispatcher.save();
        let written = serde_json::to_vec(&saved)
            .map_err(std::io::Error::other)
            .and_then(|bytes| write_atomically(&self.state_path, &bytes));
        if let Err(error) = written {
            warn!(message = "Cannot save the notifier state.", path = %self.state_path.display(), %error);
        }
    }

    /// Re-reads the silences when their file changed; a broken file keeps the last good.
    fn reload_silences(&mut self) {
        let modified = std::fs::metadata(&self.silences_path).and_then(|m| m.modified()).ok();
        if modified == self.silences_modified {
            return;
        }
        match Silences::load(&self.silences_path) {
            Ok(silences) => {
                self.silences = silences;
                self.silences_modified = modified;
            }
            Err(error) => {
                warn!(message = "Cannot read the silences; the previous ones stay.", %error);
                self.silences_modified = modified;
            }
        }
    }
}

/// Delivers the outbox in order, forever: a failing Publish is retried with back-off
/// (the SDK's own retries come first); a refused one is set aside.
async fn deliver<P: Publisher>(outbox: Outbox, publisher: P, wake: Arc<Notify>) {
    let per_topic = Quota::per_second(NonZeroU32::MIN.saturating_add(PER_TOPIC_PER_SECOND - 1));
    let mut paces: HashMap<String, Limiter> = HashMap::new();
    loop {
        let pending = match outbox.pending() {
            Ok(pending) => pending,
            Err(error) => {
                error!(message = "Cannot read the outbox.", %error);
                Vec::new()
            }
        };
        if pending.is_empty() {
            let _ = tokio::time::timeout(Duration::from_secs(5), wake.notified()).await;
            continue;
        }
        for (sequence, _) in pending {
            let entry = match outbox.read(sequence) {
                Ok(entry) => entry,
                Err(error) => {
                    error!(message = "An outbox entry cannot be read; it is set aside.", sequence, %error);
                    let _ = outbox.set_aside(sequence);
                    continue;
                }
            };
            let pace = paces
                .entry(entry.envelope.topic_arn.clone())
                .or_insert_with(|| RateLimiter::direct_with_clock(per_topic, TokioClock));
            while let Err(not_until) = pace.check() {
                tokio::time::sleep(not_until.wait_time_from(TokioClock.now())).await;
            }
            let mut wait = FIRST_RETRY;
            loop {
                match publisher.publish(&entry.envelope).await {
                    Ok(()) => {
                        info!(message = "Notification sent.", subject = %entry.envelope.subject, topic = %entry.envelope.topic_arn);
                        if let Err(error) = outbox.remove(sequence) {
                            error!(message = "Cannot remove a sent notification from the outbox.", sequence, %error);
                        }
                        break;
                    }
                    Err(PublishError::Refused(reason)) => {
                        let kept = outbox.set_aside(sequence);
                        error!(message = "SNS refused a notification; it is kept aside.", %reason, kept = ?kept);
                        break;
                    }
                    Err(PublishError::Retryable(reason)) => {
                        warn!(message = "Publish failed; trying again.", %reason, in_secs = wait.as_secs());
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(MAX_RETRY);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AggregatorConfig;
    use crate::engine::state::Transition;
    use crate::notify::message::Envelope;
    use std::sync::Mutex;

    /// Records what it is asked to publish, failing the first `failures` attempts.
    #[derive(Clone, Default)]
    struct Recorder {
        sent: Arc<Mutex<Vec<(tokio::time::Instant, Envelope)>>>,
        failures: Arc<AtomicU64>,
        attempts: Arc<AtomicU64>,
    }

    impl Publisher for Recorder {
        async fn publish(&self, envelope: &Envelope) -> Result<(), PublishError> {
            self.attempts.fetch_add(1, Ordering::Relaxed);
            let failing = self
                .failures
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            if failing.is_ok() {
                return Err(PublishError::Retryable("ServiceUnavailable".to_owned()));
            }
            self.sent.lock().expect("lock").push((tokio::time::Instant::now(), envelope.clone()));
            Ok(())
        }
    }

    impl Recorder {
        fn subjects(&self) -> Vec<String> {
            self.sent.lock().expect("lock").iter().map(|(_, e)| e.subject.clone()).collect()
        }
        fn defaults(&self) -> Vec<String> {
            self.sent
                .lock()
                .expect("lock")
                .iter()
                .map(|(_, e)| {
                    let bodies: serde_json::Value = serde_json::from_str(&e.message).expect("json");
                    bodies["default"].as_str().expect("default").to_owned()
                })
                .collect()
        }
    }

    fn policy(routes: &str) -> Policy {
        let config: AggregatorConfig =
            toml::from_str(&format!("rules = \"r\"\n{routes}")).expect("config");
        config.policy().expect("valid policy")
    }

    fn change(rule: &str, host: &str, transition: Transition) -> AlertChange {
        AlertChange {
            rule: rule.to_owned(),
            severity: "critical".to_owned(),
            labels: [("InstanceId".to_owned(), host.to_owned())].into(),
            summary: format!("{rule} on {host}"),
            description: None,
            runbook: None,
            console: None,
            value: Some(97.0),
            transition,
            since: 0,
        }
    }

    fn hosts(
        range: std::ops::Range<usize>,
        rule: &str,
        transition: Transition,
    ) -> Vec<AlertChange> {
        range.map(|i| change(rule, &format!("i-{i:03}"), transition)).collect()
    }

    const ROUTE: &str = "[[route]]\ntopic_arn = \"arn:aws:sns:us-east-1:1:oncall\"\ngroup_wait = \"30s\"\ngroup_interval = \"5m\"\nrepeat_interval = \"4h\"\n";

    async fn after(secs: u64) {
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn forty_hosts_one_message_after_group_wait_then_resolved_fast_then_one_repeat() {
        let dir = tempfile::tempdir().expect("temp dir");
        let recorder = Recorder::default();
        let handle = start(policy(ROUTE), dir.path(), "https://c".to_owned(), recorder.clone())
            .expect("start");
        let fired_at = tokio::time::Instant::now();
        handle.send(hosts(0..40, "HighCpu", Transition::Firing));
        after(29).await;
        assert!(recorder.subjects().is_empty(), "nothing before group_wait");
        after(3).await;
        assert_eq!(recorder.subjects(), ["[FIRING] HighCpu firing on 40 hosts"]);
        let (published_at, _) = recorder.sent.lock().expect("lock")[0].clone();
        assert!(
            published_at - fired_at <= Duration::from_secs(31),
            "{:?}",
            published_at - fired_at
        );
        assert!((0..40).all(|i| recorder.defaults()[0].contains(&format!("i-{i:03}"))));

        // The same state again is not news.
        handle.send(hosts(0..40, "HighCpu", Transition::Firing));
        after(600).await;
        assert_eq!(recorder.subjects().len(), 1, "no repeat before repeat_interval");

        // Two resolve: within 30 s, not a whole group_interval.
        handle.send(hosts(0..2, "HighCpu", Transition::Resolved));
        after(31).await;
        assert_eq!(recorder.subjects()[1], "[FIRING] HighCpu: 2 resolved, 38 still firing");

        after(4 * 3600).await;
        let subjects = recorder.subjects();
        assert_eq!(subjects.len(), 3, "{subjects:?}");
        assert_eq!(subjects[2], "[FIRING] HighCpu still firing on 38 hosts");

        handle.send(hosts(2..40, "HighCpu", Transition::Resolved));
        after(31).await;
        assert_eq!(recorder.subjects()[3], "[RESOLVED] HighCpu resolved on 38 hosts");
        after(5 * 3600).await;
        assert_eq!(recorder.subjects().len(), 4, "nothing left to say");
    }

    #[tokio::test(start_paused = true)]
    async fn a_storm_of_500_alerts_fits_in_ten_messages_an_hour_and_misses_none() {
        let dir = tempfile::tempdir().expect("temp dir");
        let recorder = Recorder::default();
        let route = "[[route]]\ntopic_arn = \"arn:aws:sns:us-east-1:1:oncall\"\ngroup_by = [\"rule\", \"InstanceId\"]\ngroup_wait = \"1s\"\nmax_per_hour = 10\nstructure = \"string\"\n";
        let handle =
            start(policy(route), dir.path(), "c".to_owned(), recorder.clone()).expect("start");
        for second in 0..50 {
            handle.send(hosts(second * 10..second * 10 + 10, "Storm", Transition::Firing));
            after(1).await;
        }
        after(3600 - 50).await;
        let subjects = recorder.subjects();
        assert!(subjects.len() <= 10, "{} messages in the hour: {subjects:?}", subjects.len());
        let sent: Vec<Envelope> =
            recorder.sent.lock().expect("lock").iter().map(|(_, e)| e.clone()).collect();
        // The string structure: one body, and the status as a message attribute.
        assert!(
            sent.iter().all(|e| e.attributes.get("status").map(String::as_str) == Some("firing"))
        );
        let bodies: String = sent.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join("\n");
        let missing: Vec<usize> =
            (0..500).filter(|i| !bodies.contains(&format!("Storm (i-{i:03})"))).collect();
        assert!(missing.is_empty(), "not accounted for: {missing:?}");
        assert!(
            bodies.contains("notifications held back by the rate limit (max_per_hour = 10)"),
            "{bodies}"
        );
        assert!(handle.take_held_back() > 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silence_holds_alerts_until_it_expires() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut silences = Silences::default();
        let now = WallClock::new().now() / 1000;
        let id = silences
            .add(&["InstanceId=~i-00[01]".to_owned()], now, 600, "bob", "deploy")
            .expect("valid");
        silences.save(&silences_path(dir.path())).expect("save");
        let recorder = Recorder::default();
        let handle =
            start(policy(ROUTE), dir.path(), "c".to_owned(), recorder.clone()).expect("start");
        handle.send(hosts(0..3, "HighCpu", Transition::Firing));
        after(40).await;
        assert_eq!(recorder.subjects(), ["[FIRING] HighCpu firing on i-002"]);

        assert!(silences.expire(&id, now + 60));
        silences.save(&silences_path(dir.path())).expect("save");
        after(5 * 60).await;
        assert_eq!(recorder.subjects()[1], "[FIRING] HighCpu: +2 new, 3 still firing");
    }

    #[tokio::test(start_paused = true)]
    async fn an_inhibition_holds_the_target_while_the_source_fires() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = format!(
            "{ROUTE}[[inhibit]]\nsource = {{ rule = \"HostDown\" }}\ntarget = {{ rule = \"HighCpu\" }}\nequal = [\"InstanceId\"]\n"
        );
        let recorder = Recorder::default();
        let handle =
            start(policy(&config), dir.path(), "c".to_owned(), recorder.clone()).expect("start");
        handle.send(vec![change("HostDown", "i-001", Transition::Firing)]);
        handle.send(hosts(0..2, "HighCpu", Transition::Firing));
        after(40).await;
        // Both groups fell due together: one message, i-001's HighCpu held back.
        assert_eq!(
            recorder.subjects(),
            ["[FIRING] 2 alert groups: HighCpu firing on i-000; HostDown firing on i-001"]
        );
        handle.send(vec![change("HostDown", "i-001", Transition::Resolved)]);
        after(5 * 60).await;
        let subjects = recorder.subjects();
        assert!(
            subjects.contains(&"[FIRING] HighCpu: +1 new, 2 still firing".to_owned()),
            "{subjects:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn failed_publishes_are_retried_and_delivered_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let recorder = Recorder::default();
        recorder.failures.store(8, Ordering::Relaxed); // 1+2+4+…: minutes of failures
        let handle =
            start(policy(ROUTE), dir.path(), "c".to_owned(), recorder.clone()).expect("start");
        handle.send(hosts(0..3, "HighCpu", Transition::Firing));
        after(35).await;
        assert!(recorder.subjects().is_empty());
        assert!(Outbox::open(dir.path()).expect("outbox").pending().expect("list").len() == 1);
        after(10 * 60).await;
        assert_eq!(recorder.subjects(), ["[FIRING] HighCpu firing on 3 hosts"]);
        assert_eq!(recorder.attempts.load(Ordering::Relaxed), 9);
        assert!(Outbox::open(dir.path()).expect("outbox").pending().expect("list").is_empty());
    }

    #[test]
    fn the_outbox_repairs_a_state_saved_before_the_crash() {
        let policy = policy(ROUTE);
        let mut dispatcher = Dispatcher::new(policy.clone());
        dispatcher.update(&hosts(0..3, "HighCpu", Transition::Firing));
        let before = dispatcher.save();
        let silences = Silences::default();
        dispatcher.flush(0, &silences, |_| true);
        let (decided, _) = dispatcher.flush(31_000, &silences, |_| true);
        assert_eq!(decided.len(), 1);
        // Crash: the state on disk is from before the decision, the outbox has it.
        let mut restarted = Dispatcher::restore(policy, before);
        restarted.apply(&decided[0]);
        restarted.apply(&decided[0]);
        let (again, _) = restarted.flush(62_000, &silences, |_| true);
        assert!(again.is_empty(), "decided twice: {again:?}");
    }
}
