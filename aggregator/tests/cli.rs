//! The command lines answer as DESIGN.md says: --help, --version, usage errors exit 2.

use std::process::{Command, Output};

fn run(binary: &str, args: &[&str]) -> Output {
    Command::new(binary).args(args).output().expect("run the binary")
}

const KLAXON: &str = env!("CARGO_BIN_EXE_klaxon");
const AGGREGATOR: &str = env!("CARGO_BIN_EXE_klaxon-aggregator");

#[test]
fn versions_name_the_binaries() {
    for (binary, name) in [(KLAXON, "klaxon"), (AGGREGATOR, "klaxon-aggregator")] {
        let output = run(binary, &["--version"]);
        assert!(output.status.success());
        let expected = format!("{name} {}\n", env!("CARGO_PKG_VERSION"));
        assert_eq!(String::from_utf8_lossy(&output.stdout), expected);
    }
}

#[test]
fn every_documented_subcommand_has_help() {
    let subcommands: &[&[&str]] = &[
        &["rules", "check"],
        &["rules", "test"],
        &["rules", "backtest"],
        &["alerts"],
        &["silence", "add"],
        &["silence", "list"],
        &["silence", "expire"],
        &["logs", "query"],
        &["logs", "verify"],
        &["watchdog", "install"],
    ];
    for words in subcommands {
        let mut args = words.to_vec();
        args.push("--help");
        let output = run(KLAXON, &args);
        assert!(output.status.success(), "{words:?}");
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(help.contains(&format!("Usage: klaxon {}", words.join(" "))), "{help}");
    }
    let help = String::from_utf8_lossy(&run(AGGREGATOR, &["--help"]).stdout).into_owned();
    assert!(help.contains("--config <FILE>") && help.contains("--check"), "{help}");
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(run(KLAXON, &[]).status.code(), Some(2));
    assert_eq!(run(KLAXON, &["rules", "check"]).status.code(), Some(2));
    assert_eq!(
        run(KLAXON, &["logs", "query", "--group", "g", "--format", "xml"]).status.code(),
        Some(2)
    );
    assert_eq!(
        run(
            KLAXON,
            &[
                "silence",
                "add",
                "--config",
                "c",
                "--match",
                "a=b",
                "--duration",
                "soon",
                "--comment",
                "x"
            ]
        )
        .status
        .code(),
        Some(2)
    );
    assert_eq!(run(AGGREGATOR, &[]).status.code(), Some(2));
}
