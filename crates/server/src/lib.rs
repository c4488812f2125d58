//! ebb's control plane: the HTTP API, the service controller, node sync and the event log.
//!
//! The server keeps desired state (services) and assignments (instances) in a [`KvStore`];
//! agents sync their node's assignments and report status through the API, the same way
//! whether they run in this process (`ebb up`) or on another machine.
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod autoscale;
pub mod controller;
pub mod events;
pub mod keys;
pub mod maintenance;
pub mod nodes;
pub mod placed;
pub mod plane;
pub mod routing;
pub mod run_loop;
pub mod traffic;

use ebb_core::{Event, InstanceStatus};
use ebb_store::{KvStore, StoreError};
pub use plane::{ControlPlane, PlaneConfig, Stage};

use events::EventLog;
use nodes::NodeRegistry;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Where the server finds instance log files. In `ebb up` the local agent provides them.
pub trait LogSource: Send + Sync + 'static {
    /// Log files of an instance: rotated ones oldest first, then the current one.
    fn log_files(&self, instance: &str) -> Vec<PathBuf>;
}

/// The control plane's shared state; cheap to clone.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn KvStore>,
    token: String,
    /// The token agents join with (`join-token`); set by the roles that accept agents.
    join_token: std::sync::OnceLock<String>,
    events: EventLog,
    nodes: NodeRegistry,
    /// Last reported status per instance, mirrored from `status/` so that syncs only write changes.
    statuses: Mutex<HashMap<String, InstanceStatus>>,
    started: Instant,
    logs: Option<Arc<dyn LogSource>>,
    router: std::sync::OnceLock<routing::Router>,
    /// The autoscaler's last reason per service, for `ebb status` and `ebb ps`.
    autoscale_reasons: Mutex<HashMap<String, String>>,
    /// Why a service's instances could not all be placed, as last reported.
    pending: Mutex<HashMap<String, String>>,
    /// Each node's assignments, for agents' heartbeats and long-polls.
    placed: placed::PlacedIndex,
    /// Moves that ended since this server started, newest last (at most [`MOVES_KEPT`]), so
    /// that `ebb migrate` and `ebb drain` learn how a move ended however fast it went.
    moved: Mutex<std::collections::VecDeque<ebb_core::api::MigrationView>>,
}

/// How many ended moves the server remembers for `GET /v1/migrations`.
pub const MOVES_KEPT: usize = 256;

impl Server {
    pub fn new(
        store: Arc<dyn KvStore>,
        token: String,
        logs: Option<Arc<dyn LogSource>>,
    ) -> Result<Server, StoreError> {
        let statuses = keys::statuses(store.as_ref())?
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect();
        let events = EventLog::open(store.clone())?;
        let placed = placed::PlacedIndex::new(store.as_ref());
        Ok(Server {
            inner: Arc::new(Inner {
                store,
                token,
                join_token: std::sync::OnceLock::new(),
                events,
                nodes: NodeRegistry::default(),
                statuses: Mutex::new(statuses),
                started: Instant::now(),
                logs,
                router: std::sync::OnceLock::new(),
                autoscale_reasons: Mutex::new(HashMap::new()),
                pending: Mutex::new(HashMap::new()),
                placed,
                moved: Mutex::new(Default::default()),
            }),
        })
    }

    pub fn store(&self) -> &dyn KvStore {
        self.inner.store.as_ref()
    }

    pub fn token(&self) -> &str {
        &self.inner.token
    }

    /// Accepts agents that present `token` (the API token is always accepted too). Set once.
    pub fn set_join_token(&self, token: String) {
        let _ = self.inner.join_token.set(token);
    }

    /// The join token, if agents may join with one.
    pub fn join_token(&self) -> Option<&str> {
        self.inner.join_token.get().map(String::as_str)
    }

    /// Replaces the services that have unplaceable instances; returns those whose reason is
    /// new or changed (an event each, not one per controller pass).
    pub fn note_pending(
        &self,
        now: std::collections::BTreeMap<String, String>,
    ) -> Vec<(String, String)> {
        let mut pending = lock(&self.inner.pending);
        let changed = now
            .iter()
            .filter(|(service, why)| pending.get(*service) != Some(*why))
            .map(|(s, w)| (s.clone(), w.clone()))
            .collect();
        *pending = now.into_iter().collect();
        changed
    }

    /// Remembers moves that ended (the oldest are forgotten past [`MOVES_KEPT`]).
    pub(crate) fn note_moved(&self, ended: Vec<ebb_core::api::MigrationView>) {
        let mut moved = lock(&self.inner.moved);
        moved.extend(ended);
        let extra = moved.len().saturating_sub(MOVES_KEPT);
        moved.drain(..extra);
    }

    /// Moves that ended, oldest first.
    pub fn moved(&self) -> Vec<ebb_core::api::MigrationView> {
        lock(&self.inner.moved).iter().cloned().collect()
    }

    /// Why `service` has an instance no node could take, if it has.
    pub fn pending_reason(&self, service: &str) -> Option<String> {
        let pending = lock(&self.inner.pending);
        pending.get(service).cloned()
    }

    pub fn record(&self, event: Event) {
        self.inner.events.record(event);
    }

    /// Each node's assignments as of the latest store write (see [`placed`]).
    pub fn placed(&self) -> Result<Arc<placed::Placed>, StoreError> {
        self.inner.placed.get(self.store())
    }

    pub fn nodes(&self) -> &NodeRegistry {
        &self.inner.nodes
    }

    pub fn started(&self) -> Instant {
        self.inner.started
    }

    /// Puts a router in front of services with a public port (once; later calls are ignored).
    pub fn set_router(&self, router: routing::Router) {
        let _ = self.inner.router.set(router);
    }

    pub fn router(&self) -> Option<&routing::Router> {
        self.inner.router.get()
    }

    /// Replaces the autoscaler's last reasons (by service).
    pub fn set_autoscale_reasons(&self, reasons: HashMap<String, String>) {
        *lock(&self.inner.autoscale_reasons) = reasons;
    }

    /// The autoscaler's last reason for `service`, if it is autoscaled.
    pub fn autoscale_reason(&self, service: &str) -> Option<String> {
        lock(&self.inner.autoscale_reasons).get(service).cloned()
    }

    pub fn log_source(&self) -> Option<&Arc<dyn LogSource>> {
        self.inner.logs.as_ref()
    }

    /// A copy of the last reported statuses.
    pub fn statuses(&self) -> HashMap<String, InstanceStatus> {
        self.lock_statuses().clone()
    }

    fn lock_statuses(&self) -> std::sync::MutexGuard<'_, HashMap<String, InstanceStatus>> {
        lock(&self.inner.statuses)
    }
}

/// Wall-clock unix milliseconds, for records and events.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Server {
    /// Stores the reports that differ from the last ones, in one transaction.
    pub(crate) fn update_statuses(&self, reported: &[InstanceStatus]) -> Result<(), StoreError> {
        let changed: Vec<&InstanceStatus> = {
            let known = self.lock_statuses();
            reported
                .iter()
                .filter(|s| known.get(&s.id) != Some(*s))
                .collect()
        };
        if changed.is_empty() {
            return Ok(());
        }
        let ops = changed
            .iter()
            .map(|s| {
                ebb_store::Op::put(keys::status(&s.id), keys::encode(s), ebb_store::Expect::Any)
            })
            .collect();
        self.store().txn(ops)?;
        let mut known = self.lock_statuses();
        for s in changed {
            known.insert(s.id.clone(), s.clone());
        }
        Ok(())
    }

    pub fn record_all(&self, events: Vec<Event>) {
        self.inner.events.record_all(events);
    }

    pub(crate) fn forget_status(&self, id: &str) {
        self.lock_statuses().remove(id);
    }
}

/// Locks a mutex, taking the data of a poisoned one as it is: a panicked holder never left
/// these maps half-updated in a way that matters more than stopping the server would.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
