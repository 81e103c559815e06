//! The README's demo command runs to the end on the local stack: every step, every
//! expected alert, within its 4 minutes after setup.

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn the_demo_runs_every_step_sees_every_alert_and_exits_zero() {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_klaxon-demo")).output().expect("run klaxon-demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    // Warm: setup is a check, then at most the demo's 240 s deadline.
    assert!(started.elapsed() < Duration::from_secs(300), "{:?}", started.elapsed());
    let steps = stdout.lines().filter(|line| line.starts_with("==> ")).count();
    assert_eq!(steps, 10, "{stdout}");
    for expected in [
        "upstream timed out",
        "ALERT [",
        "DemoHostDown firing on i-web-2",
        "every expected alert arrived",
    ] {
        assert!(stdout.contains(expected), "{expected} missing from\n{stdout}");
    }
    assert!(!stdout.contains("KlaxonSourceDegraded"), "{stdout}");
}
