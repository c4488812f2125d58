//! Moving instances off their nodes: `ebb migrate` (one instance) and `ebb drain` (a whole
//! node, one instance at a time). A move is a [`Migration`] record: the rollout planner treats
//! the instance like an old version, so its replacement starts first (placed on the requested
//! node, never on the one it leaves) and the instance is drained out of its load balancer and
//! stopped only once the replacement is ready (DESIGN.md principle 6, start-before-stop).

use super::Pass;
use crate::keys::{self, Migration, NodeDrain, Versioned};
use crate::nodes::NodeStates;
use crate::now_ms;
use ebb_core::api::NodeState;
use ebb_core::{Assignment, DesiredState, Event, EventKind};
use ebb_store::{Expect, Op};
use std::collections::{BTreeMap, HashMap, HashSet};

pub(super) type Migrations = BTreeMap<String, Versioned<Migration>>;

/// Deletes the records of moves that are over or called off: the instance is gone, the drain
/// that started the move was lifted (`ebb undrain`), or the node asked for is down. A move
/// called off before its instance stopped leaves it running (a replacement already started is
/// then an extra, scaled in by the planner). Returns the moves still under way.
pub(super) fn tidy(
    assignments: &[Versioned<Assignment>],
    migrations: Migrations,
    node_drains: &BTreeMap<String, Versioned<NodeDrain>>,
    states: &NodeStates,
    pass: &mut Pass,
) -> Migrations {
    let mut live = Migrations::new();
    for (id, m) in migrations {
        let Some(a) = assignments.iter().map(|a| &a.value).find(|a| a.id == id) else {
            pass.ops.push(Op::delete(keys::migration(&id), Expect::Any));
            continue;
        };
        let stopping = a.desired != DesiredState::Run;
        let undrained = m.value.by_drain && !node_drains.contains_key(&m.value.from);
        let target_down = m
            .value
            .to
            .as_deref()
            .filter(|to| states.get(to) == NodeState::Down);
        if !stopping && (undrained || target_down.is_some()) {
            pass.ops.push(Op::delete(keys::migration(&id), Expect::Any));
            if let Some(to) = target_down {
                pass.events.push(
                    Event::new(
                        now_ms(),
                        EventKind::Warning,
                        format!("move of instance {id} to node {to} called off: node {to} is down"),
                    )
                    .service(&a.service)
                    .instance(&id)
                    .node(&a.node),
                );
            }
            continue;
        }
        live.insert(id, m);
    }
    live
}

/// Advances every node drain: past its deadline, the node's remaining instances are evicted
/// (returned, for the planner to stop); otherwise, when none of its instances is moving, the
/// next one starts to move. A drain with nothing left on the node is marked done once.
pub(super) fn drive_drains(
    assignments: &[Versioned<Assignment>],
    node_drains: &BTreeMap<String, Versioned<NodeDrain>>,
    migrations: &Migrations,
    router_drains: &HashMap<String, Versioned<keys::DrainRecord>>,
    states: &NodeStates,
    pass: &mut Pass,
) -> HashSet<String> {
    let now = now_ms();
    let mut evict = HashSet::new();
    for (node, drain) in node_drains {
        let on_node: Vec<&Assignment> = assignments
            .iter()
            .map(|a| &a.value)
            .filter(|a| &a.node == node)
            .collect();
        let moving = migrations.values().any(|m| &m.value.from == node);
        if on_node.is_empty() && !moving {
            mark_done(node, drain, pass);
            continue;
        }
        if states.get(node) == NodeState::Down {
            continue; // its instances are replaced as lost ones
        }
        // Instances still serving from this node, in a stable order.
        let mut serving: Vec<&Assignment> = on_node
            .into_iter()
            .filter(|a| a.desired == DesiredState::Run && !router_drains.contains_key(&a.id))
            .collect();
        serving.sort_by(|a, b| a.id.cmp(&b.id));
        if now >= drain.value.deadline_ms {
            evict.extend(serving.iter().map(|a| a.id.clone()));
        } else if !moving {
            if let Some(next) = serving.first() {
                begin(next, pass);
            }
        }
    }
    evict
}

/// Starts moving `a` off its drained node: writes its migration record (the next pass places
/// the replacement).
fn begin(a: &Assignment, pass: &mut Pass) {
    let migration = Migration {
        service: a.service.clone(),
        from: a.node.clone(),
        to: None,
        by_drain: true,
        since_ms: now_ms(),
        replacement: None,
    };
    pass.ops.push(Op::put(
        keys::migration(&a.id),
        keys::encode(&migration),
        Expect::Absent,
    ));
    pass.events.push(migrating_event(a, &migration));
}

/// The event of a move that begins.
pub(crate) fn migrating_event(a: &Assignment, m: &Migration) -> Event {
    let whither = match &m.to {
        Some(to) => format!("to node {to}"),
        None => "to another node".to_string(),
    };
    Event::new(
        now_ms(),
        EventKind::InstanceMigrating,
        format!(
            "moving instance {} from node {} {whither} ({}): a replacement starts first",
            a.id,
            a.node,
            m.reason()
        ),
    )
    .service(&a.service)
    .instance(&a.id)
    .node(&a.node)
}

fn mark_done(node: &str, drain: &Versioned<NodeDrain>, pass: &mut Pass) {
    if drain.value.done_ms.is_some() {
        return;
    }
    let done = NodeDrain {
        done_ms: Some(now_ms()),
        ..drain.value.clone()
    };
    pass.ops.push(Op::put(
        keys::node_drain(node),
        keys::encode(&done),
        Expect::ModRevision(drain.mod_revision),
    ));
    pass.events.push(
        Event::new(
            now_ms(),
            EventKind::NodeDrained,
            format!(
                "node {node} is drained: no instance left on it; `ebb undrain {node}` puts it back in service"
            ),
        )
        .node(node),
    );
}

/// The move a new instance of `service` is for, if any: the first migration of the service
/// whose replacement is not (or no longer) among its live instances.
pub(super) fn awaiting_replacement<'a>(
    service: &str,
    instances: &[Versioned<Assignment>],
    migrations: &'a Migrations,
) -> Option<(&'a String, &'a Versioned<Migration>)> {
    let live = |id: &str| {
        instances
            .iter()
            .any(|a| a.value.id == id && a.value.desired == DesiredState::Run)
    };
    migrations.iter().find(|(id, m)| {
        m.value.service == service
            && live(id)
            && m.value.replacement.as_deref().is_none_or(|r| !live(r))
    })
}

/// Records `replacement` as the instance started in place of the migrating `id`.
pub(super) fn note_replacement(
    id: &str,
    m: &Versioned<Migration>,
    replacement: &str,
    pass: &mut Pass,
) {
    let updated = Migration {
        replacement: Some(replacement.to_string()),
        ..m.value.clone()
    };
    pass.ops.push(Op::put(
        keys::migration(id),
        keys::encode(&updated),
        Expect::ModRevision(m.mod_revision),
    ));
}

/// Why an instance is stopped when its node's drain deadline passes.
pub(super) fn deadline_reason(node: &str) -> String {
    format!("drain deadline of node {node} passed")
}

/// How a move ended, once its instance is gone: moved (to its replacement) or stopped.
pub(super) fn ended(
    id: &str,
    m: &Migration,
    instances: &[Versioned<Assignment>],
) -> ebb_core::api::MigrationView {
    let replacement = m
        .replacement
        .as_deref()
        .and_then(|r| instances.iter().map(|a| &a.value).find(|a| a.id == r));
    ebb_core::api::MigrationView {
        instance: id.to_string(),
        service: m.service.clone(),
        from: m.from.clone(),
        to: m.to.clone(),
        reason: m.reason(),
        since_ms: m.since_ms,
        replacement: replacement.map(|r| r.id.clone()),
        replacement_node: replacement.map(|r| r.node.clone()),
        phase: if replacement.is_some() {
            MOVED
        } else {
            STOPPED
        }
        .to_string(),
    }
}

/// The phase of a move that ended with its replacement running.
pub const MOVED: &str = "moved";
/// The phase of a move that ended with the instance stopped and not replaced (the drain
/// deadline passed first, or its service was scaled in or removed).
pub const STOPPED: &str = "stopped";
