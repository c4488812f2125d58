//! ebb's data plane: the set of endpoints a service's traffic may go to, swapped atomically on
//! every change; the balancers that pick one of them per request; the HTTP and TCP proxies; and
//! the per-service and per-instance metrics they keep.

mod atomic_instant;
pub mod balance;
pub mod endpoint;
pub mod endpoints;
#[doc(hidden)]
pub mod fuzz;
pub mod http;
pub mod http_metrics;
pub mod limit;
pub mod metrics;
pub mod pool;
pub mod read_ahead;
pub mod request_key;
pub mod runtime;
pub mod tcp;
pub mod tls;

pub use balance::{BalanceAlgorithm, Balancer};
pub use endpoint::{Endpoint, EndpointSet, InFlight};
pub use endpoints::Endpoints;
