//! One process tree of an instance: spawn it (own process group, log fd, cgroup), wait for it
//! (reaping our own child, polling an adopted one), and make sure nothing of it survives a stop.

use super::cgroup::{self, Cgroups};
use super::env::{self, Env};
use super::logs;
use super::procfs;
use super::state_file::Record;
use ebb_core::{Resources, StopSpec};
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tokio::time;

/// How often an adopted process (not our child, so no SIGCHLD) is checked for life.
pub const ADOPTED_POLL: Duration = Duration::from_millis(500);
/// How often a stopping tree is checked; stops are rare, so this can be brisk.
const STOP_POLL: Duration = Duration::from_millis(50);
/// How long processes get to vanish after SIGKILL (they cannot refuse; only D state delays them).
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How long an empty cgroup may stay busy while the kernel finishes tearing its processes down.
const CGROUP_REMOVE_WAIT: Duration = Duration::from_secs(2);

/// What is needed to start a process.
pub struct Launch<'a> {
    pub instance: &'a str,
    pub argv: &'a [String],
    pub env: &'a Env,
    pub self_exe: &'a Path,
    pub workdir: Option<&'a str>,
    pub log: &'a Path,
    pub cgroups: &'a Cgroups,
    pub resources: &'a Resources,
    pub port: u16,
    pub stop: &'a StopSpec,
    pub started_ms: u64,
}

pub struct Proc {
    pub pid: u32,
    pub start_ticks: u64,
    pub port: u16,
    pub started_ms: u64,
    /// Monotonic start, for uptime and the health start period.
    pub started_at: Instant,
    pub stop: StopSpec,
    pub cgroups: Vec<PathBuf>,
    /// None when adopted from a previous agent: then only /proc tells us it ended.
    child: Option<Child>,
    /// Why the main process ended, once it did.
    exit: Option<String>,
    /// Its exit code, when it exited by itself with one (ours to reap, not adopted).
    exit_code: Option<i32>,
}

impl Proc {
    /// Starts the process in its own group with stdout and stderr appended to its log.
    pub fn spawn(l: Launch) -> Result<Proc, String> {
        let (program, args) = env::resolve_argv(l.argv, l.env, l.self_exe)?;
        let log = logs::open_append(l.log)
            .map_err(|e| format!("cannot open log {}: {e}", l.log.display()))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot open log {}: {e}", l.log.display()))?;
        let groups = l
            .cgroups
            .create(l.instance, l.resources)
            .map_err(|e| format!("cannot create the instance's cgroup: {e}"))?;
        let mut cmd = Command::new(&program);
        cmd.args(&args)
            .env_clear()
            .envs(l.env.iter())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .kill_on_drop(false);
        if let Some(dir) = l.workdir {
            cmd.current_dir(dir);
        }
        let in_groups = l.cgroups.enter(&groups).map_err(|e| {
            cgroup::remove(&groups);
            format!("cannot enter the instance's cgroup: {e}")
        })?;
        let spawned = cmd.spawn();
        let born_inside = in_groups.is_some();
        drop(in_groups);
        let child = spawned.map_err(|e| {
            cgroup::remove(&groups);
            match l.workdir {
                Some(dir) => format!("cannot run {program:?} in {dir}: {e}"),
                None => format!("cannot run {program:?}: {e}"),
            }
        })?;
        let mut proc = Proc {
            pid: child.id().unwrap_or(0),
            start_ticks: 0,
            port: l.port,
            started_ms: l.started_ms,
            started_at: Instant::now(),
            stop: l.stop.clone(),
            cgroups: groups,
            child: Some(child),
            exit: None,
            exit_code: None,
        };
        proc.start_ticks = procfs::read_stat(proc.pid).map_or(0, |s| s.start_ticks);
        if born_inside || proc.cgroups.is_empty() {
            return Ok(proc);
        }
        if let Err(e) = cgroup::move_tree(&proc.cgroups, proc.pid) {
            procfs::signal_group(proc.pid, Signal::SIGKILL);
            return Err(format!("cannot move pid {} into its cgroup: {e}", proc.pid));
        }
        Ok(proc)
    }

    /// A process recorded by a previous agent, known alive.
    pub fn adopt(r: &Record, started_at: Instant) -> Proc {
        Proc {
            pid: r.pid,
            start_ticks: r.start_ticks,
            port: r.port,
            started_ms: r.started_ms,
            started_at,
            stop: r.stop.clone(),
            cgroups: r.cgroups.clone(),
            child: None,
            exit: None,
            exit_code: None,
        }
    }

    /// Waits until the main process ends and says why. Cancel-safe.
    pub async fn wait_exit(&mut self, poll: Duration) -> String {
        if let Some(reason) = &self.exit {
            return reason.clone();
        }
        let reason = match &mut self.child {
            Some(child) => match child.wait().await {
                Ok(status) => {
                    self.exit_code = status.code();
                    procfs::describe_exit(status)
                }
                Err(e) => format!("exited (wait failed: {e})"),
            },
            None => {
                while procfs::is_alive(self.pid, self.start_ticks) {
                    time::sleep(poll).await;
                }
                "exited (status unknown: adopted from a previous agent)".to_string()
            }
        };
        self.exit = Some(reason.clone());
        reason
    }

    /// The main process's exit code, once it exited by itself with one.
    pub fn exit_code(&self) -> Option<i32> {
        self.exit_code
    }

    /// Sends `sig` to the process group and to anything in the cgroup (escaped via `setsid`).
    pub fn signal_tree(&self, sig: Signal) {
        procfs::signal_group(self.pid, sig);
        cgroup::signal_all(&self.cgroups, sig);
    }

    /// True while the main process, its group or its cgroup has a live process.
    fn tree_alive(&self) -> bool {
        self.exit.is_none()
            || !procfs::group_members(self.pid).is_empty()
            || !cgroup::procs(&self.cgroups).is_empty()
    }

    /// Waits until nothing of the tree is alive, up to `deadline`. True if it is all gone.
    async fn wait_gone(&mut self, deadline: Instant) -> bool {
        let deadline = time::Instant::from_std(deadline);
        if time::timeout_at(deadline, self.wait_exit(STOP_POLL))
            .await
            .is_err()
        {
            return false;
        }
        while self.tree_alive() {
            if time::Instant::now() >= deadline {
                return false;
            }
            time::sleep(STOP_POLL).await;
        }
        true
    }

    /// Graceful stop: the spec's signal, up to the grace period, then SIGKILL. Returns the exit.
    pub async fn terminate(&mut self) -> String {
        self.signal_tree(procfs::parse_signal(&self.stop.signal));
        if !self.wait_gone(Instant::now() + self.stop.grace).await {
            self.kill().await;
        }
        self.remove_cgroups().await;
        self.exit
            .clone()
            .unwrap_or_else(|| "did not exit after SIGKILL".into())
    }

    /// SIGKILL to everything of the tree, then wait for it to vanish.
    pub async fn kill(&mut self) {
        self.signal_tree(Signal::SIGKILL);
        if !self.wait_gone(Instant::now() + KILL_WAIT).await {
            tracing::warn!(
                pid = self.pid,
                "process tree still alive {KILL_WAIT:?} after SIGKILL"
            );
        }
    }

    /// After the main process ended by itself: whatever it left behind is killed too (systemd's
    /// `KillMode=control-group`), so a restart never finds the old tree holding its port.
    pub async fn clean_up(&mut self) {
        if self.tree_alive() {
            self.kill().await;
        }
        self.remove_cgroups().await;
    }

    async fn remove_cgroups(&self) {
        let deadline = Instant::now() + CGROUP_REMOVE_WAIT;
        while !cgroup::remove(&self.cgroups) {
            if Instant::now() >= deadline {
                tracing::warn!(pid = self.pid, groups = ?self.cgroups, "cgroup still busy; left in place");
                return;
            }
            time::sleep(STOP_POLL).await;
        }
    }
}
