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
use tracing::{info, warn};

use crate::budget::ByteBudget;
use crate::config::ValidConfig;
use crate::ship::manifest::Manifests;
use crate::ship::shipper::{ShipItem, ShipperContext, run_shipper};
use crate::ship::sink::{Destination, LogSink};
use crate::stats::AgentStats;
use crate::tail::checkpoint::Checkpoints;
use crate::tail::server::{FileServer, Outlet, ServerSettings, Stopping};

/// How long a stop may take to ship what was already read.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long the reader waits for budget before it checks whether to stop.
const BUDGET_WAIT: Duration = Duration::from_millis(200);

/// Who the host is, for stream names.
pub struct HostNames {
    pub instance_id: String,
    pub hostname: String,
}

/// Hands the file server's items to per-stream shippers, starting them on first use.
struct ChannelOutlet<S: LogSink> {
    shippers: HashMap<Arc<Destination>, mpsc::UnboundedSender<ShipItem>>,
    runtime: tokio::runtime::Handle,
    sink: Arc<S>,
    context: ShipperContext,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    stop: Arc<AtomicBool>,
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
            let handle = self.runtime.spawn(task);
            self.tasks.lock().unwrap_or_else(PoisonError::into_inner).push(handle);
            sender
        });
        sender.send(item).map_err(|_| Stopping)
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
    let tasks = Arc::new(Mutex::new(Vec::new()));
    let outlet = ChannelOutlet {
        shippers: HashMap::new(),
        runtime: tokio::runtime::Handle::current(),
        sink: Arc::new(sink),
        context: ShipperContext {
            checkpoints: Arc::clone(&checkpoints),
            manifests: Arc::new(Mutex::new(Manifests::load(&config.state_dir)?)),
            budget,
            stats: Arc::clone(&stats),
        },
        tasks: Arc::clone(&tasks),
        stop: Arc::clone(&stop),
    };
    let settings = ServerSettings {
        sources: config.logs.clone(),
        instance_id: names.instance_id,
        hostname: names.hostname,
        max_open_files: config.max_open_files,
        max_buffer_bytes: config.max_buffer_bytes,
    };
    let rescan = Arc::new(AtomicBool::new(true));
    let (wake, woken) = std::sync::mpsc::sync_channel(1);
    let _watcher = watch_folders(config, Arc::clone(&rescan), wake);
    let server_stop = Arc::clone(&stop);
    let server = std::thread::Builder::new().name("klaxon-files".into()).spawn(move || {
        let mut server = FileServer::new(settings, checkpoints, outlet, stats);
        server.run(&server_stop, &rescan, &woken);
    })?;

    shutdown.await;
    info!(message = "Stopping: shipping what was read.", grace = ?SHUTDOWN_GRACE);
    stop.store(true, Ordering::Relaxed);
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
    Ok(())
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
