//! The service controller: level-triggered reconciliation of services against their instances
//! (DESIGN.md principle 1). It wakes on every store change and once a second, plans each
//! service with [`rollout::plan`], and writes the resulting assignments.

use crate::keys::{self, Versioned};
use crate::rollout::{self, Action, Observed};
use crate::{now_ms, Server};
use ebb_core::{Assignment, DesiredState, Event, EventKind, InstanceState, ServiceSpec};
use ebb_store::{Expect, StoreError};
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Reconcile at least this often even without store changes (nodes come and go in memory).
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(1);

/// Runs the controller until `shutdown` turns true.
pub async fn run(server: Server, mut shutdown: watch::Receiver<bool>) {
    let mut changes = server.store().subscribe();
    loop {
        if let Err(e) = reconcile(&server) {
            tracing::warn!(error = %e, "reconcile failed; will retry");
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep(RESYNC_INTERVAL) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// One pass over every service and every instance.
pub fn reconcile(server: &Server) -> Result<(), StoreError> {
    let services: BTreeMap<String, ServiceSpec> = keys::services(server.store())?
        .into_iter()
        .map(|v| (v.value.name.clone(), v.value))
        .collect();
    let (assignments, _) = keys::assignments(server.store())?;
    let mut by_service: BTreeMap<String, Vec<Versioned<Assignment>>> = BTreeMap::new();
    for a in assignments {
        by_service
            .entry(a.value.service.clone())
            .or_default()
            .push(a);
    }
    let names: BTreeSet<String> = services.keys().chain(by_service.keys()).cloned().collect();
    let statuses = server.statuses();
    let mut placer = Placer::new(server, &by_service);
    for name in names {
        let instances = by_service.remove(&name).unwrap_or_default();
        reconcile_service(
            server,
            services.get(&name),
            &instances,
            &statuses,
            &mut placer,
        )?;
    }
    Ok(())
}

fn reconcile_service(
    server: &Server,
    spec: Option<&ServiceSpec>,
    instances: &[Versioned<Assignment>],
    statuses: &HashMap<String, ebb_core::InstanceStatus>,
    placer: &mut Placer,
) -> Result<(), StoreError> {
    let observed: Vec<Observed> = instances
        .iter()
        .map(|a| observe(&a.value, statuses))
        .collect();
    let version = spec.map(ServiceSpec::version).unwrap_or_default();
    for action in rollout::plan(spec.map(|s| s.instances), &version, &observed) {
        match action {
            Action::Start { count } => {
                if let Some(spec) = spec {
                    for _ in 0..count {
                        create_instance(server, spec, &version, placer)?;
                    }
                }
            }
            Action::Stop { id, reason } => {
                if let Some(a) = instances.iter().find(|a| a.value.id == id) {
                    request_stop(server, a, reason.as_str())?;
                }
            }
            Action::Forget { id } => forget(server, &id)?,
        }
    }
    Ok(())
}

/// What the planner needs of an assignment, from its last reported status.
fn observe(a: &Assignment, statuses: &HashMap<String, ebb_core::InstanceStatus>) -> Observed {
    let status = statuses.get(&a.id).filter(|s| s.generation == a.generation);
    Observed {
        id: a.id.clone(),
        version: a.version.clone(),
        desired: a.desired,
        ready: status.is_some_and(|s| s.ready),
        // Never started anywhere, or reported stopped: nothing is left to wait for.
        stopped: status.is_none_or(|s| s.state == InstanceState::Stopped),
        created_ms: a.created_ms,
    }
}

fn create_instance(
    server: &Server,
    spec: &ServiceSpec,
    version: &str,
    placer: &mut Placer,
) -> Result<(), StoreError> {
    let Some(node) = placer.pick() else {
        tracing::debug!(
            service = spec.name,
            "no live node to place an instance on yet"
        );
        return Ok(());
    };
    let id = format!("{}-{:08x}", spec.name, rand::thread_rng().gen::<u32>());
    let assignment = Assignment {
        id: id.clone(),
        service: spec.name.clone(),
        node: node.clone(),
        generation: 0, // filled from the key's create revision when read
        version: version.to_string(),
        spec: spec.clone(),
        desired: DesiredState::Run,
        created_ms: now_ms(),
    };
    server.store().put(
        &keys::instance(&id),
        &keys::encode(&assignment),
        Expect::Absent,
    )?;
    server.record(
        Event::new(
            now_ms(),
            EventKind::InstanceCreated,
            format!("instance {id} of version {version} placed on node {node}"),
        )
        .service(&spec.name)
        .instance(&id)
        .node(&node),
    );
    Ok(())
}

fn request_stop(
    server: &Server,
    a: &Versioned<Assignment>,
    reason: &str,
) -> Result<(), StoreError> {
    let mut stopped = a.value.clone();
    stopped.desired = DesiredState::Stop;
    match server.store().put(
        &keys::instance(&stopped.id),
        &keys::encode(&stopped),
        Expect::ModRevision(a.mod_revision),
    ) {
        Ok(_) => {}
        // Someone changed it since we read it: the next pass sees the new state.
        Err(StoreError::Conflict { .. }) => return Ok(()),
        Err(e) => return Err(e),
    }
    server.record(
        Event::new(
            now_ms(),
            EventKind::InstanceStopping,
            format!("stopping instance {}: {reason}", stopped.id),
        )
        .service(&stopped.service)
        .instance(&stopped.id)
        .node(&stopped.node),
    );
    Ok(())
}

fn forget(server: &Server, id: &str) -> Result<(), StoreError> {
    server.store().txn(vec![
        ebb_store::Op::Delete {
            key: keys::instance(id),
            expect: Expect::Any,
        },
        ebb_store::Op::Delete {
            key: keys::status(id),
            expect: Expect::Any,
        },
    ])?;
    server.forget_status(id);
    Ok(())
}

/// Chooses nodes for new instances: the live node with the fewest running instances.
/// (A scheduler with reservations replaces this when ebb spans many nodes.)
struct Placer {
    load: BTreeMap<String, usize>,
}

impl Placer {
    fn new(server: &Server, by_service: &BTreeMap<String, Vec<Versioned<Assignment>>>) -> Placer {
        let mut load: BTreeMap<String, usize> = server
            .nodes()
            .live(Instant::now())
            .into_iter()
            .map(|n| (n, 0))
            .collect();
        for a in by_service.values().flatten() {
            if a.value.desired == DesiredState::Run {
                if let Some(n) = load.get_mut(&a.value.node) {
                    *n += 1;
                }
            }
        }
        Placer { load }
    }

    fn pick(&mut self) -> Option<String> {
        let (node, n) = self.load.iter_mut().min_by_key(|(_, n)| **n)?;
        *n += 1;
        Some(node.clone())
    }
}
