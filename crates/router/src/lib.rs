//! ebb's data plane (work in progress toward issue 3; not yet wired into `ebb up`): the set of
//! endpoints a service's traffic may go to, swapped atomically on every change, and the
//! balancers that pick one of them per request.
#![forbid(unsafe_code)]

pub mod balance;
pub mod endpoints;
pub mod http;
pub mod tcp;

pub use balance::{Algorithm, Balancer};
pub use endpoints::{Endpoint, EndpointSet, Endpoints, InFlight};
