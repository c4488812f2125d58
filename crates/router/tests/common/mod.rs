//! Test fixtures: tiny hyper backends on ephemeral ports that name themselves, a proxy in
//! front of them, a streaming body fed from a channel, and deadline helpers.
#![allow(dead_code)] // each test file uses a different part

use ebb_router::http::{Proxy, ProxyConfig};
use ebb_router::{BalanceAlgorithm, Endpoints};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type TestBody = BoxBody<Bytes, BoxError>;
pub type TestClient = Client<hyper_util::client::legacy::connect::HttpConnector, TestBody>;

/// Every test body runs under this; a hang fails the test instead of stalling the suite.
pub const TEST_DEADLINE: Duration = Duration::from_secs(30);

pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(TEST_DEADLINE, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: no result within {TEST_DEADLINE:?}"),
    }
}

// === bodies ===

pub fn full(data: impl Into<Bytes>) -> TestBody {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn empty() -> TestBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

pub fn incoming(body: Incoming) -> TestBody {
    body.map_err(BoxError::from).boxed()
}

/// A body streamed from a channel (chunked on the wire, no length known up front).
pub struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|data| Ok(Frame::data(data))))
    }
}

pub fn channel_body() -> (mpsc::Sender<Bytes>, TestBody) {
    let (tx, rx) = mpsc::channel(1);
    (tx, ChannelBody(rx).boxed())
}

/// Deterministic test data: byte i of the stream.
pub fn pattern(start: usize, len: usize) -> Bytes {
    (start..start + len)
        .map(|i| (i.wrapping_mul(31).wrapping_add(7) % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

// === backends ===

pub struct Backend {
    pub addr: SocketAddr,
    /// TCP connections the backend accepted (to observe keep-alive reuse).
    pub accepted: Arc<AtomicUsize>,
}

impl Backend {
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Starts an HTTP/1.1 backend whose handler receives its name and each request.
pub async fn backend<F, Fut>(name: &'static str, handler: F) -> Backend
where
    F: Fn(&'static str, Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<TestBody>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = listener.local_addr().expect("backend addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let handler = handler.clone();
            let service = service_fn(move |req| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler(name, req).await) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades(),
            );
        }
    });
    Backend { addr, accepted }
}

/// The usual handler: the body is the backend's name; forwarding headers are echoed back as
/// `echo-<name>` response headers.
pub async fn named(name: &'static str, req: Request<Incoming>) -> Response<TestBody> {
    let mut response = Response::new(full(name));
    for header in [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-request-id",
        "connection",
        "te",
    ] {
        if let Some(value) = req.headers().get(header) {
            let echo = hyper::header::HeaderName::from_bytes(format!("echo-{header}").as_bytes())
                .expect("name");
            response.headers_mut().insert(echo, value.clone());
        }
    }
    response
}

/// Echoes the request body back as it arrives.
pub async fn echo(_name: &'static str, req: Request<Incoming>) -> Response<TestBody> {
    Response::new(incoming(req.into_body()))
}

/// Never answers (for timeouts).
pub async fn silent(_name: &'static str, _req: Request<Incoming>) -> Response<TestBody> {
    std::future::pending().await
}

/// An address with nothing listening: connecting to it is refused.
pub async fn dead_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr")
}

// === proxy ===

pub fn endpoints(addrs: &[SocketAddr]) -> Arc<Endpoints> {
    let endpoints = Arc::new(Endpoints::new(BalanceAlgorithm::RoundRobin));
    let wanted: Vec<(String, SocketAddr)> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| (format!("ep-{i}"), *a))
        .collect();
    endpoints.update(&wanted, Instant::now());
    endpoints
}

pub struct RunningProxy {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningProxy {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Stops accepting and waits for `serve` to return.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        within("proxy shutdown", &mut self.task)
            .await
            .expect("proxy task");
    }
}

pub async fn start_proxy(endpoints: Arc<Endpoints>, config: ProxyConfig) -> RunningProxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().expect("proxy addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let proxy = Proxy::new(endpoints, config);
    let task = tokio::spawn(proxy.serve(listener, async move {
        let _ = stopped.await;
        ebb_router::http::Stop::Close
    }));
    RunningProxy {
        addr,
        stop: Some(stop),
        task,
    }
}

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A client that speaks HTTP/2 with prior knowledge (h2c).
pub fn h2c_client() -> TestClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// An h2c client whose flow-control windows stay at the protocol's initial 64 KiB: a client
/// that reads nothing holds the router up after that much.
pub fn h2c_client_with_small_windows() -> TestClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .http2_initial_stream_window_size(65_535)
        .http2_initial_connection_window_size(65_535)
        .http2_adaptive_window(false)
        .build_http()
}

/// GETs `url`; returns status, headers and the body as text.
pub async fn get(client: &TestClient, url: &str) -> (hyper::StatusCode, hyper::HeaderMap, String) {
    let req = Request::get(url).body(empty()).expect("request");
    let response = client.request(req).await.expect("response");
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}
