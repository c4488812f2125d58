//! A highly available control plane (issue 16): three `ebb server`s on one real three-member
//! etcd cluster, each with its load balancers on its own loopback address (127.0.1.1-3), and
//! agents given all three servers.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::agent::Agent;
use common::*;
use ebb_testkit::etcd::EtcdCluster;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

struct Plane {
    servers: Vec<Ebb>,
    ports: Vec<u16>,
    _etcd: EtcdCluster,
}

impl Plane {
    fn start(n: usize) -> Plane {
        let etcd = EtcdCluster::start(3).unwrap();
        let url = etcd.url();
        let mut servers = Vec::new();
        let mut ports = Vec::new();
        for i in 1..=n {
            let port = free_port();
            let name = format!("s{i}");
            let bind = format!("127.0.1.{i}");
            servers.push(Ebb::server_with(
                port,
                &["--store", &url, "--name", &name, "--router-bind", &bind],
            ));
            ports.push(port);
        }
        Plane {
            servers,
            ports,
            _etcd: etcd,
        }
    }

    /// `a:p1,a:p2,a:p3`, as agents take it.
    fn urls(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The servers as `ebb servers --json` on server `via` lists them.
    fn servers(&self, via: usize) -> Vec<Value> {
        serde_json::from_str(&self.servers[via].ok(&["servers", "--json"])).unwrap()
    }

    /// The index of the server that leads, as server `via` sees it.
    fn leader(&self, via: usize) -> Option<usize> {
        let out = self.servers[via].try_cli(&["servers", "--json"])?;
        let listed: Vec<Value> = serde_json::from_slice(&out.stdout).ok()?;
        let name = listed
            .iter()
            .find(|s| s["leader"] == true)?
            .get("name")?
            .as_str()?
            .to_string();
        name.strip_prefix('s')?.parse::<usize>().ok().map(|i| i - 1)
    }
}

fn per_node(server: &Ebb, service: &str) -> BTreeMap<String, usize> {
    let mut by = BTreeMap::new();
    for i in server.ready(service) {
        *by.entry(i["node"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
    }
    by
}

#[test]
fn killing_the_leader_fails_no_request_and_another_server_takes_over() {
    let mut plane = Plane::start(3);
    // Every server serves the API and lists all three, one of them leading.
    let listed = plane.servers(2);
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert_eq!(listed.iter().filter(|s| s["leader"] == true).count(), 1);
    let status = plane.servers[1].ok(&["status"]);
    assert!(
        status.contains("store: etcd 3 members, healthy"),
        "{status}"
    );

    let token = plane.servers[0].join_token();
    let agents: Vec<Agent> = (1..=2)
        .map(|i| {
            Agent::join(
                &plane.urls(),
                &token,
                &format!("ha-{i}"),
                &format!("127.0.0.{}", i + 1),
            )
        })
        .collect();
    let lb = free_port();
    let file = deploy_file(
        plane.servers[1].dir.path(),
        "web.toml",
        &app_service("web", 2, &format!("port = {lb}")),
    );
    plane.servers[1].ok(&["deploy", file.to_str().unwrap()]);
    plane.servers[2].wait_ready("web", 2, Duration::from_secs(30));

    let leader = eventually("a leader", Duration::from_secs(10), || plane.leader(0));
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    // Load through the two other servers' load balancers.
    let loads: Vec<LoadGen> = others
        .iter()
        .map(|i| {
            let addr = format!("127.0.1.{}:{lb}", i + 1);
            eventually("the router to listen", Duration::from_secs(10), || {
                http_get(&addr, "/").map(|_| ())
            });
            LoadGen::start(&addr, 2)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));

    plane.servers[leader].crash();
    let killed = Instant::now();
    let next = eventually("a new leader", Duration::from_secs(10), || {
        plane.leader(others[0]).filter(|l| *l != leader)
    });
    let failover = killed.elapsed();
    assert!(others.contains(&next));
    assert!(
        failover < Duration::from_secs(5),
        "failover took {failover:?}"
    );
    std::thread::sleep(Duration::from_millis(1000));
    for load in loads {
        let (ok, failures) = load.finish();
        assert!(ok > 50, "the load ran: {ok}");
        assert!(
            failures.is_empty(),
            "{} failed requests: {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
    }
    let listed = plane.servers(next);
    assert_eq!(listed.len(), 2, "the dead server left: {listed:?}");

    // The new leader heals: a lost agent's instance is replaced on the other node.
    let mut agents = agents;
    let mut lost = agents.remove(0);
    let lost_name = lost.name.clone();
    lost.lose_machine();
    let survivor = &plane.servers[next];
    eventually(
        "the lost instance to be replaced",
        Duration::from_secs(20),
        || {
            let by = per_node(survivor, "web");
            (by.values().sum::<usize>() == 2 && !by.contains_key(&lost_name)).then_some(())
        },
    );
    let scaled = survivor.ok(&["scale", "web", "3"]);
    assert!(scaled.contains("web"), "{scaled}");
    survivor.wait_ready("web", 3, Duration::from_secs(20));
}

#[test]
fn with_etcd_frozen_routers_keep_routing_and_writes_fail_with_a_clear_error() {
    let plane = Plane::start(2);
    let token = plane.servers[0].join_token();
    let _agent = Agent::join(&plane.urls(), &token, "frozen-etcd-1", "127.0.0.2");
    let lb = free_port();
    let file = deploy_file(
        plane.servers[0].dir.path(),
        "web.toml",
        &app_service("web", 2, &format!("port = {lb}")),
    );
    plane.servers[0].ok(&["deploy", file.to_str().unwrap()]);
    plane.servers[0].wait_ready("web", 2, Duration::from_secs(30));
    let before: Vec<u64> = plane.servers[0]
        .ready("web")
        .iter()
        .filter_map(|i| i["pid"].as_u64())
        .collect();
    let addr = "127.0.1.2:".to_string() + &lb.to_string();
    eventually("the router to listen", Duration::from_secs(10), || {
        http_get(&addr, "/").map(|_| ())
    });
    let load = LoadGen::start(&addr, 2);
    for member in 0..3 {
        plane._etcd.signal(member, "STOP").unwrap();
    }
    std::thread::sleep(Duration::from_secs(3));
    let failed = plane.servers[1].cli(&["scale", "web", "3"]);
    let message = String::from_utf8_lossy(&failed.stderr).to_string();
    std::thread::sleep(Duration::from_secs(3));
    for member in 0..3 {
        plane._etcd.signal(member, "CONT").unwrap();
    }
    let (ok, failures) = load.finish();
    assert_eq!(failed.status.code(), Some(1), "{message}");
    assert!(
        message.contains("the store (etcd at") && message.contains("unreachable"),
        "{message}"
    );
    assert!(ok > 50, "the load ran: {ok}");
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    // Nothing was restarted, and everything resumes: the scale goes through now.
    let after: Vec<u64> = plane.servers[0]
        .ready("web")
        .iter()
        .filter_map(|i| i["pid"].as_u64())
        .collect();
    assert_eq!(before, after, "no instance restarted");
    eventually("a scale after the thaw", Duration::from_secs(20), || {
        plane.servers[1]
            .try_cli(&["scale", "web", "3"])
            .filter(|o| o.status.success())
            .map(|_| ())
    });
    plane.servers[0].wait_ready("web", 3, Duration::from_secs(20));
}
