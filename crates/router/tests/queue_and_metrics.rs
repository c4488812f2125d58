//! The cold-start queue and the metrics, over real sockets: a request that arrives while no
//! instance is ready waits for the first one; every request is counted at the service and at
//! its instance, and stays in flight until its response body has been sent.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::*;
use ebb_router::http::ProxyConfig;
use ebb_router::metrics::Snapshot;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config(queue_timeout: Duration) -> ProxyConfig {
    ProxyConfig {
        queue_timeout,
        ..ProxyConfig::default()
    }
}

fn service(endpoints: &ebb_router::Endpoints) -> Snapshot {
    endpoints.snapshot(Instant::now())
}

/// Polls `f` until it holds.
async fn until(what: &str, f: impl Fn() -> bool) {
    ebb_testkit::eventually(what, TEST_DEADLINE, || f().then_some(())).await;
}

#[tokio::test]
async fn a_request_waits_for_the_first_ready_instance_and_is_then_served() {
    within("queue release", async {
        let eps = endpoints(&[]);
        let proxy = start_proxy(eps.clone(), config(Duration::from_secs(20))).await;
        let url = proxy.url("/");
        let waiting = tokio::spawn(async move { get(&client(), &url).await });
        until("the request to queue", || eps.queued() == 1).await;
        assert!(!waiting.is_finished(), "it waits rather than failing");
        let b = backend("late", named).await;
        eps.update(&[("late-1".to_string(), b.addr)], Instant::now());
        let (status, _, body) = waiting.await.expect("join");
        assert_eq!((status, body.as_str()), (StatusCode::OK, "late"));
        assert_eq!(eps.queued(), 0);
        proxy.stop().await;
    })
    .await;
}

/// The wait in the queue is the client's latency, not the instance's: counting it at the
/// instance would make peak-EWMA shun the very instance that just started.
#[tokio::test]
async fn the_queue_wait_counts_at_the_service_not_at_the_instance() {
    within("queue latency", async {
        let eps = endpoints(&[]);
        let proxy = start_proxy(eps.clone(), config(Duration::from_secs(20))).await;
        let url = proxy.url("/");
        let waiting = tokio::spawn(async move { get(&client(), &url).await });
        until("the request to queue", || eps.queued() == 1).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        let b = backend("late", named).await;
        eps.update(&[("late-1".to_string(), b.addr)], Instant::now());
        let (status, _, _) = waiting.await.expect("join");
        assert_eq!(status, StatusCode::OK);
        let at_service = service(&eps)
            .latency
            .quantile(0.5)
            .expect("a service latency");
        let instance = eps.load().endpoints[0].snapshot(Instant::now());
        let at_instance = instance.latency.quantile(0.5).expect("an instance latency");
        assert!(at_service >= Duration::from_millis(350), "{at_service:?}");
        assert!(at_instance < Duration::from_millis(200), "{at_instance:?}");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn past_the_queue_wait_limit_the_answer_is_503_with_retry_after() {
    within("queue timeout", async {
        let eps = endpoints(&[]);
        let limit = Duration::from_millis(300);
        let proxy = start_proxy(eps.clone(), config(limit)).await;
        let started = Instant::now();
        let (status, headers, _) = get(&client(), &proxy.url("/")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers["retry-after"], "1");
        assert!(started.elapsed() >= limit, "it waited in the queue first");
        assert_eq!(service(&eps).responses[4], 1, "the 503 is counted");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn requests_are_counted_by_class_at_the_service_and_the_instance() {
    within("counts", async {
        let b = backend("ok", |_, req: Request<Incoming>| async move {
            let status = if req.uri().path() == "/missing" {
                404
            } else {
                200
            };
            let mut response = Response::new(full("x"));
            *response.status_mut() = StatusCode::from_u16(status).expect("status");
            response
        })
        .await;
        let eps = endpoints(&[b.addr]);
        let proxy = start_proxy(eps.clone(), ProxyConfig::default()).await;
        let c = client();
        for path in ["/", "/", "/", "/missing"] {
            get(&c, &proxy.url(path)).await;
        }
        let s = service(&eps);
        assert_eq!(s.responses, [0, 3, 0, 1, 0]);
        assert_eq!(s.latency.total(), 4);
        let instance = eps.load().endpoints[0].snapshot(Instant::now());
        assert_eq!(instance.responses, [0, 3, 0, 1, 0]);
        assert_eq!(instance.in_flight, 0);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn connect_errors_and_retries_are_counted() {
    within("errors", async {
        let b = backend("ok", named).await;
        let dead = dead_addr().await;
        let eps = Arc::new(ebb_router::Endpoints::new(
            ebb_router::BalanceAlgorithm::RoundRobin,
        ));
        eps.update(
            &[("a-dead".to_string(), dead), ("b-ok".to_string(), b.addr)],
            Instant::now(),
        );
        let proxy = start_proxy(eps.clone(), ProxyConfig::default()).await;
        let c = client();
        for _ in 0..4 {
            let (status, _, _) = get(&c, &proxy.url("/")).await;
            assert_eq!(status, StatusCode::OK, "the dead one is retried past");
        }
        let s = service(&eps);
        assert!(s.connect_errors >= 1, "{s:?}");
        assert_eq!(
            s.retries, s.connect_errors,
            "each connect error was retried"
        );
        assert_eq!(s.responses[1], 4);
        let dead_ep = &eps.load().endpoints[0];
        assert_eq!(dead_ep.addr, dead);
        assert_eq!(
            dead_ep.snapshot(Instant::now()).connect_errors,
            s.connect_errors
        );
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_request_stays_in_flight_until_its_streamed_body_ends() {
    within("streamed in flight", async {
        let sender: Arc<Mutex<Option<tokio::sync::mpsc::Sender<Bytes>>>> = Arc::default();
        let slot = sender.clone();
        let b = backend("stream", move |_, _req| {
            let slot = slot.clone();
            async move {
                let (tx, body) = channel_body();
                *slot.lock().expect("slot") = Some(tx);
                Response::new(body)
            }
        })
        .await;
        let eps = endpoints(&[b.addr]);
        let proxy = start_proxy(eps.clone(), ProxyConfig::default()).await;
        let req = Request::get(proxy.url("/")).body(empty()).expect("request");
        let response = client().request(req).await.expect("response head");
        assert_eq!(response.status(), StatusCode::OK);
        let ep = eps.load().endpoints[0].clone();
        assert_eq!(
            ep.load.in_flight(),
            1,
            "head received, body still streaming"
        );
        assert_eq!(service(&eps).in_flight, 1);
        let tx = sender
            .lock()
            .expect("slot")
            .take()
            .expect("backend got the request");
        tx.send(Bytes::from_static(b"chunk")).await.expect("send");
        drop(tx);
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(&body[..], b"chunk");
        until("the request to end", || ep.load.in_flight() == 0).await;
        until("the service request to end", || {
            service(&eps).in_flight == 0
        })
        .await;
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn concurrency_is_time_weighted_over_a_window() {
    within("concurrency", async {
        let b = backend("slow", |_, _req| async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Response::new(full("slow"))
        })
        .await;
        let eps = endpoints(&[b.addr]);
        let proxy = start_proxy(eps.clone(), ProxyConfig::default()).await;
        let before = service(&eps);
        let c = client();
        let url = proxy.url("/");
        // Two requests at once for ~200 ms, then nothing for as long.
        let (a, b2) = tokio::join!(get(&c, &url), get(&c, &url));
        assert_eq!((a.0, b2.0), (StatusCode::OK, StatusCode::OK));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let w = service(&eps).since(&before);
        assert_eq!(w.requests, 2);
        // 2 × ~0.2 s of requests over ~0.4 s or a little more: about one on average.
        assert!(
            w.concurrency > 0.6 && w.concurrency < 1.1,
            "{}",
            w.concurrency
        );
        let p50 = w.p(0.5).expect("latency");
        assert!(p50 >= Duration::from_millis(180), "{p50:?}");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_tcp_connection_waits_for_the_first_instance_and_is_counted() {
    within("tcp queue", async {
        let eps = endpoints(&[]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(ebb_router::tcp::serve(
            eps.clone(),
            listener,
            ebb_router::tcp::TcpConfig {
                queue_timeout: Duration::from_secs(20),
                ..Default::default()
            },
            async move {
                let _ = stopped.await;
            },
        ));
        let client = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .await
                .expect("write");
            let mut out = String::new();
            s.read_to_string(&mut out).await.expect("read");
            out
        });
        until("the connection to queue", || eps.queued() == 1).await;
        let b = backend("tcp-late", named).await;
        let up: SocketAddr = b.addr;
        eps.update(&[("late".to_string(), up)], Instant::now());
        let out = client.await.expect("join");
        assert!(
            out.starts_with("HTTP/1.1 200") && out.ends_with("tcp-late"),
            "{out}"
        );
        until("the connection to be counted", || {
            service(&eps).responses[1] == 1
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn an_http2_client_reading_slowly_is_fed_from_the_router_not_the_instance() {
    within("slow h2 reader", async {
        // 768 KiB: more than an HTTP/2 window of 64 KiB and hyper's send buffer hold, less
        // than what the router reads ahead per response.
        const LEN: usize = 768 * 1024;
        let b = backend("big", |_, _| async { Response::new(full(pattern(0, LEN))) }).await;
        let eps = endpoints(&[b.addr]);
        let proxy = start_proxy(eps.clone(), ProxyConfig::default()).await;
        // A client whose windows stay at the protocol's initial 64 KiB, and which reads
        // nothing of the body for now.
        let client = h2c_client_with_small_windows();
        let req = Request::get(proxy.url("/big"))
            .body(empty())
            .expect("request");
        let response = client.request(req).await.expect("response head");
        assert_eq!(response.status(), StatusCode::OK);
        let ep = eps.load().endpoints[0].clone();
        until("the instance to be done with the request", || {
            ep.load.in_flight() == 0 && service(&eps).in_flight == 0
        })
        .await;
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(body, pattern(0, LEN), "the whole body, in order");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn with_no_read_ahead_memory_left_an_http2_download_still_completes() {
    within("h2 download, no memory", async {
        const LEN: usize = 768 * 1024;
        let b = backend("big", |_, _| async { Response::new(full(pattern(0, LEN))) }).await;
        let eps = endpoints(&[b.addr]);
        let config = ProxyConfig {
            read_ahead: Arc::new(ebb_router::read_ahead::ReadAhead::with_limits(0, 0, None)),
            ..ProxyConfig::default()
        };
        let proxy = start_proxy(eps.clone(), config).await;
        let req = Request::get(proxy.url("/big"))
            .body(empty())
            .expect("request");
        let response = h2c_client().request(req).await.expect("response head");
        assert_eq!(response.status(), StatusCode::OK);
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(body, pattern(0, LEN), "frame by frame, in order");
        let ep = eps.load().endpoints[0].clone();
        until("the request to end", || ep.load.in_flight() == 0).await;
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn after_a_streamed_upload_a_slow_reader_is_fed_from_the_spool_not_the_instance() {
    within("streamed upload, slow reader", async {
        // 16 MiB: more than the kernel's socket buffers and the client's own buffer hold, so
        // most of it must wait in the router's memory and spool file.
        const LEN: usize = 16 << 20;
        let b = backend("upload", |_, req: Request<Incoming>| async move {
            let _ = http_body_util::BodyExt::collect(req.into_body()).await;
            Response::new(full(pattern(0, LEN)))
        })
        .await;
        let eps = endpoints(&[b.addr]);
        let spool = tempfile::tempdir().unwrap();
        let read_ahead = ebb_router::read_ahead::ReadAhead::with_spool(spool.path()).unwrap();
        let config = ProxyConfig {
            read_ahead: Arc::new(read_ahead),
            ..ProxyConfig::default()
        };
        let proxy = start_proxy(eps.clone(), config).await;
        // A client with a small receive window (set before connecting, when the window scale
        // is agreed), whose body is still arriving when its head goes: the streamed path.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut conn = socket.connect(proxy.addr).await.unwrap();
        conn.write_all(b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        conn.write_all(b"b\r\nsome upload\r\n0\r\n\r\n")
            .await
            .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0];
            conn.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 200"), "{head:?}");
        let ep = eps.load().endpoints[0].clone();
        until("the instance to be done with the request", || {
            ep.load.in_flight() == 0 && service(&eps).in_flight == 0
        })
        .await;
        let mut body = vec![0; LEN];
        conn.read_exact(&mut body).await.unwrap();
        assert!(body == pattern(0, LEN), "the whole body, in order");
        proxy.stop().await;
    })
    .await;
}
