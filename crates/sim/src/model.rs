//! The cost/SLO model every policy is replayed under, so their figures compare.
//!
//! Second `s` has arrival rate λ(s). One instance serves `capacity` requests a second within the
//! latency SLO (a 100 ms service time, so its concurrency is λ·0.1 by Little's law). A second is
//! **missed** when λ(s) > capacity × ready(s). **Cost** is the instance-seconds of every instance
//! that exists, starting or ready. A decision at the end of second `s` starts instances that
//! serve from second `s + d + 1` (`d` is the start delay; they cost while starting); a
//! scale-down removes instances at once, those still starting first.

use std::collections::VecDeque;

/// The autoscaler's count of instances, so the model and the policy round alike.
pub use ebb_autoscaler::ceil_count;

/// Seconds a request takes to serve: the model's concurrency is λ × this (Little's law).
pub const SERVICE_TIME_S: f64 = 0.1;
/// Requests a second one instance serves within the SLO, unless told otherwise.
pub const DEFAULT_CAPACITY: f64 = 10.0;

/// The model's two figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Model {
    /// Requests a second one instance serves within the SLO.
    pub capacity: f64,
    /// Seconds from a decision to the instances it starts serving, beyond the second itself.
    pub start_delay_s: u64,
}

impl Model {
    /// The instances a second's load needs: ⌈λ / capacity⌉. A second is missed when fewer
    /// are ready.
    pub fn needed(&self, load: f64) -> u32 {
        ceil_count(load / self.capacity)
    }
}

/// What a replay of one policy cost and missed.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Outcome {
    /// Seconds replayed.
    pub seconds: u64,
    /// Instance-seconds of every instance that existed, starting or ready.
    pub instance_seconds: u64,
    /// Seconds whose load was more than the ready instances serve.
    pub missed_seconds: u64,
    /// Seconds at whose end the policy changed the number of instances.
    pub changes: u64,
    /// Seconds decided in panic mode (ebb only).
    pub panic_seconds: u64,
    /// The predictive floor's forecast error over the replay, as a weighted absolute
    /// percentage error of the per-minute counts (ebb only, and only once it forecast).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forecast_error: Option<f64>,
    /// Seconds whose count the forecast raised (ebb only).
    pub forecast_seconds: u64,
}

impl Outcome {
    /// Missed seconds as a percentage of the seconds replayed.
    pub fn missed_percent(&self) -> f64 {
        100.0 * self.missed_seconds as f64 / self.seconds.max(1) as f64
    }

    /// Changes of the instance count per hour replayed.
    pub fn changes_per_hour(&self) -> f64 {
        self.changes as f64 * 3600.0 / self.seconds.max(1) as f64
    }
}

/// What a policy sees of the fleet when it decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    /// The second just ended (from 0).
    pub second: u64,
    /// Instances serving in it.
    pub ready: u32,
    /// Instances that exist: ready and starting.
    pub total: u32,
}

/// A scaling policy as the replay drives it: once per second, after the second's load is known.
pub trait Policy {
    /// The instances wanted at the end of `view.second`, whose load was `load` req/s; the
    /// replay starts or removes instances to match.
    fn decide(&mut self, load: f64, view: View) -> u32;

    /// Whether the last decision was made in panic mode (for the report).
    fn panicking(&self) -> bool {
        false
    }

    /// Whether the last decision's count was raised by a forecast (for the report).
    fn forecasting(&self) -> bool {
        false
    }

    /// The forecast's error so far, as a weighted absolute percentage error (for the report).
    fn forecast_error(&self) -> Option<f64> {
        None
    }
}

/// The instances of a replay: those serving, and those starting with the second they serve from.
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    ready: u32,
    /// (first second it serves, how many), oldest first.
    starting: VecDeque<(u64, u32)>,
    starting_total: u32,
}

impl Fleet {
    /// `ready` instances serving from the first second.
    pub fn new(ready: u32) -> Fleet {
        Fleet {
            ready,
            ..Fleet::default()
        }
    }

    /// Makes the instances that serve from second `s` ready.
    pub fn begin(&mut self, s: u64) {
        while let Some(&(from, n)) = self.starting.front() {
            if from > s {
                break;
            }
            self.starting.pop_front();
            self.starting_total -= n;
            self.ready += n;
        }
    }

    /// Instances serving.
    pub fn ready(&self) -> u32 {
        self.ready
    }

    /// Instances that exist, starting or ready.
    pub fn total(&self) -> u32 {
        self.ready + self.starting_total
    }

    /// Starts or removes instances at the end of second `s` so that `want` exist: new ones serve
    /// from `s + d + 1`; removal takes the newest starting ones first, then ready ones.
    pub fn resize(&mut self, want: u32, s: u64, start_delay_s: u64) {
        let total = self.total();
        if want > total {
            self.starting
                .push_back((s + start_delay_s + 1, want - total));
            self.starting_total += want - total;
            return;
        }
        let mut remove = total - want;
        while remove > 0 {
            let Some(last) = self.starting.back_mut() else {
                break;
            };
            let n = last.1.min(remove);
            last.1 -= n;
            self.starting_total -= n;
            remove -= n;
            if last.1 == 0 {
                self.starting.pop_back();
            }
        }
        self.ready -= remove.min(self.ready);
    }
}

/// One second of a replay, for charts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Second {
    /// The load (req/s).
    pub load: f64,
    /// Instances serving.
    pub ready: u32,
    /// Instances asked for at its end.
    pub desired: u32,
}

/// Replays `load` against `policy` under `model`, starting with `initial` instances ready;
/// `record` keeps the seconds in that range for a chart.
pub fn replay(
    model: &Model,
    load: &[f64],
    policy: &mut dyn Policy,
    initial: u32,
    record: std::ops::Range<usize>,
) -> (Outcome, Vec<Second>) {
    let mut fleet = Fleet::new(initial);
    let mut out = Outcome {
        seconds: load.len() as u64,
        ..Outcome::default()
    };
    let mut seconds = Vec::with_capacity(record.len().min(load.len()));
    for (i, &lambda) in load.iter().enumerate() {
        let s = i as u64;
        fleet.begin(s);
        let ready = fleet.ready();
        out.instance_seconds += u64::from(fleet.total());
        if model.needed(lambda) > ready {
            out.missed_seconds += 1;
        }
        let view = View {
            second: s,
            ready,
            total: fleet.total(),
        };
        let want = policy.decide(lambda, view);
        out.panic_seconds += u64::from(policy.panicking());
        out.forecast_seconds += u64::from(policy.forecasting());
        if want != view.total {
            out.changes += 1;
            fleet.resize(want, s, model.start_delay_s);
        }
        if record.contains(&i) {
            seconds.push(Second {
                load: lambda,
                ready,
                desired: want,
            });
        }
    }
    out.forecast_error = policy.forecast_error();
    (out, seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asks for a fixed list of counts, one per second.
    struct Script(Vec<u32>);

    impl Policy for Script {
        fn decide(&mut self, _load: f64, view: View) -> u32 {
            self.0[view.second as usize]
        }
    }

    #[test]
    fn instances_cost_while_starting_and_serve_after_the_delay() {
        let model = Model {
            capacity: 10.0,
            start_delay_s: 2,
        };
        // Asked for 2 at the end of second 0: they exist from second 1, serve from second 3.
        let load = [5.0, 15.0, 15.0, 15.0, 0.0];
        let mut policy = Script(vec![2, 2, 2, 2, 0]);
        let (out, seconds) = replay(&model, &load, &mut policy, 1, 0..5);
        let ready: Vec<u32> = seconds.iter().map(|s| s.ready).collect();
        assert_eq!(ready, [1, 1, 1, 2, 2]);
        // Seconds 1 and 2: 15 req/s on one instance.
        assert_eq!(out.missed_seconds, 2);
        assert_eq!(out.instance_seconds, 1 + 2 + 2 + 2 + 2);
        assert_eq!(out.changes, 2);
    }

    #[test]
    fn a_scale_down_removes_starting_instances_first() {
        let mut fleet = Fleet::new(2);
        fleet.resize(5, 0, 10);
        assert_eq!((fleet.ready(), fleet.total()), (2, 5));
        fleet.resize(3, 1, 10);
        assert_eq!((fleet.ready(), fleet.total()), (2, 3));
        fleet.resize(1, 2, 10);
        assert_eq!((fleet.ready(), fleet.total()), (1, 1));
        fleet.begin(100);
        assert_eq!(fleet.ready(), 1);
    }
}
