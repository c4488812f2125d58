//! The node-side process supervisor: makes local processes match the server's assignments and
//! keeps them so (restart with back-off, health checks, cgroup limits, log rotation), and adopts
//! them again after an agent crash.
//!
//! `Supervisor` is a cheap handle; each instance is driven by its own task (`runner.rs`).

mod backoff;
mod cgroup;
mod config;
mod dynmods;
mod env;
mod goal;
mod health;
mod log_read;
mod log_stamps;
mod logs;
mod monitor;
mod ports;
mod process;
mod procfs;
mod runner;
mod shared;
mod state_file;
mod sweep;
mod tasks;
mod usage;

pub use backoff::{backoff_delay, Backoff, BACKOFF_RESET_AFTER, INITIAL_BACKOFF, MAX_BACKOFF};
pub use config::{AgentError, SupervisorConfig};
pub use logs::{DEFAULT_LOG_KEEP, DEFAULT_LOG_MAX_BYTES};

use ebb_core::api::{InstanceUsage, NodeUsage};
use ebb_core::{Assignment, Event, InstanceState, InstanceStatus};
use goal::Goal;
use nix::sys::signal::Signal;
use shared::{Phase, Shared};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long `kill_all_now` waits for killed processes to leave their cgroups before giving up on
/// removing the groups (they are empty folders then, harmless).
const KILL_NOW_CGROUP_WAIT: Duration = Duration::from_millis(500);

/// Handle to the supervisor; clones share it.
#[derive(Clone)]
pub struct Supervisor {
    shared: Arc<Shared>,
}

impl Supervisor {
    /// Detects cgroup support, loads `<data_dir>/instances.json`, kills what a crashed agent
    /// started but never recorded (`sweep.rs`), and re-adopts every recorded process that is
    /// still alive (same pid AND same start time, so a reused pid is never adopted); dead ones
    /// are forgotten and the next `apply` starts them again.
    /// Must be called inside a tokio runtime.
    pub fn start(config: SupervisorConfig) -> Result<Supervisor, AgentError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| AgentError::NoRuntime)?;
        std::fs::create_dir_all(&config.data_dir).map_err(|source| AgentError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let records = state_file::load(&config.data_dir.join(state_file::STATE_FILE))
            .map_err(AgentError::State)?;
        let agent_id = sweep::agent_id(&config.data_dir);
        let cgroups = cgroup::Cgroups::detect(&agent_id);
        if let cgroup::Cgroups::None { why } = &cgroups {
            tracing::warn!("instance cpu and memory limits are not enforced: {why}");
        } else {
            tracing::debug!("{}", dynmods::ensure());
        }
        let inherited =
            env::with_self_on_path(env::inherited(std::env::vars_os()), &config.self_exe);
        sweep::sweep(&cgroups, &agent_id, &records);
        let shared = Arc::new(Shared::new(config, cgroups, inherited, runtime, agent_id));
        tasks::adopt(&shared, records);
        tasks::spawn_state_writer(&shared);
        tasks::spawn_log_rotation(&shared);
        tasks::spawn_usage_sampler(&shared);
        Ok(Supervisor { shared })
    }

    /// Level-triggered: makes the local processes match this FULL set of assignments. Starts what
    /// should run, stops what should stop, stops and forgets what is absent; a higher generation
    /// for the same id replaces the old process, a lower one is a stale copy and ignored.
    pub fn apply(&self, assignments: &[Assignment]) {
        let mut wanted: BTreeMap<&str, &Assignment> = BTreeMap::new();
        for a in assignments {
            match wanted.get(a.id.as_str()) {
                Some(b) if b.generation >= a.generation => {}
                _ => {
                    wanted.insert(&a.id, a);
                }
            }
        }
        let mut state = self.shared.lock();
        if state.phase != Phase::Open {
            return;
        }
        let mut created = false;
        for (id, entry) in &state.entries {
            if !wanted.contains_key(id.as_str()) {
                entry
                    .goal
                    .send_if_modified(|g| replace_if_differs(g, Goal::Remove));
            }
        }
        for (id, a) in wanted {
            match state.entries.get(id) {
                Some(entry) if a.generation < entry.status.generation => {
                    tracing::debug!(
                        instance = id,
                        generation = a.generation,
                        "ignoring a stale assignment"
                    );
                }
                Some(entry) => {
                    // Compared before cloning: apply runs on every heartbeat with the full set.
                    if !entry.goal.borrow().is_for(a) {
                        entry.goal.send_replace(Goal::of(a));
                    }
                }
                None => {
                    let new = tasks::NewInstance {
                        id,
                        service: &a.service,
                        status: pending(a),
                        goal: Goal::of(a),
                        adopted: None,
                        keep_log: a.task.is_some(),
                        ended_task: None,
                    };
                    tasks::spawn_runner(&self.shared, &mut state, new);
                    created = true;
                }
            }
        }
        drop(state);
        // Only a new instance is a change worth reporting; runners report their own changes.
        if created {
            self.shared.bump();
        }
    }

    /// Every instance known locally, including stopped ones until they are no longer assigned.
    pub fn statuses(&self) -> Vec<InstanceStatus> {
        self.shared
            .lock()
            .entries
            .values()
            .map(|e| e.status.clone())
            .collect()
    }

    /// The latest CPU and memory use of each instance with a live process, sampled once a second
    /// (`usage.rs`). An instance appears from its second sample on, when its CPU has a rate.
    /// Reading costs no I/O: it is the last sample, for the heartbeat to carry.
    pub fn usage(&self) -> Vec<InstanceUsage> {
        let mut instances = self.shared.latest_usage().instances;
        let state = self.shared.lock();
        // What stopped since the sample is not reported.
        instances.retain(|u| {
            state
                .records
                .get(&u.id)
                .is_some_and(|r| r.generation == u.generation)
        });
        instances
    }

    /// The latest CPU and memory use of the whole machine; None until two samples were taken.
    pub fn node_usage(&self) -> Option<NodeUsage> {
        self.shared.latest_usage().node
    }

    /// Events since the last call, oldest first.
    pub fn take_events(&self) -> Vec<Event> {
        self.shared.lock().events.drain(..).collect()
    }

    /// Puts events back ahead of newer ones, e.g. after a report to the server failed, so none is
    /// lost; beyond `MAX_PENDING_EVENTS` the oldest are dropped.
    pub fn requeue_events(&self, events: Vec<Event>) {
        self.shared.requeue(events);
    }

    /// Bumps whenever a status changes or an event is recorded, so the caller can report promptly.
    pub fn changed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.subscribe()
    }

    /// `cgroup v2`, `cgroup v1`, or `none: <why>`.
    pub fn enforcement(&self) -> String {
        self.shared.cgroups.enforcement()
    }

    /// Log files of an instance: rotated ones oldest first, then the current one. Works for
    /// stopped and unknown ids too, as long as the files exist.
    pub fn log_files(&self, instance_id: &str) -> Vec<PathBuf> {
        let service = self
            .shared
            .lock()
            .entries
            .get(instance_id)
            .map(|e| e.service.clone());
        let path = match service {
            Some(service) => Some(self.shared.log_path(&service, instance_id)),
            None => logs::find(&self.log_dir(), instance_id),
        };
        path.map(|p| logs::files(&p)).unwrap_or_default()
    }

    /// Reads instance logs for the server: last lines, or what follows each cursor.
    pub fn read_logs(&self, read: &ebb_core::api::LogRead) -> ebb_core::api::LogsResponse {
        log_read::read(read, |id| self.log_files(id), shared::now_ms())
    }

    /// The directory of instance logs: `<data_dir>/logs`, one subdirectory per service.
    pub fn log_dir(&self) -> PathBuf {
        self.shared.log_dir()
    }

    /// Graceful: stops every instance (stop signal, grace, SIGKILL) and clears the state file.
    pub async fn shutdown(&self) {
        let tasks: Vec<_> = {
            let mut state = self.shared.lock();
            if state.phase != Phase::Open {
                return;
            }
            state.phase = Phase::ShuttingDown;
            state.background.drain(..).for_each(|t| t.abort());
            state
                .entries
                .values_mut()
                .filter_map(|e| {
                    e.goal.send_replace(Goal::Shutdown);
                    e.task.take()
                })
                .collect()
        };
        for task in tasks {
            let _ = task.await;
        }
        let mut state = self.shared.lock();
        state.records.clear();
        state.touch_records();
        state.phase = Phase::Closed;
        drop(state);
        self.shared.flush_records();
        self.shared.cgroups.remove_bases();
    }

    /// Immediate: SIGKILLs every instance's whole tree and clears the state file.
    pub fn kill_all_now(&self) {
        let records = {
            let mut state = self.shared.lock();
            state.phase = Phase::Closed;
            abort_all(&mut state);
            let records = std::mem::take(&mut state.records);
            state.touch_records();
            for entry in state.entries.values_mut() {
                entry.status.state = InstanceState::Stopped;
                entry.status.reason = None;
                entry.status.pid = None;
                entry.status.ready = false;
            }
            records
        };
        for r in records.values() {
            procfs::signal_group(r.pid, Signal::SIGKILL);
            cgroup::signal_all(&r.cgroups, Signal::SIGKILL);
        }
        self.shared.flush_records();
        let deadline = Instant::now() + KILL_NOW_CGROUP_WAIT;
        for r in records.values() {
            while !cgroup::remove(&r.cgroups) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.shared.cgroups.remove_bases();
        self.shared.bump();
    }

    /// Stops supervising and leaves every instance running, for an agent that exits to be
    /// restarted (`ebb agent` on Ctrl-C): the state file is written first, and the next agent on
    /// this data dir adopts the instances without restarting them.
    pub fn detach(self) {
        self.forget();
    }

    /// Simulates a crash of the agent, for tests: stops every task without touching the
    /// processes, as `kill -9` of ebb would. Unlike a crash it first writes the records the
    /// writer task had not written yet, so tests of adoption know what the file holds; what a
    /// real crash loses there, the next start's sweep kills (`sweep.rs`).
    #[doc(hidden)]
    pub fn forget(self) {
        let mut state = self.shared.lock();
        state.phase = Phase::Closed;
        abort_all(&mut state);
        drop(state);
        self.shared.flush_records();
    }

    /// State files written so far, for tests of write coalescing.
    #[doc(hidden)]
    pub fn state_writes(&self) -> u64 {
        self.shared.state_writes()
    }

    /// The id that marks this agent's processes (`EBB_AGENT_ID`) and cgroups, for tests.
    #[doc(hidden)]
    pub fn agent_id(&self) -> String {
        self.shared.agent_id.clone()
    }

    /// The cgroup folders an instance of this id runs in (none without enforcement), for tests.
    #[doc(hidden)]
    pub fn cgroup_dirs(&self, instance_id: &str) -> Vec<PathBuf> {
        self.shared.cgroups.dirs(instance_id)
    }
}

fn abort_all(state: &mut shared::State) {
    state.background.drain(..).for_each(|t| t.abort());
    for entry in state.entries.values_mut() {
        if let Some(task) = entry.task.take() {
            task.abort();
        }
    }
}

fn replace_if_differs(goal: &mut Goal, new: Goal) -> bool {
    if *goal == new {
        return false;
    }
    *goal = new;
    true
}

fn pending(a: &Assignment) -> InstanceStatus {
    InstanceStatus {
        id: a.id.clone(),
        generation: a.generation,
        state: InstanceState::Pending,
        pid: None,
        addr: None,
        ready: false,
        restarts: 0,
        started_ms: None,
        last_exit: None,
        exit_code: None,
        exit_unknown: false,
        reason: None,
    }
}

/// A name safe as one path component (cgroup and log names come from the network):
/// `[A-Za-z0-9._-]` kept, anything else `_`, and never `.` or `..`.
pub(crate) fn path_safe(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match safe.as_str() {
        "" | "." | ".." => format!("_{safe}"),
        _ => safe,
    }
}

#[cfg(test)]
mod tests {
    use super::path_safe;

    #[test]
    fn names_from_the_network_cannot_escape_their_folder() {
        assert_eq!(path_safe("web-1.a_b"), "web-1.a_b");
        assert_eq!(path_safe("../etc/passwd"), ".._etc_passwd");
        assert_eq!(path_safe(".."), "_..");
        assert_eq!(path_safe(""), "_");
        assert_eq!(path_safe("wéb"), "w_b");
    }
}
