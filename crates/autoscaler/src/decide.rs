//! One tick: the policy's proposal, then the rules every policy shares — no scale-down while
//! panicking, scale-down stabilization, the scale-up rate limit, idle → zero, and the bounds.

use crate::idle::{Counts, Idle};
use crate::metrics::Metrics;
use crate::proposal::Proposal;
use crate::state::State;
use crate::Rule;
use crate::{explain, forecast};
use crate::{policies, target};
use ebb_core::autoscale::{AutoscaleSpec, ForecastMode, ScalePolicy};
use std::time::Duration;

/// The instant of a decision, injected: a monotonic reading (the clock of [`Sample::at`]) for
/// windows and delays, and wall-clock time for schedules. They are separate so that a wall-clock
/// jump (NTP, a VM resumed) cannot stretch or cut a window.
///
/// [`Sample::at`]: crate::Sample::at
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time, on the epoch of [`Sample::at`](crate::Sample::at).
    pub mono: Duration,
    /// Milliseconds since 1970-01-01T00:00:00Z.
    pub unix_ms: i64,
}

impl Now {
    /// `mono` and `unix_ms` read at the same moment.
    pub fn new(mono: Duration, unix_ms: i64) -> Self {
        Now { mono, unix_ms }
    }

    /// An instant given as time since the Unix epoch, used as both clocks: for simulators and
    /// tests, which have only one clock.
    pub fn unix(since_epoch: Duration) -> Self {
        let unix_ms = i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX);
        Now::new(since_epoch, unix_ms)
    }
}

/// What the service should run, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Instances wanted.
    pub desired: u32,
    /// The inputs and the rules that applied, for `ebb events`, e.g.
    /// `concurrency 43.2 over 6s / target 10 → 5 (panic)`.
    pub reason: String,
    /// Whether the decision was made in panic mode.
    pub panic: bool,
    /// The rule that had the last word on `desired`.
    pub rule: Rule,
}

/// The policy that decides inside the bounds: target tracking within a schedule's windows, or
/// the policy itself.
pub(crate) fn deciding_policy(policy: &ScalePolicy) -> &ScalePolicy {
    match policy {
        ScalePolicy::Schedule { .. } => &ScalePolicy::Target,
        p => p,
    }
}

/// Decides how many instances the service should run.
///
/// `current` is the number of ready (serving) instances: panic mode compares the short window
/// against it, as Knative does, and per-instance values of the step and linear policies divide
/// by it. The count asked for last is remembered in `state`. `metrics` holds the samples up to
/// `now.mono`.
/// Call once per [`TICK`](crate::TICK); `state` carries what the rules need between calls.
pub fn decide(
    config: &AutoscaleSpec,
    state: &mut State,
    metrics: &Metrics,
    current: u32,
    now: Now,
) -> Decision {
    let t = now.mono;
    state.observe(metrics, t);
    state.starts.ready(t, current);
    let base = state.desired.unwrap_or(current);
    if state.desired.is_none() {
        // As HPA: a fresh state remembers the running count as a recommendation, so that a
        // restarted server waits a scale_down_delay before it removes anything (its own
        // band's, when `auto` restored what it learned).
        state.recommend(t, base, config.scale_down_delay);
        if config.scale_down_auto {
            state
                .dips
                .observe(t, base.min(config.bounds_at(now.unix_ms).max));
        }
    }
    let proposal = match deciding_policy(&config.policy) {
        ScalePolicy::Target => target::propose(config, state, metrics, current, base, t),
        ScalePolicy::Step { metric, steps } => {
            policies::step(config, *metric, steps, metrics, current, base, t)
        }
        ScalePolicy::Linear {
            metric,
            low,
            high,
            step,
        } => policies::linear(
            config,
            *metric,
            (*low, *high, *step),
            metrics,
            current,
            base,
            t,
        ),
        ScalePolicy::Schedule { .. } => Proposal::hold(base, "schedule without a policy".into()),
    };
    state.recommend(t, proposal.recommendation, config.scale_down_delay);
    let recommendation = proposal.recommendation;
    if let (ForecastMode::On | ForecastMode::Shadow, Some(load)) =
        (config.forecast, proposal.load_count)
    {
        // The stable window's count is for the load of its middle: recorded there, a minute of
        // history is the count that minute's own load asked for, not one that trails it.
        let middle = i64::try_from(config.stable_window.as_millis() / 2).unwrap_or(0);
        state
            .forecaster
            .record(now.unix_ms.saturating_sub(middle), f64::from(load));
    }
    let Proposal {
        mut count,
        mut reason,
        mut panic,
        mut rule,
        ..
    } = proposal;

    if panic {
        if count < base {
            count = base;
            reason += &format!("; not below {base} while panicking");
        }
    } else if count < base {
        let held = stabilize_down(config, state, count, base, t, &mut reason);
        if held != count {
            rule = Rule::Stabilized;
        }
        count = held;
    } else if count > base {
        let limited = limit_up(config, state, count, base, t, &mut reason);
        if limited != count {
            rule = Rule::RateLimited;
        }
        count = limited;
    }

    let bounds = config.bounds_at(now.unix_ms);
    // A `min = 0` service at zero stays there until a request comes (see `idle::keeps_one`).
    let asleep = bounds.min == 0 && base == 0;
    // The count the rules asked for before the forecast raised it, if it did.
    let mut before_forecast = None;
    if !asleep {
        let raised = forecast_floor(config, state, count, now, &mut reason);
        if raised > count {
            before_forecast = Some(count);
            count = raised;
            rule = Rule::Forecast;
        }
    }

    let view = Idle::read(config, state, metrics, bounds.min, t);
    let mut floor = bounds.min;
    if view.idle {
        count = 0;
        reason = view.idle_reason(config, state);
        rule = Rule::Idle;
        panic = false;
        state.end_panic();
        state.keep_alive.release();
    } else {
        floor = view.floor(state, bounds.min, base);
    }
    let clamped = count.clamp(floor.min(bounds.max), bounds.max);
    let counts = Counts {
        asked: count,
        clamped,
        base,
    };
    let mut planned = 0;
    if let Some((text, by, plan)) = view.explain(config, state, counts, bounds.min) {
        reason += &text;
        rule = by;
        planned = plan;
    } else if clamped != count {
        rule = match bounds.window {
            Some(_) => Rule::Schedule,
            None => Rule::Bounds,
        };
        reason += &format!(
            "; clamped to {clamped} (min {}, max {}",
            bounds.min, bounds.max
        );
        if let (Some(i), ScalePolicy::Schedule { windows, .. }) = (bounds.window, &config.policy) {
            reason += &format!(" of schedule window {i}: {}", windows[i]);
        }
        reason += ")";
    }
    // A service woken from zero by the tick (a request seen before `demand` was called) is a
    // cold start as `demand`'s is, whatever rule sized it; a pre-warm is planned.
    if asleep && clamped > 0 && rule != Rule::Prewarm {
        rule = Rule::Demand;
    }
    view.learn(config, state, (recommendation, clamped), bounds, t);
    // A planned raise is not a reaction: the scale-up rate limit does not count it.
    planned += before_forecast.map_or(0, |asked| clamped.saturating_sub(asked.max(base)));
    commit(config, state, clamped, base, planned, t);
    Decision {
        desired: clamped,
        reason,
        panic,
        rule,
    }
}

/// The count after the predictive floor: `count` raised to what the forecast asks for ahead of
/// a predicted rise (mode `on`), or `count` with a note of what it would have done (`shadow`).
/// Never lower than `count`.
fn forecast_floor(
    config: &AutoscaleSpec,
    state: &mut State,
    count: u32,
    now: Now,
    reason: &mut String,
) -> u32 {
    if config.forecast == ForecastMode::Off {
        return count;
    }
    let lead = state.starts.estimate() + crate::TICK;
    let floor = state
        .forecaster
        .floor(now.unix_ms, lead, config.stable_window, config.tolerance);
    let Some(floor) = floor else {
        return count;
    };
    if floor.count <= count {
        return count;
    }
    let (n, season) = (floor.count, floor.season.as_str());
    let at = forecast::clock(floor.minute);
    let lead = explain::duration(lead);
    if config.forecast == ForecastMode::Shadow {
        *reason += &format!("; the {season} forecast would raise to {n} for {at} (shadow)");
        return count;
    }
    *reason += &format!("; raised to {n}: the {season} forecast for {at}, {lead} ahead");
    count.max(n)
}

/// HPA's scale-down stabilization: go no lower than the highest recommendation of the last
/// `scale_down_delay`, and never above `base` because of it. With `scale_down_delay = "auto"`,
/// once learned, each level is kept for the delay of the band that sets it instead
/// ([`crate::dips`]).
fn stabilize_down(
    config: &AutoscaleSpec,
    state: &mut State,
    count: u32,
    base: u32,
    now: Duration,
    reason: &mut String,
) -> u32 {
    if config.scale_down_auto {
        if let Some(held) = state.dips.held(now, count, base, state.starts.estimate()) {
            if held.count > count {
                let (n, d) = (held.count, explain::duration(held.delay));
                let how = state.dips.explain(n);
                *reason += &format!(
                    "; held at {n}, asked for within the last {d} (scale_down_delay auto, {how})"
                );
            }
            return held.count;
        }
    }
    let delay = config.scale_down_delay;
    let held = state
        .highest_recommendation(now, delay)
        .unwrap_or(count)
        .clamp(count, base);
    if held > count {
        let d = explain::duration(delay);
        *reason += &format!("; held at {held}, the highest recommendation of the last {d}");
    }
    held
}

/// HPA's scale-up policies: per period, at most the larger of `instances` and `percent` % of
/// the count at the period's start.
fn limit_up(
    config: &AutoscaleSpec,
    state: &State,
    count: u32,
    base: u32,
    now: Duration,
    reason: &mut String,
) -> u32 {
    let l = config.scale_up;
    let start = base.saturating_sub(state.added_within(now, l.period));
    let by_percent = target::ceil_count(f64::from(start) * (1.0 + f64::from(l.percent) / 100.0));
    let limit = start.saturating_add(l.instances).max(by_percent).max(base);
    if count > limit {
        let (n, p, d) = (l.instances, l.percent, explain::duration(l.period));
        *reason += &format!("; limited to {limit} (scale-up rate: max({n}, {p}%) per {d})");
        return limit;
    }
    count
}

/// Records `desired` as the count decided at `now`, from `base`; of an addition, the scale-up
/// rate limit counts all but the `planned` instances (the forecast's).
pub(crate) fn commit(
    config: &AutoscaleSpec,
    state: &mut State,
    desired: u32,
    base: u32,
    planned: u32,
    now: Duration,
) {
    if desired > base {
        let reacted = (desired - base).saturating_sub(planned);
        state.scaled_up(now, reacted, config.scale_up.period);
        // A fresh state's first decision may only be catching up with instances asked for
        // before it (a deploy, another leader): its wait would measure too short a start.
        if state.desired.is_some() {
            state.starts.asked(now, desired);
        }
    } else if desired < base {
        state.starts.lowered(desired);
    }
    state.desired = Some(desired);
}

/// Called by the router's queue when a request arrives at a service with no ready instance, at
/// once rather than at the next tick. Returns the decision to start one (or `min`) instance,
/// or `None` when instances run or were already asked for, or the bounds allow none.
pub fn demand(
    config: &AutoscaleSpec,
    state: &mut State,
    current: u32,
    now: Now,
) -> Option<Decision> {
    state.saw_request(now.mono);
    if current > 0 || state.desired.is_some_and(|d| d > 0) {
        return None;
    }
    let bounds = config.bounds_at(now.unix_ms);
    let desired = bounds.min.max(1).min(bounds.max);
    if desired == 0 {
        return None;
    }
    state.recommend(now.mono, desired, config.scale_down_delay);
    commit(config, state, desired, 0, 0, now.mono);
    Some(Decision {
        desired,
        reason: format!("request waiting at 0 instances → {desired} (scale from zero)"),
        panic: false,
        rule: Rule::Demand,
    })
}
