//! Scratch (not committed): print ebb's reasons when its count changes under a steady load.
use ebb_autoscaler::{burst, decide, demand, Metrics, Now, Reading, Sample, State};
use ebb_sim::model::{self, Policy, View};
use std::time::Duration;
struct P {
    config: ebb_core::autoscale::AutoscaleSpec,
    state: State,
    metrics: Metrics,
    prev: f64,
    last: u32,
    printed: u32,
}
impl Policy for P {
    fn decide(&mut self, load: f64, view: View) -> u32 {
        let end = Duration::from_secs(view.second + 1);
        let start = end - Duration::from_secs(1);
        let concurrency = load * 0.1;
        if view.total == 0 && load > 0.0 {
            let _ = demand(&self.config, &mut self.state, view.ready, Now::unix(start));
        }
        let reading = Reading {
            span: Duration::from_millis(500),
            concurrency: Some(concurrency),
            rps: Some(load),
        };
        for q in 1..4u64 {
            let _ = burst(
                &self.config,
                &mut self.state,
                &reading,
                view.ready,
                Now::unix(start + Duration::from_millis(q * 250)),
            );
        }
        self.metrics.push(Sample {
            concurrency: Some(concurrency),
            rps: Some(load),
            requests: load.ceil() as u64,
            ..Sample::new(end)
        });
        let _ = burst(
            &self.config,
            &mut self.state,
            &reading,
            view.ready,
            Now::unix(end - Duration::from_millis(1)),
        );
        let d = decide(
            &self.config,
            &mut self.state,
            &self.metrics,
            view.ready,
            Now::unix(end),
        );
        if d.desired != self.last && self.printed < 200 && (load > 0.0 || self.prev > 0.0) {
            println!(
                "{} load {:.1} prev {:.1} ready {} total {} -> {} [{:?}] {}",
                view.second, load, self.prev, view.ready, view.total, d.desired, d.rule, d.reason
            );
            self.printed += 1;
        }
        self.prev = load;
        self.last = d.desired;
        d.desired
    }
}
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let text = std::fs::read_to_string(&a[1]).unwrap();
    let load = ebb_sim::trace::parse(&text, 1.0).unwrap();
    let d: u64 = a[2].parse().unwrap();
    let u: f64 = a[3].parse().unwrap();
    let model = model::Model {
        capacity: 10.0,
        start_delay_s: d,
    };
    let mut spec = ebb_core::autoscale::AutoscaleSpec::new(
        0,
        1000,
        ebb_core::autoscale::ScaleTargets {
            concurrency: Some(u),
            ..Default::default()
        },
    );
    spec.max = 1000;
    let mut p = P {
        metrics: Metrics::for_config(&spec),
        config: spec,
        state: State::default(),
        prev: 0.0,
        last: 0,
        printed: 0,
    };
    let (o, _) = model::replay(&model, &load, &mut p, 0, 0..0);
    eprintln!("{} {}", o.instance_seconds, o.missed_seconds);
}
