//! Per-second samples of a service's load and the window that keeps the recent ones.

use crate::busy_window::BusyWindow;
use crate::steady_hour::{HourBlock, SteadyHour};
use ebb_core::autoscale::{AutoscaleSpec, ScaleMetric, ScalePolicy};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// One second of a service's load. Each metric is `None` when its source did not report (the
/// router or an agent was late, restarting or partitioned); see [`Metrics::stats`] for how a
/// missing value counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When the second ended, on the caller's monotonic clock (any epoch; the same as [`Now`]'s
    /// `mono`).
    ///
    /// [`Now`]: crate::Now
    pub at: Duration,
    /// Requests in flight during the second (average), summed over the service, counting those
    /// held in the router's queue.
    pub concurrency: Option<f64>,
    /// Requests that arrived during the second, per second, summed over the service.
    pub rps: Option<f64>,
    /// 95th percentile latency of the requests completed during the second.
    pub latency_p95: Option<Duration>,
    /// CPU use as a fraction of each instance's reservation, summed over the ready instances:
    /// three instances at 70 % report 2.1. A sum, like the request metrics, so that
    /// `cpu / target` is an instance count.
    pub cpu: Option<f64>,
    /// Memory use as a fraction of the reservation, summed over the ready instances.
    pub memory: Option<f64>,
    /// Requests that arrived during the second (held ones included). Only its being non-zero
    /// matters: it is what keeps a `min = 0` service from idling to zero.
    pub requests: u64,
}

impl Sample {
    /// A sample at `at` with every metric missing and no request.
    pub fn new(at: Duration) -> Self {
        Sample {
            at,
            concurrency: None,
            rps: None,
            latency_p95: None,
            cpu: None,
            memory: None,
            requests: 0,
        }
    }

    /// The value of `metric` (latency in seconds). A value that is not a finite number counts
    /// as missing; a negative one as 0.
    pub fn value(&self, metric: ScaleMetric) -> Option<f64> {
        let v = match metric {
            ScaleMetric::Concurrency => self.concurrency,
            ScaleMetric::Rps => self.rps,
            ScaleMetric::Cpu => self.cpu,
            ScaleMetric::Memory => self.memory,
            ScaleMetric::LatencyP95 => self.latency_p95.map(|d| d.as_secs_f64()),
        }?;
        // `+ 0.0` makes a negative zero positive, so that sorting by bits (the busy window's
        // `total_cmp`) and comparing by value rank the same.
        v.is_finite().then_some(v.max(0.0) + 0.0)
    }

    /// Whether the service saw a request during this second: an arrival, or one still in flight
    /// (a long download or a websocket counts as activity, not idleness).
    pub fn is_active(&self) -> bool {
        self.requests > 0
            || self.concurrency.is_some_and(|c| c > 0.0)
            || self.rps.is_some_and(|r| r > 0.0)
    }
}

/// Sum and counts of one metric over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WindowStats {
    /// Sum of the values present.
    pub sum: f64,
    /// Samples in the window with a value.
    pub present: u32,
    /// Samples in the window without one.
    pub missing: u32,
}

impl WindowStats {
    /// Mean of the values present; `None` when every sample lacks the metric (or there is none).
    pub fn mean(&self) -> Option<f64> {
        (self.present > 0).then(|| self.sum / f64::from(self.present))
    }

    /// Samples in the window.
    pub fn samples(&self) -> u32 {
        self.present + self.missing
    }
}

/// The recent samples of one service, oldest first, at most `retain` old.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    samples: VecDeque<Sample>,
    retain: Duration,
    /// Samples refused because they were not newer than the last one.
    stale: u64,
    /// What is kept as samples arrive, by metric (`ScaleMetric as usize`), of the metrics whose
    /// busy level target tracking reads every tick: those it sizes for their noise (the
    /// router's totals), and of those only the ones the config targets
    /// ([`Metrics::for_config`]). [`Metrics::busy`] reads any other from the samples.
    kept: [Option<Kept>; ScaleMetric::ALL.len()],
}

/// What a window held of the past ([`Metrics::past`]), for another to take up
/// ([`Metrics::resume`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Past {
    /// The samples of the last [`BUSY_WINDOW`](crate::BUSY_WINDOW), oldest first.
    pub samples: Vec<Sample>,
    /// The complete blocks of the last hour of each metric whose busy level was kept, oldest
    /// first (see [`STEADY_HOUR`](crate::STEADY_HOUR)).
    pub hours: Vec<(ScaleMetric, Vec<HourBlock>)>,
}

impl Past {
    /// This past cut into the busy window's 90 s blocks, by block number, oldest first: each
    /// with its samples and the hours' blocks of that number (a block older than the samples
    /// kept has its hours' alone). So a server keeps each block once, when it has ended.
    pub fn by_block(&self) -> BTreeMap<u64, Past> {
        let mut blocks: BTreeMap<u64, Past> = BTreeMap::new();
        for s in &self.samples {
            blocks.entry(block_of(s.at)).or_default().samples.push(*s);
        }
        for (metric, hour) in &self.hours {
            for b in hour {
                let past = blocks.entry(b.number).or_default();
                past.hours.push((*metric, vec![*b]));
            }
        }
        blocks
    }

    /// The number of the newest sample's block (the one in progress when the past was taken).
    pub fn newest_block(&self) -> Option<u64> {
        self.samples.last().map(|s| block_of(s.at))
    }

    /// The blocks of a past ([`Past::by_block`]) joined again, oldest first.
    pub fn join(blocks: impl IntoIterator<Item = Past>) -> Past {
        let mut joined = Past::default();
        for block in blocks {
            joined.samples.extend(block.samples);
            for (metric, hour) in block.hours {
                match joined.hours.iter_mut().find(|(m, _)| *m == metric) {
                    Some((_, kept)) => kept.extend(hour),
                    None => joined.hours.push((metric, hour)),
                }
            }
        }
        joined
    }
}

/// The number of the busy window's 90 s block that a second ending at `at` is in: the second
/// it begins at, divided by 90.
pub fn block_of(at: Duration) -> u64 {
    at.as_secs() / crate::noise::BLOCK_SECS
}

/// What [`Metrics`] keeps of one metric as samples arrive.
#[derive(Debug, Clone, Default, PartialEq)]
struct Kept {
    /// The busy window ([`Metrics::busy`]).
    window: BusyWindow,
    /// The last hour, with the busy level read at the end of each of its blocks
    /// ([`Metrics::steady_hour`]).
    hour: SteadyHour,
}

/// A sample [`Metrics::push`] refused: not newer than the last one (a clock that went back, or
/// a caller that pushed twice for one second). The windows assume time moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaleSample {
    /// The refused sample's time.
    pub at: Duration,
    /// The newest sample's time.
    pub last: Duration,
}

impl std::fmt::Display for StaleSample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a sample at {:?} is not newer than the last one, at {:?}: ignored",
            self.at, self.last
        )
    }
}

impl Metrics {
    /// A window that keeps samples for `retain` after the newest.
    pub fn new(retain: Duration) -> Self {
        Metrics {
            // One sample per second; capped so a huge `retain` does not reserve memory upfront.
            samples: VecDeque::with_capacity(retain.as_secs().min(3600) as usize + 1),
            retain,
            stale: 0,
            kept: ScaleMetric::ALL.map(|m| crate::target::sized_for_noise(m).then(Kept::default)),
        }
    }

    /// A window long enough for `config`'s stable and panic windows and for the busy seconds'
    /// level ([`BUSY_WINDOW`](crate::BUSY_WINDOW), fifteen minutes: 900 samples a service).
    /// Busy windows are kept only for the metrics `config` targets, and only if it tracks its
    /// targets (a schedule does, inside its windows; the step and linear policies read no busy
    /// level).
    pub fn for_config(config: &AutoscaleSpec) -> Self {
        let mut metrics = Metrics::new(
            config
                .stable_window
                .max(config.panic_window)
                .max(crate::noise::BUSY_WINDOW),
        );
        let tracks = matches!(
            crate::decide::deciding_policy(&config.policy),
            ScalePolicy::Target
        );
        for (kept, metric) in metrics.kept.iter_mut().zip(ScaleMetric::ALL) {
            if !tracks || !config.targets.iter().any(|(m, _)| m == metric) {
                *kept = None;
            }
        }
        metrics
    }

    /// Adds the next second's sample and forgets those older than `retain`. A sample not newer
    /// than the last one is refused, counted ([`Metrics::stale`]) and returned, for the caller
    /// to log: windows assume time moves forward.
    pub fn push(&mut self, sample: Sample) -> Option<StaleSample> {
        if let Some(last) = self.samples.back().filter(|last| sample.at <= last.at) {
            self.stale += 1;
            return Some(StaleSample {
                at: sample.at,
                last: last.at,
            });
        }
        self.close_hours_blocks(&sample);
        self.keep(sample);
        for (kept, metric) in self.kept_mut() {
            if let Some(v) = sample.value(metric) {
                kept.hour.add(sample.at, v);
            }
        }
        None
    }

    /// Adds `sample`, newer than every sample kept, to the samples and the busy windows (not to
    /// the hours), and forgets those older than `retain`.
    fn keep(&mut self, sample: Sample) {
        while self
            .samples
            .front()
            .is_some_and(|s| s.at.saturating_add(self.retain) <= sample.at)
        {
            let Some(old) = self.samples.pop_front() else {
                break;
            };
            for (kept, metric) in self.kept_mut() {
                if old.value(metric).is_some() {
                    kept.window.forget(old.at);
                }
            }
        }
        for (kept, metric) in self.kept_mut() {
            if let Some(v) = sample.value(metric) {
                kept.window.add(sample.at, v);
            }
        }
        self.samples.push_back(sample);
    }

    /// What this window holds of the past that a new one takes up ([`Metrics::resume`]): the
    /// samples of the last [`BUSY_WINDOW`](crate::BUSY_WINDOW) (all that the busy level and the
    /// decisions' windows read, unless a stable or panic window is set longer), and each kept
    /// metric's hour.
    pub fn past(&self) -> Past {
        let samples = match self.samples.back() {
            Some(newest) => (self.window(newest.at, crate::noise::BUSY_WINDOW).rev())
                .copied()
                .collect(),
            None => Vec::new(),
        };
        let hours = ScaleMetric::ALL
            .into_iter()
            .filter_map(|m| Some((m, self.kept[m as usize].as_ref()?.hour.blocks())))
            .filter(|(_, blocks)| !blocks.is_empty())
            .collect();
        Past { samples, hours }
    }

    /// Takes up `past` (what another window held: before a restart, on another server, or for
    /// other autoscale settings) at `now`, so that the busy level and the steady hour read on as
    /// if this window had seen it: its samples newer than this window's newest and older than
    /// `now` (a sample at `now` or after would refuse the next one, on a clock that stood
    /// behind the past's), and the hour of each metric this window keeps whose hour is empty,
    /// with the values of its open block. An hour whose newest block is not the one before the
    /// newest sample's (the past was kept more than a block before its newest sample) starts
    /// again at the next block, as a window without values for a block does.
    pub fn resume(&mut self, past: &Past, now: Duration) {
        let newest = self.samples.back().map(|s| s.at);
        let taken: Vec<Sample> = (past.samples.iter())
            .filter(|s| newest.is_none_or(|n| s.at > n) && s.at < now)
            .copied()
            .collect();
        let mut last = newest;
        for sample in &taken {
            // Ordered as a window keeps them, whatever the past says.
            if last.is_some_and(|l| sample.at <= l) {
                continue;
            }
            last = Some(sample.at);
            self.keep(*sample);
        }
        let open = last.map(block_of);
        for (metric, blocks) in &past.hours {
            let Some(kept) = self.kept[*metric as usize].as_mut() else {
                continue;
            };
            if kept.hour != SteadyHour::default() {
                continue;
            }
            kept.hour = SteadyHour::resumed(blocks);
            let newest = kept.hour.newest_block();
            if !matches!((newest, open), (Some(n), Some(o)) if n.checked_add(1) == Some(o)) {
                continue;
            }
            let in_open = |s: &&Sample| Some(block_of(s.at)) == open;
            for s in taken.iter().filter(in_open) {
                if let Some(v) = s.value(*metric) {
                    kept.hour.add(s.at, v);
                }
            }
        }
    }

    /// Ends the hours' open blocks that `sample` does not belong to, each with the busy level
    /// of its end: the one the tick of the newest sample read, before the window moves on.
    fn close_hours_blocks(&mut self, sample: &Sample) {
        let Some(last) = self.samples.back().map(|s| s.at) else {
            return;
        };
        for metric in ScaleMetric::ALL {
            let closes = self.kept[metric as usize]
                .as_ref()
                .is_some_and(|k| sample.value(metric).is_some() && k.hour.closes_before(sample.at));
            if closes {
                let level = self.busy(metric, last, crate::noise::BUSY_WINDOW);
                if let Some(kept) = self.kept[metric as usize].as_mut() {
                    kept.hour.close(level);
                }
            }
        }
    }

    /// What is kept of each metric, with the metric.
    fn kept_mut(&mut self) -> impl Iterator<Item = (&mut Kept, ScaleMetric)> {
        self.kept
            .iter_mut()
            .zip(ScaleMetric::ALL)
            .filter_map(|(k, m)| Some((k.as_mut()?, m)))
    }

    /// Samples refused so far because they were not newer than the last one.
    pub fn stale(&self) -> u64 {
        self.stale
    }

    /// The samples kept, oldest first.
    pub fn samples(&self) -> impl DoubleEndedIterator<Item = &Sample> {
        self.samples.iter()
    }

    /// Samples in `(now - len, now]`, newest first. Its ends are found by binary search (the
    /// samples are in time order, [`Metrics::push`]), so that reading a window does not compare
    /// the times of each sample.
    pub fn window(&self, now: Duration, len: Duration) -> impl DoubleEndedIterator<Item = &Sample> {
        let end = self.samples.partition_point(|s| s.at <= now);
        let start = self
            .samples
            .partition_point(|s| s.at.saturating_add(len) <= now);
        self.samples.range(start.min(end)..end).rev()
    }

    /// Sum and counts of `metric` over `(now - len, now]`.
    pub fn stats(&self, metric: ScaleMetric, now: Duration, len: Duration) -> WindowStats {
        let mut stats = WindowStats::default();
        for s in self.window(now, len) {
            match s.value(metric) {
                Some(v) => {
                    stats.sum += v;
                    stats.present += 1;
                }
                None => stats.missing += 1,
            }
        }
        stats
    }

    /// The per-second noise of `metric` over `(now - len, now]`: von Neumann's estimate from
    /// successive differences, `σ² = Σ(xᵢ − xᵢ₋₁)² / 2(n − 1)`, with the largest difference
    /// left out. A steady rise of `a` a second adds only `a / √2` to it, and one step of load
    /// (a change of level, not noise: noise repeats) adds nothing, where the values' own spread
    /// would count both in full. `None` with fewer than two differences left.
    ///
    /// Keeping the largest difference was tried: a step then raises the count while it is in
    /// the window and lowers it after (no longer a monotone response), for mixed results in
    /// replays (BENCHMARKS.md).
    pub fn noise(&self, metric: ScaleMetric, now: Duration, len: Duration) -> Option<f64> {
        let mut previous = None;
        let (mut sum, mut largest, mut n) = (0.0, 0.0_f64, 0u32);
        for v in self.window(now, len).map(|s| s.value(metric)) {
            // A missing second breaks the chain: a difference across it would span two seconds.
            let Some(v) = v else {
                previous = None;
                continue;
            };
            if let Some(p) = previous {
                let d2: f64 = (v - p) * (v - p);
                sum += d2;
                largest = largest.max(d2);
                n += 1;
            }
            previous = Some(v);
        }
        let kept = n.checked_sub(1).filter(|&k| k >= 2)?;
        Some(((sum - largest).max(0.0) / (2.0 * f64::from(kept))).sqrt())
    }

    /// The level of `metric`'s busy seconds over `(now - len, now]` (at most its newest 900
    /// values): their [`BUSY_QUANTILE`](crate::BUSY_QUANTILE) quantile, smoothed over the ranks
    /// around it (`busy_quantile` in the module `noise`), when the window has
    /// every 90 s block and its load has not fallen within it, without the seconds of a block
    /// that stood out by itself and was left (see the module `noise`). `None` otherwise.
    ///
    /// Read from the busy window kept as samples arrive (the module `busy_window`) when it
    /// holds what the query asks for, as it does every tick; from the samples otherwise.
    pub fn busy(&self, metric: ScaleMetric, now: Duration, len: Duration) -> Option<f64> {
        let kept = self.kept[metric as usize].as_ref();
        match kept.and_then(|k| k.window.level(now, len)) {
            Some(level) => level,
            None => self.busy_read(metric, now, len),
        }
    }

    /// The level of `metric`'s busy seconds over the last [`STEADY_HOUR`](crate::STEADY_HOUR),
    /// at `now`, if its load held still through it: the mean of the busy levels
    /// ([`Metrics::busy`]) read at the ends of its 90 s blocks (see the module `steady_hour`).
    /// `None` otherwise, and for a metric whose busy level is not kept as samples arrive. `now`
    /// is a tick's, not before the newest sample: the hour is the one that ends with the newest
    /// complete block, and a `now` two blocks past it finds none.
    pub fn steady_hour(&self, metric: ScaleMetric, now: Duration) -> Option<f64> {
        let kept = self.kept[metric as usize].as_ref()?;
        kept.hour.level(now, kept.window.recent_mean())
    }

    /// The level of `metric`'s busy seconds at `now` while its busy window is still filling
    /// (a service's first fifteen minutes, and after a block without a value: a silent router,
    /// or a server down through a block before the window was taken up, [`Metrics::resume`]),
    /// and the span of the values read: once its complete blocks cover 170 s
    /// from its first value (170 to 259 s after it), until it holds the nine a full window has
    /// (whether or not [`Metrics::busy`] then answers), with the same fall test on nine spans
    /// of what it holds (module `warming`). `None` otherwise, for a metric whose busy level is
    /// not kept as samples arrive, and when these metrics keep less than the busy window.
    pub fn warming_busy(&self, metric: ScaleMetric, now: Duration) -> Option<(f64, Duration)> {
        // A window shorter than the busy window's never fills: it is not filling either.
        if self.retain < crate::noise::BUSY_WINDOW {
            return None;
        }
        self.kept[metric as usize]
            .as_ref()?
            .window
            .warming_level(now)
    }

    /// [`Metrics::busy`] read from the samples.
    fn busy_read(&self, metric: ScaleMetric, now: Duration, len: Duration) -> Option<f64> {
        let mut values = [0.0_f64; crate::noise::BUSY_VALUES];
        let mut blocks = crate::noise::BusyBlocks::default();
        let mut n = 0;
        // Newest first: fill from the end so that the array is oldest first.
        for (at, v) in self
            .window(now, len)
            .filter_map(|s| Some((s.at, s.value(metric)?)))
        {
            if n == values.len() {
                break;
            }
            // A value outside the blocks the fall test sees must not count either.
            if blocks.add(at, v).is_none() {
                break;
            }
            n += 1;
            values[values.len() - n] = v;
        }
        let values = &mut values[crate::noise::BUSY_VALUES - n..];
        crate::noise::busy_level(values, &blocks)
    }

    /// When the newest active second (see [`Sample::is_active`]) not after `now` ended.
    pub fn last_active(&self, now: Duration) -> Option<Duration> {
        self.window(now, Duration::MAX)
            .find(|s| s.is_active())
            .map(|s| s.at)
    }

    /// Whether a sample of `(now - len, now]` lacks the router's figures (concurrency and rps
    /// both unknown: a peer server went silent), so its quiet is not known to be quiet.
    pub(crate) fn unknown_within(&self, now: Duration, len: Duration) -> bool {
        self.window(now, len)
            .any(|s| s.concurrency.is_none() && s.rps.is_none() && s.requests == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BUSY_WINDOW;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn rps(at: u64, v: Option<f64>) -> Sample {
        Sample {
            rps: v,
            ..Sample::new(secs(at))
        }
    }

    /// A load that changes level now and then, with noise, bursts, missing values, gaps of
    /// time and (with `jitter`) several samples in one second; from a xorshift seed.
    struct Load {
        state: u64,
        at_ms: u64,
        level: f64,
        burst: u32,
        jitter: bool,
    }

    impl Load {
        fn new(seed: u64, jitter: bool) -> Self {
            Load {
                state: seed | 1,
                at_ms: 0,
                level: 10.0,
                burst: 0,
                jitter,
            }
        }

        fn uniform(&mut self) -> f64 {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            (self.state >> 11) as f64 / (1u64 << 53) as f64
        }

        fn next(&mut self) -> Sample {
            let u = self.uniform();
            self.at_ms += match u {
                u if u < 0.0005 => 1000 * (1 + (self.uniform() * 300.0) as u64),
                _ if self.jitter => 300 + (self.uniform() * 1400.0) as u64,
                _ => 1000,
            };
            if self.uniform() < 0.001 {
                self.level = [0.0, 3.0, 10.0, 100.0, 1000.0][(self.uniform() * 5.0) as usize];
            }
            if self.burst == 0 && self.uniform() < 0.002 {
                self.burst = 1 + (self.uniform() * 120.0) as u32;
            }
            self.burst = self.burst.saturating_sub(1);
            let boost = if self.burst > 0 { 4.0 } else { 1.0 };
            let v = self.level * boost * (0.6 + 0.8 * self.uniform());
            let present = self.uniform() > 0.02;
            Sample {
                rps: present.then_some(v),
                concurrency: present.then_some(v / 10.0),
                ..Sample::new(Duration::from_millis(self.at_ms))
            }
        }
    }

    #[test]
    fn the_kept_busy_window_gives_the_full_reads_level_to_the_bit() {
        let (mut kept, mut levels, mut without, mut warming) = (0, 0, 0, 0);
        for (seed, jitter, retain) in [
            (1u64, false, 900),
            (2, false, 1200),
            (3, false, 300),
            // The oldest block partly dropped by the window, its level still read.
            (7, false, 850),
            (4, true, 900),
            (5, false, 900),
            (6, true, 1000),
        ] {
            let mut load = Load::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15), jitter);
            let mut m = Metrics::new(secs(retain));
            for i in 0..12_000 {
                let sample = load.next();
                m.push(sample);
                // The full read is slow in a debug build: compared on one sample in three.
                if i % 3 != 0 {
                    continue;
                }
                let now = match i % 7 {
                    0 => sample.at.saturating_sub(secs(1)),
                    1 => sample.at + secs(100),
                    _ => sample.at,
                };
                let len = if i % 5 == 0 { secs(400) } else { BUSY_WINDOW };
                let windows = m.kept.iter().zip(ScaleMetric::ALL);
                for (k, metric) in windows.filter_map(|(k, m)| Some((k.as_ref()?, m))) {
                    let w = &k.window;
                    let full = m.busy_read(metric, now, len);
                    assert_eq!(
                        m.busy(metric, now, len).map(f64::to_bits),
                        full.map(f64::to_bits),
                        "seed {seed}, sample {i} at {:?}, {metric:?}",
                        sample.at
                    );
                    // The reading of a filling window never answers where the full one does.
                    if full.is_some() && len == BUSY_WINDOW {
                        assert_eq!(m.warming_busy(metric, now), None, "seed {seed}, {i}");
                    }
                    warming += usize::from(m.warming_busy(metric, now).is_some());
                    kept += usize::from(w.level(now, len).is_some());
                    levels += usize::from(full.is_some());
                    without += usize::from(full.is_none() && w.level(now, len).is_some());
                }
            }
        }
        // The kept window answered most reads, and the loads had levels and went without; and
        // windows filled, at the start and after gaps.
        assert!(
            kept > 30_000 && levels > 10_000 && without > 10_000 && warming > 100,
            "{kept} {levels} {without} {warming}"
        );
    }

    /// Stationary noise around 100 (concurrency a tenth of it), one sample a second from
    /// second `from`, with every value present.
    fn stationary(seed: u64, from: u64) -> impl Iterator<Item = Sample> {
        let mut load = Load::new(seed, false);
        (from..).map(move |s| {
            let v = 100.0 * (0.6 + 0.8 * load.uniform());
            Sample {
                rps: Some(v),
                concurrency: Some(v / 10.0),
                requests: v as u64,
                ..Sample::new(secs(s))
            }
        })
    }

    #[test]
    fn a_window_resumed_from_anothers_past_reads_on_as_the_other() {
        let (mut hours, mut busy) = (0, 0);
        // Cut at a block's start, within a block, and with the newest seconds lost (a crash
        // after the past was kept): the resumed window then misses what the other saw.
        for (cut, lost) in [(5400, 0), (5445, 0), (7233, 3)] {
            let mut load = stationary(11, 1);
            let mut before = Metrics::new(BUSY_WINDOW);
            for sample in load.by_ref().take(cut as usize) {
                before.push(sample);
            }
            let past = before.past();
            assert!(past.samples.len() <= BUSY_VALUES_TEST && past.hours.len() == 2);
            // A crash after the past was kept: the other window saw `lost` more seconds.
            for sample in load.by_ref().take(lost as usize) {
                before.push(sample);
            }
            let mut after = Metrics::new(BUSY_WINDOW);
            let mut fresh = Metrics::new(BUSY_WINDOW);
            let resumed_at = secs(cut + 1 + lost);
            after.resume(&past, resumed_at);
            let mut differs = false;
            for sample in load.take(3000) {
                for m in [&mut before, &mut after, &mut fresh] {
                    assert_eq!(m.push(sample), None);
                }
                let now = sample.at;
                for metric in [ScaleMetric::Rps, ScaleMetric::Concurrency] {
                    let read = |m: &Metrics| {
                        let busy = m.busy(metric, now, BUSY_WINDOW).map(f64::to_bits);
                        let hour = m.steady_hour(metric, now).map(f64::to_bits);
                        let stats = m.stats(metric, now, secs(60));
                        (busy, hour, stats.sum.to_bits(), stats.samples())
                    };
                    let (b, a) = (read(&before), read(&after));
                    if lost == 0 {
                        assert_eq!(a, b, "cut {cut}, {metric:?} at {now:?}");
                    } else if now >= resumed_at + BUSY_WINDOW {
                        // Once the seconds the crash lost have left the window, its level is
                        // the other's.
                        assert_eq!(a.0, b.0, "cut {cut}, {metric:?} at {now:?}");
                    } else {
                        // Before, a hole of a few seconds leaves a level read.
                        assert_eq!(a.0.is_some(), b.0.is_some(), "{metric:?} at {now:?}");
                    }
                    hours += usize::from(a.1.is_some());
                    busy += usize::from(a.0.is_some());
                    differs |= read(&fresh) != a;
                }
            }
            // A window that starts afresh has no busy level for minutes, nor a steady hour.
            assert!(differs, "cut {cut}");
        }
        // The load held still and had a busy level: the hour and the level were compared.
        assert!(hours > 5000 && busy > 15_000, "{hours} {busy}");
    }

    #[test]
    fn a_past_cut_into_blocks_and_joined_is_the_same_past() {
        let mut m = Metrics::new(BUSY_WINDOW);
        for sample in stationary(5, 1).take(5000) {
            m.push(sample);
        }
        let past = m.past();
        let blocks = past.by_block();
        // The hour's forty blocks and the samples' eleven (ten and the open one) overlap.
        assert_eq!(blocks.len(), 41, "{:?}", blocks.keys().collect::<Vec<_>>());
        assert_eq!(Past::join(blocks.into_values()), past);
    }

    /// At most the values of a busy window: one sample a second.
    const BUSY_VALUES_TEST: usize = crate::noise::BUSY_VALUES;

    #[test]
    fn a_past_at_or_after_now_or_before_the_newest_sample_is_not_taken_up() {
        let past = Past {
            samples: (1..=20).map(|s| rps(s, Some(5.0))).collect(),
            hours: Vec::new(),
        };
        let mut m = Metrics::new(BUSY_WINDOW);
        m.push(rps(4, Some(1.0)));
        m.resume(&past, secs(15));
        let kept: Vec<u64> = m.samples().map(|s| s.at.as_secs()).collect();
        assert_eq!(kept, (4..15).collect::<Vec<_>>());
        // The next sample, at `now`, is taken.
        assert_eq!(m.push(rps(15, Some(1.0))), None);
        // Out of order in the past: only what follows in time is kept.
        let mut m = Metrics::new(BUSY_WINDOW);
        let shuffled = Past {
            samples: [3, 1, 5, 5, 4, 8].map(|s| rps(s, Some(1.0))).to_vec(),
            hours: Vec::new(),
        };
        m.resume(&shuffled, secs(100));
        let kept: Vec<u64> = m.samples().map(|s| s.at.as_secs()).collect();
        assert_eq!(kept, vec![3, 5, 8]);
    }

    #[test]
    fn busy_windows_are_kept_only_for_the_metrics_a_config_targets() {
        let targets = ebb_core::autoscale::ScaleTargets {
            concurrency: Some(1.0),
            cpu: Some(0.7),
            ..Default::default()
        };
        let mut config = AutoscaleSpec::new(1, 10, targets);
        let kept = |m: Metrics| m.kept.map(|k| k.is_some());
        // Concurrency, not rps (untargeted), cpu, memory or latency (not the router's totals).
        let only_concurrency = [true, false, false, false, false];
        assert_eq!(kept(Metrics::for_config(&config)), only_concurrency);
        assert_eq!(
            kept(Metrics::new(secs(900))),
            [true, true, false, false, false]
        );
        // A schedule tracks its targets inside its windows; a linear policy reads no busy level.
        config.policy = ScalePolicy::Schedule {
            windows: Vec::new(),
        };
        assert_eq!(kept(Metrics::for_config(&config)), only_concurrency);
        config.policy = ScalePolicy::Linear {
            metric: ScaleMetric::Concurrency,
            low: 1.0,
            high: 2.0,
            step: 1,
        };
        assert_eq!(kept(Metrics::for_config(&config)), [false; 5]);
    }

    #[test]
    fn a_negative_zero_is_zero() {
        let s = rps(1, Some(-0.0));
        assert_eq!(s.value(ScaleMetric::Rps).map(f64::to_bits), Some(0));
    }

    #[test]
    fn the_window_keeps_only_the_last_retain_seconds() {
        let mut m = Metrics::new(secs(60));
        for s in 1..=100 {
            m.push(rps(s, Some(1.0)));
        }
        assert_eq!(m.samples().count(), 60);
        assert_eq!(m.samples().next().map(|s| s.at), Some(secs(41)));
    }

    #[test]
    fn stats_cover_the_window_ending_now_and_count_missing_values() {
        let mut m = Metrics::new(secs(60));
        for s in 1..=10 {
            m.push(rps(s, (s % 2 == 0).then_some(s as f64)));
        }
        // (4, 10] → 5..=10: present 6, 8, 10; missing 5, 7, 9.
        let st = m.stats(ScaleMetric::Rps, secs(10), secs(6));
        assert_eq!((st.sum, st.present, st.missing), (24.0, 3, 3));
        // Three values, two differences, one left: too few to judge noise by.
        assert_eq!(m.noise(ScaleMetric::Rps, secs(10), secs(6)), None);
        // A window ending earlier ignores later samples: (2, 8] → 3..=8.
        assert_eq!(m.stats(ScaleMetric::Rps, secs(8), secs(6)).samples(), 6);
    }

    #[test]
    fn samples_out_of_order_are_ignored() {
        let mut m = Metrics::new(secs(60));
        assert_eq!(m.push(rps(5, Some(1.0))), None);
        let stale = m.push(rps(5, Some(9.0)));
        assert_eq!(
            stale,
            Some(StaleSample {
                at: secs(5),
                last: secs(5)
            })
        );
        assert!(m.push(rps(4, Some(9.0))).is_some());
        assert_eq!(m.stale(), 2);
        assert_eq!(m.stats(ScaleMetric::Rps, secs(5), secs(60)).sum, 1.0);
    }

    #[test]
    fn non_finite_values_count_as_missing() {
        let s = rps(1, Some(f64::NAN));
        assert_eq!(s.value(ScaleMetric::Rps), None);
        assert_eq!(rps(1, Some(-3.0)).value(ScaleMetric::Rps), Some(0.0));
    }

    #[test]
    fn requests_in_flight_count_as_activity() {
        let mut m = Metrics::new(secs(60));
        m.push(Sample {
            concurrency: Some(1.0),
            ..Sample::new(secs(3))
        });
        m.push(Sample::new(secs(4)));
        assert_eq!(m.last_active(secs(4)), Some(secs(3)));
    }

    #[test]
    fn noise_leaves_out_trends_and_one_step() {
        let mut m = Metrics::new(secs(60));
        // A ramp 0, 10, 20, ... plus ±1 alternating: successive differences are 10 ± 2, so
        // the ramp adds far less than its spread (σ of the values themselves is ~60).
        for s in 1..=20 {
            let wiggle = if s % 2 == 0 { 1.0 } else { -1.0 };
            m.push(rps(s, Some(10.0 * s as f64 + wiggle)));
        }
        let noise = m
            .noise(ScaleMetric::Rps, secs(20), secs(20))
            .unwrap_or(f64::NAN);
        assert!((7.0..8.0).contains(&noise), "{noise}");
        assert_eq!(m.noise(ScaleMetric::Rps, secs(20), secs(3)), None);
        // One step from 0 to 100: no noise at all.
        let mut m = Metrics::new(secs(60));
        for s in 1..=20 {
            m.push(rps(s, Some(if s > 10 { 100.0 } else { 0.0 })));
        }
        assert_eq!(m.noise(ScaleMetric::Rps, secs(20), secs(20)), Some(0.0));
        // Alternating 0 and 20: σ of the values is ~10, von Neumann's estimate √(400 / 2) ≈ 14.
        let mut m = Metrics::new(secs(60));
        for s in 1..=20 {
            m.push(rps(s, Some(if s % 2 == 0 { 20.0 } else { 0.0 })));
        }
        let noise = m
            .noise(ScaleMetric::Rps, secs(20), secs(20))
            .unwrap_or(f64::NAN);
        assert!((14.0..14.2).contains(&noise), "{noise}");
    }
}
