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

/// The replay's outcome and its missed seconds on each day.
fn replay(forecast: ForecastMode) -> (ebb_sim::model::Outcome, Vec<u64>) {
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
    let load = surges(5);
    let scenario = Scenario::new(model, load.clone(), autoscale).unwrap();
    let (run, seconds) = scenario.run(Which::Ebb, scenario.own_utilization(), 0..load.len());
    let mut missed = vec![0; 5];
    for (i, s) in seconds.iter().enumerate() {
        if model.needed(s.load) > s.ready {
            missed[i / DAY] += 1;
        }
    }
    (run.outcome, missed)
}

#[test]
fn a_learned_daily_surge_is_met_on_time_once_three_days_are_known() {
    let (off, off_days) = replay(ForecastMode::Off);
    let (on, on_days) = replay(ForecastMode::On);
    eprintln!("forecast off: {off:?} {off_days:?}\nforecast on: {on:?} {on_days:?}");
    // Without a forecast every surge starts a start time late; with it, only the first three,
    // before three days of history are known.
    assert!(off_days.iter().all(|&m| m >= 50), "off: {off_days:?}");
    assert!(on_days[..3].iter().all(|&m| m >= 50), "on: {on_days:?}");
    assert_eq!(on_days[3..], [0, 0], "on: {on_days:?}");
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
