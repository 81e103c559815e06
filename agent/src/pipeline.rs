//! The log pipeline wired together: the watcher and the file server on their own
//! threads, one shipper task per stream, the memory budget and the checkpoints between
//! them; and the orderly stop (ship what was read within a grace period, save, exit).

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::budget::ByteBudget;
use crate::config::ValidConfig;
use crate::destination::Destination;
use crate::ship::manifest::Manifests;
use crate::ship::shipper::{ShipperContext, run_shipper, ship_waiting_manifests};
use crate::ship::sink::LogSink;
use crate::stats::AgentStats;
use crate::tail::checkpoint::Checkpoints;
use crate::tail::outlet::{Outlet, ShipItem, Stopping};
use crate::tail::server::{FileServer, ServerSettings};

/// How long a stop may take to ship what was already read.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long the reader waits for budget before it checks whether to stop.
const BUDGET_WAIT: Duration = Duration::from_millis(200);

/// Who the host is, for stream names.
pub struct HostNames {
    pub instance_id: String,
    pub hostname: String,
}

/// Held by a part of the pipeline (the file server, a shipper) for as long as it runs:
/// dropped before the pipeline was told to stop (the part returned, or panicked and
/// unwound), it says so, and the agent stops with an error for systemd to restart it,
/// instead of answering the watchdog with a part missing.
pub(crate) struct Lifeline {
    part: String,
    stop: Arc<AtomicBool>,
    ended: mpsc::UnboundedSender<String>,
}

impl Lifeline {
    fn new(part: String, stop: &Arc<AtomicBool>, ended: &mpsc::UnboundedSender<String>) -> Self {
        Lifeline { part, stop: Arc::clone(stop), ended: ended.clone() }
    }
}

impl Drop for Lifeline {
    fn drop(&mut self) {
        if !self.stop.load(Ordering::Relaxed) {
            let _ = self.ended.send(std::mem::take(&mut self.part));
        }
    }
}

/// Hands the file server's items to per-stream shippers, starting them on first use.
pub(crate) struct ChannelOutlet<S: LogSink> {
    shippers: HashMap<Arc<Destination>, mpsc::UnboundedSender<ShipItem>>,
    runtime: tokio::runtime::Handle,
    sink: Arc<S>,
    context: ShipperContext,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    stop: Arc<AtomicBool>,
    /// Where a shipper that ends early says so.
    ended: mpsc::UnboundedSender<String>,
}

impl<S: LogSink> ChannelOutlet<S> {
    /// An outlet whose shippers run on `runtime`; `stop` ends a wait for budget, and a
    /// shipper that ends before it sends its stream's name on `ended`. The shippers'
    /// tasks (and that shipping the manifest records an earlier run left) are listed in
    /// what it returns besides itself.
    pub(crate) fn new(
        runtime: tokio::runtime::Handle,
        sink: Arc<S>,
        context: ShipperContext,
        stop: Arc<AtomicBool>,
        ended: mpsc::UnboundedSender<String>,
    ) -> (Self, Arc<Mutex<Vec<JoinHandle<()>>>>) {
        // Records an earlier run left unshipped go out even if their streams stay quiet.
        let waiting = runtime.spawn(ship_waiting_manifests(Arc::clone(&sink), context.clone()));
        let tasks = Arc::new(Mutex::new(vec![waiting]));
        let outlet = ChannelOutlet {
            shippers: HashMap::new(),
            runtime,
            sink,
            context,
            tasks: Arc::clone(&tasks),
            stop,
            ended,
        };
        (outlet, tasks)
    }
}

impl<S: LogSink> Outlet for ChannelOutlet<S> {
    fn deliver(&mut self, destination: &Arc<Destination>, item: ShipItem) -> Result<(), Stopping> {
        let bytes = item.reserved_bytes();
        while !self.context.budget.acquire(bytes, BUDGET_WAIT) {
            if self.stop.load(Ordering::Relaxed) {
                return Err(Stopping);
            }
        }
        let sender = self.shippers.entry(Arc::clone(destination)).or_insert_with(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            let task = run_shipper(
                (**destination).clone(),
                receiver,
                Arc::clone(&self.sink),
                self.context.clone(),
            );
            let part = format!("the shipper of {}/{}", destination.group, destination.stream);
            let lifeline = Lifeline::new(part, &self.stop, &self.ended);
            let handle = self.runtime.spawn(async move {
                let _lifeline = lifeline;
                task.await;
            });
            self.tasks.lock().unwrap_or_else(PoisonError::into_inner).push(handle);
            sender
        });
        sender.send(item).map_err(|_| Stopping)
    }
}

/// What the file server of `config` needs.
pub(crate) fn server_settings(config: &ValidConfig, names: HostNames) -> ServerSettings {
    ServerSettings {
        sources: config.logs.clone(),
        instance_id: names.instance_id,
        hostname: names.hostname,
        max_open_files: config.max_open_files,
        max_buffer_bytes: config.max_buffer_bytes,
        scratch_dir: config.state_dir.join("rotated"),
    }
}

/// Runs the log pipeline until `shutdown` completes, then stops in order.
pub async fn run_logs<S: LogSink>(
    config: &ValidConfig,
    names: HostNames,
    sink: S,
    stats: Arc<AgentStats>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    std::fs::create_dir_all(&config.state_dir)?;
    let checkpoints = Arc::new(Mutex::new(Checkpoints::load(&config.state_dir)?));
    let budget = Arc::new(ByteBudget::new(config.max_buffer_bytes));
    let stop = Arc::new(AtomicBool::new(false));
    let context = ShipperContext {
        checkpoints: Arc::clone(&checkpoints),
        manifests: Arc::new(Mutex::new(Manifests::load(&config.state_dir)?)),
        budget,
        stats: Arc::clone(&stats),
    };
    let runtime = tokio::runtime::Handle::current();
    let (ended, mut part_ended) = mpsc::unbounded_channel();
    let sink = Arc::new(sink);
    let (outlet, tasks) =
        ChannelOutlet::new(runtime, sink, context, Arc::clone(&stop), ended.clone());
    let settings = server_settings(config, names);
    let rescan = Arc::new(AtomicBool::new(true));
    let (wake, woken) = std::sync::mpsc::sync_channel(1);
    let _watcher = watch_folders(config, Arc::clone(&rescan), wake.clone());
    let server_stop = Arc::clone(&stop);
    let lifeline = Lifeline::new("the file server".into(), &stop, &ended);
    drop(ended);
    let server = std::thread::Builder::new().name("klaxon-files".into()).spawn(move || {
        let _lifeline = lifeline;
        let mut server = FileServer::new(settings, checkpoints, outlet, stats);
        server.run(&server_stop, &rescan, &woken);
    })?;

    let ended = tokio::select! {
        () = shutdown => None,
        Some(part) = part_ended.recv() => Some(part),
    };
    match &ended {
        None => info!(message = "Stopping: shipping what was read.", grace = ?SHUTDOWN_GRACE),
        Some(part) => {
            error!(message = "A part of the log pipeline ended; stopping, to be restarted.", part = %part)
        }
    }
    stop.store(true, Ordering::Relaxed);
    // The server may be waiting for a change: it sees the stop at once, not a poll later.
    let _ = wake.try_send(());
    let _ = tokio::task::spawn_blocking(move || server.join()).await;
    let shippers: Vec<JoinHandle<()>> =
        std::mem::take(&mut *tasks.lock().unwrap_or_else(PoisonError::into_inner));
    let aborts: Vec<_> = shippers.iter().map(JoinHandle::abort_handle).collect();
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, join_all(shippers)).await;
    if drained.is_err() {
        warn!(
            message =
                "Grace period over; what was not acknowledged is shipped after the next start."
        );
        aborts.iter().for_each(tokio::task::AbortHandle::abort);
    }
    match ended {
        None => Ok(()),
        Some(part) => Err(std::io::Error::other(format!("{part} ended unexpectedly"))),
    }
}

async fn join_all(handles: Vec<JoinHandle<()>>) {
    for handle in handles {
        let _ = handle.await;
    }
}

/// Watches the folders of every glob; a new, moved or removed file asks for a rescan,
/// any change wakes the file server. None when inotify is unavailable: the poll remains.
fn watch_folders(
    config: &ValidConfig,
    rescan: Arc<AtomicBool>,
    wake: SyncSender<()>,
) -> Option<notify::RecommendedWatcher> {
    let handler = move |event: notify::Result<notify::Event>| {
        let structural = match &event {
            Ok(event) => {
                event.need_rescan()
                    || !matches!(
                        event.kind,
                        notify::EventKind::Modify(notify::event::ModifyKind::Data(_))
                    )
            }
            Err(_) => true,
        };
        if structural {
            rescan.store(true, Ordering::Relaxed);
        }
        match wake.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(watcher) => watcher,
        Err(error) => {
            warn!(message = "inotify unavailable; polling only.", %error);
            return None;
        }
    };
    for source in &config.logs {
        let (folder, recursive) = watch_root(Path::new(&source.path));
        let mode = if recursive { RecursiveMode::Recursive } else { RecursiveMode::NonRecursive };
        if let Err(error) = watcher.watch(&folder, mode) {
            warn!(message = "Cannot watch a folder; polling it.", folder = %folder.display(), %error);
        }
    }
    Some(watcher)
}

/// The folder to watch for a glob: the deepest folder without glob characters, and
/// whether files below it in subfolders can match.
fn watch_root(pattern: &Path) -> (PathBuf, bool) {
    let is_glob = |part: &str| part.contains(['*', '?', '[']);
    let mut root = PathBuf::new();
    let components: Vec<Component<'_>> = pattern.components().collect();
    for (index, component) in components.iter().enumerate() {
        let text = component.as_os_str().to_string_lossy();
        let last = index + 1 == components.len();
        if last || is_glob(&text) {
            return (root, !last);
        }
        root.push(component);
    }
    (root, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ship::fake::{FakeLogs, Fault};
    use klaxon_common::manifest_record::MANIFEST_SUFFIX;
    use std::io::Write;

    fn lines(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|n| format!("GET /item/{n} HTTP/1.1 200")).collect()
    }

    fn append(path: &Path, lines: &[String]) {
        let mut file =
            std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open");
        for line in lines {
            writeln!(file, "{line}").expect("write");
        }
    }

    /// The messages in first-arrival order, and how many arrived more than once.
    fn first_arrivals(messages: Vec<String>) -> (Vec<String>, usize) {
        let mut seen = std::collections::HashSet::new();
        let total = messages.len();
        let unique: Vec<String> = messages.into_iter().filter(|m| seen.insert(m.clone())).collect();
        let duplicates = total - unique.len();
        (unique, duplicates)
    }

    /// The file server, the shippers and the checkpoints against the fake sink on the
    /// paused clock: every fault the sink can answer with but a refusal delays lines,
    /// none loses or reorders one; only a lost acknowledgement sends one batch twice.
    #[tokio::test(start_paused = true)]
    async fn every_line_arrives_in_order_through_every_passing_fault() {
        let dir = tempfile::tempdir().expect("dir");
        let log = dir.path().join("app.log");
        let config_path = dir.path().join("agent.toml");
        let state = dir.path().join("state");
        let toml = format!(
            "state_dir = {state:?}\ninstance_id = \"i-0test\"\n[metrics]\nenabled = false\n[[logs]]\npath = {log:?}\ngroup = \"app\"\n"
        );
        std::fs::write(&config_path, toml).expect("config");
        let config = ValidConfig::load(&config_path).expect("valid config");
        let faults = [
            Fault::Throttle,
            Fault::ServerError,
            Fault::Timeout,
            Fault::AckLost,
            Fault::AccessDenied,
            Fault::ExpiredToken,
            Fault::ClockSkew,
        ];
        let fake = FakeLogs::failing_with(&faults);
        let expected = lines(0..300);
        append(&log, &expected[..200]);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let names = HostNames { instance_id: "i-0test".into(), hostname: "web-1".into() };
        let stats = Arc::new(AgentStats::default());
        let pipeline = run_logs(&config, names, fake.clone(), Arc::clone(&stats), async {
            let _ = stopped.await;
        });
        let driver = async {
            let arrived = |count: usize| {
                move |fake: &FakeLogs| {
                    first_arrivals(fake.messages("app", MANIFEST_SUFFIX)).0.len() >= count
                }
            };
            fake.wait_until(arrived(200)).await;
            append(&log, &expected[200..]);
            fake.wait_until(arrived(300)).await;
            let _ = stop.send(());
        };
        let started = std::time::Instant::now();
        let (result, ()) = tokio::join!(pipeline, driver);
        result.expect("pipeline");
        assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());

        let (arrived, duplicates) = first_arrivals(fake.messages("app", MANIFEST_SUFFIX));
        assert_eq!(arrived, expected);
        assert!(duplicates <= 200, "{duplicates} duplicates: more than the one lost batch");
        assert!(fake.calls() > faults.len());
        assert!(stats.retries.get() >= faults.len() as u64);
        let checkpoints = Checkpoints::load(&state).expect("checkpoints");
        let checkpoint = checkpoints.iter().next().expect("a checkpoint");
        assert_eq!(checkpoint.position.offset, std::fs::metadata(&log).expect("log").len());
    }

    /// A symbolic link the globs match is followed only when the globs match its target
    /// too (a link to any other file, planted or by mistake, would ship a file nobody
    /// chose), unless its source says `follow_symlinks = "always"`.
    #[tokio::test(start_paused = true)]
    async fn a_link_to_a_file_outside_the_globs_is_not_shipped() {
        let dir = tempfile::tempdir().expect("dir");
        let folder = |name: &str| {
            let path = dir.path().join(name);
            std::fs::create_dir(&path).expect("folder");
            path
        };
        let (logs, secrets, containers, pods) =
            (folder("logs"), folder("secrets"), folder("containers"), folder("pods"));
        std::fs::write(secrets.join("key.txt"), "SECRET KEY\n").expect("secret");
        append(&logs.join("app.log"), &lines(0..1));
        std::os::unix::fs::symlink("app.log", logs.join("current.log")).expect("link");
        std::os::unix::fs::symlink("../secrets/key.txt", logs.join("leak.log")).expect("link");
        append(&pods.join("web-0.log"), &["pod line".to_owned()]);
        std::os::unix::fs::symlink("../pods/web-0.log", containers.join("web.log")).expect("link");
        let config_path = dir.path().join("agent.toml");
        let state = dir.path().join("state");
        let toml = format!(
            "state_dir = {state:?}\ninstance_id = \"i-0test\"\n[metrics]\nenabled = false\n[[logs]]\npath = \"{}/*.log\"\ngroup = \"app\"\n[[logs]]\npath = \"{}/*.log\"\ngroup = \"k8s\"\nfollow_symlinks = \"always\"\n",
            logs.display(),
            containers.display()
        );
        std::fs::write(&config_path, toml).expect("config");
        let config = ValidConfig::load(&config_path).expect("valid config");
        let fake = FakeLogs::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let names = HostNames { instance_id: "i-0test".into(), hostname: "web-1".into() };
        let stats = Arc::new(AgentStats::default());
        let pipeline = run_logs(&config, names, fake.clone(), stats, async {
            let _ = stopped.await;
        });
        let driver = async {
            let count = |group: &'static str, count: usize| {
                move |fake: &FakeLogs| fake.messages(group, MANIFEST_SUFFIX).len() >= count
            };
            fake.wait_until(count("app", 1)).await;
            fake.wait_until(count("k8s", 1)).await;
            // A later turn of the file server: the refused link had its chance.
            append(&logs.join("app.log"), &lines(1..2));
            fake.wait_until(count("app", 2)).await;
            let _ = stop.send(());
        };
        let (result, ()) = tokio::join!(pipeline, driver);
        result.expect("pipeline");
        assert_eq!(first_arrivals(fake.messages("app", MANIFEST_SUFFIX)).0, lines(0..2));
        assert_eq!(fake.messages("k8s", MANIFEST_SUFFIX), ["pod line"]);
    }

    /// A sink whose every call panics, as a bug in a shipper would.
    struct PanickingSink;

    impl LogSink for PanickingSink {
        async fn put(
            &self,
            _destination: &Destination,
            _events: &[crate::ship::batch::OutEvent],
        ) -> Result<crate::ship::sink::Rejected, crate::ship::sink::PutError> {
            panic!("injected: a shipper's bug");
        }
    }

    /// A part that dies ends the pipeline with an error naming it (and so the agent,
    /// for systemd to restart), instead of leaving the agent up without it.
    #[tokio::test]
    async fn a_shipper_that_panics_ends_the_pipeline_with_an_error() {
        let dir = tempfile::tempdir().expect("dir");
        let log = dir.path().join("app.log");
        append(&log, &lines(0..10));
        let config_path = dir.path().join("agent.toml");
        let toml = format!(
            "state_dir = {:?}\ninstance_id = \"i-0test\"\n[metrics]\nenabled = false\n[[logs]]\npath = {log:?}\ngroup = \"app\"\n",
            dir.path().join("state")
        );
        std::fs::write(&config_path, toml).expect("config");
        let config = ValidConfig::load(&config_path).expect("valid config");
        let names = HostNames { instance_id: "i-0test".into(), hostname: "web-1".into() };
        let stats = Arc::new(AgentStats::default());
        let never = std::future::pending::<()>();
        let pipeline = run_logs(&config, names, PanickingSink, stats, never);
        let ended = tokio::time::timeout(Duration::from_secs(30), pipeline)
            .await
            .expect("the pipeline ends within 30 s");
        let error = ended.expect_err("an error");
        assert!(error.to_string().contains("the shipper of app/i-0test"), "{error}");
    }

    #[test]
    fn the_watched_folder_is_the_deepest_one_without_globs() {
        assert_eq!(
            watch_root(Path::new("/var/log/nginx/access.log")),
            (PathBuf::from("/var/log/nginx"), false)
        );
        assert_eq!(
            watch_root(Path::new("/var/log/app/*.log")),
            (PathBuf::from("/var/log/app"), false)
        );
        assert_eq!(watch_root(Path::new("/var/log/*/app.log")), (PathBuf::from("/var/log"), true));
    }
}
