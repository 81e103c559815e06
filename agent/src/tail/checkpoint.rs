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

    /// Records an acknowledged position (the latest acknowledgement wins).
    pub fn acknowledge(&mut self, checkpoint: Checkpoint) {
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

    /// A file's first bytes grew (it was shorter than the fingerprint): its checkpoint
    /// takes the longer fingerprint when the file still starts with the bytes it had,
    /// so that after a restart it is told from other short files. Its position stays.
    pub fn lengthen_fingerprint(&mut self, key: FileKey, longer: Fingerprint, file: &File) {
        let Some(entry) = self.entries.get_mut(&key) else { return };
        if longer.len > entry.fingerprint.len && entry.fingerprint.matches(file).unwrap_or(false) {
            entry.fingerprint = longer;
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
