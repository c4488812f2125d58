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

use ebb_core::autoscale::{AutoscaleSpec, ScaleTargets};
use ebb_sim::ebb::Ebb;
use ebb_sim::model::{replay, Model, Policy, View};

/// Seconds of samples a restart loses in `past` mode: the server's own downtime.
const LOST_SECONDS: usize = 3;

/// How the metrics window comes through a restart.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    None,
    Fresh,
    Past,
}

/// ebb's autoscaler as `ebb sim` replays it, restarted every `every` seconds.
struct Restarted {
    ebb: Ebb,
    every: u64,
    mode: Mode,
}

impl Policy for Restarted {
    fn decide(&mut self, load: f64, view: View) -> u32 {
        let due = view.second > 0 && view.second.is_multiple_of(self.every);
        match self.mode {
            Mode::Fresh if due => self.ebb.restart(view.second, None),
            Mode::Past if due => self.ebb.restart(view.second, Some(LOST_SECONDS)),
            _ => {}
        }
        self.ebb.decide(load, view)
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
        ebb: Ebb::new(config),
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
