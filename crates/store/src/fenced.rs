//! Fencing: a leader's writes that fail once it no longer leads.
//!
//! A leader can be deposed without knowing it: frozen (SIGSTOP, a long GC-like pause, a VM
//! migration) while its lease expired and another server took over. When it wakes, its
//! controller pass is still running on what it read before. Every write of that pass goes
//! through a [`FencedStore`], which adds an [`Op::Check`] of the leader key's revision to the
//! transaction, so etcd itself refuses the stale leader's writes ([`StoreError::Fenced`]).
//! This is the fencing token of Kleppmann's "How to do distributed locking", with the leader
//! key's revision as the token (what etcd's election API calls `LeaderKey.rev`).

use std::sync::Arc;

use tokio::sync::watch;

use crate::{Expect, KeyValue, KvStore, Op, StoreError, WatchEvent};

/// Proof of leadership: the leader key and the revision at which this server created it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The leader key, e.g. `control/leader`.
    pub key: String,
    /// Its mod revision when this server won it.
    pub revision: u64,
}

impl Fence {
    /// The check that every fenced transaction carries.
    pub fn check(&self) -> Op {
        Op::check(&self.key, Expect::ModRevision(self.revision))
    }
}

/// What one server knows about who leads the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leadership {
    /// This server leads. `None`: it is alone (the embedded store), nothing to fence on.
    Leading(Option<Fence>),
    /// Another server leads (its name, if known), or nobody does yet.
    Following {
        /// The leader's name.
        leader: Option<String>,
    },
}

impl Leadership {
    /// A channel that says, forever, that this server leads alone (the embedded store).
    pub fn alone() -> watch::Receiver<Leadership> {
        let (tx, rx) = watch::channel(Leadership::Leading(None));
        // The receiver keeps the last value after the sender is gone.
        drop(tx);
        rx
    }
}

/// A [`KvStore`] whose every write also checks the leader's [`Fence`].
pub struct FencedStore {
    inner: Arc<dyn KvStore>,
    fence: Fence,
}

impl FencedStore {
    /// Writes to `inner`, each fenced on `fence`.
    pub fn new(inner: Arc<dyn KvStore>, fence: Fence) -> FencedStore {
        FencedStore { inner, fence }
    }

    /// A conflict on the leader key means the fence failed.
    fn fenced(&self, err: StoreError) -> StoreError {
        match err {
            StoreError::Conflict { key, .. } if key == self.fence.key => StoreError::Fenced { key },
            other => other,
        }
    }

    fn fenced_txn(&self, mut ops: Vec<Op>) -> Result<u64, StoreError> {
        ops.insert(0, self.fence.check());
        self.inner.txn(ops).map_err(|err| self.fenced(err))
    }
}

impl KvStore for FencedStore {
    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.inner.get(key)
    }

    fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, u64), StoreError> {
        self.inner.list(prefix)
    }

    fn list_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list_keys(prefix)
    }

    fn put(&self, key: &str, value: &[u8], expect: Expect) -> Result<u64, StoreError> {
        self.fenced_txn(vec![Op::put(key, value, expect)])
    }

    fn delete(&self, key: &str, expect: Expect) -> Result<Option<u64>, StoreError> {
        // A transaction does not say whether its delete found the key, so pin the key first:
        // absent needs no write (and none is fenced); present is deleted at the revision read.
        let Some(current) = self.inner.get(key)? else {
            return match expect {
                Expect::ModRevision(_) => Err(StoreError::Conflict {
                    key: key.to_string(),
                    expected: expect.to_string(),
                    actual: None,
                }),
                Expect::Any | Expect::Absent => Ok(None),
            };
        };
        let pinned = match expect {
            Expect::Any => Expect::ModRevision(current.mod_revision),
            other => other,
        };
        self.fenced_txn(vec![Op::delete(key, pinned)]).map(Some)
    }

    fn txn(&self, ops: Vec<Op>) -> Result<u64, StoreError> {
        self.fenced_txn(ops)
    }

    fn revision(&self) -> Result<u64, StoreError> {
        self.inner.revision()
    }

    fn changes_since(
        &self,
        prefix: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<WatchEvent>, StoreError> {
        self.inner.changes_since(prefix, after, limit)
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.subscribe()
    }

    fn compact(&self, revision: u64) -> Result<(), StoreError> {
        self.inner.compact(revision)
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn health(&self) -> Result<String, StoreError> {
        self.inner.health()
    }

    fn max_txn_ops(&self) -> usize {
        // One op of each transaction is the fence.
        self.inner.max_txn_ops().saturating_sub(1)
    }
}
