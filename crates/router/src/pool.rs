//! Idle keep-alive connections to one endpoint, for the HTTP/1.1 path to reuse.
//!
//! Newest first (LIFO): the connection used last is the one most likely still open and warm;
//! the oldest are the ones that age out. A connection the endpoint closed while it sat idle is
//! noticed at checkout without a system call (tokio already saw its readiness event) and
//! dropped; one closed a moment later is what the proxy's retry on a fresh connection is for.
//! A request that cannot be retried (not idempotent, or streaming its body) only takes a
//! connection used within the last second, far from the endpoint's own idle timeout.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// How long a pooled connection may sit idle. 90 s: hyper's and Go's `IdleConnTimeout`
/// default; most backends close idle keep-alive connections later than that.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Most idle connections kept per endpoint. 256: above any client concurrency one endpoint of a
/// 2-core machine serves well, bounding the file descriptors an idle endpoint holds. (nginx's
/// `keepalive` is per worker and usually 16–64; hyper's pool is unbounded by default.)
pub const MAX_IDLE: usize = 256;

/// The longest a connection may have been idle to carry a request that cannot be sent again (not
/// idempotent, or with a body that streams). An endpoint closes idle keep-alive connections
/// after its own timeout; one closing just as such a request arrives loses the request, and the
/// client gets a 502 because the proxy may not repeat it. A connection used within the last
/// second is far from any common server's timeout. 1 s: under the shortest common default,
/// gunicorn's 2 s `keepalive` (Node.js, uvicorn and Apache: 5 s).
pub const UNREPEATABLE_MAX_IDLE: Duration = Duration::from_secs(1);

/// The idle connections of one endpoint. The lock is held for a push or a pop, never across an
/// await, and is uncontended unless two router threads finish with one endpoint in the same
/// instant (hyper's pool takes a lock the same way).
#[derive(Default)]
pub struct IdlePool {
    idle: Mutex<VecDeque<(TcpStream, Instant)>>,
}

impl IdlePool {
    /// A connection idle since less than [`IDLE_TIMEOUT`] that the endpoint has not closed (as
    /// far as the event loop knows), if there is one.
    pub fn checkout(&self, now: Instant) -> Option<TcpStream> {
        self.checkout_idle_within(now, IDLE_TIMEOUT)
    }

    /// Like [`IdlePool::checkout`], for a request that cannot be sent a second time: only a
    /// connection idle for less than [`UNREPEATABLE_MAX_IDLE`], one the endpoint's own
    /// keep-alive timeout is not about to close. Older connections stay for other requests.
    pub fn checkout_recent(&self, now: Instant) -> Option<TcpStream> {
        self.checkout_idle_within(now, UNREPEATABLE_MAX_IDLE)
    }

    /// The newest usable connection idle for at most `limit`. Connections past
    /// [`IDLE_TIMEOUT`] and connections with a pending event are dropped on the way.
    fn checkout_idle_within(&self, now: Instant, limit: Duration) -> Option<TcpStream> {
        let mut stale = Vec::new(); // allocates only when a connection has to go
        let found = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                let Some((stream, since)) = idle.pop_back() else {
                    break None;
                };
                let idle_for = now.saturating_duration_since(since);
                if idle_for > IDLE_TIMEOUT {
                    stale.push(stream);
                    stale.extend(idle.drain(..).map(|(s, _)| s)); // the rest are older
                } else if has_pending_event(&stream) {
                    stale.push(stream);
                } else if idle_for > limit {
                    idle.push_back((stream, since)); // the newest is too old: so are the rest
                    break None;
                } else {
                    break Some(stream);
                }
            }
        };
        drop(stale); // closed outside the lock
        found
    }

    /// Keeps `stream` for reuse (the response on it ended cleanly).
    ///
    /// Also drops, from the old end, connections the endpoint has closed or that idled past
    /// [`IDLE_TIMEOUT`]. Checkouts only look at the newest, so without this the old end could
    /// fill with dead connections: requests that take only recent connections, arriving every
    /// 1.5 s at an endpoint that closes idle ones after 2 s, open a new connection each time.
    /// Only connections idle for more than [`UNREPEATABLE_MAX_IDLE`] are looked at, so under
    /// load (every connection recently used) this costs one comparison.
    pub fn checkin(&self, stream: TcpStream, now: Instant) {
        let mut evicted = Vec::new(); // allocates only when a connection has to go
        {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            while let Some((oldest, since)) = idle.front() {
                let idle_for = now.saturating_duration_since(*since);
                let dead = idle_for > UNREPEATABLE_MAX_IDLE
                    && (idle_for > IDLE_TIMEOUT || has_pending_event(oldest));
                if !dead && idle.len() < MAX_IDLE {
                    break;
                }
                evicted.extend(idle.pop_front().map(|(s, _)| s));
            }
            idle.push_back((stream, now));
        }
        drop(evicted); // closed outside the lock
    }

    /// Closes the connections that idled past [`IDLE_TIMEOUT`] or that the endpoint closed,
    /// without waiting for a request to come by: the router calls it for every endpoint once a
    /// second, off the request path, so that an endpoint nobody sends to holds no stale
    /// connections (and file descriptors). Returns how many were closed.
    pub fn reap(&self, now: Instant) -> usize {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let before = idle.len();
        // In place: nothing allocates when nothing goes, which is almost every second. The few
        // sockets that do go are closed under the lock; checkouts wait a syscall at most.
        idle.retain(|(stream, since)| {
            now.saturating_duration_since(*since) <= IDLE_TIMEOUT && !has_pending_event(stream)
        });
        before - idle.len()
    }

    /// Idle connections now (for tests and the debug view).
    pub fn len(&self) -> usize {
        self.idle.lock().map(|idle| idle.len()).unwrap_or(0)
    }

    /// Whether no idle connection is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for IdlePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdlePool")
            .field("idle", &self.len())
            .finish()
    }
}

/// Whether an idle connection has something to read: the endpoint closed it (EOF or reset) or
/// sent bytes nobody asked for. Either way it must not carry a request. Asks tokio's readiness
/// state, which epoll already updated: no system call.
fn has_pending_event(stream: &TcpStream) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    matches!(stream.poll_read_ready(&mut cx), Poll::Ready(_))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    async fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let addr = listener.local_addr().unwrap();
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (client.unwrap(), server.unwrap().0)
    }

    #[tokio::test]
    async fn the_newest_open_connection_is_reused_and_closed_ones_are_dropped() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = IdlePool::default();
        let now = Instant::now();
        let (old, _old_server) = pair(&listener).await;
        let (closed, closed_server) = pair(&listener).await;
        let old_port = old.local_addr().unwrap().port();
        pool.checkin(old, now);
        pool.checkin(closed, now);
        drop(closed_server);
        // Let the event loop see the close.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let reused = pool.checkout(now).expect("the open connection");
        assert_eq!(reused.local_addr().unwrap().port(), old_port);
        assert!(pool.is_empty());
    }

    #[tokio::test]
    async fn a_connection_with_unasked_bytes_is_not_reused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = IdlePool::default();
        let (stream, mut server) = pair(&listener).await;
        pool.checkin(stream, Instant::now());
        server.write_all(b"junk").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(pool.checkout(Instant::now()).is_none());
    }

    #[tokio::test]
    async fn a_request_that_cannot_be_repeated_only_takes_a_recently_used_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = IdlePool::default();
        let (stream, _server) = pair(&listener).await;
        let then = Instant::now();
        pool.checkin(stream, then);
        let later = then + UNREPEATABLE_MAX_IDLE + Duration::from_millis(1);
        assert!(pool.checkout_recent(later).is_none());
        assert_eq!(pool.len(), 1, "kept for a request that can be repeated");
        assert!(pool.checkout(later).is_some());
        let (stream, _server) = pair(&listener).await;
        pool.checkin(stream, then);
        assert!(pool.checkout_recent(then + UNREPEATABLE_MAX_IDLE).is_some());
    }

    #[tokio::test]
    async fn connections_the_endpoint_closed_do_not_pile_up_under_recent_only_checkouts() {
        // Requests that only take recent connections, every 1.5 s, at an endpoint that closes
        // connections idle for 2 s: each opens a new connection; the closed ones must go.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = IdlePool::default();
        let start = Instant::now();
        let mut servers = Vec::new();
        for i in 0..10u32 {
            let now = start + Duration::from_millis(1500) * i;
            assert!(pool.checkout_recent(now).is_none(), "request {i}");
            let (stream, server) = pair(&listener).await;
            servers.push(Some(server));
            // The endpoint closes every connection idle for 2 s or more by now.
            if i >= 2 {
                servers[i as usize - 2] = None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await; // the event loop sees it
            pool.checkin(stream, now);
        }
        assert!(pool.len() <= 3, "{} connections kept", pool.len());
    }

    #[tokio::test]
    async fn connections_idle_past_the_timeout_are_dropped() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = IdlePool::default();
        let (a, _a) = pair(&listener).await;
        let (b, _b) = pair(&listener).await;
        let then = Instant::now();
        pool.checkin(a, then);
        pool.checkin(b, then);
        assert!(pool
            .checkout(then + IDLE_TIMEOUT + Duration::from_secs(1))
            .is_none());
        assert!(pool.is_empty());
    }

    #[tokio::test]
    async fn stale_and_closed_connections_are_reaped_without_a_request() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = IdlePool::default();
        let then = Instant::now();
        let (fresh, _fresh_server) = pair(&listener).await;
        let (closed, closed_server) = pair(&listener).await;
        pool.checkin(fresh, then);
        pool.checkin(closed, then);
        drop(closed_server);
        tokio::time::sleep(Duration::from_millis(50)).await; // the event loop sees the close
        assert_eq!(
            pool.reap(then + Duration::from_secs(2)),
            1,
            "the closed one"
        );
        assert_eq!(pool.len(), 1);
        assert_eq!(pool.reap(then + IDLE_TIMEOUT + Duration::from_secs(1)), 1);
        assert!(pool.is_empty());
    }

    #[tokio::test]
    async fn the_pool_keeps_at_most_max_idle() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = IdlePool::default();
        let mut servers = Vec::new();
        for _ in 0..MAX_IDLE + 3 {
            let (stream, server) = pair(&listener).await;
            servers.push(server);
            pool.checkin(stream, Instant::now());
        }
        assert_eq!(pool.len(), MAX_IDLE);
    }
}
