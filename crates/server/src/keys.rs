//! Where the control plane keeps things in the store, and typed access to them.
//!
//! | prefix | value | written by |
//! | --- | --- | --- |
//! | `services/{name}` | [`ServiceSpec`] | API (deploy, scale, stop) |
//! | `instances/{id}` | [`Assignment`]; its generation is the key's create revision | controller |
//! | `status/{id}` | [`InstanceStatus`] last reported by the node | node sync |
//! | `nodes/{name}` | [`NodeInfo`](ebb_core::api::NodeInfo) | node sync, when it changes |
//! | `drain/{id}` | [`DrainRecord`]: out of the load balancer, finishing in-flight requests | controller |
//! | `events/{n:020}` | [`Event`]; its `seq` is the key's revision | everyone, through [`crate::events::EventLog`] |

use ebb_core::{Assignment, InstanceStatus, ServiceSpec};
use ebb_store::{KeyValue, KvStore, StoreError};
use serde::de::DeserializeOwned;

pub const SERVICES: &str = "services/";
pub const INSTANCES: &str = "instances/";
pub const STATUS: &str = "status/";
pub const NODES: &str = "nodes/";
pub const EVENTS: &str = "events/";
pub const DRAINS: &str = "drain/";

pub fn drain(id: &str) -> String {
    format!("{DRAINS}{id}")
}

/// An instance taken out of its load balancer before it is stopped: it stops once its in-flight
/// requests are done or at `deadline_ms`, whichever is first.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DrainRecord {
    pub since_ms: u64,
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
                },
            ))
        })
        .collect()
}

pub fn service(name: &str) -> String {
    format!("{SERVICES}{name}")
}

pub fn instance(id: &str) -> String {
    format!("{INSTANCES}{id}")
}

pub fn status(id: &str) -> String {
    format!("{STATUS}{id}")
}

pub fn node(name: &str) -> String {
    format!("{NODES}{name}")
}

/// Decodes a stored JSON value, naming the key when it is corrupt.
pub fn decode<T: DeserializeOwned>(kv: &KeyValue) -> Result<T, StoreError> {
    serde_json::from_slice(&kv.value).map_err(|e| StoreError::Corrupt(format!("{}: {e}", kv.key)))
}

pub fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serializing our own plain data types cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// A stored value with the revision it was last written at (for compare-and-swap).
pub struct Versioned<T> {
    pub value: T,
    pub mod_revision: u64,
}

/// Every service spec, sorted by name.
pub fn services(store: &dyn KvStore) -> Result<Vec<Versioned<ServiceSpec>>, StoreError> {
    let (kvs, _) = store.list(SERVICES)?;
    kvs.iter()
        .map(|kv| {
            Ok(Versioned {
                value: decode(kv)?,
                mod_revision: kv.mod_revision,
            })
        })
        .collect()
}

/// Every node that ever joined, as it last described itself.
pub fn nodes(store: &dyn KvStore) -> Result<Vec<ebb_core::api::NodeInfo>, StoreError> {
    let (kvs, _) = store.list(NODES)?;
    kvs.iter().map(decode).collect()
}

pub fn get_service(
    store: &dyn KvStore,
    name: &str,
) -> Result<Option<Versioned<ServiceSpec>>, StoreError> {
    match store.get(&service(name))? {
        Some(kv) => Ok(Some(Versioned {
            value: decode(&kv)?,
            mod_revision: kv.mod_revision,
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
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok((list, revision))
}

pub fn statuses(store: &dyn KvStore) -> Result<Vec<InstanceStatus>, StoreError> {
    let (kvs, _) = store.list(STATUS)?;
    kvs.iter().map(decode).collect()
}
