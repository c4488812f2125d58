//! Health checks: the probes (TCP connect, HTTP GET, command) and the pure rise/fall counting that
//! turns their results into ready/unready/unhealthy. The loop that drives them is in `monitor.rs`.

use super::env::{self, Env};
use super::procfs;
use ebb_core::{HealthCheck, HealthSpec};
use http_body_util::{BodyExt, Empty};
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

/// Runs one check on fresh connections, bounded by `timeout`. Err says what failed, for events.
#[cfg(test)]
pub async fn probe(check: &HealthCheck, target: &Target, timeout: Duration) -> Result<(), String> {
    Prober::new(check.clone(), target.clone())
        .probe(timeout)
        .await
}

/// Most bytes of a health response body read (the body is read so the connection can be reused).
const MAX_HEALTH_BODY: usize = 64 * 1024;

/// The checks of one instance. HTTP checks reuse one keep-alive connection, as Envoy's health
/// checker does by default (`reuse_connection: true`): a connect, accept and close per check
/// cost more than the request itself, and with a hundred instances checked every second that
/// is most of an idle node's CPU.
pub struct Prober {
    check: HealthCheck,
    target: Target,
    conn: Option<KeptConnection>,
}

/// An open HTTP/1.1 connection and the task that drives it (aborted when dropped).
struct KeptConnection {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for KeptConnection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Prober {
    pub fn new(check: HealthCheck, target: Target) -> Prober {
        Prober {
            check,
            target,
            conn: None,
        }
    }

    /// Runs one check, bounded by `timeout`. Err says what failed, for events.
    pub async fn probe(&mut self, timeout: Duration) -> Result<(), String> {
        match self.check.clone() {
            HealthCheck::Tcp => time::timeout(timeout, tcp(&self.target))
                .await
                .unwrap_or_else(|_| Err(format!("tcp connect timed out after {timeout:?}"))),
            HealthCheck::Http { path } => {
                let result = time::timeout(timeout, self.http(&path))
                    .await
                    .unwrap_or_else(|_| Err(format!("GET {path} timed out after {timeout:?}")));
                if result.is_err() {
                    self.conn = None;
                }
                result
            }
            HealthCheck::Command { argv } => command(&argv, &self.target, timeout).await,
        }
    }

    /// GET on the kept connection; if that connection fails before any answer (the app closed
    /// an idle keep-alive, say), once more on a fresh one. 2xx and 3xx pass.
    async fn http(&mut self, path: &str) -> Result<(), String> {
        if let Some(mut kept) = self.conn.take() {
            if kept.sender.ready().await.is_ok() {
                if let Ok(status) = get(&mut kept.sender, &self.target, path).await {
                    self.conn = Some(kept);
                    return judge(path, status);
                }
            }
        }
        let mut fresh = connect(&self.target, path).await?;
        let status = get(&mut fresh.sender, &self.target, path).await?;
        self.conn = Some(fresh);
        judge(path, status)
    }
}

async fn tcp(t: &Target) -> Result<(), String> {
    TcpStream::connect((t.host.as_str(), t.port))
        .await
        .map(drop)
        .map_err(|e| format!("tcp connect to port {}: {e}", t.port))
}

async fn connect(t: &Target, path: &str) -> Result<KeptConnection, String> {
    let stream = TcpStream::connect((t.host.as_str(), t.port))
        .await
        .map_err(|e| format!("GET {path}: connect to port {}: {e}", t.port))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(KeptConnection { sender, driver })
}

/// Sends one GET and reads its (capped) body, so the connection is ready for the next one.
async fn get(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    t: &Target,
    path: &str,
) -> Result<hyper::StatusCode, String> {
    let request = hyper::Request::get(path)
        .header(
            hyper::header::HOST,
            super::ports::join_host_port(&t.host, t.port),
        )
        .header(hyper::header::USER_AGENT, "ebb-health")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("GET {path}: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    let status = response.status();
    http_body_util::Limited::new(response.into_body(), MAX_HEALTH_BODY)
        .collect()
        .await
        .map_err(|e| format!("GET {path}: reading the answer: {e}"))?;
    Ok(status)
}

fn judge(path: &str, status: hyper::StatusCode) -> Result<(), String> {
    if status.is_success() || status.is_redirection() {
        Ok(())
    } else {
        Err(format!("GET {path} answered {status}"))
    }
}

/// Runs argv in its own process group; passes on exit 0. On timeout the whole group is killed,
/// and so it is when the probe is dropped mid-run (see [`GroupGuard`]).
async fn command(argv: &[String], t: &Target, timeout: Duration) -> Result<(), String> {
    let (program, args) = env::resolve_argv(argv, &t.env, &t.self_exe)?;
    let child = tokio::process::Command::new(&program)
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
    let mut guard = GroupGuard::new(child);
    match time::timeout(timeout, guard.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("health command: {}", procfs::describe_exit(status))),
        Ok(Err(e)) => Err(format!("health command: {e}")),
        Err(_) => {
            guard.kill_group();
            let _ = guard.wait().await;
            Err(format!("health command timed out after {timeout:?}"))
        }
    }
}

/// A health command's child, whose whole process group is SIGKILLed if the guard is dropped
/// before the child was reaped. The probe future is dropped whenever the instance stops, exits
/// or turns unhealthy while a check runs; `kill_on_drop` alone kills only the direct child, so
/// `sh -c 'curl ...'` would leave `curl` behind, once per cancelled check.
///
/// Signalling the group is safe while the child is unreaped: its pid, which is the group's id,
/// cannot be reused until it is reaped. Once reaped, the guard never signals.
struct GroupGuard {
    child: tokio::process::Child,
    /// The child's pid, which is also its process group (`process_group(0)`).
    pgid: Option<u32>,
    reaped: bool,
}

impl GroupGuard {
    fn new(child: tokio::process::Child) -> GroupGuard {
        let pgid = child.id();
        GroupGuard {
            child,
            pgid,
            reaped: false,
        }
    }

    /// Waits for the child and reaps it. Cancel-safe, like `Child::wait`.
    async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        let status = self.child.wait().await;
        self.reaped = status.is_ok();
        status
    }

    fn kill_group(&self) {
        if let (Some(pgid), false) = (self.pgid, self.reaped) {
            procfs::signal_group(pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        // Runs before the child field is dropped (and reaped in the background by tokio).
        self.kill_group();
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

    /// Whether the passes so far made the instance ready.
    pub fn is_ready(&self) -> bool {
        self.ready
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

    #[tokio::test]
    async fn a_dropped_command_probe_kills_its_grandchildren_too() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("grandchild");
        let script = r#"sleep 1000 & echo $! > "$1.tmp"; mv "$1.tmp" "$1"; wait"#;
        let check = HealthCheck::Command {
            argv: ["sh", "-c", script, "sh", &pid_file.display().to_string()]
                .map(String::from)
                .to_vec(),
        };
        let t = target(1);
        let grandchild: u32 = tokio::select! {
            r = probe(&check, &t, Duration::from_secs(60)) => panic!("the probe ended: {r:?}"),
            pid = wait_until(|| std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()) => pid,
        };
        let _cleanup = KillOnDrop(grandchild);
        // The select dropped the probe future while `sh` was still waiting for `sleep`.
        wait_until(|| {
            procfs::read_stat(grandchild)
                .is_none_or(|s| s.is_gone())
                .then_some(())
        })
        .await;
    }

    /// Should the test fail, the grandchild still goes.
    struct KillOnDrop(u32);

    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            procfs::signal_pid(self.0, Signal::SIGKILL);
        }
    }

    /// Polls `f` until it returns Some; panics after a generous deadline.
    async fn wait_until<T>(f: impl FnMut() -> Option<T>) -> T {
        ebb_testkit::eventually("the condition", Duration::from_secs(20), f).await
    }

    /// A tiny HTTP server that counts connections; `close` answers once per connection.
    async fn counting_server(close: bool) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while let Ok(n) = sock.read(&mut chunk).await {
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let extra = if close { "Connection: close\r\n" } else { "" };
                            let answer =
                                format!("HTTP/1.1 200 OK\r\n{extra}Content-Length: 2\r\n\r\nok");
                            if sock.write_all(answer.as_bytes()).await.is_err() || close {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (port, accepted)
    }

    #[tokio::test]
    async fn http_checks_reuse_one_connection() {
        let (port, accepted) = counting_server(false).await;
        let check = HealthCheck::Http {
            path: "/healthz".into(),
        };
        let mut prober = Prober::new(check, target(port));
        for _ in 0..5 {
            assert_eq!(prober.probe(Duration::from_secs(2)).await, Ok(()));
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn http_checks_pass_against_apps_that_close_every_connection() {
        let (port, accepted) = counting_server(true).await;
        let check = HealthCheck::Http {
            path: "/healthz".into(),
        };
        let mut prober = Prober::new(check, target(port));
        for _ in 0..3 {
            assert_eq!(prober.probe(Duration::from_secs(2)).await, Ok(()));
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
    }
}
