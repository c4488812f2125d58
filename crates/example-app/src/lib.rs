//! A tiny HTTP/1.1 app that ebb ships for examples, tests and benchmarks (`ebb example-app`).
//!
//! Routes (by path, any method):
//! - `/` → 200 `hello from {name}` (or `{greeting} from {name}`)
//! - `/healthz` → 200 `ok`
//! - `/slow?ms=N` → sleeps N ms (at most [`MAX_SLOW_MS`]) then 200; a bad N → 400
//! - `/bytes?n=N` → 200 with N bytes of `x` (at most [`MAX_BYTES`]); a bad N → 400
//! - `/fail` → 500
//! - anything else → 404
//!
//! Every response carries `x-instance: {name}`, so a test behind a load balancer can tell which
//! instance answered. SIGTERM or SIGINT stop accepting and let in-flight requests finish (for up
//! to [`DRAIN_TIMEOUT`]); a second signal exits at once.

mod routes;
mod server;

pub use routes::{MAX_BYTES, MAX_SLOW_MS};
pub use server::DRAIN_TIMEOUT;

use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Address the app listens on when `HOST` is not set: local only, the safe default.
pub const DEFAULT_HOST: &str = "127.0.0.1";
/// Instance name when `EBB_INSTANCE_ID` is not set (the app was started by hand).
pub const DEFAULT_NAME: &str = "example-app";

/// How the app is started: where to listen and what to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppConfig {
    /// Address to listen on (`HOST`, default [`DEFAULT_HOST`]).
    pub host: String,
    /// Port to listen on (`PORT`).
    pub port: u16,
    /// The instance name, shown in responses and the `x-instance` header.
    pub name: String,
    /// Replaces "hello" in the answer to `GET /`.
    pub greeting: Option<String>,
}

/// Reads `HOST` (default 127.0.0.1), `PORT` (required), `EBB_INSTANCE_ID` and `GREETING`: what
/// ebb sets for every instance.
pub fn config_from_env() -> Result<AppConfig, String> {
    config_from_lookup(|key| std::env::var(key).ok())
}

/// Like [`config_from_env`], reading variables through `get` (tests, or a CLI that has its own).
/// Empty variables count as unset.
pub fn config_from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<AppConfig, String> {
    let var = |key: &str| get(key).filter(|v| !v.is_empty());
    let port = match var("PORT") {
        None => {
            return Err(
                "PORT is not set: give the port to listen on, e.g. PORT=8080 (ebb sets it for every instance)"
                    .into(),
            )
        }
        Some(p) => p
            .trim()
            .parse::<u16>()
            .map_err(|_| format!("PORT={p:?} is not a port number: use a whole number from 0 to 65535"))?,
    };
    Ok(AppConfig {
        host: var("HOST").unwrap_or_else(|| DEFAULT_HOST.to_string()),
        port,
        name: var("EBB_INSTANCE_ID").unwrap_or_else(|| DEFAULT_NAME.to_string()),
        greeting: var("GREETING"),
    })
}

/// Binds `host:port`, prints `example-app {name} listening on {host}:{port}` to stdout, and
/// serves until SIGTERM or SIGINT; returns `Ok` after a graceful stop.
pub async fn run(config: AppConfig) -> std::io::Result<()> {
    // Listen for signals before the port opens, so no one can reach us before we can stop.
    let mut signals = signals::Signals::new()?;
    let listener = TcpListener::bind((config.host.as_str(), config.port)).await?;
    let port = listener.local_addr()?.port();
    // Whoever started us may wait for this line; a closed stdout must not stop the app.
    let _ = writeln!(
        std::io::stdout(),
        "example-app {} listening on {}:{port}",
        config.name,
        config.host
    );
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
    let signals = async move {
        signals.recv().await;
        tracing::info!("stopping: finishing requests in flight");
        let _ = first_tx.send(());
        signals.recv().await;
    };
    let first = async {
        let _ = first_rx.await;
    };
    tokio::select! {
        result = run_on(listener, &config.name, config.greeting.as_deref(), first) => result,
        () = signals => {
            tracing::warn!("second signal: exiting without waiting for requests");
            Ok(())
        }
    }
}

/// Serves on an already bound listener until `shutdown` completes, then drains like [`run`].
/// Prints nothing. Fails at once if `name` or `greeting` cannot be sent in HTTP.
pub async fn run_on(
    listener: TcpListener,
    name: &str,
    greeting: Option<&str>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let state = Arc::new(routes::State::new(name, greeting)?);
    server::serve(listener, state, shutdown).await
}

mod signals {
    /// SIGTERM and SIGINT, registered once so that a second signal is not missed.
    pub(crate) struct Signals {
        #[cfg(unix)]
        term: tokio::signal::unix::Signal,
        #[cfg(unix)]
        int: tokio::signal::unix::Signal,
    }

    impl Signals {
        pub(crate) fn new() -> std::io::Result<Self> {
            #[cfg(unix)]
            {
                use tokio::signal::unix::{signal, SignalKind};
                Ok(Signals {
                    term: signal(SignalKind::terminate())?,
                    int: signal(SignalKind::interrupt())?,
                })
            }
            #[cfg(not(unix))]
            Ok(Signals {})
        }

        /// Waits for the next signal.
        pub(crate) async fn recv(&mut self) {
            #[cfg(unix)]
            tokio::select! {
                _ = self.term.recv() => {}
                _ = self.int.recv() => {}
            }
            #[cfg(not(unix))]
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<AppConfig, String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        config_from_lookup(|k| vars.get(k).cloned())
    }

    #[test]
    fn only_port_is_required() {
        assert_eq!(
            config(&[("PORT", "8080")]).unwrap(),
            AppConfig {
                host: "127.0.0.1".into(),
                port: 8080,
                name: "example-app".into(),
                greeting: None,
            }
        );
    }

    #[test]
    fn all_variables_are_read() {
        let c = config(&[
            ("PORT", "9000"),
            ("HOST", "0.0.0.0"),
            ("EBB_INSTANCE_ID", "web-3"),
            ("GREETING", "hi"),
        ])
        .unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.name.as_str()),
            ("0.0.0.0", 9000, "web-3")
        );
        assert_eq!(c.greeting.as_deref(), Some("hi"));
    }

    #[test]
    fn a_missing_or_bad_port_says_what_to_do() {
        assert!(config(&[]).unwrap_err().contains("PORT is not set"));
        assert!(config(&[("PORT", "")])
            .unwrap_err()
            .contains("PORT is not set"));
        let e = config(&[("PORT", "http")]).unwrap_err();
        assert!(e.contains("PORT=\"http\" is not a port number"), "{e}");
        assert!(config(&[("PORT", "70000")]).is_err());
    }
}
