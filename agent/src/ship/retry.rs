//! When to try a CloudWatch call again, and how long to wait: exponential backoff with
//! jitter, so a fleet coming back from an outage does not retry in lockstep.

use std::time::Duration;

/// The first wait.
const BASE_DELAY: Duration = Duration::from_millis(200);
/// The longest wait: after an outage, shipping resumes within this.
const MAX_DELAY: Duration = Duration::from_secs(10);

/// Error codes AWS uses for throttling and passing trouble.
const RETRIABLE_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ServiceUnavailableException",
    "ServiceUnavailable",
    "InternalFailure",
    "InternalServerError",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// Whether an error with this code (and HTTP status) may succeed when tried again.
pub fn is_retriable(code: Option<&str>, status: Option<u16>) -> bool {
    code.is_some_and(|code| RETRIABLE_CODES.contains(&code))
        || status.is_some_and(|status| status == 429 || status >= 500)
}

/// Successive waits between attempts.
#[derive(Debug, Default)]
pub struct Backoff {
    attempt: u32,
}

impl Backoff {
    /// The next wait: `BASE_DELAY * 2^attempt`, capped, times a random factor in [0.5, 1).
    pub fn next_delay(&mut self) -> Duration {
        let doubled = BASE_DELAY.saturating_mul(1u32 << self.attempt.min(16));
        self.attempt += 1;
        doubled.min(MAX_DELAY).mul_f64(0.5 + fastrand::f64() / 2.0)
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_and_server_errors_are_retried_bad_requests_are_not() {
        assert!(is_retriable(Some("ThrottlingException"), Some(400)));
        assert!(is_retriable(None, Some(503)));
        assert!(is_retriable(Some("Unknown"), Some(500)));
        assert!(!is_retriable(Some("InvalidParameterException"), Some(400)));
        assert!(!is_retriable(None, None));
    }

    #[test]
    fn delays_double_with_jitter_up_to_the_cap() {
        let mut backoff = Backoff::default();
        let first = backoff.next_delay();
        assert!(first >= BASE_DELAY / 2 && first < BASE_DELAY, "{first:?}");
        let second = backoff.next_delay();
        assert!(second >= BASE_DELAY && second < BASE_DELAY * 2, "{second:?}");
        for _ in 0..40 {
            assert!(backoff.next_delay() < MAX_DELAY);
        }
        backoff.reset();
        assert!(backoff.next_delay() < BASE_DELAY);
    }
}
