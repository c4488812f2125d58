//! One suite, both backends: every case runs against a real SQLite file and against a real
//! three-member etcd cluster (Debian's `etcd`, started on loopback ports by the test kit).
//!
//! The etcd cluster is shared by the binary's tests, each in its own namespace, so other tests
//! write to it meanwhile: cases assert revisions relative to what they read and wrote, never
//! that the store's revision stands still (a change under the case's own keys is what counts).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ebb_store::{
    watch_changes, EtcdStore, Expect, Fence, FencedStore, KvStore, Op, SqliteStore, StoreError,
    WatchEvent,
};
use ebb_testkit::etcd::EtcdCluster;

/// What keeps a store's backing alive for the length of a case.
enum Guard {
    Dir(#[allow(dead_code)] tempfile::TempDir),
    Cluster(#[allow(dead_code)] EtcdCluster),
    None,
}

fn open_sqlite() -> (Guard, Arc<dyn KvStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("state.db")).unwrap();
    (Guard::Dir(dir), Arc::new(store))
}

/// A store of its own on a one-member etcd cluster of its own, for a case whose effect reaches
/// beyond its namespace: a compaction compacts the whole cluster's history.
fn open_etcd_alone() -> (Guard, Arc<dyn KvStore>) {
    let cluster = EtcdCluster::start(1).unwrap();
    let store = EtcdStore::connect(&cluster.endpoints(), "alone/").unwrap();
    (Guard::Cluster(cluster), Arc::new(store))
}

fn open_etcd() -> (Guard, Arc<dyn KvStore>) {
    static CASE: AtomicU32 = AtomicU32::new(0);
    let cluster = EtcdCluster::shared();
    let namespace = format!(
        "conformance/{}/{}/",
        std::process::id(),
        CASE.fetch_add(1, Ordering::Relaxed)
    );
    let store = EtcdStore::connect(&cluster.endpoints(), &namespace).unwrap();
    (Guard::None, Arc::new(store))
}

/// Every case, once per backend.
macro_rules! suite {
    ($backend:ident, $open:path, $open_alone:path) => {
        mod $backend {
            suite!(@cases $open_alone;
                history_before_a_compaction_is_refused,
                an_update_keeps_the_incarnation_through_a_txn_and_a_compaction,
            );
            suite!(@cases $open;
                revisions_increase_strictly_in_write_order,
                get_returns_the_latest_value_with_its_revisions,
                a_deleted_key_is_gone_and_comes_back_as_a_new_incarnation,
                list_returns_live_keys_under_the_prefix_sorted_with_the_read_revision,
                deleting_an_absent_key_returns_none_and_records_no_change,
                a_stale_mod_revision_is_a_conflict_and_leaves_the_value_untouched,
                absent_on_an_existing_key_is_a_conflict,
                mod_revision_on_an_absent_key_is_a_conflict,
                a_conditional_delete_needs_the_current_revision,
                a_txn_is_all_or_nothing_when_one_condition_fails,
                a_txn_that_writes_a_key_twice_is_refused_and_writes_nothing,
                a_check_fails_the_txn_or_lets_it_through,
                an_empty_txn_returns_the_current_revision,
                keys_and_values_may_hold_any_unicode_and_bytes,
                changes_come_in_revision_order_under_a_prefix_and_resume,
                a_batch_never_splits_one_transaction,
                subscribers_wake_on_a_write,
                watch_changes_wakes_on_a_write_from_another_task,
                a_fenced_write_lands_while_the_fence_holds_and_fails_after,
            );
        }
    };
    (@cases $open:path; $($case:ident,)*) => {
        $(
            #[test]
            fn $case() {
                let (_guard, store) = $open();
                super::$case(&store);
            }
        )*
    };
}

suite!(sqlite, super::open_sqlite, super::open_sqlite);
suite!(etcd, super::open_etcd, super::open_etcd_alone);

fn keys_and_values(store: &dyn KvStore, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let (kvs, _) = store.list(prefix).expect("list");
    kvs.into_iter().map(|kv| (kv.key, kv.value)).collect()
}

fn revisions_increase_strictly_in_write_order(store: &Arc<dyn KvStore>) {
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
    assert!(store.revision().unwrap() >= *seen.last().unwrap());
    // Every write shows up, in the order made, at the revision it returned.
    let changes = store.changes_since("", seen[0], 100).unwrap();
    let revisions: Vec<u64> = changes.iter().map(WatchEvent::revision).collect();
    assert!(revisions.windows(2).all(|w| w[0] <= w[1]), "{revisions:?}");
    assert_eq!(changes.len(), 13, "{changes:?}");
    assert_eq!(changes.last().unwrap().revision(), *seen.last().unwrap());
}

fn get_returns_the_latest_value_with_its_revisions(store: &Arc<dyn KvStore>) {
    let created = store.put("services/web", b"v1", Expect::Any).unwrap();
    let updated = store.put("services/web", b"v2", Expect::Any).unwrap();
    let kv = store.get("services/web").unwrap().expect("present");
    assert_eq!(kv.value, b"v2");
    assert_eq!(kv.create_revision, created);
    assert_eq!(kv.mod_revision, updated);
    assert_eq!(store.get("services/none").unwrap(), None);
}

fn a_deleted_key_is_gone_and_comes_back_as_a_new_incarnation(store: &Arc<dyn KvStore>) {
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

/// The autoscaler stamps what it learns about a service with its spec key's create revision:
/// updates of every kind (a conditional put, a transaction) and a compaction must keep it.
fn an_update_keeps_the_incarnation_through_a_txn_and_a_compaction(store: &Arc<dyn KvStore>) {
    let created = store.put("services/web", b"v1", Expect::Absent).unwrap();
    let v2 = store
        .put("services/web", b"v2", Expect::ModRevision(created))
        .unwrap();
    let v3 = store
        .txn(vec![Op::put(
            "services/web",
            b"v3".to_vec(),
            Expect::ModRevision(v2),
        )])
        .unwrap();
    store.compact(v3).unwrap();
    let kv = store.get("services/web").unwrap().expect("present");
    assert_eq!(kv.value, b"v3");
    assert_eq!((kv.create_revision, kv.mod_revision), (created, v3));
    let (listed, _) = store.list("services/").unwrap();
    assert_eq!(listed[0].create_revision, created);
}

fn list_returns_live_keys_under_the_prefix_sorted_with_the_read_revision(store: &Arc<dyn KvStore>) {
    for key in ["svc/b", "svc/a", "svc/c", "svcx", "other/a", "sv"] {
        store.put(key, key.as_bytes(), Expect::Any).unwrap();
    }
    store.put("svc/a", b"updated", Expect::Any).unwrap();
    let last = store.delete("svc/c", Expect::Any).unwrap().unwrap();

    let (kvs, revision) = store.list("svc/").unwrap();
    assert!(
        revision >= last,
        "read at {revision}, before the delete at {last}"
    );
    let got: Vec<(&str, &[u8])> = kvs
        .iter()
        .map(|kv| (kv.key.as_str(), &kv.value[..]))
        .collect();
    assert_eq!(
        got,
        vec![("svc/a", &b"updated"[..]), ("svc/b", &b"svc/b"[..])]
    );
    assert_eq!(keys_and_values(store.as_ref(), "").len(), 5);
    assert_eq!(store.list_keys("svc/").unwrap(), ["svc/a", "svc/b"]);
    assert_eq!(store.list_keys("").unwrap().len(), 5);
    assert!(store.list_keys("none/").unwrap().is_empty());
}

fn deleting_an_absent_key_returns_none_and_records_no_change(store: &Arc<dyn KvStore>) {
    store.put("present", b"v", Expect::Any).unwrap();
    let before = store.revision().unwrap();
    assert_eq!(store.delete("absent", Expect::Any).unwrap(), None);
    assert_eq!(store.delete("absent", Expect::Absent).unwrap(), None);
    assert_eq!(store.changes_since("", before, 10).unwrap(), vec![]);
}

fn a_stale_mod_revision_is_a_conflict_and_leaves_the_value_untouched(store: &Arc<dyn KvStore>) {
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
    assert_eq!(store.changes_since("", second, 10).unwrap(), vec![]);
}

fn absent_on_an_existing_key_is_a_conflict(store: &Arc<dyn KvStore>) {
    let rev = store.put("k", b"v", Expect::Absent).unwrap();
    let err = store.put("k", b"again", Expect::Absent).unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { actual: Some(r), .. } if r == rev),
        "{err:?}"
    );
    assert_eq!(store.get("k").unwrap().unwrap().value, b"v");
}

fn mod_revision_on_an_absent_key_is_a_conflict(store: &Arc<dyn KvStore>) {
    let before = store.revision().unwrap();
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
    assert_eq!(store.changes_since("", before, 10).unwrap(), vec![]);
}

fn a_conditional_delete_needs_the_current_revision(store: &Arc<dyn KvStore>) {
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

fn a_txn_is_all_or_nothing_when_one_condition_fails(store: &Arc<dyn KvStore>) {
    let a = store.put("a", b"a0", Expect::Any).unwrap();
    store.put("b", b"b0", Expect::Any).unwrap();
    store.put("d", b"d0", Expect::Any).unwrap();
    let before_rev = store.revision().unwrap();
    let before = keys_and_values(store.as_ref(), "");

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
    assert_eq!(keys_and_values(store.as_ref(), ""), before);
    assert_eq!(store.changes_since("", before_rev, 10).unwrap(), vec![]);
}

fn a_txn_that_writes_a_key_twice_is_refused_and_writes_nothing(store: &Arc<dyn KvStore>) {
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
    assert!(store.get("y").unwrap().is_none());
    assert_eq!(store.changes_since("", before, 10).unwrap(), vec![]);
}

fn a_check_fails_the_txn_or_lets_it_through(store: &Arc<dyn KvStore>) {
    let lock = store.put("lock", b"me", Expect::Absent).unwrap();
    // A check may name a key the txn writes.
    store
        .txn(vec![
            Op::check("lock", Expect::ModRevision(lock)),
            Op::put("data", "1", Expect::Any),
        ])
        .unwrap();
    assert_eq!(store.get("data").unwrap().unwrap().value, b"1");
    let moved = store.put("lock", b"other", Expect::Any).unwrap();
    let err = store
        .txn(vec![
            Op::check("lock", Expect::ModRevision(lock)),
            Op::put("data", "2", Expect::Any),
        ])
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict { key, actual: Some(a), .. } if key == "lock" && *a == moved),
        "{err:?}"
    );
    assert_eq!(store.get("data").unwrap().unwrap().value, b"1");
    // Every condition sees the state before the transaction, whatever the order of the ops.
    store
        .txn(vec![
            Op::put("fresh", "1", Expect::Absent),
            Op::check("fresh", Expect::Absent),
        ])
        .unwrap();
    assert_eq!(store.get("fresh").unwrap().unwrap().value, b"1");
}

fn an_empty_txn_returns_the_current_revision(store: &Arc<dyn KvStore>) {
    let rev = store.put("k", b"v", Expect::Any).unwrap();
    let empty = store.txn(vec![]).unwrap();
    assert!(
        empty >= rev && empty <= store.revision().unwrap(),
        "{empty}"
    );
}

fn keys_and_values_may_hold_any_unicode_and_bytes(store: &Arc<dyn KvStore>) {
    let value: Vec<u8> = (0..=255).collect();
    store.put("pfx/é\u{10FFFF}", &value, Expect::Any).unwrap();
    store.put("pfx/", b"", Expect::Any).unwrap();
    store.put("pfy", b"outside", Expect::Any).unwrap();
    let got = keys_and_values(store.as_ref(), "pfx/");
    assert_eq!(
        got,
        vec![
            ("pfx/".to_string(), vec![]),
            ("pfx/é\u{10FFFF}".to_string(), value)
        ]
    );
}

fn changes_come_in_revision_order_under_a_prefix_and_resume(store: &Arc<dyn KvStore>) {
    let start = store.revision().unwrap();
    let a1 = store.put("jobs/a", b"1", Expect::Any).unwrap();
    store.put("other/x", b"not watched", Expect::Any).unwrap();
    let b1 = store.put("jobs/b", b"1", Expect::Any).unwrap();
    let gone = store.delete("jobs/a", Expect::Any).unwrap().unwrap();
    let changes = store.changes_since("jobs/", start, 100).unwrap();
    let seen: Vec<(&str, u64)> = changes.iter().map(|c| (c.key(), c.revision())).collect();
    assert_eq!(seen, vec![("jobs/a", a1), ("jobs/b", b1), ("jobs/a", gone)]);
    assert!(matches!(&changes[2], WatchEvent::Delete { .. }));
    // Resume after the first: the rest, once each.
    let rest = store.changes_since("jobs/", a1, 100).unwrap();
    assert_eq!(rest, changes[1..].to_vec());
    // At most `limit`.
    assert_eq!(store.changes_since("jobs/", start, 1).unwrap().len(), 1);
}

fn a_batch_never_splits_one_transaction(store: &Arc<dyn KvStore>) {
    let start = store.revision().unwrap();
    store
        .txn(vec![
            Op::put("t/a", "1", Expect::Any),
            Op::put("t/b", "1", Expect::Any),
            Op::put("t/c", "1", Expect::Any),
        ])
        .unwrap();
    store.put("t/d", b"1", Expect::Any).unwrap();
    // Read one at a time, as a slow watcher would: every change comes exactly once.
    let mut after = start;
    let mut seen = Vec::new();
    loop {
        let batch = store.changes_since("t/", after, 1).unwrap();
        let Some(last) = batch.last() else { break };
        after = last.revision();
        seen.extend(batch.iter().map(|c| c.key().to_string()));
    }
    assert_eq!(seen, vec!["t/a", "t/b", "t/c", "t/d"]);
}

fn history_before_a_compaction_is_refused(store: &Arc<dyn KvStore>) {
    let start = store.revision().unwrap();
    store.put("a", b"1", Expect::Any).unwrap();
    let rev = store.put("a", b"2", Expect::Any).unwrap();
    store.compact(rev).unwrap();
    let err = store.changes_since("", start, 10).unwrap_err();
    assert!(
        matches!(err, StoreError::Compacted { requested, .. } if requested == start),
        "{err:?}"
    );
    // The live value stays, and history from the compaction on is whole.
    assert_eq!(store.get("a").unwrap().unwrap().value, b"2");
    let later = store.put("a", b"3", Expect::Any).unwrap();
    let changes = store.changes_since("", rev, 10).unwrap();
    assert_eq!(changes.last().map(WatchEvent::revision), Some(later));
}

fn subscribers_wake_on_a_write(store: &Arc<dyn KvStore>) {
    let mut revisions = store.subscribe();
    revisions.borrow_and_update();
    let rev = store.put("k", b"v", Expect::Any).unwrap();
    // etcd announces it from its watch, a moment after the write returned.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let seen = runtime.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(10),
            revisions.wait_for(|latest| *latest >= rev),
        )
        .await
        .expect("no wake-up for the write")
        .map(|latest| *latest)
    });
    assert!(seen.unwrap() >= rev);
}

fn watch_changes_wakes_on_a_write_from_another_task(store: &Arc<dyn KvStore>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let after = store.revision().unwrap();
    let (written, events) = runtime.block_on(async {
        let watcher = watch_changes(store.as_ref(), "jobs/", after, Duration::from_secs(30));
        let writer = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            store.put("other/x", b"not watched", Expect::Any).unwrap();
            store.put("jobs/a", b"1", Expect::Any).unwrap()
        };
        let (events, written) = tokio::join!(watcher, writer);
        (written, events.unwrap())
    });
    assert_eq!(
        events
            .iter()
            .map(|e| (e.key(), e.revision()))
            .collect::<Vec<_>>(),
        vec![("jobs/a", written)]
    );
}

fn a_fenced_write_lands_while_the_fence_holds_and_fails_after(store: &Arc<dyn KvStore>) {
    let won = store.put("control/leader", b"s1", Expect::Absent).unwrap();
    let fence = Fence {
        key: "control/leader".into(),
        revision: won,
    };
    let fenced = FencedStore::new(Arc::clone(store), fence);
    fenced.put("services/web", b"1", Expect::Any).unwrap();
    assert_eq!(fenced.delete("services/none", Expect::Any).unwrap(), None);
    // Another server takes over: the old leader's writes are refused, whatever they are.
    store.delete("control/leader", Expect::Any).unwrap();
    store.put("control/leader", b"s2", Expect::Absent).unwrap();
    let err = fenced.put("services/web", b"2", Expect::Any).unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }), "{err:?}");
    let err = fenced.delete("services/web", Expect::Any).unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }), "{err:?}");
    let err = fenced
        .txn(vec![Op::put("services/api", "1", Expect::Absent)])
        .unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }), "{err:?}");
    assert_eq!(store.get("services/web").unwrap().unwrap().value, b"1");
    assert!(store.get("services/api").unwrap().is_none());
}
