//! Why a node was chosen: what `ebb describe INSTANCE` shows as its placement, in the way
//! `kubectl describe` shows a pod's scheduling and `nomad alloc status -verbose` its scores.

use crate::{Placement, Unplaceable};
use std::fmt;

/// The outcome of [`crate::Cluster::place_explained`]: the chosen node and the best other one,
/// each with what made its score, and the nodes turned away.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// The strategy the fit was scored by.
    pub placement: Placement,
    /// The service placed (named in the text).
    pub service: String,
    /// The node chosen.
    pub chosen: Candidate,
    /// The best of the other nodes that fit, if any.
    pub runner_up: Option<Candidate>,
    /// Nodes that could take the instance, the chosen one included.
    pub fitting: u32,
    /// The nodes that could not, counted as for a pending instance.
    pub turned_away: Unplaceable,
}

/// One node as the scan scored it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The node's name.
    pub node: String,
    /// Its share of CPU and memory left free after taking the instance (mean of the two, 0–1):
    /// spread prefers more, bin-pack less.
    pub free_after: f64,
    /// Instances of the same service already there (each weighs a whole fit's range against
    /// the node, see [`crate::ANTI_AFFINITY_WEIGHT`]).
    pub same_service: u32,
    /// The total the nodes were ranked by.
    pub score: f64,
}

/// `n1, best of 3 nodes that fit (spread: 74% free after it, 0 other instances of web there);
/// next n2 (51% free, 1 there); turned away: 1 not matching zone=a`.
impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.chosen;
        let nodes = if self.fitting == 1 { "node" } else { "nodes" };
        write!(
            f,
            "{}, best of {} {nodes} that fit ({}: {} free after it, {} other {} of {} there)",
            c.node,
            self.fitting,
            self.placement.as_str(),
            percent(c.free_after),
            c.same_service,
            if c.same_service == 1 {
                "instance"
            } else {
                "instances"
            },
            self.service
        )?;
        if let Some(r) = &self.runner_up {
            write!(
                f,
                "; next {} ({} free, {} there)",
                r.node,
                percent(r.free_after),
                r.same_service
            )?;
            if r.score == c.score {
                f.write_str(", a tie settled by the seeded tie-break")?;
            }
        }
        if !self.turned_away.reasons().is_empty() {
            f.write_str("; turned away: ")?;
            self.turned_away.write_counts(f, MOST_REASONS)?;
        }
        Ok(())
    }
}

/// Reasons named one by one; a task kept off every node at its cap has one per such node.
const MOST_REASONS: usize = 4;

/// Whole percent, halves rounded up.
fn percent(share: f64) -> String {
    format!("{}%", (share * 100.0).clamp(0.0, 100.0).round())
}
