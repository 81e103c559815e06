//! Shared set-up for the end-to-end tests.

use klaxon_tests::LocalStack;

/// A started stack and SDK configuration for it.
pub async fn stack() -> (LocalStack, aws_config::SdkConfig) {
    let stack = LocalStack::start().unwrap_or_else(|error| panic!("local AWS stack: {error}"));
    let config = stack.sdk_config().await;
    (stack, config)
}

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    i64::try_from(now.map(|d| d.as_secs()).unwrap_or_default()).unwrap_or(i64::MAX)
}

/// Writes an agent configuration in `dir` (state in `dir/state`, instance `i-test`)
/// with the given `[[logs]]` tables, and returns its path.
pub fn agent_config(dir: &std::path::Path, logs: &str) -> std::path::PathBuf {
    let path = dir.join("agent.toml");
    let text = format!(
        "state_dir = \"{}\"\ninstance_id = \"i-test\"\n\n{logs}",
        dir.join("state").display()
    );
    std::fs::write(&path, text).expect("write the agent config");
    path
}
