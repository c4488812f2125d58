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
    /// Unique instance id: the service name and 8 hex digits (`web-1f3a9c02`).
    pub id: String,
    /// The service it is an instance of.
    pub service: String,
    /// The node it runs on.
    pub node: String,
    /// Store revision at which the assignment was created: fences stale copies (principle 5).
    pub generation: u64,
    /// The spec's [`ServiceSpec::version`] this instance runs.
    pub version: String,
    /// The service's spec as of this assignment, so the node needs nothing else to run it.
    pub spec: ServiceSpec,
    /// Whether it should run or stop.
    pub desired: DesiredState,
    /// Unix milliseconds when the server created the assignment.
    pub created_ms: u64,
    /// Set when this is one attempt of a job's task: the node runs it once, to its end, and
    /// reports its exit instead of restarting it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<crate::job::TaskRef>,
    /// Why the scheduler chose its node (`n1, best of 3 nodes that fit (spread: …)`), for
    /// `ebb describe`; None for assignments made before ebb said so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<String>,
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
    /// A task's process ended by itself (or was killed at its timeout): `exit_code` and
    /// `last_exit` say how. Tasks are never restarted by their node.
    Exited,
}

impl InstanceState {
    /// The name `ebb ps` and JSON use.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Pending => "pending",
            InstanceState::Starting => "starting",
            InstanceState::Running => "running",
            InstanceState::Backoff => "backoff",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
            InstanceState::Failed => "failed",
            InstanceState::Exited => "exited",
        }
    }
}

/// What a node reports about one of its instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStatus {
    /// The instance's id.
    pub id: String,
    /// The generation of the assignment this status is for; the server ignores stale ones.
    pub generation: u64,
    /// Where it is in its life cycle.
    pub state: InstanceState,
    /// Process id of its current process; None while none runs.
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
    /// The last process's exit code, when it exited by itself with one (not by a signal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// A task ended where its node could not see how (while the agent was down, or adopted by a
    /// restarted agent, which cannot reap it): the server runs it again, not as a failure.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exit_unknown: bool,
    /// Why it is not running and ready, as its node last saw it, for `ebb ps` and `ebb deploy`:
    /// a start failure and its retry, an exit and its restart (`exit code 1; restarting in
    /// 2.0s`), a failing health check (`health: GET /nope answered 404 Not Found`). None once
    /// ready, stopping or stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
