//! Round robin: each endpoint in turn.

use super::rng::{below, chance, Stream};
use super::{Balancer, SlowStart};
use crate::endpoint::EndpointSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Most endpoints offered one pick during slow start; the last of them takes it without a coin
/// toss, so a pick never spins. 32: even when nine in ten endpoints are at the 10 % floor (a
/// scale-up from 1 to 10), the 31 tosses all come up "no" only once in ~700 picks (0.81^31), and
/// that pick then goes to a random endpoint, as without slow start. The bound is per pick, not
/// the set's length, so that small sets (where "at most `len` offers" would often end on that
/// unweighted guess) keep their proportions.
pub const SLOW_START_OFFERS: usize = 32;

/// Exact rotation over the set: one relaxed `fetch_add` and a modulo per pick, O(1).
///
/// The counter is shared by every thread, so picks from all threads together rotate exactly;
/// when the set changes size the rotation simply continues modulo the new length.
///
/// With slow start, the endpoint whose turn it is is taken with probability its weight `w` (see
/// [`SlowStart`]); when it is passed over, endpoints drawn at random are offered the pick on the
/// same terms. Over many picks each endpoint's share is then exactly proportional to its weight
/// (the passed-over remainder is a rejection sample, ∝ weight). Stepping to the *next* endpoint
/// instead would hand all of a new endpoint's missed turns to its neighbour, nearly doubling
/// that one's share for the whole ramp. Still one `fetch_add` per pick: the coins and the draws
/// come from a local stream seeded by the ticket. Offers are bounded by [`SLOW_START_OFFERS`] and
/// expected O(1): about `1 / average weight`, at most 10.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
    slow_start: SlowStart,
}

impl RoundRobin {
    /// Starts at the first endpoint, without slow start.
    pub fn new() -> RoundRobin {
        RoundRobin::default()
    }

    /// Ramps new endpoints up over `window` (zero: off).
    pub fn with_slow_start(self, window: Duration) -> RoundRobin {
        RoundRobin {
            slow_start: SlowStart::new(window),
            ..self
        }
    }
}

impl Balancer for RoundRobin {
    fn pick(&self, set: &EndpointSet, _key: Option<u64>, now: Instant) -> Option<usize> {
        if set.is_empty() {
            return None;
        }
        let n = set.len();
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        let mut i = ticket % n;
        if self.slow_start.is_off() || n == 1 {
            return Some(i);
        }
        let mut stream = Stream::new(ticket as u64);
        for _ in 1..SLOW_START_OFFERS {
            let w = self.slow_start.weight(&set.endpoints[i].load, now);
            if w >= 1.0 || chance(stream.next(), w) {
                return Some(i);
            }
            i = below(stream.next(), n);
        }
        Some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing;

    #[test]
    fn round_robin_distributes_exactly_evenly_over_k_times_n_picks() {
        let now = Instant::now();
        for n in [1, 2, 3, 7, 10] {
            let set = testing::set(n, now);
            let rr = RoundRobin::new();
            let mut counts = vec![0; n];
            for _ in 0..50 * n {
                counts[rr.pick(&set, None, now).unwrap()] += 1;
            }
            assert!(counts.iter().all(|&c| c == 50), "n={n}: {counts:?}");
        }
    }

    #[test]
    fn round_robin_visits_endpoints_in_order() {
        let now = Instant::now();
        let set = testing::set(4, now);
        let rr = RoundRobin::new();
        let picks: Vec<usize> = (0..8).map(|_| rr.pick(&set, None, now).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 3, 0, 1, 2, 3]);
    }
}
