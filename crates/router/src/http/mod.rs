//! The HTTP reverse proxy: accepts HTTP/1.1 and h2c from clients, forwards each request to one
//! endpoint over a pooled HTTP/1.1 keep-alive connection, and streams bodies both ways.
//!
//! Two paths serve clients. HTTP/1.1 (and 1.0) connections, nearly all traffic, go through `h1`,
//! ebb's own keep-alive proxy loop on `httparse` (why: its module doc). Connections that open
//! with the HTTP/2 preface (h2c with prior knowledge) go through hyper's server, whose requests
//! `forward` sends upstream over hyper's pooled HTTP/1.1 client.
//!
//! Pieces, each with one job: [`ProxyConfig`] (limits and their sources), [`Proxy::serve`] (accept
//! loop, and the choice of path per connection), `h1` (the HTTP/1.1 path), `forward` (pick,
//! retry, time out: the hyper path, and the helpers both share), `headers` (hop-by-hop and
//! forwarding headers), `upgrade` (WebSocket tunnels on the hyper path).
//!
//! Failures are absorbed by retries (`forward`, within a `budget`) and passive outlier
//! ejection (on [`crate::endpoint::Outlier`]). With no ready instance a request waits in the
//! service's bounded queue ([`crate::endpoints::Endpoints::wait_ready`]). Every request feeds
//! the service's and its endpoint's [`crate::metrics::Metrics`] (`tracking`).

mod budget;
mod forward;
mod h1;
mod h2;

pub(crate) use h1::fuzzing;
mod headers;
mod pump;
mod retry;
mod tracking;
mod upgrade;

use crate::endpoints::Endpoints;
pub use budget::{RetryBudget, MAX_TOKENS, MIN_RETRIES_PER_SEC, RETRY_RATIO};
use forward::UpstreamBody;
use hyper::body::Bytes;
use hyper::header::HeaderName;
use hyper::StatusCode;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
pub use tracking::Tracked;

/// The body of every response the proxy sends: the upstream's streamed body, or a short body
/// the proxy wrote itself (errors). An enum rather than a boxed body so no response allocates.
pub type ProxyBody = http_body_util::Either<Tracked, http_body_util::Full<Bytes>>;

// The defaults a deploy file can override are the deploy file's own, defined once in core:
// the request timeout, the retries and the cold-start queue's wait.
pub use ebb_core::service::{DEFAULT_QUEUE_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, DEFAULT_RETRIES};

/// How long a client may take to send a complete request head. A client that trickles headers
/// (slowloris) is cut off after this. 10 s: HAProxy's recommended `timeout http-request`;
/// nginx's `client_header_timeout` is 60 s, which we find too generous for a front door.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest request head accepted; larger gets 431. 64 KiB: above nginx's
/// `large_client_header_buffers` (4 × 8 KiB) and Envoy's 60 KiB `max_request_headers_kb`, so
/// anything a real client sends fits.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;

/// Time to establish a TCP connection to an endpoint before the attempt counts as a connect
/// failure (and is retried elsewhere). 5 s: Envoy's cluster `connect_timeout` default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a pooled upstream connection may sit idle. 90 s: hyper's and Go's
/// `IdleConnTimeout` default; most backends close idle keep-alive connections later than that.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Retry-After sent with the no-endpoint status: clients should come back soon, since an
/// instance may become ready (or start from zero) within a second or two.
pub const DEFAULT_NO_ENDPOINT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// How long an HTTP/2 connection may go without a new request before the router asks it to
/// finish (GOAWAY; open streams complete). 75 s: nginx's `keepalive_timeout`, which nginx
/// applies to HTTP/2 connections too.
pub const DEFAULT_H2_IDLE_TIMEOUT: Duration = Duration::from_secs(75);

/// How long a client may accept no byte of a response before the proxy gives up on it (its
/// connection closes, and the endpoint connection with it). 60 s: nginx's `send_timeout`
/// default; HAProxy's `timeout client` and Envoy's stream idle timeout are of that order too.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// Limits and behaviour of one HTTP listener.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Upstream time to response head; past it the client gets 504.
    pub request_timeout: Duration,
    /// A client that accepts no byte of a response for this long is cut off (HTTP/1.1 path).
    pub send_timeout: Duration,
    /// An HTTP/2 connection with no new request for this long is asked to finish.
    pub h2_idle_timeout: Duration,
    /// Time the client has to send a full request head; past it the connection is closed.
    pub header_read_timeout: Duration,
    /// Largest request head; larger gets 431 (HTTP/1.1) or a stream error (h2).
    pub max_header_bytes: usize,
    /// Extra attempts on other endpoints: after a connect failure, and for idempotent bodiless
    /// requests after a reset or a 502/503 (within the [`RetryBudget`]).
    pub retries: u32,
    /// Time to connect to an endpoint before the attempt counts as a connect failure.
    pub connect_timeout: Duration,
    /// Status when no endpoint is ready (503).
    pub no_endpoint_status: StatusCode,
    /// `Retry-After` sent with `no_endpoint_status`, rounded up to whole seconds.
    pub no_endpoint_retry_after: Duration,
    /// How long a request waits for a first ready instance (bounded queue) before
    /// `no_endpoint_status`.
    pub queue_timeout: Duration,
    /// Consistent hashing keys on this header when a request has it; else on the client address.
    pub hash_header: Option<HeaderName>,
    /// The cap on open client connections (shared by every listener of the router); `None`:
    /// no cap.
    pub connections: Option<crate::limit::ConnectionLimit>,
    /// TLS terminated on this listener (HTTP/2 or HTTP/1.1 by ALPN); `None`: plain HTTP, with
    /// h2c by prior knowledge.
    pub tls: Option<std::sync::Arc<crate::tls::Terminator>>,
    /// How far responses are read ahead of slow clients (HTTP/1.1 path), shared by every
    /// listener of the router.
    pub read_ahead: std::sync::Arc<crate::read_ahead::ReadAhead>,
}

impl Default for ProxyConfig {
    fn default() -> ProxyConfig {
        ProxyConfig {
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            send_timeout: DEFAULT_SEND_TIMEOUT,
            h2_idle_timeout: DEFAULT_H2_IDLE_TIMEOUT,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            retries: DEFAULT_RETRIES,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            no_endpoint_status: StatusCode::SERVICE_UNAVAILABLE,
            no_endpoint_retry_after: DEFAULT_NO_ENDPOINT_RETRY_AFTER,
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
            hash_header: None,
            connections: None,
            tls: None,
            read_ahead: std::sync::Arc::new(crate::read_ahead::ReadAhead::in_memory()),
        }
    }
}

/// How a proxy stops serving (what its `serve` shutdown future resolves to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Stop accepting, finish the requests in flight, close the connections.
    Close,
    /// Another proxy took over the listening socket (new settings): stop accepting, but give
    /// connections already accepted the header read timeout to send their request before the
    /// graceful close. Closing at once would drop a client that connected a moment before the
    /// switch and had not yet sent its request.
    Handover,
}

/// An HTTP reverse proxy in front of one service's endpoints. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    endpoints: Arc<Endpoints>,
    config: ProxyConfig,
    client: Client<HttpConnector, UpstreamBody>,
    budget: RetryBudget,
}

// === impl Proxy ===

impl Proxy {
    /// A proxy to `endpoints` with the limits and behaviour of `config`.
    pub fn new(endpoints: Arc<Endpoints>, config: ProxyConfig) -> Proxy {
        let client = upstream_client(&config);
        Proxy {
            inner: Arc::new(Inner {
                endpoints,
                config,
                client,
                budget: RetryBudget::new(std::time::Instant::now()),
            }),
        }
    }

    /// The settings it was built with.
    pub fn config(&self) -> &ProxyConfig {
        &self.inner.config
    }

    /// Serves clients from `listener` until `shutdown` completes, then stops accepting, lets
    /// each connection finish its in-flight requests (idle keep-alive connections close; after
    /// a [`Stop::Handover`], only once the header read timeout has passed) and returns. Bound
    /// the wait from outside with a timeout if needed.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = Stop>) {
        let builder = self.server_builder();
        let connections = h1::Connections::new();
        tokio::pin!(shutdown);
        let stop = loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        // Past the cap the new connection is closed at once; those open go on.
                        let slot = match &self.inner.config.connections {
                            Some(limit) => match limit.try_acquire("a service port") {
                                Some(slot) => Some(slot),
                                None => continue,
                            },
                            None => None,
                        };
                        self.spawn_connection(&builder, &connections, stream, peer, slot)
                    }
                    Err(error) => accept_backoff(error).await,
                },
                stop = &mut shutdown => break stop,
            }
        };
        drop(listener);
        if stop == Stop::Handover {
            tokio::time::sleep(self.inner.config.header_read_timeout).await;
        }
        connections.stop().await;
    }

    /// hyper's server: auto-detects HTTP/1.1 or h2c; enforces the head size and read timeout.
    fn server_builder(&self) -> auto::Builder<TokioExecutor> {
        let config = &self.inner.config;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout)
            // hyper answers 431 when the head does not fit its read buffer (8 KiB minimum).
            .max_buf_size(config.max_header_bytes.max(8 * 1024));
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX));
        builder
    }

    /// One task per connection. Waits (bounded by the header timeout) for the first bytes to
    /// choose the path: the HTTP/2 preface (`PRI * HTTP/2.0`) goes to hyper, anything else to
    /// the HTTP/1.1 path. The wait also bounds a client that connects and sends nothing.
    fn spawn_connection(
        &self,
        builder: &auto::Builder<TokioExecutor>,
        connections: &h1::Connections,
        stream: TcpStream,
        peer: SocketAddr,
        slot: Option<crate::limit::ConnectionSlot>,
    ) {
        let builder = builder.clone();
        let registration = connections.register();
        let proxy = self.clone();
        let first_bytes_timeout = self.inner.config.header_read_timeout;
        let accepted = std::time::Instant::now();
        tokio::spawn(async move {
            let _slot = slot; // the connection's place under the cap, until it ends
            let _ = stream.set_nodelay(true);
            if let Some(tls) = proxy.inner.config.tls.clone() {
                // The handshake is bounded as a request head is: a client that stalls in it
                // holds nothing past the header timeout.
                let handshake = tls.acceptor().accept(stream);
                let Ok(Ok(stream)) = tokio::time::timeout(first_bytes_timeout, handshake).await
                else {
                    return;
                };
                let client = Peer::new(peer, true);
                if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
                    return h1::serve(proxy, stream, client, registration, accepted).await;
                }
                return h2::serve(&builder, registration, proxy, client, peer, stream).await;
            }
            let path = tokio::time::timeout(first_bytes_timeout, choose_path(&stream)).await;
            let client = Peer::new(peer, false);
            match path {
                Ok(Some(Path::Http1)) => {
                    return h1::serve(proxy, stream, client, registration, accepted).await
                }
                Ok(Some(Path::H2c)) => {}
                // Closed, failed, or no decision within the header timeout (a client that
                // sends nothing, or `P` and no more): nothing is owed to it.
                Ok(None) | Err(_) => return,
            }
            h2::serve(&builder, registration, proxy, client, peer, stream).await;
        });
    }
}

/// The connection preface of HTTP/2 with prior knowledge (RFC 9113 §3.4). No HTTP/1 method is
/// `PRI`, so the first byte that differs sends a connection to the HTTP/1.1 path.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How often a connection whose first bytes could still be the HTTP/2 preface is looked at
/// again, while the rest of the preface has not arrived (within the header timeout).
const PREFACE_POLL: Duration = Duration::from_millis(5);

/// The two ways a client connection is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// ebb's own HTTP/1.1 loop.
    Http1,
    /// hyper's HTTP/2 server, once the whole preface is there.
    H2c,
}

/// What the bytes received so far say: `Some` once they decide, `None` while they could still
/// be the start of the HTTP/2 preface.
fn path_of(first: &[u8]) -> Option<Path> {
    let n = first.len().min(H2_PREFACE.len());
    if first[..n] != H2_PREFACE[..n] {
        Some(Path::Http1)
    } else if n == H2_PREFACE.len() {
        Some(Path::H2c)
    } else {
        None
    }
}

/// Peeks at the first bytes until they choose a path; `None` when the client closes (or the
/// socket fails) first. A client that sends part of the preface and stops is held only until
/// the caller's timeout: hyper would otherwise wait for the rest forever.
async fn choose_path(stream: &TcpStream) -> Option<Path> {
    let mut first = [0u8; H2_PREFACE.len()];
    let mut seen = 0;
    loop {
        let n = stream.peek(&mut first).await.ok()?;
        if n == 0 {
            return None;
        }
        if let Some(path) = path_of(&first[..n]) {
            return Some(path);
        }
        // `peek` returns at once while bytes wait unread: look again after a pause, not in a
        // busy loop, until more arrive.
        if n == seen {
            tokio::time::sleep(PREFACE_POLL).await;
        }
        seen = n;
    }
}

/// What the proxy knows of a client connection, worked out once for all its requests.
#[derive(Clone)]
struct Peer {
    /// The address as an `X-Forwarded-For` value (cloned per request: a reference count).
    forwarded_for: hyper::header::HeaderValue,
    /// Its consistent-hashing key.
    key: u64,
    /// It came over TLS: `X-Forwarded-Proto: https`.
    https: bool,
    /// Its HTTP/2 connection's streams (`None` on the HTTP/1.1 path): a response pumped to it
    /// reports a client that stopped reading there.
    connection: Option<Arc<h2::Activity>>,
}

impl Peer {
    fn new(addr: SocketAddr, https: bool) -> Peer {
        Peer {
            forwarded_for: headers::client_ip_value(addr.ip()),
            key: crate::balance::client_key(addr.ip()),
            https,
            connection: None,
        }
    }
}

/// The pooled upstream client: HTTP/1.1 keep-alive, no Nagle delay, bounded connect time.
fn upstream_client(config: &ProxyConfig) -> Client<HttpConnector, UpstreamBody> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(config.connect_timeout));
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(DEFAULT_POOL_IDLE_TIMEOUT)
        .build(connector)
}

/// Accept fails when the process is out of file descriptors (EMFILE) or a connection was reset
/// before it was accepted. Pausing briefly keeps the loop from spinning while fds are short.
async fn accept_backoff(error: std::io::Error) {
    tracing::warn!(%error, "accept failed");
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_differing_byte_chooses_http1_and_only_the_whole_preface_h2c() {
        assert_eq!(path_of(b"GET / HTTP/1.1\r\n"), Some(Path::Http1));
        assert_eq!(path_of(b"POST"), Some(Path::Http1));
        assert_eq!(path_of(b"PRIX"), Some(Path::Http1));
        assert_eq!(path_of(b"P"), None, "could still be the preface");
        assert_eq!(path_of(b"PRI * HTTP/2.0\r\n"), None);
        assert_eq!(path_of(H2_PREFACE), Some(Path::H2c));
        let mut more = H2_PREFACE.to_vec();
        more.extend_from_slice(b"\x00\x00\x12\x04");
        assert_eq!(path_of(&more), Some(Path::H2c));
    }
}
