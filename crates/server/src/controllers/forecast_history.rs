//! The autoscaler's per-minute history of each service with a forecast
//! ([`ebb_autoscaler::History`]), kept in the store one UTC day per key
//! (`autoscale-history/{service}/{day}`) so that the forecast survives a server restart and a
//! change of leader. A day's key holds at most 1,440 means, about 9 KB. It is rewritten at most
//! once a [`WRITE_EVERY`] while its day runs, at once when the day ends, and when the service's
//! settings change or the autoscaler stops ([`write_due`]; a server that leads on etcd resigns
//! only after that last write). A crash or a lost leadership loses about the last ten minutes
//! of a 14-day history (twenty after a failed write). Written every minute, as first built, it
//! was 13 MB a day per service through the store, each write a revision etcd replicates.
//!
//! A day records the targets and policy its counts were asked under: counts under other
//! targets are in other units, so a changed spec starts afresh. It also records the service's
//! incarnation (its spec key's create revision), so that a service deleted and deployed again
//! under the same name, while no server ran or between two ticks, does not forecast from its
//! predecessor's days.

use crate::state::keys;
use ebb_autoscaler::{Forecaster, DAY_MINUTES, HISTORY_MINUTES};
use ebb_core::AutoscaleSpec;
use ebb_store::{Expect, KvStore, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::Duration;

/// Days kept: the autoscaler's history, and the day under way.
pub const KEPT_DAYS: i64 = HISTORY_MINUTES as i64 / DAY_MINUTES + 1;

/// Least time between two writes of a day while it runs: ten minutes. The forecast reads whole
/// earlier days, so the minutes a crash can lose cost it little, and the write volume is a
/// tenth of a write a minute.
pub const WRITE_EVERY: Duration = Duration::from_secs(600);

/// Whether the day `day` of a history whose newest minute is `newest` is written now, its last
/// write `since` ago (`None`: not written yet by this server): when the day has ended, a
/// [`WRITE_EVERY`] after the last write (or the first completed minute since the service was
/// tracked), or at once when `now` (the state is about to go).
pub fn write_due(day: i64, newest: Option<i64>, since: Option<Duration>, now: bool) -> bool {
    let ended = newest.is_some_and(|m| day_of(m) > day);
    now || ended || since.is_none_or(|s| s >= WRITE_EVERY)
}

/// One day of a service's history as stored.
#[derive(Debug, Serialize, Deserialize)]
struct Day {
    /// What the counts were asked under ([`basis`]).
    basis: String,
    /// The mean count of each minute of the day from 00:00 UTC; null where unseen.
    means: Vec<Option<f64>>,
    /// The incarnation of the service that recorded the day (the create revision of its spec's
    /// key); 0 in days kept before incarnations were recorded, which any incarnation reads.
    #[serde(default)]
    incarnation: u64,
}

/// What a recorded count depends on besides the load: the concurrency and rps targets and the
/// stable window (other targets and the policy's other settings record nothing).
pub fn basis(spec: &AutoscaleSpec) -> String {
    let basis = (
        spec.targets.concurrency,
        spec.targets.rps,
        spec.stable_window.as_millis() as u64,
    );
    serde_json::to_string(&basis).unwrap_or_default()
}

/// The day (since the Unix epoch, UTC) of `minute`.
pub fn day_of(minute: i64) -> i64 {
    minute.div_euclid(DAY_MINUTES)
}

/// Restores the kept days of `service`'s `incarnation`, up to `today` and asked under `basis`,
/// into a fresh `forecaster`, and deletes the days it cannot use (too old, under another basis,
/// or recorded by an earlier service of the same name: kept while no server tracked it). A day
/// that does not decode is skipped with a warning: a forecast with a day less is still a
/// forecast. Returns the days restored.
pub fn load(
    store: &dyn KvStore,
    service: &str,
    incarnation: u64,
    today: i64,
    basis: &str,
    forecaster: &mut Forecaster,
) -> Result<usize, StoreError> {
    let (kvs, _) = store.list(&keys::autoscale_history_prefix(service))?;
    let mut days: Vec<(i64, Day)> = Vec::new();
    for kv in &kvs {
        let day = kv
            .key
            .rsplit('/')
            .next()
            .and_then(|d| d.parse::<i64>().ok());
        match (day, keys::decode::<Day>(kv)) {
            (Some(day), Ok(d))
                if day > today - KEPT_DAYS
                    && day <= today
                    && d.basis == basis
                    && (d.incarnation == 0 || d.incarnation == incarnation) =>
            {
                days.push((day, d))
            }
            (Some(day), Ok(_)) if day <= today => {
                // Best effort, and only the value read: a failed delete must not cost the
                // restore of the days that are usable (the key is read and skipped again).
                if let Err(e) = store.delete(&kv.key, Expect::ModRevision(kv.mod_revision)) {
                    tracing::warn!(key = %kv.key, "autoscaler: an unusable day of history not deleted: {e}");
                }
            }
            (Some(_), Ok(_)) => {}
            (_, result) => tracing::warn!(
                key = %kv.key,
                error = ?result.err(),
                "autoscaler: a kept day of history does not decode; skipped"
            ),
        }
    }
    days.sort_by_key(|(day, _)| *day);
    for (day, d) in &days {
        forecaster.history_mut().restore_day(*day, &d.means);
    }
    Ok(days.len())
}

/// Writes the day `day` of `service`'s `incarnation` as `forecaster` holds it, asked under
/// `basis`, and deletes the day that has just left those kept.
pub fn keep(
    store: &dyn KvStore,
    service: &str,
    incarnation: u64,
    day: i64,
    basis: &str,
    forecaster: &Forecaster,
) -> Result<(), StoreError> {
    let value = Day {
        basis: basis.to_string(),
        means: forecaster.history().day(day),
        incarnation,
    };
    store.put(
        &keys::autoscale_history(service, day),
        &keys::encode(&value),
        Expect::Any,
    )?;
    store.delete(
        &keys::autoscale_history(service, day - KEPT_DAYS),
        Expect::Any,
    )?;
    Ok(())
}

/// Deletes every kept day of `service` (it is no longer autoscaled with a forecast). Only the
/// keys are read.
pub fn forget(store: &dyn KvStore, service: &str) -> Result<(), StoreError> {
    for key in store.list_keys(&keys::autoscale_history_prefix(service))? {
        store.delete(&key, Expect::Any)?;
    }
    Ok(())
}

/// The services with kept days, from the keys alone (a day's value is about 9 KB, and a sweep
/// of every service's fourteen days must not read them).
pub fn kept_services(store: &dyn KvStore) -> Result<BTreeSet<String>, StoreError> {
    let kept = store.list_keys(keys::AUTOSCALE_HISTORY)?;
    Ok(kept
        .iter()
        .filter_map(|key| key.strip_prefix(keys::AUTOSCALE_HISTORY)?.rsplit_once('/'))
        .map(|(service, _day)| service.to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebb_store::SqliteStore;

    use crate::controllers::temp_store as store;

    /// A store holding web's day 3, one minute of it seen (00:10, 4 instances), kept under
    /// `basis`.
    fn one_day_kept(basis: &str) -> (tempfile::TempDir, SqliteStore) {
        let (dir, store) = store();
        let mut f = Forecaster::default();
        f.history_mut().restore_day(3, &day_with(10, 4.0));
        keep(&store, "web", 1, 3, basis, &f).unwrap();
        (dir, store)
    }

    #[test]
    fn kept_days_come_back_and_old_ones_go() {
        let (_dir, store) = store();
        let mut f = Forecaster::default();
        // One observed minute a day for 20 days, at 09:00, with the day's number as its count.
        for day in 0..20 {
            f.history_mut().restore_day(day, &day_with(540, day as f64));
            keep(&store, "web", 1, day, "b", &f).unwrap();
        }
        keep(&store, "other", 1, 19, "b", &f).unwrap();
        let (kvs, _) = store.list(&keys::autoscale_history_prefix("web")).unwrap();
        assert_eq!(kvs.len(), KEPT_DAYS as usize, "days 4..=19");

        let mut restored = Forecaster::default();
        let days = load(&store, "web", 1, 19, "b", &mut restored).unwrap();
        assert_eq!(days, KEPT_DAYS as usize);
        for day in 6..20 {
            let m = day * DAY_MINUTES + 540;
            assert_eq!(restored.history().get(m), f.history().get(m), "day {day}");
        }
        forget(&store, "web").unwrap();
        let (kvs, _) = store.list(&keys::autoscale_history_prefix("web")).unwrap();
        assert!(kvs.is_empty());
        let (kvs, _) = store
            .list(&keys::autoscale_history_prefix("other"))
            .unwrap();
        assert_eq!(kvs.len(), 1, "another service's history stays");
    }

    #[test]
    fn days_kept_under_other_targets_are_not_restored() {
        let mut spec = AutoscaleSpec::new(1, 10, Default::default());
        spec.targets.concurrency = Some(10.0);
        let (_dir, store) = one_day_kept(&basis(&spec));
        let mut restored = Forecaster::default();
        assert_eq!(
            load(&store, "web", 1, 3, &basis(&spec), &mut restored).unwrap(),
            1
        );
        spec.targets.concurrency = Some(5.0);
        let mut restored = Forecaster::default();
        assert_eq!(
            load(&store, "web", 1, 3, &basis(&spec), &mut restored).unwrap(),
            0
        );
        assert_eq!(restored.history().observed(), 0);
    }

    #[test]
    fn days_of_an_earlier_service_of_the_same_name_are_deleted_and_older_days_read() {
        // Kept by incarnation 1; the service was deleted and deployed again (incarnation 9).
        let (_dir, store) = one_day_kept("b");
        let mut restored = Forecaster::default();
        assert_eq!(load(&store, "web", 9, 3, "b", &mut restored).unwrap(), 0);
        assert_eq!(restored.history().observed(), 0);
        let (kvs, _) = store.list(&keys::autoscale_history_prefix("web")).unwrap();
        assert!(kvs.is_empty(), "the predecessor's day is deleted");
        // A day kept before incarnations were recorded is read by any.
        let legacy = format!(
            "{{\"basis\":\"b\",\"means\":{}}}",
            serde_json::to_string(&day_with(10, 4.0)).unwrap()
        );
        let key = keys::autoscale_history("web", 3);
        store.put(&key, legacy.as_bytes(), Expect::Any).unwrap();
        assert_eq!(load(&store, "web", 9, 3, "b", &mut restored).unwrap(), 1);
        assert_eq!(restored.history().get(3 * DAY_MINUTES + 10), Some(4.0));
    }

    #[test]
    fn a_running_day_is_written_every_ten_minutes_an_ended_one_at_once() {
        let today = 20 * DAY_MINUTES;
        let minute = |m: i64| Some(today + m);
        let (soon, later) = (Some(Duration::from_secs(60)), Some(WRITE_EVERY));
        assert!(
            !write_due(20, minute(600), soon, false),
            "written a minute ago"
        );
        assert!(write_due(20, minute(600), later, false));
        assert!(
            write_due(20, minute(600), soon, true),
            "the state is about to go"
        );
        assert!(
            write_due(20, minute(DAY_MINUTES), soon, false),
            "the day ended"
        );
        assert!(
            write_due(20, minute(600), None, false),
            "not written by this server yet"
        );
    }

    #[test]
    fn a_day_that_does_not_decode_is_skipped() {
        let (_dir, store) = one_day_kept("b");
        store
            .put(
                &keys::autoscale_history("web", 4),
                b"{not json",
                Expect::Any,
            )
            .unwrap();
        let mut restored = Forecaster::default();
        assert_eq!(load(&store, "web", 1, 4, "b", &mut restored).unwrap(), 1);
        assert_eq!(restored.history().get(3 * DAY_MINUTES + 10), Some(4.0));
    }

    fn day_with(minute: usize, mean: f64) -> Vec<Option<f64>> {
        let mut means = vec![None; DAY_MINUTES as usize];
        means[minute] = Some(mean);
        means
    }
}
