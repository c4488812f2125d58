//! The HTTP/1.1 path byte by byte: raw TCP clients write exact requests and read raw responses;
//! raw TCP backends record every byte the proxy sends them and answer with canned bytes
//! (misbehaving on purpose where a test needs it). Covers pipelining, HTTP/1.0, request bodies,
//! `Expect: 100-continue`, request smuggling shapes, the head rewrite, response framing, stale
//! pooled connections, the header timeout and shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::*;
use ebb_router::http::ProxyConfig;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Longest wait for any one read on a raw client: a hang fails fast with what was received.
const IO_LIMIT: Duration = Duration::from_secs(10);
/// Time for bytes that should not arrive (at a backend) to have arrived if they were sent.
const GRACE: Duration = Duration::from_millis(150);
/// A pause between client writes, long enough for the proxy to read them separately.
const PAUSE: Duration = Duration::from_millis(30);

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

fn short_header_timeout() -> ProxyConfig {
    ProxyConfig {
        header_read_timeout: Duration::from_millis(300),
        ..ProxyConfig::default()
    }
}

// === raw client ===

/// A client connection that writes exact bytes and parses responses itself.
struct Wire {
    stream: TcpStream,
    /// Received and not yet parsed.
    buf: Vec<u8>,
    eof: bool,
}

#[derive(Debug)]
struct Resp {
    status: u16,
    /// The head exactly as received, blank line included.
    head: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.all(name).first().copied()
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Header lines of a head (after its first line) as (name, value) pairs.
fn header_lines(head: &str) -> Vec<(String, String)> {
    head.split("\r\n")
        .skip(1)
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            (name.to_owned(), value.trim().to_owned())
        })
        .collect()
}

impl Wire {
    async fn connect(addr: SocketAddr) -> Wire {
        let stream = TcpStream::connect(addr).await.expect("connect to proxy");
        let _ = stream.set_nodelay(true);
        Wire {
            stream,
            buf: Vec::new(),
            eof: false,
        }
    }

    async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream
            .write_all(bytes.as_ref())
            .await
            .expect("write to proxy");
    }

    /// One read into the buffer; false at the end of the stream (or a reset).
    async fn fill(&mut self) -> bool {
        if self.eof {
            return false;
        }
        let mut chunk = [0u8; 16 * 1024];
        let read = tokio::time::timeout(IO_LIMIT, self.stream.read(&mut chunk)).await;
        match read {
            Err(_) => panic!(
                "no bytes from the proxy within {IO_LIMIT:?}; have {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => {
                self.eof = true;
                false
            }
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    fn closed_early(&self, wanted: &str) -> ! {
        panic!(
            "connection closed while waiting for {wanted}; have {:?}",
            String::from_utf8_lossy(&self.buf)
        )
    }

    async fn exact(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            if !self.fill().await {
                self.closed_early("body bytes");
            }
        }
        self.buf.drain(..n).collect()
    }

    /// A line without its CRLF.
    async fn line(&mut self) -> Vec<u8> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n") {
                let line = self.buf[..end].to_vec();
                self.buf.drain(..end + 2);
                return line;
            }
            if !self.fill().await {
                self.closed_early("a line");
            }
        }
    }

    async fn head(&mut self) -> String {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..end + 4).collect();
                return String::from_utf8(head).expect("response head is text");
            }
            if !self.fill().await {
                self.closed_early("a response head");
            }
        }
    }

    /// The next response (a 1xx included), its body framed as the head says.
    async fn response(&mut self) -> Resp {
        self.read_response(false).await
    }

    /// The next response to a HEAD request: never a body.
    async fn response_to_head(&mut self) -> Resp {
        self.read_response(true).await
    }

    async fn read_response(&mut self, to_head: bool) -> Resp {
        let head = self.head().await;
        assert!(head.starts_with("HTTP/1.1 "), "not a response: {head:?}");
        let status: u16 = head[9..12].parse().expect("status code");
        let headers = header_lines(&head);
        let mut resp = Resp {
            status,
            head,
            headers,
            body: Vec::new(),
        };
        if to_head || (100..200).contains(&status) || status == 204 || status == 304 {
            return resp;
        }
        if resp
            .header("transfer-encoding")
            .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let line = self.line().await;
                let line = String::from_utf8(line).expect("chunk size line");
                let size = line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size, 16).expect("chunk size");
                if size == 0 {
                    while !self.line().await.is_empty() {} // trailers
                    break;
                }
                let data = self.exact(size).await;
                resp.body.extend_from_slice(&data);
                assert_eq!(self.exact(2).await, b"\r\n", "chunk data ends with CRLF");
            }
        } else if let Some(length) = resp.header("content-length") {
            let length: usize = length.parse().expect("content-length");
            resp.body = self.exact(length).await;
        } else {
            while self.fill().await {}
            resp.body = std::mem::take(&mut self.buf);
        }
        resp
    }

    /// Reads until the proxy closes the connection (within `limit`) and returns what came.
    async fn until_closed(&mut self, limit: Duration) -> Vec<u8> {
        let deadline = Instant::now() + limit;
        while !self.eof {
            let mut chunk = [0u8; 16 * 1024];
            match tokio::time::timeout_at(deadline.into(), self.stream.read(&mut chunk)).await {
                Err(_) => panic!(
                    "connection still open after {limit:?}; received {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
                Ok(Ok(0)) | Ok(Err(_)) => self.eof = true,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
        std::mem::take(&mut self.buf)
    }
}

/// Sends `request` on a new connection and reads until the proxy closes it.
async fn exchange_until_closed(proxy: SocketAddr, request: &[u8]) -> String {
    let mut wire = Wire::connect(proxy).await;
    wire.send(request).await;
    String::from_utf8_lossy(&wire.until_closed(IO_LIMIT).await).into_owned()
}

// === raw backend ===

/// One step of a raw backend's answer to a request.
enum Act {
    Send(Vec<u8>),
    Wait(Duration),
    /// Close the connection (without reading anything more).
    Close,
}

fn send(bytes: impl AsRef<[u8]>) -> Act {
    Act::Send(bytes.as_ref().to_vec())
}

/// What a raw backend does for the `nth` request (from 0) on a connection, given its bytes.
type Script = Arc<dyn Fn(usize, &[u8]) -> Vec<Act> + Send + Sync>;

/// A backend on a bare socket: records every byte it receives, cuts the stream into requests
/// (Content-Length or chunked framing), and plays its script for each. After the script it waits
/// for the next request on the connection, unless the script closed it.
struct Raw {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    ended: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<u8>>>,
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Raw {
    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Every byte received, over all connections.
    fn received(&self) -> Vec<u8> {
        self.received.lock().unwrap().clone()
    }

    fn requests(&self) -> Vec<Vec<u8>> {
        self.requests.lock().unwrap().clone()
    }

    /// The `i`th complete request received: request line, headers, body.
    fn request(&self, i: usize) -> Recorded {
        let requests = self.requests();
        let raw = requests
            .get(i)
            .unwrap_or_else(|| panic!("request {i} not received; got {}", requests.len()));
        Recorded::parse(raw)
    }

    /// Waits until `n` connections have ended at the backend.
    async fn wait_ended(&self, n: usize) {
        while self.ended.load(Ordering::SeqCst) < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A request as a raw backend received it.
#[derive(Debug)]
struct Recorded {
    line: String,
    head: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Recorded {
    fn parse(raw: &[u8]) -> Recorded {
        let end = find(raw, b"\r\n\r\n").expect("complete head") + 4;
        let head = String::from_utf8(raw[..end].to_vec()).expect("head is text");
        Recorded {
            line: head.split("\r\n").next().unwrap_or("").to_owned(),
            headers: header_lines(&head),
            head,
            body: raw[end..].to_vec(),
        }
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.all(name).first().copied()
    }

    fn has(&self, name: &str) -> bool {
        !self.all(name).is_empty()
    }
}

/// Where the request at the start of `buf` ends, once all of it is there.
fn request_len(buf: &[u8]) -> Option<usize> {
    let head_end = find(buf, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let headers = header_lines(&head);
    let value = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    if value("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
        let mut pos = head_end;
        loop {
            let line_end = pos + find(&buf[pos..], b"\r\n")?;
            let line = std::str::from_utf8(&buf[pos..line_end]).ok()?;
            let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
            pos = line_end + 2;
            if size == 0 {
                let rest = &buf[pos..];
                if rest.starts_with(b"\r\n") {
                    return Some(pos + 2);
                }
                return find(rest, b"\r\n\r\n").map(|i| pos + i + 4);
            }
            pos += size + 2;
            if pos > buf.len() {
                return None;
            }
        }
    }
    let length: usize = value("content-length").map_or(0, |v| v.parse().unwrap_or(0));
    (buf.len() >= head_end + length).then_some(head_end + length)
}

async fn raw_backend(script: impl Fn(usize, &[u8]) -> Vec<Act> + Send + Sync + 'static) -> Raw {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind raw backend");
    let raw = Raw {
        addr: listener.local_addr().expect("raw backend addr"),
        accepted: Arc::default(),
        ended: Arc::default(),
        received: Arc::default(),
        requests: Arc::default(),
    };
    let script: Script = Arc::new(script);
    let (accepted, ended, received, requests) = (
        raw.accepted.clone(),
        raw.ended.clone(),
        raw.received.clone(),
        raw.requests.clone(),
    );
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            let script = script.clone();
            let (ended, received, requests) = (ended.clone(), received.clone(), requests.clone());
            tokio::spawn(async move {
                serve_raw(stream, script, received, requests).await;
                ended.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    raw
}

async fn serve_raw(
    mut stream: TcpStream,
    script: Script,
    received: Arc<Mutex<Vec<u8>>>,
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
) {
    let mut buf = Vec::new();
    let mut nth = 0;
    loop {
        let request = loop {
            if let Some(len) = request_len(&buf) {
                break buf.drain(..len).collect::<Vec<u8>>();
            }
            let mut chunk = [0u8; 16 * 1024];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    received.lock().unwrap().extend_from_slice(&chunk[..n]);
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
        };
        requests.lock().unwrap().push(request.clone());
        for act in script(nth, &request) {
            match act {
                Act::Send(bytes) => {
                    if stream.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                Act::Wait(pause) => tokio::time::sleep(pause).await,
                Act::Close => return,
            }
        }
        nth += 1;
    }
}

/// A raw backend that answers every request with `response` and keeps the connection.
async fn canned(response: &'static [u8]) -> Raw {
    raw_backend(move |_, _| vec![send(response)]).await
}

/// A hyper backend's answer: the method, path and body of the request.
async fn describe(_name: &'static str, req: Request<Incoming>) -> Response<TestBody> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.expect("request body").to_bytes();
    Response::new(full(format!(
        "{} {} {}",
        parts.method,
        parts.uri.path(),
        String::from_utf8_lossy(&body)
    )))
}

// === 1. pipelining ===

#[tokio::test]
async fn pipelined_requests_in_one_write_get_their_responses_in_order() {
    within("pipelining", async {
        let b = backend("describe", describe).await;
        let proxy = start_proxy(endpoints(&[b.addr]), ProxyConfig::default()).await;
        let mut wire = Wire::connect(proxy.addr).await;
        wire.send(
            "GET /one HTTP/1.1\r\nHost: x\r\n\r\n\
             POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\
             GET /three HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await;
        for expected in ["GET /one ", "POST /two abc", "GET /three "] {
            let resp = wire.response().await;
            assert_eq!(resp.status, 200, "{resp:?}");
            assert_eq!(resp.text(), expected);
        }
        // Still open and in step.
        wire.send("GET /four HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(wire.response().await.text(), "GET /four ");
        proxy.stop().await;
    })
    .await;
}

// === 2. HTTP/1.0 clients ===

#[tokio::test]
async fn an_http10_request_without_keep_alive_is_answered_then_closed() {
    within("http/1.0 close", async {
        let raw = canned(OK).await;
        let proxy = start_proxy(endpoints(&[raw.addr]), ProxyConfig::default()).await;
        let mut wire = Wire::connect(proxy.addr).await;
        wire.send("GET /ten HTTP/1.0\r\nHost: x\r\n\r\n").await;
        let resp = wire.response().await;
        assert_eq!((resp.status, resp.text().as_str()), (200, "ok"));
        assert_eq!(resp.header("connection"), Some("close"), "{}", resp.head);
        assert_eq!(wire.until_closed(IO_LIMIT).await, b"");
        let request = raw.request(0);
        assert_eq!(request.line, "GET /ten HTTP/1.0");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_http10_request_with_keep_alive_keeps_the_connection() {
    within("http/1.0 keep-alive", async {
        let raw = canned(OK).await;
        let proxy = start_proxy(endpoints(&[raw.addr]), ProxyConfig::default()).await;
        let mut wire = Wire::connect(proxy.addr).await;
        // No Host: allowed in HTTP/1.0.
        wire.send("GET /ten HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .await;
        let resp = wire.response().await;
        assert_eq!((resp.status, resp.text().as_str()), (200, "ok"));
        assert!(
            resp.header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("keep-alive")),
            "{}",
            resp.head
        );
        wire.send("GET /again HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .await;
        let resp = wire.response().await;
        assert_eq!((resp.status, resp.text().as_str()), (200, "ok"));
        // The last one without keep-alive: closed after it.
        wire.send("GET /last HTTP/1.0\r\n\r\n").await;
        let resp = wire.response().await;
        assert_eq!(resp.header("connection"), Some("close"), "{}", resp.head);
        assert_eq!(wire.until_closed(IO_LIMIT).await, b"");
        assert_eq!(raw.request(0).line, "GET /ten HTTP/1.0");
        assert_eq!(raw.request(1).line, "GET /again HTTP/1.0");
        assert_eq!(raw.request(2).line, "GET /last HTTP/1.0");
        proxy.stop().await;
    })
    .await;
}

// === 3. request bodies in pieces ===

#[tokio::test]
async fn a_chunked_body_in_several_writes_reaches_the_backend_intact() {
    within("chunked upload", async {
        let b = backend("echo", echo).await;
        let proxy = start_proxy(endpoints(&[b.addr]), ProxyConfig::default()).await;
        let mut wire = Wire::connect(proxy.addr).await;
        let big = pattern(0, 40_000);
        wire.send("POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await;
        tokio::time::sleep(PAUSE).await;
        wire.send("5\r\nhello\r\n").await;
        tokio::time::sleep(PAUSE).await;
        wire.send("1;ext=1\r\n \r\n").await;
        tokio::time::sleep(PAUSE).await;
        // A chunk cut in three writes, across its size line and its data.
        wire.send(format!("{:x}", big.len())).await;
        tokio::time::sleep(PAUSE).await;
        let mut piece = b"\r\n".to_vec();
        piece.extend_from_slice(&big[..15_000]);
        wire.send(&piece).await;
        tokio::time::sleep(PAUSE).await;
        let mut piece = big[15_000..].to_vec();
        piece.extend_from_slice(b"\r\n0\r\n\r\n");
        wire.send(&piece).await;
        let resp = wire.response().await;
        assert_eq!(resp.status, 200, "{}", resp.head);
        let mut expected = b"hello ".to_vec();
        expected.extend_from_slice(&big);
        assert_eq!(resp.body.len(), expected.len());
        assert!(resp.body == expected, "the echoed body differs");
        // The body ended where the proxy thought it did: the next request is in step.
        wire.send("POST /next HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nnext")
            .await;
        let resp = wire.response().await;
        assert_eq!((resp.status, resp.text().as_str()), (200, "next"));
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_content_length_body_in_several_writes_reaches_the_backend_intact() {
    within("content-length upload", async {
        let b = backend("echo", echo).await;
        let proxy = start_proxy(endpoints(&[b.addr]), ProxyConfig::default()).await;
        let mut wire = Wire::connect(proxy.addr).await;
        wire.send("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhel")
            .await;
        tokio::time::sleep(PAUSE).await;
        wire.send("lo w").await;
        tokio::time::sleep(PAUSE).await;
        // The body's end and the next request in one write.
        wire.send("orldGET /after HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let resp = wire.response().await;
        assert_eq!((resp.status, resp.text().as_str()), (200, "hello world"));
        let resp = wire.response().await;
        assert_eq!((resp.status, resp.text().as_str()), (200, ""));
        proxy.stop().await;
    })
    .await;
}

// === 4. Expect: 100-continue ===

#[tokio::test]
async fn expect_100_continue_is_answered_by_the_proxy_and_not_forwarded() {
    within("100-continue", async {
        let raw =
            raw_backend(|_, _| vec![send("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ngot")]).await;
        let proxy = start_proxy(endpoints(&[raw.addr]), ProxyConfig::default()).await;
        let mut wire = Wire::connect(proxy.addr).await;
        wire.send(
            "POST /form HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
        )
        .await;
        // The body is not sent until the 100 arrives.
        let interim = wire.response().await;
        assert_eq!(interim.head, "HTTP/1.1 100 Continue\r\n\r\n");
        wire.send("hello").await;
        let resp = wire.response().await;
        assert_eq!((resp.status, resp.text().as_str()), (200, "got"));
        let request = raw.request(0);
        assert_eq!(request.line, "POST /form HTTP/1.1");
        assert!(!request.has("expect"), "{}", request.head);
        assert_eq!(request.header("content-length"), Some("5"));
        assert_eq!(request.body, b"hello");
        proxy.stop().await;
    })
    .await;
}

// === 5. smuggling shapes and other refused requests ===

/// Sends `request` to a proxy in front of a recording backend; returns what the client got
/// (until the proxy closed the connection) and the backend.
async fn refused(request: &str) -> (String, Raw) {
    let raw = canned(OK).await;
    let proxy = start_proxy(endpoints(&[raw.addr]), ProxyConfig::default()).await;
    let got = exchange_until_closed(proxy.addr, request.as_bytes()).await;
    tokio::time::sleep(GRACE).await;
    proxy.stop().await;
    (got, raw)
}

fn assert_refused(got: &str, raw: &Raw, status_line: &str) {
    assert!(got.starts_with(status_line), "got: {got:?}");
    assert!(
        got.to_ascii_lowercase().contains("connection: close"),
        "got: {got:?}"
    );
    assert_eq!(raw.accepted(), 0, "the backend was connected to");
    assert!(
        raw.received().is_empty(),
        "backend got {:?}",
        String::from_utf8_lossy(&raw.received())
    );
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_a_400_and_nothing_is_forwarded() {
    within("CL+TE", async {
        let (got, raw) = refused(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n\
             0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await;
        assert_refused(&got, &raw, "HTTP/1.1 400 ");
        assert!(!got.contains("HTTP/1.1 200"), "got: {got:?}");
    })
    .await;
}

#[tokio::test]
async fn transfer_encoding_before_content_length_is_a_400_too() {
    within("TE+CL", async {
        let (got, raw) = refused(
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n\
             5c\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n0\r\n\r\n",
        )
        .await;
        assert_refused(&got, &raw, "HTTP/1.1 400 ");
    })
    .await;
}

#[tokio::test]
async fn differing_content_lengths_are_a_400() {
    within("CL CL", async {
        let (got, raw) = refused(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
        )
        .await;
        assert_refused(&got, &raw, "HTTP/1.1 400 ");
    })
    .await;
}

#[tokio::test]
async fn chunked_in_an_http10_request_is_a_400() {
    within("1.0 chunked", async {
        let (got, raw) = refused(
            "POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        )
        .await;
        assert_refused(&got, &raw, "HTTP/1.1 400 ");
    })
    .await;
}

#[tokio::test]
async fn a_transfer_coding_other_than_chunked_is_a_501() {
    within("gzip", async {
        let (got, raw) =
            refused("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nxxxx").await;
        assert_refused(&got, &raw, "HTTP/1.1 501 ");
    })
    .await;
}

#[tokio::test]
async fn whitespace_before_a_header_colon_is_a_400() {
    within("TE space colon", async {
        let (got, raw) =
            refused("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n")
                .await;
        assert_refused(&got, &raw, "HTTP/1.1 400 ");
    })
    .await;
}

#[tokio::test]
async fn a_malformed_chunk_size_with_the_head_is_a_400_and_nothing_is_forwarded() {
    within("bad chunk in first read", async {
        let (got, raw) = refused(
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
        )
        .await;
        assert_refused(&got, &raw, "HTTP/1.1 400 ");
    })
    .await;
}

#[tokio::test]
async fn a_malformed_chunk_size_mid_body_closes_and_only_the_valid_part_was_forwarded() {
    within("bad chunk mid-stream", async {
        let raw = canned(OK).await;
        let proxy = start_proxy(endpoints(&[raw.addr]), ProxyConfig::default()).await;
        let mut wire = Wire::connect(proxy.addr).await;
        wire.send("POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await;
        tokio::time::sleep(PAUSE).await;
        wire.send("5\r\nhello\r\n").await;
        tokio::time::sleep(PAUSE).await;
        wire.send("zz\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let got = String::from_utf8_lossy(&wire.until_closed(IO_LIMIT).await).into_owned();
        assert!(
            got.is_empty() || got.starts_with("HTTP/1.1 400 "),
            "got: {got:?}"
        );
        assert!(!got.contains("HTTP/1.1 200"), "got: {got:?}");
        raw.wait_ended(1).await; // the proxy dropped the upstream connection
        let received = raw.received();
        assert!(
            received.ends_with(b"\r\n\r\n5\r\nhello\r\n"),
            "backend got {:?}",
            String::from_utf8_lossy(&received)
        );
        assert!(find(&received, b"zz").is_none());
        assert!(find(&received, b"smuggled").is_none());
        assert!(raw.requests().is_empty());
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn connection_naming_content_length_does_not_strip_it() {
    within("Connection: content-length", async {
        let raw = canned(OK).await;
        let proxy = start_proxy(endpoints(&[raw.addr]), ProxyConfig::default()).await;
        let mut wire = Wire::connect(proxy.addr).await;
        wire.send(
            "POST /cl HTTP/1.1\r\nHost: x\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\n\
             helloGET /next HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await;
        for _ in 0..2 {
            let resp = wire.response().await;
            assert_eq!((resp.status, resp.text().as_str()), (200, "ok"));
        }
        let first = raw.request(0);
        assert_eq!(first.line, "POST /cl HTTP/1.1");
        assert_eq!(first.all("content-length"), ["5"], "{}", first.head);
        assert!(!first.has("connection"), "{}", first.head);
        assert_eq!(first.body, b"hello");
        assert_eq!(raw.request(1).line, "GET /next HTTP/1.1");
        assert_eq!(raw.requests().len(), 2);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_http11_request_without_host_is_a_400() {
    within("no host", async {
        let (got, raw) = refused("GET / HTTP/1.1\r\nX-A: 1\r\n\r\n").await;
        assert_refused(&got, &raw, "HTTP/1.1 400 ");
    })
    .await;
}

#[tokio::test]
async fn two_host_headers_are_a_400() {
    within("two hosts", async {
        let (got, raw) = refused("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").await;
        assert_refused(&got, &raw, "HTTP/1.1 400 ");
    })
    .await;
}

#[tokio::test]
async fn connect_is_a_405() {
    within("CONNECT", async {
        let (got, raw) =
            refused("CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n").await;
        assert_refused(&got, &raw, "HTTP/1.1 405 ");
    })
    .await;
}

// === 6. what the backend receives ===

fn is_request_id(value: &str) -> bool {
    value.len() == 32 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test]
async fn hop_by_hop_headers_are_dropped_and_forwarding_headers_added() {
    within("request rewrite", async {
        let raw = canned(OK).await;
        let proxy = start_proxy(endpoints(&[raw.addr]), ProxyConfig::default()).await;
        let mut wire = Wire::connect(proxy.addr).await;
        wire.send(
            "GET /h?q=1 HTTP/1.1\r\n\
             Host: svc.test\r\n\
             Connection: keep-alive, x-secret\r\n\
             Keep-Alive: timeout=5\r\n\
             TE: trailers\r\n\
             Proxy-Connection: keep-alive\r\n\
             x-secret: 1\r\n\
             X-Forwarded-For: 10.0.0.1\r\n\
             X-Forwarded-Proto: https\r\n\
             X-Forwarded-For: 10.0.0.2, 10.0.0.3\r\n\
             X-Kept: yes\r\n\r\n",
        )
        .await;
        let resp = wire.response().await;
        assert_eq!(resp.status, 200);
        let request = raw.request(0);
        assert_eq!(request.line, "GET /h?q=1 HTTP/1.1");
        for dropped in [
            "connection",
            "keep-alive",
            "te",
            "proxy-connection",
            "x-secret",
        ] {
            assert!(!request.has(dropped), "{dropped} passed:\n{}", request.head);
        }
        assert_eq!(request.all("host"), ["svc.test"]);
        assert_eq!(request.all("x-kept"), ["yes"]);
        assert_eq!(
            request.all("x-forwarded-for"),
            ["10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.1"],
            "{}",
            request.head
        );
        assert_eq!(request.all("x-forwarded-proto"), ["http"]);
        let ids = request.all("x-request-id");
        assert_eq!(ids.len(), 1, "{}", request.head);
        assert!(is_request_id(ids[0]), "{}", ids[0]);

        // A request id the client sent is kept, alone; XFF without an incoming list.
        wire.send("GET /id HTTP/1.1\r\nHost: svc.test\r\nX-Request-Id: abc-123\r\n\r\n")
            .await;
        assert_eq!(wire.response().await.status, 200);
        let request = raw.request(1);
        assert_eq!(request.all("x-request-id"), ["abc-123"]);
        assert_eq!(request.all("x-forwarded-for"), ["127.0.0.1"]);
        // Two requests, two different generated ids.
        wire.send("GET /x HTTP/1.1\r\nHost: svc.test\r\n\r\n").await;
        assert_eq!(wire.response().await.status, 200);
        let third = raw.request(2);
        let id = third.header("x-request-id").expect("an id");
        assert!(is_request_id(id) && id != ids[0], "{id}");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_absolute_form_target_goes_up_in_origin_form_with_its_host() {
    within("absolute-form", async {
        let raw = canned(OK).await;
        let proxy = start_proxy(endpoints(&[raw.addr]), ProxyConfig::default()).await;
        let mut wire = Wire::connect(proxy.addr).await;
        wire.send("GET http://example.test/x?y HTTP/1.1\r\nHost: other.test\r\n\r\n")
            .await;
        let resp = wire.response().await;
        assert_eq!((resp.status, resp.text().as_str()), (200, "ok"));
        let request = raw.request(0);
        assert_eq!(request.line, "GET /x?y HTTP/1.1");
        assert_eq!(request.all("host"), ["example.test"], "{}", request.head);
        proxy.stop().await;
    })
    .await;
}

// === 7. responses ===

#[tokio::test]
async fn a_response_delimited_by_close_arrives_whole_with_connection_close() {
    within("until close", async {
        let raw = raw_backend(|_, _| {
            vec![
                send("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"),
                Act::Wait(Duration::from_millis(50)),
                send(", and a bit more"),
                Act::Close,
            ]
        })
        .await;
        let proxy = start_proxy(endpoints(&[raw.addr]), ProxyConfig::default()).await;
        let mut wire = Wire::connect(proxy.addr).await;
        wire.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let resp = wire.response().await; // no length, no chunking: read until close
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("connection"), Some("close"), "{}", resp.head);
        assert!(resp.header("content-length").is_none(), "{}", resp.head);
        assert!(resp.header("transfer-encoding").is_none(), "{}", resp.head);
        assert_eq!(resp.text(), "until the end, and a bit more");
        assert!(wire.eof);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_early_hints_response_is_passed_on_before_the_final_one() {
    within("103", async {
        let raw = raw_backend(|_, _| {
            vec![
                send("HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"),
                Act::Wait(Duration::from_millis(300)),
                send("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal"),
            ]
        })
        .await;
        let proxy = start_proxy(endpoints(&[raw.addr]), ProxyConfig::default()).await;
        let mut wire = Wire::connect(proxy.addr).await;
        wire.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let hints = wire.response().await;
        let hints_at = Instant::now();
        assert_eq!(hints.status, 103, "{}", hints.head);
        assert_eq!(hints.header("link"), Some("</style.css>; rel=preload"));
        let resp = wire.response().await;
        assert_eq!((resp.status, resp.text().as_str()), (200, "final"));
        assert!(
            hints_at.elapsed() >= Duration::from_millis(150),
            "the 103 came only with the final response"
        );
        // An HTTP/1.0 client does not get the 1xx.
        wire.send("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .await;
        let resp = wire.response().await;
        assert_eq!((resp.status, resp.text().as_str()), (200, "final"));
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn content_length_next_to_chunked_is_dropped_from_the_response() {
    within("TE+CL response", async {
        let raw = canned(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 50\r\n\r\n\
              5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        )
        .await;
        let proxy = start_proxy(endpoints(&[raw.addr]), ProxyConfig::default()).await;
        let mut wire = Wire::connect(proxy.addr).await;
        for _ in 0..2 {
            wire.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
            let resp = wire.response().await;
            assert_eq!(resp.status, 200);
            assert!(resp.header("content-length").is_none(), "{}", resp.head);
            assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
            assert_eq!(resp.text(), "hello world");
        }
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_head_response_keeps_its_length_and_has_no_body() {
    within("HEAD", async {
        let raw = raw_backend(|_, request| {
            if request.starts_with(b"HEAD ") {
                vec![send("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")]
            } else {
                vec![send(OK)]
            }
        })
        .await;
        let proxy = start_proxy(endpoints(&[raw.addr]), ProxyConfig::default()).await;
        let mut wire = Wire::connect(proxy.addr).await;
        wire.send("HEAD /doc HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let resp = wire.response_to_head().await;
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("content-length"), Some("1234"));
        // No body bytes follow: the next response on the connection comes straight after.
        wire.send("GET /doc HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let resp = wire.response().await;
        assert_eq!((resp.status, resp.text().as_str()), (200, "ok"));
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_garbage_response_is_a_502() {
    within("garbage", async {
        let raw = raw_backend(|_, _| vec![send("NOT HTTP\r\n\r\n"), Act::Close]).await;
        let proxy = start_proxy(endpoints(&[raw.addr]), ProxyConfig::default()).await;
        let mut wire = Wire::connect(proxy.addr).await;
        wire.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let resp = wire.response().await;
        assert_eq!(resp.status, 502, "{}", resp.head);
        assert!(!resp.text().contains("NOT HTTP"));
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn hop_by_hop_response_headers_are_dropped() {
    within("response rewrite", async {
        let raw = canned(
            b"HTTP/1.1 200 OK\r\nConnection: x-resp-secret\r\nX-Resp-Secret: 1\r\n\
              Keep-Alive: timeout=5\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok",
        )
        .await;
        let proxy = start_proxy(endpoints(&[raw.addr]), ProxyConfig::default()).await;
        let mut wire = Wire::connect(proxy.addr).await;
        wire.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let resp = wire.response().await;
        assert_eq!((resp.status, resp.text().as_str()), (200, "ok"));
        for dropped in ["x-resp-secret", "keep-alive", "connection"] {
            assert!(resp.header(dropped).is_none(), "{dropped}:\n{}", resp.head);
        }
        assert_eq!(resp.header("x-kept"), Some("yes"));
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn bytes_after_the_end_of_a_response_are_not_passed_on_nor_the_connection_reused() {
    within("extra bytes", async {
        let raw = canned(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA").await;
        let proxy = start_proxy(endpoints(&[raw.addr]), ProxyConfig::default()).await;
        let mut wire = Wire::connect(proxy.addr).await;
        for _ in 0..2 {
            wire.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
            let resp = wire.response().await;
            assert_eq!((resp.status, resp.text().as_str()), (200, "ok"));
        }
        tokio::time::sleep(GRACE).await;
        assert!(
            wire.buf.is_empty(),
            "{:?}",
            String::from_utf8_lossy(&wire.buf)
        );
        assert_eq!(raw.accepted(), 2, "the untrustworthy connection was reused");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn connection_close_from_an_http11_client_ends_after_that_response() {
    within("client close", async {
        let raw = canned(OK).await;
        let proxy = start_proxy(endpoints(&[raw.addr]), ProxyConfig::default()).await;
        let mut wire = Wire::connect(proxy.addr).await;
        // A request pipelined after the close is not served.
        wire.send(
            "GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n\
             GET /b HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await;
        let resp = wire.response().await;
        assert_eq!((resp.status, resp.text().as_str()), (200, "ok"));
        assert_eq!(resp.header("connection"), Some("close"), "{}", resp.head);
        assert_eq!(
            String::from_utf8_lossy(&wire.until_closed(IO_LIMIT).await),
            ""
        );
        tokio::time::sleep(GRACE).await;
        assert_eq!(raw.requests().len(), 1);
        assert_eq!(raw.request(0).line, "GET /a HTTP/1.1");
        proxy.stop().await;
    })
    .await;
}

// === 8. stale pooled connections ===

/// A backend that answers the first request of each connection and drops every later one
/// unanswered: as a server does whose keep-alive timeout closes the connection just as the next
/// request arrives.
async fn closes_on_reuse() -> Raw {
    raw_backend(|nth, _| {
        if nth == 0 {
            vec![send(OK)]
        } else {
            vec![Act::Close]
        }
    })
    .await
}

#[tokio::test]
async fn a_backend_that_closes_right_after_each_response_costs_no_request() {
    within("lying keep-alive", async {
        // Advertises keep-alive (HTTP/1.1, no Connection: close), then closes anyway.
        let raw = raw_backend(|_, _| vec![send(OK), Act::Close]).await;
        let proxy = start_proxy(endpoints(&[raw.addr]), ProxyConfig::default()).await;
        let mut wire = Wire::connect(proxy.addr).await;
        for i in 0..6 {
            wire.send(format!("GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n"))
                .await;
            let resp = wire.response().await;
            assert_eq!(
                (resp.status, resp.text().as_str()),
                (200, "ok"),
                "request {i}"
            );
        }
        let lines: Vec<String> = (0..6).map(|i| raw.request(i).line).collect();
        assert_eq!(
            lines,
            (0..6)
                .map(|i| format!("GET /{i} HTTP/1.1"))
                .collect::<Vec<_>>()
        );
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_pooled_connection_closed_on_reuse_is_replaced_by_a_fresh_one() {
    within("stale on reuse", async {
        // Serves the first request of each connection; a second one is read, then dropped
        // unanswered: the pooled connection looks open until it is used.
        let raw = closes_on_reuse().await;
        let proxy = start_proxy(endpoints(&[raw.addr]), ProxyConfig::default()).await;
        let mut wire = Wire::connect(proxy.addr).await;
        for i in 0..6 {
            wire.send(format!("GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n"))
                .await;
            let resp = wire.response().await;
            assert_eq!(
                (resp.status, resp.text().as_str()),
                (200, "ok"),
                "request {i}"
            );
        }
        assert_eq!(raw.accepted(), 6, "one fresh connection per request");
        // Requests 1..6 each went first to the pooled connection, which dropped them.
        assert_eq!(
            raw.requests().len(),
            6 + 5,
            "the pooled connection was tried"
        );
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_post_dropped_by_a_pooled_connection_is_not_replayed() {
    within("stale post", async {
        // The endpoint may have acted on a request it read before closing: a non-idempotent one
        // is answered 502 rather than sent a second time (nginx's default too).
        let raw = closes_on_reuse().await;
        let proxy = start_proxy(endpoints(&[raw.addr]), ProxyConfig::default()).await;
        let mut wire = Wire::connect(proxy.addr).await;
        wire.send("GET /0 HTTP/1.1\r\nHost: x\r\n\r\n".to_string())
            .await;
        assert_eq!(wire.response().await.status, 200);
        wire.send("POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody".to_string())
            .await;
        assert_eq!(wire.response().await.status, 502);
        let posts = raw
            .requests()
            .iter()
            .filter(|r| r.starts_with(b"POST"))
            .count();
        assert_eq!(posts, 1, "the POST reached the endpoint once");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_post_after_a_pause_takes_a_fresh_connection_not_one_the_endpoint_may_be_closing() {
    within("post after idle", async {
        let raw = closes_on_reuse().await;
        let proxy = start_proxy(endpoints(&[raw.addr]), ProxyConfig::default()).await;
        let mut wire = Wire::connect(proxy.addr).await;
        wire.send("GET /0 HTTP/1.1\r\nHost: x\r\n\r\n".to_string())
            .await;
        assert_eq!(wire.response().await.status, 200);
        // Idle for longer than a request that cannot be repeated accepts.
        let pause = ebb_router::pool::UNREPEATABLE_MAX_IDLE + Duration::from_millis(100);
        tokio::time::sleep(pause).await;
        // Both a POST wholly in hand and one whose body streams in after its head.
        wire.send("POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody".to_string())
            .await;
        assert_eq!(wire.response().await.status, 200, "the POST in hand");
        tokio::time::sleep(pause).await;
        wire.send("POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n".to_string())
            .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        wire.send("body".to_string()).await;
        assert_eq!(wire.response().await.status, 200, "the streamed POST");
        assert_eq!(raw.accepted(), 3, "each POST on a fresh connection");
        let posts = raw
            .requests()
            .iter()
            .filter(|r| r.starts_with(b"POST"))
            .count();
        assert_eq!(posts, 2, "no POST went to a pooled connection");
        // A GET after the same pause may still take the pooled connection: it can be retried.
        tokio::time::sleep(pause).await;
        wire.send("GET /3 HTTP/1.1\r\nHost: x\r\n\r\n".to_string())
            .await;
        assert_eq!(wire.response().await.status, 200);
        proxy.stop().await;
    })
    .await;
}

// === 9. header timeout ===

#[tokio::test]
async fn a_partial_head_then_silence_is_a_408_and_closed() {
    within("408", async {
        let raw = canned(OK).await;
        let proxy = start_proxy(endpoints(&[raw.addr]), short_header_timeout()).await;
        let started = Instant::now();
        let got = exchange_until_closed(proxy.addr, b"GET / HTTP/1.1\r\nHost: x\r\nX-Slo").await;
        let waited = started.elapsed();
        assert!(got.starts_with("HTTP/1.1 408 "), "got: {got:?}");
        assert!(
            got.to_ascii_lowercase().contains("connection: close"),
            "got: {got:?}"
        );
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
            "{waited:?}"
        );
        assert_eq!(raw.accepted(), 0);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_silently_after_the_header_timeout() {
    within("idle close", async {
        let raw = canned(OK).await;
        let proxy = start_proxy(endpoints(&[raw.addr]), short_header_timeout()).await;
        let mut wire = Wire::connect(proxy.addr).await;
        // Each request restarts the clock: 3 requests 200 ms apart outlive one timeout.
        for i in 0..3 {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            wire.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
            let resp = wire.response().await;
            assert_eq!(
                (resp.status, resp.text().as_str()),
                (200, "ok"),
                "request {i}"
            );
        }
        let idle_from = Instant::now();
        let got = wire.until_closed(Duration::from_secs(5)).await;
        let idle = idle_from.elapsed();
        assert_eq!(
            String::from_utf8_lossy(&got),
            "",
            "closed without a response"
        );
        assert!(
            idle >= Duration::from_millis(200) && idle < Duration::from_secs(3),
            "{idle:?}"
        );
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_response_slower_than_the_header_timeout_does_not_cut_the_next_request() {
    within("slow then next", async {
        let raw = raw_backend(|_, request| {
            if request.starts_with(b"GET /slow ") {
                vec![Act::Wait(Duration::from_millis(600)), send(OK)]
            } else {
                vec![send(OK)]
            }
        })
        .await;
        let proxy = start_proxy(endpoints(&[raw.addr]), short_header_timeout()).await;
        let mut wire = Wire::connect(proxy.addr).await;
        wire.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let resp = wire.response().await;
        assert_eq!((resp.status, resp.text().as_str()), (200, "ok"));
        assert!(resp.header("connection").is_none(), "{}", resp.head);
        // The next head, in two writes, still has the whole timeout.
        wire.send("GET /next HTTP/1.1\r\n").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        wire.send("Host: x\r\n\r\n").await;
        let resp = wire.response().await;
        assert_eq!(
            (resp.status, resp.text().as_str()),
            (200, "ok"),
            "{}",
            resp.head
        );
        proxy.stop().await;
    })
    .await;
}

// === 10. shutdown ===

/// A raw backend that answers `/slow` after `delay` and tells `started` when it has the request.
async fn slow_backend(delay: Duration) -> (Raw, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let raw = raw_backend(move |_, request| {
        if request.starts_with(b"GET /slow ") {
            let _ = tx.send(());
            vec![
                Act::Wait(delay),
                send("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow"),
            ]
        } else {
            vec![send(OK)]
        }
    })
    .await;
    (raw, rx)
}

#[tokio::test]
async fn stopping_lets_an_in_flight_request_finish_with_connection_close() {
    within("shutdown in flight", async {
        let (raw, mut started) = slow_backend(Duration::from_millis(500)).await;
        let proxy = start_proxy(endpoints(&[raw.addr]), ProxyConfig::default()).await;
        let mut wire = Wire::connect(proxy.addr).await;
        wire.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n").await;
        started.recv().await.expect("the backend got the request");
        let stopping = tokio::spawn(proxy.stop());
        let resp = wire.response().await;
        assert_eq!((resp.status, resp.text().as_str()), (200, "slow"));
        let closed = wire.until_closed(Duration::from_secs(3)).await;
        assert_eq!(String::from_utf8_lossy(&closed), "");
        stopping.await.expect("proxy stopped");
        assert_eq!(
            resp.header("connection"),
            Some("close"),
            "a response finished during shutdown must announce the close:\n{}",
            resp.head
        );
    })
    .await;
}

#[tokio::test]
async fn stopping_closes_idle_keep_alive_connections_promptly() {
    within("shutdown idle", async {
        let raw = canned(OK).await;
        // The default header timeout (10 s): closing must not wait for it.
        let proxy = start_proxy(endpoints(&[raw.addr]), ProxyConfig::default()).await;
        let mut idle = Wire::connect(proxy.addr).await;
        idle.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(idle.response().await.status, 200);
        let stopped_at = Instant::now();
        let stopping = tokio::spawn(proxy.stop());
        let got = idle.until_closed(Duration::from_secs(5)).await;
        assert_eq!(
            String::from_utf8_lossy(&got),
            "",
            "closed without a response"
        );
        let waited = stopped_at.elapsed();
        assert!(waited < Duration::from_secs(2), "{waited:?}");
        stopping.await.expect("proxy stopped");
        assert!(stopped_at.elapsed() < Duration::from_secs(2));
    })
    .await;
}

// === desync after a failed upload ===

#[tokio::test]
async fn the_tail_of_a_failed_upload_is_never_read_as_a_request() {
    within("upload tail", async {
        // An endpoint that reads a request head and then dies, before the body is complete.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match stream.read(&mut byte).await {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                });
            }
        });
        let proxy = start_proxy(endpoints(&[addr]), ProxyConfig::default()).await;
        let smuggled = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut wire = Wire::connect(proxy.addr).await;
        wire.send(format!(
            "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\nfirst",
            5 + smuggled.len()
        ))
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        wire.send(&smuggled[..]).await;
        let got = String::from_utf8_lossy(&wire.until_closed(IO_LIMIT).await).into_owned();
        assert!(got.starts_with("HTTP/1.1 502 "), "{got}");
        assert_eq!(
            got.matches("HTTP/1.1").count(),
            1,
            "one response only: {got}"
        );
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "nothing more went upstream"
        );
        proxy.stop().await;
    })
    .await;
}
