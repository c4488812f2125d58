//! Events: what happened and why, in words users can read (`ebb events`).

use serde::{Deserialize, Serialize};

/// The kinds of event ebb records.
/// Serialized with the same dotted names `ebb events` prints (`instance.ready`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    #[serde(rename = "service.created")]
    ServiceCreated,
    #[serde(rename = "service.updated")]
    ServiceUpdated,
    #[serde(rename = "service.scaled")]
    ServiceScaled,
    #[serde(rename = "service.stopped")]
    ServiceStopped,
    #[serde(rename = "instance.created")]
    InstanceCreated,
    #[serde(rename = "instance.started")]
    InstanceStarted,
    #[serde(rename = "instance.exited")]
    InstanceExited,
    #[serde(rename = "instance.restarting")]
    InstanceRestarting,
    #[serde(rename = "instance.start_failed")]
    InstanceStartFailed,
    #[serde(rename = "instance.ready")]
    InstanceReady,
    #[serde(rename = "instance.unready")]
    InstanceUnready,
    #[serde(rename = "instance.unhealthy")]
    InstanceUnhealthy,
    #[serde(rename = "instance.stopping")]
    InstanceStopping,
    #[serde(rename = "instance.stopped")]
    InstanceStopped,
    #[serde(rename = "instance.adopted")]
    InstanceAdopted,
    #[serde(rename = "instance.draining")]
    InstanceDraining,
    #[serde(rename = "router.listening")]
    RouterListening,
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
    /// An instance is being moved to another node, start-before-stop.
    #[serde(rename = "instance.migrating")]
    InstanceMigrating,
    #[serde(rename = "server.started")]
    ServerStarted,
    #[serde(rename = "warning")]
    Warning,
}

impl EventKind {
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
            EventKind::NodeJoined => "node.joined",
            EventKind::InstancePending => "instance.pending",
            EventKind::NodeDown => "node.down",
            EventKind::NodeReturned => "node.returned",
            EventKind::NodeDraining => "node.draining",
            EventKind::NodeDrained => "node.drained",
            EventKind::NodeUndrained => "node.undrained",
            EventKind::InstanceMigrating => "instance.migrating",
            EventKind::ServerStarted => "server.started",
            EventKind::Warning => "warning",
        }
    }
}

/// One event. `seq` is assigned by the server when it stores the event (0 before).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    #[serde(default)]
    pub seq: u64,
    /// Unix milliseconds.
    pub time_ms: u64,
    pub kind: EventKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub message: String,
}

impl Event {
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

    pub fn service(mut self, service: impl Into<String>) -> Event {
        self.service = Some(service.into());
        self
    }

    pub fn instance(mut self, instance: impl Into<String>) -> Event {
        self.instance = Some(instance.into());
        self
    }

    pub fn node(mut self, node: impl Into<String>) -> Event {
        self.node = Some(node.into());
        self
    }
}
