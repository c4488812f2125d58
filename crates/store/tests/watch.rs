//! Long-poll watch: wake-ups on writes, timeouts, and the subscribe channel.
//!
//! Tests run on tokio's paused clock: a wait that should end early but does not shows up as
//! the virtual timeout firing, never as a slow or flaky test.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::temp_store;
use ebb_store::{watch_changes, Expect, KvStore, StoreError, WatchEvent};

/// Far longer than any test needs; reaching it means a wake-up was missed.
const WATCH_TIMEOUT: Duration = Duration::from_secs(3600);
/// Guard against a hung test, shorter than WATCH_TIMEOUT so a missed wake-up fails here.
const GUARD: Duration = Duration::from_secs(60);

#[tokio::test(start_paused = true)]
async fn watch_changes_returns_at_once_when_changes_exist() {
    let (_dir, store) = temp_store();
    let rev = store.put("jobs/a", b"1", Expect::Any).unwrap();
    let started = tokio::time::Instant::now();
    let events = watch_changes(&store, "jobs/", 0, WATCH_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        events.iter().map(WatchEvent::revision).collect::<Vec<_>>(),
        vec![rev]
    );
    assert_eq!(started.elapsed(), Duration::ZERO, "it waited on the clock");
}

#[tokio::test(start_paused = true)]
async fn watch_changes_wakes_on_a_write_from_another_task() {
    let (_dir, store) = temp_store();
    let store: Arc<dyn KvStore> = Arc::new(store);
    let after = store.revision().unwrap();

    let watcher = tokio::spawn({
        let store = Arc::clone(&store);
        async move { watch_changes(&*store, "jobs/", after, WATCH_TIMEOUT).await }
    });
    // On this single-threaded runtime the yield runs the watcher until it parks on the wait.
    tokio::task::yield_now().await;
    assert!(!watcher.is_finished(), "there was nothing to return yet");

    let writer = tokio::spawn({
        let store = Arc::clone(&store);
        async move {
            store.put("other/x", b"not watched", Expect::Any).unwrap();
            store.put("jobs/a", b"1", Expect::Any).unwrap()
        }
    });
    let written = writer.await.unwrap();
    let events = tokio::time::timeout(GUARD, watcher)
        .await
        .expect("watcher missed the wake-up")
        .unwrap()
        .unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!((events[0].key(), events[0].revision()), ("jobs/a", written));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_changes_sees_a_write_from_another_thread() {
    let (_dir, store) = temp_store();
    let store: Arc<dyn KvStore> = Arc::new(store);
    let watcher = tokio::spawn({
        let store = Arc::clone(&store);
        async move { watch_changes(&*store, "jobs/", 0, WATCH_TIMEOUT).await }
    });
    let written = tokio::spawn({
        let store = Arc::clone(&store);
        async move { store.put("jobs/a", b"1", Expect::Any).unwrap() }
    })
    .await
    .unwrap();
    let events = tokio::time::timeout(GUARD, watcher)
        .await
        .expect("watcher hung")
        .unwrap()
        .unwrap();
    assert_eq!(
        events.iter().map(WatchEvent::revision).collect::<Vec<_>>(),
        vec![written]
    );
}

#[tokio::test(start_paused = true)]
async fn watch_changes_times_out_with_an_empty_list_ignoring_other_prefixes() {
    let (_dir, store) = temp_store();
    let store: Arc<dyn KvStore> = Arc::new(store);
    let timeout = Duration::from_secs(30);
    let started = tokio::time::Instant::now();
    let watcher = tokio::spawn({
        let store = Arc::clone(&store);
        async move { watch_changes(&*store, "jobs/", 0, timeout).await }
    });
    tokio::task::yield_now().await;
    store
        .put(
            "other/x",
            b"wakes the watcher, but is not under jobs/",
            Expect::Any,
        )
        .unwrap();

    let events = watcher.await.unwrap().unwrap();
    assert_eq!(events, vec![]);
    assert!(started.elapsed() >= timeout, "returned before the timeout");
}

#[tokio::test(start_paused = true)]
async fn watch_changes_reports_a_compacted_start() {
    let (_dir, store) = temp_store();
    store.put("a", b"1", Expect::Any).unwrap();
    let rev = store.put("a", b"2", Expect::Any).unwrap();
    store.compact(rev).unwrap();
    let err = watch_changes(&store, "", 0, WATCH_TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Compacted { requested: 0, .. }),
        "{err:?}"
    );
}

#[test]
fn subscribers_see_every_committed_write_and_no_failed_one() {
    let (_dir, store) = temp_store();
    let mut revisions = store.subscribe();
    assert_eq!(*revisions.borrow_and_update(), 0);

    let rev = store.put("k", b"v", Expect::Any).unwrap();
    assert!(revisions.has_changed().unwrap());
    assert_eq!(*revisions.borrow_and_update(), rev);

    assert!(store.put("k", b"v", Expect::Absent).is_err());
    assert_eq!(store.delete("missing", Expect::Any).unwrap(), None);
    assert!(!revisions.has_changed().unwrap(), "nothing was committed");

    let deleted = store.delete("k", Expect::Any).unwrap().unwrap();
    assert_eq!(*revisions.borrow_and_update(), deleted);
}
