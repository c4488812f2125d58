//! A service as the server stores it: the resolved form of a deploy file's `[services.NAME]`.
//!
//! Deploy files are parsed by the `ebb-spec` crate into these types; the API receives them as JSON
//! and checks them again with [`ServiceSpec::validate`], so a bad spec is refused on either path.

use crate::autoscale::AutoscaleSpec;
use crate::quantity::format_duration;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Largest instance count a service may ask for; anything above is surely a typo.
pub const MAX_INSTANCES: u32 = 10_000;
/// Default health-check interval: 1 s (ARCHITECTURE.md, defaults; HAProxy uses 2 s).
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(1);
/// Default health-check timeout, below the interval so that checks never pile up.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_millis(500);
/// Failures in a row before an instance is restarted (HAProxy `fall 3`).
pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;
/// Passes in a row before an instance is ready (HAProxy `rise 2`; 1 makes starts fast).
pub const DEFAULT_HEALTHY_THRESHOLD: u32 = 1;
/// Time after start during which failed checks do not restart the instance (Docker `start_period`,
/// Kubernetes startup probes): slow starters are not killed before they could ever answer.
pub const DEFAULT_START_PERIOD: Duration = Duration::from_secs(30);
/// Grace between the stop signal and SIGKILL (Docker and Kubernetes use 10 s and 30 s).
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);
/// Signal sent to stop an instance.
pub const DEFAULT_STOP_SIGNAL: &str = "SIGTERM";
/// Signals an instance may be stopped with.
pub const STOP_SIGNALS: [&str; 6] = [
    "SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2",
];
/// Environment variables ebb sets itself; a spec may not override them.
pub const RESERVED_ENV: [&str; 6] = [
    "PORT",
    "HOST",
    "EBB_INSTANCE_ID",
    "EBB_SERVICE",
    "EBB_NODE",
    "EBB_AGENT_ID",
];

/// One service: what to run, how many, with which resources, and how to check and stop it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// The service's name: a DNS label (see [`validate_service_name`]).
    pub name: String,
    /// argv; `${VAR}` expands from the instance environment. `ebb` as `argv[0]` means this binary.
    pub command: Vec<String>,
    /// How many instances should run (for an autoscaled service, the current count); at most
    /// [`MAX_INSTANCES`].
    pub instances: u32,
    /// Extra environment variables for each instance; those in [`RESERVED_ENV`] are refused.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory of the process; relative paths resolve against the deploy file's folder.
    #[serde(default)]
    pub workdir: Option<String>,
    /// What each instance reserves on its node.
    #[serde(default)]
    pub resources: Resources,
    /// How each instance's health is checked.
    #[serde(default)]
    pub health: HealthSpec,
    /// How an instance is stopped.
    #[serde(default)]
    pub stop: StopSpec,
    /// Public port of the service's load balancer on the server; None: not routed.
    #[serde(default)]
    pub port: Option<u16>,
    /// What the load balancer speaks (only matters with a `port`).
    #[serde(default)]
    pub protocol: Protocol,
    /// The load balancer's settings (only matter with a `port`).
    #[serde(default)]
    pub balance: BalanceSpec,
    /// Scale with load between bounds; None: a fixed count of `instances`. When set, `instances`
    /// is the current count and lies within `autoscale.min ..= autoscale.max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscale: Option<AutoscaleSpec>,
    /// Conditions on node labels, all of which must hold on a node for an instance to be placed
    /// there: `key=value` or `key!=value`, as [`crate::Constraint::parse`] reads them
    /// (checked by [`ServiceSpec::validate`]). Empty: any node. Left out of JSON when empty, so
    /// specs stored before the field existed keep their version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    /// How the scheduler chooses among the nodes an instance fits on. Left out of JSON when it is
    /// the default.
    #[serde(default, skip_serializing_if = "Placement::is_default")]
    pub placement: Placement,
    /// TLS terminated by the router on the service's port (HTTP services only). Left out of
    /// JSON when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// Its instances' priority against jobs' tasks (0–100); None: [`crate::job::SERVICE_PRIORITY`].
    /// An instance that fits nowhere preempts tasks of lower priority. Left out of JSON when
    /// absent, and out of the version: changing it restarts nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    /// How many times `ebb restart` asked for every instance to be replaced. It is part of the
    /// version, so a change rolls the instances as a spec change does: start-before-stop, one
    /// at a time. The server keeps it across deploys (a deploy file cannot set it). Left out
    /// of JSON at 0, so specs from before it keep their version.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restart: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// TLS at the router: the certificates it serves, each with its key (PEM files on the
/// server's machine, absolute paths). The first is served to clients whose SNI names none of
/// the others (or send no SNI); each other one to the names it is valid for. Files are read
/// again when they change, so a renewed certificate needs no deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsSpec {
    /// Certificate and key pairs; the first is the default.
    pub certificates: Vec<CertificateFiles>,
}

/// A certificate chain and its private key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateFiles {
    /// The certificate chain (leaf first), PEM.
    pub cert: String,
    /// The private key (PKCS#8, PKCS#1 or SEC1), PEM.
    pub key: String,
}

/// Most certificates one service's TLS may hold (SNI picks among them).
pub const MAX_CERTIFICATES: usize = 100;

/// How the scheduler chooses among the nodes an instance fits on; deploy files write
/// `placement = "binpack"` (the default) or `"spread"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// Fill the fullest node that still fits (Nomad's `binpack`, Kubernetes' `MostAllocated`).
    #[default]
    #[serde(rename = "binpack")]
    BinPack,
    /// Use the emptiest node, leaving headroom on every node (Kubernetes' `LeastAllocated`).
    Spread,
}

/// Names of the placement strategies, as deploy files and JSON write them.
pub const PLACEMENTS: [&str; 2] = ["binpack", "spread"];

impl Placement {
    /// Parses a deploy-file name; the error names the valid ones so the user can fix the file.
    pub fn parse(name: &str) -> Result<Placement, String> {
        match name {
            "binpack" => Ok(Placement::BinPack),
            "spread" => Ok(Placement::Spread),
            other => Err(format!(
                "unknown placement {other:?}: expected one of \"binpack\", \"spread\""
            )),
        }
    }

    /// The name deploy files and JSON use.
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::BinPack => "binpack",
            Placement::Spread => "spread",
        }
    }

    /// Whether this is the default (left out of stored JSON).
    pub fn is_default(&self) -> bool {
        *self == Placement::default()
    }
}

/// What the load balancer in front of a service speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// HTTP/1.1, h2c and WebSocket upgrades, proxied per request.
    #[default]
    Http,
    /// Bytes both ways, per connection.
    Tcp,
}

/// How the load balancer spreads requests over a service's ready instances
/// (`[services.x.balance] algorithm = "..."`); the router builds its balancer from it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BalanceAlgorithm {
    /// `round_robin`: each endpoint in turn.
    RoundRobin,
    /// `least_request`: power of two choices, fewer in-flight requests wins.
    LeastRequest,
    /// `peak_ewma`: power of two choices, lower peak-EWMA latency × (in flight + 1) wins. The
    /// default, as Linkerd and tower's `PeakEwma` (ARCHITECTURE.md, defaults): it steers away
    /// from slow and busy instances with O(1) work per request.
    #[default]
    PeakEwma,
    /// `hash`: consistent hashing on a per-request key (a header or the client address).
    Hash,
}

/// Names of the balancing algorithms, as deploy files write them.
pub const BALANCE_ALGORITHMS: [&str; 4] = ["round_robin", "least_request", "peak_ewma", "hash"];

impl BalanceAlgorithm {
    /// Every algorithm, in the order of [`BALANCE_ALGORITHMS`].
    pub const ALL: [BalanceAlgorithm; 4] = [
        BalanceAlgorithm::RoundRobin,
        BalanceAlgorithm::LeastRequest,
        BalanceAlgorithm::PeakEwma,
        BalanceAlgorithm::Hash,
    ];

    /// The name used in deploy files.
    pub fn name(self) -> &'static str {
        BALANCE_ALGORITHMS[self as usize]
    }

    /// Parses a deploy-file name; the error names the valid ones so the user can fix the file.
    pub fn parse(name: &str) -> Result<BalanceAlgorithm, String> {
        BalanceAlgorithm::ALL
            .into_iter()
            .find(|a| a.name() == name)
            .ok_or_else(|| {
                format!(
                    "unknown balancing algorithm {name:?}: use one of {}",
                    BALANCE_ALGORITHMS.join(", ")
                )
            })
    }
}

impl std::str::FromStr for BalanceAlgorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<BalanceAlgorithm, String> {
        BalanceAlgorithm::parse(s)
    }
}

impl fmt::Display for BalanceAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The most retries a request may have: more would multiply a failing service's load.
pub const MAX_RETRIES: u32 = 10;
/// The health thresholds' upper bound (consecutive checks).
pub const MAX_HEALTH_THRESHOLD: u32 = 100;
/// Extra attempts on other instances (connect failures; for idempotent requests also resets
/// and 502/503 within the retry budget). 2; Envoy's `num_retries` default is 1, HAProxy's
/// `retries` 3.
pub const DEFAULT_RETRIES: u32 = 2;
/// How long a removed instance may finish its in-flight requests (Kubernetes' default
/// termination grace is 30 s).
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(30);
/// Time from sending a request upstream to receiving its response head. 60 s: nginx
/// `proxy_read_timeout` and HAProxy's usual `timeout server`.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Linkerd's fail-fast: requests wait up to 3 s for a ready instance, then 503 + Retry-After
/// (ARCHITECTURE.md, defaults, "cold-start queue"). Long enough to ride out a restart or a scale
/// from zero of a quick starter, short enough that clients see an answer rather than a hang.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest any other duration of a spec may be (`drain`, `grace`, `request_timeout`,
/// `slow_start`, the health check's `interval`, `timeout` and `start_period`): one hour.
/// Longer is surely a typo (`drain = "100000h"`), and it would push deadlines past what their
/// arithmetic holds. Kubernetes' and Nomad's defaults for these are seconds to minutes.
pub const MAX_SPEC_DURATION: Duration = Duration::from_secs(3600);
/// Longest `queue_timeout` a spec may ask for: 10 minutes. Clients and proxies in front give up
/// long before (browsers, nginx's 60 s `proxy_read_timeout`), so more is surely a typo, and a
/// request held that long only ties up the queue.
pub const MAX_QUEUE_TIMEOUT: Duration = Duration::from_secs(600);

/// The load balancer's settings for one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceSpec {
    /// How requests are spread over the ready instances.
    pub algorithm: BalanceAlgorithm,
    /// Extra attempts on other instances for a failed request, at most [`MAX_RETRIES`].
    pub retries: u32,
    /// Linear weight ramp for new instances; zero is off.
    #[serde(with = "millis")]
    pub slow_start: Duration,
    /// How long a removed instance may finish its in-flight requests before it is stopped.
    #[serde(with = "millis")]
    pub drain: Duration,
    /// Time from sending a request upstream to receiving its response head. More than zero.
    #[serde(with = "millis")]
    pub request_timeout: Duration,
    /// How long a request waits in the router's bounded queue while the service has no ready
    /// instance, before it is answered 503 with Retry-After. More than zero.
    #[serde(with = "millis", default = "default_queue_timeout")]
    pub queue_timeout: Duration,
    /// With [`BalanceAlgorithm::Hash`], the request header (a lower-case HTTP header name) whose
    /// value is the hash key; a request without it, or `None`, keys on the client address.
    /// HTTP only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_header: Option<String>,
}

impl BalanceSpec {
    /// Why `hash_header` cannot be set for a service of this `protocol` with these settings, if
    /// it cannot: TCP has no headers, and only consistent hashing has a key.
    pub fn hash_header_problem(&self, protocol: Protocol) -> Option<&'static str> {
        if protocol == Protocol::Tcp {
            Some("`hash_header` does not apply to protocol = \"tcp\": TCP has no headers")
        } else if self.algorithm != BalanceAlgorithm::Hash {
            Some("`hash_header` only applies to algorithm = \"hash\"")
        } else {
            None
        }
    }
}

fn default_queue_timeout() -> Duration {
    DEFAULT_QUEUE_TIMEOUT
}

impl Default for BalanceSpec {
    fn default() -> Self {
        BalanceSpec {
            algorithm: BalanceAlgorithm::default(),
            retries: DEFAULT_RETRIES,
            slow_start: Duration::ZERO,
            drain: DEFAULT_DRAIN,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
            hash_header: None,
        }
    }
}

/// Checks an HTTP header name (RFC 9110 section 5.1: a `token`, 1 or more of the letters, digits
/// and ``!#$%&'*+-.^_`|~``) and returns it in lower case, the form ebb stores. Written by hand
/// rather than with the `http` crate's `HeaderName`, which accepts exactly the same bytes (checked
/// against http 1.x): it is a few lines, and it keeps ebb-core free of an HTTP stack.
pub fn parse_header_name(name: &str) -> Result<String, String> {
    /// Real header names are short; a longer one is a paste gone wrong, not a name.
    const MAX_LEN: usize = 256;
    let is_tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() {
        return Err("header name is empty".into());
    }
    if name.len() > MAX_LEN {
        return Err(format!(
            "header name is {} characters long, more than the limit of {MAX_LEN}",
            name.len()
        ));
    }
    match name.chars().find(|&c| !is_tchar(c)) {
        Some(c) => Err(format!(
            "invalid header name {name:?}: {c:?} is not allowed; use letters, digits and -, e.g. \"x-user-id\""
        )),
        None => Ok(name.to_ascii_lowercase()),
    }
}

/// Reserved resources; `None` means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// CPU in millicores (1000 = one core); a cgroup quota where the node enforces resources.
    pub cpu_millis: Option<u32>,
    /// Memory in bytes; a cgroup limit where the node enforces resources.
    pub memory_bytes: Option<u64>,
}

/// How an instance's health is checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum HealthCheck {
    /// TCP connect to `$HOST:$PORT` (the default).
    Tcp,
    /// HTTP GET of the path on `$HOST:$PORT`; 2xx and 3xx pass.
    Http {
        /// The path to GET, starting with `/`.
        path: String,
    },
    /// A command (argv, `${VAR}` expanded) that passes when it exits 0.
    Command {
        /// The program and its arguments.
        argv: Vec<String>,
    },
}

/// How and how often an instance's health is checked, and what the results lead to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthSpec {
    /// What one check does.
    pub check: HealthCheck,
    /// Time between checks.
    #[serde(with = "millis")]
    pub interval: Duration,
    /// How long one check may take before it counts as failed.
    #[serde(with = "millis")]
    pub timeout: Duration,
    /// Failures in a row, past `start_period`, before the instance is killed and restarted.
    pub unhealthy_threshold: u32,
    /// Passes in a row before the instance is ready; a single failure makes it unready.
    pub healthy_threshold: u32,
    /// Time after start during which failed checks do not restart the instance.
    #[serde(with = "millis")]
    pub start_period: Duration,
}

impl Default for HealthSpec {
    fn default() -> Self {
        HealthSpec {
            check: HealthCheck::Tcp,
            interval: DEFAULT_HEALTH_INTERVAL,
            timeout: DEFAULT_HEALTH_TIMEOUT,
            unhealthy_threshold: DEFAULT_UNHEALTHY_THRESHOLD,
            healthy_threshold: DEFAULT_HEALTHY_THRESHOLD,
            start_period: DEFAULT_START_PERIOD,
        }
    }
}

/// How an instance is stopped: a signal, then SIGKILL once the grace is over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopSpec {
    /// The signal sent first, by name (`SIGTERM`), one of [`STOP_SIGNALS`].
    pub signal: String,
    /// Time between the signal and SIGKILL.
    #[serde(with = "millis")]
    pub grace: Duration,
}

impl Default for StopSpec {
    fn default() -> Self {
        StopSpec {
            signal: DEFAULT_STOP_SIGNAL.to_string(),
            grace: DEFAULT_STOP_GRACE,
        }
    }
}

/// A problem with one field of a spec: `field` is a dotted path such as `services.web.instances`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field.
    pub field: String,
    /// What is wrong with it, and how to fix it where that is not obvious.
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// The problems of one spec as [`ServiceSpec::validate`] collects them: each field is written
/// relative to the service (`health.interval`) and reported under `services.NAME`.
pub(crate) struct Problems {
    base: String,
    errors: Vec<FieldError>,
}

impl Problems {
    fn new(service: &str) -> Problems {
        Problems::with_base(format!("services.{service}"))
    }

    /// Problems reported under `base` (`jobs.thumbs`).
    pub(crate) fn with_base(base: String) -> Problems {
        Problems {
            base,
            errors: Vec::new(),
        }
    }

    /// What was found.
    pub(crate) fn into_errors(self) -> Vec<FieldError> {
        self.errors
    }

    /// The problems of a stop setting, under `stop.`.
    pub(crate) fn stop(&mut self, stop: &StopSpec) {
        stop.problems(self);
    }

    /// A problem with `field` when `d` is longer than [`MAX_SPEC_DURATION`].
    fn at_most_an_hour(&mut self, field: &str, d: Duration) {
        if d > MAX_SPEC_DURATION {
            let name = field.rsplit('.').next().unwrap_or(field);
            let (got, max) = (format_duration(d), format_duration(MAX_SPEC_DURATION));
            self.add(
                field,
                format!("{name} {got} is more than the limit of {max}"),
            );
        }
    }

    /// A problem with `field` (empty: the service itself).
    pub(crate) fn add(&mut self, field: &str, message: impl Into<String>) {
        let field = if field.is_empty() {
            self.base.clone()
        } else {
            format!("{}.{field}", self.base)
        };
        self.errors.push(FieldError {
            field,
            message: message.into(),
        });
    }
}

impl HealthSpec {
    fn problems(&self, p: &mut Problems) {
        if self.interval.is_zero() {
            p.add("health.interval", "interval must be greater than zero");
        }
        if self.timeout.is_zero() {
            p.add("health.timeout", "timeout must be greater than zero");
        }
        p.at_most_an_hour("health.interval", self.interval);
        p.at_most_an_hour("health.timeout", self.timeout);
        p.at_most_an_hour("health.start_period", self.start_period);
        let thresholds = [
            ("health.unhealthy_threshold", self.unhealthy_threshold),
            ("health.healthy_threshold", self.healthy_threshold),
        ];
        for (field, n) in thresholds {
            if n == 0 || n > MAX_HEALTH_THRESHOLD {
                p.add(
                    field,
                    format!("must be between 1 and {MAX_HEALTH_THRESHOLD}"),
                );
            }
        }
        match &self.check {
            HealthCheck::Http { path } if !path.starts_with('/') => {
                p.add("health.http", format!("path {path:?} must start with '/'"))
            }
            HealthCheck::Command { argv } if argv.is_empty() => {
                p.add("health.command", "command is empty")
            }
            _ => {}
        }
    }
}

impl StopSpec {
    fn problems(&self, p: &mut Problems) {
        p.at_most_an_hour("stop.grace", self.grace);
        if !STOP_SIGNALS.contains(&self.signal.as_str()) {
            let message = format!(
                "unknown signal {:?}: use one of {}",
                self.signal,
                STOP_SIGNALS.join(", ")
            );
            p.add("stop.signal", message);
        }
    }
}

/// Checks a service name: 1–63 of `a-z 0-9 -`, starting with a letter (a DNS label).
pub fn validate_service_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid service name {name:?}: use 1-63 lowercase letters, digits and '-', starting with a letter"
        ))
    }
}

impl ServiceSpec {
    /// A service with this name and command and every other setting at its default.
    pub fn new(name: impl Into<String>, command: Vec<String>) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            command,
            instances: 1,
            env: BTreeMap::new(),
            workdir: None,
            resources: Resources::default(),
            health: HealthSpec::default(),
            stop: StopSpec::default(),
            port: None,
            protocol: Protocol::default(),
            balance: BalanceSpec::default(),
            autoscale: None,
            constraints: Vec::new(),
            placement: Placement::default(),
            tls: None,
            priority: None,
            restart: 0,
        }
    }

    /// The node-label constraints, parsed; the first malformed one is the error (which
    /// [`ServiceSpec::validate`] reports with its index).
    pub fn parsed_constraints(&self) -> Result<Vec<crate::Constraint>, crate::ConstraintError> {
        self.constraints
            .iter()
            .map(|c| crate::Constraint::parse(c))
            .collect()
    }

    /// Its instances' priority against tasks: the file's, or [`crate::job::SERVICE_PRIORITY`].
    pub fn priority(&self) -> u8 {
        self.priority.unwrap_or(crate::job::SERVICE_PRIORITY)
    }

    /// Semantic checks that a parser cannot express in types. Returns every problem found,
    /// one check per part of the spec.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut problems = Problems::new(&self.name);
        self.basic_problems(&mut problems);
        self.env_problems(&mut problems);
        self.health.problems(&mut problems);
        self.balance_problems(&mut problems);
        self.autoscale_problems(&mut problems);
        self.constraint_problems(&mut problems);
        self.stop.problems(&mut problems);
        self.tls_problems(&mut problems);
        problems.errors
    }

    fn tls_problems(&self, p: &mut Problems) {
        let Some(tls) = &self.tls else { return };
        if self.port.is_none() {
            p.add(
                "tls",
                "tls needs a public port: add `port = ...`, where the router terminates it",
            );
        }
        if self.protocol != Protocol::Http {
            p.add(
                "tls",
                "tls is terminated for protocol = \"http\" services only",
            );
        }
        if tls.certificates.is_empty() {
            p.add(
                "tls",
                "tls needs a certificate: cert = \"cert.pem\" and key = \"key.pem\"",
            );
        }
        if tls.certificates.len() > MAX_CERTIFICATES {
            let n = tls.certificates.len();
            p.add(
                "tls",
                format!("{n} certificates is more than the limit of {MAX_CERTIFICATES}"),
            );
        }
        for (i, c) in tls.certificates.iter().enumerate() {
            for (name, path) in [("cert", &c.cert), ("key", &c.key)] {
                if !path.starts_with('/') {
                    p.add(
                        &format!("tls.certificates[{i}].{name}"),
                        format!("{path:?} must be an absolute path (deploy files resolve relative ones)"),
                    );
                }
            }
        }
    }

    fn basic_problems(&self, p: &mut Problems) {
        if let Err(m) = validate_service_name(&self.name) {
            p.add("", m);
        }
        if self.command.is_empty() || self.command[0].trim().is_empty() {
            p.add("command", "command is empty: give the program and its arguments, e.g. [\"python3\", \"app.py\"]");
        }
        if self.instances > MAX_INSTANCES {
            let n = self.instances;
            p.add(
                "instances",
                format!("{n} instances is more than the limit of {MAX_INSTANCES}"),
            );
        }
        if self.port == Some(0) {
            p.add("port", "port 0 is not a port: give 1-65535");
        }
        if let Some(priority) = self.priority.filter(|&p| p > crate::job::MAX_PRIORITY) {
            let max = crate::job::MAX_PRIORITY;
            p.add("priority", format!("priority {priority} is above {max}"));
        }
    }

    fn env_problems(&self, p: &mut Problems) {
        for key in self.env.keys() {
            let field = format!("env.{key}");
            if RESERVED_ENV.contains(&key.as_str()) {
                let message =
                    format!("{key} is set by ebb for every instance and cannot be overridden");
                p.add(&field, message);
            } else if key.is_empty() || key.contains('=') || key.contains('\0') {
                p.add(&field, format!("invalid environment variable name {key:?}"));
            }
        }
    }

    fn balance_problems(&self, p: &mut Problems) {
        let b = &self.balance;
        if b.retries > MAX_RETRIES {
            let n = b.retries;
            p.add(
                "balance.retries",
                format!("{n} retries is more than the limit of {MAX_RETRIES}"),
            );
        }
        if b.request_timeout.is_zero() {
            p.add(
                "balance.request_timeout",
                "request_timeout must be greater than zero",
            );
        }
        p.at_most_an_hour("balance.request_timeout", b.request_timeout);
        p.at_most_an_hour("balance.drain", b.drain);
        p.at_most_an_hour("balance.slow_start", b.slow_start);
        let queue = b.queue_timeout;
        if queue.is_zero() {
            p.add(
                "balance.queue_timeout",
                "queue_timeout must be greater than zero",
            );
        } else if queue > MAX_QUEUE_TIMEOUT {
            let (got, max) = (format_duration(queue), format_duration(MAX_QUEUE_TIMEOUT));
            p.add(
                "balance.queue_timeout",
                format!("queue_timeout {got} is more than the limit of {max}"),
            );
        }
        if let Some(header) = &b.hash_header {
            let field = "balance.hash_header";
            if let Some(problem) = b.hash_header_problem(self.protocol) {
                p.add(field, problem);
            } else {
                match parse_header_name(header) {
                    Err(m) => p.add(field, m),
                    Ok(lower) if lower != *header => p.add(
                        field,
                        format!("header name {header:?} must be stored in lower case: {lower:?}"),
                    ),
                    Ok(_) => {}
                }
            }
        }
    }

    fn autoscale_problems(&self, p: &mut Problems) {
        let Some(autoscale) = &self.autoscale else {
            return;
        };
        for (field, message) in autoscale.problems(&self.resources, self.port.is_some()) {
            p.add(&format!("autoscale.{field}"), message);
        }
        let (min, max) = (autoscale.min, autoscale.max);
        let bounds_ok = (1..=MAX_INSTANCES).contains(&max) && min <= max;
        // Above MAX_INSTANCES, `instances` is reported already.
        if bounds_ok && self.instances <= MAX_INSTANCES && !(min..=max).contains(&self.instances) {
            p.add(
                "instances",
                format!(
                    "{} instances is outside the autoscale bounds: give a count from min {min} to max {max}, or leave `instances` out to start at min",
                    self.instances
                ),
            );
        }
    }

    fn constraint_problems(&self, p: &mut Problems) {
        for (i, text) in self.constraints.iter().enumerate() {
            if let Err(e) = crate::Constraint::parse(text) {
                p.add(&format!("constraints[{i}]"), e.to_string());
            }
        }
    }

    /// A fingerprint of what the instances run and where they may run (everything but the count,
    /// the load balancer's settings, the autoscaling settings and the placement strategy):
    /// instances whose version differs from the service's are rolled. Constraints count: after a
    /// change, a rolling update moves instances off nodes that no longer satisfy them. Fields
    /// added later are left out of the JSON at their defaults, so a spec that does not use them
    /// keeps the version it had before they existed.
    /// Stable across runs and builds (FNV-1a over canonical JSON).
    pub fn version(&self) -> String {
        let mut copy = self.clone();
        copy.instances = 0;
        copy.port = None;
        copy.protocol = Protocol::default();
        copy.balance = BalanceSpec::default();
        copy.autoscale = None;
        copy.placement = Placement::default();
        copy.tls = None;
        copy.priority = None;
        let json = serde_json::to_vec(&copy).unwrap_or_default();
        format!("{:08x}", crate::hash::fnv1a(&json) >> 32)
    }
}

/// Serde helper: a `Duration` as integer milliseconds in JSON.
pub mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Writes the duration as whole milliseconds.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    /// Reads whole milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_every_name_and_round_trips_through_display() {
        for a in BalanceAlgorithm::ALL {
            assert_eq!(BalanceAlgorithm::parse(a.name()), Ok(a));
            assert_eq!(a.to_string().parse::<BalanceAlgorithm>(), Ok(a));
        }
    }

    #[test]
    fn parse_error_names_the_input_and_lists_the_valid_algorithms() {
        let err = BalanceAlgorithm::parse("random").unwrap_err();
        assert!(err.contains("\"random\""), "{err}");
        assert!(
            err.contains("round_robin, least_request, peak_ewma, hash"),
            "{err}"
        );
    }

    #[test]
    fn the_default_is_peak_ewma() {
        assert_eq!(BalanceAlgorithm::default(), BalanceAlgorithm::PeakEwma);
    }

    pub(crate) fn sample() -> ServiceSpec {
        ServiceSpec {
            instances: 2,
            ..ServiceSpec::new("web", vec!["ebb".into(), "example-app".into()])
        }
    }

    #[test]
    fn version_ignores_the_load_balancer_settings() {
        let a = sample();
        let mut b = sample();
        b.port = Some(8080);
        b.balance.algorithm = BalanceAlgorithm::Hash;
        assert_eq!(a.version(), b.version());
    }

    #[test]
    fn version_ignores_queue_timeout_and_hash_header() {
        let a = sample();
        let mut b = sample();
        b.balance.algorithm = BalanceAlgorithm::Hash;
        b.balance.queue_timeout = Duration::from_secs(30);
        b.balance.hash_header = Some("x-user-id".into());
        assert_eq!(a.version(), b.version());
    }

    #[test]
    fn balance_settings_round_trip_and_old_specs_take_the_new_defaults() {
        let mut s = sample();
        s.port = Some(80);
        s.balance.algorithm = BalanceAlgorithm::Hash;
        s.balance.queue_timeout = Duration::from_millis(1500);
        s.balance.hash_header = Some("x-user-id".into());
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(r#""queue_timeout":1500"#), "{json}");
        assert_eq!(serde_json::from_str::<ServiceSpec>(&json).unwrap(), s);

        // A spec stored before the two fields existed.
        let old = r#"{"name":"web","command":["a"],"instances":1,"port":80,
            "balance":{"algorithm":"hash","retries":2,"slow_start":0,"drain":30000,
            "request_timeout":60000}}"#;
        let old: ServiceSpec = serde_json::from_str(old).unwrap();
        assert_eq!(old.balance.queue_timeout, DEFAULT_QUEUE_TIMEOUT);
        assert_eq!(old.balance.hash_header, None);
        assert!(!serde_json::to_string(&old).unwrap().contains("hash_header"));
    }

    #[test]
    fn queue_timeout_must_be_positive_and_at_most_ten_minutes() {
        let mut s = sample();
        s.balance.queue_timeout = MAX_QUEUE_TIMEOUT;
        assert_eq!(s.validate(), []);
        for (bad, phrase) in [
            (Duration::ZERO, "greater than zero"),
            (
                MAX_QUEUE_TIMEOUT + Duration::from_secs(1),
                "queue_timeout 10m1s is more than the limit of 10m",
            ),
        ] {
            s.balance.queue_timeout = bad;
            let errors = s.validate();
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert_eq!(errors[0].field, "services.web.balance.queue_timeout");
            assert!(errors[0].message.contains(phrase), "{}", errors[0]);
        }
    }

    #[test]
    fn hash_header_needs_hash_over_http_and_a_lower_case_token() {
        let mut s = sample();
        s.balance.algorithm = BalanceAlgorithm::Hash;
        s.balance.hash_header = Some("x-user-id".into());
        assert_eq!(s.validate(), []);
        let message = |s: &ServiceSpec| {
            let errors = s.validate();
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert_eq!(errors[0].field, "services.web.balance.hash_header");
            errors[0].message.clone()
        };
        for (header, phrase) in [
            ("X-User-Id", "lower case: \"x-user-id\""),
            ("x user", "' ' is not allowed"),
            ("", "empty"),
        ] {
            s.balance.hash_header = Some(header.into());
            let m = message(&s);
            assert!(m.contains(phrase), "{header:?}: {m}");
        }
        s.balance.hash_header = Some("x-user-id".into());
        s.balance.algorithm = BalanceAlgorithm::RoundRobin;
        assert!(message(&s).contains("only applies to algorithm = \"hash\""));
        s.balance.algorithm = BalanceAlgorithm::Hash;
        s.protocol = Protocol::Tcp;
        assert!(message(&s).contains("TCP has no headers"));
    }

    #[test]
    fn header_names_are_rfc_9110_tokens_returned_in_lower_case() {
        assert_eq!(parse_header_name("X-User-Id").as_deref(), Ok("x-user-id"));
        assert_eq!(
            parse_header_name("x_a.b~c!#$%&'*+^`|9").as_deref(),
            Ok("x_a.b~c!#$%&'*+^`|9")
        );
        for bad in [
            "",
            ":authority",
            "x-é",
            "a\"b",
            "a,b",
            "a/b",
            "a\0",
            &"a".repeat(257),
        ] {
            assert!(parse_header_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unknown_algorithms_list_the_valid_ones() {
        let e = BalanceAlgorithm::parse("fastest").unwrap_err();
        assert!(
            e.contains("round_robin, least_request, peak_ewma, hash"),
            "{e}"
        );
        assert_eq!(BalanceAlgorithm::parse("hash"), Ok(BalanceAlgorithm::Hash));
    }

    #[test]
    fn version_ignores_instance_count_but_not_command() {
        let a = sample();
        let mut b = sample();
        b.instances = 7;
        assert_eq!(a.version(), b.version());
        b.command.push("--verbose".into());
        assert_ne!(a.version(), b.version());
    }

    #[test]
    fn validate_reports_each_bad_field_by_path() {
        let mut s = sample();
        s.command.clear();
        s.instances = MAX_INSTANCES + 1;
        s.env.insert("PORT".into(), "1".into());
        s.stop.signal = "SIGBOGUS".into();
        let fields: Vec<String> = s.validate().into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "services.web.command",
                "services.web.instances",
                "services.web.env.PORT",
                "services.web.stop.signal"
            ]
        );
    }

    fn autoscaled() -> ServiceSpec {
        let targets = crate::ScaleTargets {
            concurrency: Some(10.0),
            ..Default::default()
        };
        ServiceSpec {
            port: Some(80),
            autoscale: Some(AutoscaleSpec::new(1, 5, targets)),
            ..sample()
        }
    }

    #[test]
    fn version_ignores_the_autoscaling_settings() {
        let plain = sample();
        let mut scaled = autoscaled();
        assert_eq!(plain.version(), scaled.version());
        if let Some(a) = &mut scaled.autoscale {
            a.max = 30;
            a.stable_window = Duration::from_secs(120);
        }
        assert_eq!(plain.version(), scaled.version());
    }

    #[test]
    fn autoscale_round_trips_and_is_left_out_of_json_when_none() {
        let s = autoscaled();
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(r#""autoscale":{"min":1,"max":5"#), "{json}");
        assert_eq!(serde_json::from_str::<ServiceSpec>(&json).unwrap(), s);
        let plain = serde_json::to_string(&sample()).unwrap();
        assert!(!plain.contains("autoscale"), "{plain}");
    }

    #[test]
    fn autoscale_problems_are_reported_under_the_services_path() {
        let mut s = autoscaled();
        s.instances = 6;
        if let Some(a) = &mut s.autoscale {
            a.panic_window = a.stable_window;
        }
        let errors = s.validate();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "services.web.autoscale.panic_window",
                "services.web.instances"
            ],
            "{errors:?}"
        );
        assert!(
            errors[1].message.contains("from min 1 to max 5"),
            "{}",
            errors[1]
        );
        // Bounds that are themselves wrong are the one error, not the count against them.
        if let Some(a) = &mut s.autoscale {
            a.panic_window = crate::autoscale::DEFAULT_PANIC_WINDOW;
            a.min = 9;
        }
        let fields: Vec<String> = s.validate().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["services.web.autoscale.min"]);
    }

    #[test]
    fn a_spec_stored_before_constraints_and_placement_keeps_its_version() {
        // Pinned against ebb-core as it was before the two fields existed.
        let old = r#"{"name":"web","command":["ebb","example-app"],"instances":2}"#;
        let old: ServiceSpec = serde_json::from_str(old).unwrap();
        assert_eq!(old, sample());
        assert_eq!(old.version(), "db574ede");
        assert_eq!(sample().version(), "db574ede");
        let json = serde_json::to_string(&old).unwrap();
        assert!(
            !json.contains("constraints") && !json.contains("placement"),
            "{json}"
        );
    }

    #[test]
    fn constraints_and_placement_round_trip_with_the_wire_names() {
        let s = ServiceSpec {
            constraints: vec!["zone=a".into(), "disk!=hdd".into()],
            placement: Placement::Spread,
            ..sample()
        };
        let json = serde_json::to_string(&s).unwrap();
        assert!(
            json.contains(r#""constraints":["zone=a","disk!=hdd"],"placement":"spread""#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<ServiceSpec>(&json).unwrap(), s);
        assert_eq!(
            serde_json::to_string(&Placement::BinPack).unwrap(),
            r#""binpack""#
        );
        assert_eq!(
            serde_json::from_str::<Placement>(r#""binpack""#).unwrap(),
            Placement::BinPack
        );
        assert!(serde_json::from_str::<Placement>(r#""bin_pack""#).is_err());
        for name in PLACEMENTS {
            assert_eq!(Placement::parse(name).map(Placement::as_str), Ok(name));
        }
        assert_eq!(
            Placement::parse("pack").unwrap_err(),
            r#"unknown placement "pack": expected one of "binpack", "spread""#
        );
    }

    #[test]
    fn version_counts_constraints_but_not_the_placement_strategy() {
        let a = sample();
        let spread = ServiceSpec {
            placement: Placement::Spread,
            ..sample()
        };
        assert_eq!(a.version(), spread.version());
        let constrained = ServiceSpec {
            constraints: vec!["zone=a".into()],
            ..sample()
        };
        assert_ne!(a.version(), constrained.version());
    }

    #[test]
    fn validate_reports_each_malformed_constraint_by_index() {
        let mut s = sample();
        s.constraints = vec!["zone=a".into(), "disk != hdd".into()];
        assert_eq!(s.validate(), []);
        assert_eq!(
            s.parsed_constraints().unwrap(),
            [
                crate::Constraint::equal("zone", "a"),
                crate::Constraint::not_equal("disk", "hdd")
            ]
        );
        s.constraints = vec!["zone=a".into(), "zone".into(), "".into(), "a==b".into()];
        let errors = s.validate();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "services.web.constraints[1]",
                "services.web.constraints[2]",
                "services.web.constraints[3]"
            ]
        );
        assert!(
            errors[0].message.contains("`zone` has no operator"),
            "{}",
            errors[0]
        );
        assert!(s.parsed_constraints().is_err());
    }

    #[test]
    fn service_names_must_be_dns_labels() {
        assert!(validate_service_name("web-2").is_ok());
        for bad in ["", "Web", "2web", "web_2", "web-", &"a".repeat(64)] {
            assert!(validate_service_name(bad).is_err(), "{bad:?}");
        }
    }
}
