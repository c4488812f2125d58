//! The recent load of each autoscaled service ([`ebb_autoscaler::Past`]: its last fifteen
//! minutes of samples and each metric's steady hour), kept in the store one 90 s block per key
//! (`autoscale-window/{service}/{block}`), so that a server restart or a change of leader takes
//! the window up where it stood instead of starting it afresh. Afresh, target tracking has no
//! busy level for 170 to 259 s and no steady hour for an hour: replayed with a restart every
//! hour, ebb missed 31 % more seconds on the noisy trace at its cheapest target (BENCHMARKS.md).
//!
//! Each block is written once, when it has ended (or at once, partly, when the autoscaler
//! stops), and the block [`KEPT_BLOCKS`] older is deleted then: about 2.7 KB a block and
//! service for a busy one (the tests below hold it under 3 KB), 2.5 MB a day through the
//! store, where one value of the whole window rewritten each block would be about ten times
//! that. A crash loses the block in progress: a server back within that block reads on across
//! the hole, but one back in the next block finds a block without values, and the busy level
//! and the steady hour start afresh (about downtime / 90 s of crashes; a clean stop writes the
//! block in progress). Only concurrency, rps and requests are kept: a restored sample's cpu,
//! memory and latency read as missing, which holds a service that targets them for one stable
//! window after a restart.
//!
//! Sample times are on the autoscaler's clock, which starts at the wall clock's time
//! (`controllers::autoscale`), so that the blocks of a past kept by another process line up
//! with the new one's. Values are kept as `f32`: the busy level read from them differs from the
//! one in memory by a few parts in ten million. Each block records the service's incarnation
//! (its spec key's create revision): a service deleted and deployed again under the same name
//! starts afresh.

use crate::state::keys;
use ebb_autoscaler::{HourBlock, Past, Sample, BUSY_WINDOW};
use ebb_core::autoscale::ScaleMetric;
use ebb_store::{Expect, KvStore, StoreError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Blocks kept: the steady hour's forty, the block in progress and one more, so that the
/// hour of the newest complete block is whole after a restart in the next.
pub const KEPT_BLOCKS: u64 = 42;

/// Largest block read: 16 KiB, above the most one holds (90 samples a metric, a few more
/// when ticks ran late, of about 40 bytes each, and five metrics' hour blocks), so that a
/// corrupted value is not decoded whole.
const MAX_VALUE: usize = 16 * 1024;

/// Most samples one block may hold: four a second (ticks are one a second; late ones can put
/// two in one second, and a clock that jumped a few).
const MAX_SAMPLES: usize = 360;

/// One block as stored.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Block {
    /// The incarnation of the service whose load it is.
    incarnation: u64,
    /// When the first sample's second ended, in milliseconds on the autoscaler's clock.
    first_ms: u64,
    /// Milliseconds from each sample to the next (one fewer than the samples).
    steps_ms: Vec<u32>,
    /// Each sample's concurrency, rps and requests.
    concurrency: Vec<Option<f32>>,
    rps: Vec<Option<f32>>,
    requests: Vec<u64>,
    /// The steady hours' block of this number, of each metric that keeps one.
    hours: Vec<(ScaleMetric, f64, u32, Option<f64>)>,
}

impl Block {
    fn of(incarnation: u64, past: &Past) -> Block {
        let ms = |s: &Sample| u64::try_from(s.at.as_millis()).unwrap_or(u64::MAX);
        let first_ms = past.samples.first().map_or(0, ms);
        let steps_ms = (past.samples.windows(2))
            .map(|w| u32::try_from(ms(&w[1]) - ms(&w[0])).unwrap_or(u32::MAX))
            .collect();
        let hours = (past.hours.iter())
            .flat_map(|(m, blocks)| blocks.iter().map(|b| (*m, b.sum, b.count, b.level)))
            .collect();
        Block {
            incarnation,
            first_ms,
            steps_ms,
            concurrency: past.samples.iter().map(|s| narrow(s.concurrency)).collect(),
            rps: past.samples.iter().map(|s| narrow(s.rps)).collect(),
            requests: past.samples.iter().map(|s| s.requests).collect(),
            hours,
        }
    }

    /// The past this block holds, as block `number`; `None` when its lists disagree or it
    /// holds more samples than a block can.
    fn past(self, number: u64) -> Option<Past> {
        let n = self.requests.len();
        let agree = self.concurrency.len() == n && self.rps.len() == n;
        if !agree || n > MAX_SAMPLES || self.steps_ms.len() != n.saturating_sub(1) {
            return None;
        }
        let mut at = self.first_ms;
        let mut times = vec![at];
        for step in &self.steps_ms {
            at = at.checked_add(u64::from(*step))?;
            times.push(at);
        }
        let samples = (0..n)
            .map(|i| Sample {
                concurrency: self.concurrency[i].map(f64::from),
                rps: self.rps[i].map(f64::from),
                requests: self.requests[i],
                ..Sample::new(Duration::from_millis(times[i]))
            })
            .collect();
        let hours = (self.hours.into_iter())
            .map(|(metric, sum, count, level)| {
                let block = HourBlock {
                    number,
                    sum,
                    count,
                    level,
                };
                (metric, vec![block])
            })
            .collect();
        Some(Past { samples, hours })
    }
}

/// A value as kept: `f32` is enough for a load (a few parts in ten million).
fn narrow(v: Option<f64>) -> Option<f32> {
    v.filter(|v| v.is_finite()).map(|v| v as f32)
}

/// The key of `service`'s block `number`, zero-padded so that keys sort as their blocks do.
fn key(service: &str, number: u64) -> String {
    format!("{}{number:020}", keys::autoscale_window_prefix(service))
}

/// The block number a key names, if it is one of `service`'s.
fn number_of(service: &str, key: &str) -> Option<u64> {
    key.strip_prefix(&keys::autoscale_window_prefix(service))?
        .parse()
        .ok()
}

/// Writes the blocks of `past` (of `service`'s `incarnation`) newer than `written` that have
/// ended (every block before the newest sample's), and with `now` the one in progress too (the
/// autoscaler stops); deletes the block [`KEPT_BLOCKS`] older than each one written. Returns
/// the newest block written, or `written` when none is due. A failed write returns at once:
/// the blocks after the last one written are tried again at the next call.
pub fn keep(
    store: &dyn KvStore,
    service: &str,
    incarnation: u64,
    past: &Past,
    written: Option<u64>,
    now: bool,
) -> Result<Option<u64>, StoreError> {
    let Some(open) = past.newest_block() else {
        return Ok(written);
    };
    let mut newest = written;
    let due = |n: u64| written.is_none_or(|w| n > w) && (n < open || now);
    for (number, block) in past.by_block().into_iter().filter(|(n, _)| due(*n)) {
        let value = keys::encode(&Block::of(incarnation, &block));
        store.put(&key(service, number), &value, Expect::Any)?;
        newest = Some(number);
        // Best effort: a block left behind is deleted when the recent load is next read.
        if let Some(old) = number.checked_sub(KEPT_BLOCKS) {
            if let Err(e) = store.delete(&key(service, old), Expect::Any) {
                tracing::warn!(
                    service,
                    "autoscaler: an old block of recent load not deleted: {e}"
                );
            }
        }
    }
    Ok(newest)
}

/// The kept recent load of `service`'s `incarnation`, its newest [`KEPT_BLOCKS`] blocks joined,
/// and the newest block's number. Blocks it cannot use (older, of an earlier service of the
/// same name) are deleted, best effort; a block that does not decode is skipped with a warning
/// (the window reads on across a hole shorter than a block).
pub fn load(
    store: &dyn KvStore,
    service: &str,
    incarnation: u64,
) -> Result<(Past, Option<u64>), StoreError> {
    let (kvs, _) = store.list(&keys::autoscale_window_prefix(service))?;
    let newest = (kvs.iter())
        .filter_map(|kv| number_of(service, &kv.key))
        .max();
    let oldest = newest.map_or(0, |n| n.saturating_sub(KEPT_BLOCKS - 1));
    let mut blocks = Vec::new();
    for kv in &kvs {
        let number = number_of(service, &kv.key).filter(|n| *n >= oldest);
        let decoded = match number {
            Some(_) if kv.value.len() > MAX_VALUE => None,
            Some(_) => keys::decode::<Block>(kv).ok(),
            None => None,
        };
        match (number, decoded) {
            (Some(n), Some(b)) if b.incarnation == incarnation => match b.past(n) {
                Some(past) => blocks.push((n, past)),
                None => warn_unread(&kv.key),
            },
            (Some(_), None) => warn_unread(&kv.key),
            _ => {
                // Too old, or an earlier service's: only the value read is deleted.
                if let Err(e) = store.delete(&kv.key, Expect::ModRevision(kv.mod_revision)) {
                    tracing::warn!(key = %kv.key, "autoscaler: an unusable block of recent load not deleted: {e}");
                }
            }
        }
    }
    blocks.sort_by_key(|(n, _)| *n);
    let newest = blocks.last().map(|(n, _)| *n);
    let mut past = Past::join(blocks.into_iter().map(|(_, p)| p));
    // Older blocks are kept for the steady hour's summaries; their samples are past the window.
    if let Some(last) = past.samples.last().map(|s| s.at) {
        past.samples.retain(|s| s.at + BUSY_WINDOW > last);
    }
    Ok((past, newest))
}

fn warn_unread(key: &str) {
    tracing::warn!(
        key,
        "autoscaler: a kept block of recent load does not decode; skipped"
    );
}

/// Deletes `service`'s kept recent load (it is gone, or no longer autoscaled).
pub fn forget(store: &dyn KvStore, service: &str) -> Result<(), StoreError> {
    for key in store.list_keys(&keys::autoscale_window_prefix(service))? {
        store.delete(&key, Expect::Any)?;
    }
    Ok(())
}

/// The services whose recent load is kept.
pub fn kept_services(store: &dyn KvStore) -> Result<Vec<String>, StoreError> {
    let mut names: Vec<String> = (store.list_keys(keys::AUTOSCALE_WINDOW)?.iter())
        .filter_map(|k| {
            let rest = k.strip_prefix(keys::AUTOSCALE_WINDOW)?;
            Some(rest.rsplit_once('/')?.0.to_string())
        })
        .collect();
    names.dedup();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::temp_store as store;
    use ebb_autoscaler::Metrics;

    /// Noise around 100 req/s, one sample a second ending at `origin + s` for `s` in `seconds`,
    /// slightly late now and then, as a tick is.
    fn noise(origin: u64, seconds: std::ops::Range<u64>) -> impl Iterator<Item = Sample> {
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        seconds.map(move |s| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = 100.0 * (0.6 + 0.8 * (x >> 11) as f64 / (1u64 << 53) as f64);
            Sample {
                concurrency: Some(v / 10.0),
                rps: Some(v),
                requests: v as u64,
                ..Sample::new(Duration::from_millis((origin + s) * 1000 + x % 40))
            }
        })
    }

    /// A window fed `samples`, kept in `store` after each as the autoscaler does (a block when
    /// it ends); returns it and the newest block written.
    fn fed(
        store: &dyn KvStore,
        samples: impl Iterator<Item = Sample>,
        incarnation: u64,
    ) -> (Metrics, Option<u64>) {
        let mut m = Metrics::new(BUSY_WINDOW);
        let mut written = None;
        for sample in samples {
            assert_eq!(m.push(sample), None);
            let newest = m.past().newest_block();
            if newest.is_some_and(|n| written.is_none_or(|w| n > w + 1)) {
                written = keep(store, "web", incarnation, &m.past(), written, false).unwrap();
            }
        }
        (m, written)
    }

    fn close(a: Option<f64>, b: Option<f64>) -> bool {
        match (a, b) {
            (Some(a), Some(b)) => (a - b).abs() <= 1e-5 * a.abs().max(1.0),
            (a, b) => a == b,
        }
    }

    #[test]
    fn a_window_taken_up_from_the_store_reads_on_as_the_one_that_kept_it() {
        let (_dir, store) = store();
        let origin = 1_800_000_000;
        let (mut before, written) = fed(&store, noise(origin, 0..5000), 3);
        // Blocks ended up to the one before the newest sample's; the oldest deleted.
        let newest = before.past().newest_block().unwrap();
        assert_eq!(written, Some(newest - 1));
        let kept = store.list_keys(keys::AUTOSCALE_WINDOW).unwrap();
        assert_eq!(kept.len() as u64, KEPT_BLOCKS);
        // Ninety samples of values that fill every digit of an f32: about 2.7 KB.
        for k in &kept {
            let size = store.get(k).unwrap().unwrap().value.len();
            assert!((2000..3072).contains(&size), "{k}: {size} bytes");
        }
        // The autoscaler stops: the block in progress is kept too (and the oldest goes).
        let flushed = keep(&store, "web", 3, &before.past(), written, true).unwrap();
        assert_eq!(flushed, Some(newest));
        let (past, read_newest) = load(&store, "web", 3).unwrap();
        assert_eq!(read_newest, Some(newest));
        assert_eq!(past.samples.len(), before.past().samples.len());
        // A new server, 4 s later, on its clock that starts at the wall clock's time.
        let mut after = Metrics::new(BUSY_WINDOW);
        let restart = Duration::from_secs(origin + 5004);
        after.resume(&past, restart);
        let mut fresh = Metrics::new(BUSY_WINDOW);
        let (mut hours, mut levels) = (0, 0);
        for sample in noise(origin, 5004..6000) {
            for m in [&mut before, &mut after, &mut fresh] {
                assert_eq!(m.push(sample), None);
            }
            let now = sample.at;
            for metric in [ScaleMetric::Rps, ScaleMetric::Concurrency] {
                let (b, a) = (
                    before.busy(metric, now, BUSY_WINDOW),
                    after.busy(metric, now, BUSY_WINDOW),
                );
                assert!(close(a, b), "{metric:?} at {now:?}: {a:?} {b:?}");
                let (hb, ha) = (
                    before.steady_hour(metric, now),
                    after.steady_hour(metric, now),
                );
                assert!(close(ha, hb), "{metric:?} at {now:?}: {ha:?} {hb:?}");
                levels += usize::from(a.is_some());
                hours += usize::from(ha.is_some());
                // Started afresh, a window has neither for minutes.
                if now < restart + Duration::from_secs(170) {
                    assert_eq!(fresh.busy(metric, now, BUSY_WINDOW), None);
                    assert_eq!(fresh.steady_hour(metric, now), None);
                }
            }
        }
        assert!(levels > 1500 && hours > 500, "{levels} {hours}");
    }

    #[test]
    fn another_incarnations_or_old_or_unreadable_blocks_are_not_taken_up() {
        let (_dir, store) = store();
        let origin = 1_800_000_000;
        fed(&store, noise(origin, 0..1000), 3);
        // A service deleted and deployed again: nothing of its predecessor, whose blocks go.
        let (past, newest) = load(&store, "web", 4).unwrap();
        assert_eq!((past, newest), (Past::default(), None));
        assert!(store.list_keys(keys::AUTOSCALE_WINDOW).unwrap().is_empty());
        // A block that does not decode, or whose lists disagree, is skipped; the rest is read.
        let (m, _) = fed(&store, noise(origin, 0..1000), 3);
        let blocks: Vec<u64> = m.past().by_block().into_keys().collect();
        let (first, second) = (blocks[1], blocks[2]);
        store
            .put(&key("web", first), b"{not json", Expect::Any)
            .unwrap();
        let uneven = Block {
            incarnation: 3,
            requests: vec![1, 2],
            ..Block::default()
        };
        store
            .put(&key("web", second), &keys::encode(&uneven), Expect::Any)
            .unwrap();
        let too_large = vec![b' '; MAX_VALUE + 1];
        store
            .put(&key("web", blocks[3]), &too_large, Expect::Any)
            .unwrap();
        let (past, _) = load(&store, "web", 3).unwrap();
        let read: Vec<u64> = past.by_block().into_keys().collect();
        assert!(!read.contains(&first) && !read.contains(&second) && !read.contains(&blocks[3]));
        // Neither is the block in progress, not kept yet.
        assert_eq!(read.len(), blocks.len() - 4, "{read:?}");
        // A block more than the kept ones older than the newest is deleted when read.
        let stale = key("web", first - KEPT_BLOCKS);
        store
            .put(
                &stale,
                &keys::encode(&Block {
                    incarnation: 3,
                    ..Block::default()
                }),
                Expect::Any,
            )
            .unwrap();
        load(&store, "web", 3).unwrap();
        assert_eq!(store.get(&stale).unwrap(), None);
        assert_eq!(kept_services(&store).unwrap(), vec!["web".to_string()]);
        forget(&store, "web").unwrap();
        assert!(kept_services(&store).unwrap().is_empty());
    }
}
