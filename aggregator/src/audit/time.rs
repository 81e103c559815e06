//! The time arguments of the log commands: RFC 3339, or a duration meaning that long ago.

use chrono::{DateTime, SecondsFormat};

/// A time argument that is neither form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is neither an RFC 3339 time (2026-11-26T05:00:00Z) nor a duration ago (2h)")]
pub struct BadTime(pub String);

/// Milliseconds since the Unix epoch of `text` (`2026-11-26T05:00:00Z`, or `2h` for two
/// hours before `now_ms`).
pub fn parse_time(text: &str, now_ms: i64) -> Result<i64, BadTime> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text.trim()) {
        return Ok(time.timestamp_millis());
    }
    match humantime::parse_duration(text.trim()) {
        Ok(ago) => Ok(now_ms - i64::try_from(ago.as_millis()).unwrap_or(i64::MAX / 2)),
        Err(_) => Err(BadTime(text.to_owned())),
    }
}

/// `2026-11-26T05:00:00.123Z`.
pub fn format_ms(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map_or_else(|| ms.to_string(), |t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_and_durations_ago() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_time("2027-01-15T08:00:00Z", now), Ok(now));
        assert_eq!(parse_time("2027-01-15T09:00:00+01:00", now), Ok(now));
        assert_eq!(parse_time("2h", now), Ok(now - 7_200_000));
        assert_eq!(parse_time("90s", now), Ok(now - 90_000));
        let error = parse_time("yesterday", now).expect_err("neither");
        assert!(error.to_string().contains("\"yesterday\""), "{error}");
        assert_eq!(format_ms(now + 5), "2027-01-15T08:00:00.005Z");
    }
}
