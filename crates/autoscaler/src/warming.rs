//! The busy level of a busy window still filling: a service's first fifteen minutes, and every
//! service's after a server restart or a change of leader, or after its router went silent
//! for a whole block.
//!
//! The busy level ([`Metrics::busy`](crate::Metrics::busy)) needs every 90 s block of its
//! fifteen minutes. Until then target tracking sized for the stable window's mean and its
//! one-second noise alone, which misses clumps: on the noisy trace at a target of 0.8, a tenth
//! of ebb's missed seconds in a day fell in its first fifteen minutes (85 of 850 at d = 10 s,
//! 132 of 748 at 60 s; 29 and 65 with this reading; `ebb sim`, issue 19, sixteenth part), and
//! a restarted server would do the same for every service at once.
//!
//! So from the second complete block on, the level is read from what the window holds: the
//! [`BUSY_QUANTILE`](crate::BUSY_QUANTILE) quantile of its values, with the same fall test
//! (`judge` in the module `noise`) on nine spans that share the complete blocks between them
//! (20 s each over two blocks, 80 s over eight). A level the load left, such as a first call
//! followed by quiet, is dropped as the full window drops it, and a span that stood out by
//! itself is left out.

use crate::noise::{judge, quantile_rank, Verdict, BLOCKS, BLOCK_SECS, BUSY_VALUES};

/// Complete blocks a filling window needs before its level is read: two (180 s), the fewest
/// whose busy quantile has four values above it (0.023 × 180). Fewer would be a reading of
/// one or two seconds, a single clump.
pub(crate) const WARMING_BLOCKS: u64 = 2;

/// Seconds in one of the nine spans over `complete` blocks: 10 s a block.
const SPAN_SECS_PER_BLOCK: u64 = BLOCK_SECS / BLOCKS as u64;

// The spans divide the blocks exactly.
const _: () = assert!(BLOCK_SECS.is_multiple_of(BLOCKS as u64));

/// The busy level of a filling window's `values`, each with the second it ended at, oldest
/// first; `complete` blocks of [`BLOCK_SECS`] begin at second `start`, and the values after
/// them are those of the block in progress. `None` when the load fell within them, a span
/// has no value, `complete` is not below [`BLOCKS`] (a full window has its own level) or is 0,
/// or there are more values than [`BUSY_VALUES`].
pub(crate) fn warming_level(values: &[(u64, f64)], start: u64, complete: u64) -> Option<f64> {
    if values.len() > BUSY_VALUES || !(1..BLOCKS as u64).contains(&complete) {
        return None;
    }
    let span = complete * SPAN_SECS_PER_BLOCK;
    let end = start + complete * BLOCK_SECS;
    // Newest first, as `judge` reads them.
    let slot = |second: u64| -> Option<usize> {
        let i = usize::try_from(second.checked_sub(start)? / span).ok()?;
        (second < end).then(|| BLOCKS - 1 - i)
    };
    let (mut sums, mut counts) = ([0.0; BLOCKS], [0u32; BLOCKS]);
    for &(s, v) in values {
        if let Some(i) = slot(s) {
            sums[i] += v;
            counts[i] += 1;
        }
    }
    if counts.contains(&0) {
        return None;
    }
    let means: [f64; BLOCKS] = std::array::from_fn(|i| sums[i] / f64::from(counts[i]));
    let newest = values.len().saturating_sub(usize::try_from(span).ok()?);
    let recent = &values[newest..];
    let recent = recent.iter().map(|(_, v)| v).sum::<f64>() / recent.len().max(1) as f64;
    let left = match judge(&means, recent) {
        Verdict::Steady => None,
        // Slots count from the block in progress; `means` from the newest complete span.
        Verdict::HighestLeft(slot) => Some(usize::from(slot) - 1),
        Verdict::Fallen => return None,
    };
    let mut kept = [0.0; BUSY_VALUES];
    let mut n = 0;
    for &(s, v) in values {
        if left.is_none() || slot(s) != left {
            kept[n] = v;
            n += 1;
        }
    }
    if n == 0 {
        return None;
    }
    let kept = &mut kept[..n];
    let rank = quantile_rank(n);
    let (_, level, _) = kept.select_nth_unstable_by(rank, f64::total_cmp);
    Some(*level)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values of seconds `0..seconds`, `value(second)` each.
    fn values(seconds: u64, value: impl Fn(u64) -> f64) -> Vec<(u64, f64)> {
        (0..seconds).map(|s| (s, value(s))).collect()
    }

    /// A wiggle of ±3 around 100 that repeats every 5 s: the same mean in every span.
    fn steady(s: u64) -> f64 {
        100.0 + [0.0, 3.0, -3.0, 1.0, -1.0][(s % 5) as usize]
    }

    /// The busy quantile of `values`, by sorting them.
    fn quantile(values: &[(u64, f64)]) -> f64 {
        let mut v: Vec<f64> = values.iter().map(|(_, v)| *v).collect();
        v.sort_by(f64::total_cmp);
        v[quantile_rank(v.len())]
    }

    #[test]
    fn steady_load_gives_the_busy_quantile_of_every_value() {
        for complete in WARMING_BLOCKS..BLOCKS as u64 {
            let v = values(complete * BLOCK_SECS + 40, steady);
            assert_eq!(warming_level(&v, 0, complete), Some(quantile(&v)));
        }
    }

    #[test]
    fn a_load_that_fell_within_the_blocks_has_no_level() {
        // 100 for a minute, then 10: over two blocks of 20 s spans, three spans stand high.
        let v = values(2 * BLOCK_SECS + 30, |s| if s < 60 { 100.0 } else { 10.0 });
        assert_eq!(warming_level(&v, 0, 2), None);
        // The same minute of quiet before it is a rise, not a fall: every second counts.
        let v = values(2 * BLOCK_SECS + 30, |s| if s < 60 { 10.0 } else { 100.0 });
        assert_eq!(warming_level(&v, 0, 2), Some(100.0));
    }

    #[test]
    fn a_span_that_stood_out_by_itself_is_left_out() {
        // Three blocks, spans of 30 s; the second span (30 to 59 s) at 400.
        let value = |s: u64| {
            if (30..60).contains(&s) {
                400.0
            } else {
                steady(s)
            }
        };
        let v = values(3 * BLOCK_SECS + 40, value);
        let without: Vec<_> = v
            .iter()
            .copied()
            .filter(|(s, _)| !(30..60).contains(s))
            .collect();
        assert_eq!(warming_level(&v, 0, 3), Some(quantile(&without)));
        // Counted, its thirty seconds would be the top 10 %.
        assert_eq!(quantile(&v), 400.0);
    }

    #[test]
    fn a_span_without_a_value_or_too_many_values_give_none() {
        let v: Vec<_> = values(2 * BLOCK_SECS + 40, steady)
            .into_iter()
            .filter(|(s, _)| !(100..120).contains(s))
            .collect();
        assert_eq!(warming_level(&v, 0, 2), None);
        let v = values(BUSY_VALUES as u64 + 1, steady);
        assert_eq!(warming_level(&v, 0, 8), None);
    }
}
