//! The leader's in-memory index of tasks (ARCHITECTURE.md, principle 1, with one exception):
//! a pass must not read every task record of a 10,000-task job, so the controller reads them
//! once when it starts leading, and afterwards changes the index only with what its own
//! transactions wrote. It is the only writer of task records, so the index stays the store's.
//!
//! Per job, a task is in exactly one of these places: below `cursor` with a final record
//! (completed, failed, cancelled), below `cursor` with a waiting record (in `again`), running
//! (an assignment, which the pass sees in its snapshot), or at or above `cursor` (never
//! started in this run).

use crate::state::keys::{self, Versioned};
use ebb_core::{Assignment, JobProgress, JobRecord, TaskRecord, TaskState};
use ebb_store::{KvStore, StoreError};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// What a landed pass changes in the book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BookChange {
    /// An attempt of task `index` was placed.
    Started {
        /// The job.
        job: String,
        /// The task.
        index: u32,
    },
    /// A task's record was written.
    Recorded {
        /// The job.
        job: String,
        /// The record as written.
        record: TaskRecord,
    },
}

/// Which run of which incarnation of a job a book holds: a job deleted (`ebb jobs rm`) and
/// submitted again under its name starts at run 1 again, and must not inherit the old run 1's
/// records; its submission time tells them apart (a run is submitted once, and a job must have
/// finished, which takes passes, before it can be deleted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunId {
    /// The job's run number.
    pub run: u64,
    /// When the run was submitted (a scheduled run: its firing), unix ms.
    pub submitted_ms: u64,
}

impl RunId {
    /// The run a job record describes.
    pub fn of(job: &JobRecord) -> RunId {
        RunId {
            run: job.run,
            submitted_ms: job.submitted_ms,
        }
    }
}

/// Every job's tasks, for the leader's passes.
#[derive(Debug, Default, Clone)]
pub struct TaskBook {
    jobs: HashMap<String, JobTasks>,
}

/// One job's tasks in its current run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct JobTasks {
    /// The run the records are of.
    pub run: u64,
    /// When that run was submitted (see [`RunId`]).
    submitted_ms: u64,
    /// Records of this run, by index.
    records: HashMap<u32, TaskRecord>,
    /// Indices from here up were never started in this run.
    cursor: u32,
    /// Tasks waiting to run again: (not before, unix ms; index).
    again: BTreeSet<(u64, u32)>,
    /// Final records by state.
    completed: u32,
    failed: u32,
    cancelled: u32,
}

impl TaskBook {
    /// Reads every task record once, and places each task of each job: the start of a term.
    /// `assignments` are the running attempts (so a task that runs is not also waiting).
    pub fn load(
        store: &dyn KvStore,
        jobs: &BTreeMap<String, Versioned<JobRecord>>,
        progress: &BTreeMap<String, Versioned<JobProgress>>,
        assignments: &[Versioned<Assignment>],
    ) -> Result<TaskBook, StoreError> {
        // Attempts of each job's current run only: an older run's attempt (stopping after a
        // redeploy) holds no index of this one.
        let mut running: HashMap<&str, HashSet<u32>> = HashMap::new();
        for a in assignments {
            if let Some(t) = &a.value.task {
                let current = jobs
                    .get(&t.job)
                    .is_some_and(|j| j.value.run == t.run && t.index < j.value.spec.tasks);
                if current {
                    running.entry(t.job.as_str()).or_default().insert(t.index);
                }
            }
        }
        let mut book = TaskBook::default();
        for (name, job) in jobs {
            let finished = progress
                .get(name)
                .is_some_and(|p| p.value.run == job.value.run && p.value.finished.is_some());
            if finished {
                // Nothing of it runs again: its records need not be read.
                let mut tasks = JobTasks::finished(job.value.run);
                tasks.submitted_ms = job.value.submitted_ms;
                book.jobs.insert(name.clone(), tasks);
                continue;
            }
            let records = keys::task_records(store, &keys::job_tasks(name))?;
            let empty = HashSet::new();
            let runs = running.get(name.as_str()).unwrap_or(&empty);
            let mut tasks = JobTasks::rebuild(job.value.run, job.value.spec.tasks, records, runs);
            tasks.submitted_ms = job.value.submitted_ms;
            book.jobs.insert(name.clone(), tasks);
        }
        Ok(book)
    }

    /// Job `name`'s tasks, made empty for `run` if the book holds another run (a redeploy).
    pub fn job(&self, name: &str) -> Option<&JobTasks> {
        self.jobs.get(name)
    }

    /// Applies what a landed pass wrote. A job first seen here starts empty at the record's run.
    pub fn apply(&mut self, changes: Vec<BookChange>, runs: &HashMap<String, RunId>) {
        for change in changes {
            let name = match &change {
                BookChange::Started { job, .. } | BookChange::Recorded { job, .. } => job,
            };
            let id = runs.get(name).copied().unwrap_or_default();
            let tasks = self.jobs.entry(name.clone()).or_default();
            if tasks.id() != id {
                *tasks = JobTasks::of(id);
            }
            match change {
                BookChange::Started { index, .. } => tasks.started(index),
                BookChange::Recorded { record, .. } => tasks.record(record),
            }
        }
    }

    /// Forgets jobs whose record is gone, and resets those whose run changed (a redeploy, or
    /// a job deleted and submitted again).
    pub fn retain_runs(&mut self, runs: &HashMap<String, RunId>) {
        self.jobs.retain(|name, _| runs.contains_key(name));
        for (name, id) in runs {
            let tasks = self.jobs.entry(name.clone()).or_default();
            if tasks.id() != *id {
                *tasks = JobTasks::of(*id);
            }
        }
    }
}

impl JobTasks {
    /// A run with nothing started.
    pub fn new(run: u64) -> JobTasks {
        JobTasks {
            run,
            ..JobTasks::default()
        }
    }

    /// Run `id` with nothing started.
    fn of(id: RunId) -> JobTasks {
        JobTasks {
            submitted_ms: id.submitted_ms,
            ..JobTasks::new(id.run)
        }
    }

    /// The run this book holds.
    fn id(&self) -> RunId {
        RunId {
            run: self.run,
            submitted_ms: self.submitted_ms,
        }
    }

    /// The book of a finished run: nothing waits (its counts are in its stored progress).
    fn finished(run: u64) -> JobTasks {
        JobTasks {
            run,
            cursor: u32::MAX,
            ..JobTasks::default()
        }
    }

    /// The book of one job from its stored records and running attempts. A task below the
    /// highest one started that has neither (which no write of ours leaves) waits again.
    fn rebuild(run: u64, tasks: u32, records: Vec<TaskRecord>, running: &HashSet<u32>) -> JobTasks {
        let mut book = JobTasks::new(run);
        let mut top = running.iter().map(|i| i + 1).max().unwrap_or(0);
        for r in records
            .into_iter()
            .filter(|r| r.run == run && r.index < tasks)
        {
            top = top.max(r.index + 1);
            if running.contains(&r.index) && !r.state.is_final() {
                // Waiting in the record, but an attempt runs: the attempt is what counts.
                book.records.insert(r.index, r);
                continue;
            }
            book.record(r);
        }
        book.cursor = top;
        for index in 0..top {
            if !book.records.contains_key(&index) && !running.contains(&index) {
                book.again.insert((0, index));
            }
        }
        book
    }

    /// Task `index` was placed: it neither waits nor is fresh any more.
    fn started(&mut self, index: u32) {
        if index >= self.cursor {
            self.cursor = index + 1;
        }
        if let Some(r) = self.records.get(&index) {
            let at = r.retry_at_ms.unwrap_or(0);
            self.again.remove(&(at, index));
        }
        // A task the rebuild found without record or attempt waits under (0, index).
        self.again.remove(&(0, index));
    }

    /// A record was written: counts and the waiting set follow its state.
    fn record(&mut self, r: TaskRecord) {
        let index = r.index;
        if let Some(old) = self.records.remove(&index) {
            self.again.remove(&(old.retry_at_ms.unwrap_or(0), index));
            self.count(old.state, false);
        }
        self.again.remove(&(0, index));
        if index >= self.cursor {
            self.cursor = index + 1;
        }
        match r.state {
            TaskState::Queued | TaskState::Retrying => {
                self.again.insert((r.retry_at_ms.unwrap_or(0), index));
            }
            state => self.count(state, true),
        }
        self.records.insert(index, r);
    }

    fn count(&mut self, state: TaskState, add: bool) {
        let counter = match state {
            TaskState::Completed => &mut self.completed,
            TaskState::Failed => &mut self.failed,
            TaskState::Cancelled => &mut self.cancelled,
            _ => return,
        };
        if add {
            *counter += 1;
        } else {
            *counter = counter.saturating_sub(1);
        }
    }

    /// Task `index`'s record, if it has one.
    pub fn record_of(&self, index: u32) -> Option<&TaskRecord> {
        self.records.get(&index)
    }

    /// Completed, failed and cancelled tasks.
    pub fn finals(&self) -> (u32, u32, u32) {
        (self.completed, self.failed, self.cancelled)
    }

    /// Tasks that may start at `now_ms` out of `tasks`, not counting those in `taken`.
    pub fn ready(&self, tasks: u32, now_ms: u64) -> u32 {
        let fresh = tasks.saturating_sub(self.cursor);
        let again = self.again.range(..=(now_ms, u32::MAX)).count();
        fresh.saturating_add(u32::try_from(again).unwrap_or(u32::MAX))
    }

    /// The next task to start at `now_ms`, skipping `taken` (picked earlier in this pass):
    /// tasks waiting again first (the oldest retry first), then the lowest never started.
    pub fn next_ready(&self, tasks: u32, now_ms: u64, taken: &HashSet<u32>) -> Option<u32> {
        if let Some(&(_, index)) = self
            .again
            .range(..=(now_ms, u32::MAX))
            .find(|(_, i)| !taken.contains(i))
        {
            return Some(index);
        }
        let mut index = self.cursor;
        while index < tasks {
            if !taken.contains(&index) {
                return Some(index);
            }
            index += 1;
        }
        None
    }

    /// When the earliest retry is due, if one waits on time.
    pub fn next_retry_ms(&self, now_ms: u64) -> Option<u64> {
        self.again.iter().map(|(at, _)| *at).find(|at| *at > now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(index: u32, state: TaskState, retry_at_ms: Option<u64>) -> TaskRecord {
        TaskRecord {
            run: 1,
            index,
            state,
            failures: 0,
            attempts: 1,
            instance: None,
            node: None,
            exit_code: None,
            last_exit: None,
            queued_ms: 0,
            started_ms: None,
            ended_ms: None,
            retry_at_ms,
        }
    }

    #[test]
    fn a_rebuilt_book_places_every_task_once() {
        let records = vec![
            record(0, TaskState::Completed, None),
            record(2, TaskState::Retrying, Some(500)),
            record(9, TaskState::Completed, None),
        ];
        let running: HashSet<u32> = [1, 4].into();
        let book = JobTasks::rebuild(1, 20, records, &running);
        assert_eq!(book.finals(), (2, 0, 0));
        // 3, 5, 6, 7, 8 were started (below 9) but have neither record nor attempt: waiting.
        assert_eq!(book.ready(20, 0), 5 + 10);
        assert_eq!(book.ready(20, 500), 6 + 10);
        let taken = HashSet::new();
        assert_eq!(book.next_ready(20, 0, &taken), Some(3));
        assert_eq!(book.next_ready(20, 600, &taken), Some(3));
    }

    #[test]
    fn a_rebuilt_waiting_task_leaves_the_set_once_started_or_recorded() {
        let records = vec![record(3, TaskState::Completed, None)];
        let mut book = JobTasks::rebuild(1, 5, records, &HashSet::new());
        assert_eq!(book.ready(5, 0), 3 + 1, "0, 1, 2 wait again; 4 is fresh");
        book.started(1);
        book.record(record(2, TaskState::Completed, None));
        assert_eq!(book.ready(5, 0), 1 + 1, "only 0 and the fresh 4");
        book.record(record(1, TaskState::Completed, None));
        assert_eq!(book.next_ready(5, 0, &HashSet::new()), Some(0));
    }

    #[test]
    fn started_and_recorded_tasks_leave_the_waiting_set() {
        let mut book = JobTasks::new(1);
        book.started(0);
        book.started(1);
        assert_eq!(book.ready(3, 0), 1);
        book.record(record(0, TaskState::Retrying, Some(100)));
        assert_eq!(book.ready(3, 50), 1);
        assert_eq!(book.ready(3, 100), 2);
        assert_eq!(book.next_retry_ms(50), Some(100));
        book.started(0);
        assert_eq!(book.ready(3, 100), 1);
        book.record(record(0, TaskState::Completed, None));
        assert_eq!(book.finals(), (1, 0, 0));
        let taken: HashSet<u32> = [2].into();
        assert_eq!(book.next_ready(3, 100, &taken), None);
    }
}
