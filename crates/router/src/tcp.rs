//! L4 mode: each client connection is joined to one endpoint connection and bytes are copied
//! both ways. `copy_bidirectional` forwards a half-close (one side's FIN becomes a write
//! shutdown on the other) and keeps copying the other direction until it closes too.

use crate::endpoint::Endpoint;
use crate::endpoints::Endpoints;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// Extra endpoints tried after a connect failure; as the HTTP proxy's `DEFAULT_RETRIES`.
pub const CONNECT_RETRIES: u32 = 2;

/// Time to establish an endpoint connection; Envoy's cluster `connect_timeout` default (5 s).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves clients from `listener` until `shutdown` completes. Connections already joined keep
/// running in their own tasks after this returns; their endpoint stays counted in flight until
/// they close, which is what a drain waits on. With no ready endpoint a new connection waits up
/// to `queue_timeout` for one (the service's bounded queue), then is closed.
pub async fn serve(
    endpoints: Arc<Endpoints>,
    listener: TcpListener,
    queue_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    tokio::spawn(proxy_connection(Arc::clone(&endpoints), client, peer, queue_timeout));
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
    queue_timeout: Duration,
) {
    let started = Instant::now();
    endpoints.metrics.concurrency.start(started);
    let _ = client.set_nodelay(true);
    let key = crate::balance::client_key(peer.ip());
    let joined = match endpoints.wait_ready(queue_timeout).await {
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
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((sent, received)) => {
            tracing::trace!(%peer, endpoint = %endpoint.id, sent, received, "connection closed")
        }
        Err(error) => {
            tracing::debug!(%peer, endpoint = %endpoint.id, %error, "connection ended with an error")
        }
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
