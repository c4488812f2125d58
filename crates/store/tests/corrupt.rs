//! Bad data in the file is reported as `StoreError::Corrupt`, never a panic.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::{db_path, temp_store};
use ebb_store::{KvStore, SqliteStore, StoreError};

fn tamper(dir: &tempfile::TempDir, sql: &str) {
    let conn = rusqlite::Connection::open(db_path(dir)).expect("open sqlite");
    conn.execute_batch(sql).expect("tamper");
}

#[test]
fn an_unknown_schema_version_is_refused() {
    let (dir, store) = temp_store();
    drop(store);
    tamper(
        &dir,
        "UPDATE meta SET value = 99 WHERE name = 'schema_version'",
    );
    let err = SqliteStore::open(&db_path(&dir)).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    assert!(err.to_string().contains("schema version 99"), "{err}");
}

#[test]
fn a_key_that_is_not_text_is_corrupt() {
    let (dir, store) = temp_store();
    tamper(
        &dir,
        "INSERT INTO log (key, value, create_revision, prev_revision, deleted) \
         VALUES (x'ff', x'', 1, 0, 0)",
    );
    let err = store.list("").unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    assert!(matches!(
        store.changes_since("", 0, 10),
        Err(StoreError::Corrupt(_))
    ));
}

#[test]
fn an_impossible_create_revision_is_corrupt() {
    let (dir, store) = temp_store();
    tamper(
        &dir,
        "INSERT INTO log (key, value, create_revision, prev_revision, deleted) \
         VALUES ('k', x'', -5, 0, 0)",
    );
    let err = store.get("k").unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
}
