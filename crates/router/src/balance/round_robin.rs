//! Round robin: each endpoint in turn.

use super::Balancer;
use crate::endpoints::EndpointSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Exact rotation over the set: one relaxed `fetch_add` and a modulo per pick, O(1).
///
/// The counter is shared by every thread, so picks from all threads together rotate exactly;
/// when the set changes size the rotation simply continues modulo the new length.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    pub fn new() -> RoundRobin {
        RoundRobin::default()
    }
}

impl Balancer for RoundRobin {
    fn pick(&self, set: &EndpointSet, _key: Option<u64>, _now: Instant) -> Option<usize> {
        if set.is_empty() {
            return None;
        }
        Some(self.next.fetch_add(1, Ordering::Relaxed) % set.len())
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
