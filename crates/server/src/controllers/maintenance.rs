//! Housekeeping: compacts the store so that its history does not grow without bound.

use crate::{run_loop, Server};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the store is compacted.
pub const COMPACT_INTERVAL: Duration = Duration::from_secs(60);
/// Revisions of history kept behind the newest: enough for watchers that fell a little behind
/// to resume (etcd's auto-compaction keeps a window the same way); older ones re-list.
pub const KEEP_REVISIONS: u64 = 10_000;

/// Compacts the store every [`COMPACT_INTERVAL`] until `stop` is cancelled.
pub async fn run(server: Server, stop: CancellationToken) {
    while run_loop::next(&stop, tokio::time::sleep(COMPACT_INTERVAL))
        .await
        .is_some()
    {
        let pass = server.clone();
        run_loop::blocking_pass("store compaction", move || compact(&pass)).await;
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
