//! When each log line was written, without standing in the log's path.
//!
//! An instance writes its log itself, through the fd it was started with, so its output
//! survives an agent crash and costs the agent nothing per line. To still know when a line was
//! written (`ebb logs --timestamps`, `--since`), the agent notes a few times a second how far
//! each log has grown: `x.log.stamps` beside `x.log` holds fixed records of (size, unix ms),
//! the time being the log's modification time as the agent saw it (the last write before the
//! look, so an upper bound for every byte the record covers, and never later than the look). A
//! line's time is that of the first record past its start: late by at most the time between
//! two looks ([`STAMP_INTERVAL`]) while the agent keeps up. Bytes past the last record (written
//! since the last look) take the log's modification time. Lines written while the agent was
//! down take the time of the last write before it came back: still an upper bound, not a
//! guess. Times never go backwards within a log (a record is never older than the one before),
//! so `--since` and `--timestamps` agree.
//!
//! Docker and CRI runtimes stamp each line exactly, by owning the pipe between the process and
//! the file (a shim process per container); ebb keeps the process-writes-its-own-file design and
//! buys a bounded lateness instead. A record is 16 bytes and written only when a log grew, so an
//! idle log costs nothing and a busy one 64 bytes a second; the stamps rotate with their log.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often the agent looks at its logs' sizes: the most a line's time can be late.
pub const STAMP_INTERVAL: Duration = Duration::from_millis(250);
/// One record: the log's size (u64 LE), then the unix ms it was seen at (u64 LE).
const RECORD: u64 = 16;
/// Records read at once when walking forward.
const WALK_CHUNK: usize = 4096;

/// A file's modification time in unix ms.
fn modified_ms(meta: &fs::Metadata) -> Option<u64> {
    let t = meta.modified().ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64)
}

/// `x.log` → `x.log.stamps`, `x.log.1` → `x.log.1.stamps`.
pub fn stamps_path(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".stamps");
    PathBuf::from(name)
}

/// (size seen, unix ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    size: u64,
    ms: u64,
}

impl Record {
    fn bytes(self) -> [u8; RECORD as usize] {
        let mut b = [0u8; RECORD as usize];
        b[..8].copy_from_slice(&self.size.to_le_bytes());
        b[8..].copy_from_slice(&self.ms.to_le_bytes());
        b
    }

    fn parse(b: &[u8]) -> Record {
        let mut size = [0u8; 8];
        let mut ms = [0u8; 8];
        size.copy_from_slice(&b[..8]);
        ms.copy_from_slice(&b[8..16]);
        Record {
            size: u64::from_le_bytes(size),
            ms: u64::from_le_bytes(ms),
        }
    }
}

/// Notes the growth of logs, remembering the last record of each.
#[derive(Debug, Default)]
pub struct Stamper {
    seen: std::collections::HashMap<PathBuf, Record>,
}

impl Stamper {
    /// Appends a record to `log`'s stamps when it grew since the last one. Its time is the
    /// log's modification time, but never after `now` (a clock read after looking) nor before
    /// the last record's. A log now shorter than its last record was truncated behind ebb's
    /// back: its stamps start over.
    pub fn note(&mut self, log: &Path, now: impl Fn() -> u64) -> io::Result<()> {
        let meta = match fs::metadata(log) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.seen.remove(log);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let size = meta.len();
        let last = match self.seen.get(log) {
            Some(last) => *last,
            None => Stamps::open(log)
                .last()
                .unwrap_or(Record { size: 0, ms: 0 }),
        };
        if size == last.size {
            self.seen.insert(log.to_path_buf(), last);
            return Ok(());
        }
        let path = stamps_path(log);
        let floor = if size < last.size {
            remove_if_exists(&path)?;
            0
        } else {
            last.ms
        };
        let ms = modified_ms(&meta).unwrap_or(u64::MAX).min(now()).max(floor);
        let record = Record { size, ms };
        append(&path, record)?;
        // Removed meanwhile (its instance forgotten): no stamps may outlive the log.
        if !log.exists() {
            remove_if_exists(&path)?;
            self.seen.remove(log);
            return Ok(());
        }
        self.seen.insert(log.to_path_buf(), record);
        Ok(())
    }

    /// Forgets `log` (rotated, or gone): the next look reads its stamps afresh.
    pub fn forget(&mut self, log: &Path) {
        self.seen.remove(log);
    }

    /// Keeps only the logs in `logs` (instances removed are forgotten).
    pub fn retain(&mut self, logs: &[PathBuf]) {
        let logs: std::collections::HashSet<&PathBuf> = logs.iter().collect();
        self.seen.retain(|p, _| logs.contains(p));
    }
}

fn append(path: &Path, record: Record) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    // Whole records only: a torn one from a crash mid-write is cut before appending.
    let len = f.metadata()?.len();
    if len % RECORD != 0 {
        f.set_len(len - len % RECORD)?;
    }
    f.write_all(&record.bytes())
}

/// Moves `from`'s stamps to `to`'s (a log rotated by renaming or copying).
pub fn move_stamps(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(stamps_path(from), stamps_path(to)) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => remove_if_exists(&stamps_path(to)),
        other => other,
    }
}

/// Deletes `log`'s stamps.
pub fn remove(log: &Path) -> io::Result<()> {
    remove_if_exists(&stamps_path(log))
}

/// The size of `log`'s stamps file (0 when there is none).
pub fn size(log: &Path) -> u64 {
    fs::metadata(stamps_path(log)).map_or(0, |m| m.len())
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// One log's stamps, for reading.
#[derive(Debug)]
pub struct Stamps {
    file: Option<File>,
    records: u64,
    /// The log's modification time (unix ms): the time of bytes past the last record.
    modified_ms: u64,
}

impl Stamps {
    /// Reads nothing yet: a log without stamps (older than stamping, say) has every line at
    /// its modification time.
    pub fn open(log: &Path) -> Stamps {
        let log_modified = fs::metadata(log).ok().and_then(|m| modified_ms(&m));
        let file = File::open(stamps_path(log)).ok();
        let records = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len() / RECORD);
        let mut stamps = Stamps {
            file,
            records,
            modified_ms: 0,
        };
        // Past the last record, never earlier than it (the file's time comes from a coarser
        // clock than a record's, and a wall clock may step back).
        let last = stamps.last().map_or(0, |r| r.ms);
        stamps.modified_ms = log_modified.unwrap_or(0).max(last);
        stamps
    }

    fn record(&self, i: u64) -> Option<Record> {
        let mut b = [0u8; RECORD as usize];
        self.file.as_ref()?.read_exact_at(&mut b, i * RECORD).ok()?;
        Some(Record::parse(&b))
    }

    fn last(&self) -> Option<Record> {
        self.records.checked_sub(1).and_then(|i| self.record(i))
    }

    /// The first record for which `past` holds (`past` false, then true, along the file).
    fn first(&self, past: impl Fn(Record) -> bool) -> u64 {
        let (mut lo, mut hi) = (0, self.records);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.record(mid) {
                Some(r) if !past(r) => lo = mid + 1,
                _ => hi = mid,
            }
        }
        lo
    }

    /// Where the lines written at or after `since_ms` start: None when the log holds none
    /// (it was last written before). The offset may fall inside a line, which is then older.
    pub fn start_since(&self, since_ms: u64) -> Option<u64> {
        if self.modified_ms < since_ms {
            return None;
        }
        let i = self.first(|r| r.ms >= since_ms);
        Some(match i.checked_sub(1) {
            Some(before) => self.record(before).map_or(0, |r| r.size),
            None => 0,
        })
    }

    /// The times of the lines starting at `offsets` (ascending): one search, then a walk.
    pub fn times(&self, offsets: &[u64]) -> Vec<u64> {
        let Some(first) = offsets.first() else {
            return Vec::new();
        };
        let mut i = self.first(|r| r.size > *first);
        let mut walk = Walk::new(self, i);
        // Never backwards, even in stamps written before records were kept in order.
        let mut latest = 0;
        offsets
            .iter()
            .map(|offset| {
                let t = loop {
                    match walk.get(i) {
                        Some(r) if r.size <= *offset => i += 1,
                        Some(r) => break r.ms,
                        None => break self.modified_ms,
                    }
                };
                latest = latest.max(t);
                latest
            })
            .collect()
    }
}

/// Records read forward in chunks from some index.
struct Walk<'a> {
    stamps: &'a Stamps,
    from: u64,
    chunk: Vec<Record>,
}

impl<'a> Walk<'a> {
    fn new(stamps: &'a Stamps, from: u64) -> Walk<'a> {
        Walk {
            stamps,
            from,
            chunk: Vec::new(),
        }
    }

    fn get(&mut self, i: u64) -> Option<Record> {
        if i >= self.stamps.records {
            return None;
        }
        if i < self.from || i >= self.from + self.chunk.len() as u64 {
            self.load(i);
        }
        self.chunk.get((i - self.from) as usize).copied()
    }

    fn load(&mut self, i: u64) {
        self.from = i;
        self.chunk.clear();
        let Some(file) = self.stamps.file.as_ref() else {
            return;
        };
        let n = (self.stamps.records - i).min(WALK_CHUNK as u64);
        let mut buf = Vec::new();
        let mut f = file;
        if f.seek(SeekFrom::Start(i * RECORD)).is_err()
            || f.take(n * RECORD).read_to_end(&mut buf).is_err()
        {
            return;
        }
        self.chunk = buf
            .chunks_exact(RECORD as usize)
            .map(Record::parse)
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(log: &Path, text: &str) {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }

    #[test]
    fn each_line_takes_the_time_it_was_first_seen() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        let mut s = Stamper::default();
        write(&log, "one\ntwo\n");
        s.note(&log, || 1_000).unwrap();
        s.note(&log, || 1_250).unwrap(); // no growth, no record
        write(&log, "three\n");
        s.note(&log, || 1_500).unwrap();
        assert_eq!(size(&log), 2 * RECORD);
        let stamps = Stamps::open(&log);
        assert_eq!(stamps.times(&[0, 4, 8]), [1_000, 1_000, 1_500]);
        // Past the last record: the log's modification time (now-ish).
        write(&log, "four\n");
        let stamps = Stamps::open(&log);
        let last = stamps.times(&[14])[0];
        assert!(last > 1_000_000_000_000, "{last}");
    }

    #[test]
    fn since_starts_at_the_first_chunk_seen_then() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        let mut s = Stamper::default();
        for (i, ms) in [(0, 1_000), (1, 2_000), (2, 3_000)] {
            write(&log, &format!("line {i}\n"));
            s.note(&log, || ms).unwrap();
        }
        let stamps = Stamps::open(&log);
        assert_eq!(stamps.start_since(500), Some(0));
        assert_eq!(stamps.start_since(2_000), Some(7));
        assert_eq!(stamps.start_since(2_001), Some(14));
        // After every record but before the log's last write (now): past the last record.
        assert_eq!(stamps.start_since(3_001), Some(21));
        assert_eq!(stamps.start_since(u64::MAX), None);
    }

    #[test]
    fn a_new_stamper_goes_on_from_the_file_and_a_truncated_log_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        write(&log, "abc\n");
        Stamper::default().note(&log, || 1_000).unwrap();
        let mut again = Stamper::default();
        again.note(&log, || 2_000).unwrap();
        assert_eq!(size(&log), RECORD, "no growth since the last record");
        fs::write(&log, "x\n").unwrap();
        again.note(&log, || 3_000).unwrap();
        assert_eq!(size(&log), RECORD);
        assert_eq!(Stamps::open(&log).times(&[0]), [3_000]);
    }

    #[test]
    fn a_torn_record_is_cut_and_missing_stamps_read_as_the_modification_time() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        write(&log, "abc\n");
        fs::write(stamps_path(&log), [1u8; 5]).unwrap();
        let mut s = Stamper::default();
        s.note(&log, || 7_000).unwrap();
        assert_eq!(size(&log), RECORD);
        assert_eq!(Stamps::open(&log).times(&[0]), [7_000]);
        let other = dir.path().join("b.log");
        write(&other, "x\n");
        let t = Stamps::open(&other).times(&[0])[0];
        assert!(t > 1_000_000_000_000, "{t}");
    }

    #[test]
    fn many_records_walk_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        let mut s = Stamper::default();
        let n = WALK_CHUNK as u64 * 2 + 10;
        for i in 0..n {
            write(&log, "x\n");
            s.note(&log, || 10_000 + i).unwrap();
        }
        let offsets: Vec<u64> = (0..n).map(|i| i * 2).collect();
        let times = Stamps::open(&log).times(&offsets);
        let want: Vec<u64> = (0..n).map(|i| 10_000 + i).collect();
        assert_eq!(times, want);
        assert_eq!(
            Stamps::open(&log).times(&offsets[n as usize - 3..]),
            want[n as usize - 3..]
        );
    }
}
