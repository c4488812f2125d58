//! L4 mode: each client connection is joined to one endpoint connection and bytes are copied
//! both ways. `copy_bidirectional` forwards a half-close (one side's FIN becomes a write
//! shutdown on the other) and keeps copying the other direction until it closes too.

use crate::endpoint::Endpoint;
use crate::endpoints::Endpoints;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Extra endpoints tried after a connect failure; as the HTTP proxy's `DEFAULT_RETRIES`.
pub const CONNECT_RETRIES: u32 = 2;

/// Time to establish an endpoint connection; Envoy's cluster `connect_timeout` default (5 s).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A joined connection with no byte either way for this long is closed: 1 h, Envoy's
/// `tcp_proxy` `idle_timeout` default (HAProxy's `timeout tunnel` is often set the same). Long
/// enough for database and SSH sessions that sit idle; it only reclaims connections whose peers
/// vanished without a FIN.
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// How one TCP listener treats its connections.
#[derive(Debug, Clone)]
pub struct TcpConfig {
    /// How long a new connection waits for a ready endpoint before it is closed.
    pub queue_timeout: Duration,
    /// How long a joined connection may carry no byte before it is closed.
    pub idle_timeout: Duration,
    /// The cap on open client connections (shared with the router's other listeners); `None`:
    /// no cap.
    pub connections: Option<crate::limit::ConnectionLimit>,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            queue_timeout: ebb_core::service::DEFAULT_QUEUE_TIMEOUT,
            idle_timeout: DEFAULT_TCP_IDLE_TIMEOUT,
            connections: None,
        }
    }
}

/// Serves clients from `listener` until `shutdown` completes. Connections already joined keep
/// running in their own tasks after this returns; their endpoint stays counted in flight until
/// they close, which is what a drain waits on. With no ready endpoint a new connection waits up
/// to `config.queue_timeout` for one (the service's bounded queue), then is closed; a joined one
/// idle for `config.idle_timeout` is closed.
pub async fn serve(
    endpoints: Arc<Endpoints>,
    listener: TcpListener,
    config: TcpConfig,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    // Past the cap the new connection is closed at once; those open go on.
                    let slot = match &config.connections {
                        Some(limit) => match limit.try_acquire("a TCP service port") {
                            Some(slot) => Some(slot),
                            None => continue,
                        },
                        None => None,
                    };
                    let (endpoints, config) = (Arc::clone(&endpoints), config.clone());
                    tokio::spawn(async move {
                        let _slot = slot;
                        proxy_connection(endpoints, client, peer, config).await
                    });
                }
                Err(error) => {
                    // EMFILE or a connection reset before accept; pause so the loop cannot spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            () = &mut shutdown => return,
        }
    }
}

/// Joins one client to an endpoint; the endpoint is in flight for the connection's lifetime.
/// Metrics count a connection as a request whose latency is the connection's lifetime.
async fn proxy_connection(
    endpoints: Arc<Endpoints>,
    mut client: TcpStream,
    peer: SocketAddr,
    config: TcpConfig,
) {
    let started = Instant::now();
    endpoints.metrics.concurrency.start(started);
    let _ = client.set_nodelay(true);
    let key = crate::balance::client_key(peer.ip());
    let joined = match endpoints.wait_ready(config.queue_timeout).await {
        true => connect(&endpoints, key).await,
        false => None,
    };
    let Some((endpoint, mut upstream)) = joined else {
        tracing::debug!(%peer, "no endpoint accepted the connection; closing the client");
        endpoints.metrics.response(503, started.elapsed());
        endpoints.metrics.concurrency.end(Instant::now());
        return;
    };
    let in_flight = endpoint.begin(Instant::now());
    match copy_until_idle(&mut client, &mut upstream, config.idle_timeout).await {
        Some(Ok((sent, received))) => {
            tracing::trace!(%peer, endpoint = %endpoint.id, sent, received, "connection closed")
        }
        Some(Err(error)) => {
            tracing::debug!(%peer, endpoint = %endpoint.id, %error, "connection ended with an error")
        }
        None => tracing::debug!(%peer, endpoint = %endpoint.id, "idle connection closed"),
    }
    let now = Instant::now();
    endpoint
        .metrics
        .connection(now.saturating_duration_since(in_flight.started()));
    drop(in_flight);
    endpoints
        .metrics
        .connection(now.saturating_duration_since(started));
    endpoints.metrics.concurrency.end(now);
}

/// Connects to a picked endpoint (skipping ejected ones), trying others on failure (nothing has
/// been sent yet, so a retry is always safe); connect failures count toward outlier ejection. None when no endpoint is ready or none accepted.
async fn connect(endpoints: &Endpoints, key: u64) -> Option<(Arc<Endpoint>, TcpStream)> {
    let mut tried = Vec::new();
    for _ in 0..=CONNECT_RETRIES {
        let endpoint = endpoints.pick_available(Some(key), &tried, Instant::now())?;
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(endpoint.addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                endpoint.outlier.success();
                return Some((endpoint, stream));
            }
            Ok(Err(error)) => tracing::debug!(endpoint = %endpoint.id, %error, "connect failed"),
            Err(_elapsed) => tracing::debug!(endpoint = %endpoint.id, "connect timed out"),
        }
        endpoint.metrics.connect_error();
        endpoints.metrics.connect_error();
        if endpoints.report_failure(&endpoint, Instant::now()) {
            tracing::warn!(endpoint = %endpoint.id, "endpoint ejected after consecutive connect failures");
        }
        tried.push(endpoint.addr);
    }
    None
}

/// Copies both ways until both sides close (`Some`), or until no byte moved either way for
/// `idle` (`None`; both connections are then dropped, which closes them).
async fn copy_until_idle(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    idle: Duration,
) -> Option<io::Result<(u64, u64)>> {
    let start = Instant::now();
    let last = AtomicU64::new(0);
    let mut client = Active::new(client, &last, start);
    let mut upstream = Active::new(upstream, &last, start);
    let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    let watchdog = async {
        loop {
            let quiet_since = start + Duration::from_nanos(last.load(Ordering::Relaxed));
            let deadline = quiet_since + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    };
    tokio::select! {
        copied = copy => Some(copied),
        () = watchdog => None,
    }
}

/// A stream that notes when it last read a byte (nanoseconds since `start`, in `last`, shared
/// by both sides of a connection), for the idle timeout.
struct Active<'a, S> {
    inner: &'a mut S,
    last: &'a AtomicU64,
    start: Instant,
}

impl<'a, S> Active<'a, S> {
    fn new(inner: &'a mut S, last: &'a AtomicU64, start: Instant) -> Self {
        Active { inner, last, start }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Active<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut *this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let nanos = u64::try_from(this.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
            this.last.store(nanos, Ordering::Relaxed);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Active<'_, S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_shutdown(cx)
    }
}
