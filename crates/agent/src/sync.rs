//! The agent's conversation with the server: a heartbeat every second (or at once when an
//! instance changes) that reports statuses, events and the latest CPU and memory use (sampled
//! once a second by the supervisor; a change of usage never triggers a sync of its own) and gets
//! the node's assignments back, and
//! a long-poll that delivers new assignments the moment the server writes them.
//!
//! Both paths hand the full set of assignments to [`Supervisor::apply`], which is idempotent
//! (ARCHITECTURE.md, principle 1): a lost or duplicated message does no harm.

use crate::Supervisor;
use ebb_client::Client;
use ebb_core::api::{NodeInfo, SyncRequest, MAX_EVENTS_PER_SYNC};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Heartbeat interval (ARCHITECTURE.md, defaults: node heartbeat 1 s).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// How long one assignments long-poll waits on the server before asking again.
pub const LONG_POLL_WAIT: Duration = Duration::from_secs(30);
/// How long the last report at shutdown may take.
pub const FINAL_SYNC_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a heartbeat may take. One that takes longer would arrive too late to count for the
/// node's liveness (the server's down timeout is 2 s at least): it is given up, its events are
/// kept, and the next heartbeat goes out on time instead of queuing behind it.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause after a failed call, so an unreachable server is not hammered.
pub const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Runs both loops, and the log channel (`crate::log_channel`), until `stop` is cancelled.
pub async fn run(client: Client, supervisor: Supervisor, node: NodeInfo, stop: CancellationToken) {
    let applier = Applier {
        supervisor,
        newest: Arc::new(Mutex::new(0)),
    };
    let heartbeat = tokio::spawn(heartbeat_loop(
        client.clone(),
        applier.clone(),
        node.clone(),
        stop.clone(),
    ));
    let logs = tokio::spawn(crate::log_channel::run(
        client.clone(),
        applier.supervisor.clone(),
        node.name.clone(),
        stop.clone(),
    ));
    let poll = tokio::spawn(long_poll_loop(client, applier, node.name, stop));
    let _ = tokio::join!(heartbeat, poll, logs);
}

/// Applies assignment sets in revision order: the heartbeat and the long-poll answer
/// concurrently, and an older set arriving after a newer one must not undo it.
/// The check and the apply happen under one lock, so that two answers cannot interleave.
#[derive(Clone)]
struct Applier {
    supervisor: Supervisor,
    newest: Arc<Mutex<u64>>,
}

impl Applier {
    fn apply(&self, resp: &ebb_core::api::AssignmentsResponse) {
        let mut newest = self.newest.lock().unwrap_or_else(|p| p.into_inner());
        if resp.revision >= *newest {
            *newest = resp.revision;
            self.supervisor.apply(&resp.assignments);
        }
    }
}

async fn heartbeat_loop(client: Client, applier: Applier, node: NodeInfo, stop: CancellationToken) {
    let supervisor = applier.supervisor.clone();
    let mut changed = supervisor.changed();
    let mut warned = false;
    while !stop.is_cancelled() {
        match sync_once(&client, &supervisor, &node).await {
            Ok(resp) => {
                applier.apply(&resp);
                warned = false;
            }
            Err(e) if !warned => {
                tracing::warn!(error = %e, "agent sync failed; retrying");
                warned = true;
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(HEARTBEAT_INTERVAL) => {}
            _ = changed.changed() => {}
            _ = stop.cancelled() => {}
        }
    }
    // A last report, so that the server knows the final states and events of a shutdown.
    let _ = tokio::time::timeout(FINAL_SYNC_TIMEOUT, sync_once(&client, &supervisor, &node)).await;
}

/// Reports statuses and up to [`MAX_EVENTS_PER_SYNC`] events; on failure, or beyond that
/// count, the events are kept for the next sync. `ebb agent` calls it once at start, so that a
/// wrong address or token is an error there rather than a warning in the retry loop.
pub async fn sync_once(
    client: &Client,
    supervisor: &Supervisor,
    node: &NodeInfo,
) -> Result<ebb_core::api::AssignmentsResponse, ebb_client::ClientError> {
    let mut events = supervisor.take_events();
    if events.len() > MAX_EVENTS_PER_SYNC {
        supervisor.requeue_events(events.split_off(MAX_EVENTS_PER_SYNC));
    }
    let req = SyncRequest {
        node: node.clone(),
        statuses: supervisor.statuses(),
        events,
        usage: supervisor.usage(),
        node_usage: supervisor.node_usage(),
    };
    let result = match tokio::time::timeout(HEARTBEAT_TIMEOUT, client.sync(&req)).await {
        Ok(result) => result,
        Err(_) => Err(ebb_client::ClientError::Timeout {
            addr: client.base().to_string(),
            reason: format!("no answer to a heartbeat within {HEARTBEAT_TIMEOUT:?}"),
        }),
    };
    if result.is_err() {
        supervisor.requeue_events(req.events);
    }
    result
}

async fn long_poll_loop(client: Client, applier: Applier, node: String, stop: CancellationToken) {
    let mut after = 0;
    while !stop.is_cancelled() {
        let call = client.assignments(&node, after, LONG_POLL_WAIT);
        tokio::select! {
            result = call => match result {
                Ok(resp) => {
                    applier.apply(&resp);
                    after = resp.revision;
                }
                Err(_) => tokio::time::sleep(RETRY_PAUSE).await,
            },
            _ = stop.cancelled() => {}
        }
    }
}
