//! Starting a process: port, environment, spawn, record, and the back-off when it cannot start.

use super::{secs, Runner};
use crate::supervisor::env::{self, Env, Identity};
use crate::supervisor::ports::join_host_port;
use crate::supervisor::process::{Launch, Proc};
use crate::supervisor::shared::{now_ms, Shared};
use crate::supervisor::state_file::Record;
use ebb_core::{Assignment, EventKind, InstanceState};
use nix::sys::signal::Signal;
use std::time::Duration;
use tokio::time;

impl Runner {
    /// Starts the process now; on failure, state Failed and a retry after the back-off.
    /// False when the supervisor closed meanwhile: the runner must end, not try again.
    pub(super) fn start(&mut self, a: &Assignment) -> bool {
        self.attempts = self.attempts.saturating_add(1);
        if self.attempts > 1 {
            self.restarts = self.restarts.saturating_add(1);
        }
        let host = self.shared.config.host.clone();
        let port = match self.shared.reserve_port(&self.id, self.port) {
            Ok(port) => port,
            Err(e) => {
                self.start_failed(format!("no free port on {host}: {e}"));
                return true;
            }
        };
        self.port = Some(port);
        let env = instance_env(&self.shared, a, port);
        let log = self.shared.log_path(&a.service, &self.id);
        let launch = Launch {
            instance: &self.id,
            argv: &a.spec.command,
            env: &env,
            self_exe: &self.shared.config.self_exe,
            workdir: a.spec.workdir.as_deref(),
            log: &log,
            cgroups: &self.shared.cgroups,
            resources: &a.spec.resources,
            port,
            stop: &a.spec.stop,
            started_ms: now_ms(),
        };
        let proc = match Proc::spawn(launch) {
            Ok(proc) => proc,
            Err(e) => {
                self.start_failed(e);
                return true;
            }
        };
        // Should the agent die from here until the writer task puts this record on disk, the
        // process is unrecorded: the next agent's sweep finds it by its cgroup and its
        // `EBB_AGENT_ID` and kills it, so it is never left running beside a second copy.
        if !self
            .shared
            .set_record(&self.id, Some(self.record(a, &proc)))
        {
            // The supervisor closed while we spawned: nobody would ever stop this process.
            proc.signal_tree(Signal::SIGKILL);
            return false;
        }
        let (pid, started_ms, restarts, addr) = (
            proc.pid,
            proc.started_ms,
            self.restarts,
            join_host_port(&host, port),
        );
        let is_task = a.task.is_some();
        self.shared.update(&self.id, |s| {
            // A task has no health check: it runs as soon as it started.
            s.state = if is_task {
                InstanceState::Running
            } else {
                InstanceState::Starting
            };
            s.pid = Some(pid);
            s.addr = Some(addr.clone());
            s.ready = false;
            s.restarts = restarts;
            s.started_ms = Some(started_ms);
        });
        self.proc = Some(proc);
        if is_task {
            // One event per task start would flood the log of a large job; its end is recorded.
            return true;
        }
        let again = if restarts > 0 {
            format!(" (restart {restarts})")
        } else {
            String::new()
        };
        self.shared.event(
            EventKind::InstanceStarted,
            &self.service,
            &self.id,
            format!("started pid {pid} on {addr}{again}"),
        );
        true
    }

    /// Spawn errors (program not found, bad workdir, no port) are retried like crashes.
    fn start_failed(&mut self, error: String) {
        let delay = self.backoff.next(Duration::ZERO);
        self.next_start = Some(time::Instant::now() + delay);
        let restarts = self.restarts;
        let last = format!("failed to start: {error}");
        let message = format!("{error}; retrying in {}", secs(delay));
        let why = message.clone();
        self.shared.update(&self.id, |s| {
            s.state = InstanceState::Failed;
            s.pid = None;
            s.ready = false;
            s.restarts = restarts;
            s.last_exit = Some(last);
            s.reason = Some(why);
        });
        self.shared.event(
            EventKind::InstanceStartFailed,
            &self.service,
            &self.id,
            message,
        );
    }

    /// What the state file keeps of a running process, for adoption after an agent crash.
    fn record(&self, a: &Assignment, proc: &Proc) -> Record {
        Record {
            generation: a.generation,
            service: a.service.clone(),
            version: a.version.clone(),
            pid: proc.pid,
            start_ticks: proc.start_ticks,
            port: proc.port,
            started_ms: proc.started_ms,
            restarts: self.restarts,
            stop: proc.stop.clone(),
            cgroups: proc.cgroups.clone(),
            task: a.task.is_some(),
        }
    }
}

pub(super) fn instance_env(shared: &Shared, a: &Assignment, port: u16) -> Env {
    let who = Identity {
        agent: &shared.agent_id,
        instance: &a.id,
        service: &a.service,
        node: &shared.config.node,
        host: &shared.config.host,
        port,
    };
    env::instance_env(&shared.inherited, &a.spec.env, &who)
}
