//! Jobs and queues: submitted with services (`PUT /v1/services`), listed (`GET /v1/jobs`,
//! `GET /v1/queues`), shown task by task (`GET /v1/jobs/{name}`), cancelled
//! (`POST /v1/jobs/{name}/cancel`). Every server answers from the store; only the leader's
//! controller runs tasks.

use super::{ApiError, ApiPath, ApiResult};
use crate::state::keys::{self, Versioned};
use crate::{now_ms, Server};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use ebb_core::api::{ApplyRequest, JobChange, JobDetail, JobView, QueueView, TaskView};
use ebb_core::{
    Assignment, DesiredState, Event, EventKind, JobProgress, JobRecord, JobState, ServiceSpec,
    TaskRef, TaskState,
};
use ebb_store::{Expect, Op};
use std::collections::{BTreeMap, HashMap};

/// What an apply writes for its jobs and queues, in the services' transaction.
pub struct JobWrites {
    /// Store writes.
    pub ops: Vec<Op>,
    /// One per job, in the request's order.
    pub changes: Vec<JobChange>,
    /// Recorded once the writes landed.
    pub events: Vec<Event>,
}

/// Validates the request's jobs and queues and plans their writes. A job whose spec did not
/// change is left alone; a changed one is a new run once the last one finished, and refused
/// while it runs (its tasks would mix two specs).
pub fn plan_apply(
    server: &Server,
    req: &ApplyRequest,
    services: &[Versioned<ServiceSpec>],
) -> Result<JobWrites, ApiError> {
    let mut writes = JobWrites {
        ops: Vec::new(),
        changes: Vec::new(),
        events: Vec::new(),
    };
    let store = server.store();
    let stored = keys::jobs(store)?;
    if req.jobs.is_empty() && req.queues.is_empty() {
        // Still refuse a service named like a job.
        check_names(&stored, req, services)?;
        return Ok(writes);
    }
    let mut problems: Vec<String> = Vec::new();
    for job in &req.jobs {
        problems.extend(job.validate().iter().map(ToString::to_string));
    }
    for queue in &req.queues {
        problems.extend(queue.validate().iter().map(ToString::to_string));
    }
    if !problems.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            problems.join("\n"),
        ));
    }
    check_names(&stored, req, services)?;
    let progress = keys::jobs_progress(store)?;
    let now = now_ms();
    for job in &req.jobs {
        let existing = stored.get(&job.name);
        let (change, run) = match existing {
            Some(old) if old.value.spec == *job => ("unchanged", old.value.run),
            Some(old) => {
                let finished = progress
                    .get(&job.name)
                    .is_some_and(|p| p.value.run == old.value.run && p.value.finished.is_some());
                // A scheduled run that has not fired yet is not running: it is replaced.
                let waiting = old.value.submitted_ms > now;
                if !finished && !waiting && old.value.cancelled_ms.is_none() {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        format!(
                            "jobs.{}: the job is still running (run {}) and its spec changed; \
                             cancel it first (`ebb cancel {}`), or give the new one another name",
                            job.name, old.value.run, job.name
                        ),
                    ));
                }
                ("resubmitted", old.value.run + 1)
            }
            None => ("submitted", 1),
        };
        if change != "unchanged" {
            // A scheduled job's first run starts at its first firing.
            let first = job.parsed_schedule().and_then(|s| s.next_after(now));
            if job.schedule.is_some() && first.is_none() {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "jobs.{}.schedule: {:?} never fires again",
                        job.name,
                        job.schedule.as_deref().unwrap_or("")
                    ),
                ));
            }
            let record = JobRecord {
                spec: job.clone(),
                run,
                submitted_ms: first.unwrap_or(now),
                cancelled_ms: None,
            };
            writes.ops.push(Op::put(
                keys::job(&job.name),
                keys::encode(&record),
                existing.map_or(Expect::Absent, |v| Expect::ModRevision(v.mod_revision)),
            ));
            writes.events.push(
                Event::new(
                    now,
                    EventKind::JobSubmitted,
                    format!(
                        "job {} {change} (run {run}): {} tasks, queue {}, priority {}{}",
                        job.name,
                        job.tasks,
                        job.queue,
                        job.priority,
                        first.map_or(String::new(), |at| format!(
                            "; schedule {:?}, first run at {}",
                            job.schedule.as_deref().unwrap_or(""),
                            ebb_core::schedule::format_utc(at)
                        ))
                    ),
                )
                .service(&job.name),
            );
        }
        writes.changes.push(JobChange {
            job: job.name.clone(),
            change: change.to_string(),
            run,
        });
    }
    for queue in &req.queues {
        writes.ops.push(Op::put(
            keys::queue(&queue.name),
            keys::encode(queue),
            Expect::Any,
        ));
    }
    Ok(writes)
}

/// Jobs and services share one namespace (their instances and logs are found by name).
fn check_names(
    jobs: &BTreeMap<String, Versioned<JobRecord>>,
    req: &ApplyRequest,
    services: &[Versioned<ServiceSpec>],
) -> Result<(), ApiError> {
    let mut problems = Vec::new();
    for s in &req.services {
        if jobs.contains_key(&s.name) || req.jobs.iter().any(|j| j.name == s.name) {
            problems.push(format!(
                "services.{}: a job has this name; jobs and services need different names",
                s.name
            ));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for j in &req.jobs {
        if !seen.insert(&j.name) {
            problems.push(format!("jobs.{}: duplicate job name", j.name));
        }
        let stored_service = services.iter().any(|s| s.value.name == j.name)
            && !req.services.iter().any(|s| s.name == j.name);
        if stored_service {
            problems.push(format!(
                "jobs.{}: a service has this name; jobs and services need different names",
                j.name
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::CONFLICT, problems.join("\n")))
    }
}

/// `GET /v1/jobs`.
pub async fn list(State(server): State<Server>) -> ApiResult<Vec<JobView>> {
    Ok(Json(job_views(&server)?))
}

/// Every job with its task counts.
pub fn job_views(server: &Server) -> Result<Vec<JobView>, ApiError> {
    let (assignments, _) = keys::assignments(server.store())?;
    job_views_with(server, &assignments)
}

/// [`job_views`] with the assignments already read.
pub fn job_views_with(
    server: &Server,
    assignments: &[Versioned<Assignment>],
) -> Result<Vec<JobView>, ApiError> {
    let store = server.store();
    let progress = keys::jobs_progress(store)?;
    let running = running_by_job(assignments);
    Ok(keys::jobs(store)?
        .into_iter()
        .map(|(name, record)| {
            let p = progress
                .get(&name)
                .map(|p| p.value.clone())
                .filter(|p| p.run == record.value.run);
            let running = running.get(&name).copied().unwrap_or(0);
            view(record.value, p, running, now_ms())
        })
        .collect())
}

/// Running attempts per job (asked to run; a stopping one still holds its node).
fn running_by_job(assignments: &[Versioned<Assignment>]) -> HashMap<String, u32> {
    let mut running = HashMap::new();
    for a in assignments {
        if let Some(t) = &a.value.task {
            if a.value.desired == DesiredState::Run {
                *running.entry(t.job.clone()).or_insert(0) += 1;
            }
        }
    }
    running
}

fn view(record: JobRecord, progress: Option<JobProgress>, running: u32, now: u64) -> JobView {
    let p = progress.unwrap_or_default();
    // A scheduled run before its firing says when it starts.
    let next_run = (record.submitted_ms > now && p.finished.is_none()).then(|| {
        format!(
            "next run at {} (schedule {:?})",
            ebb_core::schedule::format_utc(record.submitted_ms),
            record.spec.schedule.as_deref().unwrap_or("")
        )
    });
    let state = match &p.finished {
        Some(end) => end.state,
        None if record.cancelled_ms.is_some() => JobState::Cancelled,
        None if p.started_ms.is_some() => JobState::Running,
        None => JobState::Queued,
    };
    let done = p.completed + p.failed + p.cancelled;
    let running = if state.is_finished() { 0 } else { running };
    let queued = if state.is_finished() {
        0
    } else {
        record.spec.tasks.saturating_sub(done + running)
    };
    JobView {
        name: record.spec.name.clone(),
        state,
        tasks: record.spec.tasks,
        completed: p.completed,
        running,
        failed: p.failed,
        cancelled: p.cancelled,
        queued,
        queue: record.spec.queue.clone(),
        priority: record.spec.priority,
        parallelism: record.spec.parallelism,
        run: record.run,
        submitted_ms: record.submitted_ms,
        started_ms: p.started_ms,
        finished_ms: p.finished.as_ref().map(|f| f.at_ms),
        reason: p.finished.map(|f| f.reason).or(next_run),
        spec: record.spec,
    }
}

/// `GET /v1/jobs/{name}`.
pub async fn get_one(
    State(server): State<Server>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<JobDetail> {
    let store = server.store();
    let (assignments, _) = keys::assignments(store)?;
    let job = job_views_with(&server, &assignments)?
        .into_iter()
        .find(|j| j.name == name)
        .ok_or_else(|| no_such_job(&name))?;
    let mut tasks: BTreeMap<u32, TaskView> = keys::task_records(store, &keys::job_tasks(&name))?
        .into_iter()
        .filter(|r| r.run == job.run)
        .map(|r| {
            let view = TaskView {
                index: r.index,
                attempt: r.attempts,
                node: r.node,
                state: r.state,
                exit_code: r.exit_code,
                last_exit: r.last_exit,
                duration_ms: r
                    .started_ms
                    .zip(r.ended_ms)
                    .map(|(s, e)| e.saturating_sub(s)),
                queue_wait_ms: r.started_ms.map(|s| s.saturating_sub(r.queued_ms)),
                instance: r.instance,
            };
            (view.index, view)
        })
        .collect();
    add_running(&mut tasks, &assignments, &name, job.run, now_ms());
    Ok(Json(JobDetail {
        job,
        tasks: tasks.into_values().collect(),
    }))
}

/// Puts each running attempt of run `run` of job `name` over its task's record, unless the
/// record already tells how that attempt ended.
fn add_running(
    tasks: &mut BTreeMap<u32, TaskView>,
    assignments: &[Versioned<Assignment>],
    name: &str,
    run: u64,
    now: u64,
) {
    for a in assignments {
        let Some(t) = a
            .value
            .task
            .as_ref()
            .filter(|t| t.job == name && t.run == run)
        else {
            continue;
        };
        if a.value.desired != DesiredState::Run || attempt_recorded(tasks, t, &a.value.id) {
            continue;
        }
        tasks.insert(
            t.index,
            TaskView {
                index: t.index,
                attempt: t.attempt,
                node: Some(a.value.node.clone()),
                state: TaskState::Running,
                exit_code: None,
                last_exit: None,
                duration_ms: Some(now.saturating_sub(a.value.created_ms)),
                queue_wait_ms: Some(a.value.created_ms.saturating_sub(t.queued_ms)),
                instance: Some(a.value.id.clone()),
            },
        );
    }
}

/// Whether the task's record already tells how attempt `instance` ended. The controller writes
/// that record and deletes the attempt's assignment in one transaction, but the assignments are
/// read before the records here, so an attempt that ended between the two reads is still in the
/// assignments: its record, with the exit code, is the truth (only an ended attempt's record
/// names its instance). The attempt's number is compared too: ids are random, and a later
/// attempt given the same id by chance must not be hidden behind the earlier one's record.
fn attempt_recorded(tasks: &BTreeMap<u32, TaskView>, task: &TaskRef, instance: &str) -> bool {
    tasks
        .get(&task.index)
        .is_some_and(|r| r.instance.as_deref() == Some(instance) && r.attempt == task.attempt)
}

/// `POST /v1/jobs/{name}/cancel`: the controller stops its running tasks; nothing of it
/// starts again. Cancelling a finished job changes nothing.
pub async fn cancel(
    State(server): State<Server>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<JobView> {
    let store = server.store();
    let kv = stored_job(store, &name)?;
    let mut record: JobRecord = keys::decode(&kv)?;
    let finished = keys::jobs_progress(store)?
        .get(&name)
        .is_some_and(|p| p.value.run == record.run && p.value.finished.is_some());
    if record.cancelled_ms.is_none() && !finished {
        record.cancelled_ms = Some(now_ms());
        store.put(
            &keys::job(&name),
            &keys::encode(&record),
            Expect::ModRevision(kv.mod_revision),
        )?;
    }
    job_views(&server)?
        .into_iter()
        .find(|j| j.name == name)
        .map(Json)
        .ok_or_else(|| no_such_job(&name))
}

/// `DELETE /v1/jobs/{name}`: forgets a job that has finished (its record, progress and task
/// records; the task logs stay on the nodes). A job that may still run (running, queued, or
/// scheduled) is refused: the user cancels it first, so that removing never stops work by
/// surprise. Returns the job as it was.
pub async fn remove(
    State(server): State<Server>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<JobView> {
    let store = server.store();
    let kv = stored_job(store, &name)?;
    let (assignments, _) = keys::assignments(store)?;
    let view = job_views_with(&server, &assignments)?
        .into_iter()
        .find(|j| j.name == name)
        .ok_or_else(|| no_such_job(&name))?;
    // Finished as the controller wrote it (not only as the view infers: a job cancelled a
    // moment ago may still have a pass under way that places or ends its tasks).
    let ended = store
        .get(&keys::job_progress(&name))?
        .map(|kv| keys::decode::<ebb_core::JobProgress>(&kv))
        .transpose()?
        .is_some_and(|p| p.run == view.run && p.finished.is_some());
    if view.state.is_finished() && !ended {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "job {name} is still ending (its tasks are being stopped); try again in a moment"
            ),
        ));
    }
    if !view.state.is_finished() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "job {name} is {}: only a finished job can be removed; cancel it first (`ebb cancel {name}`)",
                view.state.as_str()
            ),
        ));
    }
    let stopping = assignments
        .iter()
        .filter(|a| a.value.task.as_ref().is_some_and(|t| t.job == name))
        .count();
    if stopping > 0 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "job {name} still has {stopping} tasks stopping; try again once they have ended"
            ),
        ));
    }
    // Task records first, in transactions the store takes (etcd: 128 ops), the job last: until
    // then the job is still listed, finished, and nothing of it runs; a failure half way
    // leaves it listed, to be removed again. Each transaction holds only if the job's record
    // and each task record are as read: a new run submitted meanwhile keeps its records.
    let (tasks, _) = store.list(&keys::job_tasks(&name))?;
    let count = tasks.len();
    let batch = store.max_txn_ops().saturating_sub(1).max(1);
    for chunk in tasks.chunks(batch) {
        let mut ops: Vec<Op> = chunk
            .iter()
            .map(|t| Op::delete(t.key.clone(), Expect::ModRevision(t.mod_revision)))
            .collect();
        ops.push(Op::check(
            keys::job(&name),
            Expect::ModRevision(kv.mod_revision),
        ));
        store.txn(ops)?;
    }
    store.txn(vec![
        Op::delete(keys::job(&name), Expect::ModRevision(kv.mod_revision)),
        Op::delete(keys::job_progress(&name), Expect::Any),
    ])?;
    server.record(
        Event::new(
            now_ms(),
            EventKind::JobRemoved,
            format!(
                "job {name} removed: it was {} (run {}); {count} task records forgotten",
                view.state.as_str(),
                view.run
            ),
        )
        .service(&name),
    );
    Ok(Json(view))
}

/// `GET /v1/queues`: declared queues and those only named by jobs.
pub async fn queues(State(server): State<Server>) -> ApiResult<Vec<QueueView>> {
    let jobs = job_views(&server)?;
    Ok(Json(queue_views(&server, &jobs)?))
}

/// Every queue, declared or named by a job, with its jobs' tasks counted.
pub fn queue_views(server: &Server, jobs: &[JobView]) -> Result<Vec<QueueView>, ApiError> {
    let declared = keys::queues(server.store())?;
    let mut views: BTreeMap<String, QueueView> = declared
        .values()
        .map(|q| {
            (
                q.name.clone(),
                QueueView {
                    name: q.name.clone(),
                    weight: q.weight,
                    max_running: q.max_running,
                    running: 0,
                    queued: 0,
                    active_jobs: 0,
                    declared: true,
                },
            )
        })
        .collect();
    for job in jobs {
        let q = views.entry(job.queue.clone()).or_insert_with(|| QueueView {
            name: job.queue.clone(),
            weight: ebb_core::job::DEFAULT_QUEUE_WEIGHT,
            max_running: None,
            running: 0,
            queued: 0,
            active_jobs: 0,
            declared: false,
        });
        q.running += job.running;
        q.queued += job.queued;
        if !job.state.is_finished() {
            q.active_jobs += 1;
        }
    }
    Ok(views.into_values().collect())
}

/// Job `name`'s stored record, or 404.
fn stored_job(store: &dyn ebb_store::KvStore, name: &str) -> Result<ebb_store::KeyValue, ApiError> {
    store
        .get(&keys::job(name))?
        .ok_or_else(|| no_such_job(name))
}

fn no_such_job(name: &str) -> ApiError {
    ApiError::not_found(format!("no job named {name:?}; `ebb jobs` lists the jobs"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(id: &str, index: u32, attempt: u32) -> Versioned<Assignment> {
        let spec = ServiceSpec::new("render", vec!["sh".into()]);
        Versioned {
            value: Assignment {
                id: id.into(),
                service: "render".into(),
                node: "n1".into(),
                generation: 1,
                version: spec.version(),
                spec,
                desired: DesiredState::Run,
                created_ms: 1_000,
                task: Some(TaskRef {
                    job: "render".into(),
                    run: 1,
                    index,
                    attempt,
                    timeout_ms: None,
                    queued_ms: 500,
                    preempted_by: None,
                }),
                placement: None,
            },
            mod_revision: 1,
            create_revision: 1,
        }
    }

    /// Task `index`'s record after attempt 1 (`instance`) exited with `exit_code`, to be
    /// retried.
    fn ended(index: u32, instance: &str, exit_code: i32) -> TaskView {
        TaskView {
            index,
            attempt: 1,
            node: Some("n1".into()),
            state: TaskState::Retrying,
            exit_code: Some(exit_code),
            last_exit: Some(format!("exit code {exit_code}")),
            duration_ms: Some(100),
            queue_wait_ms: Some(500),
            instance: Some(instance.into()),
        }
    }

    #[test]
    fn an_ended_attempts_record_wins_over_its_assignment_read_before_it_ended() {
        // The assignments were read, then the attempt ended (its record written and its
        // assignment deleted in one transaction), then the records were read.
        let mut tasks = BTreeMap::from([(0, ended(0, "render-0000000a", 3))]);
        add_running(
            &mut tasks,
            &[attempt("render-0000000a", 0, 1)],
            "render",
            1,
            2_000,
        );
        assert_eq!(tasks[&0].state, TaskState::Retrying);
        assert_eq!(tasks[&0].exit_code, Some(3));
    }

    #[test]
    fn a_new_attempt_after_a_recorded_one_shows_as_running() {
        let mut tasks = BTreeMap::from([(0, ended(0, "render-0000000a", 3))]);
        let retry = attempt("render-0000000b", 0, 2);
        add_running(&mut tasks, &[retry], "render", 1, 2_000);
        assert_eq!(tasks[&0].state, TaskState::Running);
        assert_eq!(tasks[&0].exit_code, None);
        assert_eq!(tasks[&0].attempt, 2);
        assert_eq!(tasks[&0].instance.as_deref(), Some("render-0000000b"));
        assert_eq!(tasks[&0].duration_ms, Some(1_000));
        // A retry that drew the ended attempt's id by chance runs all the same.
        let mut tasks = BTreeMap::from([(0, ended(0, "render-0000000a", 3))]);
        let same_id = attempt("render-0000000a", 0, 2);
        add_running(&mut tasks, &[same_id], "render", 1, 2_000);
        assert_eq!(tasks[&0].state, TaskState::Running);
        assert_eq!(tasks[&0].attempt, 2);
    }
}
