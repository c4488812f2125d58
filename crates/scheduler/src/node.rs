//! Nodes as the scheduler sees them: a name, a liveness state, capacity, reservations, labels.

use crate::{NodeState, Resources};
use std::collections::BTreeMap;
use std::fmt;

/// A node's position in its [`Cluster`](crate::Cluster): stable for the cluster's life (nodes are
/// never removed, only marked down; rebuild the cluster from a snapshot to forget them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub(crate) u32);

impl NodeId {
    /// The position, `0..cluster.len()`.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A node to add to a [`Cluster`](crate::Cluster).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Node {
    /// Unique within the cluster; also what ties are broken on (with the seed), so a placement
    /// does not depend on the order nodes were added.
    pub name: String,
    /// Liveness; see [`NodeState`].
    pub state: NodeState,
    /// What the node offers to instances in total.
    pub capacity: Resources,
    /// Already reserved without belonging to any service the scheduler tracks (system daemons,
    /// or instances being restored from a snapshot before their service is known). Must fit in
    /// `capacity`.
    pub reserved: Resources,
    /// Labels matched by [`Constraint`](crate::Constraint)s, e.g. `zone=a`.
    pub labels: BTreeMap<String, String>,
}

impl Node {
    /// A ready node with nothing reserved and no labels.
    pub fn new(name: impl Into<String>, capacity: Resources) -> Self {
        Node {
            name: name.into(),
            capacity,
            ..Node::default()
        }
    }

    /// Adds (or replaces) label `key=value`.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Sets the state.
    pub fn state(mut self, state: NodeState) -> Self {
        self.state = state;
        self
    }

    /// Sets the unattributed reservation.
    pub fn reserved(mut self, reserved: Resources) -> Self {
        self.reserved = reserved;
        self
    }
}
