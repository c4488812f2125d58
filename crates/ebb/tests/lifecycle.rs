//! More of what a user sees: following logs and events, resource limits on the running process,
//! a deploy that survives an immediate crash, and the second Ctrl-C.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::*;
use std::time::Duration;

#[test]
fn logs_follow_prints_new_lines_as_they_are_written() {
    let ebb = Ebb::up(&[]);
    let text = "[services.november]\ncommand = [\"sh\", \"-c\", \"i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done\"]\n\
                [services.november.health]\ncommand = [\"true\"]\n";
    let file = deploy_file(ebb.dir.path(), "n.toml", text);
    ebb.ok(&["deploy", "--timeout", "20s", file.to_str().unwrap()]);
    let (mut child, rx) = follow(&ebb, &["logs", "november", "-f", "--tail", "1"]);
    let first = expect_line(&rx, "tick");
    let n: u32 = first.rsplit(' ').next().unwrap().parse().unwrap();
    expect_line(&rx, &format!("tick {}", n + 5));
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn events_follow_shows_decisions_as_they_happen() {
    let ebb = Ebb::up(&[]);
    let file = deploy_file(ebb.dir.path(), "o.toml", &app_service("oscar", 1, ""));
    ebb.ok(&["deploy", file.to_str().unwrap()]);
    let (mut child, rx) = follow(&ebb, &["events", "-f", "--limit", "1"]);
    // The follower shows the last event once it is connected: scale only then, or the scale's
    // event may come before it and be neither the last one nor a new one.
    expect_line(&rx, "");
    ebb.ok(&["scale", "oscar", "2"]);
    expect_line(&rx, "scaled from 1 to 2 instances");
    expect_line(&rx, "instance.ready");
    let _ = child.kill();
    let _ = child.wait();
}

/// The memory limit file of a process's cgroup (v1 or v2), if it is in one of ebb's groups.
fn memory_limit(pid: u64) -> Option<String> {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        if !path.contains("/ebb/") {
            continue;
        }
        let file = match controllers {
            "memory" => format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes"),
            "" => format!("/sys/fs/cgroup{path}/memory.max"),
            _ => continue,
        };
        return std::fs::read_to_string(file)
            .ok()
            .map(|s| s.trim().to_string());
    }
    None
}

#[test]
fn resource_limits_are_enforced_on_the_running_process_where_cgroups_allow() {
    let ebb = Ebb::up(&[]);
    let text = app_service(
        "papa",
        1,
        "[services.papa.resources]\nmemory = \"64MiB\"\ncpu = \"250m\"\n",
    );
    let file = deploy_file(ebb.dir.path(), "p.toml", &text);
    ebb.ok(&["deploy", file.to_str().unwrap()]);
    let pid = ebb.wait_ready("papa", 1, Duration::from_secs(5))[0]["pid"]
        .as_u64()
        .unwrap();
    let status = ebb.ok(&["status"]);
    if status.contains("none:") {
        // Not a pass by omission: the user is told, which is the behaviour for this case.
        assert!(memory_limit(pid).is_none());
        eprintln!("cgroups are not writable here; ebb status says: {status}");
        return;
    }
    assert_eq!(
        memory_limit(pid).as_deref(),
        Some("67108864"),
        "status: {status}"
    );
}

#[test]
fn an_acknowledged_deploy_survives_an_immediate_crash() {
    let mut ebb = Ebb::up(&[]);
    let file = deploy_file(ebb.dir.path(), "q.toml", &app_service("quebec", 2, ""));
    ebb.ok(&["deploy", "--detach", file.to_str().unwrap()]);
    ebb.crash();
    ebb.start(&[]);
    ebb.wait_ready("quebec", 2, Duration::from_secs(10));
    eventually("exactly two processes", Duration::from_secs(5), || {
        (processes_with_env("EBB_SERVICE", "quebec").len() == 2).then_some(())
    });
    ebb.ok(&["scale", "quebec", "1"]);
    ebb.crash();
    ebb.start(&[]);
    ebb.wait_ready("quebec", 1, Duration::from_secs(10));
    eventually(
        "the scaled-in process to stop",
        Duration::from_secs(10),
        || (processes_with_env("EBB_SERVICE", "quebec").len() == 1).then_some(()),
    );
}

#[test]
fn a_second_ctrl_c_kills_instances_at_once() {
    let mut ebb = Ebb::up(&[]);
    // This instance ignores SIGTERM, so a graceful stop would wait out its 60 s grace.
    // (An ignored signal stays ignored in the children the shell starts.)
    let text = "[services.romeo]\ncommand = [\"sh\", \"-c\", \"trap '' TERM; while true; do sleep 0.1; done\"]\n\
                [services.romeo.health]\ncommand = [\"true\"]\n[services.romeo.stop]\ngrace = \"60s\"\n";
    let file = deploy_file(ebb.dir.path(), "r.toml", text);
    ebb.ok(&["deploy", "--timeout", "20s", file.to_str().unwrap()]);
    let pid = ebb.wait_ready("romeo", 1, Duration::from_secs(5))[0]["pid"]
        .as_u64()
        .unwrap();
    let mut child = ebb.child.take().unwrap();
    let up = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(up, nix::sys::signal::Signal::SIGINT).unwrap();
    eventually("ebb up to begin stopping", Duration::from_secs(5), || {
        ebb.server_log().contains("Ctrl-C again").then_some(())
    });
    nix::sys::signal::kill(up, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = eventually("ebb up to exit", Duration::from_secs(5), || {
        child.try_wait().ok().flatten()
    });
    assert_eq!(
        status.code(),
        Some(130),
        "{status}; log:\n{}",
        ebb.server_log()
    );
    eventually("the instance to be killed", Duration::from_secs(5), || {
        (!alive(pid)).then_some(())
    });
}

#[test]
fn why_an_instance_is_not_ready_shows_in_deploy_ps_and_status() {
    let ebb = Ebb::up(&[]);
    let text = "[services.nostart]\ncommand = [\"/nonexistent/program\"]\n\
                [services.sick]\ncommand = [\"ebb\", \"example-app\"]\n\
                [services.sick.health]\nhttp = \"/nope\"\ninterval = \"200ms\"\n";
    let file = deploy_file(ebb.dir.path(), "why.toml", text);
    let out = ebb.cli(&["deploy", "--timeout", "4s", file.to_str().unwrap()]);
    assert!(!out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // As it happens, in the progress...
    assert!(
        stdout.contains("/nonexistent/program") && stdout.contains("retrying in"),
        "{stdout}"
    );
    assert!(
        stdout.contains("health: GET /nope answered 404"),
        "{stdout}"
    );
    // ...and again at the timeout.
    assert!(stderr.contains("/nonexistent/program"), "{stderr}");
    assert!(
        stderr.contains("health: GET /nope answered 404"),
        "{stderr}"
    );

    let ps = ebb.ok(&["ps"]);
    assert!(ps.contains("REASON"), "{ps}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&ebb.ok(&["ps", "--json"])).unwrap();
    let reason_of = |service: &str| {
        rows.iter()
            .find(|r| r["service"] == service)
            .and_then(|r| r["reason"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    assert!(reason_of("nostart").contains("retrying in"), "{rows:?}");
    assert!(reason_of("sick").contains("404"), "{rows:?}");

    // A failed instance is not counted as running; one starting (process up, not healthy) is
    // not either.
    let status: serde_json::Value = serde_json::from_str(&ebb.ok(&["status", "--json"])).unwrap();
    let services = status["services"].as_array().unwrap();
    let nostart = services.iter().find(|s| s["name"] == "nostart").unwrap();
    assert_eq!(nostart["running"], 0, "{nostart}");
    assert_eq!(nostart["placed"], 1, "{nostart}");
    let sick = services.iter().find(|s| s["name"] == "sick").unwrap();
    assert_eq!(sick["ready"], 0, "{sick}");

    // `ebb describe` puts it all in one place: the spec in short, the instance with its
    // reason, the events; for a service, its instance, its node, and in JSON.
    let described = ebb.ok(&["describe", "sick"]);
    for needle in [
        "Service:",
        "HTTP GET /nope every 200ms",
        "0 ready",
        "404",
        "instance.created",
    ] {
        assert!(described.contains(needle), "{needle:?} in:\n{described}");
    }
    let doc: serde_json::Value =
        serde_json::from_str(&ebb.ok(&["describe", "sick", "--json"])).unwrap();
    assert_eq!(doc["kind"], "service");
    assert_eq!(doc["service"]["name"], "sick");
    assert!(
        doc["instances"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("404"),
        "{doc}"
    );
    assert!(!doc["events"].as_array().unwrap().is_empty(), "{doc}");
    let sick_id = doc["instances"][0]["id"].as_str().unwrap().to_string();
    let described = ebb.ok(&["describe", &sick_id]);
    assert!(
        described.contains("Instance:") && described.contains("404"),
        "{described}"
    );
    let described = ebb.ok(&["describe", "test-node"]);
    assert!(
        described.contains("Node:") && described.contains(&sick_id),
        "{described}"
    );
    let out = ebb.cli(&["describe", "no-such-thing"]);
    assert_eq!(out.status.code(), Some(2));

    // Stopped, an instance has no reason left ("retrying" would be false).
    let id = rows
        .iter()
        .find(|r| r["service"] == "nostart")
        .and_then(|r| r["id"].as_str())
        .unwrap()
        .to_string();
    ebb.ok(&["stop", "nostart"]);
    eventually("nostart stopped", Duration::from_secs(10), || {
        let rows: Vec<serde_json::Value> =
            serde_json::from_str(&ebb.ok(&["ps", "--json"])).unwrap();
        rows.iter()
            .find(|r| r["id"] == id.as_str())
            .is_none_or(|r| r["reason"].is_null())
            .then_some(())
    });
}

#[test]
fn every_reporting_command_speaks_json() {
    let ebb = Ebb::up(&[]);
    let file = deploy_file(ebb.dir.path(), "j.toml", &app_service("juliet", 1, ""));
    let path = file.to_str().unwrap();
    let parse = |args: &[&str]| -> serde_json::Value {
        let out = ebb.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("ebb {args:?}: {e}: {out}"))
    };
    let v = parse(&["validate", "--json", path]);
    assert_eq!(v["services"][0]["name"], "juliet", "{v}");
    let v = parse(&["deploy", "--json", path]);
    assert_eq!(v["changes"][0]["change"], "created", "{v}");
    ebb.wait_ready("juliet", 1, Duration::from_secs(20));
    let v = parse(&["scale", "juliet", "2", "--json"]);
    assert_eq!(v["desired"], 2, "{v}");
    ebb.wait_ready("juliet", 2, Duration::from_secs(20));
    // `-o wide`: the tables' narrow default, and every column on demand.
    let header = |args: &[&str]| ebb.ok(args).lines().next().unwrap_or("").to_string();
    let narrow = header(&["ps"]);
    assert!(
        narrow.contains("REASON") && !narrow.contains("PID"),
        "{narrow}"
    );
    let wide = header(&["ps", "-o", "wide"]);
    for column in ["PID", "ADDR", "VERSION", "P99", "MEMORY", "REASON"] {
        assert!(wide.contains(column), "{column} in {wide}");
    }
    let narrow = header(&["nodes"]);
    assert!(
        narrow.contains("CPU RESERVED") && !narrow.contains("ADDRESS"),
        "{narrow}"
    );
    assert!(header(&["nodes", "-o", "wide"]).contains("LABELS"));
    let v = parse(&["restart", "juliet", "--json"]);
    assert_eq!(v[0]["name"], "juliet", "{v}");
    let v = parse(&["drain", "test-node", "--json"]);
    assert_eq!(v["name"], "test-node", "{v}");
    assert!(!v["drain"].is_null(), "{v}");
    let v = parse(&["undrain", "test-node", "--json"]);
    assert!(v["drain"].is_null(), "{v}");
    for args in [
        &["status", "--json"][..],
        &["ps", "--json"],
        &["nodes", "--json"],
        &["events", "--json"],
        &["metrics", "--json"],
        &["jobs", "--json"],
        &["queues", "--json"],
        &["servers", "--json"],
        &["describe", "juliet", "--json"],
    ] {
        parse(args);
    }
    // Logs: one JSON object per line.
    let lines = eventually("a log line", Duration::from_secs(10), || {
        let out = ebb.ok(&["logs", "juliet", "--json"]);
        (!out.trim().is_empty()).then_some(out)
    });
    for line in lines.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            v["instance"].as_str().unwrap().starts_with("juliet-"),
            "{v}"
        );
        assert!(v["line"].is_string(), "{v}");
    }
    let v = parse(&["stop", "juliet", "--json"]);
    assert_eq!(v[0]["name"], "juliet", "{v}");
}
