//! `idle_timeout = "auto"` in a replay: a job that calls every ten minutes is met by instances
//! pre-warmed ahead of each call once the gaps are learned, instead of a cold start per call or
//! an instance idle between calls.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use ebb_core::autoscale::{AutoscaleSpec, ScaleTargets};
use ebb_sim::model::{Model, Outcome};
use ebb_sim::{Scenario, Which};

const CALLS: usize = 60;
/// A call every 10 min (alternating 590 s and 610 s apart): 60 s at 20 req/s.
fn periodic() -> Vec<f64> {
    let mut load = Vec::new();
    for i in 0..CALLS {
        load.extend(std::iter::repeat_n(0.0, 530 + (i % 2) * 20));
        load.extend(std::iter::repeat_n(20.0, 60));
    }
    load
}

/// The outcome, and the missed seconds of each call.
fn replay(auto: bool) -> (Outcome, Vec<u64>) {
    let mut autoscale = AutoscaleSpec::new(
        0,
        100,
        ScaleTargets {
            concurrency: Some(0.7),
            ..ScaleTargets::default()
        },
    );
    autoscale.idle_auto = auto;
    let model = Model {
        capacity: 10.0,
        start_delay_s: 10,
    };
    let load = periodic();
    let scenario = Scenario::new(model, load.clone(), autoscale).unwrap();
    let (run, seconds) = scenario.run(Which::Ebb, scenario.own_utilization(), 0..load.len());
    let mut missed = vec![0; CALLS];
    let mut call = 0;
    for (i, s) in seconds.iter().enumerate() {
        if i > 0 && load[i] > 0.0 && load[i - 1] == 0.0 {
            call += 1;
        }
        if model.needed(s.load) > s.ready {
            missed[call - 1] += 1;
        }
    }
    (run.outcome, missed)
}

#[test]
fn a_periodic_job_is_prewarmed_once_its_gaps_are_learned() {
    let (fixed, fixed_missed) = replay(false);
    let (auto, missed) = replay(true);
    // The fixed 5-min timeout releases before each call: every call starts cold.
    assert!(fixed_missed.iter().all(|&m| m > 0), "{fixed_missed:?}");
    // auto: the same misses until MIN_GAPS gaps are seen (the first call has none before it;
    // meanwhile it keeps an instance as long as a cold start costs, shorter than these gaps),
    // then every call is met by instances pre-warmed ahead of it.
    let learned = ebb_autoscaler::MIN_GAPS + 1;
    assert_eq!(missed[..learned], fixed_missed[..learned]);
    assert!(missed[learned..].iter().all(|&m| m == 0), "{missed:?}");
    // And nothing idles for the 5 min between calls: far fewer instance-seconds.
    assert!(
        (auto.instance_seconds as f64) < 0.7 * fixed.instance_seconds as f64,
        "auto {auto:?}, fixed {fixed:?}"
    );
}
