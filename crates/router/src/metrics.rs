//! Request metrics, kept in-process for the autoscaler and shown through the API and CLI.
//!
//! Requests update cumulative counters — atomics only, no lock and no allocation (ARCHITECTURE.md,
//! principle 7). A sampler outside the hot path copies them into a [`Snapshot`] every second;
//! the difference of two snapshots is a [`Window`]: requests per second, time-weighted average
//! concurrency, latency percentiles and counts over that span.
//!
//! Concurrency is exact, not sampled: [`Concurrency`] keeps the integral of in-flight requests
//! over time (Knative's "average concurrency"), so a burst between two samples still counts.

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Smallest latency bucket boundary: 2^13 ns ≈ 8 µs; anything faster shares the first bucket.
const MIN_POW: u32 = 13;

/// Largest power of two tracked: 2^37 ns ≈ 137 s, above the longest sensible request timeout;
/// slower responses land in the last bucket.
const MAX_POW: u32 = 37;

/// Sub-buckets per power of two: 4, so a bucket spans at most 19 % of its value (2^(1/4)) and a
/// percentile interpolated inside it is off by under 10 % — plenty to scale and alert on.
const SUB_BUCKETS: u32 = 4;

/// Buckets of a [`Histogram`]: one below `MIN_POW`, then `SUB_BUCKETS` per power.
pub const BUCKETS: usize = 1 + ((MAX_POW - MIN_POW + 1) * SUB_BUCKETS) as usize;

/// A lock-free latency histogram with log-linear buckets (HdrHistogram's idea at low precision):
/// recording is one relaxed `fetch_add`; reading copies the counts.
#[derive(Debug)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Histogram {
    /// Counts one latency sample.
    pub fn record(&self, value: Duration) {
        self.buckets[bucket_of(value)].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        Counts(Box::new(std::array::from_fn(|i| {
            self.buckets[i].load(Ordering::Relaxed)
        })))
    }
}

/// The bucket a duration falls in.
fn bucket_of(value: Duration) -> usize {
    let ns = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
    if ns < 1 << MIN_POW {
        return 0;
    }
    let pow = 63 - ns.leading_zeros();
    if pow > MAX_POW {
        return BUCKETS - 1;
    }
    let sub = (ns >> (pow - 2)) & u64::from(SUB_BUCKETS - 1);
    1 + ((pow - MIN_POW) * SUB_BUCKETS) as usize + sub as usize
}

/// Lower and upper bound of a bucket, in nanoseconds.
fn bucket_bounds(index: usize) -> (f64, f64) {
    if index == 0 {
        return (0.0, (1u64 << MIN_POW) as f64);
    }
    let i = (index - 1) as u32;
    let pow = MIN_POW + i / SUB_BUCKETS;
    let sub = u64::from(i % SUB_BUCKETS);
    let quarter = 1u64 << (pow - 2);
    let low = (1u64 << pow) + sub * quarter;
    (low as f64, (low + quarter) as f64)
}

/// Histogram counts copied out of a [`Histogram`]; subtract two to get a window's.
#[derive(Debug, Clone, PartialEq)]
pub struct Counts(Box<[u64; BUCKETS]>);

impl Default for Counts {
    fn default() -> Counts {
        Counts(Box::new([0; BUCKETS]))
    }
}

impl Counts {
    /// Samples counted, over all buckets.
    pub fn total(&self) -> u64 {
        // Saturating: counts may come from another server.
        self.0.iter().fold(0u64, |t, n| t.saturating_add(*n))
    }

    /// `self - older`, bucket by bucket (saturating: counters only grow).
    pub fn since(&self, older: &Counts) -> Counts {
        Counts(Box::new(std::array::from_fn(|i| {
            self.0[i].saturating_sub(older.0[i])
        })))
    }

    /// The non-empty buckets as `[bucket, count]` pairs (what a server sends the leader).
    pub fn to_sparse(&self) -> Vec<[u64; 2]> {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| [i as u64, *n])
            .collect()
    }

    /// Counts from `[bucket, count]` pairs; a bucket out of range is an error, not a panic
    /// (the pairs come over the network).
    pub fn from_sparse(pairs: &[[u64; 2]]) -> Result<Counts, String> {
        let mut counts = Counts::default();
        for &[bucket, n] in pairs {
            let slot = usize::try_from(bucket)
                .ok()
                .and_then(|i| counts.0.get_mut(i))
                .ok_or_else(|| format!("latency bucket {bucket} is not below {BUCKETS}"))?;
            *slot = slot.saturating_add(n);
        }
        Ok(counts)
    }

    /// Adds `other` into `self` (to total several instances).
    pub fn add(&mut self, other: &Counts) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a = a.saturating_add(*b);
        }
    }

    /// The `q`-quantile (0 < q ≤ 1), interpolated linearly inside its bucket; None when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut seen = 0u64;
        for (i, &n) in self.0.iter().enumerate() {
            if n == 0 {
                continue;
            }
            if seen.saturating_add(n) as f64 >= rank {
                let (low, high) = bucket_bounds(i);
                let within = (rank - seen as f64) / n as f64;
                return Some(Duration::from_nanos((low + (high - low) * within) as u64));
            }
            seen = seen.saturating_add(n);
        }
        Some(Duration::from_nanos(bucket_bounds(BUCKETS - 1).1 as u64))
    }
}

/// Requests in flight and the exact integral of that count over time, lock-free.
///
/// The integral of in-flight requests up to `t` is `in_flight × t + c`, where a request's start
/// at `s` subtracts `s` from `c` and its end at `e` adds `e`: each request then contributes
/// `min(t, e) − s`, the time it has been in flight. Two atomics per start and per end.
#[derive(Debug)]
pub struct Concurrency {
    in_flight: AtomicU32,
    /// Σ ends − Σ starts, in nanoseconds since `epoch`.
    c: AtomicI64,
    epoch: Instant,
}

impl Concurrency {
    /// Nothing in flight; times are counted from `epoch`.
    pub fn new(epoch: Instant) -> Concurrency {
        Concurrency {
            in_flight: AtomicU32::new(0),
            c: AtomicI64::new(0),
            epoch,
        }
    }

    fn ns(&self, at: Instant) -> i64 {
        i64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(i64::MAX)
    }

    /// A request started at `now`.
    pub fn start(&self, now: Instant) {
        self.c.fetch_sub(self.ns(now), Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// A request ended at `now`.
    pub fn end(&self, now: Instant) {
        self.c.fetch_add(self.ns(now), Ordering::Relaxed);
        // Saturating, so a stray extra `end` never wraps the count.
        let _ = self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Request-nanoseconds spent in flight from `epoch` to `now`.
    pub fn busy_ns(&self, now: Instant) -> i64 {
        let n = i64::from(self.in_flight());
        n.saturating_mul(self.ns(now))
            .saturating_add(self.c.load(Ordering::Relaxed))
    }
}

/// Response classes counted: 1xx to 5xx.
pub const STATUS_CLASSES: usize = 5;

/// The index of `status`'s class in [`Snapshot::responses`]: 0 for 1xx to 4 for 5xx; a code
/// outside 100–599 counts in the nearest class, so none is lost.
pub fn status_class(status: u16) -> usize {
    usize::from(status / 100).clamp(1, STATUS_CLASSES) - 1
}

/// Counters of one instance or one service. Everything is cumulative since creation.
#[derive(Debug)]
pub struct Metrics {
    /// Requests that got a response (from an instance or, at service level, from the proxy).
    responses: [AtomicU64; STATUS_CLASSES],
    /// Time to the response head.
    latency: Histogram,
    /// Requests (HTTP) or connections (TCP) in flight, time-weighted.
    pub concurrency: Concurrency,
    connect_errors: AtomicU64,
    retries: AtomicU64,
}

impl Metrics {
    /// All counters at zero; concurrency is integrated from `now`.
    pub fn new(now: Instant) -> Metrics {
        Metrics {
            responses: Default::default(),
            latency: Histogram::default(),
            concurrency: Concurrency::new(now),
            connect_errors: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        }
    }

    /// A response with `status` came back `latency` after the request started.
    pub fn response(&self, status: u16, latency: Duration) {
        self.responses[status_class(status)].fetch_add(1, Ordering::Relaxed);
        self.latency.record(latency);
    }

    /// A finished TCP connection: counts as a 2xx "response" lasting the connection's life.
    pub fn connection(&self, lifetime: Duration) {
        self.response(200, lifetime);
    }

    /// An attempt could not connect to the endpoint (refused, unreachable or timed out).
    pub fn connect_error(&self) {
        self.connect_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A failed attempt is being retried on another endpoint.
    pub fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// A copy of the counters at `now`, for windows; `ejections` comes from outlier detection.
    pub fn snapshot(&self, now: Instant, ejections: u64) -> Snapshot {
        Snapshot {
            at: now,
            responses: std::array::from_fn(|i| self.responses[i].load(Ordering::Relaxed)),
            latency: self.latency.counts(),
            busy_ns: self.concurrency.busy_ns(now),
            in_flight: self.concurrency.in_flight(),
            connect_errors: self.connect_errors.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            ejections,
        }
    }
}

/// Cumulative counters at one instant.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// When the counters were read.
    pub at: Instant,
    /// Responses by class: `[1xx, 2xx, 3xx, 4xx, 5xx]`.
    pub responses: [u64; STATUS_CLASSES],
    /// Time to the response head, as histogram counts.
    pub latency: Counts,
    /// Request-nanoseconds in flight since the counters were created ([`Concurrency::busy_ns`]).
    pub busy_ns: i64,
    /// Requests in flight at `at`.
    pub in_flight: u32,
    /// Attempts that could not connect.
    pub connect_errors: u64,
    /// Attempts retried on another endpoint.
    pub retries: u64,
    /// Outlier ejections, as passed to [`Metrics::snapshot`].
    pub ejections: u64,
}

impl Snapshot {
    /// An all-zero snapshot at `at`: the baseline of something created then.
    pub fn zero(at: Instant) -> Snapshot {
        Snapshot {
            at,
            responses: [0; STATUS_CLASSES],
            latency: Counts::default(),
            busy_ns: 0,
            in_flight: 0,
            connect_errors: 0,
            retries: 0,
            ejections: 0,
        }
    }

    /// What happened between `older` and `self`.
    pub fn since(&self, older: &Snapshot) -> Window {
        let span = self.at.saturating_duration_since(older.at);
        let responses: [u64; STATUS_CLASSES] =
            std::array::from_fn(|i| self.responses[i].saturating_sub(older.responses[i]));
        let busy = self.busy_ns.saturating_sub(older.busy_ns).max(0) as f64;
        let secs = span.as_secs_f64();
        let total: u64 = responses.iter().fold(0u64, |t, n| t.saturating_add(*n));
        Window {
            span,
            requests: total,
            rps: if secs > 0.0 { total as f64 / secs } else { 0.0 },
            concurrency: if secs > 0.0 { busy / 1e9 / secs } else { 0.0 },
            in_flight: self.in_flight,
            latency: self.latency.since(&older.latency),
            responses,
            connect_errors: self.connect_errors.saturating_sub(older.connect_errors),
            retries: self.retries.saturating_sub(older.retries),
            ejections: self.ejections.saturating_sub(older.ejections),
        }
    }
}

/// Metrics over a span of time: the difference of two [`Snapshot`]s.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Time between the two snapshots.
    pub span: Duration,
    /// Responses in the window (all status classes).
    pub requests: u64,
    /// Responses per second over `span`; 0 when `span` is zero.
    pub rps: f64,
    /// Time-weighted average of requests in flight over the window.
    pub concurrency: f64,
    /// Requests in flight at the window's end.
    pub in_flight: u32,
    /// Time to the response head of the window's responses, as histogram counts.
    pub latency: Counts,
    /// Responses by class: `[1xx, 2xx, 3xx, 4xx, 5xx]`.
    pub responses: [u64; STATUS_CLASSES],
    /// Attempts in the window that could not connect.
    pub connect_errors: u64,
    /// Attempts in the window retried on another endpoint.
    pub retries: u64,
    /// Outlier ejections in the window.
    pub ejections: u64,
}

impl Window {
    /// Adds `other`, measured over about the same span elsewhere (another server's load
    /// balancer for the same service): rates, concurrency and counts add up, the span is the
    /// longer of the two.
    pub fn add(&mut self, other: &Window) {
        self.span = self.span.max(other.span);
        // Saturating: a peer's counters come over the network.
        self.requests = self.requests.saturating_add(other.requests);
        self.rps += other.rps;
        self.concurrency += other.concurrency;
        self.in_flight = self.in_flight.saturating_add(other.in_flight);
        self.latency.add(&other.latency);
        for (a, b) in self.responses.iter_mut().zip(other.responses) {
            *a = a.saturating_add(b);
        }
        self.connect_errors = self.connect_errors.saturating_add(other.connect_errors);
        self.retries = self.retries.saturating_add(other.retries);
        self.ejections = self.ejections.saturating_add(other.ejections);
    }

    /// The `q`-quantile of the window's latency (`p(0.99)`: p99); None when it had no response.
    pub fn p(&self, q: f64) -> Option<Duration> {
        self.latency.quantile(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn buckets_are_ordered_and_cover_every_duration() {
        let mut last = 0;
        for ns in (0..40)
            .map(|p| 1u64 << p)
            .chain([3, 1000, 12_345, 999_999_999])
        {
            let b = bucket_of(Duration::from_nanos(ns));
            assert!(b < BUCKETS);
            let (low, high) = bucket_bounds(b);
            if b > 0 && b < BUCKETS - 1 {
                assert!(
                    low <= ns as f64 && (ns as f64) < high,
                    "{ns} in [{low}, {high})"
                );
            }
            if ns.is_power_of_two() {
                assert!(b >= last);
                last = b;
            }
        }
        assert_eq!(bucket_of(Duration::from_secs(3600)), BUCKETS - 1);
    }

    #[test]
    fn percentiles_are_within_a_bucket_of_the_truth() {
        let h = Histogram::default();
        for i in 1..=1000u64 {
            h.record(Duration::from_micros(i * 100)); // 0.1 ms .. 100 ms, uniform
        }
        let c = h.counts();
        assert_eq!(c.total(), 1000);
        for (q, truth) in [(0.5, 50.0), (0.9, 90.0), (0.99, 99.0)] {
            let got = c.quantile(q).unwrap().as_secs_f64() * 1000.0;
            assert!(
                (got - truth).abs() / truth < 0.1,
                "p{q}: {got} ms vs {truth}"
            );
        }
        assert_eq!(Counts::default().quantile(0.5), None);
    }

    #[test]
    fn concurrency_is_the_exact_time_weighted_average() {
        let t0 = Instant::now();
        let c = Concurrency::new(t0);
        // One request for the whole second, another for its second half.
        c.start(t0);
        c.start(t0 + 500 * MS);
        assert_eq!(c.busy_ns(t0 + 1000 * MS), 1_500_000_000);
        c.end(t0 + 1000 * MS);
        c.end(t0 + 1000 * MS);
        assert_eq!(c.in_flight(), 0);
        // Nothing more in flight: the integral stays put.
        assert_eq!(c.busy_ns(t0 + 5000 * MS), 1_500_000_000);
    }

    #[test]
    fn a_window_gives_rate_concurrency_classes_and_latency() {
        let t0 = Instant::now();
        let m = Metrics::new(t0);
        let before = m.snapshot(t0, 0);
        for i in 0..20u64 {
            let start = t0 + Duration::from_millis(i * 100);
            m.concurrency.start(start);
            m.concurrency.end(start + 50 * MS);
            m.response(if i % 10 == 0 { 503 } else { 200 }, 50 * MS);
        }
        m.connect_error();
        m.retry();
        let w = m.snapshot(t0 + 2000 * MS, 3).since(&before);
        assert_eq!(w.requests, 20);
        assert!((w.rps - 10.0).abs() < 1e-9);
        assert!((w.concurrency - 0.5).abs() < 1e-9, "{}", w.concurrency);
        assert_eq!(w.responses, [0, 18, 0, 0, 2]);
        assert_eq!((w.connect_errors, w.retries, w.ejections), (1, 1, 3));
        let p50 = w.p(0.5).unwrap();
        assert!(p50 > 45 * MS && p50 < 55 * MS, "{p50:?}");
    }

    #[test]
    fn odd_status_codes_are_counted_not_lost() {
        let m = Metrics::new(Instant::now());
        m.response(99, MS);
        m.response(999, MS);
        let s = m.snapshot(Instant::now(), 0);
        assert_eq!(s.responses, [1, 0, 0, 0, 1]);
    }

    #[test]
    fn sparse_counts_round_trip_and_bad_buckets_are_refused() {
        let h = Histogram::default();
        for ms in [1, 1, 7, 300] {
            h.record(ms * MS);
        }
        let c = h.counts();
        let sparse = c.to_sparse();
        assert_eq!(sparse.len(), 3, "only the non-empty buckets");
        assert_eq!(Counts::from_sparse(&sparse).unwrap(), c);
        let err = Counts::from_sparse(&[[BUCKETS as u64, 1]]).unwrap_err();
        assert!(err.contains("latency bucket"), "{err}");
        assert!(Counts::from_sparse(&[[u64::MAX, 1]]).is_err());
    }

    #[test]
    fn windows_of_two_load_balancers_add_up() {
        let t0 = Instant::now();
        let (a, b) = (Metrics::new(t0), Metrics::new(t0));
        let (a0, b0) = (a.snapshot(t0, 0), b.snapshot(t0, 0));
        for (m, n) in [(&a, 10), (&b, 30)] {
            for _ in 0..n {
                m.concurrency.start(t0);
                m.concurrency.end(t0 + 100 * MS);
                m.response(200, 100 * MS);
            }
        }
        let mut w = a.snapshot(t0 + 1000 * MS, 0).since(&a0);
        w.add(&b.snapshot(t0 + 1000 * MS, 1).since(&b0));
        assert_eq!(w.requests, 40);
        assert!((w.rps - 40.0).abs() < 1e-9);
        assert!((w.concurrency - 4.0).abs() < 1e-9, "{}", w.concurrency);
        assert_eq!(w.latency.total(), 40);
        assert_eq!(w.ejections, 1);
        let mut huge = w.clone();
        huge.requests = u64::MAX;
        huge.add(&w);
        assert_eq!(huge.requests, u64::MAX, "saturates, never panics");
    }
}
