//! The agent's conversation with the server: a heartbeat every second (or at once when an
//! instance changes) that reports statuses and events and gets the node's assignments back, and
//! a long-poll that delivers new assignments the moment the server writes them.
//!
//! Both paths hand the full set of assignments to [`Supervisor::apply`], which is idempotent
//! (DESIGN.md principle 1): a lost or duplicated message does no harm.

use crate::Supervisor;
use ebb_client::Client;
use ebb_core::api::{NodeInfo, SyncRequest};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Heartbeat interval (DESIGN.md: node heartbeat 1 s).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// How long one assignments long-poll waits on the server before asking again.
pub const LONG_POLL_WAIT: Duration = Duration::from_secs(30);
/// Pause after a failed call, so an unreachable server is not hammered.
pub const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Runs both loops until `shutdown` turns true.
pub async fn run(
    client: Client,
    supervisor: Supervisor,
    node: NodeInfo,
    shutdown: watch::Receiver<bool>,
) {
    let applier = Applier {
        supervisor,
        newest: Arc::new(AtomicU64::new(0)),
    };
    let heartbeat = tokio::spawn(heartbeat_loop(
        client.clone(),
        applier.clone(),
        node.clone(),
        shutdown.clone(),
    ));
    let poll = tokio::spawn(long_poll_loop(client, applier, node.name, shutdown));
    let _ = tokio::join!(heartbeat, poll);
}

/// Applies assignment sets in revision order: the heartbeat and the long-poll answer
/// concurrently, and an older set arriving after a newer one must not undo it.
#[derive(Clone)]
struct Applier {
    supervisor: Supervisor,
    newest: Arc<AtomicU64>,
}

impl Applier {
    fn apply(&self, resp: &ebb_core::api::AssignmentsResponse) {
        if self.newest.fetch_max(resp.revision, Ordering::SeqCst) <= resp.revision {
            self.supervisor.apply(&resp.assignments);
        }
    }
}

async fn heartbeat_loop(
    client: Client,
    applier: Applier,
    node: NodeInfo,
    mut shutdown: watch::Receiver<bool>,
) {
    let supervisor = applier.supervisor.clone();
    let mut changed = supervisor.changed();
    let mut warned = false;
    while !*shutdown.borrow() {
        let events = supervisor.take_events();
        let req = SyncRequest {
            node: node.clone(),
            statuses: supervisor.statuses(),
            events,
        };
        match client.sync(&req).await {
            Ok(resp) => {
                applier.apply(&resp);
                warned = false;
            }
            Err(e) => {
                if !warned {
                    tracing::warn!(error = %e, "agent sync failed; retrying");
                    warned = true;
                }
                // Keep the events for the next attempt rather than lose them.
                supervisor.requeue_events(req.events);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(HEARTBEAT_INTERVAL) => {}
            _ = changed.changed() => {}
            _ = shutdown.changed() => {}
        }
    }
}

async fn long_poll_loop(
    client: Client,
    applier: Applier,
    node: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut after = 0;
    while !*shutdown.borrow() {
        let call = client.assignments(&node, after, LONG_POLL_WAIT);
        tokio::select! {
            result = call => match result {
                Ok(resp) => {
                    applier.apply(&resp);
                    after = resp.revision;
                }
                Err(_) => tokio::time::sleep(RETRY_PAUSE).await,
            },
            _ = shutdown.changed() => {}
        }
    }
}
