//! ebb's node side: the supervisor that runs a node's instances as processes — started with the
//! right environment, port, logs and cgroup limits, health-checked, restarted with back-off,
//! stopped gracefully, and adopted again after an agent crash.

mod supervisor;

pub use supervisor::{
    backoff_delay, AgentError, Backoff, Supervisor, SupervisorConfig, BACKOFF_RESET_AFTER,
    DEFAULT_LOG_KEEP, DEFAULT_LOG_MAX_BYTES, INITIAL_BACKOFF, MAX_BACKOFF,
};
pub mod capacity;
pub mod credential;
pub mod log_channel;
pub mod sync;

/// CPU of this machine in millicores (all cores visible to ebb).
pub fn machine_cpu_millis() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32) * 1000
}

/// Memory of this machine in bytes, from `/proc/meminfo` (0 if it cannot be read).
pub fn machine_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(0)
}
