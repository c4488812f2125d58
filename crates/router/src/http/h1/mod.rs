//! The HTTP/1.1 path: ebb's own keep-alive proxy loop, without hyper, for every client that
//! does not open with the HTTP/2 preface.
//!
//! Why our own: a hyper-based proxy costs 10–13 µs of user CPU per request on this 2-core
//! machine against nginx's 7, and even a bare hyper proxy stayed at 0.8–0.97× nginx
//! (BENCHMARKS.md, "A floor without hyper"). This loop makes the same system calls as nginx (one
//! read and one write per side per request) and keeps its own work small: the head is parsed by
//! `httparse` into a stack array and rewritten straight into a reused buffer, the balancer
//! picks an endpoint lock-free, a pooled upstream connection is checked out, and head plus
//! whatever body arrived with it leave in one write. Buffers live as long as the connection:
//! nothing is allocated per request in the steady state.
//!
//! One task per client connection does everything, in order: read a request head (within the
//! header timeout), forward it, stream the response back, return the upstream connection to the
//! endpoint's pool, and loop. A request wholly in hand (no body, or a body that came with the
//! head) takes `forward`, with the hyper path's retries; one whose body is still arriving takes
//! `stream`, where upload and response flow at once. A 101 turns both connections into a
//! tunnel. Both paths do for a request what the hyper path does, with the same helpers: metrics,
//! in-flight tracking, the retry budget, ejection, the cold-start queue, forwarding headers.

mod body;
mod buffer;
mod forward;
mod head;
mod relay;
mod send_timeout;
mod shutdown;
mod stream;
mod timer;

pub(crate) mod fuzzing;

pub(super) use shutdown::{Connections, Registration};

use super::tracking::ServiceRequest;
use super::{Peer, Proxy};
use body::Remaining;
use buffer::Buffer;
use head::{Reject, RequestHead, Rewrite};
use send_timeout::SendTimeout;
use std::io;
use std::time::{Duration, Instant};
use timer::LazyTimer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the HTTP/1.1 loop serves a client over: a TCP stream, or TLS over one. Generic rather
/// than boxed, so that the plain path compiles to exactly what it was.
pub(crate) trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The read and write halves, used at once while an upload streams up and the response
    /// comes back.
    fn halves(
        &mut self,
    ) -> (
        impl AsyncRead + Unpin + Send + '_,
        impl AsyncWrite + Unpin + Send + '_,
    );
}

impl ClientIo for TcpStream {
    fn halves(
        &mut self,
    ) -> (
        impl AsyncRead + Unpin + Send + '_,
        impl AsyncWrite + Unpin + Send + '_,
    ) {
        self.split()
    }
}

impl ClientIo for tokio_rustls::server::TlsStream<TcpStream> {
    fn halves(
        &mut self,
    ) -> (
        impl AsyncRead + Unpin + Send + '_,
        impl AsyncWrite + Unpin + Send + '_,
    ) {
        // A TLS session's reads and writes share its state: tokio's split locks it per call.
        tokio::io::split(self)
    }
}

/// Serves one client connection until it closes, breaks the protocol, or the proxy stops.
/// `accepted` is when the connection was accepted: the first head's timeout counts from then.
pub(super) async fn serve<C: ClientIo>(
    proxy: Proxy,
    client: C,
    peer: Peer,
    registration: Registration,
    accepted: Instant,
) {
    let config = &proxy.inner.config;
    let mut timers = Timers {
        head: LazyTimer::new(accepted + config.header_read_timeout),
        request: LazyTimer::new(accepted + config.request_timeout),
    };
    let mut conn = Conn {
        io: Io {
            client: SendTimeout::new(client, config.send_timeout),
            from_client: Buffer::new(),
            from_upstream: Buffer::empty(),
            to_upstream: Vec::with_capacity(buffer::INITIAL_SIZE),
            to_client: Vec::new(),
            informational_sent: false,
        },
        proxy,
        peer,
        registration,
    };
    let mut since = accepted;
    loop {
        let request = match conn.read_request(&mut timers.head, since).await {
            Ok(request) => request,
            Err(End::Closed) => return,
            Err(End::Refused(status, text)) => {
                let reply = Reply::close(status, text);
                if reply
                    .write(&mut conn.io.client, &mut conn.io.to_client)
                    .await
                    .is_ok()
                {
                    linger(&mut conn.io.client).await;
                }
                return;
            }
        };
        conn.io.lend_response_buffers();
        let next = conn.handle(request, &mut timers.request).await;
        match next {
            Next::KeepAlive => {
                since = Instant::now();
                conn.io.return_response_buffers();
            }
            Next::Close => {
                let _ = conn.io.client.shutdown().await;
                return;
            }
            Next::CloseUnread => {
                linger(&mut conn.io.client).await;
                return;
            }
        }
    }
}

/// A connection's two lazily armed timers (see `timer`).
struct Timers {
    /// The next request head must arrive within the header timeout.
    head: LazyTimer,
    /// A response head must arrive within the request timeout.
    request: LazyTimer,
}

/// A status the proxy answers with itself: code and reason phrase.
type Status = (u16, &'static str);

const BAD_REQUEST: Status = (400, "Bad Request");
const METHOD_NOT_ALLOWED: Status = (405, "Method Not Allowed");
const REQUEST_TIMEOUT: Status = (408, "Request Timeout");
const HEADERS_TOO_LARGE: Status = (431, "Request Header Fields Too Large");
const NOT_IMPLEMENTED: Status = (501, "Not Implemented");
const BAD_GATEWAY: Status = (502, "Bad Gateway");
const GATEWAY_TIMEOUT: Status = (504, "Gateway Timeout");

/// Sent when a client's `Expect: 100-continue` request body is about to be read.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// How reading a request head ended without a request.
enum End {
    /// The client closed, went idle past the timeout, or the proxy is stopping: close quietly.
    Closed,
    /// Answer with this status and text, then close.
    Refused(Status, &'static str),
}

/// Whether the client connection carries on after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    KeepAlive,
    /// Close: everything the client sent has been read.
    Close,
    /// Close, though the client may have sent bytes not read (a body cut short, a pipelined
    /// request): linger, so that the kernel does not answer them with a reset that could destroy
    /// the response just sent.
    CloseUnread,
}

/// Why an attempt got no usable response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// No endpoint became ready within the queue's wait limit (or the queue was full).
    NoEndpoint,
    /// The endpoint refused or did not accept the connection in time: nothing was sent.
    Connect,
    /// Writing the request failed: the endpoint cannot have a complete request.
    Unsent,
    /// The connection closed or reset after the request went, before any byte of a response.
    Reset,
    /// The connection broke after part of the response, or while the body went up.
    Upstream,
    /// The endpoint's response head is not valid HTTP/1.1, or its body framing is broken.
    BadResponse,
    /// The client went away or broke the protocol mid-request: nobody to answer.
    Client,
    /// No response head within the request timeout.
    Timeout,
}

impl Failure {
    /// Failures that count against the endpoint (outlier detection), besides connect failures.
    fn is_endpoint_fault(self) -> bool {
        matches!(
            self,
            Failure::Unsent | Failure::Reset | Failure::Upstream | Failure::BadResponse
        )
    }
}

struct Conn<C> {
    proxy: Proxy,
    peer: Peer,
    registration: Registration,
    io: Io<C>,
}

/// The client connection and the buffers every request on it reuses.
struct Io<C> {
    client: C,
    /// Bytes from the client not yet forwarded (the next head, pipelined requests).
    from_client: Buffer,
    /// Bytes from the current endpoint connection.
    from_upstream: Buffer,
    /// The request head (and the body that came with it) to send upstream. Kept until the
    /// response head arrives, so that a stale pooled connection can be replaced.
    to_upstream: Vec<u8>,
    /// The response head (and the body that came with it) to send to the client.
    to_client: Vec<u8>,
    /// An informational response (1xx) went to the client for the current request: an error
    /// reply can no longer be sent cleanly, only a close.
    informational_sent: bool,
}

impl<C> Io<C> {
    /// Takes response buffers for a request (see [`buffer::Spare`]).
    fn lend_response_buffers(&mut self) {
        if self.from_upstream.is_unallocated() {
            (self.from_upstream, self.to_client) = buffer::Spare::take();
        }
    }

    /// Gives the response buffers back while the connection waits for its next request; kept
    /// when they still hold bytes (a response read past its end is never reused anyway).
    fn return_response_buffers(&mut self) {
        if self.from_upstream.is_empty() {
            let buffer = std::mem::replace(&mut self.from_upstream, Buffer::empty());
            let out = std::mem::take(&mut self.to_client);
            buffer::Spare::give(buffer, out);
        }
    }
}

impl<C: ClientIo> Conn<C> {
    /// Reads the next request head (the header timeout counting from `since`; idle connections
    /// close when the proxy stops) and rewrites it into `to_upstream`.
    async fn read_request(
        &mut self,
        head_timer: &mut LazyTimer,
        since: Instant,
    ) -> Result<RequestHead, End> {
        let config = &self.proxy.inner.config;
        let rewrite = Rewrite {
            client_ip: self.peer.forwarded_for.as_bytes(),
            hash_header: config.hash_header.as_ref().map(|name| name.as_str()),
            https: self.peer.https,
        };
        let io = &mut self.io;
        let signal = &self.registration.signal;
        head_timer.start(since, config.header_read_timeout);
        let mut incomplete = 0; // bytes known not to hold a whole head
        loop {
            let buffered = io.from_client.filled();
            if head::may_be_complete(buffered, incomplete) {
                match head::parse_request(buffered, &rewrite, &mut io.to_upstream) {
                    Ok(Some(request)) => return Ok(request),
                    Ok(None) => {}
                    Err(reject) => return Err(refusal(reject)),
                }
            }
            incomplete = buffered.len();
            if incomplete >= config.max_header_bytes {
                return Err(End::Refused(HEADERS_TOO_LARGE, "request head too large"));
            }
            let idle = incomplete == 0;
            let read = tokio::select! {
                biased;
                read = io.from_client.fill(&mut io.client, config.max_header_bytes) => read,
                () = head_timer.expired() => {
                    return Err(if idle {
                        End::Closed
                    } else {
                        End::Refused(REQUEST_TIMEOUT, "request head not received in time")
                    });
                }
                () = signal.stopped(), if idle => return Err(End::Closed),
            };
            match read {
                Ok(0) => return Err(End::Closed),
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                    return Err(End::Refused(HEADERS_TOO_LARGE, "request head too large"))
                }
                Err(_) => return Err(End::Closed),
            }
        }
    }

    /// Forwards one request and relays its response.
    async fn handle(&mut self, request: RequestHead, request_timer: &mut LazyTimer) -> Next {
        let now = Instant::now();
        let service = ServiceRequest::begin(&self.proxy.inner.endpoints, request.method, now);
        let io = &mut self.io;
        io.informational_sent = false;
        io.from_client.consume(request.len);
        // The part of the body that came with the head goes up with it, in one write.
        let mut body = Remaining::new(request.framing);
        let Ok(take) = body.take(io.from_client.filled()) else {
            let reply = Reply::close(BAD_REQUEST, "malformed chunked body");
            let _ = reply.write(&mut io.client, &mut io.to_client).await;
            return Next::CloseUnread;
        };
        io.to_upstream
            .extend_from_slice(&io.from_client.filled()[..take]);
        io.from_client.consume(take);
        request_timer.start(now, self.proxy.inner.config.request_timeout);
        if body.done() {
            self.forward(&request, service, request_timer, now).await
        } else {
            self.stream(&request, body, service, request_timer).await
        }
    }

    /// Answers a request that got no response from an endpoint. `read_whole` tells whether the
    /// request was read to its end (else the connection cannot carry on).
    async fn fail(
        &mut self,
        failure: Failure,
        request: &RequestHead,
        read_whole: bool,
        service: &ServiceRequest,
    ) -> Next {
        if failure == Failure::Client || self.io.informational_sent {
            return Next::CloseUnread;
        }
        let config = &self.proxy.inner.config;
        let (status, text) = match failure {
            Failure::NoEndpoint => {
                let code = config.no_endpoint_status;
                let reason = code.canonical_reason().unwrap_or("Service Unavailable");
                ((code.as_u16(), reason), "no ready instance")
            }
            Failure::Connect => {
                tracing::warn!("no endpoint accepted the connection");
                (BAD_GATEWAY, "upstream connect failed")
            }
            Failure::Timeout => (GATEWAY_TIMEOUT, "upstream timed out"),
            _ => {
                tracing::warn!(?failure, "upstream request failed");
                (BAD_GATEWAY, "upstream request failed")
            }
        };
        service.respond(status.0, Instant::now());
        let keep_alive = request.keep_alive
            && read_whole
            && failure != Failure::Timeout
            && !self.registration.signal.stopping();
        let reply = Reply {
            status,
            text,
            retry_after: (failure == Failure::NoEndpoint)
                .then(|| config.no_endpoint_retry_after.as_secs_f64().ceil() as u64),
            is_head: request.is_head,
            close: !keep_alive,
        };
        match reply
            .write(&mut self.io.client, &mut self.io.to_client)
            .await
        {
            Ok(()) if keep_alive => Next::KeepAlive,
            Ok(()) if read_whole => Next::Close,
            _ => Next::CloseUnread,
        }
    }
}

/// A short plain-text response written by the proxy itself.
struct Reply<'a> {
    status: Status,
    /// The body, without its final newline.
    text: &'a str,
    retry_after: Option<u64>,
    /// No body (the request was HEAD).
    is_head: bool,
    /// With `Connection: close`.
    close: bool,
}

impl<'a> Reply<'a> {
    /// A reply that ends the connection.
    fn close(status: Status, text: &'a str) -> Reply<'a> {
        Reply {
            status,
            text,
            retry_after: None,
            is_head: false,
            close: true,
        }
    }

    async fn write(
        &self,
        client: &mut (impl AsyncWrite + Unpin),
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        use std::io::Write;
        out.clear();
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n",
            self.status.0,
            self.status.1,
            self.text.len() + 1
        );
        if let Some(seconds) = self.retry_after {
            let _ = write!(out, "retry-after: {seconds}\r\n");
        }
        if self.close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !self.is_head {
            out.extend_from_slice(self.text.as_bytes());
            out.push(b'\n');
        }
        client.write_all(out).await
    }
}

/// The longest a closing connection keeps reading what the client still sends. 2 s: long enough
/// for a client to receive the reply and close, far under nginx's `lingering_time` (30 s), which
/// guards slow uploads this proxy does not buffer.
const LINGER_TIME: Duration = Duration::from_secs(2);

/// The most a closing connection reads and discards. 256 KiB: a cut-short upload's tail in
/// flight; past it the client is not listening and a reset is deserved.
const LINGER_BYTES: usize = 256 * 1024;

/// Closes a connection whose client may still be sending: shuts down our side first, then
/// reads and discards until the client closes (bounded in time and bytes), so that unread bytes
/// do not make the kernel reset the connection before the client has read our reply (nginx's
/// lingering close).
async fn linger(client: &mut impl ClientIo) {
    if client.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    let mut read = 0;
    let _ = tokio::time::timeout(LINGER_TIME, async {
        while read < LINGER_BYTES {
            match client.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(n) => read += n,
            }
        }
    })
    .await;
}

/// The reply for a request refused before it went anywhere.
fn refusal(reject: Reject) -> End {
    let (status, text) = match reject {
        Reject::BadRequest(reason) => (BAD_REQUEST, reason),
        Reject::TooLarge => (HEADERS_TOO_LARGE, "too many header fields"),
        Reject::NotImplemented(reason) => (NOT_IMPLEMENTED, reason),
        Reject::MethodNotAllowed => (METHOD_NOT_ALLOWED, "CONNECT is not supported"),
    };
    End::Refused(status, text)
}
