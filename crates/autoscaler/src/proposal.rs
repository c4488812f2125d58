//! What a policy proposes before the rules every policy shares (`decide.rs`) apply.

use crate::Rule;

/// A policy's raw proposal, before the shared rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Proposal {
    pub count: u32,
    pub reason: String,
    pub panic: bool,
    pub rule: Rule,
    /// What scale-down stabilization remembers of this tick: the count the load itself asks
    /// for, not the count the tolerance kept (remembering that would make leaving the band
    /// downward wait a scale_down_delay more). A panic still remembers its held count (see
    /// `target::propose`).
    pub recommendation: u32,
    /// What the forecast learns from: the count the router's request load (concurrency, rps)
    /// asked for over the stable window with no sample missing, which measures the load
    /// arriving rather than the count running (see `history.rs`). `None`
    /// for everything else (a hold, missing samples, step and linear policies, cpu, memory and
    /// latency, which move with the count), so a raise by the forecast never feeds its history.
    pub load_count: Option<u32>,
}

impl Proposal {
    pub(crate) fn new(count: u32, reason: String) -> Self {
        Proposal {
            count,
            reason,
            panic: false,
            rule: Rule::Target,
            recommendation: count,
            load_count: None,
        }
    }

    pub(crate) fn hold(base: u32, reason: String) -> Self {
        Proposal {
            rule: Rule::Hold,
            ..Proposal::new(base, reason)
        }
    }
}
