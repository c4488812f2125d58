//! ebb's control plane: the HTTP API, the service controller, node sync and the event log.
//!
//! The server keeps desired state (services) and assignments (instances) in a [`KvStore`];
//! agents sync their node's assignments and report status through the API, the same way
//! whether they run in this process (`ebb up`) or on another machine.

pub mod api;
pub mod api_tls;
pub mod auth;
pub mod controllers;
pub mod leadership;
pub mod plane;
pub mod routing;
pub mod run_loop;
pub mod state;
pub mod ui;

use ebb_core::{Event, InstanceStatus};
use ebb_store::{EtcdStore, Fence, FencedStore, KvStore, Leadership, StoreError};
pub use plane::{ControlPlane, PlaneConfig, Stage};

use state::events::EventLog;
use state::nodes::NodeRegistry;
use state::statuses::Statuses;
use state::{keys, placed};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The control plane's shared state; cheap to clone.
///
/// The store is beside the shared state, not in it: the leader's controllers run on a copy of
/// the server whose store fences every write ([`Server::fenced`]), while the API and the router
/// of the same process read and write unfenced.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
    store: Arc<dyn KvStore>,
}

/// Who this server is among the control plane's servers, for `ebb servers` and `ebb status`;
/// also its registry entry in etcd, as JSON.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    /// Its name (`ebb server --name`).
    pub name: String,
    /// Where its API listens.
    pub api: String,
    /// Where its load balancers listen.
    pub router: String,
}

struct Inner {
    token: String,
    /// The token agents join with (`join-token`); set by the roles that accept agents.
    join_token: std::sync::OnceLock<String>,
    events: EventLog,
    nodes: NodeRegistry,
    /// Last reported status per instance.
    statuses: Statuses,
    started: Instant,
    /// Log reads on their way to agents (`ebb logs`).
    log_relay: state::log_relay::LogRelay,
    router: std::sync::OnceLock<routing::Listeners>,
    /// The autoscaler's reports.
    autoscale_reasons: controllers::autoscale::Reasons,
    /// The other servers' load-balancer counters, for the autoscaler while this server leads.
    peer_load: routing::peers::PeerLoad,
    /// The servers seen in etcd's registry, with those that left.
    registry: state::servers::ServerRegistry,
    /// The instance controller's reports.
    instance_reports: controllers::instances::Reports,
    /// Counters for Prometheus that nothing else keeps.
    telemetry: state::telemetry::Telemetry,
    /// The last hour of instances against load, for the dashboard.
    history: state::history::History,
    /// The dashboard's one-time login codes and sessions.
    sessions: ui::sessions::Sessions,
    /// Open event streams (`GET /v1/events/stream`): bounded, and closed when the API stops.
    streams: api::StreamSlots,
    /// Each node's assignments, for agents' heartbeats and long-polls.
    placed: placed::PlacedIndex,
    /// The nodes' credential hashes, read from the store once per change.
    credentials: auth::CredentialCache,
    identity: std::sync::OnceLock<Identity>,
    /// The etcd cluster, when servers share one: node leases and the registry of servers.
    cluster: std::sync::OnceLock<Arc<EtcdStore>>,
    /// Who leads; alone on SQLite this server always does.
    leadership: std::sync::OnceLock<tokio::sync::watch::Receiver<Leadership>>,
    /// When this server last became the leader: node liveness counts from then, so a new
    /// leader gives every node a full down timeout.
    leading_since: std::sync::Mutex<Instant>,
}

impl Server {
    /// The server over `store`: loads the last reported statuses and opens the event log. `token`
    /// is the API token.
    pub fn new(store: Arc<dyn KvStore>, token: String) -> Result<Server, StoreError> {
        let statuses = Statuses::new(keys::statuses(store.as_ref())?);
        let events = EventLog::open(store.clone())?;
        let placed = placed::PlacedIndex::new(store.as_ref());
        let credentials = auth::CredentialCache::new(store.as_ref());
        Ok(Server {
            store,
            inner: Arc::new(Inner {
                token,
                join_token: std::sync::OnceLock::new(),
                events,
                nodes: NodeRegistry::default(),
                statuses,
                started: Instant::now(),
                log_relay: Default::default(),
                router: std::sync::OnceLock::new(),
                autoscale_reasons: Default::default(),
                peer_load: Default::default(),
                registry: Default::default(),
                telemetry: Default::default(),
                history: Default::default(),
                sessions: Default::default(),
                streams: Default::default(),
                instance_reports: Default::default(),
                placed,
                credentials,
                identity: std::sync::OnceLock::new(),
                cluster: std::sync::OnceLock::new(),
                leadership: std::sync::OnceLock::new(),
                leading_since: std::sync::Mutex::new(Instant::now()),
            }),
        })
    }

    /// The store holding services, assignments, statuses and events (see [`state::keys`]).
    pub fn store(&self) -> &dyn KvStore {
        self.store.as_ref()
    }

    /// This server with every write fenced on `fence`: what the leader's controllers run on.
    pub fn fenced(&self, fence: Fence) -> Server {
        Server {
            inner: Arc::clone(&self.inner),
            store: Arc::new(FencedStore::new(Arc::clone(&self.store), fence)),
        }
    }

    /// Names this server among the control plane's servers (once).
    pub fn set_identity(&self, identity: Identity) {
        let _ = self.inner.identity.set(identity);
    }

    /// Who this server is, if named.
    pub fn identity(&self) -> Option<&Identity> {
        self.inner.identity.get()
    }

    /// Shares node liveness and the registry of servers through `cluster` (once).
    pub fn set_cluster(&self, cluster: Arc<EtcdStore>) {
        let _ = self.inner.cluster.set(cluster);
    }

    /// The etcd cluster the servers share, if they do.
    pub fn cluster(&self) -> Option<&Arc<EtcdStore>> {
        self.inner.cluster.get()
    }

    /// Follows `leadership` (once); without it, this server leads alone.
    pub fn set_leadership(&self, leadership: tokio::sync::watch::Receiver<Leadership>) {
        let _ = self.inner.leadership.set(leadership);
    }

    /// The channel saying who leads, if this server is one of several.
    pub fn leadership_channel(&self) -> Option<tokio::sync::watch::Receiver<Leadership>> {
        self.inner.leadership.get().cloned()
    }

    /// Who leads, as this server knows it.
    pub fn leadership(&self) -> Leadership {
        match self.inner.leadership.get() {
            Some(rx) => rx.borrow().clone(),
            None => Leadership::Leading(None),
        }
    }

    /// This server starts leading now: node liveness counts from `now`.
    pub fn mark_leading(&self, now: Instant) {
        *lock(&self.inner.leading_since) = now;
    }

    /// Since when nodes are judged: the later of the server's start and its last becoming the
    /// leader. A node not heard from since then is down only a full timeout after it.
    pub fn liveness_since(&self) -> Instant {
        (*lock(&self.inner.leading_since)).max(self.inner.started)
    }

    /// The API token clients must present.
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

    /// The instance controller's reports (pending reasons, ended moves).
    pub fn instance_reports(&self) -> &controllers::instances::Reports {
        &self.inner.instance_reports
    }

    /// The servers seen in etcd's registry, with those that left (`ebb servers`).
    pub fn registry(&self) -> &state::servers::ServerRegistry {
        &self.inner.registry
    }

    /// The other servers' recent load-balancer counters (`POST /v1/traffic`).
    pub fn peer_load(&self) -> &routing::peers::PeerLoad {
        &self.inner.peer_load
    }

    /// The autoscaler's last reasons.
    pub fn autoscale_reasons(&self) -> &controllers::autoscale::Reasons {
        &self.inner.autoscale_reasons
    }

    /// Records an event; failures are logged, never returned.
    pub fn record(&self, event: Event) {
        self.inner.telemetry.events([&event]);
        self.inner.events.record(event);
    }

    /// Counters for Prometheus that nothing else keeps.
    pub fn telemetry(&self) -> &state::telemetry::Telemetry {
        &self.inner.telemetry
    }

    /// The last hour of instances against load (`GET /v1/history`).
    pub fn history(&self) -> &state::history::History {
        &self.inner.history
    }

    /// The dashboard's login codes and sessions.
    pub fn sessions(&self) -> &ui::sessions::Sessions {
        &self.inner.sessions
    }

    /// The open event streams' slots and their common end.
    pub fn streams(&self) -> &api::StreamSlots {
        &self.inner.streams
    }

    /// Each node's assignments as of the latest store write (see [`placed`]).
    pub fn placed(&self) -> Result<Arc<placed::Placed>, StoreError> {
        self.inner.placed.get(self.store())
    }

    /// Node `name`'s credential hash (None: it has not joined), from memory while no
    /// credential changed.
    pub fn credential_hash(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.inner.credentials.hash(self.store(), name)
    }

    /// Nodes heard from: heartbeats, usage and liveness, in memory.
    pub fn nodes(&self) -> &NodeRegistry {
        &self.inner.nodes
    }

    /// When this server was created, for uptime.
    pub fn started(&self) -> Instant {
        self.inner.started
    }

    /// Puts a router in front of services with a public port (once; later calls are ignored).
    pub fn set_router(&self, router: routing::Listeners) {
        let _ = self.inner.router.set(router);
    }

    /// The router in front of services with a public port; None until [`Server::set_router`].
    pub fn router(&self) -> Option<&routing::Listeners> {
        self.inner.router.get()
    }

    /// Log reads on their way to the agents that hold the files.
    pub fn log_relay(&self) -> &state::log_relay::LogRelay {
        &self.inner.log_relay
    }

    /// A copy of the last reported statuses.
    pub fn statuses(&self) -> HashMap<String, InstanceStatus> {
        self.inner.statuses.all()
    }

    /// The last reported statuses, as the server keeps them.
    pub(crate) fn statuses_cache(&self) -> &Statuses {
        &self.inner.statuses
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
        let changed = self.inner.statuses.changed(reported);
        if changed.is_empty() {
            return Ok(());
        }
        let ops = changed
            .iter()
            .map(|s| {
                ebb_store::Op::put(keys::status(&s.id), keys::encode(s), ebb_store::Expect::Any)
            })
            .collect();
        match self.store().txn(ops) {
            Ok(_) => {
                self.inner.statuses.remember(&changed);
                Ok(())
            }
            Err(e @ StoreError::Unavailable { .. }) => {
                // Static stability: the store is gone for now, not the instances' state.
                self.inner.statuses.remember_unwritten(&changed);
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Records events in one store transaction; failures are logged, never returned.
    pub fn record_all(&self, events: Vec<Event>) {
        self.inner.telemetry.events(&events);
        self.inner.events.record_all(events);
    }
}

/// Locks a mutex, taking the data of a poisoned one as it is: a panicked holder never left
/// these maps half-updated in a way that matters more than stopping the server would.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
