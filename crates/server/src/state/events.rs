//! The event log: what happened and why, kept in the store under `events/` and trimmed to the
//! most recent [`MAX_EVENTS`].

use crate::state::keys::{self, EVENTS};
use ebb_core::Event;
use ebb_store::{Expect, KvStore, Op, StoreError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Events kept; older ones are dropped. Kubernetes keeps events for one hour; a count bound keeps
/// the store small whatever the event rate.
pub const MAX_EVENTS: u64 = 10_000;
/// Trim once every this many events, so that trimming costs little per event.
const TRIM_EVERY: u64 = 256;

/// The event log: numbers events in order under [`EVENTS`] and keeps the last [`MAX_EVENTS`].
pub struct EventLog {
    store: Arc<dyn KvStore>,
    next: AtomicU64,
}

impl EventLog {
    /// Opens the log, continuing the numbering after the last stored event.
    pub fn open(store: Arc<dyn KvStore>) -> Result<EventLog, StoreError> {
        let next = next_number(store.as_ref())?;
        Ok(EventLog {
            store,
            next: AtomicU64::new(next),
        })
    }

    /// Records an event; failures are logged, never fatal (an event must not stop a decision).
    pub fn record(&self, event: Event) {
        self.record_all(vec![event]);
    }

    /// Records events in one transaction (one disk sync, however many events).
    pub fn record_all(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        for event in &events {
            log(event);
        }
        let mut trim_due = false;
        // Several servers may share the log (etcd): each number is taken create-only, and a
        // number another server took first sends this one past the last stored event.
        for _ in 0..RECORD_ATTEMPTS {
            let mut ops = Vec::with_capacity(events.len());
            for event in &events {
                let n = self.next.fetch_add(1, Ordering::Relaxed);
                trim_due |= n.is_multiple_of(TRIM_EVERY) && n > MAX_EVENTS;
                ops.push(Op::put(
                    format!("{EVENTS}{n:020}"),
                    keys::encode(event),
                    Expect::Absent,
                ));
            }
            match self.store.txn(ops) {
                Ok(_) => break,
                Err(StoreError::Conflict { .. }) => match next_number(self.store.as_ref()) {
                    Ok(next) => {
                        self.next.fetch_max(next, Ordering::Relaxed);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not record events");
                        break;
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "could not record events");
                    break;
                }
            }
        }
        if trim_due {
            let keep_from = self.next.load(Ordering::Relaxed).saturating_sub(MAX_EVENTS);
            if let Err(e) = self.trim(keep_from) {
                tracing::warn!(error = %e, "could not trim events");
            }
        }
    }

    /// Deletes events numbered below `keep_from`.
    fn trim(&self, keep_from: u64) -> Result<(), StoreError> {
        let (kvs, _) = self.store.list(EVENTS)?;
        let ops: Vec<Op> = kvs
            .into_iter()
            .filter(|kv| number(&kv.key).is_some_and(|n| n < keep_from))
            .map(|kv| Op::delete(kv.key, Expect::Any))
            .collect();
        if !ops.is_empty() {
            self.store.txn(ops)?;
        }
        Ok(())
    }
}

/// How often a batch of events is numbered again after another server took its numbers.
const RECORD_ATTEMPTS: usize = 5;

/// The number after the last stored event.
fn next_number(store: &dyn KvStore) -> Result<u64, StoreError> {
    let (kvs, _) = store.list(EVENTS)?;
    Ok(kvs.last().and_then(|kv| number(&kv.key)).unwrap_or(0) + 1)
}

fn number(key: &str) -> Option<u64> {
    key.strip_prefix(EVENTS)?.parse().ok()
}

/// Every event also goes to the server's log, named by its subject.
fn log(event: &Event) {
    let subject = event
        .instance
        .as_deref()
        .or(event.service.as_deref())
        .or(event.node.as_deref());
    match subject {
        Some(s) => tracing::info!(kind = event.kind.as_str(), "{s}: {}", event.message),
        None => tracing::info!(kind = event.kind.as_str(), "{}", event.message),
    }
}
