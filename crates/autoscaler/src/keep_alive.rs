//! The learned keep-alive of `idle_timeout = "auto"`: how long a `min = 0` service keeps an
//! instance once its requests stop, and when it starts one again before the next is due.
//!
//! One fixed timeout is wrong both ways: a service called every ten minutes pays for ten
//! minutes of an idle instance per call, or a cold start per call, while one called a few times
//! a day pays the whole timeout after each. Following Shahrad et al., "Serverless in the Wild"
//! (USENIX ATC 2020), the autoscaler learns the service's own idle gaps (the last
//! [`GAPS_KEPT`]) and chooses, among
//! - keeping an instance for a time `K` after the last request, and
//! - releasing it at once and pre-warming one for a window of the gaps (the paper's hybrid
//!   histogram policy),
//!
//! the plan that would have cost the least over those gaps: the instance-seconds it keeps or
//! starts, and each second a request would have waited for a cold start at
//! [`WAIT_PRICE`] instance-seconds (ski rental with a learned distribution). The paper picks
//! the 5th and 99th percentiles; scoring each candidate on the gaps themselves makes the same
//! choice where the gaps cluster, and releases at once where they are long and unpredictable
//! (a memoryless arrival gives nothing for an idle instance to wait for). Until [`MIN_GAPS`]
//! are seen, an instance is kept as long as a cold start costs ([`break_even`]), at most the
//! fixed `idle_timeout`.

use std::collections::VecDeque;
use std::time::Duration;

/// Idle gaps remembered: the last 128. Enough for percentiles down to the 1st, few enough to
/// follow a service whose callers change.
pub const GAPS_KEPT: usize = 128;
/// Gaps seen before a plan is learned: 8. Fewer say little about the next one.
pub const MIN_GAPS: usize = 8;
/// Shortest quiet spell counted as an idle gap, and the shortest keep-alive: 2 s. Shorter
/// pauses belong to a trickle of requests, and a second-long keep-alive would release an
/// instance between two requests of the same visit.
pub const MIN_GAP: Duration = Duration::from_secs(2);
/// What a second of a request waiting for a cold start costs, in seconds of an idle instance:
/// 10, a judgement of an order of magnitude. So a cold start of a start time `S` is worth
/// `11 S` (the instance starting, and the wait), and an instance is kept through a gap when
/// gaps like it are shorter than that: for a 10 s start, gaps under about 2 min are bridged,
/// gaps of ten minutes or more are not (unless they come regularly enough to pre-warm).
pub const WAIT_PRICE: f64 = 10.0;
/// How long an idle instance costs as much as a cold start of `start`: the instance-seconds of
/// the start and [`WAIT_PRICE`] for each second a request waits for it. Keeping an instance
/// this long after the last request, then releasing it, costs at most twice the cheaper of
/// keeping and releasing at once, whatever the gap turns out to be (deterministic ski rental,
/// Karlin et al., "Competitive snoopy caching", 1988). For a 10 s start: 110 s.
pub fn break_even(start: Duration) -> Duration {
    start.mul_f64(1.0 + WAIT_PRICE)
}

/// Margin on a window learned from gaps: 10 % earlier for a pre-warm and 10 % later for a
/// keep-alive, as the paper's hybrid histogram policy.
const MARGIN: f64 = 0.10;
/// Points of the sorted gaps tried as a pre-warm window's ends: every 1/32 of them.
const WINDOW_POINTS: usize = 32;

/// What a learned plan does after the last request: zero from `keep` on, except that one
/// instance runs again through `prewarm`, a window of quiet time in which the next request is
/// likely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAlivePlan {
    /// How long an instance is kept after the last request.
    pub keep: Duration,
    /// The quiet time from which one instance is started again, and until which it is kept.
    pub prewarm: Option<(Duration, Duration)>,
    /// The gaps the plan was learned from.
    pub gaps: usize,
}

impl KeepAlivePlan {
    /// Whether a service quiet for `quiet` should run no instance.
    pub fn releases(&self, quiet: Duration) -> bool {
        quiet >= self.keep && !self.prewarms(quiet)
    }

    /// Whether a service quiet for `quiet` should run a pre-warmed instance.
    pub fn prewarms(&self, quiet: Duration) -> bool {
        self.prewarm
            .is_some_and(|(from, until)| quiet >= from && quiet < until)
    }
}

/// The last [`GAPS_KEPT`] spells of a kind, and what was learned from them for a start time:
/// learned again after a new spell or for another start time. Each spell has a weight, the
/// spells of its length it stands for: one for an idle gap; for a learned delay's dip
/// (`dips.rs`), the levels one rise regained, so that one rise through hundreds of levels
/// weighs what they cost without pushing out everything else kept.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Spells<T> {
    /// Their lengths and weights, oldest first.
    spells: VecDeque<(Duration, u32)>,
    /// The sum of their weights.
    weight: u64,
    learned: Option<(T, Duration)>,
    /// Spells pushed since this was created: a change to keep.
    pushed: u64,
}

impl<T> Default for Spells<T> {
    fn default() -> Self {
        Spells {
            spells: VecDeque::new(),
            weight: 0,
            learned: None,
            pushed: 0,
        }
    }
}

impl<T: Copy> Spells<T> {
    pub(crate) fn push(&mut self, length: Duration, weight: u32) {
        if self.spells.len() == GAPS_KEPT {
            if let Some((_, oldest)) = self.spells.pop_front() {
                self.weight -= u64::from(oldest);
            }
        }
        self.spells.push_back((length, weight));
        self.weight += u64::from(weight);
        self.learned = None;
        self.pushed += 1;
    }

    pub(crate) fn len(&self) -> usize {
        self.spells.len()
    }

    /// The sum of their weights.
    pub(crate) fn weight(&self) -> u64 {
        self.weight
    }

    /// Spells pushed since this was created.
    pub(crate) fn pushed(&self) -> u64 {
        self.pushed
    }

    /// Their lengths and weights, oldest first.
    pub(crate) fn spells(&self) -> impl Iterator<Item = (Duration, u32)> + '_ {
        self.spells.iter().copied()
    }

    /// Whether they are enough to learn from: they weigh [`MIN_GAPS`].
    pub(crate) fn learns(&self) -> bool {
        self.weight >= MIN_GAPS as u64
    }

    /// What `learn` makes of the spells for `start`, once they weigh [`MIN_GAPS`].
    pub(crate) fn learned(
        &mut self,
        start: Duration,
        learn: impl FnOnce(&VecDeque<(Duration, u32)>, Duration) -> T,
    ) -> Option<T> {
        if !self.learns() {
            return None;
        }
        match self.learned {
            Some((value, learned_for)) if learned_for == start => Some(value),
            _ => {
                let value = learn(&self.spells, start);
                self.learned = Some((value, start));
                Some(value)
            }
        }
    }
}

/// The service's recent idle gaps and the plan learned from them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeepAlive {
    /// The gaps, and the plan learned from them.
    gaps: Spells<KeepAlivePlan>,
    /// The most the policy asked for since the last gap: what a pre-warm starts again.
    serving: u32,
    /// Until when a pre-warmed count holds, and the count.
    hold: Option<(Duration, u32)>,
}

impl KeepAlive {
    /// Notes a request at `at` after the previous one at `previous`: a gap when at least
    /// [`MIN_GAP`] apart.
    pub(crate) fn request(&mut self, previous: Duration, at: Duration) {
        let gap = at.saturating_sub(previous);
        if gap < MIN_GAP {
            return;
        }
        self.gaps.push(gap, 1);
        self.serving = 0;
    }

    /// Notes a count the policy asked for while requests come.
    pub(crate) fn serving(&mut self, count: u32) {
        self.serving = self.serving.max(count);
    }

    /// The instances a pre-warm starts: the most the policy asked for between the last two
    /// gaps, at least one.
    pub fn prewarm_count(&self) -> u32 {
        self.serving.max(1)
    }

    /// Holds `count` until `until`: pre-warmed, it must not be taken back by the first seconds
    /// of the requests it was started for, averaged into a window of quiet.
    pub(crate) fn hold(&mut self, until: Duration, count: u32) {
        self.hold = Some((until, count));
    }

    /// Ends a hold: the service was released.
    pub(crate) fn release(&mut self) {
        self.hold = None;
    }

    /// The pre-warmed count held at `now`, if any.
    pub(crate) fn held(&self, now: Duration) -> Option<u32> {
        self.hold.filter(|&(until, _)| now < until).map(|(_, n)| n)
    }

    /// Gaps remembered.
    pub fn gaps(&self) -> usize {
        self.gaps.len()
    }

    /// The gaps remembered, oldest first: what a server keeps in its store so that a restart
    /// or a new leader does not wait for [`MIN_GAPS`] more before the plan applies again.
    pub fn gap_lengths(&self) -> impl Iterator<Item = Duration> + '_ {
        self.gaps.spells().map(|(gap, _)| gap)
    }

    /// Gaps noted since this was created (restored ones included): it changes when there is
    /// something new to keep.
    pub fn gaps_noted(&self) -> u64 {
        self.gaps.pushed()
    }

    /// Remembers kept `gaps` (oldest first) as if seen, before any new one. Only gaps of at
    /// least [`MIN_GAP`] count, and the last [`GAPS_KEPT`].
    pub fn restore(&mut self, gaps: impl IntoIterator<Item = Duration>) {
        for gap in gaps.into_iter().filter(|g| *g >= MIN_GAP) {
            self.gaps.push(gap, 1);
        }
    }

    /// The plan for instances that take `start` to serve, learned once there are
    /// [`MIN_GAPS`] gaps; kept until a new gap or another start time.
    pub fn plan(&mut self, start: Duration) -> Option<KeepAlivePlan> {
        let plan = |gaps: &VecDeque<(Duration, u32)>, start| learn(gaps.iter().map(|g| g.0), start);
        self.gaps.learned(start, plan)
    }
}

/// The plan of the least cost over `gaps` for instances that take `start` to serve: the
/// instance-seconds kept or started, and [`WAIT_PRICE`] for each second of a cold start. Pure,
/// for tests.
pub fn learn(gaps: impl IntoIterator<Item = Duration>, start: Duration) -> KeepAlivePlan {
    let scored = Gaps::sorted(gaps.into_iter().map(|g| (g, 1)), start);
    let mut plan = scored.cheapest(candidates(&scored.lengths, start));
    plan.gaps = scored.lengths.len();
    plan
}

/// The keep-alive alone (no pre-warm) of the least cost, as [`learn`] scores it, at most
/// `cap`, over spells that each stand for `weight` spells of the same length (the levels one
/// rise regained, `dips.rs`): the delay is priced per level while the spells are kept per rise.
/// How long to keep capacity the load stopped asking for.
pub(crate) fn cheapest_weighted_keep(
    spells: impl IntoIterator<Item = (Duration, u32)>,
    start: Duration,
    cap: Duration,
) -> Duration {
    let scored = Gaps::sorted(spells, start);
    let (min, cap) = (MIN_GAP.as_secs_f64(), cap.as_secs_f64());
    let keeps = std::iter::once(min)
        .chain(scored.lengths.iter().map(|&g| g * (1.0 + MARGIN)))
        .map(|k| KeepAlivePlan {
            keep: Duration::from_secs_f64(k.clamp(min, cap)),
            prewarm: None,
            gaps: 0,
        });
    scored.cheapest(keeps).keep
}

/// Keep-alives of [`MIN_GAP`] and just past each gap seen; pre-warm windows between points of
/// the sorted gaps, started a start time and two ticks early so the instance serves by then,
/// where that leaves the instance released for at least a start time.
fn candidates(lengths: &[f64], start: Duration) -> Vec<KeepAlivePlan> {
    let lead = start.as_secs_f64() + 2.0 * crate::TICK.as_secs_f64();
    let cap = ebb_core::autoscale::MAX_IDLE_TIMEOUT.as_secs_f64();
    let secs = |s: f64| Duration::from_secs_f64(s.clamp(0.0, cap));
    let min_gap = MIN_GAP.as_secs_f64();
    let keep = |k: f64| KeepAlivePlan {
        keep: secs(k.max(min_gap)),
        prewarm: None,
        gaps: 0,
    };
    let mut out = vec![keep(min_gap)];
    out.extend(lengths.iter().map(|&g| keep(g * (1.0 + MARGIN))));
    let step = (lengths.len() / WINDOW_POINTS).max(1);
    let points: Vec<f64> = lengths
        .iter()
        .copied()
        .step_by(step)
        .chain(lengths.last().copied())
        .collect();
    // A pre-warm after a keep-alive of a few gaps' length (a call of several requests a few
    // seconds apart), or after the shortest.
    let keeps = std::iter::once(min_gap).chain(points.iter().map(|&g| g * (1.0 + MARGIN)));
    for k in keeps {
        for (i, &low) in points.iter().enumerate() {
            let from = low * (1.0 - MARGIN) - lead;
            // Released for less than a start time, an instance is churn, not a saving.
            if from < k + start.as_secs_f64() {
                continue;
            }
            for &high in &points[i..] {
                let (from, until) = (secs(from), secs(high * (1.0 + MARGIN)));
                if until > from {
                    out.push(KeepAlivePlan {
                        keep: secs(k),
                        prewarm: Some((from, until)),
                        gaps: 0,
                    });
                }
            }
        }
    }
    out
}

/// A plan's cost over the gaps: instance-seconds (an idle instance, and a cold start's start
/// time) and cold starts (weighted, as the gaps).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Score {
    instance_seconds: f64,
    cold: f64,
}

/// Sorted gap lengths (seconds) with prefix sums, to score a plan in logarithmic time.
struct Gaps {
    lengths: Vec<f64>,
    /// `weight[i]` = how many gaps the `i` shortest stand for (each one, or a dip's levels).
    weight: Vec<f64>,
    /// `prefix[i]` = the sum of the `i` shortest gaps, each times its weight.
    prefix: Vec<f64>,
    /// A cold start's length, seconds.
    start: f64,
}

impl Gaps {
    /// `spells` (each with the number of spells of its length it stands for) sorted, for
    /// instances that take `start` to serve.
    fn sorted(spells: impl IntoIterator<Item = (Duration, u32)>, start: Duration) -> Gaps {
        let mut spells: Vec<(f64, f64)> = spells
            .into_iter()
            .map(|(d, w)| (d.as_secs_f64(), f64::from(w)))
            .collect();
        spells.sort_by(|a, b| a.0.total_cmp(&b.0));
        Gaps::new(spells, start.as_secs_f64())
    }

    /// The plan of the least cost: its instance-seconds, and [`WAIT_PRICE`] for each second of
    /// its cold starts; the first of equals, and a keep-alive of [`MIN_GAP`] if there is none.
    fn cheapest(&self, plans: impl IntoIterator<Item = KeepAlivePlan>) -> KeepAlivePlan {
        let mut best: Option<(f64, KeepAlivePlan)> = None;
        for plan in plans {
            let score = self.score(&plan);
            let cost = score.instance_seconds + WAIT_PRICE * self.start * score.cold;
            if best.as_ref().is_none_or(|(b, _)| cost < *b) {
                best = Some((cost, plan));
            }
        }
        best.map_or(
            KeepAlivePlan {
                keep: MIN_GAP,
                prewarm: None,
                gaps: 0,
            },
            |(_, p)| p,
        )
    }

    /// Gaps of `sorted` (length, weight), shortest first.
    fn new(sorted: Vec<(f64, f64)>, start: f64) -> Gaps {
        let (mut weight, mut prefix) = (vec![0.0], vec![0.0]);
        for &(g, w) in &sorted {
            weight.push(weight.last().copied().unwrap_or(0.0) + w);
            prefix.push(prefix.last().copied().unwrap_or(0.0) + w * g);
        }
        Gaps {
            lengths: sorted.into_iter().map(|(g, _)| g).collect(),
            weight,
            prefix,
            start,
        }
    }

    /// Gaps of at most `t` seconds.
    fn upto(&self, t: f64) -> usize {
        self.lengths.partition_point(|&g| g <= t)
    }

    /// Gaps shorter than `t` seconds.
    fn below(&self, t: f64) -> usize {
        self.lengths.partition_point(|&g| g < t)
    }

    /// How many gaps the `i` shortest to the `j` shortest stand for.
    fn between(&self, i: usize, j: usize) -> f64 {
        self.weight[j] - self.weight[i]
    }

    fn score(&self, plan: &KeepAlivePlan) -> Score {
        let n = self.lengths.len();
        let keep = plan.keep.as_secs_f64();
        // Gaps within the keep-alive are served warm by the instance kept through them.
        let kept = self.upto(keep);
        let mut cost = self.prefix[kept];
        let Some((from, until)) = plan.prewarm else {
            let cold = self.between(kept, n);
            cost += cold * (keep + self.start);
            return Score {
                instance_seconds: cost,
                cold,
            };
        };
        let (from, until) = (from.as_secs_f64(), until.as_secs_f64());
        // A pre-warmed instance serves from a start time after `from`.
        let ready = from + self.start;
        let early = self.below(ready).max(kept);
        let late = self.upto(until).max(early);
        // Early: released, and cold (a pre-warm begun is wasted as well; counted as a start).
        cost += self.between(kept, early) * (keep + self.start);
        // In the window: released, then pre-warmed until the request.
        let warm = self.between(early, late);
        cost += warm * (keep - from) + (self.prefix[late] - self.prefix[early]);
        // Late: released, pre-warmed through the window, and cold again after it.
        cost += self.between(late, n) * (keep + (until - from) + self.start);
        Score {
            instance_seconds: cost,
            cold: self.between(kept, early) + self.between(late, n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn gaps(lengths: &[u64]) -> Vec<Duration> {
        lengths.iter().map(|&g| secs(g)).collect()
    }

    #[test]
    fn a_weighted_spell_costs_as_many_spells_of_its_length() {
        let (start, cap) = (secs(60), secs(3_600));
        // Twenty dips of 600 s outweigh one of an hour (a release costs 660 s and the wait):
        // kept through. One of each, released.
        let weighted = [(secs(600), 20), (secs(3_600), 1)];
        let one_by_one = [vec![(secs(600), 1); 20], vec![(secs(3_600), 1)]].concat();
        let keep = cheapest_weighted_keep(weighted, start, cap);
        assert_eq!(keep, cheapest_weighted_keep(one_by_one, start, cap));
        assert!(keep >= secs(600), "{keep:?}");
        let released = cheapest_weighted_keep([(secs(600), 1), (secs(3_600), 1)], start, cap);
        assert_eq!(released, MIN_GAP);
    }

    #[test]
    fn kept_gaps_restored_give_the_plan_they_gave_before() {
        let lengths: Vec<u64> = (0..150).map(|i| 590 + i % 21).collect();
        let mut seen = KeepAlive::default();
        let mut t = secs(0);
        for g in gaps(&lengths) {
            seen.request(t, t + g);
            t += g;
        }
        let mut restored = KeepAlive::default();
        // A gap too short to count, as a hand-edited store might hold, is left out.
        restored.restore(seen.gap_lengths().chain([secs(1)]));
        assert_eq!(restored.gaps(), GAPS_KEPT);
        assert!(restored.gap_lengths().eq(seen.gap_lengths()));
        assert_eq!(restored.plan(secs(10)), seen.plan(secs(10)));
        assert!(restored.plan(secs(10)).is_some());
        // Something new to keep only after a new gap.
        let noted = restored.gaps_noted();
        restored.request(t, t + secs(1));
        assert_eq!(restored.gaps_noted(), noted);
        restored.request(t, t + secs(600));
        assert_eq!(restored.gaps_noted(), noted + 1);
    }

    #[test]
    fn gaps_shorter_than_a_start_time_are_kept_through() {
        // Calls every ~20 s with a 10 s start: releasing would make every call cold.
        let lengths: Vec<u64> = (0..40).map(|i| 18 + i % 5).collect();
        let plan = learn(gaps(&lengths), secs(10));
        assert_eq!(plan.prewarm, None);
        assert!(plan.keep >= secs(22), "{plan:?}");
        assert!(plan.keep <= secs(25), "{plan:?}");
        assert!(!plan.releases(secs(21)));
    }

    #[test]
    fn regular_long_gaps_are_released_and_prewarmed() {
        // A job every ~10 min: an instance idle for ten minutes per call is the waste.
        let lengths: Vec<u64> = (0..40).map(|i| 590 + i % 21).collect();
        let plan = learn(gaps(&lengths), secs(10));
        let (from, until) = plan.prewarm.expect("a pre-warm window");
        assert!(plan.keep < secs(10), "{plan:?}");
        assert!(from < secs(590 - 10) && from > secs(400), "{plan:?}");
        assert!(until > secs(610), "{plan:?}");
        assert!(plan.releases(secs(60)));
        assert!(plan.prewarms(secs(585)));
        assert!(plan.releases(secs(3600)));
    }

    #[test]
    fn long_unpredictable_gaps_are_released_at_once() {
        // Hours apart, spread widely: no keep-alive pays for itself, and cold starts are rare.
        let lengths: Vec<u64> = (0..30).map(|i| 1800 + (i * 7919) % 20_000).collect();
        let plan = learn(gaps(&lengths), secs(10));
        assert_eq!(plan.keep, MIN_GAP);
        assert_eq!(plan.prewarm, None);
    }

    #[test]
    fn a_gap_is_bridged_when_a_cold_start_would_cost_more() {
        // Gaps of 100 s with an occasional hour, 10 s starts: a cold start (110 s at the
        // wait's price) costs more than bridging 100 s; the hours are not bridged.
        let lengths: Vec<u64> = (0..100)
            .map(|i| if i % 10 == 0 { 3600 } else { 100 })
            .collect();
        let plan = learn(gaps(&lengths), secs(10));
        assert!(!plan.releases(secs(101)), "{plan:?}");
        assert!(plan.releases(secs(1000)), "{plan:?}");
        // With 5 s starts, a cold start costs 55 s: cheaper than bridging.
        let plan = learn(gaps(&lengths), secs(5));
        assert!(plan.releases(secs(5)), "{plan:?}");
    }

    #[test]
    fn a_plan_needs_enough_gaps_and_is_relearned_after_a_new_one() {
        let mut k = KeepAlive::default();
        let mut at = secs(0);
        for _ in 0..MIN_GAPS - 1 {
            k.request(at, at + secs(600));
            at += secs(660);
        }
        assert_eq!(k.plan(secs(10)), None);
        k.request(at, at + secs(1)); // not a gap
        assert_eq!(k.plan(secs(10)), None);
        k.request(at, at + secs(600));
        let plan = k.plan(secs(10)).expect("learned");
        assert_eq!(plan.gaps, MIN_GAPS);
        for _ in 0..GAPS_KEPT {
            at += secs(700);
            k.request(at, at + secs(5));
        }
        assert_eq!(k.gaps(), GAPS_KEPT);
        let now = k.plan(secs(10)).expect("learned");
        assert_ne!(now, plan);
        assert!(!now.releases(secs(4)));
    }
}
