//! The load's own noise: headroom for it, and evidence of a rise beyond it.
//!
//! Averages hide bursts. On bursty traffic a count sized for the stable window's mean misses the
//! busy seconds, and the only cure a mean-based rule has is a lower target everywhere. Replaying
//! the NASA-1995 trace (×100, `ebb sim --sweep`, d = 10 s) that way cost 4.4× the optimal
//! oracle, more than the models of HPA (2.0×) and Knative (3.8×); panic mode, entered on one-second
//! clumps (42 % of the seconds were in panic), was what covered the bursts. Two rules replace that:
//!
//! - **Headroom.** Target tracking sizes for `mean + NOISE_HEADROOM × σ` of a total metric over
//!   the stable window, σ being the per-second noise from successive differences
//!   ([`Metrics::noise`]: a trend or one step of load is not noise). Steady load (σ ≈ 0) is sized as before; bursty load gets headroom in
//!   proportion to its bursts, not to its mean, so a higher target serves it.
//! - **Evidence.** Panic needs the short span's mean to stand above what the noise explains:
//!   `mean − baseline ≥ EVIDENCE_Z × σ / √span`, baseline and σ taken over the seconds before
//!   the span. A quiet service has a small σ, so a step still panics at once; a bursty one must
//!   rise well beyond its usual clumps.
//!
//! Same replay with both: 1.9× at d = 10 s and 1.4× at d = 60 s (HPA 2.0× and 1.5×); figures
//! for every trace are in BENCHMARKS.md.

use crate::metrics::WindowStats;
use std::time::Duration;

/// Standard deviations of per-second noise that target tracking adds to a total metric's mean.
/// Two cover about 98 % of seconds under normal noise; the target's own margin covers the rest.
/// Replays with 3 were better on the NASA trace and worse on half the synthetic ones
/// (BENCHMARKS.md).
pub const NOISE_HEADROOM: f64 = 2.0;

/// How many standard errors above the baseline a short span's mean must be to count as a rise.
/// Three is the conventional control-chart limit (Shewhart): for normal noise, one check in 740
/// crosses it by chance.
pub const EVIDENCE_Z: f64 = 3.0;

/// The load before a span: its mean and per-second standard deviation.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Baseline {
    mean: f64,
    std_dev: f64,
}

impl Baseline {
    /// The baseline of a window, from its stats and its [`Metrics::noise`](crate::Metrics::noise); `None` with too
    /// few values to judge noise by (then any rise counts).
    pub(crate) fn from_window(stats: WindowStats, noise: Option<f64>) -> Option<Baseline> {
        Some(Baseline {
            mean: stats.mean()?,
            std_dev: noise?,
        })
    }

    /// Whether `mean`, the average over `span`, is above what the baseline's noise explains.
    /// Per-second noise averages down over a longer span, by √span.
    pub(crate) fn risen(&self, mean: f64, span: Duration) -> bool {
        let seconds = span.as_secs_f64().max(f64::MIN_POSITIVE);
        // Over steady load (σ = 0) any rise counts, but not the rounding of two means of the
        // same values: a relative hair above it.
        let rounding = 1e-9 * self.mean.abs().max(1.0);
        mean - self.mean > EVIDENCE_Z * self.std_dev / seconds.sqrt() + rounding
    }
}

/// Whether `mean` over `span` is a rise over `baseline`; with no baseline, any value is.
pub(crate) fn risen(baseline: Option<Baseline>, mean: f64, span: Duration) -> bool {
    baseline.is_none_or(|b| b.risen(mean, span))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::{Metrics, Sample};
    use ebb_core::autoscale::ScaleMetric;

    fn of(values: &[f64]) -> Option<Baseline> {
        let mut metrics = Metrics::new(Duration::from_secs(3600));
        for (s, v) in (1..).zip(values) {
            metrics.push(Sample {
                rps: Some(*v),
                ..Sample::new(Duration::from_secs(s))
            });
        }
        let now = Duration::from_secs(values.len() as u64);
        let rps = ScaleMetric::Rps;
        Baseline::from_window(metrics.stats(rps, now, now), metrics.noise(rps, now, now))
    }

    #[test]
    fn a_step_over_steady_load_is_a_rise_at_once() {
        let b = of(&[10.0; 54]);
        assert!(risen(b, 10.5, Duration::from_secs(1)));
        assert!(!risen(b, 10.0, Duration::from_secs(1)));
    }

    #[test]
    fn a_clump_within_the_loads_noise_is_not() {
        // Alternating 0 and 20: mean 10, σ ≈ 14.1 from successive differences. One second at 30 is within 3σ; six seconds
        // averaging 30 are not.
        let values: Vec<f64> = (0..54)
            .map(|i| if i % 2 == 0 { 0.0 } else { 20.0 })
            .collect();
        let b = of(&values);
        assert!(!risen(b, 30.0, Duration::from_secs(1)));
        assert!(risen(b, 30.0, Duration::from_secs(6)));
        // Half a second is noisier than a second.
        assert!(!risen(b, 50.0, Duration::from_millis(500)));
    }

    #[test]
    fn without_two_values_any_rise_counts() {
        assert_eq!(of(&[5.0, 6.0]), None);
        assert!(risen(None, 0.0, Duration::from_secs(1)));
    }
}
