//! `GET /metrics`: everything ebb measures, in the Prometheus text format, behind the same
//! bearer token as the API (Prometheus' `authorization` scrape setting).
//!
//! Names follow OpenTelemetry's HTTP semantic conventions as Prometheus renders them, with the
//! `ebb_` prefix. Labels are bounded: service, node and queue names that exist, request method
//! (ten values), status class (five), instance and job state, autoscaler rule; never a request
//! or an instance. The router's figures are this server's own load balancers (with several
//! servers, scrape each and sum); the rest is read from the store, the same on every server.
//! The README lists every family.

pub mod text;

use super::ApiError;
use crate::controllers::instances::current_status;
use crate::state::keys::{self, Versioned};
use crate::state::telemetry::ForecastReading;
use crate::Server;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use ebb_core::api::{JobView, NodeView, QueueView, ServiceView};
use ebb_core::{Assignment, DesiredState, InstanceState, InstanceStatus, JobState};
use ebb_store::Leadership;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;
use text::{Exposition, Kind};

/// Every state an instance can report, for zero-valued series that do not come and go.
const INSTANCE_STATES: [InstanceState; 8] = [
    InstanceState::Pending,
    InstanceState::Starting,
    InstanceState::Running,
    InstanceState::Backoff,
    InstanceState::Stopping,
    InstanceState::Stopped,
    InstanceState::Failed,
    InstanceState::Exited,
];

/// Every state a job can be in.
const JOB_STATES: [JobState; 5] = [
    JobState::Queued,
    JobState::Running,
    JobState::Completed,
    JobState::Failed,
    JobState::Cancelled,
];

/// The scrape.
pub async fn scrape(State(server): State<Server>) -> Result<Response, ApiError> {
    let body = render(&server, Instant::now())?;
    Ok(([(CONTENT_TYPE, text::CONTENT_TYPE)], body).into_response())
}

/// The whole exposition at `now`.
pub fn render(server: &Server, now: Instant) -> Result<String, ApiError> {
    // Assignments before statuses, as everywhere: a status is never newer than its assignment.
    let (assignments, _) = keys::assignments(server.store())?;
    let services = super::services::service_views_with(server, &assignments)?;
    let jobs = super::jobs::job_views_with(server, &assignments)?;
    let queues = super::jobs::queue_views(server, &jobs)?;
    let nodes = super::nodes::views_with(server, now, &assignments)?;
    let statuses = server.statuses();
    let names: BTreeSet<&str> = services.iter().map(|s| s.name.as_str()).collect();
    let queue_names: BTreeSet<&str> = queues.iter().map(|q| q.name.as_str()).collect();
    server.telemetry().retain(&names, &queue_names);

    let mut e = Exposition::default();
    control_plane(&mut e, server)?;
    service_families(&mut e, &services, &assignments, &statuses);
    router_families(&mut e, server);
    autoscaler_families(&mut e, server, &services);
    instance_event_families(&mut e, server);
    node_families(&mut e, &nodes);
    job_families(&mut e, server, &jobs, &queues);
    Ok(e.finish())
}

fn control_plane(e: &mut Exposition, server: &Server) -> Result<(), ApiError> {
    e.family(
        "ebb_build_info",
        Kind::Gauge,
        "Always 1; the ebb version that answers.",
    );
    e.sample(
        "ebb_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    e.family(
        "ebb_server_leader",
        Kind::Gauge,
        "1 when this server leads the control plane (runs the controller and the autoscaler).",
    );
    let leading = matches!(server.leadership(), Leadership::Leading(_));
    e.sample("ebb_server_leader", &[], f64::from(u8::from(leading)));
    e.family(
        "ebb_store_revision",
        Kind::Gauge,
        "The store's revision: grows with every write.",
    );
    e.sample("ebb_store_revision", &[], server.store().revision()? as f64);
    e.family(
        "ebb_controller_pass_duration_seconds",
        Kind::Histogram,
        "How long the controller's passes took on this server (read, decide, write).",
    );
    let passes = server.telemetry().passes();
    e.histogram("ebb_controller_pass_duration_seconds", &[], &passes);
    Ok(())
}

fn service_families(
    e: &mut Exposition,
    services: &[ServiceView],
    assignments: &[Versioned<Assignment>],
    statuses: &HashMap<String, InstanceStatus>,
) {
    e.family(
        "ebb_service_desired_instances",
        Kind::Gauge,
        "Instances the service should run (for an autoscaled one, the autoscaler's count).",
    );
    for s in services {
        let labels = [("service", s.name.as_str())];
        e.sample(
            "ebb_service_desired_instances",
            &labels,
            f64::from(s.desired),
        );
    }
    e.family(
        "ebb_service_ready_instances",
        Kind::Gauge,
        "Instances of the service that are ready and on its current version.",
    );
    for s in services {
        let labels = [("service", s.name.as_str())];
        e.sample("ebb_service_ready_instances", &labels, f64::from(s.ready));
    }
    let mut by_state: BTreeMap<&str, [u32; INSTANCE_STATES.len()]> = services
        .iter()
        .map(|s| (s.name.as_str(), [0; INSTANCE_STATES.len()]))
        .collect();
    for a in assignments.iter().map(|a| &a.value) {
        if a.desired != DesiredState::Run || a.task.is_some() {
            continue;
        }
        let Some(counts) = by_state.get_mut(a.service.as_str()) else {
            continue;
        };
        let state = current_status(a, statuses).map_or(InstanceState::Pending, |s| s.state);
        if let Some(i) = INSTANCE_STATES.iter().position(|s| *s == state) {
            counts[i] += 1;
        }
    }
    e.family(
        "ebb_service_instances",
        Kind::Gauge,
        "Instances placed to run, by the state their node last reported (starting, running, backoff, ...).",
    );
    for (service, counts) in &by_state {
        for (state, n) in INSTANCE_STATES.iter().zip(counts) {
            let labels = [("service", *service), ("state", state.as_str())];
            e.sample("ebb_service_instances", &labels, f64::from(*n));
        }
    }
}

fn router_families(e: &mut Exposition, server: &Server) {
    let routed = server.router().map(|r| r.endpoints()).unwrap_or_default();
    let now = Instant::now();
    e.family(
        "ebb_http_server_request_duration_seconds",
        Kind::Histogram,
        "Duration of HTTP requests through this server's load balancer, until the instance's last byte of the response reached it (OpenTelemetry http.server.request.duration); a WebSocket counts in 1xx for its tunnel's life.",
    );
    for (service, endpoints) in &routed {
        for (method, class, reading) in endpoints.http.read() {
            let class = STATUS_CLASSES[class];
            let labels = [
                ("service", service.as_str()),
                ("http_request_method", method.as_str()),
                ("http_response_status_class", class),
            ];
            e.histogram(
                "ebb_http_server_request_duration_seconds",
                &labels,
                &reading,
            );
        }
    }
    let snapshots: Vec<_> = routed
        .iter()
        .map(|(name, endpoints)| (name.as_str(), endpoints.snapshot(now), endpoints.queued()))
        .collect();
    e.family(
        "ebb_http_server_active_requests",
        Kind::Gauge,
        "Requests (or TCP connections) in flight through this server's load balancer, queue included.",
    );
    for (service, s, _) in &snapshots {
        let labels = [("service", *service)];
        e.sample(
            "ebb_http_server_active_requests",
            &labels,
            f64::from(s.in_flight),
        );
    }
    type Count = fn(&ebb_router::metrics::Snapshot) -> u64;
    let counters: [(&str, &str, Count); 3] = [
        (
            "ebb_router_retries_total",
            "Attempts retried on another instance.",
            |s| s.retries,
        ),
        (
            "ebb_router_ejections_total",
            "Instances ejected by outlier detection.",
            |s| s.ejections,
        ),
        (
            "ebb_router_connect_errors_total",
            "Attempts that could not connect to an instance.",
            |s| s.connect_errors,
        ),
    ];
    for (name, help, value) in counters {
        e.family(name, Kind::Counter, help);
        for (service, s, _) in &snapshots {
            e.sample(name, &[("service", *service)], value(s) as f64);
        }
    }
    e.family(
        "ebb_router_queued_requests",
        Kind::Gauge,
        "Requests waiting now for a first ready instance (the cold-start queue).",
    );
    for (service, _, queued) in &snapshots {
        e.sample(
            "ebb_router_queued_requests",
            &[("service", *service)],
            f64::from(*queued),
        );
    }
    e.family(
        "ebb_router_queue_wait_seconds",
        Kind::Histogram,
        "How long requests (TCP services: connections) that found no ready instance waited in the cold-start queue, given up waits included.",
    );
    for (service, endpoints) in &routed {
        let labels = [("service", service.as_str())];
        e.histogram(
            "ebb_router_queue_wait_seconds",
            &labels,
            &endpoints.queue_wait.read(),
        );
    }
}

/// Label values of the status classes, in [`ebb_router::metrics::status_class`]'s order.
const STATUS_CLASSES: [&str; ebb_router::metrics::STATUS_CLASSES] =
    ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn autoscaler_families(e: &mut Exposition, server: &Server, services: &[ServiceView]) {
    e.family(
        "ebb_autoscaler_desired_instances",
        Kind::Gauge,
        "The autoscaler's current count for each autoscaled service.",
    );
    for s in services.iter().filter(|s| s.spec.autoscale.is_some()) {
        let labels = [("service", s.name.as_str())];
        e.sample(
            "ebb_autoscaler_desired_instances",
            &labels,
            f64::from(s.desired),
        );
    }
    let decisions = server.telemetry().decisions();
    e.family(
        "ebb_autoscaler_decisions_total",
        Kind::Counter,
        "Decisions of this server's autoscaler (one per service per tick, and on demand and bursts), by the rule that set the count.",
    );
    for ((service, rule), counts) in &decisions {
        let labels = [("service", service.as_str()), ("rule", rule.as_str())];
        e.sample(
            "ebb_autoscaler_decisions_total",
            &labels,
            counts.decisions as f64,
        );
    }
    e.family(
        "ebb_autoscaler_changes_total",
        Kind::Counter,
        "Decisions that changed the desired count, by rule (rule=\"demand\": cold starts).",
    );
    for ((service, rule), counts) in &decisions {
        let labels = [("service", service.as_str()), ("rule", rule.as_str())];
        e.sample(
            "ebb_autoscaler_changes_total",
            &labels,
            counts.changes as f64,
        );
    }
    forecast_families(e, server);
}

/// A per-service gauge of the forecast: its name, help, and value (none: no sample).
type ForecastGauge = (
    &'static str,
    &'static str,
    fn(&ForecastReading) -> Option<f64>,
);

/// The predictive floor's figures, for services with `forecast` on or in shadow.
fn forecast_families(e: &mut Exposition, server: &Server) {
    let forecasts = server.telemetry().forecasts();
    let gauges: [ForecastGauge; 3] = [
        (
            "ebb_autoscaler_forecast_scored_seconds",
            "Time (whole minutes) whose forecast has been scored against the count the load asked for.",
            |f| Some(f.minutes as f64 * 60.0),
        ),
        (
            "ebb_autoscaler_forecast_error_ratio",
            "The forecast's weighted absolute percentage error over the minutes scored: sum of |forecast - actual| over sum of actual counts (0.1: 10 % off).",
            |f| f.error,
        ),
        (
            "ebb_autoscaler_start_seconds",
            "How long the service's instances took to serve after a scale-up (the highest of the last few), the forecast's lead.",
            |f| f.start.map(|d| d.as_secs_f64()),
        ),
    ];
    for (name, help, value) in gauges {
        e.family(name, Kind::Gauge, help);
        for (service, f) in &forecasts {
            if let Some(v) = value(f) {
                e.sample(name, &[("service", service.as_str())], v);
            }
        }
    }
}

fn instance_event_families(e: &mut Exposition, server: &Server) {
    let counts = server.telemetry().instance_counts();
    e.family(
        "ebb_instance_restarts_total",
        Kind::Counter,
        "Instances started again after they exited, as recorded by this server.",
    );
    for (service, c) in &counts {
        let labels = [("service", service.as_str())];
        e.sample("ebb_instance_restarts_total", &labels, c.restarts as f64);
    }
    e.family(
        "ebb_instance_health_failures_total",
        Kind::Counter,
        "Health-check failures that acted, as recorded by this server: action=\"unready\" took a ready instance out of the load balancer, action=\"killed\" got an instance killed to be restarted.",
    );
    for (service, c) in &counts {
        for (action, n) in [("unready", c.unready), ("killed", c.killed)] {
            let labels = [("service", service.as_str()), ("action", action)];
            e.sample("ebb_instance_health_failures_total", &labels, n as f64);
        }
    }
}

fn node_families(e: &mut Exposition, nodes: &[NodeView]) {
    type Value = fn(&NodeView) -> Option<f64>;
    let families: [(&str, &str, Value); 8] = [
        (
            "ebb_node_up",
            "1 while the node heartbeats (ready, suspect or draining), 0 when down.",
            |n| {
                Some(f64::from(u8::from(
                    n.state != ebb_core::api::NodeState::Down,
                )))
            },
        ),
        (
            "ebb_node_instances",
            "Instances and tasks placed on the node to run.",
            |n| Some(f64::from(n.instances)),
        ),
        (
            "ebb_node_cpu_capacity_cores",
            "CPU the node offers to instances.",
            |n| Some(f64::from(n.cpu_millis) / 1000.0),
        ),
        (
            "ebb_node_cpu_reserved_cores",
            "CPU reserved by what is placed on the node.",
            |n| Some(n.reserved_cpu_millis as f64 / 1000.0),
        ),
        (
            "ebb_node_cpu_used_cores",
            "CPU the whole node uses, as last reported.",
            |n| n.used_cpu_cores,
        ),
        (
            "ebb_node_memory_capacity_bytes",
            "Memory the node offers to instances.",
            |n| Some(n.memory_bytes as f64),
        ),
        (
            "ebb_node_memory_reserved_bytes",
            "Memory reserved by what is placed on the node.",
            |n| Some(n.reserved_memory_bytes as f64),
        ),
        (
            "ebb_node_memory_used_bytes",
            "Memory the whole node uses, as last reported.",
            |n| n.used_memory_bytes.map(|b| b as f64),
        ),
    ];
    for (name, help, value) in families {
        e.family(name, Kind::Gauge, help);
        for n in nodes {
            if let Some(v) = value(n) {
                e.sample(name, &[("node", n.name.as_str())], v);
            }
        }
    }
}

fn job_families(e: &mut Exposition, server: &Server, jobs: &[JobView], queues: &[QueueView]) {
    e.family("ebb_jobs", Kind::Gauge, "Jobs by state.");
    for state in JOB_STATES {
        let n = jobs.iter().filter(|j| j.state == state).count();
        e.sample("ebb_jobs", &[("state", state.as_str())], n as f64);
    }
    e.family(
        "ebb_job_tasks",
        Kind::Gauge,
        "Tasks of the jobs kept in the store, by state.",
    );
    let sum = |f: fn(&JobView) -> u32| jobs.iter().map(|j| u64::from(f(j))).sum::<u64>() as f64;
    let tasks: [(&str, f64); 5] = [
        ("queued", sum(|j| j.queued)),
        ("running", sum(|j| j.running)),
        ("completed", sum(|j| j.completed)),
        ("failed", sum(|j| j.failed)),
        ("cancelled", sum(|j| j.cancelled)),
    ];
    for (state, n) in tasks {
        e.sample("ebb_job_tasks", &[("state", state)], n);
    }
    e.family(
        "ebb_queue_tasks",
        Kind::Gauge,
        "Tasks of each queue's jobs waiting and running.",
    );
    for q in queues {
        for (state, n) in [("waiting", q.queued), ("running", q.running)] {
            let labels = [("queue", q.name.as_str()), ("state", state)];
            e.sample("ebb_queue_tasks", &labels, f64::from(n));
        }
    }
    e.family(
        "ebb_queue_wait_seconds",
        Kind::Histogram,
        "How long tasks waited from when they could run until this server's controller placed them.",
    );
    for (queue, reading) in server.telemetry().queue_waits() {
        e.histogram(
            "ebb_queue_wait_seconds",
            &[("queue", queue.as_str())],
            &reading,
        );
    }
}
