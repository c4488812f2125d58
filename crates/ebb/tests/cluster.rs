//! Many nodes on one machine: an `ebb server` and `ebb agent`s as separate processes, each
//! agent advertising its own 127.0.0.x address. kill -9 of an agent and its instances stands for
//! a lost machine, SIGSTOP/SIGCONT of an agent for a partition (issue 5).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::agent::Agent;
use common::*;
use nix::sys::signal::Signal;
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

/// A server and `n` agents named `<prefix>-1..n` on 127.0.0.2.. (node names are unique per
/// test: instances are found by their `EBB_NODE`).
fn cluster(prefix: &str, n: usize) -> (Ebb, Vec<Agent>, u16) {
    cluster_with(prefix, n, &[])
}

/// Two nodes offering 1 CPU each, full with one 0.8-CPU instance of `big` each: nothing can
/// move from one to the other.
fn two_full_nodes(prefix: &str) -> (Ebb, Vec<Agent>) {
    let (server, agents, _) = cluster_with(prefix, 2, &["--cpu", "1"]);
    let big = "[services.big.resources]\ncpu = 0.8\n";
    let file = deploy_file(server.dir.path(), "big.toml", &app_service("big", 2, big));
    server.ok(&["deploy", file.to_str().unwrap()]);
    server.wait_ready("big", 2, Duration::from_secs(20));
    (server, agents)
}

fn nodes(server: &Ebb) -> Vec<Value> {
    serde_json::from_str(&server.ok(&["nodes", "--json"])).expect("nodes --json is JSON")
}

fn routed_service(name: &str, n: u32, port: u16) -> String {
    app_service(name, n, &format!("port = {port}"))
}

#[test]
fn agents_join_with_the_token_and_instances_run_on_their_addresses() {
    let (server, agents, port) = cluster("join", 3);
    // A wrong token is refused with a clear message, and changes nothing.
    let out = std::process::Command::new(EBB)
        .args(["--data-dir"])
        .arg(server.dir.path().join("intruder"))
        .args([
            "agent",
            "--server",
            &format!("127.0.0.1:{port}"),
            "--name",
            "intruder",
        ])
        .env("EBB_JOIN_TOKEN", "wrong")
        .output()
        .expect("run agent");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refused the join token"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without a join token or a stored credential, the agent says what to pass.
    let out = std::process::Command::new(EBB)
        .args(["--data-dir"])
        .arg(server.dir.path().join("newcomer"))
        .args(["agent", "--server", &format!("127.0.0.1:{port}")])
        .args(["--name", "newcomer"])
        .env_remove("EBB_JOIN_TOKEN")
        .output()
        .expect("run agent");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--token-file"), "{stderr}");
    // The join token cannot take a name that has joined: the agent exits 2 saying how.
    let copy = server.dir.path().join("join-token.copy");
    std::fs::write(&copy, server.join_token()).unwrap();
    let out = std::process::Command::new(EBB)
        .args(["--data-dir"])
        .arg(server.dir.path().join("impostor"))
        .args(["agent", "--server", &format!("127.0.0.1:{port}")])
        .args(["--name", &agents[0].name, "--token-file"])
        .arg(&copy)
        .env_remove("EBB_JOIN_TOKEN")
        .output()
        .expect("run agent");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("has already joined"), "{stderr}");
    // Each node keeps its own credential, for its owner's eyes only, and no two are alike.
    let credentials: std::collections::HashSet<String> = agents
        .iter()
        .map(|a| {
            let path = a.data_dir().join("node-credential");
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
            std::fs::read_to_string(path).unwrap()
        })
        .collect();
    assert_eq!(credentials.len(), agents.len());
    let listed = nodes(&server);
    assert_eq!(listed.len(), 3, "{listed:?}");
    for (n, a) in listed.iter().zip(&agents) {
        assert_eq!(n["name"], a.name.as_str());
        assert_eq!(n["address"], a.advertise.as_str());
        assert_eq!(n["state"], "ready");
        assert!(n["cpu_millis"].as_u64().unwrap() > 0);
    }
    // The join token does not open the rest of the API.
    let api = format!("127.0.0.1:{port}");
    let status = std::process::Command::new(EBB)
        .args(["--addr", &api, "ps"])
        .env("EBB_TOKEN", server.join_token())
        .output()
        .expect("ps");
    assert!(
        !status.status.success(),
        "the join token must not list instances"
    );

    let lb = free_port();
    let file = deploy_file(server.dir.path(), "web.toml", &routed_service("web", 3, lb));
    server.ok(&["deploy", file.to_str().unwrap()]);
    let ready = server.wait_ready("web", 3, Duration::from_secs(20));
    for i in &ready {
        let node = i["node"].as_str().unwrap();
        let agent = agents
            .iter()
            .find(|a| a.name == node)
            .expect("a known node");
        let addr = i["addr"].as_str().unwrap();
        assert!(
            addr.starts_with(&format!("{}:", agent.advertise)),
            "{addr} on {node}"
        );
    }
    assert_eq!(server.per_node("web").len(), 3, "one instance per node");
    let (status, body) = http_get(&format!("127.0.0.1:{lb}"), "/").expect("answer via the router");
    assert_eq!(status, 200, "{body}");
    // Each agent reports its instances' CPU and memory, and its machine's.
    eventually("usage of every instance", Duration::from_secs(10), || {
        let all = server.ps(Some("web"));
        all.iter()
            .all(|i| i["usage"]["memory_bytes"].as_u64() > Some(0))
            .then_some(())
    });
    assert!(nodes(&server)
        .iter()
        .all(|n| n["used_memory_bytes"].as_u64() > Some(0)));
}

#[test]
fn a_lost_node_is_replaced_with_no_failed_request() {
    let (server, mut agents, _) = cluster("lost", 3);
    let lb = free_port();
    let file = deploy_file(server.dir.path(), "web.toml", &routed_service("web", 3, lb));
    server.ok(&["deploy", file.to_str().unwrap()]);
    server.wait_ready("web", 3, Duration::from_secs(20));
    let load = LoadGen::start(&format!("127.0.0.1:{lb}"), 4);
    std::thread::sleep(Duration::from_millis(500));
    let lost = agents.remove(0);
    let lost_name = lost.name.clone();
    let mut lost = lost;
    lost.lose_machine();
    // The node is down after 3 s of silence and its instance replaced elsewhere.
    eventually(
        "the lost instance to be replaced",
        Duration::from_secs(15),
        || {
            let by = server.per_node("web");
            (by.values().sum::<usize>() == 3 && !by.contains_key(&lost_name)).then_some(())
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    finish_without_failures(load, 100);
    let listed = nodes(&server);
    let state = |name: &str| {
        listed
            .iter()
            .find(|n| n["name"] == name)
            .map(|n| n["state"].clone())
    };
    assert_eq!(state(&lost_name), Some("down".into()));
    let events = server.ok(&["events"]);
    assert!(
        events.contains(&format!("node {lost_name} is down")),
        "{events}"
    );
    assert!(
        events.contains(&format!("lost with node {lost_name}")),
        "{events}"
    );
}

#[test]
fn a_frozen_node_stops_what_was_replaced_when_it_thaws() {
    let (server, agents, _) = cluster("frozen", 3);
    let lb = free_port();
    let file = deploy_file(server.dir.path(), "web.toml", &routed_service("web", 3, lb));
    server.ok(&["deploy", file.to_str().unwrap()]);
    server.wait_ready("web", 3, Duration::from_secs(20));
    let frozen = &agents[0];
    let before = frozen.instance_pids();
    assert_eq!(before.len(), 1, "one instance on {}", frozen.name);
    // A partition: the agent is silent, its instance still runs.
    frozen.signal(Signal::SIGSTOP);
    eventually("a replacement elsewhere", Duration::from_secs(15), || {
        let by = server.per_node("web");
        (by.values().sum::<usize>() == 3 && !by.contains_key(&frozen.name)).then_some(())
    });
    std::thread::sleep(Duration::from_secs(5)); // frozen ~10 s in all
    assert!(alive(before[0]), "still running while its agent is frozen");
    frozen.signal(Signal::SIGCONT);
    // Back: the replaced instance is no longer its assignment, so it is stopped there.
    eventually("the duplicate to stop", Duration::from_secs(20), || {
        (!alive(before[0])).then_some(())
    });
    let total: usize = agents.iter().map(|a| a.instance_pids().len()).sum();
    assert_eq!(total, 3, "exactly the desired count runs");
    assert_eq!(server.ps(Some("web")).len(), 3);
    let listed = nodes(&server);
    assert!(listed.iter().all(|n| n["state"] == "ready"), "{listed:?}");
    assert!(server
        .ok(&["events"])
        .contains(&format!("node {} is back", frozen.name)));
}

#[test]
fn restarting_an_agent_or_the_server_restarts_no_instance() {
    let (mut server, mut agents, port) = cluster("restart", 2);
    let file = deploy_file(server.dir.path(), "web.toml", &app_service("web", 4, ""));
    server.ok(&["deploy", file.to_str().unwrap()]);
    let pids = |server: &Ebb| -> BTreeMap<String, u64> {
        server
            .wait_ready("web", 4, Duration::from_secs(20))
            .iter()
            .map(|i| {
                (
                    i["id"].as_str().unwrap().to_string(),
                    i["pid"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let before = pids(&server);

    // An agent killed and started again adopts its instances.
    agents[0].crash();
    agents[0].start();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        pids(&server),
        before,
        "an agent restart restarted something"
    );

    // The server killed and started again on the same data dir and port.
    server.crash();
    std::thread::sleep(Duration::from_secs(2));
    server.start(&[]);
    // Past the time after which a silent node would be down.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        pids(&server),
        before,
        "a server restart restarted something"
    );
    let all: Vec<u64> = agents.iter().flat_map(|a| a.instance_pids()).collect();
    assert_eq!(all.len(), 4, "no duplicate started");
    assert!(
        !server.ok(&["events"]).contains("is down"),
        "no node was taken for down"
    );
    let _ = port;
}

#[test]
fn reservations_are_never_exceeded_and_what_does_not_fit_is_pending_with_a_reason() {
    let (server, _agents, _) = cluster_with("fit", 3, &["--cpu", "1", "--memory", "1Gi"]);
    let big = "[services.big.resources]\ncpu = 0.8\nmemory = \"256MiB\"\n";
    let file = deploy_file(server.dir.path(), "big.toml", &app_service("big", 4, big));
    server.ok(&["deploy", "--detach", file.to_str().unwrap()]);
    server.wait_ready("big", 3, Duration::from_secs(20));
    let reason = "no node fits: 3 insufficient cpu";
    let status: Value = eventually("the pending reason", Duration::from_secs(10), || {
        let s: Value = serde_json::from_str(&server.ok(&["status", "--json"])).ok()?;
        (s["services"][0]["pending_reason"] == reason).then_some(s)
    });
    assert_eq!(
        status["services"][0]["placed"], 3,
        "the 4th was not placed: {status}"
    );
    for n in nodes(&server) {
        assert!(
            n["reserved_cpu_millis"].as_u64() <= n["cpu_millis"].as_u64(),
            "{n}"
        );
        assert_eq!(n["reserved_cpu_millis"], 800, "one per node: {n}");
    }
    assert!(server
        .ok(&["events"])
        .contains(&format!("an instance of big is pending: {reason}")));
    // Room again: the reason goes.
    server.ok(&["scale", "big", "3"]);
    eventually("the reason to clear", Duration::from_secs(10), || {
        let s: Value = serde_json::from_str(&server.ok(&["status", "--json"])).ok()?;
        s["services"][0]
            .get("pending_reason")
            .is_none()
            .then_some(())
    });
}

/// Which node each instance of `service` runs on, by instance id (ready or not).
fn placement(server: &Ebb, service: &str) -> BTreeMap<String, String> {
    server
        .ps(Some(service))
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap_or("").to_string(),
                i["node"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn node_state(server: &Ebb, name: &str) -> Value {
    nodes(server)
        .into_iter()
        .find(|n| n["name"] == name)
        .map(|n| n["state"].clone())
        .unwrap_or(Value::Null)
}

#[test]
fn draining_a_node_moves_its_instances_with_no_failed_request() {
    let (server, agents, _) = cluster("drain", 3);
    let lb = free_port();
    let file = deploy_file(server.dir.path(), "web.toml", &routed_service("web", 3, lb));
    server.ok(&["deploy", file.to_str().unwrap()]);
    server.wait_ready("web", 3, Duration::from_secs(20));
    let drained = agents[0].name.clone();
    assert_eq!(server.per_node("web").get(&drained), Some(&1));
    let old_pids = agents[0].instance_pids();

    let load = LoadGen::start(&format!("127.0.0.1:{lb}"), 4);
    std::thread::sleep(Duration::from_millis(500));
    let out = server.ok(&["drain", &drained]);
    std::thread::sleep(Duration::from_secs(1));
    finish_without_failures(load, 100);
    assert!(out.contains(&format!("node {drained} drained")), "{out}");
    assert!(out.contains("moved →"), "{out}");
    assert!(out.contains("1 instances moved"), "{out}");
    // Nothing is left on the node, the others carry all three, and the old process is gone.
    assert!(agents[0].instance_pids().is_empty());
    assert!(old_pids.iter().all(|p| !alive(*p)));
    let by = server.per_node("web");
    assert_eq!(by.values().sum::<usize>(), 3, "{by:?}");
    assert!(!by.contains_key(&drained), "{by:?}");
    assert_eq!(node_state(&server, &drained), "draining");

    // A drained node takes nothing new, even where anti-affinity would prefer it.
    server.ok(&["scale", "web", "4"]);
    server.wait_ready("web", 4, Duration::from_secs(20));
    assert!(!server.per_node("web").contains_key(&drained));

    // Back in service, it is the emptiest node for the next instance.
    let out = server.ok(&["undrain", &drained]);
    assert!(out.contains("back in service"), "{out}");
    assert_eq!(node_state(&server, &drained), "ready");
    server.ok(&["scale", "web", "5"]);
    server.wait_ready("web", 5, Duration::from_secs(20));
    assert_eq!(server.per_node("web").get(&drained), Some(&1));
    let events = server.ok(&["events"]);
    for what in [
        format!("node {drained} is draining"),
        format!("from node {drained} to another node (drain of node {drained})"),
        format!("node {drained} is drained"),
        format!("node {drained} is back in service"),
    ] {
        assert!(events.contains(&what), "no {what:?} in\n{events}");
    }

    // Bad input names what is wrong.
    let err = server.fails(&["drain", "no-such-node"]);
    assert!(err.contains("no node named \"no-such-node\""), "{err}");
    let err = server.fails(&["drain", &drained, "--deadline", "soon"]);
    assert!(err.contains("soon"), "{err}");
}

#[test]
fn migrating_an_instance_moves_it_where_asked_with_no_failed_request() {
    let (server, agents, _) = cluster("move", 3);
    let lb = free_port();
    let file = deploy_file(server.dir.path(), "web.toml", &routed_service("web", 2, lb));
    server.ok(&["deploy", file.to_str().unwrap()]);
    server.wait_ready("web", 2, Duration::from_secs(20));
    let before = placement(&server, "web");
    let empty = agents
        .iter()
        .find(|a| !before.values().any(|n| n == &a.name))
        .expect("a node without an instance")
        .name
        .clone();
    let (id, from) = before.iter().next().expect("an instance");

    let load = LoadGen::start(&format!("127.0.0.1:{lb}"), 4);
    std::thread::sleep(Duration::from_millis(500));
    let out = server.ok(&["migrate", id, "--to", &empty]);
    std::thread::sleep(Duration::from_secs(1));
    finish_without_failures(load, 100);
    assert!(
        out.contains(&format!("moving from node {from} to node {empty}")),
        "{out}"
    );
    assert!(out.contains(&format!("on {empty}")), "{out}");
    let after = placement(&server, "web");
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(!after.contains_key(id), "{id} is gone: {after:?}");
    assert_eq!(
        after.values().filter(|n| *n == &empty).count(),
        1,
        "{after:?}"
    );

    // Without --to the scheduler chooses, never the instance's own node.
    let (id2, from2) = after.iter().next().expect("an instance");
    server.ok(&["migrate", id2]);
    let moved = placement(&server, "web");
    assert!(!moved.contains_key(id2));
    assert_eq!(moved.len(), 2);
    assert!(
        moved.values().filter(|n| *n == from2).count()
            < after.values().filter(|n| *n == from2).count()
    );

    // Bad input names what is wrong.
    let (id3, on3) = moved.iter().next().expect("an instance");
    let err = server.fails(&["migrate", id3, "--to", on3]);
    assert!(
        err.contains(&format!("already runs on node {on3}")),
        "{err}"
    );
    let err = server.fails(&["migrate", "web-nothing"]);
    assert!(err.contains("no instance \"web-nothing\""), "{err}");
    let err = server.fails(&["migrate", id3, "--to", "nowhere"]);
    assert!(err.contains("no node named \"nowhere\""), "{err}");
}

#[test]
fn a_drain_deadline_stops_what_could_not_move() {
    let (server, agents) = two_full_nodes("late");
    let out = server.ok(&["drain", &agents[0].name, "--deadline", "3s"]);
    assert!(
        out.contains("pending: no node fits: 1 draining, 1 insufficient cpu"),
        "{out}"
    );
    assert!(out.contains("stopped"), "{out}");
    assert!(agents[0].instance_pids().is_empty());
    let events = server.ok(&["events"]);
    assert!(
        events.contains(&format!("drain deadline of node {} passed", agents[0].name)),
        "{events}"
    );
}

#[test]
fn the_down_timeout_is_configurable() {
    let port = free_port();
    let server = Ebb::server_with(port, &["--node-down-after", "6s"]);
    let agent = Agent::join(
        &format!("127.0.0.1:{port}"),
        &server.join_token(),
        "slow-1",
        "127.0.0.2",
    );
    agent.signal(Signal::SIGSTOP);
    std::thread::sleep(Duration::from_millis(3500));
    // Past the default 3 s, but not past the 6 s asked for.
    assert_eq!(node_state(&server, "slow-1"), "suspect");
    eventually("the node to be down", Duration::from_secs(6), || {
        (node_state(&server, "slow-1") == "down").then_some(())
    });
    // The controller's next pass (within a second) records the event of the node going down;
    // the agent stays stopped until then, or its next heartbeat could come first.
    eventually("the node-down event", Duration::from_secs(5), || {
        let events = server.ok(&["events"]);
        events
            .contains("node slow-1 is down: silent for 6s")
            .then_some(())
    });
    agent.signal(Signal::SIGCONT);

    // Too short to tell a late heartbeat from a lost node: refused, naming the option.
    let out = std::process::Command::new(EBB)
        .args(["server", "--node-down-after", "1s"])
        .output()
        .expect("run ebb server");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--node-down-after") && err.contains("at least 2s"),
        "{err}"
    );
}

#[test]
fn constraints_and_spread_in_the_deploy_file_steer_placement() {
    let port = free_port();
    let server = Ebb::server(port);
    let (addr, token) = (format!("127.0.0.1:{port}"), server.join_token());
    let zones = ["a", "b", "b"];
    let _agents: Vec<Agent> = zones
        .iter()
        .enumerate()
        .map(|(i, zone)| {
            let (name, ip) = (format!("zone-{}", i + 1), format!("127.0.0.{}", i + 2));
            Agent::join_with(
                &addr,
                &token,
                &name,
                &ip,
                &["--labels", &format!("zone={zone}")],
            )
        })
        .collect();
    let extra = "constraints = [\"zone=b\"]\nplacement = \"spread\"";
    let file = deploy_file(server.dir.path(), "b.toml", &app_service("inb", 4, extra));
    server.ok(&["deploy", file.to_str().unwrap()]);
    server.wait_ready("inb", 4, Duration::from_secs(20));
    let by = server.per_node("inb");
    assert_eq!(
        by,
        BTreeMap::from([("zone-2".to_string(), 2), ("zone-3".to_string(), 2)]),
        "only zone b, spread evenly"
    );
    // Each instance says why its node: the scores of the two zone-b nodes, and zone-a's node
    // turned away by the constraint.
    let ready = server.ready("inb");
    let id = ready[0]["id"].as_str().unwrap();
    let described = server.ok(&["describe", id]);
    let line = described
        .lines()
        .find(|l| l.starts_with("Placement:"))
        .unwrap_or_else(|| panic!("{described}"));
    assert!(
        line.contains(&format!(
            "{}, best of 2 nodes that fit (spread: ",
            ready[0]["node"].as_str().unwrap()
        )) && line.contains("turned away: 1 not matching zone=b"),
        "{line}"
    );
    // A constraint no node meets leaves the instance pending, saying why.
    let nowhere = "constraints = [\"zone=c\"]";
    let file = deploy_file(server.dir.path(), "c.toml", &app_service("inc", 1, nowhere));
    server.ok(&["deploy", "--detach", file.to_str().unwrap()]);
    let reason = "no node fits: 3 not matching zone=c";
    eventually("the pending reason", Duration::from_secs(10), || {
        let s: Value = serde_json::from_str(&server.ok(&["status", "--json"])).ok()?;
        let inc = s["services"]
            .as_array()?
            .iter()
            .find(|v| v["name"] == "inc")?;
        (inc["pending_reason"] == reason).then_some(())
    });
    let ps = server.ok(&["ps"]);
    assert!(
        ps.contains(&format!("inc: 1 instances pending: {reason}")),
        "{ps}"
    );
    // And a malformed one is refused before anything is applied, naming the entry.
    let bad = "constraints = [\"zone\"]";
    let file = deploy_file(server.dir.path(), "bad.toml", &app_service("bad", 1, bad));
    let err = server.fails(&["deploy", file.to_str().unwrap()]);
    assert!(err.contains("services.bad.constraints[0]"), "{err}");
}

#[test]
fn a_node_lost_while_its_drain_waits_leaves_the_controller_working() {
    let (server, mut agents) = two_full_nodes("gone");
    // The move waits: no other node has room for the replacement.
    server.ok(&["drain", "gone-1", "--detach"]);
    eventually("the move to be pending", Duration::from_secs(10), || {
        let moves: Value = serde_json::from_str(&server.ok(&["events", "--json"])).ok()?;
        moves
            .as_array()?
            .iter()
            .any(|e| e["kind"] == "instance.pending")
            .then_some(())
    });
    agents[0].lose_machine();
    eventually("the node to be down", Duration::from_secs(10), || {
        (node_state(&server, "gone-1") == "down").then_some(())
    });
    // The controller still places new work (a frozen controller would leave this pending).
    let file = deploy_file(
        server.dir.path(),
        "small.toml",
        &app_service("small", 1, ""),
    );
    server.ok(&["deploy", "--timeout", "20s", file.to_str().unwrap()]);
    let by = server.per_node("small");
    assert_eq!(by.get("gone-2"), Some(&1), "{by:?}");
    assert_eq!(server.ready("big").len(), 1, "one big fits on gone-2");
}

#[test]
fn a_node_that_is_down_can_be_removed_and_a_live_one_cannot() {
    let port = free_port();
    let server = Ebb::server_with(port, &[]);
    let mut agent = Agent::join(
        &format!("127.0.0.1:{port}"),
        &server.join_token(),
        "retired-1",
        "127.0.0.2",
    );
    eventually("the node to be ready", Duration::from_secs(10), || {
        (node_state(&server, "retired-1") == "ready").then_some(())
    });
    // Live: refused, saying what to do.
    let out = server.cli(&["nodes", "rm", "retired-1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A conflict with the cluster's state is invalid input: exit 2, nothing changed.
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("only a node that is down can be removed"),
        "{stderr}"
    );
    // Down: removed, gone from the list, and the event says so.
    agent.crash();
    eventually("the node to be down", Duration::from_secs(10), || {
        (node_state(&server, "retired-1") == "down").then_some(())
    });
    let out = eventually("the removal", Duration::from_secs(5), || {
        let out = server.cli(&["nodes", "rm", "retired-1"]);
        out.status.success().then_some(out)
    });
    assert!(String::from_utf8_lossy(&out.stdout).contains("node retired-1 removed (it was down)"));
    assert_eq!(node_state(&server, "retired-1"), Value::Null);
    assert!(server
        .ok(&["events"])
        .contains("node retired-1 was removed"));
    // Its credential went with it: the agent restarted on its old data dir joins again with
    // the join token and comes back as a new node.
    agent.start();
    eventually("the node to return", Duration::from_secs(10), || {
        (node_state(&server, "retired-1") == "ready").then_some(())
    });
    // An unknown node: 404, exit 2.
    let out = server.cli(&["nodes", "rm", "never-was"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no node named"));
}

/// Ready instances of `service` and their pids, by id.
fn ready_pids(server: &Ebb, service: &str, n: usize) -> BTreeMap<String, u64> {
    server
        .wait_ready(service, n, Duration::from_secs(20))
        .iter()
        .map(|i| {
            let id = i["id"].as_str().unwrap().to_string();
            (id, i["pid"].as_u64().unwrap())
        })
        .collect()
}

/// How long a server is stalled in the tests below: longer than the down timeout (3 s).
const STALL: Duration = Duration::from_secs(5);

/// After a stall of the server: the load saw no failure, no node was taken for down, and
/// every instance of `before` runs on with the same pid, among `ready` ready instances.
fn nothing_restarted(server: &Ebb, load: LoadGen, before: &BTreeMap<String, u64>, ready: usize) {
    // Longer than the down timeout again, so that a node wrongly counted down would show.
    std::thread::sleep(Duration::from_secs(4));
    finish_without_failures(load, 100);
    let events = server.ok(&["events", "--limit", "1000"]);
    assert!(!events.contains("node.down"), "{events}");
    let after = ready_pids(server, "web", ready);
    for (id, pid) in before {
        assert_eq!(after.get(id), Some(pid), "instance {id}: {after:?}");
    }
}

#[test]
fn a_server_stopped_for_5_s_restarts_nothing_and_fails_no_request() {
    let (server, _agents, _) = cluster("sigstop", 2);
    let lb = free_port();
    let file = deploy_file(server.dir.path(), "web.toml", &routed_service("web", 2, lb));
    server.ok(&["deploy", file.to_str().unwrap()]);
    let before = ready_pids(&server, "web", 2);
    assert_eq!(server.per_node("web").len(), 2, "one instance per node");
    let load = LoadGen::start(&format!("127.0.0.1:{lb}"), 4);
    std::thread::sleep(Duration::from_secs(1));
    server.signal(Signal::SIGSTOP);
    std::thread::sleep(STALL);
    server.signal(Signal::SIGCONT);
    nothing_restarted(&server, load, &before, 2);
}

#[test]
fn a_frozen_data_dir_disk_restarts_nothing_and_fails_no_request() {
    // The server's data dir on its own file system, frozen for 5 s while a scale-up writes
    // to the store: the API's store writes block all that time.
    let images = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fs = common::loopfs::LoopFs::mount(&images.path().join("fs.img"), &dir.path().join("data"));
    let port = free_port();
    let server = Ebb::server_in(dir, port, &[]);
    let addr = format!("127.0.0.1:{port}");
    let token = server.join_token();
    let _agents: Vec<Agent> = (1..=2)
        .map(|i| {
            Agent::join(
                &addr,
                &token,
                &format!("thaw-disk-{i}"),
                &format!("127.0.0.{}", i + 1),
            )
        })
        .collect();
    let lb = free_port();
    let file = deploy_file(images.path(), "web.toml", &routed_service("web", 2, lb));
    server.ok(&["deploy", file.to_str().unwrap()]);
    let before = ready_pids(&server, "web", 2);
    let load = LoadGen::start(&format!("127.0.0.1:{lb}"), 4);
    std::thread::sleep(Duration::from_secs(1));
    let frozen = fs.freeze();
    let scale = std::process::Command::new(common::EBB)
        .arg("--data-dir")
        .arg(server.data_dir())
        .args(["scale", "web", "3"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(STALL);
    drop(frozen);
    let mut scale = scale;
    assert!(
        scale.wait().unwrap().success(),
        "the scale-up went through once thawed"
    );
    nothing_restarted(&server, load, &before, 3);
}

#[test]
fn the_api_over_tls_is_trusted_by_the_ca_hash_in_the_join_token() {
    let port = free_port();
    let server = Ebb::server_with(port, &["--tls"]);
    let addr = std::fs::read_to_string(server.data_dir().join("api.addr")).unwrap();
    assert_eq!(addr, format!("https://127.0.0.1:{port}"));
    let token = server.join_token();
    assert!(token.starts_with("sha256:"), "{token}");
    // The CLI on this machine trusts the CA in the data dir.
    assert!(server.ok(&["status"]).contains("nodes"));
    // An agent trusts the server by the CA hash in the join token, and keeps it.
    let agent = Agent::join(&format!("127.0.0.1:{port}"), &token, "tls-1", "127.0.0.2");
    eventually("the node to be ready", Duration::from_secs(10), || {
        (node_state(&server, "tls-1") == "ready").then_some(())
    });
    assert!(agent.data_dir().join("server-ca-sha256").exists());
    // A token naming another CA: the agent refuses the server.
    let flip = if token.as_bytes()[7] == b'0' {
        "1"
    } else {
        "0"
    };
    let wrong = format!("sha256:{flip}{}", &token[8..]);
    let copy = server.dir.path().join("wrong-token");
    std::fs::write(&copy, &wrong).unwrap();
    let out = std::process::Command::new(EBB)
        .arg("--data-dir")
        .arg(server.dir.path().join("wrong"))
        .args([
            "agent",
            "--server",
            &format!("127.0.0.1:{port}"),
            "--name",
            "tls-2",
        ])
        .arg("--token-file")
        .arg(&copy)
        .env_remove("EBB_JOIN_TOKEN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("not the one the join token names"),
        "{stderr}"
    );
    assert_eq!(node_state(&server, "tls-2"), Value::Null);
    // Plain HTTP to the TLS API is told what to do.
    let (status, body) = http_get(&format!("127.0.0.1:{port}"), "/v1/status").unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("speaks HTTPS"), "{body}");
    // A CLI elsewhere: with --ca it answers; without, it says what to pass.
    let api_token = std::fs::read_to_string(server.data_dir().join("api-token")).unwrap();
    let elsewhere = |extra: &[&str]| {
        std::process::Command::new(EBB)
            .arg("--data-dir")
            .arg(server.dir.path().join("elsewhere"))
            .args(["--addr", &addr])
            .args(extra)
            .arg("status")
            .env("EBB_TOKEN", &api_token)
            .env_remove("EBB_CA")
            .output()
            .unwrap()
    };
    let ca = server.data_dir().join("tls/ca.pem");
    let out = elsewhere(&["--ca", ca.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = elsewhere(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--ca"), "{stderr}");
}

#[test]
fn an_api_listening_beyond_loopback_speaks_tls_without_being_asked() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = std::process::Command::new(EBB)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["server", "--listen", &format!("0.0.0.0:{port}")])
        .args(["--router-bind", "127.0.0.1"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr = eventually("the API address", Duration::from_secs(20), || {
        std::fs::read_to_string(dir.path().join("api.addr")).ok()
    });
    let token = std::fs::read_to_string(dir.path().join("join-token")).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(addr, format!("https://0.0.0.0:{port}"));
    assert!(token.starts_with("sha256:"), "{token}");
}
