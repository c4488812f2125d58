//! Jobs: work that finishes. A deploy file's `[jobs.NAME]` becomes a [`JobSpec`] (`tasks`
//! completions, indices `0..tasks`), and `[queues.NAME]` a [`QueueSpec`]. The server keeps each
//! job's [`JobRecord`] (what was asked) and [`JobProgress`] (how far it got), and one
//! [`TaskRecord`] per task that ended or waits to run again; a running task is an
//! [`Assignment`](crate::Assignment) whose `task` is a [`TaskRef`].

use crate::quantity::format_duration;
use crate::service::{
    validate_service_name, FieldError, Placement, Problems, Resources, ServiceSpec, StopSpec,
    RESERVED_ENV,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The queue a job goes to when its file names none.
pub const DEFAULT_QUEUE: &str = "default";
/// A job's priority when its file gives none: the middle of 0–100, so that work can be put
/// both above and below it.
pub const DEFAULT_PRIORITY: u8 = 50;
/// The highest priority; services count as this (they are what jobs make room for).
pub const MAX_PRIORITY: u8 = 100;
/// The priority of a service's instances when the scheduler weighs them against tasks.
pub const SERVICE_PRIORITY: u8 = MAX_PRIORITY;
/// Retries per task when a file gives none: Nomad's batch restart policy (`attempts = 3`).
pub const DEFAULT_RETRIES: u32 = 3;
/// Most retries per task; more is surely a typo.
pub const MAX_RETRIES: u32 = 100;
/// Most tasks in one job: the leader keeps a running job's task records in memory and lists
/// them once per term, so a job stays well under the store's message size (about 30 MB of
/// records at this count).
pub const MAX_TASKS: u32 = 100_000;
/// A task younger than this is never preempted (Kueue's design discussions ask for a minimum
/// runtime, so that preemption cannot loop).
pub const DEFAULT_MIN_RUNTIME: Duration = Duration::from_secs(30);
/// Longest `timeout`, `deadline` or `min_runtime` a job may give: a week.
pub const MAX_JOB_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);
/// A queue's weight when its file gives none.
pub const DEFAULT_QUEUE_WEIGHT: u32 = 1;
/// Largest queue weight.
pub const MAX_QUEUE_WEIGHT: u32 = 1_000;
/// Variables ebb sets in every task's environment; a job's `env` may not set them.
pub const TASK_ENV: [&str; 4] = [
    "EBB_JOB",
    "EBB_TASK_INDEX",
    "EBB_TASK_COUNT",
    "EBB_TASK_ATTEMPT",
];

/// How many of a job's tasks may run at once: at least `min` when capacity allows, growing to
/// `max` on free capacity; `parallelism = 8` is `{ min = 8, max = 8 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parallelism {
    /// Tasks the job needs running at once; it is shrunk below this only by preemption of
    /// last resort.
    pub min: u32,
    /// Most tasks running at once.
    pub max: u32,
}

impl Parallelism {
    /// A fixed parallelism of `n`.
    pub fn fixed(n: u32) -> Parallelism {
        Parallelism { min: n, max: n }
    }
}

/// One job: `tasks` runs of `command` that each should end with exit code 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The job's name: a DNS label, unique among jobs and services.
    pub name: String,
    /// argv; `${EBB_TASK_INDEX}` and the other variables expand from the task's environment.
    pub command: Vec<String>,
    /// How many tasks (completions), indices `0..tasks`.
    pub tasks: u32,
    /// How many may run at once.
    pub parallelism: Parallelism,
    /// The queue the job waits in.
    pub queue: String,
    /// 0–100; higher runs first and may preempt lower.
    pub priority: u8,
    /// Attempts after the first one fails (exponential back-off between them).
    pub retries: u32,
    /// Exit codes that fail the task at once, without a retry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fail_on_exit_codes: Vec<i32>,
    /// Longest one attempt may run; then its process tree is killed and it counts as failed.
    #[serde(
        default,
        with = "crate::autoscale::opt_millis",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// Longest the whole job may take from submission; then it fails and its tasks stop.
    #[serde(
        default,
        with = "crate::autoscale::opt_millis",
        skip_serializing_if = "Option::is_none"
    )]
    pub deadline: Option<Duration>,
    /// A running task younger than this is never preempted.
    #[serde(with = "crate::service::millis")]
    pub min_runtime: Duration,
    /// Extra environment variables for each task.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory of each task's process.
    #[serde(default)]
    pub workdir: Option<String>,
    /// What each task reserves on its node.
    #[serde(default)]
    pub resources: Resources,
    /// How a task is stopped (preemption, cancel, deadline).
    #[serde(default)]
    pub stop: StopSpec,
    /// Node-label constraints, as for services.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    /// How the scheduler chooses among nodes.
    #[serde(default, skip_serializing_if = "Placement::is_default")]
    pub placement: Placement,
    /// When runs start: a cron pattern, optionally after `CRON_TZ=Zone` (see
    /// [`crate::schedule::Schedule`]); None: one run, at submission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// What a firing does while the last run still runs.
    #[serde(default, skip_serializing_if = "crate::schedule::Overlap::is_default")]
    pub overlap: crate::schedule::Overlap,
}

impl JobSpec {
    /// A job of `tasks` tasks with every other setting at its default.
    pub fn new(name: impl Into<String>, command: Vec<String>, tasks: u32) -> JobSpec {
        JobSpec {
            name: name.into(),
            command,
            tasks,
            parallelism: Parallelism {
                min: 1.min(tasks),
                max: tasks,
            },
            queue: DEFAULT_QUEUE.to_string(),
            priority: DEFAULT_PRIORITY,
            retries: DEFAULT_RETRIES,
            fail_on_exit_codes: Vec::new(),
            timeout: None,
            deadline: None,
            min_runtime: DEFAULT_MIN_RUNTIME,
            env: BTreeMap::new(),
            workdir: None,
            resources: Resources::default(),
            stop: StopSpec::default(),
            constraints: Vec::new(),
            placement: Placement::default(),
            schedule: None,
            overlap: crate::schedule::Overlap::default(),
        }
    }

    /// The parsed `schedule`, if it has one that parses (a stored spec was checked when it
    /// was deployed).
    pub fn parsed_schedule(&self) -> Option<crate::schedule::Schedule> {
        crate::schedule::Schedule::parse(self.schedule.as_deref()?).ok()
    }

    /// Every problem with the spec, fields named as the file spells them (`jobs.x.tasks`).
    pub fn validate(&self) -> Vec<FieldError> {
        let mut p = Problems::with_base(format!("jobs.{}", self.name));
        if let Err(m) = validate_service_name(&self.name) {
            p.add("", m.replace("service", "job"));
        }
        if self.command.is_empty() || self.command[0].trim().is_empty() {
            p.add("command", "command is empty: give the program and its arguments, e.g. [\"python3\", \"task.py\"]");
        }
        if self.tasks == 0 || self.tasks > MAX_TASKS {
            p.add(
                "tasks",
                format!("{} tasks: give 1 to {MAX_TASKS}", self.tasks),
            );
        }
        let par = self.parallelism;
        if par.min > par.max || par.max == 0 {
            p.add(
                "parallelism",
                format!(
                    "parallelism min {} max {}: give 1 ≤ min ≤ max",
                    par.min, par.max
                ),
            );
        }
        if let Err(m) = validate_service_name(&self.queue) {
            p.add("queue", m.replace("service", "queue"));
        }
        if self.priority > MAX_PRIORITY {
            p.add(
                "priority",
                format!("priority {} is above {MAX_PRIORITY}", self.priority),
            );
        }
        if self.retries > MAX_RETRIES {
            p.add(
                "retries",
                format!(
                    "{} retries is more than the limit of {MAX_RETRIES}",
                    self.retries
                ),
            );
        }
        for (field, d) in [
            ("timeout", self.timeout),
            ("deadline", self.deadline),
            ("min_runtime", Some(self.min_runtime)),
        ] {
            match d {
                Some(d) if d.is_zero() && field != "min_runtime" => {
                    p.add(field, format!("{field} must be greater than zero"));
                }
                Some(d) if d > MAX_JOB_DURATION => p.add(
                    field,
                    format!(
                        "{field} {} is more than the limit of {}",
                        format_duration(d),
                        format_duration(MAX_JOB_DURATION)
                    ),
                ),
                _ => {}
            }
        }
        for key in self.env.keys() {
            let field = format!("env.{key}");
            if RESERVED_ENV.contains(&key.as_str()) || TASK_ENV.contains(&key.as_str()) {
                p.add(
                    &field,
                    format!("{key} is set by ebb for every task and cannot be overridden"),
                );
            } else if key.is_empty() || key.contains('=') || key.contains('\0') {
                p.add(&field, format!("invalid environment variable name {key:?}"));
            }
        }
        for (i, text) in self.constraints.iter().enumerate() {
            if let Err(e) = crate::Constraint::parse(text) {
                p.add(&format!("constraints[{i}]"), e.to_string());
            }
        }
        match self
            .schedule
            .as_deref()
            .map(crate::schedule::Schedule::parse)
        {
            Some(Err(e)) => p.add("schedule", e),
            Some(Ok(s)) if s.next_after(0).is_none() => p.add(
                "schedule",
                format!(
                    "{:?} never fires (no such date)",
                    self.schedule.as_deref().unwrap_or("")
                ),
            ),
            _ => {}
        }
        p.stop(&self.stop);
        p.into_errors()
    }

    /// What one attempt of task `index` runs, as the spec of an instance: the node runs it to
    /// its end instead of restarting it (its assignment carries a [`TaskRef`]).
    pub fn task_spec(&self, index: u32, attempt: u32) -> ServiceSpec {
        let mut spec = ServiceSpec::new(self.name.clone(), self.command.clone());
        spec.env.clone_from(&self.env);
        spec.env.insert("EBB_JOB".into(), self.name.clone());
        spec.env.insert("EBB_TASK_INDEX".into(), index.to_string());
        spec.env
            .insert("EBB_TASK_COUNT".into(), self.tasks.to_string());
        spec.env
            .insert("EBB_TASK_ATTEMPT".into(), attempt.to_string());
        spec.workdir.clone_from(&self.workdir);
        spec.resources = self.resources.clone();
        spec.stop = self.stop.clone();
        spec.constraints.clone_from(&self.constraints);
        spec.placement = self.placement;
        spec
    }

    /// The back-off before retry number `retry` (1-based): 1 s doubling, at most 5 minutes
    /// (Kubernetes Jobs: 10 s doubling to 6 min; shorter here, as tasks here start in
    /// milliseconds).
    pub fn retry_delay(retry: u32) -> Duration {
        let secs = 1u64 << retry.saturating_sub(1).min(16);
        Duration::from_secs(secs.min(MAX_RETRY_DELAY.as_secs()))
    }
}

/// Longest wait before a retry.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);

/// A queue of jobs: its share of the cluster against other queues while both have work
/// waiting, and a cap on its running tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSpec {
    /// The queue's name.
    pub name: String,
    /// Fair-share weight: with work waiting in two queues, their running tasks tend to the
    /// ratio of their weights.
    pub weight: u32,
    /// Never more tasks of this queue running at once; None: no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_running: Option<u32>,
}

impl QueueSpec {
    /// The queue `name` with weight 1 and no cap (what a job's unknown queue is).
    pub fn new(name: impl Into<String>) -> QueueSpec {
        QueueSpec {
            name: name.into(),
            weight: DEFAULT_QUEUE_WEIGHT,
            max_running: None,
        }
    }

    /// Every problem with the queue, named as the file spells it (`queues.batch.weight`).
    pub fn validate(&self) -> Vec<FieldError> {
        let mut p = Problems::with_base(format!("queues.{}", self.name));
        if let Err(m) = validate_service_name(&self.name) {
            p.add("", m.replace("service", "queue"));
        }
        if self.weight == 0 || self.weight > MAX_QUEUE_WEIGHT {
            p.add(
                "weight",
                format!("weight {}: give 1 to {MAX_QUEUE_WEIGHT}", self.weight),
            );
        }
        if self.max_running == Some(0) {
            p.add("max_running", "max_running 0 would never run anything: give at least 1, or leave it out for no cap");
        }
        p.into_errors()
    }
}

/// The task a job's assignment runs: the node runs it once, to its end, and reports its exit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRef {
    /// The job.
    pub job: String,
    /// The job's run this attempt belongs to (a redeploy with a changed spec starts a new one).
    pub run: u64,
    /// The task's index, `0..tasks`.
    pub index: u32,
    /// Which attempt this is, from 1.
    pub attempt: u32,
    /// The node kills the attempt's process tree after this many milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Unix milliseconds when the task began waiting for this attempt (its queue wait ends
    /// when the assignment is created).
    pub queued_ms: u64,
    /// Who preempted this attempt (`service web`, `job render`), set when it is asked to stop
    /// to make room: its end is then a preemption, queued again and not counted as a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preempted_by: Option<String>,
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// No task runs yet.
    Queued,
    /// Tasks run or wait.
    Running,
    /// Every task completed.
    Completed,
    /// A task failed for good, or the deadline passed.
    Failed,
    /// `ebb cancel`.
    Cancelled,
}

impl JobState {
    /// The name `ebb jobs` and JSON use.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Completed, failed or cancelled: nothing of it runs again.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::Cancelled
        )
    }
}

/// What was asked of a job (`jobs/{name}`): written by the API only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The spec.
    pub spec: JobSpec,
    /// Which run: 1 on the first deploy, one more on each redeploy that changes a finished job.
    pub run: u64,
    /// Unix milliseconds when this run was submitted.
    pub submitted_ms: u64,
    /// `ebb cancel`: when, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_ms: Option<u64>,
}

/// How far a job's run got (`job-progress/{name}`): written by the controller only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobProgress {
    /// The run this is about.
    pub run: u64,
    /// When it ended, and how; None while it runs or waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<JobEnd>,
    /// Unix milliseconds when its first task started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    /// Tasks completed in this run.
    #[serde(default)]
    pub completed: u32,
    /// Tasks failed for good in this run.
    #[serde(default)]
    pub failed: u32,
    /// Tasks cancelled in this run.
    #[serde(default)]
    pub cancelled: u32,
}

/// How a job's run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEnd {
    /// Completed, failed or cancelled.
    pub state: JobState,
    /// Unix milliseconds.
    pub at_ms: u64,
    /// Why, in words.
    pub reason: String,
}

/// Where one task is, as its record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for a node (first attempt, or again after a preemption or a lost node).
    Queued,
    /// Waiting for its retry back-off to pass.
    Retrying,
    /// Running on a node.
    Running,
    /// Exited 0. Never run again.
    Completed,
    /// Failed for good (retries used up, a `fail_on_exit_codes` code, or the job failed).
    Failed,
    /// Stopped by `ebb cancel` or the job's failure before it completed.
    Cancelled,
}

impl TaskState {
    /// The name `ebb job` and JSON use.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Retrying => "retrying",
            TaskState::Running => "running",
            TaskState::Completed => "completed",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
        }
    }

    /// Completed, failed or cancelled.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Completed | TaskState::Failed | TaskState::Cancelled
        )
    }
}

/// One task's record (`tasks/{job}/{index}`), written by the controller when an attempt ends
/// or the task is put back in the queue. A task with no record and no assignment has never
/// run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The job's run.
    pub run: u64,
    /// The task's index.
    pub index: u32,
    /// Queued (again), retrying, or final.
    pub state: TaskState,
    /// Attempts that counted (a preempted or lost attempt does not).
    pub failures: u32,
    /// Attempts started, counted or not.
    pub attempts: u32,
    /// The last attempt's instance id (its log) and node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The node of the last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The last attempt's exit code, if it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why the last attempt ended, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<String>,
    /// When the task (re-)entered the queue.
    pub queued_ms: u64,
    /// When the last attempt was placed (its queue wait is this minus `queued_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    /// When the last attempt ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<u64>,
    /// Retrying: not before this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_must_parse_and_fire() {
        let mut job = JobSpec::new("nightly", vec!["true".into()], 1);
        job.schedule = Some("0 0 30 2 *".into());
        let errors = job.validate();
        assert!(errors[0].to_string().contains("never fires"), "{errors:?}");
        job.schedule = Some("CRON_TZ=Europe/Paris 0 3 * * *".into());
        assert!(job.validate().is_empty());
    }

    #[test]
    fn a_default_job_is_valid_and_a_bad_one_names_each_field() {
        assert!(JobSpec::new("thumbs", vec!["true".into()], 10)
            .validate()
            .is_empty());
        let mut bad = JobSpec::new("Thumbs!", vec![], 0);
        bad.priority = 101;
        bad.parallelism = Parallelism { min: 5, max: 2 };
        bad.env.insert("EBB_TASK_INDEX".into(), "1".into());
        bad.timeout = Some(Duration::ZERO);
        let fields: Vec<String> = bad.validate().into_iter().map(|e| e.field).collect();
        for f in [
            "jobs.Thumbs!",
            "jobs.Thumbs!.command",
            "jobs.Thumbs!.tasks",
            "jobs.Thumbs!.parallelism",
            "jobs.Thumbs!.priority",
            "jobs.Thumbs!.env.EBB_TASK_INDEX",
            "jobs.Thumbs!.timeout",
        ] {
            assert!(fields.iter().any(|x| x == f), "{f} not in {fields:?}");
        }
    }

    #[test]
    fn a_task_spec_carries_its_index_count_and_attempt() {
        let job = JobSpec::new("thumbs", vec!["echo".into(), "${EBB_TASK_INDEX}".into()], 7);
        let spec = job.task_spec(3, 2);
        assert_eq!(spec.env["EBB_TASK_INDEX"], "3");
        assert_eq!(spec.env["EBB_TASK_COUNT"], "7");
        assert_eq!(spec.env["EBB_TASK_ATTEMPT"], "2");
        assert_eq!(spec.env["EBB_JOB"], "thumbs");
    }

    #[test]
    fn retries_back_off_exponentially_up_to_a_cap() {
        assert_eq!(JobSpec::retry_delay(1), Duration::from_secs(1));
        assert_eq!(JobSpec::retry_delay(2), Duration::from_secs(2));
        assert_eq!(JobSpec::retry_delay(4), Duration::from_secs(8));
        assert_eq!(JobSpec::retry_delay(40), MAX_RETRY_DELAY);
    }

    #[test]
    fn queues_need_a_positive_weight_and_cap() {
        let mut q = QueueSpec::new("batch");
        assert!(q.validate().is_empty());
        q.weight = 0;
        q.max_running = Some(0);
        let fields: Vec<String> = q.validate().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["queues.batch.weight", "queues.batch.max_running"]);
    }
}
