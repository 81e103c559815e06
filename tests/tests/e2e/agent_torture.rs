//! The log-shipping torture run: 200,000 lines over 3 files through 2 rotations by
//! rename, 1 copytruncate, a SIGKILL and restart, a 60 s outage and a throttling burst.
//! Every line arrives, in order per stream; duplicates come only from the batches in
//! flight at the kill; the stack's limit checks rejected nothing.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use klaxon_tests::agent::{Daemon, eventually, stream_messages};
use klaxon_tests::{FaultKind, Service, Times};

use crate::logs_audit::verify;
use crate::support::{agent_config, stack};

const GROUP: &str = "/test/torture";
/// What the stack may hold in flight per stream: PutLogEvents' event limit.
const MAX_BATCH_EVENTS: usize = 10_000;

/// Writes numbered lines to one logical log file, through its rotations.
struct Writer {
    name: &'static str,
    path: PathBuf,
    written: Vec<String>,
    rotations: usize,
}

impl Writer {
    fn new(dir: &Path, name: &'static str) -> Self {
        Writer { name, path: dir.join(format!("{name}.log")), written: Vec::new(), rotations: 0 }
    }

    fn write(&mut self, count: usize) {
        let mut file =
            std::fs::OpenOptions::new().create(true).append(true).open(&self.path).expect("open");
        self.write_to(&mut file, count);
    }

    fn write_to(&mut self, file: &mut std::fs::File, count: usize) {
        let mut chunk = String::new();
        for _ in 0..count {
            let line = format!(
                "{} {:07} GET /checkout?cart={} HTTP/1.1 200 latency_ms=12 ua=\"klaxon-torture\"",
                self.name,
                self.written.len(),
                self.written.len() * 7919 % 100_003
            );
            chunk.push_str(&line);
            chunk.push('\n');
            self.written.push(line);
        }
        file.write_all(chunk.as_bytes()).expect("write");
    }

    /// logrotate's default: rename; the application, like nginx before its reopen
    /// signal, goes on writing `late` lines to the renamed file, then creates a new one.
    fn rotate_by_rename(&mut self, late: usize) {
        self.rotations += 1;
        let mut old = std::fs::OpenOptions::new().append(true).open(&self.path).expect("open");
        let rotated = self.path.with_extension(format!("log.{}", self.rotations));
        std::fs::rename(&self.path, rotated).expect("rename");
        self.write_to(&mut old, late);
    }

    /// logrotate's copytruncate: copy, then truncate in place.
    fn copytruncate(&mut self) {
        std::fs::copy(&self.path, self.path.with_extension("log.copy")).expect("copy");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .expect("open")
            .set_len(0)
            .expect("truncate");
    }

    fn stream(&self) -> String {
        format!("{}.log", self.name)
    }
}

fn write_all(writers: &mut [Writer], each: usize) {
    for writer in writers {
        writer.write(each);
    }
}

/// Checks one stream: after removing repeats, exactly the lines written, in order; the
/// repeats form one run no longer than a batch. Returns the number of repeats.
fn verify_stream(writer: &Writer, got: &[String]) -> usize {
    let mut seen = HashSet::new();
    let mut unique = Vec::with_capacity(got.len());
    let mut repeats = Vec::new();
    for (index, line) in got.iter().enumerate() {
        if seen.insert(line.as_str()) {
            unique.push(line.as_str());
        } else {
            repeats.push(index);
        }
    }
    assert_eq!(unique.len(), writer.written.len(), "{}: lines missing", writer.name);
    let first_wrong = unique.iter().zip(&writer.written).position(|(got, want)| *got != want);
    assert_eq!(first_wrong, None, "{}: lines out of order or altered", writer.name);
    if let (Some(first), Some(last)) = (repeats.first(), repeats.last()) {
        assert_eq!(last - first + 1, repeats.len(), "{}: repeats are not one run", writer.name);
        assert!(repeats.len() <= MAX_BATCH_EVENTS, "{}: {} repeats", writer.name, repeats.len());
    }
    repeats.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_survives_rotation_kill_outage_and_throttling() {
    let (stack, config) = stack().await;
    let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
    let dir = tempfile::tempdir().expect("temp dir");
    let logs_dir = dir.path().join("logs");
    std::fs::create_dir(&logs_dir).expect("logs dir");
    let config_path = agent_config(
        dir.path(),
        &format!(
            "[[logs]]\npath = \"{}/*.log\"\ngroup = \"{GROUP}\"\nstream = \"{{file}}\"\n",
            logs_dir.display()
        ),
    );
    let agent_log = dir.path().join("agent.log");
    let mut writers = [
        Writer::new(&logs_dir, "alpha"),
        Writer::new(&logs_dir, "bravo"),
        Writer::new(&logs_dir, "charlie"),
    ];
    let streams: Vec<String> = writers.iter().map(Writer::stream).collect();
    let shipped = |writer: usize| {
        let (logs, stream) = (logs.clone(), streams[writer].clone());
        async move { stream_messages(&logs, GROUP, &stream).await.len() }
    };

    let agent = Daemon::start(&stack, &config_path, &agent_log);
    write_all(&mut writers, 100);
    let started = eventually(Duration::from_secs(30), || async { shipped(0).await > 0 }).await;
    assert!(started, "the agent never shipped:\n{}", agent.log());
    write_all(&mut writers, 9_900);
    writers[0].rotate_by_rename(2_000);
    write_all(&mut writers, 5_000);

    stack.inject(Service::Logs, FaultKind::Throttle, Times::Next(12)).expect("throttle");
    write_all(&mut writers, 10_000);
    let caught_up =
        eventually(Duration::from_secs(60), || async { shipped(1).await >= 20_000 }).await;
    assert!(caught_up, "no progress through throttling:\n{}", agent.log());

    // Slow answers keep batches in flight when the agent is killed.
    stack.set_latency(Service::Logs, Duration::from_millis(700)).expect("latency");
    write_all(&mut writers, 5_000);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    agent.kill();
    write_all(&mut writers, 5_000);
    stack.clear_faults().expect("clear");
    let agent = Daemon::start(&stack, &config_path, &agent_log);

    stack.set_outage(true).expect("outage");
    for round in 0..15 {
        write_all(&mut writers, 1_000);
        if round == 7 {
            writers[1].rotate_by_rename(500);
        }
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    stack.set_outage(false).expect("recovery");

    let charlie_written = writers[2].written.len();
    let charlie_shipped =
        eventually(Duration::from_secs(90), || async { shipped(2).await >= charlie_written }).await;
    assert!(charlie_shipped, "charlie never caught up after the outage:\n{}", agent.log());
    writers[2].copytruncate();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let remaining = (200_000 - writers.iter().map(|w| w.written.len()).sum::<usize>()) / 3;
    write_all(&mut writers, remaining);
    writers[0].write(200_000 - writers.iter().map(|w| w.written.len()).sum::<usize>());
    assert_eq!(writers.iter().map(|w| w.written.len()).sum::<usize>(), 200_000);

    for (index, writer) in writers.iter().enumerate() {
        let written = writer.written.len();
        let done =
            eventually(Duration::from_secs(120), || async { shipped(index).await >= written })
                .await;
        assert!(done, "{} incomplete:\n{}", writer.name, agent.log());
    }
    assert!(agent.terminate().success(), "clean stop");

    let mut repeats = 0;
    for writer in &writers {
        let got = stream_messages(&logs, GROUP, &writer.stream()).await;
        repeats += verify_stream(writer, &got);
    }
    println!("torture: 200000 lines, {repeats} repeats from the batches in flight at the kill");
    assert!(repeats <= 3 * MAX_BATCH_EVENTS);

    // The manifests account for every line, and for the repeats as duplicates.
    let mut duplicates = 0;
    for writer in &writers {
        let (code, report) = verify(&stack, GROUP, &writer.stream());
        assert_eq!(code, Some(0), "{}: {report:#}", writer.name);
        let verified: u64 = report["verified"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| r["events"].as_u64().unwrap_or(0))
            .sum();
        assert!(verified >= writer.written.len() as u64, "{}: {report:#}", writer.name);
        duplicates += report["duplicates"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| d["events"].as_u64().unwrap_or(0))
            .sum::<u64>();
    }
    assert_eq!(duplicates, repeats as u64, "verify's duplicates are the repeats");
    let stats = stack.stats().expect("stats");
    assert_eq!(stats.rejected_total, 0, "{:?}", stats.rejected);
    assert!(stats.faults.get("logs.throttle").copied().unwrap_or(0) >= 12, "{:?}", stats.faults);
}
