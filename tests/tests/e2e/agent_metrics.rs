//! Host metrics read back through the CBOR front: values match /proc, Values/Counts keep
//! minimum and maximum, dimension sets as configured, the heartbeat and its goodbye, the
//! IMDSv2 path and its fallbacks, and an outage that leaves no gap.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::Client;
use klaxon_tests::agent::{Daemon, eventually};
use klaxon_tests::metrics::{dimension_sets, statistic};

use crate::support::stack;

const MINUTE: Duration = Duration::from_secs(60);

/// An agent config with fast metrics and no logs.
fn metrics_config(
    dir: &std::path::Path,
    instance_id: Option<&str>,
    extra: &str,
) -> std::path::PathBuf {
    let path = dir.join("agent.toml");
    let instance = instance_id.map(|id| format!("instance_id = \"{id}\"\n")).unwrap_or_default();
    let text = format!(
        "state_dir = \"{}\"\n{instance}\n[metrics]\nsample_interval = \"1s\"\nflush_interval = \"5s\"\n{extra}",
        dir.join("state").display()
    );
    std::fs::write(&path, text).expect("config");
    path
}

/// Memory in use as /proc/meminfo says, in percent.
fn proc_mem_used_percent() -> f64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    let field = |name: &str| -> f64 {
        meminfo
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let total = field("MemTotal:");
    100.0 * (total - field("MemAvailable:")) / total
}

async fn one(cloudwatch: &Client, metric: &str, dims: &[(&str, &str)], stat: &str) -> Option<f64> {
    statistic(cloudwatch, metric, dims, stat, Duration::from_secs(3600), MINUTE * 10)
        .await
        .first()
        .map(|p| p.1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_metrics_match_proc_keep_min_and_max_and_say_goodbye() {
    let (stack, config) = stack().await;
    let cloudwatch = Client::new(&config);
    let dir = tempfile::tempdir().expect("temp dir");
    let config_path = metrics_config(
        dir.path(),
        Some("i-metrics"),
        "measurements = [\"mem_used_percent\", \"processes_total\", \"cpu_usage_active\"]\naggregation_dimensions = [[]]\n",
    );
    let agent = Daemon::start(&stack, &config_path, &dir.path().join("agent.log"));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let extra: Vec<Child> =
        (0..60).map(|_| Command::new("sleep").arg("4").spawn().expect("sleep")).collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    for mut child in extra {
        let _ = child.kill();
        let _ = child.wait();
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let expected_mem = proc_mem_used_percent();
    assert!(agent.terminate().success());

    let host = [("InstanceId", "i-metrics")];
    let mem =
        one(&cloudwatch, "mem_used_percent", &host, "Average").await.expect("memory datapoint");
    assert!((mem - expected_mem).abs() < 5.0, "agent {mem:.1}% vs /proc {expected_mem:.1}%");
    let most = one(&cloudwatch, "processes_total", &host, "Maximum").await.expect("max");
    let least = one(&cloudwatch, "processes_total", &host, "Minimum").await.expect("min");
    let samples = one(&cloudwatch, "processes_total", &host, "SampleCount").await.expect("count");
    assert!(most - least >= 50.0, "max {most} and min {least} kept through Values/Counts");
    assert!(samples >= 8.0, "{samples} samples");
    let cpu = [("InstanceId", "i-metrics"), ("cpu", "cpu-total")];
    let busy = one(&cloudwatch, "cpu_usage_active", &cpu, "Average").await.expect("cpu");
    assert!((0.0..=100.0).contains(&busy));

    let sets = dimension_sets(&cloudwatch, "mem_used_percent").await;
    assert_eq!(sets, [vec![], vec![("InstanceId".to_owned(), "i-metrics".to_owned())]]);
    let goodbye = one(&cloudwatch, "klaxon_heartbeat", &host, "Minimum").await;
    assert_eq!(goodbye, Some(0.0), "heartbeat 0 after a clean stop");
    assert_eq!(one(&cloudwatch, "klaxon_heartbeat", &host, "Maximum").await, Some(1.0));
    let stats = stack.stats().expect("stats");
    let calls = stats.requests_for("monitoring.PutMetricData");
    assert!(
        (2..=4).contains(&calls),
        "one call per flush (11 s at 5 s, plus the goodbye): {calls}"
    );
    assert_eq!(stats.rejected_total, 0, "{:?}", stats.rejected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instance_id_comes_from_imdsv2_else_the_override_else_the_hostname() {
    let (stack, config) = stack().await;
    let cloudwatch = Client::new(&config);
    let dir = tempfile::tempdir().expect("temp dir");

    let from_imds = metrics_config(dir.path(), None, "measurements = [\"mem_used_percent\"]\n");
    let agent = Daemon::start(&stack, &from_imds, &dir.path().join("imds.log"));
    let asked = eventually(Duration::from_secs(20), || async {
        one(&cloudwatch, "klaxon_heartbeat", &[("InstanceId", "i-fake")], "Maximum").await.is_some()
    })
    .await;
    assert!(asked, "no heartbeat as i-fake:\n{}", agent.log());
    assert!(agent.terminate().success());
    let stats = stack.stats().expect("stats");
    assert_eq!(stats.requests_for("imds./latest/api/token"), 1, "IMDSv2: token first");
    assert_eq!(stats.requests_for("imds./latest/meta-data/instance-id"), 1);

    let overridden =
        metrics_config(dir.path(), Some("i-override"), "measurements = [\"mem_used_percent\"]\n");
    let agent = Daemon::start(&stack, &overridden, &dir.path().join("override.log"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(agent.terminate().success());
    assert_eq!(
        stack.stats().expect("stats").requests_for("imds./latest/api/token"),
        1,
        "no IMDS call"
    );

    // IMDS disabled, and IMDS that never answers: the hostname, within the 1 s budget.
    let hostname = klaxon_agent_hostname();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_endpoint = format!("http://{}", silent.local_addr().expect("addr"));
    let cases: [(&str, &[(&str, &str)]); 2] = [
        ("disabled", &[("AWS_EC2_METADATA_DISABLED", "true")]),
        ("silent", &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", silent_endpoint.as_str())]),
    ];
    for (name, env) in cases {
        let fallback = metrics_config(dir.path(), None, "measurements = [\"mem_used_percent\"]\n");
        let log = dir.path().join(format!("{name}.log"));
        let started = Instant::now();
        let agent = Daemon::start_with(&stack, &fallback, &log, env);
        let running = eventually(Duration::from_secs(10), || async {
            agent.log().contains(&format!("Agent running. instance_id={hostname}"))
        })
        .await;
        let took = started.elapsed();
        assert!(running, "{name}: not running as the hostname:\n{}", agent.log());
        // The IMDS budget is 1 s; the rest is process start on a loaded CI machine.
        assert!(took < Duration::from_secs(3), "{name}: start-up took {took:?}");
        assert!(agent.terminate().success());
    }
    assert_eq!(stack.stats().expect("stats").requests_for("imds./latest/api/token"), 1);
}

fn klaxon_agent_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname").trim().to_owned()
}

/// Each half of the outage: before the clean stop, and after the restart.
const OUTAGE_HALF: Duration = Duration::from_secs(30);
/// The 10 s heartbeat buckets from the start to the recovery (6 s + two halves), at least.
const OUTAGE_BUCKETS: usize = 7;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_across_a_restart_leaves_no_gap_and_sigkill_sends_no_goodbye() {
    let (stack, config) = stack().await;
    let cloudwatch = Client::new(&config);
    let dir = tempfile::tempdir().expect("temp dir");
    let config_path =
        metrics_config(dir.path(), Some("i-outage"), "measurements = [\"mem_used_percent\"]\n");
    let log = dir.path().join("agent.log");
    let began = Instant::now();
    let agent = Daemon::start(&stack, &config_path, &log);
    tokio::time::sleep(Duration::from_secs(6)).await;
    stack.set_outage(true).expect("outage");
    tokio::time::sleep(OUTAGE_HALF).await;
    assert!(agent.terminate().success(), "a clean stop during the outage");
    let agent = Daemon::start(&stack, &config_path, &log);
    tokio::time::sleep(OUTAGE_HALF).await;
    stack.set_outage(false).expect("recovery");
    let host = [("InstanceId", "i-outage")];
    let window = began.elapsed() + Duration::from_secs(20);
    let heartbeats = |stat: &'static str| {
        let cloudwatch = cloudwatch.clone();
        async move {
            let ten_seconds = Duration::from_secs(10);
            statistic(&cloudwatch, "klaxon_heartbeat", &host, stat, ten_seconds, window).await
        }
    };
    let backfilled = eventually(Duration::from_secs(60), || async {
        heartbeats("SampleCount").await.len() >= OUTAGE_BUCKETS
    })
    .await;
    assert!(backfilled, "the spool was not sent:\n{}", agent.log());
    agent.kill();

    let points = heartbeats("SampleCount").await;
    let stamps: Vec<i64> = points.iter().map(|p| p.0).collect();
    let gaps: Vec<_> = stamps.windows(2).filter(|w| w[1] - w[0] > 10).collect();
    assert!(gaps.is_empty(), "10 s buckets without a heartbeat: {gaps:?} in {stamps:?}");
    assert!(stamps.len() >= OUTAGE_BUCKETS, "the whole outage in heartbeats: {stamps:?}");
    let values = heartbeats("Minimum").await;
    let goodbyes = values.iter().filter(|p| p.1 == 0.0).count();
    assert_eq!(goodbyes, 1, "one goodbye (the clean stop), none for the SIGKILL: {values:?}");
}
