//! Target tracking through the public API with a manual clock: tolerance, panic, stabilization,
//! the scale-up rate, missing metrics, bounds and scale to and from zero.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::{desired, rps_sample, rps_target, Sim};
use ebb_autoscaler::{demand, Rule, Sample, BUSY_WINDOW};
use ebb_core::autoscale::{AutoscaleSpec, ScaleMetric, ScaleTargets};
use std::time::Duration;

#[test]
fn load_at_target_keeps_the_count() {
    let mut sim = Sim::new(rps_target(1, 20, 5.0), 4);
    // 4 instances × 5 rps, with a slow ±8 % wave: inside the 10 % tolerance.
    for i in 0..600 {
        let rps = 20.0 + 1.6 * (f64::from(i) * std::f64::consts::TAU / 120.0).sin();
        let d = sim.tick_rps(rps);
        assert_eq!(d.desired, 4, "second {i}");
        if i > 60 {
            assert_eq!(d.rule, Rule::Tolerance, "second {i}: {}", d.reason);
        }
    }
}

#[test]
fn the_reason_shows_the_inputs_of_a_panic() {
    let config = AutoscaleSpec::new(
        1,
        20,
        ScaleTargets {
            concurrency: Some(10.0),
            ..ScaleTargets::default()
        },
    );
    let mut sim = Sim::new(config, 1);
    let d = sim.tick_with(|s| Sample {
        concurrency: Some(43.2),
        requests: 40,
        ..s
    });
    assert_eq!(d.reason, "concurrency 43.2 over 6s / target 10 → 5 (panic)");
    assert_eq!((d.desired, d.panic), (5, true));
}

#[test]
fn a_4x_step_panics_by_the_second_tick_and_reaches_the_need_within_the_panic_window() {
    let mut sim = Sim::new(rps_target(1, 50, 5.0), 4);
    sim.run_rps(120, 20.0);
    let after = sim.run_rps(8, 80.0);
    // Tick 1: the 6 s panic window averages (80 + 5 × 20) / 6 = 30 rps = 1.5× of 4 instances
    // (no panic; the 60 s window is within tolerance). Tick 2: 40 rps = 2× → panic, 8.
    assert!(!after[0].panic);
    assert_eq!(after[0].rule, Rule::Tolerance);
    assert_eq!((after[1].desired, after[1].panic), (8, true));
    assert_eq!(after[1].rule, Rule::Panic);
    assert!(after[1]
        .reason
        .starts_with("rps 40.0 over 6s / target 5 → 8 (panic)"));
    // Then up with the window, not by the 15 s rate limit: 16 = 80 / 5 once it is full.
    assert_eq!(desired(&after[1..6]), [8, 10, 12, 14, 16]);
}

/// Bursty but stationary: 10 rps with a one-second clump of 60 every 7 s (mean ~17 rps).
fn clumpy(second: u32) -> f64 {
    if second.is_multiple_of(7) {
        60.0
    } else {
        10.0
    }
}

#[test]
fn bursty_stationary_load_is_sized_for_its_clumps_without_panicking() {
    let mut sim = Sim::new(rps_target(1, 50, 5.0), 4);
    let decisions: Vec<_> = (0..1200).map(|i| sim.tick_rps(clumpy(i))).collect();
    // A clump's 6 s window reaches (60 + 5 × 10) / 6 = 18.3 rps, 2× of what the first 4
    // instances serve at first, but it stands within the load's own noise: no panic once the
    // noise is known (the first clump, with no history, may panic).
    let panics = decisions[60..].iter().filter(|d| d.panic).count();
    assert_eq!(panics, 0);
    // Sized for the clumps, not the mean: the mean asks for 4 (17.1 / 5); the mean plus twice
    // the noise (σ ≈ 19 rps from successive differences) for 12, and so does the busy
    // seconds' level (a clump every 7 s: the top 2.3 % of the last fifteen minutes are at 60),
    // which is the higher of the two.
    let last = decisions.last().unwrap();
    assert!(
        last.reason.contains("for its busy seconds over 15m"),
        "{}",
        last.reason
    );
    assert!((10..=13).contains(&last.desired), "{}", last.reason);
    // And steady: the count does not follow each clump.
    let counts: std::collections::BTreeSet<u32> =
        decisions[900..].iter().map(|d| d.desired).collect();
    assert!(counts.len() <= 2, "{counts:?}");
}

/// Stationary clumps: a level drawn every 10 s, uniform within ±50 % of 20 rps (xorshift,
/// fixed seed), for `seconds` seconds.
fn random_clumps(seconds: usize) -> Vec<f64> {
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    let mut levels = Vec::new();
    for _ in 0..seconds.div_ceil(10) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        levels.push(20.0 * (0.5 + (x >> 11) as f64 / (1u64 << 53) as f64));
    }
    (0..seconds).map(|s| levels[s / 10]).collect()
}

#[test]
fn a_new_service_is_sized_for_its_busy_seconds_from_its_third_minute() {
    // Clumps of 10 s: one-second differences see one change in ten, so the mean plus twice
    // their noise asks for about 5 instances where the busy seconds (about 29.5 rps) ask for 6.
    let mut sim = Sim::new(rps_target(1, 50, 5.0), 4);
    let load = random_clumps(900);
    let mut sized = 0;
    for (i, &rps) in load.iter().enumerate() {
        let d = sim.tick_rps(rps);
        let now = sim.now().mono;
        let warming = sim.metrics.warming_busy(ScaleMetric::Rps, now);
        // Tick i reads the values of seconds 1 to i + 1 (the clock's blocks begin at 0): the
        // complete blocks first cover 170 s or more at tick 179 (seconds 1 to 179).
        if i < 179 {
            assert_eq!(warming, None, "second {i}");
            assert!(
                !d.reason.contains("busy seconds"),
                "second {i}: {}",
                d.reason
            );
            continue;
        }
        // A full window (nine complete blocks, from tick 809) reads its own level instead.
        if sim
            .metrics
            .busy(ScaleMetric::Rps, now, BUSY_WINDOW)
            .is_some()
        {
            assert!(i >= 809 && warming.is_none(), "second {i}: {warming:?}");
            continue;
        }
        if i == 179 {
            assert!(warming.is_some(), "the first reading");
        }
        let Some((level, over)) = warming else {
            continue;
        };
        assert_eq!(over, Duration::from_secs(i as u64 + 1), "second {i}");
        if matches!(d.rule, Rule::Target | Rule::Tolerance) {
            sized += 1;
            // Within the 10 % tolerance of the count the level asks for, or above it.
            let covers = f64::from(d.desired) * 5.0 * 1.1;
            assert!(covers >= level, "second {i}: {level} → {}", d.reason);
            assert!(
                d.reason.contains("for its busy seconds over") && !d.reason.contains("over 15m"),
                "second {i}: {}",
                d.reason
            );
        }
    }
    assert!(sized > 500, "{sized} decisions sized for the warming level");
}

#[test]
fn a_first_burst_that_ended_is_not_held_while_the_window_fills() {
    let mut sim = Sim::new(rps_target(1, 50, 5.0), 1);
    let burst = sim.run_rps(60, 30.0);
    let mut count = burst.last().unwrap().desired;
    for i in 0..700 {
        let d = sim.tick_rps(1.0);
        // The fall test on the nine spans of what the window holds sees the burst was left
        // (from 179 s on, when the window has two complete blocks): no level, or that of the
        // quiet seconds once the burst's span stands out by itself.
        let warming = sim.metrics.warming_busy(ScaleMetric::Rps, sim.now().mono);
        assert!(
            warming.is_none_or(|(level, _)| level <= 1.0),
            "quiet second {i}: {warming:?}"
        );
        // Nothing raises the count of a service whose load went.
        assert!(d.desired <= count, "quiet second {i}: {}", d.reason);
        count = d.desired;
    }
    assert_eq!(count, 1);
}

#[test]
fn a_still_hour_sizes_for_its_busy_seconds_when_fifteen_minutes_swing() {
    let mut sim = Sim::new(rps_target(1, 50, 5.0), 4);
    let load = random_clumps(3 * 3600);
    let (mut by_hour, mut quarter_fell) = (0, 0);
    for (i, &rps) in load.iter().enumerate() {
        let d = sim.tick_rps(rps);
        let now = sim.now().mono;
        let quarter = sim.metrics.busy(ScaleMetric::Rps, now, BUSY_WINDOW);
        let Some(hour) = sim.metrics.steady_hour(ScaleMetric::Rps, now) else {
            continue;
        };
        assert!(i >= 3600, "second {i}: no still hour before an hour");
        if d.reason.contains("for its busy seconds over 1h") {
            by_hour += 1;
        }
        // Fifteen minutes judged a fall (or read a lower level) and the hour held still: sized
        // for the hour's level, not for the mean plus its noise.
        if quarter.is_none_or(|q| q < hour) && d.rule == Rule::Target {
            quarter_fell += usize::from(quarter.is_none());
            let need = (hour / 5.0 - 1e-9).ceil() as u32;
            assert!(d.desired >= need.min(50), "second {i}: {}", d.reason);
        }
    }
    assert!(
        by_hour > 100,
        "{by_hour} decisions sized for the hour's level"
    );
    assert!(quarter_fell > 0, "no fall judged over fifteen minutes");
}

#[test]
fn a_fall_after_a_still_hour_is_followed_not_held() {
    let mut sim = Sim::new(rps_target(1, 50, 5.0), 4);
    for rps in random_clumps(2 * 3600) {
        sim.tick_rps(rps);
    }
    let before = sim.current;
    // The load falls to a tenth and stays: the hour no longer held still.
    let after = sim.run_rps(900, 2.0);
    // The newest 90 values' mean must first stand below the hour's stretches by more than
    // their noise allows: 49 s here. Until a block of the hour ended with the fall in it, as
    // when only complete blocks counted, it would be 89 s.
    let held = after.iter().rposition(|d| d.reason.contains("over 1h"));
    assert!(
        held.is_some_and(|s| s < 60),
        "held to second {held:?} after"
    );
    assert!(before > 4 && sim.current <= 2, "{before} → {}", sim.current);
}

#[test]
fn a_real_step_over_bursty_load_still_panics() {
    let mut sim = Sim::new(rps_target(1, 100, 5.0), 4);
    for i in 0..600 {
        sim.tick_rps(clumpy(i));
    }
    let before = sim.current;
    // The load steps to 4× its clumps and stays: well beyond the noise within the panic window.
    let after = sim.run_rps(6, 240.0);
    let first = after.iter().position(|d| d.panic).unwrap();
    assert!(first <= 2, "{:?}", desired(&after));
    assert!(after[first].desired > before);
}

#[test]
fn with_a_3s_panic_window_a_4x_step_is_answered_at_the_first_tick() {
    let mut config = rps_target(1, 50, 5.0);
    config.panic_window = Duration::from_secs(3);
    let mut sim = Sim::new(config, 4);
    sim.run_rps(120, 20.0);
    // (80 + 2 × 20) / 3 = 40 rps = 2× of 4 instances.
    let d = sim.tick_rps(80.0);
    assert_eq!((d.desired, d.panic), (8, true));
}

#[test]
fn panic_never_scales_down_and_ends_a_stable_window_after_the_surge() {
    let mut sim = Sim::new(rps_target(1, 50, 5.0), 4);
    sim.run_rps(120, 20.0);
    let surge = sim.run_rps(10, 80.0);
    let last_over = surge
        .iter()
        .rposition(|d| d.reason.contains("(panic)"))
        .unwrap();
    let peak = sim.current;
    assert_eq!(peak, 16);
    // Load falls back: the count stays at the peak while panicking.
    let mut t = 0;
    let first_calm = loop {
        let d = sim.tick_rps(20.0);
        if !d.panic {
            break d;
        }
        assert_eq!(d.desired, peak, "{}", d.reason);
        t += 1;
    };
    // Panic ends a stable window (60 s) after the condition last held.
    assert_eq!(t + 1, 60 - (surge.len() - 1 - last_over));
    // One hold, not two: the panic's count is not remembered, so the count falls at once to
    // what the stable window asked for over the last scale_down_delay, and on to 4 once the
    // window and those recommendations have forgotten the surge.
    assert!(first_calm.desired < peak, "{}", first_calm.reason);
    let calm = sim.run_rps(120, 20.0);
    assert!(calm[0].desired <= first_calm.desired);
    assert!(calm.windows(2).all(|w| w[1].desired <= w[0].desired));
    assert_eq!(calm.last().unwrap().desired, 4);
}

#[test]
fn scale_down_waits_for_the_scale_down_delay() {
    let mut config = rps_target(1, 20, 5.0);
    config.scale_down_auto = false;
    let mut sim = Sim::new(config, 8);
    sim.run_rps(120, 40.0);
    let after = sim.run_rps(240, 10.0);
    let first_drop = after.iter().position(|d| d.desired < 8).unwrap();
    // The 60 s average first asks for fewer than 8 at the 10th second ((50 × 40 + 10 × 10) / 60
    // = 35 rps → 7); the count follows a scale_down_delay later, at the 69th.
    assert_eq!(first_drop + 1, 69);
    assert!(
        first_drop >= 60,
        "dropped at {first_drop}: {}",
        after[first_drop].reason
    );
    assert!(after[first_drop]
        .reason
        .contains("highest recommendation of the last 60s"));
    assert_eq!(after[first_drop].rule, Rule::Stabilized);
    assert_eq!(after[first_drop - 1].rule, Rule::Stabilized);
    assert_eq!(after.last().unwrap().desired, 2);
    // Never back up on the way down.
    assert!(after.windows(2).all(|w| w[1].desired <= w[0].desired));
}

#[test]
fn outside_panic_scale_up_is_limited_to_max_4_or_100_percent_per_15s() {
    let mut config = rps_target(1, 100, 5.0);
    config.panic_threshold = 1000.0; // isolate the rate limit
    let mut sim = Sim::new(config, 3);
    sim.run_rps(60, 15.0);
    let mut counts = vec![3];
    counts.extend(desired(&sim.run_rps(120, 400.0)));
    for t in 15..counts.len() {
        let start = counts[t - 15];
        let limit = (start + 4).max(2 * start);
        assert!(
            counts[t] <= limit,
            "at {t}: {} > {limit} from {start}",
            counts[t]
        );
    }
    assert_eq!(*counts.last().unwrap(), 80);
    assert!(sim.run_rps(1, 400.0)[0].reason.contains("→ 80"));
}

#[test]
fn the_rate_limited_reason_says_so() {
    let mut config = rps_target(1, 100, 5.0);
    config.panic_threshold = 1000.0;
    let mut sim = Sim::new(config, 3);
    sim.run_rps(60, 15.0);
    // The 60 s average climbs 3 → 5 → 6 → 7 instances' worth; the 4th second asks for 9, but
    // 4 were added since 3 instances 15 s ago.
    let ds = sim.run_rps(4, 400.0);
    assert_eq!(desired(&ds), [5, 6, 7, 7]);
    assert_eq!(
        ds[3].reason,
        "rps 40.7 over 60s / target 5 → 9; limited to 7 (scale-up rate: max(4, 100%) per 15s)"
    );
    assert_eq!(ds[3].rule, Rule::RateLimited);
    assert_eq!(ds[0].rule, Rule::Target);
}

#[test]
fn several_targets_the_largest_proposal_wins() {
    let config = AutoscaleSpec::new(
        1,
        20,
        ScaleTargets {
            concurrency: Some(10.0),
            rps: Some(5.0),
            ..ScaleTargets::default()
        },
    );
    let mut sim = Sim::new(config, 6);
    let d = (0..120)
        .map(|_| {
            sim.tick_with(|s| Sample {
                concurrency: Some(20.0),
                ..rps_sample(s, 30.0)
            })
        })
        .last()
        .unwrap();
    assert_eq!(d.desired, 6);
    assert_eq!(
        d.reason,
        "rps 30.0 over 60s / target 5 → 6 (within 10% of target); other targets: concurrency → 2"
    );
}

#[test]
fn missing_metrics_never_scale_down() {
    let mut sim = Sim::new(rps_target(1, 20, 5.0), 6);
    for _ in 0..300 {
        let d = sim.tick_with(|s| Sample { requests: 1, ..s });
        assert_eq!(d.desired, 6);
        assert_eq!(d.reason, "rps missing over 60s → 6 (hold)");
    }
    // A second target without data holds the count while the first says 1.
    let mut config = rps_target(1, 20, 5.0);
    config.targets.cpu = Some(0.7);
    let mut sim = Sim::new(config, 6);
    assert!(sim.run_rps(300, 2.0).iter().all(|d| d.desired == 6));
    // Half the samples missing and the rest at 0.5 rps (1 instance's worth): the missing half
    // counts at target, which slows the descent and stops it at 2, not 1.
    let mut sim = Sim::new(rps_target(1, 20, 5.0), 6);
    let ds: Vec<_> = (0..600u32)
        .map(|i| sim.tick_with(|s| rps_sample(s, if i % 2 == 0 { 0.5 } else { f64::NAN })))
        .collect();
    assert!(ds.iter().all(|d| d.desired >= 2));
    assert_eq!(ds[599].desired, 2);
    assert!(ds[599]
        .reason
        .contains("(30 of 60 samples missing, counted at target)"));
}

#[test]
fn decisions_stay_within_min_and_max() {
    let mut sim = Sim::new(rps_target(2, 10, 5.0), 2);
    let up = sim.run_rps(300, 1000.0);
    assert!(up.iter().all(|d| d.desired <= 10));
    assert_eq!(sim.current, 10);
    assert_eq!(up.last().map(|d| d.rule), Some(Rule::Bounds));
    assert!(sim.run_rps(400, 0.1).iter().all(|d| d.desired >= 2));
    assert_eq!(sim.current, 2);
}

#[test]
fn idle_goes_to_zero_after_idle_timeout_only_when_min_is_0() {
    let mut sim = Sim::new(rps_target(0, 10, 5.0), 2);
    sim.run_rps(60, 10.0);
    let quiet = sim.run_rps(400, 0.0);
    let zero_at = quiet.iter().position(|d| d.desired == 0).unwrap();
    assert!(quiet[zero_at - 1].reason.ends_with(
        "→ 0; kept at 1: zero only after 5m without a request \
             (idle_timeout auto, not learned yet: 0 of 8 gaps)"
    ));
    // The last request was in the second before the quiet began: zero after exactly 300 s.
    assert_eq!(zero_at + 1, 300);
    assert_eq!(
        quiet[zero_at].reason,
        "no request for 5m (idle_timeout auto, not learned yet: 0 of 8 gaps) → 0"
    );
    assert_eq!(quiet[zero_at].rule, Rule::Idle);
    assert_eq!(quiet[zero_at - 1].rule, Rule::Stabilized);
    assert!(quiet[..zero_at].iter().all(|d| d.desired >= 1));

    let mut sim = Sim::new(rps_target(1, 10, 5.0), 2);
    sim.run_rps(60, 10.0);
    let quiet = sim.run_rps(900, 0.0);
    assert!(quiet.iter().all(|d| d.desired >= 1));
    assert_eq!(quiet[899].desired, 1);
}

#[test]
fn a_request_at_zero_asks_for_one_instance_at_once_and_keeps_it_while_it_starts() {
    let mut sim = Sim::new(rps_target(0, 10, 5.0), 1);
    sim.run_rps(400, 0.0);
    assert_eq!(sim.current, 0);
    let now = sim.now();
    let d = demand(&sim.config, &mut sim.state, 0, now).expect("scale from zero");
    assert_eq!(d.desired, 1);
    assert_eq!(
        d.reason,
        "request waiting at 0 instances → 1 (scale from zero)"
    );
    assert_eq!(d.rule, Rule::Demand);
    // More requests while it starts ask for nothing more.
    assert_eq!(demand(&sim.config, &mut sim.state, 0, now), None);
    // The instance takes 5 s to be ready; ticks meanwhile keep asking for it.
    sim.instant_ready = false;
    for _ in 0..5 {
        assert_eq!(sim.tick_rps(0.0).desired, 1);
    }
    sim.current = 1;
    assert_eq!(sim.tick_rps(1.0).desired, 1);
}

#[test]
fn a_request_seen_by_the_tick_at_zero_also_starts_one() {
    let mut sim = Sim::new(rps_target(0, 10, 5.0), 0);
    sim.instant_ready = false;
    assert_eq!(sim.tick_rps(0.0).desired, 0);
    let woken = sim.tick_rps(0.2);
    assert_eq!(woken.desired, 1);
    // A cold start, as demand's: counted as one by the rule metrics.
    assert_eq!(woken.rule, Rule::Demand, "{}", woken.reason);
}

#[test]
fn a_fresh_state_neither_wakes_a_service_at_zero_nor_stops_a_running_one_early() {
    let mut sim = Sim::new(rps_target(0, 10, 5.0), 0);
    assert!(sim.run_rps(600, 0.0).iter().all(|d| d.desired == 0));

    let mut sim = Sim::new(rps_target(0, 10, 5.0), 3);
    let ds = sim.run_rps(400, 0.0);
    // Quiet counts from the first tick the state saw: zero at its 301st.
    assert_eq!(ds.iter().position(|d| d.desired == 0), Some(300));
    assert!(ds[300].reason.starts_with("no request in the 5m observed"));

    // The same after a restart that restored a start time of 1 s: `auto` would keep an
    // instance 11 s after a request while it learns, but none was seen since the restart.
    let mut sim = Sim::new(rps_target(0, 10, 5.0), 3);
    sim.state
        .start_times_mut()
        .restore([Duration::from_secs(1)]);
    let ds = sim.run_rps(400, 0.0);
    assert_eq!(ds.iter().position(|d| d.desired == 0), Some(300));
}

/// Issue 19's first defect: after a burst, `idle_timeout = "8s"` must still take a `min = 0`
/// service to zero 8 s after its last request, though the panic would hold it for a minute;
/// and the event says how long it really was quiet.
#[test]
fn a_quiet_service_goes_to_zero_after_idle_timeout_even_in_a_panic() {
    let mut config = rps_target(0, 50, 5.0);
    config.idle_timeout = Duration::from_secs(8);
    config.idle_auto = false;
    config.scale_down_delay = Duration::from_secs(5);
    config.scale_down_auto = false;
    let mut sim = Sim::new(config, 1);
    sim.run_rps(30, 5.0);
    let burst = sim.run_rps(5, 100.0);
    assert!(burst.iter().any(|d| d.panic), "the burst panics");
    let quiet = sim.run_rps(20, 0.0);
    let zero = quiet.iter().position(|d| d.desired == 0).unwrap();
    // The last request was in the burst's last second: zero 8 s later, not a panic later.
    assert_eq!(zero + 1, 8, "{}", quiet[zero].reason);
    assert_eq!(quiet[zero].rule, Rule::Idle);
    assert!(!quiet[zero].panic);
    assert!(
        quiet[zero]
            .reason
            .starts_with("no request for 8s (idle_timeout 8s) → 0"),
        "{}",
        quiet[zero].reason
    );
    assert!(!sim.state.panicking(), "the panic ended with the requests");
}

/// A count kept within the tolerance is not remembered as a recommendation: when the load
/// leaves the band downward, the count follows what the load asked for instead of waiting a
/// scale_down_delay more at the kept count.
#[test]
fn a_count_kept_within_the_tolerance_does_not_hold_the_way_down() {
    let mut sim = Sim::new(rps_target(1, 50, 5.0), 10);
    // 45 rps on 10 instances at 5 each: 0.9 of target, within 10 %: kept at 10 (9 asked).
    let kept = sim.run_rps(120, 45.0);
    assert!(kept
        .iter()
        .all(|d| d.desired == 10 && d.rule == Rule::Tolerance));
    let down = sim.run_rps(120, 20.0);
    // Leaving the band: no decision holds 10 again; the first one below 10 is the 9 the load
    // asked for all along.
    let first = down.iter().position(|d| d.desired < 10).unwrap();
    assert_eq!(first, 0, "{}", down[0].reason);
    assert_eq!(down[0].desired, 9);
    assert_eq!(down.last().unwrap().desired, 4);
}

/// Missing samples never lower what stabilization remembers either: present samples asking
/// for more, counted with the missing ones as zero, land within the tolerance; what is
/// remembered is the count kept, not the lower count the zeros made up.
#[test]
fn missing_samples_within_the_tolerance_do_not_lower_the_way_down() {
    let mut sim = Sim::new(rps_target(1, 50, 5.0), 10);
    sim.run_rps(120, 50.0);
    for s in 0..60 {
        if s % 4 == 3 {
            sim.tick_with(|sample| Sample {
                requests: 1,
                ..sample
            });
        } else {
            sim.tick_rps(60.0);
        }
    }
    // 45 present at 60 rps, 15 missing as 0: 45 rps, within 10 % of 10 × 5: kept at 10.
    let down = sim.tick_rps(40.0);
    assert_eq!(down.desired, 10, "{}", down.reason);
}
