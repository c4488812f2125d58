//! Nodes the server has heard from, and when: liveness lives in memory (a heartbeat every
//! second must not write to disk), the node's description in the store.

use ebb_core::api::NodeInfo;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A node silent this long is not given new instances (DESIGN.md: heartbeat 1 s, down after 3 s).
pub const NODE_DOWN_AFTER: Duration = Duration::from_secs(3);

#[derive(Default)]
pub struct NodeRegistry {
    seen: Mutex<HashMap<String, (NodeInfo, Instant)>>,
}

impl NodeRegistry {
    /// Records a heartbeat; returns whether the node is new or its description changed.
    pub fn heartbeat(&self, info: &NodeInfo, now: Instant) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let changed = seen.get(&info.name).is_none_or(|(old, _)| old != info);
        seen.insert(info.name.clone(), (info.clone(), now));
        changed
    }

    /// Names of nodes heard from within [`NODE_DOWN_AFTER`], sorted.
    pub fn live(&self, now: Instant) -> Vec<String> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<String> = seen
            .iter()
            .filter(|(_, (_, at))| now.saturating_duration_since(*at) < NODE_DOWN_AFTER)
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }

    /// How resources are enforced on each live node, for `ebb status`.
    pub fn enforcement(&self) -> Option<String> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<String> = seen
            .values()
            .map(|(info, _)| format!("{}: {}", info.name, info.enforcement))
            .collect();
        all.sort();
        (!all.is_empty()).then(|| all.join("; "))
    }
}
