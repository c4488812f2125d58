//! Housekeeping: compacts the store so that its history does not grow without bound.

use crate::Server;
use std::time::Duration;
use tokio::sync::watch;

/// How often the store is compacted.
pub const COMPACT_INTERVAL: Duration = Duration::from_secs(60);
/// Revisions of history kept behind the newest: enough for watchers that fell a little behind
/// to resume (etcd's auto-compaction keeps a window the same way); older ones re-list.
pub const KEEP_REVISIONS: u64 = 10_000;

/// Compacts the store every [`COMPACT_INTERVAL`] until `shutdown` turns true.
pub async fn run(server: Server, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(COMPACT_INTERVAL) => {}
            _ = shutdown.changed() => return,
        }
        let pass = server.clone();
        let result = tokio::task::spawn_blocking(move || compact(&pass)).await;
        if let Ok(Err(e)) = result {
            tracing::warn!(error = %e, "store compaction failed; will retry");
        }
    }
}

/// Drops history older than [`KEEP_REVISIONS`] behind the newest revision.
pub fn compact(server: &Server) -> Result<(), ebb_store::StoreError> {
    let revision = server.store().revision()?;
    if revision > KEEP_REVISIONS {
        server.store().compact(revision - KEEP_REVISIONS)?;
    }
    Ok(())
}
