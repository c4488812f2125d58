//! `<data_dir>/instances.json`: the processes this agent runs, so that an agent that crashed and
//! restarts adopts them (never a duplicate, never an orphan). Written atomically (tmp + fsync +
//! rename) by a [`Writer`], after starts, stops and adoption, coalesced: a burst of starts is a
//! few writes, not one each. A process the file does not list yet when the agent dies is found
//! and killed by the next agent's sweep (`sweep.rs`).

use ebb_core::StopSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

pub const STATE_FILE: &str = "instances.json";

/// One running process of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub generation: u64,
    pub service: String,
    /// The assignment's spec version.
    pub version: String,
    pub pid: u32,
    /// `/proc/<pid>/stat` start time: a pid reused by another process is never adopted.
    pub start_ticks: u64,
    pub port: u16,
    pub started_ms: u64,
    pub restarts: u32,
    /// How to stop it, should its assignment be gone when the agent comes back.
    #[serde(default)]
    pub stop: StopSpec,
    /// Its cgroup folders, where escaped processes are found.
    #[serde(default)]
    pub cgroups: Vec<PathBuf>,
    /// A job's task: once it ends it is reported exited, never started again by this node.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub task: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    /// The kernel's boot id when the file was written: after a reboot every listed process is
    /// gone, and a pid with the same start time may be an unrelated process of the new boot.
    /// `None` in files of older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    boot_id: Option<String>,
    #[serde(default)]
    instances: BTreeMap<String, Record>,
}

/// Where the kernel says which boot this is: a random id, new at every boot.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// This boot's id, read once.
fn current_boot_id() -> Option<&'static str> {
    static ID: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        fs::read_to_string(BOOT_ID)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    })
    .as_deref()
}

/// The records a file holds for this boot: none when it was written in another boot (those
/// processes died with it, and adopting or killing a pid now could hit an unrelated process).
fn records_of_this_boot(file: StateFile, boot: Option<&str>) -> BTreeMap<String, Record> {
    match (file.boot_id.as_deref(), boot) {
        (Some(written), Some(now)) if written != now => {
            if !file.instances.is_empty() {
                tracing::info!(
                    "the machine rebooted since the agent last ran: its {} recorded processes are gone",
                    file.instances.len()
                );
            }
            BTreeMap::new()
        }
        _ => file.instances,
    }
}

/// Reads the records; a missing file means none.
pub fn load(path: &Path) -> Result<BTreeMap<String, Record>, String> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    serde_json::from_str::<StateFile>(&text)
        .map(|f| records_of_this_boot(f, current_boot_id()))
        .map_err(|e| format!("{} is not valid agent state ({e}); move it aside to start without adopting its processes", path.display()))
}

/// Replaces the file with these records, atomically.
pub fn save(path: &Path, records: &BTreeMap<String, Record>) -> io::Result<()> {
    let body = serde_json::to_vec_pretty(&StateFile {
        boot_id: current_boot_id().map(String::from),
        instances: records.clone(),
    })
    .map_err(io::Error::other)?;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?
    };
    file.write_all(&body)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

/// Writes of one state file: serialised, and never replacing a newer snapshot with an older one.
pub struct Writer {
    path: PathBuf,
    /// Version of the records last written. Held for the whole write, so writes are ordered.
    written: Mutex<u64>,
    writes: AtomicU64,
}

impl Writer {
    pub fn new(path: PathBuf) -> Writer {
        Writer {
            path,
            written: Mutex::new(0),
            writes: AtomicU64::new(0),
        }
    }

    /// Writes the (version, records) that `snapshot` returns unless that version is already on
    /// disk. `snapshot` runs under the write lock: a write that waited for another one takes its
    /// snapshot after it, so the file only ever moves forward. Blocking (fsync): call it off the
    /// async workers, and never while holding the state lock. A failure is logged, not fatal: the
    /// processes still run, and the next change tries again.
    pub fn write_if_changed(&self, snapshot: impl FnOnce() -> (u64, BTreeMap<String, Record>)) {
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        let (version, records) = snapshot();
        if version == *written {
            return;
        }
        match save(&self.path, &records) {
            Ok(()) => {
                *written = version;
                self.writes.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), "cannot write agent state: {e}; a restarted agent may not adopt running instances")
            }
        }
    }

    /// Files written so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(pid: u32) -> Record {
        Record {
            generation: 7,
            service: "web".into(),
            version: "abcd1234".into(),
            pid,
            start_ticks: 99,
            port: 4100,
            started_ms: 1_700_000_000_000,
            restarts: 2,
            stop: StopSpec::default(),
            cgroups: vec!["/sys/fs/cgroup/ebb/web-1".into()],
            task: false,
        }
    }

    #[test]
    fn records_survive_a_round_trip_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        assert!(load(&path).unwrap().is_empty());
        let records: BTreeMap<String, Record> = [("web-1".to_string(), record(42))].into();
        save(&path, &records).unwrap();
        assert_eq!(load(&path).unwrap(), records);
        save(&path, &BTreeMap::new()).unwrap();
        assert!(load(&path).unwrap().is_empty());
    }

    #[test]
    fn records_written_in_another_boot_are_not_adopted() {
        let records: BTreeMap<String, Record> = [("web-1".to_string(), record(42))].into();
        let file = |boot: Option<&str>| StateFile {
            boot_id: boot.map(String::from),
            instances: records.clone(),
        };
        assert!(records_of_this_boot(file(Some("boot-a")), Some("boot-b")).is_empty());
        assert_eq!(
            records_of_this_boot(file(Some("boot-a")), Some("boot-a")),
            records
        );
        // An older agent's file (no id), or a kernel without one: as before.
        assert_eq!(records_of_this_boot(file(None), Some("boot-b")), records);
        assert_eq!(records_of_this_boot(file(Some("boot-a")), None), records);
    }

    #[test]
    fn the_file_records_the_boot_it_was_written_in() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        save(&path, &BTreeMap::new()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let written: StateFile = serde_json::from_str(&text).unwrap();
        assert_eq!(written.boot_id.as_deref(), current_boot_id());
        assert!(
            current_boot_id().is_some(),
            "Linux has /proc/sys/kernel/random/boot_id"
        );
    }

    #[test]
    fn the_writer_skips_versions_already_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        let writer = Writer::new(path.clone());
        let records: BTreeMap<String, Record> = [("web-1".to_string(), record(42))].into();
        writer.write_if_changed(|| (1, records.clone()));
        writer.write_if_changed(|| (1, BTreeMap::new()));
        assert_eq!((writer.writes(), load(&path).unwrap()), (1, records));
        writer.write_if_changed(|| (2, BTreeMap::new()));
        assert_eq!(
            (writer.writes(), load(&path).unwrap()),
            (2, BTreeMap::new())
        );
    }

    #[test]
    fn a_corrupt_file_is_an_error_that_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        fs::write(&path, "{ half").unwrap();
        assert!(load(&path).unwrap_err().contains("move it aside"));
    }
}
