//! The time an event carries: parsed from its text when the source says how, else the
//! time it was read; never outside the window CloudWatch Logs accepts.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, NaiveDateTime};

use crate::config::TimestampParser;
use klaxon_common::clock::unix_ms;

/// CloudWatch Logs rejects events older than 14 days; keep an hour of margin for
/// the time a batch waits and retries.
const MAX_AGE: Duration = Duration::from_secs(14 * 24 * 3600 - 3600);
/// And events more than 2 hours ahead; keep ten minutes of margin.
const MAX_AHEAD: Duration = Duration::from_secs(2 * 3600 - 600);

/// Stamps the events of one file.
#[derive(Debug)]
pub struct EventClock {
    parser: Option<TimestampParser>,
    /// The last read-time stamp given, so a clock step back never reorders a stream.
    last_read_ms: i64,
    /// Events whose own time was outside CloudWatch's window and got the read time.
    pub restamped: u64,
}

impl EventClock {
    pub fn new(parser: Option<TimestampParser>) -> Self {
        EventClock { parser, last_read_ms: 0, restamped: 0 }
    }

    /// The timestamp, in Unix milliseconds, of an event whose first line is `text`.
    pub fn stamp(&mut self, text: &str) -> i64 {
        let now_ms = unix_ms(SystemTime::now());
        if let Some(parsed) = self.parser.as_ref().and_then(|parser| parse(parser, text)) {
            let oldest = now_ms - MAX_AGE.as_millis() as i64;
            let newest = now_ms + MAX_AHEAD.as_millis() as i64;
            if (oldest..=newest).contains(&parsed) {
                return parsed;
            }
            self.restamped += 1;
        }
        self.last_read_ms = self.last_read_ms.max(now_ms);
        self.last_read_ms
    }
}

fn parse(parser: &TimestampParser, text: &str) -> Option<i64> {
    let captures = parser.regex.captures(text)?;
    let found = captures.get(1).or_else(|| captures.get(0))?.as_str();
    if let Ok(with_zone) = DateTime::parse_from_str(found, &parser.format) {
        return Some(with_zone.timestamp_millis());
    }
    NaiveDateTime::parse_from_str(found, &parser.format)
        .ok()
        .map(|naive| naive.and_utc().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    fn nginx_clock() -> EventClock {
        EventClock::new(Some(TimestampParser {
            regex: Regex::new(r"\[([^\]]+)\]").expect("regex"),
            format: "%d/%b/%Y:%H:%M:%S %z".to_owned(),
        }))
    }

    #[test]
    fn a_recent_time_in_the_text_is_used() {
        let recent = chrono::Utc::now() - chrono::Duration::minutes(5);
        let line = format!(
            "10.0.0.1 - - [{}] \"GET / HTTP/1.1\" 200",
            recent.format("%d/%b/%Y:%H:%M:%S %z")
        );
        let mut clock = nginx_clock();
        assert_eq!(clock.stamp(&line), recent.timestamp() * 1000);
        assert_eq!(clock.restamped, 0);
    }

    #[test]
    fn a_time_outside_the_window_or_unparsable_gets_the_read_time() {
        let mut clock = nginx_clock();
        let before = unix_ms(SystemTime::now());
        let old = clock.stamp("x [01/Jan/2020:00:00:00 +0000] y");
        assert!(old >= before, "{old} < {before}");
        assert_eq!(clock.restamped, 1);
        assert!(clock.stamp("no time here") >= old);
        assert_eq!(clock.restamped, 1);
    }

    #[test]
    fn read_times_never_go_backwards() {
        let mut clock = EventClock::new(None);
        clock.last_read_ms = i64::MAX - 1;
        assert_eq!(clock.stamp("a"), i64::MAX - 1);
    }
}
