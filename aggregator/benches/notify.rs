//! Bench: alert updates through the notifier in memory, on one core: fingerprint, route,
//! group, dedup, then one flush (silences, a mute window, inhibition) per 100,000
//! updates, as the daemon flushes once a second. 10,000 distinct alerts (1,000 hosts ×
//! 10 rules) flip between firing and resolved; 3 routes, 50 silences (100 hosts), 1 inhibition with
//! 100 firing sources.
//!
//! Then the latency from an alert turning firing to the Publish call, through the running
//! service (real clock, outbox on disk, an in-memory publisher), with `group_wait = 2s`.
//!
//! `cargo bench -p klaxon-aggregator --bench notify` prints the median of 5 rounds and
//! the latencies of 5 alerts.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use klaxon_aggregator::config::AggregatorConfig;
use klaxon_aggregator::engine::evaluate::AlertChange;
use klaxon_aggregator::engine::state::Transition;
use klaxon_aggregator::notify::dispatch::Dispatcher;
use klaxon_aggregator::notify::message::Envelope;
use klaxon_aggregator::notify::publish::{PublishError, Publisher};
use klaxon_aggregator::notify::service;
use klaxon_aggregator::notify::silence::Silences;

const UPDATES: usize = 100_000;
const HOSTS: usize = 1000;
const RULES: usize = 10;
const ROUNDS: usize = 5;

const CONFIG: &str = r#"
rules = "r"
[[route]]
match = { severity = "critical" }
topic_arn = "arn:aws:sns:us-east-1:1:critical"
group_by = ["rule"]
[[route]]
match = { rule = "=~Rule[0-4]" }
topic_arn = "arn:aws:sns:us-east-1:1:web"
group_by = ["rule", "InstanceId"]
[[route]]
topic_arn = "arn:aws:sns:us-east-1:1:rest"
[[mute]]
days = ["sat"]
from = "01:00"
to = "02:00"
match = { severity = "info" }
[[inhibit]]
source = { rule = "HostDown" }
target = { severity = "=~warning|critical" }
equal = ["InstanceId"]
"#;

fn change(rule: usize, host: usize, firing: bool) -> AlertChange {
    let name = if rule == 0 { "HostDown".to_owned() } else { format!("Rule{rule}") };
    AlertChange {
        rule: name.clone(),
        severity: if rule.is_multiple_of(3) { "critical" } else { "warning" }.to_owned(),
        labels: [("InstanceId".to_owned(), format!("i-{host:05}"))].into(),
        summary: format!("{name} on i-{host:05}"),
        description: None,
        runbook: None,
        console: None,
        value: Some(97.0),
        transition: if firing { Transition::Firing } else { Transition::Resolved },
        since: 0,
    }
}

fn main() {
    throughput();
    latency();
}

fn throughput() {
    let config: AggregatorConfig = toml::from_str(CONFIG).expect("config");
    let policy = config.policy().expect("policy");
    let mut silences = Silences::default();
    for index in 0..50 {
        silences
            .add(&[format!("InstanceId=~i-{index:04}[05]")], 0, 1 << 40, "bench", "bench")
            .expect("silence");
    }
    let mut dispatcher = Dispatcher::new(policy);
    // 100 hosts are down: HostDown inhibits their other alerts.
    let down: Vec<AlertChange> = (0..100).map(|host| change(0, host * 10, true)).collect();
    dispatcher.update(&down);
    let mut seed = 11u64;
    let mut next = move || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (seed >> 33) as usize
    };
    let mut times = Vec::new();
    let mut sent = 0;
    for round in 0..ROUNDS {
        let batch: Vec<AlertChange> = (0..UPDATES)
            .map(|_| change(1 + next() % (RULES - 1), next() % HOSTS, next() % 4 != 0))
            .collect();
        let started = Instant::now();
        dispatcher.update(&batch);
        let (messages, _) = dispatcher.flush(round as i64 * 3_600_000, &silences, |_| true);
        times.push(started.elapsed());
        sent += messages.len();
    }
    times.sort();
    let median = times[ROUNDS / 2];
    println!(
        "notify: {UPDATES} updates + 1 flush in {:.1} ms median of {ROUNDS} = {:.0} updates/s ({sent} messages decided)",
        median.as_secs_f64() * 1000.0,
        UPDATES as f64 / median.as_secs_f64()
    );
}

/// Notes when each message reached it.
#[derive(Clone, Default)]
struct Clocked(Arc<Mutex<Vec<Instant>>>);

impl Publisher for Clocked {
    async fn publish(&self, _: &Envelope) -> Result<(), PublishError> {
        self.0.lock().expect("lock").push(Instant::now());
        Ok(())
    }
}

fn latency() {
    const GROUP_WAIT: Duration = Duration::from_secs(2);
    let config: AggregatorConfig = toml::from_str(
        "rules = \"r\"\n[[route]]\ntopic_arn = \"arn:aws:sns:us-east-1:1:t\"\ngroup_by = [\"InstanceId\"]\ngroup_wait = \"2s\"\n",
    )
    .expect("config");
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let latencies: Vec<Duration> = runtime.block_on(async {
        let publisher = Clocked::default();
        let policy = config.policy().expect("policy");
        let handle =
            service::start(policy, dir.path(), String::new(), publisher.clone()).expect("start");
        let mut latencies = Vec::new();
        for host in 0..5 {
            // Fired at a random point of the notifier's one-second tick.
            tokio::time::sleep(Duration::from_millis(1100 + 170 * host as u64)).await;
            let fired = Instant::now();
            handle.send(vec![change(1, host, true)]);
            while publisher.0.lock().expect("lock").len() <= host {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            latencies.push(publisher.0.lock().expect("lock")[host] - fired);
        }
        latencies
    });
    let shown: Vec<String> =
        latencies.iter().map(|l| format!("{:.2} s", l.as_secs_f64())).collect();
    let worst = latencies.iter().max().copied().unwrap_or_default();
    println!(
        "notify: firing to Publish with group_wait = {} s: {} (worst {:.2} s over group_wait)",
        GROUP_WAIT.as_secs(),
        shown.join(", "),
        worst.as_secs_f64() - GROUP_WAIT.as_secs_f64()
    );
}
