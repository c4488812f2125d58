//! Health checks: the probes (TCP connect, HTTP GET, command) and the pure rise/fall counting that
//! turns their results into ready/unready/unhealthy. The loop that drives them is in `monitor.rs`.

use super::env::{self, Env};
use super::procfs;
use ebb_core::{HealthCheck, HealthSpec};
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use nix::sys::signal::Signal;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time;

/// What a probe connects to or runs with.
#[derive(Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub env: Arc<Env>,
    pub self_exe: PathBuf,
}

/// Runs one check, bounded by `timeout`. Err says what failed, for events.
pub async fn probe(check: &HealthCheck, target: &Target, timeout: Duration) -> Result<(), String> {
    match check {
        HealthCheck::Tcp => time::timeout(timeout, tcp(target))
            .await
            .unwrap_or_else(|_| Err(format!("tcp connect timed out after {timeout:?}"))),
        HealthCheck::Http { path } => time::timeout(timeout, http(target, path))
            .await
            .unwrap_or_else(|_| Err(format!("GET {path} timed out after {timeout:?}"))),
        HealthCheck::Command { argv } => command(argv, target, timeout).await,
    }
}

async fn tcp(t: &Target) -> Result<(), String> {
    TcpStream::connect((t.host.as_str(), t.port))
        .await
        .map(drop)
        .map_err(|e| format!("tcp connect to port {}: {e}", t.port))
}

/// One HTTP/1.1 GET on a fresh connection; 2xx and 3xx pass. The body is not read.
async fn http(t: &Target, path: &str) -> Result<(), String> {
    let stream = TcpStream::connect((t.host.as_str(), t.port))
        .await
        .map_err(|e| format!("GET {path}: connect to port {}: {e}", t.port))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    let request = hyper::Request::get(path)
        .header(
            hyper::header::HOST,
            super::ports::join_host_port(&t.host, t.port),
        )
        .header(hyper::header::USER_AGENT, "ebb-health")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("GET {path}: {e}"))?;
    let mut conn = std::pin::pin!(conn);
    let response = tokio::select! {
        r = sender.send_request(request) => r.map_err(|e| format!("GET {path}: {e}"))?,
        r = &mut conn => return Err(format!("GET {path}: connection closed early ({r:?})")),
    };
    let status = response.status();
    if status.is_success() || status.is_redirection() {
        Ok(())
    } else {
        Err(format!("GET {path} answered {status}"))
    }
}

/// Runs argv in its own process group; passes on exit 0. On timeout the whole group is killed.
async fn command(argv: &[String], t: &Target, timeout: Duration) -> Result<(), String> {
    let (program, args) = env::resolve_argv(argv, &t.env, &t.self_exe)?;
    let mut child = tokio::process::Command::new(&program)
        .args(args)
        .env_clear()
        .envs(t.env.iter())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("health command {program:?}: {e}"))?;
    match time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("health command: {}", procfs::describe_exit(status))),
        Ok(Err(e)) => Err(format!("health command: {e}")),
        Err(_) => {
            if let Some(pid) = child.id() {
                procfs::signal_group(pid, Signal::SIGKILL);
            }
            let _ = child.wait().await;
            Err(format!("health command timed out after {timeout:?}"))
        }
    }
}

/// Rise/fall counting (HAProxy's `rise`/`fall`): pure, fed one result at a time.
#[derive(Debug, Clone)]
pub struct Tracker {
    rise: u32,
    passes: u32,
    failures: u32,
    ready: bool,
}

/// What one result changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    None,
    Ready,
    Unready,
}

impl Tracker {
    pub fn new(spec: &HealthSpec, ready: bool) -> Tracker {
        Tracker {
            rise: spec.healthy_threshold.max(1),
            passes: 0,
            failures: 0,
            ready,
        }
    }

    /// A pass counts toward `rise`; any failure makes the instance unready at once.
    pub fn record(&mut self, passed: bool) -> Change {
        if passed {
            self.failures = 0;
            self.passes = self.passes.saturating_add(1);
            if !self.ready && self.passes >= self.rise {
                self.ready = true;
                return Change::Ready;
            }
        } else {
            self.passes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.ready {
                self.ready = false;
                return Change::Unready;
            }
        }
        Change::None
    }

    /// Failures in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// True when the instance should be killed: `fall` failures in a row, past its start period.
pub fn is_unhealthy(spec: &HealthSpec, failures: u32, since_start: Duration) -> bool {
    failures >= spec.unhealthy_threshold.max(1) && since_start >= spec.start_period
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rise: u32, fall: u32) -> HealthSpec {
        HealthSpec {
            healthy_threshold: rise,
            unhealthy_threshold: fall,
            ..HealthSpec::default()
        }
    }

    #[test]
    fn ready_after_rise_passes_and_unready_at_the_first_failure() {
        let mut t = Tracker::new(&spec(2, 3), false);
        assert_eq!(t.record(true), Change::None);
        assert_eq!(t.record(true), Change::Ready);
        assert_eq!(t.record(true), Change::None);
        assert_eq!(t.record(false), Change::Unready);
        assert_eq!(t.record(false), Change::None);
        assert_eq!(t.failures(), 2);
        assert_eq!(t.record(true), Change::None);
        assert_eq!(t.failures(), 0);
        assert_eq!(t.record(true), Change::Ready);
    }

    #[test]
    fn unhealthy_needs_fall_failures_and_the_start_period_over() {
        let mut s = spec(1, 3);
        s.start_period = Duration::from_secs(30);
        assert!(!is_unhealthy(&s, 3, Duration::from_secs(29)));
        assert!(!is_unhealthy(&s, 2, Duration::from_secs(31)));
        assert!(is_unhealthy(&s, 3, Duration::from_secs(30)));
    }

    fn target(port: u16) -> Target {
        Target {
            host: "127.0.0.1".into(),
            port,
            env: Arc::new(Env::new()),
            self_exe: "/bin/false".into(),
        }
    }

    #[tokio::test]
    async fn probes_fail_with_a_reason_when_nothing_listens() {
        let port = super::super::ports::allocate("127.0.0.1", &Default::default(), None).unwrap();
        let t = target(port);
        let timeout = Duration::from_secs(2);
        assert!(probe(&HealthCheck::Tcp, &t, timeout)
            .await
            .unwrap_err()
            .contains("tcp connect"));
        let http = HealthCheck::Http { path: "/".into() };
        assert!(probe(&http, &t, timeout)
            .await
            .unwrap_err()
            .starts_with("GET /"));
    }

    #[tokio::test]
    async fn command_probes_pass_on_exit_zero_and_are_killed_on_timeout() {
        let t = target(1);
        let cmd = |s: &str| HealthCheck::Command {
            argv: vec!["sh".into(), "-c".into(), s.into()],
        };
        let timeout = Duration::from_millis(300);
        assert_eq!(probe(&cmd("exit 0"), &t, timeout).await, Ok(()));
        assert_eq!(
            probe(&cmd("exit 4"), &t, timeout).await,
            Err("health command: exit code 4".into())
        );
        let slow = probe(&cmd("sleep 30"), &t, timeout).await.unwrap_err();
        assert!(slow.contains("timed out"), "{slow}");
    }
}
