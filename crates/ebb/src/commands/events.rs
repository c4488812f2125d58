//! `ebb events [-f] [--json]`.

use crate::output::out;
use crate::output::timestamp;
use ebb_client::{Client, StreamItem};
use ebb_core::Event;
use std::time::Duration;

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
    follow_stream(client, first.last_seq, json).await
}

/// The first pause before opening a lost stream again; it doubles up to [`REOPEN_MAX`] while
/// the server stays away, and starts over once events flow.
const REOPEN_FIRST: Duration = Duration::from_millis(500);
const REOPEN_MAX: Duration = Duration::from_secs(10);

/// Prints the event stream from after `after`. A stream the server ends (it is stopping) or
/// that breaks is opened again from the last event printed, on the next server if there are
/// several, and a server that cannot be reached is tried again, saying so on stderr. A refusal
/// (bad request, token) ends the command. A server without the stream (older than this CLI) is
/// long-polled instead.
async fn follow_stream(client: &Client, mut after: u64, json: bool) -> anyhow::Result<()> {
    let mut pause = REOPEN_FIRST;
    loop {
        match client.event_stream(after).await {
            Ok(mut stream) => loop {
                match stream.next().await {
                    Ok(Some(StreamItem::Event(event))) => {
                        pause = REOPEN_FIRST;
                        after = after.max(event.seq);
                        print_event(&event, json)?;
                    }
                    Ok(Some(StreamItem::Unreadable { seq, reason })) => {
                        after = after.max(seq.unwrap_or(after));
                        eprintln!("warning: skipped an event this ebb cannot read ({reason}); is the server newer?");
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "event stream broke; opening it again");
                        break;
                    }
                }
            },
            Err(e) if matches!(e.status(), Some(404 | 405)) => {
                return follow_long_poll(client, after, json).await
            }
            Err(e) if refused(&e) => return Err(e.into()),
            Err(e) => eprintln!("warning: {e}; trying again in {pause:?}"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(REOPEN_MAX);
    }
}

/// An answer that trying again would not change: a bad request or a refused token.
fn refused(e: &ebb_client::ClientError) -> bool {
    matches!(e.status(), Some(400 | 401 | 403))
}

/// How long one long-poll waits on the server for new events.
const LONG_POLL_WAIT: Duration = Duration::from_secs(25);

/// `-f` against a server without `GET /v1/events/stream`.
async fn follow_long_poll(client: &Client, mut after: u64, json: bool) -> anyhow::Result<()> {
    let mut pause = REOPEN_FIRST;
    loop {
        match client.events(after, 1000, LONG_POLL_WAIT).await {
            Ok(next) => {
                pause = REOPEN_FIRST;
                next.events.iter().try_for_each(|e| print_event(e, json))?;
                after = next.last_seq.max(after);
            }
            Err(e) if refused(&e) => return Err(e.into()),
            Err(e) => {
                eprintln!("warning: {e}; trying again in {pause:?}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(REOPEN_MAX);
            }
        }
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
