//! Peak-EWMA: power of two choices on latency × load.

use super::rng::Rng;
use super::{p2c, Balancer, SlowStart};
use crate::endpoint::EndpointSet;
use std::time::{Duration, Instant};

/// Draws two distinct endpoints at random and takes the one with the lower
/// [`Load::cost`](crate::endpoint::Load::cost) at `now`: peak-EWMA latency × (in flight + 1).
///
/// This is Linkerd's default balancer (tower's `PeakEwma` under `p2c`), ebb's default too: it
/// moves traffic off an endpoint the moment it answers slowly (the peak), and back as its latency
/// decays (τ = [`DECAY`](crate::endpoint::DECAY)); in-flight requests count as queued latency. O(1),
/// lock-free, no allocation; picking only reads the endpoints' atomics.
///
/// With slow start, an endpoint of weight `w` (see [`SlowStart`]) costs `cost / w`: at equal
/// latency it settles at about `w` times the requests of a warm endpoint.
#[derive(Debug)]
pub struct PeakEwma {
    rng: Rng,
    slow_start: SlowStart,
}

impl PeakEwma {
    /// Seeded at random, without slow start.
    pub fn new() -> PeakEwma {
        PeakEwma {
            rng: Rng::new(),
            slow_start: SlowStart::OFF,
        }
    }

    /// A reproducible sequence of draws, for tests and simulations.
    pub fn with_seed(seed: u64) -> PeakEwma {
        PeakEwma {
            rng: Rng::with_seed(seed),
            slow_start: SlowStart::OFF,
        }
    }

    /// Ramps new endpoints up over `window` (zero: off).
    pub fn with_slow_start(self, window: Duration) -> PeakEwma {
        PeakEwma {
            slow_start: SlowStart::new(window),
            ..self
        }
    }
}

impl Default for PeakEwma {
    fn default() -> PeakEwma {
        PeakEwma::new()
    }
}

impl Balancer for PeakEwma {
    fn pick(&self, set: &EndpointSet, _key: Option<u64>, now: Instant) -> Option<usize> {
        if set.is_empty() {
            return None;
        }
        let eps = &set.endpoints;
        if self.slow_start.is_off() {
            return Some(p2c(&self.rng, eps.len(), |i| eps[i].load.cost(now)));
        }
        Some(p2c(&self.rng, eps.len(), |i| {
            let load = &eps[i].load;
            load.cost(now) / self.slow_start.weight(load, now)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing;
    use crate::endpoint::DECAY;
    use std::time::Duration;

    const MS: Duration = Duration::from_millis(1);
    const MICROS: Duration = Duration::from_micros(1);

    fn count(b: &PeakEwma, set: &EndpointSet, now: Instant, picks: usize) -> Vec<u32> {
        let mut counts = vec![0u32; set.len()];
        for _ in 0..picks {
            counts[b.pick(set, None, now).unwrap()] += 1;
        }
        counts
    }

    /// Feeds one completed request of `rtt` ending at `at` to endpoint `i`.
    fn sample(set: &EndpointSet, i: usize, rtt: Duration, at: Instant) {
        set.endpoints[i].load.start();
        set.endpoints[i].load.end(Some(rtt), at);
    }

    #[test]
    fn peak_ewma_prefers_the_faster_endpoint() {
        let t0 = Instant::now();
        let set = testing::set(2, t0);
        let t = t0 + Duration::from_secs(1);
        sample(&set, 0, 80 * MS, t);
        sample(&set, 1, 20 * MS, t);
        let counts = count(&PeakEwma::with_seed(1), &set, t, 1_000);
        assert_eq!(counts, [0, 1_000]);
    }

    #[test]
    fn peak_ewma_starves_the_slow_endpoint_among_many() {
        let t0 = Instant::now();
        let set = testing::set(10, t0);
        let t = t0 + Duration::from_secs(1);
        for i in 0..10 {
            sample(
                &set,
                i,
                if i == 4 {
                    200 * MS
                } else {
                    10 * MS + i as u32 * MS
                },
                t,
            );
        }
        let counts = count(&PeakEwma::with_seed(2), &set, t, 10_000);
        assert_eq!(counts[4], 0, "{counts:?}");
    }

    #[test]
    fn peak_ewma_weighs_latency_against_requests_in_flight() {
        let t0 = Instant::now();
        let set = testing::set(2, t0);
        let t = t0 + Duration::from_secs(1);
        sample(&set, 0, 10 * MS, t);
        sample(&set, 1, 30 * MS, t);
        // 10 ms × (5 + 1) = 60 ms of cost beats nothing: 30 ms × 1 = 30 ms wins.
        for _ in 0..5 {
            set.endpoints[0].load.start();
        }
        assert_eq!(count(&PeakEwma::with_seed(3), &set, t, 100), [0, 100]);
    }

    #[test]
    fn peak_ewma_reacts_at_once_to_a_latency_spike_then_decays_back() {
        let t0 = Instant::now();
        let set = testing::set(2, t0);
        let b = PeakEwma::with_seed(4);
        // Endpoint 0 answers in 10 ms, endpoint 1 in 11 ms: endpoint 0 takes every pick.
        let mut t = t0;
        for _ in 0..100 {
            t += 100 * MS;
            sample(&set, 0, 10 * MS, t);
            sample(&set, 1, 11 * MS, t);
        }
        assert_eq!(count(&b, &set, t, 1_000), [1_000, 0]);

        // One slow response on endpoint 0: the very next pick avoids it.
        t += 100 * MS;
        sample(&set, 0, 500 * MS, t);
        assert_eq!(set.endpoints[0].load.rtt_estimate(t), 500 * MS);
        assert_eq!(count(&b, &set, t, 1_000), [0, 1_000]);

        // It answers in 10 ms again (the balancer probes it as the estimate falls): the spike's
        // share of the estimate decays as e^(-t/τ), so after 8 τ (490 ms × e^-8 ≈ 0.16 ms) it
        // is back under endpoint 1's 11 ms and takes every pick again.
        let spike = t;
        while t < spike + 8 * DECAY {
            t += 100 * MS;
            sample(&set, 0, 10 * MS, t);
            sample(&set, 1, 11 * MS, t);
        }
        let est = set.endpoints[0].load.rtt_estimate(t);
        assert!(est < 10 * MS + 500 * MICROS, "{est:?}");
        assert_eq!(count(&b, &set, t, 1_000), [1_000, 0]);
    }

    #[test]
    fn peak_ewma_midway_through_the_decay_still_avoids_the_spiked_endpoint() {
        let t0 = Instant::now();
        let set = testing::set(2, t0);
        let b = PeakEwma::with_seed(5);
        let mut t = t0 + Duration::from_secs(1);
        sample(&set, 0, 500 * MS, t);
        sample(&set, 1, 10 * MS, t);
        let spike = t;
        while t < spike + DECAY {
            t += 100 * MS;
            sample(&set, 0, 10 * MS, t);
            sample(&set, 1, 10 * MS, t);
        }
        // After one τ the estimate is about 10 + 490/e ≈ 190 ms.
        let est = set.endpoints[0].load.rtt_estimate(t);
        assert!(est > 150 * MS && est < 230 * MS, "{est:?}");
        assert_eq!(count(&b, &set, t, 1_000), [0, 1_000]);
    }

    #[test]
    fn a_fresh_endpoint_is_not_flooded_before_its_first_response() {
        let t0 = Instant::now();
        let set = testing::set(3, t0);
        let t = t0 + Duration::from_secs(1);
        // Two warm endpoints at 20 ms; endpoint 2 is new (default 30 ms seed, not zero).
        sample(&set, 0, 20 * MS, t);
        sample(&set, 1, 20 * MS, t);
        let b = PeakEwma::with_seed(6);
        let mut counts = [0u32; 3];
        for _ in 0..300 {
            let i = b.pick(&set, None, t).unwrap();
            counts[i] += 1;
            set.endpoints[i].load.start(); // requests stay in flight
        }
        // A zero seed would send it every request while the others have any load; the 30 ms
        // seed gives it a share, not the lot.
        assert!(counts[2] < 150, "{counts:?}");
        assert!(counts[2] > 50, "{counts:?}");
    }
}
