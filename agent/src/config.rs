//! The agent's configuration file: the keys, their defaults, and the checks that turn
//! it into a [`ValidConfig`] the agent can run, or into every problem at once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;
use toml::Spanned;

use crate::metrics::run::MetricsPlan;
use crate::metrics::sample::SampleOptions;
use klaxon_common::config_file::{self, duration};
use klaxon_common::diagnostic::{Problem, Problems};

/// Where checkpoints live when the file does not say (systemd's StateDirectory).
const DEFAULT_STATE_DIR: &str = "/var/lib/klaxon-agent";
/// The memory the log pipeline may hold: read buffers, multiline state and batches.
const DEFAULT_MAX_BUFFER_BYTES: u64 = 32 * 1024 * 1024;
/// Files held open at once; idle ones are closed and reopened when they grow.
const DEFAULT_MAX_OPEN_FILES: usize = 256;
/// CloudWatch Logs' limit on one event is 1 MiB including 26 bytes of overhead.
pub const MAX_EVENT_BYTES_LIMIT: usize = 1_048_576 - 26;
/// The smallest event size that leaves room for a part marker and some text.
const MIN_EVENT_BYTES: usize = 256;
const DEFAULT_MAX_EVENT_BYTES: usize = 262_144;
/// Retention periods CloudWatch Logs accepts (PutRetentionPolicy).
const RETENTION_DAYS: &[u32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// The file as written: every key the agent knows, unknown keys refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Checkpoints and the metrics spool.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Overrides the instance id (else IMDSv2, else the hostname).
    pub instance_id: Option<String>,
    /// Memory budget of the log pipeline, in bytes: reading stops when it is spent.
    #[serde(default = "default_max_buffer_bytes")]
    pub max_buffer_bytes: Spanned<u64>,
    /// Files held open at once.
    #[serde(default = "default_max_open_files")]
    pub max_open_files: Spanned<usize>,
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// The log files to ship.
    #[serde(default)]
    pub logs: Vec<LogSource>,
}

/// `[metrics]`: host metrics.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// False: no metrics at all (no heartbeat either).
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// How often to sample.
    #[serde(default = "default_sample_interval", deserialize_with = "duration")]
    pub sample_interval: Duration,
    /// How often to send (samples go as Values/Counts).
    #[serde(default = "default_flush_interval", deserialize_with = "duration")]
    pub flush_interval: Duration,
    /// Metric names to publish, or `["all"]`. Each one is billed per series.
    #[serde(default = "default_measurements")]
    pub measurements: Spanned<Vec<String>>,
    /// Also one `cpu_usage_*` series per core.
    #[serde(default)]
    pub per_core: bool,
    /// File system types whose mounts are not reported.
    #[serde(default = "default_ignored_file_systems")]
    pub ignore_file_system_types: Vec<String>,
    /// Process names for `procstat_cpu_usage` and `procstat_memory_rss`.
    #[serde(default)]
    pub processes: Vec<String>,
    /// Dimensions added from IMDS: `InstanceType`, `ImageId`, `AutoScalingGroupName`.
    #[serde(default = "no_dimensions")]
    pub append_dimensions: Spanned<Vec<String>>,
    /// Dimension sets to publish rolled-up series for, e.g. `[["AutoScalingGroupName"], []]`.
    #[serde(default = "no_dimension_sets")]
    pub aggregation_dimensions: Spanned<Vec<Vec<String>>>,
    /// The most custom metrics this host may publish; more is refused, never billed.
    #[serde(default = "default_max_custom_metrics")]
    pub max_custom_metrics: usize,
    /// Unsent flushes are kept this long, then dropped (and counted).
    #[serde(default = "default_spool_max_age", deserialize_with = "duration")]
    pub spool_max_age: Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            namespace: default_namespace(),
            sample_interval: default_sample_interval(),
            flush_interval: default_flush_interval(),
            measurements: default_measurements(),
            per_core: false,
            ignore_file_system_types: default_ignored_file_systems(),
            processes: Vec::new(),
            append_dimensions: no_dimensions(),
            aggregation_dimensions: no_dimension_sets(),
            max_custom_metrics: default_max_custom_metrics(),
            spool_max_age: default_spool_max_age(),
        }
    }
}

/// Every metric the agent can sample.
pub const ALL_MEASUREMENTS: &[&str] = &[
    "cpu_usage_active",
    "cpu_usage_user",
    "cpu_usage_system",
    "cpu_usage_iowait",
    "cpu_usage_idle",
    "mem_used_percent",
    "mem_used",
    "mem_available",
    "swap_used_percent",
    "disk_used_percent",
    "disk_free",
    "diskio_read_bytes",
    "diskio_write_bytes",
    "net_bytes_sent",
    "net_bytes_recv",
    "net_packets_sent",
    "net_packets_recv",
    "net_err_in",
    "net_err_out",
    "load_1",
    "load_5",
    "load_15",
    "processes_total",
    "procstat_cpu_usage",
    "procstat_memory_rss",
];

/// The frugal default: what on-call needs to see a sick web server, a few series a host.
const DEFAULT_MEASUREMENTS: &[&str] = &[
    "cpu_usage_active",
    "mem_used_percent",
    "swap_used_percent",
    "disk_used_percent",
    "procstat_cpu_usage",
    "procstat_memory_rss",
];

/// Dimensions IMDS can add.
const APPENDABLE_DIMENSIONS: &[&str] = &["InstanceType", "ImageId", "AutoScalingGroupName"];

/// Where to begin a file seen for the first time when the agent starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    #[default]
    Beginning,
    End,
}

/// Which symbolic links among a glob's matches are followed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FollowSymlinks {
    /// Only a link whose target the globs match too: a link elsewhere (planted, or by
    /// mistake) would ship a file nobody chose, a key or a password file.
    #[default]
    Matching,
    /// Every link (Kubernetes' `/var/log/containers/*.log` point into `/var/log/pods`).
    Always,
}

/// `[[logs]]`: one glob of files shipped to one log group.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSource {
    /// An absolute path; `*`, `?` and `[...]` match several files.
    pub path: Spanned<String>,
    /// Globs of files not to ship, even when `path` matches them.
    #[serde(default)]
    pub exclude: Vec<Spanned<String>>,
    /// Which symbolic links `path` matches are followed: `"matching"` or `"always"`.
    #[serde(default)]
    pub follow_symlinks: FollowSymlinks,
    /// The CloudWatch Logs group.
    pub group: Spanned<String>,
    /// The stream name: `{instance_id}` (default), `{hostname}`, `{file}` (the file's name).
    #[serde(default = "default_stream")]
    pub stream: Spanned<String>,
    /// For files seen for the first time at start-up; files that appear later are read
    /// from their beginning.
    #[serde(default)]
    pub start_at: StartAt,
    /// A line matching this regex starts a new event; other lines join the previous one.
    pub multiline_start: Option<Spanned<String>>,
    /// An event waits this long for more lines before it is sent.
    #[serde(default = "default_multiline_timeout", deserialize_with = "duration")]
    pub multiline_timeout: Duration,
    /// A last line without its newline waits this long before it is sent as it is.
    #[serde(default = "default_partial_line_timeout", deserialize_with = "duration")]
    pub partial_line_timeout: Duration,
    /// A regex whose first capture group (else whole match) is the event's time.
    pub timestamp_regex: Option<Spanned<String>>,
    /// chrono's strftime format of that time, e.g. `%d/%b/%Y:%H:%M:%S %z`.
    pub timestamp_format: Option<Spanned<String>>,
    /// Set on the group when the agent creates it.
    pub retention_days: Option<Spanned<u32>>,
    /// Longer lines become several events marked `[klaxon: part i/n]`.
    #[serde(default = "default_max_event_bytes")]
    pub max_event_bytes: Spanned<usize>,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_DIR)
}
fn default_max_buffer_bytes() -> Spanned<u64> {
    Spanned::new(0..0, DEFAULT_MAX_BUFFER_BYTES)
}
fn default_max_open_files() -> Spanned<usize> {
    Spanned::new(0..0, DEFAULT_MAX_OPEN_FILES)
}
fn default_namespace() -> String {
    "Klaxon".to_owned()
}
const fn default_sample_interval() -> Duration {
    Duration::from_secs(10)
}
const fn default_flush_interval() -> Duration {
    Duration::from_secs(60)
}
const fn default_true() -> bool {
    true
}
fn default_measurements() -> Spanned<Vec<String>> {
    Spanned::new(0..0, DEFAULT_MEASUREMENTS.iter().map(|m| (*m).to_owned()).collect())
}
fn default_ignored_file_systems() -> Vec<String> {
    [
        "tmpfs", "devtmpfs", "overlay", "squashfs", "proc", "sysfs", "cgroup", "cgroup2", "devpts",
        "nsfs", "autofs", "ramfs", "efivarfs",
    ]
    .iter()
    .map(|t| (*t).to_owned())
    .collect()
}
fn no_dimensions() -> Spanned<Vec<String>> {
    Spanned::new(0..0, Vec::new())
}
fn no_dimension_sets() -> Spanned<Vec<Vec<String>>> {
    Spanned::new(0..0, Vec::new())
}
const fn default_max_custom_metrics() -> usize {
    200
}
const fn default_spool_max_age() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_stream() -> Spanned<String> {
    Spanned::new(0..0, "{instance_id}".to_owned())
}
const fn default_multiline_timeout() -> Duration {
    Duration::from_secs(1)
}
const fn default_partial_line_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_max_event_bytes() -> Spanned<usize> {
    Spanned::new(0..0, DEFAULT_MAX_EVENT_BYTES)
}

/// A `[[logs]]` entry with its patterns compiled.
#[derive(Debug, Clone)]
pub struct ValidLogSource {
    pub path: String,
    pub exclude: Vec<glob::Pattern>,
    pub follow_symlinks: FollowSymlinks,
    pub group: String,
    pub stream: String,
    pub start_at: StartAt,
    pub multiline_start: Option<Regex>,
    pub multiline_timeout: Duration,
    pub partial_line_timeout: Duration,
    pub timestamp: Option<TimestampParser>,
    pub retention_days: Option<u32>,
    pub max_event_bytes: usize,
}

/// How to read an event's time from its text.
#[derive(Debug, Clone)]
pub struct TimestampParser {
    pub regex: Regex,
    pub format: String,
}

/// A configuration that passed every check.
#[derive(Debug, Clone)]
pub struct ValidConfig {
    pub state_dir: PathBuf,
    pub instance_id: Option<String>,
    pub max_buffer_bytes: u64,
    pub max_open_files: usize,
    /// None when `[metrics] enabled = false`.
    pub metrics: Option<ValidMetrics>,
    pub logs: Vec<ValidLogSource>,
}

/// The checked `[metrics]` table.
#[derive(Debug, Clone)]
pub struct ValidMetrics {
    pub plan: MetricsPlan,
    pub append_dimensions: Vec<String>,
    pub max_custom_metrics: usize,
}

impl ValidConfig {
    /// Reads and checks `file`; every problem found is returned at once.
    pub fn load(file: &Path) -> Result<ValidConfig, Problems> {
        let source = config_file::read_text(file).map_err(|problem| Problems(vec![problem]))?;
        Self::parse(file, &source)
    }

    /// Like [`ValidConfig::load`], and also reports the files the globs match that this
    /// user cannot read: the preflight for running as a non-root user (`--check`).
    pub fn check(file: &Path) -> Result<ValidConfig, Problems> {
        let source = config_file::read_text(file).map_err(|problem| Problems(vec![problem]))?;
        Self::parse_with(file, &source, AccessCheck::Files)
    }

    /// Parses and checks `source`, the text of `file`.
    pub fn parse(file: &Path, source: &str) -> Result<ValidConfig, Problems> {
        Self::parse_with(file, source, AccessCheck::None)
    }

    fn parse_with(file: &Path, source: &str, access: AccessCheck) -> Result<ValidConfig, Problems> {
        let raw: AgentConfig = toml::from_str(source)
            .map_err(|error| Problems(vec![Problem::from_toml(file, source, &error)]))?;
        let mut checker = Checker { file, source, access, problems: Vec::new() };
        let logs: Vec<_> = raw.logs.iter().map(|log| checker.log_source(log, &raw)).collect();
        let metrics = checker.metrics(&raw.metrics);
        checker.check(
            *raw.max_open_files.get_ref() >= 1,
            raw.max_open_files.span(),
            "max_open_files must be at least 1",
        );
        if checker.problems.is_empty() {
            Ok(ValidConfig {
                state_dir: raw.state_dir,
                instance_id: raw.instance_id,
                max_buffer_bytes: raw.max_buffer_bytes.into_inner(),
                max_open_files: raw.max_open_files.into_inner(),
                metrics,
                logs: logs.into_iter().flatten().collect(),
            })
        } else {
            Err(Problems(checker.problems))
        }
    }
}

/// Whether checking opens the files the globs match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AccessCheck {
    None,
    Files,
}

/// Collects problems with their positions while checking the raw configuration.
struct Checker<'a> {
    file: &'a Path,
    source: &'a str,
    access: AccessCheck,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn check(&mut self, ok: bool, span: std::ops::Range<usize>, message: impl Into<String>) {
        if !ok {
            self.problems.push(Problem::at(self.file, self.source, span, message));
        }
    }

    fn regex(&mut self, pattern: &Spanned<String>, key: &str) -> Option<Regex> {
        match Regex::new(pattern.get_ref()) {
            Ok(regex) => Some(regex),
            Err(error) => {
                let message = format!("{key}: invalid regex: {error}");
                self.check(false, pattern.span(), message);
                None
            }
        }
    }

    fn glob(&mut self, pattern: &Spanned<String>, key: &str) -> Option<glob::Pattern> {
        match glob::Pattern::new(pattern.get_ref()) {
            Ok(glob) => Some(glob),
            Err(error) => {
                self.check(false, pattern.span(), format!("{key}: invalid glob: {error}"));
                None
            }
        }
    }

    fn log_source(&mut self, log: &LogSource, raw: &AgentConfig) -> Option<ValidLogSource> {
        let before = self.problems.len();
        let path = log.path.get_ref();
        self.check(
            path.starts_with('/'),
            log.path.span(),
            format!("path {path:?} is not absolute"),
        );
        if self.glob(&log.path, "path").is_some() && self.access == AccessCheck::Files {
            self.readable(&log.path);
        }
        let exclude = log.exclude.iter().filter_map(|e| self.glob(e, "exclude")).collect();
        let group = log.group.get_ref();
        let group_ok = !group.is_empty()
            && group.len() <= 512
            && group.chars().all(|c| c.is_ascii_alphanumeric() || "._-/#".contains(c));
        self.check(
            group_ok,
            log.group.span(),
            format!("group {group:?} is not a CloudWatch Logs group name (1-512 of A-Z a-z 0-9 . _ - / #)"),
        );
        self.stream_template(&log.stream);
        let multiline_start =
            log.multiline_start.as_ref().and_then(|r| self.regex(r, "multiline_start"));
        let timestamp = self.timestamp(log);
        if let Some(days) = &log.retention_days {
            self.check(
                RETENTION_DAYS.contains(days.get_ref()),
                days.span(),
                format!("retention_days {} is not one of {RETENTION_DAYS:?}", days.get_ref()),
            );
        }
        let max_event_bytes = *log.max_event_bytes.get_ref();
        self.check(
            (MIN_EVENT_BYTES..=MAX_EVENT_BYTES_LIMIT).contains(&max_event_bytes),
            log.max_event_bytes.span(),
            format!("max_event_bytes must be between {MIN_EVENT_BYTES} and {MAX_EVENT_BYTES_LIMIT} (CloudWatch's limit)"),
        );
        let budget = *raw.max_buffer_bytes.get_ref();
        self.check(
            budget >= 4 * max_event_bytes as u64,
            raw.max_buffer_bytes.span(),
            format!("max_buffer_bytes {budget} must hold at least 4 events of max_event_bytes ({max_event_bytes})"),
        );
        (self.problems.len() == before).then(|| ValidLogSource {
            path: path.clone(),
            exclude,
            follow_symlinks: log.follow_symlinks,
            group: group.clone(),
            stream: log.stream.get_ref().clone(),
            start_at: log.start_at,
            multiline_start,
            multiline_timeout: log.multiline_timeout,
            partial_line_timeout: log.partial_line_timeout,
            timestamp,
            retention_days: log.retention_days.as_ref().map(|d| *d.get_ref()),
            max_event_bytes,
        })
    }

    /// Every file the glob matches can be opened by this user.
    fn readable(&mut self, pattern: &Spanned<String>) {
        let Ok(paths) = glob::glob(pattern.get_ref()) else { return };
        for entry in paths {
            let problem = match entry {
                Ok(path) => match can_read(&path) {
                    Ok(()) => continue,
                    Err(error) => format!("cannot read {}: {error}", path.display()),
                },
                Err(error) => format!("cannot read {}: {}", error.path().display(), error.error()),
            };
            self.check(false, pattern.span(), problem);
        }
    }

    fn metrics(&mut self, metrics: &MetricsConfig) -> Option<ValidMetrics> {
        let measurements = metrics.measurements.get_ref();
        let all = measurements.iter().any(|m| m == "all");
        for name in measurements.iter().filter(|m| *m != "all") {
            self.check(
                ALL_MEASUREMENTS.contains(&name.as_str()),
                metrics.measurements.span(),
                format!("measurements: unknown metric {name:?}"),
            );
        }
        for name in metrics.append_dimensions.get_ref() {
            self.check(
                APPENDABLE_DIMENSIONS.contains(&name.as_str()),
                metrics.append_dimensions.span(),
                format!("append_dimensions: {name:?} is not one of {APPENDABLE_DIMENSIONS:?}"),
            );
        }
        let sample_ok = metrics.sample_interval >= Duration::from_secs(1)
            && metrics.flush_interval >= metrics.sample_interval;
        self.check(
            sample_ok,
            0..0,
            "[metrics] sample_interval must be at least 1s and flush_interval at least sample_interval",
        );
        let chosen: Vec<String> = if all {
            ALL_MEASUREMENTS.iter().map(|m| (*m).to_owned()).collect()
        } else {
            measurements.clone()
        };
        metrics.enabled.then(|| ValidMetrics {
            plan: MetricsPlan {
                namespace: metrics.namespace.clone(),
                sample_interval: metrics.sample_interval,
                flush_interval: metrics.flush_interval,
                options: SampleOptions {
                    per_core: metrics.per_core,
                    ignore_file_system_types: metrics.ignore_file_system_types.clone(),
                    processes: metrics.processes.clone(),
                },
                measurements: chosen,
                aggregations: metrics.aggregation_dimensions.get_ref().clone(),
                spool_max_age: metrics.spool_max_age,
            },
            append_dimensions: metrics.append_dimensions.get_ref().clone(),
            max_custom_metrics: metrics.max_custom_metrics,
        })
    }

    fn stream_template(&mut self, stream: &Spanned<String>) {
        let mut rest = stream.get_ref().as_str();
        let mut literal = String::new();
        while let Some(open) = rest.find('{') {
            literal.push_str(&rest[..open]);
            let Some(close) = rest[open..].find('}') else {
                self.check(false, stream.span(), "stream: `{` without `}`");
                return;
            };
            let name = &rest[open + 1..open + close];
            self.check(
                ["instance_id", "hostname", "file"].contains(&name),
                stream.span(),
                format!("stream: unknown placeholder {{{name}}}; use {{instance_id}}, {{hostname}} or {{file}}"),
            );
            rest = &rest[open + close + 1..];
        }
        literal.push_str(rest);
        self.check(
            !literal.contains([':', '*']),
            stream.span(),
            "stream: CloudWatch Logs stream names cannot contain ':' or '*'",
        );
    }

    fn timestamp(&mut self, log: &LogSource) -> Option<TimestampParser> {
        match (&log.timestamp_regex, &log.timestamp_format) {
            (None, None) => None,
            (Some(regex), Some(format)) => {
                let regex = self.regex(regex, "timestamp_regex")?;
                Some(TimestampParser { regex, format: format.get_ref().clone() })
            }
            (Some(only), None) | (None, Some(only)) => {
                self.check(false, only.span(), "timestamp_regex and timestamp_format go together");
                None
            }
        }
    }
}

/// Opens `path` and reads a byte, as the agent will.
/// Whether this user can read `path` as a log file. Anything but a regular file is
/// reported without being opened: opening a FIFO waits for a writer, reading a device
/// may never end, and the agent ships regular files only.
fn can_read(path: &Path) -> std::io::Result<()> {
    use std::io::Read;
    use std::os::unix::fs::FileTypeExt;
    let kind = std::fs::metadata(path)?.file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_block_device() || kind.is_char_device() {
            "a device"
        } else if kind.is_dir() {
            "a folder"
        } else {
            "not a file"
        };
        let message = format!("it is {what}, not a regular file; the agent skips it");
        return Err(std::io::Error::other(message));
    }
    std::fs::File::open(path)?.read(&mut [0u8; 1]).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(source: &str) -> Vec<String> {
        match ValidConfig::parse(Path::new("agent.toml"), source) {
            Ok(_) => Vec::new(),
            Err(Problems(problems)) => problems.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn the_design_example_is_valid_with_defaults_filled_in() {
        let source = r#"
state_dir = "/var/lib/klaxon-agent"
instance_id = "i-0abc"

[metrics]
namespace = "Klaxon"
sample_interval = "10s"
flush_interval = "60s"

[[logs]]
path = "/var/log/nginx/access.log"
group = "/web/nginx/access"
stream = "{instance_id}"
"#;
        let config = ValidConfig::parse(Path::new("agent.toml"), source).expect("valid");
        assert_eq!(config.instance_id.as_deref(), Some("i-0abc"));
        let metrics = config.metrics.expect("metrics on by default");
        assert_eq!(metrics.plan.flush_interval, Duration::from_secs(60));
        assert_eq!(metrics.max_custom_metrics, 200);
        let log = &config.logs[0];
        assert_eq!(log.max_event_bytes, DEFAULT_MAX_EVENT_BYTES);
        assert_eq!(log.start_at, StartAt::Beginning);
        assert_eq!(log.multiline_timeout, Duration::from_secs(1));
    }

    #[test]
    fn unknown_keys_and_bad_durations_are_located() {
        assert_eq!(
            problems("[[logs]]\npath = \"/a\"\ngroup = \"g\"\ncolour = 1\n"),
            [
                "agent.toml:4:1: unknown field `colour`, expected one of `path`, `exclude`, `follow_symlinks`, `group`, `stream`, `start_at`, `multiline_start`, `multiline_timeout`, `partial_line_timeout`, `timestamp_regex`, `timestamp_format`, `retention_days`, `max_event_bytes`"
            ]
        );
        let bad = problems("[metrics]\nflush_interval = \"soon\"\n");
        assert_eq!(bad.len(), 1);
        assert!(bad[0].starts_with("agent.toml:2:18: invalid duration \"soon\""), "{bad:?}");
    }

    #[test]
    fn the_access_check_names_each_unreadable_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("ok.log"), "x").expect("write");
        std::fs::create_dir(dir.path().join("locked.log"))
            .expect("a folder cannot be read as a file");
        let source =
            format!("[[logs]]\npath = \"{}/*.log\"\ngroup = \"g\"\n", dir.path().display());
        let file = Path::new("agent.toml");
        assert!(ValidConfig::parse_with(file, &source, AccessCheck::None).is_ok());
        let Err(Problems(found)) = ValidConfig::parse_with(file, &source, AccessCheck::Files)
        else {
            panic!("the folder matched by the glob cannot be read as a log file");
        };
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].line, found[0].column), (2, 8));
        assert!(found[0].message.contains("locked.log"), "{}", found[0].message);
        assert!(found[0].message.contains("a folder"), "{}", found[0].message);
    }

    #[test]
    fn every_semantic_problem_is_reported_at_once() {
        let source = r#"
[[logs]]
path = "relative/*.log"
group = "bad group"
stream = "{pod}"
multiline_start = "(unclosed"
retention_days = 2

[[logs]]
path = "/var/log/x.log"
group = "/ok"
timestamp_format = "%Y"
max_event_bytes = 2000000
"#;
        let found = problems(source);
        let expected_prefixes = [
            "agent.toml:3:8: path \"relative/*.log\" is not absolute",
            "agent.toml:4:9: group \"bad group\"",
            "agent.toml:5:10: stream: unknown placeholder {pod}",
            "agent.toml:6:19: multiline_start: invalid regex",
            "agent.toml:7:18: retention_days 2 is not one of",
            "agent.toml:12:20: timestamp_regex and timestamp_format go together",
            "agent.toml:13:19: max_event_bytes must be between 256 and 1048550",
        ];
        assert_eq!(found.len(), expected_prefixes.len(), "{found:#?}");
        for (got, prefix) in found.iter().zip(expected_prefixes) {
            assert!(got.starts_with(prefix), "{got:?} should start with {prefix:?}");
        }
    }
}
