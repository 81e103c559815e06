//! Bench: what the agent costs on a web server, against the local AWS stack.
//!
//! `cargo bench -p klaxon-tests --bench agent_resources` runs the release agent and
//! measures, from /proc:
//! - steady: 1,000 lines/s of 150 bytes for `BENCH_STEADY_SECONDS` (default 60): CPU
//!   as a share of one core, and peak RSS;
//! - backlog: `BENCH_BACKLOG_MB` (default 1024) of lines written during an outage, then
//!   drained: the drain time and the peak RSS (memory stays bounded by the budget);
//! - metrics: the default metrics only (10 s samples, 60 s flushes) for
//!   `BENCH_METRICS_SECONDS` (default 600): CPU share, peak RSS, PutMetricData calls.
//!
//! `BENCH_SKIP_STEADY`, `BENCH_SKIP_BACKLOG`, `BENCH_SKIP_METRICS` leave a part out.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use klaxon_tests::LocalStack;
use klaxon_tests::agent::Daemon;

const LINE_BYTES: usize = 150;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// CPU seconds (user + system) the process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: u64 =
        fields.get(11..13).map_or(0, |f| f.iter().filter_map(|t| t.parse::<u64>().ok()).sum());
    ticks as f64 / 100.0
}

/// A `VmRSS`/`VmHWM`-style field of /proc/PID/status, in MiB.
fn status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with(field))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn line(n: u64) -> String {
    let head = format!("10.0.0.{} - - \"GET /checkout/{n} HTTP/1.1\" 200 ", n % 250);
    format!("{head}{}\n", "x".repeat(LINE_BYTES - 1 - head.len()))
}

fn config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("agent.toml");
    let text = format!(
        "state_dir = \"{}\"\ninstance_id = \"i-bench\"\n\n[[logs]]\npath = \"{}/app.log\"\ngroup = \"/bench/app\"\n",
        dir.join("state").display(),
        dir.display()
    );
    std::fs::write(&path, text).expect("config");
    path
}

fn steady(stack: &LocalStack) {
    let seconds = env_number("BENCH_STEADY_SECONDS", 60);
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = Daemon::start(stack, &config(dir.path()), &dir.path().join("agent.log"));
    std::thread::sleep(Duration::from_secs(2));
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("app.log"))
        .expect("log");
    let (cpu_start, started) = (cpu_seconds(agent.pid()), Instant::now());
    let mut peak_rss: f64 = 0.0;
    for second in 0..seconds {
        let mut chunk = String::new();
        for n in 0..1000 {
            chunk.push_str(&line(second * 1000 + n));
        }
        log.write_all(chunk.as_bytes()).expect("write");
        peak_rss = peak_rss.max(status_mib(agent.pid(), "VmRSS:"));
        let next = started + Duration::from_secs(second + 1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let cpu = (cpu_seconds(agent.pid()) - cpu_start) / started.elapsed().as_secs_f64() * 100.0;
    println!(
        "steady: 1000 lines/s for {seconds} s: agent CPU {cpu:.2}% of a core, peak RSS {peak_rss:.1} MiB"
    );
    assert!(agent.terminate().success());
}

fn backlog(stack: &LocalStack) {
    let megabytes = env_number("BENCH_BACKLOG_MB", 1024);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("app.log");
    stack.set_outage(true).expect("outage");
    let agent = Daemon::start(stack, &config(dir.path()), &dir.path().join("agent.log"));
    let lines = megabytes * 1024 * 1024 / LINE_BYTES as u64;
    let mut log = std::io::BufWriter::new(std::fs::File::create(&path).expect("log"));
    for n in 0..lines {
        log.write_all(line(n).as_bytes()).expect("write");
    }
    log.flush().expect("flush");
    let size = std::fs::metadata(&path).expect("size").len();
    std::thread::sleep(Duration::from_secs(5));
    let during_outage = status_mib(agent.pid(), "VmRSS:");
    stack.set_outage(false).expect("recovery");
    let started = Instant::now();
    let checkpoint = dir.path().join("state").join("checkpoints.json");
    loop {
        let text = std::fs::read_to_string(&checkpoint).unwrap_or_default();
        if text.contains(&format!("\"offset\": {size}")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let elapsed = started.elapsed();
    let peak = status_mib(agent.pid(), "VmHWM:");
    println!(
        "backlog: {megabytes} MiB ({lines} lines) drained in {:.1} s ({:.0} lines/s) after the outage; RSS {during_outage:.1} MiB during it, peak {peak:.1} MiB",
        elapsed.as_secs_f64(),
        lines as f64 / elapsed.as_secs_f64()
    );
    assert!(agent.terminate().success());
}

fn metrics_only(stack: &LocalStack) {
    let seconds = env_number("BENCH_METRICS_SECONDS", 600);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("agent.toml");
    let text = format!(
        "state_dir = \"{}\"\ninstance_id = \"i-bench\"\n",
        dir.path().join("state").display()
    );
    std::fs::write(&path, text).expect("config");
    let calls_before = stack.stats().expect("stats").requests_for("monitoring.PutMetricData");
    let agent = Daemon::start(stack, &path, &dir.path().join("agent.log"));
    std::thread::sleep(Duration::from_secs(2));
    let (cpu_start, started) = (cpu_seconds(agent.pid()), Instant::now());
    let mut peak_rss: f64 = 0.0;
    while started.elapsed() < Duration::from_secs(seconds) {
        peak_rss = peak_rss.max(status_mib(agent.pid(), "VmRSS:"));
        std::thread::sleep(Duration::from_secs(1));
    }
    let cpu = (cpu_seconds(agent.pid()) - cpu_start) / started.elapsed().as_secs_f64() * 100.0;
    assert!(agent.terminate().success());
    let calls =
        stack.stats().expect("stats").requests_for("monitoring.PutMetricData") - calls_before;
    println!(
        "metrics: default set, 10 s samples, 60 s flushes, {seconds} s: agent CPU {cpu:.3}% of a core, peak RSS {peak_rss:.1} MiB, {calls} PutMetricData calls (goodbye included)"
    );
}

fn main() {
    let stack = LocalStack::start().expect("local AWS stack");
    if std::env::var_os("BENCH_SKIP_METRICS").is_none() {
        metrics_only(&stack);
    }
    if std::env::var_os("BENCH_SKIP_STEADY").is_none() {
        steady(&stack);
    }
    if std::env::var_os("BENCH_SKIP_BACKLOG").is_none() {
        backlog(&stack);
    }
}
