//! Helpers shared by ebb's tests; a dev-dependency of the crates that use it, never part of a
//! build users run.
//!
//! Tests wait for conditions with a deadline, never with a bare sleep as synchronisation
//! (ARCHITECTURE.md, tests): [`eventually`] polls a check until it yields a value, and fails the
//! test with what it waited for once the deadline passes. A deadline is generous on purpose: it
//! only bounds a hang, it measures nothing. [`alloc::Counting`] counts allocations per thread,
//! for tests that prove a path allocates nothing. [`etcd::EtcdCluster`] runs a real etcd
//! cluster on loopback ports.

pub mod alloc;
pub mod etcd;

use std::time::{Duration, Instant};

/// How often a condition is polled: often enough that a test does not idle, rarely enough that
/// polling costs nothing beside the work it waits for.
pub const POLL: Duration = Duration::from_millis(20);

/// Polls `check` every [`POLL`] on the tokio timer until it returns `Some`, and returns that.
///
/// # Panics
/// When `deadline` passes first: "timed out after {deadline} waiting for {what}".
pub async fn eventually<T>(
    what: &str,
    deadline: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    eventually_async(what, deadline, async || check()).await
}

/// As [`eventually`], for a check that awaits (an API call, a connection).
///
/// # Panics
/// When `deadline` passes first.
pub async fn eventually_async<T>(
    what: &str,
    deadline: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Waiting in tests that run no async runtime (tests that drive the `ebb` binary).
pub mod blocking {
    use super::POLL;
    use std::time::{Duration, Instant};

    /// Polls `check` every [`POLL`], sleeping the thread, until it returns `Some`.
    ///
    /// # Panics
    /// When `deadline` passes first: "timed out after {deadline} waiting for {what}".
    pub fn eventually<T>(
        what: &str,
        deadline: Duration,
        mut check: impl FnMut() -> Option<T>,
    ) -> T {
        let end = Instant::now() + deadline;
        loop {
            if let Some(value) = check() {
                return value;
            }
            assert!(
                Instant::now() < end,
                "timed out after {deadline:?} waiting for {what}"
            );
            std::thread::sleep(POLL);
        }
    }
}

/// The seed corpus of fuzz target `target` (`fuzz/corpus/<target>/` at the repository root):
/// each file's name and bytes, sorted by name, for tests that replay it on stable.
///
/// # Panics
/// When the folder cannot be read or is empty: a replay that replays nothing must fail.
pub fn fuzz_corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) => panic!("reading the corpus {}: {e}", dir.display()),
    };
    let mut files: Vec<(String, Vec<u8>)> = entries
        .flatten()
        .filter(|e| e.path().is_file())
        .filter_map(|e| {
            let bytes = std::fs::read(e.path()).ok()?;
            Some((e.file_name().to_string_lossy().into_owned(), bytes))
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seed in {}", dir.display());
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_eventually_returns_the_first_value() {
        let mut calls = 0;
        let got = blocking::eventually("the third call", Duration::from_secs(5), || {
            calls += 1;
            (calls == 3).then_some(calls)
        });
        assert_eq!(got, 3);
    }

    #[test]
    #[should_panic(expected = "timed out after 50ms waiting for never")]
    fn blocking_eventually_fails_at_the_deadline_naming_what_it_waited_for() {
        blocking::eventually("never", Duration::from_millis(50), || None::<()>);
    }

    #[tokio::test]
    async fn eventually_polls_on_the_runtime() {
        let mut calls = 0;
        let got = eventually("the second call", Duration::from_secs(5), || {
            calls += 1;
            (calls == 2).then_some("done")
        })
        .await;
        assert_eq!(got, "done");
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for nothing")]
    async fn eventually_async_fails_at_the_deadline() {
        eventually_async("nothing", Duration::from_millis(50), async || None::<()>).await;
    }
}
