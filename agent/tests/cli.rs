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
    for option in ["--config <FILE>", "--check", "--status", "--cost", "--log-level"] {
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
