//! Scratch (not committed): time of ebb's replay alone. usage: time_ebb TRACE SCALE
use ebb_sim::*;
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let text = std::fs::read_to_string(&a[1]).unwrap();
    let load = trace::parse(&text, a[2].parse().unwrap()).unwrap();
    let model = model::Model {
        capacity: 10.0,
        start_delay_s: 10,
    };
    let mut spec = ebb_core::autoscale::AutoscaleSpec::new(
        1,
        1000,
        ebb_core::autoscale::ScaleTargets {
            concurrency: Some(0.7),
            ..Default::default()
        },
    );
    spec.max = 1000;
    let sc = Scenario::new(model, load.clone(), spec).unwrap();
    let n = load.len();
    for w in [Which::Ebb, Which::Hpa, Which::Kpa] {
        let t = std::time::Instant::now();
        let (r, _) = sc.run(w, 0.7, 0..n);
        eprintln!(
            "{:?} {:.2} s for {:.1} days {:?}",
            w,
            t.elapsed().as_secs_f64(),
            n as f64 / 86400.0,
            r.outcome.instance_seconds
        );
    }
}
