//! Where new instances go: the scheduler (`ebb-scheduler`) over the nodes and the
//! reservations of a pass's snapshot.

use super::decide::current_status;
use super::NODE_NAME_LABEL;
use crate::state::keys::{self, Versioned};
use crate::state::nodes::NodeStates;
use ebb_core::api::{NodeInfo, NodeState};
use ebb_core::{Assignment, DesiredState, InstanceState, InstanceStatus, ServiceSpec};
use std::collections::HashMap;

/// Chooses nodes for new instances with the scheduler (`ebb-scheduler`): ready nodes with room
/// for the instance's reservation, the best scored (bin-pack, spread across nodes per service).
/// Built once per pass from the nodes the store knows and the reservations of every instance
/// that should run (and of every task still stopping: a preempted task's room goes to its
/// preemptor only once it has ended); each placement reserves its share, so one pass never
/// overcommits a node.
pub struct Placer {
    cluster: ebb_scheduler::Cluster,
    /// Tasks asked to stop that have not ended: (node, job, reservation).
    stopping: Vec<(String, String, ebb_scheduler::Resources)>,
    seed: u64,
}

impl Placer {
    /// A placer over `nodes` with every running assignment's reservation taken.
    pub fn new(
        nodes: &[NodeInfo],
        states: &NodeStates,
        assignments: &[Versioned<Assignment>],
        statuses: &HashMap<String, InstanceStatus>,
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
        let mut stopping = Vec::new();
        for a in assignments {
            let holds = match a.value.desired {
                DesiredState::Run => true,
                DesiredState::Stop => {
                    let still = task_still_stopping(&a.value, statuses, states);
                    if still {
                        let need = reservation(&a.value.spec);
                        stopping.push((a.value.node.clone(), a.value.service.clone(), need));
                    }
                    still
                }
            };
            if !holds {
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
        Placer {
            cluster,
            stopping,
            seed,
        }
    }

    /// The placer's cluster as preemption sees it: every reservation of this pass, except
    /// those of tasks already stopping (their room is being made).
    pub fn preemption_picture(&self) -> ebb_scheduler::Cluster {
        let mut picture = self.cluster.clone();
        for (node, job, need) in &self.stopping {
            if let Some(id) = picture.node_id(node) {
                let _ = picture.release(id, job, *need);
            }
        }
        picture
    }

    /// Holds on `node` what it has free of `request`'s reservation: room being made for it
    /// (victims still stopping) that nothing else placed in this pass may take.
    pub fn hold(&mut self, node: ebb_scheduler::NodeId, request: &ebb_scheduler::Request) {
        let _ = self
            .cluster
            .reserve_up_to(node, &request.service, request.resources);
    }

    /// The id of node `name` in the placer's cluster (and in its preemption picture).
    pub fn node_id(&self, name: &str) -> Option<ebb_scheduler::NodeId> {
        self.cluster.node_id(name)
    }

    /// The name of node `id`.
    pub fn node_name(&self, id: ebb_scheduler::NodeId) -> Option<&str> {
        self.cluster.node(id).map(|n| n.name())
    }

    /// The next seed for a decision that breaks ties as placement does.
    pub fn next_seed(&mut self) -> u64 {
        self.seed = self.seed.wrapping_add(1);
        self.seed
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
        let seed = self.next_seed();
        let id = self.cluster.place_and_reserve(&request, seed)?;
        Ok(self
            .cluster
            .node(id)
            .map(|n| n.name().to_string())
            .unwrap_or_default())
    }
}

/// Whether `a` is a task asked to stop whose process may still run: its node has not reported
/// it ended, and is not down. Its reservation is held until then.
fn task_still_stopping(
    a: &Assignment,
    statuses: &HashMap<String, InstanceStatus>,
    states: &NodeStates,
) -> bool {
    if a.task.is_none() || states.get(&a.node) == NodeState::Down {
        return false;
    }
    let ended = current_status(a, statuses)
        .is_none_or(|s| matches!(s.state, InstanceState::Stopped | InstanceState::Exited));
    !ended
}

/// The scheduler's request for an instance of `spec`: its reservation, placement and
/// constraints.
pub(crate) fn request_of(spec: &ServiceSpec) -> ebb_scheduler::Request {
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
pub(crate) fn reservation(spec: &ServiceSpec) -> ebb_scheduler::Resources {
    ebb_scheduler::Resources::new(
        u64::from(spec.resources.cpu_millis.unwrap_or(0)),
        spec.resources.memory_bytes.unwrap_or(0),
    )
}
