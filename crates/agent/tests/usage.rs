//! CPU and memory use of real instances, as the supervisor samples it for the heartbeat.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::*;
use ebb_core::DesiredState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_instance_reports_its_cpu_and_a_sleeping_one_almost_none() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path());
    let mut busy = assignment("usage-busy", &["sh", "-c", "while :; do :; done"]);
    busy.spec.resources.cpu_millis = Some(1000);
    busy.spec.resources.memory_bytes = Some(256 * 1024 * 1024);
    let sleepy = assignment("usage-sleep", &["sleep", "1000"]);
    h.sup().apply(&[busy.clone(), sleepy.clone()]);
    let find = |id: &str| h.sup().usage().into_iter().find(|u| u.id == id);

    // Other work on the machine may slow the loop for a moment: wait for a sample above 0.3.
    let b = eventually("the busy instance above 0.3 cores", DEADLINE, || {
        find("usage-busy").filter(|u| u.cpu_cores > 0.3)
    })
    .await;
    assert!(b.cpu_cores < 1.5, "limited to one core: {b:?}");
    assert!(b.cpu_fraction.is_some_and(|f| f > 0.0), "{b:?}");
    assert!(b.memory_bytes > 0, "{b:?}");
    assert!(
        b.memory_fraction.is_some_and(|f| f > 0.0 && f < 1.0),
        "{b:?}"
    );
    assert_eq!(b.generation, busy.generation);

    let s = eventually("the sleeping instance", DEADLINE, || find("usage-sleep")).await;
    assert!(s.cpu_cores < 0.05, "{s:?}");
    assert!(s.memory_bytes > 0, "{s:?}");
    assert_eq!((s.cpu_fraction, s.memory_fraction), (None, None), "{s:?}");

    let node = eventually("the node's usage", DEADLINE, || h.sup().node_usage()).await;
    assert!(node.cpu_cores > 0.0 && node.memory_bytes > 0, "{node:?}");

    // A stopped instance is no longer reported.
    let mut stopped = sleepy;
    stopped.desired = DesiredState::Stop;
    h.sup().apply(&[busy, stopped]);
    eventually("the stopped instance to leave the report", DEADLINE, || {
        find("usage-sleep").is_none().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_cgroup_v1_with_cpuacct_apart_an_instance_gets_a_cpuacct_group() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path());
    let separate = std::path::Path::new("/sys/fs/cgroup/cpuacct/cpuacct.usage").exists()
        && !std::path::Path::new("/sys/fs/cgroup/cpu/cpuacct.usage").exists();
    if h.sup().enforcement() != "cgroup v1" || !separate {
        eprintln!("SKIPPED: not cgroup v1 with cpuacct mounted apart from cpu");
        return;
    }
    let dirs = h.sup().cgroup_dirs("usage-acct");
    assert_eq!(dirs.len(), 3, "{dirs:?}");
    h.sup().apply(&[assignment(
        "usage-acct",
        &["sh", "-c", "while :; do :; done"],
    )]);
    let pid = h
        .wait_status("usage-acct", "running", |s| s.pid.is_some())
        .await
        .pid
        .unwrap();
    let procs = std::fs::read_to_string(dirs[2].join("cgroup.procs")).unwrap();
    assert!(procs.lines().any(|l| l == pid.to_string()), "{procs}");
    eventually("CPU time counted in the cpuacct group", DEADLINE, || {
        let ns: u64 = std::fs::read_to_string(dirs[2].join("cpuacct.usage"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        (ns > 0).then_some(())
    })
    .await;
}
