//! Where the control plane keeps things in the store, and typed access to them.
//!
//! | prefix | value | written by |
//! | --- | --- | --- |
//! | `services/{name}` | [`ServiceSpec`] | API (deploy, scale, stop) |
//! | `instances/{id}` | [`Assignment`]; its generation is the key's create revision | controller |
//! | `status/{id}` | [`InstanceStatus`] last reported by the node | node sync |
//! | `nodes/{name}` | [`NodeInfo`](ebb_core::api::NodeInfo) | node sync, when it changes |
//! | `drain/{id}` | [`DrainRecord`]: out of the load balancer, finishing in-flight requests | controller |
//! | `node-credentials/{name}` | SHA-256 of the node's credential, hex ([`crate::auth::credential_hash`]) | API (`join`, `ebb nodes rm`) |
//! | `node-drains/{name}` | [`NodeDrain`]: the node takes nothing new, its instances move | API (`ebb drain`) |
//! | `migrations/{id}` | [`Migration`]: the instance is replaced elsewhere, then stopped | API (`ebb migrate`), controller (drains) |
//! | `jobs/{name}` | [`JobRecord`]: the spec, its run, cancelled or not | API (deploy, `ebb run`, `ebb cancel`) |
//! | `job-progress/{name}` | [`JobProgress`]: started, finished and how | controller |
//! | `tasks/{job}/{index:07}` | [`TaskRecord`] of a task that ended or waits to run again | controller |
//! | `queues/{name}` | [`QueueSpec`] | API (deploy) |
//! | `autoscale-history/{service}/{day}` | one UTC day of the autoscaler's per-minute history, for its forecast ([`crate::controllers::forecast_history`]) | autoscaler |
//! | `autoscale-gaps/{service}` | the idle gaps, dips and start times learned from the past ([`crate::controllers::learned`]) | autoscaler |
//! | `autoscale-window/{service}/{block}` | one 90 s block of the service's recent load: samples and steady-hour summaries ([`crate::controllers::recent_load`]) | autoscaler |
//! | `events/{n:020}` | [`Event`](ebb_core::Event); its `seq` is the key's revision | everyone, through [`crate::state::events::EventLog`] |

use ebb_core::{
    Assignment, InstanceStatus, JobProgress, JobRecord, QueueSpec, ServiceSpec, TaskRecord,
};
use ebb_store::{KeyValue, KvStore, StoreError};
use serde::de::DeserializeOwned;

/// Prefix of service specs, by name.
pub const SERVICES: &str = "services/";
/// Prefix of assignments, by instance id.
pub const INSTANCES: &str = "instances/";
/// Prefix of last reported instance statuses, by instance id.
pub const STATUS: &str = "status/";
/// Prefix of node descriptions, by node name.
pub const NODES: &str = "nodes/";
/// Prefix of events, by zero-padded sequence number.
pub const EVENTS: &str = "events/";
/// Prefix of drain records, by instance id.
pub const DRAINS: &str = "drain/";
/// Prefix of node credential hashes, by node name.
pub const NODE_CREDENTIALS: &str = "node-credentials/";
/// Prefix of node drains, by node name.
pub const NODE_DRAINS: &str = "node-drains/";
/// Prefix of migrations, by instance id.
pub const MIGRATIONS: &str = "migrations/";

/// Prefix of job records, by job name.
pub const JOBS: &str = "jobs/";
/// Prefix of job progress, by job name.
pub const JOB_PROGRESS: &str = "job-progress/";
/// Prefix of task records, by job name and zero-padded index.
pub const TASKS: &str = "tasks/";
/// Prefix of queues, by name.
pub const QUEUES: &str = "queues/";

/// Prefix of the autoscaler's kept history, by service and day.
pub const AUTOSCALE_HISTORY: &str = "autoscale-history/";

/// Prefix of what the autoscaler learned from each service's past (idle gaps, dips, start
/// times; [`crate::controllers::learned`]), by service. Named for the idle gaps, which it held
/// first.
pub const AUTOSCALE_GAPS: &str = "autoscale-gaps/";

/// Prefix of each service's recent load, by service and 90 s block.
pub const AUTOSCALE_WINDOW: &str = "autoscale-window/";

/// The prefix of `service`'s kept recent load.
pub fn autoscale_window_prefix(service: &str) -> String {
    format!("{AUTOSCALE_WINDOW}{service}/")
}

/// The key of what `service`'s autoscaler learned from its past.
pub fn autoscale_gaps(service: &str) -> String {
    format!("{AUTOSCALE_GAPS}{service}")
}

/// The prefix of `service`'s kept history.
pub fn autoscale_history_prefix(service: &str) -> String {
    format!("{AUTOSCALE_HISTORY}{service}/")
}

/// The key of `service`'s kept history of `day` (days since the Unix epoch, UTC).
pub fn autoscale_history(service: &str, day: i64) -> String {
    format!("{AUTOSCALE_HISTORY}{service}/{day}")
}

/// The key of job `name`'s [`JobRecord`].
pub fn job(name: &str) -> String {
    format!("{JOBS}{name}")
}

/// The key of job `name`'s [`JobProgress`].
pub fn job_progress(name: &str) -> String {
    format!("{JOB_PROGRESS}{name}")
}

/// The prefix of job `name`'s task records.
pub fn job_tasks(name: &str) -> String {
    format!("{TASKS}{name}/")
}

/// The key of task `index` of job `name` (zero-padded, so that they list in index order).
pub fn task(name: &str, index: u32) -> String {
    format!("{TASKS}{name}/{index:07}")
}

/// The key of queue `name`.
pub fn queue(name: &str) -> String {
    format!("{QUEUES}{name}")
}

/// Every job record, by name.
pub fn jobs(
    store: &dyn KvStore,
) -> Result<std::collections::BTreeMap<String, Versioned<JobRecord>>, StoreError> {
    by_suffix(store, JOBS)
}

/// Every job's progress, by name.
pub fn jobs_progress(
    store: &dyn KvStore,
) -> Result<std::collections::BTreeMap<String, Versioned<JobProgress>>, StoreError> {
    by_suffix(store, JOB_PROGRESS)
}

/// Every queue, by name.
pub fn queues(
    store: &dyn KvStore,
) -> Result<std::collections::BTreeMap<String, QueueSpec>, StoreError> {
    Ok(by_suffix(store, QUEUES)?
        .into_iter()
        .map(|(k, v)| (k, v.value))
        .collect())
}

/// Every task record under `prefix` (all jobs' with [`TASKS`], one job's with [`job_tasks`]).
pub fn task_records(store: &dyn KvStore, prefix: &str) -> Result<Vec<TaskRecord>, StoreError> {
    let (kvs, _) = store.list(prefix)?;
    kvs.iter().map(decode).collect()
}

/// The key of node `name`'s credential hash.
pub fn node_credential(name: &str) -> String {
    format!("{NODE_CREDENTIALS}{name}")
}

/// The key of node `name`'s [`NodeDrain`].
pub fn node_drain(name: &str) -> String {
    format!("{NODE_DRAINS}{name}")
}

/// The key of instance `id`'s [`Migration`].
pub fn migration(id: &str) -> String {
    format!("{MIGRATIONS}{id}")
}

/// A node in drain (`ebb drain`): it takes no new instances and the controller moves its
/// instances one at a time; at `deadline_ms` what is left is stopped.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeDrain {
    /// Unix milliseconds when the drain began; draining the node again keeps it.
    pub since_ms: u64,
    /// Unix milliseconds at which the instances still serving on the node are stopped.
    pub deadline_ms: u64,
    /// When nothing was left on the node (the drain is over; the node stays out of service).
    #[serde(default)]
    pub done_ms: Option<u64>,
}

/// An instance being moved off its node, start-before-stop. The record lives until the
/// instance is forgotten (stopped and gone).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Migration {
    /// The instance's service.
    pub service: String,
    /// The node it moves from (its node when the move began).
    pub from: String,
    /// The node its replacement must land on; None: the scheduler's choice (never `from`).
    #[serde(default)]
    pub to: Option<String>,
    /// Started by the drain of `from` (undone by `ebb undrain`), not by `ebb migrate`.
    #[serde(default)]
    pub by_drain: bool,
    /// A restart in place (`ebb restart INSTANCE`): the replacement may land on any node that
    /// fits, `from` included.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restart: bool,
    /// Unix milliseconds when the move began.
    pub since_ms: u64,
    /// The instance created in its place, once created.
    #[serde(default)]
    pub replacement: Option<String>,
}

impl Migration {
    /// Why the instance moves, in words.
    pub fn reason(&self) -> String {
        if self.by_drain {
            format!("drain of node {}", self.from)
        } else if self.restart {
            "ebb restart".to_string()
        } else {
            "ebb migrate".to_string()
        }
    }
}

/// Every value under `prefix`, by the rest of its key, with its revision.
fn by_suffix<T: DeserializeOwned>(
    store: &dyn KvStore,
    prefix: &str,
) -> Result<std::collections::BTreeMap<String, Versioned<T>>, StoreError> {
    let (kvs, _) = store.list(prefix)?;
    kvs.iter()
        .map(|kv| {
            Ok((
                kv.key[prefix.len()..].to_string(),
                Versioned {
                    value: decode(kv)?,
                    mod_revision: kv.mod_revision,
                    create_revision: kv.create_revision,
                },
            ))
        })
        .collect()
}

/// Nodes in drain, by node name.
pub fn node_drains(
    store: &dyn KvStore,
) -> Result<std::collections::BTreeMap<String, Versioned<NodeDrain>>, StoreError> {
    by_suffix(store, NODE_DRAINS)
}

/// Migrations in progress, by instance id.
pub fn migrations(
    store: &dyn KvStore,
) -> Result<std::collections::BTreeMap<String, Versioned<Migration>>, StoreError> {
    by_suffix(store, MIGRATIONS)
}

/// The key of instance `id`'s [`DrainRecord`].
pub fn drain(id: &str) -> String {
    format!("{DRAINS}{id}")
}

/// An instance taken out of its load balancer before it is stopped: it stops once its in-flight
/// requests are done or at `deadline_ms`, whichever is first.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DrainRecord {
    /// Unix milliseconds when it left the load balancer.
    pub since_ms: u64,
    /// Unix milliseconds at which it stops even with requests in flight: `since_ms` plus the
    /// service's `balance.drain`.
    pub deadline_ms: u64,
    /// Why it is being stopped (`scale in`, `replaced by a newer version`, ...).
    pub reason: String,
}

/// Drains in progress, by instance id.
pub fn drains(
    store: &dyn KvStore,
) -> Result<std::collections::HashMap<String, Versioned<DrainRecord>>, StoreError> {
    let (kvs, _) = store.list(DRAINS)?;
    kvs.iter()
        .map(|kv| {
            let id = kv.key[DRAINS.len()..].to_string();
            Ok((
                id,
                Versioned {
                    value: decode(kv)?,
                    mod_revision: kv.mod_revision,
                    create_revision: kv.create_revision,
                },
            ))
        })
        .collect()
}

/// The key of service `name`'s spec.
pub fn service(name: &str) -> String {
    format!("{SERVICES}{name}")
}

/// The key of instance `id`'s assignment.
pub fn instance(id: &str) -> String {
    format!("{INSTANCES}{id}")
}

/// The key of instance `id`'s last reported status.
pub fn status(id: &str) -> String {
    format!("{STATUS}{id}")
}

/// The key of node `name`'s description.
pub fn node(name: &str) -> String {
    format!("{NODES}{name}")
}

/// Decodes a stored JSON value, naming the key when it is corrupt.
pub fn decode<T: DeserializeOwned>(kv: &KeyValue) -> Result<T, StoreError> {
    serde_json::from_slice(&kv.value).map_err(|e| StoreError::Corrupt(format!("{}: {e}", kv.key)))
}

/// The JSON a value is stored as.
pub fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serializing our own plain data types cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// A stored value with the revision it was last written at (for compare-and-swap).
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    /// The decoded value.
    pub value: T,
    /// The store revision of its last write, to make the next write conditional on.
    pub mod_revision: u64,
    /// The store revision that created this incarnation of the key: a key deleted and written
    /// again (a service deleted and re-deployed under its name) has a new one, an update keeps
    /// it. What is kept about a service's past (its autoscaler's learned history) is stamped
    /// with it, so that a new service of the same name does not inherit it.
    pub create_revision: u64,
}

/// Every service spec, sorted by name.
pub fn services(store: &dyn KvStore) -> Result<Vec<Versioned<ServiceSpec>>, StoreError> {
    let (kvs, _) = store.list(SERVICES)?;
    kvs.iter()
        .map(|kv| {
            Ok(Versioned {
                value: decode(kv)?,
                mod_revision: kv.mod_revision,
                create_revision: kv.create_revision,
            })
        })
        .collect()
}

/// Every node that ever joined, as it last described itself.
pub fn nodes(store: &dyn KvStore) -> Result<Vec<ebb_core::api::NodeInfo>, StoreError> {
    let (kvs, _) = store.list(NODES)?;
    kvs.iter().map(decode).collect()
}

/// Service `name`'s spec; None if there is no such service.
pub fn get_service(
    store: &dyn KvStore,
    name: &str,
) -> Result<Option<Versioned<ServiceSpec>>, StoreError> {
    match store.get(&service(name))? {
        Some(kv) => Ok(Some(Versioned {
            value: decode(&kv)?,
            mod_revision: kv.mod_revision,
            create_revision: kv.create_revision,
        })),
        None => Ok(None),
    }
}

/// Every assignment, with its generation filled in from the key's create revision.
pub fn assignments(store: &dyn KvStore) -> Result<(Vec<Versioned<Assignment>>, u64), StoreError> {
    let (kvs, revision) = store.list(INSTANCES)?;
    let list = kvs
        .iter()
        .map(|kv| {
            let mut a: Assignment = decode(kv)?;
            a.generation = kv.create_revision;
            Ok(Versioned {
                value: a,
                mod_revision: kv.mod_revision,
                create_revision: kv.create_revision,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok((list, revision))
}

/// Every instance's last reported status.
pub fn statuses(store: &dyn KvStore) -> Result<Vec<InstanceStatus>, StoreError> {
    let (kvs, _) = store.list(STATUS)?;
    kvs.iter().map(decode).collect()
}
