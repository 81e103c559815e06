//! The auditors' commands on what a real agent shipped: `klaxon logs query` streams every
//! event; `klaxon logs verify` passes on the stream and fails, pointing at the place, on
//! copies with an event missing, an event altered, an event injected, a record removed.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use klaxon_tests::LocalStack;
use klaxon_tests::agent::{Daemon, eventually, stream_messages, workspace_binary};

use crate::support::{agent_config, stack};

const GROUP: &str = "/test/audit";
const STREAM: &str = "app.log";

/// Runs `klaxon ARGS`; returns (exit code, stdout, stderr).
pub fn klaxon(stack: &LocalStack, args: &[&str]) -> (Option<i32>, String, String) {
    let mut command = Command::new(workspace_binary("klaxon"));
    command.args(args);
    stack.configure(&mut command);
    let output = command.output().expect("run klaxon");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.code(), text(&output.stdout), text(&output.stderr))
}

/// `klaxon logs verify` of one stream as JSON: (exit code, report).
pub fn verify(stack: &LocalStack, group: &str, stream: &str) -> (Option<i32>, serde_json::Value) {
    let (code, out, err) = klaxon(
        stack,
        &["logs", "verify", "--group", group, "--stream", stream, "--format", "json"],
    );
    let report = serde_json::from_str(out.trim()).unwrap_or_else(|_| panic!("{out}{err}"));
    (code, report)
}

/// A stream's events as (timestamp, ingestion time, message), in order.
async fn read_back(logs: &Client, stream: &str) -> Vec<(i64, i64, String)> {
    let page = logs
        .get_log_events()
        .log_group_name(GROUP)
        .log_stream_name(stream)
        .start_from_head(true)
        .send()
        .await
        .expect("GetLogEvents");
    page.events()
        .iter()
        .map(|e| {
            let message = e.message().unwrap_or_default().to_owned();
            (e.timestamp().unwrap_or_default(), e.ingestion_time().unwrap_or_default(), message)
        })
        .collect()
}

/// Writes `batches` into a new stream `name`, one PutLogEvents each (as the agent did).
async fn put_copy(logs: &Client, name: &str, batches: &[Vec<(i64, String)>]) {
    logs.create_log_stream()
        .log_group_name(GROUP)
        .log_stream_name(name)
        .send()
        .await
        .expect("stream");
    for batch in batches.iter().filter(|b| !b.is_empty()) {
        let events = batch.iter().map(|(ts, message)| {
            InputLogEvent::builder().timestamp(*ts).message(message).build().expect("event")
        });
        logs.put_log_events()
            .log_group_name(GROUP)
            .log_stream_name(name)
            .set_log_events(Some(events.collect()))
            .send()
            .await
            .expect("PutLogEvents");
        tokio::time::sleep(Duration::from_millis(20)).await; // distinct ingestion times
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_streams_events_and_verify_catches_every_kind_of_tampering() {
    let (stack, config) = stack().await;
    let logs = Client::new(&config);
    let dir = tempfile::tempdir().expect("temp dir");
    let log_path = dir.path().join(STREAM);
    let config_path = agent_config(
        dir.path(),
        &format!(
            "[[logs]]\npath = \"{}\"\ngroup = \"{GROUP}\"\nstream = \"{{file}}\"\n",
            log_path.display()
        ),
    );
    let agent = Daemon::start(&stack, &config_path, &dir.path().join("agent.log"));
    let mut written = Vec::new();
    for burst in 0..3 {
        let lines: Vec<String> =
            (0..50).map(|i| format!("burst {burst} line {i} ERROR={}", i % 7 == 0)).collect();
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
            .expect("append");
        written.extend(lines);
        let count = written.len();
        let logs_ref = &logs;
        let shipped = eventually(Duration::from_secs(30), || async move {
            stream_messages(logs_ref, GROUP, STREAM).await.len() >= count
        })
        .await;
        assert!(shipped, "burst {burst} not shipped:\n{}", agent.log());
    }
    assert!(agent.terminate().success());

    // Query: every event, in order, with stream and ingestion time; a filter; errors.
    let (code, out, err) =
        klaxon(&stack, &["logs", "query", "--group", GROUP, "--start", "1h", "--format", "jsonl"]);
    assert_eq!(code, Some(0), "{err}");
    let rows: Vec<serde_json::Value> =
        out.lines().map(|l| serde_json::from_str(l).expect("row")).collect();
    let messages: Vec<&str> = rows
        .iter()
        .filter(|r| r["stream"] == STREAM)
        .filter_map(|r| r["message"].as_str())
        .collect();
    assert_eq!(messages, written, "every line, in order");
    assert!(rows.iter().all(|r| r["stream"] == STREAM), "manifests are not application logs");
    assert!(rows.iter().all(|r| r["ingestion_time"].as_str().is_some_and(|t| t.ends_with('Z'))));
    let (_, out, _) = klaxon(
        &stack,
        &[
            "logs",
            "query",
            "--group",
            GROUP,
            "--stream",
            STREAM,
            "--filter",
            "\"ERROR=true\"",
            "--format",
            "csv",
        ],
    );
    assert_eq!(out.lines().count(), 1 + 3 * 8, "{out}");
    assert!(out.starts_with("timestamp,ingestion_time,stream,message\n"), "{out}");
    let (_, out, _) = klaxon(&stack, &["logs", "query", "--group", GROUP, "--limit", "5"]);
    assert_eq!(out.lines().count(), 5, "{out}");
    let (code, _, err) = klaxon(&stack, &["logs", "query", "--group", "/no/such/group"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("log group \"/no/such/group\" does not exist"), "{err}");
    let (code, _, err) =
        klaxon(&stack, &["logs", "query", "--group", GROUP, "--filter", "{ $.x = "]);
    assert_eq!(code, Some(1));
    assert!(err.contains("invalid filter pattern \"{ $.x = \""), "{err}");
    let (code, _, err) =
        klaxon(&stack, &["logs", "query", "--group", GROUP, "--start", "yesterday"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--start: \"yesterday\""), "{err}");

    // Verify: the real stream passes.
    let (code, report) = verify(&stack, GROUP, STREAM);
    assert_eq!(code, Some(0), "{report:#}");
    let records = report["records"].as_u64().expect("records");
    assert!(records >= 3, "{report:#}");
    assert_eq!(report["verified"][0]["events"], 150, "{report:#}");

    // Copies, batch by batch as they were ingested, with one change each.
    let events = read_back(&logs, STREAM).await;
    let mut batches: BTreeMap<i64, Vec<(i64, String)>> = BTreeMap::new();
    for (ts, ingested, message) in events {
        batches.entry(ingested).or_default().push((ts, message));
    }
    let batches: Vec<Vec<(i64, String)>> = batches.into_values().collect();
    let manifest: Vec<(i64, String)> = read_back(&logs, &format!("{STREAM}.klaxon-manifest"))
        .await
        .into_iter()
        .map(|(ts, _, message)| (ts, message))
        .collect();
    let second_seq =
        serde_json::from_str::<serde_json::Value>(&manifest[1].1).expect("record")["seq"].clone();
    let copy =
        |name: &'static str, batches: Vec<Vec<(i64, String)>>, manifest: Vec<(i64, String)>| {
            let logs = logs.clone();
            async move {
                put_copy(&logs, name, &batches).await;
                put_copy(&logs, &format!("{name}.klaxon-manifest"), &[manifest]).await;
            }
        };

    let mut missing = batches.clone();
    missing[1].remove(10);
    copy("missing", missing, manifest.clone()).await;
    let (code, report) = verify(&stack, GROUP, "missing");
    assert_eq!(code, Some(1));
    assert_eq!(report["missing"][0]["seq"], second_seq, "{report:#}");
    let detail = report["missing"][0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("1 of") && detail.contains(&format!("of {}", log_path.display())),
        "{detail}"
    );

    let mut altered = batches.clone();
    altered[1][3].1.push_str(" (edited)");
    copy("altered", altered, manifest.clone()).await;
    let (code, report) = verify(&stack, GROUP, "altered");
    assert_eq!(code, Some(1));
    assert_eq!(report["altered"][0]["seq"], second_seq, "{report:#}");

    let mut injected = batches.clone();
    let ts = injected[2][0].0;
    injected.insert(2, vec![(ts, "burst 9 line 0 ERROR=false".to_owned())]);
    copy("injected", injected, manifest.clone()).await;
    let (code, report) = verify(&stack, GROUP, "injected");
    assert_eq!(code, Some(1));
    assert!(
        report["extra"][0]["detail"].as_str().unwrap_or_default().contains("burst 9 line 0"),
        "{report:#}"
    );

    let mut cut_manifest = manifest.clone();
    cut_manifest.remove(1);
    copy("unrecorded", batches.clone(), cut_manifest).await;
    let (code, report) = verify(&stack, GROUP, "unrecorded");
    assert_eq!(code, Some(1));
    assert!(
        report["chain"][0]["detail"].as_str().unwrap_or_default().contains("broken chain"),
        "{report:#}"
    );
    assert_eq!(report["extra"][0]["events"], batches[1].len() as u64, "{report:#}");

    // An untouched copy verifies too: the check is of content, not of where it sits.
    copy("faithful", batches, manifest).await;
    assert_eq!(verify(&stack, GROUP, "faithful").0, Some(0));
}
