//! Restart back-off: a pure function of how many times in a row an instance failed, so that it can
//! be tested without a clock. The runner feeds it the uptime it measured at the edge.

use std::time::Duration;

/// First restart delay: quick enough that a one-off crash costs a second, not a minute
/// (ARCHITECTURE.md, defaults; Nomad's restart stanza and systemd `RestartSec` work the same way).
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Ceiling of the doubling: a crash-looping instance is retried once a minute, which keeps the
/// node quiet without giving up on it (ARCHITECTURE.md, defaults; Nomad `max_delay`, kubelet CrashLoopBackOff 5 min).
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A process that stayed up this long is healthy again: its next crash starts over at
/// [`INITIAL_BACKOFF`] (ARCHITECTURE.md, defaults; Nomad `interval`, kubelet resets after 10 min).
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(10 * 60);

/// Delay before the next start after `failures` failures in a row (0 → 1 s, 1 → 2 s, … ≤ 60 s).
pub fn backoff_delay(failures: u32) -> Duration {
    let factor = 1u32 << failures.min(16);
    INITIAL_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

/// Failures in a row of one instance.
#[derive(Debug, Default, Clone)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// Records an exit (or a failed start, with zero uptime) and returns how long to wait.
    pub fn next(&mut self, uptime: Duration) -> Duration {
        if uptime >= BACKOFF_RESET_AFTER {
            self.failures = 0;
        }
        let delay = backoff_delay(self.failures);
        self.failures = self.failures.saturating_add(1);
        delay
    }

    /// Forgets past failures (a new generation of the instance).
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(d: Duration) -> u64 {
        d.as_secs()
    }

    #[test]
    fn delays_double_from_one_second_up_to_sixty() {
        let mut b = Backoff::default();
        let seq: Vec<u64> = (0..9).map(|_| secs(b.next(Duration::ZERO))).collect();
        assert_eq!(seq, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn ten_minutes_up_resets_the_delay() {
        let mut b = Backoff::default();
        for _ in 0..5 {
            b.next(Duration::from_secs(3));
        }
        assert_eq!(b.next(BACKOFF_RESET_AFTER), INITIAL_BACKOFF);
        assert_eq!(secs(b.next(Duration::from_secs(1))), 2);
        assert_eq!(
            secs(b.next(BACKOFF_RESET_AFTER - Duration::from_secs(1))),
            4
        );
    }

    #[test]
    fn huge_failure_counts_do_not_overflow() {
        assert_eq!(backoff_delay(u32::MAX), MAX_BACKOFF);
        let mut b = Backoff { failures: u32::MAX };
        assert_eq!(b.next(Duration::ZERO), MAX_BACKOFF);
        b.reset();
        assert_eq!(b.next(Duration::ZERO), INITIAL_BACKOFF);
    }
}
