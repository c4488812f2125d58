//! What a server restart costs ebb's autoscaler: a trace replayed under the issue 19 model with
//! the autoscaler restarted every N seconds, as a server restart or a change of leader does. A
//! restart keeps what the store keeps of the state (the learned gaps, dips and start times, and
//! the forecast's history) and starts the rest afresh (panic, holds, the recommendations); the
//! metrics window is either started afresh (`fresh`, as before the recent load was kept) or
//! taken up from its past with the newest three seconds lost (`past`, as the server now does:
//! `crates/server/src/controllers/recent_load.rs`). `none` replays without restarts.
//!
//! ```text
//! cargo run --release -p ebb-sim --example restarts -- TRACE SCALE START_DELAY_S CONCURRENCY EVERY_S none|fresh|past
//! ```

use ebb_autoscaler::{burst, decide, demand, Metrics, Now, Reading, Sample, State};
use ebb_core::autoscale::{AutoscaleSpec, ScaleTargets};
use ebb_sim::model::{replay, Model, Policy, View, SERVICE_TIME_S};
use std::time::Duration;

/// Seconds of samples a restart loses in `past` mode: the server's own downtime.
const LOST_SECONDS: usize = 3;

/// How the metrics window comes through a restart.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    None,
    Fresh,
    Past,
}

/// ebb's autoscaler fed as `ebb_sim::ebb::Ebb` feeds it, restarted every `every` seconds.
struct Restarted {
    config: AutoscaleSpec,
    state: State,
    metrics: Metrics,
    every: u64,
    mode: Mode,
}

impl Restarted {
    /// A restart at the start of the second ending at `end`.
    fn restart(&mut self, end: Duration) {
        let old = std::mem::take(&mut self.state);
        *self.state.start_times_mut() = old.start_times().clone();
        *self.state.keep_alive_mut() = old.keep_alive().clone();
        *self.state.dips_mut() = old.dips().clone();
        *self.state.forecaster_mut() = old.forecaster().clone();
        let mut past = self.metrics.past();
        let kept = past.samples.len().saturating_sub(LOST_SECONDS);
        past.samples.truncate(kept);
        self.metrics = Metrics::for_config(&self.config);
        if self.mode == Mode::Past {
            self.metrics.resume(&past, end);
        }
    }
}

impl Policy for Restarted {
    fn decide(&mut self, load: f64, view: View) -> u32 {
        let end = Duration::from_secs(view.second + 1);
        let start = end - Duration::from_secs(1);
        if self.mode != Mode::None && view.second > 0 && view.second.is_multiple_of(self.every) {
            self.restart(end);
        }
        let concurrency = load * SERVICE_TIME_S;
        if view.total == 0 && load > 0.0 {
            let _ = demand(&self.config, &mut self.state, view.ready, Now::unix(start));
        }
        let reading = Reading {
            span: Duration::from_millis(500),
            concurrency: Some(concurrency),
            rps: Some(load),
        };
        let mut read = |at: Duration| {
            let _ = burst(
                &self.config,
                &mut self.state,
                &reading,
                view.ready,
                Now::unix(at),
            );
        };
        for q in 1..4 {
            read(start + Duration::from_millis(q * 250));
        }
        self.metrics.push(Sample {
            concurrency: Some(concurrency),
            rps: Some(load),
            requests: load.ceil() as u64,
            ..Sample::new(end)
        });
        read(end - Duration::from_millis(1));
        let now = Now::unix(end);
        decide(
            &self.config,
            &mut self.state,
            &self.metrics,
            view.ready,
            now,
        )
        .desired
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [trace, scale, delay, concurrency, every, mode] = args.as_slice() else {
        return Err(
            "usage: restarts TRACE SCALE START_DELAY_S CONCURRENCY EVERY_S none|fresh|past".into(),
        );
    };
    let load = ebb_sim::trace::parse(&std::fs::read_to_string(trace)?, scale.parse()?)?;
    let model = Model {
        capacity: ebb_sim::model::DEFAULT_CAPACITY,
        start_delay_s: delay.parse()?,
    };
    let targets = ScaleTargets {
        concurrency: Some(concurrency.parse()?),
        ..Default::default()
    };
    let config = AutoscaleSpec::new(1, 1000, targets);
    let mode = match mode.as_str() {
        "none" => Mode::None,
        "fresh" => Mode::Fresh,
        "past" => Mode::Past,
        other => return Err(format!("mode {other:?}: none, fresh or past").into()),
    };
    let mut policy = Restarted {
        metrics: Metrics::for_config(&config),
        config,
        state: State::default(),
        every: every.parse::<u64>()?.max(1),
        mode,
    };
    let initial = load.first().map_or(1, |l| model.needed(*l).max(1));
    let (out, _) = replay(&model, &load, &mut policy, initial, 0..0);
    println!(
        "instance-seconds {} missed {} ({:.3} %)",
        out.instance_seconds,
        out.missed_seconds,
        out.missed_percent()
    );
    Ok(())
}
