//! The end of a process: by itself (restart after back-off), as unhealthy (killed, then the same),
//! or on purpose (graceful stop, Stopped).

use super::{secs, Runner};
use crate::supervisor::process::ADOPTED_POLL;
use ebb_core::{EventKind, InstanceState};
use tokio::time;

impl Runner {
    /// The main process ended: clean up its tree, then restart after the back-off.
    pub(super) async fn on_exit(&mut self, reason: String) {
        let Some(mut proc) = self.proc.take() else {
            return;
        };
        proc.clean_up().await;
        self.shared.set_record(&self.id, None);
        let uptime = proc.started_at.elapsed();
        let delay = self.backoff.next(uptime);
        self.next_start = Some(time::Instant::now() + delay);
        let last = reason.clone();
        let why = format!("{reason}; restarting in {}", secs(delay));
        self.shared.update(&self.id, |s| {
            s.state = InstanceState::Backoff;
            s.pid = None;
            s.ready = false;
            s.last_exit = Some(last);
            s.reason = Some(why);
        });
        let (id, service) = (&self.id, &self.service);
        let exited = format!("pid {} exited: {reason} after {}", proc.pid, secs(uptime));
        self.shared
            .event(EventKind::InstanceExited, service, id, exited);
        let restarting = format!("restarting in {}", secs(delay));
        self.shared
            .event(EventKind::InstanceRestarting, service, id, restarting);
    }

    /// Failed health checks past the start period: the tree is killed at once (a hung process
    /// may ignore SIGTERM) and restarted through the same back-off as a crash.
    pub(super) async fn on_unhealthy(&mut self, error: String) {
        let Some(proc) = self.proc.as_mut() else {
            return;
        };
        let message = format!(
            "unhealthy: {error}; killing pid {} and its process tree",
            proc.pid
        );
        self.shared.event(
            EventKind::InstanceUnhealthy,
            &self.service,
            &self.id,
            message,
        );
        self.shared.update(&self.id, |s| s.ready = false);
        proc.kill().await;
        let reason = proc.wait_exit(ADOPTED_POLL).await;
        self.on_exit(format!("{reason} (failed health checks: {error})"))
            .await;
    }

    /// Graceful stop of whatever runs; the instance ends Stopped either way.
    pub(super) async fn stop(&mut self, why: &str) {
        self.next_start = None;
        self.shared.release_port(&self.id);
        if self.task_ended {
            // A task that already ended keeps its Exited status: how it ended is the record.
            return;
        }
        let Some(mut proc) = self.proc.take() else {
            self.mark_stopped(why, None);
            return;
        };
        self.shared.update(&self.id, |s| {
            s.state = InstanceState::Stopping;
            s.ready = false;
            s.reason = None;
        });
        let message = format!(
            "stopping pid {} because {why}: {}, then SIGKILL after {}",
            proc.pid,
            proc.stop.signal,
            secs(proc.stop.grace)
        );
        self.shared.event(
            EventKind::InstanceStopping,
            &self.service,
            &self.id,
            message,
        );
        let reason = proc.terminate().await;
        self.shared.set_record(&self.id, None);
        self.mark_stopped(why, Some(reason));
    }

    /// Stopped, with an event only when something actually stopped (not for a never-started one).
    fn mark_stopped(&self, why: &str, exit: Option<String>) {
        let was = self.shared.status(&self.id).map(|s| s.state);
        let stopped_now = exit.is_some()
            || !matches!(
                was,
                Some(InstanceState::Stopped | InstanceState::Pending | InstanceState::Exited)
                    | None
            );
        let message = match &exit {
            Some(reason) => format!("stopped: {reason}"),
            None => format!("stopped because {why}"),
        };
        self.shared.update(&self.id, |s| {
            s.state = InstanceState::Stopped;
            s.pid = None;
            s.ready = false;
            s.reason = None;
            if exit.is_some() {
                s.last_exit = exit;
            }
        });
        if stopped_now {
            self.shared
                .event(EventKind::InstanceStopped, &self.service, &self.id, message);
        }
    }
}
