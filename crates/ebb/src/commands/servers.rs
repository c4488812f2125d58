//! `ebb servers`: one row per server of the control plane.

use crate::output::out;
use crate::output::table;
use ebb_client::Client;

pub async fn servers(client: &Client, json: bool) -> anyhow::Result<()> {
    let servers = client.servers().await?;
    if json {
        out!("{}", serde_json::to_string_pretty(&servers)?);
        return Ok(());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let rows: Vec<Vec<String>> = servers
        .iter()
        .map(|s| {
            let ago = now.saturating_sub(s.last_seen_ms) / 1000;
            vec![
                s.name.clone(),
                s.api.clone(),
                s.router.clone(),
                if s.leader { "yes" } else { "no" }.to_string(),
                if ago == 0 {
                    "now".to_string()
                } else {
                    format!("{ago}s ago")
                },
            ]
        })
        .collect();
    table(&["NAME", "API", "ROUTER", "LEADER", "LAST SEEN"], &rows);
    Ok(())
}
