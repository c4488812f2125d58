//! `ebb deploy --dry-run`: whether the instances a deploy would start fit the cluster as it is,
//! asked of the same placer the controller uses, on a picture of its own (no pass runs, and
//! nothing is reserved or written).

use super::placer::Placer;
use crate::state::keys::{self, Versioned};
use crate::Server;
use ebb_core::api::NodeInfo;
use ebb_core::{Assignment, ServiceSpec};
use ebb_store::StoreError;
use std::time::Instant;

/// For each `(spec, n)`, places `n` new instances of `spec` in turn (each taking its room, as
/// a rollout's or a scale-up's would) beside `assignments` (the store's, read at `revision`);
/// says, per service that runs out of room, how many would not fit and why.
pub fn unplaceable(
    server: &Server,
    (assignments, revision): (&[Versioned<Assignment>], u64),
    wanted: &[(&ServiceSpec, u32)],
) -> Result<Vec<String>, StoreError> {
    let store = server.store();
    let (kvs, _) = store.list(keys::NODES)?;
    let nodes: Vec<NodeInfo> = kvs.iter().map(keys::decode).collect::<Result<_, _>>()?;
    let node_drains = keys::node_drains(store)?;
    let now = Instant::now();
    let states = server
        .nodes()
        .states(now, now.saturating_duration_since(server.liveness_since()))
        .draining(node_drains.keys().cloned());
    let statuses = server.statuses();
    let mut placer = Placer::new(&nodes, &states, assignments, &statuses, revision);
    let mut problems = Vec::new();
    for (spec, n) in wanted {
        for placed in 0..*n {
            if let Err(why) = placer.pick(spec, None) {
                problems.push(format!(
                    "{}: {} of {n} new instances would not fit: {why}",
                    spec.name,
                    n - placed
                ));
                break;
            }
        }
    }
    Ok(problems)
}
