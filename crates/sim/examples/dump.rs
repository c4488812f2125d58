//! Scratch: per-second dump of ebb and KPA. usage: dump TRACE SCALE DELAY MIN UTIL_EBB UTIL_KPA
use ebb_sim::*;
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let text = std::fs::read_to_string(&a[1]).unwrap();
    let load = trace::parse(&text, a[2].parse().unwrap()).unwrap();
    let model = model::Model {
        capacity: 10.0,
        start_delay_s: a[3].parse().unwrap(),
    };
    let mut spec = ebb_core::autoscale::AutoscaleSpec::new(
        a[4].parse().unwrap(),
        1000,
        ebb_core::autoscale::ScaleTargets {
            concurrency: Some(0.7),
            ..Default::default()
        },
    );
    spec.max = 1000;
    let sc = Scenario::new(model, load.clone(), spec).unwrap();
    let n = load.len();
    let (re, se) = sc.run(Which::Ebb, a[5].parse().unwrap(), 0..n);
    let (rk, sk) = sc.run(Which::Kpa, a[6].parse().unwrap(), 0..n);
    eprintln!("{:?}\n{:?}", re.outcome, rk.outcome);
    for i in 0..n {
        println!(
            "{} {} {} {} {} {}",
            i, load[i], se[i].ready, se[i].desired, sk[i].ready, sk[i].desired
        );
    }
}
