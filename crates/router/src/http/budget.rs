//! The retry budget: retries may add at most a fixed share to the request rate, so a failing
//! backend cannot turn retries into a load multiplier (a retry storm).
//!
//! A lock-free token bucket in thousandths of a token: every request deposits
//! [`RETRY_RATIO`] of a token, every budgeted retry withdraws a whole one, and the balance never
//! exceeds [`MAX_TOKENS`]. So that a quiet service can still retry, a time-based refill keeps at
//! least [`MIN_RETRIES_PER_SEC`] retries a second available (it tops the balance up to one
//! second's worth, never beyond). Over any interval of `t` seconds with `n` requests the
//! withdrawals are therefore at most `MAX_TOKENS + RETRY_RATIO × n + MIN_RETRIES_PER_SEC × t`.
//! Envoy's `retry_budget` and Linkerd's/Finagle's `RetryBudget` are the model (ARCHITECTURE.md,
//! defaults, "retries").

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

/// Share of the request rate that retries may add: 20 %, Envoy's `budget_percent` default and
/// Linkerd's `retryRatio` (0.2).
pub const RETRY_RATIO: f64 = 0.2;

/// Retries a second always allowed, however little traffic there is: 10, Linkerd's
/// `minRetriesPerSecond` default (Envoy's `min_retry_concurrency` is 3 concurrent).
pub const MIN_RETRIES_PER_SEC: i64 = 10;

/// Most tokens that may accumulate: a burst of this many retries is possible after a healthy
/// spell. 100: ten seconds of the minimum, like Linkerd's 10 s budget window (`ttl`).
pub const MAX_TOKENS: i64 = 100;

const MILLI: i64 = 1000;
const DEPOSIT_MILLI: i64 = (RETRY_RATIO * MILLI as f64) as i64;

/// A retry budget shared by all requests of one proxy.
#[derive(Debug)]
pub struct RetryBudget {
    /// Balance in thousandths of a retry.
    milli_tokens: AtomicI64,
    /// Nanoseconds from `epoch` up to which the minimum-rate refill has been credited.
    refilled_ns: AtomicU64,
    epoch: Instant,
}

impl RetryBudget {
    /// A budget that starts with one second of the minimum rate available.
    pub fn new(now: Instant) -> RetryBudget {
        RetryBudget {
            milli_tokens: AtomicI64::new(MIN_RETRIES_PER_SEC * MILLI),
            refilled_ns: AtomicU64::new(0),
            epoch: now,
        }
    }

    /// A request arrived: it earns [`RETRY_RATIO`] of a retry.
    pub fn deposit(&self) {
        let cap = MAX_TOKENS * MILLI;
        // One load and one add on the hot path; the cap is enforced loosely (a concurrent
        // deposit may overshoot it by a few thousandths, and the next one pulls it back).
        if self.milli_tokens.load(Ordering::Relaxed) < cap {
            let after = self
                .milli_tokens
                .fetch_add(DEPOSIT_MILLI, Ordering::Relaxed)
                + DEPOSIT_MILLI;
            if after > cap {
                let _ = self.milli_tokens.fetch_sub(after - cap, Ordering::Relaxed);
            }
        }
    }

    /// Takes one retry from the budget at `now`; false when the budget is spent.
    pub fn try_withdraw(&self, now: Instant) -> bool {
        self.refill(now);
        self.milli_tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                (t >= MILLI).then_some(t - MILLI)
            })
            .is_ok()
    }

    /// Retries available now (whole tokens, without the refill due at this moment).
    pub fn available(&self) -> i64 {
        self.milli_tokens.load(Ordering::Relaxed) / MILLI
    }

    /// Credits the minimum rate for the time since the last refill, topping the balance up to
    /// one second's worth at most. The CAS on the time makes each interval count once.
    fn refill(&self, now: Instant) {
        let now_ns =
            u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        let last = self.refilled_ns.load(Ordering::Relaxed);
        if now_ns <= last
            || self
                .refilled_ns
                .compare_exchange(last, now_ns, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let elapsed_ns = i64::try_from(now_ns - last).unwrap_or(i64::MAX);
        // MIN_RETRIES_PER_SEC × elapsed, in thousandths; saturating for very long gaps.
        let credit = elapsed_ns
            .saturating_mul(MIN_RETRIES_PER_SEC)
            .saturating_div(1_000_000);
        let floor = MIN_RETRIES_PER_SEC * MILLI;
        let _ = self
            .milli_tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                (t < floor).then(|| t.saturating_add(credit).min(floor))
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn starts_with_one_second_of_the_minimum() {
        let t0 = Instant::now();
        let b = RetryBudget::new(t0);
        let granted = (0..100).filter(|_| b.try_withdraw(t0)).count();
        assert_eq!(granted, MIN_RETRIES_PER_SEC as usize);
    }

    #[test]
    fn requests_earn_a_fifth_of_a_retry_each() {
        let t0 = Instant::now();
        let b = RetryBudget::new(t0);
        while b.try_withdraw(t0) {}
        for _ in 0..100 {
            b.deposit();
        }
        let granted = (0..100).filter(|_| b.try_withdraw(t0)).count();
        assert_eq!(granted, 20);
    }

    #[test]
    fn the_minimum_refills_over_time_but_not_past_one_second() {
        let t0 = Instant::now();
        let b = RetryBudget::new(t0);
        while b.try_withdraw(t0) {}
        let half = t0 + Duration::from_millis(500);
        let granted = (0..100).filter(|_| b.try_withdraw(half)).count();
        assert_eq!(granted, 5);
        let much_later = half + Duration::from_secs(3600);
        let granted = (0..100).filter(|_| b.try_withdraw(much_later)).count();
        assert_eq!(granted, MIN_RETRIES_PER_SEC as usize);
    }

    #[test]
    fn deposits_are_capped() {
        let t0 = Instant::now();
        let b = RetryBudget::new(t0);
        for _ in 0..100_000 {
            b.deposit();
        }
        assert_eq!(b.available(), MAX_TOKENS);
    }
}
