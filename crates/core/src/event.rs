//! Events: what happened and why, in words users can read (`ebb events`).

use serde::{Deserialize, Serialize};

/// The kinds of event ebb records.
/// Serialized with the same dotted names `ebb events` prints (`instance.ready`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// A service was deployed for the first time.
    #[serde(rename = "service.created")]
    ServiceCreated,
    /// A service's spec changed: its instances are rolled, or only its load balancer changes.
    #[serde(rename = "service.updated")]
    ServiceUpdated,
    /// A service's instance count changed, by `ebb scale`, a deploy, or the autoscaler.
    #[serde(rename = "service.scaled")]
    ServiceScaled,
    /// A service was removed; its instances are being stopped.
    #[serde(rename = "service.stopped")]
    ServiceStopped,
    /// The server placed a new instance on a node.
    #[serde(rename = "instance.created")]
    InstanceCreated,
    /// A node started an instance's process.
    #[serde(rename = "instance.started")]
    InstanceStarted,
    /// An instance's process ended without being asked to.
    #[serde(rename = "instance.exited")]
    InstanceExited,
    /// An exited instance will be started again after its back-off.
    #[serde(rename = "instance.restarting")]
    InstanceRestarting,
    /// An instance's process could not be started at all (e.g. the program does not exist).
    #[serde(rename = "instance.start_failed")]
    InstanceStartFailed,
    /// An instance passed its health check and takes traffic.
    #[serde(rename = "instance.ready")]
    InstanceReady,
    /// A ready instance failed a health check and takes no traffic until it passes again.
    #[serde(rename = "instance.unready")]
    InstanceUnready,
    /// An instance failed health checks past its start period: it is killed and restarted.
    #[serde(rename = "instance.unhealthy")]
    InstanceUnhealthy,
    /// The server asked an instance's node to stop it (scale in, rolling update, move, removal).
    #[serde(rename = "instance.stopping")]
    InstanceStopping,
    /// An instance stopped on purpose, or was lost with its node.
    #[serde(rename = "instance.stopped")]
    InstanceStopped,
    /// A restarted agent took over an instance process that a previous agent started.
    #[serde(rename = "instance.adopted")]
    InstanceAdopted,
    /// An instance left its load balancer before it stops, to finish its requests in flight.
    #[serde(rename = "instance.draining")]
    InstanceDraining,
    /// A service's load balancer listens on its public port.
    #[serde(rename = "router.listening")]
    RouterListening,
    /// A service's load balancer serves certificates read again from changed files.
    #[serde(rename = "router.certificate")]
    RouterCertificate,
    /// A node synced with the server for the first time.
    #[serde(rename = "node.joined")]
    NodeJoined,
    /// An instance could not be placed: no node fits (the reason says why per node).
    #[serde(rename = "instance.pending")]
    InstancePending,
    /// A node stopped heartbeating: its instances are replaced elsewhere.
    #[serde(rename = "node.down")]
    NodeDown,
    /// A node that was down heartbeats again; what it held and was replaced is stopped there.
    #[serde(rename = "node.returned")]
    NodeReturned,
    /// A node was put in drain: no new instances, its instances move elsewhere one at a time.
    #[serde(rename = "node.draining")]
    NodeDraining,
    /// A node's drain is over: nothing of it is left to move.
    #[serde(rename = "node.drained")]
    NodeDrained,
    /// A node was put back in service (`ebb undrain`).
    #[serde(rename = "node.undrained")]
    NodeUndrained,
    /// A node that was down was forgotten (`ebb nodes rm`).
    #[serde(rename = "node.removed")]
    NodeRemoved,
    /// An instance is being moved to another node, start-before-stop.
    #[serde(rename = "instance.migrating")]
    InstanceMigrating,
    /// A job was submitted (deployed, `ebb run`, or redeployed for a new run).
    #[serde(rename = "job.submitted")]
    JobSubmitted,
    /// A job's first task started.
    #[serde(rename = "job.started")]
    JobStarted,
    /// Every task of a job completed.
    #[serde(rename = "job.completed")]
    JobCompleted,
    /// A job failed: a task failed for good, or its deadline passed.
    #[serde(rename = "job.failed")]
    JobFailed,
    /// A job was cancelled (`ebb cancel`).
    #[serde(rename = "job.cancelled")]
    JobCancelled,
    /// A finished job was removed (`ebb jobs rm`).
    #[serde(rename = "job.removed")]
    JobRemoved,
    /// A task's attempt failed; it runs again after its back-off.
    #[serde(rename = "task.retrying")]
    TaskRetrying,
    /// A task failed for good.
    #[serde(rename = "task.failed")]
    TaskFailed,
    /// A task goes back to its queue without counting as a failure (its node was lost).
    #[serde(rename = "task.requeued")]
    TaskRequeued,
    /// A task was stopped to make room for work of higher priority; it goes back to its queue
    /// without counting as a failure.
    #[serde(rename = "task.preempted")]
    TaskPreempted,
    /// The control plane started.
    #[serde(rename = "server.started")]
    ServerStarted,
    /// Something went wrong that ebb works around or retries (a port it cannot listen on, a move
    /// called off).
    #[serde(rename = "warning")]
    Warning,
    /// A kind this build does not know: an event written by a newer ebb. Read as this, so an
    /// older CLI or agent still lists the events around it (its message says what happened).
    /// ebb never records it (an older server may pass one on as `unknown`), and never accepts
    /// it from an agent.
    #[serde(rename = "unknown", other)]
    Unknown,
}

impl EventKind {
    /// Whether an agent may report an event of this kind: what happens to the instances it
    /// runs. Decisions (scaling, placement, rollouts) and node states are the server's to
    /// record; an agent claiming them would write history it has no say in.
    pub fn from_agent(self) -> bool {
        matches!(
            self,
            EventKind::InstanceStarted
                | EventKind::InstanceExited
                | EventKind::InstanceRestarting
                | EventKind::InstanceStartFailed
                | EventKind::InstanceReady
                | EventKind::InstanceUnready
                | EventKind::InstanceUnhealthy
                | EventKind::InstanceStopping
                | EventKind::InstanceStopped
                | EventKind::InstanceAdopted
        )
    }

    /// The dotted name `ebb events` and JSON use (`instance.ready`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ServiceCreated => "service.created",
            EventKind::ServiceUpdated => "service.updated",
            EventKind::ServiceScaled => "service.scaled",
            EventKind::ServiceStopped => "service.stopped",
            EventKind::InstanceCreated => "instance.created",
            EventKind::InstanceStarted => "instance.started",
            EventKind::InstanceExited => "instance.exited",
            EventKind::InstanceRestarting => "instance.restarting",
            EventKind::InstanceStartFailed => "instance.start_failed",
            EventKind::InstanceReady => "instance.ready",
            EventKind::InstanceUnready => "instance.unready",
            EventKind::InstanceUnhealthy => "instance.unhealthy",
            EventKind::InstanceStopping => "instance.stopping",
            EventKind::InstanceStopped => "instance.stopped",
            EventKind::InstanceAdopted => "instance.adopted",
            EventKind::InstanceDraining => "instance.draining",
            EventKind::RouterListening => "router.listening",
            EventKind::RouterCertificate => "router.certificate",
            EventKind::NodeJoined => "node.joined",
            EventKind::InstancePending => "instance.pending",
            EventKind::NodeDown => "node.down",
            EventKind::NodeReturned => "node.returned",
            EventKind::NodeDraining => "node.draining",
            EventKind::NodeDrained => "node.drained",
            EventKind::NodeRemoved => "node.removed",
            EventKind::NodeUndrained => "node.undrained",
            EventKind::InstanceMigrating => "instance.migrating",
            EventKind::JobSubmitted => "job.submitted",
            EventKind::JobStarted => "job.started",
            EventKind::JobCompleted => "job.completed",
            EventKind::JobFailed => "job.failed",
            EventKind::JobCancelled => "job.cancelled",
            EventKind::JobRemoved => "job.removed",
            EventKind::TaskRetrying => "task.retrying",
            EventKind::TaskFailed => "task.failed",
            EventKind::TaskRequeued => "task.requeued",
            EventKind::TaskPreempted => "task.preempted",
            EventKind::ServerStarted => "server.started",
            EventKind::Warning => "warning",
            EventKind::Unknown => "unknown",
        }
    }
}

/// One event. `seq` is assigned by the server when it stores the event (0 before).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Store revision at which the server stored it (0 before), so it grows with each event.
    #[serde(default)]
    pub seq: u64,
    /// Unix milliseconds.
    pub time_ms: u64,
    /// What happened.
    pub kind: EventKind,
    /// The service it concerns, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The id of the instance it concerns, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The node it concerns or came from, if any; the server sets it on events a node sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// What happened and why, in words for the user.
    pub message: String,
}

impl Event {
    /// An event at `time_ms` (Unix ms), not yet tied to a service, instance or node; `seq` is 0
    /// until the server stores it.
    pub fn new(time_ms: u64, kind: EventKind, message: impl Into<String>) -> Event {
        Event {
            seq: 0,
            time_ms,
            kind,
            service: None,
            instance: None,
            node: None,
            message: message.into(),
        }
    }

    /// Sets the service it concerns.
    pub fn service(mut self, service: impl Into<String>) -> Event {
        self.service = Some(service.into());
        self
    }

    /// Sets the instance it concerns.
    pub fn instance(mut self, instance: impl Into<String>) -> Event {
        self.instance = Some(instance.into());
        self
    }

    /// Sets the node it concerns.
    pub fn node(mut self, node: impl Into<String>) -> Event {
        self.node = Some(node.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_from_a_newer_ebb_reads_as_unknown_and_agents_may_not_send_it() {
        let text = r#"{"seq":3,"time_ms":1,"kind":"galaxy.exploded","message":"boom"}"#;
        let event: Event = serde_json::from_str(text).unwrap();
        assert_eq!(event.kind, EventKind::Unknown);
        assert_eq!(event.message, "boom");
        assert_eq!(event.kind.as_str(), "unknown");
        assert!(!EventKind::Unknown.from_agent());
    }
}
