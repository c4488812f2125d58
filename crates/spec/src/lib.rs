//! Deploy files: TOML in, [`ServiceSpec`]s out, and every mistake reported with file:line:col and
//! the field concerned (ARCHITECTURE.md, principle 9).
//!
//! ```toml
//! [services.hello]
//! command = ["python3", "app.py", "--port", "${PORT}"]   # argv; required, non-empty
//! instances = 3                 # default 1; 0 ..= MAX_INSTANCES
//! env = { GREETING = "hi" }     # string values
//! workdir = "."                 # relative to the deploy file's folder (the default)
//! port = 8080                   # public port of its load balancer, 1-65535; none: not routed
//! protocol = "http"             # "http" (the default) or "tcp"
//! constraints = ["zone=a", "disk!=hdd"]  # node labels, all must hold: key=value or key!=value
//! placement = "binpack"         # "binpack" (the default: fullest node that fits) or "spread"
//! [services.hello.resources]
//! cpu = 0.25                    # cores, or "250m"
//! memory = "64MiB"              # size string, or bytes
//! [services.hello.health]
//! http = "/healthz"             # one of http = "/path", tcp = true, command = [...]; default tcp
//! interval = "1s"
//! [services.hello.stop]
//! signal = "SIGTERM"
//! grace = "10s"
//! [services.hello.balance]      # needs `port`
//! algorithm = "peak_ewma"       # or "round_robin", "least_request", "hash" (see hash_header)
//! retries = 2                   # 0 ..= 10 extra attempts on other instances
//! slow_start = "0s"             # weight ramp for new instances; "0s" is off
//! drain = "30s"                 # time a removed instance has to finish its requests
//! request_timeout = "60s"       # > 0
//! queue_timeout = "3s"          # wait for a ready instance, then 503; > 0, at most "10m"
//! # hash_header = "X-User-Id"   # algorithm = "hash" only (not tcp): key on this header's value,
//! #                             # else (and when a request lacks it) on the client address
//! [services.hello.autoscale]    # scale with load; `instances` is then the initial count
//! min = 0                       # default 0 (scale to zero: needs `port`, unless policy = "schedule")
//! max = 20                      # required, 1 ..= MAX_INSTANCES; min ≤ max; instances in [min, max]
//! concurrency = 10              # targets per instance (policies "target" and "schedule"); several:
//! # rps = 100                   #   the largest proposal wins. concurrency, rps and latency_p95
//! # cpu = 0.7                   #   need `port`; cpu and memory are fractions (0 < x ≤ 1) of
//! # memory = 0.8                #   resources.cpu / resources.memory, which they need
//! # latency_p95 = "200ms"
//! policy = "target"             # "target" (default), "step", "linear" or "schedule"
//! stable_window = "60s"         # ≤ 1h
//! panic_window = "6s"           # shorter than stable_window
//! scale_down_delay = "auto"     # (default) learned from the load's dips; or a duration ≤ 1h
//!                               # (may be "0s"): the highest recommendation of that stretch
//! idle_timeout = "auto"         # (default) learned from the service's idle gaps, while min = 0;
//!                               # or a duration ≤ 1d: to zero after this long without a request
//! forecast = "on"               # "on" (default): raise the count ahead of the daily and weekly
//!                               # pattern learned from 3+ days of history; "shadow": only report
//!                               # it; "off"
//! # policy = "step": metric = "cpu" (any target's name) and ordered, non-overlapping bands of its
//! # per-instance value, `from` inclusive, `to` exclusive (left out: no upper end); change by
//! # "+N" | "-N" instances or "+P%" | "-P%" of the ready ones (or a signed integer):
//! #   steps = [{ from = 0.0, to = 0.3, change = "-1" }, { from = 0.9, change = "+50%" }]
//! # policy = "linear": metric, low = 50, high = 200, step = 3 (latency_p95: durations, "200ms")
//! # policy = "schedule": target tracking on the targets, with windows (first open one wins; none:
//! # the table's own min and max):
//! #   [[services.hello.autoscale.schedule]]
//! #   days = "mon-fri"          # "sat,sun", "fri-mon", "daily" or "*"; default daily
//! #   hours = "09:00-18:00"     # end exclusive, "24:00" allowed; "22:00-06:00" runs over midnight;
//! #                             # default the whole day (days or hours must be given)
//! #   utc_offset = "+01:00"     # a fixed offset, no time-zone names; default "+00:00"
//! #   min = 3                   # min and max default to the table's own; at least one given
//! #   max = 30
//! ```
//!
//! Fields left out take ebb-core's defaults. A service name and a public port may each be used
//! once across all the files deployed together. Parsing is pure except for [`parse_file`] and
//! [`parse_files`], which read the files.

mod autoscale;
mod diagnostic;
mod document;
#[doc(hidden)]
pub mod fuzz;
mod job;
mod service;
mod values;

pub use diagnostic::{SpecError, SpecErrors};

use diagnostic::{line_col, Source};
use document::{entries, header_span, syntax_error, Ctx, Entry};
use ebb_core::{JobSpec, QueueSpec, ServiceSpec};
use miette::NamedSource;
use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use toml_edit::ImDocument;

/// Top-level keys of a deploy file.
const ROOT_FIELDS: [&str; 3] = ["services", "jobs", "queues"];

impl From<Deployment> for ebb_core::api::ApplyRequest {
    fn from(d: Deployment) -> Self {
        ebb_core::api::ApplyRequest {
            services: d.services,
            jobs: d.jobs,
            queues: d.queues,
        }
    }
}

/// Everything deploy files define: services, jobs and queues.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deployment {
    /// `[services.NAME]`, in file order.
    pub services: Vec<ServiceSpec>,
    /// `[jobs.NAME]`, in file order.
    pub jobs: Vec<JobSpec>,
    /// `[queues.NAME]`, in file order.
    pub queues: Vec<QueueSpec>,
}

/// Parses one deploy file's text. `file_label` names it in errors; relative `workdir`s resolve
/// against `base_dir`, which should be absolute (it is used as given).
pub fn parse_str(
    file_label: &str,
    text: &str,
    base_dir: &Path,
) -> Result<Vec<ServiceSpec>, SpecErrors> {
    parse_deployment_str(file_label, text, base_dir).map(|d| d.services)
}

/// Parses one deploy file's text: its services, jobs and queues.
pub fn parse_deployment_str(
    file_label: &str,
    text: &str,
    base_dir: &Path,
) -> Result<Deployment, SpecErrors> {
    let mut set = ServiceSet::default();
    set.add(file_label, text, parse_one(file_label, text, base_dir));
    set.finish()
}

/// Reads and parses one deploy file; relative `workdir`s resolve against its folder.
pub fn parse_file(path: &Path) -> Result<Vec<ServiceSpec>, SpecErrors> {
    parse_files(&[path.to_path_buf()])
}

/// Reads and parses several deploy files, as one set of services: a service name, and a public
/// port, may be used once across all of them.
pub fn parse_files(paths: &[PathBuf]) -> Result<Vec<ServiceSpec>, SpecErrors> {
    parse_deployment_files(paths).map(|d| d.services)
}

/// Reads and parses several deploy files as one deployment: services, jobs and queues, each
/// name used once across all of them (a job and a service may not share one either).
pub fn parse_deployment_files(paths: &[PathBuf]) -> Result<Deployment, SpecErrors> {
    let mut set = ServiceSet::default();
    for path in paths {
        let label = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => set.add(&label, &text, parse_one(&label, &text, &folder_of(path))),
            Err(e) => set.errors.push(SpecError::whole_file(
                label,
                format!("cannot read deploy file: {e}"),
            )),
        }
    }
    set.finish()
}

/// The services of one or more files, checked for names and ports used twice.
#[derive(Default)]
struct ServiceSet {
    specs: Vec<ServiceSpec>,
    jobs: Vec<JobSpec>,
    queues: Vec<QueueSpec>,
    /// Job and queue names → "file:line:col" of their first definition.
    job_names: HashMap<String, String>,
    queue_names: HashMap<String, String>,
    errors: Vec<SpecError>,
    /// name → "file:line:col" of its first definition
    names: HashMap<String, String>,
    /// public port → the first service given it, and "file:line:col" of that port
    ports: HashMap<u16, (String, String)>,
}

impl ServiceSet {
    fn add(&mut self, label: &str, text: &str, parsed: Parsed) {
        let first_error = self.errors.len();
        self.errors.extend(parsed.errors);
        for s in parsed.services {
            let field = format!("services.{}", s.name);
            if let Some(first) = self.names.get(&s.name) {
                self.errors.push(
                    SpecError::at(
                        &parsed.source,
                        Some(s.header),
                        Some(field),
                        format!("service `{}` is already defined at {first}", s.name),
                    )
                    .with_hint("service names must be unique across all deploy files: rename one"),
                );
                continue;
            }
            if let Some(first) = self.job_names.get(&s.name) {
                self.errors.push(
                    SpecError::at(
                        &parsed.source,
                        Some(s.header),
                        Some(field),
                        format!("the name `{}` is already used at {first}", s.name),
                    )
                    .with_hint("jobs and services need names of their own: rename one"),
                );
                continue;
            }
            let (line, column) = line_col(text, s.header.start);
            self.names
                .insert(s.name.clone(), format!("{label}:{line}:{column}"));
            if let Some((port, span)) = s.port {
                if let Some((other, at)) = self.ports.get(&port) {
                    self.errors.push(
                        SpecError::at(
                            &parsed.source,
                            Some(span),
                            Some(format!("{field}.port")),
                            format!("port {port} is already used by service `{other}` at {at}"),
                        )
                        .with_hint(
                            "each routed service needs a public port of its own: change one",
                        ),
                    );
                    continue;
                }
                let (line, column) = line_col(text, span.start);
                self.ports
                    .insert(port, (s.name, format!("{label}:{line}:{column}")));
            }
            self.specs.extend(s.spec);
        }
        for j in parsed.jobs {
            let field = format!("jobs.{}", j.name);
            let first = self
                .job_names
                .get(&j.name)
                .or_else(|| self.names.get(&j.name));
            if let Some(first) = first {
                self.errors.push(
                    SpecError::at(
                        &parsed.source,
                        Some(j.header),
                        Some(field),
                        format!("the name `{}` is already used at {first}", j.name),
                    )
                    .with_hint("jobs and services need names of their own: rename one"),
                );
                continue;
            }
            let (line, column) = line_col(text, j.header.start);
            self.job_names
                .insert(j.name.clone(), format!("{label}:{line}:{column}"));
            self.jobs.extend(j.spec);
        }
        for q in parsed.queues {
            if let Some(first) = self.queue_names.get(&q.name) {
                self.errors.push(
                    SpecError::at(
                        &parsed.source,
                        Some(q.header),
                        Some(format!("queues.{}", q.name)),
                        format!("queue `{}` is already defined at {first}", q.name),
                    )
                    .with_hint("define each queue once across the deploy files"),
                );
                continue;
            }
            let (line, column) = line_col(text, q.header.start);
            self.queue_names
                .insert(q.name.clone(), format!("{label}:{line}:{column}"));
            self.queues.extend(q.spec);
        }
        // This file's errors in file order, whichever check found them.
        self.errors[first_error..].sort_by_key(|e| (e.line, e.column));
    }

    fn finish(self) -> Result<Deployment, SpecErrors> {
        if self.errors.is_empty() {
            Ok(Deployment {
                services: self.specs,
                jobs: self.jobs,
                queues: self.queues,
            })
        } else {
            Err(SpecErrors(self.errors))
        }
    }
}

/// The folder a deploy file's relative paths start from, made absolute.
fn folder_of(path: &Path) -> PathBuf {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // Canonical (no `..`, no symlinks): the workdir is part of a spec's version, so the same file
    // reached by two paths must give the same spec, or a redeploy would roll every instance.
    dir.canonicalize()
        .or_else(|_| std::path::absolute(dir))
        .unwrap_or_else(|_| dir.to_path_buf())
}

// === one file ===

/// A service found in a file, whether or not it converted cleanly.
struct Found {
    name: String,
    /// The `[services.NAME]` header (or the name's key), for errors about the whole service.
    header: Range<usize>,
    /// The public port, if one is given and valid, and where its value is.
    port: Option<(u16, Range<usize>)>,
    spec: Option<ServiceSpec>,
}

/// A job or queue found in a file, whether or not it converted cleanly.
struct Named<T> {
    name: String,
    header: Range<usize>,
    spec: Option<T>,
}

struct Parsed {
    source: Source,
    services: Vec<Found>,
    jobs: Vec<Named<JobSpec>>,
    queues: Vec<Named<QueueSpec>>,
    errors: Vec<SpecError>,
}

fn parse_one(label: &str, text: &str, base_dir: &Path) -> Parsed {
    let source: Source = Arc::new(NamedSource::new(label, text.to_string()));
    let doc = match ImDocument::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            return Parsed {
                errors: vec![syntax_error(&source, &e)],
                source,
                services: Vec::new(),
                jobs: Vec::new(),
                queues: Vec::new(),
            }
        }
    };
    let mut ctx = Ctx::new(source.clone());
    let root = entries(doc.as_table(), "");
    ctx.check_fields(&root, &ROOT_FIELDS);
    let services_entry = root.iter().find(|e| e.name == "services");
    let mut services = Vec::new();
    if let Some(table) = services_entry.and_then(|e| ctx.table(e)) {
        for e in entries(table, "services") {
            services.extend(service(&mut ctx, &e, base_dir));
        }
    }
    let mut jobs = Vec::new();
    let jobs_entry = root.iter().find(|e| e.name == "jobs");
    if let Some(table) = jobs_entry.and_then(|e| ctx.table(e)) {
        for e in entries(table, "jobs") {
            let header = header_span(ctx.text(), &e);
            if let Some(t) = ctx.table(&e) {
                let spec = job::convert(&mut ctx, e.name, t, header.clone(), base_dir);
                jobs.push(Named {
                    name: e.name.to_string(),
                    header,
                    spec,
                });
            }
        }
    }
    let mut queues = Vec::new();
    let queues_entry = root.iter().find(|e| e.name == "queues");
    if let Some(table) = queues_entry.and_then(|e| ctx.table(e)) {
        for e in entries(table, "queues") {
            let header = header_span(ctx.text(), &e);
            if let Some(t) = ctx.table(&e) {
                let spec = job::queue(&mut ctx, e.name, t, header.clone());
                queues.push(Named {
                    name: e.name.to_string(),
                    header,
                    spec,
                });
            }
        }
    }
    let about_anything = |f: &str| {
        ["services", "jobs", "queues"]
            .iter()
            .any(|root| f == *root || f.starts_with(&format!("{root}.")))
    };
    if services.is_empty()
        && jobs.is_empty()
        && queues.is_empty()
        && !ctx
            .errors
            .iter()
            .any(|e| e.field.as_deref().is_some_and(about_anything))
    {
        let span = services_entry.and_then(|e| e.key_span.clone());
        ctx.error_hint(
            span,
            "services",
            "no services defined",
            "add one, e.g. [services.web] with command = [\"python3\", \"app.py\"] (or a [jobs.NAME] table for work that finishes)",
        );
    }
    // Report in file order, whichever check found the problem.
    ctx.errors.sort_by_key(|e| (e.line, e.column));
    Parsed {
        source,
        services,
        jobs,
        queues,
        errors: ctx.errors,
    }
}

fn service(ctx: &mut Ctx, e: &Entry<'_>, base_dir: &Path) -> Option<Found> {
    let header = header_span(ctx.text(), e);
    let table = ctx.table(e)?;
    let spec = service::convert(ctx, e.name, table, header.clone(), base_dir);
    Some(Found {
        name: e.name.to_string(),
        header,
        port: service::port_of(table),
        spec,
    })
}
