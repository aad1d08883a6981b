//! A CronJobTrigger's schedule: cron expressions through the `croner` crate (5 fields, or 6 with
//! seconds first; `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`) in the trigger's time
//! zone, or `@every <duration>`, whose ticks are the whole multiples of the duration since the
//! Unix epoch (so every replica, and every restart, agrees on them).

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use k8s_openapi::jiff::Timestamp;

/// Shortest `@every` interval.
pub const MIN_EVERY_SECONDS: i64 = 1;

/// When a CronJobTrigger ticks.
#[derive(Clone, Debug)]
pub enum Schedule {
    /// A cron expression, read in a time zone.
    Cron {
        /// The expression.
        cron: Box<Cron>,
        /// Where its hours and days are counted.
        zone: Tz,
    },
    /// Seconds between ticks.
    Every(i64),
}

impl Schedule {
    /// Reads `schedule` in `time_zone` (an IANA name; empty: UTC).
    pub fn parse(schedule: &str, time_zone: &str) -> Result<Self, String> {
        let zone = match time_zone.trim() {
            "" => Tz::UTC,
            name => Tz::from_str(name).map_err(|_| {
                format!("timeZone {name:?} is not an IANA time zone (such as Europe/Berlin)")
            })?,
        };
        let schedule = schedule.trim();
        if let Some(every) = schedule.strip_prefix("@every") {
            if !time_zone.trim().is_empty() {
                return Err("@every takes no timeZone: its ticks count from the Unix epoch".into());
            }
            return every_seconds(every.trim()).map(Schedule::Every);
        }
        let cron = parse_cron(schedule).map_err(|e| {
            format!("{schedule:?} is not a cron schedule ({e}): 5 fields (minute hour day-of-month month day-of-week), 6 with seconds first, @hourly/@daily/@weekly/@monthly/@yearly, or @every <duration> such as @every 5s")
        })?;
        Ok(Schedule::Cron {
            cron: Box::new(cron),
            zone,
        })
    }

    /// The latest tick at or before `at`.
    pub fn latest(&self, at: Timestamp) -> Option<Timestamp> {
        match self {
            Schedule::Every(seconds) => {
                Timestamp::from_second(at.as_second().div_euclid(*seconds) * seconds).ok()
            }
            Schedule::Cron { cron, zone } => {
                let local = chrono_at(at)?.with_timezone(zone);
                let tick = cron.find_previous_occurrence(&local, true).ok()?;
                Timestamp::from_second(tick.timestamp()).ok()
            }
        }
    }

    /// The first tick after `at`.
    pub fn next_after(&self, at: Timestamp) -> Option<Timestamp> {
        match self {
            Schedule::Every(seconds) => {
                let next = (at.as_second().div_euclid(*seconds) + 1) * seconds;
                Timestamp::from_second(next).ok()
            }
            Schedule::Cron { cron, zone } => {
                let local = chrono_at(at)?.with_timezone(zone);
                let tick = cron.find_next_occurrence(&local, false).ok()?;
                Timestamp::from_second(tick.timestamp()).ok()
            }
        }
    }
}

fn chrono_at(at: Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(at.as_second(), at.subsec_nanosecond().try_into().ok()?)
}

fn parse_cron(schedule: &str) -> Result<Cron, String> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(schedule)
        .map_err(|e| e.to_string())
}

/// `@every`'s duration: numbers with `h`, `m` or `s` (`5s`, `1m30s`, `2h`), at least a second.
fn every_seconds(text: &str) -> Result<i64, String> {
    let refuse = || {
        format!(
            "@every {text:?}: a duration such as 5s, 1m30s or 2h (units h, m, s; at least {MIN_EVERY_SECONDS} s)"
        )
    };
    let mut total: i64 = 0;
    let mut digits = String::new();
    let mut any = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(refuse()),
        };
        let n: i64 = digits.parse().map_err(|_| refuse())?;
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(refuse)?;
        digits.clear();
        any = true;
    }
    if !digits.is_empty() || !any || total < MIN_EVERY_SECONDS {
        return Err(refuse());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn five_fields_six_with_seconds_and_every() {
        let minutely = Schedule::parse("*/5 * * * *", "").unwrap();
        let t = at("2026-01-01T10:07:30Z");
        assert_eq!(minutely.latest(t), Some(at("2026-01-01T10:05:00Z")));
        assert_eq!(minutely.next_after(t), Some(at("2026-01-01T10:10:00Z")));
        // A tick exactly now is the latest, and not the next.
        let on = at("2026-01-01T10:05:00Z");
        assert_eq!(minutely.latest(on), Some(on));
        assert_eq!(minutely.next_after(on), Some(at("2026-01-01T10:10:00Z")));

        let seconds = Schedule::parse("*/2 * * * * *", "").unwrap();
        assert_eq!(
            seconds.latest(at("2026-01-01T10:00:03.5Z")),
            Some(at("2026-01-01T10:00:02Z"))
        );
        assert_eq!(
            seconds.next_after(at("2026-01-01T10:00:03.5Z")),
            Some(at("2026-01-01T10:00:04Z"))
        );

        let every = Schedule::parse("@every 1m30s", "").unwrap();
        assert_eq!(
            every.latest(at("2026-01-01T00:02:00Z")),
            Some(at("2026-01-01T00:01:30Z"))
        );
        assert_eq!(
            every.next_after(at("2026-01-01T00:01:30Z")),
            Some(at("2026-01-01T00:03:00Z"))
        );

        let hourly = Schedule::parse("@hourly", "").unwrap();
        assert_eq!(hourly.next_after(t), Some(at("2026-01-01T11:00:00Z")));
    }

    #[test]
    fn read_in_the_time_zone() {
        // 09:00 in Berlin is 08:00 UTC in winter.
        let nine = Schedule::parse("0 9 * * *", "Europe/Berlin").unwrap();
        assert_eq!(
            nine.next_after(at("2026-01-01T00:00:00Z")),
            Some(at("2026-01-01T08:00:00Z"))
        );
    }

    #[test]
    fn refuses_with_what_to_write() {
        for (schedule, zone) in [
            ("", ""),
            ("* * *", ""),
            ("61 * * * *", ""),
            ("* * * * *", "Mars/Olympus"),
            ("@every", ""),
            ("@every 0s", ""),
            ("@every 5", ""),
            ("@every 5x", ""),
            ("@every 5s", "Europe/Berlin"),
            ("@every 99999999999999999999h", ""),
        ] {
            assert!(
                Schedule::parse(schedule, zone).is_err(),
                "{schedule:?} {zone:?}"
            );
        }
    }
}
