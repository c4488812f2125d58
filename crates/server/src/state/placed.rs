//! What is placed on each node, read from the store once per change of the instances and
//! shared by every agent's heartbeat and long-poll.
//!
//! Each of those answers with its own node's assignments. Listing and decoding every
//! assignment of the cluster per request cost ~5.5 µs per assignment, so 1,000 agents
//! heartbeating over 300 instances saturated two cores (`bench/heartbeats.sh 1000 20 300`).
//! Other writes (statuses, events, nodes) do not touch assignments: a cheap look at the
//! store's change log tells them apart, and the index is rebuilt only when an instance changed.

use crate::state::keys::{self, INSTANCES};
use ebb_core::Assignment;
use ebb_store::{KvStore, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Every node's assignments as of one store revision.
#[derive(Debug, Default)]
pub struct Placed {
    /// The store revision this index is known to be current at.
    pub revision: u64,
    /// The latest revision at which an instance changed (created, updated or deleted), as far
    /// as this index knows: the long-poll answers agents that saw an older one.
    pub instances_revision: u64,
    /// Shared between indexes of revisions that changed no instance.
    by_node: Arc<HashMap<String, Vec<Assignment>>>,
}

impl Placed {
    /// `node`'s assignments.
    pub fn on(&self, node: &str) -> Vec<Assignment> {
        self.by_node.get(node).cloned().unwrap_or_default()
    }

    fn build(assignments: Vec<keys::Versioned<Assignment>>, revision: u64, changed: u64) -> Self {
        let mut by_node: HashMap<String, Vec<Assignment>> = HashMap::new();
        for a in assignments {
            by_node
                .entry(a.value.node.clone())
                .or_default()
                .push(a.value);
        }
        Placed {
            revision,
            instances_revision: changed,
            by_node: Arc::new(by_node),
        }
    }
}

/// The shared index; see the module doc.
pub struct PlacedIndex {
    /// The store's latest revision, announced after every write (read without a query).
    revisions: watch::Receiver<u64>,
    current: Mutex<Option<Arc<Placed>>>,
}

impl PlacedIndex {
    /// An empty index that follows `store`'s revisions; the first [`PlacedIndex::get`] builds it.
    pub fn new(store: &dyn KvStore) -> PlacedIndex {
        PlacedIndex {
            revisions: store.subscribe(),
            current: Mutex::new(None),
        }
    }

    /// The index, current as of the latest write the store announced.
    pub fn get(&self, store: &dyn KvStore) -> Result<Arc<Placed>, StoreError> {
        let latest = *self.revisions.borrow();
        // One request refreshes at a time; the others wait and share its result.
        let mut current = crate::lock(&self.current);
        if let Some(placed) = current.as_ref() {
            if placed.revision >= latest {
                return Ok(placed.clone());
            }
            match store.changes_since(INSTANCES, placed.revision, 1) {
                Ok(changes) if changes.is_empty() => {
                    let fresher = Arc::new(Placed {
                        revision: latest,
                        instances_revision: placed.instances_revision,
                        by_node: placed.by_node.clone(),
                    });
                    *current = Some(fresher.clone());
                    return Ok(fresher);
                }
                Ok(_) | Err(StoreError::Compacted { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let (assignments, revision) = keys::assignments(store)?;
        // Without a known previous state, take everything as changed now.
        let placed = Arc::new(Placed::build(assignments, revision, revision));
        *current = Some(placed.clone());
        Ok(placed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebb_core::{DesiredState, ServiceSpec};
    use ebb_store::{Expect, SqliteStore};

    fn place(store: &dyn KvStore, id: &str, node: &str) {
        let a = Assignment {
            id: id.into(),
            service: "web".into(),
            node: node.into(),
            generation: 0,
            version: "v1".into(),
            spec: ServiceSpec::new("web", vec!["true".into()]),
            desired: DesiredState::Run,
            created_ms: 1,
            task: None,
            placement: None,
        };
        store
            .put(&keys::instance(id), &keys::encode(&a), Expect::Any)
            .unwrap();
    }

    #[test]
    fn the_index_is_rebuilt_only_when_an_instance_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("state.db")).unwrap();
        let index = PlacedIndex::new(&store);
        place(&store, "web-1", "a");
        let first = index.get(&store).unwrap();
        assert_eq!(first.on("a").len(), 1);
        assert!(first.on("a")[0].generation > 0, "generation from the key");
        assert!(first.on("b").is_empty());
        assert!(Arc::ptr_eq(&first, &index.get(&store).unwrap()), "no write");

        // A write elsewhere moves the revision on but shares the same assignments.
        store.put("status/web-1", b"{}", Expect::Any).unwrap();
        let later = index.get(&store).unwrap();
        assert!(later.revision > first.revision);
        assert_eq!(later.instances_revision, first.instances_revision);
        assert!(Arc::ptr_eq(&later.by_node, &first.by_node));

        // An instance placed, then one deleted: each is seen, with a newer instances revision.
        place(&store, "web-2", "b");
        let placed = index.get(&store).unwrap();
        assert_eq!(placed.on("b").len(), 1);
        assert!(placed.instances_revision > later.revision);
        store.delete(&keys::instance("web-1"), Expect::Any).unwrap();
        let deleted = index.get(&store).unwrap();
        assert!(deleted.on("a").is_empty());
        assert!(deleted.instances_revision > placed.instances_revision);
    }
}
