//! The floor under ebb's proxy, for `bench/router.sh`: hyper's HTTP/1.1 server and
//! hyper-util's pooled client with nothing of ebb's — no header rewriting, timeouts, retries,
//! metrics or balancer beyond a bare round robin. What it costs per request is what any
//! hyper-based proxy pays before doing its own work.
//!
//! Usage: `hyper_floor LISTEN_ADDR BACKEND_ADDR...`. Runs until killed.
#![forbid(unsafe_code)]

use http_body_util::{Either, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

type Body = Either<Incoming, Empty<Bytes>>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: hyper_floor LISTEN_ADDR BACKEND_ADDR...";
    let listen: SocketAddr = args.next().ok_or(usage)?.parse()?;
    let backends: Vec<String> = args.collect();
    if backends.is_empty() {
        return Err(usage.into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(listen, Arc::new(backends)))
}

async fn serve(
    listen: SocketAddr,
    backends: Arc<Vec<String>>,
) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let client: Client<_, Incoming> = Client::builder(TokioExecutor::new()).build_http();
    let next = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let (client, backends, next) = (client.clone(), backends.clone(), next.clone());
        let service = service_fn(move |req| {
            let backend = &backends[next.fetch_add(1, Ordering::Relaxed) % backends.len()];
            forward(client.clone(), backend.clone(), req)
        });
        tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service),
        );
    }
}

async fn forward(
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Incoming>,
    backend: String,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let Ok(uri) = Uri::builder()
        .scheme("http")
        .authority(backend)
        .path_and_query(path)
        .build()
    else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    *req.uri_mut() = uri;
    Ok(match client.request(req).await {
        Ok(response) => response.map(Either::Left),
        Err(_) => status(StatusCode::BAD_GATEWAY),
    })
}

fn status(code: StatusCode) -> Response<Body> {
    let mut response = Response::new(Either::Right(Empty::new()));
    *response.status_mut() = code;
    response
}
