//! A service's autoscaling settings: the resolved form of a deploy file's
//! `[services.NAME.autoscale]` table.
//!
//! This is the one type of these settings: the deploy-file parser builds it, the API stores it,
//! and the autoscaler (`ebb_autoscaler::decide`) reads it as it is. The settings are not part of
//! [`ServiceSpec::version`](crate::ServiceSpec::version): changing the bounds or the targets
//! never rolls instances.
//!
//! Problems are reported with the field as the deploy file spells it (`max`, `cpu`,
//! `steps[1].from`, `schedule[0].hours`), also for specs that arrive as JSON.

mod policy;
mod schedule;
mod validate;

pub use policy::{ScaleMetric, ScalePolicy, ScaleTargets, StepBand, StepChange};
pub use schedule::{
    format_hours, format_utc_offset, hm, parse_hours, parse_utc_offset, ScheduleWindow, Weekdays,
};

use crate::service::{millis, MAX_INSTANCES};
use serde::{Deserialize, Serialize};
use std::time::Duration;

// === defaults and limits ===

/// Window over which load is averaged for ordinary decisions: Knative KPA's `stable-window`
/// (ARCHITECTURE.md, defaults).
pub const DEFAULT_STABLE_WINDOW: Duration = Duration::from_secs(60);
/// Short window that detects a surge: Knative KPA's `panic-window-percentage` of 10 % of the
/// stable window (the autoscaler's default too).
pub const DEFAULT_PANIC_WINDOW: Duration = Duration::from_secs(6);
/// A scale-down takes the highest recommendation of this last stretch. Kubernetes HPA uses
/// 300 s, which users find slow to give capacity back; 60 s matches the stable window
/// (the autoscaler's default too). By default (`scale_down_delay = "auto"`) only until the
/// service's own delay is learned.
pub const DEFAULT_SCALE_DOWN_DELAY: Duration = Duration::from_secs(60);
/// `scale_down_delay = "auto"` unless a deploy file sets a duration: on the replays of
/// `bench/sim.sh`, learned per octave of counts, it is never more than 1.6 % costlier than the
/// cheaper of the HPA and KPA models, where the fixed 60 s was 19 % costlier on bursty load with
/// 60 s starts; it pays up to 4.2 % on smooth load with 60 s starts. (Sparse single requests are
/// the exception either way: the model counts missed seconds, not requests, and prices a cold
/// start at nothing until 1 % of the seconds are missed.) BENCHMARKS.md, issue 19, ninth part.
pub const DEFAULT_SCALE_DOWN_AUTO: bool = true;
/// A `min = 0` service goes to zero after this long without a request: the scale-down period
/// of the KEDA HTTP add-on; the first request afterwards is held, not refused. By default
/// (`idle_timeout = "auto"`) only the ceiling until the service's own keep-alive is learned:
/// meanwhile an instance is kept as long as a cold start costs, if that is shorter
/// (`ebb_autoscaler::break_even`).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// `idle_timeout = "auto"` unless a deploy file sets a duration: on the replays of
/// `bench/sim.sh` it is as cheap as the fixed timeout or cheaper on every trace of a `min = 0`
/// service but one (single sparse requests with 60 s starts, where it bridges gaps the fixed
/// timeout makes cold), and it makes far fewer cold starts (BENCHMARKS.md, issue 19).
pub const DEFAULT_IDLE_AUTO: bool = true;
/// Longest `stable_window`, `panic_window` and `scale_down_delay`: one hour. The autoscaler
/// keeps one sample per second of its windows, and a window longer than an hour no longer
/// follows load at all; more is surely a typo.
pub const MAX_SCALE_WINDOW: Duration = Duration::from_secs(3600);
/// Longest `idle_timeout`: one day. A service idle for longer than that may as well keep
/// `min = 1`; more is surely a typo.
pub const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(86_400);
/// Real UTC offsets run from −12:00 to +14:00; a schedule window's `utc_offset` may be up to
/// this many minutes either way (as `ebb_autoscaler`'s windows).
pub const MAX_UTC_OFFSET_MINUTES: i32 = 14 * 60;
/// Minutes in a day: a window's `end` may be this (24:00, the end of the day).
pub const MINUTES_PER_DAY: u16 = 24 * 60;
/// Panic when the panic window asks for at least this multiple of the ready instances: Knative
/// KPA's `panic-threshold-percentage` of 200 %.
pub const DEFAULT_PANIC_THRESHOLD: f64 = 2.0;
/// No action while observed load is within ±10 % of the target: the default of Kubernetes HPA's
/// `--horizontal-pod-autoscaler-tolerance`. Keeps noise around the target from flapping the count.
pub const DEFAULT_TOLERANCE: f64 = 0.10;
/// Outside panic, a scale-up adds at most this many instances per [`DEFAULT_SCALE_UP_PERIOD`]...
/// (HPA behavior default: a `Pods` policy of 4 per 15 s)
pub const DEFAULT_SCALE_UP_INSTANCES: u32 = 4;
/// ...or this percentage of the count, whichever allows more (HPA behavior default: a `Percent`
/// policy of 100 per 15 s, `selectPolicy: Max`).
pub const DEFAULT_SCALE_UP_PERCENT: u32 = 100;
/// The period of the scale-up rate limit (HPA behavior default: 15 s).
pub const DEFAULT_SCALE_UP_PERIOD: Duration = Duration::from_secs(15);
/// Names of the scaling policies, as deploy files write them.
pub const SCALE_POLICIES: [&str; 4] = ["target", "step", "linear", "schedule"];
/// Names of the forecast modes, as deploy files write them.
pub const FORECAST_MODES: [&str; 3] = ["off", "shadow", "on"];
/// Names of the metrics the autoscaler can follow, as deploy files write them.
pub const SCALE_METRICS: [&str; 5] = ["concurrency", "rps", "cpu", "memory", "latency_p95"];

fn default_stable_window() -> Duration {
    DEFAULT_STABLE_WINDOW
}
fn default_panic_window() -> Duration {
    DEFAULT_PANIC_WINDOW
}
fn default_scale_down_delay() -> Duration {
    DEFAULT_SCALE_DOWN_DELAY
}
fn default_idle_timeout() -> Duration {
    DEFAULT_IDLE_TIMEOUT
}
fn default_panic_threshold() -> f64 {
    DEFAULT_PANIC_THRESHOLD
}
fn default_tolerance() -> f64 {
    DEFAULT_TOLERANCE
}

// === the spec ===

/// How a service's instance count follows its load, between `min` and `max`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoscaleSpec {
    /// Fewest instances; 0 allows scale to zero after `idle_timeout`.
    #[serde(default)]
    pub min: u32,
    /// Most instances; at least 1 and at most [`MAX_INSTANCES`].
    #[serde(default)]
    pub max: u32,
    /// Per-instance targets of policies `target` and `schedule`.
    #[serde(default)]
    pub targets: ScaleTargets,
    /// How the count follows the load; see [`ScalePolicy`].
    #[serde(default)]
    pub policy: ScalePolicy,
    /// See [`DEFAULT_STABLE_WINDOW`].
    #[serde(with = "millis", default = "default_stable_window")]
    pub stable_window: Duration,
    /// See [`DEFAULT_PANIC_WINDOW`]; shorter than `stable_window`.
    #[serde(with = "millis", default = "default_panic_window")]
    pub panic_window: Duration,
    /// See [`DEFAULT_SCALE_DOWN_DELAY`].
    #[serde(with = "millis", default = "default_scale_down_delay")]
    pub scale_down_delay: Duration,
    /// See [`DEFAULT_IDLE_TIMEOUT`]; applies while the lower bound is 0. With `idle_auto`, the
    /// ceiling of the keep-alive until one is learned.
    #[serde(with = "millis", default = "default_idle_timeout")]
    pub idle_timeout: Duration,
    /// `idle_timeout = "auto"`: the autoscaler learns from the service's idle gaps how long to
    /// keep an instance after the last request, and when to start one before the next is due
    /// (`ebb_autoscaler`'s keep-alive, after "Serverless in the Wild", ATC 2020). See
    /// [`DEFAULT_IDLE_AUTO`] for deploy files and [`AutoscaleSpec::new`]; JSON without the key
    /// (a spec stored before it existed, an API client that gives `idle_timeout`) keeps the
    /// fixed timeout it gives.
    #[serde(default)]
    pub idle_auto: bool,
    /// `scale_down_delay = "auto"`: the autoscaler learns from how long the service's load stays
    /// below a count before it asks for it again how long to keep capacity it stopped asking
    /// for (`scale_down_delay` until it has learned). See [`DEFAULT_SCALE_DOWN_AUTO`] for
    /// deploy files and [`AutoscaleSpec::new`]; JSON without the key (a spec stored before it
    /// existed, an API client that gives `scale_down_delay`) keeps the fixed delay it gives,
    /// as does a spec stored while the fixed delay was the default (it says `false`) until the
    /// service is deployed again.
    #[serde(default)]
    pub scale_down_auto: bool,
    /// See [`DEFAULT_PANIC_THRESHOLD`]. Not in deploy files nor in the API's JSON (kept at its
    /// default there); code that runs the policy (tests, simulators) may set it.
    #[serde(skip, default = "default_panic_threshold")]
    pub panic_threshold: f64,
    /// See [`DEFAULT_TOLERANCE`]. As `panic_threshold`: code only.
    #[serde(skip, default = "default_tolerance")]
    pub tolerance: f64,
    /// See [`ScaleUpLimit`]. As `panic_threshold`: code only.
    #[serde(skip)]
    pub scale_up: ScaleUpLimit,
    /// Whether the count is raised ahead of the load the service's own history predicts; see
    /// [`ForecastMode`].
    #[serde(default)]
    pub forecast: ForecastMode,
}

/// What the predictive floor does: the autoscaler learns the service's daily and weekly pattern
/// (per minute, from the counts its request load asked for: target tracking on concurrency or
/// rps) and forecasts the next minutes. Other targets and policies keep no history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForecastMode {
    /// No history is kept and nothing is forecast.
    Off,
    /// History is kept and the forecast made and scored; a decision says what the forecast
    /// would have done, and nothing else changes. For trying a forecast out on a live service.
    Shadow,
    /// The forecast raises the count ahead of a predicted rise, by the measured start time of
    /// the service's instances. It never lowers a count: the reactive rules decide every
    /// scale-down, and stay the backstop when the forecast is wrong. It acts only once the
    /// history holds three days of the minute forecast (AWS predictive scaling asks for one
    /// day, Google's for three), and is scaled down when today runs below it.
    #[default]
    On,
}

impl ForecastMode {
    /// Parses a deploy file's spelling.
    pub fn parse(name: &str) -> Result<ForecastMode, String> {
        match name {
            "off" => Ok(ForecastMode::Off),
            "shadow" => Ok(ForecastMode::Shadow),
            "on" => Ok(ForecastMode::On),
            _ => Err(format!(
                "unknown forecast mode {name:?}: use one of {}",
                FORECAST_MODES.join(", ")
            )),
        }
    }
}

/// The floats of a spec are finite: JSON cannot carry NaN, and [`AutoscaleSpec::problems`]
/// refuses it. So equality is reflexive, and [`crate::ServiceSpec`] stays `Eq`.
impl Eq for AutoscaleSpec {}

impl AutoscaleSpec {
    /// Target tracking between `min` and `max`, every other setting at its default.
    pub fn new(min: u32, max: u32, targets: ScaleTargets) -> AutoscaleSpec {
        AutoscaleSpec {
            min,
            max,
            targets,
            policy: ScalePolicy::Target,
            stable_window: DEFAULT_STABLE_WINDOW,
            panic_window: DEFAULT_PANIC_WINDOW,
            scale_down_delay: DEFAULT_SCALE_DOWN_DELAY,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            idle_auto: DEFAULT_IDLE_AUTO,
            scale_down_auto: DEFAULT_SCALE_DOWN_AUTO,
            panic_threshold: DEFAULT_PANIC_THRESHOLD,
            tolerance: DEFAULT_TOLERANCE,
            scale_up: ScaleUpLimit::default(),
            forecast: ForecastMode::default(),
        }
    }

    /// The bounds at wall-clock time `unix_ms`: the first schedule window containing it, if any.
    pub fn bounds_at(&self, unix_ms: i64) -> Bounds {
        if let ScalePolicy::Schedule { windows } = &self.policy {
            let open = windows
                .iter()
                .enumerate()
                .find(|(_, w)| w.contains(unix_ms));
            if let Some((i, w)) = open {
                return Bounds {
                    min: w.min,
                    max: w.max,
                    window: Some(i),
                };
            }
        }
        Bounds {
            min: self.min,
            max: self.max,
            window: None,
        }
    }
}

/// The bounds in force at some instant, and which schedule window set them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Fewest instances.
    pub min: u32,
    /// Most instances.
    pub max: u32,
    /// Index of the schedule window that set them; `None`: the spec's own.
    pub window: Option<usize>,
}

/// Bound on how fast the count grows outside panic: per `period`, the larger of `instances`
/// added and `percent` % of the count at the period's start (HPA `behavior.scaleUp` policies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleUpLimit {
    /// Instances that may be added per period.
    pub instances: u32,
    /// Percentage of the count that may be added per period.
    pub percent: u32,
    /// The period.
    pub period: Duration,
}

impl Default for ScaleUpLimit {
    fn default() -> Self {
        ScaleUpLimit {
            instances: DEFAULT_SCALE_UP_INSTANCES,
            percent: DEFAULT_SCALE_UP_PERCENT,
            period: DEFAULT_SCALE_UP_PERIOD,
        }
    }
}

/// Serde helper: an `Option<Duration>` as integer milliseconds in JSON (`null` for none).
pub mod opt_millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Writes `Some(d)` as its milliseconds and `None` as `null`.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }

    /// Reads milliseconds, or `null` as `None`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}
