//! The app's few routes. Responses that never change are built once and shared, so a request
//! costs little beyond hyper's own work: the app is the backend in proxy benchmarks.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Longest `/slow` sleep, 10 minutes: long enough for any drain or timeout test, short enough
/// that a typo does not hold a connection for days.
pub const MAX_SLOW_MS: u64 = 600_000;

/// Largest `/bytes` body, 16 MiB: large enough to outlast every kernel buffer between the
/// app and a slow client, small enough that a typo costs little memory.
pub const MAX_BYTES: usize = 16 << 20;

const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
const X_INSTANCE: &str = "x-instance";

/// What every request needs, built once per server.
pub(crate) struct State {
    /// `hello from {name}\n` (or with the greeting).
    hello: Bytes,
    /// The instance name as a header value; cloning it only bumps a reference count.
    instance: HeaderValue,
    /// Requests sleeping in `/slow` right now (tests wait on it; not touched by other routes).
    pub(crate) slow_in_flight: AtomicUsize,
}

impl State {
    pub(crate) fn new(name: &str, greeting: Option<&str>) -> std::io::Result<State> {
        let instance = HeaderValue::from_maybe_shared(Bytes::copy_from_slice(name.as_bytes()))
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("instance name {name:?} cannot be sent in an HTTP header"),
                )
            })?;
        let hello = format!("{} from {name}\n", greeting.unwrap_or("hello"));
        Ok(State {
            hello: Bytes::from(hello),
            instance,
            slow_in_flight: AtomicUsize::new(0),
        })
    }
}

/// Routes by path alone, whatever the method: `/`, `/healthz`, `/slow?ms=N`, `/bytes?n=N`,
/// `/fail`.
pub(crate) async fn handle(
    state: &State,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body) = match req.uri().path() {
        "/" => (StatusCode::OK, state.hello.clone()),
        "/healthz" => (StatusCode::OK, Bytes::from_static(b"ok")),
        "/fail" => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Bytes::from_static(b"failing as asked\n"),
        ),
        "/slow" => match slow_ms(req.uri().query()) {
            Some(ms) => {
                state.slow_in_flight.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                state.slow_in_flight.fetch_sub(1, Ordering::SeqCst);
                (StatusCode::OK, Bytes::from(format!("slept {ms}ms\n")))
            }
            None => (
                StatusCode::BAD_REQUEST,
                Bytes::from_static(b"expected /slow?ms=N with N a whole number of milliseconds\n"),
            ),
        },
        "/bytes" => match query_number(req.uri().query(), "n=") {
            Some(n) => (
                StatusCode::OK,
                Bytes::from(vec![b'x'; n.min(MAX_BYTES as u64) as usize]),
            ),
            None => (
                StatusCode::BAD_REQUEST,
                Bytes::from_static(b"expected /bytes?n=N with N a whole number of bytes\n"),
            ),
        },
        _ => (StatusCode::NOT_FOUND, Bytes::from_static(b"not found\n")),
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, TEXT);
    headers.insert(X_INSTANCE, state.instance.clone());
    Ok(resp)
}

/// The `ms` parameter of `/slow`, capped at [`MAX_SLOW_MS`]; `None` if missing or not a number.
pub(crate) fn slow_ms(query: Option<&str>) -> Option<u64> {
    query_number(query, "ms=").map(|ms| ms.min(MAX_SLOW_MS))
}

/// The whole number after `key` (`"n="`) in a query string.
fn query_number(query: Option<&str>, key: &str) -> Option<u64> {
    let value = query?.split('&').find_map(|pair| pair.strip_prefix(key))?;
    value.parse::<u64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_reads_ms_from_the_query_and_caps_it() {
        assert_eq!(slow_ms(Some("ms=250")), Some(250));
        assert_eq!(slow_ms(Some("x=1&ms=0")), Some(0));
        assert_eq!(slow_ms(Some("ms=99999999999")), Some(MAX_SLOW_MS));
        for bad in [
            None,
            Some(""),
            Some("ms="),
            Some("ms=-1"),
            Some("ms=1.5"),
            Some("ms=ten"),
        ] {
            assert_eq!(slow_ms(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn bytes_reads_n_from_the_query() {
        assert_eq!(query_number(Some("n=4096"), "n="), Some(4096));
        assert_eq!(query_number(Some("a=1&n=7"), "n="), Some(7));
        assert_eq!(query_number(Some("m=7"), "n="), None);
        assert_eq!(query_number(Some("n=x"), "n="), None);
    }

    #[test]
    fn the_greeting_replaces_hello() {
        let s = State::new("web-1", Some("hi")).unwrap();
        assert_eq!(&s.hello[..], b"hi from web-1\n");
        assert_eq!(s.instance, "web-1");
    }

    #[test]
    fn a_name_that_cannot_be_a_header_is_refused() {
        assert!(State::new("bad\nname", None).is_err());
    }
}
