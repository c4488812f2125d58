//! `GET /v1/metrics`: what the load balancer measured per service and per instance.
//! `POST /v1/traffic`: another server's load-balancer counters, for the leader's autoscaler
//! ([`crate::routing::peers`]).

use super::{ApiError, ApiJson, ApiQuery, ApiResult};
use crate::routing::traffic::{clamp_window, VIEW_WINDOW};
use crate::Server;
use axum::extract::State;
use axum::Json;
use ebb_core::traffic::{MetricsResponse, TrafficAck, TrafficReport};
use ebb_store::Leadership;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsQuery {
    /// Only this service.
    service: Option<String>,
    /// Window length, e.g. `10s` or `1m` (default 10 s; at most the 60 s kept).
    window: Option<String>,
}

pub async fn list(
    State(server): State<Server>,
    ApiQuery(q): ApiQuery<MetricsQuery>,
) -> ApiResult<MetricsResponse> {
    let window = match q.window.as_deref() {
        None => VIEW_WINDOW,
        Some(text) => ebb_core::parse_duration(text).map_err(|e| {
            ApiError::bad_request(format!("bad `window` {text:?}: {e}; e.g. window=10s"))
        })?,
    };
    let mut services = server
        .router()
        .map(|r| r.traffic(clamp_window(window)))
        .unwrap_or_default();
    if let Some(name) = &q.service {
        services.retain(|s| &s.service == name);
    }
    Ok(Json(MetricsResponse { services }))
}

/// Takes another server's counters. A request waiting there at a service with no instance
/// wakes this server's autoscaler, as one waiting here does. Answers whether this server
/// leads, so that a sender that reached a former leader looks the leader up again.
pub async fn report(
    State(server): State<Server>,
    ApiJson(report): ApiJson<TrafficReport>,
) -> ApiResult<TrafficAck> {
    if server.identity().is_some_and(|me| me.name == report.server) {
        // Its own load is counted from its own load balancer, never twice.
        return Err(ApiError::bad_request(format!(
            "a traffic report from {:?}, this server's own name",
            report.server
        )));
    }
    if !server.registry().live().contains(&report.server) {
        // Only the control plane's servers report: their number bounds what is kept.
        return Err(ApiError::bad_request(format!(
            "a traffic report from {:?}, which is not a server of this control plane (`ebb servers` lists them)",
            report.server
        )));
    }
    let waiting = server
        .peer_load()
        .ingest(&report, std::time::Instant::now())
        .map_err(ApiError::bad_request)?;
    if waiting {
        if let Some(router) = server.router() {
            router.demand().notify_one();
        }
    }
    let leading = matches!(server.leadership(), Leadership::Leading(_));
    Ok(Json(TrafficAck { leading }))
}
