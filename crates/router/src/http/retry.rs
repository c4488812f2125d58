//! The retry policy, written once for the three ways a request leaves the router: the hyper
//! path (h2c clients, `forward.rs`), the HTTP/1.1 path with the whole request in hand
//! (`h1/forward.rs`) and the HTTP/1.1 path whose body streams (`h1/stream.rs`).
//!
//! [`Attempts`] counts the attempts and the endpoints already tried; [`Proxy::after_attempt`]
//! feeds an attempt's outcome to outlier detection and says whether to try another endpoint:
//!
//! - a connect failure, always (nothing was sent);
//! - a failure after sending (reset, closed before the response head) or a 502/503 answer,
//!   when the request is idempotent and can be sent again, and only within the
//!   [`RetryBudget`](super::budget::RetryBudget);
//! - nothing after the last attempt.
//!
//! Envoy's `retry_on: connect-failure,reset,retriable-status-codes` with a retry budget and
//! HAProxy's `retry-on conn-failure 502 503` are the models.

use super::Proxy;
use crate::endpoint::Endpoint;
use hyper::Method;
use std::net::SocketAddr;
use std::time::Instant;

/// What one attempt came to, as the retry policy ([`Proxy::after_attempt`]) sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Attempted {
    /// A response head with this status.
    Answered(u16),
    /// The endpoint refused the connection or did not accept it in time: nothing was sent.
    ConnectFailed,
    /// The connection broke after the request was (possibly) sent, or the answer was garbage.
    Broke,
    /// Anything else (the client gone, a timeout): not the endpoint's doing, never retried.
    Other,
}

/// The attempts of one request: at most `retries + 1`, each on an endpoint not tried before.
///
/// ```text
/// let mut attempts = Attempts::new(retries);
/// while let Some(last) = attempts.next() {
///     let endpoint = pick(attempts.tried())?;
///     let result = send(&endpoint).await;
///     if !proxy.after_attempt(&endpoint, outcome(&result), may_repeat, last, now) {
///         return result;
///     }
///     attempts.failed_on(endpoint.addr);
/// }
/// ```
#[derive(Debug)]
pub(super) struct Attempts {
    left: u32,
    /// Endpoints that failed this request; allocates only on a retry.
    tried: Vec<SocketAddr>,
}

impl Attempts {
    /// The first attempt and up to `retries` more.
    pub(super) fn new(retries: u32) -> Attempts {
        Attempts {
            left: retries.saturating_add(1),
            tried: Vec::new(),
        }
    }

    /// Starts the next attempt: `Some(last)` (whether it is the last one), or `None` when all
    /// were used. The loop never sees `None` in practice: [`Proxy::after_attempt`] says no
    /// retry after the last attempt, and its caller returns.
    pub(super) fn next(&mut self) -> Option<bool> {
        self.left = self.left.checked_sub(1)?;
        Some(self.left == 0)
    }

    /// The endpoints to avoid for the next pick.
    pub(super) fn tried(&self) -> &[SocketAddr] {
        &self.tried
    }

    /// Records that the attempt on `addr` failed and another endpoint is to be tried.
    pub(super) fn failed_on(&mut self, addr: SocketAddr) {
        self.tried.push(addr);
    }
}

// === impl Proxy ===

impl Proxy {
    /// The retry policy (see the module): feeds an attempt's outcome to outlier detection and
    /// the metrics, and says whether to try another endpoint (counting the retry). `may_repeat`:
    /// the request is idempotent and can be sent again.
    pub(super) fn after_attempt(
        &self,
        endpoint: &Endpoint,
        attempted: Attempted,
        may_repeat: bool,
        last: bool,
        now: Instant,
    ) -> bool {
        let inner = &self.inner;
        let retry = match attempted {
            Attempted::Answered(status) if !is_gateway_failure(status) => {
                endpoint.outlier.success();
                false
            }
            Attempted::Answered(status) => {
                self.report_failure(endpoint, now);
                retryable_status(status) && may_repeat && !last && inner.budget.try_withdraw(now)
            }
            Attempted::ConnectFailed => {
                endpoint.metrics.connect_error();
                inner.endpoints.metrics.connect_error();
                self.report_failure(endpoint, now);
                !last
            }
            Attempted::Broke => {
                self.report_failure(endpoint, now);
                may_repeat && !last && inner.budget.try_withdraw(now)
            }
            Attempted::Other => false,
        };
        if retry {
            inner.endpoints.metrics.retry();
        }
        retry
    }

    /// A failed attempt counts toward ejecting the endpoint.
    pub(super) fn report_failure(&self, endpoint: &Endpoint, now: Instant) {
        if self.inner.endpoints.report_failure(endpoint, now) {
            tracing::warn!(
                endpoint = %endpoint.id,
                times = endpoint.outlier.times_ejected(),
                "endpoint ejected after consecutive failures"
            );
        }
    }
}

/// Methods a retry may repeat: RFC 9110 §9.2.2's idempotent methods that ebb proxies (TRACE is
/// not forwarded specially and is left out as Envoy's `retry_on` idempotent set does).
pub(super) fn is_idempotent(method: &Method) -> bool {
    is_idempotent_method(method.as_str())
}

/// [`is_idempotent`] of a method's name as the request line spells it (the HTTP/1.1 path).
pub(super) fn is_idempotent_method(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE")
}

/// Answers that count as an endpoint failure for outlier detection: Envoy's
/// `consecutive_gateway_failure` set (502, 503, 504).
fn is_gateway_failure(status: u16) -> bool {
    matches!(status, 502..=504)
}

/// Answers an idempotent request is retried on: 502 and 503 (HAProxy `retry-on 502 503`); a 504
/// already took a full upstream timeout, so retrying it would double the wait.
fn retryable_status(status: u16) -> bool {
    matches!(status, 502 | 503)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_allow_the_first_and_each_retry_then_stop() {
        let mut attempts = Attempts::new(2);
        assert_eq!(attempts.next(), Some(false));
        attempts.failed_on("127.0.0.1:1".parse().unwrap());
        assert_eq!(attempts.next(), Some(false));
        attempts.failed_on("127.0.0.1:2".parse().unwrap());
        assert_eq!(attempts.next(), Some(true));
        assert_eq!(attempts.next(), None);
        assert_eq!(attempts.tried().len(), 2);
    }

    #[test]
    fn without_retries_the_first_attempt_is_the_last() {
        let mut attempts = Attempts::new(0);
        assert_eq!(attempts.next(), Some(true));
        assert_eq!(attempts.next(), None);
        assert_eq!(Attempts::new(u32::MAX).next(), Some(false));
    }

    #[test]
    fn only_gateway_failures_count_and_only_502_and_503_are_retried() {
        assert!([502, 503, 504].into_iter().all(is_gateway_failure));
        assert!(![200, 404, 500, 505].into_iter().any(is_gateway_failure));
        assert!(retryable_status(502) && retryable_status(503) && !retryable_status(504));
        assert!(is_idempotent(&Method::PUT) && !is_idempotent(&Method::POST));
    }
}
