//! State shared by the `Supervisor` handle and the per-instance tasks: statuses, events, the
//! persisted records and ports. One `std::sync::Mutex`, never held across an `.await`, nor
//! across file I/O: the state file is written by its own task from a snapshot (see
//! [`Shared::set_record`]), so heartbeats (`statuses`, `apply`) never wait for an fsync.

use super::cgroup::Cgroups;
use super::env::Env;
use super::goal::Goal;
use super::state_file::{self, Record, Writer};
use super::{logs, ports, SupervisorConfig};
use ebb_core::api::{InstanceUsage, NodeUsage};
use ebb_core::{Event, EventKind, InstanceStatus};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// The latest usage sample (the usage task writes it, heartbeats read it).
#[derive(Debug, Clone, Default)]
pub struct Latest {
    /// Each running instance's CPU and memory.
    pub instances: Vec<InstanceUsage>,
    /// The whole machine's.
    pub node: Option<NodeUsage>,
}

/// Events kept for `take_events` when nobody collects them: the oldest are dropped beyond this,
/// so an agent cut off from its server cannot grow without bound.
pub const MAX_PENDING_EVENTS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Open,
    /// `shutdown` is stopping everything: `apply` is ignored.
    ShuttingDown,
    /// Shut down, killed or forgotten: nothing is started and the state file is not written.
    Closed,
}

pub struct Entry {
    pub service: String,
    pub status: InstanceStatus,
    pub goal: watch::Sender<Goal>,
    pub task: Option<JoinHandle<()>>,
    /// Held from the first start until the instance is stopped, so no other instance takes it.
    pub port: Option<u16>,
    /// A job's task: its log outlives its assignment (`ebb logs JOB --task N` reads it later).
    pub keep_log: bool,
}

pub struct State {
    pub entries: BTreeMap<String, Entry>,
    pub records: BTreeMap<String, Record>,
    /// Bumped on every change of `records`, so the writer knows what is already on disk.
    pub records_version: u64,
    pub events: VecDeque<Event>,
    pub phase: Phase,
    pub background: Vec<JoinHandle<()>>,
}

impl State {
    /// Call after changing `records`, then wake the writer (`records_dirty`) or flush.
    pub fn touch_records(&mut self) {
        self.records_version = self.records_version.wrapping_add(1);
    }
}

pub struct Shared {
    pub config: SupervisorConfig,
    /// Marks this agent's processes and cgroups (`sweep.rs`).
    pub agent_id: String,
    pub cgroups: Cgroups,
    /// ebb's environment minus `EBB_*`, read once at start.
    pub inherited: Env,
    pub runtime: tokio::runtime::Handle,
    /// Origin of the health-check grid (see `monitor.rs`).
    pub epoch: tokio::time::Instant,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    writer: Writer,
    /// Wakes the state-file writer task (`tasks::spawn_state_writer`).
    pub records_dirty: Arc<Notify>,
    /// The latest usage sample (`usage.rs`); its own lock, so that sampling never waits on the
    /// state lock and heartbeats never wait on a sample.
    usage: Mutex<Latest>,
}

impl Drop for Shared {
    /// Lets the writer task see that the supervisor is gone and end.
    fn drop(&mut self) {
        self.records_dirty.notify_one();
    }
}

/// Wall-clock unix milliseconds: read only at the edges (event times, `started_ms`).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Shared {
    pub fn new(
        config: SupervisorConfig,
        cgroups: Cgroups,
        inherited: Env,
        runtime: tokio::runtime::Handle,
        agent_id: String,
    ) -> Shared {
        let state = State {
            entries: BTreeMap::new(),
            records: BTreeMap::new(),
            records_version: 0,
            events: VecDeque::new(),
            phase: Phase::Open,
            background: Vec::new(),
        };
        let writer = Writer::new(config.data_dir.join(state_file::STATE_FILE));
        Shared {
            config,
            agent_id,
            cgroups,
            inherited,
            runtime,
            epoch: tokio::time::Instant::now(),
            state: Mutex::new(state),
            changed: watch::channel(0).0,
            writer,
            records_dirty: Arc::new(Notify::new()),
            usage: Mutex::new(Latest::default()),
        }
    }

    /// The state; a panic elsewhere while holding it does not make every later call panic too.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn latest_usage(&self) -> Latest {
        self.usage
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set_usage(&self, latest: Latest) {
        *self.usage.lock().unwrap_or_else(PoisonError::into_inner) = latest;
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn log_dir(&self) -> PathBuf {
        self.config.data_dir.join("logs")
    }

    pub fn log_path(&self, service: &str, instance: &str) -> PathBuf {
        logs::log_path(&self.log_dir(), service, instance)
    }

    /// Changes one instance's status; wakes `changed()` watchers if it differs.
    pub fn update(&self, id: &str, f: impl FnOnce(&mut InstanceStatus)) {
        let modified = {
            let mut state = self.lock();
            let Some(entry) = state.entries.get_mut(id) else {
                return;
            };
            let before = entry.status.clone();
            f(&mut entry.status);
            entry.status != before
        };
        if modified {
            self.bump();
        }
    }

    pub fn status(&self, id: &str) -> Option<InstanceStatus> {
        self.lock().entries.get(id).map(|e| e.status.clone())
    }

    /// Records an event for the server and logs it.
    pub fn event(&self, kind: EventKind, service: &str, id: &str, message: String) {
        // The server logs every event it receives; the agent only traces it.
        tracing::debug!(service, instance = id, event = kind.as_str(), "{message}");
        let event = Event::new(now_ms(), kind, message)
            .service(service)
            .instance(id)
            .node(self.config.node.as_str());
        let mut state = self.lock();
        if state.events.len() >= MAX_PENDING_EVENTS {
            state.events.pop_front();
        }
        state.events.push_back(event);
        drop(state);
        self.bump();
    }

    /// Puts events back at the front, in their order, keeping at most [`MAX_PENDING_EVENTS`].
    pub fn requeue(&self, events: Vec<Event>) {
        let mut state = self.lock();
        for event in events.into_iter().rev() {
            state.events.push_front(event);
        }
        let excess = state.events.len().saturating_sub(MAX_PENDING_EVENTS);
        state.events.drain(..excess);
    }

    /// Sets (Some) or clears (None) the record of a running process; the state file follows
    /// shortly (the writer task), not before this returns. Writing it here, under the lock, cost
    /// one full rewrite and fsync per start, N² bytes for N starts, while every heartbeat waited.
    /// The gap is safe: a process started but not yet on disk when the agent dies is killed by
    /// the next agent's sweep (`sweep.rs`), and the next `apply` starts it again.
    /// False when the supervisor is closed: the caller must not keep a process it just started.
    pub fn set_record(&self, id: &str, record: Option<Record>) -> bool {
        let mut state = self.lock();
        if state.phase == Phase::Closed {
            return false;
        }
        match record {
            Some(r) => state.records.insert(id.to_string(), r),
            None => state.records.remove(id),
        };
        state.touch_records();
        drop(state);
        self.records_dirty.notify_one();
        true
    }

    /// Writes the current records now unless they are on disk already. Blocking; never call it
    /// while holding the state lock.
    pub fn flush_records(&self) {
        self.writer.write_if_changed(|| {
            let state = self.lock();
            (state.records_version, state.records.clone())
        });
    }

    /// State files written so far.
    pub fn state_writes(&self) -> u64 {
        self.writer.writes()
    }

    /// A port for `id` on the node's host: its previous one if still free, never another's.
    pub fn reserve_port(&self, id: &str, preferred: Option<u16>) -> io::Result<u16> {
        let mut state = self.lock();
        let in_use: BTreeSet<u16> = state
            .entries
            .iter()
            .filter(|(other, _)| other.as_str() != id)
            .filter_map(|(_, e)| e.port)
            .collect();
        let port = ports::allocate(&self.config.host, &in_use, preferred)?;
        if let Some(entry) = state.entries.get_mut(id) {
            entry.port = Some(port);
        }
        Ok(port)
    }

    pub fn release_port(&self, id: &str) {
        if let Some(entry) = self.lock().entries.get_mut(id) {
            entry.port = None;
        }
    }

    /// Forgets an instance whose assignment is gone, with its logs, unless it was assigned again
    /// meanwhile (then false: the runner carries on with the new goal).
    pub fn finish_removal(&self, id: &str) -> bool {
        let mut state = self.lock();
        let Some(entry) = state.entries.get(id) else {
            return true;
        };
        if !matches!(*entry.goal.borrow(), Goal::Remove) {
            return false;
        }
        let (service, keep_log) = (entry.service.clone(), entry.keep_log);
        state.entries.remove(id);
        if !keep_log {
            logs::remove_all(&self.log_path(&service, id));
        }
        drop(state);
        self.bump();
        true
    }

    /// Log files of every known instance, for rotation.
    pub fn log_paths(&self) -> Vec<PathBuf> {
        let state = self.lock();
        state
            .entries
            .iter()
            .map(|(id, e)| self.log_path(&e.service, id))
            .collect()
    }
}
