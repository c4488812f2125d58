//! Least request: power of two choices on in-flight requests.

use super::rng::Rng;
use super::{p2c, Balancer, SlowStart};
use crate::endpoint::EndpointSet;
use std::time::{Duration, Instant};

/// Draws two distinct endpoints at random and takes the one with fewer requests in flight
/// (Envoy's and tower's P2C least-request). O(1), lock-free, no allocation.
///
/// With slow start, an endpoint of weight `w` (see [`SlowStart`]) costs `(in flight + 1) / w`:
/// it looks more loaded while it ramps up, so it settles at about `w` times the requests of a
/// warm one, and an idle new endpoint still loses to an idle warm one (10 against 1 at first).
#[derive(Debug)]
pub struct LeastRequest {
    rng: Rng,
    slow_start: SlowStart,
}

impl LeastRequest {
    /// Seeded at random, without slow start.
    pub fn new() -> LeastRequest {
        LeastRequest {
            rng: Rng::new(),
            slow_start: SlowStart::OFF,
        }
    }

    /// A reproducible sequence of draws, for tests and simulations.
    pub fn with_seed(seed: u64) -> LeastRequest {
        LeastRequest {
            rng: Rng::with_seed(seed),
            slow_start: SlowStart::OFF,
        }
    }

    /// Ramps new endpoints up over `window` (zero: off).
    pub fn with_slow_start(self, window: Duration) -> LeastRequest {
        LeastRequest {
            slow_start: SlowStart::new(window),
            ..self
        }
    }
}

impl Default for LeastRequest {
    fn default() -> LeastRequest {
        LeastRequest::new()
    }
}

impl Balancer for LeastRequest {
    fn pick(&self, set: &EndpointSet, _key: Option<u64>, now: Instant) -> Option<usize> {
        if set.is_empty() {
            return None;
        }
        let eps = &set.endpoints;
        if self.slow_start.is_off() {
            return Some(p2c(&self.rng, eps.len(), |i| eps[i].load.in_flight()));
        }
        Some(p2c(&self.rng, eps.len(), |i| {
            let load = &eps[i].load;
            (f64::from(load.in_flight()) + 1.0) / self.slow_start.weight(load, now)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing;

    #[test]
    fn least_request_rarely_picks_an_endpoint_with_many_requests_in_flight() {
        let now = Instant::now();
        let set = testing::set(4, now);
        for _ in 0..50 {
            set.endpoints[2].load.start();
        }
        let lr = LeastRequest::with_seed(42);
        let mut counts = [0u32; 4];
        for _ in 0..10_000 {
            counts[lr.pick(&set, None, now).unwrap()] += 1;
        }
        // Two distinct draws out of four: the busy one only wins if both draws are itself,
        // which cannot happen, so it gets no picks at all.
        assert_eq!(counts[2], 0, "{counts:?}");
        for i in [0, 1, 3] {
            assert!(counts[i] > 2_500, "{counts:?}");
        }
    }

    #[test]
    fn least_request_sends_a_share_to_the_busier_of_two_only_when_loads_tie() {
        let now = Instant::now();
        let set = testing::set(10, now);
        for (i, e) in set.endpoints.iter().enumerate() {
            for _ in 0..i {
                e.load.start();
            }
        }
        let lr = LeastRequest::with_seed(7);
        let mut counts = [0u32; 10];
        for _ in 0..10_000 {
            counts[lr.pick(&set, None, now).unwrap()] += 1;
        }
        // With P2C the least loaded wins every pair it is in: 2·(n-1)/(n·(n-1)) = 20 %.
        assert!(counts[0] > 1_700, "{counts:?}");
        assert_eq!(counts[9], 0, "{counts:?}");
        assert!(
            counts.windows(2).all(|w| w[0] >= w[1]),
            "picks fall with load: {counts:?}"
        );
    }

    #[test]
    fn least_request_spreads_evenly_when_every_endpoint_is_idle() {
        let now = Instant::now();
        let set = testing::set(5, now);
        let lr = LeastRequest::with_seed(3);
        let mut counts = [0u32; 5];
        for _ in 0..10_000 {
            counts[lr.pick(&set, None, now).unwrap()] += 1;
        }
        assert!(
            counts.iter().all(|&c| (1_700..2_300).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn least_request_keeps_load_balanced_when_requests_stay_in_flight() {
        // Simulate: each pick starts a request that never ends. P2C keeps the spread tight.
        let now = Instant::now();
        let set = testing::set(8, now);
        let lr = LeastRequest::with_seed(11);
        for _ in 0..8_000 {
            let i = lr.pick(&set, None, now).unwrap();
            set.endpoints[i].load.start();
        }
        let loads: Vec<u32> = set.endpoints.iter().map(|e| e.load.in_flight()).collect();
        let (min, max) = (*loads.iter().min().unwrap(), *loads.iter().max().unwrap());
        assert!(max - min <= 10, "{loads:?}");
    }
}
