//! `ebb status`: the server, its nodes, each service's rollout state, and the jobs.

use crate::output::out;
use crate::output::table;
use ebb_client::Client;

/// `min-max: last reason` for an autoscaled service, `-` otherwise.
fn autoscale_column(v: &ebb_core::api::ServiceView) -> String {
    match &v.spec.autoscale {
        None => "-".to_string(),
        Some(a) => {
            let reason = v
                .autoscale_reason
                .as_deref()
                .unwrap_or("waiting for metrics");
            format!("{}-{}: {reason}", a.min, a.max)
        }
    }
}

pub async fn status(client: &Client, json: bool) -> anyhow::Result<()> {
    let s = client.status().await?;
    if json {
        out!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    out!(
        "ebb {} at {}, up {}s, store revision {}",
        s.version,
        client.base(),
        s.uptime_ms / 1000,
        s.store_revision
    );
    if !s.store.is_empty() {
        out!("store: {}", s.store);
    }
    if let Some(leader) = &s.leader {
        if !leader.is_empty() && *leader != s.server {
            out!("leader: {leader} (this is {})", s.server);
        } else if !leader.is_empty() {
            out!("leader: {leader} (this server)");
        }
    }
    out!("nodes: {} live", s.node_count);
    if let Some(e) = &s.resource_enforcement {
        out!("resources: {e}");
    }
    out!();
    if s.services.is_empty() && s.jobs.is_empty() {
        out!("no services; deploy one with `ebb deploy FILE`");
        return Ok(());
    }
    services_table(&s.services);
    if !s.jobs.is_empty() {
        if !s.services.is_empty() {
            out!();
        }
        let rows: Vec<Vec<String>> = s.jobs.iter().map(super::jobs::job_row).collect();
        table(&super::jobs::JOB_HEADER, &rows);
    }
    Ok(())
}

/// One row per service; nothing when there is none.
fn services_table(services: &[ebb_core::api::ServiceView]) {
    if services.is_empty() {
        return;
    }
    let rows: Vec<Vec<String>> = services
        .iter()
        .map(|v| {
            vec![
                v.name.clone(),
                v.desired.to_string(),
                v.running.to_string(),
                v.ready.to_string(),
                v.outdated.to_string(),
                v.version.clone(),
                autoscale_column(v),
                v.pending_reason.clone().unwrap_or_else(|| "-".to_string()),
            ]
        })
        .collect();
    table(
        &[
            "SERVICE",
            "DESIRED",
            "RUNNING",
            "READY",
            "OUTDATED",
            "VERSION",
            "AUTOSCALE",
            "PENDING",
        ],
        &rows,
    );
}
