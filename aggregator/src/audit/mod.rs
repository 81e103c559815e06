//! What auditors run against shipped logs: `klaxon logs query` (every event of a group or
//! stream in a time range, streamed) and `klaxon logs verify` (events checked against
//! the agent's manifests).

pub mod query;
pub mod time;
pub mod verify;
