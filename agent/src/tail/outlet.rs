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
    /// Events read from one file, in file order.
    Events { file: Arc<FileRef>, events: Vec<TailEvent> },
    /// A message of the agent's own, such as a gap marker.
    Notice { text: String },
    /// The file is gone and read to its end: forget its checkpoint once everything
    /// before this is acknowledged.
    Done { key: FileKey },
}

impl ShipItem {
    /// The budget bytes this item holds until acknowledged.
    pub fn reserved_bytes(&self) -> u64 {
        match self {
            ShipItem::Events { events, .. } => events.iter().map(|e| event_bytes(&e.message)).sum(),
            ShipItem::Notice { text } => event_bytes(text),
            ShipItem::Done { .. } => 0,
        }
    }
}

/// What an event held in memory costs besides its text: the event and string headers,
/// allocator rounding, and its copy in the request being sent (measured: about 100 bytes
/// for 150-byte lines).
const EVENT_MEMORY_OVERHEAD_BYTES: u64 = 96;

/// The budget bytes an event holds while it waits for its acknowledgement.
pub fn event_bytes(message: &str) -> u64 {
    message.len() as u64 + EVENT_MEMORY_OVERHEAD_BYTES
}
