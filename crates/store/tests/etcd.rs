//! What only the etcd backend has to survive: members that die, freeze and come back, and
//! servers that campaign for leadership. Each test runs its own three-member cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::time::{Duration, Instant};

use ebb_store::etcd::election::{Candidate, SESSION_TTL};
use ebb_store::{EtcdStore, Expect, FencedStore, KvStore, Leadership, StoreError};
use ebb_testkit::blocking::eventually as eventually_blocking;
use ebb_testkit::etcd::EtcdCluster;

const DEADLINE: Duration = Duration::from_secs(20);

fn store(cluster: &EtcdCluster) -> EtcdStore {
    EtcdStore::connect(&cluster.endpoints(), "ebb/").unwrap()
}

/// Waits until `store` has seen a change of `key` at `revision` or later.
fn sees(store: &EtcdStore, key: &str, revision: u64, after: u64) {
    eventually_blocking(&format!("{key}@{revision} in the watch"), DEADLINE, || {
        let changes = store.changes_since("", after, 1000).ok()?;
        changes
            .iter()
            .any(|c| c.key() == key && c.revision() >= revision)
            .then_some(())
    });
}

#[test]
fn the_watch_resumes_on_another_member_and_misses_nothing() {
    let mut cluster = EtcdCluster::start(3).unwrap();
    let watcher = store(&cluster);
    let start = watcher.revision().unwrap();
    // The watcher talks to the first member; kill it, then write through another store.
    cluster.kill(0).unwrap();
    let writer = EtcdStore::connect(&cluster.endpoints()[1..], "ebb/").unwrap();
    let put = |key: &str| {
        // A write may find the cluster electing a new raft leader: retry, as a server does.
        eventually_blocking(&format!("writing {key}"), DEADLINE, || {
            writer.put(key, b"1", Expect::Any).ok()
        })
    };
    let a = put("jobs/a");
    sees(&watcher, "jobs/a", a, start);
    cluster.restart(0).unwrap();
    cluster.kill(1).unwrap();
    let b = put("jobs/b");
    sees(&watcher, "jobs/b", b, start);
    let changes = watcher.changes_since("jobs/", start, 100).unwrap();
    let keys: Vec<&str> = changes.iter().map(|c| c.key()).collect();
    assert_eq!(keys, vec!["jobs/a", "jobs/b"], "each change once, in order");
}

#[test]
fn a_frozen_cluster_fails_writes_fast_and_everything_resumes_after() {
    let cluster = EtcdCluster::start(3).unwrap();
    let store = store(&cluster);
    let start = store.revision().unwrap();
    for member in 0..3 {
        cluster.signal(member, "STOP").unwrap();
    }
    let began = Instant::now();
    let err = store.put("services/web", b"1", Expect::Any).unwrap_err();
    let took = began.elapsed();
    for member in 0..3 {
        cluster.signal(member, "CONT").unwrap();
    }
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with("the store (etcd at 127.0.0.1:") && message.contains("unreachable"),
        "{message}"
    );
    assert!(took < Duration::from_secs(8), "failed after {took:?}");
    // Back: writes land and the watch delivers them, with no new store.
    let rev = eventually_blocking("a write after the thaw", DEADLINE, || {
        store.put("services/web", b"2", Expect::Any).ok()
    });
    sees(&store, "services/web", rev, start);
}

#[test]
fn one_leader_at_a_time_and_a_dead_leader_is_replaced_within_the_session_ttl() {
    let cluster = EtcdCluster::start(3).unwrap();
    let mut stores: Vec<Option<EtcdStore>> = (0..3).map(|_| Some(store(&cluster))).collect();
    let campaigns: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(n, s)| {
            s.as_ref().unwrap().campaign(Candidate {
                name: format!("s{n}"),
                record: format!("{{\"name\":\"s{n}\"}}").into_bytes(),
            })
        })
        .collect();
    let leaders = |campaigns: &[_]| -> Vec<usize> {
        campaigns
            .iter()
            .enumerate()
            .filter(|(_, c): &(usize, &ebb_store::etcd::election::Campaign)| {
                matches!(*c.leadership().borrow(), Leadership::Leading(_))
            })
            .map(|(n, _)| n)
            .collect()
    };
    let first = eventually_blocking("a leader", DEADLINE, || {
        let now = leaders(&campaigns);
        (now.len() == 1).then(|| now[0])
    });
    let Leadership::Leading(Some(old_fence)) = campaigns[first].leadership().borrow().clone()
    else {
        panic!("the leader has a fence")
    };
    let reader = store(&cluster);
    assert_eq!(reader.leader().unwrap(), Some(format!("s{first}")));
    assert_eq!(reader.servers().unwrap().len(), 3);

    // The leader dies without resigning (its store's tasks stop, as in a kill -9).
    let old_store: std::sync::Arc<dyn KvStore> = std::sync::Arc::new(store(&cluster));
    drop(stores[first].take());
    let died = Instant::now();
    let second = eventually_blocking("a new leader", DEADLINE, || {
        let now: Vec<usize> = leaders(&campaigns)
            .into_iter()
            .filter(|n| *n != first)
            .collect();
        (now.len() == 1).then(|| now[0])
    });
    let failover = died.elapsed();
    assert!(
        failover < SESSION_TTL + Duration::from_secs(3),
        "failover took {failover:?}"
    );
    // The old leader's fenced writes are refused.
    let fenced = FencedStore::new(old_store, old_fence);
    let err = fenced.put("services/web", b"x", Expect::Any).unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }), "{err:?}");
    assert_eq!(
        reader.servers().unwrap().len(),
        2,
        "the dead server left the registry"
    );

    // A resigning leader hands over at once, without waiting for its lease.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut campaigns = campaigns;
    let resigning = campaigns.remove(second);
    let resigned = Instant::now();
    runtime.block_on(resigning.resign());
    eventually_blocking("the last server leads", DEADLINE, || {
        campaigns
            .iter()
            .any(|c| matches!(*c.leadership().borrow(), Leadership::Leading(_)))
            .then_some(())
    });
    assert!(
        resigned.elapsed() < SESSION_TTL,
        "handover after resign took {:?}",
        resigned.elapsed()
    );
}

#[test]
fn a_node_is_alive_while_any_server_hears_it_and_not_after() {
    use ebb_store::etcd::nodes::{LIVENESS_TTL, NODE_SILENT_AFTER};
    let cluster = EtcdCluster::start(3).unwrap();
    let (a, b) = (store(&cluster), store(&cluster));
    let alive = |s: &EtcdStore| s.alive_nodes().unwrap();
    let heartbeats = |s: &EtcdStore, node: &str, for_: Duration| {
        let end = Instant::now() + for_;
        while Instant::now() < end {
            s.node_alive(node);
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    // Heard by a: alive, as every server sees it, at once.
    a.node_alive("n1");
    eventually_blocking("n1 alive", Duration::from_secs(2), || {
        alive(&b).contains(&"n1".to_string()).then_some(())
    });
    // It moves to b and back to a while a still remembers it: alive throughout, but for a
    // moment when b lets go of the key a took over (a sweep, 250 ms, puts it back).
    heartbeats(&b, "n1", Duration::from_secs(1));
    let flapping = Instant::now();
    let (mut missing_since, mut longest) = (None::<Instant>, Duration::ZERO);
    while flapping.elapsed() < NODE_SILENT_AFTER * 2 {
        a.node_alive("n1");
        if alive(&b).contains(&"n1".to_string()) {
            missing_since = None;
        } else {
            let since = *missing_since.get_or_insert_with(Instant::now);
            longest = longest.max(since.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        longest < Duration::from_secs(1),
        "n1 missing for {longest:?} while heard"
    );
    // Silent: gone within the silence and a sweep or two.
    let silent = Instant::now();
    eventually_blocking("n1 gone", Duration::from_secs(5), || {
        (!alive(&a).contains(&"n1".to_string())).then_some(())
    });
    assert!(silent.elapsed() >= NODE_SILENT_AFTER - Duration::from_millis(300));
    // A server that dies takes its nodes' keys with its lease.
    heartbeats(&a, "n2", Duration::from_millis(600));
    assert!(alive(&b).contains(&"n2".to_string()));
    drop(a);
    let dead = Instant::now();
    eventually_blocking("n2 gone with its server", Duration::from_secs(6), || {
        (!alive(&b).contains(&"n2".to_string())).then_some(())
    });
    assert!(dead.elapsed() < LIVENESS_TTL + Duration::from_secs(2));
}
