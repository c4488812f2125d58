//! Balancers: pick one endpoint of a set per request. Pure and lock-free: they read the set and
//! each endpoint's atomic [`Load`], and take `now` as a parameter (DESIGN.md principle 3).
//!
//! PLACEHOLDER ROUND ROBIN ONLY — the balancers of issue 3 (round robin, least request with
//! power of two choices, peak-EWMA, consistent hash) replace this module.

use crate::endpoints::EndpointSet;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The balancing algorithms a service may choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    RoundRobin,
}

impl Algorithm {
    pub fn build(self) -> Box<dyn Balancer> {
        match self {
            Algorithm::RoundRobin => Box::new(RoundRobin::default()),
        }
    }
}

/// Picks an index into the set, or None if it is empty.
pub trait Balancer: Send + Sync + 'static {
    fn pick(&self, set: &EndpointSet, key: Option<u64>, now: Instant) -> Option<usize>;
}

#[derive(Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl Balancer for RoundRobin {
    fn pick(&self, set: &EndpointSet, _key: Option<u64>, _now: Instant) -> Option<usize> {
        if set.is_empty() {
            return None;
        }
        Some(self.next.fetch_add(1, Ordering::Relaxed) % set.len())
    }
}

/// An endpoint's load statistics, updated by requests and read by balancers; lock-free.
#[derive(Debug)]
pub struct Load {
    in_flight: AtomicU32,
}

impl Load {
    pub fn new(_now: Instant) -> Load {
        Load { in_flight: AtomicU32::new(0) }
    }

    pub fn start(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// Ends a request; `rtt` is None for a cancelled one.
    pub fn end(&self, _rtt: Option<Duration>, _now: Instant) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }
}
