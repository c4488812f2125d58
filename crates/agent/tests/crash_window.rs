//! The window between spawning a process and recording it: an agent that dies there must leave
//! no orphan (the next agent kills what it cannot adopt), and the recording itself must not cost
//! one state-file write per start.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::*;
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

/// A process the test started itself, standing for one the crashed agent never recorded.
/// Killed and reaped on drop, so a failing test leaves nothing behind.
struct Stray(Child);

impl Stray {
    fn sleep(env: &[(&str, &str)]) -> Stray {
        let child = Command::new("sleep")
            .arg("1000")
            .envs(env.iter().copied())
            .process_group(0)
            .spawn()
            .expect("sleep starts");
        Stray(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Some once the process ended (and is reaped).
    fn ended(&mut self) -> Option<()> {
        self.0.try_wait().expect("try_wait").map(drop)
    }
}

impl Drop for Stray {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Cgroup folders the test made, removed on drop should the test fail before the agent does.
struct Groups(Vec<std::path::PathBuf>);

impl Drop for Groups {
    fn drop(&mut self) {
        for group in &self.0 {
            let _ = std::fs::remove_dir(group);
        }
    }
}

/// An instance's process orphaned by the test, SIGKILLed on drop should the agent not kill it.
struct Orphan(u32);

impl Drop for Orphan {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0 as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Instance ids and pids the state file lists.
fn recorded(dir: &std::path::Path) -> BTreeMap<String, u64> {
    let Ok(text) = std::fs::read_to_string(dir.join("instances.json")) else {
        return BTreeMap::new();
    };
    let json: serde_json::Value = serde_json::from_str(&text).expect("valid state file");
    json["instances"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(id, r)| (id.clone(), r["pid"].as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrecorded_process_in_an_ebb_cgroup_is_killed_when_the_next_agent_starts() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Harness::start(dir.path());
    let enforcement = first.sup().enforcement();
    if enforcement.starts_with("none") {
        eprintln!("SKIPPED: no cgroups to sweep on this machine: {enforcement}");
        return;
    }
    let groups = Groups(first.sup().cgroup_dirs("crash-cgroup"));
    first.crash();
    // What a crash right after the spawn leaves: the instance's group with a live process in it,
    // and no record of either. The process has no EBB_AGENT_ID: only its group can betray it.
    let mut stray = Stray::sleep(&[]);
    for group in &groups.0 {
        std::fs::create_dir_all(group).unwrap();
        std::fs::write(group.join("cgroup.procs"), stray.pid().to_string()).unwrap();
    }

    let second = Harness::start(dir.path());
    eventually("the unrecorded process to be killed", DEADLINE, || {
        stray.ended()
    })
    .await;
    eventually("its groups to be removed", DEADLINE, || {
        groups.0.iter().all(|g| !g.exists()).then_some(())
    })
    .await;
    assert!(second.sup().statuses().is_empty(), "nothing was adopted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrecorded_process_marked_with_the_agent_id_is_killed_and_others_are_not() {
    // What covers nodes without cgroups: the mark every instance carries in its environment.
    let dir = tempfile::tempdir().unwrap();
    let mut first = Harness::start(dir.path());
    let agent = first.sup().agent_id();
    first.crash();
    let mut ours = Stray::sleep(&[("EBB_AGENT_ID", &agent), ("EBB_INSTANCE_ID", "crash-env")]);
    let mut another_agents = Stray::sleep(&[
        ("EBB_AGENT_ID", "0000000000000000"),
        ("EBB_INSTANCE_ID", "crash-env"),
    ]);

    let _second = Harness::start(dir.path());
    eventually("the marked process to be killed", DEADLINE, || ours.ended()).await;
    // The sweep ran inside `start`: what it spared is spared for good.
    assert!(
        another_agents.ended().is_none(),
        "another agent's process was killed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_died_before_recording_a_start_leaves_no_orphan_and_no_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let a = assignment("crash-late", &["sleep", "1000"]);
    let mut first = Harness::start(dir.path());
    first.sup().apply(std::slice::from_ref(&a));
    let old = first
        .wait_status("crash-late", "running", |s| s.ready)
        .await
        .pid
        .unwrap();
    let _orphan = Orphan(old);
    first.crash();
    // The crash came before the record reached the disk.
    std::fs::write(dir.path().join("instances.json"), r#"{"instances":{}}"#).unwrap();

    let second = Harness::start(dir.path());
    eventually("the unrecorded process to be killed", DEADLINE, || {
        (!alive(old)).then_some(())
    })
    .await;
    second.sup().apply(&[a]);
    let new = second
        .wait_status("crash-late", "started again", |s| s.ready)
        .await
        .pid
        .unwrap();
    assert_ne!(new, old);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_starts_writes_the_state_file_a_few_times_not_once_per_start() {
    const N: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path());
    let before = h.sup().state_writes();
    let set: Vec<_> = (0..N)
        .map(|i| assignment(&format!("burst-{i}"), &["sleep", "1000"]))
        .collect();
    h.sup().apply(&set);
    let pids: BTreeMap<String, u64> = eventually("all instances running", DEADLINE, || {
        let statuses = h.sup().statuses();
        let pids: BTreeMap<String, u64> = statuses
            .iter()
            .filter_map(|s| Some((s.id.clone(), u64::from(s.pid?))))
            .collect();
        (pids.len() == N).then_some(pids)
    })
    .await;
    eventually("the state file to list every process", DEADLINE, || {
        (recorded(dir.path()) == pids).then_some(())
    })
    .await;
    // Writes are coalesced (at most one per 50 ms): far fewer than starts. The bound is loose
    // on purpose, so that a slow machine spawning slowly does not fail it; one write per start
    // (the old behaviour) does.
    let writes = h.sup().state_writes() - before;
    assert!(
        writes < (N / 2) as u64,
        "{writes} state file writes for {N} starts"
    );

    h.sup().kill_all_now();
    assert!(
        recorded(dir.path()).is_empty(),
        "kill_all_now clears the file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_crash_right_after_starts_leaves_every_process_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Harness::start(dir.path());
    let set: Vec<_> = (0..5)
        .map(|i| assignment(&format!("crash-flush-{i}"), &["sleep", "1000"]))
        .collect();
    first.sup().apply(&set);
    let pids: BTreeMap<String, u64> = eventually("all instances running", DEADLINE, || {
        let pids: BTreeMap<String, u64> = first
            .sup()
            .statuses()
            .iter()
            .filter_map(|s| Some((s.id.clone(), u64::from(s.pid?))))
            .collect();
        (pids.len() == set.len()).then_some(pids)
    })
    .await;
    let _orphans: Vec<Orphan> = pids.values().map(|&pid| Orphan(pid as u32)).collect();
    first.crash();
    assert_eq!(recorded(dir.path()), pids, "forget writes what was pending");
    let second = Harness::start(dir.path());
    assert_eq!(second.sup().statuses().len(), set.len(), "all adopted");
}
