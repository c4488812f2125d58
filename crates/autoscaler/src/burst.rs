//! Bursts: panic mode entered between ticks.
//!
//! Knative's panic window (6 s) averages a load step in gradually: a 4× step needs a third of
//! the window, 2 s, before its mean reaches the 2× panic threshold. The router's in-flight
//! integral is exact, though, so the load over any recent span is known at any instant. The
//! server reads the last half second four times a second, and when [`BURST_READINGS`]
//! readings in a row each call for ≥ [`BURST_FACTOR`] × `panic_threshold` × the ready
//! instances, [`burst`] enters panic at once and asks for the instances the last one calls for,
//! within a second of the step.
//!
//! Only the router's totals (concurrency, rps) of the target policy take part: they are what a
//! step of traffic moves first, and what a short span measures well. A burst only ever scales
//! up; the next tick continues the panic (holding the count) as if the panic window had seen it.

use crate::decide::{commit, deciding_policy, Decision, Now};
use crate::explain;
use crate::noise;
use crate::state::State;
use crate::target::ceil_count;
use crate::Rule;
use ebb_core::autoscale::{AutoscaleSpec, ScaleMetric, ScalePolicy};
use std::time::Duration;

/// Shortest span a burst reading may cover: 400 ms. The server reads half-second spans, give or
/// take its timer's jitter; much shorter spans see a few requests and would panic on noise.
pub const MIN_BURST_SPAN: Duration = Duration::from_millis(400);

/// Readings in a row that must be over the burst threshold before a burst acts, and that
/// threshold as a multiple of `panic_threshold` (so 3× the ready instances by default). A single
/// short reading at 2× is as often a blip of bursty traffic as a step: replaying the NASA-1995
/// trace (`tests/nasa_trace.rs`, a reading per second of the trace) with single readings at 2×
/// more than doubled the capacity held per unit of load used (1.28 with the panic window alone →
/// 2.46); two in a row at 3× keep it at 1.34, and still see a 4× step within ~0.8 s.
pub const BURST_READINGS: u32 = 2;
/// See [`BURST_READINGS`].
pub const BURST_FACTOR: f64 = 1.5;

/// Longest gap between two readings that still counts as "in a row".
const BURST_GAP: Duration = Duration::from_secs(1);

/// The router's load over the span since its last sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// How long the reading covers.
    pub span: Duration,
    /// Average requests in flight over the span.
    pub concurrency: Option<f64>,
    /// Responses per second over the span.
    pub rps: Option<f64>,
}

impl Reading {
    fn value(&self, metric: ScaleMetric) -> Option<f64> {
        match metric {
            ScaleMetric::Concurrency => self.concurrency,
            ScaleMetric::Rps => self.rps,
            _ => None,
        }
        .filter(|v| v.is_finite() && *v >= 0.0)
    }
}

/// Enters panic between ticks when `reading` alone asks for ≥ `panic_threshold` × the `current`
/// ready instances. Returns a decision when that raises the count asked for; `None` when the
/// reading is too short, calm, or already covered. With no instance ready, the instances already
/// asked for (by [`demand`], starting) stand in for them, so a cold start under load is sized by
/// the load seen instead of growing from one; a service at zero with nothing asked for is
/// [`demand`]'s.
///
/// [`demand`]: crate::demand
pub fn burst(
    config: &AutoscaleSpec,
    state: &mut State,
    reading: &Reading,
    current: u32,
    now: Now,
) -> Option<Decision> {
    let sized_for = match current {
        0 => state.desired.unwrap_or(0),
        n => n,
    };
    if reading.span < MIN_BURST_SPAN || sized_for == 0 {
        return None;
    }
    if !matches!(deciding_policy(&config.policy), ScalePolicy::Target) {
        return None;
    }
    let (metric, value, target) = config
        .targets
        .iter()
        .filter_map(|(m, t)| Some((m, reading.value(m)?, t)))
        .filter(|(_, _, t)| *t > 0.0)
        .max_by(|a, b| (a.1 / a.2).total_cmp(&(b.1 / b.2)))?;
    let ratio = value / (target * f64::from(sized_for));
    let t = now.mono;
    let over = ratio >= config.panic_threshold * BURST_FACTOR
        && noise::risen(state.baseline(metric), value, reading.span);
    if !sustained(state, over, t) {
        return None;
    }
    let asked = ceil_count(value / target);
    state.panic_last = Some(t);
    state.panic_max = state.panic_max.max(asked);
    let base = state.desired.unwrap_or(current);
    let bounds = config.bounds_at(now.unix_ms);
    let desired = asked.min(bounds.max).max(bounds.min);
    if desired <= base {
        return None;
    }
    commit(config, state, desired, base, 0, t);
    let mut reason = format!(
        "{} {} over {} / target {} → {asked} (panic: burst)",
        metric.name(),
        explain::value(metric, value),
        explain::duration(reading.span),
        crate::config::fmt_target(metric, target),
    );
    let mut rule = Rule::Panic;
    if desired != asked {
        reason += &format!("; clamped to {desired} (max {})", bounds.max);
        rule = match bounds.window {
            Some(_) => Rule::Schedule,
            None => Rule::Bounds,
        };
    }
    Some(Decision {
        desired,
        reason,
        panic: true,
        rule,
    })
}

/// Counts readings over the threshold in a row; true once there are [`BURST_READINGS`].
fn sustained(state: &mut State, over: bool, now: Duration) -> bool {
    let (count, last) = state.burst_streak;
    let in_a_row = last.is_some_and(|l| now.saturating_sub(l) <= BURST_GAP);
    let count = match (over, in_a_row) {
        (false, _) => 0,
        (true, true) => count.saturating_add(1),
        (true, false) => 1,
    };
    state.burst_streak = (count, Some(now));
    count >= BURST_READINGS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decide, Metrics, Sample};
    use ebb_core::autoscale::ScaleTargets;

    fn config() -> AutoscaleSpec {
        AutoscaleSpec::new(
            1,
            10,
            ScaleTargets {
                concurrency: Some(2.0),
                ..ScaleTargets::default()
            },
        )
    }

    fn reading(ms: u64, concurrency: f64) -> Reading {
        Reading {
            span: Duration::from_millis(ms),
            concurrency: Some(concurrency),
            rps: None,
        }
    }

    fn at(ms: u64) -> Now {
        Now::unix(Duration::from_millis(ms))
    }

    /// Two readings 250 ms apart ending at `ms`; the decision of the second.
    fn twice(
        c: &AutoscaleSpec,
        s: &mut State,
        r: Reading,
        ready: u32,
        ms: u64,
    ) -> Option<Decision> {
        assert_eq!(
            burst(c, s, &r, ready, at(ms - 250)),
            None,
            "one reading never acts"
        );
        burst(c, s, &r, ready, at(ms))
    }

    #[test]
    fn a_4x_step_panics_on_the_second_reading_and_asks_for_its_count() {
        let (c, mut s) = (config(), State::default());
        let d = twice(&c, &mut s, reading(600, 8.0), 1, 10_000).expect("a burst");
        assert_eq!(d.desired, 4);
        assert!(d.panic && s.panicking());
        assert_eq!(
            d.reason,
            "concurrency 8.0 over 600ms / target 2 → 4 (panic: burst)"
        );
    }

    #[test]
    fn calm_short_broken_or_covered_readings_decide_nothing() {
        let c = config();
        let mut s = State::default();
        // Below 3× (1.5 × the 2× panic threshold), however often.
        for ms in [1_000, 1_250, 1_500] {
            assert_eq!(burst(&c, &mut s, &reading(900, 5.9), 1, at(ms)), None);
        }
        assert!(!s.panicking());
        // Too short a span, however high.
        assert_eq!(twice(&c, &mut s, reading(350, 50.0), 1, 3_000), None);
        // At zero with nothing asked for, the demand path decides.
        assert_eq!(twice(&c, &mut s, reading(900, 50.0), 0, 4_000), None);
        // Not in a row: a calm reading between, or too long a gap.
        let mut s = State::default();
        assert_eq!(burst(&c, &mut s, &reading(900, 8.0), 1, at(5_000)), None);
        assert_eq!(burst(&c, &mut s, &reading(900, 2.0), 1, at(5_250)), None);
        assert_eq!(burst(&c, &mut s, &reading(900, 8.0), 1, at(5_500)), None);
        assert_eq!(burst(&c, &mut s, &reading(900, 8.0), 1, at(7_000)), None);
        // Already asked for: panic is noted, no new decision.
        let mut s = State::default();
        assert!(twice(&c, &mut s, reading(900, 8.0), 1, 8_000).is_some());
        assert_eq!(burst(&c, &mut s, &reading(900, 8.0), 1, at(8_250)), None);
        assert!(s.panicking());
    }

    /// Issue 19: waking from zero under load took one instance, then the ticks' rate limit
    /// (1 → 7 over 6 s at 48 req/s). The instance demand asked for stands in for the ready
    /// ones, so the load seen while it starts sizes the step at once.
    #[test]
    fn a_cold_start_under_load_is_sized_by_the_load_seen() {
        let mut c = config();
        c.min = 0;
        let mut s = State::default();
        let woke = crate::demand(&c, &mut s, 0, at(1_000)).expect("a request at zero");
        assert_eq!(woke.desired, 1);
        // 9.6 in flight at a target of 2 while the first instance starts: 5 instances.
        let d = twice(&c, &mut s, reading(500, 9.6), 0, 1_500).expect("a burst at zero");
        assert_eq!(d.desired, 5, "{}", d.reason);
        assert!(d.panic);
    }

    #[test]
    fn the_count_is_clamped_to_max() {
        let (c, mut s) = (config(), State::default());
        let d = twice(&c, &mut s, reading(500, 100.0), 1, 1_000).expect("a burst");
        assert_eq!(d.desired, 10);
        assert!(
            d.reason.ends_with("; clamped to 10 (max 10)"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn metrics_the_router_does_not_measure_are_ignored() {
        let c = AutoscaleSpec::new(
            1,
            10,
            ScaleTargets {
                cpu: Some(0.5),
                ..ScaleTargets::default()
            },
        );
        let mut s = State::default();
        assert_eq!(twice(&c, &mut s, reading(900, 100.0), 1, 1_000), None);
    }

    #[test]
    fn the_next_tick_holds_the_burst_count() {
        let c = config();
        let mut s = State::default();
        let mut m = Metrics::for_config(&c);
        for sec in 1..=30u64 {
            let sample = Sample {
                concurrency: Some(2.0),
                requests: 10,
                ..Sample::new(Duration::from_secs(sec))
            };
            m.push(sample);
            assert_eq!(decide(&c, &mut s, &m, 1, at(sec * 1000)).desired, 1);
        }
        let d = twice(&c, &mut s, reading(700, 8.0), 1, 30_750).expect("a burst");
        assert_eq!(d.desired, 4);
        // The tick after: the panic window's mean is still low, but the panic holds the count.
        m.push(Sample {
            concurrency: Some(8.0),
            requests: 40,
            ..Sample::new(Duration::from_secs(31))
        });
        let next = decide(&c, &mut s, &m, 1, at(31_000));
        assert_eq!(next.desired, 4, "{}", next.reason);
        assert!(next.panic);
    }
}
