//! `ebb describe SERVICE|JOB|NODE|INSTANCE`: one thing with everything said about it, where
//! `kubectl describe` and `nomad alloc status` put it: the spec in short, its instances with
//! state and reason, the autoscaler's last decision, why something is pending, and its
//! recent events. The name is looked up as a service, a job, a node, then an instance id.

use super::{Exit, EXIT_INVALID};
use crate::output::{age, dash, out, table, timestamp};
use ebb_client::Client;
use ebb_core::api::{InstanceView, JobDetail, NodeView, ServiceView};
use ebb_core::quantity::format_size;
use ebb_core::service::HealthCheck;
use ebb_core::Event;
use serde_json::json;

/// Events read to find a thing's recent ones: the API returns the latest this many, oldest
/// first.
const EVENTS_SCANNED: usize = 2_000;
/// Events shown per thing.
const EVENTS_SHOWN: usize = 10;

/// `ebb describe NAME [--json]`
pub async fn describe(client: &Client, name: &str, json: bool) -> anyhow::Result<()> {
    let services = client.services().await?;
    let instances = client.instances(None).await?;
    let events = client
        .events(0, EVENTS_SCANNED, std::time::Duration::ZERO)
        .await?
        .events;
    if let Some(v) = services.iter().find(|s| s.name == name) {
        let mine: Vec<&InstanceView> = instances.iter().filter(|i| i.service == name).collect();
        let about = recent(&events, |e| e.service.as_deref() == Some(name));
        return service(v, &mine, &about, json);
    }
    match client.job(name).await {
        Ok(detail) => {
            let about = recent(&events, |e| e.service.as_deref() == Some(name));
            return job(&detail, &about, json);
        }
        Err(e) if e.status() == Some(404) => {}
        Err(e) => return Err(e.into()),
    }
    let nodes = client.nodes().await?;
    if let Some(n) = nodes.iter().find(|n| n.name == name) {
        let mine: Vec<&InstanceView> = instances.iter().filter(|i| i.node == name).collect();
        let about = recent(&events, |e| e.node.as_deref() == Some(name));
        return node(n, &mine, &about, json);
    }
    if let Some(i) = instances.iter().find(|i| i.id == name) {
        let about = recent(&events, |e| {
            e.instance.as_deref() == Some(name) || e.message.contains(name)
        });
        return instance(i, &about, json);
    }
    Err(anyhow::Error::new(Exit {
        code: EXIT_INVALID,
        message: format!(
            "error: nothing named {name:?}: no service, job, node or instance (`ebb status`, `ebb jobs`, `ebb nodes`, `ebb ps` list them)"
        ),
    }))
}

/// The last [`EVENTS_SHOWN`] events that `about` keeps, oldest first.
fn recent(events: &[Event], about: impl Fn(&Event) -> bool) -> Vec<Event> {
    let mut kept: Vec<Event> = events.iter().filter(|e| about(e)).cloned().collect();
    let skip = kept.len().saturating_sub(EVENTS_SHOWN);
    kept.drain(..skip);
    kept
}

fn service(
    v: &ServiceView,
    instances: &[&InstanceView],
    events: &[Event],
    json: bool,
) -> anyhow::Result<()> {
    if json {
        return print_json(
            &json!({"kind": "service", "service": v, "instances": instances, "events": events}),
        );
    }
    let spec = &v.spec;
    field("Service", &format!("{} (version {})", v.name, v.version));
    field("Command", &spec.command.join(" "));
    field(
        "Instances",
        &format!(
            "{} desired, {} ready, {} running, {} placed, {} outdated",
            v.desired, v.ready, v.running, v.placed, v.outdated
        ),
    );
    if let Some(port) = spec.port {
        field(
            "Port",
            &format!(
                "{port} ({}, {})",
                serde_name(&spec.protocol),
                serde_name(&spec.balance.algorithm)
            ),
        );
    }
    field("Health", &health(spec));
    let r = &spec.resources;
    field(
        "Resources",
        &match (r.cpu_millis, r.memory_bytes) {
            (None, None) => "none reserved".to_string(),
            (cpu, mem) => format!(
                "cpu {}, memory {}",
                dash(cpu.map(|c| format!("{c}m"))),
                dash(mem.map(format_size))
            ),
        },
    );
    if !spec.constraints.is_empty() {
        field("Constraints", &spec.constraints.join(", "));
    }
    if let Some(a) = &spec.autoscale {
        let targets: Vec<String> = a
            .targets
            .iter()
            .map(|(m, t)| format!("{} {t}", m.name()))
            .collect();
        field(
            "Autoscale",
            &format!("{}–{}, target {}", a.min, a.max, targets.join(", ")),
        );
        field("Last decision", &dash(v.autoscale_reason.clone()));
    }
    if let Some(why) = &v.pending_reason {
        field("Pending", why);
    }
    instance_table(instances);
    event_list(events);
    Ok(())
}

fn health(spec: &ebb_core::ServiceSpec) -> String {
    let h = &spec.health;
    let what = match &h.check {
        HealthCheck::Tcp => "TCP connect".to_string(),
        HealthCheck::Http { path } => format!("HTTP GET {path}"),
        HealthCheck::Command { argv } => format!("command {}", argv.join(" ")),
    };
    format!(
        "{what} every {}, timeout {}, restarted after {} failures",
        ebb_core::quantity::format_duration(h.interval),
        ebb_core::quantity::format_duration(h.timeout),
        h.unhealthy_threshold
    )
}

fn instance_table(instances: &[&InstanceView]) {
    out!();
    if instances.is_empty() {
        out!("Instances: none");
        return;
    }
    out!("Instances:");
    let rows: Vec<Vec<String>> = instances
        .iter()
        .map(|i| {
            vec![
                i.id.clone(),
                i.service.clone(),
                i.node.clone(),
                i.state.as_str().to_string(),
                if i.ready { "yes" } else { "no" }.to_string(),
                i.restarts.to_string(),
                age(i.started_ms.unwrap_or(i.created_ms)),
                dash(i.reason.clone().or_else(|| i.last_exit.clone())),
            ]
        })
        .collect();
    table(
        &[
            "ID", "SERVICE", "NODE", "STATE", "READY", "RESTARTS", "AGE", "REASON",
        ],
        &rows,
    );
}

fn event_list(events: &[Event]) {
    out!();
    if events.is_empty() {
        out!("Events: none recent");
        return;
    }
    out!("Events (latest {}):", events.len());
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                timestamp(e.time_ms),
                e.kind.as_str().to_string(),
                e.message.clone(),
            ]
        })
        .collect();
    table(&["TIME", "EVENT", "MESSAGE"], &rows);
}

/// `ebb describe --json`: one object.
fn print_json(doc: &serde_json::Value) -> anyhow::Result<()> {
    out!("{}", serde_json::to_string_pretty(doc)?);
    Ok(())
}

/// A value's name as the JSON (and the deploy file) spells it: `round_robin`, `run`.
fn serde_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".to_string(),
    }
}

fn field(name: &str, value: &str) {
    out!("{:<14}{value}", format!("{name}:"));
}

fn job(detail: &JobDetail, events: &[Event], json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(
            &json!({"kind": "job", "job": detail.job, "tasks": detail.tasks, "events": events}),
        );
    }
    let j = &detail.job;
    field("Job", &format!("{} (run {})", j.name, j.run));
    field("Command", &j.spec.command.join(" "));
    field("State", j.state.as_str());
    field(
        "Tasks",
        &format!(
            "{} in all: {} completed, {} running, {} queued, {} failed, {} cancelled",
            j.tasks, j.completed, j.running, j.queued, j.failed, j.cancelled
        ),
    );
    field("Queue", &format!("{}, priority {}", j.queue, j.priority));
    field("Submitted", &timestamp(j.submitted_ms));
    if let Some(why) = &j.reason {
        field("Reason", why);
    }
    out!();
    out!(
        "Tasks that ran or run: {} (`ebb job {}` lists them)",
        detail.tasks.len(),
        j.name
    );
    event_list(events);
    Ok(())
}

fn node(
    n: &NodeView,
    instances: &[&InstanceView],
    events: &[Event],
    json: bool,
) -> anyhow::Result<()> {
    if json {
        return print_json(
            &json!({"kind": "node", "node": n, "instances": instances, "events": events}),
        );
    }
    field("Node", &format!("{} at {}", n.name, n.address));
    field("State", n.state.as_str());
    field(
        "CPU",
        &format!(
            "{}m reserved of {}m, {} cores used",
            n.reserved_cpu_millis,
            n.cpu_millis,
            dash(n.used_cpu_cores.map(|c| format!("{c:.2}")))
        ),
    );
    field(
        "Memory",
        &format!(
            "{} reserved of {}, {} used",
            format_size(n.reserved_memory_bytes),
            format_size(n.memory_bytes),
            dash(n.used_memory_bytes.map(format_size))
        ),
    );
    if !n.labels.is_empty() {
        let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        field("Labels", &labels.join(", "));
    }
    field(
        "Heartbeat",
        &dash(
            n.heartbeat_age_ms
                .map(|ms| format!("{:.1}s ago", ms as f64 / 1000.0)),
        ),
    );
    if let Some(d) = &n.drain {
        field(
            "Drain",
            &format!(
                "since {}, deadline {}",
                timestamp(d.since_ms),
                timestamp(d.deadline_ms)
            ),
        );
    }
    instance_table(instances);
    event_list(events);
    Ok(())
}

fn instance(i: &InstanceView, events: &[Event], json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&json!({"kind": "instance", "instance": i, "events": events}));
    }
    field("Instance", &format!("{} of {}", i.id, i.service));
    field("Node", &i.node);
    field("Placement", &dash(i.placement.clone()));
    field(
        "State",
        &format!(
            "{} ({}), desired {}",
            i.state.as_str(),
            if i.ready { "ready" } else { "not ready" },
            serde_name(&i.desired)
        ),
    );
    field("Process", &dash(i.pid.map(|p| format!("pid {p}"))));
    field("Address", &dash(i.addr.clone()));
    field(
        "Version",
        &format!("{} (generation {})", i.version, i.generation),
    );
    field("Restarts", &i.restarts.to_string());
    field("Started", &dash(i.started_ms.map(timestamp)));
    field("Last exit", &dash(i.last_exit.clone()));
    field("Reason", &dash(i.reason.clone()));
    if let Some(t) = &i.traffic {
        field(
            "Traffic",
            &format!("{:.1} rps, {:.1} in flight", t.rps, t.concurrency),
        );
    }
    if let Some(u) = &i.usage {
        field(
            "Usage",
            &format!("{:.2} cores, {}", u.cpu_cores, format_size(u.memory_bytes)),
        );
    }
    event_list(events);
    Ok(())
}
