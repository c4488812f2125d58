//! The store's one watch on its namespace: everything that changes in etcd, in order, into the
//! store's history, for as long as the store lives.
//!
//! etcd's watch stream neither reconnects nor says when it went quiet, so this loop owns both.
//! A stream that ends, fails, or says nothing for [`SILENCE`] (it asks for a progress report
//! every [`PROGRESS_EVERY`], which a live member answers at once) is dropped, and the watch is
//! opened again on the next member from the revision after the last one it delivered. History
//! compacted meanwhile is reported by etcd; readers from before it get `Compacted`.

use std::sync::Arc;
use std::time::Duration;

use tokio_stream::wrappers::ReceiverStream;

use super::pb::etcdserverpb as rpc;
use super::pb::etcdserverpb::watch_client::WatchClient;
use super::pb::etcdserverpb::watch_request::RequestUnion;
use super::pb::mvccpb::event::EventType;
use super::{prefix_end, revision, Inner};
use crate::WatchEvent;

/// How often the watch asks for a progress report, which proves the stream is alive.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// A stream silent this long (several unanswered progress requests) is given up.
const SILENCE: Duration = Duration::from_secs(2);

/// Pause before opening the watch again, so that an unreachable cluster is not spun on.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Watches until the store's runtime shuts down.
pub(crate) async fn run(inner: Arc<Inner>) {
    loop {
        let (index, channel) = inner.members.current();
        let from = inner.history().watched() + 1;
        match watch(&inner, channel, from).await {
            Ok(()) => tracing::debug!(member = index, "etcd watch ended; opening it again"),
            Err(reason) => {
                tracing::debug!(member = index, %reason, "etcd watch failed; opening it again")
            }
        }
        inner.members.failed(index);
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// One watch stream from revision `from`, until it ends or fails.
async fn watch(inner: &Inner, channel: tonic::transport::Channel, from: u64) -> Result<(), String> {
    let key = inner.full("");
    let create = rpc::WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(rpc::WatchCreateRequest {
            range_end: prefix_end(&key),
            key,
            start_revision: from as i64,
            progress_notify: true,
            ..Default::default()
        })),
    };
    let (requests, outgoing) = tokio::sync::mpsc::channel(4);
    requests.send(create).await.map_err(|e| e.to_string())?;
    let mut client = WatchClient::new(channel).max_decoding_message_size(super::MAX_MESSAGE_BYTES);
    let opened = tokio::time::timeout(
        super::members::CALL_TIMEOUT,
        client.watch(ReceiverStream::new(outgoing)),
    )
    .await
    .map_err(|_| "no answer to the watch request".to_string())?
    .map_err(|status| status.message().to_string())?;
    let mut stream = opened.into_inner();
    let mut progress = tokio::time::interval(PROGRESS_EVERY);
    let mut heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            message = stream.message() => {
                let response = match message {
                    Err(status) => return Err(status.message().to_string()),
                    Ok(None) => return Ok(()),
                    Ok(Some(response)) => response,
                };
                heard = tokio::time::Instant::now();
                apply(inner, response)?;
            }
            _ = tokio::time::sleep_until(heard + SILENCE) => {
                return Err(format!("silent for {} ms", SILENCE.as_millis()));
            }
            _ = progress.tick() => {
                let ask = rpc::WatchRequest {
                    request_union: Some(RequestUnion::ProgressRequest(rpc::WatchProgressRequest {})),
                };
                let _ = requests.try_send(ask);
            }
        }
    }
}

/// Takes one watch response into the history and wakes subscribers.
fn apply(inner: &Inner, response: rpc::WatchResponse) -> Result<(), String> {
    if response.compact_revision > 0 {
        let compacted = revision(response.compact_revision);
        inner.history().compacted(compacted);
        inner.alive_keys().lost();
        inner.notify.send_replace(compacted);
        return Err(format!("history compacted at revision {compacted}"));
    }
    if response.canceled {
        return Err(format!("watch cancelled: {}", response.cancel_reason));
    }
    if response.created {
        // The creation's header is the current revision, not what has been delivered.
        return Ok(());
    }
    // Only events move the history on. A progress report would say "nothing else up to the
    // header's revision", but etcd before 3.4.25 and 3.5.8 may send one to a watch that is
    // still catching up (etcd#15220), which would skip the changes it has yet to deliver; so a
    // report only proves the stream alive. An events response's header may also run ahead of
    // its events, so the last event's revision is what was delivered.
    let Some(watched) = response
        .events
        .last()
        .and_then(|e| e.kv.as_ref())
        .map(|kv| revision(kv.mod_revision))
    else {
        return Ok(());
    };
    let changes: Vec<WatchEvent> = response
        .events
        .into_iter()
        .filter_map(|event| change(inner, event))
        .collect();
    let alive: Vec<WatchEvent> = changes
        .iter()
        .filter(|c| c.key().starts_with(super::nodes::ALIVE_PREFIX))
        .cloned()
        .collect();
    let mut history = inner.history();
    history.append(changes, watched);
    let latest = history.watched();
    drop(history);
    // After the history: a reader seeding the keys replays the history under this lock.
    if !alive.is_empty() {
        inner.alive_keys().observe(&alive);
    }
    inner.notify.send_if_modified(|known| {
        let newer = latest > *known;
        if newer {
            *known = latest;
        }
        newer
    });
    Ok(())
}

/// One etcd event as the store's change (None for a key outside the namespace).
fn change(inner: &Inner, event: super::pb::mvccpb::Event) -> Option<WatchEvent> {
    let kv = event.kv?;
    if event.r#type == EventType::Delete as i32 {
        Some(WatchEvent::Delete {
            key: inner.local(&kv.key)?,
            revision: revision(kv.mod_revision),
        })
    } else {
        inner.key_value(kv).map(WatchEvent::Put)
    }
}
