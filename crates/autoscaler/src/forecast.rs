//! The predictive floor: from the service's own per-minute history ([`History`]), forecast the
//! count of the next minutes by its daily or weekly pattern, and raise the count ahead of a
//! predicted rise by the time its instances take to start.
//!
//! The floor acts only on a predicted rise: while the minutes from now to the start time ahead
//! are forecast to need more, beyond the tolerance, than the minute the stable window still
//! remembers (a stable window ago). So it rises a start time ahead of the rise and lets go once
//! the stable window has seen it. Held the rest of the time, a forecast would only add its own
//! error on top of the reactive count.
//!
//! Two seasonal forecasts, each robust to a one-off event in the history:
//! - **daily**: the lower median of the same minute on the last 7 days, once 3 of them are
//!   known (a flash crowd on one day does not move a median of three or more);
//! - **weekly**: the lower of the same minute one and two weeks ago, once one is known (and
//!   the daily forecast has its three days: one week ago alone is one day).
//!
//! Both are scored on every minute that completes, with errors that fade over a day; the one
//! with the smaller error forecasts (a weekly pattern wins once weekends have been seen to
//! differ). The forecast is then scaled by how today runs against it (the actual counts over
//! the forecast ones, over the last half hour, at most 1): a quiet day, or a weekend still
//! forecast by the daily pattern, raises less. It never scales the forecast up: a busier day is
//! the reactive rules' to follow.
//!
//! The floor only raises: scale-down is decided by the reactive rules alone, which also stay the
//! backstop when the forecast is wrong.

use crate::history::{minute_of, History, DAY_MINUTES, MINUTE_MS, WEEK_MINUTES};
use std::collections::VecDeque;
use std::time::Duration;

/// Days of the daily forecast's median: a week.
const DAILY_LOOKBACK: i64 = 7;
/// Known days the daily forecast needs: three, so that its median ignores one odd day
/// (Google Cloud's predictive autoscaling also waits for 3 days of history).
const DAILY_MIN_KNOWN: usize = 3;
/// Weeks of the weekly forecast: two, as the history keeps.
const WEEKLY_LOOKBACK: i64 = 2;
/// Completed minutes over which today's level against the forecast is measured: half an hour,
/// long enough to smooth a minute's noise, short enough to follow the day.
const LEVEL_MINUTES: usize = 30;
/// Each season's error fades by half over this many completed minutes (a day), so that the
/// choice follows a change of pattern within days.
const ERROR_HALF_LIFE_MINUTES: f64 = DAY_MINUTES as f64;

/// Which pattern a forecast follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Season {
    /// The same minute on the previous days.
    Daily,
    /// The same minute of the previous weeks.
    Weekly,
}

impl Season {
    /// Its name, for reasons.
    pub fn as_str(self) -> &'static str {
        match self {
            Season::Daily => "daily",
            Season::Weekly => "weekly",
        }
    }
}

/// A floor the forecast asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Floor {
    /// Instances wanted now.
    pub count: u32,
    /// The minute whose forecast asked for them (it may be ahead of now by the lead).
    pub minute: i64,
    /// The pattern followed.
    pub season: Season,
}

/// How well the forecast did on the minutes that completed with one.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ForecastError {
    /// Minutes scored.
    pub minutes: u64,
    /// Sum over them of |forecast − actual| (instances).
    pub absolute: f64,
    /// Sum of the actual counts.
    pub actual: f64,
}

impl ForecastError {
    /// The weighted absolute percentage error, Σ|forecast − actual| / Σ actual: 0.1 is 10 %
    /// off, on average, in instances. `None` before a minute is scored or with no count at all.
    pub fn wape(&self) -> Option<f64> {
        (self.actual > 0.0).then(|| self.absolute / self.actual)
    }

    fn add(&mut self, forecast: f64, actual: f64) {
        self.minutes += 1;
        self.absolute += (forecast - actual).abs();
        self.actual += actual;
    }
}

/// The history and what the forecast learned from it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Forecaster {
    history: History,
    /// Each season's faded absolute error over the minutes both forecast: daily, weekly.
    season_errors: [f64; 2],
    /// The chosen forecasts' error over every minute scored.
    error: ForecastError,
    /// (forecast, actual) of the last completed minutes that had a forecast, oldest first.
    recent: VecDeque<(f64, f64)>,
    /// The floor raised for a rise, kept until the stable window has seen the rise's minute:
    /// the start time measured meanwhile (often from the raise itself) must not shorten the
    /// lead and let the count fall back before the rise.
    raised: Option<Floor>,
}

impl Forecaster {
    /// The per-minute history.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The history, to restore kept days into (see [`History::restore_day`]).
    pub fn history_mut(&mut self) -> &mut History {
        &mut self.history
    }

    /// The forecast's error so far.
    pub fn error(&self) -> ForecastError {
        self.error
    }

    /// Records the count the reactive rules asked for the load at `unix_ms` (the middle of the
    /// window they averaged); when a new minute begins, scores the forecasts of the minutes
    /// that completed.
    pub(crate) fn record(&mut self, unix_ms: i64, count: f64) {
        let minute = minute_of(unix_ms);
        if let Some(last) = self.history.last_minute() {
            if minute > last {
                self.score(last);
            }
        }
        self.history.record(minute, count);
    }

    /// The floor at `unix_ms` for instances that take `lead` to serve: the highest forecast of
    /// the minutes from now to `lead` ahead, scaled by today's level, when it is more than
    /// `tolerance` above the forecast of the minute `window` ago (what a stable window of that
    /// length still averages) and needs more instances. `None` without such a predicted rise
    /// (a rise within the tolerance is the reactive rules' to follow, as they keep a count
    /// within it, and acting on it would chase the history's noise), or without a forecast of
    /// that earlier minute.
    pub(crate) fn floor(
        &mut self,
        unix_ms: i64,
        lead: Duration,
        window: Duration,
        tolerance: f64,
    ) -> Option<Floor> {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4);
        let kept = self
            .raised
            .filter(|f| unix_ms < (f.minute.saturating_mul(MINUTE_MS)).saturating_add(ms(window)));
        let found = self.rise(unix_ms, ms(lead), ms(window), tolerance);
        // The higher of a rise still held and one found now, held as long as the later.
        self.raised = match (kept, found) {
            (Some(k), Some(f)) => Some(Floor {
                minute: k.minute.max(f.minute),
                ..if f.count > k.count { f } else { k }
            }),
            (k, f) => k.or(f),
        };
        self.raised
    }

    /// A rise predicted from `unix_ms` with a lead and a window of the given milliseconds.
    fn rise(&self, unix_ms: i64, lead_ms: i64, window_ms: i64, tolerance: f64) -> Option<Floor> {
        let now = minute_of(unix_ms);
        let to = minute_of(unix_ms.saturating_add(lead_ms));
        let (here, _) = self.forecast(minute_of(unix_ms.saturating_sub(window_ms)))?;
        let level = self.level();
        let instances = |count: f64| {
            // Less a hair, so that a product that should be whole is not rounded up past it.
            (count * level - 1e-9)
                .ceil()
                .clamp(0.0, f64::from(u32::MAX)) as u32
        };
        // The highest forecast ahead, the first minute of it on a tie.
        let (minute, (count, season)) = (now..=to)
            .filter_map(|m| self.forecast(m).map(|f| (m, f)))
            .reduce(|best, next| if next.1 .0 > best.1 .0 { next } else { best })?;
        let rise = count > here * (1.0 + tolerance) && instances(count) > instances(here);
        let count = instances(count);
        rise.then_some(Floor {
            count,
            minute,
            season,
        })
    }

    /// The forecast of `minute`: the season with the smaller error. None before the daily
    /// forecast has its 3 days, whatever the weekly one knows: one week ago alone is one day.
    pub(crate) fn forecast(&self, minute: i64) -> Option<(f64, Season)> {
        let daily = self.daily(minute)?;
        match self.weekly(minute) {
            Some(w) if self.season_errors[1] < self.season_errors[0] => Some((w, Season::Weekly)),
            _ => Some((daily, Season::Daily)),
        }
    }

    fn daily(&self, minute: i64) -> Option<f64> {
        let mut known = [0.0; DAILY_LOOKBACK as usize];
        let mut n = 0;
        for k in 1..=DAILY_LOOKBACK {
            if let Some(c) = self.history.get(minute - k * DAY_MINUTES) {
                known[n] = c;
                n += 1;
            }
        }
        if n < DAILY_MIN_KNOWN {
            return None;
        }
        let known = &mut known[..n];
        known.sort_unstable_by(f64::total_cmp);
        Some(known[(n - 1) / 2])
    }

    fn weekly(&self, minute: i64) -> Option<f64> {
        (1..=WEEKLY_LOOKBACK)
            .filter_map(|k| self.history.get(minute - k * WEEK_MINUTES))
            .min_by(f64::total_cmp)
    }

    /// Today's counts over the forecast ones, over the last [`LEVEL_MINUTES`] scored, at most 1.
    /// 1 while less than one instance a minute was forecast on average: before a morning's rise
    /// a fraction of an instance against none would read as a day at zero.
    fn level(&self) -> f64 {
        let (f, a) = self
            .recent
            .iter()
            .fold((0.0, 0.0), |(f, a), &(fc, ac)| (f + fc, a + ac));
        if f >= self.recent.len() as f64 && f > 0.0 {
            (a / f).min(1.0)
        } else {
            1.0
        }
    }

    /// Scores the forecasts of `minute`, now complete.
    fn score(&mut self, minute: i64) {
        let Some(actual) = self.history.get(minute) else {
            return;
        };
        let fade = 0.5f64.powf(1.0 / ERROR_HALF_LIFE_MINUTES);
        if let (Some(d), Some(w)) = (self.daily(minute), self.weekly(minute)) {
            self.season_errors[0] = self.season_errors[0] * fade + (d - actual).abs();
            self.season_errors[1] = self.season_errors[1] * fade + (w - actual).abs();
        }
        if let Some((f, _)) = self.forecast(minute) {
            self.error.add(f, actual);
            if self.recent.len() == LEVEL_MINUTES {
                self.recent.pop_front();
            }
            self.recent.push_back((f, actual));
        }
    }
}

/// `HH:MM` UTC of `minute`, for reasons.
pub(crate) fn clock(minute: i64) -> String {
    let of_day = minute.rem_euclid(DAY_MINUTES);
    format!("{:02}:{:02} UTC", of_day / 60, of_day % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::MINUTE_MS;

    const MINUTE: Duration = Duration::from_secs(60);

    /// The wall-clock time of the start of `minute`, in milliseconds.
    fn minute_start_ms(minute: i64) -> i64 {
        minute * MINUTE_MS
    }

    /// A forecaster fed `days` days of a pattern: `count(minute of day, day)` each minute,
    /// one record per minute.
    fn learned(days: i64, count: impl Fn(i64, i64) -> f64) -> Forecaster {
        let mut f = Forecaster::default();
        for m in 0..days * DAY_MINUTES {
            f.record(minute_start_ms(m), count(m % DAY_MINUTES, m / DAY_MINUTES));
        }
        f
    }

    /// 2 instances, and 10 from 09:00 to 09:30.
    fn surge(minute_of_day: i64, _day: i64) -> f64 {
        if (540..570).contains(&minute_of_day) {
            10.0
        } else {
            2.0
        }
    }

    #[test]
    fn no_forecast_before_three_days_of_history() {
        let f = learned(2, surge);
        assert_eq!(f.forecast(2 * DAY_MINUTES + 545), None);
        let f = learned(3, surge);
        assert_eq!(
            f.forecast(3 * DAY_MINUTES + 545),
            Some((10.0, Season::Daily))
        );
    }

    #[test]
    fn the_floor_rises_a_lead_ahead_of_a_learned_surge_until_the_stable_window_sees_it() {
        let mut f = learned(4, surge);
        let today = 4 * DAY_MINUTES;
        let lead = Duration::from_secs(40);
        let at = |m: i64, s: i64| minute_start_ms(today + m) + s * 1000;
        // 08:59:10: a lead ahead is 08:59:50, not yet the surge.
        assert_eq!(f.floor(at(539, 10), lead, MINUTE, 0.1), None);
        // 08:59:30: 09:00:10 is in the surge.
        let floor = f.floor(at(539, 30), lead, MINUTE, 0.1).unwrap();
        assert_eq!((floor.count, floor.minute), (10, today + 540));
        assert_eq!(clock(floor.minute), "09:00 UTC");
        // Through the first minute of the surge, which the stable window has not seen yet.
        assert_eq!(
            f.floor(at(540, 30), lead, MINUTE, 0.1).map(|f| f.count),
            Some(10)
        );
        // A stable window into the surge no rise is predicted: the floor lets go.
        assert_eq!(f.floor(at(545, 0), lead, MINUTE, 0.1), None);
        assert_eq!(f.floor(at(600, 0), lead, MINUTE, 0.1), None);
    }

    #[test]
    fn a_one_off_day_does_not_move_the_daily_median() {
        // Day 2 had a flash crowd all day long.
        let f = learned(4, |m, day| if day == 2 { 50.0 } else { surge(m, day) });
        assert_eq!(
            f.forecast(4 * DAY_MINUTES + 100),
            Some((2.0, Season::Daily))
        );
    }

    #[test]
    fn a_weekly_pattern_wins_once_weekends_differ() {
        // Days 5 and 6 of each week (the weekend) run at half.
        let weekly = |m, day: i64| {
            let c = surge(m, day);
            if day % 7 >= 5 {
                c / 2.0
            } else {
                c
            }
        };
        let f = learned(13, weekly);
        let saturday = 12 * DAY_MINUTES + 545; // day 12 = day 5 of the second week
        assert_eq!(f.forecast(saturday), Some((5.0, Season::Weekly)));
        assert!(f.error().wape().is_some_and(|e| e < 0.2), "{:?}", f.error());
    }

    #[test]
    fn a_day_quieter_than_forecast_raises_less() {
        // Four days of the surge pattern, then today at a third of it.
        let mut f = learned(4, |m, d| surge(m, d) * 3.0);
        let today = 4 * DAY_MINUTES;
        for m in 0..500 {
            f.record(minute_start_ms(today + m), 2.0);
        }
        let floor = f.floor(
            minute_start_ms(today + 539),
            Duration::from_secs(60),
            MINUTE,
            0.1,
        );
        assert_eq!(floor.map(|f| f.count), Some(10), "30 × (2/6)");
        // Day 3 was forecast exactly; today's 499 completed minutes were 4 off each.
        let error = f.error();
        assert_eq!(error.minutes, DAY_MINUTES as u64 + 499);
        assert_eq!(error.absolute, 4.0 * 499.0);
    }
}
