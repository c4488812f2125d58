//! What a service's autoscaler learned from its past and the store keeps under
//! `autoscale-gaps/{service}`, so that a server restart, a change of leader or a change of the
//! service's `[autoscale]` settings does not fall back to the fixed settings for [`MIN_GAPS`]
//! more spells (80 minutes of a caller every ten):
//! - the idle gaps a `min = 0` service's learned keep-alive (`idle_timeout = "auto"`) is
//!   planned from ([`ebb_autoscaler::KeepAlive`]);
//! - the dips of the recommendation a learned scale-down delay (`scale_down_delay = "auto"`)
//!   is chosen from ([`ebb_autoscaler::Dips`]);
//! - the measured start times both are learned for: a plan learned for the assumed 30 s would
//!   price a cold start at 330 s and bridge gaps that a 1 s start releases; bridged, no cold
//!   start would come to measure the start again.
//!
//! At most [`GAPS_KEPT`] lengths of each kind (the dips of every level, and of each octave of
//! levels) in milliseconds, about 1 KB a kind, written after a new one at most once a
//! [`WRITE_EVERY`], and at once when the settings change or the autoscaler
//! stops: what the last minute learned is what a crash or a lost leadership can lose. They carry
//! the service's incarnation (its spec key's create revision): a service deleted and deployed
//! again under the same name learns afresh. The key keeps its first name (it held the gaps
//! alone) so that what earlier versions kept is read.
//!
//! [`MIN_GAPS`]: ebb_autoscaler::MIN_GAPS
//! [`GAPS_KEPT`]: ebb_autoscaler::GAPS_KEPT

use crate::state::keys;
use ebb_autoscaler::State;
use ebb_store::{Expect, KvStore, StoreError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Least time between two writes of what a service learned: a minute, as the forecast's
/// history.
pub const WRITE_EVERY: Duration = Duration::from_secs(60);

/// Largest stored value read: 32 KiB, more than twice what the most that is kept takes
/// ([`GAPS_KEPT`] gaps, start times, and dips of every level and of each of [`DIP_BANDS`] bands,
/// at most 8 bytes each), so that a corrupted value is not decoded whole.
///
/// [`DIP_BANDS`]: ebb_autoscaler::DIP_BANDS
///
/// [`GAPS_KEPT`]: ebb_autoscaler::GAPS_KEPT
const MAX_VALUE: usize = 32 * 1024;

/// What a service learned, as stored.
#[derive(Debug, Serialize, Deserialize)]
struct Learned {
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
    /// The dips of the recommendation at every level, in milliseconds, oldest first (absent in
    /// values kept before they were).
    #[serde(default)]
    dips_ms: Vec<u64>,
    /// The dips of each band of levels (index `b` for `2^b ..= 2^(b+1) - 1` instances), in
    /// milliseconds, oldest first.
    #[serde(default)]
    dip_bands_ms: Vec<Vec<u64>>,
}

/// Restores what `service`'s `incarnation` learned, as kept, into `state`; returns how many
/// gaps and dips.
/// A value that does not decode is skipped with a warning and overwritten at the next write:
/// the fixed settings apply until new spells are learned, as on a first start. What an earlier
/// service of the same name learned is deleted.
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
        tracing::warn!(key = %kv.key, bytes = kv.value.len(), "autoscaler: what a service learned is too large to read; skipped");
        return Ok(0);
    }
    match keys::decode::<Learned>(&kv) {
        Ok(g) if g.incarnation != 0 && g.incarnation != incarnation => {
            // Best effort: the first write of this service's own gaps replaces them anyway.
            if let Err(e) = store.delete(&kv.key, Expect::ModRevision(kv.mod_revision)) {
                tracing::warn!(key = %kv.key, "autoscaler: what an earlier service of the same name learned is not deleted: {e}");
            }
            Ok(0)
        }
        Ok(g) => {
            let starts = g.starts_ms.into_iter().map(Duration::from_millis);
            state.start_times_mut().restore(starts);
            let before = state.keep_alive().gaps() + state.dips().dips();
            let gaps = g.gaps_ms.into_iter().map(Duration::from_millis);
            state.keep_alive_mut().restore(gaps);
            let dips = g.dips_ms.into_iter().map(Duration::from_millis);
            let bands = g.dip_bands_ms.into_iter();
            let bands = bands.map(|b| b.into_iter().map(Duration::from_millis));
            state.dips_mut().restore(dips, bands);
            Ok(state.keep_alive().gaps() + state.dips().dips() - before)
        }
        Err(e) => {
            tracing::warn!(key = %kv.key, error = %e, "autoscaler: what a service learned does not decode; skipped");
            Ok(0)
        }
    }
}

/// Writes the gaps, dips and start times `state` remembers as those of `service`'s
/// `incarnation`.
pub fn keep(
    store: &dyn KvStore,
    service: &str,
    incarnation: u64,
    state: &State,
) -> Result<(), StoreError> {
    let value = Learned {
        incarnation,
        gaps_ms: millis(state.keep_alive().gap_lengths()),
        starts_ms: millis(state.start_times().times()),
        dips_ms: millis(state.dips().dip_lengths()),
        dip_bands_ms: (0..ebb_autoscaler::DIP_BANDS)
            .map(|b| millis(state.dips().band_lengths(b)))
            .collect(),
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

/// What `state` noted of what is kept here: it changes with every new gap, dip or start time.
pub fn noted(state: &State) -> u64 {
    state.keep_alive().gaps_noted() + state.dips().dips_noted() + state.start_times().noted()
}

/// Deletes what `service` learned (it is gone, or no longer learns from its past).
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
    fn kept_dips_come_back_with_the_gaps_and_values_kept_before_dips_read_as_none() {
        let (_dir, store) = store();
        let mut seen = learned(3_000, 250);
        let dips = [1, 4, 9, 30, 2, 7, 3, 11].map(Duration::from_secs);
        let bands = [vec![], vec![Duration::from_secs(5)], dips[..3].to_vec()];
        seen.dips_mut().restore(dips, bands.clone());
        keep(&store, "web", 1, &seen).unwrap();
        let mut restored = State::default();
        assert_eq!(
            load(&store, "web", 1, &mut restored).unwrap(),
            18,
            "ten gaps, eight dips"
        );
        assert!(restored.dips().dip_lengths().eq(dips));
        for (b, band) in bands.iter().enumerate() {
            assert!(restored.dips().band_lengths(b).eq(band.iter().copied()));
        }
        assert_eq!(noted(&restored), 19, "and a start");

        let key = keys::autoscale_gaps("web");
        store
            .put(
                &key,
                b"{\"gaps_ms\": [3000], \"incarnation\": 1}",
                Expect::Any,
            )
            .unwrap();
        let mut older = State::default();
        assert_eq!(load(&store, "web", 1, &mut older).unwrap(), 1);
        assert_eq!(older.dips().dips(), 0);
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
