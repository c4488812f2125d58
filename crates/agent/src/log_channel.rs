//! The agent's log channel: how the server reads this node's instance and task logs.
//!
//! The agent keeps a long-poll open with every server it knows (`GET
//! /v1/nodes/{name}/log-requests`, with its node credential, over the same HTTPS as its
//! heartbeats); a server with a log read for this node answers the poll with it, and the agent
//! reads its files and posts the lines back. The server never connects to the agent: a node
//! behind NAT or a firewall serves its logs as long as it can reach the API, and there is no
//! second port or credential to manage.

use crate::Supervisor;
use ebb_client::Client;
use ebb_core::api::LogRequest;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// How long one log-requests long-poll waits on the server before asking again.
pub const LOG_POLL_WAIT: Duration = Duration::from_secs(25);
/// Pause after a failed poll, so an unreachable server is not hammered.
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// Pause after a server answered that it has no log channel (an older server): ask rarely.
const UNSUPPORTED_PAUSE: Duration = Duration::from_secs(30);

/// Serves log reads from each server `client` names until `stop` is cancelled.
pub async fn run(client: Client, supervisor: Supervisor, node: String, stop: CancellationToken) {
    let loops: Vec<_> = client
        .each_server()
        .into_iter()
        .map(|server| {
            tokio::spawn(serve(
                server,
                supervisor.clone(),
                node.clone(),
                stop.clone(),
            ))
        })
        .collect();
    for l in loops {
        let _ = l.await;
    }
}

/// Most reads this agent works on at once, per server: each may hold up to tens of MiB while
/// it is read and sent, and a slow disk must not pile them up.
const MAX_READS_AT_ONCE: usize = 4;

async fn serve(client: Client, supervisor: Supervisor, node: String, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_READS_AT_ONCE));
    while !stop.is_cancelled() {
        tokio::select! {
            result = client.log_requests(&node, LOG_POLL_WAIT) => match result {
                Ok(batch) => {
                    for request in batch.requests {
                        // Each read on its own (a slow read holds up no other answer), a few
                        // at a time: the next poll waits for a free slot.
                        let Ok(slot) = slots.clone().acquire_owned().await else {
                            return;
                        };
                        let (client, supervisor, node) = (client.clone(), supervisor.clone(), node.clone());
                        tokio::spawn(async move {
                            answer(client, supervisor, node, request).await;
                            drop(slot);
                        });
                    }
                }
                Err(e) if e.status() == Some(404) => tokio::time::sleep(UNSUPPORTED_PAUSE).await,
                Err(_) => tokio::time::sleep(RETRY_PAUSE).await,
            },
            _ = stop.cancelled() => {}
        }
    }
}

/// Reads the files off the async workers and posts the lines back. A failed post is dropped:
/// the server's reader has a deadline of its own and says the node did not answer.
async fn answer(client: Client, supervisor: Supervisor, node: String, request: LogRequest) {
    let read = request.read;
    let Ok(lines) = tokio::task::spawn_blocking(move || supervisor.read_logs(&read)).await else {
        return;
    };
    if let Err(e) = client.answer_log_request(&node, request.id, &lines).await {
        tracing::warn!(error = %e, id = request.id, "could not send a log answer");
    }
}
