//! `ebb logs SERVICE|JOB [--instance ID] [--task N] [-f] [--tail N] [--since D] [--timestamps]`.

use crate::cli::LogsArgs;
use crate::output::{out, timestamp_millis};
use ebb_client::{Client, LogsQuery};
use ebb_core::api::{LogGap, LogLine};
use std::time::Duration;

/// How often `-f` asks for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(500);

pub async fn logs(client: &Client, a: &LogsArgs) -> anyhow::Result<()> {
    let query = LogsQuery {
        instance: a.instance.as_deref(),
        task: a.task,
        tail: a.tail,
        since: a.since,
        // With --since too: a line without a time then tells that a server or agent older than
        // this ebb did not apply it.
        timestamps: a.timestamps || a.since.is_some(),
        cursors: "",
    };
    let mut warned = false;
    let mut resp = client.logs(&a.service, &query).await?;
    let mut said: Vec<LogGap> = Vec::new();
    let prefix = a.instance.is_none() && a.task.is_none();
    loop {
        if a.timestamps {
            // Several instances' lines in the order they were written (each's own order kept).
            resp.lines.sort_by_key(|l| l.at_ms);
        }
        for l in &resp.lines {
            print_line(l, a.json, prefix, a.timestamps);
        }
        let undated = resp.lines.iter().filter(|l| l.at_ms.is_none()).count();
        if query.timestamps && undated > 0 && !warned {
            warned = true;
            eprintln!(
                "ebb: {undated} line(s) carry no time: the server or their node's agent is older \
                 than this ebb, so --since and --timestamps did not apply to them"
            );
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
        if !a.follow {
            if resp.cursors.is_empty() && !resp.unavailable.is_empty() {
                anyhow::bail!("no log of {} could be read", a.service);
            }
            return Ok(());
        }
        tokio::time::sleep(FOLLOW_POLL).await;
        let cursors: Vec<String> = resp
            .cursors
            .iter()
            .map(|c| format!("{}:{}", c.instance, c.offset))
            .collect();
        let cursors = cursors.join(",");
        let next_query = LogsQuery {
            cursors: &cursors,
            ..query.clone()
        };
        let mut next = client.logs(&a.service, &next_query).await?;
        // New instances (no cursor yet) start from their last lines; keep known cursors.
        for c in &resp.cursors {
            if !next.cursors.iter().any(|n| n.instance == c.instance) {
                next.cursors.push(c.clone());
            }
        }
        resp = next;
    }
}

/// One line: its text, after its instance (`prefix`) and its time when asked (`stamps`) and it
/// has one; or a JSON object.
fn print_line(l: &LogLine, json: bool, prefix: bool, stamps: bool) {
    let at = l.at_ms.filter(|_| stamps).map(timestamp_millis);
    if json {
        let mut line = serde_json::json!({"instance": l.instance, "line": l.line});
        if let Some(at) = at {
            line["at"] = at.into();
        }
        out!("{line}");
        return;
    }
    let who = if prefix {
        format!("{} | ", l.instance)
    } else {
        String::new()
    };
    match at {
        Some(at) => out!("{who}{at} {}", l.line),
        None => out!("{who}{}", l.line),
    }
}

/// The same instance unavailable on the same node, whatever the reason's wording now.
fn same_gap(a: &LogGap, b: &LogGap) -> bool {
    a.instance == b.instance && a.node == b.node
}
