//! Flushes CloudWatch did not take, kept on disk in `state_dir/metrics-spool/` until it
//! answers again, then sent oldest first (CloudWatch accepts datums up to two weeks
//! old). Bounded by age: the oldest files are dropped first, and counted.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::series::Datum;
use klaxon_common::state_file::write_atomically;
use tracing::error;

/// One spooled flush, versioned like every state file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "version")]
enum SpoolFile {
    #[serde(rename = "1")]
    V1 { datums: Vec<Datum> },
}

/// Where unreadable spool files are kept, inside the spool folder.
const SET_ASIDE: &str = "set-aside";

/// The spool folder.
#[derive(Debug)]
pub struct Spool {
    folder: PathBuf,
}

impl Spool {
    pub fn new(state_dir: &Path) -> Self {
        Spool { folder: state_dir.join("metrics-spool") }
    }

    /// Keeps a flush for later.
    pub fn save(&self, timestamp_ms: i64, datums: &[Datum]) -> io::Result<()> {
        fs::create_dir_all(&self.folder)?;
        let path = self.folder.join(format!("{timestamp_ms:020}-{}.json", std::process::id()));
        self.replace(&path, datums)
    }

    /// A spooled flush now holds only `datums` (CloudWatch took the others).
    pub fn replace(&self, path: &Path, datums: &[Datum]) -> io::Result<()> {
        let bytes = serde_json::to_vec(&SpoolFile::V1 { datums: datums.to_vec() })
            .map_err(io::Error::other)?;
        write_atomically(path, &bytes)
    }

    /// Spooled flushes, oldest first.
    pub fn pending(&self) -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir(&self.folder) else { return Vec::new() };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|e| e == "json"))
            .collect();
        paths.sort();
        paths
    }

    /// The datums of one spooled flush. A file that cannot be read (truncated, garbage)
    /// yields none and is set aside in `set-aside/`, kept for inspection, with an error
    /// naming it: the spool moves on instead of stopping at it.
    pub fn load(&self, path: &Path) -> Vec<Datum> {
        let parsed = fs::read(path).map_err(|e| e.to_string()).and_then(|bytes| {
            serde_json::from_slice::<SpoolFile>(&bytes).map_err(|e| e.to_string())
        });
        match parsed {
            Ok(SpoolFile::V1 { datums }) => datums,
            Err(problem) => {
                let aside = self.folder.join(SET_ASIDE);
                let kept = path.file_name().map(|name| aside.join(name));
                let moved = kept.as_ref().is_some_and(|kept| {
                    fs::create_dir_all(&aside).and_then(|()| fs::rename(path, kept)).is_ok()
                });
                if !moved {
                    let _ = fs::remove_file(path);
                }
                let kept = kept.filter(|_| moved).map(|k| k.display().to_string());
                error!(message = "A spooled metrics flush cannot be read; set aside, its datums are lost.", path = %path.display(), %problem, kept_at = kept.as_deref().unwrap_or("(removed)"));
                Vec::new()
            }
        }
    }

    pub fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    /// Drops spooled flushes older than `oldest_ms`; returns the datums dropped.
    pub fn prune(&self, oldest_ms: i64) -> usize {
        let mut dropped = 0;
        for path in self.pending() {
            let stamp = path
                .file_name()
                .and_then(|name| name.to_str())
                .and_then(|name| name.split('-').next())
                .and_then(|stamp| stamp.parse::<i64>().ok());
            if stamp.is_some_and(|stamp| stamp < oldest_ms) {
                dropped += self.load(&path).len();
                let _ = fs::remove_file(&path);
            }
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::sample::Unit;

    fn datum(timestamp_ms: i64) -> Datum {
        Datum {
            name: "klaxon_heartbeat".into(),
            unit: Unit::None,
            dimensions: vec![("InstanceId".into(), "i-1".into())],
            timestamp_ms,
            values: vec![1.0],
            counts: vec![1.0],
        }
    }

    #[test]
    fn spooled_flushes_come_back_oldest_first_and_old_ones_are_pruned() {
        let dir = tempfile::tempdir().expect("temp dir");
        let spool = Spool::new(dir.path());
        spool.save(2_000, &[datum(2_000)]).expect("save");
        spool.save(1_000, &[datum(1_000), datum(1_000)]).expect("save");
        spool.save(3_000, &[datum(3_000)]).expect("save");
        let pending = spool.pending();
        let stamps: Vec<i64> = pending.iter().map(|p| spool.load(p)[0].timestamp_ms).collect();
        assert_eq!(stamps, [1_000, 2_000, 3_000]);
        assert_eq!(spool.prune(2_500), 3, "two files, three datums, older than the bound");
        assert_eq!(spool.pending().len(), 1);
    }

    #[test]
    fn an_unreadable_spool_file_is_set_aside_and_the_rest_still_sent() {
        let dir = tempfile::tempdir().expect("temp dir");
        let spool = Spool::new(dir.path());
        spool.save(1_000, &[datum(1_000)]).expect("save");
        spool.save(3_000, &[datum(3_000)]).expect("save");
        let folder = dir.path().join("metrics-spool");
        let truncated = &b"{\"version\":\"1\",\"dat"[..];
        for (stamp, bytes) in [(2_000, truncated), (2_500, b"")] {
            fs::write(folder.join(format!("{stamp:020}-bad.json")), bytes).expect("write");
        }
        let loaded: Vec<usize> = spool.pending().iter().map(|p| spool.load(p).len()).collect();
        assert_eq!(loaded, [1, 0, 0, 1]);
        assert_eq!(spool.pending().len(), 2, "the unreadable files left the queue");
        let kept = fs::read_dir(folder.join(SET_ASIDE)).expect("set aside").count();
        assert_eq!(kept, 2, "kept for inspection");
    }
}
