//! The learned scale-down delay of `scale_down_delay = "auto"`: how long capacity the load
//! stopped asking for is kept, from how long the service's load has stayed below a count before
//! it asked for that count again.
//!
//! A fixed delay is wrong both ways: bursty, stationary traffic asks again for an instance
//! seconds after releasing it (each release is then a start time of missed capacity), while a
//! load that steps down for half an hour pays the whole delay at every step. Each level of the
//! policy's recommendation is a small keep-alive problem: when the recommendation falls below
//! level `k` a dip begins, and it ends when the recommendation is back at `k`. The last
//! [`GAPS_KEPT`](crate::GAPS_KEPT) dips, and the measured start time, give the delay of least cost, by the same
//! rule as the idle keep-alive ([`crate::keep_alive`]: a second of missing capacity is priced at
//! [`WAIT_PRICE`](crate::WAIT_PRICE) instance-seconds).

use crate::keep_alive::{cheapest_keep, Spells};
use ebb_core::autoscale::MAX_SCALE_WINDOW;
use std::time::Duration;

/// Highest level followed: 1,000 (the most instances a service may have).
const MAX_LEVEL: u32 = ebb_core::service::MAX_INSTANCES;

/// The dips of a service's recommendation, and the delay learned from them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dips {
    /// When the recommendation last fell below each level (index `k - 1` for level `k`). The
    /// open levels are `last + 1 ..= fell.len()` (entries below are stale); a higher level fell
    /// no later than a lower one, so the oldest are at the end.
    fell: Vec<Duration>,
    /// The recommendation at the last tick.
    last: u32,
    /// The dips (a dip longer than the longest delay counts as that), and the delay learned
    /// from them.
    dips: Spells<Duration>,
}

impl Dips {
    /// Notes the policy's recommendation at `now`.
    pub(crate) fn observe(&mut self, now: Duration, recommendation: u32) {
        let (r, last) = (recommendation.min(MAX_LEVEL) as usize, self.last as usize);
        if r > last {
            // Levels regained end their dips.
            for i in last..r.min(self.fell.len()) {
                let dip = now.saturating_sub(self.fell[i]);
                self.record(dip);
            }
            if self.fell.len() < r {
                self.fell.resize(r, now);
            }
        } else {
            // Levels lost begin theirs (the open levels above them fell earlier).
            for at in &mut self.fell[r..last] {
                *at = now;
            }
        }
        self.last = r as u32;
        // Dips open past the longest delay are as long as it needs to know.
        while self.fell.len() > r
            && self
                .fell
                .last()
                .is_some_and(|&at| at.saturating_add(MAX_SCALE_WINDOW) <= now)
        {
            self.record(MAX_SCALE_WINDOW);
            self.fell.pop();
        }
    }

    /// Forgets the open dips: the requests stopped, and when they come back the idle
    /// keep-alive, not the scale-down delay, has decided what runs.
    pub(crate) fn idle(&mut self) {
        self.fell.clear();
        self.last = 0;
    }

    fn record(&mut self, dip: Duration) {
        self.dips.push(dip.min(MAX_SCALE_WINDOW));
    }

    /// Dips remembered.
    pub fn dips(&self) -> usize {
        self.dips.len()
    }

    /// The dips remembered, oldest first: what a server keeps in its store, so that a restart
    /// or a new leader does not fall back to the fixed delay for [`MIN_GAPS`](crate::MIN_GAPS)
    /// more dips.
    pub fn dip_lengths(&self) -> impl Iterator<Item = Duration> + '_ {
        self.dips.lengths().iter().copied()
    }

    /// Dips noted since this was created (restored ones included): it changes when there is
    /// something new to keep.
    pub fn dips_noted(&self) -> u64 {
        self.dips.pushed()
    }

    /// Remembers kept `dips` (oldest first) as if seen, before any new one: none longer than
    /// the longest delay, and the last [`GAPS_KEPT`](crate::GAPS_KEPT). The dips open when
    /// they were kept are not among them: they begin again at the next fall.
    pub fn restore(&mut self, dips: impl IntoIterator<Item = Duration>) {
        for dip in dips {
            self.record(dip);
        }
    }

    /// The scale-down delay for instances that take `start` to serve, once there are
    /// [`MIN_GAPS`](crate::MIN_GAPS) dips.
    pub(crate) fn delay(&mut self, start: Duration) -> Option<Duration> {
        self.dips.learned(start, |dips, start| {
            learn_delay(dips.iter().copied(), start)
        })
    }
}

/// The delay of least cost over `dips` for instances that take `start` to serve: a dip kept
/// through costs its length; one released costs the delay, a start, and the start's wait at
/// [`WAIT_PRICE`](crate::WAIT_PRICE). Pure, for tests.
///
/// The wait is priced in full whichever level dipped: one instance of ten missing delays only
/// a tenth of the load on average, but bursty load is missed by its clumps, and a price scaled
/// by `1/level` kept too little for them (`ebb sim --sweep`: NASA ×100 at 60 s starts 1.17× →
/// 1.43× the oracle, noisy 1.97× → 2.71×; BENCHMARKS.md, issue 19).
pub fn learn_delay(dips: impl IntoIterator<Item = Duration>, start: Duration) -> Duration {
    cheapest_keep(dips, start, MAX_SCALE_WINDOW)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// Recommendations, one a second from 1 s.
    fn observed(recommendations: &[u32]) -> Dips {
        let mut d = Dips::default();
        for (i, &r) in recommendations.iter().enumerate() {
            d.observe(secs(i as u64 + 1), r);
        }
        d
    }

    #[test]
    fn a_dip_lasts_from_the_fall_below_a_level_to_the_rise_back() {
        // 5, down to 3 for 4 s, up to 4 for 2 s, back to 5: level 5 dipped 6 s, level 4 4 s.
        let d = observed(&[5, 3, 3, 3, 3, 4, 4, 5]);
        assert_eq!(d.dips.lengths(), &[secs(4), secs(6)]);
        assert_eq!(d.fell.len(), 5);
        assert_eq!(d.last, 5);
    }

    #[test]
    fn a_dip_that_does_not_end_counts_as_the_longest_delay() {
        let mut d = observed(&[3, 1]);
        d.observe(secs(2) + MAX_SCALE_WINDOW, 1);
        assert_eq!(d.dips.lengths(), &[MAX_SCALE_WINDOW, MAX_SCALE_WINDOW]);
        assert_eq!(d.fell.len(), 1);
    }

    #[test]
    fn short_dips_keep_capacity_and_long_ones_release_it() {
        // Bursty: a level needed again 3 s after it is released, with 10 s starts.
        let mut bursty = observed(&[4, 3, 3, 3, 4].repeat(20));
        let delay = bursty.delay(secs(10)).expect("learned");
        assert!(delay >= secs(3), "{delay:?}");
        // Steps: a level needed again half an hour later.
        let mut steps = Dips::default();
        for i in 0..20u64 {
            let at = i * 3600;
            steps.observe(secs(at + 1), 4);
            steps.observe(secs(at + 2), 1);
            steps.observe(secs(at + 1802), 1);
            steps.observe(secs(at + 1803), 4);
        }
        let delay = steps.delay(secs(10)).expect("learned");
        assert!(delay < secs(10), "{delay:?}");
    }

    #[test]
    fn restored_dips_are_remembered_ones_and_none_past_the_longest_delay() {
        let mut seen = observed(&[4, 3, 3, 3, 4].repeat(10));
        let mut restored = Dips::default();
        restored.restore(seen.dip_lengths());
        assert!(restored.dip_lengths().eq(seen.dip_lengths()));
        assert_eq!((restored.dips(), restored.dips_noted()), (10, 10));
        assert_eq!(restored.delay(secs(10)), seen.delay(secs(10)));
        // Nothing open came back: the next rise ends no dip.
        restored.observe(secs(1_000), 4);
        assert_eq!(restored.dips(), 10);

        let mut capped = Dips::default();
        capped.restore([MAX_SCALE_WINDOW + secs(1), secs(3)]);
        assert_eq!(capped.dips.lengths(), &[MAX_SCALE_WINDOW, secs(3)]);
    }
}
