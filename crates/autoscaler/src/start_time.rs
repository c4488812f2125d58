//! How long the service's instances take to serve, measured from the decisions themselves: the
//! time from a decision that raised the count to the first tick at which that many instances
//! were ready. The forecast raises the count this far ahead of a predicted rise.
//!
//! Measured in the policy rather than reported by the server, so that the server, tests and
//! simulators measure it the same way, to the resolution of a tick.

use ebb_core::service::DEFAULT_START_PERIOD;
use std::collections::VecDeque;
use std::time::Duration;

/// Start time assumed until one is measured: the health check's default start period, the time
/// a start is given before failed checks count.
pub const ASSUMED_START_TIME: Duration = DEFAULT_START_PERIOD;
/// Longest start time believed: ten minutes. A scale-up awaited longer is forgotten, not
/// measured: its instances were most likely failing or could not be placed, and a lead of more
/// would raise the count far too early.
pub const MAX_START_TIME: Duration = Duration::from_secs(600);
/// Measurements kept; the start time is the highest of them (a forecast that raises too early
/// costs a little, one that raises too late misses).
const KEPT: usize = 8;
/// Scale-ups awaited at once; older ones are forgotten first.
const AWAITED: usize = 16;

/// The scale-ups awaited and the start times measured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartTimes {
    /// (when a decision asked for it, the ready count that serves it), oldest first.
    awaited: VecDeque<(Duration, u32)>,
    /// The last start times measured, oldest first.
    measured: VecDeque<Duration>,
    /// The ready instances at the last tick.
    ready: u32,
    /// Start times measured (or restored) since this was created: a change to keep.
    noted: u64,
}

impl StartTimes {
    /// A decision at `now` raised the count to `desired`. Awaited only when more than the ready
    /// instances: a count taken back up while drained instances still serve starts nothing.
    pub(crate) fn asked(&mut self, now: Duration, desired: u32) {
        if desired <= self.ready {
            return;
        }
        if self.awaited.len() == AWAITED {
            self.awaited.pop_front();
        }
        self.awaited.push_back((now, desired));
    }

    /// A decision at `now` lowered the count to `desired`: counts above it will not come.
    pub(crate) fn lowered(&mut self, desired: u32) {
        self.awaited.retain(|&(_, c)| c <= desired);
    }

    /// `ready` instances serve at `now`: every scale-up they satisfy is measured.
    pub(crate) fn ready(&mut self, now: Duration, ready: u32) {
        self.ready = ready;
        self.awaited
            .retain(|&(at, _)| now.saturating_sub(at) <= MAX_START_TIME);
        while let Some(&(at, count)) = self.awaited.front() {
            if count > ready {
                break;
            }
            self.awaited.pop_front();
            self.note(now.saturating_sub(at));
        }
    }

    fn note(&mut self, start: Duration) {
        if self.measured.len() == KEPT {
            self.measured.pop_front();
        }
        self.measured.push_back(start);
        self.noted += 1;
    }

    /// The start times measured, oldest first: what a server keeps with a learned keep-alive's
    /// gaps, since a plan learned for the assumed start time is another plan (a 30 s start
    /// prices a cold start at 330 s, and bridges gaps a 1 s start would release).
    pub fn times(&self) -> impl Iterator<Item = Duration> + '_ {
        self.measured.iter().copied()
    }

    /// Start times measured (restored ones included) since this was created: it changes when
    /// there is something new to keep.
    pub fn noted(&self) -> u64 {
        self.noted
    }

    /// Remembers kept start `times` (oldest first) as if measured, before any new one; none
    /// past [`MAX_START_TIME`].
    pub fn restore(&mut self, times: impl IntoIterator<Item = Duration>) {
        for t in times.into_iter().filter(|t| *t <= MAX_START_TIME) {
            self.note(t);
        }
    }

    /// The highest of the last start times measured, if any was.
    pub fn measured(&self) -> Option<Duration> {
        self.measured.iter().max().copied()
    }

    /// The start time to plan with: the measured one, else [`ASSUMED_START_TIME`].
    pub fn estimate(&self) -> Duration {
        self.measured().unwrap_or(ASSUMED_START_TIME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_scale_up_is_measured_when_its_instances_serve() {
        let mut s = StartTimes::default();
        assert_eq!(s.estimate(), ASSUMED_START_TIME);
        s.asked(secs(10), 3);
        s.asked(secs(12), 5);
        s.ready(secs(14), 2);
        assert_eq!(s.measured(), None, "not yet 3 ready");
        s.ready(secs(17), 4);
        assert_eq!(s.measured(), Some(secs(7)));
        s.ready(secs(30), 5);
        assert_eq!(s.measured(), Some(secs(18)), "the highest kept");
    }

    #[test]
    fn restored_times_are_measured_ones_and_none_past_the_cap() {
        let mut s = StartTimes::default();
        s.restore([secs(3), MAX_START_TIME + secs(1), secs(2)]);
        assert_eq!(s.times().collect::<Vec<_>>(), [secs(3), secs(2)]);
        assert_eq!((s.estimate(), s.noted()), (secs(3), 2));
    }

    #[test]
    fn a_count_given_up_is_not_awaited() {
        let mut s = StartTimes::default();
        s.asked(secs(10), 6);
        s.lowered(2);
        s.ready(secs(500), 6);
        assert_eq!(s.measured(), None);
    }

    #[test]
    fn at_most_a_few_are_kept_and_none_is_believed_past_the_cap() {
        let mut s = StartTimes::default();
        s.asked(secs(0), 1);
        s.ready(secs(5000), 1);
        assert_eq!(s.measured(), None, "awaited past the cap: forgotten");
        for i in 0..KEPT as u64 + 3 {
            s.asked(secs(6000 + i * 10), 2 + i as u32);
            s.ready(
                secs(6000 + i * 10 + 2 + u64::from(i == 0) * 5),
                2 + i as u32,
            );
        }
        assert_eq!(
            s.measured(),
            Some(secs(2)),
            "the longer first one was pushed out"
        );
        // Taken back up while the instances still serve: nothing starts, nothing is measured.
        s.lowered(3);
        s.asked(secs(7000), 8);
        s.ready(secs(7001), 12);
        assert_eq!(s.measured(), Some(secs(2)));
        s.ready(secs(8999), 0);
        for i in 0..100 {
            s.asked(secs(9000 + i), 1000 + i as u32);
        }
        assert_eq!(s.awaited.len(), AWAITED);
    }
}
