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

#[test]
fn the_shipped_rules_pass_rules_check() {
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules");
    let output = run(KLAXON, &["rules", "check", rules]);
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{printed}");
    assert!(printed.contains("rules in 5 files: ok"), "{printed}");
}

#[test]
fn rules_check_prints_located_problems_and_exits_1() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[[rule]]\nname = \"X\"\nkind = \"log\"\nseverity = \"warning\"\nsummary = \"s\"\nlog_group = \"/g\"\npattern = \"ERROR\"\nwindow = \"5m\"\nwhen = \"lots\"\n")
        .expect("write");
    let output = run(KLAXON, &["rules", "check", dir.path().to_str().expect("path")]);
    assert_eq!(output.status.code(), Some(1));
    let printed = String::from_utf8_lossy(&output.stdout);
    let expected =
        format!("{}:9:8: rule \"X\": when: \"lots\" must start with one of", file.display());
    assert!(printed.starts_with(&expected), "{printed}");
}

#[test]
fn aggregator_check_validates_its_config_and_rules() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules");
    let config = dir.path().join("aggregator.toml");
    std::fs::write(&config, format!("rules = \"{rules}\"\n[[route]]\ntopic_arn = \"arn:aws:sns:us-east-1:123456789012:oncall\"\n"))
        .expect("write");
    let output = run(AGGREGATOR, &["--config", config.to_str().expect("path"), "--check"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
    std::fs::write(&config, "rules = \"missing-folder\"\nevaluation_interval = \"often\"\n")
        .expect("write");
    let output = run(AGGREGATOR, &["--config", config.to_str().expect("path"), "--check"]);
    assert_eq!(output.status.code(), Some(1));
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains("aggregator.toml:2:23: invalid duration \"often\""), "{printed}");
}

#[test]
fn the_shipped_rule_tests_pass() {
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules");
    let output = run(KLAXON, &["rules", "test", rules]);
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{printed}");
    assert!(printed.contains(" 0 failed, in 5 test files"), "{printed}");
}

#[test]
fn a_failing_rule_test_prints_expected_and_got() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules/hosts.toml");
    std::fs::write(
        dir.path().join("wrong.test.toml"),
        format!(
            "rule_files = [\"{rules}\"]\n[[test]]\nname = \"wrong\"\n[[test.series]]\nmetric = \"mem_used_percent\"\nlabels = {{ InstanceId = \"i-9\" }}\nvalues = \"99x3\"\n[[test.expect]]\nat = \"2m\"\nrule = \"HighMemory\"\nfiring = [{{ labels = {{ InstanceId = \"i-9\" }} }}]\n"
        ),
    )
    .expect("write");
    let output = run(KLAXON, &["rules", "test", dir.path().to_str().expect("path")]);
    assert_eq!(output.status.code(), Some(1));
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains("rule HighMemory at 2m (firing):\n  expected:\n    ExpectedAlert { labels: {\"InstanceId\": \"i-9\"}, summary: None }\n  got:\n"), "{printed}");
    assert!(printed.contains("0 expectations passed, 1 failed"), "{printed}");
}

#[test]
fn rules_check_speaks_json_for_machines() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("bad.toml"), "[[rule]]\nname = \"X\"\nkind = \"absent\"\nseverity = \"s\"\nsummary = \"s\"\nnamespace = \"n\"\nmetric = \"m\"\n")
        .expect("write");
    let output =
        run(KLAXON, &["rules", "check", "--format", "json", dir.path().to_str().expect("path")]);
    assert_eq!(output.status.code(), Some(1));
    let parsed: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let problem = &parsed["problems"][0];
    assert_eq!((problem["line"].as_u64(), problem["column"].as_u64()), (Some(2), Some(8)));
    assert_eq!(problem["message"], "rule \"X\": an absent rule needs `for`");
}
