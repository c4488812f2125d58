//! The highly available backend: the same [`KvStore`] on an etcd cluster.
//!
//! etcd already *is* this data model (revisions, `create_revision`/`mod_revision`, compare in
//! a transaction, watch from a revision, compaction), so each call maps onto one etcd request:
//!
//! - `get`/`list`/`revision`: a range request; `put`/`delete`/`txn`: one etcd transaction whose
//!   compares are the ops' [`Expect`]s (`Absent` is "create revision 0") and whose failure
//!   branch reads the keys back, to say which condition failed and what the key holds.
//! - `changes_since`/`subscribe`: one watch on the store's namespace, open for the store's
//!   life, feeds a bounded `history::History` in memory and a revision channel. The watch is
//!   re-opened from the last revision it delivered whenever its stream ends or goes silent
//!   (etcd's client streams do not reconnect by themselves), on the next member.
//! - Every key lives under a namespace (`ebb/` by default), so one etcd cluster can hold
//!   other data, or several ebb clusters.
//!
//! The gRPC calls run on the store's own runtime (one thread), so that a synchronous caller can
//! wait for them from anywhere: a controller pass, an API handler, a test's current-thread
//! runtime. [`members`] handles timeouts and failing over between members. Leases, leader
//! election and the registry of servers are in [`election`].

pub mod election;
mod history;
pub mod members;
pub mod nodes;
mod pb;
mod watcher;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::runtime::Runtime;
use tokio::sync::watch;

use crate::{Expect, KeyValue, KvStore, Op, StoreError, WatchEvent};
use history::History;
use members::{Members, MAX_MESSAGE_BYTES};
use pb::etcdserverpb as rpc;
use pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use pb::etcdserverpb::kv_client::KvClient;
use pb::etcdserverpb::request_op::Request;
use pb::etcdserverpb::response_op::Response;

pub use history::{HISTORY_BYTES, HISTORY_EVENTS};

/// The namespace ebb's keys live under in etcd unless told otherwise.
pub const DEFAULT_NAMESPACE: &str = "ebb/";

/// A [`KvStore`] on an etcd cluster.
pub struct EtcdStore {
    inner: Arc<Inner>,
    /// The store's own runtime; shut down in the background on drop (a drop may happen on an
    /// async worker, where a blocking shutdown is not allowed).
    runtime: Option<Runtime>,
}

/// What the store's tasks share.
pub(crate) struct Inner {
    pub(crate) members: Members,
    /// Prefix of every key in etcd, e.g. `ebb/`.
    namespace: String,
    history: Mutex<History>,
    /// The latest revision the watch delivered; subscribers wake on every change.
    notify: watch::Sender<u64>,
    /// The latest revision this store wrote: `changes_since` waits (at most one call timeout)
    /// for the watch to reach it, so that a caller reads its own writes.
    written: AtomicU64,
    /// The nodes that heartbeat to this server and their keys ([`nodes`]).
    node_keys: Mutex<nodes::NodeKeys>,
    /// Wakes the node keys' sweeper when a node is heard here for the first time.
    node_heard: tokio::sync::Notify,
    /// The live nodes' keys, kept from the watch ([`nodes`]).
    alive_keys: Mutex<nodes::AliveKeys>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("members", &self.inner.members.addrs())
            .field("namespace", &self.inner.namespace)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects to the etcd cluster at `addrs` (`host:port` each) with ebb's keys under
    /// `namespace`, reads its revision and starts watching. Fails as
    /// [`StoreError::Unavailable`] if no member answers.
    pub fn connect(addrs: &[String], namespace: &str) -> Result<EtcdStore, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ebb-etcd")
            .enable_all()
            .build()?;
        // Channels start their connection tasks on the runtime they are made in.
        let members = {
            let _context = runtime.enter();
            Members::new(addrs)?
        };
        let (notify, _) = watch::channel(0);
        let inner = Arc::new(Inner {
            members,
            namespace: namespace.to_string(),
            history: Mutex::new(History::starting_at(0, HISTORY_EVENTS, HISTORY_BYTES)),
            notify,
            written: AtomicU64::new(0),
            node_keys: Default::default(),
            node_heard: tokio::sync::Notify::new(),
            alive_keys: Default::default(),
        });
        let store = EtcdStore {
            inner,
            runtime: Some(runtime),
        };
        let revision = store.run(|inner| async move { inner.revision().await })?;
        *store.inner.history() = History::starting_at(revision, HISTORY_EVENTS, HISTORY_BYTES);
        store.inner.notify.send_replace(revision);
        store.spawn(watcher::run);
        tracing::debug!(store = %store.describe(), revision, "connected to etcd");
        Ok(store)
    }

    /// Parses `etcd://HOST:PORT[,HOST:PORT...]` into member addresses.
    pub fn parse_url(url: &str) -> Result<Vec<String>, StoreError> {
        let Some(rest) = url.strip_prefix("etcd://") else {
            return Err(StoreError::Config(format!(
                "`{url}` is not an etcd URL: expected etcd://HOST:PORT[,HOST:PORT...]"
            )));
        };
        let addrs: Vec<String> = rest
            .trim_end_matches('/')
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect();
        if addrs.is_empty() {
            return Err(StoreError::Config(format!(
                "`{url}` names no etcd member: expected etcd://HOST:PORT[,HOST:PORT...]"
            )));
        }
        for addr in &addrs {
            let port = addr.rsplit_once(':').map(|(_, port)| port);
            if port.and_then(|p| p.parse::<u16>().ok()).is_none() {
                return Err(StoreError::Config(format!(
                    "etcd member `{addr}` in `{url}` has no port: write HOST:PORT, e.g. {addr}:2379"
                )));
            }
        }
        Ok(addrs)
    }

    /// Runs `work` on the store's runtime and waits for it, off the caller's async workers.
    fn run<T, F, Fut>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Inner>) -> Fut,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let Some(runtime) = &self.runtime else {
            return Err(self.inner.gone());
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let future = work(Arc::clone(&self.inner));
        runtime.spawn(async move {
            let _ = tx.send(future.await);
        });
        crate::blocking::off_async_workers(|| rx.recv()).unwrap_or_else(|_| Err(self.inner.gone()))
    }

    /// Starts a task of the store's on its runtime; it ends with the store.
    fn spawn<F, Fut>(&self, task: F)
    where
        F: FnOnce(Arc<Inner>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if let Some(runtime) = &self.runtime {
            runtime.spawn(task(Arc::clone(&self.inner)));
        }
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

// === impl KvStore ===

impl KvStore for EtcdStore {
    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let key = key.to_string();
        self.run(|inner| async move { inner.get(&key).await })
    }

    fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, u64), StoreError> {
        let prefix = prefix.to_string();
        self.run(|inner| async move { inner.list(&prefix).await })
    }

    fn list_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let prefix = prefix.to_string();
        self.run(|inner| async move { inner.list_keys(&prefix).await })
    }

    fn put(&self, key: &str, value: &[u8], expect: Expect) -> Result<u64, StoreError> {
        let op = Op::put(key, value, expect);
        self.run(|inner| async move { inner.txn(vec![op]).await.map(|(rev, _)| rev) })
    }

    fn delete(&self, key: &str, expect: Expect) -> Result<Option<u64>, StoreError> {
        let op = Op::delete(key, expect);
        self.run(|inner| async move {
            let (revision, deleted) = inner.txn(vec![op]).await?;
            Ok((deleted > 0).then_some(revision))
        })
    }

    fn txn(&self, ops: Vec<Op>) -> Result<u64, StoreError> {
        crate::sqlite::refuse_duplicate_keys(&ops)?;
        self.run(|inner| async move { inner.txn(ops).await.map(|(rev, _)| rev) })
    }

    fn revision(&self) -> Result<u64, StoreError> {
        self.run(|inner| async move { inner.revision().await })
    }

    fn changes_since(
        &self,
        prefix: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<WatchEvent>, StoreError> {
        let prefix = prefix.to_string();
        self.run(|inner| async move {
            inner.caught_up().await;
            inner.history().read(&prefix, after, limit)
        })
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.notify.subscribe()
    }

    fn compact(&self, revision: u64) -> Result<(), StoreError> {
        self.run(|inner| async move { inner.compact(revision).await })
    }

    fn describe(&self) -> String {
        self.inner.members.describe()
    }

    fn max_txn_ops(&self) -> usize {
        crate::ETCD_MAX_TXN_OPS
    }

    fn health(&self) -> Result<String, StoreError> {
        self.run(|inner| async move { inner.health().await })
    }
}

// === the calls ===

impl Inner {
    fn history(&self) -> MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn alive_keys(&self) -> MutexGuard<'_, nodes::AliveKeys> {
        self.alive_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn node_keys(&self) -> MutexGuard<'_, nodes::NodeKeys> {
        self.node_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The error of a call made while the store shuts down.
    fn gone(&self) -> StoreError {
        StoreError::Unavailable {
            store: self.members.describe(),
            message: "the store is shutting down".into(),
        }
    }

    /// `key` as etcd stores it: under the namespace.
    fn full(&self, key: &str) -> Vec<u8> {
        format!("{}{key}", self.namespace).into_bytes()
    }

    /// A stored key without the namespace, or `None` for a key outside it (or not UTF-8).
    fn local(&self, key: &[u8]) -> Option<String> {
        let key = std::str::from_utf8(key).ok()?;
        key.strip_prefix(&self.namespace).map(str::to_string)
    }

    fn kv_client(channel: tonic::transport::Channel) -> KvClient<tonic::transport::Channel> {
        KvClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub(crate) fn key_value(&self, kv: pb::mvccpb::KeyValue) -> Option<KeyValue> {
        Some(KeyValue {
            key: self.local(&kv.key)?,
            value: kv.value,
            create_revision: revision(kv.create_revision),
            mod_revision: revision(kv.mod_revision),
        })
    }

    async fn range(&self, request: rpc::RangeRequest) -> Result<rpc::RangeResponse, StoreError> {
        self.range_within(request, members::CALL_TIMEOUT).await
    }

    /// A range request, each member given `timeout`.
    async fn range_within(
        &self,
        request: rpc::RangeRequest,
        timeout: std::time::Duration,
    ) -> Result<rpc::RangeResponse, StoreError> {
        self.members
            .call_within(timeout, |channel| {
                let request = request.clone();
                async move {
                    let mut client = Inner::kv_client(channel);
                    client.range(request).await.map(tonic::Response::into_inner)
                }
            })
            .await
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let request = rpc::RangeRequest {
            key: self.full(key),
            ..Default::default()
        };
        let answer = self.range(request).await?;
        Ok(answer
            .kvs
            .into_iter()
            .next()
            .and_then(|kv| self.key_value(kv)))
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, u64), StoreError> {
        let key = self.full(prefix);
        let request = rpc::RangeRequest {
            range_end: prefix_end(&key),
            key,
            ..Default::default()
        };
        let answer = self.range(request).await?;
        let revision = header_revision(answer.header.as_ref());
        let kvs = answer
            .kvs
            .into_iter()
            .filter_map(|kv| self.key_value(kv))
            .collect();
        Ok((kvs, revision))
    }

    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let key = self.full(prefix);
        let request = rpc::RangeRequest {
            range_end: prefix_end(&key),
            key,
            keys_only: true,
            ..Default::default()
        };
        let answer = self.range(request).await?;
        Ok(answer
            .kvs
            .into_iter()
            .filter_map(|kv| self.local(&kv.key))
            .collect())
    }

    /// `key`'s live value as etcd holds it, with the lease it is attached to, each member given
    /// `timeout`.
    pub(crate) async fn get_raw(
        &self,
        key: &str,
        timeout: std::time::Duration,
    ) -> Result<Option<pb::mvccpb::KeyValue>, StoreError> {
        let request = rpc::RangeRequest {
            key: self.full(key),
            ..Default::default()
        };
        let answer = self.range_within(request, timeout).await?;
        Ok(answer.kvs.into_iter().next())
    }

    pub(crate) async fn revision(&self) -> Result<u64, StoreError> {
        // Any read's header carries the store's revision: the cheapest is one key (the
        // namespace's own name, which holds nothing), counted, not read.
        let request = rpc::RangeRequest {
            key: self.full(""),
            count_only: true,
            ..Default::default()
        };
        let answer = self.range(request).await?;
        Ok(header_revision(answer.header.as_ref()))
    }

    /// Runs `ops` as one etcd transaction; returns its revision and how many keys it deleted.
    async fn txn(&self, ops: Vec<Op>) -> Result<(u64, i64), StoreError> {
        self.txn_with_lease(ops, 0).await
    }

    /// [`Inner::txn`], with every put attached to `lease` (0: none).
    pub(crate) async fn txn_with_lease(
        &self,
        ops: Vec<Op>,
        lease: i64,
    ) -> Result<(u64, i64), StoreError> {
        self.txn_within(ops, lease, members::CALL_TIMEOUT).await
    }

    /// [`Inner::txn_with_lease`], each member given `timeout`.
    pub(crate) async fn txn_within(
        &self,
        ops: Vec<Op>,
        lease: i64,
        timeout: std::time::Duration,
    ) -> Result<(u64, i64), StoreError> {
        let request = self.txn_request(&ops, lease);
        let answer = self
            .members
            .call_within(timeout, |channel| {
                let request = request.clone();
                async move {
                    let mut client = Inner::kv_client(channel);
                    client.txn(request).await.map(tonic::Response::into_inner)
                }
            })
            .await?;
        let revision = header_revision(answer.header.as_ref());
        if !answer.succeeded {
            return Err(self.conflict(&ops, answer.responses));
        }
        let deleted = answer
            .responses
            .iter()
            .filter_map(|r| match &r.response {
                Some(Response::ResponseDeleteRange(d)) => Some(d.deleted),
                _ => None,
            })
            .sum();
        // Only a change the watch will deliver: a delete of an absent key changes nothing.
        if ops.iter().any(|op| matches!(op, Op::Put { .. })) || deleted > 0 {
            self.written.fetch_max(revision, Ordering::Relaxed);
        }
        Ok((revision, deleted))
    }

    /// The etcd transaction for `ops`: a compare per condition, the writes on success, and on
    /// failure a read of every conditioned key (to report which one failed).
    fn txn_request(&self, ops: &[Op], lease: i64) -> rpc::TxnRequest {
        let conditioned: Vec<&Op> = ops.iter().filter(|op| op.expect() != Expect::Any).collect();
        let compare = conditioned
            .iter()
            .map(|op| compare(self.full(op.key()), op.expect()))
            .collect();
        let success = ops
            .iter()
            .filter_map(|op| match op {
                Op::Put { key, value, .. } => Some(Request::RequestPut(rpc::PutRequest {
                    key: self.full(key),
                    value: value.clone(),
                    lease,
                    ..Default::default()
                })),
                Op::Delete { key, .. } => {
                    Some(Request::RequestDeleteRange(rpc::DeleteRangeRequest {
                        key: self.full(key),
                        ..Default::default()
                    }))
                }
                Op::Check { .. } => None,
            })
            .map(|request| rpc::RequestOp {
                request: Some(request),
            })
            .collect();
        let failure = conditioned
            .iter()
            .map(|op| rpc::RequestOp {
                request: Some(Request::RequestRange(rpc::RangeRequest {
                    key: self.full(op.key()),
                    ..Default::default()
                })),
            })
            .collect();
        rpc::TxnRequest {
            compare,
            success,
            failure,
        }
    }

    /// The first condition of `ops` that the keys read back in `responses` break.
    fn conflict(&self, ops: &[Op], responses: Vec<rpc::ResponseOp>) -> StoreError {
        let conditioned = ops.iter().filter(|op| op.expect() != Expect::Any);
        for (op, response) in conditioned.zip(responses) {
            let actual = match response.response {
                Some(Response::ResponseRange(range)) => {
                    range.kvs.first().map(|kv| revision(kv.mod_revision))
                }
                _ => None,
            };
            let holds = match op.expect() {
                Expect::Any => true,
                Expect::Absent => actual.is_none(),
                Expect::ModRevision(rev) => actual == Some(rev),
            };
            if !holds {
                return StoreError::Conflict {
                    key: op.key().to_string(),
                    expected: op.expect().to_string(),
                    actual,
                };
            }
        }
        // The keys changed again between the compare and the read; still a conflict.
        let first = ops.iter().find(|op| op.expect() != Expect::Any);
        StoreError::Conflict {
            key: first.map_or_else(String::new, |op| op.key().to_string()),
            expected: first.map_or_else(String::new, |op| op.expect().to_string()),
            actual: None,
        }
    }

    /// Waits (at most one call timeout) until the watch has delivered this store's own writes.
    pub(crate) async fn caught_up(&self) {
        let target = self.written.load(Ordering::Relaxed);
        let mut revisions = self.notify.subscribe();
        let reached = revisions.wait_for(|watched| *watched >= target);
        let _ = tokio::time::timeout(members::CALL_TIMEOUT, reached).await;
    }

    async fn compact(&self, revision: u64) -> Result<(), StoreError> {
        let target = revision.min(self.revision().await?);
        if target == 0 {
            return Ok(());
        }
        let request = rpc::CompactionRequest {
            revision: target as i64,
            physical: false,
        };
        let answer = self
            .members
            .call(|channel| async move {
                let mut client = Inner::kv_client(channel);
                client
                    .compact(request)
                    .await
                    .map(tonic::Response::into_inner)
            })
            .await;
        match answer {
            Ok(_) => {}
            // Already compacted at or past it: what was asked holds.
            Err(StoreError::Etcd(message)) if message.contains("compacted") => {}
            Err(err) => return Err(err),
        }
        self.history().forget_before(target);
        Ok(())
    }

    async fn health(&self) -> Result<String, StoreError> {
        use pb::etcdserverpb::cluster_client::ClusterClient;
        use pb::etcdserverpb::maintenance_client::MaintenanceClient;
        let list = self
            .members
            .call(|channel| async move {
                ClusterClient::new(channel)
                    .member_list(rpc::MemberListRequest::default())
                    .await
                    .map(tonic::Response::into_inner)
            })
            .await?;
        let total = list.members.len();
        let mut healthy = 0;
        for member in &list.members {
            let Some(url) = member.client_ur_ls.first() else {
                continue;
            };
            let Ok(endpoint) = tonic::transport::Endpoint::from_shared(url.clone()) else {
                continue;
            };
            let endpoint = endpoint.connect_timeout(members::CONNECT_TIMEOUT);
            let status = tokio::time::timeout(members::CALL_TIMEOUT, async {
                let channel = endpoint.connect().await.ok()?;
                MaintenanceClient::new(channel)
                    .status(rpc::StatusRequest {})
                    .await
                    .ok()
            })
            .await;
            if matches!(status, Ok(Some(_))) {
                healthy += 1;
            }
        }
        let state = if healthy == total {
            "healthy".to_string()
        } else if healthy * 2 > total {
            format!("{healthy} of {total} healthy (quorum holds)")
        } else {
            format!("{healthy} of {total} healthy (no quorum)")
        };
        let s = if total == 1 { "" } else { "s" };
        Ok(format!("etcd {total} member{s}, {state}"))
    }
}

/// The compare that makes `key` satisfy `expect` (never called with `Expect::Any`).
fn compare(key: Vec<u8>, expect: Expect) -> rpc::Compare {
    let (target, union) = match expect {
        // A key without a live value has create revision 0 in etcd.
        Expect::Absent | Expect::Any => (CompareTarget::Create, TargetUnion::CreateRevision(0)),
        Expect::ModRevision(rev) => (CompareTarget::Mod, TargetUnion::ModRevision(rev as i64)),
    };
    rpc::Compare {
        result: CompareResult::Equal as i32,
        target: target as i32,
        key,
        range_end: Vec::new(),
        target_union: Some(union),
    }
}

/// The end of etcd's range for every key starting with `prefix`: the prefix with its last byte
/// below 0xff incremented (what etcd's own client calls `GetPrefixRangeEnd`).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff (or the prefix was empty): "\0" means every key to etcd.
    vec![0]
}

/// etcd's signed revisions as ours (never negative in practice).
fn revision(rev: i64) -> u64 {
    u64::try_from(rev).unwrap_or(0)
}

fn header_revision(header: Option<&rpc::ResponseHeader>) -> u64 {
    header.map_or(0, |h| revision(h.revision))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key_after_every_key_with_the_prefix() {
        assert_eq!(prefix_end(b"ebb/"), b"ebb0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn parses_etcd_urls_and_names_what_is_wrong() {
        assert_eq!(
            EtcdStore::parse_url("etcd://127.0.0.1:2379,10.0.0.2:2379").unwrap(),
            vec!["127.0.0.1:2379".to_string(), "10.0.0.2:2379".to_string()]
        );
        let err = EtcdStore::parse_url("http://x:1").unwrap_err().to_string();
        assert!(err.contains("not an etcd URL"), "{err}");
        let err = EtcdStore::parse_url("etcd://host").unwrap_err().to_string();
        assert!(err.contains("has no port"), "{err}");
        assert!(EtcdStore::parse_url("etcd://").is_err());
    }
}
