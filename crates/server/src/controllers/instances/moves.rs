//! Moving instances off their nodes: `ebb migrate` (one instance) and `ebb drain` (a whole
//! node, one instance at a time). A move is a [`Migration`] record: the rollout planner treats
//! the instance like an old version, so its replacement starts first (placed on the requested
//! node, never on the one it leaves) and the instance is drained out of its load balancer and
//! stopped only once the replacement is ready (ARCHITECTURE.md, principle 6: start-before-stop).

use super::Plan;
use crate::state::keys::{self, Migration, NodeDrain, Versioned};
use crate::state::nodes::NodeStates;
use ebb_core::api::{MigrationView, NodeState, MOVE_MOVED, MOVE_STOPPED};
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
    router_drains: &HashMap<String, Versioned<keys::DrainRecord>>,
    states: &NodeStates,
    plan: &mut Plan,
) -> Migrations {
    let mut live = Migrations::new();
    for (id, m) in migrations {
        let Some(a) = assignments.iter().map(|a| &a.value).find(|a| a.id == id) else {
            plan.ops.push(Op::delete(keys::migration(&id), Expect::Any));
            continue;
        };
        // Lost with its node: replaced as a lost instance, not as a move.
        if states.get(&a.node) == NodeState::Down {
            plan.ops.push(Op::delete(keys::migration(&id), Expect::Any));
            continue;
        }
        let stopping = a.desired != DesiredState::Run || router_drains.contains_key(&id);
        let undrained = m.value.by_drain && !node_drains.contains_key(&m.value.from);
        let unreachable = m.value.to.as_deref().and_then(|to| match states.get(to) {
            state @ (NodeState::Down | NodeState::Draining) => Some((to, state)),
            _ => None,
        });
        if !stopping && (undrained || unreachable.is_some()) {
            plan.ops.push(Op::delete(keys::migration(&id), Expect::Any));
            if let Some((to, state)) = unreachable {
                plan.events.push(
                    Event::new(
                        plan.now_ms,
                        EventKind::Warning,
                        format!(
                            "move of instance {id} to node {to} called off: node {to} is {}",
                            state.as_str()
                        ),
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

/// The move under way in each service, by service name: one at a time, so that the replacement
/// the planner starts and the instance it stops once that replacement is ready belong to the
/// same move. The move whose replacement runs goes first, then the oldest.
pub(super) fn under_way(
    migrations: &Migrations,
    assignments: &[Versioned<Assignment>],
) -> BTreeMap<String, String> {
    let running = |id: &str| {
        assignments
            .iter()
            .any(|a| a.value.id == id && a.value.desired == DesiredState::Run)
    };
    let mut chosen: BTreeMap<String, (bool, u64, &String)> = BTreeMap::new();
    for (id, m) in migrations {
        let replaced = m.value.replacement.as_deref().is_some_and(running);
        // Smallest key wins: replaced first, then the oldest, then by id.
        let key = (!replaced, m.value.since_ms, id);
        let best = chosen.entry(m.value.service.clone()).or_insert(key);
        if key < *best {
            *best = key;
        }
    }
    chosen
        .into_iter()
        .map(|(service, (_, _, id))| (service, id.clone()))
        .collect()
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
    plan: &mut Plan,
) -> HashSet<String> {
    let now = plan.now_ms;
    let mut evict = HashSet::new();
    for (node, drain) in node_drains {
        let on_node: Vec<&Assignment> = assignments
            .iter()
            .map(|a| &a.value)
            .filter(|a| &a.node == node)
            .collect();
        let moving = migrations.values().any(|m| &m.value.from == node);
        if on_node.is_empty() && !moving {
            mark_done(node, drain, plan);
            continue;
        }
        if states.get(node) == NodeState::Down {
            continue; // its instances are replaced as lost ones
        }
        // Service instances still serving from this node, in a stable order (tasks are not
        // moved: they run to their end or, past the deadline, the jobs part stops them).
        let mut serving: Vec<&Assignment> = on_node
            .into_iter()
            .filter(|a| a.task.is_none())
            .filter(|a| a.desired == DesiredState::Run && !router_drains.contains_key(&a.id))
            .collect();
        serving.sort_by(|a, b| a.id.cmp(&b.id));
        if now >= drain.value.deadline_ms {
            evict.extend(serving.iter().map(|a| a.id.clone()));
        } else if !moving {
            if let Some(next) = serving.first() {
                begin(next, plan);
            }
        }
    }
    evict
}

/// Starts moving `a` off its drained node: writes its migration record (the next pass places
/// the replacement).
fn begin(a: &Assignment, plan: &mut Plan) {
    let migration = Migration {
        service: a.service.clone(),
        from: a.node.clone(),
        to: None,
        by_drain: true,
        restart: false,
        since_ms: plan.now_ms,
        replacement: None,
    };
    plan.ops.push(Op::put(
        keys::migration(&a.id),
        keys::encode(&migration),
        Expect::Absent,
    ));
    plan.events
        .push(migrating_event(a, &migration, plan.now_ms));
}

/// The event of a move that begins.
pub(crate) fn migrating_event(a: &Assignment, m: &Migration, now_ms: u64) -> Event {
    let whither = match &m.to {
        Some(to) => format!("to node {to}"),
        None if m.restart => "to any node that fits, its own included".to_string(),
        None => "to another node".to_string(),
    };
    Event::new(
        now_ms,
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

fn mark_done(node: &str, drain: &Versioned<NodeDrain>, plan: &mut Plan) {
    if drain.value.done_ms.is_some() {
        return;
    }
    let done = NodeDrain {
        done_ms: Some(plan.now_ms),
        ..drain.value.clone()
    };
    plan.ops.push(Op::put(
        keys::node_drain(node),
        keys::encode(&done),
        Expect::ModRevision(drain.mod_revision),
    ));
    plan.events.push(
        Event::new(
            plan.now_ms,
            EventKind::NodeDrained,
            format!(
                "node {node} is drained: no instance left on it; `ebb undrain {node}` puts it back in service"
            ),
        )
        .node(node),
    );
}

/// The move a new instance of `service` is for, if any: the service's move under way, when
/// its replacement is not (or no longer) among the service's live instances.
pub(super) fn awaiting_replacement<'a>(
    service: &str,
    under_way: &BTreeMap<String, String>,
    instances: &[Versioned<Assignment>],
    migrations: &'a Migrations,
) -> Option<(&'a String, &'a Versioned<Migration>)> {
    let live = |id: &str| {
        instances
            .iter()
            .any(|a| a.value.id == id && a.value.desired == DesiredState::Run)
    };
    let (id, m) = migrations.get_key_value(under_way.get(service)?)?;
    let replaced = m.value.replacement.as_deref().is_some_and(live);
    (live(id) && !replaced).then_some((id, m))
}

/// Records `replacement` as the instance started in place of the migrating `id`.
pub(super) fn note_replacement(
    id: &str,
    m: &Versioned<Migration>,
    replacement: &str,
    plan: &mut Plan,
) {
    let updated = Migration {
        replacement: Some(replacement.to_string()),
        ..m.value.clone()
    };
    plan.ops.push(Op::put(
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
pub(super) fn ended(id: &str, m: &Migration, instances: &[Versioned<Assignment>]) -> MigrationView {
    let replacement = m
        .replacement
        .as_deref()
        .and_then(|r| instances.iter().map(|a| &a.value).find(|a| a.id == r));
    let phase = if replacement.is_some() {
        MOVE_MOVED
    } else {
        MOVE_STOPPED
    };
    view(id, m, replacement, phase.to_string())
}

/// A move as the API shows it.
pub(crate) fn view(
    id: &str,
    m: &Migration,
    replacement: Option<&Assignment>,
    phase: String,
) -> MigrationView {
    MigrationView {
        instance: id.to_string(),
        service: m.service.clone(),
        from: m.from.clone(),
        to: m.to.clone(),
        reason: m.reason(),
        since_ms: m.since_ms,
        replacement: replacement.map(|r| r.id.clone()),
        replacement_node: replacement.map(|r| r.node.clone()),
        phase,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Server;
    use ebb_core::api::NodeInfo;
    use ebb_core::ServiceSpec;
    use ebb_store::{KvStore, SqliteStore};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    fn node(server: &Server, name: &str, silent: Duration) {
        let info = NodeInfo {
            name: name.into(),
            address: "127.0.0.1".into(),
            cpu_millis: 1000,
            memory_bytes: 1 << 30,
            enforcement: "none: test".into(),
            labels: Default::default(),
        };
        let at = Instant::now()
            .checked_sub(silent)
            .unwrap_or_else(Instant::now);
        server.nodes().heartbeat(&info, at);
        let store = server.store();
        store
            .put(&keys::node(name), &keys::encode(&info), Expect::Any)
            .unwrap();
    }

    fn put<T: serde::Serialize>(store: &dyn KvStore, key: &str, value: &T) {
        store.put(key, &keys::encode(value), Expect::Any).unwrap();
    }

    /// A move begun just before its node went down: the same pass forgets the lost instance
    /// and places its replacement. Both must land (a conflict would repeat every pass).
    #[test]
    fn a_move_whose_node_goes_down_ends_as_a_lost_instance() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap());
        let server = Server::new(store, "t".into()).unwrap();
        node(&server, "a", Duration::from_secs(10));
        node(&server, "b", Duration::ZERO);
        let spec = ServiceSpec::new("web", vec!["true".into()]);
        put(server.store(), &keys::service("web"), &spec);
        let a = Assignment {
            id: "web-1".into(),
            service: "web".into(),
            node: "a".into(),
            generation: 0,
            version: spec.version(),
            spec: spec.clone(),
            desired: DesiredState::Run,
            created_ms: 1,
            task: None,
            placement: None,
        };
        put(server.store(), &keys::instance("web-1"), &a);
        let m = Migration {
            service: "web".into(),
            from: "a".into(),
            to: None,
            by_drain: false,
            restart: false,
            since_ms: 1,
            replacement: None,
        };
        put(server.store(), &keys::migration("web-1"), &m);

        super::super::reconcile(&server, &std::sync::Mutex::new(None)).unwrap();
        let (after, _) = keys::assignments(server.store()).unwrap();
        let nodes: Vec<&str> = after.iter().map(|a| a.value.node.as_str()).collect();
        assert_eq!(nodes, ["b"], "lost instance forgotten, replacement on b");
        assert!(keys::migrations(server.store()).unwrap().is_empty());
    }
}
