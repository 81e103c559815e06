//! Driving the real `klaxon-agent` binary in end-to-end tests, and reading back what it
//! shipped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_cloudwatchlogs::Client;

use crate::LocalStack;

/// The path of a workspace binary, built first if this test run did not build it
/// (`cargo test -p klaxon-tests` builds only this crate's binaries).
pub fn workspace_binary(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let exe = std::env::current_exe().unwrap_or_default();
    // Tests and benches run from target/PROFILE/deps, binaries from target/PROFILE.
    let exe_dir = exe.parent().unwrap_or(Path::new("target/debug"));
    let profile_dir =
        if exe_dir.ends_with("deps") { exe_dir.parent().unwrap_or(exe_dir) } else { exe_dir };
    let binary = profile_dir.join(name);
    let mut built = BUILT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // Built once per process, even when present: a binary left by an older build
    // would test old code (cargo returns at once when it is up to date).
    if !built.iter().any(|b| b == name) {
        let cargo = option_env!("CARGO").unwrap_or("cargo");
        let release = profile_dir.ends_with("release").then_some("--release");
        let status = Command::new(cargo)
            .args(["build", "--quiet", "--workspace", "--bin", name])
            .args(release)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build --bin {name} failed");
        built.push(name.to_owned());
    }
    binary
}

/// A running `klaxon-agent --config FILE` (or `klaxon-aggregator`), talking to a local stack.
pub struct Daemon {
    child: Child,
    /// Where its stderr (the tracing log) goes.
    pub log_path: PathBuf,
}

impl Daemon {
    /// Starts the agent on `config`, its log appended to `log_path`.
    pub fn start(stack: &LocalStack, config: &Path, log_path: &Path) -> Daemon {
        Self::start_with(stack, config, log_path, &[])
    }

    /// Like [`Daemon::start`], with environment variables set after the stack's.
    pub fn start_with(
        stack: &LocalStack,
        config: &Path,
        log_path: &Path,
        env: &[(&str, &str)],
    ) -> Daemon {
        Self::start_binary("klaxon-agent", stack, config, log_path, env)
    }

    /// Starts `klaxon-aggregator --config FILE`.
    pub fn aggregator(stack: &LocalStack, config: &Path, log_path: &Path) -> Daemon {
        Self::start_binary("klaxon-aggregator", stack, config, log_path, &[])
    }

    fn start_binary(
        binary: &str,
        stack: &LocalStack,
        config: &Path,
        log_path: &Path,
        env: &[(&str, &str)],
    ) -> Daemon {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .expect("open the agent log");
        let mut command = Command::new(workspace_binary(binary));
        command.arg("--config").arg(config).stdout(Stdio::null()).stderr(log);
        stack.configure(&mut command);
        command.env("RUST_LOG", "info");
        command.envs(env.iter().copied());
        let child = command.spawn().unwrap_or_else(|error| panic!("start {binary}: {error}"));
        Daemon { child, log_path: log_path.to_owned() }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
        assert!(sent.success(), "kill -TERM {pid}");
        self.child.wait().expect("wait for klaxon-agent")
    }

    /// SIGKILL: no chance to flush or save.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL klaxon-agent");
        let _ = self.child.wait();
    }

    /// The agent's log so far, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every message of one stream, from its start, in CloudWatch's order (all pages).
pub async fn stream_messages(logs: &Client, group: &str, stream: &str) -> Vec<String> {
    let mut messages = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = logs
            .get_log_events()
            .log_group_name(group)
            .log_stream_name(stream)
            .start_from_head(true)
            .set_next_token(token.clone())
            .send()
            .await;
        let Ok(page) = page else { return messages };
        let events = page.events();
        messages.extend(events.iter().filter_map(|e| e.message().map(str::to_owned)));
        let next = page.next_forward_token().map(str::to_owned);
        if events.is_empty() || next.is_none() || next == token {
            return messages;
        }
        token = next;
    }
}

/// Polls `check` every 500 ms until it is true or `timeout` passes; true if it held.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
