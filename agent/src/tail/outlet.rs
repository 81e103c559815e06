//! What the tail server hands on, and to whom: the [`ShipItem`]s of one file or of the
//! agent itself, through an [`Outlet`] that blocks while the memory budget is spent.

use std::path::PathBuf;
use std::sync::Arc;

use super::identity::{FileKey, Fingerprint};
use super::reader::TailEvent;
use crate::destination::Destination;

/// A file as its events name it: what a checkpoint needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    pub key: FileKey,
    pub fingerprint: Fingerprint,
    pub path: PathBuf,
    /// Which of the file's contents: each truncation begins another.
    pub epoch: u64,
}

/// The agent is stopping; nothing more is handed on.
#[derive(Debug)]
pub struct Stopping;

/// Where the server hands items: blocks while the memory budget is spent.
pub trait Outlet {
    fn deliver(&mut self, destination: &Arc<Destination>, item: ShipItem) -> Result<(), Stopping>;
}

/// What the reader hands a shipper.
#[derive(Debug)]
pub enum ShipItem {
    /// Events read from one file, in file order, and the file's size when they were read.
    Events { file: Arc<FileRef>, events: Vec<TailEvent>, seen: u64 },
    /// Bytes `from..to` of a file are lost (`to` unknown: to its end): a marker goes in
    /// the stream and the gap in the manifest.
    Gap { file: Arc<FileRef>, from: u64, to: Option<u64>, reason: &'static str },
    /// The file was read to `offset` and what follows its last event holds no event
    /// (blank lines): its checkpoint and manifest say so once all before is acknowledged.
    ReadTo { file: Arc<FileRef>, offset: u64 },
    /// The file's content starts again at byte 0 (it was truncated): what follows, the
    /// content `file.epoch`, is read from 0, and its checkpoint moves there once
    /// everything before is acknowledged.
    Restart { file: Arc<FileRef> },
    /// The file is gone and its content `file.epoch` read to its end: its checkpoint
    /// goes once everything before this is acknowledged (unless the inode holds a
    /// later content by then).
    Done { file: Arc<FileRef> },
}

impl ShipItem {
    /// The budget bytes this item holds until acknowledged.
    pub fn reserved_bytes(&self) -> u64 {
        match self {
            ShipItem::Events { events, .. } => events.iter().map(|e| event_bytes(&e.message)).sum(),
            ShipItem::Gap { file, from, to, reason } => {
                event_bytes(&gap_marker(file, *from, *to, reason))
            }
            ShipItem::ReadTo { .. } | ShipItem::Restart { .. } | ShipItem::Done { .. } => 0,
        }
    }
}

/// What an event held in memory costs besides its text: the event and string headers,
/// allocator rounding, and its copy in the request being sent (measured: about 100 bytes
/// for 150-byte lines).
const EVENT_MEMORY_OVERHEAD_BYTES: u64 = 96;

/// The event that marks lost bytes in the stream, for people and for `klaxon logs query`.
pub fn gap_marker(file: &FileRef, from: u64, to: Option<u64>, reason: &str) -> String {
    let path = file.path.display();
    match to {
        Some(to) => {
            format!(
                "[klaxon: gap: ? lines / {} bytes ({from}..{to}) of {path}, {reason}]",
                to - from
            )
        }
        None => {
            format!("[klaxon: gap: ? lines / bytes from {from} to the end of {path}, {reason}]")
        }
    }
}

/// The budget bytes an event holds while it waits for its acknowledgement.
pub fn event_bytes(message: &str) -> u64 {
    message.len() as u64 + EVENT_MEMORY_OVERHEAD_BYTES
}
