//! Consistent hashing: the same key goes to the same endpoint while the set is unchanged.

use super::{Balancer, RoundRobin};
use crate::endpoint::EndpointSet;
use arc_swap::ArcSwap;
use ebb_core::hash::{splitmix64_mix, SPLITMIX64_GAMMA};
use std::sync::Arc;
use std::time::Instant;

/// Points each endpoint places on the ring: ketama's 160 (libmemcached's consistent hashing).
///
/// More points spread keys more evenly (the share of each endpoint varies by roughly
/// 1/√points) at the cost of a bigger ring: 160 × 1,000 endpoints is 160,000 points, 1.9 MB,
/// built once per set change.
pub const VNODES_PER_ENDPOINT: usize = 160;

/// A hash ring with virtual nodes over the endpoints' ids.
///
/// Keys are the request's hash (a header or the client address, computed by the caller); a
/// request without one falls back to round robin. Because points come from endpoint *ids* (not
/// positions in the set), adding one endpoint to N moves only the keys that land on its new
/// points — about 1/(N+1) of them — and all of those move to the new endpoint; removing one moves
/// only its own keys.
///
/// Why a cached ring and not rendezvous hashing: rendezvous would hash every endpoint id on every
/// pick (O(n) hashing, microseconds at 1,000 endpoints). Instead the ring is built once per set
/// and cached lock-free ([`ArcSwap`]), tagged with the set's generation: a pick compares the
/// generations (O(1)) and then does an O(log n) lookup.
pub struct ConsistentHash {
    ring: ArcSwap<Ring>,
    fallback: RoundRobin,
}

impl ConsistentHash {
    /// An empty ring (built on the first keyed pick); requests without a key go round robin.
    pub fn new() -> ConsistentHash {
        ConsistentHash {
            ring: ArcSwap::from_pointee(Ring::default()),
            fallback: RoundRobin::new(),
        }
    }
}

impl Default for ConsistentHash {
    fn default() -> ConsistentHash {
        ConsistentHash::new()
    }
}

impl std::fmt::Debug for ConsistentHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsistentHash")
            .field("points", &self.ring.load().points.len())
            .finish()
    }
}

impl Balancer for ConsistentHash {
    fn pick(&self, set: &EndpointSet, key: Option<u64>, now: Instant) -> Option<usize> {
        let Some(key) = key else {
            return self.fallback.pick(set, None, now);
        };
        match set.len() {
            0 => None,
            1 => Some(0),
            _ => {
                let ring = self.ring.load();
                if ring.describes(set) {
                    return Some(ring.lookup(key));
                }
                // The set changed: build its ring (off the steady-state path) and publish it,
                // unless a ring of a newer set is there by now (a pick still holding an older
                // set must not bring its ring back). Concurrent rebuilders each use their own.
                let fresh = Arc::new(Ring::build(set));
                let index = fresh.lookup(key);
                if ring.generation < fresh.generation {
                    self.ring.compare_and_swap(&ring, fresh);
                }
                Some(index)
            }
        }
    }
}

#[derive(Default)]
struct Ring {
    /// The generation of the set the ring was built from (0, never a set's, when empty).
    generation: u64,
    /// Sorted point hashes; `owners[i]` is the set index owning `points[i]`. Kept apart so the
    /// binary search walks a dense array of `u64`.
    points: Vec<u64>,
    owners: Vec<u32>,
}

impl Ring {
    fn build(set: &EndpointSet) -> Ring {
        let mut pairs: Vec<(u64, u32)> = Vec::with_capacity(set.len() * VNODES_PER_ENDPOINT);
        for (index, endpoint) in set.endpoints.iter().enumerate() {
            let base = ebb_core::hash::fnv1a(endpoint.id.as_bytes());
            for v in 0..VNODES_PER_ENDPOINT as u64 {
                // The SplitMix64 sequence seeded by the id: well spread, stable across processes
                // and releases (std's hashers are neither guaranteed nor seeded the same).
                pairs.push((
                    splitmix64_mix(base.wrapping_add(SPLITMIX64_GAMMA.wrapping_mul(v + 1))),
                    index as u32,
                ));
            }
        }
        // Ties between ids (astronomically rare) are broken by set order, deterministically.
        pairs.sort_unstable();
        Ring {
            generation: set.generation(),
            points: pairs.iter().map(|p| p.0).collect(),
            owners: pairs.iter().map(|p| p.1).collect(),
        }
    }

    fn describes(&self, set: &EndpointSet) -> bool {
        self.generation == set.generation()
    }

    /// The owner of the first point at or after the key's hash, wrapping around the ring.
    fn lookup(&self, key: u64) -> usize {
        // Re-mix: callers' keys may be weak hashes (e.g. of an IPv4 address).
        let h = splitmix64_mix(key);
        let i = self.points.partition_point(|&p| p < h);
        let i = if i == self.points.len() { 0 } else { i };
        self.owners.get(i).map_or(0, |&o| o as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing;

    const KEYS: u64 = 10_000;

    fn owners(b: &ConsistentHash, set: &EndpointSet, now: Instant) -> Vec<String> {
        (0..KEYS)
            .map(|k| set.endpoints[b.pick(set, Some(k), now).unwrap()].id.clone())
            .collect()
    }

    #[test]
    fn hash_is_sticky_while_the_set_is_unchanged() {
        let now = Instant::now();
        let set = testing::set(4, now);
        let b = ConsistentHash::new();
        let first = owners(&b, &set, now);
        assert_eq!(owners(&b, &set, now), first);
        // A second balancer (another router, a restart) agrees: the ring depends only on ids.
        assert_eq!(owners(&ConsistentHash::new(), &set, now), first);
    }

    #[test]
    fn hash_spreads_keys_over_every_endpoint() {
        let now = Instant::now();
        let set = testing::set(4, now);
        let owned = owners(&ConsistentHash::new(), &set, now);
        for e in &set.endpoints {
            let share = owned.iter().filter(|o| **o == e.id).count() as f64 / KEYS as f64;
            assert!((0.15..0.35).contains(&share), "{} owns {share}", e.id);
        }
    }

    #[test]
    fn adding_a_fifth_endpoint_moves_about_a_fifth_of_keys_all_to_the_new_one() {
        let now = Instant::now();
        let b = ConsistentHash::new();
        let four = testing::set(4, now);
        let before = owners(&b, &four, now);
        let five = testing::set(5, now);
        let after = owners(&b, &five, now);
        let moved: Vec<usize> = (0..before.len())
            .filter(|&i| before[i] != after[i])
            .collect();
        let fraction = moved.len() as f64 / KEYS as f64;
        assert!((0.10..0.30).contains(&fraction), "moved {fraction}");
        assert!(
            moved.iter().all(|&i| after[i] == "web-4"),
            "keys only move to the new endpoint"
        );
    }

    #[test]
    fn removing_an_endpoint_moves_only_its_keys() {
        let now = Instant::now();
        let b = ConsistentHash::new();
        let all = testing::set(5, now);
        let before = owners(&b, &all, now);
        let without = testing::set_of(["web-0", "web-1", "web-3", "web-4"].map(String::from), now);
        let after = owners(&b, &without, now);
        for (b, a) in before.iter().zip(&after) {
            if b != "web-2" {
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn hash_rebuilds_its_ring_when_an_endpoint_is_replaced_at_the_same_position() {
        let now = Instant::now();
        let b = ConsistentHash::new();
        let set = testing::set(3, now);
        owners(&b, &set, now);
        let replaced = testing::set_of(["web-0", "web-1", "web-9"].map(String::from), now);
        let expected = owners(&ConsistentHash::new(), &replaced, now);
        assert_eq!(owners(&b, &replaced, now), expected);
    }

    #[test]
    fn hash_without_a_key_falls_back_to_round_robin() {
        let now = Instant::now();
        let set = testing::set(3, now);
        let b = ConsistentHash::new();
        let picks: Vec<usize> = (0..6).map(|_| b.pick(&set, None, now).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }
}
