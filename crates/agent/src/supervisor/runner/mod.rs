//! The life of one instance, as one task: it reads its goal (from `apply`) and drives the process
//! toward it — start, watch exit and health, back off and restart, stop gracefully, replace on a
//! new generation, forget when unassigned. Statuses and events go to the shared state.

mod exit;
mod start;
mod task;

use super::backoff::Backoff;
use super::goal::Goal;
use super::health::Target;
use super::monitor::Monitor;
use super::process::{Proc, ADOPTED_POLL};
use super::shared::Shared;
use super::state_file::Record;
use ebb_core::Assignment;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time;

/// Why a wait ended: the goal changed, or the supervisor dropped the goal sender.
enum Wake {
    Changed,
    Closed,
}

fn wake<E>(changed: Result<(), E>) -> Wake {
    changed.map_or(Wake::Closed, |()| Wake::Changed)
}

pub struct Runner {
    id: String,
    service: String,
    shared: Arc<Shared>,
    goal: watch::Receiver<Goal>,
    proc: Option<Proc>,
    generation: u64,
    restarts: u32,
    /// Starts tried in this generation: every one after the first is a restart.
    attempts: u32,
    backoff: Backoff,
    next_start: Option<time::Instant>,
    /// The last port, offered again on restart so the address stays the same when possible.
    port: Option<u16>,
    /// A task's process ran and ended in this generation: it is never started again.
    task_ended: bool,
    /// The adopted process is a task's (from the state file).
    adopted_task: bool,
}

impl Runner {
    pub fn new(
        shared: Arc<Shared>,
        id: &str,
        service: &str,
        goal: watch::Receiver<Goal>,
    ) -> Runner {
        Runner {
            id: id.to_string(),
            service: service.to_string(),
            shared,
            goal,
            proc: None,
            generation: 0,
            restarts: 0,
            attempts: 0,
            backoff: Backoff::default(),
            next_start: None,
            port: None,
            task_ended: false,
            adopted_task: false,
        }
    }

    /// Continues a process recorded by a previous agent, with its generation and restart count.
    pub fn adopting(mut self, proc: Proc, record: &Record) -> Runner {
        self.generation = record.generation;
        self.restarts = record.restarts;
        self.attempts = 1;
        self.port = Some(proc.port);
        self.proc = Some(proc);
        self.adopted_task = record.task;
        self
    }

    pub async fn run(mut self) {
        loop {
            let goal = self.goal.borrow_and_update().clone();
            let woke = match goal {
                Goal::Adopted => self.watch_adopted().await,
                Goal::Run(a) => {
                    self.fence(&a).await;
                    match &a.task {
                        Some(task) => self.run_task(&a, task.timeout_ms).await,
                        None => self.keep_running(&a).await,
                    }
                }
                Goal::Stop(a) => {
                    self.fence(&a).await;
                    self.stop("its desired state is stop").await;
                    wake(self.goal.changed().await)
                }
                Goal::Remove => {
                    self.stop("it is no longer assigned to this node").await;
                    if self.shared.finish_removal(&self.id) {
                        return;
                    }
                    Wake::Changed
                }
                Goal::Shutdown => {
                    self.stop("the agent is shutting down").await;
                    return;
                }
            };
            if let Wake::Closed = woke {
                return;
            }
        }
    }

    /// A newer generation of the same instance replaces the old process (ARCHITECTURE.md, principle 5).
    async fn fence(&mut self, a: &Assignment) {
        if a.generation <= self.generation {
            return;
        }
        if self.proc.is_some() {
            self.stop(&format!("generation {} replaces it", a.generation))
                .await;
        }
        self.generation = a.generation;
        self.service.clone_from(&a.service);
        self.restarts = 0;
        self.attempts = 0;
        self.backoff.reset();
        self.next_start = None;
        self.task_ended = false;
        let generation = a.generation;
        self.shared.update(&self.id, |s| {
            s.generation = generation;
            s.restarts = 0;
        });
    }

    async fn keep_running(&mut self, a: &Assignment) -> Wake {
        loop {
            let Some(proc) = self.proc.as_mut() else {
                if let Some(at) = self.next_start.take() {
                    tokio::select! {
                        () = time::sleep_until(at) => {}
                        changed = self.goal.changed() => {
                            self.next_start = Some(at);
                            return wake(changed);
                        }
                    }
                }
                if !self.start(a) {
                    return Wake::Closed;
                }
                continue;
            };
            let monitor = Monitor {
                shared: self.shared.clone(),
                id: self.id.clone(),
                service: self.service.clone(),
                spec: a.spec.health.clone(),
                target: Target {
                    host: self.shared.config.host.clone(),
                    port: proc.port,
                    env: Arc::new(start::instance_env(&self.shared, a, proc.port)),
                    self_exe: self.shared.config.self_exe.clone(),
                },
                started_at: proc.started_at,
            };
            tokio::select! {
                reason = proc.wait_exit(ADOPTED_POLL) => self.on_exit(reason).await,
                error = monitor.run() => self.on_unhealthy(error).await,
                changed = self.goal.changed() => return wake(changed),
            }
        }
    }

    /// Before its first assignment, an adopted process is only watched for exit.
    async fn watch_adopted(&mut self) -> Wake {
        loop {
            let Some(proc) = self.proc.as_mut() else {
                return wake(self.goal.changed().await);
            };
            tokio::select! {
                reason = proc.wait_exit(ADOPTED_POLL) => {
                    if self.adopted_task {
                        // Not our child: its exit status cannot be read.
                        self.task_exited(reason, None, true).await;
                    } else {
                        self.on_exit(reason).await;
                    }
                }
                changed = self.goal.changed() => return wake(changed),
            }
        }
    }
}

/// `1.5s`-style durations for event messages.
fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}
