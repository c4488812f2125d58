//! The service controller: level-triggered reconciliation of services against their instances
//! (DESIGN.md principle 1). It wakes on every store change and once a second, plans each
//! service with [`rollout::plan`], and writes what the plans decide in one transaction per pass.

pub(crate) mod moves;

use crate::keys::{self, DrainRecord, Versioned};
use crate::nodes::NodeStates;
use crate::rollout::{self, Action, Observed};
use crate::{now_ms, Server};
use ebb_core::{
    Assignment, DesiredState, Event, EventKind, InstanceState, InstanceStatus, ServiceSpec,
};
use ebb_store::{Expect, Op, StoreError};
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The label every node carries with its own name (like Kubernetes' `kubernetes.io/hostname`):
/// `constraints = ["node.name=web-3"]` pins a service, and moves use it to leave a node.
pub const NODE_NAME_LABEL: &str = "node.name";

/// Reconcile at least this often even without store changes (nodes come and go in memory).
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(1);
/// While a drained instance still has requests in flight, look again this soon: its stop (and
/// the next move of a node drain) waits on the last request, not on the next resync
/// (`bench/drain.sh` saw moves take 1 s instead of ~50 ms when a request was in flight).
pub const DRAIN_RECHECK: Duration = Duration::from_millis(50);

/// When the next pass is needed, besides store changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recheck {
    /// Nothing waits on time: skip passes until the store or the live nodes change.
    OnChange,
    /// Deadlines are running (node drains): pass every [`RESYNC_INTERVAL`].
    EverySecond,
    /// Drained instances wait for their last request, or a write conflicted: pass again after
    /// [`DRAIN_RECHECK`].
    Soon,
}

/// Runs the controller until `shutdown` turns true. Passes run on a blocking thread: they write
/// to disk, and the API's async threads must not wait on that.
pub async fn run(server: Server, mut shutdown: watch::Receiver<bool>) {
    let mut changes = server.store().subscribe();
    let mut last: Option<(u64, Vec<String>)> = None;
    loop {
        // A pass depends on the store and on which nodes are live; if neither changed since the
        // last good pass, it would decide nothing new (an idle server then costs nothing here).
        let seen = server
            .store()
            .revision()
            .ok()
            .map(|r| (r, server.nodes().live(Instant::now())));
        let mut recheck = RESYNC_INTERVAL;
        if seen.is_none() || seen != last {
            let pass = server.clone();
            match tokio::task::spawn_blocking(move || reconcile(&pass)).await {
                Ok(Err(e)) => tracing::warn!(error = %e, "reconcile failed; will retry"),
                Err(e) => tracing::error!(error = %e, "reconcile panicked; will retry"),
                Ok(Ok(Recheck::OnChange)) => last = seen,
                Ok(Ok(Recheck::EverySecond)) => last = None,
                Ok(Ok(Recheck::Soon)) => {
                    last = None;
                    recheck = DRAIN_RECHECK;
                }
            }
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep(recheck) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// What one pass decided: store writes, events, and statuses to forget once written.
#[derive(Default)]
struct Pass {
    ops: Vec<Op>,
    events: Vec<Event>,
    forgotten: Vec<String>,
    /// A drain was started in this pass.
    draining: bool,
    /// Services with an instance that no node could take, and why.
    pending: BTreeMap<String, String>,
    /// Moves that ended in this pass.
    moved: Vec<ebb_core::api::MigrationView>,
}

/// One pass over every service and every instance. Returns when the next pass is needed even
/// if nothing changes: drains (of instances or nodes) end on time and in-flight counts.
pub fn reconcile(server: &Server) -> Result<Recheck, StoreError> {
    let services: BTreeMap<String, ServiceSpec> = keys::services(server.store())?
        .into_iter()
        .map(|v| (v.value.name.clone(), v.value))
        .collect();
    let (assignments, _) = keys::assignments(server.store())?;
    let drains = keys::drains(server.store())?;
    let node_drains = keys::node_drains(server.store())?;
    let statuses = server.statuses();
    let mut pass = Pass::default();
    let now = Instant::now();
    // A node not heard from since this server started is suspect, not down, until the server
    // has been up as long as a node may be silent: a restart replaces nothing before agents report.
    let states = server
        .nodes()
        .states(now, now.saturating_duration_since(server.started()))
        .draining(node_drains.keys().cloned());
    for node in server.nodes().newly_down(now) {
        pass.events.push(
            Event::new(
                now_ms(),
                EventKind::NodeDown,
                format!(
                    "node {node} is down: silent for {}; its instances are replaced on other nodes",
                    ebb_core::quantity::format_duration(server.nodes().down_after())
                ),
            )
            .node(&node),
        );
    }
    forget_orphan_statuses(&assignments, &statuses, &mut pass);
    finish_drains(server, &assignments, &drains, &mut pass);
    let migrations = moves::tidy(
        &assignments,
        keys::migrations(server.store())?,
        &node_drains,
        &drains,
        &states,
        &mut pass,
    );
    let under_way = moves::under_way(&migrations, &assignments);
    let evict = moves::drive_drains(
        &assignments,
        &node_drains,
        &migrations,
        &drains,
        &states,
        &mut pass,
    );
    let mut by_service: BTreeMap<String, Vec<Versioned<Assignment>>> = BTreeMap::new();
    for a in assignments {
        by_service
            .entry(a.value.service.clone())
            .or_default()
            .push(a);
    }
    let names: BTreeSet<String> = services.keys().chain(by_service.keys()).cloned().collect();
    let mut placer = Placer::new(server, &states, &by_service);
    let ctx = Ctx {
        statuses: &statuses,
        drains: &drains,
        migrations: &migrations,
        under_way: &under_way,
        evict: &evict,
        routed: server.router().is_some(),
        lost: &|node: &str| states.get(node) == ebb_core::api::NodeState::Down,
    };
    for name in names {
        let instances = by_service.remove(&name).unwrap_or_default();
        plan_service(
            services.get(&name),
            &instances,
            &ctx,
            &mut placer,
            &mut pass,
        );
    }
    if !pass.ops.is_empty() {
        // A conflict means someone wrote meanwhile: nothing is applied, the next pass re-plans.
        match server.store().txn(pass.ops) {
            Err(StoreError::Conflict { .. }) => return Ok(Recheck::Soon),
            other => other?,
        };
    }
    for id in &pass.forgotten {
        server.forget_status(id);
    }
    server.note_moved(std::mem::take(&mut pass.moved));
    for (service, why) in server.note_pending(std::mem::take(&mut pass.pending)) {
        pass.events.push(
            Event::new(
                now_ms(),
                EventKind::InstancePending,
                format!("an instance of {service} is pending: {why}"),
            )
            .service(&service),
        );
    }
    server.record_all(pass.events);
    Ok(recheck(&drains, &node_drains, pass.draining))
}

/// When the next pass is needed: drains end on in-flight counts and deadlines, which the store
/// does not see. Most drains end within milliseconds, so young ones are looked at again soon;
/// one that waits on a slow request falls back to the resync.
fn recheck(
    drains: &HashMap<String, Versioned<DrainRecord>>,
    node_drains: &BTreeMap<String, Versioned<keys::NodeDrain>>,
    started_a_drain: bool,
) -> Recheck {
    let now = now_ms();
    let young = |d: &Versioned<DrainRecord>| now.saturating_sub(d.value.since_ms) < FAST_DRAIN_MS;
    if started_a_drain || drains.values().any(young) {
        Recheck::Soon
    } else if !drains.is_empty() || node_drains.values().any(|d| d.value.done_ms.is_none()) {
        Recheck::EverySecond
    } else {
        Recheck::OnChange
    }
}

/// How long a drained instance is re-checked every [`DRAIN_RECHECK`] before falling back to
/// the resync: long enough for ordinary requests in flight to finish.
const FAST_DRAIN_MS: u64 = 5_000;

/// Statuses whose instance is gone (a report that raced the instance's removal) are deleted.
fn forget_orphan_statuses(
    assignments: &[Versioned<Assignment>],
    statuses: &HashMap<String, InstanceStatus>,
    pass: &mut Pass,
) {
    let live: BTreeSet<&str> = assignments.iter().map(|a| a.value.id.as_str()).collect();
    for id in statuses.keys().filter(|id| !live.contains(id.as_str())) {
        pass.ops.push(Op::delete(keys::status(id), Expect::Any));
        pass.forgotten.push(id.clone());
    }
}

/// What a pass knows besides the instances themselves.
struct Ctx<'a> {
    statuses: &'a HashMap<String, InstanceStatus>,
    drains: &'a HashMap<String, Versioned<DrainRecord>>,
    /// Instances being moved off their nodes.
    migrations: &'a moves::Migrations,
    /// The move under way in each service (one at a time), by service name.
    under_way: &'a BTreeMap<String, String>,
    /// Instances to stop now: their node's drain deadline passed.
    evict: &'a std::collections::HashSet<String>,
    /// Whether a router runs, so that stopping a routed instance must drain it first.
    routed: bool,
    /// Whether a node is down: its instances are gone for planning and replaced elsewhere.
    lost: &'a dyn Fn(&str) -> bool,
}

fn plan_service(
    spec: Option<&ServiceSpec>,
    instances: &[Versioned<Assignment>],
    ctx: &Ctx,
    placer: &mut Placer,
    pass: &mut Pass,
) {
    let observed: Vec<Observed> = instances.iter().map(|a| sighting(a, ctx, pass)).collect();
    let version = spec.map(ServiceSpec::version).unwrap_or_default();
    for action in rollout::plan(spec.map(|s| s.instances), &version, &observed) {
        match action {
            Action::Start { count } => {
                if let Some(spec) = spec {
                    let mut moving = moves::awaiting_replacement(
                        &spec.name,
                        ctx.under_way,
                        instances,
                        ctx.migrations,
                    );
                    for _ in 0..count {
                        let target = moving.take();
                        let created = create_instance(
                            spec,
                            &version,
                            target.map(|t| &t.1.value),
                            placer,
                            pass,
                        );
                        if let (Some((id, m)), Some(new_id)) = (target, created) {
                            moves::note_replacement(id, m, &new_id, pass);
                        }
                    }
                }
            }
            Action::Stop { id, reason } => {
                if let Some(a) = instances.iter().find(|a| a.value.id == id) {
                    stop_instance(a, ctx, reason.as_str(), pass);
                }
            }
            Action::Forget { id } => {
                if let Some(a) = instances.iter().find(|a| a.value.id == id) {
                    if (ctx.lost)(&a.value.node) {
                        record_lost(&a.value, ctx, pass);
                    }
                }
                if let Some(m) = ctx.migrations.get(&id) {
                    pass.ops.push(Op::delete(keys::migration(&id), Expect::Any));
                    pass.moved.push(moves::ended(&id, &m.value, instances));
                }
                pass.ops.push(Op::delete(keys::instance(&id), Expect::Any));
                pass.ops.push(Op::delete(keys::status(&id), Expect::Any));
                pass.forgotten.push(id);
            }
        }
    }
}

/// What the planner sees of one instance: lost with its node, stopping (draining, or evicted
/// now because its node's drain deadline passed), or as its node last reported it; and
/// whether it is being moved.
fn sighting(a: &Versioned<Assignment>, ctx: &Ctx, pass: &mut Pass) -> Observed {
    let (id, node) = (&a.value.id, &a.value.node);
    if (ctx.lost)(node) {
        return lost(&a.value);
    }
    let evicted = ctx.evict.contains(id) && !ctx.drains.contains_key(id);
    if evicted {
        stop_instance(a, ctx, &moves::deadline_reason(node), pass);
    }
    let stopping = evicted || ctx.drains.contains_key(id);
    let mut o = observe(&a.value, ctx.statuses, stopping);
    o.migrating = ctx.under_way.get(&a.value.service) == Some(id);
    o
}

/// Stops an instance; a routed one leaves its load balancer first and stops once drained.
fn stop_instance(a: &Versioned<Assignment>, ctx: &Ctx, reason: &str, pass: &mut Pass) {
    if ctx.routed && a.value.spec.port.is_some() {
        start_drain(&a.value, reason, pass);
    } else {
        request_stop(a, reason, pass);
    }
}

/// An instance on a down node, as the planner sees it: stopped, so that it is forgotten and
/// replaced. Its node, if it returns, no longer finds it among its assignments and stops it
/// before anything else (the fencing: only the holder of the current generation may run it).
fn lost(a: &Assignment) -> Observed {
    Observed {
        id: a.id.clone(),
        version: a.version.clone(),
        desired: DesiredState::Stop,
        ready: false,
        stopped: true,
        created_ms: a.created_ms,
        migrating: false,
    }
}

/// The event of a lost instance, and the end of its drain if one was under way.
fn record_lost(a: &Assignment, ctx: &Ctx, pass: &mut Pass) {
    if ctx.drains.contains_key(&a.id) {
        pass.ops.push(Op::delete(keys::drain(&a.id), Expect::Any));
    }
    if a.desired == DesiredState::Run {
        pass.events.push(
            Event::new(
                now_ms(),
                EventKind::InstanceStopped,
                format!("lost with node {}: replaced on another node", a.node),
            )
            .service(&a.service)
            .instance(&a.id)
            .node(&a.node),
        );
    }
}

/// The last status a node reported for this generation of the instance, if any.
pub fn current_status<'a>(
    a: &Assignment,
    statuses: &'a HashMap<String, InstanceStatus>,
) -> Option<&'a InstanceStatus> {
    statuses.get(&a.id).filter(|s| s.generation == a.generation)
}

/// What the planner needs of an assignment, from its last reported status. A draining
/// instance is already on its way out: the planner sees it as stopping, not yet stopped.
fn observe(a: &Assignment, statuses: &HashMap<String, InstanceStatus>, draining: bool) -> Observed {
    let status = current_status(a, statuses);
    Observed {
        id: a.id.clone(),
        version: a.version.clone(),
        desired: if draining {
            DesiredState::Stop
        } else {
            a.desired
        },
        ready: status.is_some_and(|s| s.ready),
        // Never started anywhere, or reported stopped: nothing is left to wait for.
        stopped: !draining && status.is_none_or(|s| s.state == InstanceState::Stopped),
        created_ms: a.created_ms,
        migrating: false,
    }
}

/// Takes a routed instance out of its load balancer; [`finish_drains`] stops it later.
fn start_drain(a: &Assignment, reason: &str, pass: &mut Pass) {
    let drain = a.spec.balance.drain;
    let now = now_ms();
    let record = DrainRecord {
        since_ms: now,
        deadline_ms: now + drain.as_millis() as u64,
        reason: reason.to_string(),
    };
    pass.ops.push(Op::put(
        keys::drain(&a.id),
        keys::encode(&record),
        Expect::Absent,
    ));
    pass.draining = true;
    pass.events.push(
        Event::new(now, EventKind::InstanceDraining, format!(
            "draining instance {} ({reason}): out of the load balancer, up to {} for its requests in flight",
            a.id,
            ebb_core::quantity::format_duration(drain)
        ))
        .service(&a.service)
        .instance(&a.id)
        .node(&a.node),
    );
}

/// Stops draining instances once the router has dropped them and their last request is done,
/// or once their drain deadline passes.
fn finish_drains(
    server: &Server,
    assignments: &[Versioned<Assignment>],
    drains: &HashMap<String, Versioned<DrainRecord>>,
    pass: &mut Pass,
) {
    let now = now_ms();
    for (id, drain) in drains {
        let Some(a) = assignments.iter().find(|a| &a.value.id == id) else {
            pass.ops.push(Op::delete(keys::drain(id), Expect::Any));
            continue;
        };
        let (removed, in_flight) = match server.router() {
            Some(r) => (r.synced_revision() >= drain.mod_revision, r.in_flight(id)),
            None => (true, 0),
        };
        let expired = now >= drain.value.deadline_ms;
        let drained = removed && in_flight == 0;
        if !drained && !expired {
            continue;
        }
        pass.ops.push(Op::delete(
            keys::drain(id),
            Expect::ModRevision(drain.mod_revision),
        ));
        if a.value.desired == DesiredState::Run {
            let why = if expired && in_flight > 0 {
                format!(
                    "{}; drain time over with {in_flight} requests in flight",
                    drain.value.reason
                )
            } else {
                format!("{}; drained", drain.value.reason)
            };
            request_stop(a, &why, pass);
        }
    }
}

/// Places and records a new instance of `spec` (in place of a migrating one if `moving`);
/// returns its id, or None if no node fits (the reason is noted as pending).
fn create_instance(
    spec: &ServiceSpec,
    version: &str,
    moving: Option<&keys::Migration>,
    placer: &mut Placer,
    pass: &mut Pass,
) -> Option<String> {
    let node = match placer.pick(spec, moving) {
        Ok(node) => node,
        Err(why) => {
            pass.pending.insert(spec.name.clone(), why.to_string());
            return None;
        }
    };
    let id = format!("{}-{:08x}", spec.name, rand::thread_rng().gen::<u32>());
    let assignment = Assignment {
        id: id.clone(),
        service: spec.name.clone(),
        node: node.clone(),
        generation: 0, // filled from the key's create revision when read
        version: version.to_string(),
        spec: spec.clone(),
        desired: DesiredState::Run,
        created_ms: now_ms(),
    };
    pass.ops.push(Op::put(
        keys::instance(&id),
        keys::encode(&assignment),
        Expect::Absent,
    ));
    pass.events.push(
        Event::new(
            now_ms(),
            EventKind::InstanceCreated,
            format!("instance {id} of version {version} placed on node {node}"),
        )
        .service(&spec.name)
        .instance(&id)
        .node(&node),
    );
    Some(id)
}

fn request_stop(a: &Versioned<Assignment>, reason: &str, pass: &mut Pass) {
    let mut stopped = a.value.clone();
    stopped.desired = DesiredState::Stop;
    pass.ops.push(Op::put(
        keys::instance(&stopped.id),
        keys::encode(&stopped),
        Expect::ModRevision(a.mod_revision),
    ));
    pass.events.push(
        Event::new(
            now_ms(),
            EventKind::InstanceStopping,
            format!("stopping instance {}: {reason}", stopped.id),
        )
        .service(&stopped.service)
        .instance(&stopped.id)
        .node(&stopped.node),
    );
}

/// Chooses nodes for new instances with the scheduler (`ebb-scheduler`): ready nodes with room
/// for the instance's reservation, the best scored (bin-pack, spread across nodes per service).
/// Built once per pass from the nodes the store knows and the reservations of every instance
/// that should run; each placement reserves its share, so one pass never overcommits a node.
struct Placer {
    cluster: ebb_scheduler::Cluster,
    seed: u64,
}

impl Placer {
    fn new(
        server: &Server,
        states: &NodeStates,
        by_service: &BTreeMap<String, Vec<Versioned<Assignment>>>,
    ) -> Placer {
        let mut cluster = ebb_scheduler::Cluster::new();
        for info in keys::nodes(server.store()).unwrap_or_default() {
            let state = states.get(&info.name);
            let capacity =
                ebb_scheduler::Resources::new(u64::from(info.cpu_millis), info.memory_bytes);
            let mut node = ebb_scheduler::Node::new(info.name.clone(), capacity).state(state);
            node.labels = info.labels;
            // Built in, so that constraints (and moves) can name a node.
            node.labels
                .insert(NODE_NAME_LABEL.to_string(), info.name.clone());
            if let Err(e) = cluster.add_node(node) {
                tracing::debug!(node = info.name, "not schedulable: {e}");
            }
        }
        for a in by_service.values().flatten() {
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
        let seed = server.store().revision().unwrap_or(0);
        Placer { cluster, seed }
    }

    /// The node for a new instance of `spec`, its reservation taken; or why none fits. The
    /// replacement of a moving instance never lands on the node it leaves, and lands on the
    /// node asked for, if any.
    fn pick(
        &mut self,
        spec: &ServiceSpec,
        moving: Option<&keys::Migration>,
    ) -> Result<String, ebb_scheduler::Unplaceable> {
        let mut request = ebb_scheduler::Request::new(spec.name.clone(), reservation(spec))
            .placement(spec.placement);
        // Checked at deploy time: a constraint that does not parse here cannot be from a file.
        match spec.parsed_constraints() {
            Ok(constraints) => request.constraints = constraints,
            Err(e) => tracing::warn!(service = spec.name, "constraints ignored: {e}"),
        }
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
        self.seed = self.seed.wrapping_add(1);
        let id = self.cluster.place_and_reserve(&request, self.seed)?;
        Ok(self
            .cluster
            .node(id)
            .map(|n| n.name().to_string())
            .unwrap_or_default())
    }
}

/// What an instance of `spec` reserves on its node (nothing for an unset resource).
fn reservation(spec: &ServiceSpec) -> ebb_scheduler::Resources {
    ebb_scheduler::Resources::new(
        u64::from(spec.resources.cpu_millis.unwrap_or(0)),
        spec.resources.memory_bytes.unwrap_or(0),
    )
}
