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

/// One plane at a time: each runs three etcd members, several servers and agents, and two cores
/// running five of them at once would test the machine's scheduler, not ebb's timing.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Plane {
    servers: Vec<Ebb>,
    ports: Vec<u16>,
    _etcd: EtcdCluster,
    /// Held for the plane's life, dropped last (a failed test's poison is taken over).
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl Plane {
    fn start(n: usize) -> Plane {
        Plane::start_with(n, &[])
    }

    /// `n` servers, each also given `options` (`--tls`).
    fn start_with(n: usize, options: &[&str]) -> Plane {
        let turn = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let etcd = EtcdCluster::start(3).unwrap();
        let url = etcd.url();
        let mut servers = Vec::new();
        let mut ports = Vec::new();
        for i in 1..=n {
            let port = free_port();
            let name = format!("s{i}");
            let bind = format!("127.0.1.{i}");
            let mut args = vec!["--store", &url, "--name", &name, "--router-bind", &bind];
            args.extend(options);
            servers.push(Ebb::server_with(port, &args));
            ports.push(port);
        }
        Plane {
            _turn: turn,
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

    /// The index of the server that leads, as the first live server sees it.
    fn current_leader(&self) -> Option<usize> {
        (0..self.servers.len())
            .filter(|i| self.servers[*i].child.is_some())
            .find_map(|i| self.leader(i))
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

#[test]
fn killing_the_leader_fails_no_request_and_another_server_takes_over() {
    // With TLS: the servers share one CA, so that the agents trust all three by one hash.
    let mut plane = Plane::start_with(3, &["--tls"]);
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
    let lb = plane.deploy_routed(1, "web", 2);
    plane.servers[2].wait_ready("web", 2, Duration::from_secs(30));
    // Logs read the same through every server: each agent keeps its log channel with all.
    for server in &plane.servers {
        eventually("both instances' logs", Duration::from_secs(10), || {
            let out = server.ok(&["logs", "web"]);
            (out.matches("listening on").count() == 2).then_some(())
        });
    }

    let leader = eventually("a leader", Duration::from_secs(10), || plane.leader(0));
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    // Load through the two other servers' load balancers.
    let loads: Vec<LoadGen> = others
        .iter()
        .map(|i| routed_load(&format!("127.0.1.{}:{lb}", i + 1)))
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
        finish_without_failures(load, 50);
    }
    // The dead server is still listed, gone, with when it was last seen.
    let listed = plane.servers(next);
    assert_eq!(listed.len(), 3, "{listed:?}");
    let dead = format!("s{}", leader + 1);
    let gone: Vec<&Value> = listed.iter().filter(|s| s["alive"] == false).collect();
    assert_eq!(gone.len(), 1, "{listed:?}");
    assert_eq!(gone[0]["name"], dead.as_str());
    assert_eq!(gone[0]["leader"], false);
    let seen_ago = ebb_server::now_ms() - gone[0]["last_seen_ms"].as_u64().unwrap();
    assert!(
        (1000..15_000).contains(&seen_ago),
        "last seen {seen_ago} ms ago: {listed:?}"
    );
    let table = plane.servers[next].ok(&["servers"]);
    assert!(table.contains("ago, gone"), "{table}");

    // The new leader heals: a lost agent's instance is replaced on the other node.
    let mut agents = agents;
    let mut lost = agents.remove(0);
    let lost_name = lost.name.clone();
    lost.lose_machine();
    let survivor = &plane.servers[next];
    let replaced = eventually_or(Duration::from_secs(20), || {
        let by = survivor.per_node("web");
        (by.values().sum::<usize>() == 2 && !by.contains_key(&lost_name)).then_some(())
    });
    assert!(
        replaced.is_some(),
        "the lost instance replaced: ps {}\nnodes {}\nevents {}\nlog {}",
        survivor.ok(&["ps"]),
        survivor.ok(&["nodes"]),
        survivor.ok(&["events"]),
        survivor.server_log()
    );
    let scaled = survivor.ok(&["scale", "web", "3"]);
    assert!(scaled.contains("web"), "{scaled}");
    survivor.wait_ready("web", 3, Duration::from_secs(20));

    // The new leader's autoscaler scales on the load through the other server's load
    // balancer alone: from zero on the first request waiting there, then out on its load.
    let follower = others.iter().copied().find(|i| *i != next).unwrap();
    let lb = free_port();
    let auto = format!(
        "[services.ha-auto]\ncommand = [\"ebb\", \"example-app\"]\nport = {lb}\n\
         [services.ha-auto.health]\nhttp = \"/healthz\"\ninterval = \"200ms\"\n\
         [services.ha-auto.autoscale]\nmin = 0\nmax = 3\nconcurrency = 2\nstable_window = \"4s\"\n\
         panic_window = \"2s\"\nscale_down_delay = \"2s\"\nidle_timeout = \"60s\"\n"
    );
    let file = deploy_file(survivor.dir.path(), "auto.toml", &auto);
    survivor.ok(&["deploy", file.to_str().unwrap()]);
    assert_eq!(survivor.ready("ha-auto").len(), 0, "it starts at zero");
    let addr = format!("127.0.1.{}:{lb}", follower + 1);
    // The first answer waits for the instance the leader starts for it.
    let first = eventually(
        "the cold start through the other server",
        Duration::from_secs(20),
        || http_get_within(&addr, "/", Duration::from_secs(15)),
    );
    assert_eq!(first.0, 200, "{first:?}");
    let load = LoadGen::start_path(&addr, "/slow?ms=100", 6);
    let scaled = eventually_or(Duration::from_secs(20), || {
        (survivor.ready("ha-auto").len() >= 2).then_some(())
    });
    // The load goes on a second past the scale-out, through the new instance too: a quick
    // scale-out on a busy machine must still see enough requests to count.
    std::thread::sleep(Duration::from_secs(1));
    let (ok, failures) = load.finish();
    assert!(
        scaled.is_some(),
        "the autoscaler to scale out on the other server's load: events {}",
        survivor.ok(&["events"])
    );
    assert!(
        ok > 20 && failures.is_empty(),
        "{ok} ok, failed: {failures:?}"
    );
    let events = survivor.ok(&["events"]);
    assert!(events.contains("autoscaled 0 → 1"), "{events}");
    assert!(events.contains("autoscaled 1 → "), "{events}");
}

#[test]
fn with_etcd_frozen_routers_keep_routing_and_writes_fail_with_a_clear_error() {
    let plane = Plane::start(2);
    let token = plane.servers[0].join_token();
    let _agent = Agent::join(&plane.urls(), &token, "frozen-etcd-1", "127.0.0.2");
    let lb = plane.deploy_routed(0, "web", 2);
    let before: Vec<u64> = plane.servers[0]
        .ready("web")
        .iter()
        .filter_map(|i| i["pid"].as_u64())
        .collect();
    let load = routed_load(&format!("127.0.1.2:{lb}"));
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
    // Nothing was restarted, and everything resumes: the scale goes through now. (A call the
    // moment etcd thaws may still find it unreachable: ask until it answers.)
    let after: Vec<u64> = eventually(
        "the API to read the store again",
        Duration::from_secs(10),
        || {
            let out = plane.servers[0].try_cli(&["ps", "--json", "web"])?;
            let listed: Vec<Value> = serde_json::from_slice(&out.stdout).ok()?;
            Some(
                listed
                    .iter()
                    .filter(|i| i["ready"] == true && i["desired"] == "run")
                    .filter_map(|i| i["pid"].as_u64())
                    .collect(),
            )
        },
    );
    assert_eq!(before, after, "no instance restarted");
    eventually("a scale after the thaw", Duration::from_secs(20), || {
        plane.servers[1]
            .try_cli(&["scale", "web", "3"])
            .filter(|o| o.status.success())
            .map(|_| ())
    });
    plane.servers[0].wait_ready("web", 3, Duration::from_secs(20));
}

impl Plane {
    /// Deploys `name` with `n` instances behind a load balancer through server `via`, waits
    /// until they are ready; returns the load balancer's port.
    fn deploy_routed(&self, via: usize, name: &str, n: u32) -> u16 {
        let lb = free_port();
        let file = deploy_file(
            self.servers[via].dir.path(),
            &format!("{name}.toml"),
            &app_service(name, n, &format!("port = {lb}")),
        );
        self.servers[via].ok(&["deploy", file.to_str().unwrap()]);
        self.servers[via].wait_ready(name, n as usize, Duration::from_secs(30));
        lb
    }
}

/// Load through the load balancer at `addr`, once it listens.
fn routed_load(addr: &str) -> LoadGen {
    eventually("the router to listen", Duration::from_secs(10), || {
        http_get(addr, "/").map(|_| ())
    });
    LoadGen::start(addr, 2)
}

/// Sends SIGCONT to a server when dropped.
struct Thaw<'a>(&'a Ebb);

impl Drop for Thaw<'_> {
    fn drop(&mut self) {
        if self.0.child.is_some() {
            self.0.signal(nix::sys::signal::Signal::SIGCONT);
        }
    }
}

/// `check` until it yields, or None after `within`.
fn eventually_or<T>(within: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if let Some(v) = check() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// How many live processes run instances of `service` (names are unique per test).
fn processes(service: &str) -> usize {
    processes_with_env("EBB_SERVICE", service).len()
}

#[test]
fn a_leader_frozen_and_thawed_is_deposed_and_changes_nothing() {
    let plane = Plane::start(3);
    let token = plane.servers[0].join_token();
    let _agent = Agent::join(&plane.urls(), &token, "thaw-1", "127.0.0.2");
    let file = deploy_file(
        plane.servers[0].dir.path(),
        "thaw.toml",
        &app_service("thaw-web", 2, ""),
    );
    plane.servers[0].ok(&["deploy", file.to_str().unwrap()]);
    plane.servers[0].wait_ready("thaw-web", 2, Duration::from_secs(30));
    let frozen = eventually("a leader", Duration::from_secs(10), || plane.leader(0));
    let others: Vec<usize> = (0..3).filter(|i| *i != frozen).collect();
    plane.servers[frozen].signal(nix::sys::signal::Signal::SIGSTOP);
    // Thawed whatever happens, so that the server can be stopped at the end.
    let _thaw = Thaw(&plane.servers[frozen]);
    let stopped = Instant::now();
    let mut most = 0;
    let next = eventually("another leader", Duration::from_secs(10), || {
        most = most.max(processes("thaw-web"));
        plane.leader(others[0]).filter(|l| *l != frozen)
    });
    // While frozen, a scale through another server is applied by the new leader.
    plane.servers[next].ok(&["scale", "thaw-web", "3"]);
    let scaled = eventually_or(Duration::from_secs(20), || {
        (plane.servers[next].ready("thaw-web").len() == 3).then_some(())
    });
    assert!(
        scaled.is_some(),
        "scaled by the new leader: ps {}\nnodes {}\nevents {}\nlog {}",
        plane.servers[next].ok(&["ps"]),
        plane.servers[next].ok(&["nodes"]),
        plane.servers[next].ok(&["events"]),
        plane.servers[next].server_log()
    );
    while stopped.elapsed() < Duration::from_secs(10) {
        most = most.max(processes("thaw-web"));
        std::thread::sleep(Duration::from_millis(100));
    }
    plane.servers[frozen].signal(nix::sys::signal::Signal::SIGCONT);
    // The woken server finds it no longer leads; it writes nothing that sticks.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        most = most.max(processes("thaw-web"));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        most <= 4,
        "at most desired (3) + one surge instance ran: {most}"
    );
    let leaders: Vec<Option<usize>> = (0..3).map(|i| plane.leader(i)).collect();
    assert!(
        leaders.iter().all(|l| *l == Some(next)),
        "exactly one leader, the same for all: {leaders:?}"
    );
    let seen = eventually_or(Duration::from_secs(10), || {
        (plane.servers[frozen].ready("thaw-web").len() == 3).then_some(())
    });
    assert!(
        seen.is_some(),
        "the woken server sees what the leader did: ps {}\nlog {}\nleader's events {}\nleader's ps {}",
        plane.servers[frozen].ok(&["ps"]),
        plane.servers[frozen].server_log(),
        plane.servers[next].ok(&["events"]),
        plane.servers[next].ok(&["ps"]),
    );
    assert_eq!(processes("thaw-web"), 3);
}

#[test]
fn one_etcd_member_killed_changes_nothing_visible() {
    let mut plane = Plane::start(2);
    let token = plane.servers[0].join_token();
    let _agent = Agent::join(&plane.urls(), &token, "member-1", "127.0.0.2");
    let lb = plane.deploy_routed(0, "member-web", 2);
    let leader = eventually("a leader", Duration::from_secs(10), || plane.leader(0));
    let load = routed_load(&format!("127.0.1.1:{lb}"));
    // A member that follows in etcd's raft: etcd stays available throughout, so nothing may
    // change. Killing the raft leader instead leaves etcd without one for its election (here
    // 0.5–1 s, longer on a loaded machine), and a leader session that cannot renew for 1.5 s
    // steps down rather than risk a second leader: ebb's leader may then move, which the
    // leader-kill tests cover.
    let raft_leader = eventually("etcd's raft leader", Duration::from_secs(10), || {
        plane._etcd.raft_leader()
    });
    let follower = (0..3).find(|&m| m != raft_leader).unwrap();
    plane._etcd.kill(follower).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    plane.servers[1].ok(&["scale", "member-web", "3"]);
    plane.servers[0].wait_ready("member-web", 3, Duration::from_secs(20));
    finish_without_failures(load, 50);
    assert_eq!(plane.leader(1), Some(leader), "the leader stayed");
    let status = plane.servers[1].ok(&["status"]);
    assert!(
        status.contains("store: etcd 3 members, 2 of 3 healthy"),
        "{status}"
    );
}

#[test]
fn fifty_leader_kills_during_operations_lose_nothing_and_duplicate_nothing() {
    let mut plane = Plane::start(3);
    let token = plane.servers[0].join_token();
    let _agents: Vec<Agent> = (1..=2)
        .map(|i| {
            Agent::join(
                &plane.urls(),
                &token,
                &format!("churn-{i}"),
                &format!("127.0.0.{}", i + 1),
            )
        })
        .collect();
    // The operations: deploy churn-a..churn-e, scale each, stop two; each retried on a live
    // server until acknowledged, while the leader is killed and restarted again and again.
    let dir = plane.servers[0].dir.path().to_path_buf();
    let ops_dir = dir.clone();
    let addrs: Vec<std::path::PathBuf> = plane.servers.iter().map(|s| s.data_dir()).collect();
    let operations = std::thread::spawn(move || {
        let run = |args: &[&str]| {
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                for data_dir in &addrs {
                    let out = std::process::Command::new(EBB)
                        .arg("--data-dir")
                        .arg(data_dir)
                        .args(args)
                        .env_remove("EBB_ADDR")
                        .env_remove("EBB_TOKEN")
                        .output()
                        .unwrap();
                    if out.status.success() {
                        return;
                    }
                }
                assert!(Instant::now() < deadline, "ebb {args:?} never went through");
                std::thread::sleep(Duration::from_millis(200));
            }
        };
        let mut expected = BTreeMap::new();
        for (k, name) in ["churn-a", "churn-b", "churn-c", "churn-d", "churn-e"]
            .iter()
            .enumerate()
        {
            let file = deploy_file(&ops_dir, &format!("{name}.toml"), &app_service(name, 1, ""));
            run(&["deploy", "--detach", file.to_str().unwrap()]);
            let n = (k % 3 + 1).to_string();
            run(&["scale", name, &n]);
            expected.insert(name.to_string(), k % 3 + 1);
        }
        for name in ["churn-b", "churn-d"] {
            run(&["stop", "--detach", name]);
            expected.insert(name.to_string(), 0);
        }
        expected
    });
    let mut kills = 0;
    while kills < 50 {
        let Some(leader) = plane.current_leader() else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        plane.servers[leader].crash();
        let killed = Instant::now();
        kills += 1;
        plane.servers[leader].start(&[]);
        // The dead leader's session outlives it by up to its TTL: only then is whoever leads
        // a new leader (the restarted server may win again, legitimately).
        let settled = Duration::from_millis(2500);
        std::thread::sleep(settled.saturating_sub(killed.elapsed()));
    }
    let expected = operations.join().unwrap();
    let survivor = &plane.servers[0];
    for (name, n) in &expected {
        if *n == 0 {
            eventually(&format!("{name} gone"), Duration::from_secs(30), || {
                (processes(name) == 0 && survivor.ps(Some(name)).is_empty()).then_some(())
            });
        } else {
            survivor.wait_ready(name, *n, Duration::from_secs(30));
            eventually(
                &format!("{n} processes of {name}"),
                Duration::from_secs(20),
                || (processes(name) == *n).then_some(()),
            );
        }
    }
    let services = survivor.ok(&["status", "--json"]);
    let status: Value = serde_json::from_str(&services).unwrap();
    let names: Vec<&str> = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, vec!["churn-a", "churn-c", "churn-e"], "{services}");
}

/// A service of `n` instances that take a second to start (so that a rollout or a move is
/// still under way when the leader dies), behind a load balancer on `lb`, at `version`.
fn slow_start_service(name: &str, n: u32, lb: u16, version: &str) -> String {
    format!(
        "[services.{name}]\ncommand = [\"sh\", \"-c\", \"sleep 1; exec ebb example-app\"]\n\
         instances = {n}\nport = {lb}\n[services.{name}.env]\nVERSION = \"{version}\"\n\
         [services.{name}.health]\nhttp = \"/healthz\"\ninterval = \"200ms\"\n\
         [services.{name}.stop]\ngrace = \"5s\"\n"
    )
}

impl Plane {
    /// Kills the leader (as server `via` sees it) and starts it again, as a machine would come
    /// back; returns when another server leads.
    fn kill_and_restart_leader(&mut self, via: usize) {
        let leader = eventually("a leader", Duration::from_secs(10), || self.leader(via));
        self.servers[leader].crash();
        eventually("a new leader", Duration::from_secs(10), || {
            (0..self.servers.len())
                .filter(|i| *i != leader)
                .find_map(|i| self.leader(i))
                .filter(|l| *l != leader)
        });
        self.servers[leader].start(&[]);
    }

    /// A server that does not lead now, to send load through.
    fn follower(&self) -> usize {
        let leader = eventually("a leader", Duration::from_secs(10), || {
            self.current_leader()
        });
        (leader + 1) % self.servers.len()
    }
}

/// After an operation: exactly the 3 processes of `moving` run, and the load through it had no
/// failure.
fn settled(load: LoadGen, after: &str) {
    eventually(
        &format!("3 processes after the {after}"),
        Duration::from_secs(20),
        || (processes("moving") == 3).then_some(()),
    );
    finish_without_failures(load, 50);
}

#[test]
fn a_rollout_a_drain_and_a_migration_cut_by_a_leader_kill_are_finished_by_the_next_leader() {
    let mut plane = Plane::start(3);
    let token = plane.servers[0].join_token();
    let _agents: Vec<Agent> = ["move-a", "move-b"]
        .iter()
        .enumerate()
        .map(|(i, name)| Agent::join(&plane.urls(), &token, name, &format!("127.0.0.{}", i + 2)))
        .collect();
    let lb = free_port();
    let dir = plane.servers[0].dir.path().to_path_buf();
    let file = deploy_file(
        &dir,
        "moving.toml",
        &slow_start_service("moving", 3, lb, "1"),
    );
    plane.servers[0].ok(&["deploy", file.to_str().unwrap()]);
    plane.servers[0].wait_ready("moving", 3, Duration::from_secs(30));
    let versions = |plane: &Plane, via: usize| -> Vec<String> {
        plane.servers[via]
            .ps(Some("moving"))
            .iter()
            .map(|i| i["version"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let old_version = versions(&plane, 0)[0].clone();

    // A rollout: the leader dies once the first new instance exists.
    let via = plane.follower();
    let load = routed_load(&format!("127.0.1.{}:{lb}", via + 1));
    let file = deploy_file(
        &dir,
        "moving.toml",
        &slow_start_service("moving", 3, lb, "2"),
    );
    plane.servers[via].ok(&["deploy", "--detach", file.to_str().unwrap()]);
    eventually("the rollout to begin", Duration::from_secs(10), || {
        versions(&plane, via)
            .iter()
            .any(|v| v != &old_version)
            .then_some(())
    });
    plane.kill_and_restart_leader(via);
    let rolled = plane.servers[via].wait_ready("moving", 3, Duration::from_secs(40));
    let new_version = rolled[0]["version"].as_str().unwrap().to_string();
    assert_ne!(new_version, old_version);
    assert!(
        rolled.iter().all(|i| i["version"] == new_version.as_str()),
        "every instance rolled: {rolled:?}"
    );
    settled(load, "rollout");

    // A drain: the leader dies just after it is asked for.
    let via = plane.follower();
    let load = routed_load(&format!("127.0.1.{}:{lb}", via + 1));
    let on_a = plane.servers[via].per_node("moving").get("move-a").copied();
    let drained = if on_a.unwrap_or(0) > 0 {
        "move-a"
    } else {
        "move-b"
    };
    let other = if drained == "move-a" {
        "move-b"
    } else {
        "move-a"
    };
    plane.servers[via].ok(&["drain", "--detach", drained]);
    plane.kill_and_restart_leader(via);
    let done = eventually_or(Duration::from_secs(40), || {
        let by = plane.servers[via].per_node("moving");
        let nodes: Vec<Value> =
            serde_json::from_str(&plane.servers[via].ok(&["nodes", "--json"])).ok()?;
        let node = nodes.iter().find(|n| n["name"] == drained)?;
        let finished = !node["drain"]["done_ms"].is_null();
        (finished && by.get(other) == Some(&3) && by.len() == 1).then_some(())
    });
    assert!(
        done.is_some(),
        "the drain finished: ps {}\nnodes {}\nevents {}",
        plane.servers[via].ok(&["ps"]),
        plane.servers[via].ok(&["nodes"]),
        plane.servers[via].ok(&["events"])
    );
    settled(load, "drain");

    // A migration back to the drained node: the leader dies just after it is asked for.
    plane.servers[via].ok(&["undrain", drained]);
    let via = plane.follower();
    let load = routed_load(&format!("127.0.1.{}:{lb}", via + 1));
    let moved = plane.servers[via].ready("moving")[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    plane.servers[via].ok(&["migrate", "--detach", &moved, "--to", drained]);
    plane.kill_and_restart_leader(via);
    let migrated = eventually_or(Duration::from_secs(40), || {
        let by = plane.servers[via].per_node("moving");
        let gone = !plane.servers[via]
            .ps(Some("moving"))
            .iter()
            .any(|i| i["id"] == moved.as_str());
        (gone && by.get(drained) == Some(&1) && by.get(other) == Some(&2)).then_some(())
    });
    assert!(
        migrated.is_some(),
        "the migration finished: ps {}\nevents {}",
        plane.servers[via].ok(&["ps"]),
        plane.servers[via].ok(&["events"])
    );
    settled(load, "migration");
}
