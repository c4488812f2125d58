//! `idle_timeout = "auto"` on the pure core, with a manual clock: a job that calls every ten
//! minutes is released once its requests stop and pre-warmed before the next call, with as many
//! instances as served the last; before enough gaps are seen an instance is kept as long as a
//! cold start costs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::{rps_target, Sim};
use ebb_autoscaler::{Decision, Rule, MIN_GAPS};

/// Seconds an instance takes to serve once asked for.
const START_S: u64 = 20;

/// A `min = 0` service at 10 rps an instance, `idle_timeout = "auto"`, at zero, whose
/// instances serve [`START_S`] after they are asked for.
fn auto() -> Sim {
    let mut config = rps_target(0, 10, 10.0);
    config.idle_auto = true;
    Sim::with_start(config, 0, START_S as usize)
}

/// A service that has learned calls every 600 s (of 60 s at 30 rps).
fn learned() -> Sim {
    let mut sim = auto();
    for _ in 0..MIN_GAPS + 2 {
        call(&mut sim, 600);
    }
    sim
}

/// One call of the job: 60 s at 30 rps, then `quiet` seconds without a request. The decisions
/// of the quiet part, by quiet second (1-based).
fn call(sim: &mut Sim, quiet: u64) -> Vec<Decision> {
    sim.run_rps(60, 30.0);
    sim.run_rps(quiet, 0.0)
}

#[test]
fn a_periodic_caller_is_released_then_prewarmed_before_its_next_call() {
    let mut sim = auto();
    for i in 0..MIN_GAPS {
        // Before the plan: an instance is kept as long as a cold start costs, 11 times the
        // start time, at most the 5 min timeout. The first call's start is not measured yet
        // (30 s assumed: 5 min); then 20 s is, and the tick it is seen at.
        let before = call(&mut sim, 590 + (i as u64 % 3) * 10);
        let released = before
            .iter()
            .position(|d| d.desired == 0)
            .expect("released");
        let expected = if i == 0 { 299..=299 } else { 219..=230 };
        assert!(
            expected.contains(&released),
            "call {i}: released after {released} s"
        );
        assert_eq!(before[released - 1].desired, 1);
        assert!(
            before[200].reason.contains("auto, not learned yet"),
            "{}",
            before[200].reason
        );
        if i > 0 {
            assert!(
                before[200].reason.contains("as long as a cold start of"),
                "{}",
                before[200].reason
            );
        }
    }
    for _ in 0..4 {
        let quiet = call(&mut sim, 600);
        // Released within a few seconds of the last request...
        let released = quiet.iter().position(|d| d.desired == 0).expect("released");
        assert!(released < 5, "released after {released} s");
        assert_eq!(quiet[released].rule, Rule::Idle);
        assert!(
            quiet[released].reason.contains("idle_timeout auto"),
            "{}",
            quiet[released].reason
        );
        // ...and pre-warmed at the 3 instances the calls need, before the next call is due.
        let warm = quiet
            .iter()
            .position(|d| d.rule == Rule::Prewarm)
            .expect("pre-warmed");
        let d = &quiet[warm];
        assert_eq!(d.desired, 3, "{}", d.reason);
        assert!(d.reason.contains("pre-warmed at 3"), "{}", d.reason);
        // A start time (as measured) and two ticks before the earliest call (590 s), less a
        // 10 % margin.
        assert!(
            (400..590 - START_S as usize).contains(&warm),
            "pre-warmed at {warm} s"
        );
        assert!(quiet[warm..].iter().all(|d| d.desired == 3));
    }
}

#[test]
fn a_call_that_does_not_come_is_let_go_after_the_window() {
    let mut sim = learned();
    let quiet = call(&mut sim, 3600);
    let last_warm = quiet.iter().rposition(|d| d.desired > 0).expect("warm");
    assert!((600..800).contains(&last_warm), "kept until {last_warm} s");
    assert!(quiet[last_warm + 1..].iter().all(|d| d.desired == 0));
    assert_eq!(quiet[last_warm + 1].rule, Rule::Idle);
}

#[test]
fn short_gaps_are_kept_through() {
    // A caller every ~20 s: an instance is kept between calls, never released.
    let mut sim = auto();
    for i in 0..40 {
        sim.run_rps(2, 5.0);
        let quiet = sim.run_rps(15 + i % 5, 0.0);
        if i > MIN_GAPS as u64 {
            assert!(quiet.iter().all(|d| d.desired == 1), "{:?}", quiet.last());
        }
    }
}

#[test]
fn a_prewarm_starts_what_the_last_call_asked_for_not_more() {
    let mut sim = learned();
    // A lighter call (10 rps: one instance) is followed by a pre-warm of one, not of three.
    sim.run_rps(60, 10.0);
    let quiet = sim.run_rps(600, 0.0);
    let warm = quiet
        .iter()
        .find(|d| d.rule == Rule::Prewarm)
        .expect("pre-warmed");
    assert_eq!(warm.desired, 1, "{}", warm.reason);
}

#[test]
fn seconds_without_figures_do_not_release_a_serving_service() {
    let mut sim = learned();
    sim.run_rps(30, 30.0);
    // A peer server went silent: 10 s of samples without the router's figures.
    for _ in 0..10 {
        let d = sim.tick_with(|sample| sample);
        assert!(d.desired > 0, "{}", d.reason);
    }
}

#[test]
fn a_late_request_after_the_window_is_not_met_by_the_old_prewarm() {
    let mut sim = learned();
    // The call does not come in its window (to about 660 s of quiet): released again after
    // it...
    sim.run_rps(60, 30.0);
    let quiet = sim.run_rps(690, 0.0);
    assert_eq!(quiet.last().map(|d| d.desired), Some(0));
    // ...and a request soon after wakes one instance, not the pre-warmed three.
    let woken = sim.run_rps(3, 1.0);
    assert!(woken.iter().all(|d| d.rule != Rule::Prewarm), "{:?}", woken);
    assert!(woken.iter().all(|d| d.desired <= 1), "{:?}", woken);
}

#[test]
fn a_fixed_idle_timeout_is_kept_whatever_the_start_time() {
    let mut config = rps_target(0, 10, 10.0);
    config.idle_auto = false;
    let mut sim = Sim::with_start(config, 0, START_S as usize);
    // The second call comes after the first start is measured, where `auto` would release
    // after 11 starts (see above).
    for _ in 0..2 {
        let quiet = call(&mut sim, 400);
        let released = quiet.iter().position(|d| d.desired == 0).expect("released");
        // idle_timeout 5 min: the 300th quiet second is the first without a request for 5 min.
        assert_eq!(released, 299, "{}", quiet[released].reason);
    }
}

#[test]
fn while_learning_seconds_without_figures_hold_an_instance_until_the_full_timeout() {
    let mut sim = auto();
    // Two calls: the second's quiet follows a measured start of about 20 s, so `auto` would
    // release after about 220 s of known quiet (see above).
    call(&mut sim, 600);
    sim.run_rps(60, 30.0);
    sim.run_rps(10, 0.0);
    // A peer server went silent: from then on, no second is known to be quiet.
    let silent: Vec<Decision> = (0..300).map(|_| sim.tick_with(|s| s)).collect();
    let released = silent
        .iter()
        .position(|d| d.desired == 0)
        .expect("released");
    // No request for the full idle_timeout (5 min) ends it, 10 s of known quiet included.
    assert_eq!(released + 10, 299, "{}", silent[released].reason);
}

#[test]
fn a_start_too_short_to_price_keeps_an_instance_the_shortest_keep_alive() {
    // One instance running, whose start was measured at 50 ms: 11 of them are 0.55 s, shorter
    // than a pause within a visit.
    let mut sim = Sim::new(rps_target(0, 10, 10.0), 1);
    sim.state
        .start_times_mut()
        .restore([std::time::Duration::from_millis(50)]);
    sim.run_rps(60, 5.0);
    let quiet = sim.run_rps(10, 0.0);
    let released = quiet.iter().position(|d| d.desired == 0).expect("released");
    // The first tick with 2 s of quiet.
    assert_eq!(released, 1, "{}", quiet[released].reason);
    assert!(
        quiet[released]
            .reason
            .contains("so 2s: the shortest keep-alive"),
        "{}",
        quiet[released].reason
    );
}
