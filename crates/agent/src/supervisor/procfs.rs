//! The process table: identity of a pid across agent restarts (`/proc/<pid>/stat` start time),
//! process-group membership, and signals. Every pid that reaches a signal goes through [`target`],
//! which refuses 0, 1, negative values and ebb's own process and group — a corrupt state file must
//! never make ebb signal everything.

use nix::sys::signal::{self, Signal};
use nix::unistd::{getpgrp, Pid};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::str::FromStr;

/// The fields of `/proc/<pid>/stat` that ebb uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// `R`, `S`, `D`, `Z` (zombie), `X` (dead), ...
    pub state: char,
    pub ppid: u32,
    pub pgrp: i32,
    /// Clock ticks after boot when the process started: with the pid, a unique identity.
    pub start_ticks: u64,
}

impl Stat {
    /// A zombie has exited and only waits to be reaped; for ebb it is gone.
    pub fn is_gone(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses `/proc/<pid>/stat`. The command name may contain spaces and parentheses, so fields are
/// counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state is field 3 of the man page, pgrp 5, starttime 22.
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

pub fn read_stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// True when `pid` is the very process that started at `start_ticks` and has not exited.
pub fn is_alive(pid: u32, start_ticks: u64) -> bool {
    read_stat(pid).is_some_and(|s| s.start_ticks == start_ticks && !s.is_gone())
}

/// Live (non-zombie) processes of process group `pgid`. Reads all of `/proc`, so it is only used
/// while stopping, never on a timer.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            read_stat(pid).is_some_and(|s| i64::from(s.pgrp) == i64::from(pgid) && !s.is_gone())
        })
        .collect()
}

/// Every process whose parent chain leads to `root` (children, grandchildren, ...).
pub fn descendants(root: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parents: Vec<(u32, u32)> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, read_stat(pid)?.ppid)))
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// A pid ebb may signal: positive, not init, not ebb itself or its process group.
fn target(pid: u32) -> Option<Pid> {
    let raw = i32::try_from(pid).ok().filter(|&p| p > 1)?;
    let own = std::process::id();
    (pid != own && raw != getpgrp().as_raw()).then(|| Pid::from_raw(raw))
}

/// Sends `sig` to every process of group `pgid`; errors (already gone) are ignored.
pub fn signal_group(pgid: u32, sig: Signal) {
    if let Some(pgid) = target(pgid) {
        let _ = signal::killpg(pgid, sig);
    }
}

/// Sends `sig` to one process; errors (already gone) are ignored.
pub fn signal_pid(pid: u32, sig: Signal) {
    if let Some(pid) = target(pid) {
        let _ = signal::kill(pid, sig);
    }
}

/// The stop signal named in a spec (`SIGTERM`, ...); SIGTERM when the name is unknown.
pub fn parse_signal(name: &str) -> Signal {
    Signal::from_str(name).unwrap_or(Signal::SIGTERM)
}

/// Why a process ended, in the words of `InstanceStatus::last_exit`.
pub fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        format!("exit code {code}")
    } else if let Some(sig) = status.signal() {
        match Signal::try_from(sig) {
            Ok(s) => format!("killed by {}", s.as_str()),
            Err(_) => format!("killed by signal {sig}"),
        }
    } else {
        "exited".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_is_parsed_after_the_last_parenthesis() {
        let line = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        let s = parse_stat(line).unwrap();
        assert_eq!(
            s,
            Stat {
                state: 'S',
                ppid: 1,
                pgrp: 4242,
                start_ticks: 987654
            }
        );
        assert!(!s.is_gone());
        assert!(parse_stat("garbage").is_none());
        assert!(parse_stat("1 (x) S 1").is_none());
    }

    #[test]
    fn our_own_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = std::process::id();
        let stat = read_stat(me).unwrap();
        assert!(is_alive(me, stat.start_ticks));
        assert!(!is_alive(me, stat.start_ticks + 1));
        assert!(!is_alive(u32::MAX, stat.start_ticks));
    }

    #[test]
    fn ebb_never_signals_itself_init_or_nonsense() {
        for pid in [0, 1, std::process::id(), u32::MAX] {
            assert!(target(pid).is_none(), "{pid}");
        }
        assert!(target(getpgrp().as_raw() as u32).is_none());
    }

    #[test]
    fn exits_are_described_like_a_shell_would() {
        assert_eq!(describe_exit(ExitStatus::from_raw(3 << 8)), "exit code 3");
        assert_eq!(describe_exit(ExitStatus::from_raw(9)), "killed by SIGKILL");
        assert_eq!(parse_signal("SIGINT"), Signal::SIGINT);
        assert_eq!(parse_signal("SIGBOGUS"), Signal::SIGTERM);
    }
}
