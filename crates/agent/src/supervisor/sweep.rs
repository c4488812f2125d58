//! At start, kills the processes a crashed agent started but never recorded.
//!
//! A process is recorded in the state file only after it was spawned, and the file is written
//! off the state lock, coalesced (`shared.rs`): an agent killed in between leaves a process that
//! no record names. Nothing would ever stop it, and the next `apply` would start a second copy.
//! So before adopting anything, a starting supervisor looks for such processes by two marks that
//! every process it starts carries from its first instruction, whatever the timing of a crash:
//!
//! - **its cgroup** (where enforced): every instance runs in `.../ebb/<agent id>/<instance>`. A
//!   group there that does not belong to a live recorded process is emptied with SIGKILL (each
//!   member and its process group) and removed. A process cannot leave its cgroup by itself, so
//!   this finds a whole tree, `setsid` escapees included.
//! - **its environment** (everywhere): every instance and health command gets
//!   `EBB_AGENT_ID=<agent id>` and `EBB_INSTANCE_ID`. A live process marked with this agent's id,
//!   for an instance without a live record, is killed with its process group. This is what covers
//!   nodes without cgroups. It is weaker: a program that overwrites its environment block (as
//!   `setproctitle` does) is missed.
//!
//! Why no "intent" record written before the spawn: the pid only exists after the fork, so
//! without cgroups a record without a pid would name nothing to kill, and with cgroups the group
//! already is the intent. Marks cost no write on the start path, which is what lets the state file
//! be written lazily.
//!
//! The agent id comes from the data dir, so two agents with different data dirs on one machine
//! (or tests in one process) never sweep each other's instances, while an agent restarting on the
//! same data dir finds its predecessor's.

use super::cgroup::{self, Cgroups};
use super::env::{AGENT_ID_VAR, INSTANCE_ID_VAR};
use super::procfs;
use super::state_file::Record;
use nix::sys::signal::Signal;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long the sweep waits for killed processes to leave their groups before removing them;
/// SIGKILLed processes exit in milliseconds, only a process in D state takes longer.
const SWEEP_REMOVE_WAIT: Duration = Duration::from_secs(1);
const SWEEP_POLL: Duration = Duration::from_millis(10);

/// This agent's id: 16 hex digits of an FNV-1a hash of the canonical data dir. FNV rather than
/// `DefaultHasher`, whose output may change between Rust releases: an upgraded agent must find
/// the groups of the one before.
pub fn agent_id(data_dir: &Path) -> String {
    let path = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let hash = ebb_core::hash::fnv1a(path.as_os_str().as_encoded_bytes());
    format!("{hash:016x}")
}

/// Kills and removes everything of this agent that `records` does not name as alive; logs a
/// warning for each. Call before adopting, while no runner can start anything.
pub fn sweep(cgroups: &Cgroups, agent_id: &str, records: &BTreeMap<String, Record>) {
    let live: BTreeMap<&str, &Record> = records
        .iter()
        .filter(|(_, r)| procfs::is_alive(r.pid, r.start_ticks))
        .map(|(id, r)| (id.as_str(), r))
        .collect();
    let kept: BTreeSet<&Path> = live
        .values()
        .flat_map(|r| r.cgroups.iter().map(PathBuf::as_path))
        .collect();
    let strays: Vec<PathBuf> = cgroups
        .instance_groups()
        .into_iter()
        .filter(|dir| !kept.contains(dir.as_path()))
        .collect();
    for dir in &strays {
        let pids = cgroup::procs(std::slice::from_ref(dir));
        if !pids.is_empty() {
            tracing::warn!(group = %dir.display(), ?pids, "killing processes the state file does not list: the previous agent stopped before recording them");
        }
        kill_with_groups(&pids);
    }
    for (instance, pids) in marked(agent_id) {
        if !live.contains_key(instance.as_str()) {
            tracing::warn!(instance, ?pids, "killing processes of an instance the state file does not list: the previous agent stopped before recording them");
            kill_with_groups(&pids);
        }
    }
    remove_groups(strays);
}

/// SIGKILL to each process and to its process group (its tree, for an instance's main process).
fn kill_with_groups(pids: &[u32]) {
    for &pid in pids {
        if let Some(stat) = procfs::read_stat(pid) {
            procfs::signal_group(stat.pgrp.unsigned_abs(), Signal::SIGKILL);
        }
        procfs::signal_pid(pid, Signal::SIGKILL);
    }
}

/// Removes the emptied groups, killing again whatever a dying process forked meanwhile.
fn remove_groups(mut left: Vec<PathBuf>) {
    let deadline = Instant::now() + SWEEP_REMOVE_WAIT;
    loop {
        left.retain(|dir| {
            let dir = std::slice::from_ref(dir);
            cgroup::signal_all(dir, Signal::SIGKILL);
            !cgroup::remove(dir)
        });
        if left.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            tracing::warn!(groups = ?left, "cgroups still busy after SIGKILL; left in place");
            return;
        }
        std::thread::sleep(SWEEP_POLL);
    }
}

/// Live processes whose environment carries this agent's id, by their `EBB_INSTANCE_ID`.
/// Reads every `/proc/<pid>/environ` (only those of our own user are readable): once, at start.
fn marked(agent_id: &str) -> BTreeMap<String, Vec<u32>> {
    let mark = format!("{AGENT_ID_VAR}={agent_id}");
    let instance_prefix = format!("{INSTANCE_ID_VAR}=");
    let mut found: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for pid in dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let mut vars = environ.split(|b| *b == 0);
        if !vars.clone().any(|v| v == mark.as_bytes()) {
            continue;
        }
        let instance = vars
            .find_map(|v| v.strip_prefix(instance_prefix.as_bytes()))
            .map(|id| String::from_utf8_lossy(id).into_owned())
            .unwrap_or_default();
        if procfs::read_stat(pid).is_some_and(|s| !s.is_gone()) {
            found.entry(instance).or_default().push(pid);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_id_is_stable_and_differs_per_data_dir() {
        let a = agent_id(Path::new("/nonexistent/ebb-a"));
        assert_eq!(a, agent_id(Path::new("/nonexistent/ebb-a")));
        assert_ne!(a, agent_id(Path::new("/nonexistent/ebb-b")));
        assert_eq!(a.len(), 16);
        // Pinned: a change would make an upgraded agent miss its predecessor's leftovers.
        assert_eq!(agent_id(Path::new("/nonexistent")), "35467dd0a9269d3d");
    }
}
