//! Scaling policies of ebb as pure functions of (metric windows, state, now).
//!
//! The server keeps, per autoscaled service, its `AutoscaleSpec` (core's type, from the deploy
//! file or the API), a [`Metrics`] window it feeds one [`Sample`] per second, and a [`State`] it carries between ticks. Once a
//! second it calls [`decide`] and writes [`Decision::desired`] to the store, with
//! [`Decision::reason`] as the event text. When a request arrives at a service with zero
//! instances, the router's queue calls [`demand`] at once instead of waiting for the tick; and a
//! few times a second the server hands the load since the last sample to [`burst`], which enters
//! panic mode at once on a step of load instead of waiting for the panic window to average it in.
//!
//! Nothing here reads a clock, sleeps, allocates threads or does I/O: time comes in as [`Now`], so
//! tests and simulators drive the production code deterministically (ARCHITECTURE.md, principles 2–3).
//!
//! ```
//! use ebb_autoscaler::{decide, Metrics, Now, Sample, State};
//! use ebb_core::autoscale::{AutoscaleSpec, ScaleTargets};
//! use std::time::Duration;
//!
//! let targets = ScaleTargets { concurrency: Some(10.0), ..ScaleTargets::default() };
//! let config = AutoscaleSpec::new(1, 20, targets);
//! let mut metrics = Metrics::for_config(&config);
//! let mut state = State::default();
//! let mut current = 1;
//! for s in 1..=10u64 {
//!     let at = Duration::from_secs(s);
//!     metrics.push(Sample { concurrency: Some(43.2), requests: 40, ..Sample::new(at) });
//!     let decision = decide(&config, &mut state, &metrics, current, Now::unix(at));
//!     current = decision.desired;
//! }
//! assert_eq!(current, 5);
//! ```

mod burst;
mod busy_window;
mod config;
mod decide;
mod dips;
mod explain;
mod forecast;
mod history;
mod idle;
mod keep_alive;
mod metrics;
mod noise;
mod policies;
mod proposal;
mod rule;
mod start_time;
mod state;
mod steady_hour;
mod target;
mod warming;

pub use burst::{burst, Reading, BURST_FACTOR, BURST_READINGS, MIN_BURST_SPAN};
pub use config::TICK;
pub use decide::{decide, demand, Decision, Now};
pub use dips::{Dip, Dips, DIP_BANDS};
pub use forecast::{ForecastError, Forecaster, Season};
pub use history::{minute_of, History, DAY_MINUTES, HISTORY_MINUTES, MINUTE_MS, WEEK_MINUTES};
pub use keep_alive::{
    break_even, learn as learn_keep_alive, KeepAlive, KeepAlivePlan, GAPS_KEPT, MIN_GAP, MIN_GAPS,
    WAIT_PRICE,
};
pub use metrics::{block_of, Metrics, Past, Sample, StaleSample, WindowStats};
pub use noise::{BUSY_QUANTILE, BUSY_WINDOW, EVIDENCE_Z, NOISE_HEADROOM};
pub use rule::Rule;
pub use start_time::{StartTimes, ASSUMED_START_TIME, MAX_START_TIME};
pub use state::State;
pub use steady_hour::{HourBlock, STEADY_HOUR};
pub use target::ceil_count;
