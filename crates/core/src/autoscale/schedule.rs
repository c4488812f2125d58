//! Schedule windows: days of the week and a time of day, in a fixed UTC offset, that set the
//! bounds (e.g. business hours: min 5 on weekdays 09:00–18:00 at UTC+01:00).
//!
//! Time zones are a fixed offset per window, not a tz-database name: no daylight-saving rules,
//! so a window in a zone with DST needs one window per offset. That keeps ebb free of a tz
//! database.

use super::validate::bounds_problem;
use super::{MAX_UTC_OFFSET_MINUTES, MINUTES_PER_DAY};
use serde::{Deserialize, Serialize};
use std::fmt;

/// 1970-01-01, day 0 of Unix time, was a Thursday (index 3 from Monday).
const UNIX_DAY0_WEEKDAY: i64 = 3;

/// Minutes since midnight of `hour:minute`, for [`ScheduleWindow::start`] and
/// [`ScheduleWindow::end`].
pub const fn hm(hour: u16, minute: u16) -> u16 {
    hour * 60 + minute
}

/// A recurring stretch of time with its own bounds, in a fixed UTC offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleWindow {
    /// Local days on which the window opens. Written `days = "mon-fri"`.
    #[serde(default)]
    pub days: Weekdays,
    /// Local opening time, minutes since midnight. With `end`, written `hours = "09:00-18:00"`.
    #[serde(default)]
    pub start: u16,
    /// Local closing time, minutes since midnight, exclusive; up to [`MINUTES_PER_DAY`] (24:00).
    /// Below `start`, the window runs over midnight (`"22:00-06:00"`).
    #[serde(default = "end_of_day")]
    pub end: u16,
    /// Local time = UTC + this many minutes. Written `utc_offset = "+01:00"`.
    #[serde(default)]
    pub utc_offset_minutes: i32,
    /// Fewest instances while the window is open.
    #[serde(default)]
    pub min: u32,
    /// Most instances while the window is open.
    #[serde(default)]
    pub max: u32,
}

fn end_of_day() -> u16 {
    MINUTES_PER_DAY
}

impl ScheduleWindow {
    /// Whether the window is open at wall-clock time `unix_ms`. When `end < start` the window
    /// runs over midnight: on a listed day it is open from `start` to 24:00 and from 00:00 to
    /// `end` (the day is checked on the local date of each instant, cron-style).
    pub fn contains(&self, unix_ms: i64) -> bool {
        let minutes_per_day = i64::from(MINUTES_PER_DAY);
        let local_minutes = unix_ms.div_euclid(60_000) + i64::from(self.utc_offset_minutes);
        let day = local_minutes.div_euclid(minutes_per_day);
        let minute = local_minutes.rem_euclid(minutes_per_day);
        let weekday = (day + UNIX_DAY0_WEEKDAY).rem_euclid(7);
        let (start, end) = (i64::from(self.start), i64::from(self.end));
        let in_hours = if start <= end {
            (start..end).contains(&minute)
        } else {
            minute >= start || minute < end
        };
        self.days.contains(weekday as u8) && in_hours
    }

    /// Problems as (field, message), the field as the deploy file spells it.
    pub(super) fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.days.0 & Weekdays::ALL.0 == 0 {
            out.push((
                "days",
                "no day selected: list at least one of mon..sun".into(),
            ));
        }
        if self.start >= MINUTES_PER_DAY || self.end > MINUTES_PER_DAY {
            out.push((
                "hours",
                format!(
                    "{}-{} minutes is not a time of day: use \"HH:MM-HH:MM\" from 00:00 to 24:00",
                    self.start, self.end
                ),
            ));
        } else if self.start == self.end {
            out.push((
                "hours",
                format!(
                    "{} is empty: it ends when it starts; for the whole day leave `hours` out",
                    format_hours(self.start, self.end)
                ),
            ));
        }
        if self.utc_offset_minutes.abs() > MAX_UTC_OFFSET_MINUTES {
            out.push((
                "utc_offset",
                format!(
                    "{} is outside -12:00 .. +14:00",
                    format_utc_offset(self.utc_offset_minutes)
                ),
            ));
        }
        if let Some((field, message)) = bounds_problem(self.min, self.max) {
            out.push((field, message));
        }
        out
    }
}

/// `mon-fri 09:00-18:00 UTC+01:00`
impl fmt::Display for ScheduleWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} UTC{}",
            self.days,
            format_hours(self.start, self.end),
            format_utc_offset(self.utc_offset_minutes)
        )
    }
}

/// A set of weekdays, bit 0 = Monday … bit 6 = Sunday. Written
/// `"mon-fri"`, `"sat,sun"`, `"fri-mon"` (ranges wrap), `"daily"` or `"*"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Weekdays(pub u8);

const DAY_NAMES: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

impl Weekdays {
    /// Monday to Friday (`"weekdays"`).
    pub const WEEKDAYS: Weekdays = Weekdays(0b001_1111);
    /// Saturday and Sunday (`"weekend"`).
    pub const WEEKEND: Weekdays = Weekdays(0b110_0000);
    /// Every day (`"daily"` or `"*"`), the default.
    pub const ALL: Weekdays = Weekdays(0b111_1111);

    /// Whether `weekday` (0 = Monday … 6 = Sunday) is in the set.
    pub fn contains(self, weekday: u8) -> bool {
        weekday < 7 && self.0 & (1 << weekday) != 0
    }

    /// Parses day names (at least three letters), ranges and comma lists, case-insensitive; also
    /// `"daily"`, `"*"`, `"weekdays"` and `"weekend"`. The error lists what is accepted.
    pub fn parse(text: &str) -> Result<Weekdays, String> {
        let lower = text.trim().to_ascii_lowercase();
        match lower.as_str() {
            "daily" | "*" => return Ok(Weekdays::ALL),
            "weekdays" => return Ok(Weekdays::WEEKDAYS),
            "weekend" | "weekends" => return Ok(Weekdays::WEEKEND),
            _ => {}
        }
        let day = |word: &str| {
            let word = word.trim();
            (word.len() >= 3)
                .then(|| DAY_NAMES.iter().position(|d| d.starts_with(word)))
                .flatten()
                .map(|i| i as u8)
                .ok_or_else(|| {
                    format!(
                        "unknown day {word:?} in {text:?}: use mon, tue, wed, thu, fri, sat, \
                         sun, ranges like \"mon-fri\", lists like \"sat,sun\", or \"daily\""
                    )
                })
        };
        let mut bits = 0u8;
        for part in lower.split(',') {
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (day(a)?, day(b)?);
                    let mut d = a;
                    loop {
                        bits |= 1 << d;
                        if d == b {
                            break;
                        }
                        d = (d + 1) % 7;
                    }
                }
                None => bits |= 1 << day(part)?,
            }
        }
        Ok(Weekdays(bits))
    }
}

impl Default for Weekdays {
    fn default() -> Self {
        Weekdays::ALL
    }
}

/// `daily`, or runs of days: `mon-fri`, `sat,sun`, `mon,wed-fri`.
impl fmt::Display for Weekdays {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Weekdays::ALL {
            return f.write_str("daily");
        }
        let short = |d: u8| &DAY_NAMES[usize::from(d)][..3];
        let mut parts = Vec::new();
        let mut d = 0;
        while d < 7 {
            if !self.contains(d) {
                d += 1;
                continue;
            }
            let start = d;
            while d + 1 < 7 && self.contains(d + 1) {
                d += 1;
            }
            match d - start {
                0 => parts.push(short(start).to_string()),
                1 => parts.push(format!("{},{}", short(start), short(d))),
                _ => parts.push(format!("{}-{}", short(start), short(d))),
            }
            d += 1;
        }
        f.write_str(&parts.join(","))
    }
}

impl TryFrom<String> for Weekdays {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Weekdays::parse(&s)
    }
}

impl From<Weekdays> for String {
    fn from(d: Weekdays) -> String {
        d.to_string()
    }
}

/// Parses `"09:00-18:00"` into minutes since midnight (start, end); the end may be `24:00`.
/// An end before the start runs over midnight.
pub fn parse_hours(text: &str) -> Result<(u16, u16), String> {
    let bad = || {
        format!(
            "invalid hours {text:?}: expected \"HH:MM-HH:MM\" such as \"09:00-18:00\" (the end \
             is exclusive; \"22:00-06:00\" runs over midnight)"
        )
    };
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    let time = |t: &str, latest: u16| {
        let (h, m) = t.trim().split_once(':')?;
        let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
        if !(1..=2).contains(&h.len()) || m.len() != 2 || !digits(h) || !digits(m) {
            return None;
        }
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        let minutes = h * 60 + m;
        (m < 60 && minutes <= latest).then_some(minutes)
    };
    let start = time(a, MINUTES_PER_DAY - 1).ok_or_else(bad)?;
    let end = time(b, MINUTES_PER_DAY).ok_or_else(bad)?;
    Ok((start, end))
}

/// `09:00-18:00`, the form [`parse_hours`] reads.
pub fn format_hours(start: u16, end: u16) -> String {
    let hm = |t: u16| format!("{:02}:{:02}", t / 60, t % 60);
    format!("{}-{}", hm(start), hm(end))
}

/// Parses a fixed UTC offset, `"+01:00"`, `"-05:30"`, `"+02"` or `"Z"`, into minutes.
pub fn parse_utc_offset(text: &str) -> Result<i32, String> {
    let s = text.trim();
    let bad = || {
        let names = if s.contains('/') || s.chars().all(|c| c.is_ascii_alphabetic()) {
            " (time-zone names are not supported: their offset changes with daylight saving)"
        } else {
            ""
        };
        format!(
            "invalid utc_offset {text:?}: expected a fixed offset such as \"+01:00\" or \
             \"-05:30\"{names}"
        )
    };
    if s.eq_ignore_ascii_case("z") || s.eq_ignore_ascii_case("utc") {
        return Ok(0);
    }
    let (sign, rest) = match s.split_at_checked(1) {
        Some(("+", rest)) => (1, rest),
        Some(("-", rest)) => (-1, rest),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "00"));
    let digits = |s: &str, len: usize| s.len() == len && s.chars().all(|c| c.is_ascii_digit());
    if !digits(h, 2) || !digits(m, 2) {
        return Err(bad());
    }
    let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    let minutes = sign * (h * 60 + m);
    if m >= 60 || minutes.abs() > MAX_UTC_OFFSET_MINUTES {
        return Err(format!(
            "utc_offset {text:?} is not a UTC offset: they run from -12:00 to +14:00"
        ));
    }
    Ok(minutes)
}

/// `+01:00`, the form [`parse_utc_offset`] reads.
pub fn format_utc_offset(minutes: i32) -> String {
    let sign = if minutes < 0 { '-' } else { '+' };
    let m = minutes.unsigned_abs();
    format!("{sign}{:02}:{:02}", m / 60, m % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-01-01 was a Monday; 00:00 UTC that day.
    const MONDAY_2024: i64 = 1_704_067_200_000;
    const HOUR_MS: i64 = 3_600_000;

    fn business_hours(offset: i32) -> ScheduleWindow {
        ScheduleWindow {
            days: Weekdays::WEEKDAYS,
            start: hm(9, 0),
            end: hm(18, 0),
            utc_offset_minutes: offset,
            min: 5,
            max: 20,
        }
    }

    #[test]
    fn business_hours_are_open_on_weekdays_between_start_and_end() {
        let w = business_hours(0);
        assert!(!w.contains(MONDAY_2024 + 8 * HOUR_MS + 59 * 60_000));
        assert!(w.contains(MONDAY_2024 + 9 * HOUR_MS));
        assert!(w.contains(MONDAY_2024 + 17 * HOUR_MS + 59 * 60_000));
        assert!(!w.contains(MONDAY_2024 + 18 * HOUR_MS));
        // Saturday 6 Jan, noon.
        assert!(!w.contains(MONDAY_2024 + (5 * 24 + 12) * HOUR_MS));
    }

    #[test]
    fn the_offset_shifts_the_window_in_utc() {
        // 09:00 at UTC+02:00 is 07:00 UTC.
        let w = business_hours(120);
        assert!(w.contains(MONDAY_2024 + 7 * HOUR_MS));
        assert!(!w.contains(MONDAY_2024 + 16 * HOUR_MS));
        // Sunday 23:30 UTC is Monday 01:30 at UTC+02:00: a weekday, but outside hours.
        assert!(!w.contains(MONDAY_2024 - HOUR_MS / 2));
    }

    #[test]
    fn an_overnight_window_wraps_midnight() {
        let w = ScheduleWindow {
            start: hm(22, 0),
            end: hm(6, 0),
            days: Weekdays::ALL,
            ..business_hours(0)
        };
        assert!(w.contains(MONDAY_2024 + 23 * HOUR_MS));
        assert!(w.contains(MONDAY_2024 + 5 * HOUR_MS));
        assert!(!w.contains(MONDAY_2024 + 12 * HOUR_MS));
    }

    #[test]
    fn instants_before_1970_use_the_right_weekday() {
        // 1969-12-29 was a Monday.
        let monday_1969 = -3 * 24 * HOUR_MS;
        assert!(business_hours(0).contains(monday_1969 + 10 * HOUR_MS));
    }

    #[test]
    fn days_and_windows_display_as_a_user_writes_them() {
        assert_eq!(Weekdays::WEEKDAYS.to_string(), "mon-fri");
        assert_eq!(Weekdays(0b000_1101).to_string(), "mon,wed,thu");
        assert_eq!(Weekdays::WEEKEND.to_string(), "sat,sun");
        assert_eq!(
            business_hours(60).to_string(),
            "mon-fri 09:00-18:00 UTC+01:00"
        );
        assert_eq!(
            business_hours(-330).to_string(),
            "mon-fri 09:00-18:00 UTC-05:30"
        );
    }
}
