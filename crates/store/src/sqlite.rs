//! The embedded backend: etcd's model on one SQLite table, the way kine does it.
//!
//! Every write appends a row to `log`; the row id *is* the store revision (AUTOINCREMENT, so
//! a revision is never reused, not even after compaction removed the newest rows). A key's
//! current value is its newest row, unless that row is a tombstone (`deleted = 1`). Each row
//! names the revision it replaces (`prev_revision`, 0 for the first row of a key), and a
//! UNIQUE (key, prev_revision) index guarantees that two writers who both read revision N can
//! not both append a successor of N: that is compare-and-swap enforced by the database itself,
//! so it holds even if a second process opens the file.
//!
//! SQLite runs in WAL mode with `synchronous=FULL`: a write is acknowledged only after its
//! commit is fsynced, so a crash (kill -9, power loss) never loses an acknowledged write.

mod query;
mod schema;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::watch;

use crate::{Expect, KeyValue, KvStore, Op, StoreError, WatchEvent};

use query::{LogRow, PrefixRange};

/// A [`KvStore`] in one SQLite file.
///
/// One connection behind a mutex: SQLite allows one writer at a time anyway, and a single
/// connection makes every read see every write of this process immediately. Reads and writes
/// are short (an index lookup, an fsync), so the lock is never held for long.
///
/// Open a file once per process and share the store (e.g. in an `Arc`). A second opening, or
/// another process, still gets correct reads and compare-and-swap (SQLite's file lock and the
/// unique index see to that), but [`KvStore::subscribe`] only wakes for writes made through
/// this value; others show up at the next read.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// Latest committed revision; subscribers wake on every change.
    notify: watch::Sender<u64>,
    path: PathBuf,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Open (or create) the store at `path`, creating the schema if needed.
    ///
    /// Fails with [`StoreError::Corrupt`] if the file holds a schema this version does not
    /// understand.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        private_files(path)?;
        let mut conn = Connection::open(path)?;
        schema::configure(&conn)?;
        schema::migrate(&mut conn)?;
        let revision = query::store_revision(&conn)?;
        let (notify, _) = watch::channel(revision);
        tracing::debug!(path = %path.display(), revision, "opened sqlite store");
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            notify,
            path: path.to_path_buf(),
        })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The revision history was compacted at (0 if never); `changes_since` needs `after` ≥ this.
    pub fn compacted_revision(&self) -> Result<u64, StoreError> {
        self.with_conn(|conn| query::compacted_revision(conn))
    }

    /// The connection. A panic while it was held cannot leave it half-written: an open
    /// transaction rolls back when dropped, so the poisoned lock is safe to take over.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `work` on the connection off the async workers: it waits on the disk (an fsync
    /// per commit, a frozen file system for as long as it lasts) and on the lock, which a
    /// controller pass may hold meanwhile.
    fn with_conn<T>(&self, work: impl FnOnce(&mut Connection) -> T) -> T {
        crate::blocking::off_async_workers(|| work(&mut self.lock()))
    }

    /// Run `write` in an IMMEDIATE transaction (takes SQLite's write lock up front, so the
    /// conditions it checks cannot change before it commits), commit, then wake subscribers.
    fn write<T>(
        &self,
        write: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.with_conn(|conn| self.write_on(conn, write))
    }

    fn write_on<T>(
        &self,
        conn: &mut Connection,
        write: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = write(&tx)?;
        let revision = query::store_revision(&tx)?;
        tx.commit()?;
        // Still under the lock, so subscribers see revisions in commit order.
        self.notify.send_if_modified(|latest| {
            let newer = revision > *latest;
            if newer {
                *latest = revision;
            }
            newer
        });
        Ok(out)
    }
}

// === impl KvStore ===

impl KvStore for SqliteStore {
    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.with_conn(|conn| match query::latest_row(conn, key)? {
            Some(row) if !row.deleted => Ok(Some(row.into_key_value())),
            _ => Ok(None),
        })
    }

    fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, u64), StoreError> {
        self.with_conn(|conn| {
            // One read transaction: the rows and the revision come from the same snapshot.
            let tx = conn.transaction()?;
            let rows = query::live_rows(&tx, &PrefixRange::new(prefix))?;
            let revision = query::store_revision(&tx)?;
            tx.commit()?;
            Ok((
                rows.into_iter().map(LogRow::into_key_value).collect(),
                revision,
            ))
        })
    }

    fn list_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.with_conn(|conn| query::live_keys(conn, &PrefixRange::new(prefix)))
    }

    fn put(&self, key: &str, value: &[u8], expect: Expect) -> Result<u64, StoreError> {
        self.write(|tx| apply_put(tx, key, value, expect))
    }

    fn delete(&self, key: &str, expect: Expect) -> Result<Option<u64>, StoreError> {
        self.write(|tx| apply_delete(tx, key, expect))
    }

    fn txn(&self, ops: Vec<Op>) -> Result<u64, StoreError> {
        refuse_duplicate_keys(&ops)?;
        self.write(|tx| {
            // Every condition against the state before the transaction, as etcd checks them
            // (a check may name a key another op writes).
            for op in &ops {
                let latest = query::latest_row(tx, op.key())?;
                let live = latest.filter(|row| !row.deleted).map(|row| row.revision);
                check(op.key(), op.expect(), live)?;
            }
            for op in &ops {
                match op {
                    Op::Put { key, value, expect } => {
                        apply_put(tx, key, value, *expect)?;
                    }
                    Op::Delete { key, expect } => {
                        apply_delete(tx, key, *expect)?;
                    }
                    Op::Check { .. } => {} // checked above
                }
            }
            // Revisions are assigned in op order, so the last written one is the newest.
            query::store_revision(tx)
        })
    }

    fn revision(&self) -> Result<u64, StoreError> {
        self.with_conn(|conn| query::store_revision(conn))
    }

    fn changes_since(
        &self,
        prefix: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<WatchEvent>, StoreError> {
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            let compacted = query::compacted_revision(&tx)?;
            if after < compacted {
                return Err(StoreError::Compacted {
                    requested: after,
                    compacted,
                });
            }
            let rows = query::rows_after(&tx, &PrefixRange::new(prefix), after, limit)?;
            tx.commit()?;
            Ok(rows.into_iter().map(LogRow::into_event).collect())
        })
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.notify.subscribe()
    }

    fn compact(&self, revision: u64) -> Result<(), StoreError> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Never past the newest revision: later writes would land in "compacted" history.
            let target = revision.min(query::store_revision(&tx)?);
            if target <= query::compacted_revision(&tx)? {
                return Ok(());
            }
            let removed = query::delete_superseded(&tx, target)?;
            query::set_compacted_revision(&tx, target)?;
            tx.commit()?;
            tracing::debug!(revision = target, removed, "compacted store history");
            Ok(())
        })
    }

    fn describe(&self) -> String {
        format!("sqlite {}", self.path.display())
    }

    fn health(&self) -> Result<String, StoreError> {
        self.revision()?;
        Ok(self.describe())
    }
}

// === writes ===

/// Fails on the first key two ops of `ops` write (see [`StoreError::DuplicateKey`]); checks
/// may name a written key.
pub(crate) fn refuse_duplicate_keys(ops: &[Op]) -> Result<(), StoreError> {
    let mut seen = std::collections::HashSet::with_capacity(ops.len());
    let mut written = ops.iter().filter(|op| op.writes()).map(Op::key);
    match written.find(|key| !seen.insert(*key)) {
        Some(key) => Err(StoreError::DuplicateKey {
            key: key.to_string(),
        }),
        None => Ok(()),
    }
}

/// Append a put of `key` if `expect` holds; returns its revision.
fn apply_put(
    tx: &Transaction<'_>,
    key: &str,
    value: &[u8],
    expect: Expect,
) -> Result<u64, StoreError> {
    let latest = query::latest_row(tx, key)?;
    let live = latest.as_ref().filter(|row| !row.deleted);
    check(key, expect, live.map(|row| row.revision))?;
    let prev = latest.as_ref().map_or(0, |row| row.revision);
    let row = query::NewRow {
        key,
        value,
        // A put on an absent key starts a new incarnation, created by this very revision.
        create_revision: live.map(|row| row.create_revision),
        prev_revision: prev,
        deleted: false,
    };
    query::append(tx, &row).map_err(|err| cas_conflict(tx, key, expect, err))
}

/// Append a tombstone for `key` if `expect` holds; `None` if there was nothing to delete.
fn apply_delete(
    tx: &Transaction<'_>,
    key: &str,
    expect: Expect,
) -> Result<Option<u64>, StoreError> {
    let latest = query::latest_row(tx, key)?;
    let Some(live) = latest.filter(|row| !row.deleted) else {
        check(key, expect, None)?;
        return Ok(None);
    };
    check(key, expect, Some(live.revision))?;
    let row = query::NewRow {
        key,
        value: &[],
        create_revision: Some(live.create_revision),
        prev_revision: live.revision,
        deleted: true,
    };
    query::append(tx, &row)
        .map(Some)
        .map_err(|err| cas_conflict(tx, key, expect, err))
}

/// Does `expect` hold for a key whose live mod revision is `actual`?
fn check(key: &str, expect: Expect, actual: Option<u64>) -> Result<(), StoreError> {
    let holds = match expect {
        Expect::Any => true,
        Expect::Absent => actual.is_none(),
        Expect::ModRevision(rev) => actual == Some(rev),
    };
    if holds {
        Ok(())
    } else {
        Err(StoreError::Conflict {
            key: key.to_string(),
            expected: expect.to_string(),
            actual,
        })
    }
}

/// The UNIQUE (key, prev_revision) index refused an append: another writer got a successor
/// of the same revision in first. Report it as the conflict it is.
fn cas_conflict(tx: &Transaction<'_>, key: &str, expect: Expect, err: StoreError) -> StoreError {
    let StoreError::Sqlite(sql) = &err else {
        return err;
    };
    if sql.sqlite_error_code() != Some(rusqlite::ErrorCode::ConstraintViolation) {
        return err;
    }
    let actual = match query::latest_row(tx, key) {
        Ok(latest) => latest.filter(|row| !row.deleted).map(|row| row.revision),
        Err(read_err) => return read_err,
    };
    StoreError::Conflict {
        key: key.to_string(),
        expected: expect.to_string(),
        actual,
    }
}

/// Mode of the store's files: the owner's alone (the store holds every service's env).
const STORE_FILE_MODE: u32 = 0o600;

/// Creates the database file owner-only before SQLite opens it (SQLite gives its `-wal` and
/// `-shm` files the database file's mode), and tightens the files of an existing store that
/// were created looser (by an older ebb).
fn private_files(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(STORE_FILE_MODE)
        .open(path)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = std::path::PathBuf::from(name);
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        if meta.permissions().mode() & 0o077 != 0 {
            let private = std::fs::Permissions::from_mode(STORE_FILE_MODE);
            std::fs::set_permissions(&file, private)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_waiting_on_the_store_holds_up_no_other_task() {
        use std::sync::atomic::{AtomicU32, Ordering};
        use std::sync::Arc;
        use std::time::Duration;
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap());
        // One async worker, and the connection held elsewhere (a pass stuck in an fsync).
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .unwrap();
        let held = store.lock();
        let reader = Arc::clone(&store);
        let getter = runtime.spawn(async move { reader.get("k").map(|kv| kv.is_none()) });
        std::thread::sleep(Duration::from_millis(20)); // the getter waits on the lock by now
        let ticks = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&ticks);
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                counted.fetch_add(1, Ordering::SeqCst);
            }
        });
        std::thread::sleep(Duration::from_millis(300));
        let ticked = ticks.load(Ordering::SeqCst);
        drop(held);
        let read = runtime.block_on(getter).unwrap().unwrap();
        assert!(ticked >= 5, "other tasks ran meanwhile: {ticked} ticks");
        assert!(read, "the read ends once the lock is free");
        runtime.shutdown_background();
    }

    #[test]
    fn opens_in_wal_mode_with_fsync_on_every_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("state.db")).unwrap();
        let conn = store.lock();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .unwrap();
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |row| row.get(0))
            .unwrap();
        let busy: i64 = conn
            .query_row("PRAGMA busy_timeout", [], |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(sync, 2, "synchronous must be FULL");
        assert_eq!(busy, 5000);
    }

    #[test]
    fn the_log_refuses_a_second_successor_of_one_revision() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("state.db")).unwrap();
        let rev = store.put("k", b"1", Expect::Any).unwrap();
        store.put("k", b"2", Expect::ModRevision(rev)).unwrap();
        // A writer that skipped the check would append another successor of `rev`.
        let stale = query::NewRow {
            key: "k",
            value: b"lost update",
            create_revision: Some(rev),
            prev_revision: rev,
            deleted: false,
        };
        let err = query::append(&store.lock(), &stale).unwrap_err();
        let StoreError::Sqlite(err) = err else {
            panic!("expected a constraint error: {err:?}")
        };
        assert_eq!(
            err.sqlite_error_code(),
            Some(rusqlite::ErrorCode::ConstraintViolation)
        );
    }
}
