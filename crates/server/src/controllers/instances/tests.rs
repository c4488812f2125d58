//! The service controller's decisions, driven with hand-made snapshots and a manual clock: no
//! store, no router, no agent. The end-to-end tests (`crates/ebb/tests`) run the same code
//! against real processes; these pin each rule down on its own.

use super::plan::FAST_DRAIN_MS;
use super::{decide, Plan, Recheck, RouterView, Snapshot};
use crate::state::keys::{self, DrainRecord, Migration, NodeDrain, Versioned};
use crate::state::nodes::NodeStates;
use ebb_core::api::NodeInfo;
use ebb_core::{
    Assignment, DesiredState, EventKind, InstanceState, InstanceStatus, Resources, ServiceSpec,
};
use ebb_store::{Expect, Op};
use std::collections::HashMap;
use std::time::Duration;

/// The manual clock's "now", in unix milliseconds.
const T0: u64 = 1_700_000_000_000;
const DOWN_AFTER: Duration = Duration::from_secs(3);

// === building snapshots ===

fn spec(name: &str, instances: u32) -> ServiceSpec {
    let mut spec = ServiceSpec::new(name, vec!["app".into()]);
    spec.instances = instances;
    spec
}

fn routed(name: &str, instances: u32) -> ServiceSpec {
    let mut spec = spec(name, instances);
    spec.port = Some(8080);
    spec
}

fn node(name: &str) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        address: "127.0.0.1".into(),
        cpu_millis: 4000,
        memory_bytes: 8 << 30,
        enforcement: "none: test".into(),
        labels: Default::default(),
    }
}

/// An instance of `spec` on `node`, stored at revision `rev` (also its generation).
fn instance(id: &str, spec: &ServiceSpec, node: &str, rev: u64) -> Versioned<Assignment> {
    Versioned {
        value: Assignment {
            id: id.into(),
            service: spec.name.clone(),
            node: node.into(),
            generation: rev,
            version: spec.version(),
            spec: spec.clone(),
            desired: DesiredState::Run,
            created_ms: T0 - 60_000,
            task: None,
            placement: None,
        },
        mod_revision: rev,
        create_revision: rev,
    }
}

/// A status of `a`'s current generation: running, ready or not.
fn status(a: &Versioned<Assignment>, ready: bool) -> InstanceStatus {
    InstanceStatus {
        id: a.value.id.clone(),
        generation: a.value.generation,
        state: InstanceState::Running,
        pid: Some(4242),
        addr: Some("127.0.0.1:9000".into()),
        ready,
        restarts: 0,
        started_ms: Some(T0 - 50_000),
        last_exit: None,
        exit_code: None,
        exit_unknown: false,
        reason: None,
    }
}

/// A cluster whose nodes all heartbeated just now, after the server has been up a while.
fn snapshot(nodes: &[&str]) -> Snapshot {
    let ages = nodes
        .iter()
        .map(|n| (n.to_string(), Duration::from_millis(100)))
        .collect();
    Snapshot {
        services: Default::default(),
        assignments: Vec::new(),
        drains: HashMap::new(),
        node_drains: Default::default(),
        migrations: Default::default(),
        statuses: HashMap::new(),
        nodes: nodes.iter().map(|n| node(n)).collect(),
        states: NodeStates::new(ages, Duration::from_secs(600), DOWN_AFTER),
        newly_down: Vec::new(),
        down_after: DOWN_AFTER,
        router: None,
        revision: 100,
        id_seed: 7,
        jobs: Default::default(),
    }
}

impl Snapshot {
    fn with_service(mut self, spec: &ServiceSpec) -> Self {
        self.services.insert(spec.name.clone(), spec.clone());
        self
    }

    /// Adds a running instance; `ready` sets its reported status.
    fn with_instance(mut self, a: Versioned<Assignment>, ready: bool) -> Self {
        self.statuses.insert(a.value.id.clone(), status(&a, ready));
        self.assignments.push(a);
        self
    }

    fn with_router(mut self, synced_revision: u64, in_flight: &[(&str, u32)]) -> Self {
        let in_flight = in_flight.iter().map(|(i, n)| (i.to_string(), *n)).collect();
        self.router = Some(RouterView {
            synced_revision,
            in_flight,
        });
        self
    }

    /// `node` last heartbeated `silent` ago.
    fn with_silence(mut self, node: &str, silent: Duration) -> Self {
        let ages = self
            .nodes
            .iter()
            .map(|n| {
                let age = if n.name == node {
                    silent
                } else {
                    Duration::from_millis(100)
                };
                (n.name.clone(), age)
            })
            .collect();
        self.states = NodeStates::new(ages, Duration::from_secs(600), DOWN_AFTER);
        self
    }

    fn with_drain(mut self, id: &str, since_ms: u64, deadline_ms: u64, rev: u64) -> Self {
        let record = DrainRecord {
            since_ms,
            deadline_ms,
            reason: "scale in".into(),
        };
        self.drains.insert(
            id.into(),
            Versioned {
                value: record,
                mod_revision: rev,
                create_revision: rev,
            },
        );
        self
    }

    fn with_node_drain(mut self, node: &str, deadline_ms: u64) -> Self {
        let drain = NodeDrain {
            since_ms: T0 - 1_000,
            deadline_ms,
            done_ms: None,
        };
        self.states = self.states.clone().draining([node.to_string()]);
        self.node_drains.insert(
            node.into(),
            Versioned {
                value: drain,
                mod_revision: 50,
                create_revision: 50,
            },
        );
        self
    }

    fn with_migration(mut self, id: &str, m: Migration) -> Self {
        self.migrations.insert(
            id.into(),
            Versioned {
                value: m,
                mod_revision: 60,
                create_revision: 60,
            },
        );
        self
    }
}

/// `spec` with a changed environment: a new version, to be rolled.
fn next_version(spec: &ServiceSpec) -> ServiceSpec {
    let mut new = spec.clone();
    new.env.insert("V".into(), "2".into());
    new
}

fn migration(service: &str, from: &str, to: Option<&str>) -> Migration {
    Migration {
        service: service.into(),
        from: from.into(),
        to: to.map(String::from),
        by_drain: false,
        restart: false,
        since_ms: T0 - 1_000,
        replacement: None,
    }
}

// === reading plans ===

/// The assignments the plan writes under `instances/` with the condition `expect` selects.
fn assignments_written(plan: &Plan, expect: impl Fn(&Expect) -> bool) -> Vec<Assignment> {
    plan.ops
        .iter()
        .filter_map(|op| match op {
            Op::Put {
                key,
                value,
                expect: e,
            } if expect(e) && key.starts_with(keys::INSTANCES) => {
                serde_json::from_slice(value).ok()
            }
            _ => None,
        })
        .collect()
}

/// The assignments the plan creates.
fn created(plan: &Plan) -> Vec<Assignment> {
    assignments_written(plan, |e| *e == Expect::Absent)
}

/// The ids of instances the plan sets to stop (a put of desired = stop over its revision).
fn stopped(plan: &Plan) -> Vec<String> {
    assignments_written(plan, |e| matches!(e, Expect::ModRevision(_)))
        .into_iter()
        .filter(|a| a.desired == DesiredState::Stop)
        .map(|a| a.id)
        .collect()
}

/// The rest of the keys under `prefix` that the plan puts (`put`) or deletes.
fn keys_written(plan: &Plan, prefix: &str, put: bool) -> Vec<String> {
    plan.ops
        .iter()
        .filter(|op| matches!(op, Op::Put { .. }) == put)
        .filter_map(|op| op.key().strip_prefix(prefix).map(String::from))
        .collect()
}

fn puts(plan: &Plan, prefix: &str) -> Vec<String> {
    keys_written(plan, prefix, true)
}

fn deletes(plan: &Plan, prefix: &str) -> Vec<String> {
    keys_written(plan, prefix, false)
}

fn events(plan: &Plan, kind: EventKind) -> Vec<String> {
    plan.events
        .iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.message.clone())
        .collect()
}

// === placement ===

#[test]
fn a_new_service_gets_its_instances_placed_on_ready_nodes() {
    let web = spec("web", 2);
    let plan = decide(&snapshot(&["a", "b"]).with_service(&web), T0);
    let made = created(&plan);
    assert_eq!(made.len(), 2);
    assert!(made
        .iter()
        .all(|a| a.version == web.version() && a.created_ms == T0));
    let mut nodes: Vec<&str> = made.iter().map(|a| a.node.as_str()).collect();
    nodes.sort();
    assert_eq!(nodes, ["a", "b"], "anti-affinity spreads one service");
    assert_eq!(events(&plan, EventKind::InstanceCreated).len(), 2);
    assert_eq!(plan.recheck, Recheck::OnChange);
}

#[test]
fn the_same_snapshot_and_clock_give_the_same_plan() {
    let snap = snapshot(&["a", "b", "c"]).with_service(&spec("web", 3));
    let (one, two) = (decide(&snap, T0), decide(&snap, T0));
    assert_eq!(one.ops, two.ops);
    assert_eq!(one.events, two.events);
    let ids: Vec<String> = created(&one).into_iter().map(|a| a.id).collect();
    assert!(ids
        .iter()
        .all(|id| id.starts_with("web-") && id.len() == 12));
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(unique.len(), 3);
}

#[test]
fn an_instance_no_node_fits_is_pending_with_the_reason() {
    let mut big = spec("big", 1);
    big.resources = Resources {
        cpu_millis: Some(64_000),
        memory_bytes: None,
    };
    let plan = decide(&snapshot(&["a"]).with_service(&big), T0);
    assert!(created(&plan).is_empty());
    let why = plan.pending.get("big").expect("pending");
    assert!(why.contains("insufficient cpu"), "{why}");
}

#[test]
fn suspect_nodes_take_no_new_instances() {
    let snap = snapshot(&["a", "b"])
        .with_service(&spec("web", 1))
        .with_silence("a", Duration::from_millis(2_000));
    let made = created(&decide(&snap, T0));
    assert_eq!(made.len(), 1);
    assert_eq!(made[0].node, "b");
}

// === scaling in and drains ===

#[test]
fn scaling_in_an_unrouted_service_stops_the_extra_instance_at_once() {
    let worker = spec("worker", 1);
    let snap = snapshot(&["a"])
        .with_service(&worker)
        .with_instance(instance("worker-1", &worker, "a", 10), true)
        .with_instance(instance("worker-2", &worker, "a", 11), true);
    let plan = decide(&snap, T0);
    assert_eq!(stopped(&plan).len(), 1);
    assert!(puts(&plan, keys::DRAINS).is_empty());
    assert!(events(&plan, EventKind::InstanceStopping)[0].contains("scale in"));
}

#[test]
fn scaling_in_a_routed_service_drains_the_instance_before_stopping_it() {
    let web = routed("web", 1);
    let snap = snapshot(&["a"])
        .with_service(&web)
        .with_instance(instance("web-1", &web, "a", 10), true)
        .with_instance(instance("web-2", &web, "a", 11), true)
        .with_router(90, &[]);
    let plan = decide(&snap, T0);
    assert!(
        stopped(&plan).is_empty(),
        "not stopped before it is drained"
    );
    let drained = puts(&plan, keys::DRAINS);
    assert_eq!(drained.len(), 1);
    let record = plan.ops.iter().find_map(|op| match op {
        Op::Put { key, value, .. } if key.starts_with(keys::DRAINS) => {
            serde_json::from_slice::<DrainRecord>(value).ok()
        }
        _ => None,
    });
    let record = record.expect("a drain record");
    assert_eq!(record.since_ms, T0);
    assert_eq!(
        record.deadline_ms,
        T0 + web.balance.drain.as_millis() as u64
    );
    assert!(plan.draining);
    assert_eq!(plan.recheck, Recheck::Soon);
}

#[test]
fn a_drained_instance_stops_once_the_router_dropped_it_and_its_requests_ended() {
    let web = routed("web", 0);
    let base = snapshot(&["a"])
        .with_service(&web)
        .with_instance(instance("web-1", &web, "a", 10), true)
        .with_drain("web-1", T0 - 200, T0 + 30_000, 20);
    // The router has not yet seen the drain (revision 19 < 20): wait.
    let plan = decide(&base_router(&base, 19, 0), T0);
    assert!(stopped(&plan).is_empty());
    // Seen, but a request is still in flight: wait.
    let plan = decide(&base_router(&base, 20, 1), T0);
    assert!(stopped(&plan).is_empty());
    assert_eq!(
        plan.recheck,
        Recheck::Soon,
        "a young drain is looked at soon"
    );
    // Seen and idle: the drain ends and the instance stops.
    let plan = decide(&base_router(&base, 20, 0), T0);
    assert_eq!(stopped(&plan), ["web-1"]);
    assert_eq!(deletes(&plan, keys::DRAINS), ["web-1"]);
    assert!(events(&plan, EventKind::InstanceStopping)[0].contains("scale in; drained"));
}

fn base_router(base: &Snapshot, synced: u64, in_flight: u32) -> Snapshot {
    base.clone().with_router(synced, &[("web-1", in_flight)])
}

#[test]
fn a_drain_past_its_deadline_stops_the_instance_with_requests_still_in_flight() {
    let web = routed("web", 0);
    let snap = snapshot(&["a"])
        .with_service(&web)
        .with_instance(instance("web-1", &web, "a", 10), true)
        .with_drain("web-1", T0 - 40_000, T0 - 10_000, 20)
        .with_router(25, &[("web-1", 3)]);
    let plan = decide(&snap, T0);
    assert_eq!(stopped(&plan), ["web-1"]);
    let why = &events(&plan, EventKind::InstanceStopping)[0];
    assert!(
        why.contains("drain time over with 3 requests in flight"),
        "{why}"
    );
}

#[test]
fn the_drain_record_of_a_vanished_instance_is_deleted() {
    let snap = snapshot(&["a"]).with_drain("gone-1", T0 - 100, T0 + 1_000, 5);
    let plan = decide(&snap, T0);
    assert_eq!(deletes(&plan, keys::DRAINS), ["gone-1"]);
}

#[test]
fn rechecks_follow_the_age_of_drains() {
    let web = routed("web", 1);
    let old_drain = snapshot(&["a"])
        .with_service(&web)
        .with_instance(instance("web-1", &web, "a", 10), true)
        .with_drain("web-1", T0 - FAST_DRAIN_MS - 1, T0 + 60_000, 20)
        .with_router(25, &[("web-1", 1)]);
    assert_eq!(decide(&old_drain, T0).recheck, Recheck::EverySecond);
    let quiet = snapshot(&["a"])
        .with_service(&web)
        .with_instance(instance("web-1", &web, "a", 10), true);
    assert_eq!(decide(&quiet, T0).recheck, Recheck::OnChange);
}

// === lost nodes and fencing ===

#[test]
fn an_instance_on_a_down_node_is_forgotten_and_replaced_elsewhere() {
    let web = spec("web", 1);
    let mut snap = snapshot(&["a", "b"])
        .with_service(&web)
        .with_instance(instance("web-1", &web, "a", 10), true)
        .with_silence("a", Duration::from_secs(5));
    snap.newly_down = vec!["a".into()];
    let plan = decide(&snap, T0);
    assert_eq!(deletes(&plan, keys::INSTANCES), ["web-1"]);
    assert_eq!(deletes(&plan, keys::STATUS), ["web-1"]);
    assert_eq!(plan.forgotten, ["web-1"]);
    let made = created(&plan);
    assert_eq!(made.len(), 1);
    assert_eq!(made[0].node, "b");
    assert!(events(&plan, EventKind::InstanceStopped)[0].contains("lost with node a"));
    assert!(events(&plan, EventKind::NodeDown)[0].contains("silent for 3s"));
}

#[test]
fn a_node_silent_since_a_server_restart_is_suspect_not_down_until_the_timeout() {
    let web = spec("web", 1);
    let mut snap = snapshot(&["a"])
        .with_service(&web)
        .with_instance(instance("web-1", &web, "a", 10), true);
    // The server just started and has not heard from `a` yet.
    snap.states = NodeStates::new(HashMap::new(), Duration::from_secs(1), DOWN_AFTER);
    let plan = decide(&snap, T0);
    assert!(
        deletes(&plan, keys::INSTANCES).is_empty(),
        "nothing replaced yet"
    );
    assert!(created(&plan).is_empty());
}

#[test]
fn a_status_from_an_older_generation_does_not_count() {
    // The instance was re-created (generation 12); the node still reports generation 10 as
    // ready. The rollout must not take it for ready and stop the old version.
    let old = spec("web", 1);
    let new = next_version(&old);
    let old_instance = instance("web-old", &old, "a", 10);
    let fresh = instance("web-new", &new, "b", 12);
    let mut stale = status(&fresh, true);
    stale.generation = 10;
    let mut snap = snapshot(&["a", "b"])
        .with_service(&new)
        .with_instance(old_instance, true);
    snap.assignments.push(fresh);
    snap.statuses.insert("web-new".into(), stale);
    let plan = decide(&snap, T0);
    assert!(stopped(&plan).is_empty(), "the old version keeps serving");
}

#[test]
fn orphan_statuses_are_forgotten() {
    let mut snap = snapshot(&["a"]);
    let ghost = instance("ghost-1", &spec("ghost", 1), "a", 3);
    snap.statuses
        .insert("ghost-1".into(), status(&ghost, false));
    let plan = decide(&snap, T0);
    assert_eq!(deletes(&plan, keys::STATUS), ["ghost-1"]);
    assert_eq!(plan.forgotten, ["ghost-1"]);
}

// === rollouts ===

#[test]
fn a_new_version_starts_before_the_old_one_stops() {
    let old = spec("web", 1);
    let new = next_version(&old);
    let snap = snapshot(&["a", "b"])
        .with_service(&new)
        .with_instance(instance("web-old", &old, "a", 10), true);
    let plan = decide(&snap, T0);
    let made = created(&plan);
    assert_eq!(made.len(), 1);
    assert_eq!(made[0].version, new.version());
    assert!(stopped(&plan).is_empty(), "start before stop");
}

#[test]
fn the_old_version_stops_once_its_replacement_is_ready() {
    let old = spec("web", 1);
    let new = next_version(&old);
    let snap = snapshot(&["a", "b"])
        .with_service(&new)
        .with_instance(instance("web-old", &old, "a", 10), true)
        .with_instance(instance("web-new", &new, "b", 12), true);
    let plan = decide(&snap, T0);
    assert!(created(&plan).is_empty());
    assert_eq!(stopped(&plan), ["web-old"]);
    assert!(events(&plan, EventKind::InstanceStopping)[0].contains("replaced by a newer version"));
}

#[test]
fn a_removed_service_stops_every_instance() {
    let web = spec("web", 2);
    let snap = snapshot(&["a"])
        .with_instance(instance("web-1", &web, "a", 10), true)
        .with_instance(instance("web-2", &web, "a", 11), true);
    let mut ids = stopped(&decide(&snap, T0));
    ids.sort();
    assert_eq!(ids, ["web-1", "web-2"]);
}

// === moves and node drains ===

#[test]
fn a_move_places_its_replacement_on_the_node_asked_for_and_records_it() {
    let web = spec("web", 1);
    let snap = snapshot(&["a", "b", "c"])
        .with_service(&web)
        .with_instance(instance("web-1", &web, "a", 10), true)
        .with_migration("web-1", migration("web", "a", Some("c")));
    let plan = decide(&snap, T0);
    let made = created(&plan);
    assert_eq!(made.len(), 1);
    assert_eq!(made[0].node, "c");
    assert_eq!(
        puts(&plan, keys::MIGRATIONS),
        ["web-1"],
        "replacement noted"
    );
    assert!(
        stopped(&plan).is_empty(),
        "the instance serves until the replacement is ready"
    );
}

#[test]
fn a_move_to_a_node_that_went_down_is_called_off() {
    let web = spec("web", 1);
    let snap = snapshot(&["a", "b"])
        .with_service(&web)
        .with_instance(instance("web-1", &web, "a", 10), true)
        .with_migration("web-1", migration("web", "a", Some("b")))
        .with_silence("b", Duration::from_secs(10));
    let plan = decide(&snap, T0);
    assert_eq!(deletes(&plan, keys::MIGRATIONS), ["web-1"]);
    assert!(created(&plan).is_empty());
    assert!(events(&plan, EventKind::Warning)[0].contains("node b is down"));
}

#[test]
fn a_node_drain_moves_one_instance_at_a_time() {
    let web = spec("web", 2);
    let snap = snapshot(&["a", "b"])
        .with_service(&web)
        .with_instance(instance("web-1", &web, "a", 10), true)
        .with_instance(instance("web-2", &web, "a", 11), true)
        .with_node_drain("a", T0 + 3_600_000);
    let plan = decide(&snap, T0);
    assert_eq!(puts(&plan, keys::MIGRATIONS), ["web-1"]);
    assert_eq!(events(&plan, EventKind::InstanceMigrating).len(), 1);
    assert_eq!(plan.recheck, Recheck::EverySecond);
}

#[test]
fn past_a_node_drains_deadline_what_is_left_is_stopped() {
    let web = spec("web", 2);
    let snap = snapshot(&["a", "b"])
        .with_service(&web)
        .with_instance(instance("web-1", &web, "a", 10), true)
        .with_instance(instance("web-2", &web, "a", 11), true)
        .with_node_drain("a", T0 - 1);
    let mut ids = stopped(&decide(&snap, T0));
    ids.sort();
    assert_eq!(ids, ["web-1", "web-2"]);
}

#[test]
fn an_empty_drained_node_is_marked_done_once() {
    let snap = snapshot(&["a"]).with_node_drain("a", T0 + 60_000);
    let plan = decide(&snap, T0);
    assert_eq!(puts(&plan, keys::NODE_DRAINS), ["a"]);
    assert!(events(&plan, EventKind::NodeDrained)[0].contains("node a is drained"));
    let done = plan.ops.iter().find_map(|op| match op {
        Op::Put { value, .. } => serde_json::from_slice::<NodeDrain>(value).ok(),
        _ => None,
    });
    assert_eq!(done.and_then(|d| d.done_ms), Some(T0));
}

// === jobs: tasks planned in the same pass ===

mod jobs {
    use super::*;
    use crate::controllers::instances::decide_with_jobs;
    use crate::controllers::jobs::TaskBook;
    use ebb_core::{JobRecord, JobSpec, TaskRecord, TaskState};

    fn with_job(mut snapshot: Snapshot, spec: JobSpec) -> Snapshot {
        let record = JobRecord {
            spec,
            run: 1,
            submitted_ms: T0 - 1_000,
            cancelled_ms: None,
        };
        snapshot.jobs.jobs.insert(
            record.spec.name.clone(),
            Versioned {
                value: record,
                mod_revision: 50,
                create_revision: 50,
            },
        );
        snapshot
    }

    fn placed_tasks(plan: &Plan) -> Vec<Assignment> {
        plan.ops
            .iter()
            .filter_map(|op| match op {
                Op::Put {
                    key,
                    value,
                    expect: Expect::Absent,
                } if key.starts_with(keys::INSTANCES) => {
                    serde_json::from_slice::<Assignment>(value).ok()
                }
                _ => None,
            })
            .filter(|a| a.task.is_some())
            .collect()
    }

    fn records(plan: &Plan) -> Vec<TaskRecord> {
        plan.ops
            .iter()
            .filter_map(|op| match op {
                Op::Put { key, value, .. } if key.starts_with(keys::TASKS) => {
                    serde_json::from_slice(value).ok()
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn waiting_tasks_fill_what_the_services_leave_and_no_more() {
        // One node of 4 CPUs; a service takes 3, tasks of 0.5 fit twice.
        let mut web = spec("web", 1);
        web.resources.cpu_millis = Some(3000);
        let mut job = JobSpec::new("crunch", vec!["true".into()], 10);
        job.resources.cpu_millis = Some(500);
        let snapshot = with_job(snapshot(&["n1"]).with_service(&web), job);
        let plan = decide_with_jobs(&snapshot, &TaskBook::default(), T0);
        let tasks = placed_tasks(&plan);
        assert_eq!(tasks.len(), 2, "{tasks:?}");
        let indices: Vec<u32> = tasks
            .iter()
            .map(|a| a.task.as_ref().unwrap().index)
            .collect();
        assert_eq!(indices, [0, 1], "lowest indices first");
        assert_eq!(tasks[0].spec.env["EBB_TASK_INDEX"], "0");
    }

    #[test]
    fn a_failed_attempt_is_retried_after_its_back_off_and_a_zero_exit_completes() {
        let job = JobSpec::new("crunch", vec!["true".into()], 2);
        let mut snapshot = with_job(snapshot(&["n1"]), job.clone());
        for (i, code) in [(0u32, 0), (1, 3)] {
            let mut a = instance(
                &format!("crunch-{i}"),
                &job.task_spec(i, 1),
                "n1",
                60 + u64::from(i),
            );
            a.value.service = "crunch".into();
            a.value.task = Some(ebb_core::TaskRef {
                job: "crunch".into(),
                run: 1,
                index: i,
                attempt: 1,
                timeout_ms: None,
                queued_ms: T0 - 1_000,
                preempted_by: None,
            });
            let mut st = status(&a, false);
            st.state = InstanceState::Exited;
            st.exit_code = Some(code);
            st.last_exit = Some(format!("exit code {code}"));
            snapshot.statuses.insert(a.value.id.clone(), st);
            snapshot.assignments.push(a);
        }
        let plan = decide_with_jobs(&snapshot, &TaskBook::default(), T0);
        let mut recs = records(&plan);
        recs.sort_by_key(|r| r.index);
        assert_eq!(recs[0].state, TaskState::Completed);
        assert_eq!(recs[1].state, TaskState::Retrying);
        assert_eq!(recs[1].failures, 1);
        assert_eq!(recs[1].retry_at_ms, Some(T0 + 1_000), "1 s back-off first");
        assert!(plan
            .events
            .iter()
            .any(|e| e.kind == EventKind::TaskRetrying));
        let deleted = plan
            .ops
            .iter()
            .filter(|op| matches!(op, Op::Delete { key, .. } if key.starts_with(keys::INSTANCES)))
            .count();
        assert_eq!(deleted, 2, "ended attempts are forgotten");
        assert!(
            placed_tasks(&plan).is_empty(),
            "the retry waits for its back-off"
        );
        // The records and progress hold only if the job is still the one the pass read (not
        // removed or resubmitted meanwhile).
        let checks: Vec<&Op> = plan
            .ops
            .iter()
            .filter(|op| matches!(op, Op::Check { .. }))
            .collect();
        assert!(
            matches!(checks.as_slice(), [Op::Check { key, expect: Expect::ModRevision(50) }] if key == &keys::job("crunch")),
            "{checks:?}"
        );
    }

    #[test]
    fn a_cancelled_job_stops_its_tasks_and_starts_none() {
        let job = JobSpec::new("crunch", vec!["true".into()], 5);
        let mut snapshot = with_job(snapshot(&["n1"]), job.clone());
        let mut a = instance("crunch-0", &job.task_spec(0, 1), "n1", 60);
        a.value.task = Some(ebb_core::TaskRef {
            job: "crunch".into(),
            run: 1,
            index: 0,
            attempt: 1,
            timeout_ms: None,
            queued_ms: T0,
            preempted_by: None,
        });
        snapshot = snapshot.with_instance(a, false);
        snapshot
            .jobs
            .jobs
            .get_mut("crunch")
            .unwrap()
            .value
            .cancelled_ms = Some(T0);
        let plan = decide_with_jobs(&snapshot, &TaskBook::default(), T0);
        assert!(placed_tasks(&plan).is_empty());
        let stopped = plan.ops.iter().any(|op| match op {
            Op::Put { key, value, .. } if key == "instances/crunch-0" => {
                serde_json::from_slice::<Assignment>(value).unwrap().desired == DesiredState::Stop
            }
            _ => false,
        });
        assert!(stopped, "{:?}", plan.ops);
        assert!(plan
            .events
            .iter()
            .any(|e| e.kind == EventKind::JobCancelled));
    }

    // --- preemption ---

    /// A job of `tasks` tasks of 1 cpu each at `priority`.
    fn cpu_job(name: &str, tasks: u32, priority: u8) -> JobSpec {
        let mut job = JobSpec::new(name, vec!["work".into()], tasks);
        job.resources.cpu_millis = Some(1000);
        job.priority = priority;
        job
    }

    /// Task `index` of `job` running on `node` since `created_ms`, stored at revision `rev`.
    fn running_task(
        job: &JobSpec,
        index: u32,
        node: &str,
        rev: u64,
        created_ms: u64,
    ) -> Versioned<Assignment> {
        let mut a = instance(
            &format!("{}-{index}", job.name),
            &job.task_spec(index, 1),
            node,
            rev,
        );
        a.value.created_ms = created_ms;
        a.value.task = Some(ebb_core::TaskRef {
            job: job.name.clone(),
            run: 1,
            index,
            attempt: 1,
            timeout_ms: None,
            queued_ms: created_ms,
            preempted_by: None,
        });
        a
    }

    /// The node's 4 cpus full of `job`'s tasks 0..4, started `age` ago (one second apart,
    /// task 3 the youngest).
    fn full_of(mut snapshot: Snapshot, job: &JobSpec, node: &str, age: u64) -> Snapshot {
        for i in 0..4u32 {
            let created = T0 - age + u64::from(i) * 1_000;
            let a = running_task(job, i, node, 60 + u64::from(i), created);
            snapshot = snapshot.with_instance(a, true);
        }
        snapshot
    }

    /// Instances asked to stop in `plan`, with who preempted them.
    fn preempted(plan: &Plan) -> Vec<(String, Option<String>)> {
        plan.ops
            .iter()
            .filter_map(|op| match op {
                Op::Put { key, value, .. } if key.starts_with(keys::INSTANCES) => {
                    serde_json::from_slice::<Assignment>(value).ok()
                }
                _ => None,
            })
            .filter(|a| a.desired == DesiredState::Stop)
            .map(|a| (a.id, a.task.and_then(|t| t.preempted_by)))
            .collect()
    }

    #[test]
    fn a_service_that_fits_nowhere_preempts_the_youngest_lower_priority_task() {
        let batch = cpu_job("batch", 4, 10);
        let mut web = spec("web", 1);
        web.resources.cpu_millis = Some(1000);
        let snap = with_job(
            full_of(snapshot(&["n1"]), &batch, "n1", 120_000),
            batch.clone(),
        )
        .with_service(&web);
        let plan = decide_with_jobs(&snap, &TaskBook::default(), T0);
        assert_eq!(
            preempted(&plan),
            [("batch-3".to_string(), Some("service web".to_string()))],
            "one victim, the youngest"
        );
        let event = &events(&plan, EventKind::TaskPreempted)[0];
        assert!(
            event.contains("task 3 of job batch (priority 10")
                && event.contains("preempted by service web (priority 100)"),
            "{event}"
        );
        assert!(
            plan.pending["web"].contains("preempting 1 task(s)"),
            "{:?}",
            plan.pending
        );
        assert!(
            created(&plan).is_empty(),
            "the service waits for its victim to stop"
        );
    }

    #[test]
    fn the_room_is_taken_once_the_victim_ended_and_the_victim_is_queued_again() {
        let batch = cpu_job("batch", 4, 10);
        let mut web = spec("web", 1);
        web.resources.cpu_millis = Some(1000);
        let mut snap =
            with_job(full_of(snapshot(&["n1"]), &batch, "n1", 120_000), batch).with_service(&web);
        let victim = snap
            .assignments
            .iter_mut()
            .find(|a| a.value.id == "batch-3")
            .unwrap();
        victim.value.desired = DesiredState::Stop;
        victim.value.task.as_mut().unwrap().preempted_by = Some("service web".into());
        // Still stopping: nothing more is preempted, nothing placed.
        let plan = decide_with_jobs(&snap, &TaskBook::default(), T0);
        assert!(preempted(&plan).is_empty(), "{:?}", preempted(&plan));
        assert!(created(&plan).is_empty());
        // Stopped: the service takes the room, the task waits again, not failed.
        snap.statuses.get_mut("batch-3").unwrap().state = InstanceState::Stopped;
        let plan = decide_with_jobs(&snap, &TaskBook::default(), T0);
        assert_eq!(created(&plan).len(), 1, "web placed");
        let record = records(&plan).into_iter().find(|r| r.index == 3).unwrap();
        assert_eq!(record.state, TaskState::Queued);
        assert_eq!(record.failures, 0);
        assert_eq!(
            record.last_exit.as_deref(),
            Some("preempted by service web; queued again")
        );
        assert!(placed_tasks(&plan).is_empty(), "no room left for the task");
    }

    #[test]
    fn min_runtime_protects_young_tasks_and_equal_priority_never_preempts() {
        let batch = cpu_job("batch", 4, 10);
        let mut web = spec("web", 1);
        web.resources.cpu_millis = Some(1000);
        // Started 10 s ago: inside the default 30 s min_runtime.
        let snap = with_job(
            full_of(snapshot(&["n1"]), &batch, "n1", 10_000),
            batch.clone(),
        )
        .with_service(&web);
        let plan = decide_with_jobs(&snap, &TaskBook::default(), T0);
        assert!(preempted(&plan).is_empty());
        assert_eq!(
            plan.recheck,
            Recheck::EverySecond,
            "asked again as time passes"
        );
        // A job of the same priority waits, whatever the age.
        let snap = with_job(
            with_job(full_of(snapshot(&["n1"]), &batch, "n1", 120_000), batch),
            cpu_job("peer", 1, 10),
        );
        let plan = decide_with_jobs(&snap, &TaskBook::default(), T0);
        assert!(preempted(&plan).is_empty());
    }

    #[test]
    fn a_higher_priority_job_shrinks_an_elastic_job_toward_its_min_first() {
        let mut elastic = cpu_job("elastic", 8, 30);
        elastic.parallelism = ebb_core::Parallelism { min: 1, max: 8 };
        let mut fixed = cpu_job("fixed", 4, 10);
        fixed.parallelism = ebb_core::Parallelism::fixed(4);
        // n1: four tasks of the elastic job (3 spare); n2: four of the fixed job, which needs
        // all four, at a lower priority.
        let snap = full_of(
            full_of(snapshot(&["n1", "n2"]), &elastic, "n1", 120_000),
            &fixed,
            "n2",
            120_000,
        );
        let mut urgent = cpu_job("urgent", 2, 90);
        urgent.parallelism = ebb_core::Parallelism::fixed(2);
        let snap = with_job(with_job(with_job(snap, elastic), fixed), urgent);
        let plan = decide_with_jobs(&snap, &TaskBook::default(), T0);
        let mut victims: Vec<String> = preempted(&plan).into_iter().map(|(id, _)| id).collect();
        victims.sort();
        // The elastic job, above its min, does not preempt to grow; the urgent one does.
        assert_eq!(
            victims,
            ["elastic-2", "elastic-3"],
            "the spare tasks go first"
        );
        assert!(preempted(&plan)
            .iter()
            .all(|(_, by)| by.as_deref() == Some("job urgent")));
    }

    #[test]
    fn room_half_made_is_held_from_lower_priority_work() {
        // A two-CPU task preempted batch-2 and batch-3; batch-3 has ended, batch-2 still
        // stops. The CPU batch-3 freed is the high task's: a waiting task of lower priority
        // does not take it, and nothing more is preempted.
        let batch = cpu_job("batch", 4, 10);
        let mut high = cpu_job("high", 1, 90);
        high.resources.cpu_millis = Some(2000);
        let mut snap = with_job(
            with_job(
                with_job(full_of(snapshot(&["n1"]), &batch, "n1", 120_000), batch),
                high,
            ),
            cpu_job("other", 1, 5),
        );
        for a in snap.assignments.iter_mut() {
            if a.value.id == "batch-2" || a.value.id == "batch-3" {
                a.value.desired = DesiredState::Stop;
                a.value.task.as_mut().unwrap().preempted_by = Some("job high".into());
            }
        }
        snap.statuses.get_mut("batch-3").unwrap().state = InstanceState::Stopped;
        let plan = decide_with_jobs(&snap, &TaskBook::default(), T0);
        assert!(placed_tasks(&plan).is_empty(), "{:?}", placed_tasks(&plan));
        assert!(preempted(&plan).is_empty(), "{:?}", preempted(&plan));
        // Once batch-2 has ended too, the high task takes the room.
        snap.statuses.get_mut("batch-2").unwrap().state = InstanceState::Stopped;
        let plan = decide_with_jobs(&snap, &TaskBook::default(), T0);
        let placed: Vec<String> = placed_tasks(&plan).into_iter().map(|a| a.service).collect();
        assert_eq!(placed, ["high"]);
    }

    #[test]
    fn a_drained_nodes_tasks_run_until_the_deadline_and_keep_the_drain_open() {
        let batch = cpu_job("batch", 1, 50);
        let task = running_task(&batch, 0, "n1", 60, T0 - 120_000);
        let base = with_job(snapshot(&["n1", "n2"]), batch).with_instance(task, true);
        // Before the deadline: the task runs on, and the drain is not done.
        let plan = decide_with_jobs(
            &base.clone().with_node_drain("n1", T0 + 60_000),
            &TaskBook::default(),
            T0,
        );
        assert!(preempted(&plan).is_empty());
        assert!(
            puts(&plan, keys::NODE_DRAINS).is_empty(),
            "not done while a task runs"
        );
        // Past it: stopped, to run again elsewhere, not failed.
        let plan = decide_with_jobs(
            &base.with_node_drain("n1", T0 - 1),
            &TaskBook::default(),
            T0,
        );
        assert_eq!(
            preempted(&plan),
            [(
                "batch-0".to_string(),
                Some("the drain of node n1".to_string())
            )]
        );
    }

    #[test]
    fn a_replacing_firing_writes_one_run_for_the_latest_firing_and_starts_nothing_old() {
        let mut job = cpu_job("swap", 2, 50);
        job.schedule = Some("*/2 * * * * *".into());
        job.overlap = ebb_core::schedule::Overlap::Replace;
        // Run 1 fired 5 s ago (its task runs); firings at T0 - 4 s, T0 - 2 s and T0 passed.
        let task = running_task(&job, 0, "n1", 60, T0 - 5_000);
        let mut snap = with_job(snapshot(&["n1"]), job).with_instance(task, true);
        snap.jobs.jobs.get_mut("swap").unwrap().value.submitted_ms = T0 - 5_000;
        let plan = decide_with_jobs(&snap, &TaskBook::default(), T0);
        let records: Vec<JobRecord> = plan
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::Put { key, value, .. } if key == "jobs/swap" => {
                    serde_json::from_slice(value).ok()
                }
                _ => None,
            })
            .collect();
        assert_eq!(records.len(), 1, "{:?}", plan.ops);
        assert_eq!((records[0].run, records[0].submitted_ms), (2, T0));
        assert!(
            placed_tasks(&plan).is_empty(),
            "the replaced run starts nothing more"
        );
        assert!(events(&plan, EventKind::JobCancelled)[0].contains("run 2 replaces run 1"));
    }
}
