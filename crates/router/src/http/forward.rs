//! One request's trip on the hyper path (h2c clients): rewrite headers, pick an endpoint, send,
//! retry on another endpoint as the retry policy (`retry.rs`) allows, and turn what went wrong
//! into the status a client can act on. HTTP/1.1 clients take `h1`, which shares this module's
//! pick.
//!
//! Only requests without a body are retried: such a request can be rebuilt for the next attempt
//! because nothing of it was consumed. A request with a body is streamed as it arrives, so once
//! it has been handed to a connection it cannot be replayed; it gets one attempt. Connect
//! failures are retried for any method (nothing was sent); failures after sending and 502/503
//! answers only for idempotent methods and within the [`super::budget::RetryBudget`].

use super::retry::{is_idempotent, Attempted, Attempts};
use super::tracking::{ServiceRequest, Tracked, Tracking};
use super::{headers, pump, upgrade, Peer, Proxy, ProxyBody};
use crate::endpoint::{Endpoint, InFlight};
use http_body_util::{Either, Empty, Full};
use hyper::body::{Body, Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::http::request::Parts;
use hyper::http::uri::{Scheme, Uri};
use hyper::upgrade::OnUpgrade;
use hyper::{Request, Response, StatusCode, Version};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// The body of a request sent upstream: the client's stream, or nothing (also for a replay).
pub(crate) type UpstreamBody = Either<Incoming, Empty<Bytes>>;

/// Why a request got no response from an endpoint.
#[derive(Debug)]
enum Failure {
    /// No endpoint became ready within the queue's wait limit (or the queue was full).
    NoEndpoint,
    /// Every attempt failed to connect.
    Connect(hyper_util::client::legacy::Error),
    /// The endpoint connection failed after the request was (possibly) sent.
    Upstream(hyper_util::client::legacy::Error),
    /// No response head within `request_timeout`.
    Timeout,
    /// The request cannot be expressed upstream (no usable target).
    BadTarget,
}

// === impl Proxy ===

impl Proxy {
    /// Serves one client request; never fails (errors become 5xx responses).
    pub(super) async fn handle(
        self,
        mut req: Request<Incoming>,
        peer: Peer,
    ) -> Response<ProxyBody> {
        let method = crate::http_metrics::Method::from_bytes(req.method().as_str().as_bytes());
        let service = ServiceRequest::begin(&self.inner.endpoints, method, Instant::now());
        let protocol = headers::upgrade_protocol(req.headers());
        let client_upgrade = protocol.is_some().then(|| hyper::upgrade::on(&mut req));
        let key = self.hash_key(req.headers(), &peer);
        headers::prepare_request(req.headers_mut(), &peer.forwarded_for, protocol, peer.https);
        let timeout = self.inner.config.request_timeout;
        let result = match tokio::time::timeout(timeout, self.forward(req, key)).await {
            Ok(result) => result,
            Err(_elapsed) => Err(Failure::Timeout),
        };
        match result {
            Ok((response, in_flight)) => {
                service.respond(response.status().as_u16(), Instant::now());
                let tracking = Tracking {
                    _service: service,
                    _endpoint: in_flight,
                };
                let pump = pump::Settings {
                    read_ahead: &self.inner.config.read_ahead,
                    send_timeout: self.inner.config.send_timeout,
                    connection: peer.connection.clone(),
                };
                relay(response, client_upgrade, tracking, pump)
            }
            Err(failure) => {
                let response = self.failure_response(failure);
                service.respond(response.status().as_u16(), Instant::now());
                response
            }
        }
    }

    /// The request's consistent-hash key: the configured header's value when the request has
    /// it, else the client address (other balancers ignore the key).
    fn hash_key(&self, headers: &hyper::HeaderMap, peer: &Peer) -> u64 {
        self.inner
            .config
            .hash_header
            .as_ref()
            .and_then(|name| headers.get(name))
            .map(|value| crate::request_key::bytes_key(value.as_bytes()))
            .unwrap_or(peer.key)
    }

    /// An endpoint for the next attempt. With none ready, the request waits in the service's
    /// bounded queue (up to `queue_timeout`) for the first one: this is what lets a service
    /// start from zero without failing the request that woke it. `now` is a recent clock
    /// reading the caller has; the time returned with the endpoint is when it was picked: `now`,
    /// or a fresh reading after a wait in the queue, so that the wait never counts as the
    /// endpoint's latency.
    pub(super) async fn pick(
        &self,
        key: u64,
        tried: &[SocketAddr],
        now: Instant,
    ) -> Option<(Arc<Endpoint>, Instant)> {
        let endpoints = &self.inner.endpoints;
        if let Some(endpoint) = endpoints.pick_available(Some(key), tried, now) {
            return Some((endpoint, now));
        }
        if !endpoints.wait_ready(self.inner.config.queue_timeout).await {
            return None;
        }
        let now = Instant::now();
        endpoints
            .pick_available(Some(key), tried, now)
            .map(|endpoint| (endpoint, now))
    }

    /// Sends the request to an endpoint, retrying on other endpoints what can be retried:
    ///
    /// - a connect failure of a bodiless request, always (nothing was sent);
    /// - a failure after sending (reset, closed before the response head) or a 502/503 answer,
    ///   when the request is idempotent and bodiless, and only within the retry budget.
    ///
    /// Every attempt's outcome feeds the endpoint's outlier detection.
    /// `key` is the client's hash key, for consistent hashing (other balancers ignore it).
    async fn forward(
        &self,
        req: Request<Incoming>,
        key: u64,
    ) -> Result<(Response<Incoming>, InFlight), Failure> {
        let (mut parts, body) = req.into_parts();
        set_host(&mut parts);
        let inner = &self.inner;
        inner.budget.deposit();
        let replayable = body.is_end_stream();
        let idempotent = is_idempotent(&parts.method);
        let retries = if replayable { inner.config.retries } else { 0 };
        let mut body = Some(body);
        let mut attempts = Attempts::new(retries);
        while let Some(last) = attempts.next() {
            let (endpoint, _) = self
                .pick(key, attempts.tried(), Instant::now())
                .await
                .ok_or(Failure::NoEndpoint)?;
            let upstream_body = match body.take() {
                Some(incoming) if !replayable => Either::Left(incoming),
                _ => Either::Right(Empty::new()),
            };
            let request = upstream_request(&mut parts, &endpoint, upstream_body, last)?;
            let result = self.send(&endpoint, request).await;
            let attempted = match &result {
                Ok((response, _)) => Attempted::Answered(response.status().as_u16()),
                Err(Failure::Connect(_)) => Attempted::ConnectFailed,
                Err(Failure::Upstream(_)) => Attempted::Broke,
                Err(_) => Attempted::Other,
            };
            if !self.after_attempt(&endpoint, attempted, idempotent, last, Instant::now()) {
                return result;
            }
            match &result {
                Ok((response, _)) => {
                    tracing::debug!(endpoint = %endpoint.id, status = %response.status(), "retrying elsewhere")
                }
                Err(failure) => {
                    tracing::debug!(endpoint = %endpoint.id, ?failure, "retrying elsewhere")
                }
            }
            attempts.failed_on(endpoint.addr);
        }
        Err(Failure::NoEndpoint) // unreachable: the last attempt always returns
    }

    /// One attempt. The endpoint counts it in flight from the send until the returned guard
    /// drops (after the response body); the time to the response head is its latency.
    async fn send(
        &self,
        endpoint: &Arc<Endpoint>,
        request: Request<UpstreamBody>,
    ) -> Result<(Response<Incoming>, InFlight), Failure> {
        let in_flight = endpoint.begin(Instant::now());
        match self.inner.client.request(request).await {
            Ok(response) => {
                in_flight.head(response.status().as_u16(), Instant::now());
                Ok((response, in_flight))
            }
            Err(error) if error.is_connect() => Err(Failure::Connect(error)),
            Err(error) => Err(Failure::Upstream(error)),
        }
    }

    fn failure_response(&self, failure: Failure) -> Response<ProxyBody> {
        let config = &self.inner.config;
        match failure {
            Failure::NoEndpoint => {
                let mut response = plain(config.no_endpoint_status, "no ready instance\n");
                let seconds = config.no_endpoint_retry_after.as_secs_f64().ceil() as u64;
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                response
            }
            Failure::Connect(error) => {
                tracing::warn!(%error, "no endpoint accepted the connection");
                plain(StatusCode::BAD_GATEWAY, "upstream connect failed\n")
            }
            Failure::Upstream(error) => {
                tracing::warn!(%error, "upstream request failed");
                plain(StatusCode::BAD_GATEWAY, "upstream request failed\n")
            }
            Failure::Timeout => plain(StatusCode::GATEWAY_TIMEOUT, "upstream timed out\n"),
            Failure::BadTarget => plain(StatusCode::BAD_REQUEST, "bad request target\n"),
        }
    }
}

/// Passes the endpoint's response on, counted in flight until its body ends; a 101 also starts
/// the tunnel between both connections, counted in flight until the tunnel closes.
fn relay(
    mut response: Response<Incoming>,
    client_upgrade: Option<OnUpgrade>,
    tracking: Tracking,
    pump: pump::Settings<'_>,
) -> Response<ProxyBody> {
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    let tracking = match (switching, client_upgrade) {
        (true, Some(client)) => {
            upgrade::spawn_tunnel(client, hyper::upgrade::on(&mut response), tracking);
            None
        }
        _ => Some(tracking),
    };
    headers::prepare_response(response.headers_mut(), switching);
    response.map(|body| Either::Left(Tracked::new(body, tracking, pump)))
}

/// h2 requests carry the host in the URI (`:authority`), not a Host header; HTTP/1.1 needs one.
fn set_host(parts: &mut Parts) {
    if parts.headers.contains_key(header::HOST) {
        return;
    }
    if let Some(value) = parts
        .uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        parts.headers.insert(header::HOST, value);
    }
}

/// The request for one attempt, sent as HTTP/1.1 to `endpoint`. The last attempt takes the
/// headers; earlier ones copy them so a retry can be built.
fn upstream_request(
    parts: &mut Parts,
    endpoint: &Endpoint,
    body: UpstreamBody,
    last: bool,
) -> Result<Request<UpstreamBody>, Failure> {
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| hyper::http::uri::PathAndQuery::from_static("/"));
    let mut target = hyper::http::uri::Parts::default();
    target.scheme = Some(Scheme::HTTP);
    target.authority = Some(endpoint.authority.clone());
    target.path_and_query = Some(path);
    let uri = Uri::from_parts(target).map_err(|_| Failure::BadTarget)?;
    let mut request = Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = if last {
        std::mem::take(&mut parts.headers)
    } else {
        parts.headers.clone()
    };
    Ok(request)
}

/// A short plain-text response written by the proxy itself.
fn plain(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from_static(
        text.as_bytes(),
    ))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
