//! What a node offers to instances: the machine minus a reserve for the system (the kernel,
//! sshd, ebb itself), so that instances reserved up to the node's capacity cannot starve the
//! machine. The reserve follows GKE's allocatable formula, a widely used, published default
//! ("Node allocatable" in GKE's documentation); plain Kubernetes reserves nothing unless told.

use crate::{machine_cpu_millis, machine_memory_bytes};

const GIB: u64 = 1 << 30;

/// GKE's CPU reserve: 6 % of the first core, 1 % of the second, 0.5 % of the third and fourth,
/// 0.25 % of every core above four. In (cores, per-mille) bands.
const CPU_RESERVE_BANDS: [(u64, u64); 4] = [(1, 60), (1, 10), (2, 5), (u64::MAX, 2)];

/// GKE's memory reserve: 25 % of the first 4 GiB, 20 % of the next 4, 10 % of the next 8, 6 %
/// of the next 112, 2 % above 128 GiB. In (GiB, percent) bands.
const MEMORY_RESERVE_BANDS: [(u64, u64); 5] = [(4, 25), (4, 20), (8, 10), (112, 6), (u64::MAX, 2)];

/// GKE's eviction threshold, reserved on top: 100 MiB.
const MEMORY_EVICTION_RESERVE: u64 = 100 << 20;

/// CPU (millicores) and memory (bytes) this machine offers to instances.
pub fn offered() -> (u32, u64) {
    let cpu = machine_cpu_millis();
    let memory = machine_memory_bytes();
    (
        cpu.saturating_sub(cpu_reserve_millis(cpu)),
        memory.saturating_sub(memory_reserve_bytes(memory)),
    )
}

/// The system's CPU reserve for a machine of `millis`.
pub fn cpu_reserve_millis(millis: u32) -> u32 {
    let mut left = u64::from(millis);
    let mut reserve = 0u64;
    for (cores, per_mille) in CPU_RESERVE_BANDS {
        let band = left.min(cores.saturating_mul(1000));
        reserve += band * per_mille / 1000;
        left -= band;
    }
    u32::try_from(reserve).unwrap_or(u32::MAX)
}

/// The system's memory reserve for a machine of `bytes`.
pub fn memory_reserve_bytes(bytes: u64) -> u64 {
    let mut left = bytes;
    let mut reserve = 0u64;
    for (gib, percent) in MEMORY_RESERVE_BANDS {
        let band = left.min(gib.saturating_mul(GIB));
        reserve += band / 100 * percent;
        left -= band;
    }
    (reserve + MEMORY_EVICTION_RESERVE).min(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_reserve_follows_the_bands() {
        assert_eq!(cpu_reserve_millis(1000), 60);
        assert_eq!(cpu_reserve_millis(2000), 70);
        assert_eq!(cpu_reserve_millis(4000), 80);
        // 8 cores: 80 + 4 × 2.5.
        assert_eq!(cpu_reserve_millis(8000), 88);
        assert_eq!(cpu_reserve_millis(0), 0);
        assert!(cpu_reserve_millis(u32::MAX) < u32::MAX);
    }

    #[test]
    fn memory_reserve_follows_the_bands() {
        let mib = 1u64 << 20;
        // 4 GiB: a quarter (to within the integer percent) + 100 MiB.
        assert_eq!(
            memory_reserve_bytes(4 * GIB),
            4 * GIB / 100 * 25 + 100 * mib
        );
        // 24 GiB: 1 + 0.8 + 0.8 + 0.48 GiB, + 100 MiB (to the byte, band by band).
        let r = memory_reserve_bytes(24 * GIB);
        let expect = 4 * GIB / 100 * 25
            + 4 * GIB / 100 * 20
            + 8 * GIB / 100 * 10
            + 8 * GIB / 100 * 6
            + 100 * mib;
        assert_eq!(r, expect);
        // Never more than the machine.
        assert_eq!(memory_reserve_bytes(50 * mib), 50 * mib);
        assert!(memory_reserve_bytes(u64::MAX) < u64::MAX);
    }

    #[test]
    fn a_node_offers_less_than_the_machine() {
        let (cpu, memory) = offered();
        assert!(cpu < machine_cpu_millis() || machine_cpu_millis() == 0);
        assert!(memory < machine_memory_bytes() || machine_memory_bytes() == 0);
    }
}
