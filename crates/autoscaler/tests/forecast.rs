//! The predictive floor on the pure core, with a manual clock: a service whose last seven days
//! had a surge at 09:00 (10 instances instead of 2) is raised a start time ahead of it (`on`),
//! only told about it (`shadow`), let go when the surge does not come, and left asleep at zero.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::{rps_target, Sim, MONDAY_2024};
use ebb_autoscaler::{Decision, Rule, ASSUMED_START_TIME, DAY_MINUTES, TICK};
use ebb_core::autoscale::ForecastMode;

/// 09:00 on the simulated day, in seconds since its midnight.
const SURGE_S: u64 = 9 * 3600;

/// A service at 20 rps (2 instances at 10 rps each) whose history has 2 instances a minute, and
/// 10 from 09:00 to 09:30, on each of the seven days before the simulated one; the clock at
/// 08:58.
fn learned(min: u32, current: u32, forecast: ForecastMode) -> Sim {
    let mut config = rps_target(min, 20, 10.0);
    config.forecast = forecast;
    let mut sim = Sim::new(config, current);
    let today = (MONDAY_2024.as_secs() / 86_400) as i64;
    let means: Vec<Option<f64>> = (0..DAY_MINUTES)
        .map(|m| Some(if (540..570).contains(&m) { 10.0 } else { 2.0 }))
        .collect();
    for day in today - 7..today {
        let history = sim.state.forecaster_mut().history_mut();
        history.restore_day(day, &means);
    }
    sim.t = SURGE_S - 120;
    sim
}

/// Seconds to 09:00 (negative after it).
fn to_surge(sim: &Sim) -> i64 {
    SURGE_S as i64 - sim.t as i64
}

#[test]
fn on_raises_the_count_a_start_time_ahead_of_the_surge_and_holds_it_through() {
    let mut sim = learned(1, 2, ForecastMode::On);
    let mut first_raise = None;
    let mut decisions: Vec<(i64, Decision)> = Vec::new();
    while sim.t < SURGE_S + 300 {
        let rps = if sim.t >= SURGE_S { 100.0 } else { 20.0 };
        let d = sim.tick_rps(rps);
        if d.rule == Rule::Forecast && first_raise.is_none() {
            first_raise = Some((to_surge(&sim), d.clone()));
        }
        decisions.push((to_surge(&sim), d));
    }
    let (ahead, d) = first_raise.expect("a raise by the forecast");
    let lead = (ASSUMED_START_TIME + TICK).as_secs() as i64;
    assert!(
        (lead - 1..=lead).contains(&ahead),
        "raised {ahead} s ahead, lead {lead} s: {}",
        d.reason
    );
    assert_eq!(d.desired, 10, "{}", d.reason);
    assert!(
        d.reason.contains("the daily forecast for 09:00 UTC"),
        "{}",
        d.reason
    );
    // From the raise on, never below 10: through the surge's start, while the stable window
    // fills with it, and after (the load then asks for 10 itself).
    for (s, d) in decisions.iter().filter(|(s, _)| *s <= ahead) {
        assert!(d.desired >= 10, "{s} s to the surge: {}", d.reason);
    }
}

#[test]
fn shadow_only_says_what_it_would_have_done() {
    let mut sim = learned(1, 2, ForecastMode::Shadow);
    let mut said = 0;
    while sim.t < SURGE_S {
        let d = sim.tick_rps(20.0);
        assert_eq!(d.desired, 2, "{}", d.reason);
        assert_ne!(d.rule, Rule::Forecast);
        said +=
            usize::from(d.reason.contains("would raise to 10") && d.reason.contains("(shadow)"));
    }
    assert!(
        said >= 25,
        "the reason says it {said} times in the last half minute"
    );
}

#[test]
fn a_surge_that_does_not_come_is_let_go_once_the_stable_window_has_seen_its_minute() {
    let mut sim = learned(1, 2, ForecastMode::On);
    let mut raised = false;
    let mut back_at = None;
    while sim.t < SURGE_S + 180 {
        let d = sim.tick_rps(20.0);
        raised |= d.rule == Rule::Forecast;
        if raised && back_at.is_none() && d.desired == 2 {
            back_at = Some(-to_surge(&sim));
        }
        assert!(
            d.desired >= 2,
            "never below the reactive count: {}",
            d.reason
        );
    }
    assert!(raised);
    // The floor compares with the minute a stable window (60 s) ago: 09:01:00 sees 09:00.
    let back = back_at.expect("back to 2");
    assert!((60..=62).contains(&back), "back to 2 at 09:00 + {back} s");
}

#[test]
fn a_scale_to_zero_service_asleep_at_zero_is_not_woken_by_a_forecast() {
    let mut sim = learned(0, 0, ForecastMode::On);
    while sim.t < SURGE_S + 60 {
        let d = sim.tick_with(|s| s);
        assert_eq!(d.desired, 0, "{}", d.reason);
    }
    // Its first request wakes it; the forecast may then raise it.
    let d = sim.tick_rps(20.0);
    assert!(d.desired >= 1, "{}", d.reason);
}
