//! A handle on one running local AWS stack: moto behind the front of
//! `stack/klaxon_stack.py` (CBOR bridge, limit checks, fault injection, IMDS fix).
//!
//! Each test starts its own stack on its own free loopback port, so tests run in
//! parallel without sharing names. The stack reads its commands from the pipe this
//! handle holds: when the handle is dropped, or the test process dies however it dies,
//! the pipe closes and the stack exits with it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_cloudwatch::config::Credentials;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::StackError;
use crate::python_env::ensure_python;

/// The region every client of the stack uses.
pub const REGION: &str = "us-east-1";
/// moto's account id, the one in the ARNs it makes.
pub const ACCOUNT_ID: &str = "123456789012";
/// Static test credentials: the default chain never falls through to IMDS.
const ACCESS_KEY: &str = "klaxon-test";

/// Environment variables a process must not inherit when it talks to the stack:
/// they could point it at real AWS or a real profile.
const SCRUBBED_VARIABLES: &[&str] = &[
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_EC2_METADATA_DISABLED",
    "AWS_ENDPOINT_URL_CLOUDWATCH",
    "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS",
    "AWS_ENDPOINT_URL_SNS",
    "AWS_ENDPOINT_URL_SQS",
];

/// The AWS service a fault or a latency applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Logs,
    /// CloudWatch metrics (the SDK's signing name is `monitoring`).
    Metrics,
    Sns,
    Sqs,
    Imds,
    All,
}

impl Service {
    fn wire_name(self) -> &'static str {
        match self {
            Service::Logs => "logs",
            Service::Metrics => "monitoring",
            Service::Sns => "sns",
            Service::Sqs => "sqs",
            Service::Imds => "imds",
            Service::All => "*",
        }
    }
}

/// What an injected fault answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// HTTP 400 with the service's throttling error code.
    Throttle,
    /// HTTP 500 `InternalFailure`.
    ServerError,
    /// The TCP connection is reset after the request was read.
    Reset,
}

/// Which requests a fault hits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Times {
    /// The next N requests to the service.
    Next(u32),
    /// Each request with this probability, until cleared.
    Fraction(f64),
}

/// What the stack has served so far.
#[derive(Debug, Clone, Deserialize)]
pub struct Stats {
    /// Requests per `service.Operation` (IMDS: `imds./path`), faults included.
    pub requests: BTreeMap<String, u64>,
    /// Requests the limit checks rejected, per `service.Operation: message`.
    pub rejected: BTreeMap<String, u64>,
    pub rejected_total: u64,
    /// Faults served per `service.kind`.
    pub faults: BTreeMap<String, u64>,
}

impl Stats {
    /// Requests served for one `service.Operation`, e.g. `logs.PutLogEvents`.
    pub fn requests_for(&self, operation: &str) -> u64 {
        self.requests.get(operation).copied().unwrap_or(0)
    }
}

struct ControlPipe {
    commands: ChildStdin,
    replies: BufReader<ChildStdout>,
}

/// One running stack. Dropping it stops the stack.
pub struct LocalStack {
    endpoint: String,
    child: Child,
    control: Mutex<ControlPipe>,
    log_path: PathBuf,
}

impl LocalStack {
    /// Starts a stack on a free loopback port, building its venv first if needed
    /// (a minute or two, once per machine). Blocks until the stack answers.
    pub fn start() -> Result<Self, StackError> {
        let python = ensure_python()?;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/stack/klaxon_stack.py");
        let log_path = std::env::temp_dir().join(format!(
            "klaxon-stack-{}-{}.log",
            std::process::id(),
            next_stack_number()
        ));
        let log = std::fs::File::create(&log_path).map_err(|source| StackError::Io {
            what: format!("creating {}", log_path.display()),
            source,
        })?;
        let mut child = Command::new(&python)
            .arg("-u")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|source| StackError::Io {
                what: format!("starting {} {script}", python.display()),
                source,
            })?;
        let (Some(commands), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(StackError::Protocol("the stack's pipes are missing".into()));
        };
        let mut replies = BufReader::new(stdout);
        let ready = read_reply(&mut replies, &log_path)?;
        let endpoint = ready["endpoint"]
            .as_str()
            .ok_or_else(|| StackError::Protocol(format!("no endpoint in {ready}")))?
            .to_owned();
        Ok(LocalStack {
            endpoint,
            child,
            control: Mutex::new(ControlPipe { commands, replies }),
            log_path,
        })
    }

    /// `http://127.0.0.1:PORT`: every AWS service and IMDS answer here.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Where the stack writes its own errors.
    pub fn log_path(&self) -> &std::path::Path {
        &self.log_path
    }

    /// The environment a process needs to use this stack through the ordinary SDK chain.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", ACCESS_KEY.to_owned()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_DEFAULT_REGION", REGION.to_owned()),
            ("AWS_CONFIG_FILE", "/dev/null".to_owned()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".to_owned()),
        ]
    }

    /// Points a command at this stack: sets [`LocalStack::env`] and removes the variables
    /// that could lead it to real AWS.
    pub fn configure(&self, command: &mut Command) {
        for name in SCRUBBED_VARIABLES {
            command.env_remove(name);
        }
        command.envs(self.env());
    }

    /// SDK configuration for clients of this stack, built without reading the process
    /// environment for endpoint, region or credentials.
    pub async fn sdk_config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(&self.endpoint)
            .credentials_provider(Credentials::new(
                ACCESS_KEY,
                ACCESS_KEY,
                None,
                None,
                "klaxon-stack",
            ))
            .load()
            .await
    }

    /// Injects a fault into the requests to `service`.
    pub fn inject(
        &self,
        service: Service,
        kind: FaultKind,
        times: Times,
    ) -> Result<(), StackError> {
        let kind = match kind {
            FaultKind::Throttle => "throttle",
            FaultKind::ServerError => "error",
            FaultKind::Reset => "reset",
        };
        let mut command = json!({"cmd": "fault", "service": service.wire_name(), "kind": kind});
        match times {
            Times::Next(count) => command["count"] = json!(count),
            Times::Fraction(fraction) => command["fraction"] = json!(fraction),
        }
        self.control(command).map(drop)
    }

    /// Delays every request to `service` by `delay`.
    pub fn set_latency(&self, service: Service, delay: Duration) -> Result<(), StackError> {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.control(json!({"cmd": "latency", "service": service.wire_name(), "ms": ms})).map(drop)
    }

    /// Removes every fault and latency.
    pub fn clear_faults(&self) -> Result<(), StackError> {
        self.control(json!({"cmd": "clear"})).map(drop)
    }

    /// A full outage (`true`: the port refuses connections and open ones are cut) or the
    /// recovery from it (`false`: the same port answers again).
    pub fn set_outage(&self, down: bool) -> Result<(), StackError> {
        self.control(json!({"cmd": "outage", "down": down})).map(drop)
    }

    /// Requests served, rejected by the limit checks, and faults injected so far.
    pub fn stats(&self) -> Result<Stats, StackError> {
        let reply = self.control(json!({"cmd": "stats"}))?;
        serde_json::from_value(reply).map_err(|error| StackError::Protocol(error.to_string()))
    }

    /// Sends one raw control command (see `stack/klaxon_stack.py`) and returns its reply.
    pub fn control(&self, command: Value) -> Result<Value, StackError> {
        let mut pipe = self
            .control
            .lock()
            .map_err(|_| StackError::Protocol("control pipe poisoned".into()))?;
        writeln!(pipe.commands, "{command}")
            .and_then(|()| pipe.commands.flush())
            .map_err(|source| StackError::Io { what: "writing to the stack".into(), source })?;
        let reply = read_reply(&mut pipe.replies, &self.log_path)?;
        if reply["ok"] == json!(true) {
            Ok(reply)
        } else {
            Err(StackError::Protocol(format!("{command} failed: {}", reply["error"])))
        }
    }
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        // Closing stdin alone would stop it; kill is for a stack stuck in a request.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log_path);
    }
}

fn read_reply(
    replies: &mut BufReader<ChildStdout>,
    log_path: &std::path::Path,
) -> Result<Value, StackError> {
    let mut line = String::new();
    let read = replies
        .read_line(&mut line)
        .map_err(|source| StackError::Io { what: "reading from the stack".into(), source })?;
    if read == 0 {
        let log = std::fs::read_to_string(log_path).unwrap_or_default();
        return Err(StackError::Exited { log });
    }
    serde_json::from_str(&line).map_err(|error| StackError::Protocol(format!("{error}: {line}")))
}

fn next_stack_number() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}
