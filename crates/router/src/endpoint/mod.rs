//! One endpoint (an instance that may receive traffic) and what travels with it: its load
//! ([`Load`]), its outlier state ([`Outlier`], `ejection.rs`), the guard of a request in flight
//! on it ([`InFlight`]), and the immutable sets of them that balancers pick from
//! ([`EndpointSet`]).
//!
//! This is the bottom of the data plane: balancers (`crate::balance`) read endpoints and sets,
//! and a service's [`Endpoints`](crate::endpoints::Endpoints) swaps sets; nothing here depends
//! on either.

mod ejection;
mod in_flight;
mod load;
mod set;

pub use ejection::{
    ejection_time, may_eject, Outlier, BASE_EJECTION, EJECT_AFTER_FAILURES, MAX_EJECTION,
    MAX_EJECTION_PERCENT,
};
pub use in_flight::InFlight;
pub use load::{Load, DECAY, DEFAULT_RTT};
pub use set::EndpointSet;

use crate::metrics::{Metrics, Snapshot};
use crate::pool::IdlePool;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// One instance that may receive traffic.
#[derive(Debug)]
pub struct Endpoint {
    /// The instance id (`web-1a2b3c4d`).
    pub id: String,
    /// The address the instance serves on.
    pub addr: SocketAddr,
    /// `addr` as a URI authority, made once: requests clone it (a reference count) instead of
    /// formatting the address each time.
    pub authority: hyper::http::uri::Authority,
    /// Load statistics the balancers read and requests update; lock-free.
    pub load: Load,
    /// Passive outlier detection: consecutive failures and ejection; lock-free.
    pub outlier: Outlier,
    /// Requests, latency and errors of this instance, for the API and the autoscaler.
    pub metrics: Metrics,
    /// Idle keep-alive connections to this instance (HTTP/1.1 path); they close when the
    /// endpoint leaves the set and its last request ends.
    pub idle: IdlePool,
}

impl Endpoint {
    /// A new endpoint whose load, outlier state and metrics (and slow-start age) start at `now`.
    pub fn new(id: impl Into<String>, addr: SocketAddr, now: Instant) -> Endpoint {
        Endpoint {
            id: id.into(),
            addr,
            authority: authority_of(addr),
            load: Load::new(now),
            outlier: Outlier::new(now),
            metrics: Metrics::new(now),
            idle: IdlePool::default(),
        }
    }

    /// This endpoint's cumulative metrics at `now`.
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        self.metrics.snapshot(now, self.outlier.ejections())
    }

    /// Whether passive outlier detection has taken this endpoint out of rotation at `now`.
    pub fn is_ejected(&self, now: Instant) -> bool {
        self.outlier.is_ejected(now)
    }

    /// Marks a request as started on this endpoint. It stays in flight (for balancing, drains
    /// and metrics) until the returned guard is dropped: after the response body, or the tunnel.
    pub fn begin(self: &Arc<Self>, now: Instant) -> InFlight {
        self.load.start();
        self.metrics.concurrency.start(now);
        InFlight::new(Arc::clone(self), now)
    }
}

fn authority_of(addr: SocketAddr) -> hyper::http::uri::Authority {
    // A formatted socket address is always a valid authority; the fallback is never taken.
    addr.to_string()
        .parse()
        .unwrap_or_else(|_| hyper::http::uri::Authority::from_static("0.0.0.0:0"))
}
