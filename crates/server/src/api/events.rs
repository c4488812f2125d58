//! `GET /v1/events`: the most recent events, or those after a sequence number (a long-poll).
//! `GET /v1/events/stream`: the same as server-sent events, for the dashboard and `ebb events -f`.

use super::{ApiQuery, ApiResult};
use crate::state::keys::{self, EVENTS};
use crate::Server;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::Json;
use ebb_core::api::EventsResponse;
use ebb_core::Event;
use ebb_store::{watch_changes, StoreError, WatchEvent};
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

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
    let events = kvs.iter().skip(skip).filter_map(readable).collect();
    Ok(EventsResponse {
        last_seq: revision,
        events,
    })
}

/// The event a record holds, with its sequence number. A newer server's kind of event reads
/// as `unknown` (`EventKind::Unknown`); a record this server cannot read at all (damaged, or a
/// newer shape) is skipped with a warning: it must not stop every reader at it.
fn readable(kv: &ebb_store::KeyValue) -> Option<Event> {
    match keys::decode::<Event>(kv) {
        Ok(mut event) => {
            event.seq = kv.mod_revision;
            Some(event)
        }
        Err(e) => {
            tracing::warn!(key = %kv.key, error = %e, "skipping an unreadable event");
            None
        }
    }
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
            events.extend(readable(&kv));
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

/// At most this many event streams open at once on one server. Each holds a connection and a
/// task; a dashboard tab or an `ebb events -f` holds one.
pub const MAX_STREAMS: usize = 256;

/// A comment this often keeps a quiet stream open through proxies: "every 15 seconds or so",
/// as the HTML standard's server-sent events section advises.
pub const STREAM_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How long a browser waits before reconnecting a dropped stream (it sends `Last-Event-ID`, so
/// nothing is lost or repeated): 1 s, where browsers default to about 3 s.
const STREAM_RETRY: Duration = Duration::from_secs(1);

/// Events sent but not yet written to the connection, per stream: a slow reader stops the
/// stream's reads of the store rather than growing a queue.
const STREAM_BUFFER: usize = 64;

/// The open streams' slots, and their common end when the API stops (a stream never ends by
/// itself, and the API's graceful stop waits for open responses).
pub struct StreamSlots {
    slots: Arc<Semaphore>,
    closing: CancellationToken,
}

impl Default for StreamSlots {
    fn default() -> StreamSlots {
        StreamSlots {
            slots: Arc::new(Semaphore::new(MAX_STREAMS)),
            closing: CancellationToken::new(),
        }
    }
}

impl StreamSlots {
    /// Lowers the cap to `cap` streams (a quarter of the API's connections, so that streams
    /// can never hold the connections agents heartbeat on). Called once, before any stream.
    pub fn cap_at(&self, cap: usize) {
        let extra = MAX_STREAMS.saturating_sub(cap.max(1));
        self.slots.forget_permits(extra);
    }

    /// Ends every open stream (the API is stopping).
    pub fn close(&self) {
        self.closing.cancel();
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Resume after this sequence number (a browser sends `Last-Event-ID` instead).
    after: Option<u64>,
    /// Without a cursor, start with this many of the latest events (default 100).
    limit: Option<usize>,
}

/// Where a stream starts: after a sequence number, or with the latest `n` events.
enum Start {
    After(u64),
    Latest(usize),
}

/// `GET /v1/events/stream`: every event as a server-sent event whose `id` is its sequence
/// number, so that a reconnecting browser resumes where it left off.
pub async fn stream(
    State(server): State<Server>,
    session: Option<axum::Extension<crate::ui::SessionRead>>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> Result<axum::response::Response, super::ApiError> {
    let start = match last_event_id(&headers)?.or(q.after) {
        Some(after) => Start::After(after),
        None => Start::Latest(q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT)),
    };
    let permit = server
        .streams()
        .slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            super::ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("too many open event streams on this server (at most a quarter of the API's connections, and {MAX_STREAMS}); close a dashboard tab or an `ebb events -f`"),
            )
        })?;
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let _ = tx.try_send(Ok(SseEvent::default().retry(STREAM_RETRY)));
    let session = session.map(|axum::Extension(s)| s.session);
    tokio::spawn(pump(server, start, session, tx));
    let keep_alive = KeepAlive::new().interval(STREAM_KEEP_ALIVE);
    let body = Holding {
        events: ReceiverStream::new(rx),
        _slot: permit,
    };
    let sse = Sse::new(body).keep_alive(keep_alive);
    Ok(axum::response::IntoResponse::into_response(sse))
}

/// The `Last-Event-ID` a reconnecting browser sends: an event's sequence number.
fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, super::ApiError> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    text.parse().map(Some).map_err(|_| {
        super::ApiError::bad_request(format!(
            "bad Last-Event-ID {text:?}: it is an event's sequence number"
        ))
    })
}

/// Sends events into `tx` as they are recorded, until the client goes, the API stops, the
/// dashboard session that opened it ends (checked at least every [`MAX_WAIT`]) or the store
/// fails (the client then reconnects, maybe to another server).
async fn pump(
    server: Server,
    start: Start,
    session: Option<String>,
    tx: mpsc::Sender<Result<SseEvent, Infallible>>,
) {
    let closing = server.streams().closing.clone();
    let out = Outlet {
        tx: &tx,
        closing: &closing,
    };
    let mut after = match start {
        Start::After(after) => after,
        Start::Latest(limit) => match latest(&server, limit) {
            Ok(first) if out.send_all(&first.events).await => first.last_seq,
            Ok(_) => return,
            Err(e) => return tracing::debug!(error = %e.message(), "event stream ends"),
        },
    };
    loop {
        let live = |s: &String| server.sessions().valid(s, std::time::Instant::now());
        if !session.as_ref().is_none_or(live) {
            return;
        }
        let changes = tokio::select! {
            _ = tx.closed() => return,
            _ = closing.cancelled() => return,
            changes = watch_changes(server.store(), EVENTS, after, MAX_WAIT) => changes,
        };
        // Again after the wait: nothing is sent past a logout.
        if !session.as_ref().is_none_or(live) {
            return;
        }
        let events = match changes.map(|c| collect(c, after, MAX_LIMIT)) {
            Ok(Ok((events, last_seq))) => {
                after = last_seq;
                events
            }
            Err(StoreError::Compacted { .. }) => match latest(&server, DEFAULT_LIMIT) {
                Ok(fresh) => {
                    let sent = after;
                    after = fresh.last_seq;
                    fresh.events.into_iter().filter(|e| e.seq > sent).collect()
                }
                Err(_) => return,
            },
            Ok(Err(e)) | Err(e) => return tracing::debug!(error = %e, "event stream ends"),
        };
        if !out.send_all(&events).await {
            return;
        }
    }
}

/// A stream's body with its slot: the slot is free only when the response is dropped, that is
/// when its connection ends, so that streams never hold more connections than their cap (a
/// reader that stalls keeps its connection, and its slot, until it closes it).
struct Holding {
    events: ReceiverStream<Result<SseEvent, Infallible>>,
    _slot: OwnedSemaphorePermit,
}

impl tokio_stream::Stream for Holding {
    type Item = Result<SseEvent, Infallible>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::pin::Pin::new(&mut self.events).poll_next(cx)
    }
}

/// How long one event may wait for room in a stream's buffer: a client that reads nothing for
/// this long loses its stream (and its slot), as the API's header read timeout bounds a client
/// that sends nothing.
const STREAM_SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a stream's events go, and the API's stop that ends it.
struct Outlet<'a> {
    tx: &'a mpsc::Sender<Result<SseEvent, Infallible>>,
    closing: &'a CancellationToken,
}

impl Outlet<'_> {
    /// Sends `events`; false once the client has gone, stalled or the API stops.
    async fn send_all(&self, events: &[Event]) -> bool {
        for event in events {
            let Ok(message) = SseEvent::default()
                .id(event.seq.to_string())
                .json_data(event)
            else {
                continue;
            };
            let sent = tokio::select! {
                _ = self.closing.cancelled() => return false,
                sent = tokio::time::timeout(STREAM_SEND_TIMEOUT, self.tx.send(Ok(message))) => sent,
            };
            if !matches!(sent, Ok(Ok(()))) {
                return false;
            }
        }
        true
    }
}
