//! What one controller pass decides on, read at one instant: the store's services, instances,
//! drains and moves, the nodes and their liveness, the router's view of draining instances.
//!
//! Reading is the only part of a pass that touches the server; [`super::decide`] is a pure
//! function of a [`Snapshot`], so tests build one by hand and drive the clock themselves.

use super::moves::Migrations;
use crate::state::keys::{self, DrainRecord, NodeDrain, Versioned};
use crate::state::nodes::NodeStates;
use crate::Server;
use ebb_core::api::NodeInfo;
use ebb_core::{Assignment, InstanceStatus, ServiceSpec};
use ebb_store::StoreError;
use rand::Rng;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Everything a pass decides on.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Desired state: every service, by name.
    pub services: BTreeMap<String, ServiceSpec>,
    /// Every instance the store holds, with its revision (for compare-and-swap).
    pub assignments: Vec<Versioned<Assignment>>,
    /// Instances draining out of their load balancer, by instance id.
    pub drains: HashMap<String, Versioned<DrainRecord>>,
    /// Nodes in drain, by node name.
    pub node_drains: BTreeMap<String, Versioned<NodeDrain>>,
    /// Moves under way, by instance id.
    pub migrations: Migrations,
    /// Each instance's last reported status.
    pub statuses: HashMap<String, InstanceStatus>,
    /// The nodes the store knows, as they registered.
    pub nodes: Vec<NodeInfo>,
    /// Their liveness at the snapshot's instant (drained nodes marked).
    pub states: NodeStates,
    /// Nodes that went down since the last pass (each reported once).
    pub newly_down: Vec<String>,
    /// How long a node may be silent before it is down (for the event's words).
    pub down_after: Duration,
    /// The load balancers' view of the instances they drain; `None` when no router runs.
    pub router: Option<RouterView>,
    /// The store's revision: seeds the scheduler's tie breaks, so one state places alike.
    pub revision: u64,
    /// Seeds the ids of new instances (random per pass, so ids never repeat).
    pub id_seed: u64,
    /// Jobs, their progress and the queues.
    pub jobs: crate::controllers::jobs::JobsInput,
}

/// What the router reports of draining instances.
#[derive(Debug, Clone, Default)]
pub struct RouterView {
    /// The store revision the router's endpoint sets reflect: a drain written at or before it
    /// has taken its instance out of the load balancer.
    pub synced_revision: u64,
    /// Requests in flight per draining instance.
    pub in_flight: HashMap<String, u32>,
}

impl Snapshot {
    /// Reads the server's state at `now`. The liveness tracker reports each node that went
    /// down once, so a snapshot is taken once per pass.
    pub fn read(server: &Server, now: Instant) -> Result<Snapshot, StoreError> {
        let store = server.store();
        let services = keys::services(store)?
            .into_iter()
            .map(|v| (v.value.name.clone(), v.value))
            .collect();
        let (assignments, _) = keys::assignments(store)?;
        let drains = keys::drains(store)?;
        let node_drains = keys::node_drains(store)?;
        // A node not heard from since this server started is suspect, not down, until the
        // server has been up as long as a node may be silent: a restart replaces nothing
        // before agents report.
        let uptime = now.saturating_duration_since(server.liveness_since());
        let states = server
            .nodes()
            .states(now, uptime)
            .draining(node_drains.keys().cloned());
        let router = server.router().map(|r| RouterView {
            synced_revision: r.synced_revision(),
            in_flight: drains
                .keys()
                .map(|id| (id.clone(), r.in_flight(id)))
                .collect(),
        });
        Ok(Snapshot {
            services,
            assignments,
            drains,
            node_drains,
            migrations: keys::migrations(store)?,
            statuses: server.statuses(),
            nodes: keys::nodes(store).unwrap_or_default(),
            states,
            newly_down: server.nodes().newly_down(now),
            down_after: server.nodes().down_after(),
            router,
            revision: store.revision().unwrap_or(0),
            id_seed: rand::thread_rng().gen(),
            jobs: crate::controllers::jobs::JobsInput {
                jobs: keys::jobs(store)?,
                progress: keys::jobs_progress(store)?,
                queues: keys::queues(store)?,
                max_txn_ops: store.max_txn_ops(),
            },
        })
    }
}
