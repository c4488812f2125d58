//! The demo's own `ebb up`: a child process on a temporary data dir, stopped and removed on
//! every way out (success, failure, Ctrl-C, and as a last resort when dropped).

use anyhow::Context;
use ebb_client::Client;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Set on the child `ebb up` to the temporary dir; its instances inherit it (ebb passes down
/// everything but `EBB_*`), so the demo can find and end anything it started, even if `ebb up`
/// had to be killed. The value is unique to the run, so nothing else ever matches.
pub const MARKER_VAR: &str = "EBBDEMO_DIR";
/// `ebb up`'s stdout and stderr, inside the temporary dir.
const LOG_FILE: &str = "ebb-up.log";
/// How long `ebb up` may take to answer on its API.
const START_LIMIT: Duration = Duration::from_secs(30);
/// How long `ebb up` may take to stop its instances (their grace is 5 s) and exit on SIGTERM.
const STOP_LIMIT: Duration = Duration::from_secs(20);

/// A running (or stopped) `ebb up` and its temporary dir.
pub struct Ebb {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    child: Option<Child>,
}

impl Ebb {
    /// Creates the temporary dir and starts `ebb up` on it, API and router on loopback only.
    pub fn spawn(exe: &Path) -> anyhow::Result<Ebb> {
        let dir = tempfile::Builder::new()
            .prefix("ebb-demo-")
            .tempdir()
            .context("creating a temporary directory for the demo's state")?;
        let path = dir.path().to_path_buf();
        let log_path = path.join(LOG_FILE);
        let log =
            File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let mut cmd = Command::new(exe);
        cmd.arg("up")
            .arg("--data-dir")
            .arg(&path)
            .args(["--listen", "127.0.0.1:0", "--router-bind", "127.0.0.1"])
            .args(["--node-name", "demo"])
            .env(MARKER_VAR, &path)
            .env_remove("EBB_DATA_DIR")
            .env_remove("EBB_ADDR")
            .env_remove("EBB_TOKEN")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // Its own process group: a Ctrl-C in the terminal reaches the demo only, which then
        // stops `ebb up` gracefully (a second signal would make it kill its instances at once).
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting `{} up`", exe.display()))?;
        Ok(Ebb {
            dir: Some(dir),
            path,
            child: Some(child),
        })
    }

    /// The temporary dir: ebb's data dir, and the home of its log.
    pub fn dir(&self) -> &Path {
        &self.path
    }

    pub fn log_path(&self) -> PathBuf {
        self.path.join(LOG_FILE)
    }

    /// Waits until the API answers; a client for it (address and token from the data dir).
    pub async fn client(&mut self) -> anyhow::Result<Client> {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    anyhow::bail!("`ebb up` exited ({status}) before its API answered");
                }
            }
            let addr = read_trimmed(&self.path.join(ebb_core::api::ADDR_FILE));
            let token = read_trimmed(&self.path.join(ebb_core::api::TOKEN_FILE));
            if let (Some(addr), Some(token)) = (addr, token) {
                let client = Client::new(&addr, Some(token))?;
                if client.status().await.is_ok() {
                    return Ok(client);
                }
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "`ebb up` did not answer on its API within {}s",
                    START_LIMIT.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Returns once `ebb up` has exited on its own (it should not, during the demo).
    pub async fn exited(&mut self) -> ExitStatus {
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return status;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Stops `ebb up` gracefully: SIGTERM, then SIGKILL past [`STOP_LIMIT`] or when `hurry`
    /// completes first (a second Ctrl-C). Then ends anything left that carries the marker.
    /// Returns how `ebb up` exited, and whether it had to be killed.
    pub async fn stop(
        &mut self,
        hurry: impl std::future::Future<Output = ()>,
    ) -> Option<(ExitStatus, bool)> {
        let mut child = self.child.take()?;
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let graceful = async {
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => return Some(status),
                    Ok(None) => tokio::time::sleep(Duration::from_millis(50)).await,
                    Err(_) => return None,
                }
            }
        };
        let waited = tokio::select! {
            status = tokio::time::timeout(STOP_LIMIT, graceful) => status.ok().flatten(),
            _ = hurry => None,
        };
        let result = match waited {
            Some(status) => Some((status, false)),
            None => {
                let _ = child.kill();
                child.wait().ok().map(|s| (s, true))
            }
        };
        sweep(&self.path);
        result
    }

    /// Copies `ebb up`'s log out of the temporary dir (which is about to go), for a failure
    /// report; its new path.
    pub fn keep_log(&self) -> Option<PathBuf> {
        let name = self.path.file_name()?.to_string_lossy().into_owned();
        let kept = std::env::temp_dir().join(format!("{name}.log"));
        std::fs::copy(self.log_path(), &kept).ok()?;
        Some(kept)
    }

    /// The last `n` lines of `ebb up`'s log.
    pub fn log_tail(&self, n: usize) -> Vec<String> {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| l.to_string())
            .collect()
    }

    /// Removes the temporary dir (after [`Ebb::stop`]).
    pub fn remove(&mut self) -> std::io::Result<()> {
        match self.dir.take() {
            Some(dir) => dir.close(),
            None => Ok(()),
        }
    }
}

/// The last resort (a panic, or an error path that skipped [`Ebb::stop`]): SIGTERM with a short
/// bound, then SIGKILL, then the sweep; the dir goes with the `TempDir`.
impl Drop for Ebb {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            sweep(&self.path);
        }
    }
}

/// SIGKILLs every process that carries this run's marker: instances of a killed `ebb up`.
fn sweep(dir: &Path) {
    let needle = format!("{MARKER_VAR}={}", dir.display());
    for pid in processes_with(needle.as_bytes()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Pids of processes whose environment holds `needle` (`KEY=value`) exactly.
fn processes_with(needle: &[u8]) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if env.split(|b| *b == 0).any(|kv| kv == needle) {
            pids.push(pid);
        }
    }
    pids
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}
