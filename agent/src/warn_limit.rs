//! Rate-limits the agent's own repeated warnings (an unreadable file polled every
//! second), so the agent can never flood the journal.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The same warning is logged at most once in this interval.
const REPEAT_INTERVAL: Duration = Duration::from_secs(300);
/// Keys remembered at most; past this the memory is cleared rather than grown.
const MAX_KEYS: usize = 10_000;

/// Remembers when each warning was last logged.
#[derive(Debug, Default)]
pub struct WarnLimiter {
    last: HashMap<String, Instant>,
}

impl WarnLimiter {
    /// Runs `log` unless the warning `key` was logged within the repeat interval.
    pub fn warn(&mut self, key: &str, log: impl FnOnce()) {
        let now = Instant::now();
        if self.last.get(key).is_some_and(|at| now.duration_since(*at) < REPEAT_INTERVAL) {
            return;
        }
        if self.last.len() >= MAX_KEYS {
            self.last.clear();
        }
        self.last.insert(key.to_owned(), now);
        log();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_warning_is_logged_once_per_interval_per_key() {
        let mut limiter = WarnLimiter::default();
        let mut logged = 0;
        for _ in 0..5 {
            limiter.warn("a", || logged += 1);
        }
        limiter.warn("b", || logged += 1);
        assert_eq!(logged, 2);
    }
}
