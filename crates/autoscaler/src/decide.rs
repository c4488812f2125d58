//! One tick: the policy's proposal, then the rules every policy shares — no scale-down while
//! panicking, scale-down stabilization, the scale-up rate limit, idle → zero, and the bounds.

use crate::keep_alive::KeepAlivePlan;
use crate::metrics::Metrics;
use crate::proposal::Proposal;
use crate::state::State;
use crate::Rule;
use crate::{explain, forecast};
use crate::{policies, target};
use ebb_core::autoscale::{AutoscaleSpec, ForecastMode, ScalePolicy, MAX_SCALE_WINDOW};
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
        // restarted server waits a scale_down_delay before it removes anything.
        state.recommend(t, base, retention(config));
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
    state.recommend(t, proposal.recommendation, retention(config));
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
    // A `min = 0` service at zero stays there until a request comes (see `keeps_one`).
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

    let quiet = state.quiet_for(t);
    let plan = learned_keep_alive(config, state, bounds.min);
    // No request for idle_timeout ends everything, a panic included: a panic is about requests,
    // and there are none.
    // A learned keep-alive may be seconds long: it releases only on seconds known to be quiet,
    // not on a peer server's silence.
    let idle = bounds.min == 0
        && match plan {
            Some(plan) => plan.releases(quiet) && !metrics.unknown_within(t, plan.keep),
            None => quiet >= config.idle_timeout,
        };
    let prewarming = !idle && plan.is_some_and(|p| p.prewarms(quiet));
    // A pre-warmed count holds while the stable window still averages the quiet before the
    // requests it was started for.
    let prewarm_hold = match idle || prewarming {
        true => None,
        false => state.keep_alive.held(t),
    };
    let mut floor = bounds.min;
    if idle {
        count = 0;
        reason = idle_reason(state, quiet, &idle_timeout(config, state, plan));
        rule = Rule::Idle;
        panic = false;
        state.end_panic();
        state.keep_alive.release();
    } else if prewarming {
        floor = state.keep_alive.prewarm_count();
    } else if let Some(n) = prewarm_hold {
        floor = n.max(bounds.min);
    } else if bounds.min == 0 && keeps_one(state, base) {
        floor = 1;
    }
    let clamped = count.clamp(floor.min(bounds.max), bounds.max);
    let mut planned = 0;
    if let (true, Some(plan)) = (clamped > count && prewarming, plan) {
        reason += &prewarm_reason(plan, clamped, quiet);
        rule = Rule::Prewarm;
        // A planned start, as the forecast's: the scale-up rate limit does not count it.
        planned = clamped - count.max(base).min(clamped);
    } else if prewarm_hold.is_some() && clamped > count && clamped > bounds.min {
        reason += &format!(
            "; held at {clamped}: pre-warmed for these requests, until the stable window has \
             seen them"
        );
        rule = Rule::Prewarm;
    } else if clamped == 1 && count == 0 && bounds.min == 0 {
        let after = explain::duration(plan.map_or(config.idle_timeout, |p| p.keep));
        let timeout = match plan {
            None if !config.idle_auto => "idle_timeout".to_string(),
            None => idle_timeout(config, state, plan),
            Some(p) => format!("idle_timeout auto, learned from {} gaps", p.gaps),
        };
        reason += &format!("; kept at 1: zero only after {after} without a request ({timeout})");
        rule = Rule::Stabilized;
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

    if quiet < crate::keep_alive::MIN_GAP {
        state.keep_alive.serving(recommendation.min(bounds.max));
    } else if prewarming {
        state.keep_alive.hold(t + config.stable_window, clamped);
    }
    if idle || clamped == 0 {
        // At zero, the idle keep-alive decides what runs when requests come back: the levels
        // left are not dips of the load.
        state.dips.idle();
    } else if config.scale_down_auto {
        // Only the levels the bounds let instances follow.
        let followed = recommendation.clamp(bounds.min, bounds.max.max(bounds.min));
        state.dips.observe(t, followed);
    }
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

/// A `min = 0` service that is not idle keeps one instance: it had a request within
/// `idle_timeout` (its cold start may still be under way), or it runs and no request was ever
/// seen (a fresh state after a restart gives it a full `idle_timeout`). A service found at zero
/// with no request seen stays there.
fn keeps_one(state: &State, base: u32) -> bool {
    state.last_request.is_some() || base > 0
}

/// The keep-alive of `idle_timeout = "auto"` for a `min = 0` service, once learned.
fn learned_keep_alive(
    config: &AutoscaleSpec,
    state: &mut State,
    min: u32,
) -> Option<KeepAlivePlan> {
    if !config.idle_auto || min > 0 {
        return None;
    }
    let start = state.starts.estimate();
    state.keep_alive.plan(start)
}

/// The idle timeout in force, as a reason says it: `idle_timeout 5m`, or what `auto` learned.
fn idle_timeout(config: &AutoscaleSpec, state: &State, plan: Option<KeepAlivePlan>) -> String {
    let fixed = explain::duration(config.idle_timeout);
    let Some(plan) = plan else {
        if !config.idle_auto {
            return format!("idle_timeout {fixed}");
        }
        let (seen, needed) = (state.keep_alive.gaps(), crate::keep_alive::MIN_GAPS);
        return format!("idle_timeout auto, not learned yet: {seen} of {needed} gaps");
    };
    let keep = explain::duration(plan.keep);
    let learned = format!("learned from {} gaps", plan.gaps);
    match plan.prewarm {
        None => format!("idle_timeout auto: {keep}, {learned}"),
        Some((from, until)) => {
            let (f, u) = (explain::duration(from), explain::duration(until));
            format!("idle_timeout auto: {keep}, pre-warmed from {f} to {u} of quiet, {learned}")
        }
    }
}

/// What a pre-warm adds to a reason.
fn prewarm_reason(plan: KeepAlivePlan, count: u32, quiet: Duration) -> String {
    let q = explain::duration(quiet);
    let until = plan.prewarm.map_or(String::new(), |(_, u)| {
        format!(" by {} of quiet", explain::duration(u))
    });
    format!(
        "; pre-warmed at {count} (the most the last requests asked for): quiet for {q}, the next \
         request is due{until} (idle_timeout auto, learned from {} gaps)",
        plan.gaps
    )
}

fn idle_reason(state: &State, quiet: Duration, timeout: &str) -> String {
    let q = explain::duration(quiet);
    match state.last_request {
        Some(_) => format!("no request for {q} ({timeout}) → 0"),
        None => format!("no request in the {q} observed ({timeout}) → 0"),
    }
}

/// HPA's scale-down stabilization: go no lower than the highest recommendation of the last
/// `scale_down_delay`, and never above `base` because of it.
fn stabilize_down(
    config: &AutoscaleSpec,
    state: &mut State,
    count: u32,
    base: u32,
    now: Duration,
    reason: &mut String,
) -> u32 {
    let learned = match config.scale_down_auto {
        true => state.dips.delay(state.starts.estimate()),
        false => None,
    };
    let delay = learned.unwrap_or(config.scale_down_delay);
    let held = state
        .highest_recommendation(now, delay)
        .unwrap_or(count)
        .clamp(count, base);
    if held > count {
        let d = explain::duration(delay);
        *reason += &format!("; held at {held}, the highest recommendation of the last {d}");
        if learned.is_some() {
            let n = state.dips.dips();
            *reason += &format!(" (scale_down_delay auto, learned from {n} dips)");
        }
    }
    held
}

/// How long recommendations are remembered: the scale-down delay, or the longest one `auto`
/// may learn.
fn retention(config: &AutoscaleSpec) -> Duration {
    match config.scale_down_auto {
        true => config.scale_down_delay.max(MAX_SCALE_WINDOW),
        false => config.scale_down_delay,
    }
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
    state.recommend(now.mono, desired, retention(config));
    commit(config, state, desired, 0, 0, now.mono);
    Some(Decision {
        desired,
        reason: format!("request waiting at 0 instances → {desired} (scale from zero)"),
        panic: false,
        rule: Rule::Demand,
    })
}
