//! The predictive floor in a replay: on four days of the same daily surge, the days with a
//! forecast meet the surge's start on time, which the reactive rules alone cannot with a 60 s
//! start; `ebb sim` reports the forecast's error.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use ebb_core::autoscale::{AutoscaleSpec, ForecastMode, ScaleTargets};
use ebb_sim::model::Model;
use ebb_sim::{Scenario, Which};

const DAY: usize = 86_400;

/// 20 req/s, and 200 from 09:00 to 09:30 every day, for `days` days.
fn surges(days: usize) -> Vec<f64> {
    (0..days * DAY)
        .map(|s| {
            let t = s % DAY;
            if (9 * 3600..9 * 3600 + 1800).contains(&t) {
                200.0
            } else {
                20.0
            }
        })
        .collect()
}

fn replay(forecast: ForecastMode) -> ebb_sim::model::Outcome {
    let mut autoscale = AutoscaleSpec::new(
        1,
        100,
        ScaleTargets {
            concurrency: Some(0.7),
            ..ScaleTargets::default()
        },
    );
    autoscale.forecast = forecast;
    let model = Model {
        capacity: 10.0,
        start_delay_s: 60,
    };
    let scenario = Scenario::new(model, surges(5), autoscale).unwrap();
    let (run, _) = scenario.run(Which::Ebb, scenario.own_utilization(), 0..0);
    run.outcome
}

#[test]
fn a_learned_daily_surge_is_met_on_time_once_three_days_are_known() {
    let off = replay(ForecastMode::Off);
    let on = replay(ForecastMode::On);
    eprintln!("forecast off: {off:?}\nforecast on: {on:?}");
    // Without a forecast every surge starts a start time late; with it, only the first three.
    assert!(off.missed_seconds >= 5 * 50, "off: {off:?}");
    assert!(
        on.missed_seconds * 5 <= off.missed_seconds * 3 + 5,
        "on {} against off {}",
        on.missed_seconds,
        off.missed_seconds
    );
    assert!(on.forecast_seconds > 0);
    assert!(
        on.forecast_error.is_some_and(|e| e < 0.05),
        "a regular pattern is forecast well: {:?}",
        on.forecast_error
    );
    assert_eq!((off.forecast_seconds, off.forecast_error), (0, None));
    // And it costs little: a start time early, two days out of five.
    assert!(
        on.instance_seconds as f64 <= off.instance_seconds as f64 * 1.01,
        "{} against {}",
        on.instance_seconds,
        off.instance_seconds
    );
}
