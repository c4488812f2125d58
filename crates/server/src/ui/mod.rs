//! The dashboard at `/ui/`: one page, its script and style, and uPlot for the charts, all
//! embedded in the binary (no npm at build time, nothing fetched from the internet at run time).
//! It reads the same API as the CLI, with a session cookie in place of the token, and updates
//! from the event stream (`GET /v1/events/stream`).
//!
//! Login: `ebb ui` asks `POST /v1/ui/login` (API token) for a one-time URL; opening it sets the
//! session cookie (HttpOnly, SameSite=Strict, Secure over TLS) and goes on to the page. A
//! session reads only: `crate::api`'s token check lets it through for GET and HEAD alone.

pub mod sessions;

use crate::Server;
use axum::extract::{OriginalUri, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ebb_core::api::UiLogin;
use sessions::{cookie, COOKIE, LOGIN_CODE_TTL, SESSION_TTL};
use std::time::Instant;

/// Whether the API speaks TLS, set by the API's server: the session cookie is then `Secure`.
#[derive(Debug, Clone, Copy)]
pub struct ApiTls(pub bool);

/// What the page may load and run: itself only. uPlot sets element styles from script, hence
/// `'unsafe-inline'` for styles alone; no inline script runs.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
const UPLOT_JS: &str = include_str!("assets/vendor/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("assets/vendor/uPlot.min.css");

/// The page and its assets (no token needed: they hold no data), the login and the logout.
pub fn router() -> Router<Server> {
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route(
            "/ui/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript", APP_JS) }),
        )
        .route("/ui/app.css", get(|| async { asset("text/css", APP_CSS) }))
        .route(
            "/ui/vendor/uPlot.iife.min.js",
            get(|| async { asset("text/javascript", UPLOT_JS) }),
        )
        .route(
            "/ui/vendor/uPlot.min.css",
            get(|| async { asset("text/css", UPLOT_CSS) }),
        )
        .route("/ui/login", get(login))
        .route("/ui/logout", post(logout))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    secure_headers(headers);
    response
}

fn secure_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // Embedded in the binary: a new binary may serve new assets under the same names.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
}

/// `POST /v1/ui/login` (API token only): a one-time login path for `ebb ui`.
pub async fn issue_login(State(server): State<Server>) -> Json<UiLogin> {
    let code = server.sessions().issue_code(Instant::now());
    Json(UiLogin {
        path: format!("/ui/login?code={code}"),
        expires_in_s: LOGIN_CODE_TTL.as_secs(),
    })
}

#[derive(serde::Deserialize)]
struct LoginQuery {
    #[serde(default)]
    code: String,
}

/// `GET /ui/login?code=...`: trades a one-time code for a session cookie and goes to the page.
async fn login(
    State(server): State<Server>,
    Query(query): Query<LoginQuery>,
    request: Request,
) -> Response {
    let Some(session) = server.sessions().redeem(&query.code, Instant::now()) else {
        return page(
            StatusCode::UNAUTHORIZED,
            "This login link has been used or has expired (a link works once, for a minute). Run <code>ebb ui</code> for a new one.",
        );
    };
    let value = session_cookie(&session, SESSION_TTL.as_secs(), over_tls(&request));
    let mut response = Redirect::to("/ui/").into_response();
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `POST /ui/logout`: ends the session and clears its cookie.
async fn logout(State(server): State<Server>, request: Request) -> Response {
    if let Some(session) = session_of(request.headers()) {
        server.sessions().end(session);
    }
    let mut response = Redirect::to("/ui/").into_response();
    if let Ok(value) = HeaderValue::from_str(&session_cookie("", 0, over_tls(&request))) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The `Set-Cookie` value of a session: script cannot read it, another site's page cannot send
/// it, and over TLS it never travels in clear.
fn session_cookie(session: &str, max_age_s: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={session}; Path=/; Max-Age={max_age_s}; HttpOnly; SameSite=Strict{secure}")
}

/// Whether the request came over TLS (the API's server says so with [`ApiTls`]).
fn over_tls(request: &Request) -> bool {
    request
        .extensions()
        .get::<ApiTls>()
        .is_some_and(|ApiTls(on)| *on)
}

fn session_of(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| cookie(h, COOKIE))
}

/// What the dashboard reads, and all a session may read. Browsers send a cookie to every port of
/// its host, so a service's own port on the same machine may see it: nothing here carries a
/// secret once [`SessionRead`] has taken the specs out of `/v1/status`, and logs, specs and the
/// Prometheus scrape are not here.
pub const SESSION_PATHS: [&str; 7] = [
    "/v1/status",
    "/v1/instances",
    "/v1/nodes",
    "/v1/queues",
    "/v1/metrics",
    "/v1/history",
    "/v1/events/stream",
];

/// A request let in by a dashboard session rather than the API token: answers hide secrets
/// (specs), and an event stream ends when the session does.
#[derive(Debug, Clone)]
pub struct SessionRead {
    /// The session's secret, to check it again while a stream is open.
    pub session: String,
}

/// The session that lets `req` in: a GET or HEAD of one of [`SESSION_PATHS`] with a live
/// session's cookie.
pub fn session_read(server: &Server, req: &Request) -> Option<SessionRead> {
    let reading = matches!(*req.method(), Method::GET | Method::HEAD);
    // Inside `/v1`'s router the path has lost its prefix; the original has it.
    let path = req
        .extensions()
        .get::<OriginalUri>()
        .map_or_else(|| req.uri().path(), |o| o.0.path());
    if !reading || !SESSION_PATHS.contains(&path) {
        return None;
    }
    let session = session_of(req.headers())?;
    server
        .sessions()
        .valid(session, Instant::now())
        .then(|| SessionRead {
            session: session.to_string(),
        })
}

/// A short HTML page with a message (the message is ebb's own text, never user input).
fn page(status: StatusCode, message: &'static str) -> Response {
    let body = format!(
        "<!doctype html><meta charset=utf-8><title>ebb</title><link rel=stylesheet href=/ui/app.css><main class=message><h1>ebb</h1><p>{message}</p></main>"
    );
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure_headers(headers);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_http_only_strict_and_secure_over_tls() {
        let plain = session_cookie("abc", 60, false);
        assert_eq!(
            plain,
            "ebb_session=abc; Path=/; Max-Age=60; HttpOnly; SameSite=Strict"
        );
        assert!(session_cookie("abc", 60, true).ends_with("; Secure"));
    }
}
