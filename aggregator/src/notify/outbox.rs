//! The outbox: every message decided is written here (atomically, fsynced) before it is
//! published and removed once SNS acknowledged it, so a crash neither loses nor forgets
//! one. Files are named by a sequence number and sent in that order.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::dispatch::Notification;
use super::message::Envelope;
use klaxon_common::state_file::write_atomically;

/// One message waiting for SNS: what to publish, and what it notified (re-applied to the
/// dispatcher after a crash, so the same notification is not decided twice).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub notification: Notification,
    pub envelope: Envelope,
}

#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    next: u64,
}

impl Outbox {
    /// Opens (creating) `state_dir/outbox`.
    pub fn open(state_dir: &Path) -> std::io::Result<Outbox> {
        let dir = state_dir.join("outbox");
        std::fs::create_dir_all(&dir)?;
        let mut outbox = Outbox { dir, next: 0 };
        outbox.next = outbox.pending()?.last().map_or(0, |(sequence, _)| sequence + 1);
        Ok(outbox)
    }

    /// Writes `entry` durably; returns its sequence number.
    pub fn put(&mut self, entry: &OutboxEntry) -> std::io::Result<u64> {
        let sequence = self.next;
        let bytes = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
        write_atomically(&self.path(sequence), &bytes)?;
        self.next += 1;
        Ok(sequence)
    }

    /// The sequence numbers waiting, oldest first.
    pub fn pending(&self) -> std::io::Result<Vec<(u64, PathBuf)>> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let sequence = path
                .file_name()
                .and_then(|name| name.to_str())
                .and_then(|name| name.strip_suffix(".json"))
                .and_then(|stem| stem.parse::<u64>().ok());
            if let Some(sequence) = sequence {
                found.push((sequence, path));
            }
        }
        found.sort();
        Ok(found)
    }

    pub fn read(&self, sequence: u64) -> std::io::Result<OutboxEntry> {
        let bytes = std::fs::read(self.path(sequence))?;
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)
    }

    /// SNS took it.
    pub fn remove(&self, sequence: u64) -> std::io::Result<()> {
        std::fs::remove_file(self.path(sequence))
    }

    /// SNS refused it for good (say, a topic that does not exist): kept for the operator
    /// in `state_dir/undeliverable`, out of the way of the messages behind it.
    pub fn set_aside(&self, sequence: u64) -> std::io::Result<PathBuf> {
        let folder = self.dir.with_file_name("undeliverable");
        std::fs::create_dir_all(&folder)?;
        let target = folder.join(format!("{sequence:020}.json"));
        std::fs::rename(self.path(sequence), &target)?;
        Ok(target)
    }

    fn path(&self, sequence: u64) -> PathBuf {
        self.dir.join(format!("{sequence:020}.json"))
    }
}
