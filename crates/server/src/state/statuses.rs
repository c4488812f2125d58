//! The last status each instance's node reported, mirrored from the store's `status/` keys so
//! that a sync writes only what changed.

use crate::lock;
use ebb_core::InstanceStatus;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// Instance statuses by instance id; those not yet in the store; and a version bumped after
/// each change is in memory, so that a controller pass that read the store's revision of a
/// status write before the status itself reached memory knows to look again.
#[derive(Debug)]
pub struct Statuses(
    Mutex<HashMap<String, InstanceStatus>>,
    Mutex<HashSet<String>>,
    tokio::sync::watch::Sender<u64>,
);

impl Default for Statuses {
    fn default() -> Self {
        Statuses::new(Vec::new())
    }
}

impl Statuses {
    /// Starts from the statuses the store holds.
    pub fn new(stored: Vec<InstanceStatus>) -> Statuses {
        Statuses(
            Mutex::new(stored.into_iter().map(|s| (s.id.clone(), s)).collect()),
            Mutex::default(),
            tokio::sync::watch::Sender::new(0),
        )
    }

    /// Bumped after every change reached memory (the store is written before).
    pub fn version(&self) -> u64 {
        *self.2.borrow()
    }

    /// Wakes on every change of [`Statuses::version`].
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.2.subscribe()
    }

    fn bump(&self) {
        self.2.send_modify(|v| *v += 1);
    }

    /// A copy of every status.
    pub fn all(&self) -> HashMap<String, InstanceStatus> {
        lock(&self.0).clone()
    }

    /// The reports among `reported` that differ from the known ones, or that are known but not
    /// yet in the store.
    pub fn changed<'a>(&self, reported: &'a [InstanceStatus]) -> Vec<&'a InstanceStatus> {
        let known = lock(&self.0);
        let unwritten = lock(&self.1);
        reported
            .iter()
            .filter(|s| known.get(&s.id) != Some(*s) || unwritten.contains(&s.id))
            .collect()
    }

    /// Takes `written` as known (once they are in the store).
    pub fn remember(&self, written: &[&InstanceStatus]) {
        let mut known = lock(&self.0);
        let mut unwritten = lock(&self.1);
        for s in written {
            known.insert(s.id.clone(), (*s).clone());
            unwritten.remove(&s.id);
        }
        self.bump();
    }

    /// Takes `reported` as known although the store could not take them (it is unreachable):
    /// this server's load balancers act on them at once (an instance that failed its health
    /// check leaves them), and they are written with the next report that gets through.
    pub fn remember_unwritten(&self, reported: &[&InstanceStatus]) {
        let mut known = lock(&self.0);
        let mut unwritten = lock(&self.1);
        for s in reported {
            known.insert(s.id.clone(), (*s).clone());
            unwritten.insert(s.id.clone());
        }
        self.bump();
    }

    /// Forgets an instance's status (the instance is gone).
    pub fn forget(&self, id: &str) {
        lock(&self.0).remove(id);
    }

    /// Takes one status as known, whoever wrote it.
    pub fn insert(&self, status: InstanceStatus) {
        lock(&self.0).insert(status.id.clone(), status);
        self.bump();
    }

    /// Replaces every known status with `stored`.
    pub fn replace_all(&self, stored: Vec<InstanceStatus>) {
        *lock(&self.0) = stored.into_iter().map(|s| (s.id.clone(), s)).collect();
        self.bump();
    }
}

/// How long one wait for status changes lasts before it is made again.
const FOLLOW_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// With several servers, the agents report to any of them, and each writes what it hears to
/// the store's `status/` keys: every server follows those keys, so that its load balancers,
/// its API and (when it leads) its controllers know every instance's state.
pub async fn follow(server: crate::Server, stop: tokio_util::sync::CancellationToken) {
    use crate::state::keys;
    use ebb_store::{watch_changes, StoreError, WatchEvent};
    let mut after = None;
    while !stop.is_cancelled() {
        let Some(from) = after else {
            match server.store().list(keys::STATUS) {
                Ok((kvs, revision)) => {
                    let stored = kvs.iter().filter_map(|kv| keys::decode(kv).ok()).collect();
                    server.statuses_cache().replace_all(stored);
                    after = Some(revision);
                }
                Err(_) => {
                    crate::run_loop::next(&stop, tokio::time::sleep(FOLLOW_WAIT)).await;
                }
            }
            continue;
        };
        let wait = watch_changes(server.store(), keys::STATUS, from, FOLLOW_WAIT);
        let Some(changes) = crate::run_loop::next(&stop, wait).await else {
            return;
        };
        match changes {
            Ok(changes) => {
                for change in changes {
                    after = Some(change.revision());
                    match change {
                        WatchEvent::Put(kv) => {
                            if let Ok(status) = keys::decode::<InstanceStatus>(&kv) {
                                server.statuses_cache().insert(status);
                            }
                        }
                        WatchEvent::Delete { key, .. } => {
                            if let Some(id) = key.strip_prefix(keys::STATUS) {
                                server.statuses_cache().forget(id);
                            }
                        }
                    }
                }
            }
            Err(StoreError::Compacted { .. }) => after = None,
            Err(_) => {
                crate::run_loop::next(&stop, tokio::time::sleep(FOLLOW_WAIT)).await;
            }
        }
    }
}
