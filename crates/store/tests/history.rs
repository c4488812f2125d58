//! The change log: changes_since, resuming after a restart, compaction, durability.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::{log_rows, reopen, temp_store};
use ebb_store::{Expect, KeyValue, KvStore, StoreError, WatchEvent};

fn put_event(key: &str, value: &[u8], create_revision: u64, mod_revision: u64) -> WatchEvent {
    WatchEvent::Put(KeyValue {
        key: key.to_string(),
        value: value.to_vec(),
        create_revision,
        mod_revision,
    })
}

#[test]
fn changes_since_returns_puts_and_deletes_in_order_filtered_by_prefix() {
    let (_dir, store) = temp_store();
    let r1 = store.put("jobs/a", b"1", Expect::Any).unwrap();
    let _ = store.put("nodes/n1", b"up", Expect::Any).unwrap();
    let r3 = store.put("jobs/b", b"2", Expect::Any).unwrap();
    let r4 = store.put("jobs/a", b"3", Expect::Any).unwrap();
    let r5 = store.delete("jobs/b", Expect::Any).unwrap().unwrap();
    let _ = store.put("jobsx", b"not under jobs/", Expect::Any).unwrap();

    let events = store.changes_since("jobs/", 0, 100).unwrap();
    assert_eq!(
        events,
        vec![
            put_event("jobs/a", b"1", r1, r1),
            put_event("jobs/b", b"2", r3, r3),
            put_event("jobs/a", b"3", r1, r4),
            WatchEvent::Delete {
                key: "jobs/b".into(),
                revision: r5
            },
        ]
    );
    let revs: Vec<u64> = events.iter().map(WatchEvent::revision).collect();
    assert_eq!(revs, vec![r1, r3, r4, r5]);
    assert_eq!(events[3].key(), "jobs/b");

    // `after` is exclusive, and the empty prefix sees everything.
    assert_eq!(store.changes_since("jobs/", r4, 100).unwrap().len(), 1);
    assert_eq!(store.changes_since("", 0, 100).unwrap().len(), 6);
}

#[test]
fn changes_since_returns_at_most_limit_oldest_first() {
    let (_dir, store) = temp_store();
    let revs: Vec<u64> = (0..10)
        .map(|i| store.put(&format!("k/{i}"), b"v", Expect::Any).unwrap())
        .collect();
    let first = store.changes_since("k/", 0, 3).unwrap();
    assert_eq!(
        first.iter().map(WatchEvent::revision).collect::<Vec<_>>(),
        revs[..3]
    );
    let rest = store.changes_since("k/", revs[2], 100).unwrap();
    assert_eq!(
        rest.iter().map(WatchEvent::revision).collect::<Vec<_>>(),
        revs[3..]
    );
    assert_eq!(store.changes_since("k/", 0, 0).unwrap(), vec![]);
}

#[test]
fn a_watch_resumed_after_reopening_gets_exactly_the_missed_changes() {
    let (dir, store) = temp_store();
    store.put("svc/a", b"1", Expect::Any).unwrap();
    let (_, seen) = store.list("svc/").unwrap();
    drop(store);

    // Written while the watcher was away, by another opening of the file.
    let writer = reopen(&dir);
    let a2 = writer.put("svc/a", b"2", Expect::Any).unwrap();
    writer.put("other/x", b"ignored", Expect::Any).unwrap();
    let b1 = writer.put("svc/b", b"1", Expect::Any).unwrap();
    let del = writer.delete("svc/a", Expect::Any).unwrap().unwrap();
    drop(writer);

    let store = reopen(&dir);
    let events = store.changes_since("svc/", seen, 100).unwrap();
    assert_eq!(
        events,
        vec![
            put_event("svc/a", b"2", 1, a2),
            put_event("svc/b", b"1", b1, b1),
            WatchEvent::Delete {
                key: "svc/a".into(),
                revision: del
            },
        ]
    );
    assert_eq!(store.changes_since("svc/", del, 100).unwrap(), vec![]);
}

#[test]
fn compaction_keeps_live_values_and_rejects_watches_from_before_it() {
    let (dir, store) = temp_store();
    let a1 = store.put("a", b"1", Expect::Any).unwrap();
    store.put("a", b"2", Expect::Any).unwrap();
    store.put("b", b"1", Expect::Any).unwrap();
    store.delete("b", Expect::Any).unwrap();
    let c = store.put("c", b"1", Expect::Any).unwrap();
    let live_before = store.list("").unwrap();
    assert_eq!(log_rows(&dir), 5);

    store.compact(c).unwrap();
    assert_eq!(log_rows(&dir), 2, "only the live a=2 and c=1 rows remain");
    assert_eq!(store.compacted_revision().unwrap(), c);
    assert_eq!(store.list("").unwrap(), live_before);
    assert_eq!(store.get("a").unwrap().unwrap().create_revision, a1);

    let err = store.changes_since("", c - 1, 10).unwrap_err();
    assert!(
        matches!(err, StoreError::Compacted { requested, compacted } if requested == c - 1 && compacted == c),
        "{err:?}"
    );
    assert_eq!(store.changes_since("", c, 10).unwrap(), vec![]);

    // Writes after compaction are watched as usual, and the compaction survives a restart.
    let later = store.put("a", b"3", Expect::Any).unwrap();
    drop(store);
    let store = reopen(&dir);
    assert!(matches!(
        store.changes_since("", 0, 10),
        Err(StoreError::Compacted { .. })
    ));
    let events = store.changes_since("", c, 10).unwrap();
    assert_eq!(events, vec![put_event("a", b"3", a1, later)]);
}

#[test]
fn compaction_keeps_history_above_the_compacted_revision() {
    let (_dir, store) = temp_store();
    let r1 = store.put("k", b"1", Expect::Any).unwrap();
    let r2 = store.put("k", b"2", Expect::Any).unwrap();
    let r3 = store.delete("k", Expect::Any).unwrap().unwrap();
    store.compact(r1).unwrap();
    let events = store.changes_since("", r1, 10).unwrap();
    assert_eq!(
        events,
        vec![
            put_event("k", b"2", r1, r2),
            WatchEvent::Delete {
                key: "k".into(),
                revision: r3
            }
        ]
    );
}

#[test]
fn revisions_are_never_reused_after_compacting_away_the_newest_row() {
    let (dir, store) = temp_store();
    store.put("k", b"1", Expect::Any).unwrap();
    let tombstone = store.delete("k", Expect::Any).unwrap().unwrap();
    store.compact(tombstone).unwrap();
    assert_eq!(store.list("").unwrap(), (vec![], tombstone));
    drop(store);

    let store = reopen(&dir);
    assert_eq!(store.revision().unwrap(), tombstone);
    let next = store.put("k", b"again", Expect::Absent).unwrap();
    assert!(
        next > tombstone,
        "{next} reused a revision at or below {tombstone}"
    );
}

#[test]
fn compacting_past_the_newest_revision_stops_at_it() {
    let (_dir, store) = temp_store();
    let rev = store.put("k", b"v", Expect::Any).unwrap();
    store.compact(rev + 100).unwrap();
    assert_eq!(store.compacted_revision().unwrap(), rev);
    let next = store.put("k", b"w", Expect::Any).unwrap();
    assert_eq!(
        store.changes_since("", rev, 10).unwrap().len(),
        1,
        "write {next} must be watchable"
    );
    // Compacting backwards is a no-op.
    store.compact(1).unwrap();
    assert_eq!(store.compacted_revision().unwrap(), rev);
}

#[test]
fn data_survives_dropping_and_reopening_the_store() {
    let (dir, store) = temp_store();
    let a = store.put("a", b"alpha", Expect::Any).unwrap();
    store.put("b", b"beta", Expect::Any).unwrap();
    let del = store.delete("b", Expect::Any).unwrap().unwrap();
    drop(store);

    let store = reopen(&dir);
    let kv = store.get("a").unwrap().expect("a survives");
    assert_eq!((kv.value.as_slice(), kv.mod_revision), (&b"alpha"[..], a));
    assert_eq!(store.get("b").unwrap(), None);
    assert_eq!(store.revision().unwrap(), del);
    assert!(store.put("c", b"", Expect::Any).unwrap() > del);
}
