//! Endpoints: the ready instances of a service, as the data plane sees them.
//!
//! The set is swapped atomically ([`arc_swap::ArcSwap`], DESIGN.md principle 7): a request loads
//! the current set without a lock, and an update builds a new set while requests in flight keep
//! the old one. An endpoint that stays across updates keeps its `Arc`, so its load statistics
//! (in-flight count, latency estimate) survive the swap.

use crate::balance::{Algorithm, Balancer, Load};
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// One instance that may receive traffic.
#[derive(Debug)]
pub struct Endpoint {
    /// The instance id (`web-1a2b3c4d`).
    pub id: String,
    pub addr: SocketAddr,
    /// Load statistics the balancers read and requests update; lock-free.
    pub load: Load,
}

impl Endpoint {
    pub fn new(id: impl Into<String>, addr: SocketAddr, now: Instant) -> Endpoint {
        Endpoint {
            id: id.into(),
            addr,
            load: Load::new(now),
        }
    }

    /// Marks a request as started on this endpoint; finish it with the returned guard.
    pub fn begin(self: &Arc<Self>, now: Instant) -> InFlight {
        self.load.start();
        InFlight {
            endpoint: Arc::clone(self),
            started: now,
            done: false,
        }
    }
}

/// A request in flight on an endpoint. Dropping it without [`InFlight::finish`] (a cancelled
/// request) still ends it, without a latency sample.
#[derive(Debug)]
pub struct InFlight {
    endpoint: Arc<Endpoint>,
    started: Instant,
    done: bool,
}

impl InFlight {
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }

    /// Ends the request; `now - started` feeds the endpoint's latency estimate.
    pub fn finish(mut self, now: Instant) {
        self.done = true;
        let rtt = now.saturating_duration_since(self.started);
        self.endpoint.load.end(Some(rtt), now);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.done {
            self.endpoint.load.end(None, Instant::now());
        }
    }
}

/// An immutable snapshot of a service's endpoints, in a stable order (by id).
#[derive(Debug, Default)]
pub struct EndpointSet {
    pub endpoints: Vec<Arc<Endpoint>>,
}

impl EndpointSet {
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }
}

/// A service's live endpoint set and its balancer.
pub struct Endpoints {
    current: ArcSwap<EndpointSet>,
    balancer: Box<dyn Balancer>,
}

impl Endpoints {
    pub fn new(algorithm: Algorithm) -> Endpoints {
        Endpoints {
            current: ArcSwap::from_pointee(EndpointSet::default()),
            balancer: algorithm.build(),
        }
    }

    /// The current set (lock-free).
    pub fn load(&self) -> Arc<EndpointSet> {
        self.current.load_full()
    }

    /// Replaces the set with these `(id, addr)` pairs. Endpoints whose id and address are
    /// unchanged keep their statistics; new ones start fresh at `now`.
    pub fn update(&self, wanted: &[(String, SocketAddr)], now: Instant) {
        let old = self.current.load();
        let mut endpoints: Vec<Arc<Endpoint>> = wanted
            .iter()
            .map(|(id, addr)| {
                old.endpoints
                    .iter()
                    .find(|e| &e.id == id && e.addr == *addr)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Endpoint::new(id.clone(), *addr, now)))
            })
            .collect();
        endpoints.sort_by(|a, b| a.id.cmp(&b.id));
        endpoints.dedup_by(|a, b| a.id == b.id);
        self.current.store(Arc::new(EndpointSet { endpoints }));
    }

    /// Picks an endpoint for a request: `key` is the request's hash key for consistent hashing
    /// (ignored by other algorithms). None when the set is empty.
    pub fn pick(&self, key: Option<u64>, now: Instant) -> Option<Arc<Endpoint>> {
        let set = self.current.load();
        let i = self.balancer.pick(&set, key, now)?;
        set.endpoints.get(i).cloned()
    }

    /// Picks an endpoint other than those in `tried` (for retries); falls back to any if all were tried.
    pub fn pick_excluding(
        &self,
        key: Option<u64>,
        tried: &[SocketAddr],
        now: Instant,
    ) -> Option<Arc<Endpoint>> {
        for _ in 0..3 {
            let e = self.pick(key, now)?;
            if !tried.contains(&e.addr) {
                return Some(e);
            }
        }
        let set = self.current.load();
        set.endpoints
            .iter()
            .find(|e| !tried.contains(&e.addr))
            .cloned()
            .or_else(|| self.pick(key, now))
    }
}
