//! Placements per second of the pure core: place and reserve 10,000 instances, one at a time,
//! onto 1,000 and onto 10,000 nodes — what the server does when a large deploy lands.
//!
//! Run: `cargo bench -p ebb-scheduler --bench place -- --warm-up-time 1 --measurement-time 5`.
//! Single-threaded. Each iteration starts from the same fresh cluster (cloned outside the timed
//! part) and places the same 10,000 requests; criterion reports throughput in placements
//! (elements) per second. The goal is ≥ 50,000/s at 1,000 nodes. Figures go into BENCHMARKS.md.
//! `…_explained` places with [`Cluster::place_and_reserve_explained`], as the server does.
//!
//! The mix: three zones, a quarter of the nodes with `disk=ssd`; ten services; instances from a
//! quarter core / 256 MiB to four cores / 8 GiB; one request in five constrained to a zone, one
//! in ten to `disk!=hdd`, one in eight spread instead of bin-packed. Nodes have 64 cores and
//! 256 GiB, so nearly everything fits at 1,000 nodes and all of it at 10,000.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark tool, not production code
#![allow(missing_docs)] // criterion_group! defines an undocumented pub fn

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ebb_scheduler::{Cluster, Constraint, Node, Placement, Request, Resources};

const INSTANCES: usize = 10_000;
const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
const ZONES: [&str; 3] = ["a", "b", "c"];

fn cluster(nodes: usize) -> Cluster {
    let mut cluster = Cluster::new();
    for i in 0..nodes {
        let disk = if i % 4 == 0 { "ssd" } else { "hdd" };
        let node = Node::new(format!("node-{i:05}"), Resources::new(64_000, 256 * GIB))
            .label("zone", ZONES[i % ZONES.len()])
            .label("disk", disk);
        cluster.add_node(node).expect("unique names");
    }
    cluster
}

fn requests() -> Vec<Request> {
    let sizes = [
        Resources::new(250, 256 * MIB),
        Resources::new(500, 512 * MIB),
        Resources::new(1000, 2 * GIB),
        Resources::new(2000, 4 * GIB),
        Resources::new(4000, 8 * GIB),
    ];
    (0..INSTANCES)
        .map(|k| {
            let mut request = Request::new(format!("svc-{}", k % 10), sizes[k % sizes.len()]);
            if k % 5 == 0 {
                request = request.constraint(Constraint::equal("zone", ZONES[k % 3]));
            }
            if k % 10 == 3 {
                request = request.constraint(Constraint::not_equal("disk", "hdd"));
            }
            if k % 8 == 1 {
                request = request.placement(Placement::Spread);
            }
            request
        })
        .collect()
}

fn place(c: &mut Criterion) {
    let requests = requests();
    let mut group = c.benchmark_group("place_and_reserve_10k");
    group.throughput(Throughput::Elements(INSTANCES as u64));
    group.sample_size(10);
    for nodes in [1_000, 10_000] {
        let fresh = cluster(nodes);
        let mut bench = |name: String, place: fn(&mut Cluster, &Request, u64) -> bool| {
            group.bench_function(name, |b| {
                b.iter_batched(
                    || fresh.clone(),
                    |mut cluster| {
                        let placed = requests
                            .iter()
                            .enumerate()
                            .filter(|(k, r)| place(&mut cluster, r, *k as u64))
                            .count();
                        black_box(placed)
                    },
                    BatchSize::LargeInput,
                )
            });
        };
        bench(format!("{nodes}_nodes"), |c, r, seed| {
            c.place_and_reserve(r, seed).is_ok()
        });
        // What the server calls: the same placement, and why (names and counts as text-ready
        // values), which `ebb describe INSTANCE` shows.
        bench(format!("{nodes}_nodes_explained"), |c, r, seed| {
            c.place_and_reserve_explained(r, seed).is_ok()
        });
    }
    group.finish();
}

criterion_group!(benches, place);
criterion_main!(benches);
