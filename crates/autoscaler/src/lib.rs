//! Scaling policies of ebb as pure functions of (metric windows, state, now).
//!
//! The server keeps, per autoscaled service, a [`Config`] (from the deploy file), a [`Metrics`]
//! window it feeds one [`Sample`] per second, and a [`State`] it carries between ticks. Once a
//! second it calls [`decide`] and writes [`Decision::desired`] to the store, with
//! [`Decision::reason`] as the event text. When a request arrives at a service with zero
//! instances, the router's queue calls [`demand`] at once instead of waiting for the tick; and a
//! few times a second the server hands the load since the last sample to [`burst`], which enters
//! panic mode at once on a step of load instead of waiting for the panic window to average it in.
//!
//! Nothing here reads a clock, sleeps, allocates threads or does I/O: time comes in as [`Now`], so
//! tests and simulators drive the production code deterministically (DESIGN.md, principles 2–3).
//!
//! ```
//! use ebb_autoscaler::{decide, Config, Metrics, Now, Sample, State, Targets};
//! use std::time::Duration;
//!
//! let config = Config::new(1, 20, Targets { concurrency: Some(10.0), ..Targets::default() });
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
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod burst;
mod config;
mod decide;
mod explain;
mod metrics;
mod policies;
mod schedule;
mod state;
mod target;
mod validate;

pub use burst::{burst, Reading, BURST_FACTOR, BURST_READINGS, MIN_BURST_SPAN};
pub use config::{
    Band, Bounds, Change, Config, Metric, Policy, ScaleUpLimit, Targets, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_PANIC_THRESHOLD, DEFAULT_PANIC_WINDOW, DEFAULT_SCALE_DOWN_DELAY,
    DEFAULT_SCALE_UP_INSTANCES, DEFAULT_SCALE_UP_PERCENT, DEFAULT_SCALE_UP_PERIOD,
    DEFAULT_STABLE_WINDOW, DEFAULT_TOLERANCE, TICK,
};
pub use decide::{decide, demand, Decision, Now};
pub use metrics::{Metrics, Sample, WindowStats};
pub use schedule::{hm, Days, Window};
pub use state::State;
pub use validate::ConfigError;
