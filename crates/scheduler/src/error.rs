//! Refusals of the mutating calls on a [`Cluster`](crate::Cluster). Each leaves the cluster as
//! it was.

use crate::{NodeId, Resources};

/// Why a change to the cluster was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// `add_node` with a name already in the cluster.
    #[error("node `{0}` is already in the cluster: node names must be unique")]
    DuplicateNode(String),
    /// A node whose reservation exceeds its capacity.
    #[error("node `{name}` reserves {reserved}, more than its capacity {capacity}")]
    ReservedExceedsCapacity {
        /// The node's name.
        name: String,
        /// What it said it had reserved.
        reserved: Resources,
        /// What it has.
        capacity: Resources,
    },
    /// The cluster already holds `u32::MAX` nodes.
    #[error("the cluster is full: at most {} nodes", u32::MAX)]
    TooManyNodes,
    /// A [`NodeId`] from another cluster, or out of range.
    #[error("no node {0} in this cluster")]
    UnknownNode(NodeId),
    /// A reservation that would overcommit the node.
    #[error("node `{name}` has {free} free, not enough for {wanted}")]
    Overcommit {
        /// The node's name.
        name: String,
        /// What is free on it.
        free: Resources,
        /// What was asked for.
        wanted: Resources,
    },
    /// A release for a service with no instance on the node.
    #[error("node `{name}` holds no instance of service `{service}`")]
    NotHeld {
        /// The node's name.
        name: String,
        /// The service named in the release.
        service: String,
    },
    /// A release of more than the node has reserved.
    #[error("node `{name}` has {reserved} reserved, less than the {released} released")]
    ReleaseExceedsReserved {
        /// The node's name.
        name: String,
        /// What it has reserved.
        reserved: Resources,
        /// What the release asked to return.
        released: Resources,
    },
}
