//! Keeping a request counted until its response has been fully sent.
//!
//! A request is "in flight" — for least-request balancing, for drains that wait on it, and for
//! the concurrency metric — until the last byte of its response body leaves (or the tunnel of
//! an upgraded connection closes), not merely until the response head arrives. [`Tracking`]
//! holds the counters' guards, and [`Tracked`] carries it inside the response body so that it
//! drops exactly when hyper is done with the body. No allocation: the guards move, they are not
//! boxed.

use crate::endpoint::InFlight;
use crate::endpoints::Endpoints;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// A client request at the service level: counted in the service's concurrency from arrival
/// (queue wait included, which is what the autoscaler must see) until dropped.
pub(crate) struct ServiceRequest {
    endpoints: Arc<Endpoints>,
    started: Instant,
    /// Ended by [`ServiceRequest::end`] with the caller's clock reading.
    ended: bool,
}

impl ServiceRequest {
    pub(crate) fn begin(endpoints: &Arc<Endpoints>, now: Instant) -> ServiceRequest {
        endpoints.metrics.concurrency.start(now);
        ServiceRequest {
            endpoints: Arc::clone(endpoints),
            started: now,
            ended: false,
        }
    }

    /// The client gets a response head with `status` at `now`.
    pub(crate) fn respond(&self, status: u16, now: Instant) {
        let latency = now.saturating_duration_since(self.started);
        self.endpoints.metrics.response(status, latency);
    }
}

impl ServiceRequest {
    /// Ends the request at `now`, a clock reading the caller already has (see
    /// [`InFlight::end`]).
    pub(crate) fn end(mut self, now: Instant) {
        self.ended = true;
        self.endpoints.metrics.concurrency.end(now);
    }
}

impl Drop for ServiceRequest {
    fn drop(&mut self) {
        if !self.ended {
            self.endpoints.metrics.concurrency.end(Instant::now());
        }
    }
}

/// The guards of one proxied request: the service's and the endpoint's.
pub(crate) struct Tracking {
    pub(crate) _service: ServiceRequest,
    pub(crate) _endpoint: InFlight,
}

/// An upstream response body that ends its request's `Tracking` when it ends (or errors, or
/// is dropped unfinished because the client went away).
pub struct Tracked {
    body: Incoming,
    tracking: Option<Tracking>,
}

impl Tracked {
    pub(crate) fn new(body: Incoming, tracking: Option<Tracking>) -> Tracked {
        Tracked { body, tracking }
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            self.tracking = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl std::fmt::Debug for Tracked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracked")
            .field("body", &self.body)
            .field("tracking", &self.tracking.is_some())
            .finish()
    }
}
