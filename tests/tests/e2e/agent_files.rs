//! Many files and lost files: a glob matching 2,000 files stays within
//! `max_open_files` and ships them all; a file deleted before it was read to its end
//! leaves a gap marker naming the bytes lost, and `klaxon logs verify` exits 3 naming them.

use std::path::Path;
use std::time::Duration;

use klaxon_tests::agent::{Daemon, eventually, stream_messages};

use crate::logs_audit::verify;
use crate::support::{agent_config, stack};

/// The agent's open descriptors on files under `dir`.
fn open_files_under(pid: u32, dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return Vec::new() };
    entries
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        // The folder itself is open while the globs are expanded: it is not a log file.
        .filter(|target| target.starts_with(dir) && target != dir)
        .map(|target| target.display().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_files_ship_within_the_open_file_cap() {
    let (stack, config) = stack().await;
    let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
    let dir = tempfile::tempdir().expect("temp dir");
    let logs_dir = dir.path().join("many");
    std::fs::create_dir(&logs_dir).expect("dir");
    for file in 0..2000 {
        let lines: String = (0..5).map(|line| format!("file {file:04} line {line}\n")).collect();
        std::fs::write(logs_dir.join(format!("f{file:04}.log")), lines).expect("write");
    }
    let config_path = agent_config(
        dir.path(),
        &format!(
            "max_open_files = 64\n\n[[logs]]\npath = \"{}/*.log\"\ngroup = \"/test/many\"\n",
            logs_dir.display()
        ),
    );
    let agent = Daemon::start(&stack, &config_path, &dir.path().join("agent.log"));
    let mut most_open: Vec<String> = Vec::new();
    let all_shipped = eventually(Duration::from_secs(120), || {
        let open = open_files_under(agent.pid(), &logs_dir);
        if open.len() > most_open.len() {
            most_open = open;
        }
        let logs = logs.clone();
        async move { stream_messages(&logs, "/test/many", "i-test").await.len() >= 10_000 }
    })
    .await;
    assert!(all_shipped, "not all shipped:\n{}", agent.log());
    assert!(most_open.len() <= 64, "{} files open at once: {most_open:?}", most_open.len());
    let mut got = stream_messages(&logs, "/test/many", "i-test").await;
    got.sort();
    let mut expected: Vec<String> =
        (0..2000).flat_map(|f| (0..5).map(move |l| format!("file {f:04} line {l}"))).collect();
    expected.sort();
    assert_eq!(got, expected);
    assert!(agent.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_deleted_before_it_was_read_leaves_a_gap_marker() {
    let (stack, config) = stack().await;
    let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
    let dir = tempfile::tempdir().expect("temp dir");
    let logs_dir = dir.path().join("logs");
    std::fs::create_dir(&logs_dir).expect("dir");
    let line = "x".repeat(99);
    let content: String = (0..1000).map(|_| format!("{line}\n")).collect();
    std::fs::write(logs_dir.join("a.log"), &content).expect("write a");
    std::fs::write(logs_dir.join("b.log"), &content).expect("write b");
    // One open file and a budget of a few events: while CloudWatch is down, the agent
    // holds one file open and cannot get to the other.
    let config_path = agent_config(
        dir.path(),
        &format!(
            "max_open_files = 1\nmax_buffer_bytes = 4096\n\n[[logs]]\npath = \"{}/*.log\"\ngroup = \"/test/gap\"\nstream = \"{{file}}\"\nmax_event_bytes = 1024\n",
            logs_dir.display()
        ),
    );
    stack.set_outage(true).expect("outage");
    let agent = Daemon::start(&stack, &config_path, &dir.path().join("agent.log"));
    let holds_one = eventually(Duration::from_secs(20), || {
        let open = open_files_under(agent.pid(), &logs_dir);
        async move { open.len() == 1 }
    })
    .await;
    assert!(holds_one, "the agent should hold one file:\n{}", agent.log());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let held = open_files_under(agent.pid(), &logs_dir);
    assert_eq!(held.len(), 1, "{held:?}");
    let (kept, deleted) =
        if held[0].ends_with("a.log") { ("a.log", "b.log") } else { ("b.log", "a.log") };
    std::fs::remove_file(logs_dir.join(deleted)).expect("delete the file not held");
    stack.set_outage(false).expect("recovery");

    // The marker names the bytes lost: with the lines shipped before, they make the file.
    let marker_prefix = "[klaxon: gap: ? lines / ";
    let marker_suffix =
        format!(" of {}, deleted before it was read to its end]", logs_dir.join(deleted).display());
    let gap_shipped = eventually(Duration::from_secs(60), || {
        let logs = logs.clone();
        async move {
            let got = stream_messages(&logs, "/test/gap", deleted).await;
            got.last().is_some_and(|last| last.starts_with(marker_prefix))
        }
    })
    .await;
    assert!(gap_shipped, "no gap marker:\n{}", agent.log());
    let got = stream_messages(&logs, "/test/gap", deleted).await;
    let (marker, shipped_lines) = got.split_last().expect("marker");
    // "N bytes (FROM..TO)": how many, and which.
    let (lost, from, to): (usize, usize, usize) = marker
        .strip_prefix(marker_prefix)
        .and_then(|rest| rest.strip_suffix(&marker_suffix))
        .and_then(|bytes| {
            let (lost, range) = bytes.split_once(" bytes (")?;
            let (from, to) = range.strip_suffix(')')?.split_once("..")?;
            Some((lost.parse().ok()?, from.parse().ok()?, to.parse().ok()?))
        })
        .unwrap_or_else(|| panic!("malformed marker {marker:?}"));
    assert!(lost > 0);
    assert!(shipped_lines.iter().all(|l| *l == line), "only whole lines before the gap");
    assert_eq!(shipped_lines.len() * (line.len() + 1) + lost, content.len(), "{marker}");
    assert_eq!((from, to), (content.len() - lost, content.len()), "{marker}");
    let kept_shipped = eventually(Duration::from_secs(60), || {
        let logs = logs.clone();
        async move { stream_messages(&logs, "/test/gap", kept).await.len() == 1000 }
    })
    .await;
    assert!(kept_shipped, "{kept} incomplete:\n{}", agent.log());
    assert!(agent.terminate().success());

    // The auditor's view: complete except a declared gap (exit 3), named by file and bytes.
    let (code, report) = verify(&stack, "/test/gap", deleted);
    assert_eq!(code, Some(3), "verify: {report:#}");
    let named = format!("bytes {from}..{to} of {} (device", logs_dir.join(deleted).display());
    let gaps = report["gaps"].as_array().expect("gaps");
    assert!(
        gaps.iter().any(|gap| gap["detail"].as_str().is_some_and(|d| d.contains(&named))),
        "no gap naming {named:?}: {report:#}"
    );
    let (code, report) = verify(&stack, "/test/gap", kept);
    assert_eq!(code, Some(0), "{kept} is complete: {report:#}");
}
