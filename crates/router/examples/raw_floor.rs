//! A floor under any tokio HTTP/1.1 proxy, for `bench/router.sh`: a hand-written keep-alive
//! reverse proxy with no hyper on the path. One task per client connection does everything:
//! parse the request head with `httparse`, rewrite it into a reused buffer (hop-by-hop headers
//! dropped, `X-Forwarded-For` added), check an upstream connection out of a per-upstream pool
//! (round robin over the upstreams), send head and buffered body with one write, stream the rest
//! of the body, parse the response head, rewrite it the same way and send it with whatever part
//! of the body has already arrived in one write, stream the rest (Content-Length, chunked framing
//! scanned and passed through, or until close), and put the upstream connection back.
//!
//! Buffers live as long as the client connection: no allocation per request in the steady
//! state. Handles requests without a body, with Content-Length or chunked, `Expect:
//! 100-continue` (answered by the proxy), pipelined requests, HTTP/1.0 clients (keep-alive on
//! request). One retry on a fresh connection when a pooled upstream connection turns out dead
//! before any response byte and the whole request is still in hand. No timeouts, no upgrades
//! (`Upgrade` is dropped like any hop-by-hop header), no metrics: a floor, not a product.
//!
//! Usage: `raw_floor LISTEN_ADDR BACKEND_ADDR...`. Runs until killed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark tool, not production code

use std::cell::{Cell, RefCell};
use std::io;
use std::mem::MaybeUninit;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MAX_HEADERS: usize = 64;
/// Initial size of each connection's buffers; a request or response head may grow one to
/// `MAX_HEAD`.
const BUF_SIZE: usize = 16 * 1024;
const MAX_HEAD: usize = 64 * 1024;
/// Idle connections kept per upstream.
const MAX_IDLE: usize = 256;

const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const BAD_GATEWAY: &[u8] =
    b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: raw_floor LISTEN_ADDR BACKEND_ADDR...";
    let listen: SocketAddr = args.next().ok_or(usage)?.parse()?;
    let mut addrs = Vec::new();
    let mut hosts = Vec::new();
    for backend in args {
        addrs.push(
            backend
                .to_socket_addrs()?
                .next()
                .ok_or("backend address resolves to nothing")?,
        );
        hosts.push(backend);
    }
    if addrs.is_empty() {
        return Err(usage.into());
    }
    let upstreams = Rc::new(Upstreams {
        idle: RefCell::new(addrs.iter().map(|_| Vec::new()).collect()),
        addrs,
        hosts,
        next: Cell::new(0),
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, serve(listen, upstreams))
}

async fn serve(
    listen: SocketAddr,
    upstreams: Rc<Upstreams>,
) -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind(listen).await?;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of descriptors and the like: keep serving the connections we have.
            Err(_) => {
                tokio::task::yield_now().await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let upstreams = upstreams.clone();
        tokio::task::spawn_local(async move {
            let _ = Connection::new(stream, peer, upstreams).run().await;
        });
    }
}

/// The upstreams, their idle keep-alive connections and the round-robin cursor. Single
/// threaded: `Rc`, `Cell` and `RefCell`, never borrowed across an await.
struct Upstreams {
    addrs: Vec<SocketAddr>,
    /// As given on the command line, for a `Host` header when the client sent none.
    hosts: Vec<String>,
    idle: RefCell<Vec<Vec<TcpStream>>>,
    next: Cell<usize>,
}

impl Upstreams {
    fn pick(&self) -> usize {
        let i = self.next.get();
        self.next
            .set(if i + 1 == self.addrs.len() { 0 } else { i + 1 });
        i
    }

    fn checkout(&self, i: usize) -> Option<TcpStream> {
        self.idle.borrow_mut()[i].pop()
    }

    fn checkin(&self, i: usize, stream: TcpStream) {
        let mut idle = self.idle.borrow_mut();
        if idle[i].len() < MAX_IDLE {
            idle[i].push(stream);
        }
    }

    async fn connect(&self, i: usize) -> io::Result<TcpStream> {
        let stream = TcpStream::connect(self.addrs[i]).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// A read buffer: bytes `start..end` of `data` are received and not yet consumed.
struct Buf {
    data: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Buf {
    fn new() -> Buf {
        Buf {
            data: vec![0; BUF_SIZE].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// One read from `stream`, after making room (compacting, or growing up to `MAX_HEAD`).
    /// Returns the number of bytes read, 0 at end of stream.
    async fn fill(&mut self, stream: &mut TcpStream) -> io::Result<usize> {
        if self.start > 0 && self.data.len() - self.end < BUF_SIZE / 2 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.data.len() {
            if self.data.len() >= MAX_HEAD {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "head too large"));
            }
            let mut bigger = vec![0; self.data.len() * 2].into_boxed_slice();
            bigger[..self.end].copy_from_slice(&self.data[..self.end]);
            self.data = bigger;
        }
        // A read that leaves part of the buffer free tells tokio the socket is drained, so the
        // next read waits for epoll instead of making a read() that returns EAGAIN.
        let n = stream.read(&mut self.data[self.end..]).await?;
        self.end += n;
        Ok(n)
    }
}

/// How a message body is delimited.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// Response only: the body runs until the upstream closes.
    UntilClose,
}

/// The body still to be forwarded, once what was already buffered has been taken.
enum Remaining {
    Length(u64),
    Chunked(Chunks),
    UntilClose,
}

impl Remaining {
    fn new(framing: Framing) -> Remaining {
        match framing {
            Framing::Empty => Remaining::Length(0),
            Framing::Length(n) => Remaining::Length(n),
            Framing::Chunked => Remaining::Chunked(Chunks::default()),
            Framing::UntilClose => Remaining::UntilClose,
        }
    }

    fn done(&self) -> bool {
        match self {
            Remaining::Length(n) => *n == 0,
            Remaining::Chunked(chunks) => chunks.done(),
            Remaining::UntilClose => false,
        }
    }

    /// How many of `bytes` belong to the body, and records them as forwarded.
    fn take(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Remaining::Length(n) => {
                let take = (*n).min(bytes.len() as u64);
                *n -= take;
                Ok(take as usize)
            }
            Remaining::Chunked(chunks) => chunks.advance(bytes),
            Remaining::UntilClose => Ok(bytes.len()),
        }
    }
}

/// Scans chunked framing (RFC 9112 §7.1) as it passes through, to find where the body ends.
#[derive(Default)]
struct Chunks {
    state: ChunkState,
    size: u64,
    digits: u8,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

impl Chunks {
    fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Consumes framing and data from `bytes` up to the end of the body; returns how many
    /// bytes belong to the body.
    fn advance(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "bad chunked framing");
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match self.state {
                ChunkState::Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let digit = (b as char).to_digit(16).unwrap_or(0) as u64;
                        if self.digits >= 15 {
                            return Err(bad());
                        }
                        self.size = self.size * 16 + digit;
                        self.digits += 1;
                    }
                    b';' | b' ' | b'\t' if self.digits > 0 => self.state = ChunkState::Extension,
                    b'\r' if self.digits > 0 => self.state = ChunkState::SizeLf,
                    _ => return Err(bad()),
                },
                ChunkState::Extension => {
                    if b == b'\r' {
                        self.state = ChunkState::SizeLf;
                    } else if b == b'\n' {
                        return Err(bad());
                    }
                }
                ChunkState::SizeLf => {
                    if b != b'\n' {
                        return Err(bad());
                    }
                    self.state = if self.size == 0 {
                        ChunkState::TrailerStart
                    } else {
                        ChunkState::Data
                    };
                }
                ChunkState::Data => {
                    let take = self.size.min((bytes.len() - i) as u64);
                    self.size -= take;
                    i += take as usize;
                    if self.size == 0 {
                        self.state = ChunkState::DataCr;
                    }
                    continue;
                }
                ChunkState::DataCr => {
                    if b != b'\r' {
                        return Err(bad());
                    }
                    self.state = ChunkState::DataLf;
                }
                ChunkState::DataLf => {
                    if b != b'\n' {
                        return Err(bad());
                    }
                    self.state = ChunkState::Size;
                    self.digits = 0;
                }
                ChunkState::TrailerStart => {
                    self.state = if b == b'\r' {
                        ChunkState::EndLf
                    } else {
                        ChunkState::TrailerLine
                    };
                }
                ChunkState::TrailerLine => {
                    if b == b'\r' {
                        self.state = ChunkState::TrailerLf;
                    }
                }
                ChunkState::TrailerLf => {
                    if b != b'\n' {
                        return Err(bad());
                    }
                    self.state = ChunkState::TrailerStart;
                }
                ChunkState::EndLf => {
                    if b != b'\n' {
                        return Err(bad());
                    }
                    self.state = ChunkState::Done;
                    return Ok(i + 1);
                }
                ChunkState::Done => return Ok(i),
            }
            i += 1;
        }
        Ok(i)
    }
}

/// What the proxy needs to know about a request once its head has been rewritten.
struct RequestInfo {
    head_len: usize,
    framing: Framing,
    keep_alive: bool,
    is_head: bool,
    expect_continue: bool,
    http10: bool,
}

/// What the proxy needs to know about a response once its head has been rewritten.
struct ResponseInfo {
    head_len: usize,
    informational: bool,
    framing: Framing,
    upstream_keep_alive: bool,
}

/// Headers the proxy handles itself rather than passing through.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Special {
    None,
    Host,
    Connection,
    /// Hop-by-hop: dropped.
    Hop,
    ContentLength,
    TransferEncoding,
    Expect,
    ForwardedFor,
}

fn classify(name: &str) -> Special {
    let is = |s: &str| name.eq_ignore_ascii_case(s);
    match name.len() {
        2 if is("te") => Special::Hop,
        4 if is("host") => Special::Host,
        6 if is("expect") => Special::Expect,
        7 if is("upgrade") => Special::Hop,
        10 if is("connection") => Special::Connection,
        10 if is("keep-alive") => Special::Hop,
        14 if is("content-length") => Special::ContentLength,
        15 if is("x-forwarded-for") => Special::ForwardedFor,
        16 if is("proxy-connection") => Special::Hop,
        17 if is("transfer-encoding") => Special::TransferEncoding,
        _ => Special::None,
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|t| !t.is_empty())
}

/// The `Connection` header's options: `close`, `keep-alive`, and whether it names other headers
/// (which are then hop-by-hop too).
#[derive(Default)]
struct ConnectionOptions {
    close: bool,
    keep_alive: bool,
    names_headers: bool,
}

impl ConnectionOptions {
    fn add(&mut self, value: &[u8]) {
        for token in tokens(value) {
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else {
                self.names_headers = true;
            }
        }
    }
}

/// Whether a `Connection` header among `headers` lists `name`.
fn listed_in_connection(headers: &[httparse::Header<'_>], name: &str) -> bool {
    headers.iter().any(|h| {
        classify(h.name) == Special::Connection
            && tokens(h.value).any(|t| t.eq_ignore_ascii_case(name.as_bytes()))
    })
}

fn parse_length(value: &[u8]) -> Option<u64> {
    let value = trim(value);
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// Whether the last transfer coding in a `Transfer-Encoding` value is `chunked`.
fn ends_chunked(value: &[u8]) -> bool {
    tokens(value)
        .last()
        .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"))
}

fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Parses a request head at the start of `buf`. When complete, writes the head to send
/// upstream into `out` and returns what the proxy needs to know; `Ok(None)` when more bytes are
/// needed; `Err` for a request to refuse with 400.
fn parse_request(
    buf: &[u8],
    client_ip: &str,
    host: &str,
    out: &mut Vec<u8>,
) -> Result<Option<RequestInfo>, ()> {
    let mut storage = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let head_len = match request.parse_with_uninit_headers(buf, &mut storage) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(()),
    };
    let (Some(method), Some(path), Some(version)) = (request.method, request.path, request.version)
    else {
        return Err(());
    };
    let headers = &*request.headers;

    let mut connection = ConnectionOptions::default();
    let mut length = None;
    let mut chunked = None;
    let mut has_host = false;
    let mut expect_continue = false;
    let mut forwarded_for = 0;
    for h in headers {
        match classify(h.name) {
            Special::Connection => connection.add(h.value),
            Special::Host => has_host = true,
            Special::ContentLength => {
                let n = parse_length(h.value).ok_or(())?;
                if length.is_some_and(|m| m != n) {
                    return Err(());
                }
                length = Some(n);
            }
            // Only the last Transfer-Encoding header's last coding decides.
            Special::TransferEncoding => chunked = Some(ends_chunked(h.value)),
            Special::Expect => {
                expect_continue = trim(h.value).eq_ignore_ascii_case(b"100-continue")
            }
            Special::ForwardedFor => forwarded_for += 1,
            Special::None | Special::Hop => {}
        }
    }
    let framing = match (chunked, length) {
        (Some(true), None) => Framing::Chunked,
        // A request body that is neither chunked nor of known length, or both (smuggling).
        (Some(_), _) => return Err(()),
        (None, Some(0) | None) => Framing::Empty,
        (None, Some(n)) => Framing::Length(n),
    };
    let http10 = version == 0;
    let keep_alive = if http10 {
        connection.keep_alive && !connection.close
    } else {
        !connection.close
    };

    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    // An HTTP/1.0 request goes up as HTTP/1.0 so that the response comes back without chunked
    // framing, which the client would not understand.
    out.extend_from_slice(if http10 {
        b" HTTP/1.0\r\nConnection: keep-alive\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    for h in headers {
        match classify(h.name) {
            Special::None | Special::Host | Special::ContentLength | Special::TransferEncoding => {
                if connection.names_headers && listed_in_connection(headers, h.name) {
                    continue;
                }
                header(out, h.name.as_bytes(), h.value);
            }
            Special::Expect if !expect_continue => header(out, h.name.as_bytes(), h.value),
            Special::Expect | Special::Connection | Special::Hop | Special::ForwardedFor => {}
        }
    }
    if !has_host {
        header(out, b"Host", host.as_bytes());
    }
    out.extend_from_slice(b"X-Forwarded-For: ");
    if forwarded_for > 0 {
        for h in headers {
            if classify(h.name) == Special::ForwardedFor {
                out.extend_from_slice(trim(h.value));
                out.extend_from_slice(b", ");
            }
        }
    }
    out.extend_from_slice(client_ip.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");

    Ok(Some(RequestInfo {
        head_len,
        framing,
        keep_alive,
        is_head: method == "HEAD",
        expect_continue,
        http10,
    }))
}

/// Parses a response head at the start of `buf`. When complete, writes the head to send to the
/// client into `out` (with `Connection: close` when `close` or when the body runs until the
/// upstream closes) and returns what the proxy needs to know; `Ok(None)` when more bytes are
/// needed; `Err` for a response to answer with 502.
fn parse_response(
    buf: &[u8],
    request: &RequestInfo,
    out: &mut Vec<u8>,
) -> Result<Option<ResponseInfo>, ()> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut storage);
    let head_len = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(()),
    };
    let (Some(version), Some(code)) = (response.version, response.code) else {
        return Err(());
    };
    // The request went up without `Upgrade`: a 101 is a broken upstream.
    if code == 101 {
        return Err(());
    }
    let headers = &*response.headers;
    let informational = (100..200).contains(&code);

    let mut connection = ConnectionOptions::default();
    let mut length = None;
    let mut chunked = None;
    for h in headers {
        match classify(h.name) {
            Special::Connection => connection.add(h.value),
            Special::ContentLength => {
                let n = parse_length(h.value).ok_or(())?;
                if length.is_some_and(|m| m != n) {
                    return Err(());
                }
                length = Some(n);
            }
            Special::TransferEncoding => chunked = Some(ends_chunked(h.value)),
            _ => {}
        }
    }
    let framing = if informational || request.is_head || code == 204 || code == 304 {
        Framing::Empty
    } else {
        match (chunked, length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) | (None, None) => Framing::UntilClose,
            (None, Some(n)) => Framing::Length(n),
        }
    };
    let upstream_keep_alive = framing != Framing::UntilClose
        && if version == 0 {
            connection.keep_alive && !connection.close
        } else {
            !connection.close
        };

    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(&[
        b'0' + (code / 100 % 10) as u8,
        b'0' + (code / 10 % 10) as u8,
        b'0' + (code % 10) as u8,
        b' ',
    ]);
    out.extend_from_slice(response.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in headers {
        match classify(h.name) {
            Special::Connection | Special::Hop => {}
            // With chunked framing, a Content-Length is wrong; drop it.
            Special::ContentLength if chunked.is_some() => {}
            _ => {
                if connection.names_headers && listed_in_connection(headers, h.name) {
                    continue;
                }
                header(out, h.name.as_bytes(), h.value);
            }
        }
    }
    if !informational {
        if !request.keep_alive || framing == Framing::UntilClose {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if request.http10 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    Ok(Some(ResponseInfo {
        head_len,
        informational,
        framing,
        upstream_keep_alive,
    }))
}

/// Streams the rest of a body from `src` to `dst` through `buf` (empty on entry, except for a
/// response body running until close). Stops at the end of the body; bytes read past it stay in
/// `buf`.
async fn forward_body(
    src: &mut TcpStream,
    buf: &mut Buf,
    dst: &mut TcpStream,
    remaining: &mut Remaining,
) -> io::Result<()> {
    while !remaining.done() {
        if buf.is_empty() {
            buf.clear();
            if buf.fill(src).await? == 0 {
                return match remaining {
                    Remaining::UntilClose => Ok(()),
                    _ => Err(io::ErrorKind::UnexpectedEof.into()),
                };
            }
        }
        let take = remaining.take(buf.filled())?;
        dst.write_all(&buf.filled()[..take]).await?;
        buf.consume(take);
    }
    Ok(())
}

/// One client connection: its buffers, reused for every request on it.
struct Connection {
    client: TcpStream,
    client_ip: String,
    upstreams: Rc<Upstreams>,
    /// Bytes from the client.
    from_client: Buf,
    /// Bytes from the upstream.
    from_upstream: Buf,
    /// The request head (and buffered body) to send upstream; kept until the response head
    /// arrives, for a retry.
    to_upstream: Vec<u8>,
    /// The response head (and buffered body) to send to the client.
    to_client: Vec<u8>,
}

/// Why an exchange with an upstream failed.
enum Failure {
    /// The client went away or broke the protocol: close without answering.
    Client,
    /// The upstream failed; `retry` when the request may go to a fresh connection.
    Upstream { retry: bool },
}

impl Connection {
    fn new(client: TcpStream, peer: SocketAddr, upstreams: Rc<Upstreams>) -> Connection {
        Connection {
            client,
            client_ip: peer.ip().to_string(),
            upstreams,
            from_client: Buf::new(),
            from_upstream: Buf::new(),
            to_upstream: Vec::with_capacity(BUF_SIZE),
            to_client: Vec::with_capacity(BUF_SIZE),
        }
    }

    async fn run(mut self) -> io::Result<()> {
        loop {
            let upstream = self.upstreams.pick();
            let request = loop {
                if !self.from_client.is_empty() {
                    match parse_request(
                        self.from_client.filled(),
                        &self.client_ip,
                        &self.upstreams.hosts[upstream],
                        &mut self.to_upstream,
                    ) {
                        Ok(Some(request)) => break request,
                        Ok(None) => {}
                        Err(()) => {
                            let _ = self.client.write_all(BAD_REQUEST).await;
                            return Ok(());
                        }
                    }
                }
                if self.from_client.fill(&mut self.client).await? == 0 {
                    return Ok(());
                }
            };
            self.from_client.consume(request.head_len);

            // The part of the body already received goes up with the head, in one write.
            let mut body = Remaining::new(request.framing);
            let take = match body.take(self.from_client.filled()) {
                Ok(take) => take,
                Err(_) => {
                    let _ = self.client.write_all(BAD_REQUEST).await;
                    return Ok(());
                }
            };
            self.to_upstream
                .extend_from_slice(&self.from_client.filled()[..take]);
            self.from_client.consume(take);
            let whole_request_in_hand = body.done();
            if request.expect_continue && !whole_request_in_hand {
                self.client.write_all(CONTINUE).await?;
            }

            // A pooled connection may have been closed by the upstream while idle: when that shows
            // before any response byte and the whole request is still in `to_upstream`, it goes
            // again once, on a fresh connection.
            let mut pooled = self.upstreams.checkout(upstream);
            let (mut up, response) = loop {
                let reused = pooled.is_some();
                let mut up = match pooled.take() {
                    Some(up) => up,
                    None => match self.upstreams.connect(upstream).await {
                        Ok(up) => up,
                        Err(_) => {
                            let _ = self.client.write_all(BAD_GATEWAY).await;
                            return Ok(());
                        }
                    },
                };
                match self.exchange(&mut up, &request, &mut body).await {
                    Ok(response) => break (up, response),
                    Err(Failure::Client) => return Ok(()),
                    Err(Failure::Upstream { retry: true }) if reused && whole_request_in_hand => {}
                    Err(Failure::Upstream { .. }) => {
                        let _ = self.client.write_all(BAD_GATEWAY).await;
                        return Ok(());
                    }
                }
            };

            // The response head and the part of the body already received, in one write.
            self.from_upstream.consume(response.head_len);
            let mut body = Remaining::new(response.framing);
            let take = body.take(self.from_upstream.filled())?;
            self.to_client
                .extend_from_slice(&self.from_upstream.filled()[..take]);
            self.from_upstream.consume(take);
            self.client.write_all(&self.to_client).await?;
            forward_body(
                &mut up,
                &mut self.from_upstream,
                &mut self.client,
                &mut body,
            )
            .await?;

            // Bytes past the end of the response: the upstream is not to be trusted again.
            if response.upstream_keep_alive && self.from_upstream.is_empty() {
                self.upstreams.checkin(upstream, up);
            }
            self.from_upstream.clear();
            if !request.keep_alive || response.framing == Framing::UntilClose {
                let _ = self.client.shutdown().await;
                return Ok(());
            }
        }
    }

    /// Sends the request in `to_upstream` (head and buffered body), streams the rest of the body,
    /// reads the response head, forwarding informational responses. On success the response
    /// head to send to the client is in `to_client`, the raw head and any body bytes after it in
    /// `from_upstream`.
    async fn exchange(
        &mut self,
        up: &mut TcpStream,
        request: &RequestInfo,
        body: &mut Remaining,
    ) -> Result<ResponseInfo, Failure> {
        self.from_upstream.clear();
        let sent_all = body.done();
        if up.write_all(&self.to_upstream).await.is_err() {
            return Err(Failure::Upstream { retry: true });
        }
        if !sent_all {
            // Errors here may be either side's; the client's show up again on its next read.
            forward_body(&mut self.client, &mut self.from_client, up, body)
                .await
                .map_err(|_| Failure::Upstream { retry: false })?;
        }
        let mut received_any = false;
        loop {
            if !self.from_upstream.is_empty() {
                match parse_response(self.from_upstream.filled(), request, &mut self.to_client) {
                    Ok(Some(response)) if response.informational => {
                        self.from_upstream.consume(response.head_len);
                        if !request.http10 && self.client.write_all(&self.to_client).await.is_err()
                        {
                            return Err(Failure::Client);
                        }
                        continue;
                    }
                    Ok(Some(response)) => return Ok(response),
                    Ok(None) => {}
                    Err(()) => return Err(Failure::Upstream { retry: false }),
                }
            }
            match self.from_upstream.fill(up).await {
                Ok(n) if n > 0 => received_any = true,
                _ => {
                    return Err(Failure::Upstream {
                        retry: !received_any,
                    })
                }
            }
        }
    }
}
