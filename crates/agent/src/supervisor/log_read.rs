//! Reading instance logs for the server (`ebb logs`): the last lines of each instance, or what
//! was written after a cursor. The agent reads its own files and sends the lines over its log
//! channel (`crate::log_channel`), so logs read the same whether the node is local or remote.
//!
//! Every read is bounded: one answer carries at most [`MAX_ANSWER_BYTES`] of log text shared
//! among its instances, so a huge `--tail`, a file without newlines or many instances cannot
//! make an answer (or the server holding it) large.

use ebb_core::api::{LogCursor, LogLine, LogRead, LogsResponse};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Most lines one read returns per instance (`--tail`).
pub const MAX_TAIL: usize = 10_000;
/// Most bytes of log text in one answer, over all its instances: well under the server's limit
/// for an answer (JSON may add escapes), and more than 10,000 lines of a usual log.
pub const MAX_ANSWER_BYTES: u64 = 8 << 20;
/// Each instance's share is at least this, however many instances one read names.
const MIN_SHARE_BYTES: u64 = 64 * 1024;
/// Most bytes read per instance per follow call, so one call stays cheap.
const MAX_FOLLOW_BYTES: u64 = 1 << 20;
/// Chunk read backwards from the end of a file when looking for the last lines.
const TAIL_CHUNK: u64 = 64 * 1024;

/// Reads `read` from the files `files_of` gives per instance (rotated oldest first, then the
/// current one). An instance without files gets no lines and no cursor.
pub fn read(read: &LogRead, files_of: impl Fn(&str) -> Vec<PathBuf>) -> LogsResponse {
    let share = (MAX_ANSWER_BYTES / read.instances.len().max(1) as u64).max(MIN_SHARE_BYTES);
    let tail = read.tail.min(MAX_TAIL);
    let mut resp = LogsResponse::default();
    for id in &read.instances {
        let files = files_of(id);
        if files.is_empty() {
            continue;
        }
        let cursor = read.cursors.iter().find(|c| &c.instance == id);
        let (lines, offset) = match cursor {
            Some(c) => follow(files.last(), c.offset, share.min(MAX_FOLLOW_BYTES)),
            None => last_lines(&files, tail, share),
        };
        resp.lines.extend(lines.into_iter().map(|line| LogLine {
            instance: id.clone(),
            line,
        }));
        resp.cursors.push(LogCursor {
            instance: id.clone(),
            offset,
        });
    }
    resp
}

/// Complete lines written to `file` after `offset` (at most `max` bytes), and the offset after
/// them. A file shorter than the offset was rotated: read it from the start.
fn follow(file: Option<&PathBuf>, offset: u64, max: u64) -> (Vec<String>, u64) {
    let Some(path) = file else {
        return (Vec::new(), offset);
    };
    let Ok(mut f) = File::open(path) else {
        return (Vec::new(), offset);
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let start = if len < offset { 0 } else { offset };
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(start)).is_err() || f.take(max).read_to_end(&mut buf).is_err() {
        return (Vec::new(), offset);
    }
    let complete = match buf.iter().rposition(|b| *b == b'\n') {
        Some(i) => i + 1,
        // A line longer than one read: hand it out in pieces rather than stall on it.
        None if buf.len() as u64 == max => buf.len(),
        None => 0,
    };
    let lines = split_lines(&buf[..complete]);
    (lines, start + complete as u64)
}

/// The last `n` lines over the files (oldest first, at most `budget` bytes read), and the
/// length of the newest file.
fn last_lines(files: &[PathBuf], n: usize, budget: u64) -> (Vec<String>, u64) {
    let end = files
        .last()
        .and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len());
    let mut lines: Vec<String> = Vec::new();
    let mut left = budget;
    for path in files.iter().rev() {
        if lines.len() >= n || left == 0 {
            break;
        }
        let (mut older, read) = tail_of_file(path, n - lines.len(), left);
        left = left.saturating_sub(read);
        older.append(&mut lines);
        lines = older;
    }
    (lines, end)
}

/// The last `n` lines of one file, reading backwards in chunks so big files cost little; at
/// most `max` bytes are read, so a file without newlines cannot make a call expensive. Also
/// says how many bytes it read.
fn tail_of_file(path: &Path, n: usize, max: u64) -> (Vec<String>, u64) {
    let Ok(mut f) = File::open(path) else {
        return (Vec::new(), 0);
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let floor = len.saturating_sub(max);
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
    (lines.into_iter().skip(skip).collect(), len - start)
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
        let (lines, end) = last_lines(&[old, cur], 3, MAX_ANSWER_BYTES);
        assert_eq!(lines, ["two", "three", "four"]);
        assert_eq!(end, 11);
    }

    #[test]
    fn follow_returns_only_complete_new_lines_and_restarts_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, "one\ntw").unwrap();
        let (lines, off) = follow(Some(&path), 0, MAX_FOLLOW_BYTES);
        assert_eq!((lines, off), (vec!["one".to_string()], 4));
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"o\n")
            .unwrap();
        assert_eq!(follow(Some(&path), off, MAX_FOLLOW_BYTES).0, ["two"]);
        std::fs::write(&path, "x\n").unwrap();
        assert_eq!(follow(Some(&path), 7, MAX_FOLLOW_BYTES).0, ["x"]);
    }

    #[test]
    fn a_line_longer_than_one_read_is_handed_out_in_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, vec![b'x'; MAX_FOLLOW_BYTES as usize + 10]).unwrap();
        let (lines, off) = follow(Some(&path), 0, MAX_FOLLOW_BYTES);
        assert_eq!(lines.len(), 1);
        assert_eq!(off, MAX_FOLLOW_BYTES);
    }

    #[test]
    fn one_answer_carries_a_bounded_amount_of_text() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for i in 0..3 {
            let path = dir.path().join(format!("{i}.log"));
            std::fs::write(&path, vec![b'x'; MAX_ANSWER_BYTES as usize]).unwrap();
            files.push(path);
        }
        let req = LogRead {
            instances: vec!["0".into(), "1".into(), "2".into()],
            tail: MAX_TAIL,
            cursors: Vec::new(),
        };
        let resp = read(&req, |id| vec![files[id.parse::<usize>().unwrap()].clone()]);
        let bytes: usize = resp.lines.iter().map(|l| l.line.len()).sum();
        assert!(bytes as u64 <= MAX_ANSWER_BYTES, "{bytes}");
        assert_eq!(resp.cursors.len(), 3);
    }

    #[test]
    fn instances_without_files_get_nothing_and_cursors_resume() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, "a\nb\nc\n").unwrap();
        let files_of = |id: &str| {
            if id == "a" {
                vec![path.clone()]
            } else {
                Vec::new()
            }
        };
        let mut req = LogRead {
            instances: vec!["a".into(), "gone".into()],
            tail: 2,
            cursors: Vec::new(),
        };
        let resp = read(&req, files_of);
        let lines: Vec<&str> = resp.lines.iter().map(|l| l.line.as_str()).collect();
        assert_eq!(lines, ["b", "c"]);
        assert_eq!(resp.cursors.len(), 1);
        req.cursors = resp.cursors;
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"d\n")
            .unwrap();
        let next = read(&req, files_of);
        assert_eq!(next.lines.len(), 1);
        assert_eq!(next.lines[0].line, "d");
    }
}
