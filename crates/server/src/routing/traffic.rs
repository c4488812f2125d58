//! Traffic history: the router's cumulative counters sampled once a second, so that any recent
//! window (the autoscaler's 6 s and 60 s, `ebb ps`'s 10 s) is the difference of two samples.
//!
//! Sampling copies atomics off the hot path; nothing here runs per request. A series is keyed
//! by the identity of the counters it reads (the `Arc` of an endpoint or a service's endpoint
//! set), so an instance that left and came back, or a listener rebuilt with new settings,
//! starts from zero instead of producing negative rates.

use ebb_core::traffic::{StatusCounts, Traffic};
use ebb_router::metrics::{Snapshot, Window};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// How often the router's counters are sampled: 1 s, the autoscaler's tick (ARCHITECTURE.md, defaults).
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// Samples kept per series: 61, enough for the 60 s stable window (KPA; ARCHITECTURE.md, defaults) plus its
/// starting point.
pub const SAMPLES_KEPT: usize = 61;

/// The window `ebb ps` and `GET /v1/instances` report: 10 s, long enough to smooth a bursty
/// second, short enough to follow a load change while one watches.
pub const VIEW_WINDOW: Duration = Duration::from_secs(10);

/// One sampled series: which counters it read and the samples, oldest first.
#[derive(Debug)]
pub struct Series {
    identity: usize,
    samples: VecDeque<Snapshot>,
    /// Samples kept.
    kept: usize,
    /// Whether the counters started at zero when the series did (this server's own
    /// listeners), so that a young series may count from zero. Another server's counters
    /// come with all they counted before: only differences of two samples mean anything.
    from_zero: bool,
}

impl Series {
    fn new(identity: usize) -> Series {
        Series {
            identity,
            samples: VecDeque::with_capacity(SAMPLES_KEPT),
            kept: SAMPLES_KEPT,
            from_zero: true,
        }
    }

    /// A series of `kept` samples of counters read elsewhere, which did not start at zero
    /// with it: a window needs two samples.
    pub fn of_counters_elsewhere(identity: usize, kept: usize) -> Series {
        Series {
            identity,
            samples: VecDeque::with_capacity(kept),
            kept: kept.max(2),
            from_zero: false,
        }
    }

    /// Adds a sample of counters with `identity`; other counters than before restart the series.
    pub fn push(&mut self, identity: usize, sample: Snapshot) {
        if identity != self.identity {
            self.identity = identity;
            self.samples.clear();
        }
        if self.samples.len() >= self.kept {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// The window ending at the newest sample and starting at the latest one taken at least
    /// `span` before it, less the sampler's jitter (a tenth of `span`, at most 50 ms): never
    /// shorter than `span` by more than that, and never empty. Without the allowance, a sample
    /// that came a few milliseconds short of a second after the one before made a one-second
    /// window two seconds (half the time with a 1-s interval timer), and the autoscaler counted
    /// that second's requests in two of its samples (an idle gap learned a second short). A series
    /// younger than `span` counts from zero at `span` before its newest sample, so that a new
    /// instance's rate is over the same span as everyone else's; a young series of counters
    /// read elsewhere gives the window since its first sample, and None until it has two.
    pub fn window(&self, span: Duration) -> Option<Window> {
        let newest = self.samples.back()?;
        let start = newest.at.checked_sub(span).unwrap_or(newest.at);
        let reach = newest
            .at
            .checked_sub(span.saturating_sub(jitter(span)))
            .unwrap_or(newest.at);
        match self.samples.iter().rev().find(|s| s.at <= reach) {
            Some(older) if !std::ptr::eq(older, newest) => Some(newest.since(older)),
            _ if self.from_zero && self.samples.len() < self.kept => {
                Some(newest.since(&Snapshot::zero(start)))
            }
            _ => {
                let oldest = self.samples.front()?;
                (self.from_zero || !std::ptr::eq(oldest, newest)).then(|| newest.since(oldest))
            }
        }
    }

    /// The newest sample.
    pub fn newest(&self) -> Option<&Snapshot> {
        self.samples.back()
    }
}

/// Series by name (a service, or an instance id), dropped when their subject is gone.
#[derive(Debug, Default)]
pub struct History {
    series: HashMap<String, Series>,
}

impl History {
    /// Adds a sample to series `name`; other counters (a new `identity`) restart the series.
    pub fn push(&mut self, name: &str, identity: usize, sample: Snapshot) {
        self.series
            .entry(name.to_string())
            .or_insert_with(|| Series::new(identity))
            .push(identity, sample);
    }

    /// Series `name`'s window of about `span` (see [`Series::window`]); None if there is none.
    pub fn window(&self, name: &str, span: Duration) -> Option<Window> {
        self.series.get(name)?.window(span)
    }

    /// Keeps only the series `keep` accepts.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.series.retain(|name, _| keep(name));
    }
}

/// A window as the API reports it.
pub fn traffic(w: &Window) -> Traffic {
    let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
    Traffic {
        window_ms: u64::try_from(w.span.as_millis()).unwrap_or(u64::MAX),
        requests: w.requests,
        rps: w.rps,
        concurrency: w.concurrency,
        in_flight: w.in_flight,
        p50_ms: ms(w.p(0.50)),
        p90_ms: ms(w.p(0.90)),
        p99_ms: ms(w.p(0.99)),
        status: StatusCounts::from_classes(w.responses),
        connect_errors: w.connect_errors,
        retries: w.retries,
        ejections: w.ejections,
    }
}

/// How much shorter than `span` a window may come out: a tenth of it, at most 50 ms. A
/// sampler's timer wakes late by a few milliseconds, by varying amounts; the allowance covers
/// that without letting a window of peer reports (a few a second) lose one of them.
fn jitter(span: Duration) -> Duration {
    (span / 10).min(Duration::from_millis(50))
}

/// A window length from the API's `window` parameter, within what the history keeps.
pub fn clamp_window(span: Duration) -> Duration {
    span.clamp(SAMPLE_INTERVAL, SAMPLE_INTERVAL * (SAMPLES_KEPT as u32 - 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// The instant `secs` seconds after `t0`.
    fn at(t0: Instant, secs: u64) -> Instant {
        t0 + Duration::from_secs(secs)
    }

    fn sample(t: Instant, ok: u64) -> Snapshot {
        let mut s = Snapshot::zero(t);
        s.responses[1] = ok;
        s
    }

    #[test]
    fn a_window_is_the_difference_of_its_end_samples() {
        let t0 = Instant::now();
        let mut h = History::default();
        for i in 0..30 {
            h.push("web", 1, sample(at(t0, i), i * 100)); // 100 requests a second
        }
        let w = h.window("web", Duration::from_secs(10)).unwrap();
        assert_eq!(w.span, Duration::from_secs(10));
        assert_eq!(w.requests, 1000);
        assert!((w.rps - 100.0).abs() < 1e-9);
    }

    /// Five samples of "web", `ms` apart, 10 requests apart.
    fn every(ms: u64) -> History {
        let t0 = Instant::now();
        let mut h = History::default();
        for i in 0..5u64 {
            h.push("web", 1, sample(t0 + Duration::from_millis(i * ms), i * 10));
        }
        h
    }

    #[test]
    fn jittered_samples_still_give_a_full_window() {
        // Each sample a little more than a second after the one before.
        let h = every(1003);
        let w = h.window("web", Duration::from_secs(1)).unwrap();
        assert_eq!(w.requests, 10, "one whole second, not an empty window");
        assert_eq!(w.span, Duration::from_millis(1003));
    }

    #[test]
    fn samples_a_little_early_still_give_one_second_not_two() {
        // Each sample a little less than a second after the one before.
        let h = every(997);
        let w = h.window("web", Duration::from_secs(1)).unwrap();
        assert_eq!(w.requests, 10, "one second's requests, not two seconds'");
        assert_eq!(w.span, Duration::from_millis(997));
        // A longer window is as many seconds, not one more.
        let w = h.window("web", Duration::from_secs(3)).unwrap();
        assert_eq!(w.span, Duration::from_millis(3 * 997));
    }

    #[test]
    fn a_young_series_a_little_early_does_not_count_its_first_second_twice() {
        let t0 = Instant::now();
        let mut h = History::default();
        h.push("web", 1, sample(t0, 10));
        h.push("web", 1, sample(t0 + Duration::from_millis(997), 20));
        let w = h.window("web", Duration::from_secs(1)).unwrap();
        assert_eq!(w.requests, 10, "the second sample's second, not from zero");
    }

    #[test]
    fn a_young_series_counts_from_zero_over_the_whole_window() {
        let t0 = Instant::now();
        let mut h = History::default();
        h.push("web-1", 1, sample(at(t0, 8), 50));
        h.push("web-1", 1, sample(at(t0, 10), 100));
        let w = h.window("web-1", Duration::from_secs(10)).unwrap();
        assert_eq!(w.span, Duration::from_secs(10));
        assert_eq!(w.requests, 100);
    }

    #[test]
    fn new_counters_under_an_old_name_restart_the_series() {
        let t0 = Instant::now();
        let mut h = History::default();
        for i in 0..20 {
            h.push("web-1", 1, sample(at(t0, i), 10_000 + i));
        }
        h.push("web-1", 2, sample(at(t0, 20), 5));
        let w = h.window("web-1", Duration::from_secs(10)).unwrap();
        assert_eq!(w.requests, 5, "no negative or stale rate");
    }

    #[test]
    fn only_so_many_samples_are_kept_and_gone_subjects_are_dropped() {
        let t0 = Instant::now();
        let mut h = History::default();
        for i in 0..200 {
            h.push("web", 1, sample(at(t0, i), i));
        }
        assert_eq!(h.series["web"].samples.len(), SAMPLES_KEPT);
        let w = h.window("web", Duration::from_secs(600)).unwrap();
        assert_eq!(w.span, Duration::from_secs(60));
        h.retain(|name| name != "web");
        assert!(h.window("web", Duration::from_secs(10)).is_none());
    }

    #[test]
    fn windows_are_clamped_to_what_is_kept() {
        assert_eq!(clamp_window(Duration::ZERO), SAMPLE_INTERVAL);
        assert_eq!(
            clamp_window(Duration::from_secs(3600)),
            Duration::from_secs(60)
        );
    }
}
