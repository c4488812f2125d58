//! An agent that crashes (kill -9) and restarts adopts its running instances: never a duplicate,
//! never an orphan, and never a process that merely reuses a recorded pid.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::*;
use ebb_agent::Supervisor;
use ebb_core::{EventKind, HealthCheck, InstanceState};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_adopts_the_running_instance_instead_of_starting_another() {
    let dir = tempfile::tempdir().unwrap();
    let starts = dir.path().join("starts");
    let script = r#"echo $$ >> "$1"; exec python3 -m http.server "$2" --bind "$3""#;
    let mut a = http_server("adopt-live", HealthCheck::Tcp);
    a.spec.command = [
        "sh",
        "-c",
        script,
        "sh",
        &starts.display().to_string(),
        "${PORT}",
        "${HOST}",
    ]
    .map(String::from)
    .to_vec();
    let mut first = Harness::start(dir.path());
    first.sup().apply(std::slice::from_ref(&a));
    let before = first.wait_status("adopt-live", "ready", |s| s.ready).await;
    first.crash();

    let second = Harness::start(dir.path());
    let adopted = second.status("adopt-live").expect("adopted at start");
    assert_eq!(adopted.state, InstanceState::Running);
    assert_eq!(
        (adopted.pid, &adopted.addr, adopted.started_ms),
        (before.pid, &before.addr, before.started_ms)
    );
    second.sup().apply(std::slice::from_ref(&a));
    let after = second
        .wait_status("adopt-live", "ready again", |s| s.ready)
        .await;
    assert_eq!(after.pid, before.pid);
    assert_eq!(
        std::fs::read_to_string(&starts).unwrap().lines().count(),
        1,
        "started once"
    );
    assert_eq!(second.events_of(EventKind::InstanceAdopted).len(), 1);
    assert!(second.events_of(EventKind::InstanceStarted).is_empty());

    // The adopted process is watched: killing it restarts it through the back-off.
    let pid = after.pid.unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let restarted = second
        .wait_status("adopt-live", "restarted", |s| s.restarts == 1 && s.ready)
        .await;
    assert_ne!(restarted.pid, Some(pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_process_that_died_meanwhile_is_started_again() {
    let dir = tempfile::tempdir().unwrap();
    let a = assignment("adopt-dead", &["sleep", "1000"]);
    let mut first = Harness::start(dir.path());
    first.sup().apply(std::slice::from_ref(&a));
    let pid = first
        .wait_status("adopt-dead", "ready", |s| s.ready)
        .await
        .pid
        .unwrap();
    first.crash();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    eventually("the recorded process to die", DEADLINE, || {
        (!alive(pid)).then_some(())
    })
    .await;

    let second = Harness::start(dir.path());
    assert!(
        second.status("adopt-dead").is_none(),
        "a dead process is not adopted"
    );
    assert!(second.events_of(EventKind::InstanceExited)[0]
        .message
        .contains("while the agent was down"));
    second.sup().apply(&[a]);
    let s = second
        .wait_status("adopt-dead", "started again", |s| s.ready)
        .await;
    assert_ne!(s.pid, Some(pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_pid_is_never_adopted_nor_signalled() {
    let dir = tempfile::tempdir().unwrap();
    // Our own pid, with a start time that is not ours: a pid the kernel handed to someone else.
    let state = serde_json::json!({ "instances": { "adopt-reused": {
        "generation": 1, "service": "svc", "version": "v", "pid": std::process::id(),
        "start_ticks": 1, "port": 1, "started_ms": 0, "restarts": 0 } } });
    std::fs::write(dir.path().join("instances.json"), state.to_string()).unwrap();
    let h = Harness::start(dir.path());
    assert!(h.status("adopt-reused").is_none());
    let saved = std::fs::read_to_string(dir.path().join("instances.json")).unwrap();
    assert!(!saved.contains("adopt-reused"), "{saved}");
    h.sup().kill_all_now(); // must not signal us
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_state_file_stops_the_start_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("instances.json"), "{ not json").unwrap();
    let err = Supervisor::start(config(dir.path()))
        .err()
        .expect("refused");
    assert!(err.to_string().contains("move it aside"), "{err}");
}

#[test]
fn starting_outside_a_tokio_runtime_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    assert!(Supervisor::start(config(dir.path())).is_err());
}
