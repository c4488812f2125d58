//! The whole machine's use: busy CPU from `/proc/stat`, memory in use from `/proc/meminfo`.

use ebb_core::api::NodeUsage;

/// The aggregate `cpu` line of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTicks {
    /// user + nice + system + irq + softirq + steal (guest time is already inside user).
    pub busy: u64,
    /// busy + idle + iowait.
    pub total: u64,
    /// `cpuN` lines: the CPUs online.
    pub cpus: u32,
}

pub fn parse_proc_stat(text: &str) -> Option<CpuTicks> {
    let mut lines = text.lines();
    let first = lines.next()?;
    let mut fields = first.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = fields.map_while(|f| f.parse().ok()).collect();
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    if v.len() < 4 {
        return None;
    }
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .try_fold(0u64, |sum, &i| sum.checked_add(at(i)))?;
    let cpus = lines
        .take_while(|l| l.starts_with("cpu"))
        .filter(|l| l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count();
    Some(CpuTicks {
        busy,
        total: busy.checked_add(at(3))?.checked_add(at(4))?,
        cpus: u32::try_from(cpus).unwrap_or(u32::MAX).max(1),
    })
}

/// `MemTotal - MemAvailable` in bytes (`MemFree` on kernels before 3.14, which lack it).
pub fn parse_meminfo_used(text: &str) -> Option<u64> {
    let kib = |key: &str| {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(key)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
    };
    let total = kib("MemTotal")?;
    let available = kib("MemAvailable").or_else(|| kib("MemFree"))?;
    total.saturating_sub(available).checked_mul(1024)
}

/// Cores busy between two readings.
pub fn busy_cores(before: CpuTicks, after: CpuTicks) -> Option<f64> {
    let total = after.total.checked_sub(before.total).filter(|&t| t > 0)?;
    let busy = after.busy.checked_sub(before.busy)?.min(total);
    Some(busy as f64 / total as f64 * f64::from(after.cpus))
}

/// Keeps the previous `/proc/stat` reading, to turn counters into a rate.
#[derive(Default)]
pub struct NodeSampler {
    previous: Option<CpuTicks>,
}

impl NodeSampler {
    /// The node's use since the last call; None on the first call or when /proc is unreadable.
    pub fn sample(&mut self, now_ms: u64) -> Option<NodeUsage> {
        let ticks = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|t| parse_proc_stat(&t));
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| parse_meminfo_used(&t));
        self.next(ticks, memory, now_ms)
    }

    fn next(
        &mut self,
        ticks: Option<CpuTicks>,
        memory: Option<u64>,
        now_ms: u64,
    ) -> Option<NodeUsage> {
        let before = std::mem::replace(&mut self.previous, ticks)?;
        let cores = busy_cores(before, ticks?)?;
        Some(NodeUsage {
            cpu_cores: super::finite(cores),
            memory_bytes: memory?,
            at_ms: now_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  100 5 50 800 20 3 2 0 0 0\ncpu0 50 2 25 400 10 1 1 0 0 0\ncpu1 50 3 25 400 10 2 1 0 0 0\nintr 12345\nctxt 999\n";

    #[test]
    fn proc_stat_gives_busy_and_total_ticks_and_the_cpu_count() {
        let t = parse_proc_stat(STAT).unwrap();
        assert_eq!(
            t,
            CpuTicks {
                busy: 160,
                total: 980,
                cpus: 2
            }
        );
        // Old kernels have fewer columns.
        assert_eq!(parse_proc_stat("cpu 1 2 3 4\n").unwrap().busy, 6);
        assert!(parse_proc_stat("cpu 1 2\n").is_none());
        assert!(parse_proc_stat("intr 1\n").is_none());
        assert!(parse_proc_stat("").is_none());
        assert!(parse_proc_stat("cpu x y z w\n").is_none());
    }

    #[test]
    fn busy_cores_are_the_busy_share_of_all_cpus() {
        let a = CpuTicks {
            busy: 100,
            total: 1000,
            cpus: 4,
        };
        let b = CpuTicks {
            busy: 300,
            total: 1400,
            cpus: 4,
        };
        assert_eq!(busy_cores(a, b), Some(2.0));
        assert_eq!(busy_cores(a, a), None, "no time passed");
        assert_eq!(busy_cores(b, a), None, "counters went back");
    }

    #[test]
    fn meminfo_gives_memory_in_use() {
        let text = "MemTotal:       16000 kB\nMemFree:         2000 kB\nMemAvailable:    6000 kB\n";
        assert_eq!(parse_meminfo_used(text), Some(10_000 * 1024));
        let old = "MemTotal: 100 kB\nMemFree: 40 kB\n";
        assert_eq!(parse_meminfo_used(old), Some(60 * 1024));
        assert_eq!(parse_meminfo_used("MemTotal: 100 kB\n"), None);
        assert_eq!(parse_meminfo_used("MemTotal: x kB\nMemFree: 1 kB\n"), None);
    }

    #[test]
    fn the_node_rate_starts_with_the_second_reading() {
        let mut s = NodeSampler::default();
        let t = |busy, total| {
            Some(CpuTicks {
                busy,
                total,
                cpus: 2,
            })
        };
        assert_eq!(s.next(t(0, 100), Some(5), 1), None);
        let u = s.next(t(50, 200), Some(7), 2).unwrap();
        assert_eq!((u.cpu_cores, u.memory_bytes, u.at_ms), (1.0, 7, 2));
        assert_eq!(s.next(None, Some(7), 3), None);
        assert_eq!(
            s.next(t(60, 300), Some(7), 4),
            None,
            "no baseline after a gap"
        );
        let real = NodeSampler::default().sample(0);
        assert!(real.is_none(), "first reading has no rate");
    }
}
