//! `GET /v1/events`: the most recent events, or those after a sequence number (long-poll for `-f`).

use super::{ApiQuery, ApiResult};
use crate::state::keys::{self, EVENTS};
use crate::Server;
use axum::extract::State;
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
    ApiQuery(q): ApiQuery<EventsQuery>,
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
    let (events, last_seq) = collect(changes, q.after, limit)?;
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

/// Turns a batch of changes under `events/` into at most `limit` events and the cursor to resume
/// from. The cursor advances past every change consumed, deletions of trimmed events included: a
/// batch of nothing but deletions must still move it, or a follower would ask for it forever.
fn collect(
    changes: Vec<WatchEvent>,
    after: u64,
    limit: usize,
) -> Result<(Vec<Event>, u64), StoreError> {
    let mut events = Vec::new();
    let mut last_seq = after;
    for change in changes {
        if events.len() == limit {
            break;
        }
        last_seq = change.revision();
        if let WatchEvent::Put(kv) = change {
            let mut event: Event = keys::decode(&kv)?;
            event.seq = kv.mod_revision;
            events.push(event);
        }
    }
    Ok((events, last_seq))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebb_core::EventKind;
    use ebb_store::KeyValue;

    fn put(rev: u64, message: &str) -> WatchEvent {
        let event = Event::new(0, EventKind::Warning, message);
        WatchEvent::Put(KeyValue {
            key: format!("events/{rev:020}"),
            value: keys::encode(&event),
            create_revision: rev,
            mod_revision: rev,
        })
    }

    #[test]
    fn a_batch_of_only_deletions_still_moves_the_cursor() {
        let deletes = (11..=15)
            .map(|r| WatchEvent::Delete {
                key: format!("events/{r}"),
                revision: r,
            })
            .collect();
        let (events, last) = collect(deletes, 10, 3).unwrap();
        assert!(events.is_empty());
        assert_eq!(last, 15);
    }

    #[test]
    fn the_limit_counts_events_and_the_cursor_stops_after_the_last_one_returned() {
        let batch = vec![
            WatchEvent::Delete {
                key: "events/1".into(),
                revision: 21,
            },
            put(22, "a"),
            WatchEvent::Delete {
                key: "events/2".into(),
                revision: 23,
            },
            put(24, "b"),
            put(25, "c"),
        ];
        let (events, last) = collect(batch, 20, 2).unwrap();
        assert_eq!(
            events
                .iter()
                .map(|e| e.message.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(events[1].seq, 24);
        assert_eq!(last, 24);
    }
}
