//! Resource limits through cgroups: v2 when the unified hierarchy offers cpu and memory, else v1,
//! else none (with the reason, reported as `enforcement`). A group per instance also lets ebb find
//! and kill processes that escaped the process group (`setsid`), and a restarted agent find the
//! processes its predecessor started but never recorded (`sweep.rs`).
//!
//! Instance groups live in `.../ebb/<agent id>/<instance>`: one folder per agent (per data dir),
//! so that two agents on one machine never take each other's groups for leftovers.

use super::procfs;
use ebb_core::Resources;
use nix::sys::signal::Signal;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Where cgroup file systems are mounted on every mainstream distribution.
const CGROUP_MOUNT: &str = "/sys/fs/cgroup";
/// CPU bandwidth period: the kernel default of 100 ms (`cpu.cfs_period_us`, `cpu.max`).
pub const CPU_PERIOD_US: u64 = 100_000;
/// Smallest quota the kernel accepts (1 ms per period).
const MIN_CPU_QUOTA_US: u64 = 1_000;
/// Name of the folder that holds ebb's instance groups.
const EBB_GROUP: &str = "ebb";

/// How this node enforces instance resources.
#[derive(Debug, Clone)]
pub enum Cgroups {
    /// Instance groups live in `base/<instance>`; `base` is `<root>/ebb/<agent id>`.
    V2 {
        base: PathBuf,
    },
    /// Instance groups live in `memory/<instance>`, `cpu/<instance>` and, when cpuacct is
    /// mounted apart from cpu, `cpuacct/<instance>` (for the CPU time an instance used:
    /// `usage.rs`); `mounts` are the controllers' roots, where a thread's own group is found.
    V1 {
        memory: PathBuf,
        cpu: PathBuf,
        /// None when cpuacct is co-mounted with cpu (`cpu,cpuacct`: the cpu groups count CPU
        /// time themselves) or not available.
        cpuacct: Option<PathBuf>,
        mounts: Vec<(&'static str, PathBuf)>,
    },
    None {
        why: String,
    },
}

impl Cgroups {
    /// Probes the real hierarchy once: creates and removes a test group. `agent_id` names this
    /// agent's folder of instance groups.
    pub fn detect(agent_id: &str) -> Cgroups {
        let root = Path::new(CGROUP_MOUNT);
        let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let v2 = match [root.to_path_buf(), root.join("unified")]
            .iter()
            .find(|r| has_v2_controllers(r))
        {
            Some(r) => match setup_v2(r, agent_id) {
                Ok(c) => return c,
                Err(e) => format!("cgroup v2 at {} is not usable: {e}", r.display()),
            },
            None => "no cgroup v2 hierarchy offers the cpu and memory controllers".to_string(),
        };
        match setup_v1(root, &own, agent_id) {
            Ok(c) => c,
            Err(e) => Cgroups::None {
                why: format!("{v2}; cgroup v1: {e}"),
            },
        }
    }

    /// `cgroup v2`, `cgroup v1` or `none: <why>`.
    pub fn enforcement(&self) -> String {
        match self {
            Cgroups::V2 { .. } => "cgroup v2".into(),
            Cgroups::V1 { .. } => "cgroup v1".into(),
            Cgroups::None { why } => format!("none: {why}"),
        }
    }

    /// The group folders of one instance (none without cgroups).
    pub fn dirs(&self, instance: &str) -> Vec<PathBuf> {
        let name = super::path_safe(instance);
        self.bases()
            .into_iter()
            .map(|base| base.join(&name))
            .collect()
    }

    /// The folders that hold this agent's instance groups.
    fn bases(&self) -> Vec<&Path> {
        match self {
            Cgroups::V2 { base } => vec![base],
            Cgroups::V1 {
                memory,
                cpu,
                cpuacct,
                ..
            } => [Some(memory), Some(cpu), cpuacct.as_ref()]
                .into_iter()
                .flatten()
                .map(PathBuf::as_path)
                .collect(),
            Cgroups::None { .. } => Vec::new(),
        }
    }

    /// Removes this agent's folder of groups once it is empty, when the agent stops: data dirs
    /// come and go (every test has its own), and each empty group still holds one of the
    /// kernel's 65,535 memory-cgroup ids. False while a group is left inside.
    pub fn remove_bases(&self) -> bool {
        let bases: Vec<PathBuf> = self.bases().into_iter().map(Path::to_path_buf).collect();
        remove(&bases)
    }

    /// Every group folder in this agent's bases: its instances' and those a crashed agent left.
    pub fn instance_groups(&self) -> Vec<PathBuf> {
        self.bases()
            .into_iter()
            .filter_map(|base| fs::read_dir(base).ok())
            .flatten()
            .filter_map(|entry| {
                let entry = entry.ok()?;
                entry.file_type().ok()?.is_dir().then(|| entry.path())
            })
            .collect()
    }

    /// Creates the instance's groups and writes the limits the spec sets.
    pub fn create(&self, instance: &str, res: &Resources) -> io::Result<Vec<PathBuf>> {
        let dirs = self.dirs(instance);
        for dir in &dirs {
            fs::create_dir_all(dir)?;
        }
        let quota = res.cpu_millis.map(cpu_quota_us);
        match (self, dirs.as_slice()) {
            (Cgroups::V2 { .. }, [dir]) => {
                if let Some(bytes) = res.memory_bytes {
                    fs::write(dir.join("memory.max"), bytes.to_string())?;
                }
                if let Some(q) = quota {
                    fs::write(dir.join("cpu.max"), format!("{q} {CPU_PERIOD_US}"))?;
                }
            }
            (Cgroups::V1 { .. }, [mem, cpu, ..]) => {
                if let Some(bytes) = res.memory_bytes {
                    fs::write(mem.join("memory.limit_in_bytes"), bytes.to_string())?;
                }
                if let Some(q) = quota {
                    fs::write(cpu.join("cpu.cfs_period_us"), CPU_PERIOD_US.to_string())?;
                    fs::write(cpu.join("cpu.cfs_quota_us"), q.to_string())?;
                }
            }
            _ => {}
        }
        Ok(dirs)
    }
}

/// The calling thread, moved into an instance's v1 groups for the time of a spawn: the child is
/// born inside them, so not even a process it forks at once escapes its limits. Moves the thread
/// back to its own groups when dropped.
pub struct ThreadInGroups {
    tid: String,
    back: Vec<PathBuf>,
}

impl Cgroups {
    /// v1 only (v2 cannot move one thread of a domain group; there see [`move_tree`]).
    pub fn enter(&self, dirs: &[PathBuf]) -> io::Result<Option<ThreadInGroups>> {
        let Cgroups::V1 { mounts, .. } = self else {
            return Ok(None);
        };
        let own = fs::read_to_string("/proc/thread-self/cgroup")?;
        let back = mounts
            .iter()
            .map(|(controller, mount)| {
                let group = own_group(&own, controller).unwrap_or("/");
                mount.join(group.trim_start_matches('/')).join("tasks")
            })
            .collect();
        let guard = ThreadInGroups {
            tid: nix::unistd::gettid().to_string(),
            back,
        };
        for dir in dirs {
            fs::write(dir.join("tasks"), &guard.tid)?;
        }
        Ok(Some(guard))
    }
}

impl Drop for ThreadInGroups {
    fn drop(&mut self) {
        for tasks in &self.back {
            if let Err(e) = fs::write(tasks, &self.tid) {
                tracing::error!(tasks = %tasks.display(), "cannot move an agent thread back to its cgroup: {e}");
            }
        }
    }
}

/// Moves `pid` and every descendant into the groups, twice, to catch what forked meanwhile. For
/// v2, where the child can only be moved after it started; a process that forked and orphaned a
/// grandchild in the first microseconds can still escape (v1 has no such gap).
pub fn move_tree(dirs: &[PathBuf], pid: u32) -> io::Result<()> {
    add_pid(dirs, pid)?;
    for _ in 0..2 {
        for child in procfs::descendants(pid) {
            let _ = add_pid(dirs, child);
        }
    }
    Ok(())
}

/// `cpu.max` quota for a share of CPUs given in millis (1000 = one core).
pub fn cpu_quota_us(cpu_millis: u32) -> u64 {
    (u64::from(cpu_millis) * CPU_PERIOD_US / 1000).max(MIN_CPU_QUOTA_US)
}

/// Moves `pid` into every group.
pub fn add_pid(dirs: &[PathBuf], pid: u32) -> io::Result<()> {
    dirs.iter()
        .try_for_each(|d| fs::write(d.join("cgroup.procs"), pid.to_string()))
}

/// Pids in the groups (exited processes are not listed).
pub fn procs(dirs: &[PathBuf]) -> Vec<u32> {
    let mut pids: Vec<u32> = dirs
        .iter()
        .filter_map(|d| fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<_>>()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Signals every process in the groups.
pub fn signal_all(dirs: &[PathBuf], sig: Signal) {
    for pid in procs(dirs) {
        procfs::signal_pid(pid, sig);
    }
}

/// Removes the groups; true when none is left. Fails (false) while a process is still inside.
pub fn remove(dirs: &[PathBuf]) -> bool {
    let mut all_gone = true;
    for dir in dirs {
        if fs::remove_dir(dir).is_err() && dir.exists() {
            all_gone = false;
        }
    }
    all_gone
}

/// The group of this process for a v1 controller, from `/proc/self/cgroup` (`4:memory:/a/b`).
fn own_group<'a>(proc_self_cgroup: &'a str, controller: &str) -> Option<&'a str> {
    proc_self_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == controller)
            .then_some(path)
    })
}

fn has_v2_controllers(root: &Path) -> bool {
    fs::read_to_string(root.join("cgroup.controllers")).is_ok_and(|c| {
        let list: Vec<&str> = c.split_whitespace().collect();
        list.contains(&"cpu") && list.contains(&"memory")
    })
}

/// v2: `<root>/ebb/<agent id>/<instance>`, with cpu and memory delegated down every level. (Not
/// nested under ebb's own group: v2 forbids enabling controllers in a group that has processes,
/// ebb's own.)
fn setup_v2(root: &Path, agent_id: &str) -> io::Result<Cgroups> {
    let ebb = root.join(EBB_GROUP);
    let base = ebb.join(agent_id);
    fs::create_dir_all(&base)?;
    for dir in [root, ebb.as_path(), base.as_path()] {
        enable_controllers(dir)?;
    }
    probe(&Cgroups::V2 { base: base.clone() }, "memory.max")?;
    Ok(Cgroups::V2 { base })
}

fn enable_controllers(dir: &Path) -> io::Result<()> {
    let file = dir.join("cgroup.subtree_control");
    let enabled = fs::read_to_string(&file)?;
    for c in ["cpu", "memory"] {
        if !enabled.split_whitespace().any(|e| e == c) {
            fs::write(&file, format!("+{c}"))?;
        }
    }
    Ok(())
}

/// v1: `<mount>/<controller>/<ebb's own group>/ebb/<agent id>/<instance>`. Nesting under ebb's own
/// group keeps instances inside whatever limits ebb itself runs under (a container, a systemd
/// unit).
fn setup_v1(root: &Path, proc_self_cgroup: &str, agent_id: &str) -> io::Result<Cgroups> {
    let base = |controller: &str| {
        let own = own_group(proc_self_cgroup, controller).unwrap_or("/");
        root.join(controller)
            .join(own.trim_start_matches('/'))
            .join(EBB_GROUP)
            .join(agent_id)
    };
    let (memory, cpu) = (base("memory"), base("cpu"));
    for (dir, name) in [(&memory, "memory"), (&cpu, "cpu")] {
        if !root.join(name).join("cgroup.procs").exists() {
            return Err(io::Error::other(format!(
                "the {name} controller is not mounted at {}",
                root.join(name).display()
            )));
        }
        fs::create_dir_all(dir)?;
    }
    let mut mounts = vec![("memory", root.join("memory")), ("cpu", root.join("cpu"))];
    let cpuacct = separate_cpuacct(root, base("cpuacct"));
    if cpuacct.is_some() {
        mounts.push(("cpuacct", root.join("cpuacct")));
    }
    let c = Cgroups::V1 {
        memory,
        cpu,
        cpuacct,
        mounts,
    };
    match (probe(&c, "memory.limit_in_bytes"), c) {
        (Ok(()), c) => Ok(c),
        // cpuacct only serves usage reports: limits are enforced without it.
        (
            Err(e),
            Cgroups::V1 {
                memory,
                cpu,
                cpuacct: Some(acct),
                mut mounts,
            },
        ) => {
            tracing::debug!("no cpuacct groups: {e}");
            remove(&[acct]);
            mounts.retain(|(controller, _)| *controller != "cpuacct");
            let c = Cgroups::V1 {
                memory,
                cpu,
                cpuacct: None,
                mounts,
            };
            probe(&c, "memory.limit_in_bytes")?;
            Ok(c)
        }
        (Err(e), _) => Err(e),
    }
}

/// v1: the base for cpuacct groups when cpuacct has a hierarchy of its own. Optional: without it
/// limits still hold, and an instance's CPU time is summed from /proc instead (`usage.rs`).
fn separate_cpuacct(root: &Path, base: PathBuf) -> Option<PathBuf> {
    let co_mounted = root.join("cpu").join("cpuacct.usage").exists();
    if co_mounted || !root.join("cpuacct").join("cpuacct.usage").exists() {
        return None;
    }
    match fs::create_dir_all(&base) {
        Ok(()) => Some(base),
        Err(e) => {
            tracing::debug!(base = %base.display(), "no cpuacct groups: {e}");
            None
        }
    }
}

/// Creates and removes a test group, checking that the kernel filled in `limit_file`.
fn probe(c: &Cgroups, limit_file: &str) -> io::Result<()> {
    let name = format!("probe-{}", std::process::id());
    let dirs = c.create(&name, &Resources::default())?;
    let ok = dirs.first().is_some_and(|d| d.join(limit_file).exists());
    remove(&dirs);
    if ok {
        Ok(())
    } else {
        Err(io::Error::other(format!("a new group has no {limit_file}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_millis_become_a_quota_per_100ms_period() {
        assert_eq!(cpu_quota_us(1000), 100_000);
        assert_eq!(cpu_quota_us(250), 25_000);
        assert_eq!(cpu_quota_us(2500), 250_000);
        assert_eq!(cpu_quota_us(1), MIN_CPU_QUOTA_US);
    }

    #[test]
    fn own_group_is_read_per_controller() {
        let text = "9:name=systemd:/\n4:memory:/box/1\n2:cpu,cpuacct:/box/2\n0::/v2\n";
        assert_eq!(own_group(text, "memory"), Some("/box/1"));
        assert_eq!(own_group(text, "cpu"), Some("/box/2"));
        assert_eq!(own_group(text, "pids"), None);
    }

    #[test]
    fn without_cgroups_an_instance_has_no_groups() {
        let c = Cgroups::None { why: "test".into() };
        assert_eq!(c.enforcement(), "none: test");
        assert!(c
            .create(
                "web-1",
                &Resources {
                    cpu_millis: Some(1),
                    memory_bytes: Some(1)
                }
            )
            .unwrap()
            .is_empty());
        assert!(remove(&[]));
    }

    #[test]
    fn detection_always_answers() {
        let c = Cgroups::detect("test-detection");
        let e = c.enforcement();
        assert!(c.remove_bases());
        assert!(
            e == "cgroup v1" || e == "cgroup v2" || e.starts_with("none: "),
            "{e}"
        );
    }
}
