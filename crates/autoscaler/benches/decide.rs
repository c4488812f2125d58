//! Decisions per second of the pure core: one tick over 10,000 services, each with its own
//! config, state and an hour and a block of history (fifteen minutes of samples for the busy
//! level's window, and the steady hour's forty blocks) — what the server does once a second.
//!
//! Run: `cargo bench -p ebb-autoscaler --bench decide`. Single-threaded. The tick pushes each
//! service's new sample and decides; criterion reports the throughput in decisions (elements)
//! per second. Figures go into BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark tool, not production code
#![allow(missing_docs)] // criterion_group! defines an undocumented pub fn

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ebb_autoscaler::{decide, Metrics, Now, Sample, State};
use ebb_core::autoscale::{
    hm, AutoscaleSpec, ScaleMetric, ScalePolicy, ScaleTargets, ScheduleWindow, StepBand,
    StepChange, Weekdays,
};
use std::time::Duration;

const SERVICES: usize = 10_000;
/// 2024-01-01T09:00:00Z, a Monday: schedule windows are open for some services.
const START: Duration = Duration::from_secs(1_704_099_600);

/// A mix like a real cluster's: mostly target tracking on one or two metrics, some step,
/// linear and scheduled services.
fn config(i: usize) -> AutoscaleSpec {
    let mut targets = ScaleTargets {
        concurrency: Some(10.0),
        ..ScaleTargets::default()
    };
    match i % 4 {
        0 => targets.rps = Some(50.0),
        1 => targets.cpu = Some(0.7),
        2 => targets.latency_p95 = Some(Duration::from_millis(200)),
        _ => {}
    }
    let mut c = AutoscaleSpec::new((i % 3) as u32, 50, targets);
    c.policy = match i % 10 {
        7 => ScalePolicy::Step {
            metric: ScaleMetric::Cpu,
            steps: vec![
                StepBand {
                    from: 0.0,
                    to: Some(0.3),
                    change: StepChange::Remove(1),
                },
                StepBand {
                    from: 0.8,
                    to: None,
                    change: StepChange::Percent(50.0),
                },
            ],
        },
        8 => ScalePolicy::Linear {
            metric: ScaleMetric::Concurrency,
            low: 5.0,
            high: 15.0,
            step: 3,
        },
        9 => ScalePolicy::Schedule {
            windows: vec![ScheduleWindow {
                days: Weekdays::WEEKDAYS,
                start: hm(8, 0),
                end: hm(18, 0),
                utc_offset_minutes: 60 * (i % 5) as i32,
                min: 3,
                max: 30,
            }],
        },
        _ => ScalePolicy::Target,
    };
    c
}

/// Service `i`'s load in second `t`: a per-service level with a wobble and a surge now and then.
fn sample(i: usize, t: u64) -> Sample {
    let level = 5.0 + (i % 97) as f64 * 2.0;
    let wobble = 1.0 + 0.3 * ((t as usize * 7 + i * 13) % 10) as f64 / 10.0;
    let surge = if (t as usize + i) % 600 < 10 {
        3.0
    } else {
        1.0
    };
    let c = level * wobble * surge;
    Sample {
        concurrency: Some(c),
        rps: (!i.is_multiple_of(11)).then_some(c * 20.0),
        cpu: Some(c / 15.0),
        latency_p95: Some(Duration::from_millis(100 + (c as u64 % 200))),
        requests: c as u64,
        ..Sample::new(START + Duration::from_secs(t))
    }
}

struct Service {
    config: AutoscaleSpec,
    state: State,
    metrics: Metrics,
    current: u32,
}

/// One tick over every service at second `t`, instances ready at once.
fn tick(services: &mut [Service], t: u64) {
    let now = Now::unix(START + Duration::from_secs(t));
    for (i, s) in services.iter_mut().enumerate() {
        s.metrics.push(sample(i, t));
        let d = decide(&s.config, &mut s.state, &s.metrics, s.current, now);
        s.current = black_box(d).desired;
    }
}

fn decide_10k(c: &mut Criterion) {
    let mut services: Vec<Service> = (0..SERVICES)
        .map(|i| {
            let config = config(i);
            Service {
                metrics: Metrics::for_config(&config),
                state: State::default(),
                current: config.min.max(1),
                config,
            }
        })
        .collect();
    // An hour and a block of history: full windows (the busy level's, and the steady hour's,
    // with a block to spare), stabilization and rate-limit histories.
    let mut t = 0;
    let warm_up = ebb_autoscaler::BUSY_WINDOW
        .max(ebb_autoscaler::STEADY_HOUR)
        .as_secs()
        + 90;
    while t < warm_up {
        t += 1;
        tick(&mut services, t);
    }
    let mut group = c.benchmark_group("decide");
    group.throughput(Throughput::Elements(SERVICES as u64));
    group.bench_function("tick_10k_services", |b| {
        b.iter(|| {
            t += 1;
            tick(&mut services, t);
        })
    });
    group.finish();
}

criterion_group!(benches, decide_10k);
criterion_main!(benches);
