//! A job's task: started once, watched to its end (or killed at its timeout), and reported as
//! `Exited` with its exit code. The node never restarts it: whether it runs again is the
//! server's decision (retries, back-off, another node), so an attempt is one process.

use super::{secs, wake, Runner, Wake};
use crate::supervisor::process::ADOPTED_POLL;
use ebb_core::{Assignment, EventKind, InstanceState};
use std::time::Duration;
use tokio::time;

impl Runner {
    /// Runs the task until it ends, its timeout kills it, or the goal changes.
    pub(super) async fn run_task(&mut self, a: &Assignment, timeout_ms: Option<u64>) -> Wake {
        if self.task_ended {
            return wake(self.goal.changed().await);
        }
        if self.proc.is_none() {
            if !self.start_task(a) {
                return Wake::Closed;
            }
            if self.proc.is_none() {
                // It could not start at all: that attempt is over (reported Exited).
                return wake(self.goal.changed().await);
            }
        }
        let Some(proc) = self.proc.as_mut() else {
            return wake(self.goal.changed().await);
        };
        let deadline = timeout_ms
            .map(|ms| time::Instant::from_std(proc.started_at) + Duration::from_millis(ms));
        let timed_out = async {
            match deadline {
                Some(at) => time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            reason = proc.wait_exit(ADOPTED_POLL) => {
                let code = proc.exit_code();
                self.task_exited(reason, code, false).await;
            }
            () = timed_out => {
                proc.kill().await;
                let limit = Duration::from_millis(timeout_ms.unwrap_or(0));
                let why = format!("timed out after {}: its process tree was killed", secs(limit));
                self.task_exited(why, None, false).await;
            }
            changed = self.goal.changed() => return wake(changed),
        }
        wake(self.goal.changed().await)
    }

    /// Starts the attempt; a start that fails ends it at once (reported as exited without a
    /// code), since retrying is the server's call. False when the supervisor closed.
    fn start_task(&mut self, a: &Assignment) -> bool {
        if !self.start(a) {
            return false;
        }
        if self.proc.is_none() {
            // `start` recorded the failure and planned a retry; a task does not retry here.
            self.next_start = None;
            self.task_ended = true;
            self.shared.release_port(&self.id);
            // Nor does it say it will: `last_exit` says it could not start.
            self.shared.update(&self.id, |s| {
                s.state = InstanceState::Exited;
                s.exit_code = None;
                s.reason = None;
            });
        }
        true
    }

    /// The attempt is over: its tree is cleaned up and its end reported. A non-zero end is an
    /// event; a clean one is not (a job of 10,000 tasks would flood the log).
    /// `unknown`: the process was adopted, so its exit status could not be read.
    pub(super) async fn task_exited(&mut self, reason: String, code: Option<i32>, unknown: bool) {
        let Some(mut proc) = self.proc.take() else {
            return;
        };
        proc.clean_up().await;
        self.shared.set_record(&self.id, None);
        self.shared.release_port(&self.id);
        self.task_ended = true;
        let uptime = proc.started_at.elapsed();
        let last = reason.clone();
        self.shared.update(&self.id, |s| {
            s.state = InstanceState::Exited;
            s.pid = None;
            s.ready = false;
            s.last_exit = Some(last);
            s.exit_code = code;
            s.exit_unknown = unknown;
        });
        if code != Some(0) {
            let message = format!(
                "task pid {} ended: {reason} after {}",
                proc.pid,
                secs(uptime)
            );
            self.shared
                .event(EventKind::InstanceExited, &self.service, &self.id, message);
        }
    }
}

impl Runner {
    /// A task whose process ended while the agent was down: reported exited, how unknown, and
    /// never started again in this generation (the server decides whether it runs again).
    pub fn ended_while_away(mut self, generation: u64) -> Runner {
        self.generation = generation;
        self.task_ended = true;
        self
    }
}
