//! What a policy proposes before the rules every policy shares (`decide.rs`) apply.

/// A policy's raw proposal, before the shared rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Proposal {
    pub count: u32,
    pub reason: String,
    pub panic: bool,
}

impl Proposal {
    pub(crate) fn new(count: u32, reason: String) -> Self {
        Proposal {
            count,
            reason,
            panic: false,
        }
    }

    pub(crate) fn hold(base: u32, reason: String) -> Self {
        Proposal::new(base, reason)
    }
}
