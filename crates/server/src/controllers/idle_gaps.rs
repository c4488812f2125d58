//! The idle gaps a `min = 0` service's learned keep-alive (`idle_timeout = "auto"`) is planned
//! from ([`ebb_autoscaler::KeepAlive`]), kept in the store under `autoscale-gaps/{service}` so
//! that a server restart, a change of leader or a change of the service's `[autoscale]`
//! settings does not fall back to the fixed timeout for [`MIN_GAPS`] more gaps (80 minutes of a
//! caller every ten). At most [`GAPS_KEPT`] lengths in milliseconds, about 1 KB, written after a
//! new gap or start time at most once a [`WRITE_EVERY`], and at once when the settings change
//! or the autoscaler stops: the gaps of the last minute are what a crash or a lost leadership
//! can lose. The gaps carry the service's incarnation (its spec key's create revision): a service
//! deleted and deployed again under the same name learns afresh.
//!
//! The measured start times are kept with them: a plan is learned for a start time, and one
//! learned for the assumed 30 s would price a cold start at 330 s and bridge gaps that a 1 s
//! start releases; bridged, no cold start would come to measure the start again.
//!
//! [`MIN_GAPS`]: ebb_autoscaler::MIN_GAPS
//! [`GAPS_KEPT`]: ebb_autoscaler::GAPS_KEPT

use crate::state::keys;
use ebb_autoscaler::State;
use ebb_store::{Expect, KvStore, StoreError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Least time between two writes of a service's gaps: a minute, as the forecast's history.
pub const WRITE_EVERY: Duration = Duration::from_secs(60);

/// Largest stored value read: 16 KiB, several times what [`GAPS_KEPT`] lengths take, so that a
/// corrupted value is not decoded whole.
///
/// [`GAPS_KEPT`]: ebb_autoscaler::GAPS_KEPT
const MAX_VALUE: usize = 16 * 1024;

/// A service's gaps as stored.
#[derive(Debug, Serialize, Deserialize)]
struct Gaps {
    /// Lengths in milliseconds, oldest first.
    gaps_ms: Vec<u64>,
    /// The incarnation of the service that learned them (the create revision of its spec's
    /// key); 0 in gaps kept before incarnations were recorded, which any incarnation reads.
    #[serde(default)]
    incarnation: u64,
    /// The start times measured, in milliseconds, oldest first (absent in gaps kept before
    /// they were).
    #[serde(default)]
    starts_ms: Vec<u64>,
}

/// Restores the kept gaps and start times of `service`'s `incarnation` into `state`; returns
/// how many gaps.
/// Gaps that do not decode are skipped with a warning and overwritten at the next write: the
/// fixed timeout applies until new ones are learned, as on a first start. Gaps an earlier
/// service of the same name learned are deleted.
pub fn load(
    store: &dyn KvStore,
    service: &str,
    incarnation: u64,
    state: &mut State,
) -> Result<usize, StoreError> {
    let Some(kv) = store.get(&keys::autoscale_gaps(service))? else {
        return Ok(0);
    };
    if kv.value.len() > MAX_VALUE {
        tracing::warn!(key = %kv.key, bytes = kv.value.len(), "autoscaler: kept idle gaps too large; skipped");
        return Ok(0);
    }
    match keys::decode::<Gaps>(&kv) {
        Ok(g) if g.incarnation != 0 && g.incarnation != incarnation => {
            // Best effort: the first write of this service's own gaps replaces them anyway.
            if let Err(e) = store.delete(&kv.key, Expect::ModRevision(kv.mod_revision)) {
                tracing::warn!(key = %kv.key, "autoscaler: idle gaps of an earlier service of the same name not deleted: {e}");
            }
            Ok(0)
        }
        Ok(g) => {
            let starts = g.starts_ms.into_iter().map(Duration::from_millis);
            state.start_times_mut().restore(starts);
            let keep_alive = state.keep_alive_mut();
            let before = keep_alive.gaps();
            keep_alive.restore(g.gaps_ms.into_iter().map(Duration::from_millis));
            Ok(keep_alive.gaps() - before)
        }
        Err(e) => {
            tracing::warn!(key = %kv.key, error = %e, "autoscaler: kept idle gaps do not decode; skipped");
            Ok(0)
        }
    }
}

/// Writes the gaps and start times `state` remembers as those of `service`'s `incarnation`.
pub fn keep(
    store: &dyn KvStore,
    service: &str,
    incarnation: u64,
    state: &State,
) -> Result<(), StoreError> {
    let value = Gaps {
        incarnation,
        gaps_ms: millis(state.keep_alive().gap_lengths()),
        starts_ms: millis(state.start_times().times()),
    };
    store.put(
        &keys::autoscale_gaps(service),
        &keys::encode(&value),
        Expect::Any,
    )?;
    Ok(())
}

fn millis(lengths: impl Iterator<Item = Duration>) -> Vec<u64> {
    lengths
        .map(|g| u64::try_from(g.as_millis()).unwrap_or(u64::MAX))
        .collect()
}

/// What `state` noted of what is kept here: it changes with every new gap or start time.
pub fn noted(state: &State) -> u64 {
    state.keep_alive().gaps_noted() + state.start_times().noted()
}

/// Deletes `service`'s kept gaps (it is gone, or no longer learns a keep-alive).
pub fn forget(store: &dyn KvStore, service: &str) -> Result<(), StoreError> {
    store.delete(&keys::autoscale_gaps(service), Expect::Any)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::controllers::temp_store as store;

    /// A service's state with ten gaps from `gap_ms`, `step_ms` apart, and a start of 1 s
    /// measured.
    fn learned(gap_ms: u64, step_ms: u64) -> State {
        let mut state = State::default();
        let gaps = (0..10).map(|i| Duration::from_millis(gap_ms + i * step_ms));
        state.keep_alive_mut().restore(gaps);
        state.start_times_mut().restore([Duration::from_secs(1)]);
        state
    }

    fn plan(state: &mut State) -> Option<ebb_autoscaler::KeepAlivePlan> {
        let start = state.start_times().estimate();
        state.keep_alive_mut().plan(start)
    }

    #[test]
    fn kept_gaps_and_start_times_come_back_and_forgotten_ones_do_not() {
        let (_dir, store) = store();
        // Calls 20 s to 5 min apart, with no rhythm, on instances that start in a second:
        // released between calls. Planned for the assumed 30 s start (a cold start priced at
        // 330 s), every gap would be bridged, and no cold start would measure the start again.
        let mut seen = learned(20_000, 30_000);
        keep(&store, "web", 1, &seen).unwrap();

        let mut restored = State::default();
        assert_eq!(load(&store, "web", 1, &mut restored).unwrap(), 10);
        assert!(restored
            .keep_alive()
            .gap_lengths()
            .eq(seen.keep_alive().gap_lengths()));
        assert_eq!(restored.start_times().estimate(), Duration::from_secs(1));
        let kept = plan(&mut restored).expect("learned");
        assert_eq!(Some(kept), plan(&mut seen));
        assert!(kept.keep < Duration::from_secs(60), "{kept:?}");
        let assumed = ebb_autoscaler::ASSUMED_START_TIME;
        let bridged = restored.keep_alive_mut().plan(assumed).expect("learned");
        assert!(bridged.keep > Duration::from_secs(290), "{bridged:?}");
        assert_eq!(noted(&restored), 11, "ten gaps and a start");

        let mut other = State::default();
        assert_eq!(load(&store, "other", 1, &mut other).unwrap(), 0);
        forget(&store, "web").unwrap();
        let mut again = State::default();
        assert_eq!(load(&store, "web", 1, &mut again).unwrap(), 0);
    }

    #[test]
    fn gaps_of_an_earlier_service_of_the_same_name_are_deleted_and_older_gaps_read() {
        let (_dir, store) = store();
        keep(&store, "web", 1, &learned(3_000, 250)).unwrap();
        // Deleted and deployed again: incarnation 9.
        let mut state = State::default();
        assert_eq!(load(&store, "web", 9, &mut state).unwrap(), 0);
        assert_eq!(noted(&state), 0);
        let key = keys::autoscale_gaps("web");
        assert!(store.get(&key).unwrap().is_none(), "deleted");
        // Kept before incarnations and start times were recorded: read by any.
        store
            .put(&key, b"{\"gaps_ms\": [3000, 3100]}", Expect::Any)
            .unwrap();
        assert_eq!(load(&store, "web", 9, &mut state).unwrap(), 2);
    }

    #[test]
    fn gaps_that_do_not_decode_or_are_too_large_are_skipped() {
        let (_dir, store) = store();
        let huge = format!("{{\"gaps_ms\": [{}3000]}}", "3000,".repeat(10_000));
        for value in [&b"{\"gaps_ms\": \"x\"}"[..], huge.as_bytes()] {
            store
                .put(&keys::autoscale_gaps("web"), value, Expect::Any)
                .unwrap();
            let mut state = State::default();
            assert_eq!(load(&store, "web", 1, &mut state).unwrap(), 0);
            assert_eq!(noted(&state), 0);
        }
    }
}
