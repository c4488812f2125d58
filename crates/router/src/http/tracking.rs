//! Keeping a request counted until its response has been fully sent.
//!
//! A request is "in flight" — for least-request balancing, for drains that wait on it, and for
//! the concurrency metric — until the last byte of its response body leaves (or the tunnel of
//! an upgraded connection closes), not merely until the response head arrives. [`Tracking`]
//! holds the counters' guards, and [`Tracked`] carries it inside the response body so that it
//! drops exactly when hyper is done with the body. No allocation: the guards move, they are not
//! boxed.

use super::pump::{self, Pumped};
use crate::endpoint::InFlight;
use crate::endpoints::Endpoints;
use crate::http_metrics::Method;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// A client request at the service level: counted in the service's concurrency from arrival
/// (queue wait included, which is what the autoscaler must see) until dropped.
pub(crate) struct ServiceRequest {
    endpoints: Arc<Endpoints>,
    started: Instant,
    method: Method,
    /// The response's status once [`ServiceRequest::respond`] gave one (0: none yet). Atomic
    /// only so that `respond` takes `&self` where the request is shared; one task writes it.
    status: AtomicU16,
    /// Ended by [`ServiceRequest::end`] with the caller's clock reading.
    ended: bool,
}

impl ServiceRequest {
    pub(crate) fn begin(
        endpoints: &Arc<Endpoints>,
        method: Method,
        now: Instant,
    ) -> ServiceRequest {
        endpoints.metrics.concurrency.start(now);
        ServiceRequest {
            endpoints: Arc::clone(endpoints),
            started: now,
            method,
            status: AtomicU16::new(0),
            ended: false,
        }
    }

    /// The client gets a response head with `status` at `now`.
    pub(crate) fn respond(&self, status: u16, now: Instant) {
        let latency = now.saturating_duration_since(self.started);
        self.endpoints.metrics.response(status, latency);
        self.status.store(status, Ordering::Relaxed);
    }

    /// Ends the request at `now`, a clock reading the caller already has (see
    /// [`InFlight::end`]).
    pub(crate) fn end(mut self, now: Instant) {
        self.ended = true;
        self.finish(now);
    }

    /// Out of the service's concurrency; with a response, its whole duration is recorded as
    /// OpenTelemetry's `http.server.request.duration`: until the instance's last byte of the
    /// response reached the router (what a slow client then takes is not counted), or an
    /// upgraded connection's tunnel closed.
    fn finish(&self, now: Instant) {
        self.endpoints.metrics.concurrency.end(now);
        let status = self.status.load(Ordering::Relaxed);
        if status != 0 {
            let duration = now.saturating_duration_since(self.started);
            self.endpoints.http.record(self.method, status, duration);
        }
    }
}

impl Drop for ServiceRequest {
    fn drop(&mut self) {
        if !self.ended {
            self.finish(Instant::now());
        }
    }
}

/// The guards of one proxied request: the service's and the endpoint's.
pub(crate) struct Tracking {
    pub(crate) _service: ServiceRequest,
    pub(crate) _endpoint: InFlight,
}

/// An upstream response body that ends its request's `Tracking` when it ends (or errors, or
/// is dropped unfinished because the client went away) — or, for a response that may not fit
/// in the client's window, read ahead by a task that ends it when the endpoint is done
/// (`pump`).
pub struct Tracked {
    source: Source,
}

enum Source {
    Direct {
        body: Incoming,
        tracking: Option<Tracking>,
    },
    Pumped(Pumped),
}

impl Tracked {
    /// Relays `body` directly when it is small enough to fit in any HTTP/2 window (or is an
    /// upgrade's, with no tracking), else through a pump.
    pub(crate) fn new(
        body: Incoming,
        tracking: Option<Tracking>,
        pump: pump::Settings<'_>,
    ) -> Tracked {
        let small = body.is_end_stream()
            || body
                .size_hint()
                .upper()
                .is_some_and(|most| most <= pump::DIRECT_UP_TO);
        let source = match tracking {
            Some(tracking) if !small => Source::Pumped(pump::start(body, tracking, pump)),
            tracking => Source::Direct { body, tracking },
        };
        Tracked { source }
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.source {
            Source::Direct { body, tracking } => {
                let polled = Pin::new(body).poll_frame(cx);
                if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
                    *tracking = None;
                }
                polled
            }
            Source::Pumped(pumped) => pumped.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.source {
            Source::Direct { body, .. } => body.is_end_stream(),
            Source::Pumped(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Direct { body, .. } => body.size_hint(),
            Source::Pumped(_) => SizeHint::default(),
        }
    }
}

impl std::fmt::Debug for Tracked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            Source::Direct { body, tracking } => f
                .debug_struct("Tracked")
                .field("body", body)
                .field("tracking", &tracking.is_some())
                .finish(),
            Source::Pumped(_) => f.debug_struct("Tracked").field("pumped", &true).finish(),
        }
    }
}
