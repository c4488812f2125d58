//! The cold-start queue: a request at a service with no ready instance waits for the first one,
//! bounded in count ([`MAX_QUEUED`]) and in time (the service's `queue_timeout`), and signals
//! demand so that a service at zero starts an instance at once (the KEDA HTTP add-on's and
//! Knative's activator's model).

use super::Endpoints;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Most requests that may wait for a ready instance at once, per service; beyond it they fail
/// fast with 503. 10,000: Linkerd's default queue capacity (ARCHITECTURE.md, defaults,
/// "cold-start queue").
pub const MAX_QUEUED: u32 = 10_000;

/// A request counted in a service's cold-start queue until dropped; its wait is recorded
/// then, so that a wait given up (a request timeout, a client gone) counts too.
struct Queued<'a> {
    endpoints: &'a Endpoints,
    started: Instant,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.endpoints.queued.fetch_sub(1, Ordering::Relaxed);
        self.endpoints.queue_wait.record(self.started.elapsed());
    }
}

impl Endpoints {
    /// Waits up to `limit` for the set to have an endpoint (the cold-start queue). Returns at
    /// once when it has one; false when the wait timed out or [`MAX_QUEUED`] requests already
    /// wait, so the caller fails fast instead of piling up.
    pub async fn wait_ready(&self, limit: Duration) -> bool {
        if !self.current.load().is_empty() {
            return true;
        }
        if self.queued.fetch_add(1, Ordering::Relaxed) >= MAX_QUEUED {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        // Counted out on drop, so that a waiter cancelled by its caller (a request timeout
        // shorter than the queue wait, a client gone) does not stay counted forever.
        let _queued = Queued {
            endpoints: self,
            started: Instant::now(),
        };
        if let Some(demand) = &self.demand {
            demand.notify_one();
        }
        let mut ready = self.ready.subscribe();
        let waited = tokio::time::timeout(limit, ready.wait_for(|r| *r)).await;
        matches!(waited, Ok(Ok(_)))
    }
}
