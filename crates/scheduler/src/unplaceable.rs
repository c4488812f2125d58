//! Why an instance stays pending: how many nodes each filter turned away.

use crate::Constraint;
use std::fmt;

/// No node passed the filters. The instance stays pending, and this value is its reason
/// (`no node fits: 2 insufficient cpu, 1 draining`).
///
/// Every node is counted exactly once, under the **first** filter it fails, in this fixed order:
///
/// 1. state: down, then suspect, then draining — a node that takes nothing new makes its labels
///    and free resources irrelevant;
/// 2. constraints, in the order the request lists them — a label mismatch does not go away by
///    waiting, so it is reported before resources;
/// 3. insufficient cpu, then insufficient memory — what frees up as instances stop.
///
/// So the counts add up to [`Unplaceable::nodes`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Unplaceable {
    /// Nodes considered: every node in the cluster.
    pub nodes: u32,
    /// Nodes declared down.
    pub down: u32,
    /// Nodes that missed heartbeats.
    pub suspect: u32,
    /// Nodes being drained.
    pub draining: u32,
    /// Ready nodes whose first unmet constraint is this one; only constraints that turned a node
    /// away, in the request's order.
    pub not_matching: Vec<(Constraint, u32)>,
    /// Ready, matching nodes without enough free CPU.
    pub insufficient_cpu: u32,
    /// Ready, matching nodes with enough CPU but not enough free memory.
    pub insufficient_memory: u32,
}

/// One filter's name, for iterating over an [`Unplaceable`]'s counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason<'a> {
    /// The node is down.
    Down,
    /// The node is suspect.
    Suspect,
    /// The node is draining.
    Draining,
    /// The node does not satisfy this constraint.
    NotMatching(&'a Constraint),
    /// Not enough free CPU.
    InsufficientCpu,
    /// Not enough free memory.
    InsufficientMemory,
}

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Down => f.write_str("down"),
            Reason::Suspect => f.write_str("suspect"),
            Reason::Draining => f.write_str("draining"),
            Reason::NotMatching(constraint) => write!(f, "not matching {constraint}"),
            Reason::InsufficientCpu => f.write_str("insufficient cpu"),
            Reason::InsufficientMemory => f.write_str("insufficient memory"),
        }
    }
}

impl Unplaceable {
    /// The non-zero counts in filter order (see the type's documentation).
    pub fn reasons(&self) -> Vec<(Reason<'_>, u32)> {
        let states = [
            (Reason::Down, self.down),
            (Reason::Suspect, self.suspect),
            (Reason::Draining, self.draining),
        ];
        let constraints = self
            .not_matching
            .iter()
            .map(|(c, n)| (Reason::NotMatching(c), *n));
        let resources = [
            (Reason::InsufficientCpu, self.insufficient_cpu),
            (Reason::InsufficientMemory, self.insufficient_memory),
        ];
        states
            .into_iter()
            .chain(constraints)
            .chain(resources)
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// How many nodes failed for `reason`.
    pub fn count(&self, reason: Reason<'_>) -> u32 {
        match reason {
            Reason::Down => self.down,
            Reason::Suspect => self.suspect,
            Reason::Draining => self.draining,
            Reason::NotMatching(c) => self
                .not_matching
                .iter()
                .filter(|(m, _)| m == c)
                .map(|(_, n)| n)
                .sum(),
            Reason::InsufficientCpu => self.insufficient_cpu,
            Reason::InsufficientMemory => self.insufficient_memory,
        }
    }
}

/// `no node fits: 2 insufficient cpu, 1 draining` — the largest count first, so the main obstacle
/// leads; equal counts keep filter order. With no nodes at all: `no node fits: no nodes`.
impl fmt::Display for Unplaceable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no node fits: ")?;
        if self.reasons().is_empty() {
            return f.write_str("no nodes");
        }
        self.write_counts(f, usize::MAX)
    }
}

impl Unplaceable {
    /// `2 insufficient cpu, 1 draining`: the counts, largest first (nothing when no node was
    /// turned away); past `most` reasons, the rest in one count (`…, 30 for 30 other reasons`),
    /// so a request with a constraint per node still says it in a line.
    pub(crate) fn write_counts(&self, f: &mut fmt::Formatter<'_>, most: usize) -> fmt::Result {
        let mut reasons = self.reasons();
        reasons.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
        for (i, (reason, count)) in reasons.iter().take(most).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{count} {reason}")?;
        }
        let rest = reasons.get(most..).unwrap_or_default();
        if !rest.is_empty() {
            let nodes: u32 = rest.iter().map(|(_, n)| n).sum();
            write!(f, ", {nodes} for {} other reasons", rest.len())?;
        }
        Ok(())
    }
}

impl std::error::Error for Unplaceable {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_leads_with_the_largest_count_then_filter_order() {
        let u = Unplaceable {
            nodes: 6,
            draining: 1,
            suspect: 1,
            not_matching: vec![(Constraint::equal("zone", "a"), 2)],
            insufficient_cpu: 2,
            ..Unplaceable::default()
        };
        assert_eq!(
            u.to_string(),
            "no node fits: 2 not matching zone=a, 2 insufficient cpu, 1 suspect, 1 draining"
        );
    }

    #[test]
    fn no_nodes_is_its_own_reason() {
        assert_eq!(Unplaceable::default().to_string(), "no node fits: no nodes");
    }

    #[test]
    fn count_finds_each_reason() {
        let zone = Constraint::equal("zone", "a");
        let u = Unplaceable {
            nodes: 3,
            down: 1,
            not_matching: vec![(zone.clone(), 1)],
            insufficient_memory: 1,
            ..Unplaceable::default()
        };
        assert_eq!(u.count(Reason::Down), 1);
        assert_eq!(u.count(Reason::NotMatching(&zone)), 1);
        assert_eq!(u.count(Reason::InsufficientMemory), 1);
        assert_eq!(u.count(Reason::InsufficientCpu), 0);
    }
}
