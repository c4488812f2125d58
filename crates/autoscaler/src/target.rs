//! Target tracking: HPA's proportional rule and tolerance on Knative KPA's stable window, and
//! KPA's panic mode on the short window.
//!
//! Per metric with a target: `ceil(total / target)` instances, where `total` is the metric's
//! average over the window (latency, not a total, scales the count by `p95 / target`). Several
//! targets → the largest proposal wins. The caller ([`decide`](crate::decide)) then applies
//! scale-down stabilization, the scale-up rate limit and the bounds.

use crate::config::fmt_target;
use crate::explain;
use crate::metrics::{Metrics, WindowStats};
use crate::noise::{self, Baseline, BUSY_WINDOW, NOISE_HEADROOM};
use crate::proposal::Proposal;
use crate::state::State;
use crate::Rule;
use crate::STEADY_HOUR;
use ebb_core::autoscale::{AutoscaleSpec, ScaleMetric};
use std::cmp::Ordering;
use std::time::Duration;

/// The smallest count that covers `x` instances' worth of load. A hair of slack absorbs float
/// error (`0.1 * 3 / 0.1` is 3.0000000000000004, which must not ask for a 4th instance).
pub fn ceil_count(x: f64) -> u32 {
    if x.is_nan() || x <= 0.0 {
        0
    } else {
        (x - 1e-9).ceil().min(f64::from(u32::MAX)) as u32
    }
}

/// How missing samples in the stable window were counted (HPA: against the direction of change).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Missing {
    /// No sample lacked the metric.
    None,
    /// The present ones call for a scale-down: missing ones count as exactly at target.
    AtTarget,
    /// The present ones call for a scale-up: missing ones count as no load.
    AsZero,
    /// Counted as above they reverse the direction: hold.
    Reversed,
}

/// One metric's proposal over one window, with what is needed to explain it.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    metric: ScaleMetric,
    target: f64,
    /// Average used (missing samples filled in), `None` when no sample had the metric.
    value: Option<f64>,
    /// Added to `value` for the load's noise (`noise.rs`); 0 in panic and for latency.
    headroom: f64,
    /// Over how long the busy seconds' level that `headroom` is up to was read, when it is up
    /// to that rather than `NOISE_HEADROOM` σ.
    busy: Option<Duration>,
    /// Load relative to what `ready` (panic) or `base` (stable) instances are sized for.
    ratio: f64,
    count: u32,
    /// The count the load asks for before the tolerance keeps `base` (`base` when held for
    /// want of samples).
    raw: u32,
    within_tolerance: bool,
    missing: Missing,
    stats: WindowStats,
}

impl Candidate {
    /// The rule behind its count, as a stable-window proposal.
    fn rule(&self) -> Rule {
        if self.value.is_none() || self.missing == Missing::Reversed {
            Rule::Hold
        } else if self.within_tolerance {
            Rule::Tolerance
        } else {
            Rule::Target
        }
    }

    /// Whether the noise headroom changed the count or the tolerance's verdict: only then is
    /// it worth a mention (a `+ 0.0` in every reason says nothing).
    fn headroom_mattered(&self, tolerance: f64, base: u32) -> bool {
        let bare = self.value.unwrap_or(0.0);
        let at = at_target(self.metric, self.target, base);
        let within = base > 0 && at > 0.0 && (bare / at - 1.0).abs() <= tolerance;
        instances(self.metric, bare, self.target, base) != self.raw
            || within != self.within_tolerance
    }

    fn describe(&self, window: Duration, tolerance: f64, base: u32) -> String {
        let name = self.metric.name();
        let w = explain::duration(window);
        let Some(v) = self.value else {
            return format!("{name} missing over {w} → {base} (hold)");
        };
        let (v, t, c) = (
            explain::value(self.metric, v),
            fmt_target(self.metric, self.target),
            self.count,
        );
        let mut s = format!("{name} {v}");
        if self.headroom > 0.0 && self.headroom_mattered(tolerance, base) {
            let h = explain::value(self.metric, self.headroom);
            s += &match self.busy {
                Some(over) => format!(
                    " + {h} for its busy seconds over {}",
                    explain::duration(over)
                ),
                None => format!(" + {h} for its noise"),
            };
        }
        s += &format!(" over {w} / target {t} → {c}");
        if self.within_tolerance {
            let pct = tolerance * 100.0;
            s += &format!(" (within {pct:.0}% of target)");
        }
        let (m, n) = (self.stats.missing, self.stats.samples());
        match self.missing {
            Missing::None => {}
            Missing::AtTarget => s += &format!(" ({m} of {n} samples missing, counted at target)"),
            Missing::AsZero => s += &format!(" ({m} of {n} samples missing, counted as 0)"),
            Missing::Reversed => {
                s += &format!(" (hold: {m} of {n} samples missing would reverse the direction)")
            }
        }
        s
    }
}

/// Instances asked for by `avg` of `metric`: totals divide by the target; latency scales `base`.
fn instances(metric: ScaleMetric, avg: f64, target: f64, base: u32) -> u32 {
    if metric.is_total() {
        ceil_count(avg / target)
    } else {
        ceil_count(avg / target * f64::from(base))
    }
}

/// The value of `metric` at which `n` instances are exactly at target.
fn at_target(metric: ScaleMetric, target: f64, n: u32) -> f64 {
    if metric.is_total() {
        target * f64::from(n)
    } else {
        target
    }
}

/// Whether `metric` gets headroom for its noise and needs evidence to panic: the router's
/// totals (concurrency, rps), which measure arriving load. CPU and memory are sums over the
/// ready instances, so every scale-up is a step in them, and latency is not a total.
pub(crate) fn sized_for_noise(metric: ScaleMetric) -> bool {
    metric.is_total() && metric.from_router()
}

/// The level of a metric's busy seconds that target tracking sizes for, and over how long it
/// was read.
#[derive(Debug, Clone, Copy, PartialEq)]
struct BusyLevel {
    level: f64,
    over: Duration,
}

impl BusyLevel {
    /// The higher of the last fifteen minutes' level ([`Metrics::busy`], or while its window
    /// fills, [`Metrics::warming_busy`]) and the last hour's, if the hour's load held still
    /// ([`Metrics::steady_hour`]); the hour's alone when the fifteen minutes judged a fall the
    /// hour does not show. A still hour averages out the swings of fifteen minutes of clumpy
    /// load, and most of the falls such a load is judged to have taken are that noise: on the
    /// noisy and NASA traces the count then dipped and missed the next clump (`ebb sim
    /// --sweep`, BENCHMARKS.md, issue 19, fifteenth part).
    fn read(metrics: &Metrics, metric: ScaleMetric, now: Duration) -> Option<BusyLevel> {
        let quarter = metrics
            .busy(metric, now, BUSY_WINDOW)
            .map(|level| BusyLevel {
                level,
                over: BUSY_WINDOW,
            })
            .or_else(|| {
                let (level, over) = metrics.warming_busy(metric, now)?;
                Some(BusyLevel { level, over })
            });
        let hour = metrics.steady_hour(metric, now).map(|level| BusyLevel {
            level,
            over: STEADY_HOUR,
        });
        match (quarter, hour) {
            (Some(q), Some(h)) if h.level > q.level => Some(h),
            (Some(q), _) => Some(q),
            (None, h) => h,
        }
    }
}

/// Proposal of one metric over the stable window, with tolerance and missing samples.
fn stable(
    metric: ScaleMetric,
    target: f64,
    stats: WindowStats,
    noise: Option<f64>,
    busy: Option<BusyLevel>,
    base: u32,
    tolerance: f64,
) -> Candidate {
    let mut c = Candidate {
        metric,
        target,
        value: None,
        headroom: 0.0,
        busy: None,
        ratio: 1.0,
        count: base,
        raw: base,
        within_tolerance: false,
        missing: Missing::None,
        stats,
    };
    let Some(mean) = stats.mean() else {
        return c;
    };
    // The router's totals are sized for their busy seconds, not their mean (`noise.rs`).
    c.headroom = match noise {
        Some(sd) if sized_for_noise(metric) => NOISE_HEADROOM * sd,
        _ => 0.0,
    };
    // Or for the level its busy seconds reached, if that is higher: noise that comes in clumps
    // or is skewed (`noise.rs`); over the last fifteen minutes (or what of them a filling
    // window holds) or a still hour ([`BusyLevel::read`]).
    if let Some(busy) = busy.filter(|_| sized_for_noise(metric)) {
        if busy.level - mean > c.headroom {
            c.busy = Some(busy.over);
            c.headroom = busy.level - mean;
        }
    }
    let direction = instances(metric, mean + c.headroom, target, base).cmp(&base);
    let fill = match (stats.missing, direction) {
        (0, _) | (_, Ordering::Equal) => None,
        (_, Ordering::Less) => Some((Missing::AtTarget, at_target(metric, target, base))),
        (_, Ordering::Greater) => Some((Missing::AsZero, 0.0)),
    };
    let avg = fill.map_or(mean, |(_, v)| {
        (stats.sum + v * f64::from(stats.missing)) / f64::from(stats.samples())
    });
    c.value = Some(avg);
    let avg = avg + c.headroom;
    c.missing = fill.map_or(Missing::None, |(how, _)| how);
    let denominator = at_target(metric, target, base);
    c.ratio = if denominator > 0.0 {
        avg / denominator
    } else {
        f64::INFINITY
    };
    c.within_tolerance = base > 0 && (c.ratio - 1.0).abs() <= tolerance;
    c.raw = instances(metric, avg, target, base);
    c.count = if c.within_tolerance { base } else { c.raw };
    if c.missing != Missing::None && c.count.cmp(&base) == direction.reverse() {
        c.missing = Missing::Reversed;
        c.count = base;
    }
    // Missing samples never lower a decision, nor what stabilization remembers of it.
    if c.missing != Missing::None && c.raw.cmp(&base) == direction.reverse() {
        c.raw = base;
    }
    c
}

/// Proposal of one metric over the panic window; missing samples count as no load (a panic is a
/// scale-up, and missing data never drives one). `None` without any sample of the metric.
fn panic(metric: ScaleMetric, target: f64, stats: WindowStats, ready: u32) -> Option<Candidate> {
    stats.mean()?;
    let avg = stats.sum / f64::from(stats.samples());
    let ready = ready.max(1);
    let ratio = avg / at_target(metric, target, ready);
    let count = instances(metric, avg, target, ready);
    Some(Candidate {
        metric,
        target,
        value: Some(avg),
        headroom: 0.0,
        busy: None,
        ratio,
        count,
        raw: count,
        within_tolerance: false,
        missing: Missing::None,
        stats,
    })
}

/// First candidate with the highest `key` (ties: the order of [`ScaleMetric::ALL`]).
fn best(
    candidates: impl Iterator<Item = Candidate>,
    key: impl Fn(&Candidate) -> f64,
) -> Option<Candidate> {
    candidates.fold(None, |best: Option<Candidate>, c| match best {
        Some(b) if key(&b) >= key(&c) => Some(b),
        _ => Some(c),
    })
}

/// The load of `metric` in the stable window before the panic window: what the panic window
/// must rise above.
fn before(
    metrics: &Metrics,
    metric: ScaleMetric,
    now: Duration,
    config: &AutoscaleSpec,
) -> Option<Baseline> {
    let (stable, panic) = (config.stable_window, config.panic_window);
    if stable <= panic {
        return None;
    }
    let (end, len) = (now.saturating_sub(panic), stable - panic);
    Baseline::from_window(
        metrics.stats(metric, end, len),
        metrics.noise(metric, end, len),
    )
}

/// The target-tracking proposal. `ready` instances serve now; `base` is the count last asked
/// for. Updates the panic fields of `state`.
pub(crate) fn propose(
    config: &AutoscaleSpec,
    state: &mut State,
    metrics: &Metrics,
    ready: u32,
    base: u32,
    now: Duration,
) -> Proposal {
    let (stable_w, panic_w) = (config.stable_window, config.panic_window);
    let mut each = [None; ScaleMetric::ALL.len()];
    for (slot, (m, t)) in each.iter_mut().zip(config.targets.iter()) {
        let (stats, noise) = (
            metrics.stats(m, now, stable_w),
            metrics.noise(m, now, stable_w),
        );
        // What a burst must rise above until the next tick. At zero ready instances the next
        // rise is a cold start, whatever the load was before the service idled: no baseline,
        // so a burst sizes it.
        state.baselines[m as usize] = (ready > 0 && sized_for_noise(m))
            .then(|| Baseline::from_window(stats, noise))
            .flatten();
        let busy = sized_for_noise(m)
            .then(|| BusyLevel::read(metrics, m, now))
            .flatten();
        *slot = Some(stable(m, t, stats, noise, busy, base, config.tolerance));
    }
    let Some(calm) = best(each.iter().flatten().copied(), |c| f64::from(c.count)) else {
        return Proposal::hold(base, "no target set: hold".to_string());
    };
    let mut short = [None; ScaleMetric::ALL.len()];
    for (slot, (m, t)) in short.iter_mut().zip(config.targets.iter()) {
        *slot = panic(m, t, metrics.stats(m, now, panic_w), ready);
    }
    let surge = best(short.iter().flatten().copied(), |c| c.ratio);

    // Knative KPA: panic when the short window asks for ≥ threshold × the ready instances; stay
    // until the condition has not held for a whole stable window. Unlike KPA the condition
    // uses the unrounded ratio, so 1.05× of one instance is not "2 instances ≥ 2 × 1", and the
    // short window must also stand above the load's own noise (`noise.rs`).
    let over = short.iter().flatten().any(|c| {
        c.ratio >= config.panic_threshold
            && (!sized_for_noise(c.metric)
                || noise::risen(
                    before(metrics, c.metric, now, config),
                    c.value.unwrap_or(0.0),
                    Duration::from_secs(u64::from(c.stats.samples())),
                ))
    });
    if over {
        state.panic_last = Some(now);
    } else if state
        .panic_last
        .is_some_and(|t| t.saturating_add(stable_w) <= now)
    {
        state.panic_last = None;
        state.panic_max = 0;
    }

    // Every target's own ask: the highest is what the load asks for, and what stabilization
    // remembers.
    let asked = each
        .iter()
        .flatten()
        .map(|c| c.raw)
        .max()
        .unwrap_or(calm.raw);
    let load_count = (each.iter().flatten())
        .filter(|c| sized_for_noise(c.metric) && c.value.is_some() && c.missing == Missing::None)
        .map(|c| c.raw)
        .max();
    let Some(since) = state.panic_last else {
        let mut reason = calm.describe(stable_w, config.tolerance, base);
        let others: Vec<String> = (each.iter().flatten())
            .filter(|c| c.metric != calm.metric)
            .map(|c| format!("{} → {}", c.metric.name(), c.count))
            .collect();
        if !others.is_empty() {
            reason += &format!("; other targets: {}", others.join(", "));
        }
        return Proposal {
            count: calm.count,
            reason,
            panic: false,
            rule: calm.rule(),
            recommendation: asked,
            load_count,
        };
    };

    let surge_count = surge.map_or(0, |s| s.count);
    state.panic_max = state.panic_max.max(surge_count);
    let count = state.panic_max.max(calm.count);
    let mut reason = match surge {
        Some(s) if s.count >= calm.count => s.describe(panic_w, config.tolerance, base),
        _ => calm.describe(stable_w, config.tolerance, base),
    };
    if over {
        reason += " (panic)";
    } else {
        let ago = explain::duration(now.saturating_sub(since));
        let threshold = config.panic_threshold;
        reason += &format!(" (panic: ≥{threshold}× seen {ago} ago)");
    }
    if count > surge_count.max(calm.count) {
        reason += &format!("; holding {count}, the most asked for in this panic");
    }
    Proposal {
        count,
        reason,
        panic: true,
        rule: Rule::Panic,
        // One hold, not two: the panic holds its count while it lasts, and what stabilization
        // remembers is what the stable window asks for, so the count may fall as soon as the
        // panic ends. (Remembering the panic's count was a second hold of scale_down_delay.)
        recommendation: asked,
        load_count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(sum: f64, present: u32, missing: u32) -> WindowStats {
        WindowStats {
            sum,
            present,
            missing,
        }
    }

    /// The stable-window candidate of `metric` at `target` for `stats`, without noise or a busy
    /// level, from `base` instances, at a 10 % tolerance.
    fn plain(metric: ScaleMetric, target: f64, stats: WindowStats, base: u32) -> Candidate {
        stable(metric, target, stats, None, None, base, 0.1)
    }

    #[test]
    fn ceil_count_ignores_float_noise_but_not_real_excess() {
        assert_eq!(ceil_count(0.1 * 3.0 / 0.1), 3);
        assert_eq!(ceil_count(3.01), 4);
        assert_eq!(ceil_count(0.0), 0);
        assert_eq!(ceil_count(f64::NAN), 0);
        assert_eq!(ceil_count(1e300), u32::MAX);
    }

    #[test]
    fn load_within_tolerance_keeps_the_count() {
        // 10 instances at target 5: 52 rps is 1.04× → keep 10; 57 rps is 1.14× → 12.
        let c = plain(ScaleMetric::Rps, 5.0, stats(52.0, 1, 0), 10);
        assert_eq!((c.count, c.within_tolerance), (10, true));
        assert_eq!(
            plain(ScaleMetric::Rps, 5.0, stats(57.0, 1, 0), 10).count,
            12
        );
    }

    #[test]
    fn missing_samples_count_at_target_when_scaling_down() {
        // Present: 10 of 60 samples at 10 rps (→ 2 of 10 instances); the 50 missing count as
        // 50 rps each: (100 + 2500) / 60 = 43.3 → 9.
        let c = plain(ScaleMetric::Rps, 5.0, stats(100.0, 10, 50), 10);
        assert_eq!((c.count, c.missing), (9, Missing::AtTarget));
    }

    #[test]
    fn missing_samples_that_would_reverse_a_scale_up_hold() {
        // Present says 100 rps → 20, but counted as 0 the 50 missing make it 16.7 rps → 4 < 10.
        let c = plain(ScaleMetric::Rps, 5.0, stats(1000.0, 10, 50), 10);
        assert_eq!((c.count, c.missing), (10, Missing::Reversed));
    }

    #[test]
    fn latency_scales_the_count_by_its_ratio_to_the_target() {
        // p95 300ms against 200ms with 4 instances → 6.
        let c = plain(ScaleMetric::LatencyP95, 0.2, stats(0.3, 1, 0), 4);
        assert_eq!(c.count, 6);
        assert_eq!(
            c.describe(Duration::from_secs(60), 0.1, 4),
            "latency_p95 300ms over 60s / target 200ms → 6"
        );
    }
}
