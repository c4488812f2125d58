//! Where new instances go: the scheduler (`ebb-scheduler`) over the nodes and the
//! reservations of a pass's snapshot.

use super::NODE_NAME_LABEL;
use crate::state::keys::{self, Versioned};
use crate::state::nodes::NodeStates;
use ebb_core::api::NodeInfo;
use ebb_core::{Assignment, DesiredState, ServiceSpec};

/// Chooses nodes for new instances with the scheduler (`ebb-scheduler`): ready nodes with room
/// for the instance's reservation, the best scored (bin-pack, spread across nodes per service).
/// Built once per pass from the nodes the store knows and the reservations of every instance
/// that should run; each placement reserves its share, so one pass never overcommits a node.
pub struct Placer {
    cluster: ebb_scheduler::Cluster,
    seed: u64,
}

impl Placer {
    /// A placer over `nodes` with every running assignment's reservation taken.
    pub fn new(
        nodes: &[NodeInfo],
        states: &NodeStates,
        assignments: &[Versioned<Assignment>],
        seed: u64,
    ) -> Placer {
        let mut cluster = ebb_scheduler::Cluster::new();
        for info in nodes {
            let state = states.get(&info.name);
            let capacity =
                ebb_scheduler::Resources::new(u64::from(info.cpu_millis), info.memory_bytes);
            let mut node = ebb_scheduler::Node::new(info.name.clone(), capacity).state(state);
            node.labels = info.labels.clone();
            // Built in, so that constraints (and moves) can name a node.
            node.labels
                .insert(NODE_NAME_LABEL.to_string(), info.name.clone());
            if let Err(e) = cluster.add_node(node) {
                tracing::debug!(node = info.name, "not schedulable: {e}");
            }
        }
        for a in assignments {
            if a.value.desired != DesiredState::Run {
                continue;
            }
            let Some(id) = cluster.node_id(&a.value.node) else {
                continue;
            };
            // A node that lost capacity may hold more than it offers now: it takes nothing new.
            let need = reservation(&a.value.spec);
            if cluster.reserve(id, &a.value.service, need).is_err() {
                let full = cluster.node(id).map(|n| n.free()).unwrap_or_default();
                let _ = cluster.reserve(id, &a.value.service, full);
            }
        }
        Placer { cluster, seed }
    }

    /// The node for a new instance of `spec`, its reservation taken; or why none fits. The
    /// replacement of a moving instance never lands on the node it leaves, and lands on the
    /// node asked for, if any.
    pub fn pick(
        &mut self,
        spec: &ServiceSpec,
        moving: Option<&keys::Migration>,
    ) -> Result<String, ebb_scheduler::Unplaceable> {
        let mut request = request_of(spec);
        if let Some(m) = moving {
            request = request.constraint(ebb_scheduler::Constraint::not_equal(
                NODE_NAME_LABEL,
                m.from.clone(),
            ));
            if let Some(to) = &m.to {
                request = request.constraint(ebb_scheduler::Constraint::equal(
                    NODE_NAME_LABEL,
                    to.clone(),
                ));
            }
        }
        self.place(request)
    }

    /// The node for a task of `spec`, never one of `full` (nodes at their cap of tasks).
    pub fn pick_task(
        &mut self,
        spec: &ServiceSpec,
        full: &std::collections::BTreeSet<String>,
    ) -> Result<String, ebb_scheduler::Unplaceable> {
        let mut request = request_of(spec);
        for node in full {
            request = request.constraint(ebb_scheduler::Constraint::not_equal(
                NODE_NAME_LABEL,
                node.clone(),
            ));
        }
        self.place(request)
    }

    fn place(
        &mut self,
        request: ebb_scheduler::Request,
    ) -> Result<String, ebb_scheduler::Unplaceable> {
        self.seed = self.seed.wrapping_add(1);
        let id = self.cluster.place_and_reserve(&request, self.seed)?;
        Ok(self
            .cluster
            .node(id)
            .map(|n| n.name().to_string())
            .unwrap_or_default())
    }
}

/// The scheduler's request for an instance of `spec`: its reservation, placement and
/// constraints.
fn request_of(spec: &ServiceSpec) -> ebb_scheduler::Request {
    let mut request =
        ebb_scheduler::Request::new(spec.name.clone(), reservation(spec)).placement(spec.placement);
    // Checked at deploy time: a constraint that does not parse here cannot be from a file.
    match spec.parsed_constraints() {
        Ok(constraints) => request.constraints = constraints,
        Err(e) => tracing::warn!(service = spec.name, "constraints ignored: {e}"),
    }
    request
}

/// What an instance of `spec` reserves on its node (nothing for an unset resource).
fn reservation(spec: &ServiceSpec) -> ebb_scheduler::Resources {
    ebb_scheduler::Resources::new(
        u64::from(spec.resources.cpu_millis.unwrap_or(0)),
        spec.resources.memory_bytes.unwrap_or(0),
    )
}
