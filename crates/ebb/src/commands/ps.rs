//! `ebb ps`: one row per instance.

use crate::output::out;
use crate::output::{age, dash, table_wide};
use ebb_client::Client;
use ebb_core::quantity::format_latency;
use ebb_core::quantity::format_size;

/// The columns `ebb ps` shows only with `-o wide`.
const WIDE_ONLY: [&str; 9] = [
    "PID", "ADDR", "VERSION", "RPS", "INFLIGHT", "P50", "P99", "CPU", "MEMORY",
];

pub async fn ps(
    client: &Client,
    service: Option<&str>,
    json: bool,
    wide: bool,
) -> anyhow::Result<()> {
    let instances = client.instances(service).await?;
    if json {
        out!("{}", serde_json::to_string_pretty(&instances)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = instances
        .iter()
        .map(|i| {
            let state = if i.desired == ebb_core::DesiredState::Stop
                && i.state != ebb_core::InstanceState::Stopped
            {
                "stopping".to_string()
            } else {
                i.state.as_str().to_string()
            };
            vec![
                i.id.clone(),
                i.service.clone(),
                i.node.clone(),
                state,
                dash(i.pid.map(|p| p.to_string())),
                dash(i.addr.clone()),
                i.version.clone(),
                if i.ready { "yes" } else { "no" }.to_string(),
                i.restarts.to_string(),
                age(i.started_ms.unwrap_or(i.created_ms)),
                dash(i.traffic.as_ref().map(|t| format!("{:.1}", t.rps))),
                dash(i.traffic.as_ref().map(|t| format!("{:.1}", t.concurrency))),
                dash(i.traffic.as_ref().map(|t| format_latency(t.p50_ms))),
                dash(i.traffic.as_ref().map(|t| format_latency(t.p99_ms))),
                dash(i.usage.as_ref().map(|u| format!("{:.2}", u.cpu_cores))),
                dash(i.usage.as_ref().map(|u| format_size(u.memory_bytes))),
                dash(i.reason.clone()),
            ]
        })
        .collect();
    table_wide(
        &[
            "ID", "SERVICE", "NODE", "STATE", "PID", "ADDR", "VERSION", "READY", "RESTARTS", "AGE",
            "RPS", "INFLIGHT", "P50", "P99", "CPU", "MEMORY", "REASON",
        ],
        &rows,
        wide,
        &WIDE_ONLY,
    );
    pending(client, service).await
}

/// Instances that no node could take have no row: one line per such service says why.
async fn pending(client: &Client, service: Option<&str>) -> anyhow::Result<()> {
    for v in client.services().await? {
        if service.is_some_and(|s| s != v.name) {
            continue;
        }
        if let Some(why) = &v.pending_reason {
            let missing = v.desired.saturating_sub(super::deploy::placed(&v)).max(1);
            out!("{}: {missing} instances pending: {why}", v.name);
        }
    }
    Ok(())
}
