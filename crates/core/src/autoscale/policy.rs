//! What the count follows: the metrics, their targets, and the policies (target tracking, step
//! bands, linear).

use super::{opt_millis, ScheduleWindow, MAX_INSTANCES, SCALE_METRICS};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// Target value per instance of each tracked metric; several targets: the largest proposal wins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ScaleTargets {
    /// Requests in flight per instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<f64>,
    /// Requests per second per instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rps: Option<f64>,
    /// CPU use per instance as a fraction of its reservation (0.7 = 70 %), in (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// Memory use per instance as a fraction of its reservation, in (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<f64>,
    /// 95th percentile latency of the service.
    #[serde(default, with = "opt_millis", skip_serializing_if = "Option::is_none")]
    pub latency_p95: Option<Duration>,
}

impl ScaleTargets {
    /// The target of `metric`, latency in seconds.
    pub fn get(&self, metric: ScaleMetric) -> Option<f64> {
        match metric {
            ScaleMetric::Concurrency => self.concurrency,
            ScaleMetric::Rps => self.rps,
            ScaleMetric::Cpu => self.cpu,
            ScaleMetric::Memory => self.memory,
            ScaleMetric::LatencyP95 => self.latency_p95.map(|d| d.as_secs_f64()),
        }
    }

    /// The metrics that have a target, with it (latency in seconds).
    pub fn iter(&self) -> impl Iterator<Item = (ScaleMetric, f64)> + '_ {
        ScaleMetric::ALL
            .into_iter()
            .filter_map(|m| self.get(m).map(|t| (m, t)))
    }

    /// True when no metric has a target.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

/// A load signal the autoscaler can follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaleMetric {
    /// Requests in flight, measured by the service's load balancer.
    Concurrency,
    /// Requests per second, measured by the load balancer.
    Rps,
    /// CPU use as a fraction of the reservation, measured by the agents.
    Cpu,
    /// Memory use as a fraction of the reservation, measured by the agents.
    Memory,
    /// 95th percentile latency (in seconds where a plain number is needed), from the load
    /// balancer.
    LatencyP95,
}

impl ScaleMetric {
    /// Every metric, in the order of [`SCALE_METRICS`].
    pub const ALL: [ScaleMetric; 5] = [
        ScaleMetric::Concurrency,
        ScaleMetric::Rps,
        ScaleMetric::Cpu,
        ScaleMetric::Memory,
        ScaleMetric::LatencyP95,
    ];

    /// The name used in deploy files.
    pub fn name(self) -> &'static str {
        SCALE_METRICS[self as usize]
    }

    /// Parses a deploy-file name; the error names the valid ones so the user can fix the file.
    pub fn parse(name: &str) -> Result<ScaleMetric, String> {
        ScaleMetric::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| {
                format!(
                    "unknown metric {name:?}: use one of {}",
                    SCALE_METRICS.join(", ")
                )
            })
    }

    /// True when the metric is a total over the service that instances share, so that
    /// `total / target` is an instance count. Latency is not: its proposal scales the count
    /// by `observed / target` (as HPA does for every metric).
    pub fn is_total(self) -> bool {
        self != ScaleMetric::LatencyP95
    }

    /// True for the metrics the load balancer measures: they need the service to be routed.
    pub fn from_router(self) -> bool {
        !matches!(self, ScaleMetric::Cpu | ScaleMetric::Memory)
    }
}

/// How the desired count follows the metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ScalePolicy {
    /// Target tracking (Kubernetes HPA + Knative KPA) on [`AutoscaleSpec::targets`](super::AutoscaleSpec::targets).
    #[default]
    Target,
    /// Bands of the per-instance value of `metric`; the band the value is in changes the count.
    Step {
        /// The metric whose per-instance value picks the band.
        metric: ScaleMetric,
        /// Ordered and not overlapping; no band for a value: no change.
        steps: Vec<StepBand>,
    },
    /// Below `low` hold; from `low` to `high` add a share of `step` growing with the value; at
    /// and above `high` add `step`.
    Linear {
        /// The metric whose per-instance value is compared with `low` and `high`.
        metric: ScaleMetric,
        /// Per-instance value below which the count holds (latency in seconds).
        low: f64,
        /// Value from which the full `step` is added (latency in seconds).
        high: f64,
        /// Instances added to the ready count at and above `high`.
        step: u32,
    },
    /// Time windows that set `min` and `max` (the first open one wins; none: the spec's own);
    /// target tracking on [`AutoscaleSpec::targets`](super::AutoscaleSpec::targets) within them.
    Schedule {
        /// The windows, in order: the first open one sets the bounds.
        windows: Vec<ScheduleWindow>,
    },
}

impl ScalePolicy {
    /// The deploy-file name of the policy.
    pub fn name(&self) -> &'static str {
        match self {
            ScalePolicy::Target => "target",
            ScalePolicy::Step { .. } => "step",
            ScalePolicy::Linear { .. } => "linear",
            ScalePolicy::Schedule { .. } => "schedule",
        }
    }
}

/// One band of a step policy: while the metric is in `[from, to)`, apply `change`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepBand {
    /// Lowest value in the band (latency in seconds).
    pub from: f64,
    /// First value above the band; `None`: no upper end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<f64>,
    /// What to do to the count while the value is in the band.
    pub change: StepChange,
}

/// A change of the count relative to the ready instances; written `"+2"`, `"-1"`, `"+50%"`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum StepChange {
    /// Add this many instances.
    Add(u32),
    /// Remove this many instances.
    Remove(u32),
    /// Add (positive) or remove (negative) this percentage of the ready instances, at least one.
    Percent(f64),
}

impl StepChange {
    /// Parses `"+N"`, `"-N"`, `"+P%"` or `"-P%"`.
    pub fn parse(text: &str) -> Result<StepChange, String> {
        let bad = || {
            format!(
                "invalid change {text:?}: expected \"+N\" or \"-N\" instances, or \"+P%\" or \
                 \"-P%\" of the ready instances, e.g. \"+2\" or \"-25%\""
            )
        };
        let s = text.trim();
        let (sign, rest) = match s.split_at_checked(1) {
            Some(("+", rest)) => (1.0, rest),
            Some(("-", rest)) => (-1.0, rest),
            _ if s.trim_end_matches('%').parse::<f64>().is_ok() => {
                return Err(format!(
                    "change {text:?} needs a sign: \"+{s}\" adds instances, \"-{s}\" removes them"
                ))
            }
            _ => return Err(bad()),
        };
        if let Some(number) = rest.strip_suffix('%') {
            let p: f64 = number.trim().parse().map_err(|_| bad())?;
            if !(p.is_finite() && p > 0.0) {
                return Err(format!("change {text:?}: a percentage must be above 0"));
            }
            if sign < 0.0 && p > 100.0 {
                return Err(format!(
                    "change {text:?}: cannot remove more than 100 % of the instances"
                ));
            }
            return Ok(StepChange::Percent(sign * p));
        }
        let n: u32 = rest.parse().map_err(|_| bad())?;
        if n == 0 {
            return Err(format!(
                "change {text:?} does nothing: change by at least 1"
            ));
        }
        if n > MAX_INSTANCES {
            return Err(format!(
                "change {text:?} is more than the limit of {MAX_INSTANCES} instances"
            ));
        }
        Ok(if sign > 0.0 {
            StepChange::Add(n)
        } else {
            StepChange::Remove(n)
        })
    }

    /// Why the change is not valid, if it is not (for values built without [`StepChange::parse`]).
    pub(super) fn problem(self) -> Option<String> {
        match self {
            StepChange::Add(0) | StepChange::Remove(0) => {
                Some("must change by at least 1 instance".into())
            }
            StepChange::Add(n) | StepChange::Remove(n) if n > MAX_INSTANCES => Some(format!(
                "{n} instances is more than the limit of {MAX_INSTANCES}"
            )),
            StepChange::Percent(p) if !(p.is_finite() && p != 0.0 && p >= -100.0) => Some(format!(
                "a percentage must be non-zero and at least -100, got {p}"
            )),
            _ => None,
        }
    }
}

impl fmt::Display for StepChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            StepChange::Add(n) => write!(f, "+{n}"),
            StepChange::Remove(n) => write!(f, "-{n}"),
            StepChange::Percent(p) if p < 0.0 => write!(f, "{p}%"),
            StepChange::Percent(p) => write!(f, "+{p}%"),
        }
    }
}

impl TryFrom<String> for StepChange {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        StepChange::parse(&s)
    }
}

impl From<StepChange> for String {
    fn from(c: StepChange) -> String {
        c.to_string()
    }
}
