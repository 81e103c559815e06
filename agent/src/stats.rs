//! The agent's own counters, shipped as `klaxon_agent_*` metrics at each metrics flush.

use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically growing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// For counts kept elsewhere and copied here (they only grow).
    pub fn set(&self, n: u64) {
        self.0.store(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What the agent has done since start.
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
    pub metric_values_skipped: Counter,
    pub metrics_dropped: Counter,
}

impl AgentStats {
    /// Every counter with its metric name (after `klaxon_agent_`), in a fixed order.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("lines_read", self.lines_read.get()),
            ("bytes_read", self.bytes_read.get()),
            ("events_sent", self.events_sent.get()),
            ("bytes_sent", self.bytes_sent.get()),
            ("batches", self.batches.get()),
            ("retries", self.retries.get()),
            ("events_rejected", self.events_rejected.get()),
            ("gaps", self.gaps.get()),
            ("restamped", self.restamped.get()),
            ("truncations", self.truncations.get()),
            ("metric_values_skipped", self.metric_values_skipped.get()),
            ("metrics_dropped", self.metrics_dropped.get()),
        ]
    }
}
