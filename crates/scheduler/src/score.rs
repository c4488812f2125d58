//! Ranking the nodes an instance fits on: fit (bin-pack or spread), anti-affinity, tie-break.
//!
//! A node's score is `fit - ANTI_AFFINITY_WEIGHT × (instances of the same service already on
//! it)`, highest wins, and exact ties go to the node with the highest [`tie_key`]. Scores are
//! `f64`: every operation is IEEE-754 and sequential, so the same input gives the same bits,
//! and nodes in identical situations get identical scores, which is what makes ties visible.

use crate::Placement;

/// Penalty per instance of the same service already on a node, in units of the fit score (which
/// lies in `[0, 1]`).
///
/// It equals the fit's whole range, so a node holding one instance fewer always ranks at least
/// as high as any fuller node: a service is spread over as many feasible nodes as possible, even
/// under bin-pack, and bin-pack only decides among nodes with the fewest instances. This is
/// deliberately stronger than Nomad's job anti-affinity (`-(collisions + 1) / count`, averaged with
/// the other scores, which lets large services pile up): ebb runs on a few machines, where losing
/// one node must not take out most of a service. The one tie it allows — an exactly full node
/// after placement against an exactly empty one with one more instance — is settled by the seed.
pub const ANTI_AFFINITY_WEIGHT: f64 = 1.0;

/// Per-node numbers the fit needs, precomputed when the node's capacity is set so that the hot
/// loop multiplies instead of dividing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Scale {
    /// `1 / capacity.cpu_millis`, or 0 for a node with no CPU.
    pub(crate) per_cpu: f64,
    /// `1 / capacity.memory_bytes`, or 0 for a node with no memory.
    pub(crate) per_memory: f64,
}

impl Scale {
    pub(crate) fn of(cpu_millis: u64, memory_bytes: u64) -> Scale {
        let inverse = |x: u64| if x == 0 { 0.0 } else { 1.0 / x as f64 };
        Scale {
            per_cpu: inverse(cpu_millis),
            per_memory: inverse(memory_bytes),
        }
    }
}

/// How well an instance fits a node, in `[0, 1]` (up to rounding), from what the node would have
/// free after taking it.
///
/// The free fraction is the mean over cpu and memory of `free after / capacity`; a dimension the
/// node has none of counts as full (its scale is 0), so such a node is neither preferred by spread
/// nor avoided by bin-pack for it. Bin-pack scores `1 - free fraction` (fullest first), spread
/// scores the free fraction (emptiest first), the two readings of Kubernetes' `MostAllocated` and
/// `LeastAllocated` with equal weights.
///
/// Both are `base + slope × free fraction`, resolved once per request, so the scan has no branch
/// on the strategy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fit {
    base: f64,
    slope: f64,
}

impl Fit {
    pub(crate) fn new(placement: Placement) -> Fit {
        match placement {
            Placement::BinPack => Fit {
                base: 1.0,
                slope: -1.0,
            },
            Placement::Spread => Fit {
                base: 0.0,
                slope: 1.0,
            },
        }
    }

    /// The free share after placing that a fit of `fit` stands for (the inverse of
    /// [`Fit::score`]).
    pub(crate) fn free_share(self, fit: f64) -> f64 {
        (fit - self.base) / self.slope
    }

    #[inline]
    pub(crate) fn score(self, scale: Scale, free_cpu_after: u64, free_mem_after: u64) -> f64 {
        let cpu = free_cpu_after as f64 * scale.per_cpu;
        let memory = free_mem_after as f64 * scale.per_memory;
        self.base + self.slope * (0.5 * (cpu + memory))
    }
}

/// The fit minus the anti-affinity penalty.
#[inline]
pub(crate) fn total(fit: f64, same_service: u32) -> f64 {
    fit - ANTI_AFFINITY_WEIGHT * f64::from(same_service)
}

/// The tie-break rank of a node for a seed: a well-mixed function of (seed, hash of the node's
/// name), so different seeds order tied nodes differently and the order does not depend on where
/// a node sits in the cluster's list.
#[inline]
pub(crate) fn tie_key(seed: u64, name_hash: u64) -> u64 {
    mix(seed ^ mix(name_hash))
}

/// 64-bit FNV-1a of a node name: stable across Rust releases and platforms, unlike
/// `std::collections::hash_map::DefaultHasher`, whose algorithm is unspecified.
pub(crate) fn name_hash(name: &str) -> u64 {
    ebb_core::hash::fnv1a(name.as_bytes())
}

/// The SplitMix64 finalizer (Steele, Lea, Flood 2014): a bijection that spreads every input bit
/// over the output, so nearby seeds give unrelated orders.
#[inline]
pub(crate) fn mix(x: u64) -> u64 {
    use ebb_core::hash::{splitmix64_mix, SPLITMIX64_GAMMA};
    splitmix64_mix(x.wrapping_add(SPLITMIX64_GAMMA))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bin_pack_prefers_fuller_and_spread_emptier() {
        let scale = Scale::of(1000, 1000);
        let nearly_full = (100, 100);
        let nearly_empty = (900, 900);
        let bp = |(c, m)| Fit::new(Placement::BinPack).score(scale, c, m);
        let sp = |(c, m)| Fit::new(Placement::Spread).score(scale, c, m);
        assert!(bp(nearly_full) > bp(nearly_empty));
        assert!(sp(nearly_empty) > sp(nearly_full));
        assert_eq!(bp((0, 0)), 1.0);
        assert_eq!(sp((1000, 1000)), 1.0);
    }

    #[test]
    fn a_dimension_without_capacity_counts_as_full() {
        let scale = Scale::of(0, 1000);
        assert_eq!(Fit::new(Placement::Spread).score(scale, 0, 1000), 0.5);
        assert_eq!(
            Fit::new(Placement::BinPack).score(Scale::of(0, 0), 0, 0),
            1.0
        );
    }

    #[test]
    fn one_more_same_service_instance_outweighs_any_fit() {
        assert!(total(0.0, 0) >= total(1.0, 1));
        assert!(total(0.3, 1) > total(1.0, 2));
    }

    #[test]
    fn tie_keys_depend_on_seed_and_name() {
        let (a, b) = (name_hash("node-a"), name_hash("node-b"));
        assert_ne!(a, b);
        assert_ne!(tie_key(1, a), tie_key(2, a));
        let seeds_ordering_a_first = (0..64).filter(|&s| tie_key(s, a) > tie_key(s, b)).count();
        assert!(
            (10..54).contains(&seeds_ordering_a_first),
            "{seeds_ordering_a_first}"
        );
    }
}
