//! The proxy's limits over real sockets: upstream timeout (504), oversized heads (431), clients
//! that trickle headers or send nothing, and malformed requests that must not disturb others.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::*;
use ebb_router::http::ProxyConfig;
use ebb_testkit::eventually_async;
use hyper::StatusCode;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn short_limits() -> ProxyConfig {
    ProxyConfig {
        request_timeout: Duration::from_millis(300),
        header_read_timeout: Duration::from_millis(300),
        max_header_bytes: 8 * 1024,
        ..ProxyConfig::default()
    }
}

/// Sends raw bytes and reads until the proxy closes the connection (bounded by the deadline).
async fn raw_exchange(proxy: std::net::SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(proxy).await.expect("connect");
    stream.write_all(request).await.expect("write");
    read_until_closed(&mut stream).await
}

async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out).await; // a reset after the response is fine
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_backend_slower_than_the_request_timeout_is_a_504() {
    within("504", async {
        let slow = backend("slow", silent).await;
        let proxy = start_proxy(endpoints(&[slow.addr]), short_limits()).await;
        let (status, _, _) = get(&client(), &proxy.url("/")).await;
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_oversized_head_is_a_431() {
    within("431", async {
        let b = backend("named", named).await;
        let proxy = start_proxy(endpoints(&[b.addr]), short_limits()).await;
        let big = "a".repeat(12 * 1024);
        let request = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
        let response = raw_exchange(proxy.addr, request.as_bytes()).await;
        assert!(response.starts_with("HTTP/1.1 431"), "got: {response:.80}");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_client_that_trickles_headers_is_cut_off() {
    within("slow headers", async {
        let b = backend("named", named).await;
        let proxy = start_proxy(endpoints(&[b.addr]), short_limits()).await;
        // Half a header line, then silence: the proxy must close (the deadline bounds the wait).
        let response = raw_exchange(proxy.addr, b"GET / HTTP/1.1\r\nHost: x\r\nX-Slo").await;
        assert!(
            response.is_empty() || response.starts_with("HTTP/1.1 408"),
            "got: {response:.80}"
        );
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_client_that_sends_nothing_is_cut_off() {
    within("silent client", async {
        let proxy = start_proxy(endpoints(&[]), short_limits()).await;
        let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
        assert_eq!(read_until_closed(&mut stream).await, "");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_malformed_request_gets_400_and_others_are_unaffected() {
    within("400", async {
        let b = backend("named", named).await;
        let proxy = start_proxy(endpoints(&[b.addr]), short_limits()).await;
        let client = client();
        let (status, _, _) = get(&client, &proxy.url("/")).await; // a pooled connection now exists
        assert_eq!(status, StatusCode::OK);
        let response = raw_exchange(proxy.addr, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n").await;
        assert!(response.starts_with("HTTP/1.1 400"), "got: {response:.80}");
        let (status, _, body) = get(&client, &proxy.url("/")).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "named"));
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_client_that_starts_the_http2_preface_and_stops_is_cut_off() {
    within("a partial preface cut off", async {
        let b = backend("named", named).await;
        let proxy = start_proxy(endpoints(&[b.addr]), short_limits()).await;
        // One byte of `PRI * HTTP/2.0...`, then nothing: before, hyper waited for the rest
        // forever, one file descriptor per such client.
        for partial in [&b"P"[..], b"PRI * HTTP/2.0\r\n"] {
            let response = raw_exchange(proxy.addr, partial).await;
            assert!(response.is_empty(), "got: {response:.80}");
        }
        // A real h2c client is still served.
        let (status, _, _) = get(&h2c_client(), &proxy.url("/")).await;
        assert_eq!(status, StatusCode::OK);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_idle_http2_connection_is_asked_to_finish_and_closed() {
    within("an idle h2c connection closed", async {
        let b = backend("named", named).await;
        let config = ProxyConfig {
            h2_idle_timeout: Duration::from_millis(300),
            header_read_timeout: Duration::from_millis(300),
            ..ProxyConfig::default()
        };
        let proxy = start_proxy(endpoints(&[b.addr]), config).await;
        // The whole preface and an empty SETTINGS frame, then no request: before, such a
        // connection held its place under the cap for ever.
        let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
        stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await
            .expect("preface");
        let started = std::time::Instant::now();
        let mut frames = Vec::new();
        let _ = stream.read_to_end(&mut frames).await; // ends when the proxy closes
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "{:?}",
            started.elapsed()
        );
        // It was told with a GOAWAY (type 7), the polite way to close an HTTP/2 connection,
        // then dropped, as it never answered the PING that follows one.
        let kinds = frame_types(&frames);
        assert!(kinds.contains(&7), "frame types: {kinds:?}");
        // Requests keep a connection open: a client served now and then is not cut off.
        let client = h2c_client();
        for _ in 0..4 {
            let (status, _, _) = get(&client, &proxy.url("/")).await;
            assert_eq!(status, StatusCode::OK);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        proxy.stop().await;
    })
    .await;
}

/// The types of the HTTP/2 frames in `bytes` (a server's side of a connection).
fn frame_types(mut bytes: &[u8]) -> Vec<u8> {
    let mut kinds = Vec::new();
    while bytes.len() >= 9 {
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        kinds.push(bytes[3]);
        bytes = &bytes[(9 + len).min(bytes.len())..];
    }
    kinds
}

#[tokio::test]
async fn past_the_connection_cap_new_clients_are_refused_and_open_ones_are_served() {
    within("connection cap", async {
        let b = backend("named", named).await;
        // Long enough for the steps below; short, so that the silent client is gone soon after.
        let config = ProxyConfig {
            header_read_timeout: Duration::from_secs(5),
            connections: Some(ebb_router::limit::ConnectionLimit::new(2)),
            ..ProxyConfig::default()
        };
        let proxy = start_proxy(endpoints(&[b.addr]), config).await;
        // Two clients hold the two places (one of them keep-alive, between requests).
        let mut first = TcpStream::connect(proxy.addr).await.unwrap();
        let _second = TcpStream::connect(proxy.addr).await.unwrap();
        first
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = first.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        // A third is closed at once, without an answer.
        let third = raw_exchange(proxy.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(third.is_empty(), "got: {third:.80}");
        // The open one is still served.
        first
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let n = first.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        // Once one closes, a new client gets its place.
        drop(first);
        let fresh = eventually_async("a place to free up", Duration::from_secs(5), async || {
            let answer = raw_exchange(
                proxy.addr,
                b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            .await;
            answer.starts_with("HTTP/1.1 200").then_some(answer)
        })
        .await;
        assert!(fresh.contains("200"));
        proxy.stop().await;
    })
    .await;
}

/// A response far larger than the socket buffers between the proxy and a client.
const LARGE: usize = 64 << 20;

async fn large(
    _name: &'static str,
    _req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<TestBody> {
    hyper::Response::new(full(vec![b'x'; LARGE]))
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_after_the_send_timeout() {
    within("send timeout", async {
        let big = backend("big", large).await;
        let config = ProxyConfig {
            send_timeout: Duration::from_millis(300),
            ..short_limits()
        };
        let proxy = start_proxy(endpoints(&[big.addr]), config).await;
        // A small receive buffer, so that the proxy's writes stall at once, however busy the
        // machine is.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream = socket.connect(proxy.addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        // Read nothing for far longer than the send timeout: the proxy gives up.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mut received = Vec::new();
        let _ = stream.read_to_end(&mut received).await; // EOF or a reset
        assert!(
            received.len() < LARGE,
            "the whole response waited for the client ({} bytes)",
            received.len()
        );
        // A client that keeps reading gets it all, however long it takes.
        let (status, _, body) = get(&client(), &proxy.url("/")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body.len(), LARGE);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_http2_client_that_stops_reading_is_cut_off_after_the_send_timeout() {
    within("h2 send timeout", async {
        // 4 MiB: more than the client's window, hyper's send buffer and the 1 MiB the router
        // reads ahead hold together, so the router must wait on the client.
        const LEN: usize = 4 << 20;
        let b = backend("big", |_, _| async {
            hyper::Response::new(full(pattern(0, LEN)))
        })
        .await;
        let eps = endpoints(&[b.addr]);
        let config = ProxyConfig {
            send_timeout: Duration::from_millis(300),
            ..ProxyConfig::default()
        };
        let proxy = start_proxy(eps.clone(), config).await;
        // A client whose windows stay at the protocol's initial 64 KiB and which reads nothing.
        let client = h2c_client_with_small_windows();
        let req = hyper::Request::get(proxy.url("/big"))
            .body(empty())
            .expect("request");
        let response = client.request(req).await.expect("response head");
        assert_eq!(response.status(), StatusCode::OK);
        let ep = eps.load().endpoints[0].clone();
        eventually_async(
            "the instance to be freed from the stalled client",
            Duration::from_secs(10),
            || async { (ep.load.in_flight() == 0).then_some(()) },
        )
        .await;
        let body = http_body_util::BodyExt::collect(response.into_body()).await;
        assert!(body.is_err(), "its connection was dropped mid-body");
        proxy.stop().await;
    })
    .await;
}
