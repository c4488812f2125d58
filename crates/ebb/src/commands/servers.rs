//! `ebb servers`: one row per server of the control plane, with those the server asked saw
//! leave.

use crate::output::out;
use crate::output::{age, table};
use ebb_client::Client;

pub async fn servers(client: &Client, json: bool) -> anyhow::Result<()> {
    let servers = client.servers().await?;
    if json {
        out!("{}", serde_json::to_string_pretty(&servers)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = servers
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.api.clone(),
                s.router.clone(),
                if s.leader { "yes" } else { "no" }.to_string(),
                if s.alive {
                    "now".to_string()
                } else {
                    format!("{} ago, gone", age(s.last_seen_ms))
                },
            ]
        })
        .collect();
    table(&["NAME", "API", "ROUTER", "LEADER", "LAST SEEN"], &rows);
    Ok(())
}
