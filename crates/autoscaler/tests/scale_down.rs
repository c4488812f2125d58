//! `scale_down_delay = "auto"` on the pure core, with a manual clock: a load that steps down
//! for long stretches is followed down within seconds once its dips are learned, instead of
//! after the fixed 60 s; before that, the fixed delay holds.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::{rps_target, Sim};
use ebb_autoscaler::{Decision, Rule, BUSY_WINDOW, DIP_BANDS, STEADY_HOUR};

/// A service at 10 rps an instance, `scale_down_delay = "auto"`.
fn auto() -> Sim {
    let mut config = rps_target(1, 20, 10.0);
    config.scale_down_auto = true;
    Sim::new(config, 1)
}

/// Seconds from the step down until the count first goes down, and the decisions of the low
/// stretch.
fn step_down(sim: &mut Sim) -> (usize, Vec<Decision>) {
    sim.run_rps(600, 100.0);
    let low = sim.run_rps(600, 20.0);
    let at = low
        .iter()
        .position(|d| d.desired < 10)
        .expect("scaled down");
    (at, low)
}

/// Whether a decision was held by the fixed delay.
fn held_a_minute(d: &Decision) -> bool {
    d.reason.contains("highest recommendation of the last 60s")
}

#[test]
fn long_dips_are_followed_down_sooner_once_learned() {
    let mut sim = auto();
    // First step: nothing learned, the stable window (60 s) and the fixed delay (60 s).
    let (first, low) = step_down(&mut sim);
    assert!(first >= 60, "{first} s: {}", low[first].reason);
    assert!(low.iter().any(held_a_minute));
    // Each step down opens dips at the levels above 2 that last ten minutes; after two, the
    // delay is learned: far shorter than a dip, so the stable window alone paces the fall.
    step_down(&mut sim);
    let (learned, low) = step_down(&mut sim);
    assert!(learned < first, "{learned} s, then {first} s");
    assert!(!low.iter().any(held_a_minute));
}

/// A load back at 100 rps 20 s after each fall to 20, twelve times, on instances that take
/// 20 s to start: a release would cost more than the 20 s kept. Each stretch at 100 is longer
/// than the busy window ([`BUSY_WINDOW`]) and the steady hour ([`STEADY_HOUR`]), so that the
/// busy seconds' level sees each fall as one, and the delay is what keeps the instances. Over
/// shorter stretches the busy level holds them by itself: the dips are then part of the load's
/// pattern. Within fifteen minutes they are in the busy window's percentile; within an hour,
/// several dips make enough of the stretches' differences to read as the hour's noise, and the
/// hour holds still. With one dip an hour its noise reads 0 and the dip is a change of load.
fn coming_back() -> Sim {
    let mut config = rps_target(1, 20, 10.0);
    config.scale_down_auto = true;
    let mut sim = Sim::with_start(config, 1, 20);
    let high = BUSY_WINDOW.max(STEADY_HOUR).as_secs() + 60;
    for _ in 0..12 {
        sim.run_rps(high, 100.0);
        sim.run_rps(20, 20.0);
    }
    sim
}

#[test]
fn a_load_that_comes_back_keeps_its_instances() {
    let mut sim = coming_back();
    let low = sim.run_rps(20, 20.0);
    assert!(low.iter().all(|d| d.desired == 10), "{:?}", low.last());
    assert!(
        low.iter().any(|d| d.rule == Rule::Stabilized),
        "{:?}",
        low.iter().map(|d| &d.reason).collect::<Vec<_>>()
    );
}

#[test]
fn a_restart_that_restores_the_learned_delay_holds_the_running_count_for_it() {
    // A delay learned that keeps 10 instances through the 20 s dips.
    let mut sim = coming_back();
    // Long at 20 rps: the policy asks for 2.
    sim.run_rps(300, 20.0);
    // A server restarts with 10 instances running (say the last leader's count): a fresh
    // state, with what the store kept of the old one.
    let old = std::mem::take(&mut sim.state);
    let bands = (0..DIP_BANDS).map(|b| old.dips().band_dips(b).collect::<Vec<_>>());
    sim.state
        .dips_mut()
        .restore(old.dips().all_dips(), bands.collect::<Vec<_>>());
    sim.state
        .start_times_mut()
        .restore(old.start_times().times());
    sim.current = 10;
    let after = sim.run_rps(120, 20.0);
    let reasons: Vec<&String> = after.iter().map(|d| &d.reason).collect();
    // Kept for the delay its octave learned, as a fixed delay keeps it for its length; then
    // followed down.
    assert!(after[..10].iter().all(|d| d.desired == 10), "{reasons:?}");
    assert!(
        after[5]
            .reason
            .contains("scale_down_delay auto, learned from"),
        "{}",
        after[5].reason
    );
    assert_eq!(after[119].desired, 2, "{reasons:?}");
}
