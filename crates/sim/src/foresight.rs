//! The foresight reference: what knowing the load's level in advance, but not its single
//! seconds, is worth.
//!
//! The oracle knows every second's load, which no policy can. A policy's gap to the oracle
//! mixes two things: what it could have known (the level the load is going to, a minute or an
//! hour ahead) and the seconds' own noise, which nothing that reacts or forecasts foresees.
//! This reference is told the first: for each second, the needed instances of every second in
//! a window around it, half of it still to come, and it runs a quantile of them. It is
//! replayed under the same model as every policy (it pays its starts, and asks for instances a
//! start delay ahead) at the cheapest of [`FORESIGHT_WINDOWS`] × [`FORESIGHT_QUANTILES`]
//! within the sweep's missed seconds.
//!
//! It is a reference, not a bound: a cleverer use of the same foresight (spending the missed
//! seconds where they save most) could cost less. But a policy that sees only the past would
//! be lucky to beat it, and where it costs well above the oracle, the gap is the trace's
//! second-to-second noise, which only foresight of single seconds would close.

use crate::model::{replay, Model, Outcome, Policy, View};
use std::time::Duration;

/// How much load around each second the reference may be told, half before and half after:
/// a minute, ten minutes or an hour, whichever costs least. A minute tells it the clumps half a
/// minute ahead; an hour, the slopes of a daily cycle. More than one, so that the reference
/// does not depend on one choice of window for the kind of load.
pub const FORESIGHT_WINDOWS: [Duration; 3] = [
    Duration::from_secs(60),
    Duration::from_secs(600),
    Duration::from_secs(3600),
];

/// The quantiles of the window's needs it tries.
pub const FORESIGHT_QUANTILES: [f64; 10] =
    [0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999, 1.0];

/// What the reference ran: a quantile of the needs over a window around each second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Told {
    /// The window, half before and half after.
    pub window: Duration,
    /// The quantile of its seconds' needs.
    pub quantile: f64,
}

/// Counts of values `0..len` with prefix sums in `O(log len)` (a Fenwick tree), for a
/// sliding window's quantiles.
struct Counts {
    tree: Vec<u32>,
}

impl Counts {
    fn new(len: usize) -> Counts {
        Counts {
            tree: vec![0; len + 1],
        }
    }

    fn add(&mut self, value: u32, delta: i32) {
        let mut i = value as usize + 1;
        while i < self.tree.len() {
            self.tree[i] = self.tree[i].wrapping_add_signed(delta);
            i += i & i.wrapping_neg();
        }
    }

    /// The smallest value with at least `k` values at or below it (`k` ≥ 1).
    fn kth(&self, k: u32) -> u32 {
        let (mut at, mut left) = (0usize, k);
        let mut step = (self.tree.len() - 1).next_power_of_two();
        while step > 0 {
            let next = at + step;
            if next < self.tree.len() && self.tree[next] < left {
                at = next;
                left -= self.tree[next];
            }
            step /= 2;
        }
        at as u32
    }
}

/// Each second's count: the `quantile` of the instances needed over the `window` around it.
pub fn counts(model: &Model, load: &[f64], window: Duration, quantile: f64) -> Vec<u32> {
    let needs: Vec<u32> = load.iter().map(|l| model.needed(*l)).collect();
    let Some(&top) = needs.iter().max() else {
        return Vec::new();
    };
    let half = usize::try_from(window.as_secs() / 2).unwrap_or(usize::MAX);
    let mut inside = Counts::new(top as usize + 1);
    let (mut from, mut to) = (0usize, 0usize);
    let mut out = Vec::with_capacity(needs.len());
    for s in 0..needs.len() {
        while to < needs.len() && to <= s.saturating_add(half) {
            inside.add(needs[to], 1);
            to += 1;
        }
        while from < s.saturating_sub(half) {
            inside.add(needs[from], -1);
            from += 1;
        }
        let n = (to - from) as f64;
        let k = ((quantile.clamp(0.0, 1.0) * n).ceil() as u32).max(1);
        out.push(inside.kth(k));
    }
    out
}

/// Asks at the end of each second for the most any second it could still serve needs: a new
/// instance serves a start delay later, and one removed now is gone for the seconds between.
struct Ahead {
    counts: Vec<u32>,
    start_delay_s: u64,
}

impl Policy for Ahead {
    fn decide(&mut self, _load: f64, view: View) -> u32 {
        let from = (view.second + 1) as usize;
        let to = view.second.saturating_add(self.start_delay_s + 2) as usize;
        let ahead = self.counts.get(from..to.min(self.counts.len()));
        ahead.and_then(|c| c.iter().max().copied()).unwrap_or(0)
    }
}

/// The reference told `told`, replayed.
pub fn replay_at(model: &Model, load: &[f64], told: Told) -> Outcome {
    let counts = counts(model, load, told.window, told.quantile);
    let initial = counts.first().copied().unwrap_or(0);
    let mut ahead = Ahead {
        counts,
        start_delay_s: model.start_delay_s,
    };
    replay(model, load, &mut ahead, initial, 0..0).0
}

/// The reference at the cheapest of [`FORESIGHT_WINDOWS`] × [`FORESIGHT_QUANTILES`] that misses
/// at most `missed_percent` % of the seconds; told the most over an hour (it never misses a
/// second an hour's window holds) if none does.
pub fn foresight(model: &Model, load: &[f64], missed_percent: f64) -> (Told, Outcome) {
    let told: Vec<Told> = FORESIGHT_WINDOWS
        .iter()
        .flat_map(|&window| FORESIGHT_QUANTILES.map(|quantile| Told { window, quantile }))
        .collect();
    let runs = crate::on_every_core(&told, |&t| (t, replay_at(model, load, t)));
    let best = runs
        .into_iter()
        .filter(|(_, out)| out.missed_percent() <= missed_percent)
        .min_by_key(|(_, out)| out.instance_seconds);
    best.unwrap_or_else(|| {
        let told = Told {
            window: FORESIGHT_WINDOWS[FORESIGHT_WINDOWS.len() - 1],
            quantile: 1.0,
        };
        (told, replay_at(model, load, told))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(d: u64) -> Model {
        Model {
            capacity: 10.0,
            start_delay_s: d,
        }
    }

    /// Loads whose seconds need these counts.
    fn loads(needs: &[u32]) -> Vec<f64> {
        needs.iter().map(|&n| f64::from(n) * 10.0).collect()
    }

    #[test]
    fn counts_finds_the_kth_smallest() {
        let mut c = Counts::new(10);
        for v in [3, 7, 7, 0, 9] {
            c.add(v, 1);
        }
        assert_eq!([1, 2, 3, 4, 5].map(|k| c.kth(k)), [0, 3, 7, 7, 9]);
        c.add(7, -1);
        c.add(0, -1);
        assert_eq!([1, 2, 3].map(|k| c.kth(k)), [3, 7, 9]);
    }

    #[test]
    fn each_second_runs_a_quantile_of_the_window_around_it() {
        let needs = [1, 1, 1, 5, 1, 1, 1, 1, 1, 1];
        let window = Duration::from_secs(4);
        // The most of the two seconds on each side: 5 near the spike, 1 elsewhere.
        let most = counts(&model(0), &loads(&needs), window, 1.0);
        assert_eq!(most, [1, 5, 5, 5, 5, 5, 1, 1, 1, 1]);
        // The median ignores the spike.
        let median = counts(&model(0), &loads(&needs), window, 0.5);
        assert_eq!(median, [1; 10]);
    }

    #[test]
    fn told_the_window_s_most_it_misses_nothing_and_pays_its_starts() {
        // A step from 1 to 4 instances and back, with starts of 3 s.
        let mut needs = vec![1u32; 40];
        needs[20..30].fill(4);
        let window = Duration::from_secs(2);
        let out = replay_at(
            &model(3),
            &loads(&needs),
            Told {
                window,
                quantile: 1.0,
            },
        );
        assert_eq!(out.missed_seconds, 0);
        // Four from the end of second 15 (a start delay before second 19, the window's first
        // second of the step) to the end of second 30: three more for 15 seconds.
        assert_eq!(out.instance_seconds, 40 + 3 * 15);
        // A lone spike is one second of its window: the median does not run for it.
        needs[35] = 6;
        let median = replay_at(
            &model(3),
            &loads(&needs),
            Told {
                window,
                quantile: 0.5,
            },
        );
        assert_eq!(median.missed_seconds, 1);
    }

    #[test]
    fn it_takes_the_cheapest_quantile_within_the_budget() {
        // Spikes of 9 every 50 s over a level of 1: at 1 % (10 of 1,000 s) not all 20 may be
        // missed, so instances are held for some.
        let needs: Vec<u32> = (0..1000).map(|s| if s % 50 == 0 { 9 } else { 1 }).collect();
        let (told, out) = foresight(&model(2), &loads(&needs), 1.0);
        assert!(out.missed_seconds <= 10, "{out:?}");
        assert!(out.instance_seconds > 1000, "{told:?} {out:?}");
        // With 3 %, all spikes may be missed: the median's one instance is enough.
        let (told, out) = foresight(&model(2), &loads(&needs), 3.0);
        assert_eq!((told.quantile, out.instance_seconds), (0.5, 1000));
        assert_eq!(told.window, FORESIGHT_WINDOWS[0]);
    }
}
