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
//! At most [`GAPS_KEPT`] lengths of each kind (gaps in milliseconds; dips in whole seconds with
//! the levels each stands for, of every level and of each octave of levels), 24 KB at most,
//! and only what the service's
//! settings learn. A new gap or start time of a learned keep-alive is written within a
//! [`WRITE_EVERY`], new dips alone within a [`DIPS_WRITE_EVERY`], and everything at once when
//! the settings change or the autoscaler stops: a crash or a lost leadership loses at most the
//! last minute's gaps and the last ten minutes' dips. They carry
//! the service's incarnation (its spec key's create revision): a service deleted and deployed
//! again under the same name learns afresh. The key keeps its first name (it held the gaps
//! alone) so that what earlier versions kept is read.
//!
//! [`MIN_GAPS`]: ebb_autoscaler::MIN_GAPS
//! [`GAPS_KEPT`]: ebb_autoscaler::GAPS_KEPT

use crate::state::keys;
use ebb_autoscaler::{Dip, State, DIP_BANDS};
use ebb_core::autoscale::{AutoscaleSpec, ScalePolicy};
use ebb_store::{Expect, KvStore, StoreError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Least time between two writes of what a learned keep-alive depends on (its idle gaps and the
/// start times): a minute. Gaps are rare (eight take 80 minutes of a caller every ten), so
/// each is worth keeping soon.
pub const WRITE_EVERY: Duration = Duration::from_secs(60);

/// Least time between two writes of what only a learned scale-down delay depends on (the dips,
/// and the start times of a service that does not go to zero): ten minutes, as the forecast's
/// history. Bursty load makes dips by the hundred an hour, and what a crash loses of them (ten
/// minutes of the 128 rises an octave keeps) changes the delay little; written every minute,
/// every autoscaled service would put a value a minute through the store.
pub const DIPS_WRITE_EVERY: Duration = Duration::from_secs(600);

/// Largest stored value read: 32 KiB, above the most that is kept (about 24 KB: [`GAPS_KEPT`]
/// gaps in milliseconds of up to 20 digits, a few start times, and the dips of every level and
/// of each of [`DIP_BANDS`] octaves, [`GAPS_KEPT`] each in seconds of at most 4 digits with
/// levels of at most 5), so that a corrupted value is not decoded whole.
///
/// [`DIP_BANDS`]: ebb_autoscaler::DIP_BANDS
/// [`GAPS_KEPT`]: ebb_autoscaler::GAPS_KEPT
const MAX_VALUE: usize = 32 * 1024;

/// What a service learned, as stored.
#[derive(Debug, Serialize, Deserialize)]
struct Learned {
    /// The idle gaps, in milliseconds, oldest first (empty when no keep-alive is learned).
    gaps_ms: Vec<u64>,
    /// The incarnation of the service that learned them (the create revision of its spec's
    /// key); 0 in gaps kept before incarnations were recorded, which any incarnation reads.
    #[serde(default)]
    incarnation: u64,
    /// The start times measured, in milliseconds, oldest first (absent in gaps kept before
    /// they were).
    #[serde(default)]
    starts_ms: Vec<u64>,
    /// The dips of the recommendation at every level, in whole seconds (they are at most an
    /// hour, measured tick by tick), oldest first; absent in values kept before they were, and
    /// empty when no delay is learned.
    #[serde(default)]
    dips_s: Vec<u32>,
    /// The dips of each octave of levels (index `b` for `2^b ..= 2^(b+1) - 1` instances), in
    /// whole seconds, oldest first.
    #[serde(default)]
    dip_bands_s: Vec<Vec<u32>>,
    /// How many levels each of `dips_s` stands for (the levels of one band that one rise
    /// regained), in the same order; absent in values kept before they were, whose dips were
    /// kept level by level and read as one level each.
    #[serde(default)]
    dip_levels: Vec<u32>,
    /// How many levels each of `dip_bands_s` stands for, band by band, in the same order.
    #[serde(default)]
    dip_band_levels: Vec<Vec<u32>>,
}

/// Whether `spec` learns a keep-alive: `idle_timeout = "auto"` with a lower bound of 0, always
/// or in a schedule window (a service that never goes to zero has no use for its gaps, and
/// keeping them would write to the store for nothing).
pub fn learns_keep_alive(spec: &AutoscaleSpec) -> bool {
    let windows_reach_zero = match &spec.policy {
        ScalePolicy::Schedule { windows } => windows.iter().any(|w| w.min == 0),
        _ => false,
    };
    spec.idle_auto && (spec.min == 0 || windows_reach_zero)
}

/// Whether `spec` learns a scale-down delay (`scale_down_delay = "auto"`, the default).
pub fn learns_delay(spec: &AutoscaleSpec) -> bool {
    spec.scale_down_auto
}

/// Whether `spec` learns anything kept here: a keep-alive or a scale-down delay.
pub fn learns(spec: &AutoscaleSpec) -> bool {
    learns_keep_alive(spec) || learns_delay(spec)
}

/// Restores what `service`'s `incarnation` learned, as kept, into `state`; returns how many
/// gaps and dips.
/// A value that does not decode is skipped with a warning and overwritten at the next write:
/// the service is treated as on a first start until new spells are learned. What an earlier
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
        Ok(g) => Ok(restore(g, state)),
        Err(e) => {
            tracing::warn!(key = %kv.key, error = %e, "autoscaler: what a service learned does not decode; skipped");
            Ok(0)
        }
    }
}

/// Restores a decoded value into `state`; returns how many gaps and dips.
fn restore(g: Learned, state: &mut State) -> usize {
    let starts = g.starts_ms.into_iter().map(Duration::from_millis);
    state.start_times_mut().restore(starts);
    let before = state.keep_alive().gaps() + state.dips().dips();
    let gaps = g.gaps_ms.into_iter().map(Duration::from_millis);
    state.keep_alive_mut().restore(gaps);
    let band_levels = g
        .dip_band_levels
        .into_iter()
        .chain(std::iter::repeat(Vec::new()));
    let bands = g.dip_bands_s.into_iter().zip(band_levels);
    let bands = bands.map(|(lengths, levels)| dips(lengths, levels));
    state
        .dips_mut()
        .restore(dips(g.dips_s, g.dip_levels), bands);
    // Saturating: restored dips may push out heavier ones the state had.
    (state.keep_alive().gaps() + state.dips().dips()).saturating_sub(before)
}

/// Dips of `lengths` in seconds, standing for `levels` each in order (one where none is kept).
fn dips(lengths: Vec<u32>, levels: Vec<u32>) -> impl Iterator<Item = Dip> {
    let levels = levels.into_iter().chain(std::iter::repeat(1));
    let lengths = lengths.into_iter().map(|s| Duration::from_secs(s.into()));
    lengths
        .zip(levels)
        .map(|(length, levels)| Dip::new(length, levels))
}

/// Writes what `state` remembers that `spec` learns from (the gaps of a learned keep-alive,
/// the dips of a learned delay, and the start times of either) as what `service`'s
/// `incarnation` learned.
pub fn keep(
    store: &dyn KvStore,
    service: &str,
    incarnation: u64,
    spec: &AutoscaleSpec,
    state: &State,
) -> Result<(), StoreError> {
    let (keep_alive, delay) = (learns_keep_alive(spec), learns_delay(spec));
    let dips = state.dips();
    let (dips_s, dip_levels) = match delay {
        true => split(dips.all_dips()),
        false => Default::default(),
    };
    let (dip_bands_s, dip_band_levels) = match delay {
        true => (0..DIP_BANDS).map(|b| split(dips.band_dips(b))).unzip(),
        false => Default::default(),
    };
    let value = Learned {
        incarnation,
        gaps_ms: match keep_alive {
            true => millis(state.keep_alive().gap_lengths()),
            false => Vec::new(),
        },
        starts_ms: millis(state.start_times().times()),
        dips_s,
        dip_bands_s,
        dip_levels,
        dip_band_levels,
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

/// Dips as stored: their lengths in whole seconds, and the levels each stands for.
fn split(dips: impl Iterator<Item = Dip>) -> (Vec<u32>, Vec<u32>) {
    let seconds = |d: Duration| u32::try_from(d.as_secs_f64().round() as u64).unwrap_or(u32::MAX);
    dips.map(|d| (seconds(d.length), d.levels)).unzip()
}

/// What `state` noted since it was created of what `spec` learns, by what depends on it: each
/// count changes with every new spell or start time, and a change is kept within its interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Noted {
    /// Gaps and start times, when a keep-alive is learned ([`WRITE_EVERY`]).
    pub keep_alive: u64,
    /// Dips and start times, when a delay is learned ([`DIPS_WRITE_EVERY`]).
    pub delay: u64,
}

/// What `state` noted of what `spec` learns.
pub fn noted(spec: &AutoscaleSpec, state: &State) -> Noted {
    let starts = state.start_times().noted();
    Noted {
        keep_alive: match learns_keep_alive(spec) {
            true => state.keep_alive().gaps_noted() + starts,
            false => 0,
        },
        delay: match learns_delay(spec) {
            true => state.dips().dips_noted() + starts,
            false => 0,
        },
    }
}

/// Whether what was noted (`now_noted`) since what was kept (`kept`) is written, the last
/// write `since` ago (`None`: none yet): a change to the keep-alive's after [`WRITE_EVERY`], to
/// the delay's after [`DIPS_WRITE_EVERY`], any change at once when `now` (the state is about
/// to go).
pub fn write_due(kept: Noted, now_noted: Noted, since: Option<Duration>, now: bool) -> bool {
    let after = |every| now || since.is_none_or(|s| s >= every);
    (now_noted.keep_alive != kept.keep_alive && after(WRITE_EVERY))
        || (now_noted.delay != kept.delay && after(DIPS_WRITE_EVERY))
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
    fn with_gaps(gap_ms: u64, step_ms: u64) -> State {
        let mut state = State::default();
        let gaps = (0..10).map(|i| Duration::from_millis(gap_ms + i * step_ms));
        state.keep_alive_mut().restore(gaps);
        state.start_times_mut().restore([Duration::from_secs(1)]);
        state
    }

    /// A `min = 0` service with the defaults: it learns a keep-alive and a delay.
    fn at_zero() -> AutoscaleSpec {
        AutoscaleSpec::new(0, 3, ebb_core::autoscale::ScaleTargets::default())
    }

    /// A service that never goes to zero: it learns a delay alone.
    fn above_zero() -> AutoscaleSpec {
        AutoscaleSpec::new(1, 3, ebb_core::autoscale::ScaleTargets::default())
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
        let mut seen = with_gaps(20_000, 30_000);
        keep(&store, "web", 1, &at_zero(), &seen).unwrap();

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
        let ten_gaps_and_a_start = Noted {
            keep_alive: 11,
            delay: 1,
        };
        assert_eq!(noted(&at_zero(), &restored), ten_gaps_and_a_start);

        let mut other = State::default();
        assert_eq!(load(&store, "other", 1, &mut other).unwrap(), 0);
        forget(&store, "web").unwrap();
        let mut again = State::default();
        assert_eq!(load(&store, "web", 1, &mut again).unwrap(), 0);
    }

    #[test]
    fn kept_dips_come_back_with_the_gaps_and_values_kept_before_dips_read_as_none() {
        let (_dir, store) = store();
        let mut seen = with_gaps(3_000, 250);
        // Eight rises, one of which regained four levels: eleven dips of a level.
        let levels = [1, 1, 4, 1, 1, 1, 1, 1];
        let dips: Vec<_> = [1, 4, 9, 30, 2, 7, 3, 11]
            .into_iter()
            .zip(levels)
            .map(|(s, levels)| Dip::new(Duration::from_secs(s), levels))
            .collect();
        let bands = [
            vec![],
            vec![Dip::new(Duration::from_secs(5), 2)],
            dips[..3].to_vec(),
        ];
        seen.dips_mut().restore(dips.clone(), bands.clone());
        keep(&store, "web", 1, &at_zero(), &seen).unwrap();
        let mut restored = State::default();
        assert_eq!(
            load(&store, "web", 1, &mut restored).unwrap(),
            21,
            "ten gaps, eleven dips"
        );
        assert!(restored.dips().all_dips().eq(dips.iter().copied()));
        for (b, band) in bands.iter().enumerate() {
            assert!(restored.dips().band_dips(b).eq(band.iter().copied()));
        }
        let and_a_start = Noted {
            keep_alive: 11,
            delay: 9,
        };
        assert_eq!(noted(&at_zero(), &restored), and_a_start);

        // A service that never goes to zero keeps its dips and start times, not its gaps.
        keep(&store, "api", 1, &above_zero(), &seen).unwrap();
        let mut api = State::default();
        assert_eq!(load(&store, "api", 1, &mut api).unwrap(), 11, "eleven dips");
        assert_eq!(api.keep_alive().gaps(), 0);
        let dips_and_a_start = Noted {
            keep_alive: 0,
            delay: 9,
        };
        assert_eq!(noted(&above_zero(), &api), dips_and_a_start);

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

        // Kept level by level, before a dip stood for the levels a rise regained: one each.
        let level_by_level = br#"{"gaps_ms": [], "incarnation": 1, "dips_s": [4, 9],
            "dip_bands_s": [[], [4, 9]]}"#;
        store.put(&key, level_by_level, Expect::Any).unwrap();
        let mut kept = State::default();
        assert_eq!(load(&store, "web", 1, &mut kept).unwrap(), 2);
        let one_each = [4, 9].map(|s| Dip::new(Duration::from_secs(s), 1));
        assert!(kept.dips().all_dips().eq(one_each));
        assert!(kept.dips().band_dips(1).eq(one_each));
    }

    #[test]
    fn the_most_that_is_kept_is_read_back() {
        // Every list full, of the longest dips standing for the most levels.
        let (_dir, store) = store();
        let mut most = with_gaps(u64::MAX, 0);
        let dip = Dip::new(ebb_core::autoscale::MAX_SCALE_WINDOW, u32::MAX);
        let full = vec![dip; ebb_autoscaler::GAPS_KEPT];
        let gaps = (0..ebb_autoscaler::GAPS_KEPT).map(|_| Duration::from_millis(u64::MAX));
        most.keep_alive_mut().restore(gaps);
        let starts = (1..=100).map(|s| ebb_autoscaler::MAX_START_TIME - Duration::from_millis(s));
        most.start_times_mut().restore(starts);
        most.dips_mut().restore(full.clone(), vec![full; DIP_BANDS]);
        keep(&store, "web", 1, &at_zero(), &most).unwrap();
        let kv = store.get(&keys::autoscale_gaps("web")).unwrap().unwrap();
        assert!(kv.value.len() <= MAX_VALUE, "{} bytes", kv.value.len());
        let mut restored = State::default();
        let read = load(&store, "web", 1, &mut restored).unwrap();
        assert_eq!(read, most.keep_alive().gaps() + most.dips().dips());
    }

    #[test]
    fn gaps_of_an_earlier_service_of_the_same_name_are_deleted_and_older_gaps_read() {
        let (_dir, store) = store();
        keep(&store, "web", 1, &at_zero(), &with_gaps(3_000, 250)).unwrap();
        // Deleted and deployed again: incarnation 9.
        let mut state = State::default();
        assert_eq!(load(&store, "web", 9, &mut state).unwrap(), 0);
        assert_eq!(noted(&at_zero(), &state), Noted::default());
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
            assert_eq!(noted(&at_zero(), &state), Noted::default());
        }
    }

    #[test]
    fn a_keep_alive_s_spells_are_written_within_a_minute_and_dips_alone_within_ten() {
        let kept = Noted {
            keep_alive: 5,
            delay: 5,
        };
        let minute = Some(WRITE_EVERY);
        let new_gap = Noted {
            keep_alive: 6,
            ..kept
        };
        let new_dip = Noted { delay: 6, ..kept };
        assert!(!write_due(kept, kept, None, true), "nothing new");
        assert!(write_due(kept, new_gap, minute, false));
        assert!(!write_due(
            kept,
            new_gap,
            Some(Duration::from_secs(59)),
            false
        ));
        assert!(!write_due(kept, new_dip, minute, false));
        assert!(write_due(kept, new_dip, Some(DIPS_WRITE_EVERY), false));
        assert!(
            write_due(kept, new_dip, None, false),
            "the first since the read"
        );
        assert!(
            write_due(kept, new_dip, minute, true),
            "the state is about to go"
        );
    }

    #[test]
    fn only_services_that_learn_keep_what_they_learned() {
        assert!(learns_keep_alive(&at_zero()) && learns(&at_zero()));
        let fixed = AutoscaleSpec {
            idle_auto: false,
            scale_down_auto: false,
            ..at_zero()
        };
        assert!(!learns_keep_alive(&fixed) && !learns(&fixed));
        // A learned scale-down delay (the default) learns from the dips, whatever the lower
        // bound; a service that never goes to zero learns no keep-alive.
        assert!(!learns_keep_alive(&above_zero()) && learns_delay(&above_zero()));
        let fixed_delay = AutoscaleSpec {
            scale_down_auto: false,
            ..above_zero()
        };
        assert!(!learns(&fixed_delay));
    }
}
