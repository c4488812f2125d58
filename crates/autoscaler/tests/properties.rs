//! Invariants of the pure core, checked on generated configs and load.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::MONDAY_2024;
use ebb_autoscaler::{
    burst, decide, demand, learn_keep_alive, minute_of, Metrics, Now, Reading, Rule, Sample, State,
    DAY_MINUTES, MIN_GAP,
};
use ebb_core::autoscale::{
    AutoscaleSpec, ForecastMode, ScaleMetric, ScalePolicy, ScaleTargets, ScheduleWindow, StepBand,
    StepChange, Weekdays, MAX_IDLE_TIMEOUT,
};
use proptest::prelude::*;
use std::time::Duration;

// === generators ===

fn some_targets() -> impl Strategy<Value = ScaleTargets> {
    let t = || prop::option::of(0.05f64..100.0);
    (t(), t(), t(), t(), prop::option::of(1u64..2000))
        .prop_map(|(concurrency, rps, cpu, memory, ms)| ScaleTargets {
            concurrency,
            rps,
            cpu,
            memory,
            latency_p95: ms.map(Duration::from_millis),
        })
        .prop_filter("at least one target", |t| t.iter().next().is_some())
}

fn metric() -> impl Strategy<Value = ScaleMetric> {
    prop::sample::select(ScaleMetric::ALL.to_vec())
}

fn policy() -> impl Strategy<Value = ScalePolicy> {
    let step = (
        metric(),
        prop::collection::vec((0.0f64..5.0, 0u32..4, 1u32..5), 1..4),
    )
        .prop_map(|(metric, raw)| {
            let mut from = 0.0;
            let bands = raw
                .into_iter()
                .map(|(width, kind, n)| {
                    let change = match kind {
                        0 => StepChange::Add(n),
                        1 => StepChange::Remove(n),
                        2 => StepChange::Percent(f64::from(n) * 30.0),
                        _ => StepChange::Percent(-f64::from(n) * 20.0),
                    };
                    let to = from + width + 0.01;
                    let band = StepBand {
                        from,
                        to: Some(to),
                        change,
                    };
                    from = to;
                    band
                })
                .collect();
            ScalePolicy::Step {
                metric,
                steps: bands,
            }
        });
    let linear =
        (metric(), 0.0f64..10.0, 0.01f64..10.0, 1u32..6).prop_map(|(metric, low, width, step)| {
            ScalePolicy::Linear {
                metric,
                low,
                high: low + width,
                step,
            }
        });
    let flat = prop_oneof![3 => Just(ScalePolicy::Target), 1 => step, 1 => linear];
    let window = (
        0u8..128,
        0u16..1440,
        1u16..1440,
        -720i32..840,
        0u32..6,
        0u32..30,
    )
        .prop_map(
            |(days, start, len, utc_offset_minutes, min, extra)| ScheduleWindow {
                days: Weekdays(days | 1),
                start,
                end: (start + len) % 1440,
                utc_offset_minutes,
                min,
                max: min + extra,
            },
        );
    // A schedule tracks the targets inside its windows.
    let schedule =
        prop::collection::vec(window, 1..3).prop_map(|windows| ScalePolicy::Schedule { windows });
    prop_oneof![4 => flat, 1 => schedule]
}

fn config() -> impl Strategy<Value = AutoscaleSpec> {
    (0u32..5, 0u32..40, some_targets(), policy()).prop_map(|(min, extra, targets, policy)| {
        let mut c = AutoscaleSpec::new(min, min + extra, targets);
        c.policy = policy;
        c
    })
}

/// One second of load: every metric maybe missing, values from idle to far over any target.
fn sample_values() -> impl Strategy<Value = (Vec<Option<f64>>, u64)> {
    (
        prop::collection::vec(prop::option::weighted(0.8, 0.0f64..2000.0), 5),
        prop_oneof![1 => Just(0u64), 3 => 1u64..1000],
    )
}

fn sample(at: Duration, (values, requests): &(Vec<Option<f64>>, u64)) -> Sample {
    Sample {
        concurrency: values[0],
        rps: values[1],
        cpu: values[2].map(|v| v / 100.0),
        memory: values[3].map(|v| v / 100.0),
        latency_p95: values[4].map(|v| Duration::from_secs_f64(v / 1000.0)),
        requests: *requests,
        ..Sample::new(at)
    }
}

/// A state whose forecast has learned seven days before `start_ms` of per-minute counts drawn
/// from `seed` (0 to 40, so that rises are forecast all the time).
fn learned_state(seed: u64, start_ms: i64) -> State {
    let mut state = State::default();
    let mut x = seed | 1;
    let today = minute_of(start_ms).div_euclid(DAY_MINUTES);
    // Days before today only: the minutes the test then records are all newer.
    for day in today - 7..today {
        let means: Vec<Option<f64>> = (0..DAY_MINUTES)
            .map(|_| {
                // xorshift64: a fixed, seeded sequence.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                Some((x % 41) as f64)
            })
            .collect();
        state
            .forecaster_mut()
            .history_mut()
            .restore_day(day, &means);
    }
    state
}

fn now(t: u64) -> Now {
    Now::unix(MONDAY_2024 + Duration::from_secs(t * 1237)) // hop across days and windows
}

/// Constant load on one metric: the first `seconds` at `before`, then at `after`; instances
/// ready at once. The decisions from the step on.
fn step_response(
    config: &AutoscaleSpec,
    current: u32,
    metric: ScaleMetric,
    before: f64,
    after: f64,
) -> Vec<u32> {
    let mut state = State::default();
    let mut metrics = Metrics::for_config(config);
    let mut current = current;
    let mut out = Vec::new();
    for s in 1..=400u64 {
        let v = if s <= 120 { before } else { after };
        let at = Duration::from_secs(s);
        let mut values = vec![None; 5];
        values[ScaleMetric::ALL.iter().position(|&m| m == metric).unwrap()] = Some(v);
        metrics.push(sample(at, &(values, 1)));
        let d = decide(config, &mut state, &metrics, current, Now::unix(at));
        current = d.desired;
        if s > 120 {
            out.push(d.desired);
        }
    }
    out
}

/// A policy targeting rps, from `min` to `min + extra` instances (as [`rps_config`]).
fn an_rps_config() -> impl Strategy<Value = AutoscaleSpec> {
    (0.5f64..50.0, 0u32..4, 1u32..60)
        .prop_map(|(target, min, extra)| rps_config(min, extra, target))
}

fn rps_config(min: u32, extra: u32, target: f64) -> AutoscaleSpec {
    AutoscaleSpec::new(
        min,
        min + extra,
        ScaleTargets {
            rps: Some(target),
            ..ScaleTargets::default()
        },
    )
}

fn value_at_target(metric: ScaleMetric, target: f64, count: u32) -> f64 {
    if metric.is_total() {
        target * f64::from(count)
    } else {
        target
    }
}

/// The metric's value in a [`Sample`] built by [`sample`] from `v`.
fn raw(metric: ScaleMetric, v: f64) -> f64 {
    match metric {
        ScaleMetric::Cpu | ScaleMetric::Memory => v * 100.0,
        ScaleMetric::LatencyP95 => v * 1000.0,
        _ => v,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever the load, the ready count or the policy, every decision (and every scale from
    /// zero) lies within the bounds in force at that instant.
    #[test]
    fn decisions_never_leave_the_bounds(
        config in config(),
        seconds in prop::collection::vec((sample_values(), 0u32..60, any::<bool>()), 1..300),
    ) {
        let mut state = State::default();
        let mut metrics = Metrics::for_config(&config);
        for (t, (values, current, demanded)) in seconds.iter().enumerate() {
            let now = now(t as u64 + 1);
            let bounds = config.bounds_at(now.unix_ms);
            if *demanded {
                if let Some(d) = demand(&config, &mut state, *current % 2, now) {
                    prop_assert!((bounds.min.max(1)..=bounds.max).contains(&d.desired));
                }
            }
            metrics.push(sample(now.mono, values));
            let d = decide(&config, &mut state, &metrics, *current, now);
            prop_assert!(
                (bounds.min..=bounds.max).contains(&d.desired),
                "{} outside [{}, {}]: {}", d.desired, bounds.min, bounds.max, d.reason
            );
        }
    }

    /// Issue 19: whatever happened before (panics, bursts, demand, any load, any ready count),
    /// a `min = 0` service reaches zero once it has had no request for `idle_timeout`, and
    /// stays there while no request comes.
    #[test]
    fn the_idle_rule_reaches_zero_after_idle_timeout_whatever_happened_before(
        targets in some_targets(),
        max in 1u32..40,
        idle_s in 1u64..120,
        seed in any::<u64>(),
        history in prop::collection::vec(
            (sample_values(), 0u32..40, prop::option::of(0.0f64..2000.0), any::<bool>()),
            1..200,
        ),
    ) {
        let mut config = AutoscaleSpec::new(0, max, targets);
        config.idle_timeout = Duration::from_secs(idle_s);
        config.idle_auto = false;
        let at = |t: u64| Now::unix(MONDAY_2024 + Duration::from_secs(t));
        // A forecast that predicts rises all the time does not keep the service up either.
        let mut state = learned_state(seed, at(0).unix_ms);
        let mut metrics = Metrics::for_config(&config);
        let mut t = 0;
        for (values, current, burst_load, demanded) in &history {
            t += 1;
            if *demanded {
                let _ = demand(&config, &mut state, 0, at(t));
            }
            if let Some(load) = burst_load {
                let reading = Reading {
                    span: Duration::from_millis(500),
                    concurrency: Some(*load),
                    rps: Some(*load),
                };
                let _ = burst(&config, &mut state, &reading, *current, at(t));
            }
            let _ = metrics.push(sample(at(t).mono, values));
            decide(&config, &mut state, &metrics, *current, at(t));
        }
        // Then nothing: no request, no metric, whatever ready count.
        for quiet in 1..=idle_s + 30 {
            t += 1;
            let _ = metrics.push(Sample::new(at(t).mono));
            let d = decide(&config, &mut state, &metrics, (quiet % 3) as u32, at(t));
            if quiet >= idle_s {
                prop_assert_eq!(d.desired, 0, "{} s quiet: {}", quiet, d.reason);
                prop_assert!(!d.panic);
            }
        }
    }

    /// Constant load within the tolerance of the target leaves the count alone.
    #[test]
    fn constant_load_within_tolerance_changes_nothing(
        metric in metric(),
        target in 0.05f64..100.0,
        count in 1u32..50,
        off in -0.099f64..0.099,
        below in 0u32..50,
        above in 0u32..50,
    ) {
        let mut targets = ScaleTargets::default();
        match metric {
            ScaleMetric::Concurrency => targets.concurrency = Some(target),
            ScaleMetric::Rps => targets.rps = Some(target),
            ScaleMetric::Cpu => targets.cpu = Some(target),
            ScaleMetric::Memory => targets.memory = Some(target),
            ScaleMetric::LatencyP95 => targets.latency_p95 = Some(Duration::from_secs_f64(target)),
        }
        let config = AutoscaleSpec::new(count.saturating_sub(below), count + above, targets);
        let load = raw(metric, value_at_target(metric, target, count) * (1.0 + off));
        let response = step_response(&config, count, metric, load, load);
        prop_assert!(response.iter().all(|&d| d == count), "{:?}", response);
    }

    /// The response to a step of load is monotone in time: after a step up the count never
    /// falls (no overshoot to undo), after a step down it never rises (no ringing).
    #[test]
    fn a_step_of_load_gives_a_monotone_response(
        target in 0.5f64..50.0,
        min in 0u32..4,
        extra in 1u32..60,
        current in 1u32..20,
        before in 0.0f64..1000.0,
        after in 0.0f64..1000.0,
    ) {
        let config = rps_config(min, extra, target);
        let current = current.clamp(min.max(1), min + extra);
        let response = step_response(&config, current, ScaleMetric::Rps, before, after);
        let up = after >= before;
        for (s, w) in response.windows(2).enumerate() {
            let ok = if up { w[1] >= w[0] } else { w[1] <= w[0] };
            prop_assert!(ok, "second {}: {} → {} after a step {}", s + 2, w[0], w[1], if up { "up" } else { "down" });
        }
    }

    /// From the same state and history, a higher steady load over the whole stable window never
    /// gets fewer instances. (Over many ticks this does not hold for HPA-style tolerance: a
    /// higher load can leave the tolerance band earlier, at a lower count, and rest there; see
    /// the report. Nor over part of the window: the count covers the load's noise as well as its
    /// mean, and a higher load that is steadier than the seconds before it, say 500 after 500
    /// rather than 200 after 500, can have less noise by more than it adds to the mean. Nor
    /// once the busy level reads the seconds before, from the 180th: its fall test judges the
    /// noise by the spans the load is in, so a higher load can read as a fall where a lower one
    /// did not. Found here: 23 s at 0, two minutes uniform on 0 to 1000, then 60 s at 40.6 held
    /// the busy level and 60 s at 70.2 dropped it. So the history and the window stay under
    /// 180 s, and `a_scaled_load_never_gets_fewer_instances` covers the busy level. The
    /// state built before the comparison is then at most 89 ticks deep, 199 before.)
    #[test]
    fn a_higher_load_never_gets_fewer_instances(
        config in an_rps_config(),
        current in 0u32..60,
        history in prop::collection::vec(0.0f64..1000.0, 0..90),
        recent in 60usize..=90,
        low in 0.0f64..1000.0,
        more in 0.0f64..2.0,
    ) {
        let mut state = State::default();
        let mut metrics = Metrics::for_config(&config);
        let mut current = current;
        let mut t = 0;
        for rps in history {
            t += 1;
            let at = Duration::from_secs(t);
            metrics.push(Sample { rps: Some(rps), requests: 1, ..Sample::new(at) });
            current = decide(&config, &mut state, &metrics, current, Now::unix(at)).desired;
        }
        let decide_at = |rps: f64| {
            let (mut state, mut metrics) = (state.clone(), metrics.clone());
            for s in 1..=recent as u64 {
                let at = Duration::from_secs(t + s);
                metrics.push(Sample { rps: Some(rps), requests: 1, ..Sample::new(at) });
            }
            let now = Now::unix(Duration::from_secs(t + recent as u64));
            decide(&config, &mut state, &metrics, current, now)
        };
        let (l, h) = (decide_at(low), decide_at(low * (1.0 + more)));
        prop_assert!(l.desired <= h.desired, "{} ({}) > {} ({})", l.desired, l.reason, h.desired, h.reason);
    }

    /// A metric missing from every sample never lowers the count, while requests keep coming.
    #[test]
    fn a_missing_metric_never_scales_down(
        config in config(),
        seconds in prop::collection::vec((1u64..1000, 0u32..60), 1..200),
    ) {
        let mut state = State::default();
        let mut metrics = Metrics::for_config(&config);
        let mut last = None;
        for (t, (requests, current)) in seconds.iter().enumerate() {
            let now = now(t as u64 + 1);
            metrics.push(Sample { requests: *requests, ..Sample::new(now.mono) });
            let bounds = config.bounds_at(now.unix_ms);
            let d = decide(&config, &mut state, &metrics, *current, now);
            let floor = last.unwrap_or(*current).clamp(bounds.min, bounds.max);
            prop_assert!(d.desired >= floor, "{} < {}: {}", d.desired, floor, d.reason);
            last = Some(d.desired);
        }
    }

    /// Missing samples never make a decision lower than the present samples alone would (HPA:
    /// when scaling down, a missing value counts as at target), nor lower than the last
    /// decision unless the present samples call for a scale-down.
    #[test]
    fn missing_samples_never_lower_a_decision(
        target in 0.5f64..50.0,
        min in 1u32..4,
        extra in 0u32..40,
        seconds in prop::collection::vec((prop::option::weighted(0.6, 0.0f64..400.0), 0u32..60), 1..200),
    ) {
        let mut config = rps_config(min, extra, target);
        config.panic_threshold = f64::MAX; // panic reads the short window differently; see unit tests
        let mut state = State::default();
        let mut with_gaps = Metrics::for_config(&config);
        let mut present_only = Metrics::for_config(&config);
        for (t, (rps, current)) in seconds.iter().enumerate() {
            let now = now(t as u64 + 1);
            let s = Sample { rps: *rps, requests: 1, ..Sample::new(now.mono) };
            with_gaps.push(s);
            if rps.is_some() {
                present_only.push(s);
            }
            let base = state.desired().unwrap_or(*current);
            let mut alone = state.clone();
            let reference = decide(&config, &mut alone, &present_only, *current, now).desired;
            let d = decide(&config, &mut state, &with_gaps, *current, now);
            prop_assert!(d.desired >= reference.min(base), "{} < min({}, {}): {}", d.desired, reference, base, d.reason);
        }
    }

    /// Issue 19: a forecast never lowers the count below what the reactive rules ask. From the
    /// same state, tick after tick, the decision with the forecast on is at least the one with
    /// it off, whatever the load, the policy and the history learned (one that predicts rises
    /// all the time: `forecasts_do_raise_counts_in_the_property_above`).
    #[test]
    fn a_forecast_never_lowers_the_count_below_the_reactive_rules(
        config in config(),
        seed in any::<u64>(),
        seconds in prop::collection::vec((sample_values(), 0u32..60), 1..300),
    ) {
        let mut on = config.clone();
        on.forecast = ForecastMode::On;
        let mut off = config;
        off.forecast = ForecastMode::Off;
        let at = |t: u64| Now::unix(MONDAY_2024 + Duration::from_secs(t * 7));
        let mut state = learned_state(seed, at(0).unix_ms);
        let mut metrics = Metrics::for_config(&on);
        for (t, (values, current)) in seconds.iter().enumerate() {
            let now = at(t as u64 + 1);
            metrics.push(sample(now.mono, values));
            let reactive = decide(&off, &mut state.clone(), &metrics, *current, now);
            let d = decide(&on, &mut state, &metrics, *current, now);
            prop_assert!(
                d.desired >= reactive.desired,
                "{} < {}: {} | reactive: {}", d.desired, reactive.desired, d.reason, reactive.reason
            );
        }
    }
}

/// The forecast property above is not vacuous: with its history, over the same kind of
/// inputs, forecasts raise counts.
#[test]
fn forecasts_do_raise_counts_in_the_property_above() {
    let mut config = AutoscaleSpec::new(
        1,
        100,
        ScaleTargets {
            concurrency: Some(10.0),
            ..ScaleTargets::default()
        },
    );
    config.forecast = ForecastMode::On;
    let at = |t: u64| Now::unix(MONDAY_2024 + Duration::from_secs(t * 7));
    let mut state = learned_state(42, at(0).unix_ms);
    let mut metrics = Metrics::for_config(&config);
    let mut raised = 0;
    for t in 1..300 {
        let now = at(t);
        metrics.push(Sample {
            concurrency: Some(30.0),
            requests: 300,
            ..Sample::new(now.mono)
        });
        let d = decide(&config, &mut state, &metrics, 3, now);
        raised += u32::from(d.rule == Rule::Forecast);
    }
    assert!(raised > 10, "raised {raised} times");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// `idle_timeout = "auto"`: whatever gaps were learned and whatever the start time, the plan
    /// releases every instance once the service has been quiet past its keep-alive and its
    /// pre-warm window, both within the longest idle_timeout a deploy file may set.
    #[test]
    fn a_learned_keep_alive_always_ends_at_zero(
        gaps in prop::collection::vec(2u64..200_000, 1..128),
        start_s in 1u64..600,
    ) {
        let gaps = gaps.into_iter().map(Duration::from_secs);
        let plan = learn_keep_alive(gaps, Duration::from_secs(start_s));
        let end = plan.prewarm.map_or(plan.keep, |(_, until)| until.max(plan.keep));
        prop_assert!(end <= MAX_IDLE_TIMEOUT, "{:?}", plan);
        prop_assert!(plan.keep >= MIN_GAP, "{:?}", plan);
        for q in [end, end + Duration::from_secs(1), MAX_IDLE_TIMEOUT, MAX_IDLE_TIMEOUT * 2] {
            prop_assert!(plan.releases(q), "quiet {:?}: {:?}", q, plan);
        }
        if let Some((from, until)) = plan.prewarm {
            // A pre-warm window starts after the release, at least a start time later.
            prop_assert!(from >= plan.keep + Duration::from_secs(start_s), "{:?}", plan);
            prop_assert!(until > from, "{:?}", plan);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// The same load scaled up never gets fewer instances, whatever its shape: every reading
    /// (the stable and panic windows' means and noise, the busy level and its fall test, read
    /// while its window fills from the 180th second and from the full window from the 810th)
    /// scales with the load, so the noise and fall verdicts are the same, up to float slack
    /// of 1e-9, and the rest (the panic threshold, the tolerance band, the count) only rise.
    /// Runs of a level (a multiple of the target) with a per-second wiggle, 180 to 1,200 s of
    /// them, and one decision from a fresh state at the end. More cases than the others: the
    /// bounds, the scale-up rate and a fresh state's floor at the current count often clamp
    /// both counts alike (with 40 rps added to the fall limit, 1,000 cases found it in every
    /// run tried, seven; 200 missed it).
    #[test]
    fn a_scaled_load_never_gets_fewer_instances(
        config in an_rps_config(),
        current in 0u32..60,
        runs in prop::collection::vec((0.1f64..30.0, 1usize..200), 1..16),
        wiggle in prop::collection::vec(0.5f64..1.5, 1200),
        seconds in 180usize..1200,
        more in 0.0f64..2.0,
    ) {
        let target = config.targets.rps.unwrap();
        let load: Vec<f64> = runs
            .iter()
            .flat_map(|&(level, len)| std::iter::repeat_n(level * target, len))
            .cycle()
            .zip(&wiggle)
            .map(|(level, w)| level * w)
            .take(seconds)
            .collect();
        let decide_at = |scale: f64| {
            let mut metrics = Metrics::for_config(&config);
            for (t, rps) in (1..).zip(&load) {
                let at = Duration::from_secs(t);
                metrics.push(Sample { rps: Some(rps * scale), requests: 1, ..Sample::new(at) });
            }
            let now = Now::unix(Duration::from_secs(load.len() as u64));
            decide(&config, &mut State::default(), &metrics, current, now)
        };
        let (l, h) = (decide_at(1.0), decide_at(1.0 + more));
        prop_assert!(l.desired <= h.desired, "{} ({}) > {} ({})", l.desired, l.reason, h.desired, h.reason);
    }
}
