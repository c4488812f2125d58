//! A service's history, per minute of wall-clock time: the mean count its request load asked
//! for in each minute (the stable window's count for its concurrency and rps targets). What the
//! forecast (`forecast.rs`) learns the daily and weekly pattern from.
//!
//! Counts rather than load: a count already carries the target and the noise headroom, so a
//! forecast of it is directly a floor. Only the router's request totals count: they measure
//! the load arriving rather than the instances running, so a count the forecast raised does not
//! feed its own history (cpu and memory are sums over the instances, latency and the step and
//! linear policies are relative to them). Not perfectly: rps counts completed requests and
//! concurrency grows with queueing, so an overloaded minute reads a little off. The mean rather than the highest: a minute's highest is above what the rules asked
//! for most of it, and a floor of it would hold every minute up.

use std::collections::VecDeque;

/// Milliseconds in a minute, the history's resolution.
pub const MINUTE_MS: i64 = 60_000;
/// Minutes in a day: the daily season.
pub const DAY_MINUTES: i64 = 24 * 60;
/// Minutes in a week: the weekly season.
pub const WEEK_MINUTES: i64 = 7 * DAY_MINUTES;
/// Minutes of history kept: two weekly seasons (AWS predictive scaling looks back 14 days too)
/// and a day, so that a minute being scored still sees the same minute two weeks before it.
/// 21,600 means of 4 bytes: 84 KiB per service.
pub const HISTORY_MINUTES: usize = (2 * WEEK_MINUTES + DAY_MINUTES) as usize;
/// Highest mean: a service's most instances. A count above it is recorded as it; a kept value
/// above it (or below 0) is corrupt and ignored.
const MAX_MEAN: f64 = ebb_core::service::MAX_INSTANCES as f64;

/// The minute (since the Unix epoch) that holds `unix_ms`.
pub fn minute_of(unix_ms: i64) -> i64 {
    unix_ms.div_euclid(MINUTE_MS)
}

/// Per-minute mean counts, oldest first, at most [`HISTORY_MINUTES`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// The minute of `means[0]`.
    first: i64,
    /// The mean count of each minute; NaN for a minute not observed (the server was down, or
    /// the service did not exist).
    means: VecDeque<f32>,
    /// Sum and number of the counts recorded in the newest minute.
    newest: (f64, u32),
}

impl History {
    /// Notes that `count` was asked for during `minute`. A minute before the newest is ignored
    /// (a wall clock that went back); a jump forward leaves the minutes between unseen, and one
    /// of more than twice the history's length starts it afresh.
    pub fn record(&mut self, minute: i64, count: f64) {
        if !count.is_finite() {
            return;
        }
        // As a restore would read it back.
        let count = count.clamp(0.0, MAX_MEAN);
        let Some(i) = self.slot(minute) else {
            return;
        };
        if i + 1 < self.means.len() {
            return;
        }
        if i + 1 == self.means.len() {
            self.newest.0 += count;
            self.newest.1 += 1;
        } else {
            self.newest = (count, 1);
        }
        self.set(i, (self.newest.0 / f64::from(self.newest.1)) as f32);
    }

    /// Sets a minute's mean as kept; minutes before the newest are ignored.
    fn restore(&mut self, minute: i64, mean: f64) {
        if !(0.0..=MAX_MEAN).contains(&mean) {
            return;
        }
        if let Some(i) = self.slot(minute).filter(|&i| i >= self.means.len()) {
            self.newest = (mean, 1);
            self.set(i, mean as f32);
        }
    }

    /// The index of `minute`, after starting afresh if it is far ahead; `None` before the first.
    fn slot(&mut self, minute: i64) -> Option<usize> {
        if self.means.is_empty() || minute - self.first >= 2 * HISTORY_MINUTES as i64 {
            self.means.clear();
            self.first = minute;
        }
        usize::try_from(minute - self.first).ok()
    }

    /// Writes slot `i`, leaving any minutes skipped unseen and forgetting the oldest beyond
    /// [`HISTORY_MINUTES`].
    fn set(&mut self, i: usize, mean: f32) {
        while self.means.len() <= i {
            self.means.push_back(f32::NAN);
        }
        self.means[i] = mean;
        while self.means.len() > HISTORY_MINUTES {
            self.means.pop_front();
            self.first += 1;
        }
    }

    /// The mean count asked for during `minute`, if it was observed.
    pub fn get(&self, minute: i64) -> Option<f64> {
        let i = usize::try_from(minute.checked_sub(self.first)?).ok()?;
        self.means
            .get(i)
            .filter(|m| !m.is_nan())
            .map(|&m| f64::from(m))
    }

    /// The newest minute recorded.
    pub fn last_minute(&self) -> Option<i64> {
        let len = i64::try_from(self.means.len()).ok()?;
        (len > 0).then(|| self.first + len - 1)
    }

    /// Minutes observed.
    pub fn observed(&self) -> usize {
        self.means.iter().filter(|m| !m.is_nan()).count()
    }

    /// The means of the `DAY_MINUTES` minutes of day `day` (days since the Unix epoch, UTC),
    /// to the hundredth, for keeping in a store; `None` where unseen.
    pub fn day(&self, day: i64) -> Vec<Option<f64>> {
        let start = day * DAY_MINUTES;
        (start..start + DAY_MINUTES)
            .map(|m| self.get(m).map(|v| (v * 100.0).round() / 100.0))
            .collect()
    }

    /// Merges a day kept by [`History::day`] back in. Restore days oldest first, before any
    /// minute is recorded: minutes before the newest are ignored.
    pub fn restore_day(&mut self, day: i64, means: &[Option<f64>]) {
        let start = day * DAY_MINUTES;
        for (m, v) in (start..).zip(means.iter().take(DAY_MINUTES as usize)) {
            if let Some(v) = v {
                self.restore(m, *v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_minute_keeps_its_mean_count_and_gaps_stay_unseen() {
        let mut h = History::default();
        h.record(100, 3.0);
        h.record(100, 5.0);
        h.record(100, 4.0);
        h.record(103, 1.0);
        h.record(101, 9.0);
        assert_eq!(h.get(100), Some(4.0));
        assert_eq!(
            h.get(101),
            None,
            "a minute before the newest is not written"
        );
        assert_eq!(h.get(103), Some(1.0));
        assert_eq!(h.get(99), None);
        assert_eq!(h.last_minute(), Some(103));
        assert_eq!(h.observed(), 2);
        h.record(104, f64::NAN);
        assert_eq!(h.last_minute(), Some(103), "not a number is not a count");
    }

    #[test]
    fn keeps_two_weeks_and_forgets_the_oldest_minutes() {
        let mut h = History::default();
        h.record(0, 7.0);
        h.record(HISTORY_MINUTES as i64, 2.0);
        assert_eq!(
            h.get(0),
            None,
            "one minute past the length pushes minute 0 out"
        );
        assert_eq!(h.get(HISTORY_MINUTES as i64), Some(2.0));
        assert_eq!(h.means.len(), HISTORY_MINUTES);
        // A jump far ahead starts afresh instead of filling weeks of unseen minutes.
        h.record(10 * HISTORY_MINUTES as i64, 1.0);
        assert_eq!(h.observed(), 1);
    }

    #[test]
    fn a_day_kept_and_restored_is_the_same_day() {
        let mut h = History::default();
        for m in 0..DAY_MINUTES * 2 {
            if m % 7 != 0 {
                h.record(m, (m % 13) as f64 / 4.0);
            }
        }
        let mut restored = History::default();
        restored.restore_day(0, &h.day(0));
        restored.restore_day(1, &h.day(1));
        for m in 0..DAY_MINUTES * 2 {
            assert_eq!(restored.get(m), h.get(m), "minute {m}");
        }
        // A minute recorded after a restore averages with the kept mean.
        restored.record(DAY_MINUTES * 2 - 1, 0.0);
        assert_eq!(
            restored.get(DAY_MINUTES * 2 - 1),
            Some(0.75),
            "(1.5 + 0) / 2"
        );
        assert_eq!(minute_of(-1), -1, "before the epoch rounds down");
        assert_eq!(minute_of(119_999), 1);
    }
}
