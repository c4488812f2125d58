//! The last status each instance's node reported, mirrored from the store's `status/` keys so
//! that a sync writes only what changed.

use crate::lock;
use ebb_core::InstanceStatus;
use std::collections::HashMap;
use std::sync::Mutex;

/// Instance statuses by instance id.
#[derive(Debug, Default)]
pub struct Statuses(Mutex<HashMap<String, InstanceStatus>>);

impl Statuses {
    /// Starts from the statuses the store holds.
    pub fn new(stored: Vec<InstanceStatus>) -> Statuses {
        Statuses(Mutex::new(
            stored.into_iter().map(|s| (s.id.clone(), s)).collect(),
        ))
    }

    /// A copy of every status.
    pub fn all(&self) -> HashMap<String, InstanceStatus> {
        lock(&self.0).clone()
    }

    /// The reports among `reported` that differ from the known ones.
    pub fn changed<'a>(&self, reported: &'a [InstanceStatus]) -> Vec<&'a InstanceStatus> {
        let known = lock(&self.0);
        reported
            .iter()
            .filter(|s| known.get(&s.id) != Some(*s))
            .collect()
    }

    /// Takes `written` as known (once they are in the store).
    pub fn remember(&self, written: &[&InstanceStatus]) {
        let mut known = lock(&self.0);
        for s in written {
            known.insert(s.id.clone(), (*s).clone());
        }
    }

    /// Forgets an instance's status (the instance is gone).
    pub fn forget(&self, id: &str) {
        lock(&self.0).remove(id);
    }
}
