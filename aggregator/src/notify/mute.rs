//! Time-of-week mute windows (`[[mute]]` in the aggregator config): matching alerts are
//! not notified on the given days between two local times, in a named time zone.

use chrono::{Datelike, NaiveTime, TimeZone, Weekday};
use chrono_tz::Tz;

use super::matcher::{MatcherError, Matchers};
use super::settings::MuteConfig;
use crate::engine::evaluate::Labels;
use crate::engine::state::Seconds;

/// Why a `[[mute]]` is refused; the message names the offending value.
#[derive(Debug, thiserror::Error)]
pub enum MuteError {
    #[error("day {0:?} is not a weekday (mon, tue, … or a range mon-fri)")]
    Day(String),
    #[error("time {0:?} is not HH:MM (24-hour clock)")]
    Time(String),
    #[error("time_zone {0:?} is not an IANA time zone (e.g. Europe/Paris)")]
    TimeZone(String),
    #[error(transparent)]
    Matcher(#[from] MatcherError),
}

/// A compiled `[[mute]]`.
#[derive(Debug, Clone)]
pub struct MuteWindow {
    pub name: String,
    days: [bool; 7],
    from: NaiveTime,
    to: NaiveTime,
    zone: Tz,
    matchers: Matchers,
}

impl MuteWindow {
    /// Checks every field; the error names the offending value.
    pub fn compile(config: &MuteConfig, index: usize) -> Result<MuteWindow, MuteError> {
        let days = if config.days.is_empty() { [true; 7] } else { parse_days(&config.days)? };
        let time = |text: &str| {
            NaiveTime::parse_from_str(text, "%H:%M").map_err(|_| MuteError::Time(text.to_owned()))
        };
        let zone: Tz =
            config.time_zone.parse().map_err(|_| MuteError::TimeZone(config.time_zone.clone()))?;
        Ok(MuteWindow {
            name: config.name.clone().unwrap_or_else(|| format!("mute #{}", index + 1)),
            days,
            from: time(&config.from)?,
            to: time(&config.to)?,
            zone,
            matchers: Matchers::from_map(config.matchers.get_ref())?,
        })
    }

    /// Whether `labels` are muted at `now` (Unix seconds). A window whose `to` is before
    /// its `from` runs across midnight and belongs to the day it starts on.
    pub fn mutes(&self, labels: &Labels, now: Seconds) -> bool {
        if !self.matchers.matches(labels) {
            return false;
        }
        let Some(local) = self.zone.timestamp_opt(now, 0).single() else { return false };
        let time = local.time();
        let today = local.weekday().num_days_from_monday() as usize;
        let yesterday = (today + 6) % 7;
        if self.from <= self.to {
            self.days[today] && self.from <= time && time < self.to
        } else {
            (self.days[today] && time >= self.from) || (self.days[yesterday] && time < self.to)
        }
    }
}

/// `["mon-fri", "sun"]` into a Monday-first week.
fn parse_days(days: &[String]) -> Result<[bool; 7], MuteError> {
    let day = |text: &str| {
        text.trim()
            .parse::<Weekday>()
            .map(|day| day.num_days_from_monday() as usize)
            .map_err(|_| MuteError::Day(text.to_owned()))
    };
    let mut week = [false; 7];
    for entry in days {
        match entry.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (day(first)?, day(last)?);
                let mut current = first;
                loop {
                    week[current] = true;
                    if current == last {
                        break;
                    }
                    current = (current + 1) % 7;
                }
            }
            None => week[day(entry)?] = true,
        }
    }
    Ok(week)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn window(days: &[&str], from: &str, to: &str, zone: &str) -> Result<MuteWindow, String> {
        let config = MuteConfig {
            name: None,
            days: days.iter().map(|d| (*d).to_owned()).collect(),
            from: from.to_owned(),
            to: to.to_owned(),
            time_zone: zone.to_owned(),
            matchers: toml::Spanned::new(
                0..0,
                BTreeMap::from([("severity".to_owned(), "warning".to_owned())]),
            ),
        };
        MuteWindow::compile(&config, 0).map_err(|e| e.to_string())
    }

    fn at(rfc3339: &str) -> Seconds {
        chrono::DateTime::parse_from_rfc3339(rfc3339).expect("time").timestamp()
    }

    #[test]
    fn weekday_windows_in_a_time_zone_including_across_midnight() {
        let warning = Labels::from([("severity".to_owned(), "warning".to_owned())]);
        let critical = Labels::from([("severity".to_owned(), "critical".to_owned())]);
        // 2026-11-27 is a Friday; Paris is UTC+1 in November.
        let nightly = window(&["mon-fri"], "22:00", "06:00", "Europe/Paris").expect("valid");
        assert!(nightly.mutes(&warning, at("2026-11-27T21:30:00Z")), "Fri 22:30 Paris");
        assert!(nightly.mutes(&warning, at("2026-11-28T04:00:00Z")), "Sat 05:00, Friday's night");
        assert!(!nightly.mutes(&warning, at("2026-11-28T21:30:00Z")), "Sat 22:30");
        assert!(!nightly.mutes(&warning, at("2026-11-27T20:30:00Z")), "Fri 21:30 Paris");
        assert!(!nightly.mutes(&critical, at("2026-11-27T21:30:00Z")), "not matched");
        let weekend = window(&["sat", "sun"], "00:00", "23:59", "UTC").expect("valid");
        assert!(weekend.mutes(&warning, at("2026-11-29T12:00:00Z")));
        assert!(!weekend.mutes(&warning, at("2026-11-30T12:00:00Z")));
    }

    #[test]
    fn bad_fields_name_the_value() {
        let error = window(&["funday"], "22:00", "06:00", "UTC").expect_err("bad day");
        assert!(error.to_string().contains("\"funday\""), "{error}");
        let error = window(&[], "25:00", "06:00", "UTC").expect_err("bad time");
        assert!(error.to_string().contains("\"25:00\""), "{error}");
        let error = window(&[], "22:00", "06:00", "Mars/Olympus").expect_err("bad zone");
        assert!(error.to_string().contains("\"Mars/Olympus\""), "{error}");
    }
}
