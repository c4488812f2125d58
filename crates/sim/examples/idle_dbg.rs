//! Scratch (not committed).
use ebb_sim::*;
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let text = std::fs::read_to_string(&a[1]).unwrap();
    let load = trace::parse(&text, 1.0).unwrap();
    let d: u64 = a[2].parse().unwrap();
    let ue: f64 = a[3].parse().unwrap();
    let uk: f64 = a[4].parse().unwrap();
    let model = model::Model {
        capacity: 10.0,
        start_delay_s: d,
    };
    let mut spec = ebb_core::autoscale::AutoscaleSpec::new(
        0,
        1000,
        ebb_core::autoscale::ScaleTargets {
            concurrency: Some(0.7),
            ..Default::default()
        },
    );
    spec.max = 1000;
    let sc = Scenario::new(model, load.clone(), spec).unwrap();
    let n = load.len();
    let (re, se) = sc.run(Which::Ebb, ue, 0..n);
    let (rk, sk) = sc.run(Which::Kpa, uk, 0..n);
    eprintln!(
        "ebb {} missed {} | kpa {} missed {}",
        re.outcome.instance_seconds,
        re.outcome.missed_seconds,
        rk.outcome.instance_seconds,
        rk.outcome.missed_seconds
    );
    // sessions
    let mut i = 0;
    let (mut tb, mut td, mut ta) = ([0i64; 2], [0i64; 2], [0i64; 2]);
    while i < n {
        if load[i] > 0.0 {
            let s = i;
            while i < n && load[i] > 0.0 {
                i += 1;
            }
            let e = i;
            let next = (e..n).find(|&j| load[j] > 0.0).unwrap_or(n);
            let prev_end = s.saturating_sub(1);
            let need = (load[s] / 10.0).ceil() as i64;
            for (k, secs) in [&se, &sk].iter().enumerate() {
                let cnt =
                    |r: std::ops::Range<usize>| r.map(|j| secs[j].desired as i64).sum::<i64>();
                let before = cnt(prev_end.saturating_sub(0).min(s)..s);
                let during = cnt(s..e) - need * (e - s) as i64;
                let after = cnt(e..next);
                tb[k] += before;
                td[k] += during;
                ta[k] += after;
                if k == 1 {
                    println!("session {s}..{e} need {need} load {:.1} next gap {} | ebb during {} after {} first {:?} | kpa during {} after {} first {:?}", load[s], next - e, cnt(s..e) - need*(e-s) as i64 - 0, 0, 0, during, after, &sk[s..s+15].iter().map(|x| x.desired).collect::<Vec<_>>());
                    let ed = se[s..e].iter().map(|x| x.desired as i64).sum::<i64>()
                        - need * (e - s) as i64;
                    let ea = se[e..next].iter().map(|x| x.desired as i64).sum::<i64>();
                    println!(
                        "   ebb during {ed} after {ea} first {:?} end {:?}",
                        se[s..s + 15].iter().map(|x| x.desired).collect::<Vec<_>>(),
                        se[e - 2..e + 12]
                            .iter()
                            .map(|x| x.desired)
                            .collect::<Vec<_>>()
                    );
                    println!(
                        "   kpa end {:?}",
                        sk[e - 2..e + 12]
                            .iter()
                            .map(|x| x.desired)
                            .collect::<Vec<_>>()
                    );
                }
            }
        } else {
            i += 1;
        }
    }
    eprintln!("ebb before {} during {} after {}", tb[0], td[0], ta[0]);
    eprintln!("kpa before {} during {} after {}", tb[1], td[1], ta[1]);
}
