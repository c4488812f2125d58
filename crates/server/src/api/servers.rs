//! `GET /v1/servers`: the control plane's servers, from the registry their sessions keep in
//! etcd; on the embedded store, this server alone.

use axum::extract::State;
use axum::Json;
use ebb_core::api::ServerView;
use ebb_store::Leadership;

use super::ApiResult;
use crate::{now_ms, Server};

/// A server's registry entry, as it puts it under its session.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ServerRecord {
    /// Its name.
    pub name: String,
    /// Where its API listens.
    pub api: String,
    /// Where its load balancers listen.
    pub router: String,
}

pub async fn list(State(server): State<Server>) -> ApiResult<Vec<ServerView>> {
    Ok(Json(servers(&server)?))
}

/// Every server whose session lives, sorted by name.
pub fn servers(server: &Server) -> Result<Vec<ServerView>, super::ApiError> {
    let now = now_ms();
    let Some(cluster) = server.cluster() else {
        let me = server.identity();
        return Ok(vec![ServerView {
            name: me.map_or_else(String::new, |m| m.name.clone()),
            api: me.map_or_else(String::new, |m| m.api.clone()),
            router: me.map_or_else(String::new, |m| m.router.clone()),
            leader: true,
            last_seen_ms: now,
            alive: true,
        }]);
    };
    let leader = cluster.leader()?;
    let mut views: Vec<ServerView> = cluster
        .servers()?
        .into_iter()
        .filter_map(|(name, record)| {
            let record: ServerRecord = serde_json::from_slice(&record).ok()?;
            Some(ServerView {
                leader: leader.as_deref() == Some(name.as_str()),
                name,
                api: record.api,
                router: record.router,
                last_seen_ms: now,
                alive: true,
            })
        })
        .collect();
    views.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(views)
}

/// The leader's name, as this server knows it.
pub fn leader_name(server: &Server) -> Option<String> {
    match server.leadership() {
        Leadership::Leading(_) => server.identity().map(|me| me.name.clone()),
        Leadership::Following { leader } => leader,
    }
}
