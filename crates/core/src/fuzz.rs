//! The API's JSON request bodies as a fuzz target: what `fuzz/` at the repository root runs
//! under libFuzzer (nightly) and `tests/fuzz_corpus.rs` replays from the seed corpus. Not part
//! of the crate's API.

use crate::api::{ApplyRequest, ScaleRequest, SyncRequest};

/// Any bytes as the body of each JSON call the API takes: read or refused, then checked as the
/// handlers check them, without a panic.
pub fn api_bodies(data: &[u8]) {
    if let Ok(apply) = serde_json::from_slice::<ApplyRequest>(data) {
        for spec in &apply.services {
            let _ = spec.validate();
            let _ = spec.version();
            let _ = spec.parsed_constraints();
        }
    }
    if let Ok(sync) = serde_json::from_slice::<SyncRequest>(data) {
        let _ = crate::api::validate_node_name(&sync.node.name);
        let kept = sync.events.iter().filter(|e| e.kind.from_agent()).count();
        assert!(kept <= sync.events.len());
    }
    let _ = serde_json::from_slice::<ScaleRequest>(data);
}
