//! The IAM policies in packaging/iam grant exactly the AWS actions the code calls: each
//! SDK operation called in a component's sources (found by the operation names of the
//! SDK crates in use) is granted by its policy, and the policy grants nothing else. The
//! CloudFormation template carries the same documents.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// (IAM service prefix, SDK crate, how sources name the crate).
const SERVICES: [(&str, &str); 3] = [
    ("logs", "aws-sdk-cloudwatchlogs"),
    ("cloudwatch", "aws-sdk-cloudwatch"),
    ("sns", "aws-sdk-sns"),
];

/// (policy file, the sources whose calls it must allow).
const COMPONENTS: [(&str, &[&str]); 3] = [
    ("agent-policy.json", &["agent/src"]),
    (
        "aggregator-policy.json",
        &[
            "aggregator/src/service.rs",
            "aggregator/src/daemon.rs",
            "aggregator/src/source",
            "aggregator/src/notify",
            "aggregator/src/bin/klaxon/alerting.rs",
        ],
    ),
    ("auditor-policy.json", &["aggregator/src/audit", "aggregator/src/bin/klaxon/logs.rs"]),
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every operation of an SDK crate in the build, as snake_case method names.
fn operations(krate: &str) -> Vec<String> {
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(workspace())
        .output()
        .expect("cargo metadata");
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("metadata json");
    let manifest = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == krate)
        .and_then(|p| p["manifest_path"].as_str())
        .unwrap_or_else(|| panic!("{krate} is not in the build"));
    let folder = Path::new(manifest).parent().expect("crate folder").join("src/operation");
    let mut names: Vec<String> = std::fs::read_dir(&folder)
        .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .map(|name| name.trim_end_matches(".rs").to_owned())
        .collect();
    names.sort();
    names.dedup();
    names
}

fn pascal(snake: &str) -> String {
    snake.split('_').map(|word| word[..1].to_uppercase() + &word[1..]).collect()
}

fn sources(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("read dir").flatten() {
            sources(&entry.path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_owned());
    }
}

/// `service:Action` for every SDK operation the files call.
fn called(paths: &[&str], operations: &[(String, Vec<String>)]) -> BTreeSet<String> {
    let mut files = Vec::new();
    for path in paths {
        sources(&workspace().join(path), &mut files);
    }
    let mut actions = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("source");
        // Which SDKs this file talks to (`aws_sdk_cloudwatch` is a prefix of `…logs`).
        let without_logs = text.replace("aws_sdk_cloudwatchlogs", "");
        for ((prefix, krate), (_, names)) in SERVICES.iter().zip(operations) {
            let module = krate.replace('-', "_");
            let uses = if *prefix == "cloudwatch" {
                without_logs.contains(&module)
            } else {
                text.contains(&module)
            };
            if !uses {
                continue;
            }
            for name in names {
                if text.contains(&format!(".{name}()")) {
                    actions.insert(format!("{prefix}:{}", pascal(name)));
                }
            }
        }
    }
    actions
}

fn granted(policy: &serde_json::Value) -> BTreeSet<String> {
    let mut actions = BTreeSet::new();
    for statement in policy["Statement"].as_array().expect("statements") {
        assert_eq!(statement["Effect"], "Allow");
        match &statement["Action"] {
            serde_json::Value::String(action) => {
                actions.insert(action.clone());
            }
            serde_json::Value::Array(list) => {
                actions.extend(list.iter().filter_map(|a| a.as_str().map(str::to_owned)));
            }
            other => panic!("Action {other}"),
        }
        assert!(!statement["Resource"].is_null(), "every statement names its resources");
    }
    assert!(actions.iter().all(|a| !a.contains('*')), "no wildcard actions: {actions:?}");
    actions
}

fn read_json(name: &str) -> serde_json::Value {
    let path = workspace().join("packaging/iam").join(name);
    let text = std::fs::read_to_string(&path).expect("policy");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn each_policy_grants_exactly_what_its_code_calls() {
    let operations: Vec<(String, Vec<String>)> =
        SERVICES.iter().map(|(prefix, krate)| ((*prefix).to_owned(), operations(krate))).collect();
    assert!(
        operations
            .iter()
            .all(|(_, names)| names.contains(&"put_metric_data".to_owned()) || names.len() > 10)
    );
    for (file, paths) in COMPONENTS {
        let calls = called(paths, &operations);
        let grants = granted(&read_json(file));
        assert!(!calls.is_empty(), "{file}: no call found");
        assert_eq!(grants, calls, "{file}: granted (left) against called (right)");
    }
}

#[test]
fn the_cloudformation_template_carries_the_same_policies() {
    let template = read_json("cloudformation.json");
    let resources = &template["Resources"];
    let inline =
        |role: &str| resources[role]["Properties"]["Policies"][0]["PolicyDocument"].clone();
    assert_eq!(inline("AgentRole"), read_json("agent-policy.json"));
    assert_eq!(inline("AggregatorRole"), read_json("aggregator-policy.json"));
    assert_eq!(
        resources["AuditorPolicy"]["Properties"]["PolicyDocument"],
        read_json("auditor-policy.json")
    );
    for profile in ["AgentInstanceProfile", "AggregatorInstanceProfile"] {
        assert_eq!(resources[profile]["Type"], "AWS::IAM::InstanceProfile");
    }
    assert_eq!(resources["OnCallTopic"]["Type"], "AWS::SNS::Topic");
}
