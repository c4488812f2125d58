//! What the supervisor wants of each instance: the goal `apply` sets and the instance's runner,
//! the usage sampler and the shared state read.

use ebb_core::{Assignment, DesiredState};
use std::sync::Arc;

/// What `apply` wants of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Goal {
    /// Adopted at start-up and not yet mentioned by `apply`: watch it, touch nothing.
    Adopted,
    Run(Arc<Assignment>),
    Stop(Arc<Assignment>),
    /// No longer assigned: stop it and forget it, logs included.
    Remove,
    /// The agent shuts down: stop it, keep its logs.
    Shutdown,
}

impl Goal {
    /// True when this goal already is `Goal::of(a)`.
    pub fn is_for(&self, a: &Assignment) -> bool {
        match (self, a.desired) {
            (Goal::Run(x), DesiredState::Run) | (Goal::Stop(x), DesiredState::Stop) => **x == *a,
            _ => false,
        }
    }

    pub fn of(a: &Assignment) -> Goal {
        match a.desired {
            DesiredState::Run => Goal::Run(Arc::new(a.clone())),
            DesiredState::Stop => Goal::Stop(Arc::new(a.clone())),
        }
    }
}
