//! What a service asks of the autoscaler: bounds, targets, policy and timing, with defaults.

use crate::schedule::Window;
use std::time::Duration;

// === defaults ===

/// How often the server calls [`decide`](crate::decide) for each service. Knative's KPA ticks
/// every 2 s and HPA syncs every 15 s; a 1 s tick lets a load step be answered within a second
/// of its first full sample, and a tick costs microseconds (see `benches/decide.rs`).
pub const TICK: Duration = Duration::from_secs(1);

// The defaults a deploy file leaves out are the policy's too: one definition, with its source.
pub use ebb_core::autoscale::{
    DEFAULT_IDLE_TIMEOUT, DEFAULT_PANIC_WINDOW, DEFAULT_SCALE_DOWN_DELAY, DEFAULT_STABLE_WINDOW,
};

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

// === metrics and targets ===

/// A load signal the autoscaler can track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Requests in flight (queued at the router included), summed over the service.
    Concurrency,
    /// Requests arriving per second, summed over the service.
    Rps,
    /// CPU use as a fraction of the reservation, summed over instances (3 at 70 % → 2.1).
    Cpu,
    /// Memory use as a fraction of the reservation, summed over instances.
    Memory,
    /// 95th percentile latency of the service, in seconds. Not a sum: see [`Metric::is_total`].
    LatencyP95,
}

impl Metric {
    /// Every metric, in the order proposals are listed in reasons.
    pub const ALL: [Metric; 5] = [
        Metric::Concurrency,
        Metric::Rps,
        Metric::Cpu,
        Metric::Memory,
        Metric::LatencyP95,
    ];

    /// The name used in deploy files and in reasons.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Concurrency => "concurrency",
            Metric::Rps => "rps",
            Metric::Cpu => "cpu",
            Metric::Memory => "memory",
            Metric::LatencyP95 => "latency_p95",
        }
    }

    /// True when the metric is a total over the service that instances share, so that
    /// `total / target` is an instance count. Latency is not: its proposal scales the count
    /// by `observed / target` (as HPA does for every metric).
    pub fn is_total(self) -> bool {
        self != Metric::LatencyP95
    }
}

/// Target value per instance of each tracked metric; several targets → the largest proposal wins.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Targets {
    /// In-flight requests per instance.
    pub concurrency: Option<f64>,
    /// Requests per second per instance.
    pub rps: Option<f64>,
    /// CPU use per instance as a fraction of its reservation (0.7 = 70 %).
    pub cpu: Option<f64>,
    /// Memory use per instance as a fraction of its reservation.
    pub memory: Option<f64>,
    /// 95th percentile latency of the service.
    pub latency_p95: Option<Duration>,
}

impl Targets {
    /// The target of `metric`, latency in seconds.
    pub fn get(&self, metric: Metric) -> Option<f64> {
        match metric {
            Metric::Concurrency => self.concurrency,
            Metric::Rps => self.rps,
            Metric::Cpu => self.cpu,
            Metric::Memory => self.memory,
            Metric::LatencyP95 => self.latency_p95.map(|d| d.as_secs_f64()),
        }
    }

    /// The metrics that have a target, with it.
    pub fn iter(&self) -> impl Iterator<Item = (Metric, f64)> + '_ {
        Metric::ALL
            .into_iter()
            .filter_map(|m| self.get(m).map(|t| (m, t)))
    }
}

// === policies ===

/// How the desired count follows the metrics.
#[derive(Debug, Clone, PartialEq)]
pub enum Policy {
    /// Target tracking (HPA + Knative KPA): `ceil(total / target)` over the stable window, with
    /// tolerance, panic mode, scale-down stabilization and a bounded scale-up rate.
    Target,
    /// Bands of a per-instance metric value; the band the value falls in changes the count.
    Step {
        /// The metric, averaged over the stable window, per ready instance.
        metric: Metric,
        /// Half-open `[from, to)` bands in increasing order, not overlapping. No band: no change.
        bands: Vec<Band>,
    },
    /// Below `low` hold; from `low` to `high` add a share of `step` that grows linearly with
    /// the value (moving toward `max`); at and above `high` add `step`. It only scales out:
    /// below `low` it holds, so the count comes down through idle → zero or a schedule's max.
    Linear {
        /// The metric, averaged over the stable window, per ready instance.
        metric: Metric,
        /// Below this value nothing changes.
        low: f64,
        /// At and above this value `step` instances are added.
        high: f64,
        /// Instances added at `high`.
        step: u32,
    },
    /// Time windows that replace `min` and `max`; `inner` decides within them.
    Schedule {
        /// The first window that contains `now` sets the bounds; none: the config's own.
        windows: Vec<Window>,
        /// The policy used inside the bounds (not itself a schedule).
        inner: Box<Policy>,
    },
}

impl Policy {
    /// The deploy-file name of the policy.
    pub fn name(&self) -> &'static str {
        match self {
            Policy::Target => "target",
            Policy::Step { .. } => "step",
            Policy::Linear { .. } => "linear",
            Policy::Schedule { .. } => "schedule",
        }
    }
}

/// One band of a [`Policy::Step`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Band {
    /// Lowest value in the band.
    pub from: f64,
    /// First value above the band (`f64::INFINITY` for an open top band).
    pub to: f64,
    /// What to do with the count while the value is in the band.
    pub change: Change,
}

/// A change of the count relative to the ready instances.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    /// Add this many instances.
    Add(u32),
    /// Remove this many instances.
    Remove(u32),
    /// Add (positive) or remove (negative) this percentage of the ready instances, at least one.
    Percent(f64),
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

// === config ===

/// The autoscaling settings of one service (`[services.NAME.autoscale]` in a deploy file).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Fewest instances; 0 allows scale to zero after `idle_timeout`.
    pub min: u32,
    /// Most instances.
    pub max: u32,
    /// Per-instance targets used by [`Policy::Target`].
    pub targets: Targets,
    /// The policy.
    pub policy: Policy,
    /// See [`DEFAULT_STABLE_WINDOW`].
    pub stable_window: Duration,
    /// See [`DEFAULT_PANIC_WINDOW`].
    pub panic_window: Duration,
    /// See [`DEFAULT_PANIC_THRESHOLD`].
    pub panic_threshold: f64,
    /// See [`DEFAULT_TOLERANCE`].
    pub tolerance: f64,
    /// See [`DEFAULT_SCALE_DOWN_DELAY`].
    pub scale_down_delay: Duration,
    /// See [`DEFAULT_IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// See [`ScaleUpLimit`].
    pub scale_up: ScaleUpLimit,
}

/// The bounds in force at some instant, and which schedule window set them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Fewest instances.
    pub min: u32,
    /// Most instances.
    pub max: u32,
    /// Index of the schedule window that set them; `None`: the config's own.
    pub window: Option<usize>,
}

impl Config {
    /// Target tracking between `min` and `max` with every other setting at its default.
    pub fn new(min: u32, max: u32, targets: Targets) -> Self {
        Config {
            min,
            max,
            targets,
            policy: Policy::Target,
            stable_window: DEFAULT_STABLE_WINDOW,
            panic_window: DEFAULT_PANIC_WINDOW,
            panic_threshold: DEFAULT_PANIC_THRESHOLD,
            tolerance: DEFAULT_TOLERANCE,
            scale_down_delay: DEFAULT_SCALE_DOWN_DELAY,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            scale_up: ScaleUpLimit::default(),
        }
    }

    /// The bounds at wall-clock time `unix_ms`: the first schedule window containing it, if any.
    pub fn bounds_at(&self, unix_ms: i64) -> Bounds {
        if let Policy::Schedule { windows, .. } = &self.policy {
            if let Some((i, w)) = windows
                .iter()
                .enumerate()
                .find(|(_, w)| w.contains(unix_ms))
            {
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

/// A target as a user would write it (latency in ms).
pub(crate) fn fmt_target(metric: Metric, target: f64) -> String {
    if metric.is_total() {
        format!("{target}")
    } else {
        crate::explain::seconds(target)
    }
}
