//! Only the leader decides: the controllers, store compaction and the autoscaler run while this
//! server leads, on a copy of the server whose every
//! write is fenced on the leader key ([`Server::fenced`]). When it stops leading, they stop;
//! when it leads again, they start afresh, with every node given a full down timeout.
//!
//! Alone on the embedded store, a server always leads and nothing is fenced.

use std::time::{Duration, Instant};

use ebb_store::{Fence, Leadership};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::controllers::{autoscale, instances, maintenance};
use crate::routing::Listeners;
use crate::state::keys;
use crate::{run_loop, Server};

/// How often every server reads which nodes have a liveness key (from its own watch: no etcd
/// request).
pub const NODE_LEASES_EVERY: Duration = Duration::from_millis(250);

/// Runs the decisions while this server leads, until `stop`.
pub async fn run(server: Server, router: Listeners, stop: CancellationToken) {
    let mut leadership = server_leadership(&server);
    loop {
        let Some(fence) = wait_to_lead(&mut leadership, &stop).await else {
            return;
        };
        server.mark_leading(Instant::now());
        // What other servers sent a former term (or sent here while it followed) is not news.
        server.peer_load().clear();
        let led = match &fence {
            Some(fence) => server.fenced(fence.clone()),
            None => server.clone(),
        };
        let term = stop.child_token();
        let tasks = start_decisions(&led, &router, &term);
        wait_while_leading(&mut leadership, &fence, &stop).await;
        term.cancel();
        for task in tasks {
            let _ = task.await;
        }
        if stop.is_cancelled() {
            return;
        }
        tracing::warn!("no longer leading: decisions stopped");
    }
}

/// Who leads; alone, this server, for good.
fn server_leadership(server: &Server) -> watch::Receiver<Leadership> {
    server
        .leadership_channel()
        .unwrap_or_else(Leadership::alone)
}

/// Waits until this server leads; its fence (None: alone). None when stopped first.
async fn wait_to_lead(
    leadership: &mut watch::Receiver<Leadership>,
    stop: &CancellationToken,
) -> Option<Option<Fence>> {
    loop {
        if let Leadership::Leading(fence) = leadership.borrow_and_update().clone() {
            return Some(fence);
        }
        tokio::select! {
            _ = stop.cancelled() => return None,
            changed = leadership.changed() => {
                if changed.is_err() {
                    // Nobody will say otherwise: what is known now stays true.
                    stop.cancelled().await;
                    return None;
                }
            }
        }
    }
}

/// Waits while this server leads with `fence`.
async fn wait_while_leading(
    leadership: &mut watch::Receiver<Leadership>,
    fence: &Option<Fence>,
    stop: &CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = leadership.changed() => {
                if changed.is_err() {
                    stop.cancelled().await;
                    return;
                }
                let still = matches!(&*leadership.borrow_and_update(), Leadership::Leading(f) if f == fence);
                if !still {
                    return;
                }
            }
        }
    }
}

fn start_decisions(
    led: &Server,
    router: &Listeners,
    term: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(instances::run(led.clone(), term.clone())),
        tokio::spawn(maintenance::run(led.clone(), term.clone())),
        tokio::spawn(autoscale::run(led.clone(), router.clone(), term.clone())),
    ]
}

/// Reads the nodes' liveness keys (from this server's watch) every [`NODE_LEASES_EVERY`]: a
/// node some other server heard from counts as heard from here. Every server runs it, so that `ebb nodes` says the same on each,
/// and a server that becomes the leader already knows every node.
pub async fn node_leases(server: Server, stop: CancellationToken) {
    let mut tick = tokio::time::interval(NODE_LEASES_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while run_loop::next(&stop, tick.tick()).await.is_some() {
        let pass = server.clone();
        run_loop::blocking_pass("reading the nodes' liveness keys", move || {
            note_alive(&pass)
        })
        .await;
    }
}

fn note_alive(server: &Server) -> Result<(), ebb_store::StoreError> {
    let Some(cluster) = server.cluster() else {
        return Ok(());
    };
    let now = Instant::now();
    for name in cluster.alive_nodes()? {
        if server.nodes().heard_elsewhere(&name, now) {
            continue;
        }
        // First word of this node here: its description is in the store.
        if let Some(kv) = server.store().get(&keys::node(&name))? {
            match keys::decode::<ebb_core::api::NodeInfo>(&kv) {
                Ok(info) => {
                    server.nodes().heartbeat(&info, now);
                }
                Err(error) => tracing::warn!(node = %name, %error, "skipping a node record"),
            }
        }
    }
    Ok(())
}
