//! `ebb metrics`: what the load balancer measured per service, and per instance under it.

use crate::output::out;
use crate::output::table;
use ebb_client::Client;
use ebb_core::quantity::format_latency;
use ebb_core::traffic::Traffic;

pub async fn metrics(
    client: &Client,
    service: Option<&str>,
    window: std::time::Duration,
    json: bool,
) -> anyhow::Result<()> {
    let window = ebb_core::quantity::format_duration(window);
    let m = client.metrics(service, &window).await?;
    if json {
        out!("{}", serde_json::to_string_pretty(&m)?);
        return Ok(());
    }
    if m.services.is_empty() {
        out!("no service with a public `port`; only those go through the load balancer");
        return Ok(());
    }
    let mut rows = Vec::new();
    for s in &m.services {
        let mut name = format!("{} :{}", s.service, s.port);
        if s.queued > 0 {
            name.push_str(&format!(" ({} queued)", s.queued));
        }
        rows.push(row(name, &s.traffic));
        for i in &s.instances {
            let ejected = if i.ejected { " (ejected)" } else { "" };
            rows.push(row(format!("  {}{ejected}", i.id), &i.traffic));
        }
    }
    // Rounded: a window may be a few milliseconds short of the seconds asked for.
    let span = m
        .services
        .first()
        .map_or(0, |s| s.traffic.window_ms.saturating_add(500) / 1000);
    out!("over the last {span}s:");
    table(
        &[
            "SERVICE / INSTANCE",
            "RPS",
            "INFLIGHT",
            "P50",
            "P90",
            "P99",
            "2XX",
            "4XX",
            "5XX",
            "CONN-ERR",
            "RETRIES",
            "EJECTED",
        ],
        &rows,
    );
    Ok(())
}

fn row(name: String, t: &Traffic) -> Vec<String> {
    vec![
        name,
        format!("{:.1}", t.rps),
        format!("{:.1}", t.concurrency),
        format_latency(t.p50_ms),
        format_latency(t.p90_ms),
        format_latency(t.p99_ms),
        t.status.success.to_string(),
        t.status.client_error.to_string(),
        t.status.server_error.to_string(),
        t.connect_errors.to_string(),
        t.retries.to_string(),
        t.ejections.to_string(),
    ]
}
