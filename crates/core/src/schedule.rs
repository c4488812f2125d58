//! A job's `schedule`: when its runs start, and what a firing does while the last run still
//! runs ([`Overlap`]). Pure: every answer is a function of the pattern and a given time.
//!
//! A pattern is POSIX/Vixie cron (`minute hour day-of-month month day-of-week`, with an
//! optional seconds field first), read by the `croner` crate, in UTC or in the IANA time zone
//! a leading `CRON_TZ=Europe/Paris` (or `TZ=`) names, as Kubernetes' CronJob reads them. A
//! local time that a daylight-saving change skips fires at the first instant after the change;
//! one that occurs twice fires once.

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// What a firing does while the job's previous run still runs (Kubernetes' CronJob
/// `concurrencyPolicy` has the same three: Forbid, Allow-ish, Replace).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// The firing is skipped; the next run starts at the first firing after the last run ends.
    #[default]
    Skip,
    /// The firing waits: a run starts as soon as the last one ends (one firing is kept).
    Queue,
    /// The last run is cancelled (its tasks stop) and a new run starts.
    Replace,
}

/// The values `overlap` takes in a deploy file.
pub const OVERLAPS: [&str; 3] = ["skip", "queue", "replace"];

impl Overlap {
    /// Reads `skip`, `queue` or `replace`.
    pub fn parse(text: &str) -> Result<Overlap, String> {
        match text {
            "skip" => Ok(Overlap::Skip),
            "queue" => Ok(Overlap::Queue),
            "replace" => Ok(Overlap::Replace),
            _ => Err(format!(
                "unknown overlap {text:?}: use one of {}",
                OVERLAPS.join(", ")
            )),
        }
    }

    /// Whether it is the default (left out of stored specs, so older ones keep their form).
    pub fn is_default(&self) -> bool {
        *self == Overlap::default()
    }

    /// As the deploy file spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Queue => "queue",
            Overlap::Replace => "replace",
        }
    }
}

/// A parsed `schedule`.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: croner::Cron,
    zone: chrono_tz::Tz,
}

impl Schedule {
    /// Reads `[CRON_TZ=Zone ]pattern`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let text = text.trim();
        let (zone, pattern) = match text.split_once(char::is_whitespace) {
            Some((first, rest)) if first.starts_with("CRON_TZ=") || first.starts_with("TZ=") => {
                let name = first.split_once('=').map_or("", |(_, z)| z);
                let zone = chrono_tz::Tz::from_str(name).map_err(|_| {
                    format!(
                        "unknown time zone {name:?}: give an IANA name such as Europe/Paris or UTC"
                    )
                })?;
                (zone, rest.trim())
            }
            _ => (chrono_tz::Tz::UTC, text),
        };
        if pattern.starts_with('@') {
            return Err(format!(
                "{pattern:?}: give the five cron fields (for @daily, \"0 0 * * *\")"
            ));
        }
        let cron = croner::Cron::from_str(pattern)
            .map_err(|e| format!("invalid cron pattern {pattern:?}: {e}"))?;
        Ok(Schedule { cron, zone })
    }

    /// The first firing strictly after `after_ms` (unix ms), or None if the pattern never
    /// fires again (`0 0 30 2 *`: February 30th) or the time is out of range.
    ///
    /// The pattern is matched against the zone's wall clock (croner searching in UTC, which
    /// has no daylight saving), and each match is then placed in the zone: a wall time that
    /// occurs twice fires at its first occurrence only, one that a change skips fires at the
    /// first minute after the change.
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        // Firings are on whole seconds, whatever the milliseconds of `after`.
        let whole = after_ms - after_ms % 1_000;
        let after: DateTime<Utc> = Utc
            .timestamp_millis_opt(i64::try_from(whole).ok()?)
            .single()?;
        let mut wall = after.with_timezone(&self.zone).naive_local();
        // A match at or before `after` comes only from a repeated hour (its first occurrence
        // fired already): the search goes on from the end of that hour, so two steps suffice.
        for _ in 0..4 {
            wall = self
                .cron
                .find_next_occurrence(&Utc.from_utc_datetime(&wall), false)
                .ok()?
                .naive_utc();
            let ms = u64::try_from(self.instant_of(wall)?.timestamp_millis()).ok()?;
            if ms > after_ms {
                return Some(ms);
            }
            wall = self.end_of_repeat(wall);
        }
        None
    }

    /// The last second of the repeated hour `wall` is in, or `wall` if it occurs once.
    fn end_of_repeat(&self, wall: chrono::NaiveDateTime) -> chrono::NaiveDateTime {
        use chrono::LocalResult;
        let repeated = |t| {
            matches!(
                self.zone.from_local_datetime(&t),
                LocalResult::Ambiguous(..)
            )
        };
        if !repeated(wall) {
            return wall;
        }
        let mut t = wall;
        for _ in 0..(24 * 60) {
            t += chrono::Duration::minutes(1);
            if !repeated(t) {
                break;
            }
        }
        t - chrono::Duration::seconds(1)
    }

    /// The latest firing at or before `at_ms`, searching forward from `from_ms` (a firing);
    /// `at_ms` itself when there are too many in between (a gap of more than a day of
    /// per-second firings).
    pub fn latest_up_to(&self, from_ms: u64, at_ms: u64) -> u64 {
        let mut latest = from_ms;
        for _ in 0..MAX_CATCH_UP {
            match self.next_after(latest) {
                Some(n) if n <= at_ms => latest = n,
                _ => return latest,
            }
        }
        at_ms
    }

    /// The instant of wall time `wall` in the zone (see [`Schedule::next_after`]).
    fn instant_of(&self, wall: chrono::NaiveDateTime) -> Option<DateTime<chrono_tz::Tz>> {
        use chrono::LocalResult;
        let mut t = wall;
        // Daylight-saving gaps are at most a few hours; a minute at a time finds the end.
        for _ in 0..(24 * 60) {
            match self.zone.from_local_datetime(&t) {
                LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => return Some(at),
                LocalResult::None => t += chrono::Duration::minutes(1),
            }
        }
        None
    }
}

/// `ms` (unix ms) as `2026-03-28T12:00:00Z`, for messages about firings.
pub fn format_utc(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(DateTime::<Utc>::from_timestamp_millis)
        .map_or_else(
            || format!("{ms} ms"),
            |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        )
}

/// Most firings [`Schedule::latest_up_to`] steps over.
const MAX_CATCH_UP: usize = 100_000;

/// What the schedule does for a job at a pass, given its current run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firing {
    /// Nothing now.
    Wait,
    /// Start a new run at `at_ms` (now or later): the last run has ended.
    NextRun {
        /// When the new run starts.
        at_ms: u64,
        /// A firing passed while the last run ran and was skipped.
        skipped_ms: Option<u64>,
    },
    /// Cancel the running run and start a new one now (`overlap = "replace"`).
    Replace {
        /// The firing that replaces it.
        fired_ms: u64,
    },
}

/// The schedule's decision at `now_ms` for a job whose current run started (or starts) at
/// `run_at_ms` and has ended (`ended`) or not.
pub fn decide(
    schedule: &Schedule,
    overlap: Overlap,
    run_at_ms: u64,
    ended: bool,
    now_ms: u64,
) -> Firing {
    let Some(next) = schedule.next_after(run_at_ms) else {
        return Firing::Wait;
    };
    if !ended {
        return match overlap {
            // The latest firing that passed: after a gap, one replacement, not one per firing.
            Overlap::Replace if now_ms >= next && now_ms >= run_at_ms => Firing::Replace {
                fired_ms: schedule.latest_up_to(next, now_ms),
            },
            _ => Firing::Wait,
        };
    }
    if next > now_ms {
        return Firing::NextRun {
            at_ms: next,
            skipped_ms: None,
        };
    }
    // The next firing passed while the run ran (or while no leader was there to see it).
    match overlap {
        // Every firing runs: one that passed while nothing ran (the run ended before this
        // pass) runs now.
        Overlap::Queue | Overlap::Replace => Firing::NextRun {
            at_ms: now_ms,
            skipped_ms: None,
        },
        Overlap::Skip => match schedule.next_after(now_ms) {
            Some(at_ms) => Firing::NextRun {
                at_ms,
                skipped_ms: Some(next),
            },
            None => Firing::Wait,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-03-28T12:00:00Z, a Saturday; Europe/Paris moves to summer time on the 29th at 02:00.
    const SAT_NOON: u64 = 1_774_699_200_000;
    const MIN: u64 = 60_000;
    const HOUR: u64 = 60 * MIN;

    fn s(text: &str) -> Schedule {
        Schedule::parse(text).unwrap()
    }

    #[test]
    fn next_firings_in_utc_and_with_seconds() {
        assert_eq!(
            s("0 3 * * *").next_after(SAT_NOON),
            Some(SAT_NOON + 15 * HOUR)
        );
        assert_eq!(
            s("*/15 * * * *").next_after(SAT_NOON),
            Some(SAT_NOON + 15 * MIN)
        );
        assert_eq!(
            s("*/2 * * * * *").next_after(SAT_NOON),
            Some(SAT_NOON + 2_000)
        );
        // Strictly after: a firing at exactly `after` is not the next one.
        assert_eq!(
            s("0 12 * * *").next_after(SAT_NOON),
            Some(SAT_NOON + 24 * HOUR)
        );
        assert_eq!(s("0 0 30 2 *").next_after(SAT_NOON), None, "February 30th");
    }

    #[test]
    fn cron_tz_names_the_zone_and_daylight_saving_is_followed() {
        // 01:00 in Paris on Sunday is 00:00 UTC (winter time, UTC+1)...
        let paris = s("CRON_TZ=Europe/Paris 0 1 * * *");
        let sunday = paris.next_after(SAT_NOON).unwrap();
        assert_eq!(sunday, SAT_NOON + 12 * HOUR);
        // ...and on Monday 23:00 UTC the day before (summer time since Sunday 02:00, UTC+2).
        assert_eq!(paris.next_after(sunday), Some(sunday + 23 * HOUR));
        // 02:30 does not exist in Paris that Sunday: it fires once, just after the change.
        let skipped = s("TZ=Europe/Paris 30 2 * * *")
            .next_after(SAT_NOON)
            .unwrap();
        assert_eq!(
            skipped,
            SAT_NOON + 13 * HOUR,
            "03:00 summer time, 01:00 UTC"
        );
    }

    #[test]
    fn firings_are_written_in_utc() {
        assert_eq!(format_utc(SAT_NOON), "2026-03-28T12:00:00Z");
    }

    #[test]
    fn the_repeated_hour_fires_once_even_from_its_second_copy() {
        // 2026-10-25: Paris goes from 03:00 summer time back to 02:00 winter time (01:00 UTC).
        const CHANGE: u64 = 1_792_890_000_000;
        let five = s("CRON_TZ=Europe/Paris */5 * * * *");
        // 02:10 in the second copy (01:10 UTC): 02:15 fired in the first copy; next is 03:00
        // winter time, 02:00 UTC.
        assert_eq!(five.next_after(CHANGE + 10 * MIN), Some(CHANGE + HOUR));
        // From the first copy (00:10 UTC), 02:15 summer time (00:15 UTC) comes next.
        assert_eq!(five.next_after(CHANGE - 50 * MIN), Some(CHANGE - 45 * MIN));
    }

    #[test]
    fn firings_are_on_whole_seconds() {
        assert_eq!(
            s("*/2 * * * * *").next_after(SAT_NOON + 1_500),
            Some(SAT_NOON + 2_000)
        );
        assert_eq!(
            s("*/2 * * * * *").next_after(SAT_NOON + 2_500),
            Some(SAT_NOON + 4_000)
        );
    }

    #[test]
    fn bad_patterns_and_zones_say_what_is_wrong() {
        for (text, phrase) in [
            (
                "CRON_TZ=Mars/Olympus 0 3 * * *",
                "unknown time zone \"Mars/Olympus\"",
            ),
            ("0 25 * * *", "invalid cron pattern"),
            ("every day", "invalid cron pattern"),
            ("@daily", "give the five cron fields"),
            ("", "invalid cron pattern"),
        ] {
            let e = Schedule::parse(text).unwrap_err();
            assert!(e.contains(phrase), "{text:?}: {e}");
        }
    }

    #[test]
    fn a_run_that_ended_before_the_next_firing_waits_for_it() {
        let hourly = s("0 * * * *");
        let run_at = SAT_NOON;
        let now = SAT_NOON + 10 * MIN;
        for overlap in [Overlap::Skip, Overlap::Queue, Overlap::Replace] {
            assert_eq!(
                decide(&hourly, overlap, run_at, true, now),
                Firing::NextRun {
                    at_ms: SAT_NOON + HOUR,
                    skipped_ms: None
                }
            );
        }
    }

    #[test]
    fn a_firing_during_a_run_is_skipped_queued_or_replaces_it() {
        let hourly = s("0 * * * *");
        let run_at = SAT_NOON;
        let during = SAT_NOON + HOUR + 5 * MIN;
        // Still running when the 13:00 firing passes.
        assert_eq!(
            decide(&hourly, Overlap::Skip, run_at, false, during),
            Firing::Wait
        );
        assert_eq!(
            decide(&hourly, Overlap::Queue, run_at, false, during),
            Firing::Wait
        );
        assert_eq!(
            decide(&hourly, Overlap::Replace, run_at, false, during),
            Firing::Replace {
                fired_ms: SAT_NOON + HOUR
            }
        );
        // Before 13:00, replace waits too.
        assert_eq!(
            decide(
                &hourly,
                Overlap::Replace,
                run_at,
                false,
                SAT_NOON + 30 * MIN
            ),
            Firing::Wait
        );
        // Long after 13:00, replace takes the latest firing, once.
        assert_eq!(
            decide(
                &hourly,
                Overlap::Replace,
                run_at,
                false,
                SAT_NOON + 3 * HOUR + MIN
            ),
            Firing::Replace {
                fired_ms: SAT_NOON + 3 * HOUR
            }
        );
        // The run ends at 13:05: skip waits for 14:00; queue starts at once.
        assert_eq!(
            decide(&hourly, Overlap::Skip, run_at, true, during),
            Firing::NextRun {
                at_ms: SAT_NOON + 2 * HOUR,
                skipped_ms: Some(SAT_NOON + HOUR)
            }
        );
        assert_eq!(
            decide(&hourly, Overlap::Queue, run_at, true, during),
            Firing::NextRun {
                at_ms: during,
                skipped_ms: None
            }
        );
    }

    #[test]
    fn a_run_not_yet_due_is_never_replaced() {
        let hourly = s("0 * * * *");
        // The run is set for 13:00 and it is 12:10: nothing to do.
        let decision = decide(
            &hourly,
            Overlap::Replace,
            SAT_NOON + HOUR,
            false,
            SAT_NOON + 10 * MIN,
        );
        assert_eq!(decision, Firing::Wait);
    }
}
