//! A request wholly in hand (no body, or one that came with its head): sent, retried on other
//! endpoints as the hyper path would (`http/forward.rs`), and its response relayed.
//!
//! Because the whole request is kept in `to_upstream` until the response head arrives, two
//! things are safe here that are not for a streamed body: retrying a connect failure whatever
//! the method, and replacing a pooled connection that turns out closed before any response byte
//! (once, and for a non-idempotent request only when the write itself failed, since otherwise
//! the endpoint may have the request).

use super::body::Remaining;
use super::buffer::{self, Buffer};
use super::head::{self, Answering, RequestHead, ResponseHead};
use super::relay::relay_body;
use super::shutdown::Signal;
use super::timer::LazyTimer;
use super::{Conn, Failure, Io, Next, BAD_GATEWAY};
use crate::endpoint::{Endpoint, InFlight};
use crate::http::retry::{Attempted, Attempts};
use crate::http::tracking::ServiceRequest;
use crate::http::Proxy;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response head from an endpoint, with the connection it came on and the request's
/// in-flight guard on that endpoint.
struct Answer {
    upstream: TcpStream,
    head: ResponseHead,
    in_flight: InFlight,
    /// When the head arrived.
    at: Instant,
}

impl<C: super::ClientIo> Conn<C> {
    /// Sends a request that is wholly in `to_upstream` and relays the answer.
    /// `now` is when the request head was taken up.
    pub(super) async fn forward(
        &mut self,
        request: &RequestHead,
        service: ServiceRequest,
        request_timer: &mut LazyTimer,
        now: Instant,
    ) -> Next {
        let outcome = tokio::select! {
            biased;
            outcome = self.attempts(request, now) => outcome,
            () = request_timer.expired() => Err(Failure::Timeout),
        };
        match outcome {
            Ok(answer) => self.relay(answer, service).await,
            Err(failure) => self.fail(failure, request, true, &service).await,
        }
    }

    /// Picks an endpoint and sends the request, retrying on other endpoints as
    /// [`Proxy::after_attempt`] decides: a connect failure always; for an idempotent bodiless
    /// request also a reset or a 502/503, within the budget.
    ///
    /// The clock is read once per attempt after the first: `now` serves the first pick, and
    /// each attempt's end serves the next (a wait in the queue reads it afresh).
    async fn attempts(&mut self, request: &RequestHead, now: Instant) -> Result<Answer, Failure> {
        let Conn {
            proxy,
            peer,
            registration,
            io,
        } = self;
        let inner = &proxy.inner;
        inner.budget.deposit();
        let key = request.hash_key.unwrap_or(peer.key);
        let replayable = request.framing == super::body::Framing::Empty;
        let mut attempts = Attempts::new(inner.config.retries);
        let mut now = now;
        while let Some(last) = attempts.next() {
            let (endpoint, picked) = proxy
                .pick(key, attempts.tried(), now)
                .await
                .ok_or(Failure::NoEndpoint)?;
            let result = io
                .attempt(&endpoint, request, &registration.signal, proxy, picked)
                .await;
            now = match &result {
                Ok(answer) => answer.at,
                Err(_) => Instant::now(),
            };
            let attempted = match &result {
                Ok(answer) => Attempted::Answered(answer.head.status),
                Err(Failure::Connect) => Attempted::ConnectFailed,
                Err(failure) if failure.is_endpoint_fault() => Attempted::Broke,
                Err(_) => Attempted::Other,
            };
            let may_repeat = replayable && request.idempotent;
            if !proxy.after_attempt(&endpoint, attempted, may_repeat, last, now) {
                return result;
            }
            tracing::debug!(endpoint = %endpoint.id, outcome = ?result.as_ref().map(|a| a.head.status), "retrying elsewhere");
            attempts.failed_on(endpoint.addr);
        }
        Err(Failure::NoEndpoint) // unreachable: the last attempt always returns
    }

    /// Sends the response head and body to the client; returns the endpoint connection to its
    /// pool when the response ended cleanly.
    async fn relay(&mut self, answer: Answer, service: ServiceRequest) -> Next {
        let Answer {
            upstream,
            head,
            in_flight,
            at,
        } = answer;
        let io = &mut self.io;
        io.from_upstream.consume(head.len);
        if head.switching {
            service.respond(head.status, at);
            io.tunnel(upstream).await;
            drop((in_flight, service)); // counted in flight until the tunnel closes
            return Next::Close;
        }
        let mut body = Remaining::new(head.framing);
        let Some(take) = body.take(io.from_upstream.filled()).ok() else {
            self.proxy
                .report_failure(in_flight.endpoint(), Instant::now());
            service.respond(BAD_GATEWAY.0, Instant::now());
            let reply = super::Reply::close(BAD_GATEWAY, "upstream request failed");
            let _ = reply.write(&mut io.client, &mut io.to_client).await;
            return Next::Close;
        };
        service.respond(head.status, at);
        io.to_client
            .extend_from_slice(&io.from_upstream.filled()[..take]);
        io.from_upstream.consume(take);
        if io.client.write_all(&io.to_client).await.is_err() {
            return Next::Close;
        }
        // The endpoint is done with the request once its whole response is here, whatever
        // the client's pace. Bytes after the end of the response mean it cannot be trusted
        // again.
        let received = |upstream: Option<TcpStream>| {
            let done = Instant::now();
            if let Some(upstream) = upstream.filter(|_| head.reusable) {
                in_flight.endpoint().idle.checkin(upstream, done);
            }
            in_flight.end(done);
            service.end(done);
        };
        let read_ahead = &self.proxy.inner.config.read_ahead;
        let relayed = relay_body(
            upstream,
            &mut io.from_upstream,
            &mut io.client,
            body,
            read_ahead,
            received,
        );
        if relayed.await.is_err() {
            // A response cut short: closing is the only way to tell the client.
            return Next::Close;
        }
        if head.close {
            Next::Close
        } else {
            Next::KeepAlive
        }
    }
}

impl<C: super::ClientIo> Io<C> {
    /// One attempt on `endpoint`: a pooled connection (or a new one), the request, the response
    /// head. A pooled connection found closed before any response byte is replaced by a fresh
    /// one, once; that is the keep-alive race, not an endpoint failure. `now` is a recent clock
    /// reading.
    async fn attempt(
        &mut self,
        endpoint: &Arc<Endpoint>,
        request: &RequestHead,
        signal: &Signal,
        proxy: &Proxy,
        now: Instant,
    ) -> Result<Answer, Failure> {
        let in_flight = endpoint.begin(now);
        // A request that must not be repeated avoids connections the endpoint may be closing.
        let mut pooled = if request.idempotent {
            endpoint.idle.checkout(now)
        } else {
            endpoint.idle.checkout_recent(now)
        };
        loop {
            let reused = pooled.is_some();
            let mut upstream = match pooled.take() {
                Some(upstream) => upstream,
                None => connect(endpoint.addr, proxy).await?,
            };
            match self.exchange(&mut upstream, request, signal).await {
                Ok(head) => {
                    let at = Instant::now();
                    in_flight.head(head.status, at);
                    return Ok(Answer {
                        upstream,
                        head,
                        in_flight,
                        at,
                    });
                }
                Err(Failure::Unsent) if reused => {}
                Err(Failure::Reset) if reused && request.idempotent => {}
                Err(failure) => return Err(failure),
            }
        }
    }

    /// Sends the whole request and reads the response head (see [`read_head`]).
    async fn exchange(
        &mut self,
        upstream: &mut TcpStream,
        request: &RequestHead,
        signal: &Signal,
    ) -> Result<ResponseHead, Failure> {
        self.from_upstream.clear();
        if upstream.write_all(&self.to_upstream).await.is_err() {
            return Err(Failure::Unsent);
        }
        let mut response = Response {
            upstream,
            from_upstream: &mut self.from_upstream,
            to_client: &mut self.to_client,
            informational_sent: &mut self.informational_sent,
        };
        response.read_head(&mut self.client, request, signal).await
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
}

/// The reading side of an exchange with an endpoint, borrowed from [`Io`] so that the
/// streaming path can read while it uploads.
pub(super) struct Response<'a, R> {
    pub(super) upstream: R,
    pub(super) from_upstream: &'a mut Buffer,
    pub(super) to_client: &'a mut Vec<u8>,
    pub(super) informational_sent: &'a mut bool,
}

impl<R: AsyncRead + Unpin> Response<'_, R> {
    /// Reads a response head into `from_upstream`, passing informational responses on to the
    /// client; the head rewritten for the client is left in `to_client`. Whether the client
    /// connection closes after the response is decided when the head arrives, so a response
    /// finishing after the proxy began to stop says `Connection: close`.
    pub(super) async fn read_head(
        &mut self,
        client: &mut (impl AsyncWrite + Unpin),
        request: &RequestHead,
        signal: &Signal,
    ) -> Result<ResponseHead, Failure> {
        let mut received = false;
        loop {
            if !self.from_upstream.is_empty() {
                let answering = Answering {
                    is_head: request.is_head,
                    http10: request.http10,
                    upgrade: request.upgrade,
                    close: !request.keep_alive || signal.stopping(),
                };
                match head::parse_response(self.from_upstream.filled(), answering, self.to_client) {
                    Ok(Some(head)) if head.informational => {
                        self.from_upstream.consume(head.len);
                        if !request.http10 {
                            *self.informational_sent = true;
                            client
                                .write_all(self.to_client)
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
            let limit = crate::http::DEFAULT_MAX_HEADER_BYTES;
            match self.from_upstream.fill(&mut self.upstream, limit).await {
                Ok(n) if n > 0 => received = true,
                Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                    return Err(Failure::BadResponse)
                }
                _ if received => return Err(Failure::Upstream),
                _ => return Err(Failure::Reset),
            }
        }
    }
}

/// Which side of a copy failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Source,
    Sink,
}

/// Streams the rest of a body from `src` to `dst` through `buf` (nothing of the body buffered on
/// entry, except for a body that runs until close). Stops at the end of the body; bytes read past
/// it stay in `buf`. `body` records bytes as forwarded only once they are written, so a copy
/// cancelled mid-write never looks finished.
pub(super) async fn copy_body(
    src: &mut (impl AsyncRead + Unpin),
    buf: &mut Buffer,
    dst: &mut (impl AsyncWrite + Unpin),
    body: &mut Remaining,
) -> Result<(), Side> {
    loop {
        if !buf.is_empty() {
            let mut after = body.clone();
            let take = after.take(buf.filled()).map_err(|_| Side::Source)?;
            dst.write_all(&buf.filled()[..take])
                .await
                .map_err(|_| Side::Sink)?;
            *body = after;
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

/// A new connection to an endpoint, within the connect timeout.
pub(super) async fn connect(addr: SocketAddr, proxy: &Proxy) -> Result<TcpStream, Failure> {
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
