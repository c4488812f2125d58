//! Start, environment, restart, health, stop and removal, with real processes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::*;
use ebb_core::{DesiredState, EventKind, HealthCheck, InstanceState};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_server_starts_and_becomes_ready_with_a_tcp_check() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path());
    let changed = h.sup().changed();
    h.sup().apply(&[http_server("life-tcp", HealthCheck::Tcp)]);
    assert!(changed.has_changed().unwrap(), "apply wakes the reporter");
    let s = h
        .wait_status("life-tcp", "running and ready", |s| {
            s.state == InstanceState::Running && s.ready
        })
        .await;
    assert!(
        s.addr
            .as_deref()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{s:?}"
    );
    assert!(alive(s.pid.unwrap()));
    assert_eq!(s.restarts, 0);
    let started = h.events_of(EventKind::InstanceStarted);
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].node.as_deref(), Some("node-t"));
    assert_eq!(h.events_of(EventKind::InstanceReady).len(), 1);
    assert!(h.sup().log_files("life-tcp")[0].ends_with("logs/svc/life-tcp.log"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_get_port_host_and_ids_but_never_ebb_variables() {
    std::env::set_var("EBB_TOKEN", "secret-token");
    std::env::set_var("EBB_ADDR", "http://server");
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path());
    let out = dir.path().join("env.txt");
    let script = r#"echo "$2" > "$1.args"; env > "$1.tmp"; mv "$1.tmp" "$1"; exec sleep 1000"#;
    let mut a = assignment(
        "life-env",
        &["sh", "-c", script, "sh", "${OUT}", "port=${PORT}/${NOPE}x"],
    );
    a.spec.env.insert("OUT".into(), out.display().to_string());
    a.spec.env.insert("GREETING".into(), "hello".into());
    h.sup().apply(&[a]);
    let env = read_when_written(&out).await;
    let lines: Vec<&str> = env.lines().collect();
    let port = lines
        .iter()
        .find_map(|l| l.strip_prefix("PORT="))
        .expect("PORT set");
    for expected in [
        "HOST=127.0.0.1",
        "EBB_INSTANCE_ID=life-env",
        "EBB_SERVICE=svc",
        "EBB_NODE=node-t",
        "GREETING=hello",
    ] {
        assert!(lines.contains(&expected), "{expected} missing from\n{env}");
    }
    assert!(
        !env.contains("EBB_TOKEN") && !env.contains("secret-token") && !env.contains("EBB_ADDR"),
        "{env}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("PATH=")),
        "the rest of the environment is inherited"
    );
    let args = std::fs::read_to_string(dir.path().join("env.txt.args")).unwrap();
    assert_eq!(args.trim(), format!("port={port}/x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_is_restarted_with_a_new_pid() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path());
    h.sup()
        .apply(&[assignment("life-kill", &["sleep", "1000"])]);
    let first = h.wait_status("life-kill", "ready", |s| s.ready).await;
    let pid = first.pid.unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let again = h
        .wait_status("life-kill", "restarted", |s| {
            s.restarts == 1 && s.pid.is_some() && s.ready
        })
        .await;
    assert_ne!(again.pid, Some(pid));
    assert_eq!(again.last_exit.as_deref(), Some("killed by SIGKILL"));
    assert_eq!(again.addr, first.addr, "the port is kept across restarts");
    let exited = h.events_of(EventKind::InstanceExited);
    assert!(
        exited[0].message.contains("killed by SIGKILL"),
        "{exited:?}"
    );
    assert_eq!(h.events_of(EventKind::InstanceRestarting).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_http_check_kills_and_restarts_the_instance() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path());
    let mut a = http_server(
        "life-http",
        HealthCheck::Http {
            path: "/missing-404".into(),
        },
    );
    a.spec.health.unhealthy_threshold = 2;
    a.spec.health.start_period = std::time::Duration::ZERO;
    h.sup().apply(&[a]);
    let first_pid = h
        .wait_status("life-http", "started", |s| s.pid.is_some())
        .await
        .pid;
    let s = h
        .wait_status("life-http", "a restart", |s| {
            s.restarts >= 1 && s.pid.is_some()
        })
        .await;
    assert_ne!(s.pid, first_pid);
    assert!(!s.ready);
    let unhealthy = h.events_of(EventKind::InstanceUnhealthy);
    assert!(!unhealthy.is_empty());
    assert!(
        h.events().iter().any(|e| e.message.contains("404")),
        "{:?}",
        h.events()
    );
    assert!(
        !alive(first_pid.unwrap()),
        "the unhealthy process was killed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_check_that_answers_2xx_makes_the_instance_ready() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path());
    h.sup().apply(&[http_server(
        "life-http-ok",
        HealthCheck::Http { path: "/".into() },
    )]);
    h.wait_status("life-http-ok", "ready", |s| {
        s.ready && s.state == InstanceState::Running
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_ends_the_whole_process_tree() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path());
    let out = dir.path().join("pids");
    let script = r#"sleep 1000 & echo $! > "$1.tmp"; python3 -c 'import os, time; os.setsid(); time.sleep(1000)' & echo $! >> "$1.tmp"; mv "$1.tmp" "$1"; exec sleep 1000"#;
    let mut a = assignment(
        "life-stop",
        &["sh", "-c", script, "sh", &out.display().to_string()],
    );
    h.sup().apply(std::slice::from_ref(&a));
    let main = h
        .wait_status("life-stop", "ready", |s| s.ready)
        .await
        .pid
        .unwrap();
    let text = read_when_written(&out).await;
    let children: Vec<u32> = text.lines().map(|l| l.trim().parse().unwrap()).collect();
    assert!(children.iter().all(|&p| alive(p)));
    let escaped = |pid: u32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let pgrp: u32 = stat
            .rsplit(')')
            .next()?
            .split_whitespace()
            .nth(2)?
            .parse()
            .ok()?;
        (pgrp == pid).then_some(())
    };
    eventually("the child to leave the process group", DEADLINE, || {
        escaped(children[1])
    })
    .await;
    a.desired = DesiredState::Stop;
    h.sup().apply(&[a]);
    let s = h
        .wait_status("life-stop", "stopped", |s| {
            s.state == InstanceState::Stopped
        })
        .await;
    assert_eq!((s.pid, s.ready), (None, false));
    assert!(!alive(main), "main process gone");
    assert!(!alive(children[0]), "background child gone");
    if h.sup().enforcement().starts_with("none") {
        eprintln!("setsid escapee not checked: {}", h.sup().enforcement());
        let escapee = nix::unistd::Pid::from_raw(children[1] as i32);
        let _ = nix::sys::signal::kill(escapee, nix::sys::signal::Signal::SIGKILL);
    } else {
        let cg =
            std::fs::read_to_string(format!("/proc/{}/cgroup", children[1])).unwrap_or_default();
        assert!(
            !alive(children[1]),
            "a child that escaped with setsid is found in the cgroup: {cg}"
        );
    }
    assert!(h.events_of(EventKind::InstanceStopped)[0]
        .message
        .contains("SIGTERM"));
    assert_eq!(
        h.sup().statuses().len(),
        1,
        "a stopped instance is still reported"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starting_instance_is_ready_as_soon_as_it_listens_not_at_its_first_interval() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path());
    let mut a = http_server("life-fast", HealthCheck::Tcp);
    // A long interval: readiness must come from the startup probing, not the regular probes.
    a.spec.health.interval = std::time::Duration::from_secs(30);
    h.sup().apply(&[a]);
    let started = std::time::Instant::now();
    h.wait_status("life-fast", "ready", |s| s.ready).await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "ready after {:?}: probed only on the 30 s interval",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_an_instance_from_the_set_stops_it_and_deletes_its_logs() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path());
    h.sup().apply(&[assignment(
        "life-rm",
        &["sh", "-c", "echo hi; exec sleep 1000"],
    )]);
    let pid = h
        .wait_status("life-rm", "ready", |s| s.ready)
        .await
        .pid
        .unwrap();
    assert_eq!(h.sup().log_files("life-rm").len(), 1);
    h.sup().apply(&[]);
    eventually("the instance to be forgotten", DEADLINE, || {
        h.status("life-rm").is_none().then_some(())
    })
    .await;
    assert!(!alive(pid));
    assert!(h.sup().log_files("life-rm").is_empty());
    // The state file is rewritten off the stop path, coalesced: wait for the write, not the stop.
    let state_file = dir.path().join("instances.json");
    eventually("the state file to drop the instance", DEADLINE, || {
        let state = std::fs::read_to_string(&state_file).ok()?;
        (!state.contains("life-rm")).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_higher_generation_replaces_the_process_and_a_lower_one_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path());
    let mut a = assignment("life-gen", &["sleep", "1000"]);
    a.generation = 5;
    h.sup().apply(std::slice::from_ref(&a));
    let old = h
        .wait_status("life-gen", "ready", |s| s.ready)
        .await
        .pid
        .unwrap();
    a.generation = 3;
    h.sup().apply(std::slice::from_ref(&a));
    a.generation = 6;
    h.sup().apply(std::slice::from_ref(&a));
    let s = h
        .wait_status("life-gen", "generation 6 ready", |s| {
            s.generation == 6 && s.ready
        })
        .await;
    assert_ne!(s.pid, Some(old));
    assert_eq!(s.restarts, 0);
    assert!(!alive(old));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_program_fails_and_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path());
    h.sup()
        .apply(&[assignment("life-missing", &["/nonexistent/program"])]);
    let s = h
        .wait_status("life-missing", "failed", |s| {
            s.state == InstanceState::Failed
        })
        .await;
    assert!(s.last_exit.unwrap().contains("/nonexistent/program"));
    h.wait_status("life-missing", "a retry", |s| s.restarts >= 1)
        .await;
    let failed = h.events_of(EventKind::InstanceStartFailed);
    assert!(failed[0].message.contains("retrying in 1.0s"), "{failed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_gracefully_and_clears_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path());
    let script = r#"trap 'echo got-term; exit 0' TERM; echo up; sleep 1000 & wait"#;
    h.sup()
        .apply(&[assignment("life-down", &["sh", "-c", script])]);
    let pid = h
        .wait_status("life-down", "ready", |s| s.ready)
        .await
        .pid
        .unwrap();
    let log = h.sup().log_files("life-down").pop().unwrap();
    eventually("the script to be up", DEADLINE, || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|l| l.contains("up"))
    })
    .await;
    h.sup().shutdown().await;
    assert!(!alive(pid));
    assert!(std::fs::read_to_string(&log).unwrap().contains("got-term"));
    assert_eq!(
        h.status("life-down").unwrap().last_exit.as_deref(),
        Some("exit code 0")
    );
    let state = std::fs::read_to_string(dir.path().join("instances.json")).unwrap();
    assert!(!state.contains("life-down"), "{state}");
    h.sup()
        .apply(&[assignment("life-down", &["sleep", "1000"])]);
    assert_eq!(
        h.status("life-down").unwrap().state,
        InstanceState::Stopped,
        "apply after shutdown does nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeued_events_come_back_first_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path());
    h.sup()
        .apply(&[assignment("life-requeue", &["sleep", "1000"])]);
    h.wait_status("life-requeue", "ready", |s| s.ready).await;
    let first = h.sup().take_events();
    assert!(first.len() >= 2, "{first:?}");
    h.sup().requeue_events(first.clone());
    let again = h.sup().take_events();
    assert_eq!(again[..first.len()], first[..]);
    assert!(h.sup().take_events().is_empty());
}
