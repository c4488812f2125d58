//! Sessions, leader election and the registry of servers, on etcd leases.
//!
//! Each server holds a *session*: an etcd lease of [`SESSION_TTL`] that it keeps alive every
//! [`KEEPALIVE_EVERY`]. Its entry in the registry (`control/servers/{name}`) and, while it
//! leads, the leader key (`control/leader`) are attached to that lease, so both vanish within
//! the TTL when the server dies, freezes or loses etcd, and at once when it resigns.
//!
//! The campaign is a create-only transaction on the leader key (compare create revision 0).
//! The winner's [`Fence`] is the key's revision, which every write of its controllers checks
//! ([`crate::FencedStore`]). A leader that cannot renew its lease steps down by itself once the
//! last renewal it *sent* is older than the TTL minus [`STEP_DOWN_MARGIN`], which is before etcd
//! expires the lease unless its clock runs much faster than ours. And should two servers ever
//! believe they lead (a leader frozen between two checks), the fence lets only one write.
//!
//! Nothing here reconnects by itself in etcd's API (a keep-alive stream, like a watch, just
//! ends), so the loop owns it: every keep-alive is a short stream of its own, on whichever
//! member answers; a lease etcd no longer knows starts a new session.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tokio_stream::StreamExt;

use super::pb::etcdserverpb as rpc;
use super::pb::etcdserverpb::lease_client::LeaseClient;
use super::{EtcdStore, Inner};
use crate::{Expect, Fence, Leadership, Op, StoreError};

/// How long a server's session outlives its last keep-alive: a dead leader is replaced within
/// about this (plus one [`POLL_EVERY`]). Kubernetes' leader leases default to 15 s; etcd's
/// own election examples use 60 s; ebb trades a few keep-alives a second for failover in a
/// couple of seconds, which is what an elastic platform's users feel.
pub const SESSION_TTL: Duration = Duration::from_secs(2);

/// How often a session is renewed: under a third of the TTL, so that one renewal may fail and
/// the next still lands before the session steps down (TTL − [`STEP_DOWN_MARGIN`]).
pub const KEEPALIVE_EVERY: Duration = Duration::from_millis(600);

/// After a renewal that failed (etcd electing a new leader, a member gone), the next is tried
/// this soon rather than a whole [`KEEPALIVE_EVERY`] later: what is left of the session's
/// [`SESSION_TTL`] is spent waiting out the outage, not waiting for the next period. Ten times a
/// second is etcd's own heartbeat rate at its default 100 ms `--heartbeat-interval`.
pub const KEEPALIVE_RETRY: Duration = Duration::from_millis(100);

/// A leader steps down when its last renewal is older than the TTL minus this, so that it has
/// stopped before etcd expires its lease and lets another server win.
pub const STEP_DOWN_MARGIN: Duration = Duration::from_millis(500);

/// How often a follower looks at the leader key (a read), to take over soon after it vanishes.
pub const POLL_EVERY: Duration = Duration::from_millis(200);

/// How long one member has for a keep-alive, a bid or a registration before the next member
/// is asked: short, so that a frozen member cannot make a healthy leader miss its renewal.
const SESSION_CALL_TIMEOUT: Duration = Duration::from_millis(400);

/// The leader key, under the store's namespace.
pub const LEADER_KEY: &str = "control/leader";

/// Where each server's registry entry lives, under the store's namespace.
pub const SERVERS_PREFIX: &str = "control/servers/";

/// Who runs for leader, and what it puts in the registry.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The server's name (`ebb server --name`), unique in the cluster.
    pub name: String,
    /// Its registry entry (`control/servers/{name}`), e.g. JSON with its addresses.
    pub record: Vec<u8>,
}

/// A running campaign: this server's session, registry entry and bid for leadership.
#[derive(Debug)]
pub struct Campaign {
    leadership: watch::Receiver<Leadership>,
    resign: Option<oneshot::Sender<oneshot::Sender<()>>>,
}

impl Campaign {
    /// Who leads, as this server knows it; changes as elections happen.
    pub fn leadership(&self) -> watch::Receiver<Leadership> {
        self.leadership.clone()
    }

    /// Gives up leadership and the registry entry at once (revokes the session), so another
    /// server can lead without waiting for the TTL. Waits at most a second.
    pub async fn resign(mut self) {
        let Some(resign) = self.resign.take() else {
            return;
        };
        let (done, finished) = oneshot::channel();
        if resign.send(done).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(1), finished).await;
        }
    }
}

impl EtcdStore {
    /// Starts this server's session and its campaign for leadership; runs until the store is
    /// dropped or [`Campaign::resign`] is called.
    pub fn campaign(&self, candidate: Candidate) -> Campaign {
        let (tell, leadership) = watch::channel(Leadership::Following { leader: None });
        let (resign, resigned) = oneshot::channel();
        self.spawn(|inner| campaign(inner, candidate, tell, resigned));
        Campaign {
            leadership,
            resign: Some(resign),
        }
    }

    /// The registry: every server's entry (`name`, record), while its session lives.
    pub fn servers(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        use crate::KvStore;
        let (entries, _) = self.list(SERVERS_PREFIX)?;
        Ok(entries
            .into_iter()
            .filter_map(|kv| {
                let name = kv.key.strip_prefix(SERVERS_PREFIX)?.to_string();
                Some((name, kv.value))
            })
            .collect())
    }

    /// The name of the server that leads, if any.
    pub fn leader(&self) -> Result<Option<String>, StoreError> {
        use crate::KvStore;
        Ok(self
            .get(LEADER_KEY)?
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
    }
}

/// Sessions one after another until resigned.
async fn campaign(
    inner: Arc<Inner>,
    candidate: Candidate,
    tell: watch::Sender<Leadership>,
    mut resigned: oneshot::Receiver<oneshot::Sender<()>>,
) {
    loop {
        let lease = match grant(&inner, SESSION_TTL).await {
            Ok(lease) => lease,
            Err(error) => {
                tracing::debug!(%error, "cannot start a session; trying again");
                tell.send_if_modified(step_down);
                tokio::select! {
                    _ = tokio::time::sleep(POLL_EVERY) => continue,
                    done = &mut resigned => return finish(done.ok()),
                }
            }
        };
        let renewals = KeepAlive::start(Arc::clone(&inner), lease);
        let mut session = Session {
            inner: &inner,
            candidate: &candidate,
            lease,
            renewals: &renewals,
            registered: false,
            fence: None,
        };
        let end = session.run(&tell, &mut resigned).await;
        if session.fence.is_some() {
            tracing::warn!(server = %candidate.name, "stepped down as leader");
        }
        tell.send_if_modified(step_down);
        renewals.stop();
        // The old lease goes with everything on it (the leader key, the registry entry), so
        // the next session's bid does not find this server's own stale key in its way.
        let _ = revoke(&inner, lease).await;
        if let SessionEnd::Resigned(done) = end {
            return finish(done);
        }
    }
}

fn finish(done: Option<oneshot::Sender<()>>) {
    if let Some(done) = done {
        let _ = done.send(());
    }
}

/// A leader that stops leading follows nobody known (a follower keeps what it knew).
fn step_down(now: &mut Leadership) -> bool {
    if matches!(now, Leadership::Leading(_)) {
        *now = Leadership::Following { leader: None };
        true
    } else {
        false
    }
}

/// Why a session ended.
enum SessionEnd {
    /// The lease lapsed or etcd forgot it: start a new session.
    Lapsed,
    /// [`Campaign::resign`] was called.
    Resigned(Option<oneshot::Sender<()>>),
}

/// A session's keep-alives, on a task of their own so that no slow bid or registration delays
/// them. Each renewal is stamped with when it was *sent*: etcd extends the lease from about
/// then, so the session's own reckoning never runs later than etcd's.
struct KeepAlive {
    /// When the last confirmed renewal was sent (the grant counts as one).
    renewed: Arc<std::sync::Mutex<Instant>>,
    /// Set when etcd says the lease is gone.
    lost: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl KeepAlive {
    fn start(inner: Arc<Inner>, lease: i64) -> KeepAlive {
        let renewed = Arc::new(std::sync::Mutex::new(Instant::now()));
        let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (r, l) = (Arc::clone(&renewed), Arc::clone(&lost));
        let task = tokio::spawn(async move {
            let mut pause = KEEPALIVE_EVERY;
            loop {
                tokio::time::sleep(pause).await;
                let sent = Instant::now();
                match keep_alive(&inner, lease).await {
                    Ok(true) => {
                        let mut at = r.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        *at = (*at).max(sent);
                        pause = KEEPALIVE_EVERY;
                    }
                    Ok(false) => {
                        l.store(true, std::sync::atomic::Ordering::Relaxed);
                        return;
                    }
                    Err(error) => {
                        tracing::debug!(%error, "session keep-alive failed");
                        pause = KEEPALIVE_RETRY;
                    }
                }
            }
        });
        KeepAlive {
            renewed,
            lost,
            task,
        }
    }

    /// Whether the session must end: etcd forgot the lease, or the last renewal is so old that
    /// etcd may expire the lease within [`STEP_DOWN_MARGIN`].
    fn lapsed(&self) -> bool {
        let renewed = *self
            .renewed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.lost.load(std::sync::atomic::Ordering::Relaxed)
            || renewed.elapsed() + STEP_DOWN_MARGIN >= SESSION_TTL
    }

    fn stop(&self) {
        self.task.abort();
    }
}

/// One lease and everything attached to it.
struct Session<'a> {
    inner: &'a Inner,
    candidate: &'a Candidate,
    lease: i64,
    renewals: &'a KeepAlive,
    registered: bool,
    /// Set while this session leads.
    fence: Option<Fence>,
}

impl Session<'_> {
    async fn run(
        &mut self,
        tell: &watch::Sender<Leadership>,
        resigned: &mut oneshot::Receiver<oneshot::Sender<()>>,
    ) -> SessionEnd {
        loop {
            if self.renewals.lapsed() {
                return SessionEnd::Lapsed;
            }
            if !self.registered {
                self.registered = self.register().await.is_ok();
            }
            if let Some(now) = self.bid().await {
                // A bid answered after the session lapsed says nothing true any more.
                if self.renewals.lapsed() {
                    return SessionEnd::Lapsed;
                }
                tell.send_if_modified(|known| {
                    let changed = *known != now;
                    *known = now.clone();
                    changed
                });
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL_EVERY) => {}
                done = &mut *resigned => return SessionEnd::Resigned(done.ok()),
            }
        }
    }

    /// Puts this server's registry entry, attached to the session.
    async fn register(&self) -> Result<(), StoreError> {
        let key = format!("{SERVERS_PREFIX}{}", self.candidate.name);
        let op = Op::put(key, self.candidate.record.clone(), Expect::Any);
        self.inner
            .txn_within(vec![op], self.lease, SESSION_CALL_TIMEOUT)
            .await?;
        Ok(())
    }

    /// One round of the campaign: as leader, check the key is still ours; otherwise try to
    /// create it. Returns what is now known, or `None` if etcd did not answer.
    async fn bid(&mut self) -> Option<Leadership> {
        if let Some(fence) = &self.fence {
            let current = self.inner.get_raw(LEADER_KEY, SESSION_CALL_TIMEOUT).await;
            return match current {
                Ok(Some(kv)) if super::revision(kv.mod_revision) == fence.revision => {
                    Some(Leadership::Leading(Some(fence.clone())))
                }
                Ok(other) => {
                    // Someone deleted or replaced the key: no longer the leader.
                    self.fence = None;
                    let leader = other.map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
                    Some(Leadership::Following { leader })
                }
                Err(_) => None,
            };
        }
        let name = self.candidate.name.as_bytes().to_vec();
        let op = Op::put(LEADER_KEY, name, Expect::Absent);
        let won = match self
            .inner
            .txn_within(vec![op], self.lease, SESSION_CALL_TIMEOUT)
            .await
        {
            Ok((revision, _)) => Some(revision),
            Err(StoreError::Conflict { .. }) => {
                // Someone holds the key, perhaps this very session: a bid that landed but whose
                // answer was lost, retried on another member, conflicts with itself.
                match self.inner.get_raw(LEADER_KEY, SESSION_CALL_TIMEOUT).await {
                    Ok(Some(kv)) if kv.lease == self.lease => {
                        Some(super::revision(kv.mod_revision))
                    }
                    Ok(kv) => {
                        let leader = kv.map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
                        return Some(Leadership::Following { leader });
                    }
                    Err(_) => return None,
                }
            }
            Err(_) => return None,
        };
        let revision = won?;
        let fence = Fence {
            key: LEADER_KEY.to_string(),
            revision,
        };
        tracing::info!(server = %self.candidate.name, revision, "leading the control plane");
        self.fence = Some(fence.clone());
        Some(Leadership::Leading(Some(fence)))
    }
}

fn lease_client(channel: tonic::transport::Channel) -> LeaseClient<tonic::transport::Channel> {
    LeaseClient::new(channel)
}

/// A new lease of `ttl` (whole seconds, at least one).
pub(crate) async fn grant(inner: &Inner, ttl: Duration) -> Result<i64, StoreError> {
    let ttl = ttl.as_secs().max(1) as i64;
    let answer = inner
        .members
        .call(|channel| async move {
            lease_client(channel)
                .lease_grant(rpc::LeaseGrantRequest { ttl, id: 0 })
                .await
                .map(tonic::Response::into_inner)
        })
        .await?;
    if !answer.error.is_empty() {
        return Err(StoreError::Etcd(answer.error));
    }
    Ok(answer.id)
}

/// Renews `lease` once: `Ok(false)` if etcd no longer knows it (it expired).
pub(crate) async fn keep_alive(inner: &Inner, lease: i64) -> Result<bool, StoreError> {
    let answer = inner
        .members
        .call_within(SESSION_CALL_TIMEOUT, |channel| async move {
            let request = rpc::LeaseKeepAliveRequest { id: lease };
            let mut stream = lease_client(channel)
                .lease_keep_alive(tokio_stream::once(request))
                .await?
                .into_inner();
            match stream.next().await {
                Some(answer) => answer,
                None => Err(tonic::Status::unavailable("keep-alive stream ended")),
            }
        })
        .await?;
    Ok(answer.ttl > 0)
}

/// Ends `lease` and everything attached to it.
async fn revoke(inner: &Inner, lease: i64) -> Result<(), StoreError> {
    inner
        .members
        .call(|channel| async move {
            lease_client(channel)
                .lease_revoke(rpc::LeaseRevokeRequest { id: lease })
                .await
                .map(tonic::Response::into_inner)
        })
        .await?;
    Ok(())
}
