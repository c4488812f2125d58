//! Node liveness shared through etcd: a key `control/alive/{node}` exists while some server
//! hears the node's heartbeats.
//!
//! An agent heartbeats to any server. That server puts the node's key, attached to one lease
//! of its own for all the nodes it hears ([`LIVENESS_TTL`], renewed by this module), and deletes
//! it once the node has been silent to it for [`NODE_SILENT_AFTER`]. Every server reads the
//! keys from its own watch to learn which nodes some server heard from, so a leader change or an agent moving to
//! another server loses no liveness; a server that dies takes its nodes' keys with its lease,
//! until their agents reach another server.
//!
//! Kubernetes gives each node a lease of its own; one lease per server does the same work for
//! the price of one keep-alive, so a heartbeat costs etcd nothing. A key is written when a
//! server first hears a node and deleted when it stops: an idle cluster writes nothing, and
//! keep-alives do not grow with the number of nodes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::election::{grant, keep_alive};
use super::{EtcdStore, Inner};
use crate::{Expect, Op, StoreError, WatchEvent};

/// Where each live node's key is, under the store's namespace.
pub const ALIVE_PREFIX: &str = "control/alive/";

/// A node silent to the server that put its key for this long loses the key: about two
/// missed heartbeats (agents heartbeat every second).
pub const NODE_SILENT_AFTER: Duration = Duration::from_secs(2);

/// The TTL of the lease a server puts its nodes' keys on: when the server dies, its nodes'
/// keys outlive it by this much at most (etcd's shortest useful lease, as for sessions).
pub const LIVENESS_TTL: Duration = Duration::from_secs(2);

/// How often the lease is renewed: under a third of its TTL, so one renewal may fail.
pub const LIVENESS_RENEW_EVERY: Duration = Duration::from_millis(600);

/// How often a server compares the keys (as its watch knows them) with the nodes it hears; a
/// write only for a key to put or delete. A new node is put at once.
pub const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// What this server knows of the nodes it hears and the keys it put for them.
#[derive(Debug, Default)]
pub(crate) struct NodeKeys {
    /// When each node was last heard here.
    heard: HashMap<String, Instant>,
    /// The revision of the key this server last put for each node, on `lease`.
    put: HashMap<String, u64>,
    /// The lease the keys are on; 0 until granted, or once etcd forgot it.
    lease: i64,
    /// Whether the sweeper task runs.
    sweeping: bool,
}

/// The nodes' keys as this server's watch of the namespace delivers them, so that reading
/// which nodes are alive (four times a second on every server) costs etcd nothing.
#[derive(Debug, Default)]
pub(crate) struct AliveKeys {
    /// The revision of the list they were seeded from; None: list them again (never listed,
    /// or the watch lost history to a compaction).
    seeded_at: Option<u64>,
    /// Each live node's key's revision, by node name.
    keys: HashMap<String, u64>,
    /// The newest revision taken: a change delivered again (a replay while seeding, a watch
    /// re-opened) is not taken twice, so an old put cannot bring back a deleted key.
    observed: u64,
}

impl AliveKeys {
    /// Takes the changes the watch delivered (in revision order); nothing before seeding.
    /// The changes of one revision come in one batch (etcd and the history never split one).
    pub(crate) fn observe(&mut self, changes: &[WatchEvent]) {
        if self.seeded_at.is_none() {
            return;
        }
        let taken = self.observed;
        for change in changes.iter().filter(|c| c.revision() > taken) {
            self.observed = self.observed.max(change.revision());
            match change {
                WatchEvent::Put(kv) => {
                    if let Some(name) = kv.key.strip_prefix(ALIVE_PREFIX) {
                        self.keys.insert(name.to_string(), kv.mod_revision);
                    }
                }
                WatchEvent::Delete { key, .. } => {
                    if let Some(name) = key.strip_prefix(ALIVE_PREFIX) {
                        self.keys.remove(name);
                    }
                }
            }
        }
    }

    /// The watch could not deliver every change: the next read lists the keys again.
    pub(crate) fn lost(&mut self) {
        self.seeded_at = None;
        self.observed = 0;
        self.keys.clear();
    }
}

/// The live nodes' keys and their revisions: from the watch once seeded by one list.
async fn alive_keys(inner: &Inner) -> Result<HashMap<String, u64>, StoreError> {
    {
        let alive = inner.alive_keys();
        if alive.seeded_at.is_some() {
            return Ok(alive.keys.clone());
        }
    }
    let (listed, revision) = inner.list(ALIVE_PREFIX).await?;
    let keys: HashMap<String, u64> = listed
        .into_iter()
        .filter_map(|kv| {
            Some((
                kv.key.strip_prefix(ALIVE_PREFIX)?.to_string(),
                kv.mod_revision,
            ))
        })
        .collect();
    let mut alive = inner.alive_keys();
    if alive.seeded_at.is_some() {
        return Ok(alive.keys.clone()); // seeded meanwhile
    }
    // Changes the watch delivered while the list was under way were not taken: replay them
    // from the history. The watcher takes this lock only after appending to the history, so
    // nothing falls between the two.
    let Ok(since) = inner.history().read(ALIVE_PREFIX, revision, usize::MAX) else {
        // The history no longer reaches back to the list (compacted, or evicted by a burst
        // of writes): the list is right, but cannot be followed; seed on another read.
        return Ok(keys);
    };
    alive.keys = keys;
    alive.seeded_at = Some(revision);
    alive.observed = revision;
    alive.observe(&since);
    Ok(alive.keys.clone())
}

impl EtcdStore {
    /// Node `name` heartbeated to this server: its key is put (at once, if it has none from
    /// here) and kept while it goes on. Never waits on etcd.
    pub fn node_alive(&self, name: &str) {
        let first = {
            let mut keys = self.inner.node_keys();
            let new = keys
                .heard
                .insert(name.to_string(), Instant::now())
                .is_none();
            let start = !keys.sweeping;
            keys.sweeping = true;
            if start {
                self.spawn(|inner| async move { sweep_forever(inner).await });
            }
            new
        };
        if first {
            self.inner.node_heard.notify_one();
        }
    }

    /// The nodes some server heard from within [`NODE_SILENT_AFTER`] (or whose server died
    /// within [`LIVENESS_TTL`]), read from this server's watch (as up to date as it is), not
    /// from etcd.
    pub fn alive_nodes(&self) -> Result<Vec<String>, StoreError> {
        let keys = self.run(|inner| async move { alive_keys(&inner).await })?;
        Ok(keys.into_keys().collect())
    }
}

/// Puts per transaction when many nodes are new here at once (a server's start, a lost lease):
/// under etcd's default limit of 128 operations per transaction.
pub const PUTS_PER_TXN: usize = 100;

/// Keeps the keys in step with the nodes heard, every [`SWEEP_EVERY`] or at once when a new
/// node is heard, and the lease renewed, for as long as the store lives.
async fn sweep_forever(inner: Arc<Inner>) {
    tokio::spawn(renew_forever(Arc::clone(&inner)));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
            _ = inner.node_heard.notified() => {}
        }
        if let Err(error) = sweep(&inner).await {
            tracing::debug!(%error, "keeping the nodes' liveness keys failed; will retry");
        }
    }
}

/// Renews the lease every [`LIVENESS_RENEW_EVERY`], apart from the sweeps, so that a slow sweep
/// (a lagging watch, many puts) never lets it lapse and take every key with it. A lease etcd no
/// longer knows is dropped: the next sweep takes a new one and puts the keys again.
async fn renew_forever(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(LIVENESS_RENEW_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let lease = inner.node_keys().lease;
        if lease == 0 {
            continue;
        }
        match keep_alive(&inner, lease).await {
            Ok(true) => {}
            Ok(false) => {
                let mut keys = inner.node_keys();
                if keys.lease == lease {
                    keys.lease = 0;
                    keys.put.clear();
                }
            }
            Err(error) => tracing::debug!(%error, "renewing the nodes' liveness lease failed"),
        }
    }
}

/// One pass: put the key of every node heard lately that has none, and delete the key of every
/// node gone silent that is still the one this server put.
async fn sweep(inner: &Inner) -> Result<(), StoreError> {
    let (heard, put) = {
        let keys = inner.node_keys();
        (keys.heard.clone(), keys.put.clone())
    };
    if heard.is_empty() {
        return Ok(());
    }
    let lease = hold_lease(inner).await?;
    // The keys as the watch has them, with this server's own puts and deletes in: otherwise a
    // key just put would look missing and be put again.
    inner.caught_up().await;
    let current = alive_keys(inner).await?;
    let now = Instant::now();
    let steps = plan(&heard, &put, &current, now);
    let puts: Vec<&String> = steps
        .iter()
        .filter_map(|step| match step {
            Step::Put(name) => Some(name),
            _ => None,
        })
        .collect();
    for chunk in puts.chunks(PUTS_PER_TXN) {
        let ops = chunk
            .iter()
            .map(|name| Op::put(format!("{ALIVE_PREFIX}{name}"), Vec::new(), Expect::Any))
            .collect();
        let (revision, _) = inner.txn_with_lease(ops, lease).await?;
        let mut keys = inner.node_keys();
        for name in chunk {
            keys.put.insert((*name).clone(), revision);
        }
    }
    for step in &steps {
        match step {
            Step::Put(_) => {}
            Step::Delete(name, revision) => {
                let op = Op::delete(
                    format!("{ALIVE_PREFIX}{name}"),
                    Expect::ModRevision(*revision),
                );
                match inner.txn_with_lease(vec![op], 0).await {
                    // Another server put it since: the node is its now.
                    Ok(_) | Err(StoreError::Conflict { .. }) => {}
                    Err(error) => return Err(error),
                }
                forget(inner, name, now);
            }
            Step::Forget(name) => forget(inner, name, now),
        }
    }
    Ok(())
}

/// Drops a silent node, unless it was heard again meanwhile.
fn forget(inner: &Inner, name: &str, now: Instant) {
    let mut keys = inner.node_keys();
    if keys
        .heard
        .get(name)
        .is_some_and(|at| now.duration_since(*at) >= NODE_SILENT_AFTER)
    {
        keys.heard.remove(name);
        keys.put.remove(name);
    }
}

/// What a pass does for one node.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// Heard lately, and it has no key: put one on this server's lease.
    Put(String),
    /// Silent, and its key is still the one this server put (at this revision): delete it.
    Delete(String, u64),
    /// Silent, and its key is gone or another server's: just forget it.
    Forget(String),
}

/// The steps for the nodes `heard` here (when), given the keys this server `put` (their
/// revisions) and the keys that exist (`current`, their revisions). A key another server put
/// is left to it while it exists: that server deletes it once the node is silent there (or
/// its lease takes it), and the next pass here puts it again. Pure.
fn plan(
    heard: &HashMap<String, Instant>,
    put: &HashMap<String, u64>,
    current: &HashMap<String, u64>,
    now: Instant,
) -> Vec<Step> {
    heard
        .iter()
        .filter_map(|(name, at)| {
            let ours = put.get(name).filter(|rev| current.get(name) == Some(rev));
            let silent = now.saturating_duration_since(*at) >= NODE_SILENT_AFTER;
            match (silent, ours) {
                (false, Some(_)) => None,
                (false, None) if current.contains_key(name) => None,
                (false, None) => Some(Step::Put(name.clone())),
                (true, Some(rev)) => Some(Step::Delete(name.clone(), *rev)),
                (true, None) => Some(Step::Forget(name.clone())),
            }
        })
        .collect()
}

/// The lease this server's node keys are on: a new one when it has none (at first, or after
/// etcd forgot it, when every key on it went with it, so all are put again).
async fn hold_lease(inner: &Inner) -> Result<i64, StoreError> {
    let lease = inner.node_keys().lease;
    if lease != 0 {
        return Ok(lease);
    }
    let fresh = grant(inner, LIVENESS_TTL).await?;
    let mut keys = inner.node_keys();
    keys.lease = fresh;
    keys.put.clear();
    Ok(fresh)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_put_for_nodes_heard_and_deleted_only_if_still_ours_once_silent() {
        let now = Instant::now();
        let silent = now - NODE_SILENT_AFTER;
        let heard = HashMap::from([
            ("new".to_string(), now),
            ("kept".to_string(), now),
            ("moved-here".to_string(), now),
            ("gone".to_string(), silent),
            ("moved-away".to_string(), silent),
        ]);
        let put = HashMap::from([
            ("kept".to_string(), 5),
            ("moved-here".to_string(), 6),
            ("gone".to_string(), 7),
            ("moved-away".to_string(), 8),
        ]);
        // Another server put "moved-here" after us (and we hear it again: the other server
        // keeps it until the node is silent there), and "moved-away".
        let current = HashMap::from([
            ("kept".to_string(), 5),
            ("moved-here".to_string(), 20),
            ("gone".to_string(), 7),
            ("moved-away".to_string(), 21),
        ]);
        let mut steps = plan(&heard, &put, &current, now);
        steps.sort_by_key(|s| format!("{s:?}"));
        assert_eq!(
            steps,
            vec![
                Step::Delete("gone".into(), 7),
                Step::Forget("moved-away".into()),
                Step::Put("new".into()),
            ]
        );
    }

    #[test]
    fn the_watch_moves_the_alive_keys_on_only_past_their_list_and_a_loss_unseeds_them() {
        use crate::KeyValue;
        let put = |key: &str, rev: u64| {
            WatchEvent::Put(KeyValue {
                key: key.into(),
                value: Vec::new(),
                create_revision: rev,
                mod_revision: rev,
            })
        };
        let mut alive = AliveKeys::default();
        alive.observe(&[put("control/alive/early", 3)]);
        assert!(alive.keys.is_empty(), "nothing before seeding");
        alive.seeded_at = Some(10);
        alive.observed = 10;
        alive.keys.insert("n1".into(), 9);
        alive.observe(&[
            WatchEvent::Delete {
                key: "control/alive/n1".into(),
                revision: 8,
            },
            put("control/alive/n2", 11),
            put("services/web", 12),
            WatchEvent::Delete {
                key: "control/alive/n1".into(),
                revision: 13,
            },
        ]);
        assert_eq!(alive.keys, HashMap::from([("n2".to_string(), 11)]));
        // Delivered again (a watch re-opened): not taken twice.
        alive.observe(&[put("control/alive/n1", 12)]);
        assert!(
            !alive.keys.contains_key("n1"),
            "an old put does not bring n1 back"
        );
        alive.lost();
        assert!(alive.seeded_at.is_none() && alive.keys.is_empty());
    }

    #[test]
    fn a_key_that_vanished_with_an_old_lease_is_put_again() {
        let now = Instant::now();
        let heard = HashMap::from([("n1".to_string(), now)]);
        let put = HashMap::from([("n1".to_string(), 5)]);
        let steps = plan(&heard, &put, &HashMap::new(), now);
        assert_eq!(steps, vec![Step::Put("n1".into())]);
    }
}
