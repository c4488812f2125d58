//! Node liveness shared through etcd, one lease per node, as Kubernetes node leases do.
//!
//! An agent heartbeats to any server. That server renews the node's lease (granted on the
//! first heartbeat it sees, with the key `control/alive/{node}` attached), at most every
//! [`NODE_RENEW_EVERY`], and without holding up the heartbeat. The leader lists the keys to
//! learn which nodes some server heard from, so a leader change or an agent moving to another
//! server loses no liveness. A keep-alive is not a store write: an idle cluster writes nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::election::{grant, keep_alive};
use super::{EtcdStore, Inner};
use crate::{Expect, KvStore, Op, StoreError};

/// Where each live node's key is, under the store's namespace.
pub const ALIVE_PREFIX: &str = "control/alive/";

/// How long a node's key outlives the last heartbeat any server saw (etcd's shortest lease
/// with its default election timeout is about this anyway).
pub const NODE_LEASE_TTL: Duration = Duration::from_secs(2);

/// A node's lease is renewed at most this often, however often it heartbeats.
pub const NODE_RENEW_EVERY: Duration = Duration::from_millis(700);

/// One node's lease as this server holds it.
#[derive(Debug, Default)]
pub(crate) struct NodeLease {
    /// 0 until granted.
    lease: i64,
    renewed: Option<Instant>,
    /// When the key was last seen on this lease (checked once per [`NODE_LEASE_TTL`]).
    checked: Option<Instant>,
    /// A grant or renewal is under way.
    busy: bool,
}

/// The leases this server holds for the nodes that heartbeat to it.
pub(crate) type NodeLeases = std::sync::Mutex<HashMap<String, NodeLease>>;

impl EtcdStore {
    /// Node `name` heartbeated to this server: renew its lease soon, in the background.
    pub fn node_alive(&self, name: &str) {
        let now = Instant::now();
        {
            let mut leases = self.inner.node_leases();
            let lease = leases.entry(name.to_string()).or_default();
            let fresh = lease
                .renewed
                .is_some_and(|at| now.duration_since(at) < NODE_RENEW_EVERY);
            if lease.busy || fresh {
                return;
            }
            lease.busy = true;
        }
        let name = name.to_string();
        self.spawn(|inner| async move { renew(inner, name).await });
    }

    /// The nodes whose lease lives: some server heard from them within [`NODE_LEASE_TTL`].
    pub fn alive_nodes(&self) -> Result<Vec<String>, StoreError> {
        let (kvs, _) = self.list(ALIVE_PREFIX)?;
        Ok(kvs
            .into_iter()
            .filter_map(|kv| kv.key.strip_prefix(ALIVE_PREFIX).map(str::to_string))
            .collect())
    }
}

/// Renews (or first grants) node `name`'s lease.
async fn renew(inner: Arc<Inner>, name: String) {
    let (held, check_due) = inner.node_leases().get(&name).map_or((0, false), |l| {
        let due = l.checked.is_none_or(|at| at.elapsed() >= NODE_LEASE_TTL);
        (l.lease, due)
    });
    let outcome = if held != 0 {
        match keep_alive(&inner, held).await {
            Ok(true) if check_due => still_ours(&inner, &name, held).await,
            Ok(true) => Ok(held),
            Ok(false) => start(&inner, &name).await,
            Err(err) => Err(err),
        }
    } else {
        start(&inner, &name).await
    };
    let mut leases = inner.node_leases();
    let lease = leases.entry(name).or_default();
    lease.busy = false;
    match outcome {
        Ok(id) => {
            let now = Instant::now();
            if check_due || lease.lease != id {
                lease.checked = Some(now);
            }
            lease.lease = id;
            lease.renewed = Some(now);
        }
        Err(error) => tracing::debug!(%error, "renewing a node's lease failed"),
    }
}

/// The lease lives, but another server may have put the node's key on a lease of its own (the
/// agent moved there and back): then this one must put it again, or the key goes with the other
/// server's lease while this one renews a lease nothing is attached to. A read, no write.
async fn still_ours(inner: &Inner, name: &str, held: i64) -> Result<i64, StoreError> {
    let key = format!("{ALIVE_PREFIX}{name}");
    match inner.get_raw(&key, NODE_RENEW_EVERY).await? {
        Some(kv) if kv.lease == held => Ok(held),
        _ => {
            let op = Op::put(key, Vec::new(), Expect::Any);
            inner.txn_with_lease(vec![op], held).await?;
            Ok(held)
        }
    }
}

/// A new lease for node `name`, with its key attached.
async fn start(inner: &Inner, name: &str) -> Result<i64, StoreError> {
    let lease = grant(inner, NODE_LEASE_TTL).await?;
    let op = Op::put(format!("{ALIVE_PREFIX}{name}"), Vec::new(), Expect::Any);
    inner.txn_with_lease(vec![op], lease).await?;
    Ok(lease)
}
