//! The control loops: each compares what the store wants with what runs and acts, level-
//! triggered (ARCHITECTURE.md, principle 1), its decisions pure where they are more than a
//! write. [`crate::plane::ControlPlane`] runs them; [`crate::run_loop`] is their shared loop.
//!
//! - [`instances`]: services against their instances: placement, rollouts, drains, moves, lost
//!   nodes.
//! - [`jobs`]: tasks to completion, in queue order (planned inside the `instances` pass).
//! - [`autoscale`]: instance counts against load.
//! - [`maintenance`]: store compaction.

pub mod autoscale;
pub mod forecast_history;
pub mod instances;
pub mod jobs;
pub mod learned;
pub mod maintenance;
pub mod recent_load;

/// A store in a fresh temporary directory, for the tests of what controllers keep in it.
#[cfg(test)]
pub(crate) fn temp_store() -> (tempfile::TempDir, ebb_store::SqliteStore) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = ebb_store::SqliteStore::open(&dir.path().join("state.db")).expect("a store");
    (dir, store)
}
