//! The jobs part of a controller pass, pure like the rest of [`decide`](crate::controllers::instances::decide):
//! attempts that ended become task records (completed, retrying, failed, requeued), jobs that
//! are done, cancelled or past their deadline end, and waiting tasks are placed in queue order
//! on what the services left free, with the same [`Placer`] and its reservations.

use super::book::{BookChange, JobTasks, TaskBook};
use super::cron::plan_schedules;
use super::preempt::{self, Asker, Rooms};
use crate::controllers::instances::Recheck;
use crate::controllers::instances::{current_status, Placer, Plan, Snapshot};
use crate::state::keys::{self, Versioned};
use ebb_core::quantity::format_duration;
use ebb_core::{
    api::NodeState, Assignment, DesiredState, Event, EventKind, InstanceState, JobEnd, JobProgress,
    JobRecord, JobSpec, JobState, QueueSpec, TaskRecord, TaskRef, TaskState,
};
use ebb_scheduler::queue::{Candidate, Order, QueueLoad};
use ebb_store::{Expect, Op};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

/// Most store operations the jobs part adds to one pass on a store without a limit of its own
/// (SQLite): a pass that ends 250 tasks and starts as many is still a few milliseconds. On a
/// store that limits transactions (etcd: 128) the jobs part takes what the services' writes of
/// the pass left, less a check of each job's record it writes to. A pass that stops at its budget asks for the next one at once.
pub const MAX_TASK_OPS: usize = 1_000;

/// Most tasks one node runs at once, whatever they reserve: tasks that reserve nothing would
/// otherwise all land at once (10,000 process starts on one agent starve its heartbeats, and
/// the node is declared down; measured with `bench/jobs.sh`). kubelet's `max-pods` is 110 per
/// node for the same reason; tasks here are processes that start in milliseconds, so fewer
/// keep a node's agent responsive while still starting hundreds a second.
pub const MAX_TASKS_PER_NODE: usize = 32;

/// What the jobs part needs of a pass beyond the services' snapshot.
#[derive(Debug, Clone)]
pub struct JobsInput {
    /// Every job record, by name.
    pub jobs: BTreeMap<String, Versioned<JobRecord>>,
    /// Every job's progress, by name.
    pub progress: BTreeMap<String, Versioned<JobProgress>>,
    /// Queues declared in deploy files, by name (others exist with weight 1, no cap).
    pub queues: BTreeMap<String, QueueSpec>,
    /// Most operations the store takes in one transaction (`KvStore::max_txn_ops`).
    pub max_txn_ops: usize,
}

impl Default for JobsInput {
    fn default() -> Self {
        JobsInput {
            jobs: BTreeMap::new(),
            progress: BTreeMap::new(),
            queues: BTreeMap::new(),
            max_txn_ops: usize::MAX,
        }
    }
}

/// How one attempt ended, as the pass sees it.
pub(super) enum End {
    /// The process ended by itself (or its timeout killed it).
    Exited { code: Option<i32>, why: String },
    /// We asked it to stop (cancel, deadline, a failed job) and it did.
    Stopped,
    /// Its node is down.
    Lost,
    /// It ended while its agent was down (or was adopted by a restarted agent), so how is
    /// unknown: it runs again, not counted as a failure (at-least-once, as for a lost node).
    Unknown,
}

/// One job as this pass sees it.
pub(super) struct JobView<'a> {
    pub(super) name: &'a str,
    pub(super) record: &'a JobRecord,
    /// The record's store revision (a scheduled job's next run replaces it).
    pub(super) revision: u64,
    progress: JobProgress,
    /// Its tasks as the book has them (an empty book when nothing of this run is recorded).
    tasks: &'a JobTasks,
    /// Final records written in this pass: completed, failed, cancelled.
    finals_now: (u32, u32, u32),
    /// Its attempts that have not ended (some asked to stop), and those whose end this pass
    /// had no room to record.
    pub(super) running: Vec<&'a Versioned<Assignment>>,
    /// Why a task failed for good in this pass, for the job's reason.
    failure: Option<String>,
    /// Tasks with an attempt in the snapshot (running, or ended in this pass): none of them
    /// starts again in this pass, whatever the book says.
    attempted: HashSet<u32>,
}

impl JobView<'_> {
    /// Whether the job has ended (in an earlier pass or this one).
    pub(super) fn finished(&self) -> bool {
        self.progress.finished.is_some()
    }

    /// Ends the run in this pass (its progress is written with `end`).
    pub(super) fn end(&mut self, end: JobEnd) {
        self.progress.finished = Some(end);
    }

    /// Completed, failed and cancelled tasks, this pass's records included.
    fn finals(&self) -> (u32, u32, u32) {
        let (c, f, x) = self.tasks.finals();
        let (dc, df, dx) = self.finals_now;
        (c + dc, f + df, x + dx)
    }

    /// Counts a record written in this pass.
    fn note_final(&mut self, state: TaskState) {
        match state {
            TaskState::Completed => self.finals_now.0 += 1,
            TaskState::Failed => self.finals_now.1 += 1,
            TaskState::Cancelled => self.finals_now.2 += 1,
            _ => {}
        }
    }
}

/// Plans every job at `plan.now_ms`: ended attempts, ended jobs, new attempts.
pub fn plan_jobs(
    snapshot: &Snapshot,
    input: &JobsInput,
    book: &TaskBook,
    placer: &mut Placer,
    plan: &mut Plan,
) {
    let now = plan.now_ms;
    let empty = JobTasks::default();
    let mut attempts: HashMap<&str, Vec<&Versioned<Assignment>>> = HashMap::new();
    for a in &snapshot.assignments {
        if let Some(t) = &a.value.task {
            attempts.entry(t.job.as_str()).or_default().push(a);
        }
    }
    // What the store's transaction has room for after the services' writes of this pass, less
    // room for a check of each job's record written to ([`guard_records`]): one per job, or
    // half of it when there are more jobs than that (a job written to has a write of its own,
    // so the checks never outnumber the writes).
    let room = input.max_txn_ops.saturating_sub(plan.ops.len());
    let mut budget = (room - input.jobs.len().min(room / 2)).min(MAX_TASK_OPS);
    let ops_before = plan.ops.len();
    let mut views = Vec::new();
    for (name, record) in &input.jobs {
        let progress = input
            .progress
            .get(name)
            .map(|p| p.value.clone())
            .filter(|p| p.run == record.value.run)
            .unwrap_or(JobProgress {
                run: record.value.run,
                ..JobProgress::default()
            });
        let tasks = book
            .job(name)
            .filter(|t| t.run == record.value.run)
            .unwrap_or(&empty);
        let mut view = JobView {
            name,
            record: &record.value,
            revision: record.mod_revision,
            progress,
            tasks,
            finals_now: (0, 0, 0),
            running: Vec::new(),
            failure: None,
            attempted: HashSet::new(),
        };
        for a in attempts.remove(name.as_str()).unwrap_or_default() {
            if let Some(t) = a.value.task.as_ref().filter(|t| t.run == record.value.run) {
                view.attempted.insert(t.index);
            }
            settle_attempt(snapshot, &mut view, a, plan, &mut budget);
        }
        end_job_if_due(&mut view, plan, now, &mut budget);
        views.push(view);
    }
    // Attempts of jobs that no longer exist stop and go.
    for a in attempts.into_values().flatten() {
        if budget >= 3 {
            drop_attempt(snapshot, a, plan, &mut budget);
        }
    }
    stop_drained(snapshot, &views, plan, &mut budget);
    plan_schedules(&mut views, plan, &mut budget);
    place_waiting(snapshot, &mut views, input, placer, plan, &mut budget);
    for view in &views {
        if budget >= 1 && write_progress(view, input, plan) {
            budget -= 1;
        }
    }
    guard_records(&views, plan, ops_before);
    if budget < 3 {
        plan.recheck = Recheck::Soon;
    }
    let waits_on_time = views.iter().any(|v| {
        v.progress.finished.is_none()
            && (v.record.spec.deadline.is_some() || v.tasks.next_retry_ms(now).is_some())
    });
    if waits_on_time && plan.recheck == Recheck::OnChange {
        plan.recheck = Recheck::EverySecond;
    }
}

/// An attempt that ended becomes a record; one that runs is counted; one of a finished job
/// is asked to stop.
fn settle_attempt<'a>(
    snapshot: &Snapshot,
    view: &mut JobView<'a>,
    a: &'a Versioned<Assignment>,
    plan: &mut Plan,
    budget: &mut usize,
) {
    let Some(task) = &a.value.task else { return };
    let end = attempt_end(snapshot, &a.value);
    let stale = task.run != view.record.run;
    match end {
        None if stale || view.progress.finished.is_some() => {
            if a.value.desired == DesiredState::Run && *budget >= 1 {
                *budget -= 1;
                plan.request_stop(a);
            }
            if !stale {
                view.running.push(a);
            }
        }
        None => view.running.push(a),
        Some(end) if *budget >= 3 => {
            *budget -= 3;
            plan.forget(a);
            if stale {
                return;
            }
            let record = ended_record(view, task, &a.value, end, plan);
            plan.book.push(BookChange::Recorded {
                job: view.name.to_string(),
                record: record.clone(),
            });
            plan.ops.push(Op::put(
                keys::task(view.name, record.index),
                keys::encode(&record),
                Expect::Any,
            ));
            view.note_final(record.state);
            if record.state == TaskState::Failed && view.failure.is_none() {
                view.failure = Some(format!(
                    "task {} failed: {}",
                    record.index,
                    record.last_exit.as_deref().unwrap_or("no exit")
                ));
            }
        }
        Some(_) => view.running.push(a),
    }
}

/// Whether attempt `a` is asked to run and has not ended (its node is not down either): what
/// preemption and drains may stop.
pub(super) fn still_runs(snapshot: &Snapshot, a: &Versioned<Assignment>) -> bool {
    a.value.desired == DesiredState::Run && attempt_end(snapshot, &a.value).is_none()
}

/// How an attempt ended, if it did. What its node reported comes first: an attempt that
/// exited 0 before its node was lost is completed, not run again.
pub(super) fn attempt_end(snapshot: &Snapshot, a: &Assignment) -> Option<End> {
    let status = current_status(a, &snapshot.statuses);
    match status.map(|s| s.state) {
        Some(InstanceState::Exited) => {
            let s = status?;
            if s.exit_unknown {
                return Some(End::Unknown);
            }
            return Some(End::Exited {
                code: s.exit_code,
                why: s.last_exit.clone().unwrap_or_else(|| "exited".into()),
            });
        }
        Some(InstanceState::Stopped) => return Some(End::Stopped),
        _ => {}
    }
    if snapshot.states.get(&a.node) == NodeState::Down {
        return Some(End::Lost);
    }
    (status.is_none() && a.desired == DesiredState::Stop).then_some(End::Stopped)
}

/// The record an ended attempt leaves, with its event.
fn ended_record(
    view: &JobView,
    task: &TaskRef,
    a: &Assignment,
    end: End,
    plan: &mut Plan,
) -> TaskRecord {
    let now = plan.now_ms;
    let spec = &view.record.spec;
    let before = view.tasks.record_of(task.index);
    let mut r = TaskRecord {
        run: task.run,
        index: task.index,
        state: TaskState::Queued,
        failures: before.map_or(0, |b| b.failures),
        attempts: task.attempt,
        instance: Some(a.id.clone()),
        node: Some(a.node.clone()),
        exit_code: None,
        last_exit: None,
        queued_ms: task.queued_ms,
        started_ms: Some(a.created_ms),
        ended_ms: Some(now),
        retry_at_ms: None,
    };
    let who = format!("task {} of job {}", task.index, view.name);
    let event = |kind, message: String| {
        Event::new(now, kind, message)
            .service(view.name)
            .instance(&a.id)
            .node(&a.node)
    };
    match end {
        End::Exited { code: Some(0), why } => {
            r.state = TaskState::Completed;
            r.exit_code = Some(0);
            r.last_exit = Some(why);
        }
        End::Exited { code, why } => {
            r.exit_code = code;
            r.last_exit = Some(why.clone());
            r.failures += 1;
            let fatal = code.is_some_and(|c| spec.fail_on_exit_codes.contains(&c));
            if fatal || r.failures > spec.retries {
                r.state = TaskState::Failed;
                let because = if fatal {
                    format!("{why}, which fail_on_exit_codes fails at once")
                } else {
                    format!("{why}; {} retries used up", spec.retries)
                };
                plan.events.push(event(
                    EventKind::TaskFailed,
                    format!("{who} failed on attempt {}: {because}", task.attempt),
                ));
            } else {
                let delay = JobSpec::retry_delay(r.failures);
                r.state = TaskState::Retrying;
                // Its queue wait counts from when it may run again, not through the back-off.
                r.retry_at_ms = Some(now + millis(delay));
                r.queued_ms = now + millis(delay);
                plan.events.push(event(
                    EventKind::TaskRetrying,
                    format!(
                        "{who} failed on attempt {}: {why}; retry {} of {} in {}",
                        task.attempt,
                        r.failures,
                        spec.retries,
                        format_duration(delay)
                    ),
                ));
            }
        }
        End::Stopped if view.progress.finished.is_some() || view.record.cancelled_ms.is_some() => {
            r.state = TaskState::Cancelled;
            r.last_exit = Some("stopped: the job ended".into());
        }
        End::Stopped => {
            r.queued_ms = now;
            r.last_exit = Some(match &task.preempted_by {
                Some(by) => format!("preempted by {by}; queued again"),
                None => "stopped before it ended; queued again".into(),
            });
        }
        End::Unknown => {
            r.queued_ms = now;
            r.last_exit = Some("ended while its agent was down: exit status unknown".into());
            plan.events.push(event(
                EventKind::TaskRequeued,
                format!(
                    "{who} ended on node {} while its agent was down, exit status unknown: queued again (not counted as a failure)",
                    a.node
                ),
            ));
        }
        End::Lost => {
            r.queued_ms = now;
            r.last_exit = Some(format!("lost with node {}", a.node));
            plan.events.push(event(
                EventKind::TaskRequeued,
                format!(
                    "{who} was lost with node {} on attempt {}: queued again (not counted as a failure)",
                    a.node, task.attempt
                ),
            ));
        }
    }
    r
}

/// Ends the job when every task is final, a task failed for good, it was cancelled, or its
/// deadline passed.
fn end_job_if_due(view: &mut JobView, plan: &mut Plan, now: u64, budget: &mut usize) {
    if view.progress.finished.is_some() {
        return;
    }
    let spec = &view.record.spec;
    let (completed, failed, _) = view.finals();
    let end = if let Some(at) = view.record.cancelled_ms {
        Some((
            JobState::Cancelled,
            at,
            "cancelled (ebb cancel)".to_string(),
        ))
    } else if failed > 0 {
        let first = view
            .failure
            .clone()
            .unwrap_or_else(|| "a task failed".into());
        Some((
            JobState::Failed,
            now,
            format!("{first} ({failed} failed for good)"),
        ))
    } else if completed >= spec.tasks {
        Some((
            JobState::Completed,
            now,
            format!("all {} tasks completed", spec.tasks),
        ))
    } else if let Some(deadline) = spec.deadline {
        (now >= view.record.submitted_ms + millis(deadline)).then(|| {
            (
                JobState::Failed,
                now,
                format!(
                    "deadline {} passed with {completed} of {} tasks completed",
                    format_duration(deadline),
                    spec.tasks
                ),
            )
        })
    } else {
        None
    };
    let Some((state, at_ms, reason)) = end else {
        return;
    };
    let kind = match state {
        JobState::Completed => EventKind::JobCompleted,
        JobState::Cancelled => EventKind::JobCancelled,
        _ => EventKind::JobFailed,
    };
    let running = view.running.len();
    let stopping = if running > 0 && state != JobState::Completed {
        format!("; stopping its {running} running task(s)")
    } else {
        String::new()
    };
    plan.events.push(
        Event::new(
            now,
            kind,
            format!("job {} {}: {reason}{stopping}", view.name, state.as_str()),
        )
        .service(view.name),
    );
    view.progress.finished = Some(JobEnd {
        state,
        at_ms,
        reason,
    });
    // The stops that do not fit this pass's transaction are asked in the next ones
    // (`settle_attempt` stops what runs of a finished job).
    for a in &view.running {
        if a.value.desired == DesiredState::Run && *budget >= 1 {
            *budget -= 1;
            plan.request_stop(a);
        }
    }
}

/// Places waiting tasks in queue order until nothing fits or the pass's writes are spent.
/// Rooms are made first for the services' instances that fitted nowhere, then for each job
/// whose next task fits nowhere while it runs fewer than its `min` (above it, a job grows on
/// free capacity only), when the queue reaches it: before anything of lower priority is placed.
fn place_waiting<'a>(
    snapshot: &Snapshot,
    views: &mut [JobView<'a>],
    input: &JobsInput,
    placer: &mut Placer,
    plan: &mut Plan,
    budget: &mut usize,
) {
    let now = plan.now_ms;
    let mut rooms = Rooms::new(snapshot, views, placer, now);
    preempt::for_services(snapshot, &mut rooms, placer, plan, budget);
    let mut queue_index: BTreeMap<&str, usize> = BTreeMap::new();
    let mut queues: Vec<QueueLoad> = Vec::new();
    let mut candidates = Vec::new();
    let mut members = Vec::new();
    for (i, view) in views.iter().enumerate() {
        let spec = &view.record.spec;
        let q = *queue_index.entry(spec.queue.as_str()).or_insert_with(|| {
            let declared = input.queues.get(&spec.queue);
            queues.push(QueueLoad {
                weight: declared.map_or(1, |d| d.weight),
                max_running: declared.and_then(|d| d.max_running),
                running: 0,
            });
            queues.len() - 1
        });
        queues[q].running += u32::try_from(view.running.len()).unwrap_or(u32::MAX);
        // A scheduled run waits for its firing.
        if view.progress.finished.is_some() || view.record.submitted_ms > now {
            continue;
        }
        let waiting = view.tasks.ready(spec.tasks, now);
        if waiting == 0 {
            continue;
        }
        candidates.push(Candidate {
            priority: spec.priority,
            queue: q,
            submitted_ms: view.record.submitted_ms,
            seq: u64::try_from(i).unwrap_or(u64::MAX),
            waiting,
            running: u32::try_from(view.running.len()).unwrap_or(u32::MAX),
            min: spec.parallelism.min,
            max: spec.parallelism.max,
        });
        members.push(i);
    }
    // Running tasks per node, and the nodes at their cap.
    let mut on_nodes: HashMap<String, usize> = HashMap::new();
    for a in views.iter().flat_map(|v| &v.running) {
        *on_nodes.entry(a.value.node.clone()).or_insert(0) += 1;
    }
    let mut full: BTreeSet<String> = on_nodes
        .iter()
        .filter(|(_, n)| **n >= MAX_TASKS_PER_NODE)
        .map(|(node, _)| node.clone())
        .collect();
    let mut order = Order::new(queues, candidates);
    let mut taken: Vec<HashSet<u32>> = members
        .iter()
        .map(|&i| views[i].attempted.clone())
        .collect();
    while *budget >= 2 {
        let Some(pick) = order.pick() else { break };
        let view = &mut views[members[pick]];
        let spec = &view.record.spec;
        let Some(index) = view.tasks.next_ready(spec.tasks, now, &taken[pick]) else {
            order.unplaced(pick);
            continue;
        };
        let record = view.tasks.record_of(index);
        let attempt = record.map_or(0, |r| r.attempts) + 1;
        let task_spec = spec.task_spec(index, attempt);
        let (node, why) = match placer.pick_task(&task_spec, &full) {
            Ok(choice) => (choice.chosen.node.clone(), choice.to_string()),
            Err(_) => {
                order.unplaced(pick);
                let asker = Asker {
                    who: format!("job {}", view.name),
                    spec: &task_spec,
                    priority: spec.priority,
                    task: true,
                    count: order.short_of_min(pick),
                };
                rooms.make(&asker, placer, plan, budget);
                continue;
            }
        };
        rooms.placed(placer, &node, &task_spec, true);
        let on_node = on_nodes.entry(node.clone()).or_insert(0);
        *on_node += 1;
        if *on_node >= MAX_TASKS_PER_NODE {
            full.insert(node.clone());
        }
        taken[pick].insert(index);
        *budget -= 1;
        let queued_ms = record.map_or(view.record.submitted_ms, |r| r.queued_ms);
        let id = plan.new_instance_id(view.name);
        let assignment = Assignment {
            id: id.clone(),
            service: view.name.to_string(),
            node,
            generation: 0,
            version: task_spec.version(),
            spec: task_spec,
            desired: DesiredState::Run,
            created_ms: now,
            task: Some(TaskRef {
                job: view.name.to_string(),
                run: view.record.run,
                index,
                attempt,
                timeout_ms: spec.timeout.map(millis),
                queued_ms,
                preempted_by: None,
            }),
            placement: Some(why),
        };
        plan.ops.push(Op::put(
            keys::instance(&id),
            keys::encode(&assignment),
            Expect::Absent,
        ));
        plan.book.push(BookChange::Started {
            job: view.name.to_string(),
            index,
        });
        plan.queue_waits
            .push((spec.queue.clone(), now.saturating_sub(queued_ms)));
        if view.progress.started_ms.is_none() {
            view.progress.started_ms = Some(now);
            plan.events.push(
                Event::new(
                    now,
                    EventKind::JobStarted,
                    format!(
                        "job {}: first task started ({} tasks, queue {}, priority {})",
                        view.name, spec.tasks, spec.queue, spec.priority
                    ),
                )
                .service(view.name),
            );
        }
    }
    rooms.finish(plan);
}

/// Tasks on a node whose drain deadline has passed are stopped (their grace given), queued
/// again and not counted as failures; before the deadline they run on (as Nomad lets batch
/// work finish), and the node takes no new ones.
fn stop_drained(snapshot: &Snapshot, views: &[JobView], plan: &mut Plan, budget: &mut usize) {
    let now = plan.now_ms;
    let overdue = |node: &str| {
        snapshot
            .node_drains
            .get(node)
            .is_some_and(|d| d.value.done_ms.is_none() && now >= d.value.deadline_ms)
    };
    // A finished job's attempts are stopped by `settle_attempt` (one write per key a pass).
    let live = views.iter().filter(|v| !v.finished());
    for a in live.flat_map(|v| &v.running) {
        if !still_runs(snapshot, a) || !overdue(&a.value.node) || *budget == 0 {
            continue;
        }
        *budget -= 1;
        plan.request_stop_for(a, Some(format!("the drain of node {}", a.value.node)));
        if let Some(t) = &a.value.task {
            plan.events.push(
                Event::new(
                    now,
                    EventKind::TaskPreempted,
                    format!(
                        "task {} of job {} stopped: the drain of node {} passed its deadline; it is queued again, not counted as a failure",
                        t.index, t.job, a.value.node
                    ),
                )
                .service(&t.job)
                .instance(&a.value.id)
                .node(&a.value.node),
            );
        }
    }
}

/// Makes this pass's writes of each job's task records and progress conditional on the job's
/// record as the pass read it: a job removed (`ebb jobs rm`) or resubmitted meanwhile fails the
/// transaction, and the next pass plans again, instead of a stale pass re-creating a removed
/// job's progress for a later job of the same name to inherit. A check costs no write; the
/// store takes it beside a put of the same key (a scheduled job's next run).
fn guard_records(views: &[JobView], plan: &mut Plan, from: usize) {
    let touched: HashSet<String> = plan.ops[from..]
        .iter()
        .filter_map(|op| job_of_key(op.key()))
        .map(str::to_string)
        .collect();
    for view in views.iter().filter(|v| touched.contains(v.name)) {
        plan.ops.push(Op::check(
            keys::job(view.name),
            Expect::ModRevision(view.revision),
        ));
    }
}

/// The job whose task record or progress `key` is.
fn job_of_key(key: &str) -> Option<&str> {
    if let Some(rest) = key.strip_prefix(keys::TASKS) {
        return rest.rsplit_once('/').map(|(job, _)| job);
    }
    key.strip_prefix(keys::JOB_PROGRESS)
}

/// Writes the job's progress when it changed; true if it wrote. A run that had already ended
/// keeps its stored counts (the book does not read its records), plus this pass's.
fn write_progress(view: &JobView, input: &JobsInput, plan: &mut Plan) -> bool {
    let stored = input.progress.get(view.name);
    let ended_before =
        stored.filter(|s| s.value.run == view.record.run && s.value.finished.is_some());
    let (completed, failed, cancelled) = match ended_before {
        Some(s) => (
            s.value.completed + view.finals_now.0,
            s.value.failed + view.finals_now.1,
            s.value.cancelled + view.finals_now.2,
        ),
        None => view.finals(),
    };
    let progress = JobProgress {
        completed,
        failed,
        cancelled,
        ..view.progress.clone()
    };
    if stored.is_some_and(|s| s.value == progress) {
        return false;
    }
    plan.ops.push(Op::put(
        keys::job_progress(view.name),
        keys::encode(&progress),
        stored.map_or(Expect::Absent, |s| Expect::ModRevision(s.mod_revision)),
    ));
    true
}

/// An attempt whose job is gone: stopped, then forgotten once it ended.
fn drop_attempt(
    snapshot: &Snapshot,
    a: &Versioned<Assignment>,
    plan: &mut Plan,
    budget: &mut usize,
) {
    if attempt_end(snapshot, &a.value).is_some() {
        *budget -= 3;
        plan.forget(a);
    } else if a.value.desired == DesiredState::Run {
        *budget -= 1;
        plan.request_stop(a);
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
