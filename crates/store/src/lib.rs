//! ebb's state store: a versioned key-value log with compare-and-swap and watch.
//!
//! This is etcd's data model (ARCHITECTURE.md, principle 4). Every write gets a new, strictly
//! increasing store *revision*; a key remembers the revision that created it and the revision
//! that last modified it; writes can be made conditional on either ([`Expect`]); and a reader
//! can ask for every change after a revision it has seen ([`KvStore::changes_since`]), which
//! is how controllers resume a watch after a restart without missing anything.
//!
//! Controllers program against the [`KvStore`] trait and never see SQL or gRPC. Two backends
//! implement it and pass one conformance suite (`tests/conformance.rs`): the embedded
//! [`SqliteStore`] (one SQLite table, as kine does it) and [`EtcdStore`], an etcd cluster, for a
//! highly available control plane. Servers sharing an etcd elect one leader
//! ([`EtcdStore::campaign`]); a leader writes through a [`FencedStore`], so that its writes fail
//! once it is deposed.
//!
//! - [`watch_changes`] turns `changes_since` into a long-poll: return at once if there is
//!   something new, otherwise sleep until the next local write or a timeout.
//! - [`KvStoreJsonExt`] stores and loads serde types as JSON.

mod blocking;
mod error;
pub mod etcd;
mod fenced;
mod sqlite;
mod typed;
mod watch;

pub use error::StoreError;
pub use etcd::EtcdStore;
pub use fenced::{Fence, FencedStore, Leadership};
pub use sqlite::SqliteStore;
pub use typed::KvStoreJsonExt;
pub use watch::{watch_changes, WATCH_BATCH_LIMIT};

use std::fmt;

// === types ===

/// The live value of a key, as etcd reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key, e.g. `services/web`.
    pub key: String,
    /// The stored bytes, opaque to the store.
    pub value: Vec<u8>,
    /// Revision of the write that created this incarnation of the key (a put after a delete
    /// starts a new incarnation). Lets a reader tell "changed" from "deleted and recreated".
    pub create_revision: u64,
    /// Revision of the write that produced this value; what [`Expect::ModRevision`] compares.
    pub mod_revision: u64,
}

/// The condition a write places on the current state of its key (compare-and-swap).
///
/// Read a key, decide, then write with `Expect::ModRevision(read.mod_revision)`: if anyone
/// wrote in between, the write fails with [`StoreError::Conflict`] instead of losing their
/// update. That is how level-triggered controllers stay correct when several run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// No condition.
    Any,
    /// The key must have no live value (create-only).
    Absent,
    /// The key must be live and last modified at exactly this revision.
    ModRevision(u64),
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Any => f.write_str("any state"),
            Expect::Absent => f.write_str("absent"),
            Expect::ModRevision(rev) => write!(f, "mod_revision {rev}"),
        }
    }
}

/// One write inside a [`KvStore::txn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Set `key` to `value` if `expect` holds.
    Put {
        /// Key to write.
        key: String,
        /// New value.
        value: Vec<u8>,
        /// Condition on the key's state before this op.
        expect: Expect,
    },
    /// Remove `key` if `expect` holds.
    Delete {
        /// Key to remove.
        key: String,
        /// Condition on the key's state before this op.
        expect: Expect,
    },
    /// Write nothing, but fail the whole transaction unless `expect` holds for `key`: how a
    /// leader fences its writes on the leader key ([`FencedStore`]).
    Check {
        /// Key to check.
        key: String,
        /// Condition on the key's state.
        expect: Expect,
    },
}

impl Op {
    /// A put op; shorthand for building transactions.
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>, expect: Expect) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
            expect,
        }
    }

    /// A delete op; shorthand for building transactions.
    pub fn delete(key: impl Into<String>, expect: Expect) -> Op {
        Op::Delete {
            key: key.into(),
            expect,
        }
    }

    /// A check op; shorthand for building transactions.
    pub fn check(key: impl Into<String>, expect: Expect) -> Op {
        Op::Check {
            key: key.into(),
            expect,
        }
    }

    /// The key this op writes or checks.
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key, .. } | Op::Check { key, .. } => key,
        }
    }

    /// The condition this op places on its key.
    pub fn expect(&self) -> Expect {
        match self {
            Op::Put { expect, .. } | Op::Delete { expect, .. } | Op::Check { expect, .. } => {
                *expect
            }
        }
    }

    /// Does this op write (a put or a delete, not a check)?
    pub fn writes(&self) -> bool {
        !matches!(self, Op::Check { .. })
    }
}

/// One change seen by a watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// The key was created or updated; carries the new value.
    Put(KeyValue),
    /// The key was deleted at `revision`.
    Delete {
        /// The deleted key.
        key: String,
        /// Revision of the delete.
        revision: u64,
    },
}

impl WatchEvent {
    /// The revision of this change; resume a watch from the last one seen.
    pub fn revision(&self) -> u64 {
        match self {
            WatchEvent::Put(kv) => kv.mod_revision,
            WatchEvent::Delete { revision, .. } => *revision,
        }
    }

    /// The key this change is about.
    pub fn key(&self) -> &str {
        match self {
            WatchEvent::Put(kv) => &kv.key,
            WatchEvent::Delete { key, .. } => key,
        }
    }
}

// === trait KvStore ===

/// A versioned key-value store with etcd's semantics.
///
/// Methods are synchronous, and both backends run their I/O off tokio's async workers: SQLite's
/// on the calling thread after `block_in_place` has handed the worker's other tasks to another
/// thread, etcd's on the store's own small runtime while the caller waits the same way. So a
/// controller pass reads like the plain sequence of reads and writes it is, and a slow disk or
/// an unreachable etcd holds up only the task that asked. A call to etcd has a deadline
/// ([`etcd::members::CALL_TIMEOUT`] per member) and then fails as [`StoreError::Unavailable`].
///
/// Revisions start at 1, increase strictly with every successful transaction, and are never
/// reused, not even after compaction or a restart. The ops of one transaction may share one
/// revision (etcd) or get one each (SQLite); callers assume neither.
pub trait KvStore: Send + Sync + 'static {
    /// The live value of `key`, or `None` if it does not exist.
    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// All live keys with this prefix, sorted by key, and the store revision they were read at.
    ///
    /// Start a watch with `after` = that revision to see every later change exactly once.
    fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, u64), StoreError>;

    /// The live keys with this prefix, sorted, without their values: what a sweep over keys
    /// with large values (the forecast's kept days) reads. The default reads the values too.
    fn list_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.list(prefix)?.0.into_iter().map(|kv| kv.key).collect())
    }

    /// Set `key` to `value` if `expect` holds; returns the new revision.
    fn put(&self, key: &str, value: &[u8], expect: Expect) -> Result<u64, StoreError>;

    /// Delete `key` if `expect` holds; returns the revision of the delete, or `None` if the key
    /// was already absent and the condition allowed that (no revision is used then).
    fn delete(&self, key: &str, expect: Expect) -> Result<Option<u64>, StoreError>;

    /// All ops atomically in one transaction or none. A key that two ops write fails with
    /// [`StoreError::DuplicateKey`] before anything is checked (an [`Op::Check`] may name a
    /// key another op writes).
    ///
    /// Every condition is checked against the state before the transaction (no key is written
    /// twice, so no op changes what a later one checks). Returns the last revision written, or
    /// the current store revision if no op wrote anything (an empty list, only checks, or only
    /// deletes of absent keys).
    fn txn(&self, ops: Vec<Op>) -> Result<u64, StoreError>;

    /// The latest revision ever assigned (0 for a new store).
    fn revision(&self) -> Result<u64, StoreError>;

    /// Changes to keys under `prefix` with revision > `after`, in revision order, at most `limit`.
    ///
    /// Fails with [`StoreError::Compacted`] if `after` is older than the compacted revision,
    /// since changes in between may be gone; the caller must `list` again and resume from there.
    fn changes_since(
        &self,
        prefix: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<WatchEvent>, StoreError>;

    /// A receiver carrying the latest revision; it changes after every committed write made
    /// through this store. It is a wake-up, not a data channel: read the changes with
    /// [`KvStore::changes_since`].
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64>;

    /// Drop superseded values and tombstones at or below `revision`, keeping the live value of
    /// every key. Afterwards `changes_since` with `after < revision` fails with `Compacted`.
    fn compact(&self, revision: u64) -> Result<(), StoreError>;

    /// What this store is, for people: `sqlite /var/lib/ebb/state.db`, `etcd at a:2379,b:2379`.
    fn describe(&self) -> String;

    /// How the store is doing, for `ebb status`: `sqlite PATH`, or `etcd 3 members, healthy`.
    fn health(&self) -> Result<String, StoreError>;

    /// Most operations one transaction may hold (etcd refuses more than its `--max-txn-ops`);
    /// callers that batch split or stop at it.
    fn max_txn_ops(&self) -> usize {
        usize::MAX
    }
}

/// etcd's default `--max-txn-ops`.
pub const ETCD_MAX_TXN_OPS: usize = 128;
