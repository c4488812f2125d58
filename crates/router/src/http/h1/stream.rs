//! A request whose body is still arriving: the body streams up while the response streams
//! back, since an endpoint may answer (even echo) before the upload ends.
//!
//! Only a connect failure is retried on another endpoint: once the head has gone, the body
//! cannot be replayed. A pooled connection whose head write fails is replaced by a fresh one
//! (nothing of the body has been read past `to_upstream` yet).

use super::body::Remaining;
use super::forward::{connect, copy_body, Response, Side};
use super::head::{RequestHead, ResponseHead};
use super::relay::relay_body;
use super::shutdown::Signal;
use super::timer::LazyTimer;
use super::{Conn, Failure, Io, Next, CONTINUE};
use crate::endpoint::{Endpoint, InFlight};
use crate::http::retry::{Attempted, Attempts};
use crate::http::tracking::ServiceRequest;
use crate::read_ahead::ReadAhead;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// How relaying a streamed request's response ended without a response.
enum Relayed {
    /// Nothing was sent to the client: it can still be told.
    Failed(Failure),
    /// The response broke after its head went to the client: only closing tells it.
    Broken,
}

impl<C: super::ClientIo> Conn<C> {
    pub(super) async fn stream(
        &mut self,
        request: &RequestHead,
        mut body: Remaining,
        service: ServiceRequest,
        request_timer: &mut LazyTimer,
    ) -> Next {
        let connected = tokio::select! {
            biased;
            connected = self.connect_and_send(request) => connected,
            () = request_timer.expired() => Err(Failure::Timeout),
        };
        let (endpoint, mut upstream, reused) = match connected {
            Ok(connected) => connected,
            Err(failure) => return self.fail(failure, request, false, &service).await,
        };
        let counters = Counters {
            in_flight: Mutex::new(Some(endpoint.begin(Instant::now()))),
            service: Mutex::new(Some(service)),
            uploaded: AtomicBool::new(false),
            clean: AtomicBool::new(false),
        };
        let signal = &self.registration.signal;
        let Io {
            client,
            from_client,
            from_upstream,
            to_client,
            informational_sent,
            ..
        } = &mut self.io;
        from_upstream.clear();
        let (mut client_read, mut client_write) = client.halves();
        let (upstream_read, mut upstream_write) = upstream.split();
        if request.expect_continue
            && !request.http10
            && client_write.write_all(CONTINUE).await.is_err()
        {
            return Next::CloseUnread;
        }
        let upload = copy_body(
            &mut client_read,
            from_client,
            &mut upstream_write,
            &mut body,
        );
        let mut response = Response {
            upstream: upstream_read,
            from_upstream,
            to_client,
            informational_sent,
        };
        let read_ahead = &self.proxy.inner.config.read_ahead;
        let relay = relay_response(
            &mut response,
            &mut client_write,
            (request, signal, request_timer),
            &counters,
            read_ahead,
        );
        let (relayed, uploaded) = {
            tokio::pin!(upload, relay);
            let mut uploaded = None;
            let relayed = loop {
                tokio::select! {
                    biased;
                    relayed = &mut relay => break relayed,
                    result = &mut upload, if uploaded.is_none() => match result {
                        // The client went away or sent a broken body: nothing more to do.
                        Err(Side::Source) => return Next::CloseUnread,
                        // The endpoint stopped reading; it may still answer (413, say).
                        result => {
                            counters.uploaded.store(result.is_ok(), Ordering::Relaxed);
                            uploaded = Some(result);
                        }
                    },
                }
            };
            (relayed, uploaded)
        };
        // The client's halves borrow the connection: given back before it is used again.
        drop((client_read, client_write));
        let read_whole = matches!(uploaded, Some(Ok(()))) && body.done();
        let clean = counters.clean.load(Ordering::Relaxed);
        let (in_flight, service) = counters.into_inner();
        let attempt = Attempt {
            endpoint,
            upstream,
            reused,
            in_flight,
        };
        let reusable = read_whole && clean;
        self.settle(relayed, attempt, (read_whole, reusable), request, service)
            .await
    }

    /// After the relay: the attempt's outcome to the retry policy and outlier detection, the
    /// endpoint connection back to its pool when reusable, and what the client connection
    /// does next.
    async fn settle(
        &mut self,
        relayed: Result<ResponseHead, Relayed>,
        attempt: Attempt,
        (read_whole, reusable): (bool, bool),
        request: &RequestHead,
        service: Option<ServiceRequest>,
    ) -> Next {
        let Attempt {
            endpoint,
            upstream,
            reused,
            in_flight,
        } = attempt;
        match relayed {
            Ok(head) => {
                let answered = Attempted::Answered(head.status);
                let now = Instant::now();
                self.proxy
                    .after_attempt(&endpoint, answered, false, true, now);
                if reusable && head.reusable {
                    endpoint.idle.checkin(upstream, Instant::now());
                }
                self.io.from_upstream.clear();
                drop((in_flight, service));
                match (head.close, read_whole) {
                    (_, false) => Next::CloseUnread,
                    (true, true) => Next::Close,
                    (false, true) => Next::KeepAlive,
                }
            }
            Err(Relayed::Broken) => Next::CloseUnread,
            Err(Relayed::Failed(failure)) => {
                // A pooled connection closed before any response byte is the keep-alive race,
                // not the endpoint's fault.
                let race = reused && failure == Failure::Reset;
                if failure.is_endpoint_fault() && !race {
                    let now = Instant::now();
                    self.proxy
                        .after_attempt(&endpoint, Attempted::Broke, false, true, now);
                }
                match service {
                    Some(service) => self.fail(failure, request, read_whole, &service).await,
                    None => Next::CloseUnread, // unreachable: counters end only after a head
                }
            }
        }
    }

    /// Connects to an endpoint and sends the head with the body bytes that came with it.
    /// Endpoints that refuse the connection are skipped, within the retry count; a pooled
    /// connection whose write fails is replaced by a fresh one to the same endpoint. Returns
    /// whether the connection came from the pool.
    async fn connect_and_send(
        &self,
        request: &RequestHead,
    ) -> Result<(Arc<Endpoint>, TcpStream, bool), Failure> {
        let proxy = &self.proxy;
        proxy.inner.budget.deposit();
        let key = request.hash_key.unwrap_or(self.peer.key);
        let mut attempts = Attempts::new(proxy.inner.config.retries);
        while let Some(last) = attempts.next() {
            let (endpoint, picked) = proxy
                .pick(key, attempts.tried(), Instant::now())
                .await
                .ok_or(Failure::NoEndpoint)?;
            // The body streams, so the request can never be repeated: only a connection the
            // endpoint is not about to close.
            if let Some(mut pooled) = endpoint.idle.checkout_recent(picked) {
                if pooled.write_all(&self.io.to_upstream).await.is_ok() {
                    return Ok((endpoint, pooled, true));
                }
            }
            match connect(endpoint.addr, proxy).await {
                Ok(mut fresh) => {
                    if fresh.write_all(&self.io.to_upstream).await.is_err() {
                        proxy.report_failure(&endpoint, Instant::now());
                        return Err(Failure::Unsent);
                    }
                    return Ok((endpoint, fresh, false));
                }
                Err(failure) => {
                    let attempted = Attempted::ConnectFailed;
                    if !proxy.after_attempt(&endpoint, attempted, false, last, Instant::now()) {
                        return Err(failure);
                    }
                    attempts.failed_on(endpoint.addr);
                }
            }
        }
        Err(Failure::NoEndpoint) // unreachable: the last attempt always returns
    }
}

/// The endpoint connection one streamed request went out on.
struct Attempt {
    endpoint: Arc<Endpoint>,
    upstream: TcpStream,
    /// Whether the connection came from the pool (a reset before any answer is then the
    /// keep-alive race, not the endpoint's fault).
    reused: bool,
    /// `None` once ended early (the endpoint was done before the client had the response).
    in_flight: Option<InFlight>,
}

/// A streamed request's counters, ended as soon as the endpoint is done with the request (its
/// whole response in the router and the whole upload sent), which may be before the client
/// has the response; else when the relay ends. (Shared by the upload and the relay, which
/// run in one task: the locks are never contended.)
struct Counters {
    in_flight: Mutex<Option<InFlight>>,
    service: Mutex<Option<ServiceRequest>>,
    /// The whole upload went to the endpoint.
    uploaded: AtomicBool,
    /// Nothing came past the end of the response.
    clean: AtomicBool,
}

impl Counters {
    /// The endpoint's whole response is in the router; `clean`: nothing came past its end.
    fn received(&self, clean: bool) {
        self.clean.store(clean, Ordering::Relaxed);
        if self.uploaded.load(Ordering::Relaxed) {
            let now = Instant::now();
            if let Some(in_flight) = lock(&self.in_flight).take() {
                in_flight.end(now);
            }
            if let Some(service) = lock(&self.service).take() {
                service.end(now);
            }
        }
    }

    fn into_inner(self) -> (Option<InFlight>, Option<ServiceRequest>) {
        let in_flight = self.in_flight.into_inner();
        let service = self.service.into_inner();
        (
            in_flight.unwrap_or_else(PoisonError::into_inner),
            service.unwrap_or_else(PoisonError::into_inner),
        )
    }
}

/// A counter's slot; a panic while it was held left nothing half-done, so a poisoned one is
/// taken over.
fn lock<T>(slot: &Mutex<T>) -> MutexGuard<'_, T> {
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Relays the endpoint's answer to the client while the body may still be uploading: the head
/// (within the request timeout), with the bytes of the body that came with it, then the rest
/// of the body, read ahead of a slow client (see [`relay_body`]).
async fn relay_response<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    response: &mut Response<'_, R>,
    client_write: &mut W,
    (request, signal, request_timer): (&RequestHead, &Signal, &mut LazyTimer),
    counters: &Counters,
    read_ahead: &ReadAhead,
) -> Result<ResponseHead, Relayed> {
    let head = tokio::select! {
        biased;
        head = response.read_head(client_write, request, signal) => head,
        () = request_timer.expired() => Err(Failure::Timeout),
    }
    .map_err(Relayed::Failed)?;
    let now = Instant::now();
    if let Some(in_flight) = lock(&counters.in_flight).as_ref() {
        in_flight.head(head.status, now);
    }
    response.from_upstream.consume(head.len);
    let mut response_body = Remaining::new(head.framing);
    let take = response_body
        .take(response.from_upstream.filled())
        .map_err(|_| Relayed::Failed(Failure::BadResponse))?;
    if let Some(service) = lock(&counters.service).as_ref() {
        service.respond(head.status, now);
    }
    response
        .to_client
        .extend_from_slice(&response.from_upstream.filled()[..take]);
    response.from_upstream.consume(take);
    client_write
        .write_all(response.to_client)
        .await
        .map_err(|_| Relayed::Broken)?;
    let received = |upstream: Option<&mut R>| counters.received(upstream.is_some());
    relay_body(
        &mut response.upstream,
        response.from_upstream,
        client_write,
        response_body,
        read_ahead,
        received,
    )
    .await
    .map_err(|_| Relayed::Broken)?;
    Ok(head)
}
