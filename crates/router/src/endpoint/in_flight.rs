//! A request in flight on an endpoint: counted in its load and metrics until the guard drops.

use super::Endpoint;
use std::sync::Arc;
use std::time::Instant;

/// A request in flight on an endpoint; dropping it ends the request. A request that never got
/// a response head (cancelled, failed) gives no latency sample.
#[derive(Debug)]
pub struct InFlight {
    endpoint: Arc<Endpoint>,
    started: Instant,
    /// Ended by [`InFlight::end`] with the caller's clock reading, so the drop reads none.
    ended: bool,
}

impl InFlight {
    /// Starts counting a request on `endpoint` from `now` (see [`Endpoint::begin`]).
    pub(super) fn new(endpoint: Arc<Endpoint>, now: Instant) -> InFlight {
        InFlight {
            endpoint,
            started: now,
            ended: false,
        }
    }

    /// The endpoint the request runs on.
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }

    /// The response head arrived at `now` with `status`: the time since the start feeds the
    /// latency estimate and the metrics. The request stays in flight until dropped.
    pub fn head(&self, status: u16, now: Instant) {
        let rtt = now.saturating_duration_since(self.started);
        self.endpoint.load.observe(rtt, now);
        self.endpoint.metrics.response(status, rtt);
    }

    /// When the request started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Ends the request at `now`, a clock reading the caller already has (dropping it reads
    /// the clock itself): the hot path reads the clock a few times per request, not a dozen.
    pub fn end(mut self, now: Instant) {
        self.finish(now);
    }

    fn finish(&mut self, now: Instant) {
        self.ended = true;
        self.endpoint.load.end(None, now);
        self.endpoint.metrics.concurrency.end(now);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.ended {
            self.finish(Instant::now());
        }
    }
}
