//! What one pass decided: the store writes (applied in one transaction), the events, and
//! what the server keeps in memory about it.

use crate::state::keys::{self, DrainRecord, NodeDrain, Versioned};
use ebb_core::api::MigrationView;
use ebb_core::hash::{splitmix64_mix, SPLITMIX64_GAMMA};
use ebb_core::Event;
use ebb_store::{Expect, Op};
use std::collections::{BTreeMap, HashMap};

use super::Recheck;

/// How long a drained instance is re-checked every [`DRAIN_RECHECK`](super::DRAIN_RECHECK) before falling back to
/// the resync: long enough for ordinary requests in flight to finish.
pub const FAST_DRAIN_MS: u64 = 5_000;

/// The decisions of one pass, made at `now_ms`.
#[derive(Debug, Default)]
pub struct Plan {
    /// When the pass decided (wall clock): the time in its records and events.
    pub now_ms: u64,
    /// Store writes, applied together or not at all.
    pub ops: Vec<Op>,
    /// Events, recorded once the writes landed.
    pub events: Vec<Event>,
    /// Instances whose status the server forgets once the writes landed.
    pub forgotten: Vec<String>,
    /// A drain was started in this pass.
    pub draining: bool,
    /// Services with an instance that no node could take, and why.
    pub pending: BTreeMap<String, String>,
    /// How many instances of each service no node could take in this pass (what preemption
    /// makes room for).
    pub unplaced: BTreeMap<String, u32>,
    /// Moves that ended in this pass.
    pub moved: Vec<MigrationView>,
    /// When the next pass is needed besides store changes.
    pub recheck: Recheck,
    /// What the writes change in the leader's task book, applied once they landed.
    pub book: Vec<crate::controllers::jobs::BookChange>,
    /// Each task placed: its job's queue and how long it waited since it could run, in ms;
    /// counted for Prometheus once the writes landed.
    pub queue_waits: Vec<(String, u64)>,
    /// The next new instance's id comes from this SplitMix64 state.
    id_state: u64,
}

impl Plan {
    /// An empty plan made at `now_ms`, new instance ids drawn from `id_seed`.
    pub fn new(now_ms: u64, id_seed: u64) -> Plan {
        Plan {
            now_ms,
            id_state: id_seed,
            ..Plan::default()
        }
    }

    /// Asks the node to stop `a` (no event: callers say why in their own words).
    pub fn request_stop(&mut self, a: &Versioned<ebb_core::Assignment>) {
        self.request_stop_for(a, None);
    }

    /// [`Plan::request_stop`] of a task stopped to make room (`who`: a preemptor, a drain),
    /// so that its end is recorded as that, queued again and not a failure.
    pub fn request_stop_for(&mut self, a: &Versioned<ebb_core::Assignment>, who: Option<String>) {
        let mut stopped = a.value.clone();
        stopped.desired = ebb_core::DesiredState::Stop;
        if let Some(task) = stopped.task.as_mut().filter(|_| who.is_some()) {
            task.preempted_by = who;
        }
        self.ops.push(Op::put(
            keys::instance(&stopped.id),
            keys::encode(&stopped),
            Expect::ModRevision(a.mod_revision),
        ));
    }

    /// Deletes instance `a` and its status, and forgets the status once the writes land.
    pub fn forget(&mut self, a: &Versioned<ebb_core::Assignment>) {
        self.forget_id(&a.value.id, Expect::ModRevision(a.mod_revision));
    }

    /// [`Plan::forget`] by id, its assignment deleted if `expect` holds.
    pub fn forget_id(&mut self, id: &str, expect: Expect) {
        self.ops.push(Op::delete(keys::instance(id), expect));
        self.ops.push(Op::delete(keys::status(id), Expect::Any));
        self.forgotten.push(id.to_string());
    }

    /// A new instance id of `service`: `web-1a2b3c4d`, 32 bits of a stream seeded at random
    /// per pass; the store's `Expect::Absent` refuses a (rare) repeat.
    pub fn new_instance_id(&mut self, service: &str) -> String {
        self.id_state = self.id_state.wrapping_add(SPLITMIX64_GAMMA);
        let bits = splitmix64_mix(self.id_state) as u32;
        format!("{service}-{bits:08x}")
    }
}

/// When the next pass is needed: drains end on in-flight counts and deadlines, which the store
/// does not see. Most drains end within milliseconds, so young ones are looked at again soon
/// ([`DRAIN_RECHECK`](super::DRAIN_RECHECK)); one that waits on a slow request falls back to the resync.
pub fn recheck(
    drains: &HashMap<String, Versioned<DrainRecord>>,
    node_drains: &BTreeMap<String, Versioned<NodeDrain>>,
    started_a_drain: bool,
    now_ms: u64,
) -> Recheck {
    let young =
        |d: &Versioned<DrainRecord>| now_ms.saturating_sub(d.value.since_ms) < FAST_DRAIN_MS;
    if started_a_drain || drains.values().any(young) {
        Recheck::Soon
    } else if !drains.is_empty() || node_drains.values().any(|d| d.value.done_ms.is_none()) {
        Recheck::EverySecond
    } else {
        Recheck::OnChange
    }
}
