//! The etcd members a store talks to, and failing over between them.
//!
//! One lazily connected gRPC channel per member. A call goes to the member that answered last;
//! when that one fails to answer in time, or answers that it is unavailable, the call moves to
//! the next member, and fails as [`StoreError::Unavailable`] only when every member failed. The
//! HTTP/2 keep-alive pings find a member that froze or lost its network with its connection
//! still open (no RST ever comes from a SIGSTOPped process), so a watch on it ends and moves.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::StoreError;

/// How long connecting to one member may take before the call tries the next.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// How long one member has to answer a call; the next member gets the same. With three members
/// all unreachable, a write fails after about 3 × this, which is what "fail fast" means here.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(1500);

/// An unreachable answer faster than this is a broken connection, not a silent member.
const BROKEN_CONNECTION: Duration = Duration::from_millis(100);

/// HTTP/2 pings on every connection, to find a member that stopped answering on an open
/// connection: a ping unanswered for [`KEEPALIVE_TIMEOUT`] closes it.
const KEEPALIVE_INTERVAL: Duration = Duration::from_millis(500);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_millis(1000);

/// The largest message a member may send (a list of every instance of a big cluster). tonic's
/// default of 4 MiB is smaller than what one list may hold.
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// After every member failed a call, how long later calls fail at once instead of waiting on
/// the members again; then one call tries again. So that, with etcd gone, a write fails fast
/// (an API call, a heartbeat) instead of each waiting out every member's timeout.
pub const RETRY_AFTER_OUTAGE: Duration = Duration::from_secs(1);

/// The members of one etcd cluster and which of them answered last.
#[derive(Debug)]
pub(crate) struct Members {
    /// `host:port` of each member, as given.
    addrs: Vec<String>,
    channels: Vec<Channel>,
    current: AtomicUsize,
    /// When every member last failed a call, and how; cleared by the next answer.
    outage: std::sync::Mutex<Option<(tokio::time::Instant, String)>>,
}

impl Members {
    /// Channels to `addrs` (`host:port` each); nothing connects until the first call.
    pub(crate) fn new(addrs: &[String]) -> Result<Members, StoreError> {
        if addrs.is_empty() {
            return Err(StoreError::Config(
                "an etcd store needs at least one member address".into(),
            ));
        }
        let channels = addrs
            .iter()
            .map(|addr| channel(addr))
            .collect::<Result<_, _>>()?;
        Ok(Members {
            addrs: addrs.to_vec(),
            channels,
            current: AtomicUsize::new(0),
            outage: std::sync::Mutex::new(None),
        })
    }

    /// `host:port` of every member, as given.
    pub(crate) fn addrs(&self) -> &[String] {
        &self.addrs
    }

    /// How a reader names this store in errors: `etcd at a:2379,b:2379`.
    pub(crate) fn describe(&self) -> String {
        format!("etcd at {}", self.addrs.join(","))
    }

    /// Runs `call` on the member that answered last, then on each other one in turn while they
    /// fail to answer. An answer that is an error of etcd's (a compacted revision, a bad
    /// request) is returned as is: another member would say the same.
    pub(crate) async fn call<T, F, Fut>(&self, call: F) -> Result<T, StoreError>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.call_within(CALL_TIMEOUT, call).await
    }

    /// [`Members::call`] with `timeout` for each member instead of [`CALL_TIMEOUT`].
    pub(crate) async fn call_within<T, F, Fut>(
        &self,
        timeout: Duration,
        call: F,
    ) -> Result<T, StoreError>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        if let Some(message) = self.in_outage() {
            return Err(StoreError::Unavailable {
                store: self.describe(),
                message,
            });
        }
        let count = self.channels.len();
        let first = self.current.load(Ordering::Relaxed) % count;
        let mut last = String::new();
        // Each member once, in turn; a member whose connection broke (an error at once, not a
        // silence) is asked once more right away, on the new connection its channel makes:
        // after an outage, the first call on each old connection fails that way.
        let mut asked = 0;
        let mut retried = false;
        while asked < count {
            let index = (first + asked) % count;
            let channel = self.channels[index].clone();
            let started = tokio::time::Instant::now();
            let outcome = tokio::time::timeout(timeout, call(channel)).await;
            let broke_at_once = matches!(&outcome, Ok(Err(status)) if unreachable(status))
                && started.elapsed() < BROKEN_CONNECTION;
            if broke_at_once && !retried {
                retried = true;
                continue;
            }
            retried = false;
            asked += 1;
            match outcome {
                Ok(Ok(answer)) => {
                    self.current.store(index, Ordering::Relaxed);
                    *self.outage() = None;
                    return Ok(answer);
                }
                Ok(Err(status)) if !unreachable(&status) => return Err(status_error(status)),
                Ok(Err(status)) => last = format!("{}: {}", self.addrs[index], brief(&status)),
                Err(_) => {
                    last = format!(
                        "{}: no answer in {} ms",
                        self.addrs[index],
                        timeout.as_millis()
                    )
                }
            }
        }
        *self.outage() = Some((tokio::time::Instant::now(), last.clone()));
        Err(StoreError::Unavailable {
            store: self.describe(),
            message: last,
        })
    }

    fn outage(&self) -> std::sync::MutexGuard<'_, Option<(tokio::time::Instant, String)>> {
        self.outage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Within [`RETRY_AFTER_OUTAGE`] of every member failing: what the last one said. Past it,
    /// the window restarts, so that one call at a time tries the members again.
    fn in_outage(&self) -> Option<String> {
        let mut outage = self.outage();
        let (since, message) = outage.as_mut()?;
        let now = tokio::time::Instant::now();
        if now.duration_since(*since) < RETRY_AFTER_OUTAGE {
            return Some(message.clone());
        }
        // This call tries; the others keep failing fast until it has an answer.
        *since = now;
        None
    }

    /// The channel to the member that answered last, and its index, for a stream.
    pub(crate) fn current(&self) -> (usize, Channel) {
        let index = self.current.load(Ordering::Relaxed) % self.channels.len();
        (index, self.channels[index].clone())
    }

    /// A stream on member `index` failed: later calls and streams start at the next one.
    pub(crate) fn failed(&self, index: usize) {
        let next = (index + 1) % self.channels.len();
        let _ = self
            .current
            .compare_exchange(index, next, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// A lazily connected channel to one member.
fn channel(addr: &str) -> Result<Channel, StoreError> {
    let url = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    let endpoint = Endpoint::from_shared(url).map_err(|err| {
        StoreError::Config(format!("etcd member address `{addr}` is not valid: {err}"))
    })?;
    Ok(endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true)
        .connect_lazy())
}

/// Does this status mean the member could not be reached (rather than that it refused)?
fn unreachable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
    ) && !status.message().contains("compacted")
}

/// A short form of a status for messages.
fn brief(status: &Status) -> String {
    let message = status.message();
    if message.is_empty() {
        format!("{:?}", status.code())
    } else {
        message.to_string()
    }
}

/// An answer of etcd's that is an error, as the store reports it.
pub(crate) fn status_error(status: Status) -> StoreError {
    StoreError::Etcd(format!("{:?}: {}", status.code(), status.message()))
}
