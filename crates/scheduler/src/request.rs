//! What one instance asks of the scheduler.

use crate::{Constraint, Placement, Resources};

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
