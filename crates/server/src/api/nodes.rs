//! The node side of the API: a heartbeat that carries statuses, events and usage, and a long-poll for
//! the node's assignments. The local agent of `ebb up` uses it exactly as a remote one would.

use super::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult};
use crate::state::keys;
use crate::{now_ms, Server};
use axum::extract::State;
use axum::Json;
use ebb_core::api::{AssignmentsResponse, JoinResponse, SyncRequest};
use ebb_core::{Event, EventKind};
use ebb_store::{Expect, StoreError};
use serde::Deserialize;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Longest long-poll a node may ask for.
const MAX_WAIT: Duration = Duration::from_secs(60);
use ebb_core::api::MAX_EVENTS_PER_SYNC;

/// `POST /v1/nodes/{name}/join` (join token): node `name` receives its own credential. A name
/// that is registered (it has synced: `nodes/{name}` exists) or reserved (the local node of
/// `ebb up`) cannot be taken with the join token, so that the join token cannot be used to act
/// as a node that exists; a machine that lost its credential joins again after `ebb nodes rm
/// NAME`. A credential whose node never synced (the agent died, or lost the answer, before its
/// first heartbeat) is replaced, so that the name is not locked for good.
pub async fn join(
    State(server): State<Server>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<JoinResponse> {
    ebb_core::api::validate_node_name(&name).map_err(ApiError::bad_request)?;
    let taken = || {
        ApiError::new(
            axum::http::StatusCode::CONFLICT,
            format!(
                "node {name} has already joined: its agent uses the credential in its data dir's \
                 node-credential file. A machine that lost it joins again once the old node is \
                 forgotten: `ebb nodes rm {name}` (when it is down), or choose another --name"
            ),
        )
    };
    if server.store().get(&keys::node(&name))?.is_some() {
        return Err(taken());
    }
    let key = keys::node_credential(&name);
    let expect = match server.store().get(&key)? {
        None => Expect::Absent,
        Some(kv) if kv.value == crate::auth::RESERVED_CREDENTIAL => return Err(taken()),
        Some(kv) => Expect::ModRevision(kv.mod_revision),
    };
    let credential = crate::auth::random_token();
    let hash = crate::auth::credential_hash(&credential);
    match server.store().put(&key, hash.as_bytes(), expect) {
        Ok(_) => Ok(Json(JoinResponse { credential })),
        Err(StoreError::Conflict { .. }) => Err(taken()),
        Err(e) => Err(e.into()),
    }
}

/// A node's address is fixed when it first syncs: the router dials its instances there, so a
/// node (or whoever holds its credential) may not move it elsewhere. Checked against the store
/// only when the address differs from the last heartbeat's, so a steady node costs nothing.
fn check_address(server: &Server, node: &ebb_core::api::NodeInfo) -> Result<(), ApiError> {
    if server.nodes().address(&node.name).as_deref() == Some(node.address.as_str()) {
        return Ok(());
    }
    let stored = server.store().get(&keys::node(&node.name))?;
    let registered = stored.and_then(|kv| keys::decode::<ebb_core::api::NodeInfo>(&kv).ok());
    match registered {
        Some(info) if info.address != node.address => Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            format!(
                "node {} is registered at {}, not {}: a node's address is fixed when it joins. \
                 To move it, stop its agent, `ebb nodes rm {}` once it is down, and start the \
                 agent again",
                node.name, info.address, node.address, node.name
            ),
        )),
        _ => Ok(()),
    }
}

/// Whether `addr` (`host:port` or `[v6]:port`) is on the node's advertised `host`: a node
/// may only point the router at itself.
fn on_host(addr: &str, host: &str) -> bool {
    addr.rsplit_once(':').is_some_and(|(h, port)| {
        let h = h.trim_start_matches('[').trim_end_matches(']');
        let host = host.trim_start_matches('[').trim_end_matches(']');
        !port.is_empty() && h.eq_ignore_ascii_case(host)
    })
}

pub async fn sync(
    State(server): State<Server>,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<SyncRequest>,
) -> ApiResult<AssignmentsResponse> {
    ebb_core::api::validate_node_name(&name).map_err(ApiError::bad_request)?;
    if req.node.name != name {
        return Err(ApiError::bad_request(format!(
            "node name in the path ({name:?}) differs from the body ({:?})",
            req.node.name
        )));
    }
    check_address(&server, &req.node)?;
    let (changed, returned) = server.nodes().heartbeat(&req.node, Instant::now());
    if let Some(cluster) = server.cluster() {
        // Tell the leader, wherever it is: the node's liveness key (kept in the background).
        cluster.node_alive(&name);
    }
    if returned {
        server.record(
            Event::new(
                now_ms(),
                EventKind::NodeReturned,
                format!(
                    "node {name} is back; instances replaced while it was down are stopped there"
                ),
            )
            .node(&name),
        );
    }
    if changed {
        // After a server restart every node is new in memory, but most are not in the store:
        // writing (and fsyncing) only what changed keeps 1,000 agents' return quick.
        let stored = server.store().get(&keys::node(&name))?;
        let known = stored.is_some();
        let same = stored
            .and_then(|kv| keys::decode::<ebb_core::api::NodeInfo>(&kv).ok())
            .is_some_and(|info| info == req.node);
        if !same {
            server
                .store()
                .put(&keys::node(&name), &keys::encode(&req.node), Expect::Any)?;
        }
        if !known {
            server.record(
                Event::new(
                    now_ms(),
                    EventKind::NodeJoined,
                    format!("node {name} joined at {}", req.node.address),
                )
                .node(&name),
            );
        }
    }
    let placed = server.placed()?;
    let mine = placed.on(&name);
    // Only the node that holds the current generation of an instance may report on it.
    let held: HashSet<(&str, u64)> = mine.iter().map(|a| (a.id.as_str(), a.generation)).collect();
    let holds = |id: &str, generation: u64| held.contains(&(id, generation));
    let address = req.node.address.as_str();
    let owned: Vec<_> = req
        .statuses
        .into_iter()
        .filter(|s| holds(&s.id, s.generation))
        .filter(|s| {
            let foreign = s.addr.as_deref().is_some_and(|a| !on_host(a, address));
            if foreign {
                tracing::warn!(node = %name, instance = %s.id, addr = ?s.addr, "status refused: its address is not on the node's advertised address {address}");
            }
            !foreign
        })
        .collect();
    server.update_statuses(&owned)?;
    // Usage changes every second: kept in memory for the autoscaler, never written to the store.
    let usage = req
        .usage
        .into_iter()
        .filter(|u| holds(&u.id, u.generation))
        .collect();
    server.nodes().record_usage(&name, usage, req.node_usage);
    // An agent reports on its own instances only: other kinds are dropped, and every event
    // is marked with the node that sent it.
    let events = req
        .events
        .into_iter()
        .take(MAX_EVENTS_PER_SYNC)
        .filter(|event| event.kind.from_agent())
        .map(|event| Event {
            node: Some(name.clone()),
            ..event
        })
        .collect();
    server.record_all(events);
    Ok(Json(AssignmentsResponse {
        revision: placed.revision,
        assignments: mine,
    }))
}

#[derive(Deserialize)]
pub struct AssignmentsQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    wait_ms: u64,
}

/// Long-poll: answers at once if instances changed after `after`, else when they do, else after
/// `wait_ms`. Every waiting agent wakes on each store write, but only looks at the shared
/// index (see [`crate::state::placed`]), which reads the store once per write.
pub async fn assignments(
    State(server): State<Server>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<AssignmentsQuery>,
) -> ApiResult<AssignmentsResponse> {
    ebb_core::api::validate_node_name(&name).map_err(ApiError::bad_request)?;
    let wait = Duration::from_millis(q.wait_ms).min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    // Subscribed before the first look: a write in between still wakes the wait below.
    let mut revisions = server.store().subscribe();
    revisions.borrow_and_update();
    loop {
        let placed = server.placed()?;
        let changed = q.after == 0 || placed.instances_revision > q.after;
        let woke = changed
            || matches!(
                tokio::time::timeout_at(deadline, revisions.changed()).await,
                Ok(Ok(()))
            );
        if !woke {
            // Timed out (or the store went away): answer with what is placed now.
            let placed = server.placed()?;
            return Ok(Json(response_for(&name, &placed)));
        }
        if changed {
            return Ok(Json(response_for(&name, &placed)));
        }
        revisions.borrow_and_update();
    }
}

fn response_for(node: &str, placed: &crate::state::placed::Placed) -> AssignmentsResponse {
    AssignmentsResponse {
        revision: placed.revision,
        assignments: placed.on(node),
    }
}

/// `GET /v1/nodes`: every node that ever joined, with its state and what is placed on it.
pub async fn list(State(server): State<Server>) -> ApiResult<Vec<ebb_core::api::NodeView>> {
    Ok(Json(views(&server, Instant::now())?))
}

/// The nodes as `ebb nodes` shows them, sorted by name.
pub fn views(server: &Server, now: Instant) -> Result<Vec<ebb_core::api::NodeView>, StoreError> {
    let (assignments, _) = keys::assignments(server.store())?;
    views_with(server, now, &assignments)
}

/// [`views`] with the assignments already read.
pub fn views_with(
    server: &Server,
    now: Instant,
    assignments: &[keys::Versioned<ebb_core::Assignment>],
) -> Result<Vec<ebb_core::api::NodeView>, StoreError> {
    use ebb_core::api::{NodeInfo, NodeView};
    let (kvs, _) = server.store().list(keys::NODES)?;
    let infos: Vec<NodeInfo> = kvs.iter().map(keys::decode).collect::<Result<_, _>>()?;
    let drains = keys::node_drains(server.store())?;
    let states = server
        .nodes()
        .states(now, now.saturating_duration_since(server.liveness_since()))
        .draining(drains.keys().cloned());
    let mut views: Vec<NodeView> = infos
        .into_iter()
        .map(|info| {
            let placed = assignments.iter().filter(|a| {
                a.value.node == info.name && a.value.desired == ebb_core::DesiredState::Run
            });
            let (mut cpu, mut memory, mut count) = (0u64, 0u64, 0u32);
            for a in placed {
                let r = &a.value.spec.resources;
                cpu += u64::from(r.cpu_millis.unwrap_or(0));
                memory += r.memory_bytes.unwrap_or(0);
                count += 1;
            }
            let age = states.age(&info.name);
            let usage = server.nodes().last_node_usage(&info.name);
            NodeView {
                state: states.get(&info.name),
                address: info.address,
                cpu_millis: info.cpu_millis,
                memory_bytes: info.memory_bytes,
                reserved_cpu_millis: cpu,
                reserved_memory_bytes: memory,
                used_cpu_cores: usage.as_ref().map(|u| u.cpu_cores),
                used_memory_bytes: usage.map(|u| u.memory_bytes),
                instances: count,
                heartbeat_age_ms: age.map(|a| u64::try_from(a.as_millis()).unwrap_or(u64::MAX)),
                labels: info.labels,
                drain: drains
                    .get(&info.name)
                    .map(|d| ebb_core::api::NodeDrainView {
                        since_ms: d.value.since_ms,
                        deadline_ms: d.value.deadline_ms,
                        done_ms: d.value.done_ms,
                    }),
                name: info.name,
            }
        })
        .collect();
    views.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(views)
}

#[cfg(test)]
mod tests {
    use super::on_host;

    #[test]
    fn an_instance_address_must_be_on_its_node() {
        assert!(on_host("10.0.0.2:8080", "10.0.0.2"));
        assert!(on_host("[::1]:8080", "::1"));
        assert!(on_host("Node-A:80", "node-a"));
        assert!(!on_host("10.0.0.3:8080", "10.0.0.2"));
        assert!(!on_host("10.0.0.22:8080", "10.0.0.2"));
        assert!(!on_host("10.0.0.2", "10.0.0.2"));
        assert!(!on_host("10.0.0.2:", "10.0.0.2"));
        assert!(!on_host("evil.example:80", "10.0.0.2"));
    }
}

#[derive(Deserialize)]
pub struct LogPollQuery {
    #[serde(default)]
    wait_ms: u64,
}

/// The agent's log channel (see [`crate::state::log_relay`]): answers with the log reads
/// waiting for this node as soon as there is one, or with none after `wait_ms`.
pub async fn log_requests(
    State(server): State<Server>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<LogPollQuery>,
) -> ApiResult<ebb_core::api::LogRequests> {
    ebb_core::api::validate_node_name(&name).map_err(ApiError::bad_request)?;
    let wait = Duration::from_millis(q.wait_ms).min(MAX_WAIT);
    let requests = server.log_relay().poll(&name, wait).await;
    Ok(Json(ebb_core::api::LogRequests { requests }))
}

/// Largest log answer an agent may post: what it reads is bounded as JSON (`ebb_agent`'s
/// `MAX_ANSWER_COST`, 24 MiB), with room for the envelope.
const MAX_LOG_ANSWER_BYTES: usize = 32 << 20;

/// The agent's answer to one log read. The read is claimed before the body is read, so an
/// answer nobody waits for (late, or another node's) is refused unread, one read takes one
/// answer, and one node posts only a few at once (`MAX_ANSWERS_PER_NODE`).
pub async fn answer_log_request(
    State(server): State<Server>,
    ApiPath((name, id)): ApiPath<(String, u64)>,
    req: axum::extract::Request,
) -> ApiResult<serde_json::Value> {
    use crate::state::log_relay::ClaimError;
    let claim = match server.log_relay().claim(&name, id) {
        Ok(claim) => claim,
        Err(ClaimError::NotWaiting) => return Ok(Json(serde_json::json!({ "delivered": false }))),
        Err(ClaimError::Busy) => {
            return Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                format!("node {name} is posting too many log answers at once"),
            ))
        }
    };
    let body = axum::body::to_bytes(req.into_body(), MAX_LOG_ANSWER_BYTES)
        .await
        .map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                format!("log answer not read (at most {MAX_LOG_ANSWER_BYTES} bytes): {e}"),
            )
        })?;
    let answer: ebb_core::api::LogsResponse = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid log answer: {e}")))?;
    let delivered = claim.deliver(answer);
    Ok(Json(serde_json::json!({ "delivered": delivered })))
}
