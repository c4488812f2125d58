//! The service controller: level-triggered reconciliation of services against their instances
//! (ARCHITECTURE.md, principle 1). It wakes on every store change and once a second.
//!
//! A pass is three steps: [`Snapshot::read`] takes what the store, the node tracker and the
//! router know at one instant; [`decide`] (pure) plans every service with [`rollout::plan`],
//! drains, moves and lost nodes into a [`Plan`]; [`apply`] writes the plan in one transaction
//! and records its events. Only the first and last touch the server.

mod decide;
pub mod dry_run;
pub(crate) mod moves;
pub(crate) mod placer;
mod plan;
mod reports;
pub mod rollout;
mod snapshot;
#[cfg(test)]
mod tests;

pub use decide::{current_status, decide, decide_with_jobs};
pub use placer::Placer;
pub use plan::Plan;
pub use reports::{Reports, MOVES_KEPT};
pub use snapshot::{RouterView, Snapshot};

use crate::controllers::jobs::{RunId, TaskBook};
use crate::{now_ms, run_loop, Server};
use ebb_core::{Event, EventKind};
use ebb_store::StoreError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The label every node carries with its own name (like Kubernetes' `kubernetes.io/hostname`):
/// `constraints = ["node.name=web-3"]` pins a service, and moves use it to leave a node.
pub const NODE_NAME_LABEL: &str = "node.name";

/// Reconcile at least this often even without store changes (nodes come and go in memory).
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(1);
/// While a drained instance still has requests in flight, look again this soon: its stop (and
/// the next move of a node drain) waits on the last request, not on the next resync
/// (`bench/drain.sh` saw moves take 1 s instead of ~50 ms when a request was in flight).
pub const DRAIN_RECHECK: Duration = Duration::from_millis(50);

/// When the next pass is needed, besides store changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Recheck {
    /// Nothing waits on time: skip passes until the store or the live nodes change.
    #[default]
    OnChange,
    /// Deadlines are running (node drains): pass every [`RESYNC_INTERVAL`].
    EverySecond,
    /// Drained instances wait for their last request, or a write conflicted: pass again after
    /// [`DRAIN_RECHECK`].
    Soon,
}

/// Runs the controller until `stop` is cancelled. Passes run on a blocking thread: they write
/// to disk, and the API's async threads must not wait on that.
pub async fn run(server: Server, stop: CancellationToken) {
    let mut changes = server.store().subscribe();
    let mut statuses_changed = server.statuses_cache().subscribe();
    // This term's index of task records: read on the first pass, then kept by the passes.
    let book: Arc<Mutex<Option<TaskBook>>> = Arc::default();
    let mut last: Option<(u64, u64, Vec<String>)> = None;
    loop {
        // A pass depends on the store, on the statuses in memory and on which nodes are live;
        // if none changed since the last good pass, it would decide nothing new (an idle server
        // then costs nothing here). The statuses' version counts because a status is written to
        // the store before it is in memory: a pass woken by that write may still read the old
        // one, and must run again once the new one is there (CI saw a task's exit go unrecorded
        // for minutes).
        let statuses = server.statuses_cache().version();
        let seen = server
            .store()
            .revision()
            .ok()
            .map(|r| (r, statuses, server.nodes().live(Instant::now())));
        let mut recheck = RESYNC_INTERVAL;
        if seen.is_none() || seen != last {
            let (pass, book) = (server.clone(), book.clone());
            match run_loop::blocking_pass("reconcile", move || reconcile(&pass, &book)).await {
                None => {}
                Some(Recheck::OnChange) => last = seen,
                Some(Recheck::EverySecond) => last = None,
                Some(Recheck::Soon) => {
                    last = None;
                    recheck = DRAIN_RECHECK;
                }
            }
        }
        let wake = async {
            tokio::select! {
                _ = changes.changed() => {}
                _ = statuses_changed.changed() => {}
                _ = tokio::time::sleep(recheck) => {}
            }
        };
        if run_loop::next(&stop, wake).await.is_none() {
            return;
        }
    }
}

/// One pass: read a snapshot, decide, apply. Returns when the next pass is needed even if
/// nothing changes: drains (of instances or nodes) end on time and in-flight counts.
pub fn reconcile(server: &Server, book: &Mutex<Option<TaskBook>>) -> Result<Recheck, StoreError> {
    let started = Instant::now();
    let snapshot = Snapshot::read(server, started)?;
    let mut book = book
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut loaded = match book.take() {
        Some(b) => b,
        None => TaskBook::load(
            server.store(),
            &snapshot.jobs.jobs,
            &snapshot.jobs.progress,
            &snapshot.assignments,
        )?,
    };
    let runs: HashMap<String, RunId> = snapshot
        .jobs
        .jobs
        .iter()
        .map(|(name, j)| (name.clone(), RunId::of(&j.value)))
        .collect();
    loaded.retain_runs(&runs);
    let mut plan = decide_with_jobs(&snapshot, &loaded, now_ms());
    let changes = std::mem::take(&mut plan.book);
    let (recheck, landed) = apply(server, plan)?;
    // The book follows the store: changed only by writes that landed.
    if landed {
        loaded.apply(changes, &runs);
    }
    *book = Some(loaded);
    server.telemetry().pass(started.elapsed());
    Ok(recheck)
}

/// Writes a plan in one transaction (true: it landed), then tells the server what it keeps in memory (statuses
/// forgotten, moves ended, pending reasons) and records the events. A conflict means someone
/// wrote meanwhile: nothing is applied, and the next pass, soon, plans again.
pub fn apply(server: &Server, mut plan: Plan) -> Result<(Recheck, bool), StoreError> {
    if !plan.ops.is_empty() {
        match server.store().txn(std::mem::take(&mut plan.ops)) {
            Err(StoreError::Conflict { .. }) => return Ok((Recheck::Soon, false)),
            other => other?,
        };
    }
    for id in &plan.forgotten {
        server.statuses_cache().forget(id);
    }
    let reports = server.instance_reports();
    reports.note_moved(std::mem::take(&mut plan.moved));
    for (service, why) in reports.note_pending(std::mem::take(&mut plan.pending)) {
        let message = format!("an instance of {service} is pending: {why}");
        let event = Event::new(plan.now_ms, EventKind::InstancePending, message);
        plan.events.push(event.service(&service));
    }
    server.record_all(plan.events);
    for (queue, ms) in &plan.queue_waits {
        server
            .telemetry()
            .queue_wait(queue, std::time::Duration::from_millis(*ms));
    }
    Ok((plan.recheck, true))
}
