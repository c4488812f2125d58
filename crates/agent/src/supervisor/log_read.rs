//! Reading instance logs for the server (`ebb logs`): the last lines of each instance (only
//! those written since a time, if asked), or what was written after a cursor; with each line's
//! time when asked ([`super::log_stamps`]). The agent reads its own files and sends the lines over its log
//! channel (`crate::log_channel`), so logs read the same whether the node is local or remote.
//!
//! Every read is bounded by what its answer costs as JSON, not by its text alone: each line is
//! counted as if every byte needed a six-byte escape, plus its instance id and the JSON around
//! it ([`json_cost`]), against [`MAX_ANSWER_COST`] shared equally among the instances read. So
//! a huge `--tail`, blank lines, control bytes, a file without newlines or many instances
//! cannot make an answer larger than the server accepts (`MAX_LOG_ANSWER_BYTES`, 32 MiB).

use super::log_stamps::Stamps;
use ebb_core::api::{LogCursor, LogLine, LogRead, LogsResponse};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Most lines one read returns per instance (`--tail`).
pub const MAX_TAIL: usize = 10_000;
/// Most an answer may cost as JSON ([`json_cost`]), over all its instances: under the server's
/// 32 MiB limit for an answer with room for the envelope, and 4 MiB of text (10,000 lines of a
/// usual log) in the worst case.
pub const MAX_ANSWER_COST: u64 = 24 << 20;
/// JSON around one line beside its text and instance id: `{"instance":"","line":""},`.
const LINE_OVERHEAD: u64 = 32;
/// A line's time in JSON: `,"at_ms":` and 20 digits at most.
const STAMP_OVERHEAD: u64 = 29;
/// Most bytes read per instance per follow call, so one call stays cheap.
const MAX_FOLLOW_BYTES: u64 = 1 << 20;
/// The smallest read per instance: a line longer than this is handed out in pieces.
const MIN_READ_BYTES: u64 = 256;
/// Chunk read backwards from the end of a file when looking for the last lines.
const TAIL_CHUNK: u64 = 64 * 1024;

/// Reads `read` from the files `files_of` gives per instance (rotated oldest first, then the
/// current one), `now_ms` being the agent's clock (for `within_ms`). An instance without files
/// gets no lines and no cursor.
pub fn read(read: &LogRead, files_of: impl Fn(&str) -> Vec<PathBuf>, now_ms: u64) -> LogsResponse {
    let since_ms = read.within_ms.map(|w| now_ms.saturating_sub(w));
    let share = MAX_ANSWER_COST / read.instances.len().max(1) as u64;
    let tail = read.tail.min(MAX_TAIL);
    let mut resp = LogsResponse::default();
    for id in &read.instances {
        let files = files_of(id);
        if files.is_empty() {
            continue;
        }
        let cursor = read.cursors.iter().find(|c| &c.instance == id);
        let budget = Budget {
            cost: share,
            per_line: id.len() as u64 + if read.stamps { STAMP_OVERHEAD } else { 0 },
        };
        let (lines, offset) = match cursor {
            Some(c) => follow(&files, c.offset, budget),
            None => last_lines(&files, tail, since_ms, budget),
        };
        let times = if read.stamps {
            times_of(&files, &lines)
        } else {
            vec![None; lines.len()]
        };
        resp.lines
            .extend(lines.into_iter().zip(times).map(|(l, at_ms)| LogLine {
                instance: id.clone(),
                line: l.text,
                at_ms,
            }));
        resp.cursors.push(LogCursor {
            instance: id.clone(),
            offset,
        });
    }
    resp
}

/// What one instance's lines may cost in an answer.
#[derive(Debug, Clone, Copy)]
struct Budget {
    /// In [`json_cost`] units.
    cost: u64,
    /// What every line costs besides its text and the JSON around it: the instance id's
    /// length, and its time when asked.
    per_line: u64,
}

/// A line read, and where it is: the file (index in the instance's files) and the offset it
/// starts at, so its time can be looked up.
#[derive(Debug, Clone, PartialEq)]
struct Line {
    file: usize,
    offset: u64,
    text: String,
}

/// Each line's time, from its file's stamps (one search and a walk per file).
fn times_of(files: &[PathBuf], lines: &[Line]) -> Vec<Option<u64>> {
    let mut out = Vec::with_capacity(lines.len());
    for group in lines.chunk_by(|a, b| a.file == b.file) {
        let stamps = files.get(group[0].file).map(|f| Stamps::open(f));
        let offsets: Vec<u64> = group.iter().map(|l| l.offset).collect();
        match stamps {
            Some(s) => out.extend(s.times(&offsets).into_iter().map(Some)),
            None => out.extend(group.iter().map(|_| None)),
        }
    }
    out
}

impl Budget {
    /// Most raw bytes worth reading: each may cost six.
    fn read_bytes(self, cap: u64) -> u64 {
        (self.cost / 6).clamp(MIN_READ_BYTES, cap)
    }
}

/// What a line of `raw_len` bytes can cost in the answer's JSON at most: six bytes per byte (a
/// control byte's `\u00XX`), what each line carries beside it (`per_line`: its instance id,
/// its time) and the JSON around it.
pub fn json_cost(raw_len: u64, per_line: u64) -> u64 {
    6 * raw_len + per_line + LINE_OVERHEAD
}

/// Complete lines written to the newest of `files` after `offset` (as many as `budget`
/// allows, at least one), and the offset after them. A file shorter than the offset was
/// rotated: read it from the start.
fn follow(files: &[PathBuf], offset: u64, budget: Budget) -> (Vec<Line>, u64) {
    let max = budget.read_bytes(MAX_FOLLOW_BYTES);
    let Some(path) = files.last() else {
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
    // The first lines that fit the budget (the first always: it is at most `max` bytes).
    let mut taken = 0;
    let mut cost = 0;
    let mut lines = Vec::new();
    for raw in buf[..complete].split_inclusive(|b| *b == b'\n') {
        cost += json_cost(raw.len() as u64, budget.per_line);
        if cost > budget.cost && !lines.is_empty() {
            break;
        }
        lines.push(Line {
            file: files.len() - 1,
            offset: start + taken as u64,
            text: text_of(raw),
        });
        taken += raw.len();
    }
    (lines, start + taken as u64)
}

/// The last `n` lines over the files (oldest first, as many as `budget` allows; only those
/// written at or after `since_ms`, when given), and the length of the newest file.
fn last_lines(
    files: &[PathBuf],
    n: usize,
    since_ms: Option<u64>,
    budget: Budget,
) -> (Vec<Line>, u64) {
    let end = files
        .last()
        .and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len());
    let mut lines: Vec<Line> = Vec::new();
    let mut left = budget.read_bytes(u64::MAX);
    for (index, path) in files.iter().enumerate().rev() {
        if lines.len() >= n || left == 0 {
            break;
        }
        let from = match since_ms.map(|since| Stamps::open(path).start_since(since)) {
            None => 0,
            // This file, and so every older one, was last written before `since`.
            Some(None) => break,
            Some(Some(from)) => from,
        };
        let (mut older, read) = tail_of_file(path, index, n - lines.len(), from, left);
        left = left.saturating_sub(read);
        older.append(&mut lines);
        lines = older;
        if from > 0 {
            // `since` falls inside this file: the older files hold only older lines.
            break;
        }
    }
    // The newest lines that fit the budget.
    let mut cost = 0;
    let keep = lines
        .iter()
        .rev()
        .take_while(|l| {
            cost += json_cost(l.text.len() as u64, budget.per_line);
            cost <= budget.cost
        })
        .count();
    lines.drain(..lines.len() - keep);
    (lines, end)
}

/// The last `n` lines of one file (the `index`-th of its instance) that start at or after
/// `from`, reading backwards in chunks so big files cost little; at most `max` bytes are read,
/// so a file without newlines cannot make a call expensive. Also says how many bytes it read.
fn tail_of_file(path: &Path, index: usize, n: usize, from: u64, max: u64) -> (Vec<Line>, u64) {
    let Ok(mut f) = File::open(path) else {
        return (Vec::new(), 0);
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let floor = len.saturating_sub(max).max(from.min(len));
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
    let mut lines = split_lines(&buf, index, start);
    // Cut at `from` inside a line: that line began before it.
    if start == from && from > 0 && !ends_a_line(&f, from - 1) && !lines.is_empty() {
        lines.remove(0);
    }
    let skip = lines.len().saturating_sub(n);
    (lines.into_iter().skip(skip).collect(), len - start)
}

/// Whether the byte at `at` is a newline.
fn ends_a_line(f: &File, at: u64) -> bool {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).is_ok() && b[0] == b'\n'
}

/// The lines of `bytes`, read from offset `start` of file `file`.
fn split_lines(bytes: &[u8], file: usize, start: u64) -> Vec<Line> {
    let mut offset = start;
    bytes
        .split_inclusive(|b| *b == b'\n')
        .map(|raw| {
            let line = Line {
                file,
                offset,
                text: text_of(raw),
            };
            offset += raw.len() as u64;
            line
        })
        .collect()
}

/// One line's text without its line ending (invalid UTF-8 replaced).
fn text_of(raw: &[u8]) -> String {
    let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    String::from_utf8_lossy(raw).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn texts(lines: &[Line]) -> Vec<&str> {
        lines.iter().map(|l| l.text.as_str()).collect()
    }

    const FULL: Budget = Budget {
        cost: MAX_ANSWER_COST,
        per_line: 1,
    };

    #[test]
    fn last_lines_spans_rotated_files_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("a.log.1");
        let cur = dir.path().join("a.log");
        std::fs::write(&old, "one\ntwo\n").unwrap();
        std::fs::write(&cur, "three\nfour\n").unwrap();
        let (lines, end) = last_lines(&[old, cur], 3, None, FULL);
        assert_eq!(texts(&lines), ["two", "three", "four"]);
        let at: Vec<(usize, u64)> = lines.iter().map(|l| (l.file, l.offset)).collect();
        assert_eq!(at, [(0, 4), (1, 0), (1, 6)]);
        assert_eq!(end, 11);
    }

    #[test]
    fn since_and_times_come_from_the_stamps_across_rotated_files() {
        use super::super::{log_stamps::Stamper, logs};
        let dir = tempfile::tempdir().unwrap();
        let cur = dir.path().join("a.log");
        let mut stamper = Stamper::default();
        let mut log = logs::open_append(&cur).unwrap();
        for (text, ms) in [("a0\n", 1_000), ("a1\n", 2_000)] {
            log.write_all(text.as_bytes()).unwrap();
            stamper.note(&cur, || ms).unwrap();
        }
        assert!(logs::rotate_if_needed(&cur, 1, 1).unwrap());
        stamper.forget(&cur);
        for (text, ms) in [("b0\n", 3_000), ("b1\nb2\n", 4_000)] {
            log.write_all(text.as_bytes()).unwrap();
            stamper.note(&cur, || ms).unwrap();
        }
        let files = logs::files(&cur);
        let files_of = |_: &str| files.clone();
        // The agent's clock when it reads (the stamps above are at 1 to 4 s since the epoch).
        const NOW: u64 = 10_000;
        let read_since = |since_ms, tail| {
            let req = LogRead {
                instances: vec!["a".into()],
                tail,
                within_ms: Some(NOW - since_ms),
                stamps: true,
                ..Default::default()
            };
            let resp = read(&req, files_of, NOW);
            let got: Vec<(String, u64)> = resp
                .lines
                .into_iter()
                .map(|l| (l.line, l.at_ms.unwrap()))
                .collect();
            got
        };
        let want = |pairs: &[(&str, u64)]| -> Vec<(String, u64)> {
            pairs.iter().map(|(t, ms)| (t.to_string(), *ms)).collect()
        };
        assert_eq!(
            read_since(2_000, 100),
            want(&[("a1", 2_000), ("b0", 3_000), ("b1", 4_000), ("b2", 4_000)])
        );
        assert_eq!(
            read_since(3_500, 100),
            want(&[("b1", 4_000), ("b2", 4_000)])
        );
        assert_eq!(read_since(2_500, 1), want(&[("b2", 4_000)]));
        assert_eq!(read_since(0, 100).len(), 5);
        // Nothing written since: nothing, yet a cursor to follow from.
        let req = LogRead {
            instances: vec!["a".into()],
            tail: 100,
            within_ms: Some(0),
            ..Default::default()
        };
        let resp = read(&req, files_of, now_ms() + 60_000);
        assert!(resp.lines.is_empty());
        assert_eq!(resp.cursors[0].offset, 9);
    }

    /// A `since` that falls inside a line (the agent looked while it was half written) leaves
    /// that line out: it began before.
    #[test]
    fn a_line_begun_before_since_is_left_out() {
        use super::super::log_stamps::Stamper;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut stamper = Stamper::default();
        std::fs::write(&path, "old\nhalf").unwrap();
        stamper.note(&path, || 1_000).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b" done\nnew\n").unwrap();
        stamper.note(&path, || 2_000).unwrap();
        let (lines, _) = last_lines(std::slice::from_ref(&path), 10, Some(1_500), FULL);
        assert_eq!(texts(&lines), ["new"]);
    }

    fn now_ms() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    }

    #[test]
    fn follow_returns_only_complete_new_lines_and_restarts_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, "one\ntw").unwrap();
        let (lines, off) = follow(std::slice::from_ref(&path), 0, FULL);
        assert_eq!((texts(&lines), off), (vec!["one"], 4));
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"o\n")
            .unwrap();
        let (two, _) = follow(std::slice::from_ref(&path), off, FULL);
        assert_eq!(texts(&two), ["two"]);
        assert_eq!(two[0].offset, 4);
        std::fs::write(&path, "x\n").unwrap();
        assert_eq!(
            texts(&follow(std::slice::from_ref(&path), 7, FULL).0),
            ["x"]
        );
    }

    #[test]
    fn a_line_longer_than_one_read_is_handed_out_in_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, vec![b'x'; MAX_FOLLOW_BYTES as usize + 10]).unwrap();
        let (lines, off) = follow(std::slice::from_ref(&path), 0, FULL);
        assert_eq!(lines.len(), 1);
        assert_eq!(off, MAX_FOLLOW_BYTES);
    }

    /// Blank lines, control bytes and lines without end, as `--tail` and as `-f`: the answer's
    /// JSON stays within the budget (and so within the server's limit) every time.
    #[test]
    fn an_answer_as_json_stays_within_its_budget_whatever_the_log_holds() {
        let dir = tempfile::tempdir().unwrap();
        let contents: [Vec<u8>; 3] = [
            vec![b'\n'; 2 << 20],
            vec![1u8; 3 << 20],
            b"x\n".repeat(1 << 20),
        ];
        let mut files = Vec::new();
        for (i, c) in contents.iter().enumerate() {
            let path = dir.path().join(format!("{i}.log"));
            std::fs::write(&path, c).unwrap();
            files.push(path);
        }
        let ids: Vec<String> = (0..3).map(|i| format!("instance-{i}")).collect();
        let files_of = |id: &str| vec![files[id[9..].parse::<usize>().unwrap()].clone()];
        let tail = LogRead {
            instances: ids.clone(),
            tail: MAX_TAIL,
            cursors: Vec::new(),
            ..Default::default()
        };
        let follow = LogRead {
            cursors: ids
                .iter()
                .map(|id| LogCursor {
                    instance: id.clone(),
                    offset: 0,
                })
                .collect(),
            ..tail.clone()
        };
        for req in [tail, follow] {
            let resp = read(&req, files_of, now_ms());
            let json = serde_json::to_vec(&resp).unwrap().len() as u64;
            assert!(json <= MAX_ANSWER_COST + 1024, "{json}");
            assert_eq!(resp.cursors.len(), 3);
            assert!(!resp.lines.is_empty());
        }
    }

    #[test]
    fn following_a_chatty_log_goes_on_where_the_budget_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let text: String = (0..200_000).map(|i| format!("{i}\n")).collect();
        std::fs::write(&path, &text).unwrap();
        let small = Budget {
            cost: 100_000,
            per_line: 1,
        };
        let (mut offset, mut seen) = (0, 0u32);
        while offset < text.len() as u64 {
            let (lines, next) = follow(std::slice::from_ref(&path), offset, small);
            assert!(next > offset, "a follow always makes progress");
            for l in lines {
                assert_eq!(l.text, seen.to_string(), "no line lost or repeated");
                seen += 1;
            }
            offset = next;
        }
        assert_eq!(seen, 200_000);
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
            ..Default::default()
        };
        let resp = read(&req, files_of, now_ms());
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
        let next = read(&req, files_of, now_ms());
        assert_eq!(next.lines.len(), 1);
        assert_eq!(next.lines[0].line, "d");
    }
}
