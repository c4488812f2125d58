//! `GET /v1/servers`: the control plane's servers, from the registry their sessions keep in
//! etcd, with those this server saw leave ([`crate::state::servers`]); on the embedded store,
//! this server alone.

use axum::extract::State;
use axum::Json;
use ebb_core::api::ServerView;
use ebb_store::Leadership;

use super::ApiResult;
use crate::state::servers::registered;
use crate::{now_ms, Identity, Server};

pub async fn list(State(server): State<Server>) -> ApiResult<Vec<ServerView>> {
    Ok(Json(servers(&server)?))
}

/// Every server whose session lives, then those this server saw leave, sorted by name.
pub fn servers(server: &Server) -> Result<Vec<ServerView>, super::ApiError> {
    let now = now_ms();
    let Some(cluster) = server.cluster() else {
        let me = server.identity().cloned().unwrap_or_default();
        return Ok(vec![view(me, true, now, true)]);
    };
    let leader = cluster.leader()?;
    let live = registered(server)?;
    let names: Vec<String> = live.iter().map(|s| s.name.clone()).collect();
    server.registry().observe(live.clone(), now);
    let mut views: Vec<ServerView> = live
        .into_iter()
        .map(|s| {
            let leads = leader.as_deref() == Some(s.name.as_str());
            view(s, leads, now, true)
        })
        .chain(
            server
                .registry()
                .departed(&names)
                .into_iter()
                .map(|s| view(s.identity, false, s.last_seen_ms, false)),
        )
        .collect();
    views.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(views)
}

/// A server's row: a live one is seen now.
fn view(server: Identity, leader: bool, last_seen_ms: u64, alive: bool) -> ServerView {
    ServerView {
        name: server.name,
        api: server.api,
        router: server.router,
        leader,
        last_seen_ms,
        alive,
    }
}

/// The leader's name, as this server knows it.
pub fn leader_name(server: &Server) -> Option<String> {
    match server.leadership() {
        Leadership::Leading(_) => server.identity().map(|me| me.name.clone()),
        Leadership::Following { leader } => leader,
    }
}
