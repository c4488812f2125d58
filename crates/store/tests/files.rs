//! The store's files are the owner's alone: it holds every service's env.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use ebb_store::{Expect, KvStore, SqliteStore};
use std::os::unix::fs::PermissionsExt;

fn mode_of(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_new_store_and_its_wal_are_created_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = SqliteStore::open(&path).unwrap();
    store.put("k", b"v", Expect::Any).unwrap();
    assert_eq!(mode_of(&path), 0o600);
    assert_eq!(mode_of(&dir.path().join("state.db-wal")), 0o600);
}

#[test]
fn an_existing_store_created_world_readable_is_made_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(SqliteStore::open(&path).unwrap());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(mode_of(&path), 0o600);
    store.put("k", b"v", Expect::Any).unwrap();
    assert_eq!(
        store.get("k").unwrap().map(|kv| kv.value),
        Some(b"v".to_vec())
    );
}
