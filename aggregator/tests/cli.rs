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

/// An aggregator config in a temp dir, its state there too, with `extra` appended.
fn aggregator_config(extra: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("aggregator.toml");
    let text = format!(
        "rules = \"{}/../rules\"\nstate_dir = \"{}\"\n{extra}",
        env!("CARGO_MANIFEST_DIR"),
        dir.path().join("state").display()
    );
    std::fs::write(&path, text).expect("config");
    (dir, path.display().to_string())
}

#[test]
fn silences_are_added_listed_and_expired() {
    let (_dir, config) = aggregator_config("");
    let added = Command::new(KLAXON)
        .args(["silence", "add", "--config", &config, "--match", "InstanceId=i-01,rule=~Disk.*"])
        .args(["--duration", "2h", "--comment", "disk swap"])
        .env("USER", "alice")
        .env_remove("SUDO_USER")
        .output()
        .expect("run");
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let id = String::from_utf8_lossy(&added.stdout).trim().to_owned();
    assert_eq!(id.len(), 8, "{id}");

    let listed = run(KLAXON, &["silence", "list", "--config", &config, "--format", "json"]);
    let row: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("one json row");
    assert_eq!(row["id"], id.as_str());
    assert_eq!(row["state"], "active");
    assert_eq!(row["author"], "alice");
    assert_eq!(row["matchers"], serde_json::json!(["InstanceId=i-01", "rule=~Disk.*"]));
    let ends =
        row["ends_at"].as_i64().expect("ends_at") - row["starts_at"].as_i64().expect("starts");
    assert_eq!(ends, 7200);

    assert!(run(KLAXON, &["silence", "expire", "--config", &config, &id]).status.success());
    let listed = run(KLAXON, &["silence", "list", "--config", &config]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(text.contains(&format!("{id}  expired")), "{text}");
    let unknown = run(KLAXON, &["silence", "expire", "--config", &config, "nope"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no silence \"nope\""));
}

#[test]
fn a_bad_silence_matcher_is_refused_with_the_offending_text() {
    let (_dir, config) = aggregator_config("");
    let output = run(
        KLAXON,
        &[
            "silence",
            "add",
            "--config",
            &config,
            "--match",
            "host=~(",
            "--duration",
            "1h",
            "--comment",
            "x",
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--match") && stderr.contains("invalid regex \"(\""), "{stderr}");
}

#[test]
fn aggregator_check_locates_bad_mutes_and_inhibitions() {
    let (_dir, config) = aggregator_config(
        "[[route]]\ntopic_arn = \"arn:aws:sns:us-east-1:1:t\"\n[[mute]]\nfrom = \"22:00\"\nto = \"07:00\"\ntime_zone = \"Mars/Olympus\"\nmatch = { severity = \"warning\" }\n[[inhibit]]\nsource = { rule = \"=~(\" }\ntarget = { severity = \"warning\" }\n",
    );
    let output = run(AGGREGATOR, &["--config", &config, "--check"]);
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains(":9:9: mute: time_zone \"Mars/Olympus\""), "{text}");
    assert!(text.contains(":11:10: match rule: invalid regex"), "{text}");
}

#[test]
fn alerts_on_a_fresh_state_dir_lists_nothing() {
    let (_dir, config) = aggregator_config("");
    let output = run(KLAXON, &["alerts", "--config", &config, "--format", "json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.stdout.is_empty());
}
