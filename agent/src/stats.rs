//! The agent's own counters, shipped as `klaxon_agent_*` metrics and printed on exit.

use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically growing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What the log pipeline has done since start.
#[derive(Debug, Default)]
pub struct AgentStats {
    pub lines_read: Counter,
    pub bytes_read: Counter,
    pub events_sent: Counter,
    pub bytes_sent: Counter,
    pub batches: Counter,
    pub retries: Counter,
    pub events_rejected: Counter,
    pub gaps: Counter,
    pub restamped: Counter,
    pub truncations: Counter,
}
