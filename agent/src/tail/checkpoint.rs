//! Where each file is done: the positions CloudWatch Logs acknowledged, kept in
//! `state_dir/checkpoints.json` and written atomically (temp file, fsync, rename, fsync
//! of the folder), so a crash at any moment leaves the old or the new file, whole.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::identity::{FileKey, Fingerprint};
use super::reader::Position;
use klaxon_common::state_file::{read_json, write_atomically};

const FILE_NAME: &str = "checkpoints.json";

/// One file's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub key: FileKey,
    pub fingerprint: Fingerprint,
    /// Where the file was last seen (it may since have been renamed).
    pub path: PathBuf,
    pub position: Position,
    /// Copies made of the file before it was truncated (copytruncate) whose content is
    /// not all acknowledged yet, oldest first: a crash must not lose where that content
    /// now is. The file itself holds what was written after the last one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<ContentCopy>,
    /// The first bytes of what the file holds now, when it restarted (was truncated,
    /// or its content replaced) since the content `position` is in: its restart is not
    /// acknowledged yet, and a crash must not lose what the file is now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holds: Option<Fingerprint>,
    /// Restarts handed on and not acknowledged yet (none after a crash).
    #[serde(skip)]
    pub pending_restarts: u32,
}

/// A copy of a file's content, made before the file was truncated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentCopy {
    /// The copy's own identity (a `.gz` one's, once compressed, is not known).
    pub key: FileKey,
    pub fingerprint: Fingerprint,
    /// It holds the content the checkpoint's position is in (it is read from there);
    /// else a later content, read whole.
    pub continues: bool,
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

    /// Records an acknowledged position (the latest acknowledgement wins). The copies
    /// noted stay until the file restarts past them ([`Self::restart`]).
    pub fn acknowledge(&mut self, mut checkpoint: Checkpoint) {
        if let Some(old) = self.entries.get(&checkpoint.key)
            && checkpoint.copies.is_empty()
        {
            checkpoint.copies.clone_from(&old.copies);
            checkpoint.holds = old.holds;
            checkpoint.pending_restarts = old.pending_restarts;
        }
        if self.entries.get(&checkpoint.key) != Some(&checkpoint) {
            self.entries.insert(checkpoint.key, checkpoint);
            self.dirty = true;
        }
    }

    /// Records where a newly found file starts, unless it has a checkpoint already.
    pub fn register(&mut self, checkpoint: Checkpoint) {
        if !self.entries.contains_key(&checkpoint.key) {
            self.acknowledge(checkpoint);
        }
    }

    /// A file's content starts again (it was truncated or replaced): `checkpoint` is its
    /// new start. The copies up to `finished`, the copy the old content was read to its
    /// end from (if any), are done with; the next one, if any, holds the new content.
    pub fn restart(&mut self, mut checkpoint: Checkpoint, finished: Option<FileKey>) {
        let old = self.entries.remove(&checkpoint.key);
        let Checkpoint { mut copies, holds, pending_restarts, .. } = match old {
            Some(old) => old,
            None => checkpoint.clone(),
        };
        let done = finished.and_then(|key| copies.iter().position(|copy| copy.key == key));
        if let Some(at) = done {
            copies.drain(..=at);
        }
        if let Some(next) = copies.first_mut() {
            next.continues = true;
        }
        checkpoint.copies = copies;
        checkpoint.pending_restarts = pending_restarts.saturating_sub(1);
        if checkpoint.pending_restarts == 0 {
            // This was the last restart: the file holds what `holds` names, its first
            // bytes perhaps taken since.
            let longer = holds.filter(|holds| holds.len > checkpoint.fingerprint.len);
            checkpoint.fingerprint = longer.unwrap_or(checkpoint.fingerprint);
        } else {
            checkpoint.holds = holds;
        }
        self.dirty = true;
        self.acknowledge(checkpoint);
    }

    /// The file `key` restarted into a content whose first bytes are `fingerprint`: its
    /// checkpoint says so at once (its position says so once acknowledged).
    pub fn note_restart(&mut self, key: FileKey, fingerprint: Fingerprint) {
        let Some(entry) = self.entries.get_mut(&key) else { return };
        entry.holds = Some(fingerprint);
        entry.pending_restarts += 1;
        self.dirty = true;
    }

    /// The file `key` was copied to `copy` (open as `copied`, decompressed if need be)
    /// and truncated: its checkpoint keeps the copy until the file restarts past it.
    pub fn note_copy(&mut self, key: FileKey, copy: FileKey, copied: &File) {
        let Some(entry) = self.entries.get_mut(&key) else { return };
        let Ok(fingerprint) = Fingerprint::read(copied) else { return };
        if entry.copies.iter().any(|known| known.key == copy) {
            return;
        }
        // The first copy continues the content the position is in when it starts with
        // its first bytes; else that content was truncated with no copy (a gap), and
        // this is a later one.
        let continues =
            entry.copies.is_empty() && entry.fingerprint.matches(copied).unwrap_or(false);
        entry.copies.push(ContentCopy { key: copy, fingerprint, continues });
        self.dirty = true;
    }

    /// A file's first bytes grew (it was shorter than the fingerprint): its checkpoint
    /// takes the longer fingerprint when the file still starts with the bytes it had,
    /// so that after a restart it is told from other short files. Its position stays.
    /// After a restart not yet acknowledged, what grows is [`Checkpoint::holds`].
    pub fn lengthen_fingerprint(&mut self, key: FileKey, longer: Fingerprint, file: &File) {
        let Some(entry) = self.entries.get_mut(&key) else { return };
        let now = entry.holds.as_mut().unwrap_or(&mut entry.fingerprint);
        if longer.len > now.len && now.matches(file).unwrap_or(false) {
            *now = longer;
            self.dirty = true;
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

    fn checkpoint(ino: u64, offset: u64) -> Checkpoint {
        Checkpoint {
            key: FileKey { dev: 1, ino },
            fingerprint: Fingerprint { len: 10, hash: 42 },
            path: PathBuf::from(format!("/var/log/{ino}.log")),
            position: Position::at(offset),
            copies: Vec::new(),
            holds: None,
            pending_restarts: 0,
        }
    }

    #[test]
    fn saved_checkpoints_load_back_and_register_never_overrides_an_ack() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut store = Checkpoints::load(dir.path()).expect("load empty");
        store.acknowledge(checkpoint(7, 100));
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
    fn a_corrupt_state_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(FILE_NAME), b"{not json").expect("write");
        let error = Checkpoints::load(dir.path()).expect_err("corrupt");
        assert!(error.to_string().contains("checkpoints.json"), "{error}");
    }
}
