//! An immutable set of endpoints, the unit the balancers pick from and services swap.

use super::Endpoint;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// An immutable snapshot of a service's endpoints, in a stable order (by id).
///
/// Every set gets a process-wide unique generation when built, so a balancer that caches
/// something derived from a set (consistent hashing's ring) recognises the set in O(1). A set is
/// never changed in place: a change is a new set (and `endpoints` is public for reading only;
/// changing it would keep the old generation and so a stale ring).
#[derive(Debug)]
pub struct EndpointSet {
    /// The endpoints, in the order given to [`EndpointSet::new`] (callers sort by id).
    pub endpoints: Vec<Arc<Endpoint>>,
    generation: u64,
}

/// The generation of the next [`EndpointSet`]; 0 is never handed out.
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

impl Default for EndpointSet {
    fn default() -> EndpointSet {
        EndpointSet::new(Vec::new())
    }
}

impl EndpointSet {
    /// A set of `endpoints`, kept in the given order, with a new generation.
    pub fn new(endpoints: Vec<Arc<Endpoint>>) -> EndpointSet {
        EndpointSet {
            endpoints,
            generation: NEXT_GENERATION.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// This set's generation: unique to it among all sets of the process.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Endpoints in the set.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Whether the set has no endpoint.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }
}
