//! A tiny lock-free random source for the balancers' hot path.
//!
//! SplitMix64 (Steele, Lea, Flood 2014) over a shared `AtomicU64`: each draw is one relaxed
//! `fetch_add` plus a few multiplies, with no lock, no allocation and no thread-local set-up.
//! It is not cryptographic and need not be: it only spreads requests.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use ebb_core::hash::{splitmix64_mix, SPLITMIX64_GAMMA};

/// A uniform index in `[0, n)` from 64 random bits (Lemire's multiply-shift; no division).
pub(crate) fn below(r: u64, n: usize) -> usize {
    ((u128::from(r) * n as u128) >> 64) as usize
}

/// True with probability `p` for a uniform random word `r` (its top 53 bits as a fraction).
pub(crate) fn chance(r: u64, p: f64) -> bool {
    const SCALE: f64 = 1.0 / (1u64 << 53) as f64;
    ((r >> 11) as f64) * SCALE < p
}

/// A SplitMix64 stream local to one pick, seeded from a value the pick already holds (such as a
/// round-robin ticket): no shared state, so drawing from it touches no atomic.
pub(crate) struct Stream(u64);

impl Stream {
    pub(crate) fn new(seed: u64) -> Stream {
        Stream(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(SPLITMIX64_GAMMA);
        splitmix64_mix(self.0)
    }
}

#[derive(Debug)]
pub(crate) struct Rng {
    state: AtomicU64,
}

impl Rng {
    /// Seeded from the standard library's per-process random hasher keys, so two routers (or two
    /// services) do not walk the same sequence.
    pub(crate) fn new() -> Rng {
        Rng::with_seed(RandomState::new().hash_one(0x0065_6262_u64))
    }

    /// A reproducible sequence, for tests.
    pub(crate) fn with_seed(seed: u64) -> Rng {
        Rng {
            state: AtomicU64::new(seed),
        }
    }

    /// Two independent random words from one atomic step.
    pub(crate) fn next_pair(&self) -> (u64, u64) {
        let x = self
            .state
            .fetch_add(SPLITMIX64_GAMMA.wrapping_mul(2), Ordering::Relaxed);
        (
            splitmix64_mix(x.wrapping_add(SPLITMIX64_GAMMA)),
            splitmix64_mix(x.wrapping_add(SPLITMIX64_GAMMA.wrapping_mul(2))),
        )
    }

    /// Two distinct uniform indices in `[0, n)`; `n` must be at least 2.
    pub(crate) fn two_distinct(&self, n: usize) -> (usize, usize) {
        debug_assert!(n >= 2);
        let (r1, r2) = self.next_pair();
        let a = below(r1, n);
        // b = a + 1 + x with x uniform in [0, n - 2], wrapped: uniform over the others.
        let b = a + 1 + below(r2, n - 1);
        (a, if b >= n { b - n } else { b })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_distinct_never_repeats_an_index_and_covers_every_ordered_pair() {
        let rng = Rng::with_seed(1);
        for n in 2..8 {
            let mut seen = vec![vec![0u32; n]; n];
            for _ in 0..20_000 {
                let (a, b) = rng.two_distinct(n);
                assert!(a < n && b < n && a != b);
                seen[a][b] += 1;
            }
            for (a, row) in seen.iter().enumerate() {
                for (b, &count) in row.iter().enumerate() {
                    assert_eq!(
                        count == 0,
                        a == b,
                        "n={n} pair ({a},{b}) seen {count} times"
                    );
                }
            }
        }
    }

    #[test]
    fn chance_hits_its_probability() {
        assert!(!chance(0, 0.0));
        assert!(chance(0, 1e-9));
        assert!(chance(u64::MAX, 1.0));
        assert!(!chance(u64::MAX, 0.999_999));
        let mut stream = Stream::new(5);
        let hits = (0..100_000).filter(|_| chance(stream.next(), 0.3)).count();
        assert!((29_000..31_000).contains(&hits), "{hits}");
    }

    #[test]
    fn below_stays_in_range_at_the_extremes() {
        assert_eq!(below(0, 10), 0);
        assert_eq!(below(u64::MAX, 10), 9);
        assert_eq!(below(u64::MAX, 1), 0);
    }
}
