//! The busy window of one metric, kept up to date as samples arrive, so that its level is read
//! without going through its 900 values every tick.
//!
//! [`Metrics::busy`](crate::Metrics::busy) read the busy level ([`busy_level`](crate::noise))
//! from every value of the last fifteen minutes, once a second per service: gathering them into
//! their blocks and ranking them was most of ebb's replay time (`ebb sim` on 58.6 days of the
//! NASA trace ×100 took 25 to 27 s, about the bound of 10 s per 22 days; 11 s since). Here
//! each value is added once, into a sorted list and its block's tally, and a complete block's
//! sum is taken once, when the block ends. Reading the level is then the fall test on nine
//! block means and the newest 90 values' mean, and a walk down the sorted list from its top
//! through the quantile's span of ranks (past the values of a block left out).
//!
//! It gives the same level as the full read, to the last bit: block sums are added newest value
//! first, as `BusyBlocks` (module `noise`) adds them, so the fall test sees the same numbers, and
//! the quantile reads the same values in the same order. A test of `Metrics` checks it on random
//! streams, with gaps, missing values, several samples a second and windows that drop part of a
//! block. Where a query is not one this window can answer (a window that does not reach its oldest
//! value, a `now` before its newest value, more values than [`BUSY_VALUES`]: several samples in one
//! second), [`BusyWindow::level`] says so and the full read answers.

use crate::noise::{busy_quantile, current_block, judge, Verdict, BLOCKS, BLOCK_SECS, BUSY_VALUES};
use crate::warming::{recent_count, warming_level};
use std::cmp::Ordering;
use std::collections::VecDeque;
use std::ops::Range;
use std::time::Duration;

/// The values of one metric in the block of its newest value and the [`BLOCKS`] before it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct BusyWindow {
    /// The values, oldest first, with when their second ended.
    values: VecDeque<(Duration, f64)>,
    /// The same values in ascending order ([`f64::total_cmp`]), each with its block's number.
    sorted: Vec<(f64, u64)>,
    /// One tally per block that has values, oldest first.
    tallies: VecDeque<Tally>,
}

/// The values of one block of the clock ([`BLOCK_SECS`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Tally {
    /// The block's number: the second it begins at, divided by [`BLOCK_SECS`].
    block: u64,
    /// How many values it has.
    count: u32,
    /// Their sum, added newest first; taken when a newer block begins, and again when the
    /// window forgets one of its values (the newest block's is never read: the fall test
    /// compares complete blocks).
    sum: f64,
}

impl BusyWindow {
    /// Adds the value of the second ending at `at`, which is after every value added before.
    /// Forgets the blocks the newest block and the [`BLOCKS`] before it no longer include.
    pub(crate) fn add(&mut self, at: Duration, value: f64) {
        let block = at.as_secs() / BLOCK_SECS;
        match self.tallies.back().copied() {
            Some(newest) if newest.block == block => {}
            newest => {
                if let Some(newest) = newest {
                    self.close_newest(newest.count);
                    self.forget_before(block.saturating_sub(BLOCKS as u64));
                }
                self.tallies.push_back(Tally {
                    block,
                    ..Tally::default()
                });
            }
        }
        if let Some(t) = self.tallies.back_mut() {
            t.count += 1;
        }
        self.values.push_back((at, value));
        let at_rank = self.sorted.partition_point(|e| below(*e, (value, block)));
        self.sorted.insert(at_rank, (value, block));
    }

    /// Takes the sum of the newest block, of `count` values: a newer block begins.
    fn close_newest(&mut self, count: u32) {
        let sum = self.sum_of_newest(count as usize);
        if let Some(t) = self.tallies.back_mut() {
            t.sum = sum;
        }
    }

    /// Forgets the value of the second ending at `at` if it is the oldest kept: the caller's
    /// window dropped that sample.
    pub(crate) fn forget(&mut self, at: Duration) {
        let Some(&(oldest, value)) = self.values.front().filter(|(a, _)| *a == at) else {
            return;
        };
        let block = oldest.as_secs() / BLOCK_SECS;
        self.values.pop_front();
        let at_rank = self.sorted.partition_point(|e| below(*e, (value, block)));
        let found = self.sorted.get(at_rank) == Some(&(value, block));
        debug_assert!(found, "every value kept is in the sorted list");
        if found {
            self.sorted.remove(at_rank);
        }
        let complete = self.tallies.len() > 1;
        let Some(t) = self.tallies.front_mut() else {
            return;
        };
        t.count -= 1;
        if t.count == 0 {
            self.tallies.pop_front();
        } else if complete {
            // The oldest values of a complete block are first in `values`: its sum again,
            // newest first, without the one forgotten.
            let count = t.count as usize;
            let sum = self.sum_of(0..count);
            if let Some(t) = self.tallies.front_mut() {
                t.sum = sum;
            }
        }
    }

    /// The busy level of the values kept (see `busy_level` in the module `noise`), if this
    /// window holds exactly what the full read of `(now - len, now]` would take: `None` if it
    /// cannot answer, `Some(None)` if there is no level.
    pub(crate) fn level(&self, now: Duration, len: Duration) -> Option<Option<f64>> {
        let answers = self.values.len() <= BUSY_VALUES
            && self.values.back().is_none_or(|(at, _)| *at <= now)
            && self
                .values
                .front()
                .is_none_or(|(at, _)| at.saturating_add(len) > now);
        answers.then(|| self.read())
    }

    /// The busy level of the values kept.
    fn read(&self) -> Option<f64> {
        let newest = self.tallies.back()?.block;
        let mut means = [0.0; BLOCKS];
        for (i, mean) in means.iter_mut().enumerate() {
            let t = self.tally(newest.checked_sub(i as u64 + 1)?)?;
            *mean = t.sum / f64::from(t.count);
        }
        let last = self.recent_mean();
        let left = match judge(&means, last) {
            Verdict::Steady => None,
            Verdict::HighestLeft(slot) => Some(newest - u64::from(slot)),
            Verdict::Fallen => return None,
        };
        let left_out = left.and_then(|b| self.tally(b)).map_or(0, |t| t.count);
        let n = self.values.len() - left_out as usize;
        let highest_first = self
            .sorted
            .iter()
            .rev()
            .filter(|(_, block)| Some(*block) != left)
            .map(|(v, _)| *v);
        busy_quantile(highest_first, n)
    }

    /// The busy level of this window while it is still filling, at `now`, and the span of the
    /// values it read (module `warming`): those of the blocks since the newest one without a
    /// value (the window refills after a silence as after a start), while they are fewer than
    /// a full window's and at most [`BUSY_VALUES`], and the newest is not after `now` and is of
    /// `now`'s block or the one before. `None` otherwise.
    pub(crate) fn warming_level(&self, now: Duration) -> Option<(f64, Duration)> {
        let newest = self.tallies.back()?;
        let run = self
            .tallies
            .iter()
            .rev()
            .zip(0..)
            .take_while(|(t, back)| t.block + back == newest.block)
            .count() as u64;
        let last = self.values.back()?.0;
        let current = last <= now && current_block(newest.block, now);
        if run > BLOCKS as u64 || !current {
            return None;
        }
        let first_block = newest.block + 1 - run;
        let from = self
            .values
            .partition_point(|(at, _)| at.as_secs() / BLOCK_SECS < first_block);
        let values = self.values.range(from..);
        if values.len() > BUSY_VALUES {
            return None;
        }
        let first = self.values.get(from)?.0.as_secs();
        let end = newest.block * BLOCK_SECS;
        let recent = recent_count(first, end).min(values.len()).max(1);
        let recent = self.sum_of_newest(recent) / recent as f64;
        let values = values.map(|(at, v)| (at.as_secs(), *v));
        let level = warming_level(values, first, end, recent)?;
        // The first value's second is read too.
        let over = Duration::from_secs(now.as_secs().saturating_sub(first) + 1);
        Some((level, over))
    }

    /// The mean of the newest [`BLOCK_SECS`] values (of all, if fewer; 0 without any): what the
    /// fall test compares with the blocks, and the steady hour with its stretches.
    pub(crate) fn recent_mean(&self) -> f64 {
        let recent = self.values.len().min(BLOCK_SECS as usize);
        self.sum_of_newest(recent) / recent.max(1) as f64
    }

    /// The tally of `block`, if it has values.
    fn tally(&self, block: u64) -> Option<&Tally> {
        let i = self
            .tallies
            .binary_search_by(|t| t.block.cmp(&block))
            .ok()?;
        self.tallies.get(i).filter(|t| t.count > 0)
    }

    /// The sum of the newest `count` values (see [`BusyWindow::sum_of`]).
    fn sum_of_newest(&self, count: usize) -> f64 {
        let len = self.values.len();
        self.sum_of(len - count.min(len)..len)
    }

    /// The sum of the values at `range` (oldest first), added newest first as `BusyBlocks`
    /// adds them, so that the fall test sees the same numbers as the full read.
    fn sum_of(&self, range: Range<usize>) -> f64 {
        self.values.range(range).rev().fold(0.0, |s, (_, v)| s + v)
    }

    /// Forgets the values of blocks before `first`.
    fn forget_before(&mut self, first: u64) {
        let before = |at: &Duration| at.as_secs() / BLOCK_SECS < first;
        if !self.values.front().is_some_and(|(at, _)| before(at)) {
            return;
        }
        while self.values.front().is_some_and(|(at, _)| before(at)) {
            self.values.pop_front();
        }
        while self.tallies.front().is_some_and(|t| t.block < first) {
            self.tallies.pop_front();
        }
        self.sorted.retain(|(_, block)| *block >= first);
    }
}

/// Whether `a` comes before `b` in the sorted list: by value, then by block.
fn below(a: (f64, u64), b: (f64, u64)) -> bool {
    a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)) == Ordering::Less
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_that_stood_out_by_itself_is_left_out_of_the_level() {
        // Ten blocks of 99, 100 and 101 in turn; the fourth at 130, 131 and 132.
        let mut window = BusyWindow::default();
        for s in 0..900u64 {
            let wiggle = (s % 3) as f64;
            let v = if s / BLOCK_SECS == 3 { 130.0 } else { 99.0 } + wiggle;
            window.add(Duration::from_secs(s), v);
        }
        let level = window.level(Duration::from_secs(899), Duration::from_secs(900));
        assert_eq!(level, Some(Some(101.0)));
        // With the fourth block counted, its 90 seconds would be the top 2.3 % (21 of 900).
        assert_eq!(window.sorted.last().map(|e| e.0), Some(132.0));
    }

    #[test]
    fn a_filling_window_reads_its_level_from_its_second_complete_block_until_it_is_full() {
        let at = Duration::from_secs;
        let mut window = BusyWindow::default();
        let mut levels = Vec::new();
        for s in 0..1000u64 {
            window.add(at(s), 100.0 + (s % 5) as f64);
            levels.push(window.warming_level(at(s)));
        }
        // Two complete blocks from 180 s to nine at 810 s, when the full read answers.
        assert!(levels[..180].iter().all(Option::is_none));
        for s in 180..810 {
            assert_eq!(levels[s as usize], Some((104.0, at(s + 1))), "second {s}");
        }
        assert!(levels[810..].iter().all(Option::is_none));
        assert_eq!(window.level(at(999), at(900)), Some(Some(104.0)));
        // A window whose newest value is two blocks old does not answer; one block old, it does.
        let mut window = BusyWindow::default();
        for s in 0..400u64 {
            window.add(at(s), 1.0);
        }
        assert_eq!(window.warming_level(at(490)), Some((1.0, at(491))));
        assert_eq!(window.warming_level(at(580)), None);
    }

    #[test]
    fn after_a_block_without_a_value_the_window_reads_the_blocks_since() {
        let at = Duration::from_secs;
        let mut window = BusyWindow::default();
        // 1,000 until 90 s, nothing in the block from 90 to 179 s, then 1 (and 2 every 5 s).
        for s in (0..740u64).filter(|s| !(90..180).contains(s)) {
            let v = if s < 90 {
                1000.0
            } else {
                1.0 + f64::from(s % 5 == 0)
            };
            window.add(at(s), v);
        }
        // The full read has a block missing; the blocks since it (180 to 719 s) are read, and
        // the values before it are not.
        assert_eq!(window.level(at(739), at(900)), Some(None));
        assert_eq!(window.warming_level(at(739)), Some((2.0, at(560))));
        // Right after the silence, fewer than 170 s of complete blocks since it: nothing yet;
        // then the 180 s from 270 to 449 s.
        let mut window = BusyWindow::default();
        for s in (0..480u64).filter(|s| !(180..270).contains(s)) {
            window.add(at(s), 1.0);
            if s == 399 {
                assert_eq!(window.warming_level(at(s)), None);
            }
        }
        assert_eq!(window.warming_level(at(479)), Some((1.0, at(210))));
    }

    #[test]
    fn a_window_that_does_not_hold_the_query_does_not_answer() {
        let mut window = BusyWindow::default();
        for s in 100..1000u64 {
            window.add(Duration::from_secs(s), 1.0);
        }
        let at = |s| Duration::from_secs(s);
        assert_eq!(window.level(at(999), at(900)), Some(Some(1.0)));
        // Its newest value is after `now`; its oldest before the window.
        assert_eq!(window.level(at(998), at(900)), None);
        assert_eq!(window.level(at(999), at(800)), None);
        // Blocks of the clock: 900 s from 100 s on leave the first 80 s out (block 1 ends at
        // 179), so a window reaching back to 180 holds every value kept.
        assert_eq!(window.level(at(999), at(820)), Some(Some(1.0)));
    }
}
