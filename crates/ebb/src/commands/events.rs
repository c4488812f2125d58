//! `ebb events [-f] [--json]`.

use crate::output::out;
use crate::output::timestamp;
use ebb_client::Client;
use ebb_core::Event;
use std::time::Duration;

/// How long one follow request waits on the server for new events.
const FOLLOW_WAIT: Duration = Duration::from_secs(25);

pub async fn events(client: &Client, follow: bool, json: bool, limit: usize) -> anyhow::Result<()> {
    let first = client.events(0, limit, Duration::ZERO).await?;
    if json && !follow {
        out!("{}", serde_json::to_string_pretty(&first.events)?);
        return Ok(());
    }
    first.events.iter().try_for_each(|e| print_event(e, json))?;
    if !follow {
        return Ok(());
    }
    let mut after = first.last_seq;
    loop {
        let next = client.events(after, limit, FOLLOW_WAIT).await?;
        next.events.iter().try_for_each(|e| print_event(e, json))?;
        after = next.last_seq.max(after);
    }
}

fn print_event(e: &Event, json: bool) -> anyhow::Result<()> {
    if json {
        out!("{}", serde_json::to_string(e)?);
        return Ok(());
    }
    let subject = match (&e.service, &e.instance) {
        (_, Some(i)) => i.clone(),
        (Some(s), None) => s.clone(),
        (None, None) => e.node.clone().unwrap_or_default(),
    };
    out!(
        "{}  {:<22} {:<24} {}",
        timestamp(e.time_ms),
        e.kind.as_str(),
        subject,
        e.message
    );
    Ok(())
}
