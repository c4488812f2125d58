//! Preemption in a pass: service instances and tasks that fit on no node make room by stopping
//! running tasks of lower priority ([`ebb_scheduler::preempt`] chooses them: elastic jobs'
//! spare tasks first, the fewest and cheapest, never one younger than its job's
//! `min_runtime`). A victim stops as any instance does (its stop signal, then its grace), is
//! queued again and not counted as a failure; each is a `task.preempted` event naming who
//! preempted whom and why.
//!
//! A room is made in one pass and taken in a later one, once the victims have ended (the
//! [`Placer`] holds a stopping task's reservation until then). Meanwhile every pass asks again:
//! a victim still stopping is room for the asker it was preempted for only (its
//! `TaskRef.preempted_by`), so the asker finds its own room ([`Room::Waiting`]) and holds the
//! part of it that is free already, and no other asker counts on it. Tasks of lower priority
//! placed in the same pass (a victim queued again, say) cannot take a held room: jobs ask when
//! the queue reaches them in priority order. Services are placed before any task whatever
//! their priority (the services' part of the pass comes first), so a service whose
//! `priority` is below a job's may still take room that job's victims freed once they ended.

use super::decide::{still_runs, JobView, MAX_TASKS_PER_NODE};
use crate::controllers::instances::placer::{request_of, reservation};
use crate::controllers::instances::{Placer, Plan, Recheck, Snapshot};
use crate::state::keys::Versioned;
use ebb_core::quantity::format_duration;
use ebb_core::{Assignment, Event, EventKind, ServiceSpec};
use ebb_scheduler::preempt::{Ask, JobSlack, Preemption, Room, Running};

/// Most rooms one pass looks for: each costs a scan of the nodes' tasks, and what is left
/// waits for the next pass (which the victims' ends bring at once).
pub const MAX_ASKS_PER_PASS: usize = 256;

/// Who wants room, for how many instances.
pub(super) struct Asker<'s> {
    /// `service web` or `job render`, for the events.
    pub(super) who: String,
    /// What one instance runs with (its reservation and constraints).
    pub(super) spec: &'s ServiceSpec,
    /// Its priority: only tasks of lower priority make room.
    pub(super) priority: u8,
    /// A task (which also needs a task slot on its node), or a service instance.
    pub(super) task: bool,
    /// How many instances want room.
    pub(super) count: u32,
}

/// The pass's preemption: the running tasks, and the picture rooms are made in (taken from
/// the placer at the first ask, so a pass where nothing asks does not pay for it).
pub(super) struct Rooms<'a> {
    preemption: Option<Preemption>,
    /// What the preemption is built from at the first ask.
    jobs: Vec<JobSlack>,
    tasks: Vec<Running>,
    /// Each running task's assignment and job priority, by the preemption's task index.
    attempts: Vec<(&'a Versioned<Assignment>, u8)>,
    now_ms: u64,
    asks: usize,
}

impl<'a> Rooms<'a> {
    /// The running tasks of `views` that preemption may consider.
    pub(super) fn new(
        snapshot: &Snapshot,
        views: &[JobView<'a>],
        placer: &Placer,
        now_ms: u64,
    ) -> Rooms<'a> {
        let mut jobs = Vec::with_capacity(views.len());
        let mut tasks = Vec::new();
        let mut attempts = Vec::new();
        for (j, view) in views.iter().enumerate() {
            let spec = &view.record.spec;
            let min_runtime = u64::try_from(spec.min_runtime.as_millis()).unwrap_or(u64::MAX);
            let mut live = 0u32;
            for &a in &view.running {
                let runs = !view.finished() && still_runs(snapshot, a);
                let Some(node) = placer.node_id(&a.value.node).filter(|_| runs) else {
                    continue;
                };
                live += 1;
                tasks.push(Running {
                    node,
                    job: j,
                    priority: spec.priority,
                    resources: reservation(&a.value.spec),
                    started_ms: a.value.created_ms,
                    protected_until_ms: a.value.created_ms.saturating_add(min_runtime),
                });
                attempts.push((a, spec.priority));
            }
            jobs.push(JobSlack {
                name: view.name.to_string(),
                spare: live.saturating_sub(spec.parallelism.min),
            });
        }
        Rooms {
            preemption: None,
            jobs,
            tasks,
            attempts,
            now_ms,
            asks: 0,
        }
    }

    /// The preemption, built from the placer's picture at the first ask.
    fn preemption(&mut self, placer: &Placer) -> &mut Preemption {
        self.preemption.get_or_insert_with(|| {
            let (picture, pending) = placer.preemption_picture();
            let cap = u32::try_from(MAX_TASKS_PER_NODE).unwrap_or(u32::MAX);
            Preemption::new(
                picture,
                pending,
                std::mem::take(&mut self.jobs),
                std::mem::take(&mut self.tasks),
                cap,
                self.now_ms,
            )
        })
    }

    /// Makes room for `asker`'s instances, one at a time, until one finds none: stops the
    /// victims, and holds in the placer what is free of each room already. Returns how many
    /// tasks it preempted.
    pub(super) fn make(
        &mut self,
        asker: &Asker,
        placer: &mut Placer,
        plan: &mut Plan,
        budget: &mut usize,
    ) -> u32 {
        let request = request_of(asker.spec);
        let mut made = 0;
        for _ in 0..asker.count {
            if self.asks >= MAX_ASKS_PER_PASS {
                break;
            }
            self.asks += 1;
            let ask = Ask {
                owner: &asker.who,
                request: &request,
                priority: asker.priority,
                task: asker.task,
                max_victims: *budget,
            };
            let seed = placer.next_seed();
            let Some(room) = self.preemption(placer).make_room(&ask, seed) else {
                break;
            };
            let (node, victims) = match room {
                Room::Waiting(node) => (node, Vec::new()),
                Room::Made { node, victims } => (node, victims),
            };
            placer.hold(node, &request);
            for t in victims {
                // Within budget: a room is made only with as many victims as can be stopped.
                *budget = budget.saturating_sub(1);
                let (a, priority) = self.attempts[t];
                stop_victim(a, priority, asker, plan);
                made += 1;
            }
        }
        made
    }

    /// Notes an instance of `spec` placed on `node` in this pass (after the picture was
    /// taken; before, the placer's picture has it).
    pub(super) fn placed(&mut self, placer: &Placer, node: &str, spec: &ServiceSpec, task: bool) {
        if let (Some(p), Some(id)) = (self.preemption.as_mut(), placer.node_id(node)) {
            p.placed(id, &request_of(spec), task);
        }
    }

    /// Rooms the pass could not make only because of young tasks are asked for again within
    /// a second (a `min_runtime` ends with time, not with a store change).
    pub(super) fn finish(&self, plan: &mut Plan) {
        let held_back = self.preemption.as_ref().is_some_and(Preemption::held_back);
        if held_back && plan.recheck == Recheck::OnChange {
            plan.recheck = Recheck::EverySecond;
        }
    }
}

/// Makes room for the services' instances that fit on no node, highest priority first, before
/// any task is placed; their pending reason says so.
pub(super) fn for_services(
    snapshot: &Snapshot,
    rooms: &mut Rooms,
    placer: &mut Placer,
    plan: &mut Plan,
    budget: &mut usize,
) {
    let mut askers: Vec<Asker> = plan
        .unplaced
        .iter()
        .filter_map(|(name, &count)| {
            let spec = snapshot.services.get(name)?;
            Some(Asker {
                who: format!("service {name}"),
                spec,
                priority: spec.priority(),
                task: false,
                count,
            })
        })
        .collect();
    askers.sort_by_key(|a| std::cmp::Reverse(a.priority));
    for asker in &askers {
        let made = rooms.make(asker, placer, plan, budget);
        if made > 0 {
            if let Some(why) = plan.pending.get_mut(&asker.spec.name) {
                why.push_str(&format!(
                    "; preempting {made} task(s) of lower priority to make room"
                ));
            }
        }
    }
}

/// Asks the victim's node to stop it (its stop signal, then its grace), marked as preempted
/// by the asker, with the event that says so.
fn stop_victim(a: &Versioned<Assignment>, priority: u8, asker: &Asker, plan: &mut Plan) {
    let Some(task) = &a.value.task else {
        return;
    };
    let (job, index) = (task.job.clone(), task.index);
    plan.request_stop_for(a, Some(asker.who.clone()));
    let ran = std::time::Duration::from_millis(plan.now_ms.saturating_sub(a.value.created_ms));
    let stop = &a.value.spec.stop;
    let message = format!(
        "task {index} of job {job} (priority {priority}, running {} on node {}) preempted by {} (priority {}), which fitted on no node: stopping it with {} and {} grace; it is queued again, not counted as a failure",
        format_duration(ran),
        a.value.node,
        asker.who,
        asker.priority,
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
