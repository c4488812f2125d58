//! Typed client of ebb's HTTP API (`/v1/...`), used by the CLI and by agents.

pub mod sse;
pub mod tls;

pub use tls::Trust;

use ebb_core::api::{
    ApplyRequest, ApplyResponse, AssignmentsResponse, ErrorBody, EventsResponse, InstanceView,
    LogsResponse, ScaleRequest, ServiceView, StatusView, SyncRequest,
};
use ebb_core::ServiceSpec;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// How long a plain API call may take; long-polls add their own wait on top.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an API call failed; the messages are written for the CLI's user.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The API could not be reached (refused, DNS, TLS); `reason` is the innermost cause.
    #[error("cannot reach the ebb API at {addr}: {reason}\n  hint: is `ebb up` running? Set --addr or EBB_ADDR to point at it")]
    Connect {
        /// The API address tried.
        addr: String,
        /// The innermost cause.
        reason: String,
    },
    /// The API did not answer within [`REQUEST_TIMEOUT`] plus any long-poll wait.
    #[error("the ebb API at {addr} did not answer in time: {reason}")]
    Timeout {
        /// The API address tried.
        addr: String,
        /// What timed out.
        reason: String,
    },
    /// The server answered 401: the bearer token is missing or wrong.
    #[error("the ebb API at {addr} refused the token (401): {message}\n  hint: set EBB_TOKEN, or run the CLI from the folder that holds ebb's data dir (or pass --data-dir)")]
    Unauthorized {
        /// The API address tried.
        addr: String,
        /// The server's error text.
        message: String,
    },
    /// The server answered with a non-success status; `message` is its `error` text.
    #[error("{message} (HTTP {status})")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The server's `error` text.
        message: String,
    },
    /// The answer could not be read or decoded, or the HTTP client could not be built.
    #[error("unexpected answer from the ebb API: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The HTTP status of an API error, if the server answered with one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            ClientError::Unauthorized { .. } => Some(401),
            _ => None,
        }
    }
}

/// What [`Client::logs`] reads of a service's or job's instances.
#[derive(Debug, Clone, Default)]
pub struct LogsQuery<'a> {
    /// Only this instance (or task attempt).
    pub instance: Option<&'a str>,
    /// Only this task of a job (its last attempt).
    pub task: Option<u32>,
    /// Lines from the end of each log, for instances without a cursor.
    pub tail: usize,
    /// Only lines written this long ago or later (sent in whole seconds, rounded up).
    pub since: Option<Duration>,
    /// Ask for each line's time ([`ebb_core::api::LogLine::at_ms`]).
    pub timestamps: bool,
    /// `id:offset,…` from a previous answer, to go on from.
    pub cursors: &'a str,
}

/// A client of one API, at one address (`127.0.0.1:7070` or `http://host:port`) or at several
/// servers of one control plane (`a:7070,b:7070,c:7070`): a call that cannot connect to one
/// moves on to the next, and later calls start where the last one succeeded.
#[derive(Clone)]
pub struct Client {
    bases: Arc<[String]>,
    current: Arc<AtomicUsize>,
    token: Option<String>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself: a Debug print may end up in a log.
        f.debug_struct("Client")
            .field("base", &self.base())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Client {
    /// A client for `addr` (`http://` is added when it has no scheme) that sends `token`, if any,
    /// as a bearer token.
    pub fn new(addr: &str, token: Option<String>) -> Result<Client, ClientError> {
        Client::with_trust(addr, token, None)
    }

    /// [`Client::new`] for an API that may speak TLS: `https://` addresses are trusted by
    /// `trust` only (a bare address takes `https://` when a trust is given).
    pub fn with_trust(
        addr: &str,
        token: Option<String>,
        trust: Option<Trust>,
    ) -> Result<Client, ClientError> {
        let bases: Vec<String> = addr
            .split(',')
            .filter(|a| !a.trim().is_empty())
            .map(|a| base_url(a, trust.is_some()))
            .collect();
        if bases.is_empty() {
            return Err(ClientError::Protocol(format!(
                "`{addr}` names no API address"
            )));
        }
        for base in &bases {
            if base.starts_with("http://") && (trust.is_some() || !is_loopback(base)) {
                // A token must never cross the network in clear: ebb's API beyond loopback
                // always speaks TLS.
                return Err(ClientError::Protocol(format!(
                    "{base}: an ebb API that is not on loopback speaks HTTPS; use https:// (tokens are never sent in clear)"
                )));
            }
        }
        let base = bases[0].clone();
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .pool_idle_timeout(Duration::from_secs(30));
        match trust {
            Some(trust) => {
                let config = tls::client_config(trust).map_err(ClientError::Protocol)?;
                builder = builder.use_preconfigured_tls(config);
            }
            None if base.starts_with("https://") => {
                return Err(ClientError::Protocol(format!(
                    "{base} speaks TLS with ebb's own CA: pass --ca with its certificate (the server's data dir tls/ca.pem), or join with a token that carries the CA's hash"
                )))
            }
            None => {}
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(Client {
            bases: bases.into(),
            current: Arc::new(AtomicUsize::new(0)),
            token,
            http,
        })
    }

    /// The same API address (and connection pool) with another bearer token: an agent trades
    /// the join token for its node credential.
    pub fn with_token(&self, token: String) -> Client {
        Client {
            token: Some(token),
            ..self.clone()
        }
    }

    /// One client per server this one names, sharing its token and connection pool: an agent
    /// keeps its log channel open with each of them, since a log read may arrive at any.
    pub fn each_server(&self) -> Vec<Client> {
        self.bases
            .iter()
            .map(|base| Client {
                bases: vec![base.clone()].into(),
                current: Arc::new(AtomicUsize::new(0)),
                ..self.clone()
            })
            .collect()
    }

    /// The base URL calls go to, with its scheme and without a trailing slash (of several, the
    /// one that answered last).
    pub fn base(&self) -> &str {
        &self.bases[self.current.load(Ordering::Relaxed) % self.bases.len()]
    }

    // === API calls ===

    /// The control plane's servers.
    pub async fn servers(&self) -> Result<Vec<ebb_core::api::ServerView>, ClientError> {
        self.call(Method::GET, "/v1/servers", None::<&()>, None)
            .await
    }

    /// The cluster overview: version, node count, services and their rollout progress.
    pub async fn status(&self) -> Result<StatusView, ClientError> {
        self.call(Method::GET, "/v1/status", None::<&()>, None)
            .await
    }

    /// Creates or updates the services, all or none; says what changed for each.
    pub async fn apply(&self, services: Vec<ServiceSpec>) -> Result<ApplyResponse, ClientError> {
        let body = ApplyRequest::services(services);
        self.call(Method::PUT, "/v1/services", Some(&body), None)
            .await
    }

    /// Creates or updates services and queues and submits jobs, all or none.
    pub async fn apply_request(&self, req: &ApplyRequest) -> Result<ApplyResponse, ClientError> {
        self.call(Method::PUT, "/v1/services", Some(req), None)
            .await
    }

    /// What [`Client::apply_request`] would do, without doing it.
    pub async fn plan_request(&self, req: &ApplyRequest) -> Result<ApplyResponse, ClientError> {
        self.call(Method::PUT, "/v1/services?dry_run=true", Some(req), None)
            .await
    }

    /// Every job with its task counts.
    pub async fn jobs(&self) -> Result<Vec<ebb_core::api::JobView>, ClientError> {
        self.call(Method::GET, "/v1/jobs", None::<&()>, None).await
    }

    /// One job and each of its tasks that ran or runs.
    pub async fn job(&self, name: &str) -> Result<ebb_core::api::JobDetail, ClientError> {
        let path = format!("/v1/jobs/{}", encode(name));
        self.call(Method::GET, &path, None::<&()>, None).await
    }

    /// Cancels a job: its running tasks stop, nothing of it starts again.
    pub async fn cancel_job(&self, name: &str) -> Result<ebb_core::api::JobView, ClientError> {
        let path = format!("/v1/jobs/{}/cancel", encode(name));
        self.call(Method::POST, &path, None::<&()>, None).await
    }

    /// Forgets a finished job (`ebb jobs rm`); returns it as it was.
    pub async fn remove_job(&self, name: &str) -> Result<ebb_core::api::JobView, ClientError> {
        let path = format!("/v1/jobs/{}", encode(name));
        self.call(Method::DELETE, &path, None::<&()>, None).await
    }

    /// Every queue, with its running and waiting tasks.
    pub async fn queues(&self) -> Result<Vec<ebb_core::api::QueueView>, ClientError> {
        self.call(Method::GET, "/v1/queues", None::<&()>, None)
            .await
    }

    /// Every service with its rollout progress.
    pub async fn services(&self) -> Result<Vec<ServiceView>, ClientError> {
        self.call(Method::GET, "/v1/services", None::<&()>, None)
            .await
    }

    /// One service by name.
    pub async fn service(&self, name: &str) -> Result<ServiceView, ClientError> {
        let path = format!("/v1/services/{}", encode(name));
        self.call(Method::GET, &path, None::<&()>, None).await
    }

    /// Sets a fixed count, or (with `min`/`max` in `req`) an autoscaled service's bounds.
    pub async fn scale(&self, name: &str, req: &ScaleRequest) -> Result<ServiceView, ClientError> {
        let path = format!("/v1/services/{}/scale", encode(name));
        self.call(Method::POST, &path, Some(req), None).await
    }

    /// A one-time login path for the dashboard (`ebb ui`).
    pub async fn ui_login(&self) -> Result<ebb_core::api::UiLogin, ClientError> {
        self.call(Method::POST, "/v1/ui/login", None::<&()>, None)
            .await
    }

    /// Replaces every instance of the service, one at a time, start-before-stop.
    pub async fn restart_service(&self, name: &str) -> Result<ServiceView, ClientError> {
        let path = format!("/v1/services/{}/restart", encode(name));
        self.call(Method::POST, &path, None::<&()>, None).await
    }

    /// Replaces one instance by a new one, started first, on any node that fits.
    pub async fn restart_instance(
        &self,
        instance: &str,
    ) -> Result<ebb_core::api::MigrationView, ClientError> {
        let path = format!("/v1/instances/{}/restart", encode(instance));
        self.call(Method::POST, &path, None::<&()>, None).await
    }

    /// Removes the service, whose instances are then stopped; returns its view from before removal.
    pub async fn stop(&self, name: &str) -> Result<ServiceView, ClientError> {
        let path = format!("/v1/services/{}", encode(name));
        self.call(Method::DELETE, &path, None::<&()>, None).await
    }

    /// Every node that ever joined, with its state and what is placed on it.
    pub async fn nodes(&self) -> Result<Vec<ebb_core::api::NodeView>, ClientError> {
        self.call(Method::GET, "/v1/nodes", None::<&()>, None).await
    }

    /// Puts a node in drain: no new instances, and its instances move one at a time.
    pub async fn drain(
        &self,
        node: &str,
        deadline: Option<&str>,
    ) -> Result<ebb_core::api::NodeView, ClientError> {
        let path = format!("/v1/nodes/{}/drain", encode(node));
        let body = ebb_core::api::DrainRequest {
            deadline: deadline.map(str::to_string),
        };
        self.call(Method::POST, &path, Some(&body), None).await
    }

    /// Puts a drained node back in service.
    pub async fn undrain(&self, node: &str) -> Result<ebb_core::api::NodeView, ClientError> {
        let path = format!("/v1/nodes/{}/drain", encode(node));
        self.call(Method::DELETE, &path, None::<&()>, None).await
    }

    /// Forgets a node that is down (`ebb nodes rm`); returns it as it was.
    pub async fn remove_node(&self, node: &str) -> Result<ebb_core::api::NodeView, ClientError> {
        let path = format!("/v1/nodes/{}", encode(node));
        self.call(Method::DELETE, &path, None::<&()>, None).await
    }

    /// Moves one instance to another node (`to`, or the scheduler's choice), start-before-stop.
    pub async fn migrate(
        &self,
        instance: &str,
        to: Option<&str>,
    ) -> Result<ebb_core::api::MigrationView, ClientError> {
        let path = format!("/v1/instances/{}/migrate", encode(instance));
        let body = ebb_core::api::MigrateRequest {
            to: to.map(str::to_string),
        };
        self.call(Method::POST, &path, Some(&body), None).await
    }

    /// The moves under way.
    pub async fn migrations(&self) -> Result<Vec<ebb_core::api::MigrationView>, ClientError> {
        self.call(Method::GET, "/v1/migrations", None::<&()>, None)
            .await
    }

    /// Every instance, or only those of `service`.
    pub async fn instances(&self, service: Option<&str>) -> Result<Vec<InstanceView>, ClientError> {
        let path = match service {
            Some(s) => format!("/v1/instances?service={}", encode(s)),
            None => "/v1/instances".to_string(),
        };
        self.call(Method::GET, &path, None::<&()>, None).await
    }

    /// Load-balancer traffic per service and instance over the last `window` (e.g. "10s").
    pub async fn metrics(
        &self,
        service: Option<&str>,
        window: &str,
    ) -> Result<ebb_core::traffic::MetricsResponse, ClientError> {
        let mut path = format!("/v1/metrics?window={}", encode(window));
        if let Some(s) = service {
            path.push_str(&format!("&service={}", encode(s)));
        }
        self.call(Method::GET, &path, None::<&()>, None).await
    }

    /// Events after `after` (0: the most recent `limit`); waits up to `wait` for new ones.
    pub async fn events(
        &self,
        after: u64,
        limit: usize,
        wait: Duration,
    ) -> Result<EventsResponse, ClientError> {
        let path = format!(
            "/v1/events?after={after}&limit={limit}&wait_ms={}",
            wait.as_millis()
        );
        self.call(Method::GET, &path, None::<&()>, Some(wait)).await
    }

    /// The event stream (`GET /v1/events/stream`) from after `after`: events as they happen.
    pub async fn event_stream(&self, after: u64) -> Result<EventStream, ClientError> {
        let path = format!("/v1/events/stream?after={after}");
        // The answer's head is bounded as a plain call's is; dropping the call on time-out
        // sends the next one to the next server.
        let opening = self.send(Method::GET, &path, None::<&()>, None);
        let response = tokio::time::timeout(REQUEST_TIMEOUT, opening)
            .await
            .map_err(|_| ClientError::Timeout {
                addr: self.base().to_string(),
                reason: format!("no answer to {path} within {REQUEST_TIMEOUT:?}"),
            })??;
        if !response.status().is_success() {
            return Err(self.error(response).await);
        }
        Ok(EventStream {
            response,
            parser: sse::Parser::default(),
            ready: std::collections::VecDeque::new(),
        })
    }

    /// Log lines of a service (or one instance): the last `tail` lines, or what follows `cursors`.
    pub async fn logs(
        &self,
        service: &str,
        q: &LogsQuery<'_>,
    ) -> Result<LogsResponse, ClientError> {
        let mut path = format!("/v1/logs/{}?tail={}", encode(service), q.tail);
        if let Some(i) = q.instance {
            path.push_str(&format!("&instance={}", encode(i)));
        }
        if let Some(t) = q.task {
            path.push_str(&format!("&task={t}"));
        }
        if let Some(since) = q.since {
            // Whole seconds, rounded up: a line of the last 1.5 s is not left out.
            let secs = since.as_millis().div_ceil(1000);
            path.push_str(&format!("&since_secs={secs}"));
        }
        if q.timestamps {
            path.push_str("&timestamps=true");
        }
        if !q.cursors.is_empty() {
            path.push_str(&format!("&cursors={}", encode(q.cursors)));
        }
        self.call(Method::GET, &path, None::<&()>, None).await
    }

    /// Agent side of the log channel: the log reads waiting for `node`, waiting up to `wait`
    /// for one.
    pub async fn log_requests(
        &self,
        node: &str,
        wait: Duration,
    ) -> Result<ebb_core::api::LogRequests, ClientError> {
        let path = format!(
            "/v1/nodes/{}/log-requests?wait_ms={}",
            encode(node),
            wait.as_millis()
        );
        self.call(Method::GET, &path, None::<&()>, Some(wait)).await
    }

    /// Agent side of the log channel: the answer to log read `id`.
    pub async fn answer_log_request(
        &self,
        node: &str,
        id: u64,
        answer: &LogsResponse,
    ) -> Result<(), ClientError> {
        let path = format!("/v1/nodes/{}/log-requests/{id}", encode(node));
        self.call::<_, serde_json::Value>(Method::POST, &path, Some(answer), None)
            .await
            .map(drop)
    }

    /// A node's first call, with the join token: its own credential for every later call.
    pub async fn join(&self, node: &str) -> Result<ebb_core::api::JoinResponse, ClientError> {
        let path = format!("/v1/nodes/{}/join", encode(node));
        self.call(Method::POST, &path, None::<&()>, None).await
    }

    /// Agent heartbeat: report statuses and events, get the node's assignments back.
    pub async fn sync(&self, req: &SyncRequest) -> Result<AssignmentsResponse, ClientError> {
        let path = format!("/v1/nodes/{}/sync", encode(&req.node.name));
        self.call(Method::POST, &path, Some(req), None).await
    }

    /// Long-poll: the node's assignments once they change after revision `after` (or after `wait`).
    pub async fn assignments(
        &self,
        node: &str,
        after: u64,
        wait: Duration,
    ) -> Result<AssignmentsResponse, ClientError> {
        let path = format!(
            "/v1/nodes/{}/assignments?after={after}&wait_ms={}",
            encode(node),
            wait.as_millis()
        );
        self.call(Method::GET, &path, None::<&()>, Some(wait)).await
    }

    /// One server's load-balancer counters, sent to the leader for its autoscaler.
    pub async fn report_traffic(
        &self,
        report: &ebb_core::traffic::TrafficReport,
    ) -> Result<ebb_core::traffic::TrafficAck, ClientError> {
        self.call(Method::POST, "/v1/traffic", Some(report), None)
            .await
    }

    // === plumbing ===

    async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        extra_wait: Option<Duration>,
    ) -> Result<T, ClientError> {
        let timeout = REQUEST_TIMEOUT + extra_wait.unwrap_or_default();
        let resp = self.send(method, path, body, Some(timeout)).await?;
        if !resp.status().is_success() {
            return Err(self.error(resp).await);
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// Sends a request to the first server that answers, from the one that answered last;
    /// `timeout` bounds the whole exchange (None: a stream, bounded by its reader).
    async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, ClientError> {
        let first = self.current.load(Ordering::Relaxed);
        let mut attempt = 0;
        let resp = loop {
            let index = (first + attempt) % self.bases.len();
            let base = &self.bases[index];
            let mut req: RequestBuilder =
                self.http.request(method.clone(), format!("{base}{path}"));
            if let Some(timeout) = timeout {
                req = req.timeout(timeout);
            }
            if let Some(token) = &self.token {
                req = req.bearer_auth(token);
            }
            if let Some(body) = body {
                req = req.json(body);
            }
            // A call that fails, or that its caller gives up on (its own timeout drops this
            // future: an agent's heartbeat to a frozen server), sends later calls to the next
            // server, unless another call moved on meanwhile.
            let mut moving_on = MoveOnIfDropped {
                current: &self.current,
                index,
                count: self.bases.len(),
                armed: true,
            };
            match req.send().await {
                Ok(resp) => {
                    moving_on.armed = false;
                    // Only if no other call moved on meanwhile: a long-poll that a frozen
                    // server answers late must not pull the client back to it.
                    let _ = self.current.compare_exchange(
                        first,
                        index,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                    break resp;
                }
                Err(e) => {
                    drop(moving_on);
                    let (addr, reason) = (base.clone(), root_cause(&e));
                    if e.is_timeout() {
                        // It may have been applied: never sent twice.
                        return Err(ClientError::Timeout { addr, reason });
                    }
                    attempt += 1;
                    if attempt >= self.bases.len() {
                        return Err(ClientError::Connect { addr, reason });
                    }
                }
            }
        };
        Ok(resp)
    }

    /// The error an unsuccessful answer carries.
    async fn error(&self, resp: reqwest::Response) -> ClientError {
        let status = resp.status();
        let bytes = match resp.bytes().await {
            Ok(bytes) => bytes,
            Err(e) => return ClientError::Protocol(e.to_string()),
        };
        let message = serde_json::from_slice::<ErrorBody>(&bytes)
            .map(|b| b.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
        if status == StatusCode::UNAUTHORIZED {
            return ClientError::Unauthorized {
                addr: self.base().to_string(),
                message,
            };
        }
        ClientError::Api {
            status: status.as_u16(),
            message,
        }
    }
}

/// How long a stream may stay silent before its reader gives up on it: three of the server's
/// 15 s keep-alives.
pub const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(45);

/// What an event stream brings.
#[derive(Debug)]
pub enum StreamItem {
    /// An event.
    Event(ebb_core::Event),
    /// An event this client cannot read (a newer kind alone reads as `unknown`; this is for an
    /// event of another shape): its sequence number, if it had one, and why.
    Unreadable {
        /// The event's sequence number.
        seq: Option<u64>,
        /// What failed to decode.
        reason: String,
    },
}

/// An open event stream ([`Client::event_stream`]).
pub struct EventStream {
    response: reqwest::Response,
    parser: sse::Parser,
    ready: std::collections::VecDeque<sse::Message>,
}

impl EventStream {
    /// The next event; None when the server ended the stream (it is stopping: reconnect).
    /// Fails if the stream breaks, or stays silent past [`STREAM_IDLE_TIMEOUT`]. An event this
    /// client cannot read (another shape than this build's; a newer kind alone reads as
    /// `unknown`) comes as [`StreamItem::Unreadable`], with its sequence number, so that a
    /// follower goes on past it.
    pub async fn next(&mut self) -> Result<Option<StreamItem>, ClientError> {
        loop {
            if let Some(message) = self.ready.pop_front() {
                let seq = message.id.as_deref().and_then(|id| id.parse().ok());
                return Ok(Some(match serde_json::from_str(&message.data) {
                    Ok(event) => StreamItem::Event(event),
                    Err(e) => StreamItem::Unreadable {
                        seq,
                        reason: e.to_string(),
                    },
                }));
            }
            let chunk = tokio::time::timeout(STREAM_IDLE_TIMEOUT, self.response.chunk())
                .await
                .map_err(|_| ClientError::Timeout {
                    addr: self.response.url().origin().ascii_serialization(),
                    reason: format!("the event stream was silent for {STREAM_IDLE_TIMEOUT:?}"),
                })?
                .map_err(|e| ClientError::Protocol(root_cause(&e)))?;
            let Some(chunk) = chunk else {
                return Ok(None);
            };
            let messages = self.parser.push(&chunk).map_err(ClientError::Protocol)?;
            self.ready.extend(messages);
        }
    }
}

/// While armed, moves the client's current server past `index` when dropped.
struct MoveOnIfDropped<'a> {
    current: &'a AtomicUsize,
    index: usize,
    count: usize,
    armed: bool,
}

impl Drop for MoveOnIfDropped<'_> {
    fn drop(&mut self) {
        if self.armed {
            let next = (self.index + 1) % self.count;
            let _ = self.current.compare_exchange(
                self.index,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }
}

/// The URL calls go to: `addr` with its scheme, else `https://` when the API is trusted by a CA
/// or is not on loopback (ebb serves TLS there), else `http://`.
fn base_url(addr: &str, trusted: bool) -> String {
    let addr = addr.trim().trim_end_matches('/');
    if addr.starts_with("http://") || addr.starts_with("https://") {
        return addr.to_string();
    }
    let plain = !trusted && is_loopback(addr);
    format!("{}://{addr}", if plain { "http" } else { "https" })
}

/// Whether a URL or `host:port` names this machine: 127.0.0.0/8, ::1 or `localhost`.
fn is_loopback(addr: &str) -> bool {
    let rest = addr.split_once("://").map_or(addr, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The innermost cause of an error ("Connection refused (os error 111)"): reqwest's own
/// layers ("error sending request for url ...") say nothing the CLI's message does not.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Percent-encodes a path segment or query value (names are DNS labels, but be safe).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_keeps_names_and_escapes_the_rest() {
        assert_eq!(encode("web-1"), "web-1");
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let c = Client::new("127.0.0.1:1", Some("s3cret".into())).unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("redacted"),
            "{shown}"
        );
    }

    #[test]
    fn tokens_never_go_in_clear_beyond_loopback() {
        assert_eq!(base_url("10.0.0.1:7070", false), "https://10.0.0.1:7070");
        assert_eq!(base_url("127.0.0.1:7070", true), "https://127.0.0.1:7070");
        assert_eq!(base_url("[::1]:7070", false), "http://[::1]:7070");
        assert_eq!(base_url("localhost:1", false), "http://localhost:1");
        assert!(Client::new("http://10.0.0.1:7070", Some("t".into())).is_err());
        assert!(
            Client::new("ebb.internal:7070", Some("t".into())).is_err(),
            "https without a CA"
        );
        let trusted = Some(Trust::CaSha256("00".repeat(32)));
        assert!(Client::with_trust("http://127.0.0.1:1", None, trusted.clone()).is_err());
        assert!(Client::with_trust("10.0.0.1:7070", None, trusted).is_ok());
    }

    #[test]
    fn bare_addresses_get_a_scheme() {
        assert_eq!(
            Client::new("127.0.0.1:7070", None).unwrap().base(),
            "http://127.0.0.1:7070"
        );
        assert_eq!(
            Client::new("http://localhost:1/", None).unwrap().base(),
            "http://localhost:1"
        );
    }
}
