//! Following log files: which files, read from where, framed into which events.
//! **Invariant:** nothing here knows AWS; events leave through the caller.

pub mod checkpoint;
pub mod identity;
pub mod outlet;
pub mod reader;
pub mod server;
pub mod siblings;
pub mod split;
pub mod timestamp;
