//! What the instance controller reports beyond the store, for the API: why services have
//! instances no node could take, and how recent moves ended.

use crate::lock;
use ebb_core::api::MigrationView;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

/// How many ended moves the controller remembers for `GET /v1/migrations`.
pub const MOVES_KEPT: usize = 256;

/// The controller's reports, kept in memory (they are rebuilt by the next pass after a
/// restart); the API reads them.
#[derive(Debug, Default)]
pub struct Reports {
    /// Why a service's instances could not all be placed, as last reported.
    pending: Mutex<HashMap<String, String>>,
    /// Moves that ended since this server started, newest last (at most [`MOVES_KEPT`]), so
    /// that `ebb migrate` and `ebb drain` learn how a move ended however fast it went.
    moved: Mutex<VecDeque<MigrationView>>,
}

impl Reports {
    /// Replaces the services that have unplaceable instances; returns those whose reason is
    /// new or changed (an event each, not one per controller pass).
    pub fn note_pending(&self, now: BTreeMap<String, String>) -> Vec<(String, String)> {
        let mut pending = lock(&self.pending);
        let changed = now
            .iter()
            .filter(|(service, why)| pending.get(*service) != Some(*why))
            .map(|(s, w)| (s.clone(), w.clone()))
            .collect();
        *pending = now.into_iter().collect();
        changed
    }

    /// Why `service` has an instance no node could take, if it has.
    pub fn pending_reason(&self, service: &str) -> Option<String> {
        lock(&self.pending).get(service).cloned()
    }

    /// Remembers moves that ended (the oldest are forgotten past [`MOVES_KEPT`]).
    pub fn note_moved(&self, ended: Vec<MigrationView>) {
        let mut moved = lock(&self.moved);
        moved.extend(ended);
        let extra = moved.len().saturating_sub(MOVES_KEPT);
        moved.drain(..extra);
    }

    /// Moves that ended, oldest first.
    pub fn moved(&self) -> Vec<MigrationView> {
        lock(&self.moved).iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_new_or_changed_pending_reasons_are_reported() {
        let reports = Reports::default();
        let one = BTreeMap::from([("web".to_string(), "no node fits".to_string())]);
        assert_eq!(reports.note_pending(one.clone()).len(), 1);
        assert!(
            reports.note_pending(one).is_empty(),
            "unchanged: no new event"
        );
        assert_eq!(
            reports.pending_reason("web").as_deref(),
            Some("no node fits")
        );
        assert!(reports.note_pending(BTreeMap::new()).is_empty());
        assert_eq!(reports.pending_reason("web"), None);
    }
}
