//! Where each file is done: the positions CloudWatch Logs acknowledged, kept in
//! `state_dir/checkpoints.json` and written atomically (temp file, fsync, rename, fsync
//! of the folder), so a crash at any moment leaves the old or the new file, whole.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::identity::{FileKey, Fingerprint};
use super::outlet::FileRef;
use super::reader::Position;
use klaxon_common::state_file::{read_json, write_atomically};

const FILE_NAME: &str = "checkpoints.json";

/// One file's checkpoint: where its oldest content not yet all acknowledged is done
/// to, and the contents it held after that one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub key: FileKey,
    /// The first bytes of the content `position` is in.
    pub fingerprint: Fingerprint,
    /// Where the file was last seen (it may since have been renamed).
    pub path: PathBuf,
    pub position: Position,
    /// Which of the file's contents that is: each truncation begins another.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epoch: u64,
    /// Where the rest of that content is, when the file was copied and truncated
    /// (copytruncate) since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<FileKey>,
    /// The contents the file held after that one, oldest first, the last being what it
    /// holds now. A truncation records the new content at once: a crash before the old
    /// one is all acknowledged must not forget where the new one is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub later: Vec<LaterContent>,
}

/// A content a file held after the one its checkpoint's position is in (read from 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaterContent {
    pub epoch: u64,
    pub fingerprint: Fingerprint,
    /// Where it is, when the file was copied and truncated since; none and not the last:
    /// it is lost (the truncation left no copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<FileKey>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Checkpoint {
    /// A file's checkpoint at `position` of its content `fingerprint`, `epoch`.
    pub fn new(key: FileKey, fingerprint: Fingerprint, path: PathBuf, position: Position) -> Self {
        Checkpoint { key, fingerprint, path, position, epoch: 0, copy: None, later: Vec::new() }
    }

    /// Every content not yet all acknowledged, oldest first: the checkpointed one (from
    /// its position), then the later ones (from 0).
    pub fn contents(&self) -> Vec<LaterContent> {
        let first =
            LaterContent { epoch: self.epoch, fingerprint: self.fingerprint, copy: self.copy };
        std::iter::once(first).chain(self.later.iter().cloned()).collect()
    }

    /// The first bytes of what the file holds now.
    pub fn now_holds(&self) -> Fingerprint {
        self.later.last().map_or(self.fingerprint, |last| last.fingerprint)
    }

    /// Whether the file, open as `handle`, holds just what the checkpoint says: its
    /// one content, never copied and truncated, starting with the bytes it had.
    pub fn holds_one_content(&self, handle: &File) -> bool {
        self.later.is_empty()
            && self.copy.is_none()
            && self.fingerprint.matches(handle).unwrap_or(false)
    }

    /// The fingerprint of content `epoch`, to lengthen or to name its copy.
    fn fingerprint_of(&mut self, epoch: u64) -> Option<(&mut Fingerprint, &mut Option<FileKey>)> {
        if epoch == self.epoch {
            return Some((&mut self.fingerprint, &mut self.copy));
        }
        let later = self.later.iter_mut().find(|later| later.epoch == epoch)?;
        Some((&mut later.fingerprint, &mut later.copy))
    }

    /// Content `epoch` is now the checkpointed one, at `position`; those before are done.
    /// Of its fingerprint as acknowledged and as known, the longer is kept.
    fn move_to(&mut self, epoch: u64, fingerprint: Fingerprint, position: Position) {
        if epoch != self.epoch {
            let at = self.later.iter().position(|later| later.epoch == epoch);
            let (known, copy) = match at {
                Some(at) => (self.later[at].fingerprint, self.later[at].copy),
                None => (fingerprint, None),
            };
            self.later.drain(..at.map_or(self.later.len(), |at| at + 1));
            self.epoch = epoch;
            self.copy = copy;
            self.fingerprint = known;
        }
        if fingerprint.len > self.fingerprint.len {
            self.fingerprint = fingerprint;
        }
        self.position = position;
    }
}

/// The file format, versioned so a later agent can read what an earlier one wrote.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "version")]
enum StateFile {
    #[serde(rename = "1")]
    V1 { files: Vec<Checkpoint> },
}

/// The checkpoints of every file, in memory, and where they are saved.
#[derive(Debug)]
pub struct Checkpoints {
    path: PathBuf,
    entries: BTreeMap<FileKey, Checkpoint>,
    dirty: bool,
}

impl Checkpoints {
    /// Loads the checkpoints in `state_dir`, or none when there are none yet.
    pub fn load(state_dir: &Path) -> io::Result<Self> {
        let path = state_dir.join(FILE_NAME);
        let entries = match read_json(&path)? {
            Some(StateFile::V1 { files }) => files.into_iter().map(|c| (c.key, c)).collect(),
            None => BTreeMap::new(),
        };
        Ok(Checkpoints { path, entries, dirty: false })
    }

    /// When the checkpoints on disk were last written (none: never).
    pub fn saved_at(&self) -> Option<std::time::SystemTime> {
        std::fs::metadata(&self.path).and_then(|m| m.modified()).ok()
    }

    pub fn get(&self, key: &FileKey) -> Option<&Checkpoint> {
        self.entries.get(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Checkpoint> {
        self.entries.values()
    }

    /// Where content `epoch` of file `key` is acknowledged to: its checkpoint's
    /// position, or 0 for a later content.
    pub fn acknowledged(&self, key: &FileKey, epoch: u64) -> Option<u64> {
        let checkpoint = self.entries.get(key)?;
        Some(if checkpoint.epoch == epoch { checkpoint.position.offset } else { 0 })
    }

    /// Records an acknowledged position of content `epoch` (the latest acknowledgement
    /// wins); the contents before it are done.
    pub fn acknowledge(&mut self, file: &FileRef, position: Position) {
        let entry = self.entries.entry(file.key).or_insert_with(|| {
            Checkpoint::new(file.key, file.fingerprint, file.path.clone(), position)
        });
        let before = entry.clone();
        entry.move_to(file.epoch, file.fingerprint, position);
        entry.path.clone_from(&file.path);
        self.dirty |= *entry != before;
    }

    /// Records where a newly found file starts, unless it has a checkpoint already.
    pub fn register(&mut self, checkpoint: Checkpoint) {
        if let std::collections::btree_map::Entry::Vacant(entry) =
            self.entries.entry(checkpoint.key)
        {
            entry.insert(checkpoint);
            self.dirty = true;
        }
    }

    /// The file restarted (was truncated, or its content replaced) into content
    /// `file.epoch`, whose first bytes are `file.fingerprint`: the checkpoint records it
    /// at once, unless it knows it already.
    pub fn begin_content(&mut self, file: &FileRef) {
        let Some(entry) = self.entries.get_mut(&file.key) else { return };
        if entry.epoch >= file.epoch || entry.later.iter().any(|l| l.epoch == file.epoch) {
            return;
        }
        let fingerprint = file.fingerprint;
        entry.later.push(LaterContent { epoch: file.epoch, fingerprint, copy: None });
        self.dirty = true;
    }

    /// Content `file.epoch` of the file was copied to `copy` and the file truncated: its
    /// checkpoint keeps where the content is until it is all acknowledged.
    pub fn note_copy(&mut self, file: &FileRef, copy: FileKey) {
        let Some(entry) = self.entries.get_mut(&file.key) else { return };
        if let Some((_, known)) = entry.fingerprint_of(file.epoch)
            && *known != Some(copy)
        {
            *known = Some(copy);
            self.dirty = true;
        }
    }

    /// A content's first bytes grew (it was shorter than the fingerprint): its
    /// checkpoint takes the longer fingerprint when the file still starts with the
    /// bytes it had, so that after a restart it is told from other short files.
    pub fn lengthen_fingerprint(&mut self, file: &FileRef, file_now: &File) {
        let Some(entry) = self.entries.get_mut(&file.key) else { return };
        let Some((known, _)) = entry.fingerprint_of(file.epoch) else { return };
        if file.fingerprint.len > known.len && known.matches(file_now).unwrap_or(false) {
            *known = file.fingerprint;
            self.dirty = true;
        }
    }

    /// The file is gone and its content `file.epoch` is all acknowledged: its checkpoint
    /// goes, unless its inode holds a later content (reused), which it then moves to.
    pub fn finish(&mut self, file: &FileRef) {
        let Some(entry) = self.entries.get_mut(&file.key) else { return };
        if entry.epoch > file.epoch {
            return;
        }
        match entry.later.iter().find(|later| later.epoch > file.epoch) {
            Some(next) => {
                let (epoch, fingerprint) = (next.epoch, next.fingerprint);
                entry.move_to(epoch, fingerprint, Position::at(0));
                self.dirty = true;
            }
            None => self.forget(&file.key),
        }
    }

    /// Drops the checkpoint of a file that is gone and fully shipped.
    pub fn forget(&mut self, key: &FileKey) {
        self.dirty |= self.entries.remove(key).is_some();
    }

    /// Writes the checkpoints if they changed since the last save.
    pub fn save(&mut self) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let state = StateFile::V1 { files: self.entries.values().cloned().collect() };
        let bytes = serde_json::to_vec_pretty(&state).map_err(io::Error::other)?;
        write_atomically(&self.path, &bytes)?;
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(ino: u64, epoch: u64, hash: u64) -> FileRef {
        FileRef {
            key: FileKey { dev: 1, ino },
            fingerprint: Fingerprint { len: 10, hash },
            path: PathBuf::from(format!("/var/log/{ino}.log")),
            epoch,
        }
    }

    fn checkpoint(ino: u64, offset: u64) -> Checkpoint {
        let file = file(ino, 0, 42);
        Checkpoint::new(file.key, file.fingerprint, file.path, Position::at(offset))
    }

    #[test]
    fn saved_checkpoints_load_back_and_register_never_overrides_an_ack() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut store = Checkpoints::load(dir.path()).expect("load empty");
        store.acknowledge(&file(7, 0, 42), Position::at(100));
        store.register(checkpoint(7, 0));
        store.register(checkpoint(8, 5));
        store.save().expect("save");
        assert!(!dir.path().join("checkpoints.new").exists());

        let mut loaded = Checkpoints::load(dir.path()).expect("load");
        let offsets: Vec<_> = loaded.iter().map(|c| (c.key.ino, c.position.offset)).collect();
        assert_eq!(offsets, [(7, 100), (8, 5)]);
        loaded.forget(&FileKey { dev: 1, ino: 7 });
        loaded.save().expect("save");
        assert_eq!(Checkpoints::load(dir.path()).expect("load").iter().count(), 1);
    }

    #[test]
    fn a_truncation_is_kept_at_once_and_its_old_content_until_acknowledged() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut store = Checkpoints::load(dir.path()).expect("load empty");
        store.register(checkpoint(7, 0));
        store.acknowledge(&file(7, 0, 42), Position::at(100));
        // Copied to inode 9 and truncated; then truncated again with no copy.
        store.note_copy(&file(7, 0, 42), FileKey { dev: 1, ino: 9 });
        store.begin_content(&file(7, 1, 43));
        store.begin_content(&file(7, 2, 44));
        store.begin_content(&file(7, 2, 44));
        store.save().expect("save");

        let mut loaded = Checkpoints::load(dir.path()).expect("load");
        let key = FileKey { dev: 1, ino: 7 };
        let contents = loaded.get(&key).expect("checkpoint").contents();
        let summary: Vec<_> = contents.iter().map(|c| (c.epoch, c.copy.map(|k| k.ino))).collect();
        assert_eq!(summary, [(0, Some(9)), (1, None), (2, None)]);
        assert_eq!(loaded.acknowledged(&key, 0), Some(100));
        assert_eq!(loaded.acknowledged(&key, 2), Some(0));

        // The old content's last batch, then the restarts, acknowledged in order.
        loaded.acknowledge(&file(7, 0, 42), Position::at(150));
        assert_eq!(loaded.get(&key).expect("checkpoint").later.len(), 2);
        loaded.acknowledge(&file(7, 1, 43), Position::at(0));
        let checkpoint = loaded.get(&key).expect("checkpoint");
        assert_eq!((checkpoint.epoch, checkpoint.copy, checkpoint.later.len()), (1, None, 1));
        loaded.acknowledge(&file(7, 2, 44), Position::at(30));
        let checkpoint = loaded.get(&key).expect("checkpoint");
        assert_eq!((checkpoint.epoch, checkpoint.position.offset), (2, 30));
        assert!(checkpoint.later.is_empty());
        assert_eq!(checkpoint.fingerprint.hash, 44);
    }

    #[test]
    fn a_finished_file_goes_unless_its_inode_holds_a_later_content() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut store = Checkpoints::load(dir.path()).expect("load empty");
        let key = FileKey { dev: 1, ino: 7 };
        store.register(checkpoint(7, 0));
        store.acknowledge(&file(7, 0, 42), Position::at(100));
        // The inode was reused by a new file before the old one's end was acknowledged.
        store.begin_content(&file(7, 1, 43));
        store.finish(&file(7, 0, 42));
        let checkpoint = store.get(&key).expect("the new file's checkpoint");
        assert_eq!((checkpoint.epoch, checkpoint.position.offset), (1, 0));
        assert_eq!(checkpoint.fingerprint.hash, 43);
        // A late finish of an older content leaves it; its own finish removes it.
        store.finish(&file(7, 0, 42));
        assert!(store.get(&key).is_some());
        store.finish(&file(7, 1, 43));
        assert!(store.get(&key).is_none());
    }

    #[test]
    fn a_corrupt_state_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(FILE_NAME), b"{not json").expect("write");
        let error = Checkpoints::load(dir.path()).expect_err("corrupt");
        assert!(error.to_string().contains("checkpoints.json"), "{error}");
    }
}
