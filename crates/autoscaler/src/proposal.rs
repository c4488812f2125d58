//! What a policy proposes before the rules every policy shares (`decide.rs`) apply.

use crate::Rule;

/// A policy's raw proposal, before the shared rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Proposal {
    pub count: u32,
    pub reason: String,
    pub panic: bool,
    pub rule: Rule,
}

impl Proposal {
    pub(crate) fn new(count: u32, reason: String) -> Self {
        Proposal {
            count,
            reason,
            panic: false,
            rule: Rule::Target,
        }
    }

    pub(crate) fn hold(base: u32, reason: String) -> Self {
        Proposal {
            rule: Rule::Hold,
            ..Proposal::new(base, reason)
        }
    }
}
