//! The foresight reference: what knowing the load's level in advance, but not its single
//! seconds, is worth.
//!
//! The oracle knows every second's load, which no policy can. A policy's gap to the oracle
//! mixes two things: what it could have known (the level the load is going to, a minute or an
//! hour ahead) and the seconds' own noise, which nothing that reacts or forecasts foresees.
//! This reference is told the first: for each second, the needed instances of every second in
//! a window around it, half of it still to come, and it runs a quantile of them. It holds that
//! quantile through the whole window, so it cannot run more for a busy second than for the
//! quieter ones around it. It is replayed under the same
//! model as every policy (it pays its starts, and asks for instances a start delay ahead) at
//! the cheapest of [`FORESIGHT_WINDOWS`] × [`FORESIGHT_QUANTILES`] within the sweep's missed
//! seconds.
//!
//! It is a reference, not a bound: a cleverer use of the same foresight (spending the missed
//! seconds where they save most) could cost less. But a policy that sees only the past would
//! be lucky to beat it, and where even it costs well above the oracle, knowing the load's level
//! ahead, used this way, does not close the gap.

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

/// Each second's count: the `quantile` of the instances `needs` says the seconds of the
/// `window` around it need.
fn counts(needs: &[u32], window: Duration, quantile: f64) -> Vec<u32> {
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

/// For each second `s`, the most of `counts[s + 1 ..= s + span]` (0 past the end): what must
/// exist at the end of `s`, as a new instance serves `span` seconds later and one removed now
/// is gone for the seconds between. A sliding maximum (a deque of the candidates), so a long
/// start delay costs no more than a short one.
fn most_ahead(counts: &[u32], span: usize) -> Vec<u32> {
    let mut out = vec![0; counts.len()];
    // Indices in the window, the furthest first; their counts fall from front to back.
    let mut window: std::collections::VecDeque<usize> = std::collections::VecDeque::new();
    for s in (0..counts.len()).rev() {
        let entering = s + 1;
        if entering < counts.len() {
            while window
                .back()
                .is_some_and(|&i| counts[i] <= counts[entering])
            {
                window.pop_back();
            }
            window.push_back(entering);
        }
        while window.front().is_some_and(|&i| i > s.saturating_add(span)) {
            window.pop_front();
        }
        out[s] = window.front().map_or(0, |&i| counts[i]);
    }
    out
}

/// Asks at the end of each second for what [`most_ahead`] says.
struct Ahead(Vec<u32>);

impl Policy for Ahead {
    fn decide(&mut self, _load: f64, view: View) -> u32 {
        let s = usize::try_from(view.second).unwrap_or(usize::MAX);
        self.0.get(s).copied().unwrap_or(0)
    }
}

/// The instances each second of `load` needs under `model`.
fn needs(model: &Model, load: &[f64]) -> Vec<u32> {
    load.iter().map(|l| model.needed(*l)).collect()
}

/// The reference told `told`, replayed. It starts with what the seconds before its first
/// instances could serve need (as the oracle does).
pub fn replay_at(model: &Model, load: &[f64], told: Told) -> Outcome {
    replay_told(model, load, &needs(model, load), told)
}

/// [`replay_at`] with the needs of `load` already counted.
fn replay_told(model: &Model, load: &[f64], needs: &[u32], told: Told) -> Outcome {
    let counts = counts(needs, told.window, told.quantile);
    let span = usize::try_from(model.start_delay_s)
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    let first = counts.iter().take(span).max();
    let initial = first.copied().unwrap_or(0);
    let mut ahead = Ahead(most_ahead(&counts, span));
    replay(model, load, &mut ahead, initial, 0..0).0
}

/// Every window of [`FORESIGHT_WINDOWS`] with every quantile of [`FORESIGHT_QUANTILES`].
fn grid() -> Vec<Told> {
    FORESIGHT_WINDOWS
        .iter()
        .flat_map(|&window| FORESIGHT_QUANTILES.map(|quantile| Told { window, quantile }))
        .collect()
}

/// The reference at the cheapest of [`FORESIGHT_WINDOWS`] × [`FORESIGHT_QUANTILES`] that misses
/// at most `missed_percent` % of the seconds; `None` if none does, which only a budget below
/// zero makes so: the most of a window never misses (it asks a start delay ahead, and what the
/// first seconds need is there from the start).
pub fn foresight(model: &Model, load: &[f64], missed_percent: f64) -> Option<(Told, Outcome)> {
    let told = grid();
    let needs = needs(model, load);
    let runs = crate::on_every_core(&told, |&t| (t, replay_told(model, load, &needs, t)));
    runs.into_iter()
        .filter(|(_, out)| out.missed_percent() <= missed_percent)
        .min_by_key(|(_, out)| out.instance_seconds)
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
        let most = counts(&needs, window, 1.0);
        assert_eq!(most, [1, 5, 5, 5, 5, 5, 1, 1, 1, 1]);
        // The median ignores the spike.
        let median = counts(&needs, window, 0.5);
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
        // missed.
        let needs: Vec<u32> = (0..1000).map(|s| if s % 50 == 0 { 9 } else { 1 }).collect();
        let load = loads(&needs);
        let (told, out) = foresight(&model(2), &load, 1.0).expect("one fits");
        assert!(out.missed_seconds <= 10, "{out:?}");
        let cheapest = grid()
            .into_iter()
            .map(|t| replay_at(&model(2), &load, t))
            .filter(|o| o.missed_seconds <= 10)
            .map(|o| o.instance_seconds)
            .min();
        assert_eq!(Some(out.instance_seconds), cheapest, "{told:?}");
        // The cheapest runs the 98th percentile of ±5 min: away from the trace's ends, a window
        // of 601 s holds 12 spikes, or 13 when centred on one, so its 589th smallest need is 1,
        // or 9 exactly at a spike (589 = ⌈0.98 × 601⌉ and 601 − 12 = 589).
        assert_eq!((told.window.as_secs(), told.quantile), (600, 0.98));
        // With 3 %, all spikes may be missed: the median's one instance is enough.
        let (told, out) = foresight(&model(2), &load, 3.0).expect("one fits");
        assert_eq!((told.quantile, out.instance_seconds), (0.5, 1000));
        assert_eq!(told.window, FORESIGHT_WINDOWS[0]);
        // With no budget, the most of a window misses nothing: it asks a start delay ahead,
        // and what the first seconds need is there from the start. Below zero, nothing fits.
        assert!(foresight(&model(2), &load, 0.0).is_some());
        assert_eq!(foresight(&model(2), &load, -1.0), None);
    }

    #[test]
    fn the_most_ahead_slides_over_the_seconds_a_start_delay_covers() {
        let counts = [1, 5, 2, 0, 3, 1];
        assert_eq!(most_ahead(&counts, 2), [5, 2, 3, 3, 1, 0]);
        assert_eq!(most_ahead(&counts, 1), [5, 2, 0, 3, 1, 0]);
        assert_eq!(most_ahead(&counts, 100), [5, 3, 3, 3, 1, 0]);
        assert_eq!(most_ahead(&[], 3), Vec::<u32>::new());
    }

    #[test]
    fn it_starts_with_what_the_seconds_before_its_first_starts_need() {
        // A rise at second 5 with starts of 5 s: the last second that only instances there from
        // the start can serve (those asked for at the end of second 0 serve from second 6).
        let mut needs = vec![1u32; 20];
        needs[5..].fill(4);
        let told = Told {
            window: Duration::ZERO,
            quantile: 1.0,
        };
        let out = replay_at(&model(5), &loads(&needs), told);
        assert_eq!((out.missed_seconds, out.instance_seconds), (0, 4 * 20));
    }

    #[test]
    fn no_load_costs_nothing_and_an_empty_trace_is_replayed() {
        let (_, out) = foresight(&model(10), &[0.0; 100], 1.0).expect("fits");
        assert_eq!((out.instance_seconds, out.missed_seconds), (0, 0));
        let (_, out) = foresight(&model(86_400), &[], 1.0).expect("fits");
        assert_eq!(out.seconds, 0);
    }
}
