//! Where an instance's cumulative CPU time and its memory are read: its cgroup files where they
//! exist, else /proc over its processes. Every parser takes the file's text and returns None on
//! anything it does not understand: odd contents never panic, they only leave a figure out.
//!
//! | figure | cgroup v2 | cgroup v1 | /proc |
//! | --- | --- | --- | --- |
//! | CPU time | `cpu.stat` `usage_usec` | `cpuacct.usage` (ns) | `utime + stime + cutime + cstime` of each process |
//! | memory | `memory.stat` `anon` | `memory.stat` `total_rss` | `RssAnon` of each process |
//!
//! Memory is anonymous memory only: page cache is reclaimable, and counting it would make a
//! service that reads files look full (its cache grows up to the limit).

use super::super::cgroup;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Clock ticks per second of `/proc/<pid>/stat` times when the auxiliary vector does not say:
/// the kernel's `USER_HZ`, 100 on every architecture Linux userspace sees today.
const USER_HZ_FALLBACK: u64 = 100;
/// `AT_CLKTCK` in the auxiliary vector (`<linux/auxvec.h>`).
const AT_CLKTCK: u64 = 17;

/// Which counter a CPU reading came from; a rate is only taken between two of the same source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cgroup,
    Proc,
}

/// One instance's counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// CPU time used since the counter began, in nanoseconds.
    pub cpu_ns: u64,
    pub source: Source,
    pub memory_bytes: u64,
}

/// The processes to measure when the cgroup cannot say: `cgroups` (their `cgroup.procs`), or
/// without groups the process group of `pid` (every instance leads its own group).
pub struct Processes<'a> {
    pub pid: u32,
    pub cgroups: &'a [PathBuf],
}

/// Reads the counters of one instance: the cgroup's where available, the rest from /proc. None
/// when neither source answers (the process is gone, /proc unreadable).
pub fn read(procs: &Processes, scan: &mut ProcScan) -> Option<Reading> {
    let mut cpu = procs.cgroups.iter().find_map(|d| cgroup_cpu_ns(d));
    let mut memory = procs.cgroups.iter().find_map(|d| cgroup_memory(d));
    let source = if cpu.is_some() {
        Source::Cgroup
    } else {
        Source::Proc
    };
    if cpu.is_none() || memory.is_none() {
        let pids = if procs.cgroups.is_empty() {
            scan.group(procs.pid)
        } else {
            cgroup::procs(procs.cgroups)
        };
        let (ticks, rss) = proc_totals(&pids)?;
        cpu = cpu.or(Some(ticks_to_ns(ticks)));
        memory = memory.or(Some(rss));
    }
    Some(Reading {
        cpu_ns: cpu?,
        source,
        memory_bytes: memory?,
    })
}

/// CPU nanoseconds of a group: v2 `cpu.stat`, or v1 `cpuacct.usage` (in the cpuacct group, or
/// the cpu group when both controllers share a hierarchy).
fn cgroup_cpu_ns(dir: &Path) -> Option<u64> {
    if let Ok(text) = std::fs::read_to_string(dir.join("cpuacct.usage")) {
        return text.trim().parse().ok();
    }
    let text = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
    parse_v2_cpu_stat(&text)
}

fn cgroup_memory(dir: &Path) -> Option<u64> {
    parse_memory_stat(&std::fs::read_to_string(dir.join("memory.stat")).ok()?)
}

/// `usage_usec` of a v2 `cpu.stat`, in nanoseconds. (v1's `cpu.stat` has no such line.)
pub fn parse_v2_cpu_stat(text: &str) -> Option<u64> {
    key_value(text, "usage_usec")?.checked_mul(1000)
}

/// Anonymous memory of a `memory.stat`: v2 `anon`, v1 `total_rss` (the group and its children)
/// or `rss`. The keys differ between versions, so one parser serves both.
pub fn parse_memory_stat(text: &str) -> Option<u64> {
    ["anon", "total_rss", "rss"]
        .iter()
        .find_map(|key| key_value(text, key))
}

/// The number after `key` on a `key value` line.
fn key_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        if parts.next()? != key {
            return None;
        }
        parts.next()?.parse().ok()
    })
}

/// What a process's `/proc/<pid>/stat` says about its CPU time and process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatTimes {
    pub pgrp: i32,
    /// utime + stime + cutime + cstime, in clock ticks: its own time and that of the children it
    /// reaped, so the sum over a tree keeps growing when a child exits.
    pub ticks: u64,
}

/// Parses `/proc/<pid>/stat`, counting fields after the last `)` (the name may hold anything).
pub fn parse_stat_times(text: &str) -> Option<StatTimes> {
    let after = text.get(text.rfind(')')? + 1..)?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name, field 3 of proc(5) is index 0: pgrp is 5, utime..cstime are 14..17.
    let tick = |i: usize| fields.get(i)?.parse::<u64>().ok();
    let ticks = [11, 12, 13, 14]
        .iter()
        .try_fold(0u64, |sum, &i| sum.checked_add(tick(i)?))?;
    Some(StatTimes {
        pgrp: fields.get(2)?.parse().ok()?,
        ticks,
    })
}

/// `RssAnon` of `/proc/<pid>/status` in bytes (`VmRSS` on kernels before 4.5, which lack it).
pub fn parse_status_rss_anon(text: &str) -> Option<u64> {
    let kib = |key: &str| {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(key)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
    };
    kib("RssAnon").or_else(|| kib("VmRSS"))?.checked_mul(1024)
}

/// Total CPU ticks and anonymous memory of these processes; None when none could be read.
/// Kernel threads and zombies have no memory lines and count 0.
fn proc_totals(pids: &[u32]) -> Option<(u64, u64)> {
    let mut found = false;
    let (mut ticks, mut bytes) = (0u64, 0u64);
    for pid in pids {
        let Some(stat) = read_proc(*pid, "stat").and_then(|t| parse_stat_times(&t)) else {
            continue;
        };
        found = true;
        ticks = ticks.saturating_add(stat.ticks);
        let rss = read_proc(*pid, "status").and_then(|t| parse_status_rss_anon(&t));
        bytes = bytes.saturating_add(rss.unwrap_or(0));
    }
    found.then_some((ticks, bytes))
}

fn read_proc(pid: u32, file: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()
}

/// Clock ticks to nanoseconds.
pub fn ticks_to_ns(ticks: u64) -> u64 {
    let hz = clock_ticks_per_second();
    u64::try_from(u128::from(ticks) * 1_000_000_000 / u128::from(hz)).unwrap_or(u64::MAX)
}

/// `sysconf(_SC_CLK_TCK)`, read as libc does from the auxiliary vector (`AT_CLKTCK`), without
/// unsafe code.
fn clock_ticks_per_second() -> u64 {
    static HZ: OnceLock<u64> = OnceLock::new();
    *HZ.get_or_init(|| {
        std::fs::read("/proc/self/auxv")
            .ok()
            .and_then(|bytes| parse_auxv(&bytes, AT_CLKTCK))
            .filter(|&hz| hz > 0)
            .unwrap_or(USER_HZ_FALLBACK)
    })
}

/// The value of `key` in an auxiliary vector: native-endian (key, value) word pairs.
pub fn parse_auxv(bytes: &[u8], key: u64) -> Option<u64> {
    const WORD: usize = std::mem::size_of::<usize>();
    let word = |chunk: &[u8]| -> Option<u64> {
        let arr: [u8; WORD] = chunk.try_into().ok()?;
        u64::try_from(usize::from_ne_bytes(arr)).ok()
    };
    bytes.chunks_exact(2 * WORD).find_map(|pair| {
        let (k, v) = pair.split_at(WORD);
        if word(k)? != key {
            return None;
        }
        word(v)
    })
}

/// Process groups of every process, read from /proc at most once per sample and only if an
/// instance without cgroups needs it.
#[derive(Default)]
pub struct ProcScan {
    groups: Option<HashMap<i32, Vec<u32>>>,
}

impl ProcScan {
    /// Live members of process group `pgid`.
    fn group(&mut self, pgid: u32) -> Vec<u32> {
        let groups = self.groups.get_or_insert_with(scan_groups);
        i32::try_from(pgid)
            .ok()
            .and_then(|g| groups.get(&g).cloned())
            .unwrap_or_default()
    }
}

fn scan_groups() -> HashMap<i32, Vec<u32>> {
    let mut groups: HashMap<i32, Vec<u32>> = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return groups;
    };
    for pid in dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
        if let Some(stat) = read_proc(pid, "stat").and_then(|t| parse_stat_times(&t)) {
            groups.entry(stat.pgrp).or_default().push(pid);
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_cpu_stat_gives_usage_in_nanoseconds() {
        let text = "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\nnr_periods 0\n";
        assert_eq!(parse_v2_cpu_stat(text), Some(1_500_000_000));
        // v1's cpu.stat has throttling figures only.
        assert_eq!(
            parse_v2_cpu_stat("nr_periods 0\nnr_throttled 0\nthrottled_time 0\n"),
            None
        );
        assert_eq!(parse_v2_cpu_stat("usage_usec lots\n"), None);
        assert_eq!(parse_v2_cpu_stat(""), None);
        assert_eq!(parse_v2_cpu_stat("usage_usec 18446744073709551615"), None);
    }

    #[test]
    fn memory_stat_gives_anonymous_memory_of_either_version() {
        let v2 = "anon 4194304\nfile 10485760\nkernel 0\nactive_anon 4000000\n";
        assert_eq!(parse_memory_stat(v2), Some(4_194_304));
        let v1 =
            "cache 10485760\nrss 2097152\nrss_huge 0\ntotal_cache 10485760\ntotal_rss 3145728\n";
        assert_eq!(parse_memory_stat(v1), Some(3_145_728));
        assert_eq!(parse_memory_stat("rss 8192\n"), Some(8192));
        assert_eq!(parse_memory_stat("inactive_anon 5\nanonymous 6\n"), None);
        assert_eq!(parse_memory_stat("anon\n\n anon -1\n"), None);
    }

    #[test]
    fn stat_times_add_own_and_reaped_children_ticks() {
        // utime 100, stime 20, cutime 3, cstime 4.
        let line = "4242 (my (odd) name) R 1 4242 4242 0 -1 4194560 100 0 0 0 100 20 3 4 20 0 1 0 987654 1000 10";
        assert_eq!(
            parse_stat_times(line),
            Some(StatTimes {
                pgrp: 4242,
                ticks: 127
            })
        );
        assert_eq!(parse_stat_times("garbage"), None);
        assert_eq!(
            parse_stat_times("1 (x) S 1 1 1 0 -1 0 0 0 0 0 5 x 0 0"),
            None
        );
        assert_eq!(parse_stat_times(")"), None);
        let huge = "1 (x) S 1 1 1 0 -1 0 0 0 0 0 18446744073709551615 1 0 0";
        assert_eq!(parse_stat_times(huge), None);
    }

    #[test]
    fn status_gives_anonymous_resident_memory() {
        let text =
            "Name:\tpython3\nVmRSS:\t   20480 kB\nRssAnon:\t    8192 kB\nRssFile:\t   12288 kB\n";
        assert_eq!(parse_status_rss_anon(text), Some(8192 * 1024));
        assert_eq!(parse_status_rss_anon("VmRSS:\t 100 kB\n"), Some(100 * 1024));
        assert_eq!(parse_status_rss_anon("Name:\tkthreadd\n"), None);
        assert_eq!(parse_status_rss_anon("RssAnonymous: 5 kB\n"), None);
    }

    #[test]
    fn the_clock_tick_is_found_in_the_auxiliary_vector() {
        let mut auxv = Vec::new();
        for (k, v) in [(6usize, 4096usize), (AT_CLKTCK as usize, 250), (0, 0)] {
            auxv.extend_from_slice(&k.to_ne_bytes());
            auxv.extend_from_slice(&v.to_ne_bytes());
        }
        assert_eq!(parse_auxv(&auxv, AT_CLKTCK), Some(250));
        assert_eq!(parse_auxv(&auxv, 99), None);
        assert_eq!(parse_auxv(&auxv[..5], AT_CLKTCK), None);
        assert_eq!(parse_auxv(&[], AT_CLKTCK), None);
        // This machine's, as libc's sysconf(_SC_CLK_TCK) reads it.
        assert!(clock_ticks_per_second() > 0);
        assert_eq!(ticks_to_ns(0), 0);
    }

    #[test]
    fn our_own_process_can_be_read_from_proc() {
        let me = std::process::id();
        let (ticks, bytes) = proc_totals(&[me]).unwrap();
        assert!(bytes > 0, "{bytes}");
        let _ = ticks;
        assert!(proc_totals(&[u32::MAX]).is_none());
        let mut scan = ProcScan::default();
        let pgrp = parse_stat_times(&read_proc(me, "stat").unwrap())
            .unwrap()
            .pgrp;
        assert!(scan.group(pgrp as u32).contains(&me));
    }
}
