//! The router's HTTP proxy alone, for `bench/router.sh`: one listener in front of fixed
//! backends, on the runtime `ebb up` builds for the router (`ebb_router::runtime::build`) with
//! one worker by default: the "one worker thread" comparison with nginx `worker_processes 1` and
//! HAProxy `nbthread 1`. Like the server, it spawns the proxy onto the runtime, so that all the
//! proxying runs on the worker thread.
//!
//! Usage: `bench_proxy LISTEN_ADDR ALGORITHM BACKEND_ADDR...`, e.g.
//! `bench_proxy 127.0.0.1:8000 round_robin 127.0.0.1:8101 127.0.0.1:8102`; `EBB_ROUTER_THREADS`
//! sets the number of workers (default 1). With `EBB_TLS_CERT` and `EBB_TLS_KEY` (PEM files) it
//! terminates TLS as a service with a `tls` table does. The connection cap is on, sized from
//! the open-file limit as the server sizes it, so that its cost is in the figures. Runs until
//! killed or interrupted.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark tool, not production code

use ebb_router::http::{Proxy, ProxyConfig};
use ebb_router::limit::{connection_budget, ConnectionLimit};

use ebb_router::{BalanceAlgorithm, Endpoints};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// The soft open-file limit, read as `ebb`'s `limits::connection_budget` reads it.
fn open_files() -> u64 {
    use nix::sys::resource::{getrlimit, Resource};
    getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bench_proxy LISTEN_ADDR ALGORITHM BACKEND_ADDR...";
    let listen: SocketAddr = args.next().ok_or(usage)?.parse()?;
    let algorithm = BalanceAlgorithm::parse(&args.next().ok_or(usage)?)?;
    let backends = args
        .enumerate()
        .map(|(i, a)| Ok((format!("backend-{i}"), a.parse::<SocketAddr>()?)))
        .collect::<Result<Vec<_>, std::net::AddrParseError>>()?;
    if backends.is_empty() {
        return Err(usage.into());
    }
    let threads = match std::env::var("EBB_ROUTER_THREADS") {
        Ok(n) => n
            .parse::<usize>()
            .map_err(|e| format!("EBB_ROUTER_THREADS={n:?}: {e}"))?,
        Err(_) => 1,
    };
    let runtime = ebb_router::runtime::build(Some(threads))?;
    runtime.block_on(async move {
        let endpoints = Arc::new(Endpoints::new(algorithm));
        endpoints.update(&backends, Instant::now());
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let tls = match (std::env::var("EBB_TLS_CERT"), std::env::var("EBB_TLS_KEY")) {
            (Ok(cert), Ok(key)) => {
                let files = [ebb_core::CertificateFiles { cert, key }];
                let (tls, _) = ebb_router::tls::Terminator::load(&files, SystemTime::now())?;
                Some(Arc::new(tls))
            }
            _ => None,
        };
        let config = ProxyConfig {
            connections: Some(ConnectionLimit::new(connection_budget(open_files()))),
            tls,
            ..ProxyConfig::default()
        };
        let proxy = Proxy::new(endpoints, config);
        let serving = proxy.serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
            ebb_router::http::Stop::Close
        });
        tokio::spawn(serving).await?;
        Ok(())
    })
}
