//! `GET /v1/events`: the most recent events, or those after a sequence number (long-poll for `-f`).

use super::ApiResult;
use crate::keys::{self, EVENTS};
use crate::Server;
use axum::extract::{Query, State};
use axum::Json;
use ebb_core::api::EventsResponse;
use ebb_core::Event;
use ebb_store::{watch_changes, StoreError, WatchEvent};
use serde::Deserialize;
use std::time::Duration;

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 10_000;
const MAX_WAIT: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
pub struct EventsQuery {
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
    #[serde(default)]
    wait_ms: u64,
}

pub async fn list(
    State(server): State<Server>,
    Query(q): Query<EventsQuery>,
) -> ApiResult<EventsResponse> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    if q.after == 0 {
        return Ok(Json(latest(&server, limit)?));
    }
    let wait = Duration::from_millis(q.wait_ms).min(MAX_WAIT);
    let changes = match watch_changes(server.store(), EVENTS, q.after, wait).await {
        Ok(changes) => changes,
        // Older than what the store keeps: start over from what is left.
        Err(StoreError::Compacted { .. }) => return Ok(Json(latest(&server, limit)?)),
        Err(e) => return Err(e.into()),
    };
    let mut events = Vec::new();
    for change in changes.into_iter().take(limit) {
        if let WatchEvent::Put(kv) = change {
            let mut event: Event = keys::decode(&kv)?;
            event.seq = kv.mod_revision;
            events.push(event);
        }
    }
    let last_seq = events.last().map_or(q.after, |e| e.seq);
    Ok(Json(EventsResponse { last_seq, events }))
}

fn latest(server: &Server, limit: usize) -> Result<EventsResponse, super::ApiError> {
    let (kvs, revision) = server.store().list(EVENTS)?;
    let skip = kvs.len().saturating_sub(limit);
    let events = kvs
        .iter()
        .skip(skip)
        .map(|kv| {
            let mut event: Event = keys::decode(kv)?;
            event.seq = kv.mod_revision;
            Ok(event)
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(EventsResponse {
        last_seq: revision,
        events,
    })
}
