//! The aggregator evaluates rules against the stack's CloudWatch: 50 hosts, one hot.

use std::path::{Path, PathBuf};
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

/// Writes `aggregator.toml` in `dir` for `rules`, evaluated every `interval`; returns
/// its path and the state folder.
fn aggregator_config(dir: &Path, rules: &Path, interval: &str) -> (PathBuf, PathBuf) {
    let state_dir = dir.join("state");
    let config_path = dir.join("aggregator.toml");
    let text = format!(
        "rules = \"{}\"\nstate_dir = \"{}\"\nevaluation_interval = \"{interval}\"\n",
        rules.display(),
        state_dir.display()
    );
    std::fs::write(&config_path, text).expect("config");
    (config_path, state_dir)
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
    let (config_path, state_dir) =
        aggregator_config(dir.path(), &dir.path().join("hot.toml"), "5s");
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

/// Puts `klaxon_heartbeat` = `value` for `instance`, stamped now.
async fn heartbeat(cloudwatch: &Client, instance: &str, value: f64) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let datum = MetricDatum::builder()
        .metric_name("klaxon_heartbeat")
        .dimensions(Dimension::builder().name("InstanceId").value(instance).build())
        .timestamp(DateTime::from_secs(now))
        .values(value)
        .build();
    cloudwatch.put_metric_data().namespace("Klaxon").metric_data(datum).send().await.expect("put");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_host_is_down_and_one_that_said_goodbye_is_not() {
    let (stack, config) = stack().await;
    let cloudwatch = Client::new(&config);
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = dir.path().join("absent.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nname = \"HostDown\"\nkind = \"absent\"\nseverity = \"critical\"\nsummary = \"no heartbeat from {{InstanceId}}\"\nnamespace = \"Klaxon\"\nmetric = \"klaxon_heartbeat\"\ngroup_by = [\"InstanceId\"]\nperiod = \"5s\"\nfor = \"15s\"\n",
    )
    .expect("rules");
    let (config_path, state_dir) = aggregator_config(dir.path(), &rules, "2s");
    for _ in 0..3 {
        heartbeat(&cloudwatch, "i-dead", 1.0).await;
        heartbeat(&cloudwatch, "i-scaled-in", 1.0).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    heartbeat(&cloudwatch, "i-scaled-in", 0.0).await;
    let aggregator = Daemon::aggregator(&stack, &config_path, &dir.path().join("aggregator.log"));
    let down = eventually(Duration::from_secs(60), || async {
        alert_lines(&state_dir).iter().any(|(_, state, _)| state == "firing")
    })
    .await;
    assert!(down, "HostDown never fired:\n{}", aggregator.log());
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(aggregator.terminate().success());
    let lines = alert_lines(&state_dir);
    assert_eq!(lines, [("HostDown".to_owned(), "firing".to_owned(), "i-dead".to_owned())]);
}

/// Puts `count` events matching "ERROR" into stream `stream` of group `/test/app`.
async fn log_errors(logs: &aws_sdk_cloudwatchlogs::Client, stream: &str, count: usize) {
    let now_ms =
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
    let events = (0..count).map(|i| {
        aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
            .timestamp(now_ms + i as i64)
            .message(format!("ERROR checkout failed {i}"))
            .build()
            .expect("event")
    });
    logs.put_log_events()
        .log_group_name("/test/app")
        .log_stream_name(stream)
        .set_log_events(Some(events.collect()))
        .send()
        .await
        .expect("put");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_matches_are_counted_once_across_a_restart() {
    let (stack, config) = stack().await;
    let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
    logs.create_log_group().log_group_name("/test/app").send().await.expect("group");
    logs.create_log_stream()
        .log_group_name("/test/app")
        .log_stream_name("i-01")
        .send()
        .await
        .expect("stream");
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = dir.path().join("logs.toml");
    let rule = |name: &str, threshold: u32| {
        format!(
            "[[rule]]\nname = \"{name}\"\nkind = \"log\"\nseverity = \"warning\"\nsummary = \"{{{{value}}}} errors on {{{{stream}}}}\"\nlog_group = \"/test/app\"\npattern = \"ERROR\"\nwindow = \"10m\"\ngroup_by = [\"stream\"]\nwhen = \">= {threshold}\"\n\n"
        )
    };
    std::fs::write(
        &rules,
        format!("{}{}{}", rule("Errors6", 6), rule("Errors8", 8), rule("DoubleCounted", 12)),
    )
    .expect("rules");
    let (config_path, state_dir) = aggregator_config(dir.path(), &rules, "2s");
    let log_path = dir.path().join("aggregator.log");
    let fired = |rule: &'static str| {
        let state_dir = state_dir.clone();
        move || {
            let lines = alert_lines(&state_dir);
            async move { lines.iter().any(|(name, state, _)| name == rule && state == "firing") }
        }
    };

    log_errors(&logs, "i-01", 6).await;
    let aggregator = Daemon::aggregator(&stack, &config_path, &log_path);
    assert!(eventually(Duration::from_secs(30), fired("Errors6")).await, "{}", aggregator.log());
    assert!(aggregator.terminate().success());

    log_errors(&logs, "i-01", 2).await;
    let aggregator = Daemon::aggregator(&stack, &config_path, &log_path);
    assert!(eventually(Duration::from_secs(30), fired("Errors8")).await, "{}", aggregator.log());
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(aggregator.terminate().success());
    let lines = alert_lines(&state_dir);
    let firing: Vec<&str> =
        lines.iter().filter(|l| l.1 == "firing").map(|l| l.0.as_str()).collect();
    assert_eq!(firing, ["Errors6", "Errors8"], "6 then 8 matches, never 14: {lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_rule_file_leaves_the_old_rules_evaluating() {
    let (stack, config) = stack().await;
    let cloudwatch = Client::new(&config);
    let dir = tempfile::tempdir().expect("temp dir");
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir(&rules_dir).expect("rules dir");
    std::fs::write(
        rules_dir.join("hot.toml"),
        "[[rule]]\nname = \"HotHost\"\nkind = \"metric\"\nseverity = \"critical\"\nsummary = \"CPU {{value}}% on {{InstanceId}}\"\nnamespace = \"Klaxon\"\nmetric = \"cpu_usage_active\"\nstat = \"Maximum\"\nperiod = \"10s\"\ngroup_by = [\"InstanceId\"]\nwhen = \"> 90\"\n",
    )
    .expect("rules");
    let (config_path, state_dir) = aggregator_config(dir.path(), &rules_dir, "2s");
    let aggregator = Daemon::aggregator(&stack, &config_path, &dir.path().join("aggregator.log"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    std::fs::write(
        rules_dir.join("broken.toml"),
        "[[rule]]\nname = \"Broken\"\nkind = \"metric\"\nwhen = \n",
    )
    .expect("broken");
    let refused = eventually(Duration::from_secs(20), || {
        let log = aggregator.log();
        async move { log.contains("Invalid rules; the previous rules keep running.") }
    })
    .await;
    assert!(refused, "{}", aggregator.log());
    let fired = eventually(Duration::from_secs(60), || {
        let cloudwatch = cloudwatch.clone();
        let state_dir = state_dir.clone();
        async move {
            put_fleet(&cloudwatch, 97.0).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            alert_lines(&state_dir)
                .iter()
                .any(|(rule, state, _)| rule == "HotHost" && state == "firing")
        }
    })
    .await;
    assert!(fired, "the old rules stopped:\n{}", aggregator.log());
    assert!(aggregator.terminate().success());
    let invalid = klaxon_tests::metrics::statistic(
        &cloudwatch,
        "klaxon_aggregator_rules_invalid",
        &[],
        "Maximum",
        Duration::from_secs(3600),
        Duration::from_secs(600),
    )
    .await;
    assert_eq!(invalid.first().map(|p| p.1), Some(1.0), "the refusal is a metric too");
}

/// Puts one `cpu_usage_active` datapoint for `i-mn` in each 5 s period, values in turn,
/// each stamped inside its own period.
async fn put_per_period(cloudwatch: &Client, values: &[f64]) {
    for value in values {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let into_period = now.as_millis() as u64 % 5000;
        tokio::time::sleep(Duration::from_millis(5000 - into_period + 100)).await;
        let stamp =
            SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
        let datum = MetricDatum::builder()
            .metric_name("cpu_usage_active")
            .dimensions(Dimension::builder().name("InstanceId").value("i-mn").build())
            .timestamp(DateTime::from_secs(stamp))
            .values(*value)
            .build();
        cloudwatch
            .put_metric_data()
            .namespace("Klaxon")
            .metric_data(datum)
            .send()
            .await
            .expect("put");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_of_five_fires_and_hysteresis_holds_until_the_clear_threshold() {
    let (stack, config) = stack().await;
    let cloudwatch = Client::new(&config);
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = dir.path().join("mn.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nname = \"Flaky\"\nkind = \"metric\"\nseverity = \"warning\"\nsummary = \"{{value}} on {{InstanceId}}\"\nnamespace = \"Klaxon\"\nmetric = \"cpu_usage_active\"\nstat = \"Maximum\"\nperiod = \"5s\"\ngroup_by = [\"InstanceId\"]\nwhen = \"> 90\"\ndatapoints = \"3/5\"\nclear_when = \"< 50\"\n",
    )
    .expect("rules");
    let (config_path, state_dir) = aggregator_config(dir.path(), &rules, "1s");
    let aggregator = Daemon::aggregator(&stack, &config_path, &dir.path().join("aggregator.log"));
    // Two breaches in four periods: quiet. A third within five: firing. Then 70 (below
    // 90, above 50): still firing, by hysteresis. Then 40: resolved.
    put_per_period(&cloudwatch, &[95.0, 40.0, 95.0, 40.0]).await;
    assert!(alert_lines(&state_dir).is_empty(), "2 breaches must not fire:\n{}", aggregator.log());
    put_per_period(&cloudwatch, &[95.0, 70.0, 70.0]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let states: Vec<String> = alert_lines(&state_dir).into_iter().map(|l| l.1).collect();
    assert_eq!(states, ["firing"], "3 of 5 fires, 70 holds it:\n{}", aggregator.log());
    put_per_period(&cloudwatch, &[40.0]).await;
    let resolved = eventually(Duration::from_secs(20), || async {
        alert_lines(&state_dir).iter().any(|(_, state, _)| state == "resolved")
    })
    .await;
    assert!(resolved, "40 is past the clear threshold:\n{}", aggregator.log());
    assert!(aggregator.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_cloudwatch_raises_one_degraded_alert_and_keeps_rule_states() {
    let (stack, config) = stack().await;
    let cloudwatch = Client::new(&config);
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = dir.path().join("rules.toml");
    let rule = |name: &str| {
        format!(
            "[[rule]]\nname = \"{name}\"\nkind = \"metric\"\nseverity = \"critical\"\nsummary = \"{{{{value}}}} on {{{{InstanceId}}}}\"\nnamespace = \"Klaxon\"\nmetric = \"cpu_usage_active\"\nstat = \"Maximum\"\nperiod = \"10s\"\ngroup_by = [\"InstanceId\"]\nwhen = \"> 90\"\nno_data = \"keep\"\n\n"
        )
    };
    // no_data = "keep": the periods the throttled test could not fill are no resolution.
    std::fs::write(&rules, format!("{}{}", rule("HotA"), rule("HotB"))).expect("rules");
    put_fleet(&cloudwatch, 99.0).await;
    let (config_path, state_dir) = aggregator_config(dir.path(), &rules, "2s");
    let aggregator = Daemon::aggregator(&stack, &config_path, &dir.path().join("aggregator.log"));
    let firing = eventually(Duration::from_secs(40), || {
        let cloudwatch = cloudwatch.clone();
        let state_dir = state_dir.clone();
        async move {
            put_fleet(&cloudwatch, 99.0).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            alert_lines(&state_dir).iter().filter(|l| l.1 == "firing").count() == 2
        }
    })
    .await;
    assert!(firing, "{}", aggregator.log());
    stack
        .inject(
            klaxon_tests::Service::Metrics,
            klaxon_tests::FaultKind::Throttle,
            klaxon_tests::Times::Fraction(1.0),
        )
        .expect("throttle");
    // Longer than two of the rules' periods: a cycle fetches only when a period completed,
    // and the SDK's own retries must all land inside the throttling.
    tokio::time::sleep(Duration::from_secs(22)).await;
    stack.clear_faults().expect("clear");
    let recovered = eventually(Duration::from_secs(60), || async {
        alert_lines(&state_dir).iter().any(|l| l.0 == "KlaxonSourceDegraded" && l.1 == "resolved")
    })
    .await;
    assert!(recovered, "{}", aggregator.log());
    assert!(aggregator.terminate().success());
    let lines: Vec<(String, String)> =
        alert_lines(&state_dir).into_iter().map(|l| (l.0, l.1)).collect();
    let degraded = lines.iter().filter(|l| l.0 == "KlaxonSourceDegraded").count();
    assert_eq!(
        degraded, 2,
        "one firing and one resolved, not one per rule or per cycle: {lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.1 == "resolved" && l.0.starts_with("Hot")),
        "rule states kept: {lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backtest_replays_two_hours_of_history() {
    let (stack, config) = stack().await;
    let cloudwatch = Client::new(&config);
    let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let hour_ago = now - now.rem_euclid(60) - 3600;
    // An hour of CPU a minute apart: 20%, except 20 minutes at 95% in the middle.
    let data: Vec<MetricDatum> = (0..60)
        .map(|minute| {
            let value = if (20..40).contains(&minute) { 95.0 } else { 20.0 };
            MetricDatum::builder()
                .metric_name("cpu_usage_active")
                .dimensions(Dimension::builder().name("InstanceId").value("i-bt").build())
                .timestamp(DateTime::from_secs(hour_ago + minute * 60 + 1))
                .values(value)
                .build()
        })
        .collect();
    cloudwatch
        .put_metric_data()
        .namespace("Klaxon")
        .set_metric_data(Some(data))
        .send()
        .await
        .expect("put");
    logs.create_log_group().log_group_name("/test/app").send().await.expect("group");
    logs.create_log_stream()
        .log_group_name("/test/app")
        .log_stream_name("i-bt")
        .send()
        .await
        .expect("stream");
    let burst = (0..30).map(|i| {
        aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
            .timestamp((hour_ago + 1800) * 1000 + i)
            .message(format!("ERROR payment declined {i}"))
            .build()
            .expect("event")
    });
    logs.put_log_events()
        .log_group_name("/test/app")
        .log_stream_name("i-bt")
        .set_log_events(Some(burst.collect()))
        .send()
        .await
        .expect("put logs");

    let dir = tempfile::tempdir().expect("temp dir");
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nname = \"HotHost\"\nkind = \"metric\"\nseverity = \"critical\"\nsummary = \"CPU {{value}}% on {{InstanceId}}\"\nnamespace = \"Klaxon\"\nmetric = \"cpu_usage_active\"\nstat = \"Maximum\"\nperiod = \"60s\"\ngroup_by = [\"InstanceId\"]\nwhen = \"> 90\"\nfor = \"5m\"\n\n[[rule]]\nname = \"Errors\"\nkind = \"log\"\nseverity = \"warning\"\nsummary = \"{{value}} errors on {{stream}}\"\nlog_group = \"/test/app\"\npattern = \"ERROR\"\nwindow = \"5m\"\ngroup_by = [\"stream\"]\nwhen = \">= 20\"\n",
    )
    .expect("rules");
    let (config_path, _) = aggregator_config(dir.path(), &rules, "60s");
    let mut command = std::process::Command::new(klaxon_tests::agent::workspace_binary("klaxon"));
    command.args(["rules", "backtest", "--config"]).arg(&config_path).args(["--since", "2h"]);
    stack.configure(&mut command);
    let output = command.output().expect("run klaxon rules backtest");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{printed}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        printed.contains("HotHost: 2 notifications (1 firing, 1 resolved, 0 flapping)"),
        "{printed}"
    );
    assert!(printed.contains("firing   CPU 95% on i-bt"), "{printed}");
    assert!(
        printed.contains("Errors: 2 notifications (1 firing, 1 resolved, 0 flapping)"),
        "{printed}"
    );
    assert!(printed.contains("firing   30 errors on i-bt"), "{printed}");
}
