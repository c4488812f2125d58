//! Balancers: pick one endpoint of a set per request.
//!
//! Every balancer is pure and lock-free: it reads the set and each endpoint's atomic [`Load`](crate::endpoint::Load),
//! and takes `now` as a parameter (ARCHITECTURE.md, principle 2 and 3), so tests drive time by hand.
//! Round robin, least request and peak-EWMA take no lock and allocate nothing per pick
//! (principle 7); consistent hashing allocates only when the set changes (see [`ConsistentHash`]).
//!
//! | algorithm | per pick | idea | with slow start (weight `w`) |
//! | --- | --- | --- | --- |
//! | [`RoundRobin`] | O(1) | exact rotation | its turn taken with probability `w`, else offered to random others; expected O(1) |
//! | [`LeastRequest`] | O(1) | power of two choices on in-flight requests | compares (in flight + 1) / `w` |
//! | [`PeakEwma`] (default) | O(1) | power of two choices on latency × (in flight + 1) | compares that cost / `w` |
//! | [`ConsistentHash`] | O(n) check + O(log n) lookup | hash ring with virtual nodes | not applied |
//!
//! Slow start ([`SlowStart`], off by default) ramps a new endpoint's weight `w` linearly from
//! [`MIN_SLOW_START_WEIGHT`] to 1 over a window, as Envoy does. Off, it costs one branch per pick:
//! no clock, no atomic. Consistent hashing ignores it: a key's endpoint is fixed by the ring, and
//! weighting it would mean sending some of a new endpoint's keys elsewhere and back again as the
//! weight grows, moving clients between instances twice and defeating the stickiness (caches,
//! sessions) that hashing is chosen for.

mod hash;
mod least_request;
mod peak_ewma;
pub(crate) mod rng;
mod round_robin;
mod slow_start;

pub use hash::{ConsistentHash, VNODES_PER_ENDPOINT};
pub use least_request::LeastRequest;
pub use peak_ewma::PeakEwma;
pub use round_robin::{RoundRobin, SLOW_START_OFFERS};
pub use slow_start::{slow_start_weight, SlowStart, MIN_SLOW_START_WEIGHT};

use crate::endpoint::EndpointSet;
use std::time::{Duration, Instant};

/// The balancing algorithms a service may choose: the deploy file's own type.
pub use ebb_core::BalanceAlgorithm;

/// A fresh balancer of kind `algorithm`, seeded at random, that ramps new endpoints up over
/// `slow_start` (zero: off; see [`SlowStart`]). [`BalanceAlgorithm::Hash`] ignores it.
pub fn build(algorithm: BalanceAlgorithm, slow_start: Duration) -> Box<dyn Balancer> {
    match algorithm {
        BalanceAlgorithm::RoundRobin => Box::new(RoundRobin::new().with_slow_start(slow_start)),
        BalanceAlgorithm::LeastRequest => Box::new(LeastRequest::new().with_slow_start(slow_start)),
        BalanceAlgorithm::PeakEwma => Box::new(PeakEwma::new().with_slow_start(slow_start)),
        BalanceAlgorithm::Hash => Box::new(ConsistentHash::new()),
    }
}

/// Picks an index into the set, or None if it is empty.
///
/// `key` is the request's hash key (used by [`ConsistentHash`], ignored by the others); `now` is
/// the caller's clock reading, so decisions never read the clock themselves.
pub trait Balancer: Send + Sync + 'static {
    /// The index into `set.endpoints` of the endpoint for a request; None if the set is empty.
    fn pick(&self, set: &EndpointSet, key: Option<u64>, now: Instant) -> Option<usize>;
}

/// Power of two choices over `n >= 1` endpoints: draw two distinct indices and keep the cheaper;
/// ties keep the first draw, which is itself random. Choosing the better of two random endpoints
/// gets exponentially better load spread than one random choice (Mitzenmacher) without scanning
/// the set, and unlike "pick the global minimum" it does not stampede onto one endpoint when many
/// routers or threads see the same stale costs.
pub(crate) fn p2c<C: PartialOrd>(rng: &rng::Rng, n: usize, cost: impl Fn(usize) -> C) -> usize {
    if n <= 1 {
        return 0;
    }
    let (a, b) = rng.two_distinct(n);
    if cost(b) < cost(a) {
        b
    } else {
        a
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers shared by the balancers' tests.
    use crate::endpoint::{Endpoint, EndpointSet};
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Instant;

    /// A set of `n` endpoints named `web-0`… with distinct addresses.
    pub fn set(n: usize, now: Instant) -> EndpointSet {
        set_of((0..n).map(|i| format!("web-{i}")), now)
    }

    pub fn set_of(ids: impl IntoIterator<Item = String>, now: Instant) -> EndpointSet {
        let endpoints = ids
            .into_iter()
            .enumerate()
            .map(|(i, id)| {
                let addr = SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8 + 1], 8080));
                Arc::new(Endpoint::new(id, addr, now))
            })
            .collect();
        EndpointSet::new(endpoints)
    }

    /// `old` endpoints born at `t_old` (`web-0`…) and, last, one born at `born` (`web-new`).
    pub fn with_newcomer(old: usize, t_old: Instant, born: Instant) -> EndpointSet {
        let mut endpoints = set(old, t_old).endpoints;
        let addr = SocketAddr::from(([10, 1, 0, 1], 8080));
        endpoints.push(Arc::new(Endpoint::new("web-new", addr, born)));
        EndpointSet::new(endpoints)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    #[test]
    fn every_algorithm_returns_none_for_an_empty_set() {
        let now = Instant::now();
        let empty = EndpointSet::default();
        for a in BalanceAlgorithm::ALL {
            let b = build(a, Duration::ZERO);
            assert_eq!(b.pick(&empty, None, now), None, "{a}");
            assert_eq!(b.pick(&empty, Some(7), now), None, "{a}");
        }
    }

    #[test]
    fn every_algorithm_returns_zero_for_a_set_of_one() {
        let now = Instant::now();
        let one = testing::set(1, now);
        for a in BalanceAlgorithm::ALL {
            let b = build(a, Duration::ZERO);
            for key in [None, Some(1), Some(u64::MAX)] {
                assert_eq!(b.pick(&one, key, now), Some(0), "{a}");
            }
        }
    }

    proptest! {
        #[test]
        fn every_algorithm_returns_an_index_below_the_set_length(
            n in 0usize..64,
            loads in proptest::collection::vec((0u32..50, 0u64..2_000_000_000), 64),
            keys in proptest::collection::vec(proptest::option::of(any::<u64>()), 1..20),
            later_ms in 0u64..100_000,
        ) {
            let t0 = Instant::now();
            let set = testing::set(n, t0);
            for (e, (in_flight, rtt_ns)) in set.endpoints.iter().zip(&loads) {
                for _ in 0..*in_flight {
                    e.load.start();
                }
                e.load.start();
                e.load.end(Some(Duration::from_nanos(*rtt_ns)), t0 + Duration::from_millis(later_ms / 2));
            }
            let now = t0 + Duration::from_millis(later_ms);
            let builds = BalanceAlgorithm::ALL.into_iter().flat_map(|a| {
                [(a, build(a, Duration::ZERO)), (a, build(a, Duration::from_secs(30)))]
            });
            for (a, b) in builds {
                for key in &keys {
                    let got = b.pick(&set, *key, now);
                    if n == 0 {
                        prop_assert_eq!(got, None);
                    } else {
                        prop_assert!(matches!(got, Some(i) if i < n), "{} gave {:?} for {} endpoints", a, got, n);
                    }
                }
                // The same balancer must cope with the set shrinking under it.
                let smaller = testing::set(n / 2, t0);
                let got = b.pick(&smaller, keys[0], now);
                prop_assert!(got.map_or(n / 2 == 0, |i| i < n / 2));
            }
        }
    }
}

/// The consistent-hashing key of a client: FNV-1a over its IP address, so that one client keeps
/// reaching the same instance while the set is unchanged (its port changes per connection and
/// is left out).
pub fn client_key(ip: std::net::IpAddr) -> u64 {
    use ebb_core::hash::fnv1a;
    match ip {
        std::net::IpAddr::V4(v4) => fnv1a(&v4.octets()),
        std::net::IpAddr::V6(v6) => fnv1a(&v6.octets()),
    }
}

#[cfg(test)]
mod client_key_tests {
    use super::client_key;

    #[test]
    fn one_client_always_has_the_same_key_and_two_clients_differ() {
        let a = client_key("10.0.0.1".parse().unwrap());
        assert_eq!(a, client_key("10.0.0.1".parse().unwrap()));
        assert_ne!(a, client_key("10.0.0.2".parse().unwrap()));
        assert_ne!(
            client_key("::1".parse().unwrap()),
            client_key("127.0.0.1".parse().unwrap())
        );
    }
}
