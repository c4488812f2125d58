//! Schedule windows: days of the week and a time of day, in a fixed UTC offset, that set the
//! bounds (e.g. business hours: min 5 on weekdays 09:00–18:00 at UTC+01:00).
//!
//! Time zones are a fixed offset per window, not a tz-database name: no daylight-saving rules,
//! so a window in a zone with DST needs two configs a year (or one per offset, as two windows).
//! That keeps the crate free of a tz database; a parser can map names to offsets later.

use std::fmt;

const MINUTES_PER_DAY: i64 = 24 * 60;
/// 1970-01-01, day 0 of Unix time, was a Thursday (index 3 from Monday).
const UNIX_DAY0_WEEKDAY: i64 = 3;
/// Real UTC offsets run from −12:00 to +14:00.
const MAX_OFFSET_MINUTES: i32 = 14 * 60;

/// Minutes since midnight of `hour:minute`, for [`Window::start`] and [`Window::end`].
pub const fn hm(hour: u16, minute: u16) -> u16 {
    hour * 60 + minute
}

/// A set of weekdays, bit 0 = Monday … bit 6 = Sunday: the deploy file's own type.
pub use ebb_core::autoscale::Weekdays as Days;

/// A recurring stretch of time with its own bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Local days on which the window is open.
    pub days: Days,
    /// Local opening time in minutes since midnight (see [`hm`]).
    pub start: u16,
    /// Local closing time in minutes since midnight, exclusive. When `end < start` the window
    /// runs over midnight: on a listed day it is open from `start` to 24:00 and from 00:00 to
    /// `end` (the day is checked on the local date of each instant, cron-style).
    pub end: u16,
    /// Local time = UTC + this many minutes (UTC+01:00 → 60).
    pub utc_offset_minutes: i32,
    /// Fewest instances while the window is open.
    pub min: u32,
    /// Most instances while the window is open.
    pub max: u32,
}

impl Window {
    /// Whether the window is open at wall-clock time `unix_ms`.
    pub fn contains(&self, unix_ms: i64) -> bool {
        let local_minutes = unix_ms.div_euclid(60_000) + i64::from(self.utc_offset_minutes);
        let day = local_minutes.div_euclid(MINUTES_PER_DAY);
        let minute = local_minutes.rem_euclid(MINUTES_PER_DAY) as u16;
        let weekday = (day + UNIX_DAY0_WEEKDAY).rem_euclid(7) as u8;
        let in_hours = if self.start <= self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        };
        self.days.contains(weekday) && in_hours
    }

    /// Problems as (field, message), for [`Config::validate`](crate::Config::validate).
    pub(crate) fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.days.0 & Days::ALL.0 == 0 {
            out.push((
                "days",
                "no day selected: list at least one of mon..sun".to_string(),
            ));
        }
        // `end` may be 24:00 (1440): a window that closes at midnight, or covers the whole day.
        for (field, t, last) in [
            ("start", self.start, MINUTES_PER_DAY - 1),
            ("end", self.end, MINUTES_PER_DAY),
        ] {
            if i64::from(t) > last {
                out.push((
                    field,
                    format!("{t} minutes is not a time of day (00:00–24:00)"),
                ));
            }
        }
        if self.start == self.end {
            out.push(("end", "equals start: the window would be empty".to_string()));
        }
        if self.utc_offset_minutes.abs() > MAX_OFFSET_MINUTES {
            let o = self.utc_offset_minutes;
            out.push((
                "utc_offset",
                format!("{o} minutes is outside UTC−12:00..UTC+14:00"),
            ));
        }
        if self.min > self.max {
            let (min, max) = (self.min, self.max);
            out.push(("min", format!("{min} is above max {max}; set min ≤ max")));
        }
        out
    }
}

impl fmt::Display for Window {
    /// `mon-fri 09:00-18:00 UTC+01:00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.utc_offset_minutes < 0 {
            '-'
        } else {
            '+'
        };
        let off = self.utc_offset_minutes.unsigned_abs();
        write!(
            f,
            "{} {:02}:{:02}-{:02}:{:02} UTC{sign}{:02}:{:02}",
            self.days,
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60,
            off / 60,
            off % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-01-01 was a Monday; 00:00 UTC that day.
    const MONDAY_2024: i64 = 1_704_067_200_000;
    const HOUR_MS: i64 = 3_600_000;

    fn business_hours(offset: i32) -> Window {
        Window {
            days: Days::WEEKDAYS,
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
        let w = Window {
            start: hm(22, 0),
            end: hm(6, 0),
            days: Days::ALL,
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
        assert_eq!(Days::WEEKDAYS.to_string(), "mon-fri");
        assert_eq!(Days(0b000_1101).to_string(), "mon,wed,thu");
        assert_eq!(Days::WEEKEND.to_string(), "sat,sun");
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
