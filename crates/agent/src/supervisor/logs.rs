//! Instance logs: `<log_dir>/<service>/<instance>.log`, written by the instance itself (so output
//! survives an agent crash) and rotated by copy-truncate, because ebb cannot reopen the process's fd.

use super::log_stamps;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// Rotate a log above this size: kubelet's `containerLogMaxSize` default.
pub const DEFAULT_LOG_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Rotated files kept per instance: enough to read back through a crash loop, while one instance
/// can never hold more than (keep + 1) × max bytes of log, and as much again of stamps at worst
/// (a log growing a few bytes every look: 16 bytes of stamps each time).
pub const DEFAULT_LOG_KEEP: usize = 3;
/// How often sizes are checked. A busy instance may overshoot the limit by what it writes meanwhile.
pub const LOG_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

pub fn log_path(log_dir: &Path, service: &str, instance: &str) -> PathBuf {
    log_dir
        .join(super::path_safe(service))
        .join(format!("{}.log", super::path_safe(instance)))
}

/// `x.log.n`.
pub fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Mode of instance logs: the owner's alone (an app may log secrets it was given).
const LOG_FILE_MODE: u32 = 0o600;

/// Opens the log for appending (creating it owner-only, and its folder): the instance gets this
/// fd directly.
pub fn open_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(LOG_FILE_MODE)
        .open(path)
}

/// Copy-truncate when `path` (or its stamps, [`log_stamps`]) is above `max_bytes`: `.1 → .2 …`
/// (dropping beyond `keep`), copy the log to `.1`, truncate it; each file's stamps move with
/// it. The writer has O_APPEND, so it continues at the new end. True if rotated.
pub fn rotate_if_needed(path: &Path, max_bytes: u64, keep: usize) -> io::Result<bool> {
    let size = match fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if size <= max_bytes && log_stamps::size(path) <= max_bytes {
        return Ok(false);
    }
    if keep > 0 {
        remove_with_stamps(&rotated(path, keep))?;
        for n in (1..keep).rev() {
            let from = rotated(path, n);
            if from.exists() {
                fs::rename(&from, rotated(path, n + 1))?;
                log_stamps::move_stamps(&from, &rotated(path, n + 1))?;
            }
        }
        fs::copy(path, rotated(path, 1))?;
        log_stamps::move_stamps(path, &rotated(path, 1))?;
    } else {
        log_stamps::remove(path)?;
    }
    OpenOptions::new().write(true).open(path)?.set_len(0)?;
    // Files beyond `keep` may be left from a larger setting: drop them too.
    for n in keep + 1.. {
        let extra = rotated(path, n);
        if !extra.exists() {
            break;
        }
        remove_with_stamps(&extra)?;
    }
    Ok(true)
}

fn remove_with_stamps(path: &Path) -> io::Result<()> {
    remove_if_exists(path)?;
    log_stamps::remove(path)
}

/// Existing files of a log: rotated ones oldest first, then the current one.
pub fn files(path: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = (1..)
        .map(|n| rotated(path, n))
        .take_while(|p| p.exists())
        .collect();
    out.reverse();
    if path.exists() {
        out.push(path.to_path_buf());
    }
    out
}

/// Deletes a log and its rotated files, then the service folder if it is empty.
pub fn remove_all(path: &Path) {
    for file in files(path) {
        let _ = remove_with_stamps(&file);
    }
    if let Some(dir) = path.parent() {
        let _ = fs::remove_dir(dir);
    }
}

/// The log of an instance whose service is not known here (e.g. stopped and forgotten).
pub fn find(log_dir: &Path, instance: &str) -> Option<PathBuf> {
    let name = format!("{}.log", super::path_safe(instance));
    fs::read_dir(log_dir)
        .ok()?
        .filter_map(|e| Some(e.ok()?.path().join(&name)))
        .find(|p| p.exists() || rotated(p, 1).exists())
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn rotation_keeps_at_most_keep_files_and_truncates_the_current_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), "web", "web-1");
        let mut log = open_append(&path).unwrap();
        for round in 0..5u8 {
            log.write_all(&[b'a' + round; 20]).unwrap();
            assert!(rotate_if_needed(&path, 10, 2).unwrap());
            assert!(!rotate_if_needed(&path, 10, 2).unwrap());
        }
        log.write_all(b"tail").unwrap();
        let names: Vec<String> = files(&path)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["web-1.log.2", "web-1.log.1", "web-1.log"]);
        assert_eq!(fs::read(rotated(&path, 1)).unwrap(), [b'e'; 20]);
        assert_eq!(fs::read(rotated(&path, 2)).unwrap(), [b'd'; 20]);
        assert_eq!(fs::read(&path).unwrap(), b"tail");
    }

    #[test]
    fn logs_are_found_by_instance_and_removed_with_their_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), "web", "web-1");
        open_append(&path).unwrap().write_all(&[0; 30]).unwrap();
        rotate_if_needed(&path, 10, 3).unwrap();
        assert_eq!(find(dir.path(), "web-1"), Some(path.clone()));
        assert_eq!(files(&path).len(), 2);
        remove_all(&path);
        assert!(files(&path).is_empty());
        assert!(!dir.path().join("web").exists());
        assert_eq!(find(dir.path(), "web-1"), None);
    }

    /// Each file's stamps move with it, drop with it, and a log whose stamps outgrew the limit
    /// rotates too.
    #[test]
    fn stamps_rotate_with_their_log() {
        use super::super::log_stamps::{size, stamps_path, Stamper};
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), "web", "web-1");
        let mut log = open_append(&path).unwrap();
        let mut stamper = Stamper::default();
        for round in 0..4u64 {
            log.write_all(&[b'a'; 20]).unwrap();
            stamper.note(&path, || 1_000 + round).unwrap();
            assert!(rotate_if_needed(&path, 10, 2).unwrap());
            stamper.forget(&path);
        }
        assert!(stamps_path(&rotated(&path, 1)).exists());
        assert!(stamps_path(&rotated(&path, 2)).exists());
        assert!(!stamps_path(&rotated(&path, 3)).exists(), "dropped with .3");
        assert!(
            !stamps_path(&path).exists(),
            "the new log starts without stamps"
        );
        // Tiny growth, many looks: the stamps pass the limit before the log does.
        for round in 0..4u64 {
            log.write_all(b"x").unwrap();
            stamper.note(&path, || 2_000 + round).unwrap();
        }
        assert_eq!(size(&path), 64);
        assert!(rotate_if_needed(&path, 40, 0).unwrap());
        assert_eq!(
            size(&path),
            0,
            "keep = 0: the stamps go with the truncated log"
        );
        remove_all(&path);
        assert!(!dir.path().join("web").exists(), "nothing left behind");
    }

    #[test]
    fn keep_zero_only_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        fs::write(&path, [1; 50]).unwrap();
        assert!(rotate_if_needed(&path, 10, 0).unwrap());
        assert_eq!(files(&path).as_slice(), std::slice::from_ref(&path));
        assert_eq!(fs::metadata(&path).unwrap().len(), 0);
    }
}
