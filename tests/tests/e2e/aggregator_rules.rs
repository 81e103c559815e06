//! The aggregator evaluates rules against the stack's CloudWatch: 50 hosts, one hot.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
use klaxon_tests::agent::{Daemon, eventually};

use crate::support::stack;

const HOSTS: usize = 50;
const HOT: &str = "i-07";

/// Puts one CPU datapoint, stamped now, for each of 50 hosts; the hot one at `hot`.
async fn put_fleet(cloudwatch: &Client, hot: f64) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let data = (0..HOSTS).map(|host| {
        let id = format!("i-{host:02}");
        let value = if id == HOT { hot } else { 10.0 + host as f64 % 7.0 };
        MetricDatum::builder()
            .metric_name("cpu_usage_active")
            .dimensions(Dimension::builder().name("InstanceId").value(id).build())
            .timestamp(DateTime::from_secs(now))
            .values(value)
            .build()
    });
    cloudwatch
        .put_metric_data()
        .namespace("Klaxon")
        .set_metric_data(Some(data.collect()))
        .send()
        .await
        .expect("PutMetricData");
}

/// The alert log's lines as (rule, state, InstanceId).
fn alert_lines(state_dir: &std::path::Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(state_dir.join("alerts.jsonl")).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .map(|v| {
            let field = |name: &str| v[name].as_str().unwrap_or_default().to_owned();
            (
                field("rule"),
                field("state"),
                v["labels"]["InstanceId"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hot_host_of_fifty_goes_pending_then_firing_then_resolved() {
    let (stack, config) = stack().await;
    let cloudwatch = Client::new(&config);
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("hot.toml"),
        "[[rule]]\nname = \"HotHost\"\nkind = \"metric\"\nseverity = \"critical\"\nsummary = \"CPU {{value}}% on {{InstanceId}}\"\nnamespace = \"Klaxon\"\nmetric = \"cpu_usage_active\"\nstat = \"Maximum\"\nperiod = \"10s\"\ngroup_by = [\"InstanceId\"]\nwhen = \"> 90\"\nfor = \"20s\"\n",
    )
    .expect("rules");
    let state_dir = dir.path().join("state");
    let config_path = dir.path().join("aggregator.toml");
    std::fs::write(
        &config_path,
        format!(
            "rules = \"{}\"\nstate_dir = \"{}\"\nevaluation_interval = \"5s\"\n",
            dir.path().join("hot.toml").display(),
            state_dir.display()
        ),
    )
    .expect("config");
    put_fleet(&cloudwatch, 95.0).await;
    let aggregator = Daemon::aggregator(&stack, &config_path, &dir.path().join("aggregator.log"));

    let fired = eventually(Duration::from_secs(90), || {
        let cloudwatch = cloudwatch.clone();
        let state_dir = state_dir.clone();
        async move {
            put_fleet(&cloudwatch, 95.0).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            alert_lines(&state_dir).iter().any(|(_, state, _)| state == "firing")
        }
    })
    .await;
    assert!(fired, "never fired:\n{}", aggregator.log());
    let resolved = eventually(Duration::from_secs(90), || {
        let cloudwatch = cloudwatch.clone();
        let state_dir = state_dir.clone();
        async move {
            put_fleet(&cloudwatch, 20.0).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            alert_lines(&state_dir).iter().any(|(_, state, _)| state == "resolved")
        }
    })
    .await;
    assert!(resolved, "never resolved:\n{}", aggregator.log());
    assert!(aggregator.terminate().success());

    let lines = alert_lines(&state_dir);
    let expected: Vec<(String, String, String)> = ["pending", "firing", "resolved"]
        .iter()
        .map(|state| ("HotHost".to_owned(), (*state).to_owned(), HOT.to_owned()))
        .collect();
    assert_eq!(lines, expected, "exactly the hot host, through every state");
    let text = std::fs::read_to_string(state_dir.join("alerts.jsonl")).expect("alerts");
    assert!(text.contains("\"summary\":\"CPU 95% on i-07\""), "{text}");
}
