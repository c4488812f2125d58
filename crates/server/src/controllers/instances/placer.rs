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
    /// Tasks asked to stop that have not ended.
    stopping: Vec<Stopping>,
    seed: u64,
}

/// A task asked to stop that has not ended: it holds `held` on `node` until it does.
struct Stopping {
    node: String,
    job: String,
    held: ebb_scheduler::Resources,
    /// Who it was preempted for, if it was: that room is theirs.
    preempted_by: Option<String>,
}

impl Placer {
    /// A placer over `nodes` with the reservation of every assignment that runs, and of every
    /// task that was asked to stop and has not ended, taken.
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
            let stops = a.value.desired == DesiredState::Stop;
            if stops && !task_still_stopping(&a.value, statuses, states) {
                continue;
            }
            let Some(id) = cluster.node_id(&a.value.node) else {
                continue;
            };
            // A node that lost capacity may hold more than it offers now: it takes nothing new.
            let need = reservation(&a.value.spec);
            let held = cluster
                .reserve_up_to(id, &a.value.service, need)
                .unwrap_or_default();
            if stops {
                stopping.push(Stopping {
                    node: a.value.node.clone(),
                    job: a.value.service.clone(),
                    held,
                    preempted_by: a.value.task.as_ref().and_then(|t| t.preempted_by.clone()),
                });
            }
        }
        Placer {
            cluster,
            stopping,
            seed,
        }
    }

    /// The placer's cluster as preemption sees it, and the rooms being made: every
    /// reservation of this pass, except those of tasks stopping for another reason than a
    /// preemption (their room is anyone's soon); a preempted task still stopping is room
    /// being made for its preemptor only.
    pub fn preemption_picture(
        &self,
    ) -> (ebb_scheduler::Cluster, Vec<ebb_scheduler::preempt::Pending>) {
        let mut picture = self.cluster.clone();
        let mut pending = Vec::new();
        for s in &self.stopping {
            let Some(id) = picture.node_id(&s.node) else {
                continue;
            };
            match &s.preempted_by {
                Some(owner) => pending.push(ebb_scheduler::preempt::Pending {
                    node: id,
                    owner: owner.clone(),
                    resources: s.held,
                }),
                None => {
                    let _ = picture.release(id, &s.job, s.held);
                }
            }
        }
        (picture, pending)
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

    /// The next seed for a decision that breaks ties as placement does.
    pub fn next_seed(&mut self) -> u64 {
        self.seed = self.seed.wrapping_add(1);
        self.seed
    }

    /// The node for a new instance of `spec` and why, its reservation taken; or why none
    /// fits. The replacement of a moving instance never lands on the node it leaves (unless it
    /// is a restart in place), and lands on the node asked for, if any.
    pub fn pick(
        &mut self,
        spec: &ServiceSpec,
        moving: Option<&keys::Migration>,
    ) -> Result<ebb_scheduler::Choice, ebb_scheduler::Unplaceable> {
        let mut request = request_of(spec);
        if let Some(m) = moving {
            if !m.restart {
                request = request.constraint(ebb_scheduler::Constraint::not_equal(
                    NODE_NAME_LABEL,
                    m.from.clone(),
                ));
            }
            if let Some(to) = &m.to {
                request = request.constraint(ebb_scheduler::Constraint::equal(
                    NODE_NAME_LABEL,
                    to.clone(),
                ));
            }
        }
        self.place(request)
    }

    /// The node for a task of `spec` and why, never one of `full` (nodes at their cap of
    /// tasks).
    pub fn pick_task(
        &mut self,
        spec: &ServiceSpec,
        full: &std::collections::BTreeSet<String>,
    ) -> Result<ebb_scheduler::Choice, ebb_scheduler::Unplaceable> {
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
    ) -> Result<ebb_scheduler::Choice, ebb_scheduler::Unplaceable> {
        let seed = self.next_seed();
        self.cluster.place_and_reserve_explained(&request, seed)
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
