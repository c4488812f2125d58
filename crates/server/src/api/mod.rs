//! The HTTP API (`/v1/...`): JSON in and out, a bearer token on every call, and JSON errors
//! with a 4xx status for every bad request (never a panic, never a bare text body).

mod events;
mod jobs;
mod logs;
mod metrics;
mod moves;
mod nodes;
mod prometheus;
mod servers;
mod services;

pub use events::{StreamSlots, MAX_STREAMS};
pub use services::service_views;

use crate::{auth, Server};
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use ebb_core::api::{ErrorBody, MAX_BODY_BYTES};
use ebb_store::StoreError;
use serde::de::DeserializeOwned;

/// Builds the API router over a server.
pub fn router(server: Server) -> Router {
    let v1 = Router::new()
        .route("/status", get(services::status))
        .route("/services", get(services::list).put(services::apply))
        .route(
            "/services/{name}",
            get(services::get_one).delete(services::stop),
        )
        .route("/services/{name}/scale", post(services::scale))
        .route("/services/{name}/restart", post(services::restart))
        .route("/instances", get(services::instances))
        .route("/jobs", get(jobs::list))
        .route("/jobs/{name}", get(jobs::get_one).delete(jobs::remove))
        .route("/jobs/{name}/cancel", post(jobs::cancel))
        .route("/queues", get(jobs::queues))
        .route("/events", get(events::list))
        .route("/events/stream", get(events::stream))
        .route("/history", get(history))
        .route("/metrics", get(metrics::list))
        .route("/traffic", post(metrics::report))
        .route("/logs/{service}", get(logs::read))
        .route("/nodes", get(nodes::list))
        .route("/servers", get(servers::list))
        .route("/nodes/{name}", delete(moves::remove_node))
        .route(
            "/nodes/{name}/drain",
            post(moves::drain).delete(moves::undrain),
        )
        .route("/instances/{id}/migrate", post(moves::migrate))
        .route("/instances/{id}/restart", post(moves::restart))
        .route("/migrations", get(moves::list))
        .route_layer(middleware::from_fn_with_state(
            server.clone(),
            require_token,
        ));
    // A new node trades the join token for its own credential, once.
    let joining = Router::new()
        .route("/nodes/{name}/join", post(nodes::join))
        .route_layer(middleware::from_fn_with_state(
            server.clone(),
            require_join_token,
        ));
    // A node's calls: its own credential, about itself only (the API token also passes: the
    // local agent of `ebb up` uses it).
    let agents = Router::new()
        .route("/nodes/{name}/sync", post(nodes::sync))
        .route("/nodes/{name}/assignments", get(nodes::assignments))
        .route("/nodes/{name}/log-requests", get(nodes::log_requests))
        .route(
            "/nodes/{name}/log-requests/{id}",
            post(nodes::answer_log_request),
        )
        .route_layer(middleware::from_fn_with_state(
            server.clone(),
            require_node_credential,
        ));
    // The dashboard's login: only with the API token, never with a session cookie.
    let login = Router::new()
        .route("/ui/login", post(crate::ui::issue_login))
        .route_layer(middleware::from_fn_with_state(
            server.clone(),
            require_bearer_token,
        ));
    let v1 = v1.merge(joining).merge(agents).merge(login);
    // Prometheus scrapes at its conventional path, with the API token as a bearer token.
    let scrape = Router::new()
        .route("/metrics", get(prometheus::scrape))
        .route_layer(middleware::from_fn_with_state(
            server.clone(),
            require_token,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(scrape)
        .nest("/v1", v1)
        .merge(crate::ui::router())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such API endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this endpoint",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(server)
}

/// The API token, or a dashboard session's cookie for what the dashboard reads
/// ([`crate::ui::SESSION_PATHS`]): a session can look but never change anything, so a forged
/// request from another site (which SameSite=Strict already stops) could not deploy, scale or
/// stop either. A request let in by a session carries [`crate::ui::SessionRead`], which hides
/// secrets from the answer.
async fn require_token(State(server): State<Server>, mut req: Request, next: Next) -> Response {
    if auth::authorized(bearer(&req), server.token()) {
        return next.run(req).await;
    }
    match crate::ui::session_read(&server, &req) {
        Some(session) => {
            req.extensions_mut().insert(session);
            next.run(req).await
        }
        None => unauthorized(),
    }
}

/// The API token and nothing else: the calls that hand out access.
async fn require_bearer_token(State(server): State<Server>, req: Request, next: Next) -> Response {
    if auth::authorized(bearer(&req), server.token()) {
        next.run(req).await
    } else {
        unauthorized()
    }
}

fn unauthorized() -> Response {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "missing or wrong API token: send `Authorization: Bearer <token>` (the token is in the data dir's api-token file); in a browser, open the URL `ebb ui` prints",
    )
    .into_response()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    /// Only this service.
    service: Option<String>,
}

/// `GET /v1/history`: the last hour of instances against load ([`crate::state::history`]).
async fn history(
    State(server): State<Server>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult<ebb_core::api::HistoryResponse> {
    Ok(Json(ebb_core::api::HistoryResponse {
        step_ms: crate::state::history::STEP.as_millis() as u64,
        services: server.history().view(q.service.as_deref()),
    }))
}

fn bearer(req: &Request) -> Option<&str> {
    req.headers()
        .get(ebb_core::api::AUTH_HEADER)
        .and_then(|v| v.to_str().ok())
}

/// For a node's first call (`join`): the join token or the API token.
async fn require_join_token(State(server): State<Server>, req: Request, next: Next) -> Response {
    let header = bearer(&req);
    let joined = server
        .join_token()
        .is_some_and(|t| auth::authorized(header, t));
    if joined || auth::authorized(header, server.token()) {
        next.run(req).await
    } else {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong join token: start the agent with `--token-file` naming a copy of the server's data dir join-token file (or EBB_JOIN_TOKEN)",
        )
        .into_response()
    }
}

/// For a node's own calls (`sync`, `assignments`): the credential of the node named in the
/// path, or the API token. The join token alone is refused, and so is another node's
/// credential: a node can neither read another's assignments (their env) nor heartbeat for it.
async fn require_node_credential(
    State(server): State<Server>,
    Path(params): Path<std::collections::HashMap<String, String>>,
    req: Request,
    next: Next,
) -> Response {
    let header = bearer(&req);
    if auth::authorized(header, server.token()) {
        return next.run(req).await;
    }
    let name = params.get("name").map(String::as_str).unwrap_or_default();
    if ebb_core::api::validate_node_name(name).is_err() {
        return ApiError::bad_request(format!("invalid node name {name:?}")).into_response();
    }
    let hash = match server.credential_hash(name) {
        Ok(hash) => hash,
        Err(e) => return ApiError::from(e).into_response(),
    };
    if hash
        .as_deref()
        .is_some_and(|hash| auth::credential_matches(header, hash))
    {
        return next.run(req).await;
    }
    let message = if server
        .join_token()
        .is_some_and(|t| auth::authorized(header, t))
    {
        format!(
            "the join token only joins: node {name} must call with its own credential, which `POST /v1/nodes/{name}/join` returns once (`ebb agent` keeps it in its data dir's node-credential file)"
        )
    } else if hash.is_none() {
        format!(
            "node {name} has not joined: join with the join token first (`ebb agent --token-file`)"
        )
    } else {
        format!(
            "wrong credential for node {name}: each node has its own (its data dir's node-credential file)"
        )
    };
    ApiError::new(StatusCode::UNAUTHORIZED, message).into_response()
}

/// An API error: a status and a message, sent as `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// An error answered with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// A 400 Bad Request with `message`.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// A 404 Not Found with `message`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// What the error says.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Conflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, format!("{e}; retry the request"))
            }
            // The write may or may not have landed: the caller tries again later (any server).
            StoreError::Unavailable { .. } | StoreError::Fenced { .. } => {
                tracing::warn!(error = %e, "store unavailable");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            other => {
                tracing::error!(error = %other, "store error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("store error: {other}"),
                )
            }
        }
    }
}

/// What a handler returns: a JSON body, or an [`ApiError`].
pub type ApiResult<T> = Result<Json<T>, ApiError>;

/// A JSON body whose rejections (malformed JSON, wrong content type, too large) are JSON errors.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// Query parameters whose rejections are JSON errors naming the bad parameter.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(r) => Err(ApiError::new(
                r.status(),
                format!("invalid query: {}", r.body_text()),
            )),
        }
    }
}

/// Path parameters whose rejections are JSON errors.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(r) => Err(ApiError::new(
                r.status(),
                format!("invalid path: {}", r.body_text()),
            )),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!("request body is larger than the limit of {MAX_BODY_BYTES} bytes")
    } else {
        format!("invalid JSON body: {}", rejection.body_text())
    };
    ApiError::new(status, message)
}
