//! Header rewriting between client and endpoint: hop-by-hop headers are dropped (RFC 9110
//! §7.6.1: they describe one connection, not the message), and the forwarding headers an
//! application needs to see its real client are added.

use crate::balance::rng::Rng;
use hyper::body::Bytes;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::sync::LazyLock;

pub(super) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(super) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(super) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Hop-by-hop headers by name (RFC 9110 §7.6.1, plus the legacy `Keep-Alive` and
/// `Proxy-Connection` that clients still send). `Proxy-Authorization` and `Proxy-Authenticate`
/// are addressed to a proxy, which we are. Named constants, so that checking them parses no
/// string per request.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    KEEP_ALIVE,
    header::TRANSFER_ENCODING,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    PROXY_CONNECTION,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
];

/// The `Upgrade` value when the client asks to switch protocols (`Connection: upgrade` with an
/// `Upgrade` header, e.g. WebSocket); None for an ordinary request.
pub(super) fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    asks.then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
}

/// Rewrites a request's headers for the endpoint. `upgrade` keeps a protocol switch alive
/// (it is the one hop-by-hop exchange a proxy must pass on).
/// `client_ip` is the client's address as a header value, made once per connection.
/// `https`: the client came over TLS (`X-Forwarded-Proto`).
pub(super) fn prepare_request(
    headers: &mut HeaderMap,
    client_ip: &HeaderValue,
    upgrade: Option<HeaderValue>,
    https: bool,
) {
    strip_hop_by_hop(headers);
    append_forwarded_for(headers, client_ip);
    let proto = if https { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    if !headers.contains_key(X_REQUEST_ID) {
        headers.insert(X_REQUEST_ID, new_request_id());
    }
    if let Some(protocol) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }
}

/// Rewrites a response's headers for the client; a 101 keeps its `Connection`/`Upgrade`.
pub(super) fn prepare_response(headers: &mut HeaderMap, switching_protocols: bool) {
    let upgrade = switching_protocols
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten();
    strip_hop_by_hop(headers);
    if let Some(protocol) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }
}

/// Removes the fixed hop-by-hop headers and every header the `Connection` header names.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // The usual message has none: one pass over the names (cheap comparisons of known
    // headers) instead of a hashed lookup per hop-by-hop name.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    // Allocates only when a Connection header is present (HTTP/1.1 clients rarely send one).
    let named: Vec<HeaderValue> = headers
        .get_all(header::CONNECTION)
        .iter()
        .cloned()
        .collect();
    for value in &named {
        for token in value.to_str().unwrap_or("").split(',') {
            let token = token.trim();
            if !token.is_empty() {
                headers.remove(token);
            }
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The client's address as an `X-Forwarded-For` entry (once per connection, shared by its
/// requests: cloning a header value is a reference count, not a copy).
pub(super) fn client_ip_value(ip: std::net::IpAddr) -> HeaderValue {
    HeaderValue::from_maybe_shared(Bytes::from(ip.to_string()))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Sets `X-Forwarded-For` to the client's address, or appends it to the list the request
/// brought, folding repeated headers into one.
fn append_forwarded_for(headers: &mut HeaderMap, client_ip: &HeaderValue) {
    if !headers.contains_key(&X_FORWARDED_FOR) {
        headers.insert(X_FORWARDED_FOR, client_ip.clone());
        return;
    }
    let mut list = String::new();
    for value in headers.get_all(&X_FORWARDED_FOR) {
        if let Ok(value) = value.to_str() {
            list.push_str(value);
            list.push_str(", ");
        }
    }
    list.push_str(client_ip.to_str().unwrap_or("unknown"));
    if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(list)) {
        headers.insert(X_FORWARDED_FOR, value);
    }
}

/// A random 128-bit id in lowercase hex: unique enough to join logs across services without
/// coordination (the same size as a W3C trace id).
fn new_request_id() -> HeaderValue {
    HeaderValue::from_bytes(&request_id_hex()).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// Where request ids come from: a SplitMix64 stream seeded per process. An id must be unique,
/// not secret (a client may send its own), and two draws cost a few multiplies where the thread
/// RNG's ChaCha block costs hundreds of instructions per request. SplitMix64 maps distinct
/// states to distinct words, so a process repeats no id before 2^63 requests.
static REQUEST_IDS: LazyLock<Rng> = LazyLock::new(Rng::new);

/// A new request id's 32 hex digits (shared by the hyper and the HTTP/1.1 paths).
pub(super) fn request_id_hex() -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let (high, low) = REQUEST_IDS.next_pair();
    let mut id = [0u8; 32];
    for (half, word) in id.chunks_exact_mut(16).zip([high, low]) {
        for (i, digit) in half.iter_mut().enumerate() {
            *digit = HEX[((word >> (60 - 4 * i)) & 0xf) as usize];
        }
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    const CLIENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7));

    fn client() -> HeaderValue {
        client_ip_value(CLIENT_IP)
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_are_dropped() {
        let mut map = headers(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("proxy-authorization", "basic x"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut map);
        assert_eq!(map.len(), 1);
        assert_eq!(map["x-kept"], "yes");
    }

    #[test]
    fn forwarded_for_is_appended_to_an_existing_list() {
        let mut map = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "5.6.7.8"),
        ]);
        prepare_request(&mut map, &client(), None, false);
        assert_eq!(map[X_FORWARDED_FOR], "1.2.3.4, 5.6.7.8, 10.0.0.7");
        assert_eq!(map[X_FORWARDED_PROTO], "http");
    }

    #[test]
    fn a_first_forwarded_for_is_the_client_address() {
        let mut map = HeaderMap::new();
        prepare_request(&mut map, &client(), None, false);
        assert_eq!(map[X_FORWARDED_FOR], "10.0.0.7");
    }

    #[test]
    fn proxy_authenticate_is_dropped_from_responses() {
        let mut map = headers(&[("proxy-authenticate", "basic"), ("x-kept", "yes")]);
        prepare_response(&mut map, false);
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn a_request_id_is_added_when_absent_and_kept_when_present() {
        let mut fresh = HeaderMap::new();
        prepare_request(&mut fresh, &client(), None, false);
        let id = fresh[X_REQUEST_ID].to_str().unwrap();
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));

        let mut given = headers(&[("x-request-id", "abc")]);
        prepare_request(&mut given, &client(), None, false);
        assert_eq!(given[X_REQUEST_ID], "abc");
    }

    #[test]
    fn request_ids_are_distinct_lowercase_hex_and_use_every_digit() {
        let ids: std::collections::HashSet<[u8; 32]> =
            (0..50_000).map(|_| request_id_hex()).collect();
        assert_eq!(ids.len(), 50_000, "a request id repeated");
        let mut seen = [false; 16];
        for id in &ids {
            for &b in id {
                let digit = (b as char).to_digit(16).expect("hex digit");
                assert!(!b.is_ascii_uppercase());
                seen[digit as usize] = true;
            }
        }
        assert!(seen.iter().all(|&s| s), "every hex digit appears: {seen:?}");
        // Both halves vary (a stuck half would halve the id's entropy).
        let firsts: std::collections::HashSet<_> = ids.iter().map(|id| id[..16].to_vec()).collect();
        let lasts: std::collections::HashSet<_> = ids.iter().map(|id| id[16..].to_vec()).collect();
        assert_eq!((firsts.len(), lasts.len()), (50_000, 50_000));
    }

    #[test]
    fn an_upgrade_keeps_connection_and_upgrade() {
        let mut map = headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ]);
        let protocol = upgrade_protocol(&map);
        assert_eq!(protocol.as_ref().unwrap(), "websocket");
        prepare_request(&mut map, &client(), protocol, false);
        assert_eq!(map[header::CONNECTION], "upgrade");
        assert_eq!(map[header::UPGRADE], "websocket");
    }

    #[test]
    fn upgrade_without_connection_upgrade_is_not_an_upgrade() {
        assert!(upgrade_protocol(&headers(&[("upgrade", "websocket")])).is_none());
    }
}
