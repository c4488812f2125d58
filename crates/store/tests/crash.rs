//! Durability under kill -9: every write the store acknowledged is there after a crash, and
//! every transaction is all-or-nothing.
//!
//! The test re-runs its own binary as a child that writes as fast as it can and prints an
//! "ack" line after each acknowledged write; the parent kills it with SIGKILL at an arbitrary
//! moment, reads every ack that made it out, and checks the file. (A process kill leaves the
//! OS page cache intact; `synchronous=FULL` is what covers power loss on top of this.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use ebb_store::{Expect, KvStore, Op, SqliteStore};

const CHILD_DB_ENV: &str = "EBB_STORE_CRASH_CHILD_DB";
const CHILD_ROUND_ENV: &str = "EBB_STORE_CRASH_CHILD_ROUND";
/// Acks to collect before the kill; enough for the kill to land amid steady writing.
const ACKS_BEFORE_KILL: usize = 150;
/// Upper bound on the child's work, should the parent never kill it.
const CHILD_MAX_WRITES: usize = 100_000;

/// This test target has no harness (`harness = false`): the same binary is the parent test,
/// or, when started by it with the child variables set, the writer that gets killed.
fn main() {
    match (
        std::env::var_os(CHILD_DB_ENV),
        std::env::var_os(CHILD_ROUND_ENV),
    ) {
        (Some(db), Some(round)) => crash_child_writes_until_killed(db, round),
        _ => {
            every_acknowledged_write_survives_kill_9();
            println!("test every_acknowledged_write_survives_kill_9 ... ok");
            println!("1 passed, 0 failed");
        }
    }
}

/// The child process: writes until the parent kills it, acknowledging each write on stdout.
fn crash_child_writes_until_killed(db: std::ffi::OsString, round: std::ffi::OsString) {
    let round = round.to_string_lossy().into_owned();
    let store = SqliteStore::open(Path::new(&db)).expect("child opens store");
    let mut out = std::io::stdout().lock();
    for i in 0..CHILD_MAX_WRITES {
        let rev = if i % 3 == 0 {
            store
                .txn(vec![
                    Op::put(format!("{round}/txn/{i}/a"), i.to_string(), Expect::Absent),
                    Op::put(format!("{round}/txn/{i}/b"), i.to_string(), Expect::Absent),
                ])
                .expect("txn")
        } else {
            store
                .put(
                    &format!("{round}/put/{i}"),
                    i.to_string().as_bytes(),
                    Expect::Absent,
                )
                .expect("put")
        };
        writeln!(out, "ack {i} {rev}")
            .and_then(|()| out.flush())
            .expect("print ack");
    }
}

/// Kills the child if the parent test fails before it does.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start a writer child, kill -9 it after some acks; returns every (index, revision) acked.
fn run_child_and_kill(db: &Path, round: usize) -> Vec<(usize, u64)> {
    let child = Command::new(std::env::current_exe().expect("test binary path"))
        .env(CHILD_DB_ENV, db)
        .env(CHILD_ROUND_ENV, round.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().expect("child stdout");
    let mut lines = BufReader::new(stdout).lines();

    let mut acks = Vec::new();
    while acks.len() < ACKS_BEFORE_KILL {
        let line = lines
            .next()
            .expect("child exited before it was killed")
            .expect("read child");
        acks.extend(parse_ack(&line));
    }
    child.0.kill().expect("kill -9 child"); // SIGKILL on Unix
    child.0.wait().expect("reap child");
    // Acks already in the pipe were acknowledged before the kill: they count too.
    for line in lines {
        acks.extend(parse_ack(&line.expect("read child")));
    }
    acks
}

fn parse_ack(line: &str) -> Option<(usize, u64)> {
    let mut parts = line.strip_prefix("ack ")?.split(' ');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn every_acknowledged_write_survives_kill_9() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("state.db");
    for round in 0..3 {
        let acks = run_child_and_kill(&db, round);
        let store = SqliteStore::open(&db).expect("reopen after crash");
        let last = acks.last().expect("some acks").1;
        assert!(
            store.revision().unwrap() >= last,
            "revision went back after the crash"
        );

        for &(i, rev) in &acks {
            let keys = if i % 3 == 0 {
                vec![format!("{round}/txn/{i}/a"), format!("{round}/txn/{i}/b")]
            } else {
                vec![format!("{round}/put/{i}")]
            };
            let revs: Vec<u64> = keys
                .iter()
                .map(|key| {
                    let kv = store
                        .get(key)
                        .unwrap()
                        .unwrap_or_else(|| panic!("acked {key} lost"));
                    assert_eq!(kv.value, i.to_string().as_bytes(), "{key}");
                    kv.mod_revision
                })
                .collect();
            assert_eq!(revs.last(), Some(&rev), "acked revision of write {i}");
        }

        // Transactions caught by the kill are whole or absent, never half applied.
        let (kvs, _) = store.list(&format!("{round}/txn/")).unwrap();
        let mut per_txn = std::collections::BTreeMap::<String, usize>::new();
        for kv in &kvs {
            let txn = kv
                .key
                .rsplit_once('/')
                .map_or(kv.key.clone(), |(txn, _)| txn.to_string());
            *per_txn.entry(txn).or_default() += 1;
        }
        assert!(
            per_txn.values().all(|&n| n == 2),
            "half-applied transaction: {per_txn:?}"
        );
    }
}
