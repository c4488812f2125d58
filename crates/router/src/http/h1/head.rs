//! Request and response heads on the HTTP/1.1 path: parsed with `httparse`, checked, and
//! rewritten in one pass into the head that goes on (RFC 9110 §7.6: hop-by-hop headers dropped,
//! forwarding headers added).
//!
//! The framing checks are where request smuggling is stopped: a request whose body length two
//! parsers could read differently (both `Content-Length` and `Transfer-Encoding`, differing
//! lengths, a transfer coding other than chunked, `Transfer-Encoding` in HTTP/1.0) is refused,
//! never repaired; `Connection` may not strip the headers that frame the message.

use super::body::Framing;
use std::mem::MaybeUninit;

/// Most header fields in a head; more is a 431 (requests) or a 502 (responses). 100: hyper's
/// default (`max_headers`); nginx and HAProxy limit by bytes only, HAProxy at 101 fields.
pub(crate) const MAX_HEADERS: usize = 100;

/// Why a request is refused before it goes anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reject {
    /// 400, with the reason in the body.
    BadRequest(&'static str),
    /// 431: too many header fields (too many bytes is found by the caller, which owns the limit).
    TooLarge,
    /// 501: a transfer coding the proxy cannot frame.
    NotImplemented(&'static str),
    /// 405: CONNECT; ebb forwards to one service, it is not a forward proxy.
    MethodNotAllowed,
}

/// What the connection needs to know of a request once its head has been rewritten.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestHead {
    /// Bytes of the head in the client's buffer.
    pub(crate) len: usize,
    pub(crate) framing: Framing,
    /// The client wants the connection kept open after the response.
    pub(crate) keep_alive: bool,
    pub(crate) http10: bool,
    pub(crate) is_head: bool,
    pub(crate) idempotent: bool,
    /// Its method, as the metrics label it.
    pub(crate) method: crate::http_metrics::Method,
    /// `Expect: 100-continue`: the proxy answers it itself when it starts reading the body.
    pub(crate) expect_continue: bool,
    /// A protocol switch (WebSocket) was asked for and passed on.
    pub(crate) upgrade: bool,
    /// The configured hash header's key, when the request has that header.
    pub(crate) hash_key: Option<u64>,
}

/// What the connection needs to know of a response once its head has been rewritten.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResponseHead {
    /// Bytes of the head in the endpoint's buffer.
    pub(crate) len: usize,
    pub(crate) status: u16,
    pub(crate) framing: Framing,
    /// 1xx other than 101: passed on, and the final response follows.
    pub(crate) informational: bool,
    /// 101 to an upgrade request: both connections become a tunnel.
    pub(crate) switching: bool,
    /// The endpoint connection may carry another request after this response.
    pub(crate) reusable: bool,
    /// The client connection closes after this response (the head says so).
    pub(crate) close: bool,
}

/// The per-connection facts a request rewrite needs.
pub(crate) struct Rewrite<'a> {
    /// The client address, as `X-Forwarded-For` gets it.
    pub(crate) client_ip: &'a [u8],
    /// Consistent hashing's header name (lowercase), if configured.
    pub(crate) hash_header: Option<&'a str>,
    /// The client came over TLS: `X-Forwarded-Proto: https`.
    pub(crate) https: bool,
}

/// Headers the proxy handles itself rather than passing through.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Other,
    Host,
    Connection,
    Upgrade,
    /// Always dropped: `Keep-Alive`, `Proxy-Connection`, `TE`, `Proxy-Authorization`,
    /// `Proxy-Authenticate` (hop-by-hop, RFC 9110 §7.6.1), `X-Forwarded-Proto` (replaced).
    Dropped,
    ContentLength,
    TransferEncoding,
    Expect,
    ForwardedFor,
    RequestId,
}

fn kind(name: &str) -> Kind {
    let is = |s: &str| name.eq_ignore_ascii_case(s);
    match name.len() {
        2 if is("te") => Kind::Dropped,
        4 if is("host") => Kind::Host,
        6 if is("expect") => Kind::Expect,
        7 if is("upgrade") => Kind::Upgrade,
        10 if is("connection") => Kind::Connection,
        10 if is("keep-alive") => Kind::Dropped,
        12 if is("x-request-id") => Kind::RequestId,
        14 if is("content-length") => Kind::ContentLength,
        15 if is("x-forwarded-for") => Kind::ForwardedFor,
        16 if is("proxy-connection") => Kind::Dropped,
        17 if is("transfer-encoding") => Kind::TransferEncoding,
        17 if is("x-forwarded-proto") => Kind::Dropped,
        18 if is("proxy-authenticate") => Kind::Dropped,
        19 if is("proxy-authorization") => Kind::Dropped,
        _ => Kind::Other,
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

/// The comma-separated tokens of a list header.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|t| !t.is_empty())
}

/// Most header names one message's `Connection` headers may list. Real messages list one or
/// two; a cap keeps the check of every header against the list cheap (a message listing more
/// is refused rather than scanned quadratically).
const MAX_CONNECTION_NAMES: usize = 16;

/// The `Connection` header's options, and the header names it lists (hop-by-hop too).
#[derive(Default)]
struct ConnectionOptions<'a> {
    close: bool,
    keep_alive: bool,
    upgrade: bool,
    names: [&'a [u8]; MAX_CONNECTION_NAMES],
    named: usize,
}

impl<'a> ConnectionOptions<'a> {
    /// Adds one `Connection` header's tokens; `Err` past [`MAX_CONNECTION_NAMES`].
    fn add(&mut self, value: &'a [u8]) -> Result<(), ()> {
        for token in tokens(value) {
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if token.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade = true;
            } else {
                *self.names.get_mut(self.named).ok_or(())? = token;
                self.named += 1;
            }
        }
        Ok(())
    }

    /// Whether a header is dropped because `Connection` names it. The headers that frame or
    /// route the message never are: `Connection: content-length` is a smuggling trick.
    fn names(&self, name: &str, kind: Kind) -> bool {
        if self.named == 0
            || matches!(
                kind,
                Kind::Host | Kind::ContentLength | Kind::TransferEncoding
            )
        {
            return false;
        }
        self.names[..self.named]
            .iter()
            .any(|listed| listed.eq_ignore_ascii_case(name.as_bytes()))
    }
}

/// Whether `buf` may hold a complete head, judged from the bytes read since `from` (the length
/// already known to be incomplete): a head ends with an empty line. Saves re-parsing a head that
/// a client trickles in byte by byte.
pub(crate) fn may_be_complete(buf: &[u8], from: usize) -> bool {
    let start = from.saturating_sub(3).min(buf.len());
    buf[start..]
        .windows(2)
        .any(|pair| pair == b"\n\n" || pair == b"\n\r")
}

/// A `Content-Length` value: digits only (no sign, no list), at most 18 of them.
fn content_length(value: &[u8]) -> Option<u64> {
    let value = trim(value);
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// Collects the `Content-Length` headers of a message; differing values are an error.
fn merge_length(seen: Option<u64>, value: &[u8]) -> Result<Option<u64>, ()> {
    let n = content_length(value).ok_or(())?;
    match seen {
        Some(m) if m != n => Err(()),
        _ => Ok(Some(n)),
    }
}

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes into `out` the headers of a message (parsed from `head`, of the given kinds) that
/// `pass` keeps and its `Connection` header does not name, in their order.
fn pass_headers(
    out: &mut Vec<u8>,
    head: &[u8],
    headers: &[httparse::Header<'_>],
    kinds: &[Kind],
    connection: &ConnectionOptions<'_>,
    pass: impl Fn(&httparse::Header<'_>, Kind) -> bool,
) {
    let mut lines = PassedLines::new(head);
    for (h, &kind) in headers.iter().zip(kinds) {
        if pass(h, kind) && !connection.names(h.name, kind) {
            lines.pass(out, h.name.as_bytes(), h.value);
        }
    }
    lines.flush(out);
}

/// Writes the header lines a message passes on unchanged, copying each run of adjacent lines
/// straight from the received head in one go when they are already in canonical form
/// (`name: value` CRLF); any other line is rebuilt with [`push_header`]. A typical response
/// then costs one copy for all its passed headers instead of four per header.
struct PassedLines<'a> {
    /// The received head the header slices point into.
    head: &'a [u8],
    /// A run of canonical lines waiting to be copied: its start and end in `head`.
    run: Option<(usize, usize)>,
}

impl<'a> PassedLines<'a> {
    fn new(head: &'a [u8]) -> PassedLines<'a> {
        PassedLines { head, run: None }
    }

    /// Passes one header on.
    fn pass(&mut self, out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
        match self.canonical_line(name, value) {
            Some((start, end)) => match &mut self.run {
                Some((_, run_end)) if *run_end == start => *run_end = end,
                _ => {
                    self.flush(out);
                    self.run = Some((start, end));
                }
            },
            None => {
                self.flush(out);
                push_header(out, name, value);
            }
        }
    }

    /// Copies the pending run; call before writing anything else into `out`.
    fn flush(&mut self, out: &mut Vec<u8>) {
        if let Some((start, end)) = self.run.take() {
            out.extend_from_slice(&self.head[start..end]);
        }
    }

    /// Where the line of this header lies in `head`, CRLF included, if it reads exactly
    /// `name: value\r\n` there. Positions come from the slices' addresses (the parser's slices
    /// point into `head`); anything that does not check out is simply not canonical.
    fn canonical_line(&self, name: &[u8], value: &[u8]) -> Option<(usize, usize)> {
        let base = self.head.as_ptr() as usize;
        let start = (name.as_ptr() as usize).checked_sub(base)?;
        let value_start = (value.as_ptr() as usize).checked_sub(base)?;
        let value_end = value_start.checked_add(value.len())?;
        let end = value_end.checked_add(2)?;
        // The name is the head's bytes at `start` (its slice points there), so only what
        // separates it from the value and what ends the line need a look.
        let separator = start.checked_add(name.len())?;
        debug_assert_eq!(self.head.get(start..separator), Some(name));
        let canonical = value_start.checked_sub(separator)? == 2
            && self.head.get(separator..value_start)? == [b':', b' ']
            && self.head.get(value_end..end)? == [b'\r', b'\n'];
        canonical.then_some((start, end))
    }
}

/// A request target as it goes upstream: origin-form, plus the authority of an absolute-form
/// target (which then replaces the Host header, RFC 9112 §3.2.2).
fn split_target(target: &str) -> Result<(&str, Option<&str>), Reject> {
    if target.starts_with('/') || target == "*" {
        return Ok((target, None));
    }
    let rest = ["http://", "https://"]
        .iter()
        .find_map(|scheme| {
            target
                .get(..scheme.len())
                .filter(|s| s.eq_ignore_ascii_case(scheme))
                .map(|_| &target[scheme.len()..])
        })
        .ok_or(Reject::BadRequest("bad request target"))?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() {
        return Err(Reject::BadRequest("bad request target"));
    }
    Ok((if path.is_empty() { "/" } else { path }, Some(authority)))
}

/// Parses the request head at the start of `buf`. When complete, writes the head to send
/// upstream into `out` and returns what the connection needs to know; `Ok(None)` when more bytes
/// are needed.
pub(crate) fn parse_request(
    buf: &[u8],
    rewrite: &Rewrite<'_>,
    out: &mut Vec<u8>,
) -> Result<Option<RequestHead>, Reject> {
    let mut storage = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let len = match request.parse_with_uninit_headers(buf, &mut storage) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Reject::TooLarge),
        Err(httparse::Error::Version) => {
            return Err(Reject::BadRequest("unsupported HTTP version"))
        }
        Err(_) => return Err(Reject::BadRequest("malformed request head")),
    };
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Err(Reject::BadRequest("malformed request head"));
    };
    if method == "CONNECT" {
        return Err(Reject::MethodNotAllowed);
    }
    let headers = &*request.headers;
    let http10 = version == 0;
    let (path, target_authority) = split_target(target)?;
    let mut kinds = [Kind::Other; MAX_HEADERS];
    let facts = scan_request_headers(headers, rewrite, &mut kinds)?;
    if facts.hosts > 1 {
        return Err(Reject::BadRequest("more than one host header"));
    }
    if facts.hosts == 0 && !http10 && target_authority.is_none() {
        return Err(Reject::BadRequest("missing host header"));
    }
    let framing = request_framing(http10, facts.length, facts.transfer_encoding)?;
    // A protocol switch needs HTTP/1.1, `Connection: upgrade` with an `Upgrade` header, and no
    // body (the bytes after the head belong to the new protocol).
    let upgrade = facts
        .upgrade
        .filter(|_| facts.connection.upgrade && !http10 && framing == Framing::Empty);
    let keep_alive = if http10 {
        facts.connection.keep_alive && !facts.connection.close
    } else {
        !facts.connection.close
    };
    let line = RequestLine {
        method,
        path,
        http10,
        target_authority,
        framing,
        upgrade,
    };
    write_request_head(out, buf, headers, &kinds, &facts, &line, rewrite);
    Ok(Some(RequestHead {
        len,
        framing,
        keep_alive,
        http10,
        is_head: method == "HEAD",
        idempotent: crate::http::retry::is_idempotent_method(method),
        method: crate::http_metrics::Method::from_bytes(method.as_bytes()),
        expect_continue: facts.expect_continue,
        upgrade: upgrade.is_some(),
        hash_key: facts.hash_key,
    }))
}

/// What a request's headers say, scanned once: what framing, keep-alive and the upstream head
/// need.
#[derive(Default)]
struct RequestFacts<'b> {
    connection: ConnectionOptions<'b>,
    length: Option<u64>,
    transfer_encoding: Option<&'b [u8]>,
    hosts: usize,
    upgrade: Option<&'b [u8]>,
    expect_continue: bool,
    forwarded_for: bool,
    request_id: bool,
    hash_key: Option<u64>,
}

/// Classifies every header into `kinds` and collects the request's facts; refuses conflicting
/// framing headers and too many connection options.
#[inline]
fn scan_request_headers<'b>(
    headers: &[httparse::Header<'b>],
    rewrite: &Rewrite<'_>,
    kinds: &mut [Kind; MAX_HEADERS],
) -> Result<RequestFacts<'b>, Reject> {
    let mut f = RequestFacts::default();
    for (h, slot) in headers.iter().zip(kinds.iter_mut()) {
        *slot = kind(h.name);
        match *slot {
            Kind::Connection => f
                .connection
                .add(h.value)
                .map_err(|()| Reject::BadRequest("too many connection options"))?,
            Kind::Host => f.hosts += 1,
            Kind::Upgrade => f.upgrade = Some(h.value),
            Kind::ContentLength => {
                f.length = merge_length(f.length, h.value)
                    .map_err(|()| Reject::BadRequest("bad or conflicting content-length"))?
            }
            Kind::TransferEncoding if f.transfer_encoding.is_some() => {
                return Err(Reject::BadRequest("more than one transfer-encoding header"))
            }
            Kind::TransferEncoding => f.transfer_encoding = Some(h.value),
            Kind::Expect => {
                f.expect_continue |= trim(h.value).eq_ignore_ascii_case(b"100-continue")
            }
            Kind::ForwardedFor => f.forwarded_for = true,
            Kind::RequestId => f.request_id = true,
            Kind::Dropped | Kind::Other => {}
        }
        if f.hash_key.is_none()
            && rewrite
                .hash_header
                .is_some_and(|name| h.name.eq_ignore_ascii_case(name))
        {
            f.hash_key = Some(crate::request_key::bytes_key(h.value));
        }
    }
    Ok(f)
}

/// The request line as it goes upstream, and what decides the headers ebb writes itself.
struct RequestLine<'b> {
    method: &'b str,
    path: &'b str,
    http10: bool,
    /// The authority of an absolute-form target: it becomes the `Host` header.
    target_authority: Option<&'b str>,
    framing: Framing,
    /// The protocol of an accepted upgrade.
    upgrade: Option<&'b [u8]>,
}

/// Writes the head to send upstream into `out`: the request line, the end-to-end headers as
/// received, then ebb's own (`Host` of an absolute target, normalized framing,
/// `X-Forwarded-For`/`-Proto`, `X-Request-Id`, the upgrade or HTTP/1.0 keep-alive).
#[inline]
fn write_request_head(
    out: &mut Vec<u8>,
    buf: &[u8],
    headers: &[httparse::Header<'_>],
    kinds: &[Kind; MAX_HEADERS],
    facts: &RequestFacts<'_>,
    line: &RequestLine<'_>,
    rewrite: &Rewrite<'_>,
) {
    out.clear();
    out.extend_from_slice(line.method.as_bytes());
    out.push(b' ');
    if line.path.starts_with('?') {
        out.push(b'/'); // `http://host?q` has an empty path: origin-form needs `/?q`
    }
    out.extend_from_slice(line.path.as_bytes());
    // An HTTP/1.0 request goes up as HTTP/1.0, so that the response comes back without chunked
    // framing, which the client would not understand.
    out.extend_from_slice(if line.http10 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    let absolute = line.target_authority.is_some();
    pass_headers(
        out,
        buf,
        headers,
        kinds,
        &facts.connection,
        |h, kind| match kind {
            Kind::Other | Kind::ContentLength | Kind::RequestId => true,
            Kind::Host => !absolute,
            Kind::TransferEncoding => false, // written below, normalized
            Kind::Expect => !trim(h.value).eq_ignore_ascii_case(b"100-continue"),
            Kind::Connection | Kind::Upgrade | Kind::Dropped | Kind::ForwardedFor => false,
        },
    );
    if let Some(authority) = line.target_authority {
        push_header(out, b"Host", authority.as_bytes());
    }
    if line.framing == Framing::Chunked {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    write_forwarded_for(out, headers, kinds, facts, rewrite);
    if !facts.request_id {
        out.extend_from_slice(b"X-Request-Id: ");
        out.extend_from_slice(&super::super::headers::request_id_hex());
        out.extend_from_slice(b"\r\n");
    }
    match line.upgrade {
        Some(protocol) => {
            out.extend_from_slice(b"Connection: upgrade\r\n");
            push_header(out, b"Upgrade", protocol);
        }
        None if line.http10 => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        None => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// `X-Forwarded-For` (the received ones, then the client) and `X-Forwarded-Proto`.
#[inline]
fn write_forwarded_for(
    out: &mut Vec<u8>,
    headers: &[httparse::Header<'_>],
    kinds: &[Kind; MAX_HEADERS],
    facts: &RequestFacts<'_>,
    rewrite: &Rewrite<'_>,
) {
    out.extend_from_slice(b"X-Forwarded-For: ");
    if facts.forwarded_for
        && !facts
            .connection
            .names("x-forwarded-for", Kind::ForwardedFor)
    {
        for (h, _) in headers
            .iter()
            .zip(kinds.iter())
            .filter(|(_, &kind)| kind == Kind::ForwardedFor)
        {
            out.extend_from_slice(trim(h.value));
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(rewrite.client_ip);
    out.extend_from_slice(if rewrite.https {
        b"\r\nX-Forwarded-Proto: https\r\n"
    } else {
        b"\r\nX-Forwarded-Proto: http\r\n"
    });
}

/// How a request body is delimited, refusing every shape two parsers could read differently.
fn request_framing(
    http10: bool,
    length: Option<u64>,
    transfer_encoding: Option<&[u8]>,
) -> Result<Framing, Reject> {
    match (transfer_encoding, length) {
        (None, None | Some(0)) => Ok(Framing::Empty),
        (None, Some(n)) => Ok(Framing::Length(n)),
        (Some(_), _) if http10 => Err(Reject::BadRequest(
            "transfer-encoding in an HTTP/1.0 request",
        )),
        (Some(_), Some(_)) => Err(Reject::BadRequest(
            "both content-length and transfer-encoding",
        )),
        (Some(value), None) if trim(value).eq_ignore_ascii_case(b"chunked") => Ok(Framing::Chunked),
        (Some(_), None) => Err(Reject::NotImplemented("transfer coding other than chunked")),
    }
}

/// What a response is answering.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Answering {
    pub(crate) is_head: bool,
    pub(crate) http10: bool,
    pub(crate) upgrade: bool,
    /// The client connection must close after this response (the client asked, or the proxy is
    /// shutting down).
    pub(crate) close: bool,
}

/// Parses the response head at the start of `buf`. When complete, writes the head to send to the
/// client into `out` and returns what the connection needs to know; `Ok(None)` when more bytes
/// are needed; `Err` for a response the client must get a 502 for instead.
pub(crate) fn parse_response(
    buf: &[u8],
    answering: Answering,
    out: &mut Vec<u8>,
) -> Result<Option<ResponseHead>, ()> {
    let mut storage = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let config = httparse::ParserConfig::default();
    let len = match config.parse_response_with_uninit_headers(&mut response, buf, &mut storage) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(()),
    };
    let (Some(version), Some(status)) = (response.version, response.code) else {
        return Err(());
    };
    let headers = &*response.headers;
    let switching = status == 101;
    if switching && !answering.upgrade {
        return Err(()); // a switch nobody asked for
    }
    let informational = (100..200).contains(&status) && !switching;

    let mut kinds = [Kind::Other; MAX_HEADERS];
    let facts = scan_response_headers(headers, &mut kinds)?;
    let bodiless =
        informational || switching || answering.is_head || status == 204 || status == 304;
    let framing = if bodiless {
        Framing::Empty
    } else {
        facts.framing()
    };
    let reusable = !switching
        && framing != Framing::UntilClose
        && !facts.connection.close
        && (version == 1 || facts.connection.keep_alive);
    let close = answering.close || framing == Framing::UntilClose;
    let line = StatusLine {
        status,
        reason: response.reason.unwrap_or(""),
        informational,
        switching,
        close,
    };
    write_response_head(out, buf, headers, &kinds, &facts, &line, answering);
    Ok(Some(ResponseHead {
        len,
        status,
        framing,
        informational,
        switching,
        reusable,
        close,
    }))
}

/// What a response's headers say about its framing and connection, scanned once.
#[derive(Default)]
struct ResponseFacts<'b> {
    connection: ConnectionOptions<'b>,
    length: Option<u64>,
    /// Whether the last transfer coding is chunked; `None` without `Transfer-Encoding`.
    chunked: Option<bool>,
    upgrade: Option<&'b [u8]>,
}

impl ResponseFacts<'_> {
    /// How the body is delimited, for a response that may have one (RFC 9112 §6.3).
    fn framing(&self) -> Framing {
        match (self.chunked, self.length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) | (None, None) => Framing::UntilClose,
            (None, Some(0)) => Framing::Empty,
            (None, Some(n)) => Framing::Length(n),
        }
    }
}

/// Classifies every header into `kinds` and collects the response's facts; `Err` for
/// conflicting lengths or too many connection options (the client gets a 502).
#[inline]
fn scan_response_headers<'b>(
    headers: &[httparse::Header<'b>],
    kinds: &mut [Kind; MAX_HEADERS],
) -> Result<ResponseFacts<'b>, ()> {
    let mut f = ResponseFacts::default();
    for (h, slot) in headers.iter().zip(kinds.iter_mut()) {
        *slot = kind(h.name);
        match *slot {
            Kind::Connection => f.connection.add(h.value)?,
            Kind::ContentLength => f.length = merge_length(f.length, h.value)?,
            Kind::TransferEncoding => {
                // The last coding of the last header decides (RFC 9112 §6.3).
                let last = tokens(h.value).last();
                f.chunked = Some(last.is_some_and(|t| t.eq_ignore_ascii_case(b"chunked")));
            }
            Kind::Upgrade => f.upgrade = Some(h.value),
            _ => {}
        }
    }
    Ok(f)
}

/// The status line as it goes to the client, and what decides ebb's own headers.
struct StatusLine<'b> {
    status: u16,
    reason: &'b str,
    informational: bool,
    switching: bool,
    close: bool,
}

/// Writes the head to send to the client into `out`: the status line, the end-to-end headers
/// as received, then the connection headers ebb decides.
#[inline]
fn write_response_head(
    out: &mut Vec<u8>,
    buf: &[u8],
    headers: &[httparse::Header<'_>],
    kinds: &[Kind; MAX_HEADERS],
    facts: &ResponseFacts<'_>,
    line: &StatusLine<'_>,
    answering: Answering,
) {
    let status = line.status;
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(&[
        b'0' + (status / 100 % 10) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
        b' ',
    ]);
    out.extend_from_slice(line.reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    let chunked = facts.chunked == Some(true);
    pass_headers(
        out,
        buf,
        headers,
        kinds,
        &facts.connection,
        |_, kind| match kind {
            Kind::Connection | Kind::Upgrade | Kind::Dropped => false,
            // With chunked framing a Content-Length is wrong (RFC 9112 §6.3); drop it.
            Kind::ContentLength => !chunked || answering.is_head,
            _ => true,
        },
    );
    if line.switching {
        out.extend_from_slice(b"Connection: upgrade\r\n");
        push_header(out, b"Upgrade", facts.upgrade.unwrap_or(b""));
    } else if !line.informational {
        if line.close {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if answering.http10 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const REWRITE: Rewrite<'static> = Rewrite {
        client_ip: b"10.0.0.7",
        hash_header: Some("x-user"),
        https: false,
    };

    fn request(raw: &str) -> (Result<Option<RequestHead>, Reject>, String) {
        let mut out = Vec::new();
        let parsed = parse_request(raw.as_bytes(), &REWRITE, &mut out);
        (parsed, String::from_utf8(out).unwrap())
    }

    #[test]
    fn a_client_over_tls_is_forwarded_as_https_whatever_it_claims() {
        let tls = Rewrite {
            https: true,
            ..REWRITE
        };
        let mut out = Vec::new();
        let raw = "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: http\r\n\r\n";
        assert!(matches!(
            parse_request(raw.as_bytes(), &tls, &mut out),
            Ok(Some(_))
        ));
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("X-Forwarded-Proto: https\r\n"), "{out}");
        assert_eq!(out.matches("X-Forwarded-Proto").count(), 1, "{out}");
        let (_, plain) = ok(raw);
        assert!(plain.contains("X-Forwarded-Proto: http\r\n"), "{plain}");
    }

    fn ok(raw: &str) -> (RequestHead, String) {
        match request(raw) {
            (Ok(Some(head)), out) => (head, out),
            (other, _) => panic!("{raw:?}: {other:?}"),
        }
    }

    fn rejected(raw: &str) -> Reject {
        match request(raw).0 {
            Err(reject) => reject,
            other => panic!("{raw:?} was accepted: {other:?}"),
        }
    }

    #[test]
    fn a_plain_get_is_rewritten_with_forwarding_headers() {
        let (head, out) = ok("GET /a?b HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\nNEXT");
        assert_eq!(
            head.len,
            "GET /a?b HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n".len()
        );
        assert_eq!(head.framing, Framing::Empty);
        assert!(head.keep_alive && head.idempotent && !head.http10 && !head.upgrade);
        assert!(out.starts_with(
            "GET /a?b HTTP/1.1\r\nHost: x\r\nAccept: */*\r\nX-Forwarded-For: 10.0.0.7\r\nX-Forwarded-Proto: http\r\nX-Request-Id: "
        ), "{out}");
        assert!(out.ends_with("\r\n\r\n"));
    }

    #[test]
    fn passed_lines_keep_their_order_and_leave_in_canonical_form() {
        // Canonical runs are copied as they are; odd spacing, bare LF line ends and empty
        // values are rebuilt; dropped headers split the runs; order is kept throughout.
        let (_, out) = ok(concat!(
            "GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB:2\r\nC:   3\r\nKeep-Alive: 5\r\n",
            "D: 4\r\nE: 5\nF:\r\nG: 7\r\nH: 8\r\n\r\n"
        ));
        let headers = out.split("X-Forwarded-For").next().unwrap_or_default();
        assert_eq!(
            headers,
            concat!(
                "GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n",
                "F: \r\nG: 7\r\nH: 8\r\n"
            )
        );
        let (_, out) = ok_response(
            "HTTP/1.1 200 OK\r\nServer: s\r\nDate: d\r\nConnection: keep-alive\r\nX-A:a\r\nContent-Length: 0\r\n\r\n",
            PLAIN,
        );
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nServer: s\r\nDate: d\r\nX-A: a\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn a_partial_head_asks_for_more() {
        assert!(matches!(
            request("GET / HTTP/1.1\r\nHost: x\r\n").0,
            Ok(None)
        ));
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        for raw in [
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost : x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
            "GET /\0 HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET foo HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/2.0\r\nHost: x\r\n\r\n",
        ] {
            assert!(
                matches!(rejected(raw), Reject::BadRequest(_)),
                "{raw:?} not refused with 400"
            );
        }
        assert!(matches!(
            rejected("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Reject::NotImplemented(_)
        ));
        assert_eq!(
            rejected("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Reject::MethodNotAllowed
        );
    }

    #[test]
    fn equal_repeated_lengths_and_chunked_are_framed() {
        let (head, out) =
            ok("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n");
        assert_eq!(head.framing, Framing::Length(5));
        assert!(!head.idempotent);
        assert_eq!(out.matches("ength: 5").count(), 2);
        let (head, out) = ok("POST / HTTP/1.1\r\nHost: x\r\ntransfer-encoding:  Chunked \r\n\r\n");
        assert_eq!(head.framing, Framing::Chunked);
        assert!(out.contains("Transfer-Encoding: chunked\r\n"));
        assert!(!out.contains("transfer-encoding:"));
    }

    #[test]
    fn connection_cannot_strip_the_headers_that_frame_the_message() {
        let (head, out) = ok(
            "POST / HTTP/1.1\r\nHost: x\r\nConnection: content-length, host, x-secret\r\nx-secret: 1\r\nContent-Length: 3\r\n\r\n",
        );
        assert_eq!(head.framing, Framing::Length(3));
        assert!(out.contains("Content-Length: 3\r\n"), "{out}");
        assert!(out.contains("Host: x\r\n"));
        assert!(!out.contains("x-secret"));
        assert!(!out.contains("Connection"));
    }

    #[test]
    fn hop_by_hop_headers_are_dropped_and_forwarding_headers_replaced() {
        let (_, out) = ok("GET / HTTP/1.1\r\nHost: x\r\nKeep-Alive: 5\r\nTE: trailers\r\nProxy-Connection: x\r\nProxy-Authorization: basic\r\nX-Forwarded-Proto: https\r\nX-Forwarded-For: 1.2.3.4\r\nx-forwarded-for: 5.6.7.8 \r\nX-Request-Id: abc\r\n\r\n");
        for gone in ["Keep-Alive", "TE:", "Proxy-", "https"] {
            assert!(!out.contains(gone), "{gone} in {out}");
        }
        assert!(
            out.contains("X-Forwarded-For: 1.2.3.4, 5.6.7.8, 10.0.0.7\r\n"),
            "{out}"
        );
        assert!(out.contains("X-Request-Id: abc\r\n"));
        assert_eq!(out.matches("X-Request-Id").count(), 1);
    }

    #[test]
    fn absolute_form_targets_become_origin_form_with_their_host() {
        let (_, out) = ok("GET http://Example.test:8080?q=1 HTTP/1.1\r\nHost: other\r\n\r\n");
        assert!(out.starts_with("GET /?q=1 HTTP/1.1\r\n"), "{out}");
        assert!(out.contains("Host: Example.test:8080\r\n"));
        assert!(!out.contains("other"));
        let (_, out) = ok("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(out.starts_with("OPTIONS * HTTP/1.1\r\n"));
    }

    #[test]
    fn http10_requests_go_up_as_http10_with_keep_alive() {
        let (head, out) = ok("GET / HTTP/1.0\r\n\r\n");
        assert!(head.http10 && !head.keep_alive);
        assert!(out.starts_with("GET / HTTP/1.0\r\n"));
        assert!(out.contains("Connection: keep-alive\r\n"));
        let (head, _) = ok("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert!(head.keep_alive);
        let (head, _) = ok("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        assert!(!head.keep_alive);
    }

    #[test]
    fn upgrades_keep_connection_and_upgrade_only_when_asked_properly() {
        let (head, out) = ok("GET /ws HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n");
        assert!(head.upgrade);
        assert!(
            out.contains("Connection: upgrade\r\nUpgrade: websocket\r\n"),
            "{out}"
        );
        let (head, out) = ok("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n");
        assert!(!head.upgrade);
        assert!(!out.contains("pgrade"));
        let (head, _) = ok("POST /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 2\r\n\r\n");
        assert!(!head.upgrade, "a request with a body is not switched");
    }

    #[test]
    fn expect_continue_is_answered_by_the_proxy_and_others_pass() {
        let (head, out) =
            ok("PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n");
        assert!(head.expect_continue);
        assert!(!out.contains("Expect"));
        let (head, out) =
            ok("PUT / HTTP/1.1\r\nHost: x\r\nExpect: other\r\nContent-Length: 1\r\n\r\n");
        assert!(!head.expect_continue);
        assert!(out.contains("Expect: other\r\n"));
    }

    #[test]
    fn the_hash_header_gives_the_key() {
        let (head, _) = ok("GET / HTTP/1.1\r\nHost: x\r\nX-User: alice\r\n\r\n");
        assert_eq!(head.hash_key, Some(crate::request_key::bytes_key(b"alice")));
        let (head, _) = ok("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(head.hash_key, None);
    }

    #[test]
    fn a_connection_header_listing_too_many_names_is_refused() {
        let names: Vec<String> = (0..=MAX_CONNECTION_NAMES)
            .map(|i| format!("x-{i}"))
            .collect();
        let raw = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: {}\r\n\r\n",
            names.join(", ")
        );
        assert!(matches!(rejected(&raw), Reject::BadRequest(_)));
    }

    #[test]
    fn completeness_is_judged_from_the_new_bytes() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(may_be_complete(head, 0));
        assert!(may_be_complete(head, head.len() - 1));
        assert!(!may_be_complete(&head[..head.len() - 2], 0));
        assert!(may_be_complete(b"GET / HTTP/1.0\n\n", 14));
    }

    #[test]
    fn too_many_headers_is_too_large() {
        let mut raw = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
        for i in 0..MAX_HEADERS {
            raw.push_str(&format!("x-{i}: v\r\n"));
        }
        raw.push_str("\r\n");
        assert_eq!(rejected(&raw), Reject::TooLarge);
    }

    const PLAIN: Answering = Answering {
        is_head: false,
        http10: false,
        upgrade: false,
        close: false,
    };

    fn response(raw: &str, answering: Answering) -> (Result<Option<ResponseHead>, ()>, String) {
        let mut out = Vec::new();
        let parsed = parse_response(raw.as_bytes(), answering, &mut out);
        (parsed, String::from_utf8(out).unwrap())
    }

    fn ok_response(raw: &str, answering: Answering) -> (ResponseHead, String) {
        match response(raw, answering) {
            (Ok(Some(head)), out) => (head, out),
            (other, _) => panic!("{raw:?}: {other:?}"),
        }
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let cases: [(&str, Answering, Framing, bool); 8] = [
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n",
                PLAIN,
                Framing::Length(3),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                PLAIN,
                Framing::Chunked,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                PLAIN,
                Framing::UntilClose,
                false,
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", PLAIN, Framing::UntilClose, false),
            (
                "HTTP/1.1 204 No Content\r\n\r\n",
                PLAIN,
                Framing::Empty,
                true,
            ),
            (
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                PLAIN,
                Framing::Empty,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
                Answering {
                    is_head: true,
                    ..PLAIN
                },
                Framing::Empty,
                true,
            ),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n",
                PLAIN,
                Framing::Length(3),
                false,
            ),
        ];
        for (raw, answering, framing, reusable) in cases {
            let (head, _) = ok_response(raw, answering);
            assert_eq!(
                (head.framing, head.reusable),
                (framing, reusable),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn response_heads_are_rewritten_for_the_client() {
        let (head, out) = ok_response(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\nConnection: x-hop\r\nx-hop: 1\r\nKeep-Alive: 5\r\nX-App: yes\r\n\r\n",
            PLAIN,
        );
        assert!(!head.close);
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-App: yes\r\n\r\n"
        );
        let (head, out) = ok_response("HTTP/1.1 200 OK\r\n\r\n", PLAIN);
        assert!(head.close, "a body until close closes the client too");
        assert!(out.ends_with("Connection: close\r\n\r\n"));
        let (_, out) = ok_response(
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            Answering {
                http10: true,
                ..PLAIN
            },
        );
        assert!(out.ends_with("Connection: keep-alive\r\n\r\n"));
    }

    #[test]
    fn informational_and_switching_responses() {
        let (head, out) = ok_response("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", PLAIN);
        assert!(head.informational && !head.switching);
        assert_eq!(out, "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n");
        let switch =
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
        assert!(
            response(switch, PLAIN).0.is_err(),
            "a switch nobody asked for"
        );
        let (head, out) = ok_response(
            switch,
            Answering {
                upgrade: true,
                ..PLAIN
            },
        );
        assert!(head.switching && !head.reusable);
        assert!(
            out.ends_with("Connection: upgrade\r\nUpgrade: websocket\r\n\r\n"),
            "{out}"
        );
    }

    #[test]
    fn broken_responses_are_errors() {
        for raw in [
            "NOT HTTP\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        ] {
            assert!(response(raw, PLAIN).0.is_err(), "{raw:?}");
        }
    }

    proptest! {
        /// Whatever bytes arrive, parsing never panics; and an accepted request's rewritten head
        /// parses again to the same framing (the endpoint reads the body as the proxy did).
        #[test]
        fn rewritten_heads_reparse_to_the_same_framing(
            method in "(GET|POST|PUT|DELETE)",
            headers in prop::collection::vec(
                prop_oneof![
                    Just("Content-Length: 7".to_string()),
                    Just("Content-Length: 8".to_string()),
                    Just("Transfer-Encoding: chunked".to_string()),
                    Just("Connection: close, content-length".to_string()),
                    Just("Host: h".to_string()),
                    "[a-zA-Z-]{1,12}: [ -~]{0,16}",
                ],
                0..8,
            ),
            version in "HTTP/1\\.[01]",
        ) {
            let mut raw = format!("{method} / {version}\r\n");
            for h in &headers {
                raw.push_str(h);
                raw.push_str("\r\n");
            }
            raw.push_str("\r\n");
            let (parsed, out) = request(&raw);
            if let Ok(Some(head)) = parsed {
                prop_assert_eq!(head.len, raw.len());
                let mut again = Vec::new();
                let reparsed = parse_request(out.as_bytes(), &REWRITE, &mut again);
                match reparsed {
                    Ok(Some(second)) => prop_assert_eq!(second.framing, head.framing),
                    other => prop_assert!(false, "rewritten head {:?} gave {:?}", out, other),
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..400)) {
            let mut out = Vec::new();
            let _ = parse_request(&input, &REWRITE, &mut out);
            let _ = parse_response(&input, PLAIN, &mut out);
        }
    }
}
