//! Endpoint selection cost: ns per pick for each algorithm at 10 and 1,000 endpoints; then, in
//! `pick_slow_start`, with a 60 s slow start while every tenth endpoint is halfway up its ramp.
//!
//! Run: `cargo bench -p ebb-router --bench select`. Single-threaded, so the shared atomics
//! (round-robin counter, P2C random state) are uncontended; figures go into BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark tool, not production code
#![allow(missing_docs)] // criterion_group! defines an undocumented pub fn

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use ebb_router::{BalanceAlgorithm, Endpoint, EndpointSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `n` endpoints; endpoint `i` joined the set at `born(i)`.
fn set(n: usize, now: Instant, born: impl Fn(usize) -> Instant) -> EndpointSet {
    let endpoints = (0..n)
        .map(|i| {
            let addr = SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8 + 1], 8080));
            let e = Arc::new(Endpoint::new(format!("web-{i:08x}"), addr, born(i)));
            // Realistic, varied load: some requests in flight and a latency sample each.
            for _ in 0..i % 4 {
                e.load.start();
            }
            e.load.start();
            e.load.end(
                Some(Duration::from_micros(500 + (i as u64 * 7919) % 5000)),
                now,
            );
            e
        })
        .collect();
    EndpointSet::new(endpoints)
}

fn select(c: &mut Criterion) {
    let t0 = Instant::now();
    let now = t0 + Duration::from_millis(250);
    let mut group = c.benchmark_group("pick");
    for n in [10usize, 1_000] {
        let endpoints = set(n, t0, |_| t0);
        for algorithm in BalanceAlgorithm::ALL {
            let balancer = ebb_router::balance::build(algorithm, Duration::ZERO);
            let mut key = 0u64;
            group.bench_with_input(BenchmarkId::new(algorithm.name(), n), &endpoints, |b, s| {
                b.iter(|| {
                    key = key.wrapping_add(0x9E37_79B9_7F4A_7C15);
                    let key = (algorithm == BalanceAlgorithm::Hash).then_some(key);
                    black_box(balancer.pick(black_box(s), key, now))
                })
            });
        }
    }
    group.finish();
}

fn select_slow_start(c: &mut Criterion) {
    const WINDOW: Duration = Duration::from_secs(60);
    let t0 = Instant::now();
    let now = t0 + 2 * WINDOW;
    let mut group = c.benchmark_group("pick_slow_start");
    for n in [10usize, 1_000] {
        let endpoints = set(n, t0, |i| if i % 10 == 0 { now - WINDOW / 2 } else { t0 });
        for algorithm in [
            BalanceAlgorithm::RoundRobin,
            BalanceAlgorithm::LeastRequest,
            BalanceAlgorithm::PeakEwma,
        ] {
            let balancer = ebb_router::balance::build(algorithm, WINDOW);
            group.bench_with_input(BenchmarkId::new(algorithm.name(), n), &endpoints, |b, s| {
                b.iter(|| black_box(balancer.pick(black_box(s), None, now)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, select, select_slow_start);
criterion_main!(benches);
