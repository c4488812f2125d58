//! What one instance asks of the scheduler.

use crate::{Constraint, Resources};

/// How to choose among the nodes an instance fits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Placement {
    /// Fill the fullest node that still fits, keeping whole nodes free for large instances and
    /// for scaling the cluster in (Nomad's default `binpack`, Kubernetes' `MostAllocated`).
    #[default]
    BinPack,
    /// Use the emptiest node, leaving headroom for bursts on every node (the deploy file's
    /// `placement = "spread"`; Kubernetes' `LeastAllocated`).
    Spread,
}

/// One instance to place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The service (or job) the instance belongs to: instances of one service repel each other
    /// (anti-affinity), so that losing a node loses as few of them as possible.
    pub service: String,
    /// What it reserves on the node it lands on.
    pub resources: Resources,
    /// Conditions on node labels, all of which must hold.
    pub constraints: Vec<Constraint>,
    /// How to choose among feasible nodes.
    pub placement: Placement,
}

impl Request {
    /// An instance of `service` reserving `resources`, bin-packed, unconstrained.
    pub fn new(service: impl Into<String>, resources: Resources) -> Self {
        Request {
            service: service.into(),
            resources,
            constraints: Vec::new(),
            placement: Placement::default(),
        }
    }

    /// Adds a constraint.
    pub fn constraint(mut self, constraint: Constraint) -> Self {
        self.constraints.push(constraint);
        self
    }

    /// Sets the placement strategy.
    pub fn placement(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }
}
