//! The busy level of an hour whose load held still: a steadier reading of a stationary load
//! than fifteen minutes give.
//!
//! The busy level ([`Metrics::busy`](crate::Metrics::busy), module `noise`) is a high quantile
//! of the last fifteen minutes. On a load that does not change but comes in clumps, that
//! quantile still swings with the clumps that happen to fall in the window, and its fall test
//! judges a fall that is only noise now and then: the count then dips, the next clump is missed,
//! and the sweep's only cure was a lower target everywhere. The eleventh part of issue 19
//! measured a fleet fixed at the 99th percentile of the noisy trace's need at 2.39× the oracle,
//! against ebb's 3.04× (BENCHMARKS.md).
//!
//! So each metric whose busy level is kept also keeps its last hour in blocks of the busy
//! window's clock ([`BLOCK_SECS`]), each with the busy level read at its end. When the hour's
//! load held still, no six-minute stretch of it standing out either way, the mean of those
//! levels is a reading of the load's busy seconds with the fifteen minutes' swings averaged out.
//! (Each level looks fifteen minutes back from its block's end, so together they reach about
//! 74 minutes back, of which the stillness test sees the last hour.)
//! Target tracking then sizes for the higher of the two levels, and for the hour's when the
//! fifteen minutes judged a fall the hour does not show (`target.rs`). A load that rose, fell,
//! stepped or followed its day within the hour is not still, and only the fifteen minutes count.

use crate::noise::{current_block, fall_limit, rounding, BLOCKS, BLOCK_SECS};
use std::collections::VecDeque;
use std::time::Duration;

/// How long the load must have held still: an hour, four fifteen-minute busy windows, so that
/// the mean of their levels has about half the swing of one. Longer would also wait longer
/// after every change of load before it counts; the six-minute stretches of its stillness test
/// would be longer too, and hide more of a slow change.
pub const STEADY_HOUR: Duration = Duration::from_secs(3600);

/// Blocks of [`BLOCK_SECS`] (90 s) in [`STEADY_HOUR`]: forty.
const HOUR_BLOCKS: usize = (STEADY_HOUR.as_secs() / BLOCK_SECS) as usize;

/// Stretches the stillness test compares: ten of six minutes, so that the fall test's limit
/// for nine block means ([`fall_limit`]) reads their noise.
const STRETCHES: usize = BLOCKS + 1;

/// Blocks of one stretch: four.
const STRETCH_BLOCKS: usize = HOUR_BLOCKS / STRETCHES;

// Every block of the hour is in a stretch.
const _: () = assert!(HOUR_BLOCKS.is_multiple_of(STRETCHES));

/// One block of the hour.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Block {
    /// Its number: the second it begins at, divided by [`BLOCK_SECS`].
    number: u64,
    sum: f64,
    count: u32,
    /// The busy level read at its end (`None` when there was none: the window was not full,
    /// or the fifteen minutes' load fell).
    level: Option<f64>,
}

/// The last hour of one metric, in blocks of [`BLOCK_SECS`].
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SteadyHour {
    /// Complete blocks, oldest first, without a gap between them; at most [`HOUR_BLOCKS`].
    blocks: VecDeque<Block>,
    /// The block values are being added to.
    open: Option<Block>,
    /// What the complete blocks say, read when the newest one ended: only the newest values
    /// change between two ends of a block, and a tick reads the hour of every service.
    complete: Option<Complete>,
}

/// The hour's complete blocks, when they held still: the mean of their levels, and how far
/// below their lowest stretch the newest values may stand.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Complete {
    level: f64,
    lowest: f64,
    allowed: f64,
}

/// One complete block of the hour, as a window hands it on to the next ([`Past`]): a server
/// that restarts, a new leader, or new autoscale settings take the hour up where it stood.
///
/// [`Past`]: crate::Past
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HourBlock {
    /// Its number: the second it begins at, divided by 90 (the busy window's blocks).
    pub number: u64,
    /// The sum of its values.
    pub sum: f64,
    /// How many values it has.
    pub count: u32,
    /// The busy level read at its end, if there was one.
    pub level: Option<f64>,
}

impl SteadyHour {
    /// The complete blocks, oldest first.
    pub(crate) fn blocks(&self) -> Vec<HourBlock> {
        (self.blocks.iter())
            .map(|b| HourBlock {
                number: b.number,
                sum: b.sum,
                count: b.count,
                level: b.level,
            })
            .collect()
    }

    /// An hour of the complete `blocks` given, oldest first, as [`SteadyHour::close`] would
    /// have kept them: a block that does not follow the one before starts the hour again, and
    /// a block without values or with a value that is not a finite, non-negative number (the
    /// values are) starts it again too, since its place in the hour is then unknown.
    pub(crate) fn resumed(blocks: &[HourBlock]) -> SteadyHour {
        let mut hour = SteadyHour::default();
        let valid = |v: f64| v.is_finite() && v >= 0.0;
        for b in blocks {
            // The last number has no next: a value no clock reaches.
            let number_ok = b.number < u64::MAX;
            if !number_ok || b.count == 0 || !valid(b.sum) || !b.level.is_none_or(valid) {
                hour.blocks.clear();
                continue;
            }
            hour.open = Some(Block {
                number: b.number,
                sum: b.sum,
                count: b.count,
                level: None,
            });
            hour.close(b.level);
        }
        hour
    }

    /// The number of the newest complete block.
    pub(crate) fn newest_block(&self) -> Option<u64> {
        self.blocks.back().map(|b| b.number)
    }

    /// Whether a value of the second ending at `at` begins a new block: the caller then reads
    /// the busy level of the open block's end and calls [`SteadyHour::close`] first.
    pub(crate) fn closes_before(&self, at: Duration) -> bool {
        self.open
            .is_some_and(|open| open.number != at.as_secs() / BLOCK_SECS)
    }

    /// Ends the open block, with the busy `level` read at its end. A block that does not follow
    /// the last one (no value for a whole block) starts the hour again.
    pub(crate) fn close(&mut self, level: Option<f64>) {
        let Some(mut block) = self.open.take() else {
            return;
        };
        block.level = level;
        if self
            .blocks
            .back()
            .is_some_and(|last| last.number + 1 != block.number)
        {
            self.blocks.clear();
        }
        self.blocks.push_back(block);
        if self.blocks.len() > HOUR_BLOCKS {
            self.blocks.pop_front();
        }
        self.complete = self.read_complete();
    }

    /// Adds the value of the second ending at `at`, in the open block (see
    /// [`SteadyHour::closes_before`]).
    pub(crate) fn add(&mut self, at: Duration, value: f64) {
        let open = self.open.get_or_insert(Block {
            number: at.as_secs() / BLOCK_SECS,
            sum: 0.0,
            count: 0,
            level: None,
        });
        open.sum += value;
        open.count += 1;
    }

    /// The mean of the busy levels read at the ends of the last hour's blocks, at `now`: when
    /// the hour is complete up to the block before `now`'s, at least half of its blocks had a
    /// level, and it held still ([`held_still`]), its newest values included: `recent` is the
    /// mean of the newest [`BLOCK_SECS`] values, in which a fall shows before a block of the
    /// hour ends. `None` otherwise. `now` is a tick's, not before the newest value: the hour
    /// is the one that ends with the newest complete block, whatever `now` asks.
    pub(crate) fn level(&self, now: Duration, recent: f64) -> Option<f64> {
        let complete = self.complete?;
        let newest = self.blocks.back()?;
        if !current_block(newest.number, now) {
            return None;
        }
        (complete.lowest - recent <= complete.allowed).then_some(complete.level)
    }

    /// What the complete blocks say ([`SteadyHour::complete`]).
    fn read_complete(&self) -> Option<Complete> {
        if self.blocks.len() < HOUR_BLOCKS {
            return None;
        }
        let (sum, n) = self
            .blocks
            .iter()
            .filter_map(|b| b.level)
            .fold((0.0, 0usize), |(sum, n), level| (sum + level, n + 1));
        if n < HOUR_BLOCKS / 2 {
            return None;
        }
        let (lowest, allowed) = held_still(&self.stretch_means())?;
        Some(Complete {
            level: sum / n as f64,
            lowest,
            allowed,
        })
    }

    /// The means of the hour's six-minute stretches, oldest first.
    fn stretch_means(&self) -> [f64; STRETCHES] {
        std::array::from_fn(|i| {
            let (sum, count) = self
                .blocks
                .range(i * STRETCH_BLOCKS..(i + 1) * STRETCH_BLOCKS)
                .fold((0.0, 0u32), |(s, n), b| (s + b.sum, n + b.count));
            sum / f64::from(count.max(1))
        })
    }
}

/// Whether the load held still through the stretches whose `means` are given, oldest first:
/// no two stand further apart than the fall test allows between a block and the newest values
/// ([`fall_limit`], read from the nine oldest). Two-sided, since a rise within the hour (a crowd
/// that built and decayed, a step up) is a change of load too, and averaging its levels in
/// would hold the crowd's level after it left or a step's lower level after it rose. If it did,
/// the lowest stretch's mean and how far below it the newest values' mean may stand: that
/// limit scaled for their shorter span ([`RECENT_SCALE`]), so that a fall within the block in
/// progress is not held until the block ends.
fn held_still(means: &[f64; STRETCHES]) -> Option<(f64, f64)> {
    let mut older = [0.0; BLOCKS];
    older.copy_from_slice(&means[..BLOCKS]);
    let highest = means.iter().copied().fold(f64::MIN, f64::max);
    let lowest = means.iter().copied().fold(f64::MAX, f64::min);
    let (limit, slack) = (fall_limit(&older), rounding(highest));
    (highest - lowest <= limit + slack).then_some((lowest, limit * RECENT_SCALE + slack))
}

/// How much further the newest [`BLOCK_SECS`] values' mean may stand below a stretch than one
/// stretch's mean below another: √(5/2). A mean of a quarter of the values swings twice as far
/// (for noise independent from block to block), and a difference's variance adds its two
/// sides': (4 + 1) / (1 + 1). Load that comes in clumps swings more, and is then judged not
/// still more often: the fifteen minutes alone count, as before the hour was read.
const RECENT_SCALE: f64 = 1.581_138_830_084_189_8;

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// A steady hour fed value by value, with the mean of the newest values that `Metrics`
    /// gives it from the busy window.
    #[derive(Default)]
    struct Fed {
        hour: SteadyHour,
        recent: VecDeque<f64>,
    }

    impl Fed {
        /// The value of second `s`; `level` is read when a block ends before it.
        fn add(&mut self, s: u64, value: f64, level: impl FnOnce() -> Option<f64>) {
            if self.hour.closes_before(at(s)) {
                self.hour.close(level());
            }
            self.hour.add(at(s), value);
            if self.recent.len() == BLOCK_SECS as usize {
                self.recent.pop_front();
            }
            self.recent.push_back(value);
        }

        fn level(&self, now: u64) -> Option<f64> {
            let recent = self.recent.iter().sum::<f64>() / self.recent.len().max(1) as f64;
            self.hour.level(at(now), recent)
        }
    }

    /// Seconds `start..start + seconds` of `value(second)`, each block closed with
    /// `level(block)`.
    fn hour_of(
        start: u64,
        seconds: u64,
        value: impl Fn(u64) -> f64,
        level: impl Fn(u64) -> Option<f64>,
    ) -> Fed {
        let mut fed = Fed::default();
        for s in start..start + seconds {
            fed.add(s, value(s), || level(s / BLOCK_SECS - 1));
        }
        fed
    }

    /// 100 with a wiggle of ±3 that repeats every 6 s: the same in every block.
    fn steady(s: u64) -> f64 {
        100.0 + [0.0, 3.0, -3.0, 1.0, -1.0, 0.0][(s % 6) as usize]
    }

    /// Clumps: a level drawn every 10 s, uniform within ±50 % of 100 (xorshift, fixed seed),
    /// for `seconds` seconds.
    fn clumps(seconds: u64) -> Vec<f64> {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let levels: Vec<f64> = (0..seconds.div_ceil(10))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                100.0 * (0.5 + (x >> 11) as f64 / (1u64 << 53) as f64)
            })
            .collect();
        (0..seconds).map(|s| levels[(s / 10) as usize]).collect()
    }

    #[test]
    fn a_still_hour_gives_the_mean_of_its_levels() {
        // Levels 104, 106, 104, 106, ...: their mean is 105.
        let level = |b: u64| Some(if b.is_multiple_of(2) { 104.0 } else { 106.0 });
        let hour = hour_of(0, 3600 + BLOCK_SECS, steady, level);
        assert_eq!(hour.level(3600 + BLOCK_SECS - 1), Some(105.0));
        // Not yet an hour of complete blocks.
        let short = hour_of(0, 3600, steady, level);
        assert_eq!(short.level(3599), None);
    }

    #[test]
    fn an_hour_resumed_from_its_blocks_reads_as_before_and_a_bad_block_starts_it_again() {
        let n = 3600 + BLOCK_SECS;
        let fed = hour_of(0, n, steady, |_| Some(110.0));
        let blocks = fed.hour.blocks();
        assert_eq!(blocks.len(), HOUR_BLOCKS);
        let now = at(n - 1);
        assert_eq!(fed.hour.level(now, 100.0), Some(110.0));
        assert_eq!(SteadyHour::resumed(&blocks).level(now, 100.0), Some(110.0));
        // A value a block could not have: the hour restarts after it, and is not complete.
        let spoiled = |spoil: fn(&mut HourBlock)| {
            let mut bad = blocks.clone();
            spoil(&mut bad[20]);
            SteadyHour::resumed(&bad).level(now, 100.0)
        };
        assert_eq!(spoiled(|b| b.sum = f64::NAN), None);
        assert_eq!(spoiled(|b| b.sum = -1.0), None);
        assert_eq!(spoiled(|b| b.count = 0), None);
        assert_eq!(spoiled(|b| b.level = Some(f64::INFINITY)), None);
        assert_eq!(spoiled(|b| b.number += 7), None);
        assert_eq!(spoiled(|b| b.number = u64::MAX), None);
        // A block without a level is one the hour can have.
        assert_eq!(spoiled(|b| b.level = None), Some(110.0));
    }

    #[test]
    fn random_clumps_that_hold_still_are_mostly_judged_still() {
        let load = clumps(200_000);
        let mut fed = Fed::default();
        let (mut checks, mut still) = (0, 0);
        for (s, &v) in (0..).zip(&load) {
            fed.add(s, v, || Some(150.0));
            if s > 3600 + BLOCK_SECS && s % BLOCK_SECS == BLOCK_SECS - 1 {
                checks += 1;
                still += usize::from(fed.level(s).is_some());
            }
        }
        // Judged still in about seven checks in ten. The limit reads the noise from nine
        // stretch means, so it swings itself (from 4 to 25 on this load), and the range of ten
        // means stands above it in the rest: the hour then leaves the fifteen minutes alone.
        assert!(checks > 2000, "{checks}");
        assert!(
            (checks * 6..=checks * 8).contains(&(still * 10)),
            "{still} of {checks}"
        );
    }

    #[test]
    fn random_clumps_with_a_step_are_not_still_while_the_step_is_in_the_hour() {
        // The same clumps, at 60 % from the third hour on.
        let step = 3 * 3600;
        let load = clumps(5 * 3600);
        let mut fed = Fed::default();
        let mut still_across = Vec::new();
        for (s, &v) in (0..).zip(&load) {
            fed.add(s, if s < step { v } else { 0.6 * v }, || Some(150.0));
            // While a whole stretch of the hour is on each side of the step.
            let stretch = STRETCH_BLOCKS as u64 * BLOCK_SECS;
            let across = step + 2 * stretch..step + 3600 - 2 * stretch;
            if across.contains(&s) && fed.level(s).is_some() {
                still_across.push(s);
            }
        }
        assert_eq!(still_across, Vec::<u64>::new());
    }

    #[test]
    fn a_step_or_a_crowd_within_the_hour_is_not_still() {
        let level = |_| Some(110.0);
        let n = 3600 + BLOCK_SECS;
        let down = hour_of(0, n, |s| if s < 3000 { steady(s) } else { 20.0 }, level);
        assert_eq!(down.level(n - 1), None);
        let up = hour_of(0, n, |s| if s < 3000 { steady(s) } else { 400.0 }, level);
        assert_eq!(up.level(n - 1), None);
        // A crowd of ten minutes, half an hour ago, that has left.
        let crowd = |s| {
            steady(s)
                + if (1800..2400).contains(&s) {
                    300.0
                } else {
                    0.0
                }
        };
        assert_eq!(hour_of(0, n, crowd, level).level(n - 1), None);
    }

    #[test]
    fn a_fall_in_the_block_in_progress_is_not_held_until_it_ends() {
        let n = 3600 + BLOCK_SECS;
        let mut fed = hour_of(0, n, steady, |_| Some(110.0));
        assert_eq!(fed.level(n - 1), Some(110.0));
        // Ten seconds at 20 in the next block: the newest 90 values' mean is 91.1.
        for s in n..n + 10 {
            fed.add(s, 20.0, || Some(110.0));
        }
        assert_eq!(fed.level(n + 9), None);
        // Without the fall, the hour stands.
        let steady_on = hour_of(0, n + 10, steady, |_| Some(110.0));
        assert_eq!(steady_on.level(n + 9), Some(110.0));
    }

    #[test]
    fn a_slow_decline_within_the_hour_is_not_still() {
        // A daily cycle from 20 to 200 falls by up to 24 an hour, a fifth of its mean.
        let n = 3600 + BLOCK_SECS;
        let decline = |s: u64| steady(s) * (1.0 - 0.2 * s as f64 / n as f64);
        assert_eq!(hour_of(0, n, decline, |_| Some(110.0)).level(n - 1), None);
    }

    #[test]
    fn an_hour_with_few_levels_or_a_gap_or_stale_gives_none() {
        let n = 3600 + BLOCK_SECS;
        // Levels in fewer than half the blocks.
        let rare = |b: u64| b.is_multiple_of(3).then_some(105.0);
        assert_eq!(hour_of(0, n, steady, rare).level(n - 1), None);
        // Half of them is enough; the blocks without one do not count in the mean.
        let half = |b: u64| b.is_multiple_of(2).then_some(105.0);
        assert_eq!(hour_of(0, n, steady, half).level(n - 1), Some(105.0));
        // A block without values (the twelfth, 990 to 1079 s) starts the hour again; a hole
        // within a block does not.
        let with_hole = |hole: std::ops::Range<u64>| {
            let mut fed = Fed::default();
            // A block more than an hour, so that forty complete blocks remain without the
            // empty one.
            for s in (0..n + BLOCK_SECS).filter(|s| !hole.contains(s)) {
                fed.add(s, 100.0, || Some(105.0));
            }
            fed.level(n + BLOCK_SECS - 1)
        };
        assert_eq!(with_hole(990..1080), None);
        assert_eq!(with_hole(1000..1050), Some(105.0));
        // No value since the hour's last block: the hour is old.
        let fed = hour_of(0, n, steady, |_| Some(105.0));
        assert_eq!(fed.level(n - 1), Some(105.0));
        assert_eq!(fed.level(n - 1 + 2 * BLOCK_SECS), None);
    }
}
