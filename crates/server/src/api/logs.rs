//! `GET /v1/logs/{service}`: the last lines of each instance's log, or what was written after
//! the cursors a previous call returned (`ebb logs -f` polls with them).
//!
//! The agents hold the files. Each node's instances are read in one request over its agent's
//! log channel ([`crate::state::log_relay`]), every node at once, so logs read the same whether
//! an instance runs beside the server or on another machine; an instance whose node cannot
//! answer (down, cut off) is named in `unavailable` with the reason instead of holding the
//! answer up.

use super::{ApiError, ApiPath, ApiQuery, ApiResult};
use crate::state::keys;
use crate::state::log_relay::{RelayError, LOG_ANSWER_TIMEOUT};
use crate::Server;
use axum::extract::State;
use axum::Json;
use ebb_core::api::{LogCursor, LogGap, LogRead, LogsResponse, NodeState};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

const DEFAULT_TAIL: usize = 100;
const MAX_TAIL: usize = 10_000;

#[derive(Deserialize)]
pub struct LogsQuery {
    instance: Option<String>,
    /// A job's task index: its last (or running) attempt's log.
    task: Option<u32>,
    tail: Option<usize>,
    /// `id:offset,id:offset` from a previous answer.
    #[serde(default)]
    cursors: String,
    /// Only lines written in the last this many seconds (for instances without a cursor), as
    /// Kubernetes' `sinceSeconds`.
    since_secs: Option<u64>,
    /// Give each line the time it was written.
    #[serde(default)]
    timestamps: bool,
}

/// What to read of each instance, besides which instances.
#[derive(Debug, Clone, Default)]
struct ReadOptions {
    tail: usize,
    cursors: HashMap<String, u64>,
    within_ms: Option<u64>,
    stamps: bool,
}

impl ReadOptions {
    fn of(q: &LogsQuery) -> Result<ReadOptions, ApiError> {
        Ok(ReadOptions {
            tail: q.tail.unwrap_or(DEFAULT_TAIL).min(MAX_TAIL),
            cursors: parse_cursors(&q.cursors)?,
            within_ms: q.since_secs.map(|s| s.saturating_mul(1000)),
            stamps: q.timestamps,
        })
    }

    /// The read of `instances` on one node.
    fn read_of(&self, instances: Vec<String>) -> LogRead {
        LogRead {
            cursors: instances
                .iter()
                .filter_map(|id| {
                    self.cursors.get(id).map(|offset| LogCursor {
                        instance: id.clone(),
                        offset: *offset,
                    })
                })
                .collect(),
            instances,
            tail: self.tail,
            within_ms: self.within_ms,
            stamps: self.stamps,
        }
    }
}

/// An instance whose log to read, and its node when known.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    id: String,
    node: Option<String>,
}

pub async fn read(
    State(server): State<Server>,
    ApiPath(service): ApiPath<String>,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> ApiResult<LogsResponse> {
    let targets = targets(&server, &service, &q)?;
    let options = ReadOptions::of(&q)?;
    let resp = gather(&server, &targets, &options).await;
    if let Some(want) = &q.instance {
        // A placed instance whose log has no line yet is not "no instance".
        let unknown = targets.iter().all(|t| t.node.is_none());
        if unknown && resp.cursors.is_empty() && resp.unavailable.is_empty() {
            return Err(ApiError::not_found(format!(
                "no instance {want:?} of service {service:?}"
            )));
        }
    }
    Ok(Json(resp))
}

/// The instances of `service` (a service or a job) whose logs the query names.
fn targets(server: &Server, service: &str, q: &LogsQuery) -> Result<Vec<Target>, ApiError> {
    let (assignments, _) = keys::assignments(server.store())?;
    let mut targets: Vec<Target> = assignments
        .iter()
        .filter(|a| a.value.service == service)
        .filter(|a| {
            q.task
                .is_none_or(|i| a.value.task.as_ref().is_some_and(|t| t.index == i))
        })
        .map(|a| Target {
            id: a.value.id.clone(),
            node: Some(a.value.node.clone()),
        })
        .collect();
    if let Some(job) = server.store().get(&keys::job(service))? {
        targets = job_targets(
            server.store(),
            service,
            keys::decode(&job)?,
            q.task,
            targets,
        )?;
        if targets.is_empty() && q.instance.is_none() {
            let which = q.task.map_or(String::new(), |i| format!(" of task {i}"));
            return Err(ApiError::not_found(format!(
                "job {service:?} has no attempt{which} that ran yet"
            )));
        }
    } else if q.task.is_some() {
        return Err(ApiError::bad_request(format!(
            "--task is for jobs, and {service:?} is not a job"
        )));
    }
    if let Some(want) = &q.instance {
        // An instance no longer placed (stopped, moved away) may still have its log on a node.
        let known = targets.iter().find(|t| &t.id == want).cloned();
        targets = vec![known.unwrap_or(Target {
            id: want.clone(),
            node: None,
        })];
    } else if targets.is_empty() && keys::get_service(server.store(), service)?.is_none() {
        return Err(ApiError::not_found(format!("no service named {service:?}")));
    }
    Ok(targets)
}

/// Most ended tasks whose logs one call reads when no task is named: the latest ones.
const MAX_JOB_LOGS: usize = 20;

/// The attempts of job `name` to read: the running ones (`live`), and the last attempt of
/// each ended task of this run (of task `task` only, if given; else the latest few).
fn job_targets(
    store: &dyn ebb_store::KvStore,
    name: &str,
    job: ebb_core::JobRecord,
    task: Option<u32>,
    live: Vec<Target>,
) -> Result<Vec<Target>, ApiError> {
    let mut records: Vec<ebb_core::TaskRecord> = match task {
        Some(i) => store
            .get(&keys::task(name, i))?
            .map(|kv| keys::decode(&kv))
            .transpose()?
            .into_iter()
            .collect(),
        None => keys::task_records(store, &keys::job_tasks(name))?,
    };
    records.retain(|r| r.run == job.run);
    records.sort_by_key(|r| std::cmp::Reverse(r.ended_ms));
    let mut targets = live;
    for r in records.into_iter().take(MAX_JOB_LOGS) {
        if let Some(id) = r.instance {
            if !targets.iter().any(|t| t.id == id) {
                targets.push(Target { id, node: r.node });
            }
        }
    }
    Ok(targets)
}

/// Reads every target from its node's agent, all nodes at once, and puts the answers in the
/// targets' order. A target of unknown node is asked of every live node with a channel.
async fn gather(server: &Server, targets: &[Target], options: &ReadOptions) -> LogsResponse {
    let now = Instant::now();
    let liveness = Liveness::read(server, now);
    let everywhere: Vec<String> = server
        .log_relay()
        .connected_nodes(now)
        .into_iter()
        .filter(|node| liveness.down(node).is_none())
        .collect();
    let mut by_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in targets {
        let nodes = match &t.node {
            Some(node) => std::slice::from_ref(node),
            None => everywhere.as_slice(),
        };
        for node in nodes {
            by_node.entry(node.clone()).or_default().push(t.id.clone());
        }
    }
    // Why each node that could not give its logs did not.
    let mut failed: BTreeMap<String, String> = BTreeMap::new();
    let mut reads = tokio::task::JoinSet::new();
    for (node, instances) in by_node {
        // A node known to be down is not asked: it could only time out (its agent's poll
        // may still look open, a lost machine's connection never closes).
        if let Some(reason) = liveness.down(&node) {
            failed.insert(node, reason);
            continue;
        }
        let read = options.read_of(instances);
        let server = server.clone();
        reads.spawn(async move {
            let answer = server.log_relay().read(&node, read.clone()).await;
            (node, read.instances, answer)
        });
    }
    let mut answered: HashMap<String, LogsResponse> = HashMap::new();
    while let Some(joined) = reads.join_next().await {
        let Ok((node, asked, answer)) = joined else {
            continue;
        };
        match answer {
            Ok(answer) => file_answer(answer, &asked, &mut answered),
            Err(e) => {
                failed.insert(node.clone(), unreadable(&liveness, &node, &e));
            }
        }
    }
    let mut resp = LogsResponse::default();
    for t in targets {
        if let Some(mut part) = answered.remove(&t.id) {
            resp.lines.append(&mut part.lines);
            resp.cursors.append(&mut part.cursors);
            continue;
        }
        let gap = match &t.node {
            Some(node) => failed.get(node).map(|reason| LogGap {
                instance: t.id.clone(),
                node: Some(node.clone()),
                reason: reason.clone(),
            }),
            None => not_found(server, &t.id, &everywhere, &failed, &liveness),
        };
        resp.unavailable.extend(gap);
    }
    resp
}

/// Files a node's answer by instance: only the instances that node was asked about (a node
/// cannot speak for another's), and the first answer for each.
fn file_answer(answer: LogsResponse, asked: &[String], into: &mut HashMap<String, LogsResponse>) {
    let mine: Vec<&String> = asked
        .iter()
        .filter(|id| !into.contains_key(*id))
        .filter(|id| answer.cursors.iter().any(|c| &c.instance == *id))
        .collect();
    let mut parts: HashMap<String, LogsResponse> = HashMap::new();
    for cursor in answer.cursors {
        if mine.contains(&&cursor.instance) {
            let part = parts.entry(cursor.instance.clone()).or_default();
            if part.cursors.is_empty() {
                part.cursors.push(cursor);
            }
        }
    }
    for line in answer.lines {
        if let Some(part) = parts.get_mut(&line.instance) {
            part.lines.push(line);
        }
    }
    into.extend(parts);
}

/// For an instance of unknown node found on no node that answered: the nodes that could not
/// give their logs, which may hold it (an instance replaced after its node was lost, say).
/// None when every node answered: then it is nowhere.
fn not_found(
    server: &Server,
    id: &str,
    asked: &[String],
    failed: &BTreeMap<String, String>,
    liveness: &Liveness,
) -> Option<LogGap> {
    let (kvs, _) = server.store().list(keys::NODES).ok()?;
    let why: Vec<String> = kvs
        .iter()
        .filter_map(|kv| keys::decode::<ebb_core::api::NodeInfo>(kv).ok())
        .map(|info| info.name)
        .filter_map(|node| match failed.get(&node) {
            Some(reason) => Some(reason.clone()),
            None if asked.contains(&node) => None,
            None => Some(liveness.down(&node).unwrap_or_else(|| no_channel(&node))),
        })
        .collect();
    if why.is_empty() {
        return None;
    }
    Some(LogGap {
        instance: id.to_string(),
        node: None,
        reason: format!(
            "not found on the nodes that answered, and {} (it may be there)",
            why.join("; ")
        ),
    })
}

/// The nodes' states, read once per call.
struct Liveness(crate::state::nodes::NodeStates);

impl Liveness {
    fn read(server: &Server, now: Instant) -> Liveness {
        Liveness(
            server
                .nodes()
                .states(now, now.saturating_duration_since(server.liveness_since())),
        )
    }

    /// "node n2 is down (…)" when this server takes `node` for down (every server reads every
    /// node's liveness, so this is the cluster's view).
    fn down(&self, node: &str) -> Option<String> {
        if self.0.get(node) != NodeState::Down {
            return None;
        }
        let heard = match self.0.age(node) {
            Some(age) => format!("last heard {}s ago", age.as_secs()),
            None => "not heard from since this server started".to_string(),
        };
        Some(format!(
            "node {node} is down ({heard}); its logs can be read once it is back"
        ))
    }
}

fn no_channel(node: &str) -> String {
    format!(
        "node {node}'s agent keeps no log channel with this server (it is starting, is older \
         than this server, or was given other --server addresses)"
    )
}

/// Why node `node` could not give its logs, for a person.
fn unreadable(liveness: &Liveness, node: &str, error: &RelayError) -> String {
    match error {
        RelayError::NoChannel => liveness.down(node).unwrap_or_else(|| no_channel(node)),
        RelayError::Busy => {
            format!("too many log reads are waiting for node {node}; try again")
        }
        RelayError::NoAnswer => format!(
            "node {node}'s agent did not answer within {}s",
            LOG_ANSWER_TIMEOUT.as_secs()
        ),
    }
}

fn parse_cursors(text: &str) -> Result<HashMap<String, u64>, ApiError> {
    let mut map = HashMap::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (id, offset) = part
            .rsplit_once(':')
            .and_then(|(id, o)| Some((id, o.parse::<u64>().ok()?)))
            .ok_or_else(|| {
                ApiError::bad_request(format!("invalid cursor {part:?}: expected instance:offset"))
            })?;
        map.insert(id.to_string(), offset);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(parts: &[(&str, &str)]) -> LogsResponse {
        let mut resp = LogsResponse::default();
        for (id, line) in parts {
            resp.lines.push(ebb_core::api::LogLine {
                instance: id.to_string(),
                line: line.to_string(),
                at_ms: None,
            });
            if !resp.cursors.iter().any(|c| c.instance == *id) {
                resp.cursors.push(LogCursor {
                    instance: id.to_string(),
                    offset: 7,
                });
            }
        }
        resp
    }

    #[test]
    fn a_node_speaks_only_for_what_it_was_asked_and_the_first_answer_counts() {
        let mut into = HashMap::new();
        let asked = vec!["a".to_string()];
        file_answer(answer(&[("a", "mine"), ("b", "forged")]), &asked, &mut into);
        assert_eq!(into.len(), 1);
        assert_eq!(into["a"].lines[0].line, "mine");
        // Another node holding "a" too (asked everywhere): the first answer stays.
        file_answer(answer(&[("a", "second")]), &asked, &mut into);
        assert_eq!(into["a"].lines.len(), 1);
        assert_eq!(into["a"].cursors.len(), 1);
    }

    #[test]
    fn cursors_parse_and_bad_ones_are_refused() {
        let c = parse_cursors("web-1:10,web-2:0").unwrap();
        assert_eq!(c["web-1"], 10);
        assert!(parse_cursors("web-1").is_err());
        assert!(parse_cursors("web-1:x").is_err());
    }
}
