//! OpenTelemetry's HTTP server metrics, per service, for Prometheus (`GET /metrics`).
//!
//! `http.server.request.duration` is a histogram with the semantic conventions' advised bucket
//! boundaries, by request method and response status class. The label values are bounded by
//! construction — ten methods (RFC 9110's and PATCH, the rest as `_OTHER`, as the conventions
//! say) times five classes — so no request can add a series. Recording is a bucket search over
//! 14 boundaries and two relaxed `fetch_add`s: no lock, no allocation (ARCHITECTURE.md,
//! principle 7). The same histogram type measures the cold-start queue's wait.

use crate::metrics::STATUS_CLASSES;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the duration buckets, in seconds: the advice of OpenTelemetry's HTTP
/// semantic conventions for `http.server.request.duration` (ARCHITECTURE.md, defaults).
pub const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// [`DURATION_BUCKETS`] in nanoseconds, for recording without floating point.
const BOUNDS_NS: [u64; 14] = [
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    75_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    750_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    7_500_000_000,
    10_000_000_000,
];

/// Buckets kept: one per bound, and one above the last (`+Inf`).
const SLOTS: usize = BOUNDS_NS.len() + 1;

/// A request method as the conventions' `http.request.method` attribute: one of the known
/// methods, or `_OTHER` for anything else, so that a client cannot make up label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `CONNECT`
    Connect,
    /// `DELETE`
    Delete,
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `OPTIONS`
    Options,
    /// `PATCH`
    Patch,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `TRACE`
    Trace,
    /// Any other method.
    Other,
}

impl Method {
    /// Every value, in label order.
    pub const ALL: [Method; 10] = [
        Method::Connect,
        Method::Delete,
        Method::Get,
        Method::Head,
        Method::Options,
        Method::Patch,
        Method::Post,
        Method::Put,
        Method::Trace,
        Method::Other,
    ];

    /// The method named by a request line's bytes (case-sensitive, as RFC 9110 says).
    pub fn from_bytes(name: &[u8]) -> Method {
        match name {
            b"GET" => Method::Get,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"HEAD" => Method::Head,
            b"PATCH" => Method::Patch,
            b"OPTIONS" => Method::Options,
            b"CONNECT" => Method::Connect,
            b"TRACE" => Method::Trace,
            _ => Method::Other,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Connect => "CONNECT",
            Method::Delete => "DELETE",
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Options => "OPTIONS",
            Method::Patch => "PATCH",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Trace => "TRACE",
            Method::Other => "_OTHER",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A lock-free histogram of durations over [`DURATION_BUCKETS`], with their sum.
#[derive(Debug, Default)]
pub struct DurationHistogram {
    slots: [AtomicU64; SLOTS],
    sum_ns: AtomicU64,
}

impl DurationHistogram {
    /// Counts one duration.
    pub fn record(&self, value: Duration) {
        let ns = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        let slot = BOUNDS_NS.iter().position(|b| ns <= *b).unwrap_or(SLOTS - 1);
        self.slots[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn read(&self) -> HistogramReading {
        HistogramReading {
            slots: std::array::from_fn(|i| self.slots[i].load(Ordering::Relaxed)),
            sum_ns: self.sum_ns.load(Ordering::Relaxed),
        }
    }
}

/// A [`DurationHistogram`]'s counts at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HistogramReading {
    /// Per bucket, not cumulative; the last is above [`DURATION_BUCKETS`]' last bound.
    slots: [u64; SLOTS],
    sum_ns: u64,
}

impl HistogramReading {
    /// Durations counted.
    pub fn count(&self) -> u64 {
        self.slots.iter().fold(0u64, |t, n| t.saturating_add(*n))
    }

    /// Their sum, in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_ns as f64 / 1e9
    }

    /// `(upper bound in seconds, durations at or below it)` for each of [`DURATION_BUCKETS`],
    /// as Prometheus' cumulative `le` buckets; `+Inf` is [`HistogramReading::count`].
    pub fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        DURATION_BUCKETS
            .iter()
            .zip(self.slots.iter())
            .scan(0u64, |seen, (bound, n)| {
                *seen = seen.saturating_add(*n);
                Some((*bound, *seen))
            })
    }

    /// Adds another reading into this one (the same series from several sources).
    pub fn add(&mut self, other: &HistogramReading) {
        for (a, b) in self.slots.iter_mut().zip(other.slots.iter()) {
            *a = a.saturating_add(*b);
        }
        self.sum_ns = self.sum_ns.saturating_add(other.sum_ns);
    }
}

/// One service's `http.server.request.duration`, by method and status class.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    by_method: [[DurationHistogram; STATUS_CLASSES]; Method::ALL.len()],
}

impl HttpMetrics {
    /// A request with `method` got a response with `status` and took `duration` in all.
    pub fn record(&self, method: Method, status: u16, duration: Duration) {
        self.by_method[method.index()][crate::metrics::status_class(status)].record(duration);
    }

    /// The series that counted something: `(method, status class index, reading)`; class 0 is
    /// 1xx, as in [`crate::metrics::Snapshot::responses`].
    pub fn read(&self) -> Vec<(Method, usize, HistogramReading)> {
        let mut out = Vec::new();
        for method in Method::ALL {
            for (class, histogram) in self.by_method[method.index()].iter().enumerate() {
                let reading = histogram.read();
                if reading.count() > 0 {
                    out.push((method, class, reading));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_in_ns_are_the_advised_seconds() {
        for (s, ns) in DURATION_BUCKETS.iter().zip(BOUNDS_NS) {
            assert_eq!((s * 1e9).round() as u64, ns);
        }
    }

    #[test]
    fn a_duration_falls_in_the_first_bucket_whose_bound_it_does_not_exceed() {
        let h = DurationHistogram::default();
        h.record(Duration::from_millis(5)); // on a bound: le="0.005"
        h.record(Duration::from_millis(6));
        h.record(Duration::from_secs(60)); // above every bound: +Inf only
        let r = h.read();
        assert_eq!(r.count(), 3);
        let cumulative: Vec<(f64, u64)> = r.cumulative().collect();
        assert_eq!(cumulative[0], (0.005, 1));
        assert_eq!(cumulative[1], (0.01, 2));
        assert_eq!(cumulative.last(), Some(&(10.0, 2)));
        assert!((r.sum_seconds() - 60.011).abs() < 1e-9);
    }

    #[test]
    fn methods_are_bounded_and_series_are_by_method_and_class() {
        assert_eq!(Method::from_bytes(b"GET"), Method::Get);
        assert_eq!(Method::from_bytes(b"get"), Method::Other);
        assert_eq!(Method::from_bytes(b"BREW").as_str(), "_OTHER");
        let m = HttpMetrics::default();
        m.record(Method::Get, 200, Duration::from_millis(1));
        m.record(Method::Get, 204, Duration::from_millis(1));
        m.record(Method::Post, 503, Duration::from_millis(1));
        let series = m.read();
        assert_eq!(series.len(), 2);
        assert_eq!(
            (series[0].0, series[0].1, series[0].2.count()),
            (Method::Get, 1, 2)
        );
        assert_eq!((series[1].0, series[1].1), (Method::Post, 4));
        let mut total = series[0].2;
        total.add(&series[1].2);
        assert_eq!(total.count(), 3);
    }
}
