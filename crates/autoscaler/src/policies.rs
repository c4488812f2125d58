//! The step and linear policies: the per-instance value of one metric over the stable window
//! changes the count relative to the ready instances.
//!
//! Relative to *ready* instances so that a decision is idempotent while new instances start: the
//! ready count does not move, so the same value proposes the same count tick after tick, and the
//! next step is taken only once the added instances serve (and have moved the value). The common
//! rules of [`decide`](crate::decide) apply afterwards: a scale-down waits `scale_down_delay`,
//! a scale-up is rate-limited, the count stays within the bounds.

use crate::explain;
use crate::metrics::{Metrics, WindowStats};
use crate::proposal::Proposal;
use crate::target::ceil_count;
use ebb_core::autoscale::{AutoscaleSpec, ScaleMetric, StepBand, StepChange};
use std::time::Duration;

/// The metric over the stable window, per ready instance, described for a reason; or the hold
/// proposal when no sample has it.
fn observe(
    config: &AutoscaleSpec,
    metric: ScaleMetric,
    metrics: &Metrics,
    ready: u32,
    base: u32,
    now: Duration,
) -> Result<(f64, WindowStats, String), Proposal> {
    let stats = metrics.stats(metric, now, config.stable_window);
    let w = explain::duration(config.stable_window);
    let Some(mean) = stats.mean() else {
        let name = metric.name();
        return Err(Proposal::hold(
            base,
            format!("{name} missing over {w} → {base} (hold)"),
        ));
    };
    let (v, per) = if metric.is_total() {
        (mean / f64::from(ready.max(1)), " per instance")
    } else {
        (mean, "")
    };
    let text = format!(
        "{} {}{per} over {w}",
        metric.name(),
        explain::value(metric, v)
    );
    Ok((v, stats, text))
}

/// Missing data never scales down: a lower count with samples missing holds `base` instead.
fn guard_missing(count: u32, base: u32, stats: WindowStats, reason: &mut String) -> u32 {
    if count < base && stats.missing > 0 {
        let (m, n) = (stats.missing, stats.samples());
        *reason += &format!("; hold {base}: {m} of {n} samples missing");
        base
    } else {
        count
    }
}

fn apply(change: StepChange, ready: u32) -> u32 {
    match change {
        StepChange::Add(n) => ready.saturating_add(n),
        StepChange::Remove(n) => ready.saturating_sub(n),
        StepChange::Percent(p) => {
            let delta = ceil_count(f64::from(ready) * p.abs() / 100.0).max(1);
            if p >= 0.0 {
                ready.saturating_add(delta)
            } else {
                ready.saturating_sub(delta)
            }
        }
    }
}

/// [`ScalePolicy::Step`](crate::ScalePolicy::Step): the band holding the value changes the count; no band,
/// no change.
pub(crate) fn step(
    config: &AutoscaleSpec,
    metric: ScaleMetric,
    bands: &[StepBand],
    metrics: &Metrics,
    ready: u32,
    base: u32,
    now: Duration,
) -> Proposal {
    let (v, stats, text) = match observe(config, metric, metrics, ready, base, now) {
        Ok(o) => o,
        Err(hold) => return hold,
    };
    let top = |b: &StepBand| b.to.unwrap_or(f64::INFINITY);
    let Some(band) = bands.iter().find(|b| v >= b.from && v < top(b)) else {
        return Proposal::hold(base, format!("{text} in no band → {base} (hold)"));
    };
    let count = apply(band.change, ready);
    let (from, to, change) = (band.from, top(band), band.change);
    let mut reason = format!("{text} in [{from}, {to}): {ready} ready {change} → {count}");
    let count = guard_missing(count, base, stats, &mut reason);
    Proposal::new(count, reason)
}

/// [`ScalePolicy::Linear`](crate::ScalePolicy::Linear): below `low` hold; between `low` and `high` add
/// `step × (v − low) / (high − low)`, rounded; from `high` add `step`.
pub(crate) fn linear(
    config: &AutoscaleSpec,
    metric: ScaleMetric,
    (low, high, step): (f64, f64, u32),
    metrics: &Metrics,
    ready: u32,
    base: u32,
    now: Duration,
) -> Proposal {
    let (v, stats, text) = match observe(config, metric, metrics, ready, base, now) {
        Ok(o) => o,
        Err(hold) => return hold,
    };
    let (l, h) = (explain::value(metric, low), explain::value(metric, high));
    if v < low {
        return Proposal::hold(base, format!("{text} below low {l} → {base} (hold)"));
    }
    let added = if v >= high {
        step
    } else {
        (f64::from(step) * (v - low) / (high - low)).round() as u32
    };
    let count = ready.saturating_add(added);
    let zone = if v >= high {
        format!("at or above high {h}")
    } else {
        format!("between {l} and {h}")
    };
    let mut reason = format!("{text} {zone}: {ready} ready +{added} → {count}");
    let count = guard_missing(count, base, stats, &mut reason);
    Proposal::new(count, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_apply_to_the_ready_count() {
        assert_eq!(apply(StepChange::Add(2), 4), 6);
        assert_eq!(apply(StepChange::Remove(2), 1), 0);
        assert_eq!(apply(StepChange::Percent(50.0), 5), 8);
        assert_eq!(apply(StepChange::Percent(-25.0), 10), 7);
        // A percentage moves at least one instance, even from zero.
        assert_eq!(apply(StepChange::Percent(10.0), 0), 1);
        assert_eq!(apply(StepChange::Percent(-10.0), 3), 2);
    }
}
