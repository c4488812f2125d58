//! The core runtime through the real binary: deploy, self-healing, scale, stop, rolling update,
//! crash and re-adoption, logs, events and graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::*;
use std::time::Duration;

fn addrs(instances: &[serde_json::Value]) -> Vec<String> {
    instances
        .iter()
        .map(|i| i["addr"].as_str().expect("addr").to_string())
        .collect()
}

fn pids(instances: &[serde_json::Value]) -> Vec<u64> {
    instances
        .iter()
        .map(|i| i["pid"].as_u64().expect("pid"))
        .collect()
}

#[test]
fn deploy_brings_up_n_ready_instances_that_answer_http() {
    let ebb = Ebb::up(&[]);
    let file = deploy_file(
        ebb.dir.path(),
        "a.toml",
        &app_service("alpha", 3, "env = { GREETING = \"howdy\" }"),
    );
    let out = ebb.ok(&["deploy", file.to_str().unwrap()]);
    assert!(out.contains("alpha: created, 3 instances"), "{out}");
    assert!(out.contains("ready in"), "{out}");
    let instances = ebb.wait_ready("alpha", 3, Duration::from_secs(5));
    for i in &instances {
        for field in ["id", "service", "node", "state", "pid", "addr", "ready"] {
            assert!(!i[field].is_null(), "ps --json lacks {field}: {i}");
        }
        let (status, body) = http_get(i["addr"].as_str().unwrap(), "/").expect("instance answers");
        assert_eq!(status, 200);
        assert_eq!(body, format!("howdy from {}\n", i["id"].as_str().unwrap()));
    }
    let table = ebb.ok(&["ps"]);
    assert!(table.starts_with("ID"), "{table}");
    assert_eq!(table.lines().count(), 4, "{table}");
}

#[test]
fn a_killed_instance_is_restarted_within_5s() {
    let ebb = Ebb::up(&[]);
    let file = deploy_file(ebb.dir.path(), "b.toml", &app_service("bravo", 2, ""));
    ebb.ok(&["deploy", file.to_str().unwrap()]);
    let before = ebb.wait_ready("bravo", 2, Duration::from_secs(5));
    let victim = before[0]["pid"].as_u64().unwrap();
    let id = before[0]["id"].as_str().unwrap().to_string();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let after = eventually(
        "the killed instance to be back and ready",
        Duration::from_secs(5),
        || {
            let all = ebb.ready("bravo");
            let back = all.iter().find(|i| i["id"] == id.as_str())?;
            (back["pid"].as_u64() != Some(victim) && all.len() == 2).then(|| back.clone())
        },
    );
    assert_eq!(after["restarts"], 1);
    assert!(!alive(victim));
    let events = ebb.ok(&["events"]);
    assert!(
        events.contains("instance.exited") && events.contains("instance.restarting"),
        "{events}"
    );
}

#[test]
fn scale_up_and_down_changes_the_running_instances() {
    let ebb = Ebb::up(&[]);
    let file = deploy_file(ebb.dir.path(), "c.toml", &app_service("charlie", 1, ""));
    ebb.ok(&["deploy", file.to_str().unwrap()]);
    ebb.wait_ready("charlie", 1, Duration::from_secs(5));
    assert!(ebb.ok(&["scale", "charlie", "4"]).contains("scaled 1 → 4"));
    let four = ebb.wait_ready("charlie", 4, Duration::from_secs(10));
    assert!(ebb.ok(&["scale", "charlie", "2"]).contains("scaled 4 → 2"));
    let two = ebb.wait_ready("charlie", 2, Duration::from_secs(10));
    let stopped: Vec<u64> = pids(&four)
        .into_iter()
        .filter(|p| !pids(&two).contains(p))
        .collect();
    assert_eq!(stopped.len(), 2);
    eventually(
        "scaled-in processes to exit",
        Duration::from_secs(10),
        || stopped.iter().all(|p| !alive(*p)).then_some(()),
    );
    let status = ebb.ok(&["status"]);
    assert!(status.contains("charlie"), "{status}");
}

#[test]
fn stop_removes_the_service_and_leaves_no_process_behind() {
    let ebb = Ebb::up(&[]);
    // Each instance runs a child of its own: the whole tree must go.
    let text = "[services.delta]\ncommand = [\"sh\", \"-c\", \"sleep 1000 & exec ebb example-app\"]\ninstances = 2\n";
    let file = deploy_file(ebb.dir.path(), "d.toml", text);
    ebb.ok(&["deploy", "--timeout", "20s", file.to_str().unwrap()]);
    ebb.wait_ready("delta", 2, Duration::from_secs(5));
    let tree = processes_with_env("EBB_SERVICE", "delta");
    assert!(
        tree.len() >= 4,
        "expected the app and its sleep per instance: {tree:?}"
    );
    let out = ebb.ok(&["stop", "delta"]);
    assert!(out.contains("all instances stopped"), "{out}");
    assert!(ebb.ps(Some("delta")).is_empty());
    eventually(
        "every process of the service to exit",
        Duration::from_secs(5),
        || {
            processes_with_env("EBB_SERVICE", "delta")
                .is_empty()
                .then_some(())
        },
    );
    let err = ebb.cli(&["scale", "delta", "1"]);
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("no service named"));
}

#[test]
fn a_spec_change_rolls_instances_one_at_a_time_keeping_capacity() {
    let ebb = Ebb::up(&[]);
    let v1 = deploy_file(
        ebb.dir.path(),
        "e.toml",
        &app_service("echo", 3, "env = { GREETING = \"v1\" }"),
    );
    ebb.ok(&["deploy", v1.to_str().unwrap()]);
    let old = ebb.wait_ready("echo", 3, Duration::from_secs(5));
    let v2 = deploy_file(
        ebb.dir.path(),
        "e.toml",
        &app_service("echo", 3, "env = { GREETING = \"v2\" }"),
    );
    let mut deploy = std::process::Command::new(EBB)
        .arg("--data-dir")
        .arg(ebb.data_dir())
        .args(["deploy", v2.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut most_running = 0;
    let mut fewest_ready = usize::MAX;
    let status = eventually(
        "the rolling deploy to finish",
        Duration::from_secs(30),
        || {
            let all = ebb.ps(Some("echo"));
            let running = all.iter().filter(|i| i["desired"] == "run").count();
            most_running = most_running.max(running);
            fewest_ready = fewest_ready.min(
                all.iter()
                    .filter(|i| i["desired"] == "run" && i["ready"] == true)
                    .count(),
            );
            deploy.try_wait().unwrap()
        },
    );
    assert!(status.success());
    let mut out = String::new();
    std::io::Read::read_to_string(deploy.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(out.contains("echo: updated, rolling 3 instances"), "{out}");
    assert!(
        most_running <= 4,
        "a rollout runs at most desired + 1 instances, saw {most_running}"
    );
    assert!(
        fewest_ready >= 3,
        "capacity dropped to {fewest_ready} ready during the rollout"
    );
    let new = ebb.wait_ready("echo", 3, Duration::from_secs(5));
    for i in &new {
        assert!(
            old.iter().all(|o| o["id"] != i["id"]),
            "instance {} was not replaced",
            i["id"]
        );
        let (_, body) = http_get(i["addr"].as_str().unwrap(), "/").unwrap();
        assert!(body.starts_with("v2 from"), "{body}");
    }
    for p in pids(&old) {
        eventually("old instances to exit", Duration::from_secs(5), || {
            (!alive(p)).then_some(())
        });
    }
}

#[test]
fn after_a_crash_ebb_up_readopts_its_instances_without_duplicates() {
    let mut ebb = Ebb::up(&[]);
    let file = deploy_file(ebb.dir.path(), "f.toml", &app_service("foxtrot", 3, ""));
    ebb.ok(&["deploy", file.to_str().unwrap()]);
    let before = ebb.wait_ready("foxtrot", 3, Duration::from_secs(5));
    ebb.crash();
    for i in &before {
        assert!(
            alive(i["pid"].as_u64().unwrap()),
            "instances must survive a crash of ebb"
        );
        assert!(http_get(i["addr"].as_str().unwrap(), "/healthz").is_some());
    }
    ebb.start(&[]);
    let after = ebb.wait_ready("foxtrot", 3, Duration::from_secs(10));
    let mut a = pids(&after);
    let mut b = pids(&before);
    a.sort();
    b.sort();
    assert_eq!(a, b, "the same processes are adopted, not restarted");
    assert_eq!(addrs(&after).len(), 3);
    let procs = processes_with_env("EBB_SERVICE", "foxtrot");
    assert_eq!(procs.len(), 3, "no duplicate and no orphan: {procs:?}");
    assert!(ebb.ok(&["events"]).contains("instance.adopted"));
}

#[test]
fn an_instance_failing_its_health_check_is_killed_and_restarted() {
    let ebb = Ebb::up(&[]);
    let text = "[services.golf]\ncommand = [\"ebb\", \"example-app\"]\ninstances = 1\n\
                [services.golf.health]\nhttp = \"/fail\"\ninterval = \"200ms\"\nunhealthy_threshold = 2\nstart_period = \"0s\"\n";
    let file = deploy_file(ebb.dir.path(), "g.toml", text);
    ebb.ok(&["deploy", "--detach", file.to_str().unwrap()]);
    eventually(
        "a restart after failed health checks",
        Duration::from_secs(10),
        || {
            let all = ebb.ps(Some("golf"));
            (all.len() == 1 && all[0]["restarts"].as_u64() >= Some(1)).then_some(())
        },
    );
    assert_eq!(ebb.ps(Some("golf"))[0]["ready"], false);
    let events = ebb.ok(&["events", "--json"]);
    let events: Vec<serde_json::Value> = serde_json::from_str(&events).unwrap();
    let unhealthy = events
        .iter()
        .find(|e| e["kind"] == "instance.unhealthy")
        .expect("an unhealthy event");
    assert!(
        unhealthy["message"].as_str().unwrap().contains("500"),
        "{unhealthy}"
    );
}

#[test]
fn logs_show_each_instance_output_with_tail_and_instance_filters() {
    let ebb = Ebb::up(&[]);
    let text = "[services.hotel]\ncommand = [\"sh\", \"-c\", \"echo first; echo second; echo to-stderr >&2; exec ebb example-app\"]\ninstances = 2\n";
    let file = deploy_file(ebb.dir.path(), "h.toml", text);
    ebb.ok(&["deploy", file.to_str().unwrap()]);
    let instances = ebb.wait_ready("hotel", 2, Duration::from_secs(5));
    let id = instances[0]["id"].as_str().unwrap();
    let all = eventually("log lines", Duration::from_secs(5), || {
        let out = ebb.ok(&["logs", "hotel"]);
        (out.matches("listening on").count() == 2).then_some(out)
    });
    assert!(all.contains(&format!("{id} | first")), "{all}");
    assert!(all.contains("to-stderr"), "stderr is captured too: {all}");
    let one = ebb.ok(&["logs", "hotel", "--instance", id, "--tail", "1"]);
    assert_eq!(one.lines().count(), 1, "{one}");
    assert!(one.contains("listening on"), "{one}");
    assert!(!ebb.cli(&["logs", "nosuch"]).status.success());
}

#[test]
fn sigint_stops_every_instance_gracefully_and_a_restart_brings_them_back() {
    let mut ebb = Ebb::up(&[]);
    let file = deploy_file(ebb.dir.path(), "i.toml", &app_service("india", 2, ""));
    ebb.ok(&["deploy", file.to_str().unwrap()]);
    let before = ebb.wait_ready("india", 2, Duration::from_secs(5));
    let status = ebb.signal_and_wait(nix::sys::signal::Signal::SIGINT);
    assert!(status.success(), "ebb up exits 0 after Ctrl-C: {status}");
    for p in pids(&before) {
        assert!(!alive(p), "instance {p} survived a graceful stop");
    }
    assert!(processes_with_env("EBB_SERVICE", "india").is_empty());
    ebb.start(&[]);
    ebb.wait_ready("india", 2, Duration::from_secs(10));
}

#[test]
fn up_applies_deploy_files_given_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = deploy_file(dir.path(), "j.toml", &app_service("juliet", 2, ""));
    let ebb = Ebb::up(&[&file]);
    ebb.wait_ready("juliet", 2, Duration::from_secs(10));
}
