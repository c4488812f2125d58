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
use std::time::Duration;
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

async fn serve(client: Client, supervisor: Supervisor, node: String, stop: CancellationToken) {
    while !stop.is_cancelled() {
        tokio::select! {
            result = client.log_requests(&node, LOG_POLL_WAIT) => match result {
                Ok(batch) => {
                    for request in batch.requests {
                        // Each read on its own: a slow disk read holds up no other answer.
                        tokio::spawn(answer(client.clone(), supervisor.clone(), node.clone(), request));
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
        tracing::debug!(error = %e, id = request.id, "could not send a log answer");
    }
}
