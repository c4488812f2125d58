//! The HTTP proxy over real sockets: distribution, streaming, headers, pooling, retries and
//! the error statuses a client can act on.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::*;
use ebb_router::http::ProxyConfig;
use http_body_util::BodyExt;
use hyper::body::{Body, Bytes};
use hyper::{Request, Response, StatusCode};
use std::collections::HashMap;
use tokio::sync::oneshot;

#[tokio::test]
async fn requests_round_trip_and_spread_over_both_backends() {
    within("spread", async {
        let a = backend("alpha", named).await;
        let b = backend("beta", named).await;
        let proxy = start_proxy(endpoints(&[a.addr, b.addr]), ProxyConfig::default()).await;
        let client = client();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for _ in 0..20 {
            let (status, _, body) = get(&client, &proxy.url("/")).await;
            assert_eq!(status, StatusCode::OK);
            *seen.entry(body).or_default() += 1;
        }
        assert_eq!(seen.len(), 2, "both backends answer: {seen:?}");
        assert!(
            seen.values().all(|&n| n >= 5),
            "spread is roughly even: {seen:?}"
        );
        proxy.stop().await;
    })
    .await;
}

/// The upload goes in lock-step: each 64 KiB chunk is sent only after the previous one came
/// back through the echo, which can only happen if the proxy streams both ways.
#[tokio::test]
async fn a_one_mib_upload_streams_through_both_ways_intact() {
    within("upload", async {
        let b = backend("echo", echo).await;
        let proxy = start_proxy(endpoints(&[b.addr]), ProxyConfig::default()).await;
        let (tx, body) = channel_body();
        let req = Request::post(proxy.url("/upload"))
            .body(body)
            .expect("request");
        let client = client();
        const CHUNK: usize = 64 * 1024;
        tx.send(pattern(0, CHUNK)).await.expect("first chunk");
        let response = client
            .request(req)
            .await
            .expect("response head before the upload ends");
        let mut body = response.into_body();
        let mut received = Vec::with_capacity(1 << 20);
        for i in 1..=16 {
            while received.len() < i * CHUNK {
                let frame = body
                    .frame()
                    .await
                    .expect("more echoed data")
                    .expect("frame");
                received.extend_from_slice(&frame.into_data().expect("data frame"));
            }
            if i < 16 {
                tx.send(pattern(i * CHUNK, CHUNK))
                    .await
                    .expect("next chunk");
            }
        }
        drop(tx);
        assert!(
            body.frame().await.is_none(),
            "echo ends when the upload ends"
        );
        assert_eq!(Bytes::from(received), pattern(0, 16 * CHUNK));
        proxy.stop().await;
    })
    .await;
}

/// The backend sends the first half, then waits until the client has it: a proxy that
/// buffered whole responses would deadlock here (and hit the test deadline).
#[tokio::test]
async fn a_streaming_download_passes_before_it_is_complete() {
    within("download", async {
        const HALF: usize = 512 * 1024;
        let (go_tx, go_rx) = oneshot::channel::<()>();
        let go_rx = std::sync::Arc::new(tokio::sync::Mutex::new(Some(go_rx)));
        let b = backend("download", move |_, _| {
            let go_rx = go_rx.clone();
            async move {
                let (tx, body) = channel_body();
                tokio::spawn(async move {
                    let _ = tx.send(pattern(0, HALF)).await;
                    if let Some(go) = go_rx.lock().await.take() {
                        let _ = go.await;
                    }
                    let _ = tx.send(pattern(HALF, HALF)).await;
                });
                Response::new(body)
            }
        })
        .await;
        let proxy = start_proxy(endpoints(&[b.addr]), ProxyConfig::default()).await;
        let req = Request::get(proxy.url("/big"))
            .body(empty())
            .expect("request");
        let mut body = client().request(req).await.expect("response").into_body();
        let mut received = Vec::new();
        while received.len() < HALF {
            let frame = body.frame().await.expect("first half").expect("frame");
            received.extend_from_slice(&frame.into_data().expect("data"));
        }
        go_tx.send(()).expect("backend waits");
        let rest = body.collect().await.expect("rest").to_bytes();
        received.extend_from_slice(&rest);
        assert_eq!(Bytes::from(received), pattern(0, 2 * HALF));
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn forwarding_headers_are_added_and_hop_by_hop_dropped() {
    within("headers", async {
        let b = backend("named", named).await;
        let proxy = start_proxy(endpoints(&[b.addr]), ProxyConfig::default()).await;
        let client = client();
        let req = Request::get(proxy.url("/"))
            .header("x-forwarded-for", "203.0.113.9")
            .header("te", "trailers")
            .body(empty())
            .expect("request");
        let response = client.request(req).await.expect("response");
        let headers = response.headers();
        assert_eq!(headers["echo-x-forwarded-for"], "203.0.113.9, 127.0.0.1");
        assert_eq!(headers["echo-x-forwarded-proto"], "http");
        let id = headers["echo-x-request-id"].to_str().expect("ascii");
        assert_eq!(id.len(), 32, "a 128-bit hex id: {id}");
        assert!(!headers.contains_key("echo-te"), "TE is hop-by-hop");

        let req = Request::get(proxy.url("/"))
            .header("x-request-id", "given-id")
            .body(empty())
            .expect("request");
        let response = client.request(req).await.expect("response");
        assert_eq!(response.headers()["echo-x-request-id"], "given-id");
        assert_eq!(response.headers()["echo-x-forwarded-for"], "127.0.0.1");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_reused() {
    within("keep-alive", async {
        let b = backend("named", named).await;
        let proxy = start_proxy(endpoints(&[b.addr]), ProxyConfig::default()).await;
        let client = client();
        for _ in 0..50 {
            let (status, _, _) = get(&client, &proxy.url("/")).await;
            assert_eq!(status, StatusCode::OK);
        }
        assert!(
            b.accepted() <= 3,
            "50 sequential requests used {} upstream connections",
            b.accepted()
        );
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_dead_endpoint_costs_no_failed_request() {
    within("dead endpoint", async {
        let live = backend("live", named).await;
        let proxy = start_proxy(
            endpoints(&[dead_addr().await, live.addr]),
            ProxyConfig::default(),
        )
        .await;
        let client = client();
        for i in 0..100 {
            let (status, _, body) = get(&client, &proxy.url("/")).await;
            assert_eq!(
                (status, body.as_str()),
                (StatusCode::OK, "live"),
                "request {i}"
            );
        }
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn all_endpoints_dead_is_a_502() {
    within("all dead", async {
        let proxy = start_proxy(
            endpoints(&[dead_addr().await, dead_addr().await]),
            ProxyConfig::default(),
        )
        .await;
        let (status, _, body) = get(&client(), &proxy.url("/")).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_post_to_a_dead_endpoint_is_not_retried_but_answered_502() {
    within("post dead", async {
        let proxy = start_proxy(endpoints(&[dead_addr().await]), ProxyConfig::default()).await;
        let req = Request::post(proxy.url("/"))
            .body(full("payload"))
            .expect("request");
        let response = client().request(req).await.expect("response");
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_head_request_has_no_body_and_keeps_its_length() {
    within("head", async {
        let b = backend("named", named).await;
        let proxy = start_proxy(endpoints(&[b.addr]), ProxyConfig::default()).await;
        let req = Request::head(proxy.url("/"))
            .body(empty())
            .expect("request");
        let response = client().request(req).await.expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.body().is_end_stream());
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn h2c_clients_are_served_over_http1_upstreams() {
    within("h2c", async {
        let b = backend("named", named).await;
        let proxy = start_proxy(endpoints(&[b.addr]), ProxyConfig::default()).await;
        let client = h2c_client();
        let req = Request::get(proxy.url("/")).body(empty()).expect("request");
        let response = client.request(req).await.expect("response");
        assert_eq!(response.version(), hyper::Version::HTTP_2);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes(),
            "named"
        );
        proxy.stop().await;
    })
    .await;
}

/// Shutdown stops accepting but lets a request already in flight finish.
#[tokio::test]
async fn shutdown_lets_an_in_flight_request_finish() {
    within("graceful", async {
        let (arrived_tx, arrived_rx) = tokio::sync::mpsc::channel::<()>(1);
        let (release_tx, release_rx) = oneshot::channel::<()>();
        let release_rx = std::sync::Arc::new(tokio::sync::Mutex::new(Some(release_rx)));
        let b = backend("held", move |name, _| {
            let (arrived_tx, release_rx) = (arrived_tx.clone(), release_rx.clone());
            async move {
                let _ = arrived_tx.send(()).await;
                if let Some(release) = release_rx.lock().await.take() {
                    let _ = release.await;
                }
                Response::new(full(name))
            }
        })
        .await;
        let proxy = start_proxy(endpoints(&[b.addr]), ProxyConfig::default()).await;
        let client = client();
        let url = proxy.url("/");
        let request = tokio::spawn(async move { get(&client, &url).await });
        let mut arrived_rx = arrived_rx;
        arrived_rx
            .recv()
            .await
            .expect("request reached the backend");
        let stopping = tokio::spawn(proxy.stop());
        release_tx.send(()).expect("backend waits");
        let (status, _, body) = request.await.expect("request task");
        assert_eq!((status, body.as_str()), (StatusCode::OK, "held"));
        stopping.await.expect("serve returned");
    })
    .await;
}
