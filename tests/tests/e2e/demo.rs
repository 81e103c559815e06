//! The README's demo command runs to the end on the local stack.

use std::process::Command;

#[test]
fn the_demo_runs_every_step_and_exits_zero() {
    let output = Command::new(env!("CARGO_BIN_EXE_klaxon-demo")).output().expect("run klaxon-demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let steps = stdout.lines().filter(|line| line.starts_with("==> ")).count();
    assert_eq!(steps, 5, "{stdout}");
    assert!(stdout.contains("max = [97.5]"), "{stdout}");
}
