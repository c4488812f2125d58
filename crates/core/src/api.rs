//! Messages of the HTTP API (`/v1/...`), shared by the server and the client.

use crate::event::Event;
use crate::instance::{Assignment, DesiredState, InstanceState, InstanceStatus};
use crate::service::ServiceSpec;
use serde::{Deserialize, Serialize};

/// Longest node name: a DNS label's 63 characters.
pub const MAX_NODE_NAME: usize = 63;

/// Checks a node's name. Names go into store keys, events and cgroup paths, so they are 1 to
/// [`MAX_NODE_NAME`] letters, digits, `-`, `_` or `.`, and never `.` or `..` alone. The agent
/// checks its `--name` with it, and the server every name an agent sends.
pub fn validate_node_name(name: &str) -> Result<(), String> {
    let charset = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    let ok =
        !name.is_empty() && name.len() <= MAX_NODE_NAME && charset && name != "." && name != "..";
    if ok {
        Ok(())
    } else {
        Err(format!(
            "node name {name:?} must be 1 to {MAX_NODE_NAME} letters, digits, `-`, `_` or `.`"
        ))
    }
}

/// File in a control plane's data dir where it writes the address its API listens on; the CLI
/// (and `ebb demo`, for its child) reads it to find the API.
pub const ADDR_FILE: &str = "api.addr";
/// File in a control plane's data dir that holds the API token (0600); the CLI reads it.
pub const TOKEN_FILE: &str = "api-token";

/// The join token as an operator copies it to a new node: the server's secret, and, when the
/// API speaks TLS, the SHA-256 of the API's CA certificate, so that the agent can trust the
/// server before it has any other way to (as kubeadm's `--discovery-token-ca-cert-hash` and
/// k3s's `K10<hash>::` tokens do). Written `sha256:<64 hex>:<secret>`, or the bare secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// SHA-256 of the API's CA certificate (DER), lower-case hex.
    pub ca_sha256: Option<String>,
    /// What the server compares.
    pub secret: String,
}

impl JoinToken {
    /// Reads a token as written by [`JoinToken::render`] (surrounding whitespace ignored).
    pub fn parse(text: &str) -> JoinToken {
        let text = text.trim();
        let pinned = text.strip_prefix("sha256:").and_then(|rest| {
            let (hash, secret) = rest.split_once(':')?;
            let hex = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
            (hex && !secret.is_empty()).then(|| (hash.to_ascii_lowercase(), secret))
        });
        match pinned {
            Some((hash, secret)) => JoinToken {
                ca_sha256: Some(hash),
                secret: secret.to_string(),
            },
            None => JoinToken {
                ca_sha256: None,
                secret: text.to_string(),
            },
        }
    }

    /// The token as the join-token file holds it.
    pub fn render(&self) -> String {
        match &self.ca_sha256 {
            Some(hash) => format!("sha256:{hash}:{}", self.secret),
            None => self.secret.clone(),
        }
    }
}

/// File in an agent's data dir with the SHA-256 of the server's API CA, once the join token
/// gave it: later starts trust the same server without the token.
pub const SERVER_CA_FILE: &str = "server-ca-sha256";

/// File in an agent's data dir that holds its node credential (0600): what `POST
/// /v1/nodes/{name}/join` returned when the agent first joined with the join token.
pub const NODE_CREDENTIAL_FILE: &str = "node-credential";

/// `POST /v1/nodes/{name}/join`'s answer: the credential node `name` uses for every later call.
/// It is shown once; the server keeps only its hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinResponse {
    /// The bearer token of this node, and of no other.
    pub credential: String,
}

/// Header that carries the API token: `Authorization: Bearer <token>`.
pub const AUTH_HEADER: &str = "authorization";
/// Largest request body the API accepts; deploys of hundreds of services fit in far less.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Events a node sends in one sync; it keeps the rest for the next one.
pub const MAX_EVENTS_PER_SYNC: usize = 1_000;

/// Every error the API returns has this body, with a 4xx or 5xx status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, in words for the user; several problems are separated by newlines.
    pub error: String,
}

/// `PUT /v1/services`: create or update these services (others are left alone).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyRequest {
    /// The services to create or update; all are validated before any is written.
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
    /// The jobs to submit (a job already known with the same spec is left alone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<crate::JobSpec>,
    /// The queues to create or update.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queues: Vec<crate::QueueSpec>,
}

impl ApplyRequest {
    /// A request for services only.
    pub fn services(services: Vec<ServiceSpec>) -> ApplyRequest {
        ApplyRequest {
            services,
            jobs: Vec::new(),
            queues: Vec::new(),
        }
    }
}

/// What an apply did to one job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobChange {
    /// The job's name.
    pub job: String,
    /// `submitted` (new), `resubmitted` (a changed spec after the last run ended: a new run),
    /// or `unchanged`.
    pub change: String,
    /// The run it is on now.
    pub run: u64,
}

/// One job, as `GET /v1/jobs` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobView {
    /// The job's name.
    pub name: String,
    /// `queued`, `running`, `completed`, `failed` or `cancelled`.
    pub state: crate::JobState,
    /// Tasks in all.
    pub tasks: u32,
    /// Tasks completed.
    pub completed: u32,
    /// Tasks running now.
    pub running: u32,
    /// Tasks failed for good.
    pub failed: u32,
    /// Tasks cancelled.
    pub cancelled: u32,
    /// Tasks waiting (never started, queued again, or waiting for a retry).
    pub queued: u32,
    /// Its queue.
    pub queue: String,
    /// Its priority.
    pub priority: u8,
    /// Its parallelism.
    pub parallelism: crate::Parallelism,
    /// Which run.
    pub run: u64,
    /// Unix ms: submitted, first task started, finished.
    pub submitted_ms: u64,
    /// See `submitted_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    /// See `submitted_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
    /// Why it ended, once it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The spec.
    pub spec: crate::JobSpec,
}

/// One task of a job, as `GET /v1/jobs/{name}` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskView {
    /// Its index.
    pub index: u32,
    /// Attempts so far (the running one included).
    pub attempt: u32,
    /// Where its last attempt ran or runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Where it is.
    pub state: crate::TaskState,
    /// The last attempt's exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// How the last attempt ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<String>,
    /// How long the last attempt ran (so far, when it runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// How long the last attempt waited in the queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_wait_ms: Option<u64>,
    /// The last attempt's instance id (for `ebb logs JOB --instance`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

/// `GET /v1/jobs/{name}`: the job and each task that ran or runs (never-started ones are
/// counted in `job.queued`, not listed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobDetail {
    /// The job.
    pub job: JobView,
    /// Its tasks that have run or run now, by index.
    pub tasks: Vec<TaskView>,
}

/// One queue, as `GET /v1/queues` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueView {
    /// Its name.
    pub name: String,
    /// Fair-share weight.
    pub weight: u32,
    /// Cap on running tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_running: Option<u32>,
    /// Tasks of its jobs running now.
    pub running: u32,
    /// Tasks of its jobs waiting.
    pub queued: u32,
    /// Its jobs that have not finished.
    pub active_jobs: u32,
    /// Declared in a deploy file (false: named by a job only, weight 1 and no cap).
    pub declared: bool,
}

/// What an apply did to one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "change")]
pub enum Change {
    /// A new service, started with `instances` instances.
    Created {
        /// Instances it starts with.
        instances: u32,
    },
    /// The spec changed: instances are rolled one at a time.
    Updated {
        /// Instances it should run once rolled.
        instances: u32,
    },
    /// Only the instance count changed; nothing is rolled.
    Scaled {
        /// The count before.
        from: u32,
        /// The count now.
        to: u32,
    },
    /// Only load-balancer settings (`port`, `protocol`, `balance`) changed: the listener is
    /// reconfigured, instances keep running.
    Rerouted,
    /// The spec is the same as the stored one: nothing was written.
    Unchanged,
}

/// What an apply did to one service, named.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceChange {
    /// The service's name.
    pub service: String,
    /// What happened to it; flattened into this object, tagged by `change`.
    #[serde(flatten)]
    pub change: Change,
}

/// `PUT /v1/services`: what the apply did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyResponse {
    /// One entry per service in the request, in its order.
    pub changes: Vec<ServiceChange>,
    /// One entry per job in the request, in its order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<JobChange>,
    /// Set for a dry run (`PUT /v1/services?dry_run=true`): what would happen; nothing was
    /// written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<DryRun>,
}

/// What a deploy would do, beyond the changes: which instances would roll, and what would not
/// fit the cluster as it is now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DryRun {
    /// Per updated service, the instances that would be replaced one at a time.
    pub rolls: std::collections::BTreeMap<String, Vec<String>>,
    /// Per service whose new instances would not all fit, how many and why (no node, no
    /// capacity, constraints). Empty: everything fits.
    pub unplaceable: Vec<String>,
}

/// `POST /v1/services/{name}/scale`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScaleRequest {
    /// A fixed count (refused for an autoscaled service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
    /// New autoscaling bounds (only for an autoscaled service); either or both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u32>,
    /// The new upper bound; see `min`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
}

impl ScaleRequest {
    /// A request for a fixed count.
    pub fn count(instances: u32) -> ScaleRequest {
        ScaleRequest {
            instances: Some(instances),
            min: None,
            max: None,
        }
    }
}

/// A service with its rollout progress (`GET /v1/services`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceView {
    /// The service's name.
    pub name: String,
    /// The spec's [`ServiceSpec::version`]: instances on another version are rolled.
    pub version: String,
    /// Instances the spec asks for (for an autoscaled service, the autoscaler's current count).
    pub desired: u32,
    /// Instances placed on a node that should run (not being stopped), in whatever state.
    #[serde(default)]
    pub placed: u32,
    /// Of those, the ones in the running state (a failed or backing-off instance is not).
    pub running: u32,
    /// Of the placed ones, ready and on the current version.
    pub ready: u32,
    /// Instances still on an older version.
    pub outdated: u32,
    /// For an autoscaled service: why the autoscaler last chose `desired`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscale_reason: Option<String>,
    /// Why an instance of it could not be placed (`no node fits: 2 insufficient cpu`), if so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_reason: Option<String>,
    /// The stored spec.
    pub spec: ServiceSpec,
}

/// One instance as `ebb ps` shows it: assignment and last reported status together.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceView {
    /// The instance's id.
    pub id: String,
    /// The service it belongs to.
    pub service: String,
    /// The node it is assigned to.
    pub node: String,
    /// As its node last reported; `pending` until the node reports it.
    pub state: InstanceState,
    /// Whether the server wants it running or stopped.
    pub desired: DesiredState,
    /// Process id on its node; None while no process runs.
    pub pid: Option<u32>,
    /// `host:port` the instance listens on, once reported.
    pub addr: Option<String>,
    /// Passed its health check and is fit for traffic.
    pub ready: bool,
    /// Restarts since the assignment was created.
    pub restarts: u32,
    /// The spec version it runs (see [`ServiceView::version`]).
    pub version: String,
    /// Store revision at which the assignment was created.
    pub generation: u64,
    /// Unix milliseconds when the server created the assignment.
    pub created_ms: u64,
    /// Unix milliseconds when the current process started; None before the first start.
    pub started_ms: Option<u64>,
    /// Why the last process ended, if one did (`exit code 1`, `killed by SIGKILL`).
    pub last_exit: Option<String>,
    /// Why it is not running and ready now, as its node says (see `InstanceStatus::reason`).
    #[serde(default)]
    pub reason: Option<String>,
    /// What the load balancer measured for this instance over the last few seconds; None when
    /// its service has no public port or the instance is not routed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<crate::traffic::Traffic>,
    /// CPU and memory it used, as its node last reported (about once a second); None before
    /// a report or when its node is silent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<InstanceUsage>,
    /// Why the scheduler chose its node (see [`Assignment::placement`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<String>,
}

impl InstanceView {
    /// The view of an assignment and its node's last status (None: not reported yet, so `pending`).
    /// Leaves `traffic` and `usage` empty for the caller to fill.
    pub fn new(a: &Assignment, status: Option<&InstanceStatus>) -> InstanceView {
        InstanceView {
            id: a.id.clone(),
            service: a.service.clone(),
            node: a.node.clone(),
            state: status.map_or(InstanceState::Pending, |s| s.state),
            desired: a.desired,
            pid: status.and_then(|s| s.pid),
            addr: status.and_then(|s| s.addr.clone()),
            ready: status.is_some_and(|s| s.ready),
            restarts: status.map_or(0, |s| s.restarts),
            version: a.version.clone(),
            generation: a.generation,
            created_ms: a.created_ms,
            started_ms: status.and_then(|s| s.started_ms),
            last_exit: status.and_then(|s| s.last_exit.clone()),
            reason: status.and_then(|s| s.reason.clone()),
            traffic: None,
            usage: None,
            placement: a.placement.clone(),
        }
    }
}

/// `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusView {
    /// The server's ebb version.
    pub version: String,
    /// Nodes heard from recently enough not to be down.
    pub node_count: usize,
    /// Every service with its rollout progress.
    pub services: Vec<ServiceView>,
    /// The latest revision of the server's store.
    pub store_revision: u64,
    /// Milliseconds since the server started.
    pub uptime_ms: u64,
    /// Whether instance resources are enforced, and how (`cgroup v1`, `cgroup v2`, `none: ...`).
    pub resource_enforcement: Option<String>,
    /// The store and how it is doing: `sqlite PATH`, `etcd 3 members, healthy`.
    #[serde(default)]
    pub store: String,
    /// The name of the server that leads the control plane (this one, alone, on SQLite).
    #[serde(default)]
    pub leader: Option<String>,
    /// The name of the server that answered.
    #[serde(default)]
    pub server: String,
    /// Every job.
    #[serde(default)]
    pub jobs: Vec<JobView>,
}

/// One server of the control plane, as `GET /v1/servers` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerView {
    /// Its name (`ebb server --name`).
    pub name: String,
    /// Where its API listens.
    pub api: String,
    /// Where its load balancers listen.
    pub router: String,
    /// Whether it leads the control plane.
    pub leader: bool,
    /// When it was last known alive, unix milliseconds: now for every server whose session
    /// lives; the moment its session ended for one this server saw leave.
    pub last_seen_ms: u64,
    /// Whether its session lives.
    pub alive: bool,
}

/// A node's description of itself, sent with every sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's name, unique in the cluster.
    pub name: String,
    /// Address instances bind and are reached on.
    pub address: String,
    /// CPU the node offers to instances (its capacity for reservations), in millicores.
    pub cpu_millis: u32,
    /// Memory the node offers to instances, in bytes.
    pub memory_bytes: u64,
    /// How resources are enforced on this node (`cgroup v1`, `none: <why>`).
    pub enforcement: String,
    /// Labels that placement constraints match (`zone=a`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// A node's drain: it takes no new instances, and its instances move to other nodes one at a
/// time. After `deadline_ms` whatever is left is stopped (and replaced elsewhere if it fits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDrainView {
    /// When it began and by when it must be over, Unix ms.
    pub since_ms: u64,
    /// By when it must be over, Unix ms: what is left then is stopped.
    pub deadline_ms: u64,
    /// When nothing was left on the node to move (None while moves are under way).
    pub done_ms: Option<u64>,
}

/// `POST /v1/nodes/{name}/drain`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrainRequest {
    /// How long the moves may take before what is left is stopped, e.g. "1h" (default 1h).
    #[serde(default)]
    pub deadline: Option<String>,
}

/// `POST /v1/instances/{id}/migrate`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateRequest {
    /// The node the replacement must land on; None: wherever the scheduler places it.
    #[serde(default)]
    pub to: Option<String>,
}

/// The phase of a move that ended with its replacement running.
pub const MOVE_MOVED: &str = "moved";
/// The phase of a move that ended with the instance stopped and not replaced (the drain
/// deadline passed first, or its service was scaled in or removed).
pub const MOVE_STOPPED: &str = "stopped";

/// `GET /v1/migrations`: one instance being moved, start-before-stop: a replacement starts
/// (on `to` if given, never on `from`), and once it is ready and routed the instance is drained
/// out of its load balancer and stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationView {
    /// The id of the instance being moved.
    pub instance: String,
    /// The service it belongs to.
    pub service: String,
    /// The node it moves from (its node when the move began).
    pub from: String,
    /// The node the replacement must land on; None: the scheduler's choice (never `from`).
    pub to: Option<String>,
    /// Why it moves: `ebb migrate`, or the drain of its node.
    pub reason: String,
    /// Unix milliseconds when the move began.
    pub since_ms: u64,
    /// The instance started in its place, once there is one, and where it runs.
    pub replacement: Option<String>,
    /// The node `replacement` is assigned to.
    pub replacement_node: Option<String>,
    /// Where the move is, in words (`placing replacement`, `pending: no node fits: ...`,
    /// `starting replacement`, `replacement ready`, `draining: ...`, `stopping`), or how it
    /// ended: `moved` (the replacement runs) or `stopped` (not replaced).
    pub phase: String,
}

/// A node's liveness as the server's liveness tracking and `ebb drain` decide; the scheduler
/// places new instances only on [`NodeState::Ready`] nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Heartbeating; takes new instances.
    #[default]
    Ready,
    /// Missed a heartbeat: takes no new instances, its instances still count.
    Suspect,
    /// Silent past the down timeout: its instances are out of the load balancers and replaced.
    Down,
    /// Taking no new instances while its instances move elsewhere (`ebb drain`).
    Draining,
}

impl NodeState {
    /// The name `ebb nodes` and JSON use.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Ready => "ready",
            NodeState::Suspect => "suspect",
            NodeState::Down => "down",
            NodeState::Draining => "draining",
        }
    }
}

impl std::fmt::Display for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `GET /v1/nodes`: one node, for `ebb nodes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    /// The node's name.
    pub name: String,
    /// Address instances bind and are reached on.
    pub address: String,
    /// Its liveness, or whether it is draining.
    pub state: NodeState,
    /// What the node offers to instances.
    pub cpu_millis: u32,
    /// Memory it offers to instances, in bytes.
    pub memory_bytes: u64,
    /// Reserved by the instances placed on it (their `resources`).
    pub reserved_cpu_millis: u64,
    /// Memory reserved by the instances placed on it, in bytes.
    pub reserved_memory_bytes: u64,
    /// What the whole machine uses, as last reported (None before a report).
    pub used_cpu_cores: Option<f64>,
    /// Memory the whole machine uses, in bytes, as last reported (None before a report).
    pub used_memory_bytes: Option<u64>,
    /// Instances placed on it and not being stopped.
    pub instances: u32,
    /// Milliseconds since its last heartbeat (None: none since the server started).
    pub heartbeat_age_ms: Option<u64>,
    /// Labels that placement constraints match (`zone=a`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Its drain, while it is in drain (`ebb drain`) until `ebb undrain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<NodeDrainView>,
}

/// `POST /v1/nodes/{name}/sync`: a node's heartbeat with its instances' status, new events, and
/// the CPU and memory its instances and the node use. Usage rides along with the heartbeat: it
/// changes every second, so it never triggers a sync of its own and the server keeps it in
/// memory, not in the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncRequest {
    /// The node's description of itself.
    pub node: NodeInfo,
    /// The status of each of its instances; the server keeps those of the assignments the node
    /// still holds.
    pub statuses: Vec<InstanceStatus>,
    /// Events since the last sync, at most [`MAX_EVENTS_PER_SYNC`].
    pub events: Vec<Event>,
    /// The latest usage of each instance with a live process (absent while it has no CPU rate
    /// yet: its first second). Older agents send none.
    #[serde(default)]
    pub usage: Vec<InstanceUsage>,
    /// The whole machine's use, when the node could read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_usage: Option<NodeUsage>,
}

/// CPU and memory one instance used, measured by its node about once a second: from the
/// instance's cgroup where there is one, else from /proc over its processes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceUsage {
    /// The instance's id.
    pub id: String,
    /// The generation of the assignment the process runs for.
    #[serde(default)]
    pub generation: u64,
    /// Cores used on average over the last sampling interval (0.35 = 35 % of one core).
    pub cpu_cores: f64,
    /// Memory in use, page cache excluded (anonymous memory: cgroup `anon` / `total_rss`, or
    /// the processes' `RssAnon`).
    pub memory_bytes: u64,
    /// `cpu_cores` over the cores the spec reserves (`resources.cpu`); None when it reserves none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_fraction: Option<f64>,
    /// `memory_bytes` over the bytes the spec reserves (`resources.memory`); None when it
    /// reserves none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_fraction: Option<f64>,
    /// Unix milliseconds when it was measured.
    pub at_ms: u64,
}

/// What the whole node uses, instances and everything else on the machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeUsage {
    /// Cores busy on average over the last sampling interval (`/proc/stat`).
    pub cpu_cores: f64,
    /// Memory in use: total minus available (`/proc/meminfo`).
    pub memory_bytes: u64,
    /// Unix milliseconds when it was measured.
    pub at_ms: u64,
}

/// The node's full set of assignments at `revision`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AssignmentsResponse {
    /// The store revision this set is current at; pass it as `after` to wait for a change.
    pub revision: u64,
    /// Every assignment on the node, including those it should stop.
    pub assignments: Vec<Assignment>,
}

/// `GET /v1/events`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventsResponse {
    /// Pass as `after` to get only newer events.
    pub last_seq: u64,
    /// The events, oldest first.
    pub events: Vec<Event>,
}

/// `GET /v1/logs/{service}`, and an agent's answer to a [`LogRequest`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LogsResponse {
    /// The lines, oldest first per instance, instance after instance.
    pub lines: Vec<LogLine>,
    /// Byte offsets to resume from, per instance (for `-f`).
    pub cursors: Vec<LogCursor>,
    /// Instances whose log could not be read now, and why (their node is down, say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unavailable: Vec<LogGap>,
}

/// An instance whose log could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogGap {
    /// The instance's id.
    pub instance: String,
    /// Its node, when known.
    pub node: Option<String>,
    /// Why, for a person: "node n2 is down (last heard 14s ago)".
    pub reason: String,
}

/// What the server asks an agent to read (over the agent's log channel, `GET
/// /v1/nodes/{name}/log-requests`): the last `tail` lines of each instance, or what follows its
/// cursor for those that have one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRead {
    /// Instance ids on the agent's node.
    pub instances: Vec<String>,
    /// Lines from the end, for instances without a cursor.
    pub tail: usize,
    /// Where to go on from, per instance.
    #[serde(default)]
    pub cursors: Vec<LogCursor>,
    /// Only lines written in the last this many milliseconds, for instances without a cursor:
    /// relative, so that the agent measures it on its own clock, the one its stamps are on
    /// (as kubelet takes `sinceSeconds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within_ms: Option<u64>,
    /// Give each line the time it was written ([`LogLine::at_ms`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stamps: bool,
}

/// One read waiting for an agent; the agent posts its [`LogsResponse`] back under `id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRequest {
    /// The server's number for this read, to post the answer under.
    pub id: u64,
    /// What to read.
    pub read: LogRead,
}

/// The answer to an agent's log-requests long-poll.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LogRequests {
    /// The reads waiting for this node, oldest first (none when the wait ended).
    pub requests: Vec<LogRequest>,
}

/// One line of an instance's log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogLine {
    /// The id of the instance that wrote it.
    pub instance: String,
    /// The text, without its line ending (invalid UTF-8 replaced).
    pub line: String,
    /// When it was written (unix ms), when asked for: an upper bound its node's agent notes
    /// four times a second from the file's modification time (see the agent's `log_stamps`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
}

/// Where to resume reading one instance's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogCursor {
    /// The instance's id.
    pub instance: String,
    /// Byte offset in its current log file after the last line returned.
    pub offset: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_join_token_carries_the_ca_hash_when_there_is_one() {
        let hash = "ab".repeat(32);
        let t = JoinToken::parse(&format!("  sha256:{hash}:s3cret\n"));
        assert_eq!(t.ca_sha256.as_deref(), Some(hash.as_str()));
        assert_eq!(t.secret, "s3cret");
        assert_eq!(JoinToken::parse(&t.render()), t);
        let plain = JoinToken::parse("0123abcd");
        assert_eq!((plain.ca_sha256, plain.secret.as_str()), (None, "0123abcd"));
        // Not a hash: the whole text is the secret.
        let odd = JoinToken::parse("sha256:xyz:s");
        assert_eq!((odd.ca_sha256, odd.secret.as_str()), (None, "sha256:xyz:s"));
    }

    #[test]
    fn node_names_are_short_safe_words() {
        for good in ["n1", "web-3.example.com", "A_b", &"x".repeat(63)] {
            assert_eq!(validate_node_name(good), Ok(()), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "../etc", "a b", "é", &"x".repeat(64)] {
            assert!(validate_node_name(bad).is_err(), "{bad:?}");
        }
    }
}

/// One point of a service's history (`GET /v1/history`): its load and instances at `at_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HistorySample {
    /// When, in ms since the Unix epoch.
    pub at_ms: u64,
    /// Requests per second through this server's load balancer over the step before.
    pub rps: f64,
    /// Instances wanted.
    pub desired: u32,
    /// Instances ready.
    pub ready: u32,
}

/// A service's recent history, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceHistory {
    /// The service.
    pub service: String,
    /// One sample per step, oldest first.
    pub samples: Vec<HistorySample>,
}

/// `GET /v1/history`: the last hour of instances against load, per service (the dashboard's
/// sparklines). Kept in the memory of the server that answers, since it started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryResponse {
    /// Time between samples, in ms.
    pub step_ms: u64,
    /// Per service, by name.
    pub services: Vec<ServiceHistory>,
}

/// `POST /v1/ui/login`: a one-time login URL for the dashboard (`ebb ui`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UiLogin {
    /// The path to open on the API's address, with the one-time code (`/ui/login?code=...`).
    pub path: String,
    /// How long the code works, in seconds.
    pub expires_in_s: u64,
}
