//! Byte tunnels over real sockets: TCP mode (with half-close and connect retries) and HTTP
//! protocol upgrades (WebSocket).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::*;
use ebb_router::http::ProxyConfig;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// A raw TCP backend that echoes everything until the client half-closes, then closes too.
async fn tcp_echo_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
                let _ = write.shutdown().await;
            });
        }
    });
    addr
}

/// The TCP listeners' idle timeout in these tests: long enough that no echo trips it.
const IDLE: Duration = Duration::from_secs(1);

async fn start_tcp(endpoints: Arc<ebb_router::Endpoints>) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(ebb_router::tcp::serve(
        endpoints,
        listener,
        ebb_router::tcp::TcpConfig {
            queue_timeout: Duration::from_millis(200),
            idle_timeout: IDLE,
            connections: None,
        },
        async move {
            let _ = stopped.await;
        },
    ));
    (addr, stop)
}

/// Writes `data`, shuts the write side (half-close), and reads the echo to the end.
async fn echo_through(proxy: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(proxy).await.expect("connect");
    let (mut read, mut write) = stream.split();
    let writer = async {
        write.write_all(data).await.expect("write");
        write.shutdown().await.expect("half-close");
    };
    let mut echoed = Vec::new();
    let reader = read.read_to_end(&mut echoed);
    let ((), read) = tokio::join!(writer, reader);
    read.expect("read echo");
    echoed
}

#[tokio::test]
async fn tcp_mode_echoes_and_passes_a_half_close() {
    within("tcp echo", async {
        let (proxy, _stop) = start_tcp(endpoints(&[tcp_echo_backend().await])).await;
        let data = pattern(0, 256 * 1024);
        assert_eq!(echo_through(proxy, &data).await, data.to_vec());
    })
    .await;
}

#[tokio::test]
async fn a_tcp_connection_idle_past_the_timeout_is_closed_and_a_busy_one_is_not() {
    within("tcp idle timeout", async {
        let echo = tcp_echo_backend().await;
        let (proxy, _stop) = start_tcp(endpoints(&[echo])).await;
        // Busy: a byte every 100 ms for three idle timeouts, each echoed back, while the
        // quiet connection below sends nothing.
        let mut busy = TcpStream::connect(proxy).await.unwrap();
        let busy = tokio::spawn(async move {
            let started = std::time::Instant::now();
            while started.elapsed() < IDLE * 3 {
                busy.write_all(b"x").await?;
                let mut byte = [0u8; 1];
                busy.read_exact(&mut byte).await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok::<(), std::io::Error>(())
        });
        let mut quiet = TcpStream::connect(proxy).await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(IDLE * 10, quiet.read(&mut buf))
            .await
            .expect("closed within the idle timeout")
            .unwrap_or(0);
        assert_eq!(n, 0, "the idle connection is closed");
        busy.await
            .unwrap()
            .expect("the busy connection stays open throughout");
    })
    .await;
}

#[tokio::test]
async fn tcp_mode_skips_a_dead_endpoint() {
    within("tcp retry", async {
        let (proxy, _stop) =
            start_tcp(endpoints(&[dead_addr().await, tcp_echo_backend().await])).await;
        for i in 0..20 {
            assert_eq!(
                echo_through(proxy, b"ping").await,
                b"ping",
                "connection {i}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn tcp_mode_without_endpoints_closes_the_client() {
    within("tcp none", async {
        let (proxy, _stop) = start_tcp(endpoints(&[])).await;
        let mut stream = TcpStream::connect(proxy).await.expect("connect");
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out).await;
        assert!(out.is_empty());
    })
    .await;
}

/// Answers an upgrade with 101 and then echoes raw bytes on the upgraded connection.
async fn upgrade_echo(_name: &'static str, mut req: Request<Incoming>) -> Response<TestBody> {
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let (mut read, mut write) = tokio::io::split(TokioIo::new(upgraded));
            let _ = tokio::io::copy(&mut read, &mut write).await;
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .body(empty())
        .expect("response")
}

#[tokio::test]
async fn a_websocket_upgrade_is_tunnelled() {
    within("websocket", async {
        let b = backend("ws", upgrade_echo).await;
        let proxy = start_proxy(endpoints(&[b.addr]), ProxyConfig::default()).await;
        let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
        stream
            .write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
            .await
            .expect("handshake");
        let head = read_head(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 101"), "got: {head}");
        assert!(head.to_ascii_lowercase().contains("upgrade: websocket"), "got: {head}");
        for message in [&b"hello"[..], b"over the tunnel"] {
            stream.write_all(message).await.expect("write");
            let mut back = vec![0; message.len()];
            stream.read_exact(&mut back).await.expect("echo");
            assert_eq!(back, message);
        }
        drop(stream);
        proxy.stop().await;
    })
    .await;
}

/// Reads a response head byte by byte (so nothing after it is consumed).
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await.expect("head byte"));
    }
    String::from_utf8_lossy(&head).into_owned()
}
