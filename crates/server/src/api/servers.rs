//! `GET /v1/servers`: the control plane's servers, from the registry their sessions keep in
//! etcd; on the embedded store, this server alone.

use axum::extract::State;
use axum::Json;
use ebb_core::api::ServerView;
use ebb_store::Leadership;

use super::ApiResult;
use crate::{now_ms, Identity, Server};

pub async fn list(State(server): State<Server>) -> ApiResult<Vec<ServerView>> {
    Ok(Json(servers(&server)?))
}

/// Every server whose session lives, sorted by name.
pub fn servers(server: &Server) -> Result<Vec<ServerView>, super::ApiError> {
    let now = now_ms();
    let Some(cluster) = server.cluster() else {
        let me = server.identity().cloned().unwrap_or_default();
        return Ok(vec![view(me, true, now)]);
    };
    let leader = cluster.leader()?;
    let mut views: Vec<ServerView> = cluster
        .servers()?
        .into_iter()
        .filter_map(|(name, record)| {
            let record: Identity = serde_json::from_slice(&record).ok()?;
            let leads = leader.as_deref() == Some(name.as_str());
            Some(view(Identity { name, ..record }, leads, now))
        })
        .collect();
    views.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(views)
}

/// A live server's row: seen now, since its session lives.
fn view(server: Identity, leader: bool, now_ms: u64) -> ServerView {
    ServerView {
        name: server.name,
        api: server.api,
        router: server.router,
        leader,
        last_seen_ms: now_ms,
        alive: true,
    }
}

/// The leader's name, as this server knows it.
pub fn leader_name(server: &Server) -> Option<String> {
    match server.leadership() {
        Leadership::Leading(_) => server.identity().map(|me| me.name.clone()),
        Leadership::Following { leader } => leader,
    }
}
