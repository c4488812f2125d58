//! `ebb drain`, `ebb undrain`, `ebb migrate` and `ebb restart INSTANCE`: ask the server for
//! the move, then follow it, one line per step of each moving instance.

use crate::output::out;
use ebb_client::Client;
use ebb_core::api::{MigrationView, MOVE_MOVED, MOVE_STOPPED};
use ebb_core::quantity::format_duration;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How often the moves are looked at: as `ebb deploy` follows a rollout.
const POLL: Duration = Duration::from_millis(200);
/// How long `ebb migrate` follows a move before giving up (the move itself goes on): as long
/// as `ebb stop` waits for instances to stop.
const MIGRATE_WAIT: Duration = Duration::from_secs(600);
/// How long `ebb drain` waits past the deadline for the evicted instances to stop: well past
/// the longest `drain` plus stop `grace` a service is likely to have.
const DRAIN_GRACE: Duration = Duration::from_secs(300);

/// `ebb drain NODE [--deadline D] [--detach]`
pub async fn drain(
    client: &Client,
    node: &str,
    deadline: Duration,
    detach: bool,
    json: bool,
) -> anyhow::Result<()> {
    let view = client.drain(node, Some(&format_duration(deadline))).await?;
    if json {
        out!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(());
    }
    out!(
        "node {node}: draining, {} instances to move one at a time (deadline {})",
        view.instances,
        format_duration(deadline)
    );
    if detach {
        return Ok(());
    }
    let start = Instant::now();
    let mut follow = Follow::default();
    loop {
        let nodes = client.nodes().await?;
        let Some(n) = nodes.iter().find(|n| n.name == node) else {
            anyhow::bail!("node {node} is gone from the server");
        };
        let Some(drain) = &n.drain else {
            anyhow::bail!("the drain of node {node} was lifted (`ebb undrain`) before it was over");
        };
        let moves = client.migrations().await?;
        follow.update(
            moves
                .into_iter()
                .filter(|m| m.from == node && m.since_ms >= drain.since_ms),
        );
        if drain.done_ms.is_some() {
            out!(
                "node {node} drained in {:.1}s: {} instances moved; `ebb undrain {node}` puts it back in service",
                start.elapsed().as_secs_f64(),
                follow.moved
            );
            return Ok(());
        }
        if start.elapsed() > deadline + DRAIN_GRACE {
            anyhow::bail!(
                "node {node} still holds {} instances {} after the drain deadline; see `ebb ps` and `ebb events`",
                n.instances,
                format_duration(DRAIN_GRACE)
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `ebb undrain NODE`
pub async fn undrain(client: &Client, node: &str, json: bool) -> anyhow::Result<()> {
    let before = client.nodes().await?;
    let was = before
        .iter()
        .find(|n| n.name == node)
        .is_some_and(|n| n.drain.is_some());
    let view = client.undrain(node).await?;
    if json {
        out!("{}", serde_json::to_string_pretty(&view)?);
    } else if was {
        out!("node {node}: back in service ({})", view.state.as_str());
    } else {
        out!("node {node}: was not draining ({})", view.state.as_str());
    }
    Ok(())
}

/// `ebb migrate INSTANCE [--to NODE] [--detach]`
pub async fn migrate(
    client: &Client,
    instance: &str,
    to: Option<&str>,
    detach: bool,
    json: bool,
) -> anyhow::Result<()> {
    let view = client.migrate(instance, to).await?;
    if json {
        out!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(());
    }
    out!(
        "{instance} ({}): moving from node {} to {}",
        view.service,
        view.from,
        to.map_or("another node".to_string(), |t| format!("node {t}"))
    );
    if detach {
        return Ok(());
    }
    follow_move(client, view, MIGRATE_WAIT).await
}

/// Follows the move of one instance until it ends, a line per step, for at most `limit`.
pub async fn follow_move(
    client: &Client,
    view: MigrationView,
    limit: Duration,
) -> anyhow::Result<()> {
    let instance = view.instance.clone();
    let instance = instance.as_str();
    let start = Instant::now();
    let mut follow = Follow::default();
    follow.update([view]);
    loop {
        let moves = client.migrations().await?;
        let mine: Vec<MigrationView> = moves
            .into_iter()
            .filter(|m| m.instance == instance)
            .collect();
        let listed = !mine.is_empty();
        follow.update(mine);
        if follow.ended(instance, listed) {
            out!("done in {:.1}s", start.elapsed().as_secs_f64());
            return Ok(());
        }
        if start.elapsed() > limit {
            anyhow::bail!(
                "{instance} is still moving after {}; `ebb events` says why",
                format_duration(limit)
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The phases of a move that ended.
const ENDED: [&str; 2] = [MOVE_MOVED, MOVE_STOPPED];

/// Follows moves: prints a line when one changes phase, and one when it ends.
#[derive(Default)]
struct Follow {
    seen: BTreeMap<String, MigrationView>,
    moved: usize,
}

impl Follow {
    fn update(&mut self, views: impl IntoIterator<Item = MigrationView>) {
        for m in views {
            let before = self.seen.get(&m.instance);
            if before.is_some_and(|b| ENDED.contains(&b.phase.as_str())) {
                continue;
            }
            if before.map(|b| (&b.phase, &b.replacement)) != Some((&m.phase, &m.replacement)) {
                out!("  {}", line(&m));
                self.moved += usize::from(m.phase == MOVE_MOVED);
            }
            self.seen.insert(m.instance.clone(), m);
        }
    }

    /// Whether the move of `instance` ended (or is no longer known: the server restarted).
    fn ended(&self, instance: &str, listed: bool) -> bool {
        match self.seen.get(instance) {
            Some(m) => ENDED.contains(&m.phase.as_str()) || !listed,
            None => !listed,
        }
    }
}

fn line(m: &MigrationView) -> String {
    match (m.phase.as_str(), &m.replacement, &m.replacement_node) {
        (MOVE_MOVED, Some(r), Some(node)) => {
            format!("{} ({}): moved → {r} on {node}", m.instance, m.service)
        }
        (phase, Some(r), Some(node)) => {
            format!(
                "{} ({}): {phase} (replacement {r} on {node})",
                m.instance, m.service
            )
        }
        (phase, _, _) => format!("{} ({}): {phase}", m.instance, m.service),
    }
}
