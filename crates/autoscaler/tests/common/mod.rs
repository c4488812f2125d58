//! A manual-clock driver for the pure core: one sample and one decision per simulated second.
#![allow(dead_code)] // each test file uses part of it

use ebb_autoscaler::{decide, Decision, Metrics, Now, Sample, State};
use ebb_core::autoscale::{AutoscaleSpec, ScaleTargets};
use std::time::Duration;

/// 2024-01-01T00:00:00Z, a Monday: the simulated clock starts here so schedules have a weekday.
pub const MONDAY_2024: Duration = Duration::from_secs(1_704_067_200);

/// A service under the autoscaler, with instances ready the moment they are asked for unless
/// `current` is set by hand.
pub struct Sim {
    pub config: AutoscaleSpec,
    pub state: State,
    pub metrics: Metrics,
    pub current: u32,
    /// Seconds since [`MONDAY_2024`].
    pub t: u64,
    /// Follow each decision with `current = desired`.
    pub instant_ready: bool,
    /// Otherwise, when not 0: instances serve this many seconds after they are asked for
    /// (`current` follows the count decided that long ago; fewer at once).
    pub start_s: usize,
    /// The counts decided, one a second.
    pub asked: Vec<u32>,
}

impl Sim {
    pub fn new(config: AutoscaleSpec, current: u32) -> Self {
        let metrics = Metrics::for_config(&config);
        Sim {
            config,
            state: State::default(),
            metrics,
            current,
            t: 0,
            instant_ready: true,
            start_s: 0,
            asked: Vec::new(),
        }
    }

    /// A service whose instances serve `start_s` seconds after they are asked for.
    pub fn with_start(config: AutoscaleSpec, current: u32, start_s: usize) -> Self {
        Sim {
            instant_ready: false,
            start_s,
            ..Sim::new(config, current)
        }
    }

    pub fn now(&self) -> Now {
        Now::unix(MONDAY_2024 + Duration::from_secs(self.t))
    }

    /// Advances one second, records `fill(Sample::new(now))` and decides.
    pub fn tick_with(&mut self, fill: impl FnOnce(Sample) -> Sample) -> Decision {
        self.t += 1;
        let now = self.now();
        self.metrics.push(fill(Sample::new(now.mono)));
        let d = decide(
            &self.config,
            &mut self.state,
            &self.metrics,
            self.current,
            now,
        );
        if self.instant_ready {
            self.current = d.desired;
        } else if self.start_s > 0 {
            self.asked.push(d.desired);
            let then = self.asked.len().saturating_sub(self.start_s + 1);
            self.current = d.desired.min(self.asked.get(then).copied().unwrap_or(0));
        }
        d
    }

    /// One second at `rps` requests per second (with a request, so never idle when > 0).
    pub fn tick_rps(&mut self, rps: f64) -> Decision {
        self.tick_with(|s| rps_sample(s, rps))
    }

    /// `seconds` seconds at `rps`; the decisions.
    pub fn run_rps(&mut self, seconds: u64, rps: f64) -> Vec<Decision> {
        (0..seconds).map(|_| self.tick_rps(rps)).collect()
    }
}

pub fn rps_sample(s: Sample, rps: f64) -> Sample {
    Sample {
        rps: Some(rps),
        requests: rps.ceil() as u64,
        ..s
    }
}

pub fn rps_target(min: u32, max: u32, target: f64) -> AutoscaleSpec {
    AutoscaleSpec::new(
        min,
        max,
        ScaleTargets {
            rps: Some(target),
            ..ScaleTargets::default()
        },
    )
}

pub fn desired(ds: &[Decision]) -> Vec<u32> {
    ds.iter().map(|d| d.desired).collect()
}
