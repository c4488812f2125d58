//! Target tracking replayed on three hours of real traffic: the NASA Kennedy Space Center web
//! server on the morning of 13 July 1995 (a shuttle launch), one count per second. The trace is
//! compiled in, so the test needs nothing outside the crate.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use ebb_autoscaler::{burst, decide, demand, Metrics, Now, Reading, Sample, State};
use ebb_core::autoscale::{AutoscaleSpec, ScaleTargets};
use std::collections::VecDeque;
use std::time::Duration;

const TRACE: &str = include_str!("data/nasa-1995-07-13-0730-3h.txt");
/// 1995's rates (mean 3.3 req/s) × 10: a service of today, the same shape.
const SCALE: f64 = 10.0;
const TARGET_RPS: f64 = 5.0;
const MIN: u32 = 1;
const MAX: u32 = 50;
/// Seconds from a decision to more instances serving.
const START_SECONDS: u64 = 5;

fn trace() -> Vec<f64> {
    TRACE
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.trim().parse::<f64>().expect("one count per line") * SCALE)
        .collect()
}

/// Per second: the load, the decision, and the instances ready when it was made.
struct Replay {
    load: Vec<f64>,
    desired: Vec<u32>,
    ready: Vec<u32>,
    panics: usize,
    /// The autoscaler's state after the last second.
    state: State,
}

/// Replays `load` (req/s per second) against `config`. New instances serve `START_SECONDS`
/// after they are asked for; removed ones stop at once.
fn replay(config: &AutoscaleSpec, load: &[f64]) -> Replay {
    let mut state = State::default();
    let mut metrics = Metrics::for_config(config);
    let mut ready = config.min.max(1);
    let mut starting: VecDeque<(u64, u32)> = VecDeque::new();
    let mut out = Replay {
        load: load.to_vec(),
        desired: Vec::new(),
        ready: Vec::new(),
        panics: 0,
        state: State::default(),
    };
    for (i, &rps) in load.iter().enumerate() {
        let t = i as u64 + 1;
        while starting.front().is_some_and(|&(at, _)| at <= t) {
            ready += starting.pop_front().map_or(0, |(_, n)| n);
        }
        let at = Duration::from_secs(t);
        metrics.push(Sample {
            rps: Some(rps),
            requests: rps.round() as u64,
            ..Sample::new(at)
        });
        // The server's burst check, with the trace's resolution: one reading of each second.
        let reading = Reading {
            span: Duration::from_secs(1),
            concurrency: None,
            rps: Some(rps),
        };
        let before = Now::unix(at - Duration::from_millis(1));
        if let Some(b) = burst(config, &mut state, &reading, ready, before) {
            let asked = ready + starting.iter().map(|&(_, n)| n).sum::<u32>();
            if b.desired > asked {
                starting.push_back((t + START_SECONDS, b.desired - asked));
            }
        }
        let d = decide(config, &mut state, &metrics, ready, Now::unix(at));
        out.panics += usize::from(d.panic);
        let asked = ready + starting.iter().map(|&(_, n)| n).sum::<u32>();
        if d.desired > asked {
            starting.push_back((t + START_SECONDS, d.desired - asked));
        } else {
            let mut cut = asked - d.desired;
            while cut > 0 {
                let Some(last) = starting.back_mut() else {
                    break;
                };
                let n = last.1.min(cut);
                last.1 -= n;
                cut -= n;
                if last.1 == 0 {
                    starting.pop_back();
                }
            }
            ready -= cut;
        }
        out.desired.push(d.desired);
        out.ready.push(ready);
    }
    out.state = state;
    out
}

fn config() -> AutoscaleSpec {
    AutoscaleSpec::new(
        MIN,
        MAX,
        ScaleTargets {
            rps: Some(TARGET_RPS),
            ..ScaleTargets::default()
        },
    )
}

/// Mean load of the 60 s ending at each second.
fn stable_load(load: &[f64]) -> Vec<f64> {
    let mut sum = 0.0;
    (0..load.len())
        .map(|i| {
            sum += load[i];
            if i >= 60 {
                sum -= load[i - 60];
            }
            sum / (i.min(59) + 1) as f64
        })
        .collect()
}

fn share(hits: usize, of: usize) -> f64 {
    hits as f64 / of as f64
}

#[test]
fn the_trace_is_three_hours_of_seconds() {
    let load = trace();
    assert_eq!(load.len(), 3 * 3600);
    assert!(load.iter().all(|&r| r >= 0.0));
}

#[test]
fn three_hours_of_real_traffic_are_served_without_flapping() {
    let r = replay(&config(), &trace());
    let hours = r.load.len() as f64 / 3600.0;
    let stable = stable_load(&r.load);

    assert!(r.desired.iter().all(|&d| (MIN..=MAX).contains(&d)));

    // Capacity covers the minute's load nearly always. HPA's tolerance lets load run up to 10 %
    // over the target without a change (that is its point: no churn for noise), so count both
    // strict cover and cover within the tolerance; and what serves (instances take
    // START_SECONDS to start) as well as what was asked for.
    let tolerance = 1.0 + config().tolerance;
    let cover = |count: &[u32], slack: f64| {
        let from = 60; // the first minute fills the window
        let hits = (from..r.load.len())
            .filter(|&i| f64::from(count[i]) * TARGET_RPS * slack >= stable[i])
            .count();
        share(hits, r.load.len() - from)
    };
    let (asked, asked_tol) = (cover(&r.desired, 1.0), cover(&r.desired, tolerance));
    let served_tol = cover(&r.ready, tolerance);

    // Sized for the busy seconds, not the minute's mean (`noise.rs`), yet never for more than
    // the minute's busiest second: capacity against the mean and against that peak.
    let used: f64 = stable[60..].iter().sum();
    let capacity: f64 = r.desired[60..]
        .iter()
        .map(|&d| f64::from(d) * TARGET_RPS)
        .sum();

    // No flapping: few changes per hour (without stabilization and tolerance this trace makes
    // over 250 an hour; with the defaults about 60, mostly ±1 as the minute's mean crosses an
    // instance's worth), and a scale-down is rarely undone within a minute.
    let changes: Vec<usize> = (1..r.desired.len())
        .filter(|&i| r.desired[i] != r.desired[i - 1])
        .collect();
    let undone = changes
        .windows(2)
        .filter(|w| {
            let (a, b) = (w[0], w[1]);
            r.desired[a] < r.desired[a - 1] && r.desired[b] > r.desired[b - 1] && b - a < 60
        })
        .count();
    let per_hour = changes.len() as f64 / hours;

    // The busiest second of the minute ending at each second.
    let busiest: Vec<f64> = (0..r.load.len())
        .map(|i| {
            r.load[i.saturating_sub(59)..=i]
                .iter()
                .copied()
                .fold(0.0, f64::max)
        })
        .collect();
    let peak: f64 = busiest[60..].iter().sum();
    let per_second = share(
        (60..r.load.len())
            .filter(|&i| f64::from(r.desired[i]) * TARGET_RPS >= r.load[i])
            .count(),
        r.load.len() - 60,
    );
    let summary = format!(
        "asked covers {asked:.3} ({asked_tol:.3} within tolerance) of the minute's mean and \
         {per_second:.3} of the seconds, served covers {served_tol:.3} within tolerance, \
         capacity/used {:.2}, capacity/peak {:.2}, {per_hour:.1} changes/h, {undone} \
         scale-downs undone within 60s, {} panic seconds",
        capacity / used,
        capacity / peak,
        r.panics
    );
    assert!(asked >= 0.85, "{summary}");
    assert!(asked_tol >= 0.99, "{summary}");
    assert!(served_tol >= 0.95, "{summary}");
    assert!(per_second >= 0.95, "{summary}");
    assert!(capacity / peak < 1.0, "{summary}");
    assert!(per_hour < 90.0, "{summary}");
    assert!((undone as f64) / hours < 12.0, "{summary}");
    // Figures with the defaults: cover 1.00 of the minute's mean and 0.97 of the seconds,
    // capacity/used 2.42 and capacity/peak 0.87, 80 changes/h, 26 scale-downs undone, 124 panic
    // seconds. Sized for the mean (no noise headroom) this trace was covered 0.73 of the
    // seconds, at capacity/used 1.34 and capacity/peak 0.48, 54 changes/h, ~1,070 panic
    // seconds: panic mode chased the bursts the mean left uncovered.
}

#[test]
fn after_the_trace_the_service_idles_to_zero_and_wakes_on_the_next_request() {
    let mut config = config();
    config.min = 0;
    // The fixed timeout (a learned one may release between the trace's own quiet spells).
    config.idle_auto = false;
    let mut load = trace();
    let busy = load.len();
    load.extend(std::iter::repeat_n(0.0, 400));
    let r = replay(&config, &load);
    let last_request = load.iter().rposition(|&l| l > 0.0).unwrap();
    let zero = r.desired.iter().position(|&d| d == 0).unwrap();
    // Never zero while busy; zero exactly idle_timeout after the last request.
    assert!(zero > busy - 1);
    assert_eq!(zero - last_request, 300);
    assert!(r.desired[zero..].iter().all(|&d| d == 0));

    let mut state = r.state;
    let now = Now::unix(Duration::from_secs(load.len() as u64 + 1));
    let d = demand(&config, &mut state, 0, now).map(|d| d.desired);
    assert_eq!(d, Some(1));
}
