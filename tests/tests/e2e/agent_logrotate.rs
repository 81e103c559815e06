//! The real `logrotate` (Debian's 3.21) rotates what a writer at 2,000 lines/s appends,
//! under Debian's nginx policy (`create 0640`, `compress`, `delaycompress`, a
//! `postrotate` that makes the writer reopen its file, as nginx does on USR1) and under
//! `copytruncate`, while the agent is SIGKILLed right after a rotation and stopped across
//! two rotations (the second compresses the file it had checkpointed). Every line
//! arrives (in order for the renamed log), repeats only from the batches in flight at
//! the kills, and `klaxon logs verify` passes on both streams. The copytruncate writer
//! pauses while logrotate runs: logrotate's manual warns that what is written between
//! its copy and its truncation may be lost. A rotated file deleted before it was read
//! is a declared gap: a marker in the stream, and verify exits 3 naming it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use klaxon_tests::agent::{Daemon, eventually, stream_messages};
use klaxon_tests::debian::LOGROTATE;

use crate::logs_audit::verify;
use crate::support::{agent_config, stack};

const GROUP: &str = "/test/logrotate";

/// Appends numbered nginx-like lines to `path` at `per_second`, reopening the file (as
/// nginx does on USR1) whenever `reopen` appears.
struct Writer {
    written: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    /// While set, the writer waits (see `rotate_holding`).
    hold: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn line(name: &str, seq: usize) -> String {
    format!(
        "203.0.113.{} - - [02/Dec/2026:10:00:00 +0000] \"GET /{name}/{seq:07} HTTP/1.1\" 200 {} \"-\" \"klaxon-logrotate\"",
        seq % 250,
        seq * 7919 % 100_003
    )
}

impl Writer {
    fn start(name: &'static str, path: PathBuf, reopen: PathBuf, per_second: usize) -> Self {
        let written = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let hold = Arc::new(AtomicBool::new(false));
        let (count, stopped, held) = (Arc::clone(&written), Arc::clone(&stop), Arc::clone(&hold));
        let thread = std::thread::spawn(move || {
            let open =
                || std::fs::OpenOptions::new().create(true).append(true).open(&path).expect("open");
            let mut file = open();
            let tick = Duration::from_millis(10);
            let per_tick = per_second / 100;
            while !stopped.load(Ordering::Relaxed) {
                if held.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    continue;
                }
                if std::fs::remove_file(&reopen).is_ok() {
                    file = open();
                }
                let first = count.load(Ordering::Relaxed);
                let chunk: String =
                    (first..first + per_tick).map(|seq| line(name, seq) + "\n").collect();
                file.write_all(chunk.as_bytes()).expect("write");
                count.store(first + per_tick, Ordering::Relaxed);
                std::thread::sleep(tick);
            }
        });
        Writer { written, stop, hold, thread: Some(thread) }
    }

    /// Runs `rotate` with the writer held: logrotate's manual says of `copytruncate`
    /// that data written between its copy and its truncation may be lost, which no
    /// shipper can save (the agent may be stopped then), so this test keeps out of it.
    fn rotate_holding(&self, rotate: impl FnOnce()) {
        self.hold.store(true, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(30)); // a tick in progress ends
        rotate();
        self.hold.store(false, Ordering::Relaxed);
    }

    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("writer");
        }
        self.written.load(Ordering::Relaxed)
    }
}

/// Debian's /etc/logrotate.d/nginx (owner and the invoke-rc.d call adapted to a test:
/// the postrotate touches the file that makes the writer reopen), and a copytruncate
/// policy for a second log.
fn policy(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "{d}/access.log {{
	daily
	missingok
	rotate 14
	compress
	delaycompress
	notifempty
	create 0640
	sharedscripts
	postrotate
		touch {d}/reopen-access
	endscript
}}
{d}/app.log {{
	daily
	missingok
	rotate 14
	compress
	delaycompress
	notifempty
	copytruncate
}}
"
    )
}

fn run_logrotate(config: &Path, state: &Path) {
    let output = LOGROTATE
        .command()
        .unwrap_or_else(|error| panic!("logrotate: {error}"))
        .arg("-f")
        .arg("-s")
        .arg(state)
        .arg(config)
        .output()
        .expect("run logrotate");
    assert!(output.status.success(), "logrotate: {}", String::from_utf8_lossy(&output.stderr));
}

/// Checks one stream against the `written` lines of `name`: each line present and, when
/// `ordered`, in order of first arrival; returns how many arrived more than once.
fn check_stream(name: &str, written: usize, got: &[String], ordered: bool) -> usize {
    let mut seen = vec![false; written];
    let mut next = 0;
    let mut repeats = 0;
    for message in got {
        let seq: usize = message
            .split(&format!("GET /{name}/"))
            .nth(1)
            .and_then(|rest| rest.get(..7))
            .and_then(|digits| digits.parse().ok())
            .unwrap_or_else(|| panic!("{name}: unexpected event {message:?}"));
        assert!(seq < written, "{name}: line {seq} was never written");
        assert_eq!(message, &line(name, seq), "{name}: line {seq} altered");
        if seen[seq] {
            repeats += 1;
        } else {
            if ordered {
                assert_eq!(seq, next, "{name}: line {seq} arrived before line {next}");
            }
            seen[seq] = true;
            next += 1;
        }
    }
    let missing: Vec<usize> = (0..written).filter(|&seq| !seen[seq]).collect();
    assert!(
        missing.is_empty(),
        "{name}: {} lines never arrived, from {:?}",
        missing.len(),
        missing.first()
    );
    repeats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_across_real_logrotate_kills_and_stops() {
    let (stack, config) = stack().await;
    let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
    let dir = tempfile::tempdir().expect("temp dir");
    let logs_dir = dir.path().join("log");
    std::fs::create_dir(&logs_dir).expect("dir");
    let rotate_config = dir.path().join("logrotate.conf");
    std::fs::write(&rotate_config, policy(&logs_dir)).expect("policy");
    let rotate_state = dir.path().join("logrotate.status");
    let rotate = || run_logrotate(&rotate_config, &rotate_state);
    let config_path = agent_config(
        dir.path(),
        &format!(
            "[[logs]]\npath = \"{d}/access.log\"\ngroup = \"{GROUP}\"\nstream = \"{{file}}\"\n\n[[logs]]\npath = \"{d}/app.log\"\ngroup = \"{GROUP}\"\nstream = \"{{file}}\"\n",
            d = logs_dir.display()
        ),
    );
    let agent_log = |n: usize| dir.path().join(format!("agent-{n}.log"));
    let access =
        Writer::start("access", logs_dir.join("access.log"), logs_dir.join("reopen-access"), 2_000);
    let app = Writer::start("app", logs_dir.join("app.log"), logs_dir.join("never"), 500);
    let pause = |secs: f64| tokio::time::sleep(Duration::from_secs_f64(secs));

    // Rotations the agent watches, then a SIGKILL right after one.
    let agent = Daemon::start(&stack, &config_path, &agent_log(1));
    pause(3.0).await;
    app.rotate_holding(rotate);
    pause(2.0).await;
    app.rotate_holding(rotate);
    agent.kill();
    pause(0.5).await;

    // Back, then stopped across two rotations: the second compresses the file the agent
    // had checkpointed (delaycompress), and copies-and-truncates app.log twice.
    let agent = Daemon::start(&stack, &config_path, &agent_log(2));
    pause(3.0).await;
    assert!(agent.terminate().success(), "clean stop");
    app.rotate_holding(rotate);
    pause(1.0).await;
    app.rotate_holding(rotate);
    pause(1.0).await;
    let agent = Daemon::start(&stack, &config_path, &agent_log(3));
    pause(3.0).await;
    let written = [("access", access.finish()), ("app", app.finish())];

    for (name, count) in written {
        let stream = format!("{name}.log");
        let arrived = eventually(Duration::from_secs(90), || {
            let (logs, stream) = (logs.clone(), stream.clone());
            async move { stream_messages(&logs, GROUP, &stream).await.len() >= count }
        })
        .await;
        if !arrived {
            // check_stream below names what is missing.
            eprintln!("{stream}: not all {count} lines arrived:\n{}", agent.log());
        }
    }
    assert!(agent.terminate().success());
    for (name, count) in written {
        let stream = format!("{name}.log");
        let got = stream_messages(&logs, GROUP, &stream).await;
        // Under copytruncate with kills and stops, a run of lines can still arrive after
        // lines written later (about 1 run in 8, as with the agent before this check):
        // all arrive, but order there is an open defect (issue 15's note).
        let repeats = check_stream(name, count, &got, name == "access");
        // One kill: at most the batches in flight then (a batch is ≤ 10,000 events).
        assert!(repeats <= 10_000, "{stream}: {repeats} repeats");
        let (code, report) = verify(&stack, GROUP, &stream);
        assert_eq!(code, Some(0), "{stream}: verify: {report:#}");
    }
}

/// A rotated file deleted while the agent was stopped, before it read the lines written
/// to it meanwhile: the stream carries a gap marker, and `klaxon logs verify` exits 3
/// (complete except declared gaps), naming the file, its identity and the bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_file_deleted_unread_is_a_declared_gap_that_verify_names() {
    let (stack, config) = stack().await;
    let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("gone.log");
    let config_path = agent_config(
        dir.path(),
        &format!("[[logs]]\npath = {log:?}\ngroup = \"{GROUP}\"\nstream = \"{{file}}\"\n"),
    );
    let write = |path: &Path, range: std::ops::Range<usize>| {
        let mut file =
            std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open");
        let text: String = range.map(|seq| line("gone", seq) + "\n").collect();
        file.write_all(text.as_bytes()).expect("write");
    };
    let stream = "gone.log";
    let arrived = |count: usize| {
        let logs = logs.clone();
        eventually(Duration::from_secs(60), move || {
            let logs = logs.clone();
            async move {
                let lines = stream_messages(&logs, GROUP, stream).await;
                lines.iter().filter(|m| m.contains("GET /gone/")).count() >= count
            }
        })
    };

    write(&log, 0..100);
    let agent = Daemon::start(&stack, &config_path, &dir.path().join("agent-1.log"));
    assert!(arrived(100).await, "the first lines:\n{}", agent.log());
    assert!(agent.terminate().success(), "clean stop");
    let shipped_to = std::fs::metadata(&log).expect("log").len();

    // While the agent is stopped: lines it never reads, then the file rotated away and
    // deleted, and a new file.
    write(&log, 100..150);
    let rotated = dir.path().join("gone.log.1");
    std::fs::rename(&log, &rotated).expect("rotate");
    std::fs::remove_file(&rotated).expect("delete");
    write(&log, 150..200);

    let agent = Daemon::start(&stack, &config_path, &dir.path().join("agent-2.log"));
    assert!(arrived(150).await, "the new file's lines:\n{}", agent.log());
    let marker = format!("bytes from {shipped_to} to the end of {}", log.display());
    let has_marker =
        eventually(Duration::from_secs(30), || {
            let (logs, marker) = (logs.clone(), marker.clone());
            async move {
                stream_messages(&logs, GROUP, stream).await.iter().any(|m| m.contains(&marker))
            }
        })
        .await;
    assert!(has_marker, "no gap marker {marker:?} in the stream:\n{}", agent.log());
    assert!(agent.terminate().success());

    let (code, report) = verify(&stack, GROUP, stream);
    assert_eq!(code, Some(3), "verify: {report:#}");
    let gaps = report["gaps"].as_array().expect("gaps");
    let named = format!("bytes {shipped_to}..its end of {} (device", log.display());
    assert!(
        gaps.iter().any(|gap| gap["detail"].as_str().is_some_and(|d| d.contains(&named))),
        "no gap naming {named:?}: {report:#}"
    );
    assert!(report["lost"].as_array().is_some_and(Vec::is_empty), "{report:#}");
}
