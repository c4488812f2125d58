//! Command-line interface: every command, option and its help.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Default API address (loopback unless told otherwise: nothing is exposed by default).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";
/// Default state directory, relative to where ebb runs.
pub const DEFAULT_DATA_DIR: &str = ".ebb";

#[derive(Parser, Debug)]
#[command(
    name = "ebb",
    version,
    about = "Elastic compute on your own Linux machines, in one binary",
    long_about = "ebb runs services described in TOML deploy files as supervised processes: it restarts \
                  them when they exit or fail their health check, rolls spec changes one instance at a \
                  time, enforces their resources with cgroups, and keeps its state in an embedded SQLite store.\n\n\
                  Start with `ebb up examples/hello.toml`, then use `ebb ps`, `ebb scale`, `ebb logs` from another terminal.",
    after_help = "Exit codes: 0 success, 1 failure, 2 invalid input (bad deploy file or arguments), 3 cannot reach the API."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// ebb's state directory: store, API token, instance logs. The CLI reads the API address and token from it.
    #[arg(long, global = true, env = "EBB_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// API address the CLI talks to [default: the address `ebb up` wrote in the data dir, else 127.0.0.1:7070]
    #[arg(long, global = true, env = "EBB_ADDR")]
    pub addr: Option<String>,
    /// CA certificate to trust a TLS API by (PEM; the server's data dir tls/ca.pem) [default:
    /// the data dir's, for an API on this machine; agents also trust the CA the join token names]
    #[arg(long, global = true, env = "EBB_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the control plane and a local agent in the foreground, and apply deploy files
    Up(UpArgs),
    /// Run the control plane (API, scheduler, autoscaler, load balancers) for agents to join
    #[command(
        long_about = "Run the control plane in the foreground: the API, the store, the scheduler that places \
                      instances on nodes, the autoscaler and the load balancers. Without --agent it runs no \
                      instance itself: nodes join with `ebb agent --server URL --token-file FILE`, where FILE is a \
                      copy of the join token this command writes to <data dir>/join-token on first start."
    )]
    Server(ServerArgs),
    /// Join this machine to a server as a node and run the instances placed on it
    #[command(
        long_about = "Join this machine to an ebb server as a node: report its capacity, labels and \
                      heartbeat every second, and run the instances the server places here. Stopping the \
                      agent (Ctrl-C, SIGTERM) leaves its instances running; a restarted agent adopts them \
                      without restarting them. To move instances off a node, use `ebb drain`."
    )]
    Agent(AgentArgs),
    /// List the nodes: state, capacity, reserved and used resources, instances, last heartbeat
    Nodes {
        /// Print a JSON array
        #[arg(long)]
        json: bool,
        /// `wide`: every column (address, machine use, labels)
        #[arg(short, long, value_enum)]
        output: Option<Output>,
        #[command(subcommand)]
        action: Option<NodesAction>,
    },
    /// Move every instance off a node, one at a time, start-before-stop; wait until it is empty
    #[command(
        long_about = "Drain a node: it takes no new instances, and its instances move to other nodes one at a \
                      time. Each move starts a replacement first; only when the replacement is ready and in the \
                      load balancer is the old instance taken out, given its requests in flight, and stopped. \
                      Shows each move and returns when nothing is left on the node. Past --deadline, what is \
                      left is stopped (and replaced elsewhere where it fits). The node stays out of service \
                      until `ebb undrain`."
    )]
    Drain {
        node: String,
        /// Stop what is left after this long (e.g. 30m, 1h; Nomad's default too)
        #[arg(long, default_value = "1h", value_parser = parse_duration_arg)]
        deadline: std::time::Duration,
        /// Return at once instead of following the moves
        #[arg(long)]
        detach: bool,
        /// Print the server's answer as JSON and return at once (as --detach)
        #[arg(long)]
        json: bool,
    },
    /// Put a drained node back in service
    Undrain {
        node: String,
        /// Print the node as JSON
        #[arg(long)]
        json: bool,
    },
    /// Move one instance to another node, start-before-stop
    Migrate {
        /// The instance's id (`ebb ps` lists them)
        instance: String,
        /// The node to move it to (default: the scheduler's choice, never its own node)
        #[arg(long)]
        to: Option<String>,
        /// Return at once instead of following the move
        #[arg(long)]
        detach: bool,
        /// Print the server's answer as JSON and return at once (as --detach)
        #[arg(long)]
        json: bool,
    },
    /// Validate deploy files and apply them (create or update); wait until instances are ready
    Deploy(DeployArgs),
    /// Check deploy files without applying them
    Validate {
        /// Deploy files (TOML)
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print the parsed services, jobs and queues as JSON (what `ebb deploy` would send)
        #[arg(long)]
        json: bool,
    },
    /// List instances
    Ps {
        /// Only this service's instances
        service: Option<String>,
        /// Print a JSON array
        #[arg(long)]
        json: bool,
        /// `wide`: every column (process, address, version, traffic, usage)
        #[arg(short, long, value_enum)]
        output: Option<Output>,
    },
    /// Set a service's instance count, or an autoscaled service's bounds (--min/--max)
    Scale {
        service: String,
        /// Instances wanted (not for an autoscaled service)
        #[arg(required_unless_present_any = ["min", "max"], conflicts_with_all = ["min", "max"])]
        instances: Option<u32>,
        /// Fewest instances the autoscaler may run
        #[arg(long)]
        min: Option<u32>,
        /// Most instances the autoscaler may run
        #[arg(long)]
        max: Option<u32>,
        /// Print the service as JSON
        #[arg(long)]
        json: bool,
    },
    /// Replace every instance of a service, or one instance, by a new one started first, one at a time
    Restart {
        /// Services (every instance, one at a time) or instance ids (`ebb ps` lists them)
        #[arg(required = true)]
        targets: Vec<String>,
        /// Return at once instead of following the restarts
        #[arg(long)]
        detach: bool,
        /// How long to wait for a service's instances to be ready again
        #[arg(long, default_value = "5m", value_parser = parse_duration_arg)]
        timeout: std::time::Duration,
        /// Print the server's answer as JSON and return at once (as --detach)
        #[arg(long)]
        json: bool,
    },
    /// Show a service, job, node or instance: spec in short, instances with state and reason, recent events
    Describe {
        /// A service, job or node name, or an instance id
        name: String,
        /// Print one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Remove services and stop their instances
    Stop {
        /// The services to remove
        #[arg(required = true)]
        services: Vec<String>,
        /// Return at once instead of waiting for the instances to stop
        #[arg(long)]
        detach: bool,
        /// Print the server's answer as JSON and return at once (as --detach)
        #[arg(long)]
        json: bool,
    },
    /// Show a service's or a job's logs (stdout and stderr of its instances or tasks)
    Logs(LogsArgs),
    /// List jobs: state and task counts
    Jobs {
        /// Print a JSON array
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        action: Option<JobsAction>,
    },
    /// Show one job, task by task: attempt, node, state, exit code, duration, queue wait
    Job {
        name: String,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Cancel a job: its running tasks stop, nothing of it starts again
    Cancel { job: String },
    /// List job queues: weight, cap, running and waiting tasks
    Queues {
        /// Print a JSON array
        #[arg(long)]
        json: bool,
    },
    /// Run a one-off task, stream its output and exit with its exit code
    #[command(
        after_help = "Exit codes: the task's own, 0 when it succeeded; 1 when it ended without one                             (killed, timed out, cancelled); 2 bad arguments; 3 ebb unreachable."
    )]
    Run(RunArgs),
    /// Open the web dashboard: a login URL that works once, for a minute
    #[command(
        after_help = "The URL carries a one-time code, never the API token: opening it sets a session cookie (HttpOnly, SameSite=Strict, 8 hours) that can read the API but not change anything."
    )]
    Ui {
        /// Print the URL instead of opening a browser
        #[arg(long)]
        print: bool,
    },
    /// Show what happened and why
    Events {
        /// Keep printing new events
        #[arg(short, long)]
        follow: bool,
        /// Print JSON (an array; one object per line with --follow)
        #[arg(long)]
        json: bool,
        /// How many recent events to show
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show load-balancer traffic per service and instance: rps, in-flight, latency, errors
    Metrics {
        /// Only this service
        service: Option<String>,
        /// Window the figures cover (at most 60s)
        #[arg(long, default_value = "10s", value_parser = parse_duration_arg)]
        window: std::time::Duration,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// List the control plane's servers: name, API, load balancers, which one leads
    Servers {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Show the server, its nodes and the services with their rollout state
    Status {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Watch autoscaling: a throwaway ebb, an autoscaled service and a load wave, live
    #[command(
        long_about = "Watch autoscaling in one command: starts a throwaway ebb (a child `ebb up` with its state \
                      in a temporary directory, API and load balancer on 127.0.0.1), deploys an autoscaled \
                      example service (0 to 8 instances, 4 requests in flight each; see examples/demo.toml) \
                      and drives a wave of load at it with its own keep-alive clients: rise (1 → 8 clients), \
                      spike (32), fall (2), idle until the service is at zero, then one request at zero (a cold \
                      start). Once a second it shows the phase, instances ready/desired, rps, p99 and the \
                      autoscaler's decisions (redrawn on a terminal, one line per second otherwise), then prints \
                      a summary and removes everything it started, also on Ctrl-C.\n\n\
                      Needs no running ebb and ignores --data-dir and --addr.",
        after_help = "Exit codes: 0 every request succeeded, 1 a request failed or ebb could not start (the message \
                      says where its log is), 2 bad arguments, 130 interrupted."
    )]
    Demo(DemoArgs),
    /// Replay a request-rate trace against a service's autoscale policy and against models of
    /// Kubernetes' HPA and Knative's KPA, a fleet fixed at the peak, the optimal oracle and a
    /// reference told the load's level ahead (foresight)
    #[command(
        after_help = "The model: one instance serves --capacity req/s within the SLO; a second is missed when \
                      the load is more than the ready instances serve; the cost is the instance-seconds of every \
                      instance, starting or ready; new instances serve --start-delay after the decision. \
                      Exit codes: 0 done, 2 bad arguments, file or trace."
    )]
    Sim(SimArgs),
    /// Print a shell completion script: `source <(ebb completions bash)`, or write it where
    /// your shell reads completions (zsh: a `_ebb` file on $fpath; fish: ~/.config/fish/completions/ebb.fish)
    Completions {
        /// bash, zsh or fish (also elvish, powershell)
        shell: clap_complete::Shell,
    },
    /// Run the small built-in HTTP app used by the examples, tests and benchmarks
    ExampleApp {
        /// Port to listen on [default: $PORT]
        #[arg(long)]
        port: Option<u16>,
        /// Address to bind [default: $HOST, else 127.0.0.1]
        #[arg(long)]
        host: Option<String>,
    },
}

/// What `ebb jobs` can do besides listing.
#[derive(Subcommand, Debug)]
pub enum JobsAction {
    /// Forget a finished job: its record and task records (its task logs stay on the nodes)
    Rm {
        /// The job's name (`ebb jobs` lists them)
        job: String,
    },
}

/// What `ebb nodes` can do besides listing.
#[derive(Subcommand, Debug)]
pub enum NodesAction {
    /// Forget a node that is down and holds no instance (a machine retired or renamed)
    Rm {
        /// The node's name (`ebb nodes` lists them)
        node: String,
    },
}

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Deploy files to apply once ebb is up
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub plane: PlaneArgs,
    /// Name of the local node [default: the host name]
    #[arg(long)]
    pub node_name: Option<String>,
    /// Address instances bind and are reached on (given to them as HOST)
    #[arg(long, default_value = "127.0.0.1")]
    pub advertise: String,
}

/// What every process that runs the control plane takes (`ebb up`, `ebb server`).
#[derive(Args, Debug)]
pub struct PlaneArgs {
    /// API listen address; any non-loopback address is served only with a token, over TLS
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Serve the API over TLS on loopback too (beyond loopback it always is), with a
    /// certificate ebb makes in the data dir's tls/ on first start
    #[arg(long)]
    pub tls: bool,
    /// Address the load balancers of services with a `port` listen on [default: 127.0.0.1 for
    /// `ebb up`, which runs on one machine; 0.0.0.0 for `ebb server`, the front door of several]
    #[arg(long)]
    pub router_bind: Option<std::net::IpAddr>,
    /// Threads of the load balancers' own runtime [default: the number of cores]
    #[arg(long)]
    pub router_threads: Option<usize>,
    /// A node silent this long is down: its instances leave the load balancers and are
    /// replaced on other nodes (agents heartbeat every second; at least 2s)
    #[arg(long, default_value = "3s", value_parser = parse_down_after)]
    pub node_down_after: std::time::Duration,
}

#[derive(Args, Debug)]
pub struct ServerArgs {
    #[command(flatten)]
    pub plane: PlaneArgs,
    /// Keep the state in an etcd cluster that several servers share, for a highly available
    /// control plane: etcd://HOST:PORT[,HOST:PORT...] [default: the embedded SQLite store in
    /// the data dir]
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// This server's name among the servers sharing the store [default: the host name]
    #[arg(long)]
    pub name: Option<String>,
    /// Also run an agent in this process, as `ebb up` does
    #[arg(long)]
    pub agent: bool,
    /// With --agent: name of the local node [default: the host name]
    #[arg(long, requires = "agent")]
    pub node_name: Option<String>,
    /// With --agent: address the local node's instances bind and are reached on
    #[arg(long, default_value = "127.0.0.1", requires = "agent")]
    pub advertise: String,
}

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// The server's API address, e.g. 10.0.0.1:7070 (HTTPS beyond loopback, trusted by the CA
    /// hash in the join token); several servers of one control plane comma-separated
    /// (`a:7070,b:7070,c:7070`): the agent moves to the next when one does not answer
    #[arg(long)]
    pub server: String,
    /// File holding the server's join token (a copy of its data dir's join-token file). Needed
    /// only the first time the node joins: it then keeps its own credential in its data dir
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// The join token itself; prefer --token-file or EBB_JOIN_TOKEN, since a command line is
    /// visible to every user of the machine
    #[arg(long, env = "EBB_JOIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Name of this node [default: the host name]
    #[arg(long)]
    pub name: Option<String>,
    /// Address this node's instances bind (given to them as HOST) and the load balancers reach them on
    #[arg(long, default_value = "127.0.0.1")]
    pub advertise: String,
    /// CPU this node offers to instances, in cores or millicores (`2`, `1500m`) [default: the machine's minus a system reserve]
    #[arg(long, value_parser = parse_cpu_arg)]
    pub cpu: Option<u32>,
    /// Memory this node offers to instances (`4Gi`, `512Mi`) [default: the machine's minus a system reserve]
    #[arg(long, value_parser = parse_size_arg)]
    pub memory: Option<u64>,
    /// Labels for placement constraints, e.g. `zone=a,disk=ssd`
    #[arg(long, value_parser = parse_labels_arg, default_value = "")]
    pub labels: std::collections::BTreeMap<String, String>,
}

fn parse_cpu_arg(s: &str) -> Result<u32, String> {
    ebb_core::quantity::parse_cpu_millis(s).map_err(|e| e.to_string())
}

fn parse_size_arg(s: &str) -> Result<u64, String> {
    ebb_core::quantity::parse_size(s).map_err(|e| e.to_string())
}

/// `k=v,k2=v2` into labels; keys and values as the scheduler's constraints match them.
pub fn parse_labels_arg(s: &str) -> Result<std::collections::BTreeMap<String, String>, String> {
    let mut labels = std::collections::BTreeMap::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(format!("label `{pair}` is not key=value"));
        };
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty()
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        {
            return Err(format!(
                "label key `{k}` must be letters, digits, `-`, `_`, `.` or `/`"
            ));
        }
        if v.contains('=') || v.contains(char::is_whitespace) {
            return Err(format!(
                "label value `{v}` of `{k}` may not contain `=` or spaces"
            ));
        }
        if labels.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("label `{k}` is given twice"));
        }
    }
    Ok(labels)
}

/// Table layouts beyond the default (`-o wide`, as kubectl says it).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Every column the table has
    Wide,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// How long the load wave takes (15s to 1h); the idle phase may take a few seconds more
    /// when the service needs them to reach zero
    #[arg(long, default_value = "60s", value_parser = parse_duration_arg)]
    pub duration: std::time::Duration,
    /// Port of the demo service's load balancer on 127.0.0.1 [default: a free port]
    #[arg(long)]
    pub port: Option<u16>,
    /// Also write the instances-against-load chart to this SVG file
    #[arg(long, value_name = "FILE.svg")]
    pub chart: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct SimArgs {
    /// The deploy file with the service's autoscale settings
    pub file: PathBuf,
    /// The service to replay (needed when the file autoscales several)
    #[arg(long)]
    pub service: Option<String>,
    /// The trace: one count of requests per line (a second each), or CSV with the count last
    #[arg(long, value_name = "FILE")]
    pub trace: PathBuf,
    /// Multiply every count by this
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Requests per second one instance serves within the latency SLO
    #[arg(long, default_value_t = ebb_sim::model::DEFAULT_CAPACITY)]
    pub capacity: f64,
    /// From a decision to new instances serving (whole seconds)
    #[arg(long, default_value = "10s", value_parser = parse_duration_arg)]
    pub start_delay: std::time::Duration,
    /// Try targets from 5 % to 100 % of an instance's capacity by 5 % (and on past 100 %, up
    /// to 300 %, for a policy still within 1 % missed seconds there), then twice halve the step
    /// between each policy's cheapest and the target above it, and report each policy's
    /// cheapest within 1 % missed seconds
    #[arg(long)]
    pub sweep: bool,
    /// Print one JSON object
    #[arg(long)]
    pub json: bool,
    /// Also write ebb's instances against the load over the busiest hour to this SVG file
    #[arg(long, value_name = "FILE.svg")]
    pub chart: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct DeployArgs {
    /// Deploy files (TOML)
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Return once applied, without waiting for instances to be ready
    #[arg(long)]
    pub detach: bool,
    /// Give up waiting after this long (e.g. 90s, 5m)
    #[arg(long, default_value = "5m", value_parser = parse_duration_arg)]
    pub timeout: std::time::Duration,
    /// Print what would change (which instances roll, whether new ones fit); apply nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print the server's answer as one JSON object and return (as --detach)
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The job's name (default run-XXXXXXXX)
    #[arg(long)]
    pub name: Option<String>,
    /// CPU to reserve, in cores or millicores (0.5, 500m)
    #[arg(long, value_parser = parse_cpu_arg)]
    pub cpu: Option<u32>,
    /// Memory to reserve (256MiB)
    #[arg(long, value_parser = parse_size_arg)]
    pub memory: Option<u64>,
    /// Priority, 0–100 (default 50)
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub priority: Option<u8>,
    /// The queue (default "default")
    #[arg(long)]
    pub queue: Option<String>,
    /// Kill the task after this long (e.g. 10m)
    #[arg(long, value_parser = parse_duration_arg)]
    pub timeout: Option<std::time::Duration>,
    /// The program and its arguments
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// A service or a job
    pub service: String,
    /// Only this instance (or task attempt)
    #[arg(long)]
    pub instance: Option<String>,
    /// Only this task of a job (its last attempt)
    #[arg(long)]
    pub task: Option<u32>,
    /// Keep printing new lines
    #[arg(short, long)]
    pub follow: bool,
    /// Lines to show from the end of each instance's log
    #[arg(long, default_value_t = 100)]
    pub tail: usize,
    /// Only lines written this long ago or later (10s, 5m, 1h), at most --tail of each
    #[arg(long, value_parser = parse_duration_arg)]
    pub since: Option<std::time::Duration>,
    /// Print when each line was written (RFC 3339, UTC), and several instances' lines in time
    /// order; a line's time is an upper bound its node's agent notes four times a second
    #[arg(long)]
    pub timestamps: bool,
    /// One JSON object per line: {"instance": ID, "line": TEXT}, with "at" (RFC 3339) when
    /// --timestamps is given
    #[arg(long)]
    pub json: bool,
}

fn parse_down_after(s: &str) -> Result<std::time::Duration, String> {
    let d = parse_duration_arg(s)?;
    if d < ebb_server::state::nodes::MIN_NODE_DOWN_AFTER {
        return Err(format!(
            "{s} is shorter than two heartbeats: at least {} is needed, or one late heartbeat would take a node for down",
            ebb_core::quantity::format_duration(ebb_server::state::nodes::MIN_NODE_DOWN_AFTER)
        ));
    }
    Ok(d)
}

fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    ebb_core::parse_duration(s).map_err(|e| e.to_string())
}
