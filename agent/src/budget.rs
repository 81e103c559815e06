//! The memory budget of the log pipeline: the reader takes bytes before it hands events
//! on, shippers give them back once CloudWatch acknowledged. When the budget is spent
//! (an outage, throttling), the reader waits: backpressure goes to the file, which is the
//! buffer, never into RAM.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

/// Bytes that may be held at once, shared by the reader thread and the shippers.
#[derive(Debug)]
pub struct ByteBudget {
    capacity: u64,
    used: Mutex<u64>,
    freed: Condvar,
}

impl ByteBudget {
    pub fn new(capacity: u64) -> Self {
        ByteBudget { capacity, used: Mutex::new(0), freed: Condvar::new() }
    }

    /// Takes `bytes`, waiting up to `timeout` for them to be free. A request larger than
    /// the whole budget is granted once nothing else is held, so it cannot wait forever.
    /// False when the time ran out.
    pub fn acquire(&self, bytes: u64, timeout: Duration) -> bool {
        let used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        let must_wait = |used: &mut u64| *used + bytes > self.capacity && *used > 0;
        let (mut used, waited) = self
            .freed
            .wait_timeout_while(used, timeout, must_wait)
            .unwrap_or_else(PoisonError::into_inner);
        if waited.timed_out() && must_wait(&mut used) {
            return false;
        }
        *used += bytes;
        true
    }

    /// Gives `bytes` back.
    pub fn release(&self, bytes: u64) {
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        *used = used.saturating_sub(bytes);
        self.freed.notify_all();
    }

    /// Bytes held now.
    pub fn used(&self) -> u64 {
        *self.used.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acquisition_waits_for_release_and_an_oversized_request_gets_through_alone() {
        let budget = ByteBudget::new(100);
        assert!(budget.acquire(60, Duration::ZERO));
        assert!(!budget.acquire(60, Duration::from_millis(10)), "over budget");
        budget.release(60);
        assert!(budget.acquire(250, Duration::ZERO), "alone, a big request passes");
        assert_eq!(budget.used(), 250);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                budget.release(250);
            });
            assert!(budget.acquire(10, Duration::from_secs(5)));
        });
        assert_eq!(budget.used(), 10);
    }
}
