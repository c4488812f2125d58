//! Preemption in a pass: service instances and tasks that fit on no node make room by stopping
//! running tasks of lower priority ([`ebb_scheduler::preempt`] chooses them: elastic jobs'
//! spare tasks first, the fewest and cheapest, never one younger than its job's
//! `min_runtime`). A victim stops as any instance does (its stop signal, then its grace), is
//! queued again and not counted as a failure; each is a `task.preempted` event naming who
//! preempted whom and why. The room is taken by the next pass that finds the victims ended:
//! the [`Placer`] holds a stopping task's reservation until then.

use super::decide::{attempt_end, JobView, MAX_TASKS_PER_NODE};
use crate::controllers::instances::placer::{request_of, reservation};
use crate::controllers::instances::{Placer, Plan, Recheck, Snapshot};
use crate::state::keys::{self, Versioned};
use ebb_core::api::NodeState;
use ebb_core::quantity::format_duration;
use ebb_core::{Assignment, DesiredState, Event, EventKind, ServiceSpec};
use ebb_scheduler::preempt::{Ask, JobSlack, Preemption, Room, Running};
use ebb_store::{Expect, Op};

/// Most rooms one pass looks for: each costs a scan of the nodes' tasks, and what is left
/// waits for the next pass (which the victims' ends bring at once).
pub const MAX_ASKS_PER_PASS: usize = 256;

/// A job whose next task fitted on no node in this pass.
#[derive(Debug, Clone, Copy)]
pub(super) struct Blocked {
    /// Its index among the pass's job views.
    pub(super) view: usize,
    /// How many more tasks it needs to reach its `min` (within what it may start now): a job
    /// preempts only for those, and grows above its `min` on free capacity alone.
    pub(super) wanted: u32,
}

/// Who wants room, in the order they ask: higher priority first, services before tasks.
enum Asker<'a> {
    Service { spec: &'a ServiceSpec, count: u32 },
    Job { view: usize, wanted: u32 },
}

/// Makes room for the pass's unplaced service instances and blocked jobs, highest priority
/// first, within the pass's remaining store operations.
pub(super) fn preempt(
    snapshot: &Snapshot,
    views: &[JobView],
    blocked: &[Blocked],
    placer: &mut Placer,
    plan: &mut Plan,
    budget: &mut usize,
) {
    let askers = askers(snapshot, views, blocked, plan);
    if askers.is_empty() || *budget == 0 {
        return;
    }
    let (mut preemption, attempts) = picture(snapshot, views, placer, plan.now_ms);
    let mut asks = 0;
    for (_, asker) in &askers {
        let (priority, count, spec, is_task, who) = match asker {
            Asker::Service { spec, count } => (
                spec.priority(),
                *count,
                (*spec).clone(),
                false,
                format!("service {}", spec.name),
            ),
            Asker::Job { view, wanted } => {
                let job = &views[*view].record.spec;
                let who = format!("job {}", views[*view].name);
                (job.priority, *wanted, job.task_spec(0, 1), true, who)
            }
        };
        let request = request_of(&spec);
        let ask = Ask {
            request: &request,
            priority,
            task: is_task,
        };
        let mut made = 0;
        for _ in 0..count {
            if asks >= MAX_ASKS_PER_PASS || *budget == 0 {
                break;
            }
            asks += 1;
            let Some(room) = preemption.make_room(&ask, placer.next_seed()) else {
                break;
            };
            let Room::Made { victims, .. } = room else {
                continue;
            };
            for t in victims {
                if *budget == 0 {
                    break;
                }
                *budget -= 1;
                let (a, job_priority) = attempts[t];
                stop_victim(a, job_priority, &who, priority, plan);
                made += 1;
            }
        }
        if made > 0 && !is_task {
            if let Some(why) = plan.pending.get_mut(&spec.name) {
                why.push_str(&format!(
                    "; preempting {made} task(s) of lower priority to make room"
                ));
            }
        }
    }
    if preemption.held_back() && plan.recheck == Recheck::OnChange {
        // A task's min_runtime ends with time, not with a store change.
        plan.recheck = Recheck::EverySecond;
    }
}

/// Who asks for room in this pass, in order.
fn askers<'a>(
    snapshot: &'a Snapshot,
    views: &[JobView],
    blocked: &[Blocked],
    plan: &Plan,
) -> Vec<(u8, Asker<'a>)> {
    let mut askers: Vec<(u8, Asker)> = Vec::new();
    for (name, &count) in &plan.unplaced {
        if let Some(spec) = snapshot.services.get(name) {
            askers.push((spec.priority(), Asker::Service { spec, count }));
        }
    }
    for b in blocked {
        let priority = views[b.view].record.spec.priority;
        askers.push((
            priority,
            Asker::Job {
                view: b.view,
                wanted: b.wanted,
            },
        ));
    }
    // Stable: services (pushed first) before jobs of the same priority, jobs in queue order.
    askers.sort_by_key(|(priority, _)| std::cmp::Reverse(*priority));
    askers
}

/// The running tasks that preemption may consider (with their assignments and priorities, by
/// the same index), over the placer's picture of the cluster.
fn picture<'a>(
    snapshot: &Snapshot,
    views: &[JobView<'a>],
    placer: &Placer,
    now_ms: u64,
) -> (Preemption, Vec<(&'a Versioned<Assignment>, u8)>) {
    let mut jobs = Vec::with_capacity(views.len());
    let mut tasks = Vec::new();
    let mut attempts = Vec::new();
    for (j, view) in views.iter().enumerate() {
        let spec = &view.record.spec;
        let mut live = 0u32;
        let finished = view.finished();
        for a in &view.running {
            let runs = a.value.desired == DesiredState::Run
                && !finished
                && snapshot.states.get(&a.value.node) != NodeState::Down
                && attempt_end(snapshot, &a.value).is_none();
            let Some(node) = placer.node_id(&a.value.node).filter(|_| runs) else {
                continue;
            };
            live += 1;
            let min_runtime = u64::try_from(spec.min_runtime.as_millis()).unwrap_or(u64::MAX);
            tasks.push(Running {
                node,
                job: j,
                priority: spec.priority,
                resources: reservation(&a.value.spec),
                started_ms: a.value.created_ms,
                protected_until_ms: a.value.created_ms.saturating_add(min_runtime),
            });
            attempts.push((*a, spec.priority));
        }
        jobs.push(JobSlack {
            name: view.name.to_string(),
            spare: live.saturating_sub(spec.parallelism.min),
        });
    }
    let cap = u32::try_from(MAX_TASKS_PER_NODE).unwrap_or(u32::MAX);
    let preemption = Preemption::new(placer.preemption_picture(), jobs, tasks, cap, now_ms);
    (preemption, attempts)
}

/// Asks the victim's node to stop it (its stop signal, then its grace), marked as preempted
/// by `who`, with the event that says so.
fn stop_victim(
    a: &Versioned<Assignment>,
    priority: u8,
    who: &str,
    their_priority: u8,
    plan: &mut Plan,
) {
    let mut stopped = a.value.clone();
    stopped.desired = DesiredState::Stop;
    let Some(task) = stopped.task.as_mut() else {
        return;
    };
    task.preempted_by = Some(who.to_string());
    let (job, index) = (task.job.clone(), task.index);
    plan.ops.push(Op::put(
        keys::instance(&stopped.id),
        keys::encode(&stopped),
        Expect::ModRevision(a.mod_revision),
    ));
    let ran = std::time::Duration::from_millis(plan.now_ms.saturating_sub(a.value.created_ms));
    let stop = &a.value.spec.stop;
    let message = format!(
        "task {index} of job {job} (priority {priority}, running {} on node {}) preempted by {who} (priority {their_priority}), which fitted on no node: stopping it with {} and {} grace; it is queued again, not counted as a failure",
        format_duration(ran),
        a.value.node,
        stop.signal,
        format_duration(stop.grace),
    );
    plan.events.push(
        Event::new(plan.now_ms, EventKind::TaskPreempted, message)
            .service(&job)
            .instance(&a.value.id)
            .node(&a.value.node),
    );
}
