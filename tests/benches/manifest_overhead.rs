//! Bench: what log manifests cost, measured on the local AWS stack with the release
//! agent: lines written at a steady rate for `BENCH_MANIFEST_SECONDS` (default 30) at
//! 1,000 and at 20 lines a second, then both streams read back. PutLogEvents calls are
//! counted as distinct ingestion times (one per call).
//!
//! `cargo bench -p klaxon-tests --bench manifest_overhead` prints, per 1,000 lines
//! shipped, the manifest's bytes (as CloudWatch bills them: message + 26) and calls,
//! beside the lines' own.

use std::collections::BTreeSet;
use std::io::Write;
use std::time::{Duration, Instant};

use aws_sdk_cloudwatchlogs::Client;
use klaxon_tests::LocalStack;
use klaxon_tests::agent::Daemon;

const GROUP: &str = "/bench/manifest";

/// (events, billed bytes, calls) of one stream.
async fn stream_cost(logs: &Client, stream: &str) -> (u64, u64, u64) {
    let (mut events, mut bytes) = (0u64, 0u64);
    let mut calls = BTreeSet::new();
    let mut token: Option<String> = None;
    loop {
        let page = logs
            .get_log_events()
            .log_group_name(GROUP)
            .log_stream_name(stream)
            .start_from_head(true)
            .set_next_token(token.clone())
            .send()
            .await;
        let Ok(page) = page else { return (events, bytes, calls.len() as u64) };
        for event in page.events() {
            events += 1;
            bytes += event.message().map_or(0, str::len) as u64 + 26;
            calls.insert(event.ingestion_time().unwrap_or_default());
        }
        let next = page.next_forward_token().map(str::to_owned);
        if page.events().is_empty() || next == token {
            return (events, bytes, calls.len() as u64);
        }
        token = next;
    }
}

async fn run(stack: &LocalStack, logs: &Client, per_second: u64, seconds: u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let stream = format!("rate-{per_second}");
    let path = dir.path().join("agent.toml");
    let text = format!(
        "state_dir = \"{}\"\ninstance_id = \"i-bench\"\n\n[[logs]]\npath = \"{}/app.log\"\ngroup = \"{GROUP}\"\nstream = \"{stream}\"\n",
        dir.path().join("state").display(),
        dir.path().display()
    );
    std::fs::write(&path, text).expect("config");
    let agent = Daemon::start(stack, &path, &dir.path().join("agent.log"));
    let mut file = std::fs::File::create(dir.path().join("app.log")).expect("log");
    let started = Instant::now();
    let mut written = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        let due = (started.elapsed().as_secs_f64() * per_second as f64) as u64;
        while written < due {
            writeln!(file, "10.0.0.{} - - \"GET /checkout/{written} HTTP/1.1\" 200 512 \"-\" \"Mozilla/5.0\" rt=0.012", written % 250)
                .expect("write");
            written += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = agent.log();
    assert!(agent.terminate().success(), "clean stop:\n{log}");
    let (lines, line_bytes, line_calls) = stream_cost(logs, &stream).await;
    let (records, manifest_bytes, manifest_calls) =
        stream_cost(logs, &format!("{stream}.klaxon-manifest")).await;
    assert_eq!(lines, written, "every line shipped:\n{log}");
    let per_k = |value: u64| value as f64 * 1000.0 / lines as f64;
    println!(
        "manifest at {per_second} lines/s for {seconds} s: {lines} lines in {line_calls} calls ({:.0} bytes, {:.2} calls per 1,000 lines); manifest: {records} records in {manifest_calls} calls = {:.0} bytes ({:.1} % of the lines' bytes) and {:.2} calls per 1,000 lines",
        per_k(line_bytes),
        per_k(line_calls),
        per_k(manifest_bytes),
        manifest_bytes as f64 * 100.0 / line_bytes as f64,
        per_k(manifest_calls),
    );
}

fn main() {
    let seconds =
        std::env::var("BENCH_MANIFEST_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let stack = LocalStack::start().expect("local AWS stack");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let logs = Client::new(&stack.sdk_config().await);
        run(&stack, &logs, 1000, seconds).await;
        run(&stack, &logs, 20, seconds).await;
    });
}
