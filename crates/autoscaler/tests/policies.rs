//! The step, linear and schedule policies, and config validation, through the public API.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::{desired, rps_sample, rps_target, Sim};
use ebb_autoscaler::{demand, Sample};
use ebb_core::autoscale::{
    hm, AutoscaleSpec, ScaleMetric, ScalePolicy, ScaleTargets, ScheduleWindow, StepBand,
    StepChange, Weekdays,
};
use ebb_core::service::Resources;

// === step ===

fn step_config() -> AutoscaleSpec {
    let mut config = AutoscaleSpec::new(1, 20, ScaleTargets::default());
    config.policy = ScalePolicy::Step {
        metric: ScaleMetric::Cpu,
        steps: vec![
            StepBand {
                from: 0.0,
                to: Some(0.3),
                change: StepChange::Remove(1),
            },
            StepBand {
                from: 0.8,
                to: Some(1.0),
                change: StepChange::Add(1),
            },
            StepBand {
                from: 1.0,
                to: None,
                change: StepChange::Percent(50.0),
            },
        ],
    };
    config
}

/// `seconds` of `cpu` (summed over instances, as a fraction of one reservation).
fn run_cpu(sim: &mut Sim, seconds: usize, cpu: f64) -> Vec<ebb_autoscaler::Decision> {
    (0..seconds)
        .map(|_| {
            sim.tick_with(|s| Sample {
                cpu: Some(cpu),
                requests: 1,
                ..s
            })
        })
        .collect()
}

#[test]
fn step_adds_for_its_band_then_holds_outside_every_band() {
    let mut sim = Sim::new(step_config(), 4);
    let ds = run_cpu(&mut sim, 30, 3.4);
    assert_eq!(
        ds[0].reason,
        "cpu 0.85 per instance over 60s in [0.8, 1): 4 ready +1 → 5"
    );
    // 3.4 over 5 instances is 0.68: no band, no change.
    assert!(ds[1..].iter().all(|d| d.desired == 5));
    assert!(ds[1].reason.ends_with("in no band → 5 (hold)"));
}

#[test]
fn step_percentages_are_of_the_ready_count_and_rate_limited() {
    let mut sim = Sim::new(step_config(), 4);
    // 1.5 per instance → +50 % → 6; then 1.0 → 9, limited to 8 (4 + 4 within 15 s); then
    // 0.75 → hold.
    let ds = run_cpu(&mut sim, 30, 6.0);
    assert_eq!(desired(&ds[..3]), [6, 8, 8]);
    assert!(ds[1].reason.contains("limited to 8"));
    assert!(ds.iter().all(|d| d.desired <= 8));
}

#[test]
fn step_removals_wait_a_scale_down_delay_each() {
    let mut config = step_config();
    config.scale_down_auto = false;
    let mut sim = Sim::new(config, 5);
    // 1.0 over 5 is 0.2: remove one; 0.25 over 4: remove one more; 0.33 over 3: hold.
    let ds = run_cpu(&mut sim, 200, 1.0);
    let counts = desired(&ds);
    assert_eq!(counts.iter().position(|&c| c == 4), Some(60));
    assert_eq!(counts.iter().position(|&c| c == 3), Some(120));
    assert_eq!(counts[199], 3);
}

#[test]
fn step_holds_when_the_metric_is_missing() {
    let mut sim = Sim::new(step_config(), 5);
    let ds: Vec<_> = (0..200).map(|_| sim.tick_rps(1.0)).collect();
    assert!(ds.iter().all(|d| d.desired == 5));
    assert_eq!(ds[0].reason, "cpu missing over 60s → 5 (hold)");
}

// === linear ===

fn linear_config() -> AutoscaleSpec {
    let mut config = AutoscaleSpec::new(1, 10, ScaleTargets::default());
    config.policy = ScalePolicy::Linear {
        metric: ScaleMetric::Concurrency,
        low: 5.0,
        high: 15.0,
        step: 4,
    };
    config
}

fn run_concurrency(sim: &mut Sim, seconds: usize, c: f64) -> Vec<ebb_autoscaler::Decision> {
    (0..seconds)
        .map(|_| {
            sim.tick_with(|s| Sample {
                concurrency: Some(c),
                requests: 1,
                ..s
            })
        })
        .collect()
}

#[test]
fn linear_holds_below_low() {
    let mut sim = Sim::new(linear_config(), 2);
    let ds = run_concurrency(&mut sim, 100, 6.0);
    assert!(ds.iter().all(|d| d.desired == 2));
    assert_eq!(
        ds[0].reason,
        "concurrency 3.0 per instance over 60s below low 5.0 → 2 (hold)"
    );
}

#[test]
fn linear_interpolates_the_step_between_low_and_high() {
    let mut sim = Sim::new(linear_config(), 2);
    // 10 per instance is halfway from 5 to 15: +2 → 4; then 5 per instance: +0.
    let ds = run_concurrency(&mut sim, 30, 20.0);
    assert_eq!(
        ds[0].reason,
        "concurrency 10.0 per instance over 60s between 5.0 and 15.0: 2 ready +2 → 4"
    );
    assert!(ds.iter().all(|d| d.desired == 4));
}

#[test]
fn linear_adds_the_full_step_above_high_up_to_max_and_never_scales_in() {
    let mut sim = Sim::new(linear_config(), 2);
    let ds = run_concurrency(&mut sim, 60, 1000.0);
    assert_eq!(ds[0].desired, 6);
    assert!(ds[0]
        .reason
        .contains("at or above high 15.0: 2 ready +4 → 6"));
    assert_eq!(sim.current, 10);
    assert!(ds.windows(2).all(|w| w[1].desired >= w[0].desired));
    assert!(run_concurrency(&mut sim, 300, 1.0)
        .iter()
        .all(|d| d.desired == 10));
}

// === schedule ===

const HOUR: u64 = 3600;

/// Min 1, max 10 by default; weekdays 09:00–18:00 at UTC+01:00: min 5, max 20.
fn business_hours() -> AutoscaleSpec {
    let mut config = rps_target(1, 10, 5.0);
    config.policy = ScalePolicy::Schedule {
        windows: vec![ScheduleWindow {
            days: Weekdays::WEEKDAYS,
            start: hm(9, 0),
            end: hm(18, 0),
            utc_offset_minutes: 60,
            min: 5,
            max: 20,
        }],
    };
    config
}

#[test]
fn a_schedule_window_raises_min_when_it_opens_and_releases_it_when_it_closes() {
    let mut sim = Sim::new(business_hours(), 1);
    // From Monday 07:58 UTC = 08:58 at UTC+01:00 (the first tick is one second later).
    sim.t = 8 * HOUR - 121;
    let before = sim.run_rps(120, 2.0);
    assert!(before.iter().all(|d| d.desired == 1));
    let open = sim.tick_rps(2.0);
    assert_eq!(open.desired, 5);
    assert_eq!(
        open.reason,
        "rps 2.0 over 60s / target 5 → 1; clamped to 5 (min 5, max 20 of schedule window 0: \
         mon-fri 09:00-18:00 UTC+01:00)"
    );
    // Until 17:00 UTC the window holds 5; then the load's count (1) applies again.
    sim.t = 17 * HOUR - 2;
    assert_eq!(desired(&sim.run_rps(2, 2.0)), [5, 1]);
}

#[test]
fn a_learned_scale_down_delay_does_not_hold_a_closing_window_s_floor() {
    let mut sim = Sim::new(business_hours(), 1);
    assert!(sim.config.scale_down_auto, "the default");
    // Monday night: steps between 40 rps (8) and 10 rps (2), ten minutes each, open and close
    // dips at the levels 3 to 8: the delay is learned.
    sim.t = 2 * HOUR;
    for _ in 0..4 {
        sim.run_rps(600, 40.0);
        sim.run_rps(600, 10.0);
    }
    assert!(sim.state.dips().dips() >= 8, "{}", sim.state.dips().dips());
    // The window's floor (5) is not the load's: when the window closes at 17:00 UTC, the
    // load's count (1) applies at once, as with a fixed delay.
    sim.t = 17 * HOUR - 122;
    sim.run_rps(120, 2.0);
    assert_eq!(desired(&sim.run_rps(2, 2.0)), [5, 1]);
}

#[test]
fn a_schedule_window_also_caps_max_and_weekends_use_the_config_bounds() {
    let mut sim = Sim::new(business_hours(), 10);
    sim.t = 12 * HOUR;
    assert_eq!(sim.run_rps(120, 500.0).last().unwrap().desired, 20);
    // Saturday noon: no window, max 10.
    sim.t = (5 * 24 + 12) * HOUR;
    assert_eq!(sim.tick_rps(500.0).desired, 10);
}

#[test]
fn demand_at_zero_uses_the_bounds_of_the_open_window() {
    let mut config = business_hours();
    if let ScalePolicy::Schedule { windows, .. } = &mut config.policy {
        windows.push(ScheduleWindow {
            days: Weekdays::WEEKEND,
            start: hm(0, 0),
            end: hm(23, 59),
            utc_offset_minutes: 0,
            min: 0,
            max: 0,
        });
    }
    let mut sim = Sim::new(config, 0);
    sim.t = 12 * HOUR;
    let now = sim.now();
    let d = demand(&sim.config, &mut sim.state, 0, now);
    assert_eq!(d.map(|d| d.desired), Some(5));
    // Saturday: the service is off (max 0), so there is nothing to start.
    let mut sim = Sim::new(sim.config.clone(), 0);
    sim.t = (5 * 24 + 12) * HOUR;
    let now = sim.now();
    assert_eq!(demand(&sim.config, &mut sim.state, 0, now), None);
    assert_eq!(sim.tick_with(|s| rps_sample(s, 3.0)).desired, 0);
}

// === validation ===
// One validator for every autoscale setting: core's `AutoscaleSpec::problems`, also used by the
// deploy-file parser and the API. These check it accepts what the policies above run on.

/// The problems' fields for a routed service with cpu and memory reserved.
fn fields(config: &AutoscaleSpec) -> Vec<String> {
    problems(config)
        .into_iter()
        .map(|(field, _)| field)
        .collect()
}

fn problems(config: &AutoscaleSpec) -> Vec<(String, String)> {
    let reserved = Resources {
        cpu_millis: Some(500),
        memory_bytes: Some(1 << 28),
    };
    config.problems(&reserved, true)
}

#[test]
fn a_default_config_with_a_target_is_valid() {
    assert_eq!(problems(&rps_target(0, 20, 100.0)), []);
    assert_eq!(problems(&business_hours()), []);
    assert_eq!(problems(&step_config()), []);
    assert_eq!(problems(&linear_config()), []);
}

#[test]
fn validation_names_each_bad_field() {
    let mut config = rps_target(3, 2, 0.0);
    config.panic_window = config.stable_window * 2;
    config.tolerance = 1.5;
    assert_eq!(fields(&config), ["min", "rps", "panic_window", "tolerance"]);
    let errors = problems(&config);
    assert_eq!(errors[0].1, "min 3 is above max 2: set min ≤ max");
    assert_eq!(errors[1].1, "a target must be above 0, got 0");

    let no_target = AutoscaleSpec::new(0, 1, ScaleTargets::default());
    let errors = problems(&no_target);
    assert_eq!(
        errors[0],
        (
            "policy".to_string(),
            "policy \"target\" tracks a target per instance: set concurrency, rps, cpu, memory \
             or latency_p95"
                .to_string()
        )
    );
}

#[test]
fn validation_checks_bands_linear_thresholds_and_windows() {
    let mut config = step_config();
    if let ScalePolicy::Step { steps, .. } = &mut config.policy {
        steps[1].from = 0.2; // overlaps [0, 0.3)
        steps[2].change = StepChange::Add(0);
    }
    assert_eq!(fields(&config), ["steps[1].from", "steps[2].change"]);

    let mut config = linear_config();
    config.policy = ScalePolicy::Linear {
        metric: ScaleMetric::Cpu,
        low: 0.8,
        high: 0.5,
        step: 0,
    };
    assert_eq!(fields(&config), ["high", "step"]);

    let mut config = business_hours();
    if let ScalePolicy::Schedule { windows } = &mut config.policy {
        windows[0].days = Weekdays(0);
        windows[0].end = hm(24, 30);
        windows[0].min = 30;
    }
    assert_eq!(
        fields(&config),
        ["schedule[0].days", "schedule[0].hours", "schedule[0].min"]
    );
}
