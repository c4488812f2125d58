//! The load's own noise: headroom for it, and evidence of a rise beyond it.
//!
//! Averages hide bursts. On bursty traffic a count sized for the stable window's mean misses the
//! busy seconds, and the only cure a mean-based rule has is a lower target everywhere. Replaying
//! the NASA-1995 trace (×100, `ebb sim --sweep`, d = 10 s) that way cost 4.4× the optimal
//! oracle, more than the models of HPA (2.0×) and Knative (3.8×); panic mode, entered on one-second
//! clumps (42 % of the seconds were in panic), was what covered the bursts. Two rules replace that:
//!
//! - **Headroom.** Target tracking sizes for `mean + NOISE_HEADROOM × σ` of a total metric over
//!   the stable window, σ being the per-second noise from successive differences
//!   ([`Metrics::noise`]: a trend or one step of load is not noise). Steady load (σ ≈ 0) is sized as before; bursty load gets headroom in
//!   proportion to its bursts, not to its mean, so a higher target serves it.
//! - **Busy level.** Differences one second apart see only part of noise that comes in clumps
//!   (a level held for ten seconds changes once in ten) and assume it symmetric (Poisson
//!   arrivals at a few a second are not). So the headroom is at least what brings the mean up
//!   to the level of the busy seconds of the last [`BUSY_WINDOW`], their [`BUSY_QUANTILE`]
//!   quantile read from the values themselves (smoothed over the ranks around it, so that load in
//!   whole units moves it by fractions of a unit: [`busy_quantile`]), unless the load has fallen
//!   within that window ([`busy_level`]): a quantile remembers a level the load left, which is a
//!   hold, not noise. Whether it fell is judged against the noise of 90 s blocks, read so that
//!   neither a burst's edges nor a steady decline count as noise ([`block_noise`]); a block that
//!   stood out by itself and was left is left out, not taken for a fall ([`judge`]). Over an hour
//!   whose load held still, the mean of those levels counts too (module `steady_hour`); while the
//!   window fills, a level is read from what it holds (module `warming`).
//! - **Evidence.** Panic needs the short span's mean to stand above what the noise explains:
//!   `mean − baseline ≥ EVIDENCE_Z × σ / √span`, baseline and σ taken over the seconds before
//!   the span. A quiet service has a small σ, so a step still panics at once; a bursty one must
//!   rise well beyond its usual clumps.
//!
//! Same replay with headroom and evidence: 1.9× at d = 10 s and 1.4× at d = 60 s (HPA 2.0× and
//! 1.5×); with the busy level too, 1.90× and 1.17× over five minutes, 1.86× and 1.13× over
//! fifteen, 1.88× and 1.13× with a block that stood out by itself left out (which made the
//! noisy trace cheaper). Figures for every trace are in BENCHMARKS.md.

use crate::metrics::WindowStats;
use std::ops::Range;
use std::time::Duration;

/// Standard deviations of per-second noise that target tracking adds to a total metric's mean.
/// Two cover about 98 % of seconds under normal noise; the target's own margin covers the rest.
/// Replays with 3 were better on the NASA trace and worse on half the synthetic ones
/// (BENCHMARKS.md).
pub const NOISE_HEADROOM: f64 = 2.0;

/// How many standard errors above the baseline a short span's mean must be to count as a rise.
/// Three is the conventional control-chart limit (Shewhart): for normal noise, one check in 740
/// crosses it by chance.
pub const EVIDENCE_Z: f64 = 3.0;

/// Over how long the level of the busy seconds is read: fifteen minutes. A quantile read from
/// the values needs many of them above it to hold still: at the 97.7th percentile five minutes
/// leave seven seconds above it, one or two clumps of bursty load, so the level rose and fell
/// with each clump, and a stationary load was followed through swings of its own noise (the
/// count then missed when the next clump came; a lower target everywhere was the only cure).
/// Fifteen minutes leave twenty-one. Longer held a flash crowd's peak: the fall test's blocks
/// grow with the window, and 30 min (blocks of 3 min) cost 8–9 % more on the flash trace, more
/// than it saved on the noisy one at d = 60 s (4 %; `ebb sim --sweep` on every trace,
/// BENCHMARKS.md, issue 19, twelfth part). Five minutes, Kubernetes HPA's scale-down window,
/// was the first choice.
pub const BUSY_WINDOW: Duration = Duration::from_secs(900);

/// The most values [`busy_level`] reads: one a second over [`BUSY_WINDOW`], on the stack.
pub(crate) const BUSY_VALUES: usize = BUSY_WINDOW.as_secs() as usize;

/// The quantile that is the busy seconds' level: what `mean + NOISE_HEADROOM × σ` covers under
/// normal noise, Φ(2) ≈ 0.977, so that steady normal noise is sized as before. Read
/// smoothed over the ranks around it (`busy_quantile` in this module).
pub const BUSY_QUANTILE: f64 = 0.977;

/// Seconds of a block: the busy window is cut into ten blocks of 90 s, aligned to the clock,
/// to judge whether its load fell; the newest 90 s, sliding, are compared with them. Long
/// enough that a clump of seconds is averaged within a block; aligned, so that the highest
/// block and the blocks' noise change when a block ends, not every second as the window slides.
/// Sliding blocks made the judgement flicker on a steady square wave, and the learned
/// scale-down delay then learned the flicker's dips.
///
/// Comparing only the newest 30 s, with the blocks' noise scaled by √3 for the shorter span,
/// cost 4–6 % less on the noisy and NASA traces, but only because it judged more falls: that
/// scaling assumes noise independent from second to second, and on load that comes in clumps
/// the newest 30 s swing more than it allows. On one clump of 60 rps every 7 s over 10 rps the
/// busy level was dropped on 71 % of the checks, against 14 % with the newest 90 s (35 % with
/// the blocks of 30 s before; BENCHMARKS.md, issue 19, twelfth part).
pub(crate) const BLOCK_SECS: u64 = BUSY_WINDOW.as_secs() / (BLOCKS as u64 + 1);

/// Complete blocks compared: nine (810 s), before the block in progress.
pub(crate) const BLOCKS: usize = 9;

/// Which of the eight absolute differences of nine successive block means, sorted, reads the
/// blocks' noise: the fourth, the highest that leaves out four. A burst that ended makes two
/// edges, and an edge across a block's boundary makes two differences: four of eight, which a
/// median would read as noise. (The third read noise too low on clumpy load: more false falls.)
const NOISE_RANK: usize = 3;

/// The [`NOISE_RANK`]th smallest absolute difference of nine successive normal block means, in
/// units of their σ, on average: a Monte Carlo estimate (100,000 draws; the unit test below
/// checks it).
const RANKED_DIFFERENCE: f64 = 0.880;

/// Which of the seven absolute second differences of nine successive block means, sorted,
/// reads the blocks' noise: the third, the highest that leaves out four. A step makes two of
/// them, or three across a block's boundary; a steady trend none.
const CURVATURE_RANK: usize = 2;

/// The [`CURVATURE_RANK`]th smallest absolute second difference of nine successive normal
/// block means, in units of their σ, on average: a Monte Carlo estimate (200,000 draws; the
/// unit test below checks it).
const RANKED_CURVATURE: f64 = 1.308;

/// The lower of the two readings ([`RANKED_DIFFERENCE`] and [`RANKED_CURVATURE`] scaled), in
/// units of σ, on average for normal noise: a Monte Carlo estimate (50,000 draws; the unit test
/// below checks the result). Dividing by it keeps the blocks' noise unbiased, so that the
/// newest values of steady noise are not judged below the highest block much more often than
/// with one reading (about one check in ten instead of one in thirteen, in the same draws).
const LOWER_OF_TWO: f64 = 0.847;

/// The busy window's values gathered into the blocks of the clock ([`BLOCK_SECS`]), newest
/// first: index 0 is the block in progress, 1 to [`BLOCKS`] the complete ones before it; and
/// the mean of the newest [`BLOCK_SECS`] values, which slides.
#[derive(Debug, Clone, Default)]
pub(crate) struct BusyBlocks {
    newest: Option<u64>,
    sums: [f64; BLOCKS + 1],
    counts: [u32; BLOCKS + 1],
    /// The block values are being added to, kept apart from `sums` and `counts` until the
    /// next one begins: adding a value is then an addition in a register, and the slot is
    /// found by a division once a block, not once a value (`ebb sim` on 58 days of NASA ×100
    /// spent most of ebb's replay adding the busy window's values).
    open: OpenBlock,
    recent: (f64, u64),
}

/// See [`BusyBlocks::open`].
#[derive(Debug, Clone, Default)]
struct OpenBlock {
    slot: usize,
    first_second: u64,
    sum: f64,
    count: u32,
}

impl BusyBlocks {
    /// Adds the value of the second ending at `at`; values come newest first. Returns its
    /// block's slot (0, the block in progress, to [`BLOCKS`]), or `None` for a value older than
    /// the blocks: it is not added, and must not count in the busy level either (the fall test
    /// cannot see it).
    pub(crate) fn add(&mut self, at: Duration, value: f64) -> Option<u8> {
        let second = at.as_secs();
        let open = &self.open;
        let in_open = self.newest.is_some()
            && (open.first_second..open.first_second + BLOCK_SECS).contains(&second);
        if !in_open {
            let block = second / BLOCK_SECS;
            let newest = *self.newest.get_or_insert(block);
            let slot = usize::try_from(newest.saturating_sub(block))
                .ok()
                .filter(|&i| i <= BLOCKS)?;
            self.close_open();
            self.open.slot = slot;
            self.open.first_second = block * BLOCK_SECS;
        }
        self.open.sum += value;
        self.open.count += 1;
        if self.recent.1 < BLOCK_SECS {
            self.recent.0 += value;
            self.recent.1 += 1;
        }
        // At most BLOCKS (9).
        Some(self.open.slot as u8)
    }

    /// Where the values of the block in `slot` are among the values added, oldest first: after
    /// those of the older blocks (values come newest first, so each block's are together).
    fn range_of(&self, slot: usize) -> Range<usize> {
        let older: usize = (slot + 1..=BLOCKS).map(|s| self.block(s).1 as usize).sum();
        older..older + self.block(slot).1 as usize
    }

    /// Moves the open block's sum and count into `sums` and `counts`.
    fn close_open(&mut self) {
        let open = std::mem::take(&mut self.open);
        self.sums[open.slot] += open.sum;
        self.counts[open.slot] += open.count;
    }

    /// The sum and count of the block in `slot`, the open one's included.
    fn block(&self, slot: usize) -> (f64, u32) {
        let (sum, count) = (self.sums[slot], self.counts[slot]);
        if slot == self.open.slot {
            (sum + self.open.sum, count + self.open.count)
        } else {
            (sum, count)
        }
    }

    /// The complete blocks' means, newest first; `None` unless every one has a value.
    fn means(&self) -> Option<[f64; BLOCKS]> {
        let mut means = [0.0; BLOCKS];
        for (i, mean) in means.iter_mut().enumerate() {
            let (sum, n) = self.block(i + 1);
            if n == 0 {
                return None;
            }
            *mean = sum / f64::from(n);
        }
        Some(means)
    }

    /// What the newest [`BLOCK_SECS`] values say of the window's load ([`judge`]); `None`
    /// without every complete block.
    fn verdict(&self) -> Option<Verdict> {
        let last = self.recent.0 / self.recent.1.max(1) as f64;
        Some(judge(&self.means()?, last))
    }
}

/// Whether the load fell within the busy window, from its complete blocks' `means` (newest
/// first) and the newest values' mean, `last`. A block has been left when `last` stands more
/// than [`EVIDENCE_Z`] standard errors of a difference below its mean.
///
/// - Not below the highest block: [`Verdict::Steady`].
/// - Below the highest block alone, which stood out by itself: [`Verdict::HighestLeft`]. That
///   block is not the load's level any more, the others still are. It is the highest of nine
///   blocks of steady noise (the highest of nine adds about 1.5 σ by itself, so the newest
///   values of steady normal noise are below it on about one check in ten), or a burst that
///   filled one block.
/// - Below the second highest block too: [`Verdict::Fallen`]. Also below the highest alone when
///   it stood more than the limit above the median block and a neighbour, above the median too,
///   was the second highest: a load that lasted more than a block, such as a crowd that built
///   and decays. Its blocks' edges then make so many of the differences that the robust noise
///   reading grows with them (in a replay of the flash trace, a crowd's tail stood 140 above
///   the newest values, within the 162 the limit then was), and leaving out its peak alone held
///   its tail as the busy level.
pub(crate) fn judge(means: &[f64; BLOCKS], last: f64) -> Verdict {
    let highest = means.iter().copied().fold(f64::MIN, f64::max);
    let limit = fall_limit(means) + rounding(highest);
    if highest - last <= limit {
        return Verdict::Steady;
    }
    // Indices of `means`, by their means, highest first: sorted only off the common case,
    // which runs every second of every service (and of every `ebb sim` replay).
    let mut order: [usize; BLOCKS] = std::array::from_fn(|i| i);
    order.sort_unstable_by(|&a, &b| means[b].total_cmp(&means[a]));
    let [second, median] = [1, BLOCKS / 2].map(|rank| means[order[rank]]);
    let lasted = highest - median > limit && second_next_to(means, order[0], second, median);
    if second - last <= limit && !lasted {
        // Slots count from the block in progress, 0; `order[0]` is below BLOCKS (9).
        Verdict::HighestLeft(order[0] as u8 + 1)
    } else {
        Verdict::Fallen
    }
}

/// Whether a record whose newest block of the clock ([`BLOCK_SECS`]) is `newest` still speaks
/// for `now`: that block is `now`'s or the one before (a tick reads just after a block ends).
pub(crate) fn current_block(newest: u64, now: Duration) -> bool {
    newest + 1 >= now.as_secs() / BLOCK_SECS
}

/// Slack for float rounding in comparisons with a limit, for means up to `highest`: a load
/// whose blocks are equal but for rounding reads a noise of 0, and must not be judged to have
/// moved.
pub(crate) fn rounding(highest: f64) -> f64 {
    1e-9 * highest.abs().max(1.0)
}

/// How far below a block's mean the newest values must stand to have left it: [`EVIDENCE_Z`]
/// standard errors of the difference of two block means.
pub(crate) fn fall_limit(means: &[f64; BLOCKS]) -> f64 {
    EVIDENCE_Z * block_noise(means) * 2.0_f64.sqrt()
}

/// Whether a neighbour in time of the block at index `at` of `means` is the second highest,
/// `second`, and above the `median`: on a flat load every other block ties for second, and a
/// burst in one block then still stands out by itself.
fn second_next_to(means: &[f64; BLOCKS], at: usize, second: f64, median: f64) -> bool {
    [at.checked_sub(1), Some(at + 1)]
        .into_iter()
        .flatten()
        .filter_map(|i| means.get(i))
        .any(|&m| m >= second && m > median)
}

/// What the newest values say of the busy window's load ([`BusyBlocks::verdict`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not below any complete block: every second counts.
    Steady,
    /// Below the highest complete block (its slot), which stood out by itself: the seconds of
    /// that block do not count.
    HighestLeft(u8),
    /// The load fell: the busy level is dropped.
    Fallen,
}

/// The level of the busy seconds among `values` (exactly the values [`BusyBlocks::add`] took,
/// oldest first, so that each block's values are together): their [`BUSY_QUANTILE`] quantile
/// ([`busy_quantile`]), without the seconds of a block that stood out by itself and was left
/// ([`judge`]). `None` until every complete block of the window has a value (a service's first
/// fifteen minutes: the module `warming` reads a level from what the window holds meanwhile), or if
/// the load fell within the window. The blocks' noise is read robustly ([`block_noise`]): the edges
/// of a burst that has ended are steps, not noise, so a minute-long call followed by quiet is not
/// held (with a root mean square of the differences, the largest left out, the other edge hid it
/// and the call's level was held for the five minutes the window then was). May move values within `values` (to leave a block out).
///
/// Dropping the level whenever the newest values were below the highest block dropped it on
/// about one check in ten of steady noise, and the count then swung with the noise: on the
/// noisy trace ebb spent 16.5 % of the seconds below the 99th percentile of the need, and the
/// sweep bought a lower target everywhere to cover those dips. Judging against the second
/// highest block instead held a crowd's peak, and leaving the highest out whenever the newest
/// values were not below the second highest held its tail (`ebb sim --sweep`, BENCHMARKS.md,
/// issue 19, thirteenth part).
///
/// Comparing the first and the last half of the window instead missed a rise and decay within
/// it (a flash crowd's peak held for the five minutes the window then was); two-sided, it also
/// dropped the level on noise's rises (`ebb sim --sweep`, BENCHMARKS.md, issue 19, seventh part).
pub(crate) fn busy_level(values: &mut [f64], blocks: &BusyBlocks) -> Option<f64> {
    debug_assert_eq!(
        values.len(),
        blocks.range_of(0).end,
        "one value per one added"
    );
    let values = match blocks.verdict()? {
        Verdict::Steady => values,
        Verdict::HighestLeft(slot) => without(values, blocks.range_of(usize::from(slot))),
        Verdict::Fallen => return None,
    };
    busy_quantile_of(values.iter().copied(), values.len())
}

/// The [`busy_quantile`] of `n` unordered `values`, from the highest of them kept
/// ([`top_kept`]); `None` without values, or if its span reaches past the [`TOP_KEPT`] highest
/// (a full window's values are 26 ranks read, so more than are kept would cut the span).
pub(crate) fn busy_quantile_of(values: impl Iterator<Item = f64>, n: usize) -> Option<f64> {
    let read = Some(busy_ranks_read(n)).filter(|&r| r <= TOP_KEPT)?;
    busy_quantile(top_kept(values, read).highest_first(), n)
}

/// The [`BUSY_QUANTILE`] quantile of `n` values, read from the highest of them, highest first
/// (at least [`busy_ranks_read`] of them): the mean of the values ranked within the quantile's
/// own sampling error of it, `(1 − q) n ± √(n q (1 − q))` values from the top (binomial), each
/// weighted by how much of its rank that span covers. `None` without values.
///
/// Why not the value at the quantile's rank, as before: load that comes in whole units has a
/// quantile that jumps from one unit to the next, and so has the count sized for it. A trace of
/// requests per second replayed ×10 (`ebb sim`: concurrency = requests × 0.1, whole numbers)
/// read 5 while up to 21 of the fifteen minutes' seconds were above 5, and 6 from 22 on;
/// with a target just below 1 every window got one instance more than its level, and missed
/// 0.60 % of the seconds, and a target of 1 missed over 1 %: no target could buy anything
/// between (NASA ×10 at d = 10 s: 1.71× the oracle, 5 % above the HPA model; 1.52× read this
/// way, 6 % below it: BENCHMARKS.md, issue 19, nineteenth part). Averaged over the span, the
/// level moves from one unit to the next as the seconds above the lower one go from 16 to 26 of
/// 900, and the target can choose where between the count steps up. On values without ties it
/// is the quantile smoothed over nine ranks, a kernel quantile estimator (Sheather and Marron,
/// 1990), which varies less from one window to the next than one ranked value. A mean of ranked
/// values with weights that do not depend on the values never falls when a value rises.
pub(crate) fn busy_quantile(highest_first: impl IntoIterator<Item = f64>, n: usize) -> Option<f64> {
    let (from, to) = busy_ranks(n);
    // As the highest value in the span less the mean shortfall of the others, so that a span
    // of equal values reads their value exactly.
    let (mut highest, mut shortfall, mut weight) = (None, 0.0, 0.0);
    for (rank, value) in highest_first.into_iter().enumerate() {
        let rank = rank as f64;
        if rank >= to {
            break;
        }
        let covered = (rank + 1.0).min(to) - rank.max(from);
        if covered > 0.0 {
            let top = *highest.get_or_insert(value);
            shortfall += (top - value) * covered;
            weight += covered;
        }
    }
    Some(highest? - shortfall / weight)
}

/// The span of ranks from the highest (0 to `n`) that [`busy_quantile`] averages over among `n`
/// values: the quantile's rank `(1 − q) n` ± its binomial standard error, within `0..n`.
fn busy_ranks(n: usize) -> (f64, f64) {
    let n = n as f64;
    let tail = (1.0 - BUSY_QUANTILE) * n;
    let error = (n * BUSY_QUANTILE * (1.0 - BUSY_QUANTILE)).sqrt();
    ((tail - error).max(0.0), (tail + error).min(n))
}

/// How many of the highest of `n` values [`busy_quantile`] reads: 26 of a full window's 900.
fn busy_ranks_read(n: usize) -> usize {
    busy_ranks(n).1.ceil() as usize
}

/// `values` without those in `range`, the later ones moved up; a range past the values
/// removes what of it there is.
fn without(values: &mut [f64], range: Range<usize>) -> &mut [f64] {
    let end = range.end.min(values.len());
    let start = range.start.min(end);
    values.copy_within(end.., start);
    let kept = values.len() - (end - start);
    &mut values[..kept]
}

/// Most values [`top_kept`] keeps on the stack: the busy quantile of a full window reads 26
/// ([`busy_ranks_read`] of [`BUSY_VALUES`]).
const TOP_KEPT: usize = 64;

/// The highest values of a stream, ascending, in a fixed array.
#[derive(Debug, Clone, Copy)]
struct Top {
    kept: [f64; TOP_KEPT],
    len: usize,
}

impl Top {
    /// The values kept, highest first.
    fn highest_first(&self) -> impl Iterator<Item = f64> + '_ {
        self.kept[..self.len].iter().rev().copied()
    }
}

/// The highest `count` of `values` (at most [`TOP_KEPT`]; all of them if fewer), which are
/// finite ([`Sample::value`](crate::Sample::value) gives no other). Most values are below the
/// lowest kept and cost one comparison, where a sort or a selection over the whole window
/// moves them all.
fn top_kept(values: impl Iterator<Item = f64>, count: usize) -> Top {
    debug_assert!(count <= TOP_KEPT, "{count} values: more than are kept");
    let mut top = Top {
        kept: [f64::NEG_INFINITY; TOP_KEPT],
        len: 0,
    };
    let count = count.min(TOP_KEPT);
    for v in values {
        if top.len < count {
            // Not full: into its place among those kept.
            let at = top.kept[..top.len].partition_point(|k| *k < v);
            top.kept.copy_within(at..top.len, at + 1);
            top.kept[at] = v;
            top.len += 1;
            continue;
        }
        let kept = &mut top.kept[..count];
        if count == 0 || v <= kept[0] {
            continue;
        }
        // Into its place, the lowest kept dropped.
        let mut i = 0;
        while i + 1 < kept.len() && kept[i + 1] < v {
            kept[i] = kept[i + 1];
            i += 1;
        }
        kept[i] = v;
    }
    top
}

/// The blocks' noise: the lower of two robust readings of σ, scaled so that their lower is σ on
/// average for normal noise ([`LOWER_OF_TWO`]).
///
/// - A low rank of the absolute successive differences ([`NOISE_RANK`], [`RANKED_DIFFERENCE`]),
///   which ignores the few differences a burst's edges make, wherever they fall against the
///   blocks' boundaries.
/// - A low rank of the absolute second differences ([`CURVATURE_RANK`],
///   [`RANKED_CURVATURE`]), which a steady trend does not make at all. A decline that lasts
///   longer than four blocks (a flash crowd decaying over minutes) makes every successive
///   difference large, and the first reading alone took its slope for noise: the load was
///   never judged to have fallen, and the crowd's peak was held as the busy level while it
///   decayed (`ebb sim --sweep` on the flash trace: 1.22× the oracle at d = 10 s, above the
///   KPA model's 1.21×; BENCHMARKS.md, issue 19, eleventh part).
fn block_noise(means: &[f64; BLOCKS]) -> f64 {
    let (by_steps, by_curvature) = readings(means);
    by_steps.min(by_curvature) / LOWER_OF_TWO
}

/// The blocks' noise read by their successive differences and by their second differences,
/// each σ on average for normal noise.
fn readings(means: &[f64; BLOCKS]) -> (f64, f64) {
    let mut differences = [0.0; BLOCKS - 1];
    for (d, pair) in differences.iter_mut().zip(means.windows(2)) {
        *d = (pair[1] - pair[0]).abs();
    }
    let mut curvatures = [0.0; BLOCKS - 2];
    for (c, triple) in curvatures.iter_mut().zip(means.windows(3)) {
        *c = (triple[2] - 2.0 * triple[1] + triple[0]).abs();
    }
    let by_steps = ranked(&mut differences, NOISE_RANK) / RANKED_DIFFERENCE;
    let by_curvature = ranked(&mut curvatures, CURVATURE_RANK) / RANKED_CURVATURE;
    (by_steps, by_curvature)
}

/// The `rank`th smallest of `values` (from 0). Reorders them.
fn ranked(values: &mut [f64], rank: usize) -> f64 {
    let (_, value, _) = values.select_nth_unstable_by(rank, |a, b| a.total_cmp(b));
    *value
}

/// The load before a span: its mean and per-second standard deviation.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Baseline {
    mean: f64,
    std_dev: f64,
}

impl Baseline {
    /// The baseline of a window, from its stats and its [`Metrics::noise`](crate::Metrics::noise); `None` with too
    /// few values to judge noise by (then any rise counts).
    pub(crate) fn from_window(stats: WindowStats, noise: Option<f64>) -> Option<Baseline> {
        Some(Baseline {
            mean: stats.mean()?,
            std_dev: noise?,
        })
    }

    /// Whether `mean`, the average over `span`, is above what the baseline's noise explains.
    /// Per-second noise averages down over a longer span, by √span.
    pub(crate) fn risen(&self, mean: f64, span: Duration) -> bool {
        let seconds = span.as_secs_f64().max(f64::MIN_POSITIVE);
        // Over steady load (σ = 0) any rise counts, but not the rounding of two means of the
        // same values: a relative hair above it.
        mean - self.mean > EVIDENCE_Z * self.std_dev / seconds.sqrt() + rounding(self.mean)
    }
}

/// Whether `mean` over `span` is a rise over `baseline`; with no baseline, any value is.
pub(crate) fn risen(baseline: Option<Baseline>, mean: f64, span: Duration) -> bool {
    baseline.is_none_or(|b| b.risen(mean, span))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::{Metrics, Sample};
    use ebb_core::autoscale::ScaleMetric;

    fn of(values: &[f64]) -> Option<Baseline> {
        let mut metrics = Metrics::new(Duration::from_secs(3600));
        for (s, v) in (1..).zip(values) {
            metrics.push(Sample {
                rps: Some(*v),
                ..Sample::new(Duration::from_secs(s))
            });
        }
        let now = Duration::from_secs(values.len() as u64);
        let rps = ScaleMetric::Rps;
        Baseline::from_window(metrics.stats(rps, now, now), metrics.noise(rps, now, now))
    }

    #[test]
    fn a_step_over_steady_load_is_a_rise_at_once() {
        let b = of(&[10.0; 54]);
        assert!(risen(b, 10.5, Duration::from_secs(1)));
        assert!(!risen(b, 10.0, Duration::from_secs(1)));
    }

    #[test]
    fn a_clump_within_the_loads_noise_is_not() {
        // Alternating 0 and 20: mean 10, σ ≈ 14.1 from successive differences. One second at 30 is within 3σ; six seconds
        // averaging 30 are not.
        let values: Vec<f64> = (0..54)
            .map(|i| if i % 2 == 0 { 0.0 } else { 20.0 })
            .collect();
        let b = of(&values);
        assert!(!risen(b, 30.0, Duration::from_secs(1)));
        assert!(risen(b, 30.0, Duration::from_secs(6)));
        // Half a second is noisier than a second.
        assert!(!risen(b, 50.0, Duration::from_millis(500)));
    }

    /// A normal draw from a xorshift generator (Box–Muller): deterministic test noise.
    fn normal(state: &mut u64) -> f64 {
        let mut uniform = || {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            ((*state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let (u, v) = (uniform(), uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    #[test]
    fn the_blocks_noise_is_unbiased_for_normal_noise() {
        let (mut state, draws) = (0x9E37_79B9_7F4A_7C15_u64, 20_000);
        let mut sums = [0.0; 3];
        for _ in 0..draws {
            let mut blocks = [0.0; BLOCKS];
            blocks
                .iter_mut()
                .for_each(|b| *b = 5.0 * normal(&mut state));
            let (by_steps, by_curvature) = readings(&blocks);
            for (sum, reading) in
                sums.iter_mut()
                    .zip([by_steps, by_curvature, block_noise(&blocks)])
            {
                *sum += reading / 5.0;
            }
        }
        for (name, sum) in ["steps", "curvature", "lower of two"].iter().zip(sums) {
            let mean = sum / f64::from(draws);
            assert!((mean - 1.0).abs() < 0.01, "{name}: σ / σtrue = {mean}");
        }
    }

    /// Seconds held at each `(value, seconds)` in turn, oldest first.
    fn levels(runs: &[(f64, usize)]) -> Vec<f64> {
        runs.iter()
            .flat_map(|&(v, n)| std::iter::repeat_n(v, n))
            .collect()
    }

    /// The busy level of `values`, one a second ending at 1 s, 2 s, …, oldest first.
    fn busy(values: &[f64]) -> Option<f64> {
        let mut blocks = BusyBlocks::default();
        let mut taken = Vec::new();
        for (i, v) in values.iter().enumerate().rev() {
            if blocks.add(Duration::from_secs(i as u64 + 1), *v).is_none() {
                break;
            }
            taken.push(*v);
        }
        taken.reverse();
        busy_level(&mut taken, &blocks)
    }

    #[test]
    fn clumpy_load_is_sized_for_its_busy_level() {
        // Levels held 10 s each, in a 50 s cycle: 1-s differences see a step in ten, but the
        // busy level is the highest of the cycle (the top 2.3 % of 900 s are at 6).
        let cycle = [2.0, 1.0, 6.0, 1.0, 3.0];
        let values: Vec<f64> = (0..900).map(|s| cycle[(s / 10) % 5]).collect();
        assert_eq!(busy(&values), Some(6.0));
    }

    #[test]
    fn a_rise_is_the_new_level_once_it_holds_its_top_seconds() {
        // Of the 811 seconds in the blocks (the first 89 are older), 30 fill the span of ranks
        // around the top 2.3 % (14.4 to 22.9 from the top), 10 do not reach it, and 20 are part
        // of the way.
        let values = levels(&[(10.0, 870), (50.0, 30)]);
        assert_eq!(busy(&values), Some(50.0));
        let values = levels(&[(10.0, 890), (50.0, 10)]);
        assert_eq!(busy(&values), Some(10.0));
        let values = levels(&[(10.0, 880), (50.0, 20)]);
        assert!(busy(&values).is_some_and(|l| 10.0 < l && l < 50.0));
    }

    #[test]
    fn a_fall_drops_the_busy_level() {
        // One step down, 20 s ago.
        let step = levels(&[(50.0, 880), (10.0, 20)]);
        assert_eq!(busy(&step), None);
        // A call of a minute, then quiet: two steps, neither of them noise. The call stood out
        // in one block by itself: that block is left out, and the quiet is the level.
        let call = levels(&[(0.0, 640), (30.0, 60), (0.0, 200)]);
        assert_eq!(busy(&call), Some(0.0));
        // The same with each edge across a block's boundary (two differences each).
        let split = levels(&[(0.0, 765), (30.0, 60), (0.0, 75)]);
        assert_eq!(busy(&split), None);
        // A peak decaying: the last block is far below the highest.
        let decay: Vec<f64> = (0..900)
            .map(|s| match s {
                0..750 => 30.0,
                _ => 30.0 + 570.0 * (-(f64::from(s) - 750.0) / 50.0).exp(),
            })
            .collect();
        assert_eq!(busy(&decay), None);
        // A crowd that builds for five minutes and drains for five at a steady rate: seven of
        // the eight differences of the block means are its slope (8.1 to 16.3 a block), so
        // their rank reads the slope as noise, and the drop from the peak (44.9) is within three
        // standard errors of it (59.3): with that reading alone the peak was held. Its second
        // differences are zero but at the corners; the slope is not noise.
        let crowd: Vec<f64> = (0..900)
            .map(|s| match s {
                0..269 => 3.0,
                269..584 => 3.0 + 57.0 * (f64::from(s) - 269.0) / 315.0,
                _ => 60.0 - 57.0 * (f64::from(s) - 584.0) / 315.0,
            })
            .collect();
        assert_eq!(busy(&crowd), None);
    }

    #[test]
    fn the_highest_block_of_steady_noise_is_left_not_the_level() {
        // Newest first; the highest at index 5 (slot 6), the second highest 1 below it.
        let means = [100.0, 101.0, 99.0, 100.5, 99.5, 102.0, 100.0, 99.2, 100.8];
        let limit = fall_limit(&means);
        let last = 101.0 - 0.9 * limit;
        assert!(
            102.0 - last > limit,
            "below the highest: {last} against {limit}"
        );
        assert_eq!(judge(&means, last), Verdict::HighestLeft(6));
        assert_eq!(judge(&means, 101.0 - 1.1 * limit), Verdict::Fallen);
        assert_eq!(judge(&means, 102.0 - 0.9 * limit), Verdict::Steady);
    }

    #[test]
    fn a_burst_that_filled_one_block_is_left_out() {
        let means = [100.0, 101.0, 99.0, 100.5, 99.5, 130.0, 99.8, 99.2, 100.8];
        assert!(fall_limit(&means) < 10.0, "{}", fall_limit(&means));
        assert_eq!(judge(&means, 99.0), Verdict::HighestLeft(6));
    }

    #[test]
    fn a_crowd_over_several_blocks_has_fallen_though_its_tail_is_within_the_limit() {
        // A flash crowd at 20 times 30 rps, decaying over five minutes, now over (newest first:
        // its tail at index 3, its peak at 4, its rise at 5).
        let means = [30.0, 30.0, 60.0, 170.0, 375.0, 120.0, 30.0, 30.0, 30.0];
        // Its edges are most of the blocks' differences, so the noise read grows with them.
        assert!(170.0 - 30.0 <= fall_limit(&means), "{}", fall_limit(&means));
        assert_eq!(judge(&means, 30.0), Verdict::Fallen);
    }

    #[test]
    fn a_left_blocks_seconds_do_not_count_in_the_level() {
        let mut state = 5_u64;
        let mut left = 0;
        for _ in 0..200 {
            let values: Vec<f64> = (0..900)
                .map(|_| 100.0 + 10.0 * normal(&mut state))
                .collect();
            let mut blocks = BusyBlocks::default();
            // The 89 values ending at 1 s to 89 s are older than the blocks: no slot.
            let mut slots = vec![None; values.len()];
            for (i, v) in values.iter().enumerate().rev() {
                slots[i] = blocks.add(Duration::from_secs(i as u64 + 1), *v);
            }
            let Some(Verdict::HighestLeft(slot)) = blocks.verdict() else {
                continue;
            };
            left += 1;
            // The slot left is the complete block with the highest mean.
            let mean = |s: u8| {
                let of: Vec<f64> = (0..values.len())
                    .filter(|&i| slots[i] == Some(s))
                    .map(|i| values[i])
                    .collect();
                of.iter().sum::<f64>() / of.len() as f64
            };
            assert!((1..=9).all(|s| mean(s) <= mean(slot)), "slot {slot}");
            let rest: Vec<f64> = (0..values.len())
                .filter(|&i| slots[i].is_some_and(|s| s != slot))
                .map(|i| values[i])
                .collect();
            assert_eq!(busy(&values), quantile(&rest));
        }
        assert!(left > 0, "no window left its highest block");
    }

    #[test]
    fn steady_noise_seldom_drops_its_level() {
        // Judged against the highest of nine blocks alone, the newest 90 s of steady normal
        // noise were below it in 10 of these 200 windows (the highest of nine adds about
        // 1.5 σ); against the two highest, in 4.
        let mut state = 3_u64;
        let values: Vec<f64> = (0..900 * 200)
            .map(|_| 100.0 + 10.0 * normal(&mut state))
            .collect();
        let windows: Vec<&[f64]> = values.chunks(900).collect();
        let dropped = windows.iter().filter(|w| busy(w).is_none()).count();
        assert!(
            dropped * 25 <= windows.len(),
            "{dropped} of {}",
            windows.len()
        );
    }

    #[test]
    fn seconds_older_than_the_blocks_do_not_count() {
        // 89 s at 50, then 811 s at 10: the 50s are older than the nine complete blocks (the
        // fall test cannot see them), so they are not the busy level either.
        let values = levels(&[(50.0, 89), (10.0, 811)]);
        assert_eq!(busy(&values), Some(10.0));
    }

    #[test]
    fn a_step_down_through_noise_is_a_fall() {
        let mut state = 11_u64;
        let values: Vec<f64> = (0..900)
            .map(|s| match s {
                0..840 => 100.0,
                _ => 50.0,
            } + 5.0 * normal(&mut state))
            .collect();
        assert_eq!(busy(&values), None);
        // The same load without the step keeps its level.
        let steady: Vec<f64> = (0..900).map(|_| 100.0 + 5.0 * normal(&mut state)).collect();
        assert!(busy(&steady).is_some());
    }

    #[test]
    fn noise_around_a_steady_level_is_not_a_fall() {
        let mut state = 7_u64;
        let values: Vec<f64> = (0..900)
            .map(|_| 100.0 + 10.0 * normal(&mut state))
            .collect();
        let level = busy(&values).expect("steady");
        // About two σ above the mean, as mean + 2σ would size it (a percentile of ~810 values
        // is itself within a few units of 120).
        assert!((112.0..128.0).contains(&level), "{level}");
    }

    #[test]
    fn a_window_without_every_block_gives_no_level() {
        // Nine complete blocks of 90 s before the one in progress: 899 s ending at 1 s … 899 s
        // lack the block 0–89 s's first second only, 809 s lack whole blocks.
        assert_eq!(busy(&[5.0; 899]), Some(5.0));
        assert_eq!(busy(&[5.0; 809]), None);
    }

    #[test]
    fn the_judgement_does_not_flicker_as_the_window_slides() {
        // A square wave (120 s at 100, 20 s at 20): the blocks' noise and highest are those of
        // the clock's blocks, so the level does not go on and off from one second to the next.
        let wave = |s: u64| if s % 140 < 120 { 100.0 } else { 20.0 };
        let mut changes = 0;
        let mut last = None;
        for end in 1200..1800u64 {
            let values: Vec<f64> = (end - 899..=end).map(wave).collect();
            let on = busy(&values).is_some();
            changes += usize::from(last.is_some_and(|l| l != on));
            last = Some(on);
        }
        // At most a fall and a return per cycle of 140 s (600 s: five cycles).
        assert!(changes <= 10, "{changes} changes");
    }

    /// The busy quantile of `values`, sorted here.
    fn quantile(values: &[f64]) -> Option<f64> {
        let mut sorted = values.to_vec();
        sorted.sort_by(|a, b| b.total_cmp(a));
        busy_quantile(sorted.iter().copied(), sorted.len())
    }

    #[test]
    fn the_quantile_is_the_mean_of_its_span_of_ranks() {
        let mut state = 5_u64;
        for n in [1, 2, 23, 180, 300, 900] {
            let values: Vec<f64> = (0..n).map(|_| 3.0 * normal(&mut state)).collect();
            let mut sorted = values.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            let (from, to) = busy_ranks(n);
            let got = quantile(&values).unwrap();
            let (low, high) = (
                sorted[to.ceil() as usize - 1],
                sorted[from.floor() as usize],
            );
            assert!(
                low <= got && got <= high,
                "n {n}: {got} not in {low}..{high}"
            );
            assert!(busy_ranks_read(n) <= TOP_KEPT.min(n), "n {n}");
            // Every rank weighted by how much of `[rank, rank + 1)` the span covers.
            let (mut sum, mut weight) = (0.0, 0.0);
            for (rank, v) in sorted.iter().enumerate() {
                let w = ((rank + 1) as f64).min(to) - (rank as f64).max(from);
                if w > 0.0 {
                    sum += w * v;
                    weight += w;
                }
            }
            let mean = sum / weight;
            assert!((got - mean).abs() < 1e-9, "n {n}: {got} against {mean}");
        }
        assert_eq!(quantile(&[]), None);
        assert_eq!(quantile(&[4.0; 900]), Some(4.0));
        // 900 values: ranks 16.2 to 25.2 from the top, the nine around the 21st.
        let (from, to) = busy_ranks(900);
        assert!(
            (from - 16.2).abs() < 0.05 && (to - 25.2).abs() < 0.05,
            "{from}..{to}"
        );
    }

    #[test]
    fn whole_units_read_between_them_by_the_seconds_above_the_lower() {
        // 900 seconds at 5 but for `k` at 6: the level rises from 5 to 6 as `k` goes from 16
        // to 26, by less than a fifth of a unit a second, where the value at the quantile's
        // rank read 5 up to 21 seconds at 6 and 6 from 22 on.
        let level = |k: usize| {
            let mut values = vec![5.0; 900 - k];
            values.extend(std::iter::repeat_n(6.0, k));
            quantile(&values).unwrap()
        };
        let levels: Vec<f64> = (0..=900).map(level).collect();
        assert!(
            levels[..=16].iter().all(|l| *l == 5.0),
            "{:?}",
            &levels[..=16]
        );
        assert!(
            levels[26..].iter().all(|l| *l == 6.0),
            "{:?}",
            &levels[26..30]
        );
        for (k, pair) in levels.windows(2).enumerate() {
            assert!(pair[1] >= pair[0], "{k} → {}: {pair:?}", k + 1);
            assert!(pair[1] - pair[0] < 0.2, "a jump at {k}: {pair:?}");
        }
        assert!(levels[20] > 5.3 && levels[20] < 5.6, "{}", levels[20]);
    }

    #[test]
    fn the_top_kept_are_the_highest_of_a_sort() {
        let mut state = 7_u64;
        for n in [0, 1, 5, 26, 64, 900] {
            // Ties too: rounded to a few distinct values.
            let values: Vec<f64> = (0..n).map(|_| (3.0 * normal(&mut state)).round()).collect();
            let mut sorted = values.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            for count in [0, 1, 21, 26, TOP_KEPT] {
                let top = top_kept(values.iter().copied(), count);
                let got: Vec<f64> = top.highest_first().collect();
                assert_eq!(got, sorted[..count.min(n)], "n {n}, count {count}");
            }
        }
    }

    #[test]
    fn without_two_values_any_rise_counts() {
        assert_eq!(of(&[5.0, 6.0]), None);
        assert!(risen(None, 0.0, Duration::from_secs(1)));
    }
}
