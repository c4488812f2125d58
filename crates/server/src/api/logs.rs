//! `GET /v1/logs/{service}`: the last lines of each instance's log, or what was written after
//! the cursors a previous call returned (`ebb logs -f` polls with them).

use super::{ApiError, ApiPath, ApiQuery, ApiResult};
use crate::state::keys;
use crate::Server;
use axum::extract::State;
use axum::Json;
use ebb_core::api::{LogCursor, LogLine, LogsResponse};
use serde::Deserialize;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path as FsPath, PathBuf};

const DEFAULT_TAIL: usize = 100;
const MAX_TAIL: usize = 10_000;
/// Most bytes read per instance per call when following, so one call stays cheap.
const MAX_FOLLOW_BYTES: u64 = 1 << 20;
/// Most bytes read from the end of one file for `--tail`.
const MAX_TAIL_BYTES: u64 = 8 << 20;
/// Chunk read backwards from the end of a file when looking for the last lines.
const TAIL_CHUNK: u64 = 64 * 1024;

#[derive(Deserialize)]
pub struct LogsQuery {
    instance: Option<String>,
    /// A job's task index: its last (or running) attempt's log.
    task: Option<u32>,
    tail: Option<usize>,
    /// `id:offset,id:offset` from a previous answer.
    #[serde(default)]
    cursors: String,
}

pub async fn read(
    State(server): State<Server>,
    ApiPath(service): ApiPath<String>,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> ApiResult<LogsResponse> {
    let Some(source) = server.log_source().cloned() else {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_IMPLEMENTED,
            "this server has no local agent, so it holds no instance logs",
        ));
    };
    let (assignments, _) = keys::assignments(server.store())?;
    let mut ids: Vec<String> = assignments
        .iter()
        .filter(|a| a.value.service == service)
        .filter(|a| {
            q.task
                .is_none_or(|i| a.value.task.as_ref().is_some_and(|t| t.index == i))
        })
        .map(|a| a.value.id.clone())
        .collect();
    if let Some(job) = server.store().get(&keys::job(&service))? {
        ids = job_log_ids(server.store(), &service, keys::decode(&job)?, q.task, ids)?;
        if ids.is_empty() && q.instance.is_none() {
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
        if !ids.contains(want) && source.log_files(want).is_empty() {
            return Err(ApiError::not_found(format!(
                "no instance {want:?} of service {service:?}"
            )));
        }
        ids = vec![want.clone()];
    } else if ids.is_empty() && keys::get_service(server.store(), &service)?.is_none() {
        return Err(ApiError::not_found(format!("no service named {service:?}")));
    }
    let cursors = parse_cursors(&q.cursors)?;
    let tail = q.tail.unwrap_or(DEFAULT_TAIL).min(MAX_TAIL);
    let mut resp = LogsResponse {
        lines: Vec::new(),
        cursors: Vec::new(),
    };
    for id in ids {
        let files = source.log_files(&id);
        let (lines, offset) = match cursors.get(&id) {
            Some(offset) => follow(files.last(), *offset),
            None => last_lines(&files, tail),
        };
        resp.lines.extend(lines.into_iter().map(|line| LogLine {
            instance: id.clone(),
            line,
        }));
        resp.cursors.push(LogCursor {
            instance: id,
            offset,
        });
    }
    Ok(Json(resp))
}

/// Most ended tasks whose logs one call reads when no task is named: the latest ones.
const MAX_JOB_LOGS: usize = 20;

/// The attempts of job `name` to read: the running ones (`live`), and the last attempt of
/// each ended task of this run (of task `task` only, if given; else the latest few).
fn job_log_ids(
    store: &dyn ebb_store::KvStore,
    name: &str,
    job: ebb_core::JobRecord,
    task: Option<u32>,
    live: Vec<String>,
) -> Result<Vec<String>, ApiError> {
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
    let mut ids = live;
    for r in records.into_iter().take(MAX_JOB_LOGS) {
        if let Some(id) = r.instance {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    Ok(ids)
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

/// Complete lines written to `file` after `offset`, and the offset after them. A file shorter
/// than the offset was rotated: read it from the start.
fn follow(file: Option<&PathBuf>, offset: u64) -> (Vec<String>, u64) {
    let Some(path) = file else {
        return (Vec::new(), offset);
    };
    let Ok(mut f) = File::open(path) else {
        return (Vec::new(), offset);
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let start = if len < offset { 0 } else { offset };
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(start)).is_err()
        || f.take(MAX_FOLLOW_BYTES).read_to_end(&mut buf).is_err()
    {
        return (Vec::new(), offset);
    }
    let complete = match buf.iter().rposition(|b| *b == b'\n') {
        Some(i) => i + 1,
        // A line longer than one read: hand it out in pieces rather than stall on it.
        None if buf.len() as u64 == MAX_FOLLOW_BYTES => buf.len(),
        None => 0,
    };
    let lines = split_lines(&buf[..complete]);
    (lines, start + complete as u64)
}

/// The last `n` lines over the files (oldest first), and the length of the newest file.
fn last_lines(files: &[PathBuf], n: usize) -> (Vec<String>, u64) {
    let end = files
        .last()
        .and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len());
    let mut lines: Vec<String> = Vec::new();
    for path in files.iter().rev() {
        if lines.len() >= n {
            break;
        }
        let mut older = tail_of_file(path, n - lines.len());
        older.append(&mut lines);
        lines = older;
    }
    (lines, end)
}

/// The last `n` lines of one file, reading backwards in chunks so big files cost little; at
/// most [`MAX_TAIL_BYTES`] are read, so a file without newlines cannot make a call expensive.
fn tail_of_file(path: &FsPath, n: usize) -> Vec<String> {
    let Ok(mut f) = File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let floor = len.saturating_sub(MAX_TAIL_BYTES);
    let mut start = len;
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut newlines = 0;
    while start > floor && newlines <= n {
        let from = start.saturating_sub(TAIL_CHUNK).max(floor);
        let mut chunk = vec![0u8; (start - from) as usize];
        if f.seek(SeekFrom::Start(from)).is_err() || f.read_exact(&mut chunk).is_err() {
            break;
        }
        newlines += chunk.iter().filter(|b| **b == b'\n').count();
        chunks.push(chunk);
        start = from;
    }
    let buf: Vec<u8> = chunks.into_iter().rev().flatten().collect();
    let lines = split_lines(&buf);
    let skip = lines.len().saturating_sub(n);
    lines.into_iter().skip(skip).collect()
}

fn split_lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn last_lines_spans_rotated_files_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("a.log.1");
        let cur = dir.path().join("a.log");
        std::fs::write(&old, "one\ntwo\n").unwrap();
        std::fs::write(&cur, "three\nfour\n").unwrap();
        let (lines, end) = last_lines(&[old, cur], 3);
        assert_eq!(lines, ["two", "three", "four"]);
        assert_eq!(end, 11);
    }

    #[test]
    fn follow_returns_only_complete_new_lines_and_restarts_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, "one\ntw").unwrap();
        let (lines, off) = follow(Some(&path), 0);
        assert_eq!((lines, off), (vec!["one".to_string()], 4));
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"o\n")
            .unwrap();
        assert_eq!(follow(Some(&path), off).0, ["two"]);
        std::fs::write(&path, "x\n").unwrap();
        assert_eq!(follow(Some(&path), 7).0, ["x"]);
    }

    #[test]
    fn a_line_longer_than_one_read_is_handed_out_in_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, vec![b'x'; MAX_FOLLOW_BYTES as usize + 10]).unwrap();
        let (lines, off) = follow(Some(&path), 0);
        assert_eq!(lines.len(), 1);
        assert_eq!(off, MAX_FOLLOW_BYTES);
    }

    #[test]
    fn tail_of_a_file_without_newlines_reads_a_bounded_amount() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, vec![b'x'; MAX_TAIL_BYTES as usize * 2]).unwrap();
        let lines = tail_of_file(&path, 5);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].len() as u64, MAX_TAIL_BYTES);
    }

    #[test]
    fn cursors_parse_and_bad_ones_are_refused() {
        let c = parse_cursors("web-1:10,web-2:0").unwrap();
        assert_eq!(c["web-1"], 10);
        assert!(parse_cursors("web-1").is_err());
        assert!(parse_cursors("web-1:x").is_err());
    }
}
