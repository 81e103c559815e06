//! `klaxon-demo`: the README's first command. On the local AWS stack, with no AWS
//! account, it runs Klaxon's main job end to end: two web servers' agents (one tailing a
//! generated nginx access and error log and sampling this host, its instance id from the
//! stack's IMDS; one sending only its heartbeat), the aggregator with the shipped rules
//! and three demo rules with short windows, and an on-call inbox (an SQS queue on the SNS
//! topic). It provokes an error burst, a CPU breach and a dead host, and prints as they
//! happen the log lines (through `klaxon logs query`), the metrics, and the alerts.
//! Setup (the virtualenv, the binaries) comes first and is announced; the demo then ends
//! by itself within 4 minutes of its stack being ready, stops everything it started,
//! and exits non-zero, naming the step, what it needed and what to try,
//! if an expected alert did not arrive.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use klaxon_tests::LocalStack;
use klaxon_tests::agent::{Daemon, workspace_binary};
use klaxon_tests::inbox::Inbox;
use klaxon_tests::metrics::statistic;

/// How long the demo waits for its alerts at most, from the moment the stack is ready
/// (they arrive within about a minute; the rest is room for a loaded machine).
const DEADLINE: Duration = Duration::from_secs(240);

/// What an expected alert needs, for the message when it did not arrive.
fn hint(alert: &str) -> &'static str {
    match alert {
        "DemoErrorBurst firing" => {
            "12 upstream lines shipped from error.log, counted by FilterLogEvents in a 20 s window"
        }
        "DemoHighCpu firing" => {
            "a 10 s period of cpu_usage_active above 80 % while both cores burn for 15 s"
        }
        "DemoHostDown firing" => {
            "15 s without web-2's klaxon_heartbeat after its SIGKILL, then an evaluation"
        }
        _ => "the error burst's 20 s window passing without new upstream lines",
    }
}

/// The alerts the demo must see, as their headlines in the message body.
const EXPECTED: [&str; 4] = [
    "DemoErrorBurst firing",
    "DemoHighCpu firing",
    "DemoHostDown firing",
    "DemoErrorBurst resolved",
];

const DEMO_RULES: &str = r#"# Short windows, so the demo sees alerts within a minute.

[[rule]]
name = "DemoErrorBurst"
kind = "log"
severity = "critical"
summary = "{{value}} upstream errors in 20s on {{stream}}"
log_group = "/web/nginx/error"
pattern = "upstream"
window = "20s"
group_by = ["stream"]
when = ">= 5"

[[rule]]
name = "DemoHighCpu"
kind = "metric"
severity = "warning"
summary = "CPU {{value}}% on {{InstanceId}}"
namespace = "Klaxon"
metric = "cpu_usage_active"
stat = "Maximum"
period = "10s"
dimensions = { cpu = "cpu-total" }
group_by = ["InstanceId"]
when = "> 80"

[[rule]]
name = "DemoHostDown"
kind = "absent"
severity = "critical"
summary = "no heartbeat from {{InstanceId}} for 15s"
namespace = "Klaxon"
metric = "klaxon_heartbeat"
period = "10s"
group_by = ["InstanceId"]
for = "15s"
"#;

fn step(text: &str) {
    println!("==> {text}");
}

/// Appends `lines` to `path`.
fn append(path: &Path, lines: &[String]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    for line in lines {
        writeln!(file, "{line}")?;
    }
    Ok(())
}

fn access_lines(from: usize, count: usize) -> Vec<String> {
    (from..from + count)
        .map(|n| {
            format!(
                "10.0.0.{} - - [26/Nov/2026:06:00:00 +0000] \"GET /product/{n} HTTP/1.1\" 200 5120 \"-\" \"Mozilla/5.0\"",
                n % 250
            )
        })
        .collect()
}

fn error_lines(count: usize) -> Vec<String> {
    (0..count)
        .map(|n| {
            format!("2026/11/26 06:00:00 [error] 812#0: *{n} upstream timed out (110: Connection timed out) while reading response header from upstream, client: 10.0.0.7, request: \"POST /checkout HTTP/1.1\"")
        })
        .collect()
}

/// Keeps both cores busy until `stop`.
fn burn_cpu(stop: &Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<()>> {
    (0..2)
        .map(|_| {
            let stop = Arc::clone(stop);
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(
                        x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1),
                    );
                }
            })
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    // Setup first, off the demo's clock: on a fresh machine it takes minutes.
    step("preparing the local AWS stack's virtualenv (the first run installs moto from PyPI)");
    klaxon_tests::python_env::ensure_python().context("preparing the virtualenv")?;
    step("building klaxon-agent, klaxon-aggregator and klaxon (the first run takes minutes)");
    for binary in ["klaxon-agent", "klaxon-aggregator", "klaxon"] {
        workspace_binary(binary);
    }
    step("starting the local AWS stack");
    let stack = LocalStack::start().context("starting the local AWS stack")?;
    // The demo's clock starts when its parts are ready.
    let started = Instant::now();
    println!("    endpoint {}", stack.endpoint());
    let config = stack.sdk_config().await;

    step("creating the on-call SNS topic and the SQS inbox subscribed to it");
    let inbox = Inbox::create(&config, "oncall-demo").await?;
    println!("    {}", inbox.topic_arn);

    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let (access, errors) = (root.join("access.log"), root.join("error.log"));
    append(&access, &access_lines(0, 20))?;
    append(&errors, &[])?;
    step(
        "starting klaxon-agent on web-1 (nginx logs, host metrics, id from IMDS) and web-2 (heartbeat)",
    );
    let web1 = root.join("web-1.toml");
    std::fs::write(
        &web1,
        format!(
            "state_dir = \"{0}/web-1\"\n\n[[logs]]\npath = \"{1}\"\ngroup = \"/web/nginx/access\"\n\n[[logs]]\npath = \"{2}\"\ngroup = \"/web/nginx/error\"\n\n[metrics]\nsample_interval = \"1s\"\nflush_interval = \"5s\"\n",
            root.display(),
            access.display(),
            errors.display()
        ),
    )?;
    let web2 = root.join("web-2.toml");
    std::fs::write(
        &web2,
        format!(
            "state_dir = \"{}/web-2\"\ninstance_id = \"i-web-2\"\n\n[metrics]\nsample_interval = \"1s\"\nflush_interval = \"5s\"\n",
            root.display()
        ),
    )?;
    let agent1 = Daemon::start(&stack, &web1, &root.join("web-1.log"));
    let agent2 = Daemon::start(&stack, &web2, &root.join("web-2.log"));

    let rules = root.join("rules");
    std::fs::create_dir(&rules)?;
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
    let mut count = 0;
    for entry in std::fs::read_dir(&shipped)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if name.ends_with(".toml") && !name.ends_with(".test.toml") {
            std::fs::copy(&path, rules.join(&name))?;
            count += 1;
        }
    }
    std::fs::write(rules.join("demo.toml"), DEMO_RULES)?;
    let aggregator_config = root.join("aggregator.toml");
    std::fs::write(
        &aggregator_config,
        format!(
            "rules = \"{}\"\nstate_dir = \"{}/aggregator\"\nevaluation_interval = \"2s\"\n\n[[route]]\ntopic_arn = \"{}\"\ngroup_wait = \"2s\"\ngroup_interval = \"10s\"\nrepeat_interval = \"1h\"\n",
            rules.display(),
            root.display(),
            inbox.topic_arn
        ),
    )?;
    step(&format!("starting klaxon-aggregator ({count} shipped rule files and 3 demo rules)"));
    let aggregator = Daemon::aggregator(&stack, &aggregator_config, &root.join("aggregator.log"));

    // Alerts are printed as they arrive, whatever the demo is doing.
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let watcher = {
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                for alert in inbox.receive().await.unwrap_or_default() {
                    println!("    ALERT {}", alert.subject.as_deref().unwrap_or("(no subject)"));
                    let mut seen = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    for expected in EXPECTED {
                        if alert.message.contains(expected) {
                            seen.insert(expected);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };

    step("an error burst in nginx's error log: 12 upstream timeouts");
    append(&errors, &error_lines(12))?;
    append(&access, &access_lines(20, 20))?;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let klaxon = workspace_binary("klaxon");
    let mut query = Command::new(&klaxon);
    query.args(["logs", "query", "--group", "/web/nginx/error", "--start", "5m", "--limit", "3"]);
    stack.configure(&mut query);
    let output = query.output()?;
    println!("    klaxon logs query --group /web/nginx/error --start 5m --limit 3:");
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        println!("      {line}");
    }
    ensure!(
        output.status.success(),
        "klaxon logs query failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    step("burning both CPU cores for 15 s, and SIGKILL of web-2's agent (a dead host)");
    agent2.kill();
    let stop = Arc::new(AtomicBool::new(false));
    let burners = burn_cpu(&stop);
    tokio::time::sleep(Duration::from_secs(15)).await;
    stop.store(true, Ordering::Relaxed);
    for burner in burners {
        let _ = burner.join();
    }
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&config);
    let listed = cloudwatch
        .list_metrics()
        .namespace("Klaxon")
        .metric_name("cpu_usage_active")
        .send()
        .await?;
    let web1_id = listed
        .metrics()
        .iter()
        .flat_map(|m| m.dimensions())
        .find(|d| d.name() == Some("InstanceId") && d.value() != Some("i-web-2"))
        .and_then(|d| d.value())
        .unwrap_or("?")
        .to_owned();
    let cpu = statistic(
        &cloudwatch,
        "cpu_usage_active",
        &[("InstanceId", &web1_id), ("cpu", "cpu-total")],
        "Maximum",
        Duration::from_secs(10),
        Duration::from_secs(60),
    )
    .await;
    let shown: Vec<String> = cpu.iter().map(|(_, v)| format!("{v:.0}")).collect();
    println!(
        "    cpu_usage_active{{InstanceId={web1_id}}} max per 10 s, last minute: [{}] %",
        shown.join(", ")
    );

    step("waiting for the alerts: the burst, the CPU, the dead host, and the burst resolved");
    while started.elapsed() < DEADLINE {
        if seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len() == EXPECTED.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    watcher.abort();
    let seen = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let missing: Vec<&str> = EXPECTED.iter().filter(|e| !seen.contains(*e)).copied().collect();

    step("stopping everything it started");
    let aggregator_log = aggregator.log();
    let _ = aggregator.terminate();
    let _ = agent1.terminate();
    if !missing.is_empty() {
        let hints: Vec<String> =
            missing.iter().map(|alert| format!("  {alert}: {}", hint(alert))).collect();
        anyhow::bail!(
            "step \"waiting for the alerts\": {} of {} expected alerts did not arrive within {} s of the stack being ready:\n{}\nWhat to try: run the demo again (a loaded machine slows every evaluation); if it fails again, the aggregator's log below says what it evaluated and sent, and `cargo test -p klaxon-tests --test e2e demo` runs the same demo as a test.\n\naggregator log:\n{aggregator_log}",
            missing.len(),
            EXPECTED.len(),
            DEADLINE.as_secs(),
            hints.join("\n")
        );
    }
    println!("    every expected alert arrived, in {} s", started.elapsed().as_secs());
    Ok(())
}
