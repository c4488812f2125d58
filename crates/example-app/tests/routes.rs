//! The example app answers each route as documented, over kept-alive HTTP/1.1 connections.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use bytes::Bytes;
use ebb_example_app::run_on;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running app on an ephemeral port; stop it with `stop`.
struct App {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

async fn start(name: &'static str, greeting: Option<&'static str>) -> App {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run_on(listener, name, greeting, async {
        let _ = stopped.await;
    }));
    App { addr, stop, task }
}

impl App {
    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

async fn connect(addr: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

struct Answer {
    status: StatusCode,
    instance: Option<String>,
    body: String,
}

async fn send(sender: &mut SendRequest<Empty<Bytes>>, method: Method, path: &str) -> Answer {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "test")
        .body(Empty::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status();
    let instance = resp
        .headers()
        .get("x-instance")
        .map(|v| v.to_str().unwrap().to_string());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        instance,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

async fn get(addr: SocketAddr, path: &str) -> Answer {
    send(&mut connect(addr).await, Method::GET, path).await
}

#[tokio::test]
async fn root_says_hello_and_names_the_instance() {
    let app = start("web-1", None).await;
    let a = get(app.addr, "/").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, "hello from web-1\n");
    assert_eq!(a.instance.as_deref(), Some("web-1"));
    app.stop().await;
}

#[tokio::test]
async fn root_uses_the_greeting_when_given() {
    let app = start("web-2", Some("hi")).await;
    assert_eq!(get(app.addr, "/").await.body, "hi from web-2\n");
    app.stop().await;
}

#[tokio::test]
async fn healthz_is_ok() {
    let app = start("web", None).await;
    let a = get(app.addr, "/healthz").await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "ok"));
    app.stop().await;
}

#[tokio::test]
async fn slow_sleeps_then_answers() {
    let app = start("web", None).await;
    let a = get(app.addr, "/slow?ms=5").await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "slept 5ms\n"));
    app.stop().await;
}

#[tokio::test]
async fn slow_with_a_bad_or_missing_ms_is_a_bad_request() {
    let app = start("web", None).await;
    for path in ["/slow", "/slow?ms=soon", "/slow?ms=-3"] {
        assert_eq!(
            get(app.addr, path).await.status,
            StatusCode::BAD_REQUEST,
            "{path}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn fail_is_a_server_error() {
    let app = start("web", None).await;
    let a = get(app.addr, "/fail").await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(a.instance.as_deref(), Some("web"));
    app.stop().await;
}

#[tokio::test]
async fn other_paths_are_not_found() {
    let app = start("web", None).await;
    for path in ["/nope", "/healthz/x", "//"] {
        assert_eq!(
            get(app.addr, path).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn head_gets_headers_without_a_body() {
    let app = start("web", None).await;
    let a = send(&mut connect(app.addr).await, Method::HEAD, "/").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, "");
    app.stop().await;
}

#[tokio::test]
async fn one_connection_serves_many_requests() {
    let app = start("web", None).await;
    let mut sender = connect(app.addr).await;
    for path in ["/", "/healthz", "/fail", "/nope", "/"] {
        send(&mut sender, Method::GET, path).await;
    }
    assert!(!sender.is_closed());
    app.stop().await;
}

#[tokio::test]
async fn a_raw_http_1_1_request_gets_a_complete_answer() {
    let app = start("raw", None).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
    assert!(raw.contains("\r\nx-instance: raw\r\n"), "{raw}");
    assert!(raw.contains("\r\ncontent-length: 15\r\n"), "{raw}");
    assert!(raw.ends_with("\r\n\r\nhello from raw\n"), "{raw}");
    app.stop().await;
}

#[tokio::test]
async fn stopping_an_idle_app_returns_ok_and_closes_the_port() {
    let app = start("web", None).await;
    let addr = app.addr;
    let _idle = connect(addr).await;
    app.stop().await;
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn a_name_that_cannot_be_a_header_is_refused_at_start() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = run_on(listener, "bad\nname", None, std::future::pending())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}
