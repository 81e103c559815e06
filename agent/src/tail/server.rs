//! The file server: one thread that finds the files the `[[logs]]` globs match, follows
//! each through rotation (rename, copytruncate, deletion, symlink flips, inode reuse),
//! and hands their events on, file by file, round-robin.
//!
//! One thread and positional reads, like Vector's file server: fair across thousands of
//! files, no per-file task or lock, and a simple cap on open files. inotify (notify)
//! wakes it within milliseconds; a slow poll is the safety net when events are lost.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tracing::{debug, info, warn};

use super::checkpoint::{Checkpoint, Checkpoints};
use super::identity::{FileKey, Fingerprint};
use super::outlet::{FileRef, Outlet, ShipItem, Stopping};
use super::reader::{Framing, LineReader, Position, TailEvent};
use super::siblings::{self, Found, Match};
use super::timestamp::EventClock;
use crate::config::{FollowSymlinks, StartAt, ValidLogSource};
use crate::destination::Destination;
use crate::stats::AgentStats;
use crate::warn_limit::WarnLimiter;

/// How long a file waits between checks when inotify says nothing.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How often the globs are expanded again when inotify says nothing.
const RESCAN_INTERVAL: Duration = Duration::from_secs(10);
/// A rotated-away or deleted file is read this long after it stopped growing, for
/// writers that still append to the old file before they reopen.
const ORPHAN_GRACE: Duration = Duration::from_secs(2);
/// Bytes read from one file before the server turns to the next (at most a quarter of
/// the memory budget, so one file's events never hold all of it).
const READ_BUDGET_BYTES: usize = 1024 * 1024;

/// What the server needs besides its outlet.
pub struct ServerSettings {
    pub sources: Vec<ValidLogSource>,
    pub instance_id: String,
    pub hostname: String,
    pub max_open_files: usize,
    /// The memory budget of the pipeline, in bytes.
    pub max_buffer_bytes: u64,
    /// Where compressed rotated files are decompressed (into unlinked files) to be read.
    pub scratch_dir: PathBuf,
}

/// A file being followed.
struct Tracked {
    destination: Arc<Destination>,
    file: Arc<FileRef>,
    handle: Option<File>,
    reader: LineReader,
    clock: EventClock,
    /// When the file stopped being at a path the globs match.
    orphaned_since: Option<Instant>,
    /// Its modification time when first followed: of two rotated files of one stream, the
    /// older is read to its end first.
    order: SystemTime,
    /// Size and modification time at the last stat, and when it last grew.
    last_size: u64,
    last_modified: Option<SystemTime>,
    /// The last bytes read (up to [`READ_TAIL_BYTES`]), to tell appended from replaced.
    read_tail: Vec<u8>,
    /// Copies of it (copytruncate) read already.
    copies_read: Vec<FileKey>,
    last_growth: Instant,
    last_used: Instant,
}

/// Follows every matched file until told to stop.
pub struct FileServer<O: Outlet> {
    settings: ServerSettings,
    framings: Vec<Framing>,
    files: BTreeMap<FileKey, Tracked>,
    destinations: HashMap<(String, String), Arc<Destination>>,
    checkpoints: Arc<Mutex<Checkpoints>>,
    /// Files finished with (gone, read to their end), and their last content, whose
    /// checkpoints may still be waiting to go.
    finished: HashMap<FileKey, u64>,
    /// When the checkpoints were last saved before this start: files changed since were
    /// written while the agent was down.
    checkpoints_saved_at: SystemTime,
    outlet: O,
    stats: Arc<AgentStats>,
    scratch: Vec<u8>,
    first_scan: bool,
    last_scan: Option<Instant>,
    warnings: WarnLimiter,
}

impl<O: Outlet> FileServer<O> {
    pub fn new(
        settings: ServerSettings,
        checkpoints: Arc<Mutex<Checkpoints>>,
        outlet: O,
        stats: Arc<AgentStats>,
    ) -> Self {
        let framings = settings
            .sources
            .iter()
            .map(|source| Framing {
                max_event_bytes: source.max_event_bytes,
                multiline_start: source.multiline_start.clone(),
                multiline_timeout: source.multiline_timeout,
                partial_line_timeout: source.partial_line_timeout,
            })
            .collect();
        let checkpoints_saved_at = checkpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .saved_at()
            .unwrap_or(SystemTime::UNIX_EPOCH);
        FileServer {
            settings,
            checkpoints_saved_at,
            framings,
            files: BTreeMap::new(),
            destinations: HashMap::new(),
            checkpoints,
            finished: HashMap::new(),
            outlet,
            stats,
            scratch: Vec::new(),
            first_scan: true,
            last_scan: None,
            warnings: WarnLimiter::default(),
        }
    }

    /// Runs until `stop` is set. `rescan` is set (and `wake` signalled) by the watcher
    /// when files appear or move; `wake` alone when files grow.
    pub fn run(&mut self, stop: &AtomicBool, rescan: &AtomicBool, wake: &Receiver<()>) {
        while !stop.load(Ordering::Relaxed) {
            let busy = match self.turn(Instant::now(), rescan.swap(false, Ordering::Relaxed)) {
                Ok(busy) => busy,
                Err(Stopping) => return,
            };
            if !busy {
                match wake.recv_timeout(POLL_INTERVAL) {
                    Ok(()) | Err(RecvTimeoutError::Timeout) => while wake.try_recv().is_ok() {},
                    Err(RecvTimeoutError::Disconnected) => std::thread::sleep(POLL_INTERVAL),
                }
            }
        }
    }

    /// One turn at `now`: the globs expanded again when asked (`rescan`) or due, then
    /// every file with something new read. True when some file has more right away.
    pub fn turn(&mut self, now: Instant, rescan: bool) -> Result<bool, Stopping> {
        let scan_due =
            self.last_scan.is_none_or(|last| now.duration_since(last) >= RESCAN_INTERVAL);
        if rescan || scan_due {
            self.discover(now);
        }
        let busy = self.service_all(now);
        // Fingerprints lengthened while reading are saved at once: they tell short files
        // apart after a restart.
        self.save_checkpoints();
        busy
    }

    /// Files followed now.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Files held open now.
    pub fn open_count(&self) -> usize {
        self.files.values().filter(|t| t.handle.is_some()).count()
    }

    // === discovery ===

    /// Expands the globs, starts following new files and notices files that moved away.
    pub fn discover(&mut self, now: Instant) {
        let mut matched = BTreeSet::new();
        for index in 0..self.settings.sources.len() {
            for path in self.expand(index) {
                let Ok(metadata) = fs::metadata(&path) else { continue };
                if !metadata.is_file() {
                    continue;
                }
                let key = FileKey::of(&metadata);
                matched.insert(key);
                match self.files.get_mut(&key) {
                    Some(tracked) => {
                        if tracked.file.path != path {
                            let moved = FileRef { path: path.clone(), ..(*tracked.file).clone() };
                            tracked.file = Arc::new(moved);
                        }
                        tracked.orphaned_since = None;
                    }
                    None => self.follow(index, &path, now),
                }
            }
        }
        if self.first_scan {
            self.resume_rotated_files(now, &matched);
        }
        for tracked in self.files.values_mut() {
            if tracked.orphaned_since.is_none() && !matched.contains(&tracked.file.key) {
                tracked.orphaned_since = Some(now);
                if let Some(path) = tracked.handle.as_ref().and_then(current_path) {
                    tracked.file = Arc::new(FileRef { path, ..(*tracked.file).clone() });
                }
                debug!(message = "File moved away; draining it.", path = %tracked.file.path.display());
            }
        }
        // A finished file whose checkpoint went is forgotten here too.
        let checkpoints = self.checkpoints.lock().unwrap_or_else(PoisonError::into_inner);
        self.finished.retain(|key, _| checkpoints.get(key).is_some());
        drop(checkpoints);
        self.first_scan = false;
        self.last_scan = Some(now);
        self.save_checkpoints();
    }

    fn expand(&mut self, index: usize) -> Vec<PathBuf> {
        let source = &self.settings.sources[index];
        let paths = match glob::glob(&source.path) {
            Ok(paths) => paths,
            Err(error) => {
                self.warnings.warn(
                    &source.path,
                    || warn!(message = "Invalid glob.", path = %source.path, %error),
                );
                return Vec::new();
            }
        };
        let mut found = Vec::new();
        for entry in paths {
            match entry {
                Ok(path) if !source.exclude.iter().any(|e| e.matches_path(&path)) => {
                    found.push(path)
                }
                Ok(_) => {}
                Err(error) => {
                    let path = error.path().display().to_string();
                    self.warnings.warn(&path, || warn!(message = "Cannot read a path the logs glob matches.", %path, error = %error.error()));
                }
            }
        }
        found.retain(|path| self.link_allowed(index, path));
        found
    }

    /// Whether `path`, matched by source `index`, may be followed: a plain file, or a
    /// symbolic link the source follows (`follow_symlinks`: by default, only one whose
    /// target some source matches too). A link refused is warned about, naming it.
    fn link_allowed(&mut self, index: usize, path: &Path) -> bool {
        let is_link = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        if !is_link || self.settings.sources[index].follow_symlinks == FollowSymlinks::Always {
            return true;
        }
        let target = link_target(path);
        let matched = target.as_deref().is_some_and(|target| {
            self.settings.sources.iter().any(|source| {
                glob::Pattern::new(&source.path).is_ok_and(|p| p.matches_path(target))
                    && !source.exclude.iter().any(|e| e.matches_path(target))
            })
        });
        if !matched {
            let shown = path.display().to_string();
            let target = target.map(|t| t.display().to_string()).unwrap_or_default();
            self.warnings.warn(&shown, || warn!(message = "A symbolic link the logs globs match points at a file they do not; not shipping it (follow_symlinks = \"always\" would).", path = %shown, %target));
        }
        matched
    }

    /// Starts following a newly found file: from its checkpoint, else from its start
    /// (or its end, for files already there at start-up with `start_at = "end"`).
    fn follow(&mut self, source_index: usize, path: &Path, now: Instant) {
        // Never one over the cap, not even for a moment: an idle file closes first.
        let at_cap = self.open_count() >= self.settings.max_open_files;
        if at_cap {
            self.close_idle_files_for(1);
        }
        let handle = match File::open(path) {
            Ok(handle) => handle,
            Err(error) => {
                let shown = path.display().to_string();
                self.warnings.warn(&shown, || warn!(message = "Cannot open a log file; skipping it.", path = %shown, %error));
                return;
            }
        };
        let (Ok(metadata), Ok(fingerprint)) = (handle.metadata(), Fingerprint::read(&handle))
        else {
            return;
        };
        let key = FileKey::of(&metadata);
        let mut checkpoint = self.checkpoint(&key);
        let mut epoch = checkpoint.as_ref().map_or(0, |checkpoint| checkpoint.epoch);
        // The inode of a file finished with, reused before its checkpoint went: a new
        // file, whose content the checkpoint learns at once.
        let reused = self.finished.remove(&key).filter(|done| {
            checkpoint.as_ref().is_some_and(|c| c.epoch <= *done && c.later.is_empty())
        });
        if let Some(done) = reused {
            checkpoint = None;
            epoch = done + 1;
        }
        let file = FileRef { key, fingerprint, path: path.to_owned(), epoch };
        if reused.is_some() {
            self.checkpoints.lock().unwrap_or_else(PoisonError::into_inner).begin_content(&file);
        }
        match checkpoint {
            Some(checkpoint) if checkpoint.holds_one_content(&handle) => {
                info!(message = "Following a file.", path = %path.display(), offset = checkpoint.position.offset, resumed = true);
                self.track(source_index, file, Some(handle), checkpoint.position, now, path);
                // Last looked at when the checkpoints were saved: a file not read yet
                // that changed since may have been written, copied and truncated
                // while the agent was down (see `service_file`).
                if let Some(tracked) = self.files.get_mut(&key) {
                    tracked.last_modified = Some(self.checkpoints_saved_at);
                }
            }
            Some(checkpoint) => {
                let file = FileRef { fingerprint: checkpoint.fingerprint, ..file };
                self.track(source_index, file, Some(handle), checkpoint.position, now, path);
                self.resume_replaced(&checkpoint, now);
            }
            None => {
                let source = &self.settings.sources[source_index];
                let start = match (self.first_scan, source.start_at) {
                    (true, StartAt::End) => Position::at(metadata.len()),
                    _ => Position::at(0),
                };
                info!(message = "Following a file.", path = %path.display(), offset = start.offset, resumed = false);
                self.track(source_index, file, Some(handle), start, now, path);
            }
        }
        if self.first_scan && self.files.contains_key(&key) {
            // Copies made (copytruncate) while the agent was down of what the file
            // held after its checkpoint, other than the one read above, are read first.
            let since = self.checkpoints_saved_at;
            for sibling in siblings::siblings(path) {
                self.adopt_unseen(source_index, &sibling, since, now, path);
            }
        }
        if at_cap && let Some(tracked) = self.files.get_mut(&key) {
            // Within max_open_files: it is opened again when its turn comes.
            tracked.handle = None;
        }
    }

    /// A checkpointed file, followed from its checkpoint, that holds more or other than
    /// its checkpoint's content (copied and truncated, truncated, or its inode reused
    /// while the agent did not watch it): see [`Self::resume_contents`].
    fn resume_replaced(&mut self, checkpoint: &Checkpoint, now: Instant) {
        let Some(mut tracked) = self.files.remove(&checkpoint.key) else { return };
        // Stopping: the checkpoint is as it was, and the next start does this again.
        let _ = self.resume_contents(&mut tracked, checkpoint, now);
        self.files.insert(checkpoint.key, tracked);
    }

    /// Reads what a checkpointed file held that is not acknowledged yet, content by
    /// content as its checkpoint lists them (the first from the checkpoint's position):
    /// each from its copy, or from the file itself for the last one when the file still
    /// starts with its first bytes, else from a copy found by them; what cannot be found
    /// is declared lost. A content of the file the checkpoint does not know is then read
    /// from its start. `tracked.handle` is the file, none when it is gone.
    fn resume_contents(
        &mut self,
        tracked: &mut Tracked,
        checkpoint: &Checkpoint,
        now: Instant,
    ) -> Result<(), Stopping> {
        let contents = checkpoint.contents();
        let last = contents.len() - 1;
        for (index, content) in contents.iter().enumerate() {
            if index > 0 {
                self.restart_into(tracked, content.epoch, content.fingerprint)?;
            }
            let file_holds_it =
                |handle: &File| content.fingerprint.matches(handle).unwrap_or(false);
            let in_file = index == last && tracked.handle.as_ref().is_some_and(file_holds_it);
            if in_file && content.copy.is_none() {
                return Ok(());
            }
            let scratch = &self.settings.scratch_dir;
            let found = match content.copy {
                Some(copy) => siblings::find(
                    &tracked.file.path,
                    copy,
                    content.fingerprint,
                    Match::Renamed,
                    scratch,
                ),
                // A copy by first bytes only of a file still there (first bytes alone
                // name too many files).
                None if index == last && tracked.handle.is_some() => self.copy_of(tracked, None),
                // Its inode now holds a later content: it may have been renamed and
                // compressed since (a rotated file, deleted and its inode reused).
                None => siblings::find(
                    &tracked.file.path,
                    tracked.file.key,
                    content.fingerprint,
                    Match::Renamed,
                    scratch,
                ),
            };
            let reason = match (content.copy, index == last, &tracked.handle) {
                (Some(_), _, _) => {
                    "copied before a truncation (copytruncate), and the copy not found when the agent started"
                }
                (None, false, _) => "truncated with no copy found",
                (None, true, Some(_)) => {
                    "replaced while the agent was stopped (truncated, or its inode reused), and no copy found"
                }
                (None, true, None) => {
                    "not found when the agent started (deleted while it was stopped)"
                }
            };
            match found {
                Some(found) => self.drain_copy(tracked, found, now)?,
                None => self.declare_rest_lost(tracked, reason)?,
            }
        }
        // The file holds what the checkpoint does not know: read from its start.
        let fingerprint = tracked.handle.as_ref().and_then(|h| Fingerprint::read(h).ok());
        match fingerprint {
            Some(fingerprint) => self.restart_into(tracked, tracked.file.epoch + 1, fingerprint),
            None => Ok(()),
        }
    }

    /// What `tracked`'s content holds beyond where it was read to is lost.
    fn declare_rest_lost(
        &mut self,
        tracked: &Tracked,
        reason: &'static str,
    ) -> Result<(), Stopping> {
        let file = Arc::clone(&tracked.file);
        self.declare_gap(&tracked.destination, &file, tracked.reader.read_offset(), None, reason)
    }

    /// Follows a rotated-away file found at start-up, from `start`, and then the rotated
    /// siblings newer than it that the agent never saw (created and rotated away while it
    /// was stopped), from their start: oldest first, before the file at `named`.
    fn track_rotated(
        &mut self,
        source_index: usize,
        file: FileRef,
        handle: File,
        start: Position,
        now: Instant,
        named: &Path,
    ) {
        let key = file.key;
        self.track(source_index, file, Some(handle), start, now, named);
        let Some(tracked) = self.files.get_mut(&key) else { return };
        tracked.orphaned_since = Some(now);
        let since = tracked.order;
        for path in siblings::siblings(named) {
            self.adopt_unseen(source_index, &path, since, now, named);
        }
    }

    /// Follows `path` from its start when it was modified at or after `since` (file times are coarse: ties are taken, duplicates being better than loss) and is no file
    /// the agent knows (by identity, or by first bytes for a compressed one).
    fn adopt_unseen(
        &mut self,
        source_index: usize,
        path: &Path,
        since: SystemTime,
        now: Instant,
        named: &Path,
    ) {
        let newer = fs::metadata(path).and_then(|m| m.modified()).is_ok_and(|m| m >= since);
        let known_path = self.files.values().any(|t| t.file.path == path);
        if !newer || known_path {
            return;
        }
        let Ok(handle) = siblings::open(path, &self.settings.scratch_dir) else { return };
        // Its identity is the file's own, not that of a `.gz` one's decompressed copy.
        let (Ok(metadata), Ok(fingerprint)) = (fs::metadata(path), Fingerprint::read(&handle))
        else {
            return;
        };
        let key = FileKey::of(&metadata);
        let known = self
            .files
            .values()
            .any(|t| t.file.key == key || t.file.fingerprint == fingerprint)
            || self.checkpoints.lock().unwrap_or_else(PoisonError::into_inner).iter().any(|c| {
                c.key == key
                    || c.contents().iter().any(|content| {
                        content.fingerprint == fingerprint || content.copy == Some(key)
                    })
            });
        if known || fingerprint.len == 0 {
            return;
        }
        info!(message = "Found a file rotated away while the agent was stopped; shipping it.", path = %path.display());
        let file = FileRef { key, fingerprint, path: path.to_owned(), epoch: 0 };
        self.track(source_index, file, Some(handle), Position::at(0), now, named);
        if let Some(tracked) = self.files.get_mut(&key) {
            tracked.orphaned_since = Some(now);
        }
    }

    fn checkpoint(&self, key: &FileKey) -> Option<Checkpoint> {
        self.checkpoints.lock().unwrap_or_else(PoisonError::into_inner).get(key).cloned()
    }

    /// Follows `file` from `start`, shipping to the stream named after `named` (the path
    /// the globs matched: a rotated file keeps the stream of the file it was).
    fn track(
        &mut self,
        source_index: usize,
        file: FileRef,
        handle: Option<File>,
        start: Position,
        now: Instant,
        named: &Path,
    ) {
        let metadata = handle.as_ref().and_then(|handle| handle.metadata().ok());
        let size = metadata.as_ref().map_or(0, fs::Metadata::len);
        let modified = |m: fs::Metadata| m.modified().ok();
        let handle_modified = metadata.and_then(modified);
        let read_tail = handle.as_ref().map(|h| bytes_before(h, start.offset)).unwrap_or_default();
        let order = fs::metadata(&file.path)
            .ok()
            .and_then(modified)
            .or(handle_modified)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let destination = self.destination(source_index, named);
        let source = &self.settings.sources[source_index];
        let checkpoint = Checkpoint::new(file.key, file.fingerprint, file.path.clone(), start);
        let mut checkpoints = self.checkpoints.lock().unwrap_or_else(PoisonError::into_inner);
        checkpoints.register(checkpoint);
        // A checkpoint taken when the file was shorter learns its first bytes now.
        if let Some(handle) = &handle {
            checkpoints.lengthen_fingerprint(&file, handle);
        }
        drop(checkpoints);
        let tracked = Tracked {
            destination,
            file: Arc::new(file),
            handle,
            reader: LineReader::new(self.framings[source_index].clone(), start),
            clock: EventClock::new(source.timestamp.clone()),
            orphaned_since: None,
            order,
            last_size: size,
            last_modified: handle_modified,
            read_tail,
            copies_read: Vec::new(),
            last_growth: now,
            last_used: now,
        };
        self.files.insert(tracked.file.key, tracked);
    }

    /// At start-up: files with a checkpoint that the globs no longer match (rotated
    /// away while the agent was down), and that are not followed already (found as a
    /// copy or as unseen), are drained from where they were last seen.
    fn resume_rotated_files(&mut self, now: Instant, matched: &BTreeSet<FileKey>) {
        let pending: Vec<Checkpoint> = {
            let checkpoints = self.checkpoints.lock().unwrap_or_else(PoisonError::into_inner);
            checkpoints
                .iter()
                .filter(|c| !matched.contains(&c.key) && !self.files.contains_key(&c.key))
                .cloned()
                .collect()
        };
        for checkpoint in pending {
            let Some(source_index) = self.source_for(&checkpoint.path) else { continue };
            let named = self.stream_path(source_index, &checkpoint.path);
            if let Some((path, handle, intact)) = self.locate(&checkpoint) {
                let Checkpoint { key, fingerprint, position, epoch, .. } = checkpoint;
                let file = FileRef { key, fingerprint, path, epoch };
                self.track_rotated(source_index, file, handle, position, now, &named);
                if !intact {
                    self.resume_replaced(&checkpoint, now);
                }
                continue;
            }
            if self.resume_gone(source_index, &checkpoint, &named, now).is_err() {
                return;
            }
            // Files rotated in after it while the agent was down are shipped.
            let since = self.checkpoints_saved_at;
            for sibling in siblings::siblings(&named) {
                self.adopt_unseen(source_index, &sibling, since, now, &named);
            }
        }
    }

    /// A checkpointed file not found at start-up: deleted while the agent was stopped,
    /// or compressed with first bytes too few to know it by. What its copies hold (it
    /// was copied and truncated before) is read from them; the rest is declared lost,
    /// and its checkpoint goes once that is acknowledged.
    fn resume_gone(
        &mut self,
        source_index: usize,
        checkpoint: &Checkpoint,
        named: &Path,
        now: Instant,
    ) -> Result<(), Stopping> {
        let Checkpoint { key, fingerprint, position, epoch, .. } = *checkpoint;
        let file = FileRef { key, fingerprint, path: checkpoint.path.clone(), epoch };
        self.track(source_index, file, None, position, now, named);
        let Some(mut tracked) = self.files.remove(&key) else { return Ok(()) };
        self.resume_contents(&mut tracked, checkpoint, now)?;
        self.finish(&tracked)
    }

    /// Where a checkpointed file that no glob matches now is: at the path it was last
    /// seen at, or renamed (and maybe compressed) among its siblings, open; and whether
    /// it still holds the content its checkpoint is in (not when its inode now holds
    /// other bytes, or the content was copied and the file truncated). A sibling
    /// another file already claimed is not this one (two short files' first bytes can
    /// agree).
    fn locate(&self, checkpoint: &Checkpoint) -> Option<(PathBuf, File, bool)> {
        let Checkpoint { key, fingerprint, path, .. } = checkpoint;
        let scratch = &self.settings.scratch_dir;
        let same_file = fs::metadata(path).is_ok_and(|m| FileKey::of(&m) == *key);
        let at_path = same_file.then(|| siblings::open(path, scratch).ok()).flatten();
        let at_path = at_path.map(|handle| (path.clone(), handle));
        // By the first bytes of what it holds now (not those of a content that was
        // copied: they name the copy).
        let holds_now = checkpoint.contents().pop().filter(|last| last.copy.is_none());
        let found = at_path
            .or_else(|| {
                let reused = siblings::find(path, *key, *fingerprint, Match::Inode, scratch)?;
                Some((reused.path, reused.handle))
            })
            .or_else(|| self.find_renamed(path, *key, holds_now?.fingerprint))
            .filter(|(found, _)| {
                !self.files.values().any(|t| t.file.path == *found && t.file.key != *key)
            })?;
        let intact = checkpoint.holds_one_content(&found.1);
        Some((found.0, found.1, intact))
    }

    /// The file (`key`, `fingerprint`) once at `path`, renamed (and maybe compressed)
    /// by rotations the agent did not see: where it is now, open.
    fn find_renamed(
        &self,
        path: &Path,
        key: FileKey,
        fingerprint: Fingerprint,
    ) -> Option<(PathBuf, File)> {
        let found =
            siblings::find(path, key, fingerprint, Match::Renamed, &self.settings.scratch_dir)?;
        info!(message = "Found a file rotated while it was not watched; draining it.", was = %path.display(), now = %found.path.display(), compressed = found.compressed);
        Some((found.path, found.handle))
    }

    /// The path a file was matched at, from where it was last seen: itself when the
    /// source's glob matches it, else its name before rotation (`access.log.1` was
    /// `access.log`).
    fn stream_path(&self, source_index: usize, seen_at: &Path) -> PathBuf {
        let glob = &self.settings.sources[source_index].path;
        if glob::Pattern::new(glob).is_ok_and(|p| p.matches_path(seen_at)) {
            return seen_at.to_owned();
        }
        let name = seen_at.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        seen_at.with_file_name(siblings::base_name(name))
    }

    /// The source a path was shipped under: the one whose glob's folder holds it.
    fn source_for(&self, path: &Path) -> Option<usize> {
        self.settings.sources.iter().position(|source| {
            glob::Pattern::new(&source.path).is_ok_and(|p| p.matches_path(path))
                || Path::new(&source.path).parent().is_some_and(|dir| path.starts_with(dir))
        })
    }

    fn destination(&mut self, source_index: usize, path: &Path) -> Arc<Destination> {
        let source = &self.settings.sources[source_index];
        let file_name =
            path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let stream = source
            .stream
            .replace("{instance_id}", &self.settings.instance_id)
            .replace("{hostname}", &self.settings.hostname)
            .replace("{file}", &file_name)
            .replace([':', '*'], "_");
        let key = (source.group.clone(), stream);
        let retention_days = source.retention_days;
        Arc::clone(self.destinations.entry(key.clone()).or_insert_with(|| {
            Arc::new(Destination { group: key.0, stream: key.1, retention_days })
        }))
    }

    // === reading ===

    /// Reads every file that has something new. True when some file has more to read
    /// right away.
    fn service_all(&mut self, now: Instant) -> Result<bool, Stopping> {
        // A stream's rotated-away file is read to its end before its successor, so
        // the stream keeps the order the lines were written in.
        // Of several rotated-away files of one stream, the oldest goes first. A file
        // that grew within the grace may still be written to (a writer that has not
        // reopened yet): its successor waits until it is quiet, even when what it has
        // was read already, else late lines would follow the successor's.
        let mut draining: HashMap<Arc<Destination>, SystemTime> = HashMap::new();
        for t in self.files.values() {
            let unread = t.last_size > t.reader.read_offset();
            let may_grow = now.duration_since(t.last_growth) < ORPHAN_GRACE;
            if t.orphaned_since.is_some() && (unread || may_grow) {
                let oldest = draining.entry(Arc::clone(&t.destination)).or_insert(t.order);
                *oldest = (*oldest).min(t.order);
            }
        }
        let keys: Vec<FileKey> = self.files.keys().copied().collect();
        let mut busy = !draining.is_empty();
        for key in keys {
            // Order gives way to loss: a held file that was truncated is read at once,
            // while its copy can still be found.
            let held = self.files.get(&key).is_some_and(|t| {
                draining
                    .get(&t.destination)
                    .is_some_and(|oldest| t.orphaned_since.is_none() || *oldest < t.order)
                    && !self.truncated_since_seen(t)
            });
            if !held {
                busy |= self.service(key, now)?;
            } else if let Some(mut tracked) = self.files.remove(&key) {
                // Not read yet, but its first bytes are known.
                if let Some(handle) = tracked.handle.as_ref()
                    && tracked.file.fingerprint.is_partial()
                {
                    self.refresh_fingerprint(&mut tracked.file, handle);
                }
                self.files.insert(key, tracked);
            }
        }
        self.close_idle_files();
        Ok(busy)
    }

    /// Takes `tracked`'s first bytes again, when they were fewer than a fingerprint
    /// holds (or the file restarted): a longer fingerprint tells short files apart
    /// after a restart, and tells a file's later content from the one checkpointed.
    fn refresh_fingerprint(&self, file: &mut Arc<FileRef>, handle: &File) {
        let Ok(fingerprint) = Fingerprint::read(handle) else { return };
        // Only a lengthening: first bytes that changed are a rewrite, which the next
        // look tells (the events read name the content they were read from).
        let lengthened = fingerprint.len > file.fingerprint.len
            && file.fingerprint.matches(handle).unwrap_or(false);
        if lengthened {
            *file = Arc::new(FileRef { fingerprint, ..(**file).clone() });
        }
        let mut checkpoints = self.checkpoints.lock().unwrap_or_else(PoisonError::into_inner);
        checkpoints.lengthen_fingerprint(file, handle);
    }

    /// Whether a file was truncated since it was last read: shorter than what was read,
    /// or, not read yet, changed and copied (a copytruncate) since the last look.
    fn truncated_since_seen(&self, tracked: &Tracked) -> bool {
        let Some((size, modified)) = self.current_state(tracked) else { return false };
        let offset = tracked.reader.read_offset();
        size < offset
            || (offset == 0
                && tracked.orphaned_since.is_none()
                && Some(modified) != tracked.last_modified
                && self.copy_of(tracked, tracked.last_modified).is_some())
    }

    fn service(&mut self, key: FileKey, now: Instant) -> Result<bool, Stopping> {
        let Some(mut tracked) = self.files.remove(&key) else { return Ok(false) };
        let result = self.service_file(&mut tracked, now);
        match result {
            Ok(Some(busy)) => {
                self.files.insert(key, tracked);
                Ok(busy)
            }
            Ok(None) => Ok(false),
            Err(Stopping) => {
                self.files.insert(key, tracked);
                Err(Stopping)
            }
        }
    }

    /// Reads one file; `None` when the file is finished with and no longer followed.
    fn service_file(
        &mut self,
        tracked: &mut Tracked,
        now: Instant,
    ) -> Result<Option<bool>, Stopping> {
        let size_before = tracked.last_size;
        let modified_before = tracked.last_modified;
        let state = self.current_state(tracked);
        let size = state.map(|(size, _)| size);
        let touched = state.is_some_and(|(_, modified)| Some(modified) != modified_before);
        if let Some((size, modified)) = state {
            if size > tracked.last_size || size < tracked.reader.read_offset() {
                tracked.last_growth = now;
            }
            tracked.last_size = size;
            tracked.last_modified = Some(modified);
        }
        let unread = size.is_some_and(|size| size != tracked.reader.read_offset());
        let wanted = unread || tracked.orphaned_since.is_some();
        if tracked.handle.is_none() && wanted && !self.reopen(tracked) {
            return self.give_up(tracked).map(|()| None);
        }
        let Some(handle) = tracked.handle.as_ref() else { return Ok(Some(false)) };
        // A copytruncate followed by new writes can leave the file longer than the
        // offset: the first bytes tell it from the file that was read.
        let changed = tracked.last_growth == now || touched;
        // Replaced content is told by its first bytes, or by the bytes just before the
        // offset (the first bytes of a short file say little).
        let rewritten = changed
            && (!tracked.file.fingerprint.matches(handle).unwrap_or(true)
                || bytes_before(handle, tracked.reader.read_offset()) != tracked.read_tail);
        let truncated = size.is_some_and(|size| size < tracked.reader.read_offset());
        let mut events = Vec::new();
        if truncated || rewritten {
            self.read_rest_from_copy(tracked, size_before, None, now)?;
            self.restart(tracked)?;
        } else if touched && tracked.reader.read_offset() == 0 && tracked.orphaned_since.is_none() {
            // A file not read yet changed where it is: perhaps written, copied and
            // truncated (and written again) since the last look. Its first bytes may be
            // too few to tell, so its copy is a plain file the agent does not know,
            // made since that look.
            if self.read_rest_from_copy(tracked, 0, modified_before, now)? {
                self.restart(tracked)?;
            }
        }
        let Some(handle) = tracked.handle.as_ref() else { return Ok(Some(false)) };
        let quarter = usize::try_from(self.settings.max_buffer_bytes / 4).unwrap_or(usize::MAX);
        let outcome = tracked.reader.read(
            handle,
            &mut self.scratch,
            READ_BUDGET_BYTES.min(quarter),
            now,
            &mut tracked.clock,
            &mut events,
        );
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(error) => {
                let shown = tracked.file.path.display().to_string();
                self.warnings.warn(
                    &shown,
                    || warn!(message = "Cannot read a log file.", path = %shown, %error),
                );
                return Ok(Some(false));
            }
        };
        if outcome.bytes > 0 {
            tracked.last_used = now;
            self.stats.bytes_read.add(outcome.bytes);
            tracked.read_tail = bytes_before(handle, tracked.reader.read_offset());
        }
        let truncated = truncated || rewritten;
        if truncated {
            self.stats.truncations.add(1);
            info!(message = "File truncated; reading it again from the start.", path = %tracked.file.path.display());
        }
        // A short file's first bytes are taken again each turn: its checkpoint may
        // not have taken the last ones yet (it does not while it names copies).
        if truncated || tracked.file.fingerprint.is_partial() {
            self.refresh_fingerprint(&mut tracked.file, handle);
        }
        let _ = tracked.reader.flush_timers(handle, now, &mut tracked.clock, &mut events);
        let drained = tracked.orphaned_since.is_some()
            && !outcome.more
            && now.duration_since(tracked.last_growth) >= ORPHAN_GRACE;
        if drained {
            let _ = tracked.reader.finish(handle, now, &mut tracked.clock, &mut events);
        }
        let seen = tracked.last_size.max(tracked.reader.read_offset());
        self.hand_on(tracked, events, seen)?;
        if drained {
            info!(message = "Finished a rotated or deleted file.", path = %tracked.file.path.display());
            self.read_to(tracked, tracked.reader.read_offset())?;
            self.finish(tracked)?;
            return Ok(None);
        }
        Ok(Some(outcome.more))
    }

    /// The file was truncated (copytruncate): what it held beyond what was read is read
    /// from the copy, found by its first bytes among the siblings. Bytes the agent saw
    /// (`size_before`) that neither it read nor the copy holds are declared a gap. A
    /// copy must be created after `born_after`, when given. True when a copy was found.
    fn read_rest_from_copy(
        &mut self,
        tracked: &mut Tracked,
        size_before: u64,
        born_after: Option<SystemTime>,
        now: Instant,
    ) -> Result<bool, Stopping> {
        let copy = self.copy_of(tracked, born_after);
        let found = copy.is_some();
        if let Some(copy) = copy {
            self.drain_copy(tracked, copy, now)?;
        }
        let read_to = tracked.reader.read_offset();
        if size_before > read_to {
            let file = Arc::clone(&tracked.file);
            let reason = "truncated before they were read (copytruncate) and not in a copy";
            self.declare_gap(&tracked.destination, &file, read_to, Some(size_before), reason)?;
        }
        Ok(found)
    }

    /// Reads the rest of `tracked`'s content, from where it was read to, from `copy`
    /// (made before a truncation), as `tracked`'s own. Its checkpoint names the copy
    /// until the file restarts, so that after a crash the rest is read from there again.
    fn drain_copy(
        &mut self,
        tracked: &mut Tracked,
        copy: Found,
        now: Instant,
    ) -> Result<(), Stopping> {
        info!(message = "File truncated; reading the rest from its copy.", path = %tracked.file.path.display(), copy = %copy.path.display(), from = tracked.reader.read_offset());
        // The copy's own identity (a `.gz` one's, not its decompressed content's).
        if let Ok(metadata) = fs::metadata(&copy.path) {
            let copy_key = FileKey::of(&metadata);
            let mut checkpoints = self.checkpoints.lock().unwrap_or_else(PoisonError::into_inner);
            checkpoints.note_copy(&tracked.file, copy_key);
            if !copy.compressed {
                tracked.copies_read.push(copy_key);
            }
        }
        loop {
            let mut events = Vec::new();
            let outcome = tracked.reader.read(
                &copy.handle,
                &mut self.scratch,
                READ_BUDGET_BYTES,
                now,
                &mut tracked.clock,
                &mut events,
            );
            let more = outcome.as_ref().is_ok_and(|outcome| outcome.more);
            if !more {
                let _ = tracked.reader.finish(&copy.handle, now, &mut tracked.clock, &mut events);
            }
            let seen = tracked.reader.read_offset();
            self.hand_on(tracked, events, seen)?;
            if !more {
                return Ok(());
            }
        }
    }

    /// A copy of `tracked` among its siblings; one told by its time (`born_after`) must
    /// also be a file the agent does not know.
    fn copy_of(&self, tracked: &Tracked, born_after: Option<SystemTime>) -> Option<Found> {
        let file = &tracked.file;
        let scratch = &self.settings.scratch_dir;
        let copied = Match::Copied { born_after };
        siblings::find(&file.path, file.key, file.fingerprint, copied, scratch)
            .filter(|copy| born_after.is_none() || !self.knows(tracked, &copy.handle))
    }

    /// Whether the agent follows, or has a checkpoint for, the file `handle` is open on,
    /// or read it as a copy of `tracked` already.
    fn knows(&self, tracked: &Tracked, handle: &File) -> bool {
        let Ok(metadata) = handle.metadata() else { return false };
        let key = FileKey::of(&metadata);
        tracked.copies_read.contains(&key)
            || self.files.contains_key(&key)
            || self.checkpoints.lock().unwrap_or_else(PoisonError::into_inner).get(&key).is_some()
    }

    /// The file was read to `offset`, its last bytes perhaps blank lines with no event.
    fn read_to(&mut self, tracked: &Tracked, offset: u64) -> Result<(), Stopping> {
        let item = ShipItem::ReadTo { file: Arc::clone(&tracked.file), offset };
        self.outlet.deliver(&tracked.destination, item)
    }

    /// The file's content starts again at 0 (a new content): what the old content left
    /// is shipped, and the manifest and checkpoint learn that what follows is new,
    /// under its new first bytes (so a restart from the checkpoint does not take the
    /// copy for the file).
    fn restart(&mut self, tracked: &mut Tracked) -> Result<(), Stopping> {
        let fingerprint = tracked.handle.as_ref().and_then(|h| Fingerprint::read(h).ok());
        let fingerprint = fingerprint.unwrap_or(tracked.file.fingerprint);
        self.restart_into(tracked, tracked.file.epoch + 1, fingerprint)
    }

    /// [`Self::restart`] into content `epoch`, whose first bytes are `fingerprint`; the
    /// checkpoint records it at once.
    fn restart_into(
        &mut self,
        tracked: &mut Tracked,
        epoch: u64,
        fingerprint: Fingerprint,
    ) -> Result<(), Stopping> {
        let mut events = Vec::new();
        let end = tracked.reader.read_offset();
        tracked.reader.restart(&mut tracked.clock, &mut events);
        tracked.read_tail.clear();
        self.hand_on(tracked, events, end)?;
        self.read_to(tracked, end)?;
        tracked.file = Arc::new(FileRef { fingerprint, epoch, ..(*tracked.file).clone() });
        let mut checkpoints = self.checkpoints.lock().unwrap_or_else(PoisonError::into_inner);
        checkpoints.begin_content(&tracked.file);
        drop(checkpoints);
        let restart = ShipItem::Restart { file: Arc::clone(&tracked.file) };
        self.outlet.deliver(&tracked.destination, restart)
    }

    /// Ships a marker for bytes of a file that are lost (to its end when `range.end` is
    /// not known), declares them in the manifest, and counts them.
    fn declare_gap(
        &mut self,
        destination: &Arc<Destination>,
        file: &Arc<FileRef>,
        from: u64,
        to: Option<u64>,
        reason: &'static str,
    ) -> Result<(), Stopping> {
        self.stats.gaps.add(1);
        warn!(message = "Log data lost.", path = %file.path.display(), from, to, reason);
        let gap = ShipItem::Gap { file: Arc::clone(file), from, to, reason };
        self.outlet.deliver(destination, gap)
    }

    /// The size and modification time of the file now: through the handle when open,
    /// else at its path.
    fn current_state(&self, tracked: &Tracked) -> Option<(u64, SystemTime)> {
        let metadata = match &tracked.handle {
            Some(handle) => handle.metadata().ok()?,
            None => fs::metadata(&tracked.file.path)
                .ok()
                .filter(|m| FileKey::of(m) == tracked.file.key)?,
        };
        Some((metadata.len(), metadata.modified().ok()?))
    }

    /// Opens a closed file again at its path, if it is still the same file.
    fn reopen(&mut self, tracked: &mut Tracked) -> bool {
        if self.open_count() >= self.settings.max_open_files {
            self.close_idle_files_for(1);
        }
        let at_path = File::open(&tracked.file.path).ok().filter(|handle| {
            handle.metadata().is_ok_and(|m| FileKey::of(&m) == tracked.file.key)
                && tracked.file.fingerprint.matches(handle).unwrap_or(false)
        });
        let file = &tracked.file;
        let found = match at_path {
            Some(handle) => Some((file.path.clone(), handle)),
            None => self.find_renamed(&file.path, file.key, file.fingerprint),
        };
        let Some((path, handle)) = found else { return false };
        if path != tracked.file.path {
            tracked.file = Arc::new(FileRef { path, ..(*tracked.file).clone() });
            tracked.orphaned_since.get_or_insert(Instant::now());
        }
        tracked.handle = Some(handle);
        true
    }

    /// The file vanished while closed, before it was read to its end: say what was lost.
    fn give_up(&mut self, tracked: &Tracked) -> Result<(), Stopping> {
        let from = tracked.reader.framed_offset();
        if tracked.last_size > from {
            let reason = "deleted before it was read to its end";
            let last_size = Some(tracked.last_size);
            self.declare_gap(&tracked.destination, &tracked.file, from, last_size, reason)?;
        }
        self.finish(tracked)
    }

    /// `tracked` is done with (gone, and read to its end): its checkpoint goes once
    /// everything before is acknowledged. Until then its inode, if reused, is a new
    /// file, not the one the checkpoint is of (see `follow`).
    fn finish(&mut self, tracked: &Tracked) -> Result<(), Stopping> {
        self.finished.insert(tracked.file.key, tracked.file.epoch);
        let done = ShipItem::Done { file: Arc::clone(&tracked.file) };
        self.outlet.deliver(&tracked.destination, done)
    }

    /// Hands on events read from `tracked`'s content, which was `seen` bytes long.
    fn hand_on(
        &mut self,
        tracked: &mut Tracked,
        events: Vec<TailEvent>,
        seen: u64,
    ) -> Result<(), Stopping> {
        self.stats.restamped.add(std::mem::take(&mut tracked.clock.restamped));
        if events.is_empty() {
            return Ok(());
        }
        self.stats.lines_read.add(events.len() as u64);
        let item = ShipItem::Events { file: Arc::clone(&tracked.file), events, seen };
        self.outlet.deliver(&tracked.destination, item)
    }

    /// Keeps the open files within `max_open_files`.
    fn close_idle_files(&mut self) {
        let open = self.open_count();
        if open > self.settings.max_open_files {
            self.close_idle_files_for(open - self.settings.max_open_files);
        }
    }

    /// Closes up to `count` open files, those read to their end and idle longest first;
    /// rotated-away files stay open (closing them would lose what they still hold).
    fn close_idle_files_for(&mut self, count: usize) {
        let mut candidates: Vec<(bool, Instant, FileKey)> = self
            .files
            .values()
            .filter(|t| t.handle.is_some() && t.orphaned_since.is_none())
            .map(|t| (t.last_size > t.reader.read_offset(), t.last_used, t.file.key))
            .collect();
        candidates.sort();
        for (_, _, key) in candidates.into_iter().take(count) {
            if let Some(tracked) = self.files.get_mut(&key) {
                tracked.handle = None;
            }
        }
    }

    fn save_checkpoints(&self) {
        let mut checkpoints = self.checkpoints.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(error) = checkpoints.save() {
            warn!(message = "Cannot save checkpoints.", %error);
        }
    }
}

/// Bytes kept from just before a file's read offset.
const READ_TAIL_BYTES: u64 = 32;

/// The up to [`READ_TAIL_BYTES`] bytes of `file` before `offset` (fewer when it is shorter).
fn bytes_before(file: &File, offset: u64) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let start = offset.saturating_sub(READ_TAIL_BYTES);
    let mut bytes = vec![0u8; (offset - start) as usize];
    let read = file.read_at(&mut bytes, start).unwrap_or(0);
    bytes.truncate(read);
    bytes
}

/// Where the symbolic link `path` leads, through every link on the way (at most 40, as
/// Linux allows), as a path: a relative target is taken from the link's folder.
fn link_target(path: &Path) -> Option<PathBuf> {
    let mut at = path.to_owned();
    for _ in 0..40 {
        if !fs::symlink_metadata(&at).ok()?.file_type().is_symlink() {
            return Some(at);
        }
        let target = fs::read_link(&at).ok()?;
        at = at.parent().map_or(target.clone(), |folder| folder.join(&target));
    }
    None
}

/// Where an open file is now (Linux: /proc/self/fd), after a rename.
fn current_path(handle: &File) -> Option<PathBuf> {
    let link = fs::read_link(format!("/proc/self/fd/{}", handle.as_raw_fd())).ok()?;
    let text = link.to_string_lossy();
    text.strip_suffix(" (deleted)").map_or(Some(link.clone()), |alive| Some(PathBuf::from(alive)))
}
