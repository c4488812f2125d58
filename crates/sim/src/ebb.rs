//! ebb's own autoscaler, the production code, fed what the server's loop gives it: one
//! [`Sample`] per second, [`burst`] readings of the last half second four times a second, and
//! [`demand`] when a request meets zero ready instances.

use crate::model::{Policy, View, SERVICE_TIME_S};
use ebb_autoscaler::{burst, decide, demand, Metrics, Now, Reading, Rule, Sample, State};
use ebb_core::autoscale::AutoscaleSpec;
use std::time::Duration;

/// Burst readings per second, as the server takes them.
pub const READINGS_PER_SECOND: u32 = 4;
/// What each reading covers, as the server's (`BURST_SPAN`).
const READING_SPAN: Duration = Duration::from_millis(500);

/// ebb's autoscaler with its own state and metric window.
#[derive(Debug, Clone)]
pub struct Ebb {
    config: AutoscaleSpec,
    state: State,
    metrics: Metrics,
    panicking: bool,
    forecasting: bool,
}

impl Ebb {
    /// Decides as a server would for a service autoscaled by `config`.
    pub fn new(config: AutoscaleSpec) -> Ebb {
        Ebb {
            metrics: Metrics::for_config(&config),
            config,
            state: State::default(),
            panicking: false,
            forecasting: false,
        }
    }
}

impl Ebb {
    /// What a server restart before second `second` does to the autoscaler: what the store
    /// keeps of the state (the learned gaps, dips and start times, and the forecast's history)
    /// stays and the rest (panic, holds, recommendations) starts afresh; the metrics window is
    /// taken up from its past without its newest `lost` samples (the server's downtime), as
    /// `crates/server/src/controllers/recent_load.rs` does, or with `None` started afresh.
    pub fn restart(&mut self, second: u64, lost: Option<usize>) {
        let old = std::mem::take(&mut self.state);
        *self.state.start_times_mut() = old.start_times().clone();
        *self.state.keep_alive_mut() = old.keep_alive().clone();
        *self.state.dips_mut() = old.dips().clone();
        *self.state.forecaster_mut() = old.forecaster().clone();
        let mut past = self.metrics.past();
        self.metrics = Metrics::for_config(&self.config);
        if let Some(lost) = lost {
            past.samples
                .truncate(past.samples.len().saturating_sub(lost));
            self.metrics.resume(&past, end_of(second));
        }
    }
}

/// The trace's clock: second `s` ends at `s + 1` seconds (the epoch is the trace's start).
fn end_of(second: u64) -> Duration {
    Duration::from_secs(second + 1)
}

impl Policy for Ebb {
    fn decide(&mut self, load: f64, view: View) -> u32 {
        let end = end_of(view.second);
        let start = end - Duration::from_secs(1);
        let concurrency = load * SERVICE_TIME_S;
        if view.total == 0 && load > 0.0 {
            // The first request of the second meets a service at zero: the router's queue asks
            // (the server calls `demand` only then).
            let _ = demand(&self.config, &mut self.state, view.ready, Now::unix(start));
        }
        let reading = Reading {
            span: READING_SPAN,
            concurrency: Some(concurrency),
            rps: Some(load),
        };
        for q in 1..READINGS_PER_SECOND {
            let at = start + Duration::from_millis(u64::from(q) * 1000 / 4);
            let _ = burst(
                &self.config,
                &mut self.state,
                &reading,
                view.ready,
                Now::unix(at),
            );
        }
        self.metrics.push(Sample {
            concurrency: Some(concurrency),
            rps: Some(load),
            requests: load.ceil() as u64,
            ..Sample::new(end)
        });
        // The fourth reading of the second comes with the tick.
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
        self.panicking = d.panic;
        self.forecasting = d.rule == Rule::Forecast;
        d.desired
    }

    fn panicking(&self) -> bool {
        self.panicking
    }

    fn forecasting(&self) -> bool {
        self.forecasting
    }

    fn forecast_error(&self) -> Option<f64> {
        self.state.forecaster().error().wape()
    }
}
