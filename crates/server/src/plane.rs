//! Starting and stopping the control plane: one owner for its tasks and for their stop order.
//!
//! `ebb up`, `ebb server` and the tests start the same [`ControlPlane`]: the API, the service
//! controller, store compaction, the autoscaler, and the router (its listeners on a runtime of
//! their own, kept in step with the store). One [`CancellationToken`] stops it; each [`Stage`]
//! holds a child token, so that [`ControlPlane::shutdown`] stops the stages in order:
//!
//! 1. **decisions** (controller, compaction, autoscaler): nothing new is planned;
//! 2. the caller's `between` step: in `ebb up`, the local instances stop while the router still
//!    drains them and the agent still reports them;
//! 3. **routing**: every listener closes, requests in flight finish;
//! 4. **reporting** (a local agent's sync): a last report;
//! 5. **the API**, given [`API_DRAIN`] for open requests such as long-polls.
//!
//! Every listener has a cap on open connections, derived from the file limit
//! (`PlaneConfig::max_connections`): past it a new connection is closed at once and those open
//! go on, so a flood of connections cannot take the descriptors the store, the agents and the
//! health checks need.

use crate::state::nodes::PULSE_INTERVAL;
use crate::{routing, Server};
use ebb_router::limit::ConnectionLimit;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long open API requests (long-polls of agents) may finish at shutdown: agents re-poll
/// within a second anyway, and an exit must not wait on their 30 s long-polls.
pub const API_DRAIN: Duration = Duration::from_secs(2);

/// The groups of tasks, in the order [`ControlPlane::shutdown`] stops them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The controller, store compaction and the autoscaler.
    Decisions,
    /// The router's sync with the store and its metrics sampling.
    Routing,
    /// A local agent's heartbeats and long-polls.
    Reporting,
    /// The HTTP API.
    Api,
}

impl Stage {
    const ORDER: [Stage; 4] = [
        Stage::Decisions,
        Stage::Routing,
        Stage::Reporting,
        Stage::Api,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// What a control plane needs to start.
pub struct PlaneConfig {
    /// The server state (store, tokens, log source), already built.
    pub server: Server,
    /// The API's listener, already bound (so that a port in use is an error before anything
    /// starts).
    pub api: TcpListener,
    /// Where services' ports listen.
    pub router_bind: IpAddr,
    /// The router runtime's threads (`None`: one per core).
    pub router_threads: Option<usize>,
    /// How many client connections the services' ports may hold open at once, all together
    /// (see [`ebb_router::limit::connection_budget`]); the API gets [`api_connection_cap`] of it.
    pub max_connections: usize,
    /// TLS for the API (`None`: plain HTTP, for loopback): see [`crate::api_tls`].
    pub api_tls: Option<Arc<rustls::ServerConfig>>,
    /// How far services' responses are read ahead of slow clients, and where they spool.
    pub read_ahead: Arc<ebb_router::read_ahead::ReadAhead>,
    /// The CA other servers' APIs are trusted by (theirs and this server's is one shared CA),
    /// when they speak TLS: a server that does not lead reports its load to the leader.
    pub api_trust: Option<ebb_client::Trust>,
}

/// Shows the node registry, every [`PULSE_INTERVAL`], that the server could process
/// heartbeats: its runtime runs and its store answers. Time in which it could not (a SIGSTOP,
/// a frozen disk under a write that holds the store) is not counted against any node, so that
/// a stalled server restarts nothing. The store is asked for its revision, a read that waits
/// behind the same lock as a heartbeat's reads and writes; the store's calls run off the async
/// workers, so the runtime alone would pulse on through a frozen disk.
async fn pulse(server: Server, stop: CancellationToken) {
    let mut tick = tokio::time::interval(PULSE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while crate::run_loop::next(&stop, tick.tick()).await.is_some() {
        if let Err(error) = server.store().revision() {
            tracing::debug!(%error, "the store did not answer the pulse");
            continue; // no proof that heartbeats could be processed
        }
        server.nodes().pulse(std::time::Instant::now());
    }
}

/// The API's own cap on open connections, from the services' budget: a quarter of it, within
/// 64–4,096. Agents hold one long-poll and one heartbeat each; the CLI a few at a time.
pub fn api_connection_cap(max_connections: usize) -> usize {
    (max_connections / 4).clamp(64, 4096)
}

/// A running control plane.
pub struct ControlPlane {
    server: Server,
    api_addr: SocketAddr,
    stop: CancellationToken,
    stages: Vec<(CancellationToken, Vec<JoinHandle<()>>)>,
    /// Kept for its drop: the router's threads end with the plane.
    _router_runtime: RouterRuntime,
}

impl ControlPlane {
    /// Starts the router's runtime and every task of the control plane.
    pub fn start(config: PlaneConfig) -> std::io::Result<ControlPlane> {
        let PlaneConfig {
            server,
            api,
            router_bind,
            router_threads,
            max_connections,
            api_tls,
            read_ahead,
            api_trust,
        } = config;
        let api_addr = api.local_addr()?;
        let router_runtime = RouterRuntime::start(router_threads)?;
        let limit = ConnectionLimit::new(max_connections);
        let api_cap = api_connection_cap(max_connections);
        tracing::info!(
            "at most {max_connections} client connections open on services' ports, {api_cap} on the API"
        );
        let router = routing::Listeners::new(
            router_bind,
            router_runtime.handle.clone(),
            limit,
            read_ahead,
        );
        server.set_router(router.clone());
        let stop = CancellationToken::new();
        let stages = Stage::ORDER
            .iter()
            .map(|_| (stop.child_token(), Vec::new()))
            .collect();
        let mut plane = ControlPlane {
            server: server.clone(),
            api_addr,
            stop,
            stages,
            _router_runtime: router_runtime,
        };
        // The controller, compaction and the autoscaler, while this server leads.
        let (s, r) = (server.clone(), router.clone());
        plane.spawn(Stage::Decisions, |stop| crate::leadership::run(s, r, stop));
        if server.cluster().is_some() {
            // Agents report to any server: learn from the store what the others heard.
            let s = server.clone();
            plane.spawn(Stage::Routing, |stop| {
                crate::state::statuses::follow(s, stop)
            });
            let s = server.clone();
            plane.spawn(Stage::Routing, |stop| {
                crate::leadership::node_leases(s, stop)
            });
            let s = server.clone();
            plane.spawn(Stage::Routing, |stop| {
                crate::state::servers::follow(s, stop)
            });
            let (s, r) = (server.clone(), router.clone());
            let link = routing::peers::PeerLink {
                token: server.token().to_string(),
                trust: api_trust,
            };
            plane.spawn(Stage::Routing, |stop| {
                routing::peers::report(s, r, link, stop)
            });
        }
        let s = server.clone();
        plane.spawn(Stage::Routing, |stop| routing::run(s, router, stop));
        let s = server.clone();
        plane.spawn(Stage::Api, |stop| pulse(s, stop));
        let s = server.clone();
        plane.spawn(Stage::Api, |stop| crate::state::history::sample(s, stop));
        server.streams().cap_at(api_cap / 4);
        let api_limit = ConnectionLimit::new(api_cap);
        let tls = api_tls.map(tokio_rustls::TlsAcceptor::from);
        plane.spawn(Stage::Api, |stop| {
            serve_api(api, server, api_limit, tls, stop)
        });
        Ok(plane)
    }

    /// The server state the tasks share.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Where the API listens.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// Runs `task` until its stage stops; it gets the stage's token and must end soon after it
    /// is cancelled (a local agent's sync loop runs in [`Stage::Reporting`]).
    pub fn spawn<F>(&mut self, stage: Stage, task: impl FnOnce(CancellationToken) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (token, tasks) = &mut self.stages[stage.index()];
        tasks.push(tokio::spawn(task(token.clone())));
    }

    /// Stops the stages in order (see the module), running `between` once decisions have
    /// stopped and before routing does. The API gets at most [`API_DRAIN`].
    pub async fn shutdown(mut self, between: impl Future<Output = ()>) {
        self.stop_stage(Stage::Decisions).await;
        between.await;
        for stage in [Stage::Routing, Stage::Reporting, Stage::Api] {
            self.stop_stage(stage).await;
        }
    }

    async fn stop_stage(&mut self, stage: Stage) {
        let (token, tasks) = std::mem::take(&mut self.stages[stage.index()]);
        token.cancel();
        let all = join_all(tasks);
        if stage == Stage::Api {
            let _ = tokio::time::timeout(API_DRAIN, all).await;
        } else {
            all.await;
        }
    }
}

/// Dropped without [`ControlPlane::shutdown`] (an error on the way out, a test's end), every
/// task still stops: the stage tokens are children of the one token cancelled here.
impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Waits for every task; one that panicked is logged.
async fn join_all(tasks: Vec<JoinHandle<()>>) {
    for task in tasks {
        if let Err(e) = task.await {
            tracing::error!(error = %e, "a control-plane task failed");
        }
    }
}

/// How long an API client may take to send a request head, the first one included: 10 s,
/// HAProxy's recommended `timeout http-request` (the router uses the same for service ports).
/// `axum::serve` has no such bound; a silent connection would hold a file descriptor forever.
pub const API_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the API until `stop` is cancelled, then lets open requests finish (the caller bounds
/// that wait). Each connection runs on hyper's HTTP/1.1 server with its timer, so a request
/// head not finished within [`API_HEADER_READ_TIMEOUT`] (also on an idle keep-alive
/// connection) closes the connection.
async fn serve_api(
    listener: TcpListener,
    server: Server,
    limit: ConnectionLimit,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: CancellationToken,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let streams = server.clone();
    let app = crate::api::router(server).layer(axum::Extension(crate::ui::ApiTls(tls.is_some())));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(API_HEADER_READ_TIMEOUT);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: wait a little instead of spinning.
                tracing::warn!(error = %e, "API accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Past the cap the new connection is closed at once; those open go on.
        let Some(slot) = limit.try_acquire("the API") else {
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let Some(tls) = tls.clone() else {
            let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
            tokio::spawn(async move {
                let _slot = slot;
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "API connection ended with an error");
                }
            });
            continue;
        };
        let (http, watcher) = (http.clone(), graceful.watcher());
        tokio::spawn(async move {
            let _slot = slot;
            // The handshake is bounded as a request head is.
            let secured = tokio::time::timeout(API_HEADER_READ_TIMEOUT, accept_tls(stream, &tls));
            let Ok(Some(stream)) = secured.await else {
                return;
            };
            let conn = http.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "API connection ended with an error");
            }
        });
    }
    drop(listener);
    // Event streams never end by themselves: end them, or the graceful stop waits its bound.
    streams.streams().close();
    graceful.shutdown().await;
}

/// A TLS record starts with this byte (a handshake); plain HTTP starts with a method's letter.
const TLS_HANDSHAKE: u8 = 0x16;

/// What a client speaking plain HTTP to the TLS API is told, as the API's JSON error.
const PLAIN_HTTP_REFUSED: &str = "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {len}\r\n\r\n";
const PLAIN_HTTP_MESSAGE: &str = "{\"error\":\"this ebb API speaks HTTPS: use https:// in --server or --addr; the CLI trusts the server's CA with --ca (its data dir's tls/ca.pem), and agents with the join token, which carries the CA's hash\"}";

/// The TLS session of a client, or `None` after answering one that spoke plain HTTP with
/// what to do (or one that closed or failed its handshake).
async fn accept_tls(
    stream: tokio::net::TcpStream,
    tls: &tokio_rustls::TlsAcceptor,
) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    use tokio::io::AsyncWriteExt;
    let mut first = [0u8; 1];
    let n = stream.peek(&mut first).await.ok()?;
    if n == 1 && first[0] != TLS_HANDSHAKE {
        use tokio::io::AsyncReadExt;
        let mut stream = stream;
        // Read what the client sent (its request), so that closing with it unread does not
        // reset the connection before the answer is read.
        // On the heap and only here: every TLS connection's future would carry an array.
        let mut request = vec![0u8; 4 * 1024];
        let _ = stream.read(&mut request).await;
        let head = PLAIN_HTTP_REFUSED.replace("{len}", &PLAIN_HTTP_MESSAGE.len().to_string());
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(PLAIN_HTTP_MESSAGE.as_bytes()).await;
        let _ = stream.shutdown().await;
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut request)).await;
        return None;
    }
    tls.accept(stream).await.ok()
}

/// The pause after a failed accept (EMFILE, ENFILE, ENOBUFS) before the next: the condition
/// passes as connections close, and retrying at once would only spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The data plane's own runtime, so that proxying never waits behind the control plane.
/// Dropping it (on any path out) shuts it down without blocking, since a runtime may not be
/// dropped from async code.
struct RouterRuntime {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

impl RouterRuntime {
    fn start(threads: Option<usize>) -> std::io::Result<RouterRuntime> {
        let runtime = ebb_router::runtime::build(threads)?;
        Ok(RouterRuntime {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }
}

impl Drop for RouterRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
