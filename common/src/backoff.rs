//! How long to wait before trying a call again: exponential back-off with full jitter
//! (a random wait up to `base * 2^attempt`, capped), so a fleet coming back from an
//! outage does not retry in lockstep. Throttling is honoured: a throttled caller waits
//! at least half the ceiling, never a lucky near-zero.

use std::time::Duration;

/// Successive waits between attempts of one call.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// Waits starting below `base`, doubling up to `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff { base, cap, attempt: 0 }
    }

    /// The ceiling of the next wait: `base * 2^attempt`, at most `cap`.
    pub fn ceiling(&self) -> Duration {
        self.base.saturating_mul(1u32 << self.attempt.min(20)).min(self.cap)
    }

    /// The next wait after a passing failure: uniform in [0, ceiling].
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        ceiling.mul_f64(fastrand::f64())
    }

    /// The next wait after throttling: uniform in [ceiling / 2, ceiling].
    pub fn next_throttled_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        ceiling.mul_f64(0.5 + fastrand::f64() / 2.0)
    }

    /// Failures since the last success.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// After a success: the next failure starts from `base` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(200);
    const CAP: Duration = Duration::from_secs(10);

    #[test]
    fn ceilings_double_up_to_the_cap_and_waits_stay_under_them() {
        let mut backoff = Backoff::new(BASE, CAP);
        for attempt in 0..40u32 {
            let ceiling = backoff.ceiling();
            assert_eq!(ceiling, (BASE * 2u32.pow(attempt.min(10))).min(CAP));
            assert!(backoff.next_delay() <= ceiling);
        }
        assert_eq!(backoff.attempts(), 40);
        backoff.reset();
        assert_eq!(backoff.ceiling(), BASE);
    }

    #[test]
    fn throttled_waits_are_at_least_half_the_ceiling() {
        let mut backoff = Backoff::new(BASE, CAP);
        for _ in 0..200 {
            let ceiling = backoff.ceiling();
            let wait = backoff.next_throttled_delay();
            assert!(wait >= ceiling / 2 && wait <= ceiling, "{wait:?} of {ceiling:?}");
        }
    }

    #[test]
    fn full_jitter_spreads_waits_over_the_whole_range() {
        let mut low = 0;
        for _ in 0..1_000 {
            let mut backoff = Backoff::new(CAP, CAP);
            if backoff.next_delay() < CAP / 4 {
                low += 1;
            }
        }
        // A quarter expected; far from zero and from all.
        assert!((150..350).contains(&low), "{low} of 1000 below a quarter");
    }
}
