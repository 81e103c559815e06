//! Alerts reach on-call through SNS, read from an SQS queue subscribed to the topic: one
//! message for a fleet, silences and inhibitions, SNS failing and the aggregator
//! SIGKILLed with a message decided but not yet sent. (A storm under a rate limit is
//! time, not processes: `notify::service`'s tests run it on the paused clock.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
use klaxon_tests::LocalStack;
use klaxon_tests::agent::{Daemon, workspace_binary};
use klaxon_tests::inbox::{Inbox, Notification};
use klaxon_tests::stack::{FaultKind, Service, Times};

use crate::support::{now_secs, stack};

/// Keeps putting `cpu_usage_active` for every host every 2 s, at the values set last.
struct Feeder {
    values: Arc<Mutex<BTreeMap<String, f64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Feeder {
    async fn start(cloudwatch: Client, hosts: impl Iterator<Item = (String, f64)>) -> Feeder {
        let values = Arc::new(Mutex::new(hosts.collect::<BTreeMap<_, _>>()));
        let first = values.lock().expect("lock").clone();
        put(&cloudwatch, &first).await;
        let shared = Arc::clone(&values);
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let snapshot = shared.lock().expect("lock").clone();
                put(&cloudwatch, &snapshot).await;
            }
        });
        Feeder { values, task }
    }

    fn set<'a>(&self, hosts: impl IntoIterator<Item = &'a str>, value: f64) {
        let mut values = self.values.lock().expect("lock");
        for host in hosts {
            values.insert(host.to_owned(), value);
        }
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn put(cloudwatch: &Client, values: &BTreeMap<String, f64>) {
    let data: Vec<MetricDatum> = values
        .iter()
        .map(|(host, value)| {
            MetricDatum::builder()
                .metric_name("cpu_usage_active")
                .dimensions(Dimension::builder().name("InstanceId").value(host).build())
                .timestamp(DateTime::from_secs(now_secs()))
                .values(*value)
                .build()
        })
        .collect();
    for chunk in data.chunks(1000) {
        let sent = cloudwatch
            .put_metric_data()
            .namespace("Klaxon")
            .set_metric_data(Some(chunk.to_vec()))
            .send()
            .await;
        if let Err(error) = sent {
            eprintln!("PutMetricData: {error:?}");
        }
    }
}

/// `name` over cpu_usage_active of every host, 10 s periods.
fn cpu_rule(name: &str, severity: &str, above: u32) -> String {
    format!(
        "[[rule]]\nname = \"{name}\"\nkind = \"metric\"\nseverity = \"{severity}\"\nsummary = \"CPU {{{{value}}}}% on {{{{InstanceId}}}}\"\nrunbook = \"https://runbooks.example/{name}\"\nnamespace = \"Klaxon\"\nmetric = \"cpu_usage_active\"\nstat = \"Maximum\"\nperiod = \"10s\"\ngroup_by = [\"InstanceId\"]\nwhen = \"> {above}\"\n\n"
    )
}

/// Writes the rules and an aggregator config (2 s evaluations) with `policy` appended;
/// returns the config path and the state folder.
fn write_config(dir: &Path, rules: &str, policy: &str) -> (PathBuf, PathBuf) {
    std::fs::write(dir.join("rules.toml"), rules).expect("rules");
    let state_dir = dir.join("state");
    let path = dir.join("aggregator.toml");
    let text = format!(
        "rules = \"{}\"\nstate_dir = \"{}\"\nevaluation_interval = \"2s\"\n\n{policy}",
        dir.join("rules.toml").display(),
        state_dir.display()
    );
    std::fs::write(&path, text).expect("config");
    (path, state_dir)
}

fn hosts(count: usize) -> impl Iterator<Item = String> {
    (1..=count).map(|i| format!("i-{i:03}"))
}

/// Everything the inbox receives within `within`, stopping early once `enough` holds.
async fn collect(
    inbox: &Inbox,
    within: Duration,
    enough: impl Fn(&[Notification]) -> bool,
) -> Vec<Notification> {
    let deadline = Instant::now() + within;
    let mut received = Vec::new();
    while Instant::now() < deadline && !enough(&received) {
        received.extend(inbox.receive().await.expect("receive"));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    received
}

fn subjects(notifications: &[Notification]) -> Vec<String> {
    notifications.iter().map(|n| n.subject.clone().unwrap_or_default()).collect()
}

/// Runs `klaxon ARGS` against the stack; returns (success, stdout, stderr).
fn klaxon(stack: &LocalStack, args: &[&str]) -> (bool, String, String) {
    let mut command = Command::new(workspace_binary("klaxon"));
    command.args(args);
    stack.configure(&mut command);
    let output = command.output().expect("run klaxon");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_hosts_one_message_one_resolution_one_repeat_and_the_watchdog() {
    let (stack, config) = stack().await;
    let inbox = Inbox::create(&config, "oncall").await.expect("inbox");
    let dir = tempfile::tempdir().expect("temp dir");
    let route = format!(
        "[[route]]\ntopic_arn = \"{}\"\ngroup_wait = \"5s\"\ngroup_interval = \"20s\"\nrepeat_interval = \"60s\"\n",
        inbox.topic_arn
    );
    let (config_path, _) = write_config(dir.path(), &cpu_rule("HighCpu", "critical", 90), &route);
    let feeder = Feeder::start(Client::new(&config), hosts(40).map(|h| (h, 97.0))).await;
    let aggregator = Daemon::aggregator(&stack, &config_path, &dir.path().join("aggregator.log"));

    let first = collect(&inbox, Duration::from_secs(90), |got| !got.is_empty()).await;
    let fired_at = Instant::now();
    assert_eq!(subjects(&first), ["[FIRING] HighCpu firing on 40 hosts"], "{}", aggregator.log());
    assert!(hosts(40).all(|h| first[0].message.contains(&h)), "{}", first[0].message);
    let attribute =
        |n: &Notification, name: &str| n.message_attributes.get(name).map(|a| a.value.clone());
    assert_eq!(attribute(&first[0], "status").as_deref(), Some("firing"));
    assert_eq!(attribute(&first[0], "severity").as_deref(), Some("critical"));

    // Still firing, nothing new: silent until repeat_interval, then said once again.
    let quiet = collect(&inbox, Duration::from_secs(50), |got| !got.is_empty()).await;
    assert!(quiet.is_empty(), "repeated early: {:?}", subjects(&quiet));
    let repeat = collect(&inbox, Duration::from_secs(30), |got| !got.is_empty()).await;
    assert_eq!(subjects(&repeat), ["[FIRING] HighCpu still firing on 40 hosts"]);
    assert!(fired_at.elapsed() >= Duration::from_secs(55), "{:?}", fired_at.elapsed());

    feeder.set(hosts(40).collect::<Vec<_>>().iter().map(String::as_str), 20.0);
    let resolved = collect(&inbox, Duration::from_secs(60), |got| !got.is_empty()).await;
    assert_eq!(subjects(&resolved), ["[RESOLVED] HighCpu resolved on 40 hosts"]);
    let after = collect(&inbox, Duration::from_secs(15), |got| !got.is_empty()).await;
    assert!(after.is_empty(), "after the resolution: {:?}", subjects(&after));

    // The watchdog: an alarm on the heartbeat the aggregator has been sending.
    let config_arg = config_path.display().to_string();
    let (ok, out, err) = klaxon(
        &stack,
        &["watchdog", "install", "--config", &config_arg, "--topic", &inbox.topic_arn],
    );
    assert!(ok, "{out}{err}");
    let cloudwatch = Client::new(&config);
    let alarms = cloudwatch.describe_alarms().send().await.expect("DescribeAlarms");
    let alarm = &alarms.metric_alarms()[0];
    assert_eq!(alarm.metric_name(), Some("klaxon_aggregator_heartbeat"));
    assert_eq!(alarm.treat_missing_data(), Some("breaching"));
    assert_eq!(alarm.alarm_actions(), std::slice::from_ref(&inbox.topic_arn));
    let heartbeats = cloudwatch
        .list_metrics()
        .namespace("Klaxon")
        .metric_name("klaxon_aggregator_heartbeat")
        .send()
        .await
        .expect("ListMetrics");
    assert!(!heartbeats.metrics().is_empty(), "no heartbeat published");
    assert!(aggregator.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_and_an_inhibition_hold_alerts_until_they_end() {
    let (stack, config) = stack().await;
    let inbox = Inbox::create(&config, "oncall").await.expect("inbox");
    let dir = tempfile::tempdir().expect("temp dir");
    // Overheat on a host inhibits its HighCpu; both go to one route.
    let policy = format!(
        "[[route]]\ntopic_arn = \"{}\"\ngroup_wait = \"3s\"\ngroup_interval = \"10s\"\n\n[[inhibit]]\nsource = {{ rule = \"Overheat\" }}\ntarget = {{ rule = \"HighCpu\" }}\nequal = [\"InstanceId\"]\n",
        inbox.topic_arn
    );
    let rules = cpu_rule("Overheat", "critical", 95) + &cpu_rule("HighCpu", "warning", 90);
    let (config_path, _) = write_config(dir.path(), &rules, &policy);
    let config_arg = config_path.display().to_string();
    let (ok, silence_id, err) = klaxon(
        &stack,
        &[
            "silence",
            "add",
            "--config",
            &config_arg,
            "--match",
            "InstanceId=i-003",
            "--duration",
            "1h",
            "--comment",
            "disk swap",
        ],
    );
    assert!(ok, "{err}");
    let silence_id = silence_id.trim().to_owned();
    let values = [("i-001", 99.0), ("i-002", 92.0), ("i-003", 92.0), ("i-004", 10.0)];
    let feeder =
        Feeder::start(Client::new(&config), values.iter().map(|(h, v)| ((*h).to_owned(), *v)))
            .await;
    let aggregator = Daemon::aggregator(&stack, &config_path, &dir.path().join("aggregator.log"));

    let first = collect(&inbox, Duration::from_secs(90), |got| !got.is_empty()).await;
    assert_eq!(
        subjects(&first),
        ["[FIRING] 2 alert groups: HighCpu firing on i-002; Overheat firing on i-001"],
        "{}",
        aggregator.log()
    );
    assert!(!first[0].message.contains("i-003"), "silenced: {}", first[0].message);
    let (ok, listed, _) = klaxon(&stack, &["alerts", "--config", &config_arg, "--format", "json"]);
    assert!(ok);
    let rows: Vec<serde_json::Value> =
        listed.lines().map(|line| serde_json::from_str(line).expect("json row")).collect();
    let suppressed = |host: &str, rule: &str| {
        rows.iter()
            .find(|r| r["labels"]["InstanceId"] == host && r["rule"] == rule)
            .map(|r| r["suppressed"]["by"].as_str().unwrap_or("none").to_owned())
    };
    assert_eq!(suppressed("i-003", "HighCpu").as_deref(), Some("silenced"), "{listed}");
    assert_eq!(suppressed("i-001", "HighCpu").as_deref(), Some("inhibited"), "{listed}");
    assert_eq!(suppressed("i-002", "HighCpu").as_deref(), Some("none"), "{listed}");

    // The silence ends: i-003 comes through.
    let (ok, _, err) = klaxon(&stack, &["silence", "expire", "--config", &config_arg, &silence_id]);
    assert!(ok, "{err}");
    let (_, silences, _) = klaxon(&stack, &["silence", "list", "--config", &config_arg]);
    assert!(silences.contains(&silence_id) && silences.contains("expired"), "{silences}");
    let second = collect(&inbox, Duration::from_secs(40), |got| !got.is_empty()).await;
    assert_eq!(subjects(&second), ["[FIRING] HighCpu: +1 new, 2 still firing"]);
    assert!(second[0].message.contains("new: i-003"), "{}", second[0].message);

    // The source resolves: the inhibited target comes through.
    feeder.set(["i-001"], 92.0);
    let third = collect(&inbox, Duration::from_secs(60), |got| {
        let text: String = got.iter().map(|n| n.message.as_str()).collect();
        text.contains("Overheat resolved") && text.contains("new: i-001")
    })
    .await;
    let text: String = third.iter().map(|n| n.message.as_str()).collect();
    assert!(text.contains("Overheat resolved on i-001"), "{}", subjects(&third).join("\n"));
    assert!(text.contains("new: i-001"), "{text}");
    assert!(aggregator.terminate().success());
}

/// How long SNS fails: long enough for the kill, a restart and the hosts' recovery.
const SNS_OUTAGE: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sns_failing_and_a_sigkill_lose_and_repeat_nothing() {
    let (stack, config) = stack().await;
    let inbox = Inbox::create(&config, "oncall").await.expect("inbox");
    let dir = tempfile::tempdir().expect("temp dir");
    let route = format!(
        "[[route]]\ntopic_arn = \"{}\"\ngroup_wait = \"3s\"\ngroup_interval = \"10s\"\n",
        inbox.topic_arn
    );
    let (config_path, state_dir) =
        write_config(dir.path(), &cpu_rule("HighCpu", "critical", 90), &route);
    stack.inject(Service::Sns, FaultKind::ServerError, Times::Fraction(1.0)).expect("fault");
    let failing_since = Instant::now();
    let feeder = Feeder::start(Client::new(&config), hosts(3).map(|h| (h, 97.0))).await;
    let log = dir.path().join("aggregator.log");
    let aggregator = Daemon::aggregator(&stack, &config_path, &log);

    // Decided, written to the outbox, not delivered: SIGKILL now.
    let outbox = state_dir.join("outbox");
    let decided = klaxon_tests::agent::eventually(Duration::from_secs(60), || {
        let outbox = outbox.clone();
        async move { std::fs::read_dir(&outbox).is_ok_and(|mut entries| entries.next().is_some()) }
    })
    .await;
    assert!(decided, "nothing decided:\n{}", aggregator.log());
    aggregator.kill();
    let aggregator = Daemon::aggregator(&stack, &config_path, &log);
    // While SNS still fails, the hosts recover: a second message waits behind the first.
    feeder.set(hosts(3).collect::<Vec<_>>().iter().map(String::as_str), 20.0);
    tokio::time::sleep(SNS_OUTAGE.saturating_sub(failing_since.elapsed())).await;
    assert!(inbox.receive().await.expect("receive").is_empty(), "delivered during the outage");
    stack.clear_faults().expect("clear");

    let delivered = collect(&inbox, Duration::from_secs(90), |got| got.len() >= 2).await;
    let extra = collect(&inbox, Duration::from_secs(10), |_| false).await;
    assert_eq!(
        subjects(&delivered),
        ["[FIRING] HighCpu firing on 3 hosts", "[RESOLVED] HighCpu resolved on 3 hosts"],
        "{}",
        aggregator.log()
    );
    assert!(extra.is_empty(), "delivered twice: {:?}", subjects(&extra));
    assert!(std::fs::read_dir(&outbox).expect("outbox").next().is_none(), "outbox not empty");
    assert!(stack.stats().expect("stats").faults.values().sum::<u64>() > 3);
    assert!(aggregator.terminate().success());
}
