//! The learned scale-down delay of `scale_down_delay = "auto"`: how long capacity the load
//! stopped asking for is kept, from how long the service's load has stayed below a count before
//! it asked for that count again.
//!
//! A fixed delay is wrong both ways: bursty, stationary traffic asks again for an instance
//! seconds after releasing it (each release is then a start time of missed capacity), while a
//! load that steps down for half an hour pays the whole delay at every step. Each level of the
//! policy's recommendation is a small keep-alive problem: when the recommendation falls below
//! level `k` a dip begins, and it ends when the recommendation is back at `k`. A rise keeps
//! one [`Dip`] for each band (below) it reaches into, standing for the levels it regained
//! there; the last [`GAPS_KEPT`](crate::GAPS_KEPT) of them, weighted by their levels, and the
//! measured start time give the delay of least cost, by the same rule as the idle keep-alive
//! ([`crate::keep_alive`]: a second of missing capacity is priced at
//! [`WAIT_PRICE`](crate::WAIT_PRICE) instance-seconds).
//!
//! Kept level by level, one rise through a band of hundreds of levels pushed out all it knew:
//! a flash crowd's return within ten minutes filled the 256–511 band with 128 dips of 300–500
//! s, the flash before it, whose levels were not needed again for an hour, was forgotten, and
//! the next flash's fall held 511 instances for 540 s while the load needed 30 (`ebb sim` on
//! the flash trace ×10 at 60 s, issue 19, twentieth part). Kept per rise and weighted, a band
//! remembers its last 128 rises (and dips that passed the hour), each weighing as many levels
//! as it regained.
//!
//! Levels are learned in bands of an octave (`2^b ..= 2^(b+1) - 1` instances): the levels a
//! load flickers around dip often and briefly, the levels only a surge reaches dip once per
//! surge and for long. Learned together, the many brief dips set the delay, and the end of every
//! surge is held for it; learned by band, each level keeps capacity for as long as its own dips
//! say (`ebb sim --sweep`, BENCHMARKS.md, issue 19, ninth part). A band with fewer than
//! [`MIN_GAPS`](crate::MIN_GAPS) dips of its own takes the delay of the nearest band above it
//! that has them: above the counts the load flickers around, counts it has rarely left are
//! counts it rarely reaches, like those above them, and the dips of every level are mostly the
//! flicker's. Learned from all of them, the first fall of a flash crowd through levels it had
//! never left held 511 instances for the flicker's 311 s while the load needed 20 to 100 (`ebb
//! sim` on the flash trace ×10 at 60 s, issue 19, eighteenth part). Only a band with none
//! learned above it takes the delay of every level.

use crate::keep_alive::{cheapest_weighted_keep, Spells};
use ebb_core::autoscale::MAX_SCALE_WINDOW;
use std::time::Duration;

/// Highest level followed: 10,000 (the most instances a service may have).
const MAX_LEVEL: u32 = ebb_core::service::MAX_INSTANCES;

/// Bands of levels: octaves up to the most instances a service may have
/// ([`MAX_INSTANCES`](ebb_core::service::MAX_INSTANCES); the last, 13, is 8,192 ..= 10,000).
pub const DIP_BANDS: usize = (u32::BITS - MAX_LEVEL.leading_zeros()) as usize;

/// The band of `level` (at least 1): `b` for `2^b ..= 2^(b+1) - 1`.
fn band(level: u32) -> usize {
    (u32::BITS - 1 - level.clamp(1, MAX_LEVEL).leading_zeros()) as usize
}

/// The lowest and highest levels of band `b` (at most the last): `2^b ..= 2^(b+1) - 1`, the
/// last up to the most instances.
fn band_bounds(b: usize) -> (u32, u32) {
    let low = 1u32 << b.min(DIP_BANDS - 1);
    (low, (low * 2 - 1).min(MAX_LEVEL))
}

/// How many levels band `b` has.
fn band_width(b: usize) -> u32 {
    let (low, high) = band_bounds(b);
    high - low + 1
}

/// The levels of band `b`, as a reason says them: `4–7`, or `1` alone.
fn band_levels(b: usize) -> String {
    let (low, high) = band_bounds(b);
    match low == high {
        true => low.to_string(),
        false => format!("{low}–{high}"),
    }
}

/// A dip kept: how long the levels of one band that one rise regained had stayed below, and
/// how many levels they were. The length is that of the middle level regained: a higher level
/// fell no later than a lower one, so it is the median of theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dip {
    /// From the fall below the level to the rise back (at most the longest delay).
    pub length: Duration,
    /// The levels it stands for (at least 1): its cost is theirs.
    pub levels: u32,
}

impl Dip {
    /// A dip of `length` standing for `levels`, within what is followed: at most the longest
    /// delay, and 1 to the most instances a service may have.
    pub fn new(length: Duration, levels: u32) -> Dip {
        Dip {
            length: length.min(MAX_SCALE_WINDOW),
            levels: levels.clamp(1, MAX_LEVEL),
        }
    }
}

/// A count held by the learned delay, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Held {
    /// The count kept.
    pub count: u32,
    /// Its delay ([`Dips::delay_of`]).
    pub delay: Duration,
}

/// The dips of a service's recommendation, and the delay learned from them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dips {
    /// When the recommendation last fell below each level (index `k - 1` for level `k`). The
    /// open levels are `last + 1 ..= fell.len()` (entries below are stale); a higher level fell
    /// no later than a lower one, so the oldest are at the end.
    fell: Vec<Duration>,
    /// The recommendation at the last tick.
    last: u32,
    /// The dips of every level (a dip longer than the longest delay counts as that), and the
    /// delay learned from them: that of a band with too few dips of its own and none learned
    /// above it.
    dips: Spells<Duration>,
    /// The dips of each band of levels (index `b` for `2^b ..= 2^(b+1) - 1`), and the delay
    /// learned from them.
    bands: [Spells<Duration>; DIP_BANDS],
}

impl Dips {
    /// Notes the policy's recommendation at `now`.
    pub(crate) fn observe(&mut self, now: Duration, recommendation: u32) {
        let (r, last) = (recommendation.min(MAX_LEVEL) as usize, self.last as usize);
        if r > last {
            // Levels regained end their dips: one entry per band, weighted by its levels.
            let regained = last as u32 + 1..=r.min(self.fell.len()) as u32;
            for (level, weight) in band_middles(regained) {
                let dip = now.saturating_sub(self.fell[level as usize - 1]);
                self.record(level, dip, weight);
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
        // Dips open past the longest delay are as long as it needs to know (recorded as a
        // rise's: the levels that fell together end together).
        let open = self.fell.len();
        while self.fell.len() > r
            && self
                .fell
                .last()
                .is_some_and(|&at| at.saturating_add(MAX_SCALE_WINDOW) <= now)
        {
            self.fell.pop();
        }
        for (level, weight) in band_middles(self.fell.len() as u32 + 1..=open as u32) {
            self.record(level, MAX_SCALE_WINDOW, weight);
        }
    }

    /// Forgets the open dips: the requests stopped, and when they come back the idle
    /// keep-alive, not the scale-down delay, has decided what runs.
    pub(crate) fn idle(&mut self) {
        self.fell.clear();
        self.last = 0;
    }

    fn record(&mut self, level: u32, dip: Duration, weight: u32) {
        let dip = Dip {
            length: dip,
            levels: weight,
        };
        push(&mut self.dips, dip);
        push(&mut self.bands[band(level)], dip);
    }

    /// Dips remembered of every level, one per level (a rise that regained ten levels ended
    /// ten).
    pub fn dips(&self) -> usize {
        usize::try_from(self.dips.weight()).unwrap_or(usize::MAX)
    }

    /// The dips remembered, of every level, oldest first: what a server keeps in its store, so
    /// that a restart or a new leader does not fall back to the fixed delay for
    /// [`MIN_GAPS`](crate::MIN_GAPS) more dips.
    pub fn all_dips(&self) -> impl Iterator<Item = Dip> + '_ {
        kept(&self.dips)
    }

    /// The dips of band `band` (levels `2^band ..= 2^(band+1) - 1`) remembered, oldest first
    /// (none past [`DIP_BANDS`]).
    pub fn band_dips(&self, band: usize) -> impl Iterator<Item = Dip> + '_ {
        self.bands.get(band).map(kept).into_iter().flatten()
    }

    /// Entries noted since this was created (restored ones included): it changes when there is
    /// something new to keep.
    pub fn dips_noted(&self) -> u64 {
        self.dips.pushed()
    }

    /// Remembers kept dips (oldest first) as if seen, before any new one: `all` of every
    /// level, and `bands` (index `b` for `2^b ..= 2^(b+1) - 1`; those past [`DIP_BANDS`] are
    /// dropped). Each is brought within what is followed ([`Dip::new`]; a band's, within its
    /// levels), and each keeps its last [`GAPS_KEPT`](crate::GAPS_KEPT). The dips open when
    /// they were kept are not among them: they begin again at the next fall.
    pub fn restore<A, B>(&mut self, all: A, bands: impl IntoIterator<Item = B>)
    where
        A: IntoIterator<Item = Dip>,
        B: IntoIterator<Item = Dip>,
    {
        for dip in all {
            push(&mut self.dips, dip);
        }
        for (b, (spells, dips)) in self.bands.iter_mut().zip(bands).enumerate() {
            let width = band_width(b);
            for dip in dips {
                let levels = dip.levels.min(width);
                push(spells, Dip { levels, ..dip });
            }
        }
    }

    /// The scale-down delay of every level for instances that take `start` to serve, once
    /// there are [`MIN_GAPS`](crate::MIN_GAPS) dips.
    pub(crate) fn delay(&mut self, start: Duration) -> Option<Duration> {
        learned_delay(&mut self.dips, start)
    }

    /// The delay of `level` for instances that take `start` to serve: its band's, or while the
    /// band has fewer than [`MIN_GAPS`](crate::MIN_GAPS) dips the nearest learned band's above
    /// it, or that of every level.
    fn delay_of(&mut self, level: u32, start: Duration) -> Option<Duration> {
        match self.learned_band(level) {
            Some(b) => learned_delay(&mut self.bands[b], start),
            None => self.delay(start),
        }
    }

    /// The band whose dips set `level`'s delay: its own once it has
    /// [`MIN_GAPS`](crate::MIN_GAPS) dips, else the nearest above it that has; `None` for the
    /// dips of every level.
    fn learned_band(&self, level: u32) -> Option<usize> {
        (band(level)..DIP_BANDS).find(|&b| self.bands[b].learns())
    }

    /// The highest count in `(count, base]` the recommendation was at within its delay
    /// ([`Dips::delay_of`]; at the last tick, or since), else `count`; `None` until a delay is
    /// learned, when the fixed delay applies.
    pub(crate) fn held(
        &mut self,
        now: Duration,
        count: u32,
        base: u32,
        start: Duration,
    ) -> Option<Held> {
        let pooled = self.delay(start)?;
        let mut highest = base.min(MAX_LEVEL);
        // Octave by octave from the top: an octave's levels share one delay, looked up once
        // (never `None` here: a band `delay_of` picks has learned one, and without such a band
        // it is `pooled`).
        while highest > count {
            let delay = self.delay_of(highest, start).unwrap_or(pooled);
            let lowest = (1 << band(highest)).max(count + 1);
            for level in (lowest..=highest).rev() {
                let fell = self.fell.get(level as usize - 1);
                let recent =
                    level <= self.last || fell.is_some_and(|&at| now < at.saturating_add(delay));
                if recent {
                    return Some(Held {
                        count: level,
                        delay,
                    });
                }
            }
            highest = lowest - 1;
        }
        Some(Held {
            count,
            delay: pooled,
        })
    }

    /// How the delay of `level` was learned, for a reason: `learned from the 128 dips of 4–7
    /// instances`.
    pub(crate) fn explain(&self, level: u32) -> String {
        match self.learned_band(level) {
            Some(b) => {
                let (own, levels) = (self.bands[b].weight(), band_levels(b));
                let mut how = format!("learned from the {own} dips of {levels} instances");
                if b != band(level) {
                    how += &format!(" (too few of {})", band_levels(band(level)));
                }
                how
            }
            None => format!("learned from {} dips of every level", self.dips.weight()),
        }
    }
}

/// The delay `dips` learned for `start`, once they weigh [`MIN_GAPS`](crate::MIN_GAPS): of
/// least cost over them, a dip kept through costing its length, one released the delay, a
/// start, and the start's wait at [`WAIT_PRICE`](crate::WAIT_PRICE), each times its weight.
///
/// The wait is priced in full whichever level dipped: one instance of ten missing delays only
/// a tenth of the load on average, but bursty load is missed by its clumps, and a price scaled
/// by `1/level` kept too little for them (`ebb sim --sweep`: NASA ×100 at 60 s starts 1.17× →
/// 1.43× the oracle, noisy 1.97× → 2.71×; BENCHMARKS.md, issue 19).
fn learned_delay(dips: &mut Spells<Duration>, start: Duration) -> Option<Duration> {
    dips.learned(start, |dips, start| {
        cheapest_weighted_keep(dips.iter().copied(), start, MAX_SCALE_WINDOW)
    })
}

/// Keeps `dip` in `spells`, brought within what is followed ([`Dip::new`]).
fn push(spells: &mut Spells<Duration>, dip: Dip) {
    let Dip { length, levels } = Dip::new(dip.length, dip.levels);
    spells.push(length, levels);
}

/// The dips `spells` keep, oldest first.
fn kept(spells: &Spells<Duration>) -> impl Iterator<Item = Dip> + '_ {
    spells
        .spells()
        .map(|(length, levels)| Dip { length, levels })
}

/// The middle level of each band `levels` reach into, lowest band first, with how many of the
/// band's levels they are: the entry a rise through `levels` records for each band.
fn band_middles(levels: std::ops::RangeInclusive<u32>) -> impl Iterator<Item = (u32, u32)> {
    let (low, high) = (*levels.start(), *levels.end());
    // Nothing regained: no band (`band` would give the band of the single level).
    let bands = match low <= high {
        true => band(low)..band(high) + 1,
        false => 0..0,
    };
    bands.map(move |b| {
        let (first, last) = band_bounds(b);
        let (from, to) = (first.max(low), last.min(high));
        (from + (to - from) / 2, to - from + 1)
    })
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
        let lengths: Vec<_> = d.all_dips().map(|d| d.length).collect();
        assert_eq!(lengths, [secs(4), secs(6)]);
        assert_eq!(d.fell.len(), 5);
        assert_eq!(d.last, 5);
    }

    #[test]
    fn a_dip_that_does_not_end_counts_as_the_longest_delay() {
        let mut d = observed(&[3, 1]);
        d.observe(secs(2) + MAX_SCALE_WINDOW, 1);
        // Levels 2 and 3 fell together: one entry of their band, standing for both.
        assert!(d.all_dips().eq([Dip::new(MAX_SCALE_WINDOW, 2)]));
        assert_eq!(d.fell.len(), 1);
    }

    #[test]
    fn a_rise_records_each_band_once_weighted_by_its_levels() {
        // 12 down to 1 at 2 s, up to 4 at 5 s and down again at 6 s, up to 12 at 11 s.
        let mut d = observed(&[12, 1]);
        d.observe(secs(5), 4);
        d.observe(secs(6), 1);
        d.observe(secs(11), 12);
        // The rise to 4: band 2–3 (its middle level 2) and band 4–7 (level 4), 3 s each; the
        // rise to 12: level 2 (5 s), level 5 of 4–7 (fell at 2 s: 9 s), level 10 of 8–12.
        let entries: Vec<_> = d
            .all_dips()
            .map(|d| (d.length.as_secs(), d.levels))
            .collect();
        assert_eq!(entries, [(3, 2), (3, 1), (5, 2), (9, 4), (9, 5)]);
        assert_eq!(d.dips(), 14);
        assert_eq!(
            band_middles(300..=700).collect::<Vec<_>>(),
            [(405, 212), (606, 189)]
        );
        let none = std::ops::RangeInclusive::new(6, 5);
        assert_eq!(band_middles(none).count(), 0, "nothing regained");
    }

    #[test]
    fn one_return_of_a_surge_does_not_push_out_what_its_band_knew() {
        let start = secs(60);
        let mut d = Dips::default();
        // A surge to 600 falls to 30 and is not asked for again within the hour.
        let t = secs(1_000);
        d.observe(t, 600);
        d.observe(t + secs(1), 30);
        d.observe(t + secs(1) + MAX_SCALE_WINDOW, 30);
        // The next falls to 30 too, and the one after it asks for 600 again 400 s later: 256
        // levels of 256–511 dipped 400 s, as many as had dipped an hour.
        let t = t + secs(10_000);
        d.observe(t, 600);
        d.observe(t + secs(1), 30);
        d.observe(t + secs(401), 600);
        // Kept level by level, the 256 short dips were the band's last 128 and held it for
        // them; weighed against the hour, releasing costs least.
        let delay = d.delay_of(300, start).expect("learned");
        assert!(delay < start, "{delay:?}");
        d.observe(t + secs(402), 30);
        let held = d
            .held(t + secs(402) + start, 30, 600, start)
            .expect("learned");
        assert_eq!(held.count, 30, "{held:?}");
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
        // Rises of one level (4) and of three (2–4, two bands).
        let mut seen = observed(&[[4, 3, 3, 3, 4], [4, 1, 1, 1, 4]].concat().repeat(5));
        let mut restored = Dips::default();
        let bands = (0..DIP_BANDS).map(|b| seen.band_dips(b).collect::<Vec<_>>());
        restored.restore(seen.all_dips(), bands.collect::<Vec<_>>());
        assert!(restored.all_dips().eq(seen.all_dips()));
        assert_eq!(restored.band_dips(2).count(), 10, "level 4's band");
        assert_eq!(restored.band_dips(1).map(|d| d.levels).sum::<u32>(), 10);
        assert_eq!((restored.dips(), restored.dips_noted()), (20, 15));
        assert_eq!(restored.delay(secs(10)), seen.delay(secs(10)));
        assert_eq!(restored.delay_of(4, secs(10)), seen.delay_of(4, secs(10)));
        assert_eq!(restored.delay_of(2, secs(10)), seen.delay_of(2, secs(10)));

        let mut capped = Dips::default();
        let long = [
            Dip::new(secs(3), 2),
            Dip {
                length: MAX_SCALE_WINDOW + secs(1),
                levels: 0,
            },
        ];
        capped.restore(long, [long.to_vec(), long.to_vec()]);
        let within = [Dip::new(secs(3), 2), Dip::new(MAX_SCALE_WINDOW, 1)];
        assert!(capped.all_dips().eq(within));
        assert!(capped.band_dips(1).eq(within));
        assert_eq!(Dip::new(secs(1), u32::MAX).levels, MAX_LEVEL);
        // A band's dip stands for no more levels than the band has (2–3: two).
        let mut wide = Dips::default();
        wide.restore([], [vec![], vec![Dip::new(secs(1), 500)]]);
        assert!(wide.band_dips(1).eq([Dip::new(secs(1), 2)]));
        assert_eq!([0, 1, 9, DIP_BANDS - 1].map(band_width), [1, 2, 512, 1_809]);
        // Bands past the last are dropped.
        let mut past = Dips::default();
        past.restore([], vec![vec![Dip::new(secs(1), 1)]; DIP_BANDS + 1]);
        let kept: usize = (0..=DIP_BANDS).map(|b| past.band_dips(b).count()).sum();
        assert_eq!(kept, DIP_BANDS);
    }

    #[test]
    fn levels_are_banded_by_octave_up_to_the_most_instances() {
        assert_eq!([1, 2, 3, 4, 7, 8].map(band), [0, 1, 1, 2, 2, 3]);
        assert_eq!((band(1_000), band(10_000)), (9, DIP_BANDS - 1));
        assert_eq!(band(50_000), DIP_BANDS - 1);
        assert_eq!(band_levels(0), "1");
        assert_eq!(band_levels(2), "4–7");
        assert_eq!(band_levels(DIP_BANDS - 1), "8192–10000");
    }

    #[test]
    fn levels_never_left_before_are_released_like_the_surge_above_them_not_the_flicker() {
        // Learned: a flicker at 2–3 instances back within 30 s, a hundred times, and eight
        // dips of half an hour at 16–31; none yet at 4–15, the counts the first fall of a
        // surge passes through.
        let flicker = vec![Dip::new(secs(30), 1); 100];
        let surges = vec![Dip::new(secs(1_800), 1); 8];
        let all = flicker.iter().chain(&surges).copied().collect::<Vec<_>>();
        let mut bands = vec![Vec::new(); DIP_BANDS];
        bands[1] = flicker;
        bands[4] = surges;
        let mut d = Dips::default();
        d.restore(all, bands);
        let start = secs(10);
        assert!(d.delay(start).expect("learned") > secs(30), "the flicker's");
        let surge = d.delay_of(20, start).expect("learned");
        assert!(surge < secs(5), "{surge:?}");
        assert_eq!(d.delay_of(10, start), Some(surge));
        assert_eq!(d.delay_of(4, start), Some(surge));
        let how = d.explain(10);
        assert!(
            how.ends_with("of 16–31 instances (too few of 8–15)"),
            "{how}"
        );

        // A surge to 20 falls back to 3: ten seconds later none of 4–20 is held (with the
        // delay of every level, 4–15 were held for the flicker's).
        let t = secs(100_000);
        d.observe(t, 20);
        d.observe(t + secs(1), 3);
        let held = d.held(t + secs(11), 3, 20, start).expect("learned");
        assert_eq!(held.count, 3, "{held:?}");
    }

    /// A load that flickers between 7 and 8 instances, back within 30 s, and surges to 20 for
    /// half an hour at a time.
    fn flicker_and_surges() -> Dips {
        let mut d = Dips::default();
        let mut at = 0;
        for _ in 0..10 {
            for _ in 0..10 {
                d.observe(secs(at), 8);
                d.observe(secs(at + 1), 7);
                at += 31;
            }
            d.observe(secs(at), 20);
            d.observe(secs(at + 1), 16);
            at += 1_800;
        }
        d.observe(secs(at), 20);
        d
    }

    #[test]
    fn a_surge_s_levels_are_released_by_their_own_dips_not_the_flicker_s() {
        let mut d = flicker_and_surges();
        let start = secs(10);
        // Every level's dips: the flicker's hundred dips of 30 s set a delay past 30 s.
        let pooled = d.delay(start).expect("learned");
        assert!(pooled > secs(30), "{pooled:?}");
        // The surge's levels (16–31) only ever dipped for half an hour: released at once.
        let surge = d.delay_of(20, start).expect("learned");
        assert!(surge < secs(5), "{surge:?}");
        // The flicker's (8–15) keep theirs; a level of a band with no dips takes the nearest
        // learned band's above it (the flicker's), and one with none learned above, the
        // pooled delay.
        let flicker = d.delay_of(8, start).expect("learned");
        assert!(flicker > secs(30), "{flicker:?}");
        assert_eq!(d.delay_of(2, start), Some(flicker));
        assert_eq!(d.delay_of(40, start), Some(pooled));
        assert!(
            d.explain(20).contains("of 16–31 instances"),
            "{}",
            d.explain(20)
        );
        assert!(
            d.explain(2).contains("of 8–15 instances"),
            "{}",
            d.explain(2)
        );
        assert!(
            d.explain(40).contains("of every level"),
            "{}",
            d.explain(40)
        );

        // The surge falls back to 8: ten seconds later its levels are not held (the pooled
        // delay would hold 20); ten seconds after the flicker's 8 fell to 7, 8 is.
        let t = secs(100_000);
        d.observe(t, 20);
        d.observe(t + secs(1), 8);
        let held = d.held(t + secs(11), 8, 20, start).expect("learned");
        assert!(held.count < 16, "{held:?}");
        d.observe(t + secs(12), 7);
        let held = d.held(t + secs(22), 7, 8, start).expect("learned");
        assert_eq!(held.count, 8);
    }
}
