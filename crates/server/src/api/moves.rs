//! Drain, undrain and migrate: the API writes what is wanted (a node's drain record, an
//! instance's migration record), and the controller moves instances start-before-stop.

use super::{nodes, ApiError, ApiJson, ApiPath, ApiResult};
use crate::controllers::instances::moves::{self, migrating_event};
use crate::state::keys::{self, Migration, NodeDrain};
use crate::{now_ms, Server};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use ebb_core::api::{DrainRequest, MigrateRequest, MigrationView, NodeState, NodeView};
use ebb_core::quantity::{format_duration, parse_duration};
use ebb_core::{Assignment, DesiredState, Event, EventKind};
use ebb_store::{Expect, Op};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a drain may take before what is left is stopped, unless `--deadline` says
/// otherwise (Nomad's `node drain -deadline` default).
pub const DEFAULT_DRAIN_DEADLINE: Duration = Duration::from_secs(3600);

/// `POST /v1/nodes/{name}/drain`: the node takes no new instances and its instances move to
/// other nodes one at a time. Draining a drained node again sets a new deadline.
pub async fn drain(
    State(server): State<Server>,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<DrainRequest>,
) -> ApiResult<NodeView> {
    let deadline = match &req.deadline {
        Some(text) => parse_duration(text)
            .map_err(|e| ApiError::bad_request(format!("deadline {text:?}: {e}")))?,
        None => DEFAULT_DRAIN_DEADLINE,
    };
    known_node(&server, &name)?;
    let previous = server.store().get(&keys::node_drain(&name))?;
    let now = now_ms();
    let since_ms = match &previous {
        Some(kv) => keys::decode::<NodeDrain>(kv)?.since_ms,
        None => now,
    };
    let record = NodeDrain {
        since_ms,
        deadline_ms: now.saturating_add(u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX)),
        done_ms: None,
    };
    let expect = match &previous {
        Some(kv) => Expect::ModRevision(kv.mod_revision),
        None => Expect::Absent,
    };
    server.store().txn(vec![Op::put(
        keys::node_drain(&name),
        keys::encode(&record),
        expect,
    )])?;
    server.record(
        Event::new(
            now,
            EventKind::NodeDraining,
            format!(
                "node {name} is draining: it takes no new instances, and its instances move to other nodes one at a time (deadline {})",
                format_duration(deadline)
            ),
        )
        .node(&name),
    );
    view_of(&server, &name)
}

/// `DELETE /v1/nodes/{name}/drain`: the node takes instances again. Moves it started and that
/// are not over are called off (a replacement already started is scaled in as an extra).
pub async fn undrain(
    State(server): State<Server>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<NodeView> {
    known_node(&server, &name)?;
    if let Some(kv) = server.store().get(&keys::node_drain(&name))? {
        server.store().txn(vec![Op::delete(
            keys::node_drain(&name),
            Expect::ModRevision(kv.mod_revision),
        )])?;
        server.record(
            Event::new(
                now_ms(),
                EventKind::NodeUndrained,
                format!("node {name} is back in service: it takes new instances"),
            )
            .node(&name),
        );
    }
    view_of(&server, &name)
}

/// `DELETE /v1/nodes/{name}`: forgets a node that is down, for good (a machine retired or
/// renamed): it leaves `ebb nodes` and the scheduler's view. A live node is refused: its agent
/// would register it again at its next heartbeat, and its instances would be lost to the
/// controller's view; stop the agent first (or drain the node). Returns the node as it was.
pub async fn remove_node(
    State(server): State<Server>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<NodeView> {
    known_node(&server, &name)?;
    let now = Instant::now();
    let state = server
        .nodes()
        .states(now, now.saturating_duration_since(server.liveness_since()))
        .get(&name);
    if state != NodeState::Down {
        return Err(conflict(format!(
            "node {name} is {state}: only a node that is down can be removed; stop its agent \
             first (its instances are replaced elsewhere once it is down), or `ebb drain {name}` \
             to move them now"
        )));
    }
    let (assignments, _) = keys::assignments(server.store())?;
    let held = assignments.iter().filter(|a| a.value.node == name).count();
    if held > 0 {
        return Err(conflict(format!(
            "node {name} still holds {held} instances; the controller replaces them within a \
             second of the node going down: try again"
        )));
    }
    let view = view_of(&server, &name)?;
    server.store().txn(vec![
        Op::delete(keys::node(&name), Expect::Any),
        Op::delete(keys::node_drain(&name), Expect::Any),
        Op::delete(keys::node_credential(&name), Expect::Any),
    ])?;
    server.nodes().forget(&name);
    let message = format!(
        "node {name} was removed: it was down and held no instance; its credential is revoked"
    );
    server.record(Event::new(now_ms(), EventKind::NodeRemoved, message).node(&name));
    Ok(view)
}

/// `POST /v1/instances/{id}/migrate`: moves one instance, start-before-stop, to `to` or to
/// wherever the scheduler places it (never its own node).
pub async fn migrate(
    State(server): State<Server>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<MigrateRequest>,
) -> ApiResult<MigrationView> {
    start_move(&server, &id, req.to, false)
}

/// `POST /v1/instances/{id}/restart`: replaces one instance, start-before-stop, by a new one
/// wherever the scheduler places it (its own node included): a move that may stay in place.
pub async fn restart(
    State(server): State<Server>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<MigrationView> {
    start_move(&server, &id, None, true)
}

/// Writes the migration record of instance `id` (the controller does the rest).
fn start_move(
    server: &Server,
    id: &str,
    to: Option<String>,
    restart: bool,
) -> ApiResult<MigrationView> {
    let id = id.to_string();
    let (assignments, _) = keys::assignments(server.store())?;
    let a = assignments
        .iter()
        .map(|a| &a.value)
        .find(|a| a.id == id)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no instance {id:?}: `ebb ps` lists the instances and their ids"
            ))
        })?;
    let drains = keys::drains(server.store())?;
    if a.task.is_some() {
        return Err(conflict(format!(
            "{id} is a task of job {}: tasks are not moved or restarted (`ebb cancel` the job and run it again)",
            a.service
        )));
    }
    if a.desired != DesiredState::Run || drains.contains_key(&id) {
        return Err(conflict(format!(
            "instance {id} is stopping: there is nothing to move"
        )));
    }
    if let Some(kv) = server.store().get(&keys::migration(&id))? {
        let m: Migration = keys::decode(&kv)?;
        return Err(conflict(format!(
            "instance {id} is already moving off node {} ({})",
            m.from,
            m.reason()
        )));
    }
    if !restart {
        check_destination(server, a, to.as_deref())?;
    }
    let m = Migration {
        service: a.service.clone(),
        from: a.node.clone(),
        to,
        by_drain: false,
        restart,
        since_ms: now_ms(),
        replacement: None,
    };
    server.store().txn(vec![Op::put(
        keys::migration(&id),
        keys::encode(&m),
        Expect::Absent,
    )])?;
    server.record(migrating_event(a, &m, crate::now_ms()));
    let cluster = Cluster {
        assignments,
        drains,
        statuses: server.statuses(),
    };
    Ok(Json(view(server, &cluster, &id, &m)))
}

/// `GET /v1/migrations`: the moves that ended since the server started (phase `moved` or
/// `stopped`), then every move under way, by instance id.
pub async fn list(State(server): State<Server>) -> ApiResult<Vec<MigrationView>> {
    let cluster = Cluster::read(&server)?;
    let mut views = server.instance_reports().moved();
    views.extend(
        keys::migrations(server.store())?
            .iter()
            .map(|(id, m)| view(&server, &cluster, id, &m.value)),
    );
    Ok(Json(views))
}

/// A move needs a ready node other than the instance's own: the one asked for, or any.
fn check_destination(server: &Server, a: &Assignment, to: Option<&str>) -> Result<(), ApiError> {
    let nodes = nodes::views(server, Instant::now())?;
    match to {
        Some(to) if to == a.node => Err(ApiError::bad_request(format!(
            "instance {} already runs on node {to}",
            a.id
        ))),
        Some(to) => match nodes.iter().find(|n| n.name == to) {
            None => Err(ApiError::bad_request(format!(
                "no node named {to:?}: `ebb nodes` lists them"
            ))),
            Some(n) if n.state != NodeState::Ready => Err(conflict(format!(
                "node {to} is {}: it takes no new instances",
                n.state.as_str()
            ))),
            Some(_) => Ok(()),
        },
        None if nodes
            .iter()
            .any(|n| n.name != a.node && n.state == NodeState::Ready) =>
        {
            Ok(())
        }
        None => Err(conflict(format!(
            "no ready node other than {} to move instance {} to",
            a.node, a.id
        ))),
    }
}

fn known_node(server: &Server, name: &str) -> Result<(), ApiError> {
    if server.store().get(&keys::node(name))?.is_none() {
        return Err(ApiError::not_found(format!(
            "no node named {name:?}: `ebb nodes` lists them"
        )));
    }
    Ok(())
}

fn view_of(server: &Server, name: &str) -> ApiResult<NodeView> {
    nodes::views(server, Instant::now())?
        .into_iter()
        .find(|n| n.name == name)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no node named {name:?}")))
}

fn conflict(message: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, message)
}

/// What the views of moves are made from, read once per request.
struct Cluster {
    assignments: Vec<keys::Versioned<Assignment>>,
    drains: HashMap<String, keys::Versioned<keys::DrainRecord>>,
    statuses: HashMap<String, ebb_core::InstanceStatus>,
}

impl Cluster {
    fn read(server: &Server) -> Result<Cluster, ebb_store::StoreError> {
        Ok(Cluster {
            assignments: keys::assignments(server.store())?.0,
            drains: keys::drains(server.store())?,
            statuses: server.statuses(),
        })
    }
}

/// A move under way as `ebb migrate` and `ebb drain` show it, with where it is.
fn view(server: &Server, cluster: &Cluster, id: &str, m: &Migration) -> MigrationView {
    let find = |id: &str| {
        cluster
            .assignments
            .iter()
            .map(|a| &a.value)
            .find(|a| a.id == id)
    };
    let replacement = m.replacement.as_deref().and_then(find);
    let ready = |a: &Assignment| {
        crate::controllers::instances::current_status(a, &cluster.statuses).is_some_and(|s| s.ready)
    };
    let drains = &cluster.drains;
    let stopping = find(id).is_none_or(|a| a.desired == DesiredState::Stop);
    let phase = if stopping {
        "stopping".to_string()
    } else if drains.contains_key(id) {
        "draining: out of the load balancer, finishing requests in flight".to_string()
    } else {
        match replacement {
            Some(r) if ready(r) => "replacement ready".to_string(),
            Some(_) => "starting replacement".to_string(),
            None => match server.instance_reports().pending_reason(&m.service) {
                Some(why) => format!("pending: {why}"),
                None => "placing replacement".to_string(),
            },
        }
    };
    moves::view(id, m, replacement, phase)
}
