//! Decisions per second of the job queue and placement together: 100,000 waiting tasks in 100
//! jobs over 10 queues (weights 1–10, two capped), each decision the queue's pick
//! (`queue::Order::pick`) then the task placed and reserved on a 100-node cluster — what the
//! controller's pass does per task.
//!
//! Run: `cargo bench -p ebb-scheduler --bench queue -- --warm-up-time 1 --measurement-time 5`.
//! Single-threaded; each iteration places 5,000 tasks from a fresh order and cluster (cloned
//! outside the timed part). Goal ≥ 50,000 decisions/s. Figures go into BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark tool, not production code
#![allow(missing_docs)] // criterion_group! defines an undocumented pub fn

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ebb_scheduler::queue::{Candidate, Order, QueueLoad};
use ebb_scheduler::{Cluster, Node, Request, Resources};

const DECISIONS: usize = 5_000;
const GIB: u64 = 1 << 30;

fn order() -> Order {
    let queues = (0..10)
        .map(|q| QueueLoad {
            weight: q + 1,
            max_running: (q % 5 == 0).then_some(400),
            running: 0,
        })
        .collect();
    let jobs = (0..100u32)
        .map(|j| Candidate {
            priority: [10, 50, 50, 90][j as usize % 4],
            queue: j as usize % 10,
            submitted_ms: u64::from(j),
            seq: u64::from(j),
            waiting: 1_000,
            running: 0,
            min: 1,
            max: 200,
        })
        .collect();
    Order::new(queues, jobs)
}

fn cluster() -> Cluster {
    let mut cluster = Cluster::new();
    for i in 0..100 {
        let node = Node::new(format!("node-{i:03}"), Resources::new(64_000, 256 * GIB));
        cluster.add_node(node).expect("unique names");
    }
    cluster
}

fn bench(c: &mut Criterion) {
    let requests: Vec<Request> = (0..100)
        .map(|j| Request::new(format!("job-{j}"), Resources::new(250, GIB / 4)))
        .collect();
    let mut group = c.benchmark_group("queue");
    group.throughput(Throughput::Elements(DECISIONS as u64));
    group.bench_function(
        "pick and place, 100,000 waiting in 10 queues, 100 nodes",
        |b| {
            b.iter_batched(
                || (order(), cluster()),
                |(mut order, mut cluster)| {
                    for seed in 0..DECISIONS as u64 {
                        let Some(job) = order.pick() else { break };
                        if cluster.place_and_reserve(&requests[job], seed).is_err() {
                            order.unplaced(job);
                        }
                    }
                    black_box(order)
                },
                BatchSize::LargeInput,
            )
        },
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
