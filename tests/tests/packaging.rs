//! What packaging ships holds up: the systemd units pass `systemd-analyze verify` and
//! score an exposure of at most 2.0, and both daemons speak systemd's notify protocol
//! (READY, WATCHDOG pings, STOPPING) on a real notify socket.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use klaxon_tests::agent::workspace_binary;

const UNITS: [&str; 2] = ["klaxon-agent", "klaxon-aggregator"];

fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging")
}

/// A root holding the daemons at /usr/bin, `/bin/kill`, our units, and a copy of the
/// system's units (targets the units name), as `systemd-analyze --root` needs.
fn unit_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("temp dir");
    let copy = |from: &Path, to: &str| {
        let target = root.path().join(to);
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        std::fs::copy(from, &target).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    };
    for unit in UNITS {
        copy(&workspace_binary(unit), &format!("usr/bin/{unit}"));
        copy(
            &packaging().join(format!("systemd/{unit}.service")),
            &format!("etc/systemd/system/{unit}.service"),
        );
    }
    copy(Path::new("/bin/kill"), "bin/kill");
    std::fs::create_dir_all(root.path().join("usr/lib/systemd")).expect("mkdir");
    let status = Command::new("cp")
        .args(["-a", "/usr/lib/systemd/system"])
        .arg(root.path().join("usr/lib/systemd/"))
        .status()
        .expect("cp");
    assert!(status.success());
    root
}

#[test]
fn the_units_pass_systemd_analyze_verify() {
    let root = unit_root();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.path().display()))
        .args(UNITS.map(|u| format!("{u}.service")))
        .output()
        .expect("systemd-analyze (Debian package systemd)");
    let said = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{said}");
    assert!(!said.contains("klaxon"), "{said}");
}

#[test]
fn the_units_expose_at_most_2_0() {
    for unit in UNITS {
        let path = packaging().join(format!("systemd/{unit}.service"));
        let output = Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(&path)
            .output()
            .expect("systemd-analyze");
        let text = String::from_utf8_lossy(&output.stdout);
        let score: f64 = text
            .lines()
            .find_map(|line| line.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split(": ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|number| number.parse().ok())
            .unwrap_or_else(|| panic!("no exposure in {text}"));
        assert!(score <= 2.0, "{unit}: exposure {score}\n{text}");
    }
}

/// Starts `binary` with `args` and a notify socket; returns what it said within
/// `window`, after SIGTERM.
fn notifications(binary: &str, args: &[&str], window: Duration) -> Vec<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket_path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).expect("bind");
    socket.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    let mut child = Command::new(workspace_binary(binary))
        .args(args)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut said = Vec::new();
    let mut buffer = [0u8; 4096];
    let started = Instant::now();
    let mut terminated = false;
    while started.elapsed() < window + Duration::from_secs(5) {
        if !terminated && started.elapsed() >= window {
            let pid = child.id().to_string();
            Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
            terminated = true;
        }
        if let Ok(n) = socket.recv(&mut buffer) {
            said.push(String::from_utf8_lossy(&buffer[..n]).into_owned());
            if said.last().is_some_and(|s| s.contains("STOPPING=1")) {
                break;
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    said
}

#[test]
fn both_daemons_notify_ready_feed_the_watchdog_and_say_stopping() {
    let dir = tempfile::tempdir().expect("temp dir");
    let agent_config = dir.path().join("agent.toml");
    std::fs::write(
        &agent_config,
        format!(
            "state_dir = \"{0}/agent\"\ninstance_id = \"i-notify\"\n[[logs]]\npath = \"{0}/*.log\"\ngroup = \"/test\"\n",
            dir.path().display()
        ),
    )
    .expect("agent config");
    std::fs::write(dir.path().join("rules.toml"), "").expect("rules");
    let aggregator_config = dir.path().join("aggregator.toml");
    std::fs::write(
        &aggregator_config,
        format!("rules = \"rules.toml\"\nstate_dir = \"{}/aggregator\"\n", dir.path().display()),
    )
    .expect("aggregator config");
    for (binary, config) in
        [("klaxon-agent", &agent_config), ("klaxon-aggregator", &aggregator_config)]
    {
        let config = config.display().to_string();
        let said = notifications(binary, &["--config", &config], Duration::from_secs(2));
        let ready = said.iter().position(|s| s.contains("READY=1"));
        assert!(ready.is_some(), "{binary}: {said:?}");
        let pings = said.iter().filter(|s| s.contains("WATCHDOG=1")).count();
        assert!(pings >= 4, "{binary}: {pings} watchdog pings in 2 s at 0.4 s: {said:?}");
        assert!(said.last().is_some_and(|s| s.contains("STOPPING=1")), "{binary}: {said:?}");
    }
}
