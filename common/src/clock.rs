//! The one source of time. Everything that stamps, schedules or expires asks a [`Clock`]:
//! the wall clock (what CloudWatch and people see) and a monotonic instant (what
//! intervals are measured with). Both sleep through tokio, so a test on tokio's paused
//! clock runs hours of schedule in milliseconds; [`TestClock`] also steps its wall clock
//! like a misset host does.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Wall and monotonic time, and sleeping.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The wall clock: what timestamps say. It can step.
    fn now(&self) -> SystemTime;

    /// The monotonic clock: what durations are measured with. It never steps.
    fn instant(&self) -> Instant {
        Instant::now()
    }

    /// Waits `duration` of monotonic time.
    fn sleep(&self, duration: Duration) -> tokio::time::Sleep {
        tokio::time::sleep(duration)
    }

    /// The wall clock in milliseconds since the Unix epoch (negative before it).
    fn now_ms(&self) -> i64 {
        unix_ms(self.now())
    }

    /// The wall clock in whole seconds since the Unix epoch.
    fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }
}

/// Milliseconds since the Unix epoch of `time` (negative before it, saturating).
pub fn unix_ms(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

/// The host's clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A wall clock that starts where a test says and advances with tokio's (paused) clock;
/// [`TestClock::step`] moves it without moving monotonic time, as `date -s` does.
#[derive(Debug)]
pub struct TestClock {
    origin: Instant,
    wall_at_origin: Mutex<SystemTime>,
}

impl TestClock {
    /// A clock reading `wall` now.
    pub fn starting_at(wall: SystemTime) -> Self {
        TestClock { origin: Instant::now(), wall_at_origin: Mutex::new(wall) }
    }

    /// A clock reading `secs` seconds after the Unix epoch now.
    pub fn at_unix_secs(secs: u64) -> Self {
        Self::starting_at(UNIX_EPOCH + Duration::from_secs(secs))
    }

    /// Steps the wall clock forward (positive) or back (negative) by `secs`.
    pub fn step(&self, secs: i64) {
        let mut wall = self.wall_at_origin.lock().unwrap_or_else(|poison| poison.into_inner());
        let by = Duration::from_secs(secs.unsigned_abs());
        *wall = if secs >= 0 { *wall + by } else { *wall - by };
    }
}

impl Clock for TestClock {
    fn now(&self) -> SystemTime {
        let wall = *self.wall_at_origin.lock().unwrap_or_else(|poison| poison.into_inner());
        wall + self.origin.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_ms_is_signed_around_the_epoch() {
        assert_eq!(unix_ms(UNIX_EPOCH + Duration::from_millis(1500)), 1500);
        assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_millis(20)), -20);
    }

    #[tokio::test(start_paused = true)]
    async fn the_test_clock_follows_tokio_time_and_steps_without_it() {
        let clock = TestClock::at_unix_secs(1_000);
        let started = clock.instant();
        clock.sleep(Duration::from_secs(90)).await;
        assert_eq!(clock.now_secs(), 1_090);
        clock.step(-7_200);
        assert_eq!(clock.now_secs(), 1_090 - 7_200);
        clock.step(7_200 + 10);
        assert_eq!(clock.now_secs(), 1_100);
        assert_eq!(clock.instant() - started, Duration::from_secs(90));
    }
}
