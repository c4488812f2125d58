//! `ebb logs SERVICE|JOB [--instance ID] [--task N] [-f] [--tail N]`.

use crate::output::out;
use ebb_client::Client;
use ebb_core::api::LogGap;
use std::time::Duration;

/// How often `-f` asks for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(500);

pub async fn logs(
    client: &Client,
    service: &str,
    instance: Option<&str>,
    task: Option<u32>,
    follow: bool,
    tail: usize,
    json: bool,
) -> anyhow::Result<()> {
    let mut resp = client.logs(service, instance, task, tail, "").await?;
    let mut said: Vec<LogGap> = Vec::new();
    loop {
        let prefix = instance.is_none() && task.is_none();
        for l in &resp.lines {
            if json {
                let line = serde_json::json!({"instance": l.instance, "line": l.line});
                out!("{line}");
            } else if prefix {
                out!("{} | {}", l.instance, l.line);
            } else {
                out!("{}", l.line);
            }
        }
        // Each instance's gap once while it lasts (a node that stays down is not repeated
        // every poll, though its "last heard" age changes).
        for gap in &resp.unavailable {
            if !said.iter().any(|s| same_gap(s, gap)) {
                eprintln!(
                    "ebb: the log of {} is unavailable: {}",
                    gap.instance, gap.reason
                );
            }
        }
        said = resp.unavailable.clone();
        if !follow {
            if resp.cursors.is_empty() && !resp.unavailable.is_empty() {
                anyhow::bail!("no log of {service} could be read");
            }
            return Ok(());
        }
        tokio::time::sleep(FOLLOW_POLL).await;
        let cursors: Vec<String> = resp
            .cursors
            .iter()
            .map(|c| format!("{}:{}", c.instance, c.offset))
            .collect();
        let mut next = client
            .logs(service, instance, task, tail, &cursors.join(","))
            .await?;
        // New instances (no cursor yet) start from their last lines; keep known cursors.
        for c in &resp.cursors {
            if !next.cursors.iter().any(|n| n.instance == c.instance) {
                next.cursors.push(c.clone());
            }
        }
        resp = next;
    }
}

/// The same instance unavailable on the same node, whatever the reason's wording now.
fn same_gap(a: &LogGap, b: &LogGap) -> bool {
    a.instance == b.instance && a.node == b.node
}
