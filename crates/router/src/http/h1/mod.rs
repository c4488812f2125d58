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
//! header timeout), forward it (retries, outlier reports, queueing for a first instance, the
//! request timeout), stream the response back, return the upstream connection to the endpoint's
//! pool, and loop. A 101 turns both connections into a tunnel. Everything the hyper path does
//! for a request, this one does too, with the same helpers: metrics, in-flight tracking, the
//! retry budget, ejection, forwarding headers.

mod body;
mod buffer;
mod head;
mod shutdown;
mod timer;

pub(super) use shutdown::{Connections, Registration};

use super::forward::{is_gateway_failure, retryable_status};
use super::tracking::ServiceRequest;
use super::{Peer, Proxy};
use crate::endpoints::{Endpoint, InFlight};
use body::{Framing, Remaining};
use buffer::Buffer;
use head::{Answering, Reject, RequestHead, ResponseHead, Rewrite};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use timer::LazyTimer;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sent when a client's `Expect: 100-continue` request body is about to be read.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Serves one client connection until it closes, breaks the protocol, or the proxy stops.
pub(super) async fn serve(proxy: Proxy, client: TcpStream, peer: Peer, registration: Registration) {
    let now = Instant::now();
    let config = &proxy.inner.config;
    let mut head_timer = LazyTimer::new(now + config.header_read_timeout);
    let mut request_timer = LazyTimer::new(now + config.request_timeout);
    let mut conn = Conn {
        io: Io {
            client,
            from_client: Buffer::new(),
            from_upstream: Buffer::new(),
            to_upstream: Vec::with_capacity(buffer::INITIAL_SIZE),
            to_client: Vec::with_capacity(buffer::INITIAL_SIZE),
        },
        proxy,
        peer,
        registration,
    };
    loop {
        let request = match conn.read_request(&mut head_timer).await {
            Ok(request) => request,
            Err(End::Closed) => return,
            Err(End::Refused(status, text)) => {
                let _ = conn.io.reply(status, text, None, false, true).await;
                return;
            }
        };
        if conn.handle(request, &mut request_timer).await == Next::Close {
            let _ = conn.io.client.shutdown().await;
            return;
        }
    }
}

/// A status the proxy answers with itself: code and reason phrase.
type Status = (u16, &'static str);

const BAD_REQUEST: Status = (400, "Bad Request");
const METHOD_NOT_ALLOWED: Status = (405, "Method Not Allowed");
const REQUEST_TIMEOUT: Status = (408, "Request Timeout");
const HEADERS_TOO_LARGE: Status = (431, "Request Header Fields Too Large");
const NOT_IMPLEMENTED: Status = (501, "Not Implemented");
const BAD_GATEWAY: Status = (502, "Bad Gateway");
const SERVICE_UNAVAILABLE: Status = (503, "Service Unavailable");
const GATEWAY_TIMEOUT: Status = (504, "Gateway Timeout");

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
    Close,
}

/// Why an attempt got no usable response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// No endpoint became ready within the queue's wait limit (or the queue was full).
    NoEndpoint,
    /// The endpoint refused or did not accept the connection in time: nothing was sent.
    Connect,
    /// The connection closed or reset before any byte of a response.
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
    /// What the client is told.
    fn reply(self) -> (Status, &'static str) {
        match self {
            Failure::NoEndpoint => (SERVICE_UNAVAILABLE, "no ready instance\n"),
            Failure::Connect => (BAD_GATEWAY, "upstream connect failed\n"),
            Failure::Reset | Failure::Upstream | Failure::BadResponse | Failure::Client => {
                (BAD_GATEWAY, "upstream request failed\n")
            }
            Failure::Timeout => (GATEWAY_TIMEOUT, "upstream timed out\n"),
        }
    }
}

/// How relaying a streamed request's response ended without a response.
enum Relayed {
    /// Nothing was sent to the client: it can still be told.
    Failed(Failure),
    /// The response broke after its head went to the client: only closing tells it.
    Broken,
}

/// A response head from an endpoint, with the connection it came on and the request's
/// in-flight guard on that endpoint.
struct Answer {
    upstream: TcpStream,
    head: ResponseHead,
    in_flight: InFlight,
}

struct Conn {
    proxy: Proxy,
    peer: Peer,
    registration: Registration,
    io: Io,
}

/// The client connection and the buffers every request on it reuses.
struct Io {
    client: TcpStream,
    /// Bytes from the client not yet forwarded (the next head, pipelined requests).
    from_client: Buffer,
    /// Bytes from the current endpoint connection.
    from_upstream: Buffer,
    /// The request head (and the body that came with it) to send upstream. Kept until the
    /// response head arrives, so that a stale pooled connection can be replaced.
    to_upstream: Vec<u8>,
    /// The response head (and the body that came with it) to send to the client.
    to_client: Vec<u8>,
}

impl Conn {
    /// Reads the next request head (waiting at most the header timeout; idle connections close
    /// when the proxy stops) and rewrites it into `to_upstream`.
    async fn read_request(&mut self, head_timer: &mut LazyTimer) -> Result<RequestHead, End> {
        let config = &self.proxy.inner.config;
        let rewrite = Rewrite {
            client_ip: self.peer.forwarded_for.as_bytes(),
            hash_header: config.hash_header.as_ref().map(|name| name.as_str()),
        };
        let io = &mut self.io;
        let signal = &self.registration.signal;
        head_timer.start(Instant::now(), config.header_read_timeout);
        loop {
            if !io.from_client.is_empty() {
                match head::parse_request(io.from_client.filled(), &rewrite, &mut io.to_upstream) {
                    Ok(Some(request)) => return Ok(request),
                    Ok(None) if io.from_client.len() >= config.max_header_bytes => {
                        return Err(End::Refused(HEADERS_TOO_LARGE, "request head too large\n"))
                    }
                    Ok(None) => {}
                    Err(reject) => return Err(End::Refused(refusal(reject).0, refusal(reject).1)),
                }
            }
            let idle = io.from_client.is_empty();
            let read = tokio::select! {
                biased;
                read = io.from_client.fill(&mut io.client, config.max_header_bytes) => read,
                () = head_timer.expired() => {
                    return Err(if idle {
                        End::Closed
                    } else {
                        End::Refused(REQUEST_TIMEOUT, "request head not received in time\n")
                    });
                }
                () = signal.stopped(), if idle => return Err(End::Closed),
            };
            match read {
                Ok(0) => return Err(End::Closed),
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                    return Err(End::Refused(HEADERS_TOO_LARGE, "request head too large\n"))
                }
                Err(_) => return Err(End::Closed),
            }
        }
    }

    /// Forwards one request and relays its response.
    async fn handle(&mut self, request: RequestHead, request_timer: &mut LazyTimer) -> Next {
        let now = Instant::now();
        let service = ServiceRequest::begin(&self.proxy.inner.endpoints, now);
        let io = &mut self.io;
        io.from_client.consume(request.len);
        // The part of the body that came with the head goes up with it, in one write.
        let mut body = Remaining::new(request.framing);
        let Ok(take) = body.take(io.from_client.filled()) else {
            let _ = io
                .reply(BAD_REQUEST, "malformed chunked body\n", None, false, true)
                .await;
            return Next::Close;
        };
        io.to_upstream
            .extend_from_slice(&io.from_client.filled()[..take]);
        io.from_client.consume(take);

        request_timer.start(now, self.proxy.inner.config.request_timeout);
        if !body.done() {
            return self.stream(&request, body, service, request_timer).await;
        }
        let outcome = tokio::select! {
            biased;
            outcome = self.forward(&request, &body) => outcome,
            () = request_timer.expired() => Err(Failure::Timeout),
        };
        match outcome {
            Ok(answer) => {
                service.respond(answer.head.status, Instant::now());
                self.relay(answer, service).await
            }
            Err(failure) => self.fail(failure, &request, &body, &service).await,
        }
    }

    /// Picks an endpoint and sends a request that is wholly in `to_upstream`, retrying on other
    /// endpoints what can be retried, as the hyper path does (`forward.rs`), plus one thing it
    /// cannot: a connect failure is retried for a request with a (buffered) body too.
    async fn forward(
        &mut self,
        request: &RequestHead,
        body: &Remaining,
    ) -> Result<Answer, Failure> {
        let Conn {
            proxy,
            peer,
            registration,
            io,
        } = self;
        let inner = &proxy.inner;
        inner.budget.deposit();
        let key = request.hash_key.unwrap_or(peer.key);
        let replayable = request.framing == Framing::Empty;
        let answering = Answering {
            is_head: request.is_head,
            http10: request.http10,
            upgrade: request.upgrade,
            close: !request.keep_alive || registration.signal.stopping(),
        };
        let attempts = inner.config.retries + 1;
        debug_assert!(
            body.done(),
            "requests with a body still to read take the streaming path"
        );
        let mut tried: Vec<SocketAddr> = Vec::new(); // allocates only on a retry
        for attempt in 1..=attempts {
            let endpoint = proxy.pick(key, &tried).await.ok_or(Failure::NoEndpoint)?;
            let last = attempt == attempts;
            let result = io.attempt(&endpoint, request, answering, proxy).await;
            let now = Instant::now();
            let may_repeat = replayable && request.idempotent && !last;
            let retry = match &result {
                Ok(answer) if !is_gateway_failure(answer.head.status) => {
                    endpoint.outlier.success();
                    return result;
                }
                Ok(answer) => {
                    proxy.report_failure(&endpoint, now);
                    retryable_status(answer.head.status)
                        && may_repeat
                        && inner.budget.try_withdraw(now)
                }
                Err(Failure::Connect) => {
                    note_connect_failure(proxy, &endpoint, now);
                    !last
                }
                Err(Failure::Reset | Failure::Upstream | Failure::BadResponse) => {
                    proxy.report_failure(&endpoint, now);
                    may_repeat && inner.budget.try_withdraw(now)
                }
                Err(_) => false,
            };
            if !retry {
                return result;
            }
            inner.endpoints.metrics.retry();
            tracing::debug!(endpoint = %endpoint.id, attempt, outcome = ?result.as_ref().map(|a| a.head.status), "retrying elsewhere");
            tried.push(endpoint.addr);
        }
        Err(Failure::NoEndpoint) // unreachable: the last attempt always returns
    }

    /// Sends the response head and body to the client; returns the endpoint connection to its
    /// pool when the response ended cleanly.
    async fn relay(&mut self, answer: Answer, service: ServiceRequest) -> Next {
        let Answer {
            mut upstream,
            head,
            in_flight,
        } = answer;
        let io = &mut self.io;
        io.from_upstream.consume(head.len);
        if head.switching {
            io.tunnel(upstream).await;
            drop((in_flight, service)); // counted in flight until the tunnel closes
            return Next::Close;
        }
        let mut body = Remaining::new(head.framing);
        let Ok(take) = body.take(io.from_upstream.filled()) else {
            let _ = io
                .reply(BAD_GATEWAY, "upstream request failed\n", None, false, true)
                .await;
            return Next::Close;
        };
        io.to_client
            .extend_from_slice(&io.from_upstream.filled()[..take]);
        io.from_upstream.consume(take);
        if io.client.write_all(&io.to_client).await.is_err() {
            return Next::Close;
        }
        if copy_body(
            &mut upstream,
            &mut io.from_upstream,
            &mut io.client,
            &mut body,
        )
        .await
        .is_err()
        {
            // A response cut short: closing is the only way to tell the client.
            return Next::Close;
        }
        // Bytes after the end of the response mean the endpoint cannot be trusted again.
        if head.reusable && io.from_upstream.is_empty() {
            in_flight.endpoint().idle.checkin(upstream, Instant::now());
        }
        io.from_upstream.clear();
        drop((in_flight, service));
        if head.close {
            Next::Close
        } else {
            Next::KeepAlive
        }
    }

    /// Forwards a request whose body is still arriving: the body streams up while the response
    /// streams back (an endpoint may answer, even echo, before the upload ends). Only a connect
    /// failure is retried elsewhere: once the head has gone, the body cannot be replayed.
    async fn stream(
        &mut self,
        request: &RequestHead,
        mut body: Remaining,
        service: ServiceRequest,
        request_timer: &mut LazyTimer,
    ) -> Next {
        let connected = tokio::select! {
            biased;
            connected = self.connect_any(request) => connected,
            () = request_timer.expired() => Err(Failure::Timeout),
        };
        let (endpoint, mut upstream) = match connected {
            Ok(connected) => connected,
            Err(failure) => return self.fail(failure, request, &body, &service).await,
        };
        let in_flight = endpoint.begin(Instant::now());
        let answering = Answering {
            is_head: request.is_head,
            http10: request.http10,
            upgrade: false,
            close: !request.keep_alive || self.registration.signal.stopping(),
        };
        self.io.from_upstream.clear();
        if upstream.write_all(&self.io.to_upstream).await.is_err() {
            self.proxy.report_failure(&endpoint, Instant::now());
            return self.fail(Failure::Reset, request, &body, &service).await;
        }
        let Io {
            client,
            from_client,
            from_upstream,
            to_client,
            ..
        } = &mut self.io;
        let (mut client_read, mut client_write) = client.split();
        let (mut upstream_read, mut upstream_write) = upstream.split();
        if request.expect_continue
            && !request.http10
            && client_write.write_all(CONTINUE).await.is_err()
        {
            return Next::Close;
        }
        let upload = copy_body(
            &mut client_read,
            from_client,
            &mut upstream_write,
            &mut body,
        );
        let response = async {
            let head = tokio::select! {
                biased;
                head = read_head(&mut upstream_read, from_upstream, to_client, &mut client_write, request, answering) => head,
                () = request_timer.expired() => Err(Failure::Timeout),
            }
            .map_err(Relayed::Failed)?;
            let now = Instant::now();
            in_flight.head(head.status, now);
            service.respond(head.status, now);
            from_upstream.consume(head.len);
            let mut response_body = Remaining::new(head.framing);
            let take = response_body
                .take(from_upstream.filled())
                .map_err(|_| Relayed::Failed(Failure::BadResponse))?;
            to_client.extend_from_slice(&from_upstream.filled()[..take]);
            from_upstream.consume(take);
            client_write
                .write_all(to_client)
                .await
                .map_err(|_| Relayed::Broken)?;
            copy_body(
                &mut upstream_read,
                from_upstream,
                &mut client_write,
                &mut response_body,
            )
            .await
            .map_err(|_| Relayed::Broken)?;
            Ok(head)
        };
        let (relayed, uploaded) = {
            tokio::pin!(upload, response);
            let mut uploaded = None;
            let relayed = loop {
                tokio::select! {
                    biased;
                    relayed = &mut response => break relayed,
                    result = &mut upload, if uploaded.is_none() => match result {
                        // The client went away or sent a broken body: nothing more to do.
                        Err(Side::Source) => return Next::Close,
                        // The endpoint stopped reading; it may still answer (413, say).
                        result => uploaded = Some(result),
                    },
                }
            };
            (relayed, uploaded)
        };
        let upload_finished = matches!(uploaded, Some(Ok(())));
        match relayed {
            Ok(head) => {
                if is_gateway_failure(head.status) {
                    self.proxy.report_failure(&endpoint, Instant::now());
                } else {
                    endpoint.outlier.success();
                }
                let clean = upload_finished && head.reusable && self.io.from_upstream.is_empty();
                if clean {
                    endpoint.idle.checkin(upstream, Instant::now());
                }
                self.io.from_upstream.clear();
                drop((in_flight, service));
                if head.close || !upload_finished {
                    Next::Close
                } else {
                    Next::KeepAlive
                }
            }
            Err(Relayed::Broken) => Next::Close,
            Err(Relayed::Failed(failure)) => {
                if matches!(
                    failure,
                    Failure::Reset | Failure::Upstream | Failure::BadResponse
                ) {
                    self.proxy.report_failure(&endpoint, Instant::now());
                }
                self.fail(failure, request, &body, &service).await
            }
        }
    }

    /// An endpoint connection for a request that cannot be replayed: a pooled one, or a new one;
    /// endpoints that refuse the connection are skipped, within the retry count.
    async fn connect_any(
        &self,
        request: &RequestHead,
    ) -> Result<(Arc<Endpoint>, TcpStream), Failure> {
        let proxy = &self.proxy;
        proxy.inner.budget.deposit();
        let key = request.hash_key.unwrap_or(self.peer.key);
        let attempts = proxy.inner.config.retries + 1;
        let mut tried: Vec<SocketAddr> = Vec::new();
        for attempt in 1..=attempts {
            let endpoint = proxy.pick(key, &tried).await.ok_or(Failure::NoEndpoint)?;
            if let Some(upstream) = endpoint.idle.checkout(Instant::now()) {
                return Ok((endpoint, upstream));
            }
            match connect(endpoint.addr, proxy).await {
                Ok(upstream) => return Ok((endpoint, upstream)),
                Err(failure) => {
                    note_connect_failure(proxy, &endpoint, Instant::now());
                    if attempt == attempts {
                        return Err(failure);
                    }
                    proxy.inner.endpoints.metrics.retry();
                    tried.push(endpoint.addr);
                }
            }
        }
        Err(Failure::NoEndpoint) // unreachable: the last attempt always returns
    }

    /// Answers a request that got no response from an endpoint.
    async fn fail(
        &mut self,
        failure: Failure,
        request: &RequestHead,
        body: &Remaining,
        service: &ServiceRequest,
    ) -> Next {
        if failure == Failure::Client {
            return Next::Close;
        }
        let (status, text) = failure.reply();
        service.respond(status.0, Instant::now());
        match failure {
            Failure::Connect => tracing::warn!("no endpoint accepted the connection"),
            Failure::Reset | Failure::Upstream | Failure::BadResponse => {
                tracing::warn!(?failure, "upstream request failed")
            }
            _ => {}
        }
        let config = &self.proxy.inner.config;
        let retry_after = (failure == Failure::NoEndpoint)
            .then(|| config.no_endpoint_retry_after.as_secs_f64().ceil() as u64);
        let status = if failure == Failure::NoEndpoint {
            let code = config.no_endpoint_status;
            (
                code.as_u16(),
                code.canonical_reason().unwrap_or("Service Unavailable"),
            )
        } else {
            status
        };
        // The connection can carry on only if the request was read to its end.
        let close = !request.keep_alive
            || !body.done()
            || failure == Failure::Timeout
            || self.registration.signal.stopping();
        match self
            .io
            .reply(status, text, retry_after, request.is_head, close)
            .await
        {
            Ok(()) if !close => Next::KeepAlive,
            _ => Next::Close,
        }
    }
}

impl Io {
    /// One attempt on `endpoint`: a pooled connection (or a new one), the request, the response
    /// head. A pooled connection that turns out closed before any response byte is replaced by a
    /// fresh one, once, when the whole request is still in hand; that is not an endpoint failure.
    async fn attempt(
        &mut self,
        endpoint: &Arc<Endpoint>,
        request: &RequestHead,
        answering: Answering,
        proxy: &Proxy,
    ) -> Result<Answer, Failure> {
        let in_flight = endpoint.begin(Instant::now());
        let mut pooled = endpoint.idle.checkout(Instant::now());
        loop {
            let reused = pooled.is_some();
            let mut upstream = match pooled.take() {
                Some(upstream) => upstream,
                None => connect(endpoint.addr, proxy).await?,
            };
            match self.exchange(&mut upstream, request, answering).await {
                Ok(head) => {
                    in_flight.head(head.status, Instant::now());
                    return Ok(Answer {
                        upstream,
                        head,
                        in_flight,
                    });
                }
                Err(Failure::Reset) if reused => continue,
                Err(failure) => return Err(failure),
            }
        }
    }

    /// Sends the whole request (it is in `to_upstream`) and reads the response head, passing
    /// informational responses on. On success the head for the client is in `to_client`, the raw
    /// head and any body bytes after it in `from_upstream`.
    async fn exchange(
        &mut self,
        upstream: &mut TcpStream,
        request: &RequestHead,
        answering: Answering,
    ) -> Result<ResponseHead, Failure> {
        self.from_upstream.clear();
        if upstream.write_all(&self.to_upstream).await.is_err() {
            return Err(Failure::Reset);
        }
        read_head(
            upstream,
            &mut self.from_upstream,
            &mut self.to_client,
            &mut self.client,
            request,
            answering,
        )
        .await
    }

    /// Both connections become one tunnel (after a 101): what each side already sent goes
    /// first, then bytes are copied both ways until either side closes.
    async fn tunnel(&mut self, mut upstream: TcpStream) {
        self.to_client
            .extend_from_slice(self.from_upstream.filled());
        self.from_upstream.clear();
        if self.client.write_all(&self.to_client).await.is_err()
            || upstream.write_all(self.from_client.filled()).await.is_err()
        {
            return;
        }
        self.from_client.clear();
        if let Err(error) = tokio::io::copy_bidirectional(&mut self.client, &mut upstream).await {
            tracing::debug!(%error, "upgraded connection ended with an error");
        }
    }

    /// A short plain-text response written by the proxy itself.
    async fn reply(
        &mut self,
        status: Status,
        text: &str,
        retry_after: Option<u64>,
        is_head: bool,
        close: bool,
    ) -> io::Result<()> {
        let reply = Reply {
            status,
            text,
            retry_after,
            is_head,
            close,
        };
        reply.write(&mut self.client, &mut self.to_client).await
    }
}

/// A short plain-text response written by the proxy itself.
struct Reply<'a> {
    status: Status,
    text: &'a str,
    retry_after: Option<u64>,
    /// No body (the request was HEAD).
    is_head: bool,
    /// With `Connection: close`.
    close: bool,
}

impl Reply<'_> {
    async fn write(
        &self,
        client: &mut (impl AsyncWrite + Unpin),
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        use std::io::Write;
        let newline = if self.text.ends_with('\n') { "" } else { "\n" };
        out.clear();
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n",
            self.status.0,
            self.status.1,
            self.text.len() + newline.len()
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
            out.extend_from_slice(newline.as_bytes());
        }
        client.write_all(out).await
    }
}

/// Which side of a copy failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Source,
    Sink,
}

/// Streams the rest of a body from `src` to `dst` through `buf` (nothing of the body buffered on
/// entry, except for a body that runs until close). Stops at the end of the body; bytes read past
/// it stay in `buf`.
async fn copy_body(
    src: &mut (impl AsyncRead + Unpin),
    buf: &mut Buffer,
    dst: &mut (impl AsyncWrite + Unpin),
    body: &mut Remaining,
) -> Result<(), Side> {
    loop {
        if !buf.is_empty() {
            let take = body.take(buf.filled()).map_err(|_| Side::Source)?;
            dst.write_all(&buf.filled()[..take])
                .await
                .map_err(|_| Side::Sink)?;
            buf.consume(take);
        }
        if body.done() {
            return Ok(());
        }
        match buf.fill(src, buffer::INITIAL_SIZE).await {
            Ok(0) if matches!(body, Remaining::UntilClose) => return Ok(()),
            Ok(0) | Err(_) => return Err(Side::Source),
            Ok(_) => {}
        }
    }
}

/// Reads a response head from `upstream` into `from_upstream`, passing informational responses
/// on to the client; the rewritten head is left in `to_client`.
async fn read_head(
    upstream: &mut (impl AsyncRead + Unpin),
    from_upstream: &mut Buffer,
    to_client: &mut Vec<u8>,
    client: &mut (impl AsyncWrite + Unpin),
    request: &RequestHead,
    answering: Answering,
) -> Result<ResponseHead, Failure> {
    let mut received = false;
    loop {
        if !from_upstream.is_empty() {
            match head::parse_response(from_upstream.filled(), answering, to_client) {
                Ok(Some(head)) if head.informational => {
                    from_upstream.consume(head.len);
                    if !request.http10 {
                        client
                            .write_all(to_client)
                            .await
                            .map_err(|_| Failure::Client)?;
                    }
                    continue;
                }
                Ok(Some(head)) => return Ok(head),
                Ok(None) => {}
                Err(()) => return Err(Failure::BadResponse),
            }
        }
        match from_upstream
            .fill(upstream, super::DEFAULT_MAX_HEADER_BYTES)
            .await
        {
            Ok(n) if n > 0 => received = true,
            Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                return Err(Failure::BadResponse)
            }
            _ if received => return Err(Failure::Upstream),
            _ => return Err(Failure::Reset),
        }
    }
}

/// Counts a failed connect at the endpoint and the service, toward ejecting the endpoint.
fn note_connect_failure(proxy: &Proxy, endpoint: &Endpoint, now: Instant) {
    endpoint.metrics.connect_error();
    proxy.inner.endpoints.metrics.connect_error();
    proxy.report_failure(endpoint, now);
}

/// A new connection to an endpoint, within the connect timeout.
async fn connect(addr: SocketAddr, proxy: &Proxy) -> Result<TcpStream, Failure> {
    let timeout = proxy.inner.config.connect_timeout;
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(error)) => {
            tracing::debug!(%addr, %error, "connect failed");
            Err(Failure::Connect)
        }
        Err(_elapsed) => Err(Failure::Connect),
    }
}

/// The status and text for a request refused before it went anywhere.
fn refusal(reject: Reject) -> (Status, &'static str) {
    match reject {
        Reject::BadRequest(reason) => (BAD_REQUEST, reason),
        Reject::TooLarge => (HEADERS_TOO_LARGE, "too many header fields\n"),
        Reject::NotImplemented(reason) => (NOT_IMPLEMENTED, reason),
        Reject::MethodNotAllowed => (METHOD_NOT_ALLOWED, "CONNECT is not supported\n"),
    }
}
