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

/// The `Connection` header's options.
#[derive(Default)]
struct ConnectionOptions {
    close: bool,
    keep_alive: bool,
    upgrade: bool,
    /// It names other headers, which are then hop-by-hop too.
    names_headers: bool,
}

impl ConnectionOptions {
    fn add(&mut self, value: &[u8]) {
        for token in tokens(value) {
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if token.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade = true;
            } else {
                self.names_headers = true;
            }
        }
    }
}

/// Whether a header is dropped because `Connection` names it. The headers that frame or route
/// the message are never dropped this way: `Connection: content-length` is a smuggling trick.
fn named_by_connection(headers: &[httparse::Header<'_>], name: &str, kind: Kind) -> bool {
    if matches!(
        kind,
        Kind::Host | Kind::ContentLength | Kind::TransferEncoding
    ) {
        return false;
    }
    headers.iter().any(|h| {
        self::kind(h.name) == Kind::Connection
            && tokens(h.value).any(|t| t.eq_ignore_ascii_case(name.as_bytes()))
    })
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

/// RFC 9110 §9.2.2's idempotent methods that a retry may repeat (TRACE left out, as Envoy's
/// idempotent retry set does).
fn is_idempotent(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE")
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

    let mut connection = ConnectionOptions::default();
    let mut length = None;
    let mut transfer_encoding: Option<&[u8]> = None;
    let mut hosts = 0;
    let mut upgrade: Option<&[u8]> = None;
    let mut expect_continue = false;
    let mut forwarded_for = false;
    let mut request_id = false;
    let mut hash_key = None;
    for h in headers {
        match kind(h.name) {
            Kind::Connection => connection.add(h.value),
            Kind::Host => hosts += 1,
            Kind::Upgrade => upgrade = Some(h.value),
            Kind::ContentLength => {
                length = merge_length(length, h.value)
                    .map_err(|()| Reject::BadRequest("bad or conflicting content-length"))?
            }
            Kind::TransferEncoding if transfer_encoding.is_some() => {
                return Err(Reject::BadRequest("more than one transfer-encoding header"))
            }
            Kind::TransferEncoding => transfer_encoding = Some(h.value),
            Kind::Expect => expect_continue |= trim(h.value).eq_ignore_ascii_case(b"100-continue"),
            Kind::ForwardedFor => forwarded_for = true,
            Kind::RequestId => request_id = true,
            Kind::Dropped | Kind::Other => {}
        }
        if hash_key.is_none()
            && rewrite
                .hash_header
                .is_some_and(|name| h.name.eq_ignore_ascii_case(name))
        {
            hash_key = Some(crate::request_key::bytes_key(h.value));
        }
    }
    if hosts > 1 {
        return Err(Reject::BadRequest("more than one host header"));
    }
    if hosts == 0 && !http10 && target_authority.is_none() {
        return Err(Reject::BadRequest("missing host header"));
    }
    let framing = request_framing(http10, length, transfer_encoding)?;
    // A protocol switch needs HTTP/1.1, `Connection: upgrade` with an `Upgrade` header, and no
    // body (the bytes after the head belong to the new protocol).
    let upgrade = upgrade.filter(|_| connection.upgrade && !http10 && framing == Framing::Empty);
    let keep_alive = if http10 {
        connection.keep_alive && !connection.close
    } else {
        !connection.close
    };

    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    // An HTTP/1.0 request goes up as HTTP/1.0, so that the response comes back without chunked
    // framing, which the client would not understand.
    out.extend_from_slice(if http10 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    for h in headers {
        let kind = kind(h.name);
        let pass = match kind {
            Kind::Other | Kind::ContentLength | Kind::RequestId => true,
            Kind::Host => target_authority.is_none(),
            Kind::TransferEncoding => false, // written below, normalized
            Kind::Expect => !trim(h.value).eq_ignore_ascii_case(b"100-continue"),
            Kind::Connection | Kind::Upgrade | Kind::Dropped | Kind::ForwardedFor => false,
        };
        if pass && !(connection.names_headers && named_by_connection(headers, h.name, kind)) {
            push_header(out, h.name.as_bytes(), h.value);
        }
    }
    if let Some(authority) = target_authority {
        push_header(out, b"Host", authority.as_bytes());
    }
    if framing == Framing::Chunked {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    out.extend_from_slice(b"X-Forwarded-For: ");
    if forwarded_for
        && !(connection.names_headers
            && named_by_connection(headers, "x-forwarded-for", Kind::ForwardedFor))
    {
        for h in headers
            .iter()
            .filter(|h| kind(h.name) == Kind::ForwardedFor)
        {
            out.extend_from_slice(trim(h.value));
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(rewrite.client_ip);
    out.extend_from_slice(b"\r\nX-Forwarded-Proto: http\r\n");
    if !request_id {
        out.extend_from_slice(b"X-Request-Id: ");
        out.extend_from_slice(&super::super::headers::request_id_hex());
        out.extend_from_slice(b"\r\n");
    }
    match upgrade {
        Some(protocol) => {
            out.extend_from_slice(b"Connection: upgrade\r\n");
            push_header(out, b"Upgrade", protocol);
        }
        None if http10 => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        None => {}
    }
    out.extend_from_slice(b"\r\n");

    Ok(Some(RequestHead {
        len,
        framing,
        keep_alive,
        http10,
        is_head: method == "HEAD",
        idempotent: is_idempotent(method),
        expect_continue,
        upgrade: upgrade.is_some(),
        hash_key,
    }))
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
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut storage);
    let len = match response.parse(buf) {
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

    let mut connection = ConnectionOptions::default();
    let mut length = None;
    let mut chunked = None;
    let mut upgrade = None;
    for h in headers {
        match kind(h.name) {
            Kind::Connection => connection.add(h.value),
            Kind::ContentLength => length = merge_length(length, h.value)?,
            Kind::TransferEncoding => {
                // The last coding of the last header decides (RFC 9112 §6.3).
                chunked = Some(
                    tokens(h.value)
                        .last()
                        .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked")),
                )
            }
            Kind::Upgrade => upgrade = Some(h.value),
            _ => {}
        }
    }
    let framing =
        if informational || switching || answering.is_head || status == 204 || status == 304 {
            Framing::Empty
        } else {
            match (chunked, length) {
                (Some(true), _) => Framing::Chunked,
                (Some(false), _) | (None, None) => Framing::UntilClose,
                (None, Some(0)) => Framing::Empty,
                (None, Some(n)) => Framing::Length(n),
            }
        };
    let reusable = !switching
        && framing != Framing::UntilClose
        && !connection.close
        && (version == 1 || connection.keep_alive);
    let close = answering.close || framing == Framing::UntilClose;

    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(&[
        b'0' + (status / 100 % 10) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
        b' ',
    ]);
    out.extend_from_slice(response.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in headers {
        let kind = kind(h.name);
        let pass = match kind {
            Kind::Connection | Kind::Upgrade | Kind::Dropped => false,
            // With chunked framing a Content-Length is wrong (RFC 9112 §6.3); drop it.
            Kind::ContentLength => chunked != Some(true) || answering.is_head,
            _ => true,
        };
        if pass && !(connection.names_headers && named_by_connection(headers, h.name, kind)) {
            push_header(out, h.name.as_bytes(), h.value);
        }
    }
    if switching {
        out.extend_from_slice(b"Connection: upgrade\r\n");
        push_header(out, b"Upgrade", upgrade.unwrap_or(b""));
    } else if !informational {
        if close {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if answering.http10 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
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
