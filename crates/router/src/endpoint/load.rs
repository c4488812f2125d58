//! Per-endpoint load statistics: in-flight requests and a peak-EWMA latency estimate.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The latency a fresh endpoint is assumed to have before its first response: Linkerd's default
/// (`EWMA_DEFAULT_RTT`, 30 ms, in linkerd2-proxy).
///
/// Why not zero: peak-EWMA prefers the lower cost, so a zero seed makes every new endpoint look
/// infinitely fast and it takes every request until its first responses arrive — a stampede onto
/// exactly the instance that is still warming up (tower calls the same idea its default RTT;
/// Linkerd explains its `MIN_DEFAULT_RTT` the same way). A typical-backend guess instead lets
/// it earn traffic as its measured latency comes in.
pub const DEFAULT_RTT: Duration = Duration::from_millis(30);

/// The time constant τ of the latency average: Linkerd's default decay (`EWMA_DECAY`, 10 s).
///
/// A sample taken `t` after the previous one gets weight `1 - e^(-t/τ)`, so what happened more
/// than a few τ ago barely counts. The same decay also pulls an endpoint's estimate toward zero
/// while it receives no samples, so an endpoint that once was slow is tried again after a while.
pub const DECAY: Duration = Duration::from_secs(10);

/// An endpoint's load statistics, updated by requests and read by balancers; lock-free.
///
/// The latency estimate is a *peak* EWMA (tower's `PeakEwma`, Linkerd): a sample above the
/// current estimate replaces it at once, so a latency spike is avoided on the next request; a
/// sample below it is averaged in with a weight that grows with the time since the last sample.
///
/// Concurrency: the estimate (an `f64` of nanoseconds, stored as bits) is updated with a CAS
/// loop, and the time of the last update is a separate atomic advanced with `fetch_max`. The pair
/// is not updated as one, so two samples landing at the same moment may both use the older time
/// and decay the old estimate a little more than an exact EWMA would. This is racy but bounded:
/// every new estimate is still a convex mix of the previous estimate and a real sample (or the
/// sample itself when it is a new peak), so it never leaves the range of values actually seen.
#[derive(Debug)]
pub struct Load {
    in_flight: AtomicU32,
    /// Peak-EWMA RTT in nanoseconds, `f64::to_bits`.
    rtt_ns: AtomicU64,
    /// Nanoseconds from `born` to the last sample (or to `born` itself).
    updated_ns: AtomicU64,
    /// The origin of `updated_ns`; a per-endpoint epoch avoids any process-wide state.
    born: Instant,
}

impl Load {
    /// Nothing in flight, latency estimate [`DEFAULT_RTT`]; its slow-start age counts from `now`.
    pub fn new(now: Instant) -> Load {
        Load {
            in_flight: AtomicU32::new(0),
            rtt_ns: AtomicU64::new(nanos(DEFAULT_RTT).to_bits()),
            updated_ns: AtomicU64::new(0),
            born: now,
        }
    }

    /// A request has started on this endpoint.
    pub fn start(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// Ends a request; `rtt` is None for a cancelled one (which says nothing about latency).
    pub fn end(&self, rtt: Option<Duration>, now: Instant) {
        // Saturating, so a stray extra `end` can never wrap to 4 billion requests in flight.
        let _ = self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        if let Some(rtt) = rtt {
            self.observe(rtt, now);
        }
    }

    /// Requests currently in flight.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Time since this load was created (its endpoint entered the set) as of `now`; zero for a
    /// reading before that. Reads no atomic: slow start uses it on the hot path.
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.born)
    }

    /// Feeds one latency sample taken at `now` into the peak-EWMA estimate.
    pub fn observe(&self, rtt: Duration, now: Instant) {
        let sample = nanos(rtt);
        let now_ns = self.since_born(now);
        let mut current = self.rtt_ns.load(Ordering::Relaxed);
        loop {
            let estimate = f64::from_bits(current);
            let next = if sample >= estimate {
                sample
            } else {
                let elapsed = now_ns.saturating_sub(self.updated_ns.load(Ordering::Relaxed));
                let keep = decay_weight(elapsed);
                estimate * keep + sample * (1.0 - keep)
            };
            match self.rtt_ns.compare_exchange_weak(
                current,
                next.to_bits(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        self.updated_ns.fetch_max(now_ns, Ordering::Relaxed);
    }

    /// The latency estimate as of `now`: the last estimate decayed toward zero for the time since
    /// the last sample. Read-only, so picking never writes shared state.
    pub fn rtt_estimate(&self, now: Instant) -> Duration {
        Duration::from_nanos(self.rtt_ns_at(now) as u64)
    }

    /// Peak-EWMA cost: estimated latency × (in flight + 1), in nanoseconds. The `+ 1` makes an
    /// idle endpoint cost its latency rather than zero, so latency still counts when nothing is
    /// in flight; the factor penalises queueing, since every request ahead adds roughly one RTT.
    pub fn cost(&self, now: Instant) -> f64 {
        self.rtt_ns_at(now) * (f64::from(self.in_flight()) + 1.0)
    }

    fn rtt_ns_at(&self, now: Instant) -> f64 {
        let estimate = f64::from_bits(self.rtt_ns.load(Ordering::Relaxed));
        let elapsed = self
            .since_born(now)
            .saturating_sub(self.updated_ns.load(Ordering::Relaxed));
        estimate * decay_weight(elapsed)
    }

    fn since_born(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.born).as_nanos()).unwrap_or(u64::MAX)
    }
}

/// How much of the old estimate survives `elapsed_ns`: `e^(-elapsed/τ)`, 1 for no time at all.
fn decay_weight(elapsed_ns: u64) -> f64 {
    if elapsed_ns == 0 {
        return 1.0;
    }
    (-(elapsed_ns as f64) / nanos(DECAY)).exp()
}

fn nanos(d: Duration) -> f64 {
    d.as_nanos() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_fresh_endpoint_starts_at_the_default_rtt_not_zero() {
        let t0 = Instant::now();
        let load = Load::new(t0);
        assert_eq!(load.rtt_estimate(t0), DEFAULT_RTT);
        assert_eq!(load.cost(t0), DEFAULT_RTT.as_nanos() as f64);
    }

    #[test]
    fn age_counts_from_birth_and_is_never_negative() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let load = Load::new(t0);
        assert_eq!(load.age(t0), Duration::ZERO);
        assert_eq!(load.age(t0 + 250 * MS), 250 * MS);
        assert_eq!(load.age(t0 - 250 * MS), Duration::ZERO);
    }

    #[test]
    fn in_flight_counts_starts_and_ends_and_never_wraps_below_zero() {
        let t0 = Instant::now();
        let load = Load::new(t0);
        load.start();
        load.start();
        assert_eq!(load.in_flight(), 2);
        load.end(None, t0);
        load.end(None, t0);
        load.end(None, t0);
        assert_eq!(load.in_flight(), 0);
    }

    #[test]
    fn cost_grows_with_requests_in_flight() {
        let t0 = Instant::now();
        let load = Load::new(t0);
        let idle = load.cost(t0);
        load.start();
        load.start();
        assert_eq!(load.cost(t0), idle * 3.0);
    }

    #[test]
    fn a_sample_above_the_estimate_replaces_it_at_once() {
        let t0 = Instant::now();
        let load = Load::new(t0);
        load.observe(500 * MS, t0 + MS);
        assert_eq!(load.rtt_estimate(t0 + MS), 500 * MS);
    }

    #[test]
    fn a_sample_below_the_estimate_is_averaged_in_by_elapsed_time() {
        let t0 = Instant::now();
        let load = Load::new(t0);
        load.observe(100 * MS, t0);
        // One τ later the old estimate keeps weight 1/e.
        load.observe(10 * MS, t0 + DECAY);
        let expected = 100.0 / std::f64::consts::E + 10.0 * (1.0 - 1.0 / std::f64::consts::E);
        let got = load.rtt_estimate(t0 + DECAY).as_secs_f64() * 1000.0;
        assert!((got - expected).abs() < 1e-3, "{got} ms vs {expected} ms");
    }

    #[test]
    fn a_cancelled_request_feeds_no_sample() {
        let t0 = Instant::now();
        let load = Load::new(t0);
        load.start();
        load.end(None, t0);
        assert_eq!(load.rtt_estimate(t0), DEFAULT_RTT);
    }

    #[test]
    fn without_samples_the_estimate_decays_toward_zero_so_the_endpoint_is_retried() {
        let t0 = Instant::now();
        let load = Load::new(t0);
        load.observe(1000 * MS, t0);
        let later = load.rtt_estimate(t0 + 5 * DECAY);
        assert!(later < 10 * MS, "{later:?}");
    }

    #[test]
    fn a_clock_reading_before_the_endpoint_was_born_is_harmless() {
        let t1 = Instant::now() + Duration::from_secs(1);
        let load = Load::new(t1);
        let before = t1 - Duration::from_millis(500);
        load.observe(5 * MS, before);
        assert!(load.rtt_estimate(before) <= DEFAULT_RTT);
    }

    #[test]
    fn concurrent_samples_keep_the_estimate_within_the_range_seen() {
        let t0 = Instant::now();
        let load = std::sync::Arc::new(Load::new(t0));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let load = load.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        load.observe(
                            Duration::from_millis(10 + (i + t) % 20),
                            t0 + Duration::from_micros(i * 100),
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let est = load.rtt_estimate(t0 + Duration::from_secs(1));
        assert!(est >= 9 * MS && est <= DEFAULT_RTT, "{est:?}");
    }
}
