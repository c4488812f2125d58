//! Fast cgroup moves: the kernel's `favordynmods` cgroup mount option.
//!
//! Every move of a task between cgroups takes the kernel's global `cgroup_threadgroup_rwsem` for
//! writing. By default that lock is tuned for readers (fork and exit), and its first writer after
//! a quiet spell waits for an RCU grace period: 10–20 ms measured here (kernel 6.18, 2 cores),
//! paid by every spawn that follows a pause, i.e. by exactly the cold start of a service at zero.
//! `favordynmods` (Linux 6.0+) keeps the lock in its writer-friendly mode for as long as any
//! hierarchy is mounted with the option: moves take ~0.1 ms, forks and exits pay a little more.
//! systemd offers the same trade (`cgroup_favordynmods=`) for hosts that create groups often,
//! which is what an elastic platform does.
//!
//! The option is a property of a hierarchy, but the lock it switches is machine-wide, so ebb
//! mounts a controller-less named v1 hierarchy with it (touching no mount the system manages)
//! and leaves it mounted: other agents on the machine share it, and unmounting would bring the
//! delay back for them.

use std::fs;
use std::path::Path;

/// Where ebb mounts its controller-less hierarchy; `/run` is the place for runtime state.
const MOUNT_POINT: &str = "/run/ebb/cgroup-dynmods";
/// The hierarchy's name (`name=` of a v1 mount without controllers).
const HIERARCHY: &str = "ebb-dynmods";

/// Makes sure some cgroup hierarchy on this machine is mounted with `favordynmods`. Returns what
/// happened, for the agent's start-up log; never fails the agent (the option only saves time).
pub fn ensure() -> String {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if favored(&mountinfo) {
        return "cgroup moves: favordynmods already on".into();
    }
    match mount() {
        Ok(()) => format!("cgroup moves: favordynmods on (hierarchy mounted at {MOUNT_POINT})"),
        Err(e) => format!("cgroup moves: favordynmods not available ({e}); a spawn after a pause may wait one RCU grace period"),
    }
}

/// True when a cgroup or cgroup2 mount in `/proc/self/mountinfo` text carries the option.
fn favored(mountinfo: &str) -> bool {
    mountinfo.lines().any(|line| {
        let Some((_, after)) = line.split_once(" - ") else {
            return false;
        };
        let mut fields = after.split_whitespace();
        let fstype = fields.next().unwrap_or("");
        let options = fields.nth(1).unwrap_or("");
        fstype.starts_with("cgroup") && options.split(',').any(|o| o == "favordynmods")
    })
}

fn mount() -> nix::Result<()> {
    use nix::mount::{mount, MsFlags};
    let point = Path::new(MOUNT_POINT);
    fs::create_dir_all(point)
        .map_err(|e| nix::Error::from_raw(e.raw_os_error().unwrap_or(nix::libc::EIO)))?;
    let data = format!("none,name={HIERARCHY},favordynmods");
    mount(
        Some("cgroup"),
        point,
        Some("cgroup"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(data.as_str()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_is_found_only_on_cgroup_mounts() {
        let on =
            "42 27 0:39 / /run/x rw,relatime - cgroup cgroup rw,favordynmods,name=ebb-dynmods\n";
        let v2 = "30 23 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate,favordynmods\n";
        let off = "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n";
        let other = "1 0 0:1 / /x rw - tmpfs tmpfs rw,favordynmods\n";
        assert!(favored(on));
        assert!(favored(v2));
        assert!(!favored(off));
        assert!(!favored(other));
        assert!(!favored("garbage without separator"));
    }

    #[test]
    fn ensure_always_answers() {
        let said = ensure();
        assert!(said.starts_with("cgroup moves: "), "{said}");
    }
}
