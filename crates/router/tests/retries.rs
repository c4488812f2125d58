//! Failures absorbed over real sockets: idempotent retries on resets and 502/503 within the
//! retry budget, and passive outlier ejection.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::*;
use ebb_router::http::{ProxyConfig, MAX_TOKENS, MIN_RETRIES_PER_SEC, RETRY_RATIO};
use hyper::{Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// A backend that accepts, reads a request head and drops the connection without answering.
/// Returns its address and the number of connections (= attempts) it received.
async fn resetting_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let attempts = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&attempts);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                // Bounded: a head larger than 64 KiB or a closed socket ends the read.
                while head.len() < 64 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                drop(stream);
            });
        }
    });
    (addr, attempts)
}

/// A backend answering 503 to every request; counts requests.
async fn unavailable_backend() -> (Backend, Arc<AtomicUsize>) {
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&requests);
    let b = backend("unavailable", move |_, _| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut response = Response::new(full("busy"));
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            response
        }
    })
    .await;
    (b, requests)
}

#[tokio::test]
async fn gets_are_retried_past_a_backend_that_resets() {
    within("reset retry", async {
        let (bad, attempts) = resetting_backend().await;
        let good = backend("good", named).await;
        let proxy = start_proxy(endpoints(&[bad, good.addr]), ProxyConfig::default()).await;
        let client = client();
        for i in 0..200 {
            let (status, _, body) = get(&client, &proxy.url("/")).await;
            assert_eq!((status, body.as_str()), (StatusCode::OK, "good"), "GET {i}");
        }
        assert!(
            attempts.load(Ordering::SeqCst) >= 1,
            "the resetting backend was tried"
        );
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn gets_are_retried_past_a_backend_that_answers_503() {
    within("503 retry", async {
        let (bad, requests) = unavailable_backend().await;
        let good = backend("good", named).await;
        let proxy = start_proxy(endpoints(&[bad.addr, good.addr]), ProxyConfig::default()).await;
        let client = client();
        for i in 0..200 {
            let (status, _, body) = get(&client, &proxy.url("/")).await;
            assert_eq!((status, body.as_str()), (StatusCode::OK, "good"), "GET {i}");
        }
        assert!(
            requests.load(Ordering::SeqCst) >= 1,
            "the 503 backend was tried"
        );
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_post_with_a_body_is_not_retried_after_a_reset() {
    within("post reset", async {
        let (bad, attempts) = resetting_backend().await;
        let good = backend("good", named).await;
        let proxy = start_proxy(endpoints(&[bad, good.addr]), ProxyConfig::default()).await;
        let client = client();
        let mut bad_gateways = 0;
        for _ in 0..4 {
            let req = Request::post(proxy.url("/"))
                .body(full("payload"))
                .expect("request");
            let response = client.request(req).await.expect("response");
            match response.status() {
                StatusCode::OK => {}
                StatusCode::BAD_GATEWAY => bad_gateways += 1,
                other => panic!("unexpected {other}"),
            }
        }
        // Round robin over two: two of the four POSTs went to the resetting backend, once each.
        assert_eq!(bad_gateways, 2);
        assert_eq!(attempts.load(Ordering::SeqCst), 2, "no POST was replayed");
        proxy.stop().await;
    })
    .await;
}

/// With every backend failing, retries stay within the budget: at most 20 % more attempts than
/// requests, plus the budget's starting balance and its minimum rate over the test's duration.
#[tokio::test]
async fn retries_stay_within_the_budget_when_everything_fails() {
    within("budget", async {
        let (a, a_attempts) = resetting_backend().await;
        let (b, b_attempts) = resetting_backend().await;
        let proxy = start_proxy(endpoints(&[a, b]), ProxyConfig::default()).await;
        let client = client();
        let started = Instant::now();
        const REQUESTS: usize = 300;
        for i in 0..REQUESTS {
            let (status, _, _) = get(&client, &proxy.url("/")).await;
            assert_eq!(status, StatusCode::BAD_GATEWAY, "GET {i}");
        }
        let seconds = started.elapsed().as_secs_f64();
        let attempts = a_attempts.load(Ordering::SeqCst) + b_attempts.load(Ordering::SeqCst);
        let bound = REQUESTS as f64 * (1.0 + RETRY_RATIO)
            + MAX_TOKENS.max(MIN_RETRIES_PER_SEC) as f64
            + MIN_RETRIES_PER_SEC as f64 * (seconds + 1.0);
        assert!(attempts > REQUESTS, "some retries happened: {attempts}");
        assert!(
            attempts as f64 <= bound,
            "{attempts} attempts for {REQUESTS} requests in {seconds:.2} s (bound {bound:.0})"
        );
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_dead_endpoint_among_three_is_ejected_after_five_failures() {
    within("ejection", async {
        let good1 = backend("one", named).await;
        let good2 = backend("two", named).await;
        let dead = dead_addr().await;
        let set = endpoints(&[dead, good1.addr, good2.addr]);
        let proxy = start_proxy(Arc::clone(&set), ProxyConfig::default()).await;
        let dead_endpoint = set
            .load()
            .endpoints
            .iter()
            .find(|e| e.addr == dead)
            .cloned()
            .expect("dead endpoint in the set");
        let client = client();
        // Round robin over three: the dead endpoint is first in every third request.
        let mut requests = 0;
        while !dead_endpoint.is_ejected(Instant::now()) {
            assert!(requests < 30, "not ejected after {requests} requests");
            let (status, _, _) = get(&client, &proxy.url("/")).await;
            assert_eq!(status, StatusCode::OK);
            requests += 1;
        }
        assert_eq!(dead_endpoint.outlier.times_ejected(), 1);
        // Ejected: it gets no attempts, so its failure streak stays where the ejection left it.
        for _ in 0..60 {
            let (status, _, _) = get(&client, &proxy.url("/")).await;
            assert_eq!(status, StatusCode::OK);
        }
        assert_eq!(dead_endpoint.outlier.consecutive_failures(), 0);
        assert!(dead_endpoint.is_ejected(Instant::now()));
        // Only one of three may be ejected (10 %, at least one).
        assert!(!set
            .load()
            .endpoints
            .iter()
            .any(|e| e.addr != dead && e.is_ejected(Instant::now())));
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_ejected_resetting_backend_receives_no_more_connections() {
    within("ejection stops traffic", async {
        let (bad, attempts) = resetting_backend().await;
        let good1 = backend("one", named).await;
        let good2 = backend("two", named).await;
        let proxy = start_proxy(
            endpoints(&[bad, good1.addr, good2.addr]),
            ProxyConfig::default(),
        )
        .await;
        let client = client();
        for _ in 0..30 {
            let (status, _, _) = get(&client, &proxy.url("/")).await;
            assert_eq!(status, StatusCode::OK);
        }
        let after_ejection = attempts.load(Ordering::SeqCst);
        assert_eq!(after_ejection, 5, "ejected after exactly five failures");
        for _ in 0..60 {
            let (status, _, _) = get(&client, &proxy.url("/")).await;
            assert_eq!(status, StatusCode::OK);
        }
        assert_eq!(attempts.load(Ordering::SeqCst), after_ejection);
        proxy.stop().await;
    })
    .await;
}

/// Sanity for the constants the bound above relies on.
#[test]
fn the_budget_constants_are_the_documented_defaults() {
    assert_eq!(RETRY_RATIO, 0.2);
    assert_eq!(MIN_RETRIES_PER_SEC, 10);
}
