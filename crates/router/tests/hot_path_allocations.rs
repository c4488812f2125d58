//! The HTTP/1.1 hot path allocates nothing per request in the steady state (issue 3: "the
//! per-request hot path takes no lock and allocates nothing beyond hyper's own"; HTTP/1.1 does
//! not go through hyper at all).
//!
//! A counting global allocator (`ebb_testkit::alloc`) tallies allocations per thread. The proxy runs on the router's
//! own runtime (`ebb_router::runtime::build`, one worker, as `bench/router.sh` runs it), and the
//! backend and the clients are plain blocking threads, so the worker thread's tally is the
//! proxy's alone. After a warm-up that grows every buffer and fills the upstream pool, a few
//! thousand more requests on the same connections must not add a single allocation on that
//! thread, save one per upstream connection opened (its event-loop registration), should the
//! measured run reach a concurrency on one endpoint that the warm-up did not.
//!
//! This file holds one test only: the allocator is process-wide, and a lone test keeps other
//! tests' runtimes off the count's threads.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use ebb_router::http::{Proxy, ProxyConfig, Stop};
use ebb_router::{BalanceAlgorithm, Endpoints};
use ebb_testkit::alloc::{allocations, Counting};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Client connections, each on its own thread, as keep-alive clients.
const CLIENTS: usize = 4;
/// Requests per client before counting: grows the buffers and fills the pool.
const WARM_UP: usize = 300;
/// Requests per client while counting.
const MEASURED: usize = 1_000;

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-type: text/plain\r\n\r\nok\n";

/// Where a head ends (just past its blank line), if it is all in `buf`.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// The `content-length` of a head (0 when absent), read without allocating.
fn content_length(head: &[u8]) -> usize {
    head.split(|&b| b == b'\n')
        .filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            let (name, value) = line.split_at(colon);
            name.eq_ignore_ascii_case(b"content-length").then(|| {
                std::str::from_utf8(&value[1..])
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0)
            })
        })
        .next()
        .unwrap_or(0)
}

/// Reads until `buf` (which may already hold some of it) holds one whole message: head and
/// `content-length` body. Returns the head's and the message's length, or None when the peer
/// closed first.
fn read_message(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(usize, usize)> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = head_end(buf) {
            let total = end + content_length(&buf[..end]);
            if buf.len() >= total {
                return Some((end, total));
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A blocking backend on a thread per connection, answering every request with a fixed 200;
/// counts the connections it accepts into `accepted`.
fn backend(accepted: &Arc<AtomicUsize>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind backend");
    let addr = listener.local_addr().expect("backend addr");
    let accepted = Arc::clone(accepted);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            accepted.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut buf = Vec::with_capacity(8192);
                while let Some((_, total)) = read_message(&mut stream, &mut buf) {
                    buf.drain(..total);
                    if stream.write_all(RESPONSE).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// One keep-alive client connection: `n` requests, in turn a GET, a POST whose small body comes
/// with its head, and a POST whose body is sent only after the proxy's `100 Continue` (the
/// streaming path); checks every answer is the backend's.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(proxy: SocketAddr) -> Client {
        let stream = TcpStream::connect(proxy).expect("connect to the proxy");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("read timeout");
        Client {
            stream,
            buf: Vec::with_capacity(8192),
        }
    }

    fn requests(&mut self, n: usize) {
        for i in 0..n {
            let request: &[u8] = match i % 3 {
                0 => b"GET /hot?path=1 HTTP/1.1\r\nhost: app\r\nuser-agent: alloc-test\r\n\r\n",
                1 => b"POST /hot HTTP/1.1\r\nhost: app\r\ncontent-length: 5\r\n\r\nhello",
                _ => {
                    self.streamed_head(i);
                    b"hello"
                }
            };
            self.stream.write_all(request).expect("send a request");
            let (head, total) = read_message(&mut self.stream, &mut self.buf)
                .unwrap_or_else(|| panic!("request {i}: the proxy closed"));
            assert!(
                self.buf.starts_with(b"HTTP/1.1 200 ") && &self.buf[head..total] == b"ok\n",
                "request {i}: not the backend's answer: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            assert_eq!(
                total,
                self.buf.len(),
                "request {i}: bytes past the response"
            );
            self.buf.clear();
        }
    }

    /// Sends the head of a POST whose body is not sent with it, and waits for the proxy's
    /// `100 Continue` (which it sends once the head is on its way to an endpoint): the body
    /// then streams up through the proxy's streaming path, not the whole-request one.
    fn streamed_head(&mut self, i: usize) {
        self.stream
            .write_all(b"POST /hot HTTP/1.1\r\nhost: app\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n")
            .expect("send a head");
        let (_, total) = read_message(&mut self.stream, &mut self.buf)
            .unwrap_or_else(|| panic!("request {i}: the proxy closed before 100 Continue"));
        assert!(
            self.buf.starts_with(b"HTTP/1.1 100 ") && total == self.buf.len(),
            "request {i}: expected a lone 100 Continue: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        self.buf.clear();
    }
}

/// [`CLIENTS`] connections, each on its own thread: [`WARM_UP`] requests, then a pause at
/// `counted` (while the test reads the count), then [`MEASURED`] more on the same connection.
/// Opening and closing connections allocates (a task, its buffers and timers, the event loop's
/// registration), so the same ones are kept, and returned open to be closed after the count.
fn clients(proxy: SocketAddr, counted: &Arc<Barrier>) -> Vec<std::thread::JoinHandle<Client>> {
    (0..CLIENTS)
        .map(|_| {
            let counted = Arc::clone(counted);
            std::thread::spawn(move || {
                let mut client = Client::connect(proxy);
                client.requests(WARM_UP);
                counted.wait(); // warmed up
                counted.wait(); // the count before is read
                client.requests(MEASURED);
                client
            })
        })
        .collect()
}

/// The allocations so far on the runtime's worker thread (a task spawned there reads them).
fn worker_allocations(runtime: &tokio::runtime::Runtime) -> u64 {
    runtime
        .block_on(runtime.spawn(async { allocations() }))
        .expect("read the count")
}

#[test]
fn the_http1_hot_path_allocates_nothing_per_request_in_the_steady_state() {
    for algorithm in [BalanceAlgorithm::PeakEwma, BalanceAlgorithm::RoundRobin] {
        let runtime = ebb_router::runtime::build(Some(1)).expect("router runtime");
        let accepted = Arc::new(AtomicUsize::new(0));
        let backends = [
            ("b0".to_owned(), backend(&accepted)),
            ("b1".to_owned(), backend(&accepted)),
        ];
        let endpoints = Arc::new(Endpoints::new(algorithm));
        endpoints.update(&backends, Instant::now());
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind proxy");
        let proxy_addr = listener.local_addr().expect("proxy addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let proxy = Proxy::new(Arc::clone(&endpoints), ProxyConfig::default());
        runtime.spawn(proxy.serve(listener, async move {
            let _ = stopped.await;
            Stop::Close
        }));

        let counted = Arc::new(Barrier::new(CLIENTS + 1));
        let running = clients(proxy_addr, &counted);
        counted.wait();
        let before = worker_allocations(&runtime);
        let connects_before = accepted.load(Ordering::SeqCst);
        counted.wait();
        let open: Vec<Client> = running
            .into_iter()
            .map(|client| client.join().expect("a client failed"))
            .collect();
        let after = worker_allocations(&runtime);
        let connects = accepted.load(Ordering::SeqCst) - connects_before;
        drop(open);

        // Every request went through the proxy's metrics as a 2xx (the clients checked the
        // answers themselves).
        let requests = (CLIENTS * MEASURED) as u64;
        let snapshot = endpoints.metrics.snapshot(Instant::now(), 0);
        let ok = (CLIENTS * (WARM_UP + MEASURED)) as u64;
        assert_eq!(snapshot.responses, [0, ok, 0, 0, 0], "{algorithm:?}");
        // The warm-up may not have filled the pool to the peak concurrency of the measured
        // run; a connection opened then registers with the event loop: one allocation, per
        // connection and not per request.
        assert!(
            after - before <= connects as u64,
            "{algorithm:?}: {} allocations on the router thread over {requests} requests \
             ({connects} new upstream connections)",
            after - before
        );
        let _ = stop.send(());
        runtime.shutdown_timeout(Duration::from_secs(5));
    }
}
