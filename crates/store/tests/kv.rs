//! Reads, writes and compare-and-swap against a real SQLite file.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::temp_store;
use ebb_store::{Expect, KvStore, Op, StoreError};

fn keys_and_values(store: &dyn KvStore, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let (kvs, _) = store.list(prefix).expect("list");
    kvs.into_iter().map(|kv| (kv.key, kv.value)).collect()
}

#[test]
fn a_new_store_is_at_revision_zero() {
    let (_dir, store) = temp_store();
    assert_eq!(store.revision().unwrap(), 0);
    assert_eq!(store.get("anything").unwrap(), None);
    assert_eq!(store.list("").unwrap(), (vec![], 0));
}

#[test]
fn revisions_increase_strictly_in_write_order() {
    let (_dir, store) = temp_store();
    let mut seen = vec![store.revision().unwrap()];
    for i in 0..5 {
        seen.push(store.put(&format!("k{i}"), b"v", Expect::Any).unwrap());
        seen.push(store.put("same", &[i], Expect::Any).unwrap());
    }
    seen.push(
        store
            .delete("same", Expect::Any)
            .unwrap()
            .expect("was live"),
    );
    seen.push(
        store
            .txn(vec![
                Op::put("t1", "a", Expect::Any),
                Op::put("t2", "b", Expect::Any),
            ])
            .unwrap(),
    );
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "not strictly increasing: {seen:?}"
    );
    assert_eq!(store.revision().unwrap(), *seen.last().unwrap());
}

#[test]
fn get_returns_the_latest_value_with_its_revisions() {
    let (_dir, store) = temp_store();
    let created = store.put("services/web", b"v1", Expect::Any).unwrap();
    let updated = store.put("services/web", b"v2", Expect::Any).unwrap();
    let kv = store.get("services/web").unwrap().expect("present");
    assert_eq!(kv.value, b"v2");
    assert_eq!(kv.create_revision, created);
    assert_eq!(kv.mod_revision, updated);
}

#[test]
fn a_deleted_key_is_gone_and_comes_back_as_a_new_incarnation() {
    let (_dir, store) = temp_store();
    store.put("k", b"old", Expect::Any).unwrap();
    store.delete("k", Expect::Any).unwrap();
    assert_eq!(store.get("k").unwrap(), None);

    let recreated = store.put("k", b"new", Expect::Absent).unwrap();
    let kv = store.get("k").unwrap().expect("present");
    assert_eq!(
        (kv.create_revision, kv.mod_revision),
        (recreated, recreated)
    );
}

#[test]
fn list_returns_live_keys_under_the_prefix_sorted_with_the_read_revision() {
    let (_dir, store) = temp_store();
    for key in ["svc/b", "svc/a", "svc/c", "svcx", "other/a", "sv"] {
        store.put(key, key.as_bytes(), Expect::Any).unwrap();
    }
    store.put("svc/a", b"updated", Expect::Any).unwrap();
    let last = store.delete("svc/c", Expect::Any).unwrap().unwrap();

    let (kvs, revision) = store.list("svc/").unwrap();
    assert_eq!(revision, last);
    let got: Vec<(&str, &[u8])> = kvs
        .iter()
        .map(|kv| (kv.key.as_str(), &kv.value[..]))
        .collect();
    assert_eq!(
        got,
        vec![("svc/a", &b"updated"[..]), ("svc/b", &b"svc/b"[..])]
    );
    assert_eq!(keys_and_values(&store, "").len(), 5);
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
fn a_stale_mod_revision_is_a_conflict_and_leaves_the_value_untouched() {
    let (_dir, store) = temp_store();
    let first = store.put("k", b"one", Expect::Any).unwrap();
    let second = store.put("k", b"two", Expect::ModRevision(first)).unwrap();

    let err = store
        .put("k", b"lost update", Expect::ModRevision(first))
        .unwrap_err();
    match &err {
        StoreError::Conflict { key, actual, .. } => {
            assert_eq!(key, "k");
            assert_eq!(*actual, Some(second));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(err.to_string().contains("expected mod_revision"), "{err}");
    let kv = store.get("k").unwrap().unwrap();
    assert_eq!(
        (kv.value.as_slice(), kv.mod_revision),
        (&b"two"[..], second)
    );
    assert_eq!(store.revision().unwrap(), second);
}

#[test]
fn absent_on_an_existing_key_is_a_conflict() {
    let (_dir, store) = temp_store();
    let rev = store.put("k", b"v", Expect::Absent).unwrap();
    let err = store.put("k", b"again", Expect::Absent).unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { actual: Some(r), .. } if r == rev),
        "{err:?}"
    );
    assert_eq!(store.get("k").unwrap().unwrap().value, b"v");
}

#[test]
fn mod_revision_on_an_absent_key_is_a_conflict() {
    let (_dir, store) = temp_store();
    let err = store.put("k", b"v", Expect::ModRevision(1)).unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { actual: None, .. }),
        "{err:?}"
    );
    let err = store.delete("k", Expect::ModRevision(1)).unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { actual: None, .. }),
        "{err:?}"
    );
    assert_eq!(store.revision().unwrap(), 0);
}

#[test]
fn a_conditional_delete_needs_the_current_revision() {
    let (_dir, store) = temp_store();
    let first = store.put("k", b"1", Expect::Any).unwrap();
    let second = store.put("k", b"2", Expect::Any).unwrap();
    assert!(matches!(
        store.delete("k", Expect::ModRevision(first)),
        Err(StoreError::Conflict { .. })
    ));
    assert!(store.get("k").unwrap().is_some());
    let deleted = store.delete("k", Expect::ModRevision(second)).unwrap();
    assert!(deleted > Some(second));
    assert_eq!(store.get("k").unwrap(), None);
}

#[test]
fn a_txn_is_all_or_nothing_when_one_condition_fails() {
    let (_dir, store) = temp_store();
    let a = store.put("a", b"a0", Expect::Any).unwrap();
    store.put("b", b"b0", Expect::Any).unwrap();
    store.put("d", b"d0", Expect::Any).unwrap();
    let before_rev = store.revision().unwrap();
    let before = keys_and_values(&store, "");

    let err = store
        .txn(vec![
            Op::put("a", "a1", Expect::ModRevision(a)),
            Op::delete("b", Expect::Any),
            Op::put("c", "c1", Expect::Absent),
            Op::put("d", "d1", Expect::Absent), // it exists: the whole txn fails
        ])
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict { key, .. } if key == "d"),
        "{err:?}"
    );
    assert_eq!(keys_and_values(&store, ""), before);
    assert_eq!(store.revision().unwrap(), before_rev);
    assert_eq!(store.changes_since("", before_rev, 10).unwrap(), vec![]);
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
fn a_txn_that_names_a_key_twice_is_refused_and_writes_nothing() {
    let (_dir, store) = temp_store();
    let before = store.revision().unwrap();
    let err = store
        .txn(vec![
            Op::put("x", "1", Expect::Absent),
            Op::put("y", "2", Expect::Any),
            Op::delete("x", Expect::Any),
        ])
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::DuplicateKey { key } if key == "x"),
        "{err:?}"
    );
    assert!(err.to_string().contains("twice"), "{err}");
    assert_eq!(store.revision().unwrap(), before);
    assert!(store.get("y").unwrap().is_none());
}

#[test]
fn an_empty_txn_returns_the_current_revision() {
    let (_dir, store) = temp_store();
    let rev = store.put("k", b"v", Expect::Any).unwrap();
    assert_eq!(store.txn(vec![]).unwrap(), rev);
}

#[test]
fn keys_and_values_may_hold_any_unicode_and_bytes() {
    let (_dir, store) = temp_store();
    let value: Vec<u8> = (0..=255).collect();
    store.put("pfx/é\u{10FFFF}", &value, Expect::Any).unwrap();
    store.put("pfx/", b"", Expect::Any).unwrap();
    store.put("pfy", b"outside", Expect::Any).unwrap();
    let got = keys_and_values(&store, "pfx/");
    assert_eq!(
        got,
        vec![
            ("pfx/".to_string(), vec![]),
            ("pfx/é\u{10FFFF}".to_string(), value)
        ]
    );
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
