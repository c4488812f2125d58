//! Long-polling watch on top of [`KvStore::changes_since`], the way kine does it: read the log
//! after a revision; if nothing is there, sleep until the store says it has a newer revision,
//! then read again. No change is ever pushed through a channel, so a slow or restarted
//! watcher can never miss one: it just resumes from the last revision it processed.

use std::time::Duration;

use tokio::time::Instant;

use crate::{KvStore, StoreError, WatchEvent};

/// The most changes one [`watch_changes`] call returns.
///
/// Bounds the memory and the response size of one long-poll after a long absence; the caller
/// calls again from the last revision it got. etcd's watch likewise splits big catch-ups into
/// fragments; 1,000 rows of a few KiB each stays within a few MiB.
pub const WATCH_BATCH_LIMIT: usize = 1000;

/// Changes under `prefix` after revision `after` (at most [`WATCH_BATCH_LIMIT`]), waiting up to
/// `timeout` for the first one. Returns an empty list on timeout.
///
/// Returns at once if changes are already there. Otherwise it wakes on every committed write of
/// the store (any key), re-reads, and returns as soon as one under `prefix` shows up.
/// Fails with [`StoreError::Compacted`] if `after` is older than the compacted revision.
pub async fn watch_changes(
    store: &dyn KvStore,
    prefix: &str,
    after: u64,
    timeout: Duration,
) -> Result<Vec<WatchEvent>, StoreError> {
    let now = Instant::now();
    // A timeout too large to represent means "wait as long as it takes"; a century will do.
    let deadline = now
        .checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600));
    // Subscribe before the first read: a write that lands between that read and the wait
    // still marks the receiver changed, so the wake-up cannot be lost.
    let mut revisions = store.subscribe();
    revisions.borrow_and_update();
    loop {
        let changes = store.changes_since(prefix, after, WATCH_BATCH_LIMIT)?;
        if !changes.is_empty() {
            return Ok(changes);
        }
        match tokio::time::timeout_at(deadline, revisions.changed()).await {
            Ok(Ok(())) => {
                revisions.borrow_and_update();
            }
            // The store stopped announcing writes; all that is left is one last look at the
            // deadline, so callers still see the changes and never spin.
            Ok(Err(_closed)) => {
                tokio::time::sleep_until(deadline).await;
                return store.changes_since(prefix, after, WATCH_BATCH_LIMIT);
            }
            Err(_elapsed) => return Ok(Vec::new()),
        }
    }
}
