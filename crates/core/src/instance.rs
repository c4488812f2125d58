//! Instances: what the server assigns to a node ([`Assignment`]) and what the node reports back
//! ([`InstanceStatus`]).

use crate::service::ServiceSpec;
use serde::{Deserialize, Serialize};

/// What the server wants of an assigned instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DesiredState {
    /// Keep it running; restart it when it exits or fails its health check.
    Run,
    /// Stop it gracefully (stop signal, grace, then SIGKILL) and report it stopped.
    Stop,
}

/// One instance placed on one node. The agent receives the full set of its node's assignments
/// and makes its processes match (level-triggered, ARCHITECTURE.md, principle 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub id: String,
    pub service: String,
    pub node: String,
    /// Store revision at which the assignment was created: fences stale copies (principle 5).
    pub generation: u64,
    /// The spec's [`ServiceSpec::version`] this instance runs.
    pub version: String,
    pub spec: ServiceSpec,
    pub desired: DesiredState,
    /// Unix milliseconds when the server created the assignment.
    pub created_ms: u64,
}

/// Life-cycle state of an instance as its node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Assigned but not yet started by its node.
    Pending,
    /// Process started, health not yet passed.
    Starting,
    /// Process running (see `ready` for health).
    Running,
    /// Exited; waiting for the restart back-off to pass.
    Backoff,
    /// Stop signal sent; waiting for the process tree to exit.
    Stopping,
    /// Stopped on purpose; the server may forget it.
    Stopped,
    /// Could not be started at all (e.g. the program does not exist); retried with back-off.
    Failed,
}

impl InstanceState {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Pending => "pending",
            InstanceState::Starting => "starting",
            InstanceState::Running => "running",
            InstanceState::Backoff => "backoff",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
            InstanceState::Failed => "failed",
        }
    }
}

/// What a node reports about one of its instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStatus {
    pub id: String,
    pub generation: u64,
    pub state: InstanceState,
    pub pid: Option<u32>,
    /// `host:port` the instance listens on.
    pub addr: Option<String>,
    /// Passed its health check and is fit for traffic.
    pub ready: bool,
    /// Restarts since the assignment was created.
    pub restarts: u32,
    /// Unix milliseconds when the current process started.
    pub started_ms: Option<u64>,
    /// Why the last process ended, if one did (`exit code 1`, `killed by SIGKILL`).
    pub last_exit: Option<String>,
}
