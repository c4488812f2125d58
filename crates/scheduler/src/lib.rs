//! ebb's placement core: which node an instance goes to, or why it stays pending.
//!
//! A [`Cluster`] holds the nodes (state, capacity, free resources, labels) and where each
//! service's instances are. [`Cluster::place`] runs every node through the feasibility filters —
//! ready, [`Constraint`]s on labels, enough free cpu and memory — scores the survivors — bin-pack
//! or spread ([`Placement`]), minus an anti-affinity penalty per instance of the same service
//! already there — and returns the best node, or an [`Unplaceable`] that counts why each node was
//! turned away (`no node fits: 2 insufficient cpu, 1 draining`). [`Cluster::reserve`] and
//! [`Cluster::release`] keep the books; a reservation never exceeds a node's capacity.
//!
//! Nothing here does I/O, reads a clock or uses a global random generator (ARCHITECTURE.md,
//! principle 2): ties are broken by a caller-given seed, so the same cluster, request and seed always give
//! the same node.
//!
//! ```
//! use ebb_scheduler::{Cluster, Constraint, Node, NodeState, Request, Resources};
//!
//! const GIB: u64 = 1 << 30;
//! let mut cluster = Cluster::new();
//! cluster.add_node(Node::new("n1", Resources::new(4000, 8 * GIB)).label("zone", "a"))?;
//! cluster.add_node(Node::new("n2", Resources::new(4000, 8 * GIB)).label("zone", "b"))?;
//! let n3 = cluster.add_node(Node::new("n3", Resources::new(8000, 16 * GIB)).label("zone", "a"))?;
//! cluster.set_state(n3, NodeState::Draining)?;
//!
//! let web = Request::new("web", Resources::new(1000, GIB)).constraint(Constraint::parse("zone=a")?);
//! let node = cluster.place_and_reserve(&web, 42).unwrap();
//! assert_eq!(cluster.node(node).unwrap().name(), "n1");
//!
//! let huge = Request::new("db", Resources::new(6000, GIB));
//! let pending = cluster.place(&huge, 42).unwrap_err();
//! assert_eq!(pending.to_string(), "no node fits: 2 insufficient cpu, 1 draining");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod choice;
mod cluster;
mod error;
mod labels;
mod node;
mod place;
pub mod preempt;
pub mod queue;
mod request;
mod resources;
mod score;
mod unplaceable;

pub use choice::{Candidate, Choice};
pub use cluster::{Cluster, NodeView};
// The deploy file's vocabulary is core's: one type per concept (ARCHITECTURE.md, crates).
pub use ebb_core::{Constraint, ConstraintError, NodeState, Operator, Placement};
pub use error::ClusterError;
pub use node::{Node, NodeId};
pub use request::Request;
pub use resources::Resources;
pub use score::ANTI_AFFINITY_WEIGHT;
pub use unplaceable::{Reason, Unplaceable};
