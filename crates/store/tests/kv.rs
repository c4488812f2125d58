//! What only the SQLite backend promises: a new file starts at revision 0, each op of a
//! transaction gets its own revision, and two openings of one file share compare-and-swap.
//! What both backends promise is in `conformance.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::temp_store;
use ebb_store::{Expect, KvStore, Op, StoreError};

#[test]
fn a_new_store_is_at_revision_zero() {
    let (_dir, store) = temp_store();
    assert_eq!(store.revision().unwrap(), 0);
    assert_eq!(store.get("anything").unwrap(), None);
    assert_eq!(store.list("").unwrap(), (vec![], 0));
}

#[test]
fn deleting_an_absent_key_returns_none_and_uses_no_revision() {
    let (_dir, store) = temp_store();
    store.put("present", b"v", Expect::Any).unwrap();
    let before = store.revision().unwrap();
    assert_eq!(store.delete("absent", Expect::Any).unwrap(), None);
    assert_eq!(store.delete("absent", Expect::Absent).unwrap(), None);
    assert_eq!(store.revision().unwrap(), before);
}

#[test]
fn a_txn_gives_each_op_its_own_revision() {
    let (_dir, store) = temp_store();
    let start = store.revision().unwrap();
    let last = store
        .txn(vec![
            Op::put("x", "1", Expect::Absent),
            Op::delete("gone", Expect::Any), // absent: no revision
            Op::put("y", "3", Expect::Any),
        ])
        .unwrap();
    assert_eq!(last, start + 2);
    let x = store.get("x").unwrap().unwrap();
    assert_eq!(
        (x.value.as_slice(), x.create_revision, x.mod_revision),
        (&b"1"[..], start + 1, start + 1)
    );
    assert_eq!(store.get("y").unwrap().unwrap().mod_revision, start + 2);
}

#[test]
fn compare_and_swap_holds_across_two_openings_of_one_file() {
    let (dir, first) = temp_store();
    let second = common::reopen(&dir);
    let rev = first.put("k", b"v0", Expect::Any).unwrap();
    assert_eq!(second.get("k").unwrap().unwrap().mod_revision, rev);

    first.put("k", b"first", Expect::ModRevision(rev)).unwrap();
    let err = second
        .put("k", b"second", Expect::ModRevision(rev))
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert_eq!(second.get("k").unwrap().unwrap().value, b"first");
}
