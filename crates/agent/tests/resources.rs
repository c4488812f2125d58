//! Cgroup limits and log rotation.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::*;
use ebb_agent::Supervisor;
use ebb_core::InstanceState;
use std::path::PathBuf;

/// The instance's group folder for a controller, read from its `/proc/<pid>/cgroup`.
fn group_dir(pid: u32, enforcement: &str, controller: &str) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = text
        .lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
            let wanted = if enforcement == "cgroup v2" {
                ctrls.is_empty()
            } else {
                ctrls.split(',').any(|c| c == controller)
            };
            wanted.then(|| path.trim_start_matches('/').to_string())
        })
        .unwrap();
    let v2_root = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .find(|r| {
            std::path::Path::new(r)
                .join(&path)
                .join("memory.max")
                .exists()
        });
    match enforcement {
        "cgroup v2" => PathBuf::from(v2_root.unwrap()).join(path),
        _ => PathBuf::from("/sys/fs/cgroup").join(controller).join(path),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_and_cpu_limits_are_written_to_the_instance_cgroup() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path());
    let enforcement = h.sup().enforcement();
    if enforcement.starts_with("none") {
        eprintln!("SKIPPED: resources are not enforced on this machine: {enforcement}");
        return;
    }
    let mut a = assignment("res-limits", &["sh", "-c", "sleep 1000 & exec sleep 1000"]);
    a.spec.resources.memory_bytes = Some(64 * 1024 * 1024);
    a.spec.resources.cpu_millis = Some(500);
    h.sup().apply(std::slice::from_ref(&a));
    let pid = h
        .wait_status("res-limits", "ready", |s| s.ready)
        .await
        .pid
        .unwrap();
    let (mem, cpu) = (
        group_dir(pid, &enforcement, "memory"),
        group_dir(pid, &enforcement, "cpu"),
    );
    let agent = h.sup().agent_id();
    assert!(
        mem.ends_with(format!("ebb/{agent}/res-limits")),
        "{}",
        mem.display()
    );
    let read = |p: PathBuf| {
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .trim()
            .to_string()
    };
    if enforcement == "cgroup v2" {
        assert_eq!(read(mem.join("memory.max")), "67108864");
        assert_eq!(read(mem.join("cpu.max")), "50000 100000");
    } else {
        assert_eq!(read(mem.join("memory.limit_in_bytes")), "67108864");
        assert_eq!(read(cpu.join("cpu.cfs_quota_us")), "50000");
        assert_eq!(read(cpu.join("cpu.cfs_period_us")), "100000");
    }
    // The agent's own threads went back to their groups after spawning.
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let cg = std::fs::read_to_string(task.unwrap().path().join("cgroup")).unwrap_or_default();
        assert!(
            !cg.contains("ebb/res-limits"),
            "an agent thread stayed in the instance group: {cg}"
        );
    }
    a.desired = ebb_core::DesiredState::Stop;
    h.sup().apply(&[a]);
    h.wait_status("res-limits", "stopped", |s| {
        s.state == InstanceState::Stopped
    })
    .await;
    assert!(!mem.exists() && !cpu.exists(), "groups removed after stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_rotate_above_the_limit_and_keep_at_most_log_keep_files() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::with_config(config(dir.path())); // 1000 bytes, keep 2
    let script = "while true; do echo 'a line of output that fills the log quickly, about eighty bytes'; sleep 0.02; done";
    h.sup()
        .apply(&[assignment("res-logs", &["sh", "-c", script])]);
    let mtime = |p: &PathBuf| std::fs::metadata(p).ok()?.modified().ok();
    let (files, oldest) = eventually("two rotations", DEADLINE, || {
        let files = h.sup().log_files("res-logs");
        let oldest = files
            .first()
            .filter(|f| f.to_string_lossy().ends_with(".log.2"))
            .and_then(mtime)?;
        Some((files, oldest))
    })
    .await;
    assert_eq!(files.len(), 3, "{files:?}");
    eventually("a third rotation", DEADLINE, || {
        (mtime(&files[0])? > oldest).then_some(())
    })
    .await;
    let names: Vec<String> = h
        .sup()
        .log_files("res-logs")
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into())
        .collect();
    assert_eq!(names, ["res-logs.log.2", "res-logs.log.1", "res-logs.log"]);
    assert!(!dir.path().join("logs/svc/res-logs.log.3").exists());
    let log_dir = h.sup().log_dir();
    h.sup().kill_all_now();
    let files_after = Supervisor::start(config(dir.path()))
        .unwrap()
        .log_files("res-logs");
    assert_eq!(
        files_after.len(),
        3,
        "logs of unknown ids are still found under {}",
        log_dir.display()
    );
}
