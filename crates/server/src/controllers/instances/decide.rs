//! The service controller's decision: a pure function of a [`Snapshot`] and the time, so that
//! drains, moves, lost nodes, fencing and rollouts are tested with a hand-made snapshot and a
//! manual clock (ARCHITECTURE.md, principles 1–3). [`super::reconcile`] reads the snapshot and
//! applies the [`Plan`]; nothing here touches the store, the router or a clock.

use super::moves;
use super::placer::Placer;
use super::plan::{recheck, Plan};
use super::rollout::{self, Action, Observed};
use super::snapshot::Snapshot;
use crate::controllers::jobs::{plan_jobs, TaskBook};
use crate::state::keys::{self, DrainRecord, Versioned};
use ebb_core::quantity::format_duration;
use ebb_core::{
    Assignment, DesiredState, Event, EventKind, InstanceState, InstanceStatus, ServiceSpec,
};
use ebb_store::{Expect, Op};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Plans one pass at wall-clock time `now_ms`: every service against its instances, drains
/// that end, moves that advance, nodes that were lost. The plan's writes are meant to be
/// applied in one transaction; its `recheck` says when the next pass is due without a change.
pub fn decide(snapshot: &Snapshot, now_ms: u64) -> Plan {
    decide_with_jobs(snapshot, &TaskBook::default(), now_ms)
}

/// [`decide`], with the jobs' tasks as `book` has them: services are planned first, then
/// waiting tasks take what capacity is left ([`plan_jobs`]).
pub fn decide_with_jobs(snapshot: &Snapshot, book: &TaskBook, now_ms: u64) -> Plan {
    let mut plan = Plan::new(now_ms, snapshot.id_seed);
    // Task attempts belong to the jobs part; the services' planning (and moves) never sees
    // them, but the placer counts their reservations.
    let services_only: Vec<Versioned<Assignment>> = snapshot
        .assignments
        .iter()
        .filter(|a| a.value.task.is_none())
        .cloned()
        .collect();
    let assignments = &services_only;
    let states = &snapshot.states;
    for node in &snapshot.newly_down {
        let message = format!(
            "node {node} is down: silent for {}; its instances are replaced on other nodes",
            format_duration(snapshot.down_after)
        );
        plan.events
            .push(Event::new(now_ms, EventKind::NodeDown, message).node(node));
    }
    forget_orphan_statuses(&snapshot.assignments, &snapshot.statuses, &mut plan);
    finish_drains(snapshot, &mut plan);
    let migrations = moves::tidy(
        assignments,
        snapshot.migrations.clone(),
        &snapshot.node_drains,
        &snapshot.drains,
        states,
        &mut plan,
    );
    let under_way = moves::under_way(&migrations, assignments);
    // Drains see tasks too: a node is drained once its tasks are gone as well (the jobs part
    // stops them at the drain's deadline).
    let evict = moves::drive_drains(
        &snapshot.assignments,
        &snapshot.node_drains,
        &migrations,
        &snapshot.drains,
        states,
        &mut plan,
    );
    let mut by_service: BTreeMap<&str, Vec<Versioned<Assignment>>> = BTreeMap::new();
    for a in assignments {
        by_service
            .entry(a.value.service.as_str())
            .or_default()
            .push(a.clone());
    }
    let names: BTreeSet<&str> = snapshot
        .services
        .keys()
        .map(String::as_str)
        .chain(by_service.keys().copied())
        .collect();
    let mut placer = Placer::new(
        &snapshot.nodes,
        states,
        &snapshot.assignments,
        &snapshot.statuses,
        snapshot.revision,
    );
    let ctx = Ctx {
        statuses: &snapshot.statuses,
        drains: &snapshot.drains,
        migrations: &migrations,
        under_way: &under_way,
        evict: &evict,
        routed: snapshot.router.is_some(),
        lost: &|node: &str| states.get(node) == ebb_core::api::NodeState::Down,
    };
    for name in names {
        let instances = by_service.remove(name).unwrap_or_default();
        let spec = snapshot.services.get(name);
        plan_service(spec, &instances, &ctx, &mut placer, &mut plan);
    }
    plan.recheck = recheck(
        &snapshot.drains,
        &snapshot.node_drains,
        plan.draining,
        now_ms,
    );
    plan_jobs(snapshot, &snapshot.jobs, book, &mut placer, &mut plan);
    plan
}

/// Statuses whose instance is gone (a report that raced the instance's removal) are deleted.
fn forget_orphan_statuses(
    assignments: &[Versioned<Assignment>],
    statuses: &HashMap<String, InstanceStatus>,
    plan: &mut Plan,
) {
    let live: BTreeSet<&str> = assignments.iter().map(|a| a.value.id.as_str()).collect();
    for id in statuses.keys().filter(|id| !live.contains(id.as_str())) {
        plan.ops.push(Op::delete(keys::status(id), Expect::Any));
        plan.forgotten.push(id.clone());
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
    plan: &mut Plan,
) {
    let observed: Vec<Observed> = instances.iter().map(|a| sighting(a, ctx, plan)).collect();
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
                            plan,
                        );
                        if let (Some((id, m)), Some(new_id)) = (target, created) {
                            moves::note_replacement(id, m, &new_id, plan);
                        }
                    }
                }
            }
            Action::Stop { id, reason } => {
                if let Some(a) = instances.iter().find(|a| a.value.id == id) {
                    stop_instance(a, ctx, reason.as_str(), plan);
                }
            }
            Action::Forget { id } => {
                if let Some(a) = instances.iter().find(|a| a.value.id == id) {
                    if (ctx.lost)(&a.value.node) {
                        record_lost(&a.value, ctx, plan);
                    }
                }
                if let Some(m) = ctx.migrations.get(&id) {
                    plan.ops.push(Op::delete(keys::migration(&id), Expect::Any));
                    plan.moved.push(moves::ended(&id, &m.value, instances));
                }
                plan.forget_id(&id, Expect::Any);
            }
        }
    }
}

/// What the planner sees of one instance: lost with its node, stopping (draining, or evicted
/// now because its node's drain deadline passed), or as its node last reported it; and
/// whether it is being moved.
fn sighting(a: &Versioned<Assignment>, ctx: &Ctx, plan: &mut Plan) -> Observed {
    let (id, node) = (&a.value.id, &a.value.node);
    if (ctx.lost)(node) {
        return lost(&a.value);
    }
    let evicted = ctx.evict.contains(id) && !ctx.drains.contains_key(id);
    if evicted {
        stop_instance(a, ctx, &moves::deadline_reason(node), plan);
    }
    let stopping = evicted || ctx.drains.contains_key(id);
    let mut o = observe(&a.value, ctx.statuses, stopping);
    o.migrating = ctx.under_way.get(&a.value.service) == Some(id);
    o
}

/// Stops an instance; a routed one leaves its load balancer first and stops once drained.
fn stop_instance(a: &Versioned<Assignment>, ctx: &Ctx, reason: &str, plan: &mut Plan) {
    if ctx.routed && a.value.spec.port.is_some() {
        start_drain(&a.value, reason, plan);
    } else {
        request_stop(a, reason, plan);
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
fn record_lost(a: &Assignment, ctx: &Ctx, plan: &mut Plan) {
    if ctx.drains.contains_key(&a.id) {
        plan.ops.push(Op::delete(keys::drain(&a.id), Expect::Any));
    }
    if a.desired == DesiredState::Run {
        plan.events.push(
            Event::new(
                plan.now_ms,
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
fn start_drain(a: &Assignment, reason: &str, plan: &mut Plan) {
    let drain = a.spec.balance.drain;
    let now = plan.now_ms;
    let record = DrainRecord {
        since_ms: now,
        // Bounded by validation (an hour at most); saturating all the same.
        deadline_ms: now.saturating_add(u64::try_from(drain.as_millis()).unwrap_or(u64::MAX)),
        reason: reason.to_string(),
    };
    plan.ops.push(Op::put(
        keys::drain(&a.id),
        keys::encode(&record),
        Expect::Absent,
    ));
    plan.draining = true;
    plan.events.push(
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
fn finish_drains(snapshot: &Snapshot, plan: &mut Plan) {
    let (assignments, drains) = (&snapshot.assignments, &snapshot.drains);
    let now = plan.now_ms;
    for (id, drain) in drains {
        let Some(a) = assignments.iter().find(|a| &a.value.id == id) else {
            plan.ops.push(Op::delete(keys::drain(id), Expect::Any));
            continue;
        };
        let (removed, in_flight) = match &snapshot.router {
            Some(r) => (
                r.synced_revision >= drain.mod_revision,
                r.in_flight.get(id).copied().unwrap_or(0),
            ),
            None => (true, 0),
        };
        let expired = now >= drain.value.deadline_ms;
        let drained = removed && in_flight == 0;
        if !drained && !expired {
            continue;
        }
        plan.ops.push(Op::delete(
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
            request_stop(a, &why, plan);
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
    plan: &mut Plan,
) -> Option<String> {
    let (node, why) = match placer.pick(spec, moving) {
        Ok(choice) => (choice.chosen.node.clone(), choice.to_string()),
        Err(why) => {
            plan.pending.insert(spec.name.clone(), why.to_string());
            // A move's replacement has constraints of its own (not the node it leaves, the
            // node asked for): it waits for room rather than preempting for it.
            if moving.is_none() {
                *plan.unplaced.entry(spec.name.clone()).or_insert(0) += 1;
            }
            return None;
        }
    };
    let id = plan.new_instance_id(&spec.name);
    let assignment = Assignment {
        id: id.clone(),
        service: spec.name.clone(),
        node: node.clone(),
        generation: 0, // filled from the key's create revision when read
        version: version.to_string(),
        spec: spec.clone(),
        desired: DesiredState::Run,
        created_ms: plan.now_ms,
        task: None,
        placement: Some(why.clone()),
    };
    plan.ops.push(Op::put(
        keys::instance(&id),
        keys::encode(&assignment),
        Expect::Absent,
    ));
    plan.events.push(
        Event::new(
            plan.now_ms,
            EventKind::InstanceCreated,
            format!("instance {id} of version {version} placed on node {why}"),
        )
        .service(&spec.name)
        .instance(&id)
        .node(&node),
    );
    Some(id)
}

fn request_stop(a: &Versioned<Assignment>, reason: &str, plan: &mut Plan) {
    plan.request_stop(a);
    let a = &a.value;
    plan.events.push(
        Event::new(
            plan.now_ms,
            EventKind::InstanceStopping,
            format!("stopping instance {}: {reason}", a.id),
        )
        .service(&a.service)
        .instance(&a.id)
        .node(&a.node),
    );
}
