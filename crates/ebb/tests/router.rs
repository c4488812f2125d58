//! The load balancer in front of services with a `port`, through the real binary: spreading,
//! zero failed requests across scale-in, rolling updates and a killed instance, port conflicts,
//! and the answer when nothing is ready.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::*;
use std::time::Duration;

/// A routed example-app service on `port`, health-checked every 200 ms.
fn routed(name: &str, n: u32, port: u16, extra: &str) -> String {
    format!(
        "[services.{name}]\ncommand = [\"ebb\", \"example-app\"]\ninstances = {n}\nport = {port}\n{extra}\n\
         [services.{name}.health]\nhttp = \"/healthz\"\ninterval = \"200ms\"\n\
         [services.{name}.stop]\ngrace = \"5s\"\n[services.{name}.balance]\nalgorithm = \"round_robin\"\ndrain = \"10s\"\n"
    )
}

/// `ebb up` with its router on loopback.
fn up() -> Ebb {
    Ebb::up_with(&[], &["--router-bind", "127.0.0.1"])
}

fn deploy(ebb: &Ebb, name: &str, text: &str) -> std::path::PathBuf {
    let file = deploy_file(ebb.dir.path(), &format!("{name}.toml"), text);
    ebb.ok(&["deploy", "--timeout", "30s", file.to_str().unwrap()]);
    file
}

fn assert_no_failures(what: &str, ok: u64, failures: &[String], ebb: &Ebb) {
    assert!(
        failures.is_empty(),
        "{what}: {} failed requests of {}: {:?}\nevents:\n{}",
        failures.len(),
        ok + failures.len() as u64,
        &failures[..failures.len().min(10)],
        ebb.ok(&["events"])
    );
    assert!(ok > 50, "{what}: the load ran: only {ok} requests");
}

#[test]
fn requests_through_the_port_are_spread_over_the_instances() {
    let ebb = up();
    let port = free_port();
    deploy(&ebb, "sierra", &routed("sierra", 3, port, ""));
    ebb.wait_ready("sierra", 3, Duration::from_secs(5));
    let addr = format!("127.0.0.1:{port}");
    let mut seen = std::collections::BTreeMap::new();
    eventually(
        "the router to route to all 3",
        Duration::from_secs(5),
        || {
            let (status, body) = http_get(&addr, "/")?;
            assert_eq!(status, 200, "{body}");
            *seen.entry(body).or_insert(0) += 1;
            (seen.len() == 3).then_some(())
        },
    );
    assert!(ebb.ok(&["events"]).contains("router.listening"));
}

#[test]
fn scale_in_under_load_fails_no_request() {
    let ebb = up();
    let port = free_port();
    deploy(&ebb, "tango", &routed("tango", 4, port, ""));
    ebb.wait_ready("tango", 4, Duration::from_secs(5));
    let load = LoadGen::start(&format!("127.0.0.1:{port}"), 4);
    std::thread::sleep(Duration::from_millis(300)); // load before the change (not synchronisation)
    ebb.ok(&["scale", "tango", "1"]);
    eventually("scale-in to finish", Duration::from_secs(20), || {
        (ebb.ps(Some("tango")).len() == 1 && processes_with_env("EBB_SERVICE", "tango").len() == 1)
            .then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    let (ok, failures) = load.finish();
    assert_no_failures("scale 4 → 1", ok, &failures, &ebb);
    assert!(ebb.ok(&["events"]).contains("instance.draining"));
}

#[test]
fn a_rolling_update_under_load_fails_no_request() {
    let ebb = up();
    let port = free_port();
    deploy(
        &ebb,
        "uniform",
        &routed("uniform", 4, port, "env = { GREETING = \"v1\" }"),
    );
    ebb.wait_ready("uniform", 4, Duration::from_secs(5));
    let load = LoadGen::start(&format!("127.0.0.1:{port}"), 4);
    std::thread::sleep(Duration::from_millis(300));
    deploy(
        &ebb,
        "uniform",
        &routed("uniform", 4, port, "env = { GREETING = \"v2\" }"),
    );
    eventually("old instances to be gone", Duration::from_secs(30), || {
        (processes_with_env("EBB_SERVICE", "uniform").len() == 4).then_some(())
    });
    // A little load after the rollout too: on a busy machine a quick rollout alone may be
    // over within fewer requests than the check below asks for (CI saw 49).
    std::thread::sleep(Duration::from_millis(300));
    let (ok, failures) = load.finish();
    assert_no_failures("rolling update of 4", ok, &failures, &ebb);
    let (_, body) = http_get(&format!("127.0.0.1:{port}"), "/").unwrap();
    assert!(body.starts_with("v2 from"), "{body}");
}

#[test]
fn restart_under_load_replaces_every_instance_and_fails_no_request() {
    let ebb = up();
    let port = free_port();
    let file = deploy(&ebb, "victor", &routed("victor", 3, port, ""));
    ebb.wait_ready("victor", 3, Duration::from_secs(5));
    let ids = |ebb: &Ebb| -> std::collections::BTreeSet<String> {
        ebb.ready("victor")
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect()
    };
    let before = ids(&ebb);
    let load = LoadGen::start(&format!("127.0.0.1:{port}"), 4);
    std::thread::sleep(Duration::from_millis(300)); // load before the change (not synchronisation)
                                                    // The command returns once the service is ready again, every instance a new one.
    let said = ebb.ok(&["restart", "victor", "--timeout", "60s"]);
    assert!(said.contains("victor: restarting 3 instances"), "{said}");
    let after = ids(&ebb);
    assert_eq!(after.len(), 3, "{said}");
    assert!(after.is_disjoint(&before), "{before:?} → {after:?}");
    eventually(
        "the old processes to be gone",
        Duration::from_secs(30),
        || (processes_with_env("EBB_SERVICE", "victor").len() == 3).then_some(()),
    );
    // One instance, in place: a replacement starts first, on the only node there is.
    let one = after.iter().next().unwrap().clone();
    let said = ebb.ok(&["restart", &one]);
    assert!(said.contains("moved"), "{said}");
    let now = ids(&ebb);
    assert!(!now.contains(&one) && now.len() == 3, "{one} → {now:?}");
    std::thread::sleep(Duration::from_millis(300));
    let (ok, failures) = load.finish();
    assert_no_failures("restart of 3, then of one", ok, &failures, &ebb);
    assert!(ebb
        .ok(&["events"])
        .contains("restart asked: rolling 3 instances"));

    // A redeploy of the same file rolls nothing: the restart count is the server's.
    let pids = processes_with_env("EBB_SERVICE", "victor");
    let said = ebb.ok(&["deploy", file.to_str().unwrap()]);
    assert!(said.contains("unchanged"), "{said}");
    assert_eq!(processes_with_env("EBB_SERVICE", "victor"), pids);

    // A name that is neither: exit 2, nothing restarted.
    let out = ebb.cli(&["restart", "victor", "no-such-thing"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("no service or instance named \"no-such-thing\""));
    assert_eq!(ids(&ebb), now);

    // `ebb stop` of several services: a typo stops none; then both go, waited for together.
    deploy(&ebb, "whiskey", &routed("whiskey", 1, free_port(), ""));
    let out = ebb.cli(&["stop", "victor", "whiskey", "no-such-service"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(ebb.ps(None).len(), 4, "nothing stopped");
    let said = ebb.ok(&["stop", "victor", "whiskey"]);
    assert!(
        said.contains("victor: all instances stopped")
            && said.contains("whiskey: all instances stopped"),
        "{said}"
    );
    assert!(ebb.ps(None).is_empty());
}

#[test]
fn deploy_dry_run_shows_the_plan_and_applies_nothing() {
    let ebb = up();
    let port = free_port();
    let file = deploy(&ebb, "xray", &routed("xray", 2, port, ""));
    ebb.wait_ready("xray", 2, Duration::from_secs(10));
    let ids: Vec<String> = ebb
        .ps(Some("xray"))
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    let events_before = ebb.ok(&["events", "--json"]).len();

    // A spec change: the instances that would roll, and that the one new at a time fits.
    let changed = deploy_file(
        ebb.dir.path(),
        "xray2.toml",
        &routed("xray", 2, port, "env = { GREETING = \"v2\" }"),
    );
    let said = ebb.ok(&["deploy", "--dry-run", changed.to_str().unwrap()]);
    assert!(
        said.contains("xray: updated, rolling 2 instances"),
        "{said}"
    );
    for id in &ids {
        assert!(said.contains(id.as_str()), "{id} in {said}");
    }
    assert!(
        said.contains("fits: every new instance has a node"),
        "{said}"
    );
    assert!(said.contains("dry run: nothing was applied"), "{said}");
    let doc: serde_json::Value = serde_json::from_str(&ebb.ok(&[
        "deploy",
        "--dry-run",
        "--json",
        changed.to_str().unwrap(),
    ]))
    .unwrap();
    assert_eq!(doc["changes"][0]["change"], "updated", "{doc}");
    assert_eq!(
        doc["dry_run"]["rolls"]["xray"].as_array().unwrap().len(),
        2,
        "{doc}"
    );

    // A service that no node can take: said, exit 1; one on a port taken: exit 2.
    let huge = deploy_file(
        ebb.dir.path(),
        "huge.toml",
        "[services.huge]\ncommand = [\"sleep\", \"60\"]\ninstances = 2\n[services.huge.resources]\ncpu = 500\n",
    );
    let out = ebb.cli(&["deploy", "--dry-run", huge.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("huge: created, 2 instances"), "{stdout}");
    assert!(
        stdout.contains("does not fit: huge: 2 of 2 new instances would not fit"),
        "{stdout}"
    );
    let clash = deploy_file(ebb.dir.path(), "clash.toml", &routed("yankee", 1, port, ""));
    let out = ebb.cli(&["deploy", "--dry-run", clash.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    // Nothing of it happened.
    let now: Vec<String> = ebb
        .ps(None)
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(now, ids);
    assert_eq!(ebb.ok(&["events", "--json"]).len(), events_before);
    let said = ebb.ok(&["deploy", file.to_str().unwrap()]);
    assert!(said.contains("unchanged"), "{said}");
}

#[test]
fn a_killed_instance_under_load_fails_no_request() {
    let ebb = up();
    let port = free_port();
    deploy(&ebb, "victor", &routed("victor", 4, port, ""));
    let before = ebb.wait_ready("victor", 4, Duration::from_secs(5));
    let load = LoadGen::start(&format!("127.0.0.1:{port}"), 4);
    std::thread::sleep(Duration::from_millis(300));
    let victim = before[0]["pid"].as_u64().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    eventually("the instance to be back", Duration::from_secs(10), || {
        let ready = ebb.ready("victor");
        (ready.len() == 4 && ready.iter().all(|i| i["pid"].as_u64() != Some(victim))).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    let (ok, failures) = load.finish();
    assert_no_failures("kill -9 of one of 4", ok, &failures, &ebb);
}

#[test]
fn a_port_used_by_another_service_or_the_machine_is_refused_at_deploy() {
    let ebb = up();
    let port = free_port();
    deploy(&ebb, "whiskey", &routed("whiskey", 1, port, ""));
    let clash = deploy_file(ebb.dir.path(), "xray.toml", &routed("xray", 1, port, ""));
    let out = ebb.cli(&["deploy", clash.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!(
            "port {port} is already used by service \"whiskey\""
        )),
        "{err}"
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let busy = deploy_file(
        ebb.dir.path(),
        "yankee.toml",
        &routed("yankee", 1, taken_port, ""),
    );
    let out = ebb.cli(&["deploy", busy.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!(
            "port {taken_port} is already in use on this machine"
        )),
        "{err}"
    );
    assert!(ebb.ps(Some("xray")).is_empty() && ebb.ps(Some("yankee")).is_empty());
}

#[test]
fn with_no_ready_instance_the_router_answers_503_with_retry_after() {
    let ebb = up();
    let port = free_port();
    let zulu = routed("zulu", 0, port, "").replace(
        "[services.zulu.balance]\n",
        "[services.zulu.balance]\nqueue_timeout = \"300ms\"\n",
    );
    deploy(&ebb, "zulu", &zulu);
    let addr = format!("127.0.0.1:{port}");
    let (status, _) = eventually("the router to listen", Duration::from_secs(5), || {
        http_get(&addr, "/")
    });
    assert_eq!(status, 503);
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    std::io::Write::write_all(
        &mut s,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut s, &mut text).unwrap();
    assert!(
        text.to_ascii_lowercase().contains("retry-after: 1"),
        "{text}"
    );
}

#[test]
fn scale_in_waits_for_slow_requests_in_flight_before_stopping() {
    let ebb = up();
    let port = free_port();
    deploy(&ebb, "alfa", &routed("alfa", 2, port, ""));
    let before = ebb.wait_ready("alfa", 2, Duration::from_secs(5));
    let addr = format!("127.0.0.1:{port}");
    // Round robin puts one slow request on each instance.
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || http_get(&addr, "/slow?ms=1500"))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300)); // both requests are in flight by now
    ebb.ok(&["scale", "alfa", "1"]);
    for s in slow {
        let (status, body) = s.join().unwrap().expect("the slow request got an answer");
        assert_eq!(status, 200, "{body}");
    }
    eventually("the drain to finish", Duration::from_secs(10), || {
        let events = ebb.ok(&["events"]);
        (events.contains("instance.draining") && events.contains("scale in; drained")).then_some(())
    });
    eventually(
        "the drained instance to stop",
        Duration::from_secs(10),
        || {
            (before
                .iter()
                .filter(|i| alive(i["pid"].as_u64().unwrap()))
                .count()
                == 1)
                .then_some(())
        },
    );
}

#[test]
fn hash_balancing_keeps_a_client_on_one_instance() {
    let ebb = up();
    let port = free_port();
    let text = format!(
        "[services.bravo]\ncommand = [\"ebb\", \"example-app\"]\ninstances = 3\nport = {port}\n\
         [services.bravo.health]\nhttp = \"/healthz\"\ninterval = \"200ms\"\n[services.bravo.balance]\nalgorithm = \"hash\"\nhash_header = \"X-User\"\n"
    );
    deploy(&ebb, "bravo", &text);
    ebb.wait_ready("bravo", 3, Duration::from_secs(5));
    let addr = format!("127.0.0.1:{port}");
    let first = eventually("the router to route", Duration::from_secs(5), || {
        http_get(&addr, "/")
            .filter(|(s, _)| *s == 200)
            .map(|(_, b)| b)
    });
    for _ in 0..20 {
        let (status, body) = http_get(&addr, "/").expect("answer");
        assert_eq!(
            (status, body.as_str()),
            (200, first.as_str()),
            "one client, one instance"
        );
    }
    // With the header, the key is the user: each keeps one instance, and users spread.
    let mut owners = std::collections::BTreeSet::new();
    for user in 0..12 {
        let owner = get_as(&addr, &format!("user-{user}"));
        for _ in 0..3 {
            assert_eq!(get_as(&addr, &format!("user-{user}")), owner, "user-{user}");
        }
        owners.insert(owner);
    }
    assert!(
        owners.len() >= 2,
        "12 users all on one instance: {owners:?}"
    );
}

/// The body of `GET /` sent with `X-User: user`.
fn get_as(addr: &str, user: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: x\r\nX-User: {user}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("answer");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

#[test]
fn a_request_to_a_service_at_zero_waits_for_its_first_instance() {
    let ebb = up();
    let port = free_port();
    let text = routed("yankee", 0, port, "").replace(
        "[services.yankee.balance]\n",
        "[services.yankee.balance]\nqueue_timeout = \"20s\"\n",
    );
    deploy(&ebb, "yankee", &text);
    let addr = format!("127.0.0.1:{port}");
    eventually("the router to listen", Duration::from_secs(5), || {
        std::net::TcpStream::connect(&addr).ok()
    });
    let held = {
        let addr = addr.clone();
        std::thread::spawn(move || http_get_within(&addr, "/", Duration::from_secs(20)))
    };
    eventually("the request to be queued", Duration::from_secs(5), || {
        let m: serde_json::Value =
            serde_json::from_str(&ebb.ok(&["metrics", "yankee", "--json"])).ok()?;
        (m["services"][0]["queued"] == 1).then_some(())
    });
    ebb.ok(&["scale", "yankee", "1"]);
    let (status, body) = held.join().unwrap().expect("an answer");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("yankee-"),
        "served by the new instance: {body}"
    );
}

#[test]
fn ps_and_metrics_show_each_instances_traffic() {
    let ebb = up();
    let port = free_port();
    deploy(&ebb, "xray", &routed("xray", 2, port, ""));
    ebb.wait_ready("xray", 2, Duration::from_secs(5));
    let load = LoadGen::start(&format!("127.0.0.1:{port}"), 2);
    let loaded = std::time::Instant::now();
    // Two samples a second apart at least, with load in between.
    let rows = eventually("ps to show traffic", Duration::from_secs(10), || {
        let rows = ebb.ps(Some("xray"));
        rows.iter()
            .all(|r| r["traffic"]["rps"].as_f64().is_some_and(|rps| rps > 1.0))
            .then_some(rows)
    });
    std::thread::sleep(Duration::from_secs(2).saturating_sub(loaded.elapsed()));
    let (ok, failures) = load.finish();
    assert_no_failures("metrics load", ok, &failures, &ebb);
    for r in &rows {
        let t = &r["traffic"];
        assert!(t["p50_ms"].as_f64().is_some(), "{t}");
        assert!(t["p99_ms"].as_f64() >= t["p50_ms"].as_f64(), "{t}");
        assert!(t["status"]["2xx"].as_u64() > Some(0), "{t}");
        assert_eq!(t["status"]["5xx"], 0, "{t}");
    }
    let m: serde_json::Value =
        serde_json::from_str(&ebb.ok(&["metrics", "--json", "--window", "5s"])).unwrap();
    let svc = &m["services"][0];
    assert_eq!(svc["service"], "xray");
    assert_eq!(svc["port"], port);
    let window_ms = svc["window_ms"].as_u64().unwrap();
    // Five seconds, give or take the sampler's jitter (at most 50 ms short).
    assert!((4950..5500).contains(&window_ms), "{svc}");
    let sum: f64 = svc["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["rps"].as_f64().unwrap())
        .sum();
    let total = svc["rps"].as_f64().unwrap();
    assert!(
        total > 1.0 && (sum - total).abs() <= total * 0.2 + 1.0,
        "{svc}"
    );
    let table = ebb.ok(&["ps", "xray", "-o", "wide"]);
    assert!(table.contains("RPS") && table.contains("P99"), "{table}");
    let table = ebb.ok(&["metrics"]);
    assert!(table.contains(&format!("xray :{port}")), "{table}");
    let bad = ebb.cli(&["metrics", "--window", "soon"]);
    assert_eq!(bad.status.code(), Some(2), "a bad window is refused");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("window"));
}

#[test]
fn changing_balance_settings_refuses_no_new_client() {
    let ebb = up();
    let port = free_port();
    deploy(&ebb, "whiskey", &routed("whiskey", 2, port, ""));
    ebb.wait_ready("whiskey", 2, Duration::from_secs(5));
    let addr = format!("127.0.0.1:{port}");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A new connection per request: a listener closed and bound again would refuse some.
    let clients = {
        let (stop, addr) = (stop.clone(), addr.clone());
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0u32, Vec::new());
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while !stop.load(std::sync::atomic::Ordering::SeqCst)
                && std::time::Instant::now() < deadline
            {
                match http_get(&addr, "/") {
                    Some((200, _)) => ok += 1,
                    other => failed.push(format!("{other:?}")),
                }
            }
            (ok, failed)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let changed = routed("whiskey", 2, port, "").replace(
        "algorithm = \"round_robin\"",
        "algorithm = \"least_request\"\nretries = 1",
    );
    deploy(&ebb, "whiskey", &changed);
    eventually("the listener to be rebuilt", Duration::from_secs(5), || {
        (ebb.ok(&["events"]).matches("router.listening").count() >= 2).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (ok, failed) = clients.join().unwrap();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        ok as usize + failed.len()
    );
    assert!(ok > 20, "the clients ran: {ok}");
}
