//! An `Instant` that threads update and read without a lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A moment at or after `base`, kept as whole milliseconds since it, so one atomic store
/// records it: enough precision for timeouts counted in seconds.
#[derive(Debug)]
pub(crate) struct AtomicInstant {
    base: Instant,
    ms: AtomicU64,
}

impl AtomicInstant {
    /// Starts at `now`.
    pub(crate) fn new(now: Instant) -> AtomicInstant {
        AtomicInstant {
            base: now,
            ms: AtomicU64::new(0),
        }
    }

    /// Moves it to `now` (a moment before the start counts as the start).
    pub(crate) fn set(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.base).as_millis();
        self.ms
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The moment last set (or the start), to the millisecond below.
    pub(crate) fn get(&self) -> Instant {
        self.base + Duration::from_millis(self.ms.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_keeps_the_last_moment_set_to_the_millisecond() {
        let t0 = Instant::now();
        let at = AtomicInstant::new(t0);
        assert_eq!(at.get(), t0);
        at.set(t0 + Duration::from_micros(2_500));
        assert_eq!(at.get(), t0 + Duration::from_millis(2));
        at.set(t0.checked_sub(Duration::from_secs(1)).unwrap_or(t0));
        assert_eq!(at.get(), t0, "never before the start");
    }
}
