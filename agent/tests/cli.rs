//! The command line answers as DESIGN.md says: --help, --version, usage errors exit 2.

use std::process::Command;

fn agent(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_klaxon-agent")).args(args).output().expect("run klaxon-agent")
}

#[test]
fn help_lists_every_option() {
    let output = agent(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for option in ["--config <FILE>", "--check", "--status", "--cost", "--format", "--log-level"] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
}

#[test]
fn version_names_the_binary_and_the_crate_version() {
    let output = agent(&["--version"]);
    assert!(output.status.success());
    let expected = format!("klaxon-agent {}\n", env!("CARGO_PKG_VERSION"));
    assert_eq!(String::from_utf8_lossy(&output.stdout), expected);
}

#[test]
fn a_missing_config_or_an_unknown_flag_is_a_usage_error() {
    assert_eq!(agent(&[]).status.code(), Some(2));
    assert_eq!(agent(&["--config", "a.toml", "--bogus"]).status.code(), Some(2));
    assert_eq!(agent(&["--config", "a.toml", "--check", "--status"]).status.code(), Some(2));
}

fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    std::io::Write::write_all(&mut file, text.as_bytes()).expect("write");
    file
}

#[test]
fn check_prints_every_problem_located_and_exits_1() {
    let file = config_file("[[logs]]\npath = \"relative.log\"\ngroup = \"bad group\"\n");
    let path = file.path().to_str().expect("path");
    let output = agent(&["--config", path, "--check"]);
    assert_eq!(output.status.code(), Some(1));
    let printed = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 2, "{printed}");
    assert!(
        lines[0].starts_with(&format!("{path}:2:8: path \"relative.log\" is not absolute")),
        "{printed}"
    );
    assert!(lines[1].starts_with(&format!("{path}:3:9: group \"bad group\"")), "{printed}");
}

#[test]
fn check_reports_a_fifo_among_the_logs_without_waiting_on_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fifo = dir.path().join("pipe.log");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let file = config_file(&format!("[[logs]]\npath = \"{}\"\ngroup = \"g\"\n", fifo.display()));
    let path = file.path().to_str().expect("path");
    let mut child = Command::new(env!("CARGO_BIN_EXE_klaxon-agent"))
        .args(["--config", path, "--check"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run klaxon-agent");
    // Opening a FIFO with no writer blocks: the check must answer anyway.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("--check did not answer within 2 s on a FIFO");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    assert_eq!(output.status.code(), Some(1));
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains("pipe.log: it is a FIFO, not a regular file"), "{printed}");
}

#[test]
fn a_host_over_max_custom_metrics_is_refused_with_the_biggest_contributors() {
    let file = config_file("[metrics]\nmax_custom_metrics = 2\n");
    let path = file.path().to_str().expect("path");
    let output = agent(&["--config", path, "--check"]);
    assert_eq!(output.status.code(), Some(1));
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains("custom metrics, over max_custom_metrics = 2:"), "{printed}");
    assert!(printed.contains("cpu_usage_active 1"), "{printed}");
}

#[test]
fn cost_prints_the_monthly_price_next_to_the_reference_agent() {
    let file = config_file("[metrics]\nflush_interval = \"60s\"\n");
    let path = file.path().to_str().expect("path");
    let output = agent(&["--config", path, "--cost"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains("klaxon-agent, this configuration, per host:"), "{printed}");
    assert!(printed.contains("43200 PutMetricData calls"), "one call per flush: {printed}");
    assert!(printed.contains("amazon-cloudwatch-agent \"Standard\" set"), "{printed}");
}

#[test]
fn cost_and_status_speak_json_for_machines() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("app.log");
    std::fs::write(&log, "0123456789").expect("log");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("state dir");
    let metadata = std::fs::metadata(&log).expect("metadata");
    let checkpoint = serde_json::json!({"version": "1", "files": [{
        "key": {"dev": std::os::unix::fs::MetadataExt::dev(&metadata), "ino": std::os::unix::fs::MetadataExt::ino(&metadata)},
        "fingerprint": {"len": 0, "hash": 0},
        "path": log,
        "position": {"offset": 4, "parts_done": 0},
    }]});
    std::fs::write(state.join("checkpoints.json"), checkpoint.to_string()).expect("checkpoints");
    let file = config_file(&format!("state_dir = \"{}\"\n", state.display()));
    let path = file.path().to_str().expect("path");

    let output = agent(&["--config", path, "--status", "--format", "json"]);
    assert!(output.status.success());
    let line: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
    assert_eq!((line["offset"].as_u64(), line["behind"].as_str()), (Some(4), Some("6")));

    let output = agent(&["--config", path, "--cost", "--format", "json"]);
    assert!(output.status.success());
    let cost: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let series: u64 =
        cost["series"].as_object().expect("series").values().filter_map(|n| n.as_u64()).sum();
    assert_eq!(cost["per_host"]["custom_metrics"].as_u64(), Some(series));
    assert_eq!(cost["per_host"]["calls"].as_f64(), Some(43_200.0));
}
