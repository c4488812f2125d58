//! `ebb nodes`: one row per node.

use crate::output::out;
use crate::output::{dash, table_wide};
use ebb_client::Client;
use ebb_core::api::NodeView;
use ebb_core::quantity::{format_cpu_millis, format_size};

/// The columns `ebb nodes` shows only with `-o wide`.
const WIDE_ONLY: [&str; 4] = ["ADDRESS", "CPU USED", "MEMORY USED", "LABELS"];

pub async fn nodes(client: &Client, json: bool, wide: bool) -> anyhow::Result<()> {
    let nodes = client.nodes().await?;
    if json {
        out!("{}", serde_json::to_string_pretty(&nodes)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = nodes.iter().map(row).collect();
    table_wide(
        &[
            "NAME",
            "ADDRESS",
            "STATE",
            "CPU RESERVED",
            "MEMORY RESERVED",
            "CPU USED",
            "MEMORY USED",
            "INSTANCES",
            "HEARTBEAT",
            "LABELS",
        ],
        &rows,
        wide,
        &WIDE_ONLY,
    );
    Ok(())
}

fn row(n: &NodeView) -> Vec<String> {
    let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    vec![
        n.name.clone(),
        n.address.clone(),
        n.state.as_str().to_string(),
        format!(
            "{}/{}",
            format_cpu_millis(u32::try_from(n.reserved_cpu_millis).unwrap_or(u32::MAX)),
            format_cpu_millis(n.cpu_millis)
        ),
        format!(
            "{}/{}",
            format_size(n.reserved_memory_bytes),
            format_size(n.memory_bytes)
        ),
        dash(n.used_cpu_cores.map(|c| format!("{c:.2}"))),
        dash(n.used_memory_bytes.map(format_size)),
        n.instances.to_string(),
        dash(
            n.heartbeat_age_ms
                .map(|ms| format!("{:.1}s ago", ms as f64 / 1000.0)),
        ),
        if labels.is_empty() {
            "-".to_string()
        } else {
            labels.join(",")
        },
    ]
}

/// `ebb nodes rm NODE`
pub async fn remove(client: &Client, node: &str) -> anyhow::Result<()> {
    let removed = client.remove_node(node).await?;
    out!(
        "node {} removed (it was {})",
        removed.name,
        removed.state.as_str()
    );
    Ok(())
}
