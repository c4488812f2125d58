//! Passive outlier detection (Envoy's, consecutive failures only): when an endpoint is ejected,
//! for how long, and how much of a set may be out at once.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Consecutive failures (connect errors, resets, 502/503/504) that eject an endpoint: 5, Envoy's
/// `consecutive_5xx` and `consecutive_gateway_failure` default (ARCHITECTURE.md, defaults).
pub const EJECT_AFTER_FAILURES: u32 = 5;

/// How long the first ejection lasts; the n-th lasts n times this. 30 s: Envoy's
/// `base_ejection_time` default (ARCHITECTURE.md, defaults).
pub const BASE_EJECTION: Duration = Duration::from_secs(30);

/// Longest ejection, however often an endpoint was ejected: 300 s, Envoy's `max_ejection_time`
/// default, so a recovered instance is always tried again within five minutes.
pub const MAX_EJECTION: Duration = Duration::from_secs(300);

/// Most of a set that may be ejected at once, in percent: 10, Envoy's `max_ejection_percent`
/// default. As in Envoy, at least one endpoint may always be ejected (so a set of fewer than 10
/// may lose one), but never the last one that is not ejected.
pub const MAX_EJECTION_PERCENT: usize = 10;

/// Whether one more endpoint may be ejected from a set of `total` of which `ejected` already
/// are (pure; see [`MAX_EJECTION_PERCENT`]).
pub fn may_eject(ejected: usize, total: usize) -> bool {
    let cap = (total * MAX_EJECTION_PERCENT / 100).max(1);
    ejected < cap && ejected + 1 < total
}

/// How long the `times`-th ejection (1-based) of an endpoint lasts: [`BASE_EJECTION`] × times,
/// at most [`MAX_EJECTION`].
pub fn ejection_time(times: u32) -> Duration {
    BASE_EJECTION.saturating_mul(times.max(1)).min(MAX_EJECTION)
}

/// An endpoint's passive outlier state (Envoy's outlier detection, consecutive failures only).
///
/// Requests report each attempt's outcome; the proxy ejects after [`EJECT_AFTER_FAILURES`] in a
/// row and picks skip an ejected endpoint until its ejection ends. All atomics: the hot path
/// (a success) is one relaxed load, plus a store only when a failure streak was under way.
/// Two endpoints reaching the threshold at the same instant may both pass the
/// [`may_eject`] check; the overshoot is bounded by the number of simultaneous failures.
#[derive(Debug)]
pub struct Outlier {
    consecutive: AtomicU32,
    /// The multiplier of the next ejection's length; quiet time lowers it.
    times_ejected: AtomicU32,
    /// Every ejection ever, for metrics (never lowered).
    ejections: AtomicU64,
    /// Nanoseconds from `born` to the end of the current ejection; 0 when never ejected.
    ejected_until_ns: AtomicU64,
    born: Instant,
}

impl Outlier {
    /// No failures and never ejected; ejection times count from `now`.
    pub fn new(now: Instant) -> Outlier {
        Outlier {
            consecutive: AtomicU32::new(0),
            times_ejected: AtomicU32::new(0),
            ejections: AtomicU64::new(0),
            ejected_until_ns: AtomicU64::new(0),
            born: now,
        }
    }

    fn since_born(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.born).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether the endpoint is ejected at `now`.
    pub fn is_ejected(&self, now: Instant) -> bool {
        let until = self.ejected_until_ns.load(Ordering::Relaxed);
        until != 0 && self.since_born(now) < until
    }

    /// How many times the endpoint has been ejected (less those forgiven, see
    /// `Outlier::next_ejection_count`).
    pub fn times_ejected(&self) -> u32 {
        self.times_ejected.load(Ordering::Relaxed)
    }

    /// Ejections since the endpoint joined its set.
    pub fn ejections(&self) -> u64 {
        self.ejections.load(Ordering::Relaxed)
    }

    /// The count the ejection happening at `now` makes. As Envoy decrements its ejection
    /// multiplier while a host stays healthy, every [`BASE_EJECTION`] without an ejection since
    /// the last one ended forgives one earlier ejection: an instance that failed once last week
    /// starts again at 30 s, not at the 5-minute cap.
    fn next_ejection_count(&self, now: Instant) -> u32 {
        let ended = self.ejected_until_ns.load(Ordering::Relaxed);
        let quiet = self.since_born(now).saturating_sub(ended);
        let forgiven = if ended == 0 {
            0
        } else {
            u32::try_from(quiet / BASE_EJECTION.as_nanos() as u64).unwrap_or(u32::MAX)
        };
        let times = self
            .times_ejected
            .load(Ordering::Relaxed)
            .saturating_sub(forgiven)
            + 1;
        self.times_ejected.store(times, Ordering::Relaxed);
        times
    }

    /// Failures in a row since the last success or ejection.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive.load(Ordering::Relaxed)
    }

    /// An attempt succeeded: the failure streak ends.
    pub fn success(&self) {
        if self.consecutive.load(Ordering::Relaxed) != 0 {
            self.consecutive.store(0, Ordering::Relaxed);
        }
    }

    /// An attempt failed at `now`. Returns true when this failure completes a streak of
    /// [`EJECT_AFTER_FAILURES`] and `may_eject()` (called only then; it counts the set's
    /// ejected endpoints) allows it: the endpoint is then ejected for [`ejection_time`].
    pub fn failure(&self, now: Instant, may_eject: impl FnOnce() -> bool) -> bool {
        let streak = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        if streak < EJECT_AFTER_FAILURES || self.is_ejected(now) || !may_eject() {
            return false;
        }
        // Only the failure that wins the reset ejects, so a burst ejects once.
        if self
            .consecutive
            .compare_exchange(streak, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        let times = self.next_ejection_count(now);
        self.ejections.fetch_add(1, Ordering::Relaxed);
        let until = self
            .since_born(now)
            .saturating_add(u64::try_from(ejection_time(times).as_nanos()).unwrap_or(u64::MAX))
            .max(1);
        self.ejected_until_ns.store(until, Ordering::Relaxed);
        true
    }
}
