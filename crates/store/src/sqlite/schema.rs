//! Connection settings and the table layout.

use std::time::Duration;

use rusqlite::Connection;

use crate::StoreError;

/// How long a statement waits for another connection's lock before failing with SQLITE_BUSY.
///
/// Only another process on the same file (a backup, an inspection with the sqlite3 shell)
/// can hold the lock; 5 s rides out a checkpoint or a copy, yet a stuck lock still surfaces as
/// an error instead of a hang. (SQLite's own default is 0: fail at once.)
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Layout version written to `meta`; bump it with a migration when the layout changes.
const SCHEMA_VERSION: i64 = 1;

/// The log and its indexes (see the module doc of `sqlite` for why this shape).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    revision        INTEGER PRIMARY KEY AUTOINCREMENT,
    key             TEXT    NOT NULL,
    value           BLOB    NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision   INTEGER NOT NULL,
    deleted         INTEGER NOT NULL
);
-- Compare-and-swap: a revision has at most one successor per key.
CREATE UNIQUE INDEX IF NOT EXISTS log_key_prev_revision ON log (key, prev_revision);
-- Current values: the newest revision of a key, and prefix scans in key order.
CREATE INDEX IF NOT EXISTS log_key_revision ON log (key, revision);
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (name, value) VALUES ('compact_revision', 0);
";

/// Durability and locking settings; they apply to this connection (WAL sticks to the file).
pub fn configure(conn: &Connection) -> Result<(), StoreError> {
    // WAL: readers never block the writer, and a commit is one sequential append + fsync.
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        // E.g. a file system without shared memory support; still durable with FULL below.
        tracing::warn!(journal_mode = %mode, "sqlite refused WAL mode; writes will be slower");
    }
    // FULL: fsync the WAL on every commit, so an acknowledged write survives power loss.
    // (NORMAL, the usual WAL pairing, may lose the last commits on power loss.)
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(())
}

/// Create the schema if missing, and refuse a file written by an incompatible version.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(SCHEMA)?;
    tx.execute(
        "INSERT OR IGNORE INTO meta (name, value) VALUES ('schema_version', ?1)",
        [SCHEMA_VERSION],
    )?;
    let version: i64 = tx.query_row(
        "SELECT value FROM meta WHERE name = 'schema_version'",
        [],
        |row| row.get(0),
    )?;
    if version != SCHEMA_VERSION {
        return Err(StoreError::Corrupt(format!(
            "store schema version {version} is not supported (this build reads version \
             {SCHEMA_VERSION}); use a matching ebb version or a fresh data directory"
        )));
    }
    tx.commit()?;
    Ok(())
}
