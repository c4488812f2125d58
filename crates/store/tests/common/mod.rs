//! Shared helpers: every test gets a real SQLite file in its own temporary directory.
#![allow(dead_code)]

use std::path::PathBuf;

use ebb_store::SqliteStore;
use tempfile::TempDir;

/// A fresh store; keep the `TempDir` alive as long as the store is used.
pub fn temp_store() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("create temp dir");
    let store = SqliteStore::open(&db_path(&dir)).expect("open store");
    (dir, store)
}

pub fn db_path(dir: &TempDir) -> PathBuf {
    dir.path().join("state.db")
}

pub fn reopen(dir: &TempDir) -> SqliteStore {
    SqliteStore::open(&db_path(dir)).expect("reopen store")
}

/// How many rows the log table holds, read with a separate connection.
pub fn log_rows(dir: &TempDir) -> i64 {
    let conn = rusqlite::Connection::open(db_path(dir)).expect("open sqlite");
    conn.query_row("SELECT COUNT(*) FROM log", [], |row| row.get(0))
        .expect("count rows")
}
