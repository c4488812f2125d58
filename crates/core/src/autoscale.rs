//! A service's autoscaling settings: the resolved form of a deploy file's
//! `[services.NAME.autoscale]` table.
//!
//! The server turns an [`AutoscaleSpec`] into the policy crate's `ebb_autoscaler::Config`; the
//! concepts, names and defaults here mirror it. The settings are not part of
//! [`ServiceSpec::version`](crate::ServiceSpec::version): changing the bounds or the targets
//! never rolls instances.
//!
//! Problems are reported with the field as the deploy file spells it (`max`, `cpu`,
//! `steps[1].from`, `schedule[0].hours`), also for specs that arrive as JSON.

use crate::quantity::format_duration;
use crate::service::{millis, Resources, MAX_INSTANCES};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

// === defaults and limits ===

/// Window over which load is averaged for ordinary decisions: Knative KPA's `stable-window`
/// (DESIGN.md defaults; the autoscaler's default too).
pub const DEFAULT_STABLE_WINDOW: Duration = Duration::from_secs(60);
/// Short window that detects a surge: Knative KPA's `panic-window-percentage` of 10 % of the
/// stable window (the autoscaler's default too).
pub const DEFAULT_PANIC_WINDOW: Duration = Duration::from_secs(6);
/// A scale-down takes the highest recommendation of this last stretch. Kubernetes HPA uses
/// 300 s, which users find slow to give capacity back; 60 s matches the stable window
/// (the autoscaler's default too).
pub const DEFAULT_SCALE_DOWN_DELAY: Duration = Duration::from_secs(60);
/// A `min = 0` service goes to zero after this long without a request: the scale-down period
/// of the KEDA HTTP add-on; the first request afterwards is held, not refused.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
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
/// Names of the scaling policies, as deploy files write them.
pub const SCALE_POLICIES: [&str; 4] = ["target", "step", "linear", "schedule"];
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
    /// See [`DEFAULT_IDLE_TIMEOUT`]; applies while the lower bound is 0.
    #[serde(with = "millis", default = "default_idle_timeout")]
    pub idle_timeout: Duration,
}

/// The floats of a spec are finite: JSON cannot carry NaN, and [`AutoscaleSpec::problems`]
/// refuses it. So equality is reflexive, and [`crate::ServiceSpec`] stays `Eq`.
impl Eq for AutoscaleSpec {}

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

    /// True for the metrics the load balancer measures: they need the service to be routed.
    pub fn from_router(self) -> bool {
        !matches!(self, ScaleMetric::Cpu | ScaleMetric::Memory)
    }
}

/// How the desired count follows the metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ScalePolicy {
    /// Target tracking (Kubernetes HPA + Knative KPA) on [`AutoscaleSpec::targets`].
    #[default]
    Target,
    /// Bands of the per-instance value of `metric`; the band the value is in changes the count.
    Step {
        metric: ScaleMetric,
        /// Ordered and not overlapping; no band for a value: no change.
        steps: Vec<StepBand>,
    },
    /// Below `low` hold; from `low` to `high` add a share of `step` growing with the value; at
    /// and above `high` add `step`.
    Linear {
        metric: ScaleMetric,
        low: f64,
        high: f64,
        step: u32,
    },
    /// Time windows that set `min` and `max` (the first open one wins; none: the spec's own);
    /// target tracking on [`AutoscaleSpec::targets`] within them.
    Schedule { windows: Vec<ScheduleWindow> },
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
    fn problem(self) -> Option<String> {
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

// === schedules ===

/// A recurring stretch of time with its own bounds, in a fixed UTC offset. Mirrors
/// `ebb_autoscaler::Window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleWindow {
    /// Local days on which the window opens. Written `days = "mon-fri"`.
    #[serde(default)]
    pub days: Weekdays,
    /// Local opening time, minutes since midnight. With `end`, written `hours = "09:00-18:00"`.
    #[serde(default)]
    pub start: u16,
    /// Local closing time, minutes since midnight, exclusive; up to [`MINUTES_PER_DAY`] (24:00).
    /// Below `start`, the window runs over midnight (`"22:00-06:00"`).
    #[serde(default = "end_of_day")]
    pub end: u16,
    /// Local time = UTC + this many minutes. Written `utc_offset = "+01:00"`.
    #[serde(default)]
    pub utc_offset_minutes: i32,
    /// Fewest instances while the window is open.
    #[serde(default)]
    pub min: u32,
    /// Most instances while the window is open.
    #[serde(default)]
    pub max: u32,
}

fn end_of_day() -> u16 {
    MINUTES_PER_DAY
}

impl ScheduleWindow {
    /// Problems as (field, message), the field as the deploy file spells it.
    fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.days.0 & Weekdays::ALL.0 == 0 {
            out.push((
                "days",
                "no day selected: list at least one of mon..sun".into(),
            ));
        }
        if self.start >= MINUTES_PER_DAY || self.end > MINUTES_PER_DAY {
            out.push((
                "hours",
                format!(
                    "{}-{} minutes is not a time of day: use \"HH:MM-HH:MM\" from 00:00 to 24:00",
                    self.start, self.end
                ),
            ));
        } else if self.start == self.end {
            out.push((
                "hours",
                format!(
                    "{} is empty: it ends when it starts; for the whole day leave `hours` out",
                    format_hours(self.start, self.end)
                ),
            ));
        }
        if self.utc_offset_minutes.abs() > MAX_UTC_OFFSET_MINUTES {
            out.push((
                "utc_offset",
                format!(
                    "{} is outside -12:00 .. +14:00",
                    format_utc_offset(self.utc_offset_minutes)
                ),
            ));
        }
        if let Some((field, message)) = bounds_problem(self.min, self.max) {
            out.push((field, message));
        }
        out
    }
}

/// `mon-fri 09:00-18:00 UTC+01:00`
impl fmt::Display for ScheduleWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} UTC{}",
            self.days,
            format_hours(self.start, self.end),
            format_utc_offset(self.utc_offset_minutes)
        )
    }
}

/// A set of weekdays, bit 0 = Monday … bit 6 = Sunday (`ebb_autoscaler::Days` is this type). Written
/// `"mon-fri"`, `"sat,sun"`, `"fri-mon"` (ranges wrap), `"daily"` or `"*"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Weekdays(pub u8);

const DAY_NAMES: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

impl Weekdays {
    pub const WEEKDAYS: Weekdays = Weekdays(0b001_1111);
    pub const WEEKEND: Weekdays = Weekdays(0b110_0000);
    pub const ALL: Weekdays = Weekdays(0b111_1111);

    /// Whether `weekday` (0 = Monday … 6 = Sunday) is in the set.
    pub fn contains(self, weekday: u8) -> bool {
        weekday < 7 && self.0 & (1 << weekday) != 0
    }

    pub fn parse(text: &str) -> Result<Weekdays, String> {
        let lower = text.trim().to_ascii_lowercase();
        match lower.as_str() {
            "daily" | "*" => return Ok(Weekdays::ALL),
            "weekdays" => return Ok(Weekdays::WEEKDAYS),
            "weekend" | "weekends" => return Ok(Weekdays::WEEKEND),
            _ => {}
        }
        let day = |word: &str| {
            let word = word.trim();
            (word.len() >= 3)
                .then(|| DAY_NAMES.iter().position(|d| d.starts_with(word)))
                .flatten()
                .map(|i| i as u8)
                .ok_or_else(|| {
                    format!(
                        "unknown day {word:?} in {text:?}: use mon, tue, wed, thu, fri, sat, \
                         sun, ranges like \"mon-fri\", lists like \"sat,sun\", or \"daily\""
                    )
                })
        };
        let mut bits = 0u8;
        for part in lower.split(',') {
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (day(a)?, day(b)?);
                    let mut d = a;
                    loop {
                        bits |= 1 << d;
                        if d == b {
                            break;
                        }
                        d = (d + 1) % 7;
                    }
                }
                None => bits |= 1 << day(part)?,
            }
        }
        Ok(Weekdays(bits))
    }
}

impl Default for Weekdays {
    fn default() -> Self {
        Weekdays::ALL
    }
}

/// `daily`, or runs of days: `mon-fri`, `sat,sun`, `mon,wed-fri`.
impl fmt::Display for Weekdays {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Weekdays::ALL {
            return f.write_str("daily");
        }
        let short = |d: u8| &DAY_NAMES[usize::from(d)][..3];
        let mut parts = Vec::new();
        let mut d = 0;
        while d < 7 {
            if !self.contains(d) {
                d += 1;
                continue;
            }
            let start = d;
            while d + 1 < 7 && self.contains(d + 1) {
                d += 1;
            }
            match d - start {
                0 => parts.push(short(start).to_string()),
                1 => parts.push(format!("{},{}", short(start), short(d))),
                _ => parts.push(format!("{}-{}", short(start), short(d))),
            }
            d += 1;
        }
        f.write_str(&parts.join(","))
    }
}

impl TryFrom<String> for Weekdays {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Weekdays::parse(&s)
    }
}

impl From<Weekdays> for String {
    fn from(d: Weekdays) -> String {
        d.to_string()
    }
}

/// Parses `"09:00-18:00"` into minutes since midnight (start, end); the end may be `24:00`.
/// An end before the start runs over midnight.
pub fn parse_hours(text: &str) -> Result<(u16, u16), String> {
    let bad = || {
        format!(
            "invalid hours {text:?}: expected \"HH:MM-HH:MM\" such as \"09:00-18:00\" (the end \
             is exclusive; \"22:00-06:00\" runs over midnight)"
        )
    };
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    let time = |t: &str, latest: u16| {
        let (h, m) = t.trim().split_once(':')?;
        let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
        if !(1..=2).contains(&h.len()) || m.len() != 2 || !digits(h) || !digits(m) {
            return None;
        }
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        let minutes = h * 60 + m;
        (m < 60 && minutes <= latest).then_some(minutes)
    };
    let start = time(a, MINUTES_PER_DAY - 1).ok_or_else(bad)?;
    let end = time(b, MINUTES_PER_DAY).ok_or_else(bad)?;
    Ok((start, end))
}

/// `09:00-18:00`, the form [`parse_hours`] reads.
pub fn format_hours(start: u16, end: u16) -> String {
    let hm = |t: u16| format!("{:02}:{:02}", t / 60, t % 60);
    format!("{}-{}", hm(start), hm(end))
}

/// Parses a fixed UTC offset, `"+01:00"`, `"-05:30"`, `"+02"` or `"Z"`, into minutes.
pub fn parse_utc_offset(text: &str) -> Result<i32, String> {
    let s = text.trim();
    let bad = || {
        let names = if s.contains('/') || s.chars().all(|c| c.is_ascii_alphabetic()) {
            " (time-zone names are not supported: their offset changes with daylight saving)"
        } else {
            ""
        };
        format!(
            "invalid utc_offset {text:?}: expected a fixed offset such as \"+01:00\" or \
             \"-05:30\"{names}"
        )
    };
    if s.eq_ignore_ascii_case("z") || s.eq_ignore_ascii_case("utc") {
        return Ok(0);
    }
    let (sign, rest) = match s.split_at_checked(1) {
        Some(("+", rest)) => (1, rest),
        Some(("-", rest)) => (-1, rest),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "00"));
    let digits = |s: &str, len: usize| s.len() == len && s.chars().all(|c| c.is_ascii_digit());
    if !digits(h, 2) || !digits(m, 2) {
        return Err(bad());
    }
    let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    let minutes = sign * (h * 60 + m);
    if m >= 60 || minutes.abs() > MAX_UTC_OFFSET_MINUTES {
        return Err(format!(
            "utc_offset {text:?} is not a UTC offset: they run from -12:00 to +14:00"
        ));
    }
    Ok(minutes)
}

/// `+01:00`, the form [`parse_utc_offset`] reads.
pub fn format_utc_offset(minutes: i32) -> String {
    let sign = if minutes < 0 { '-' } else { '+' };
    let m = minutes.unsigned_abs();
    format!("{sign}{:02}:{:02}", m / 60, m % 60)
}

// === validation ===

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
        }
    }

    /// Every problem as (field, message), the field relative to the autoscale table as the
    /// deploy file spells it (`max`, `steps[1].from`). `resources` are the service's (a cpu or
    /// memory metric is a fraction of them); `routed`: whether it has a public port (the load
    /// balancer measures the request metrics and wakes a service at zero).
    pub fn problems(&self, resources: &Resources, routed: bool) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut err = |field: &str, message: String| out.push((field.to_string(), message));
        if let Some((field, message)) = bounds_problem(self.min, self.max) {
            err(field, message);
        }
        let schedule = matches!(self.policy, ScalePolicy::Schedule { .. });
        if self.min == 0 && !routed && !schedule {
            let message = "min = 0 scales the service to zero after idle_timeout without a \
                request, but only a routed service gets requests to wake it: add `port` to the \
                service, or set min = 1";
            err("min", message.into());
        }
        for (metric, target) in self.targets.iter() {
            let name = metric.name();
            let fraction = matches!(metric, ScaleMetric::Cpu | ScaleMetric::Memory);
            if fraction && !(target > 0.0 && target <= 1.0) {
                let message = format!(
                    "a {name} target is a fraction of the reservation per instance, above 0 \
                     and at most 1 (0.7 = 70 %), got {target}"
                );
                err(name, message);
            } else if !(target.is_finite() && target > 0.0) {
                err(name, format!("a target must be above 0, got {target}"));
            } else if let Some(m) = metric_source_problem(metric, resources, routed) {
                err(name, m);
            }
        }
        self.window_problems(&mut err);
        match &self.policy {
            ScalePolicy::Target | ScalePolicy::Schedule { .. } if self.targets.is_empty() => {
                let policy = self.policy.name();
                let message = format!(
                    "policy \"{policy}\" tracks a target per instance: set concurrency, rps, \
                     cpu, memory or latency_p95"
                );
                err("policy", message);
            }
            ScalePolicy::Step { metric, .. } | ScalePolicy::Linear { metric, .. } => {
                let policy = self.policy.name();
                for (m, _) in self.targets.iter() {
                    let name = m.name();
                    let message = format!(
                        "targets apply to policies \"target\" and \"schedule\"; policy \
                         \"{policy}\" follows `metric`: remove `{name}`"
                    );
                    err(name, message);
                }
                if let Some(m) = metric_source_problem(*metric, resources, routed) {
                    err("metric", m);
                }
            }
            _ => {}
        }
        match &self.policy {
            ScalePolicy::Step { steps, .. } => step_problems(steps, &mut err),
            ScalePolicy::Linear {
                low, high, step, ..
            } => {
                if !(low.is_finite() && *low >= 0.0) {
                    err("low", format!("must be a number ≥ 0, got {low}"));
                } else if !(high.is_finite() && high > low) {
                    err("high", format!("must be above low ({low}), got {high}"));
                }
                if *step == 0 {
                    err("step", "must add at least 1 instance".into());
                } else if *step > MAX_INSTANCES {
                    err(
                        "step",
                        format!("{step} is more than the limit of {MAX_INSTANCES}"),
                    );
                }
            }
            ScalePolicy::Schedule { windows } => {
                if windows.is_empty() {
                    let message = "policy \"schedule\" needs at least one window: add a \
                        [[services.NAME.autoscale.schedule]] table with days, hours, min and max";
                    err("schedule", message.into());
                }
                for (i, w) in windows.iter().enumerate() {
                    for (field, message) in w.problems() {
                        err(&format!("schedule[{i}].{field}"), message);
                    }
                }
            }
            ScalePolicy::Target => {}
        }
        out
    }

    fn window_problems(&self, err: &mut impl FnMut(&str, String)) {
        let limited = [
            ("stable_window", self.stable_window, MAX_SCALE_WINDOW),
            ("panic_window", self.panic_window, MAX_SCALE_WINDOW),
            ("scale_down_delay", self.scale_down_delay, MAX_SCALE_WINDOW),
            ("idle_timeout", self.idle_timeout, MAX_IDLE_TIMEOUT),
        ];
        for (field, d, max) in limited {
            if d.is_zero() && field != "scale_down_delay" {
                err(field, format!("{field} must be longer than 0s"));
            } else if d > max {
                let (d, max) = (format_duration(d), format_duration(max));
                err(
                    field,
                    format!("{field} {d} is more than the limit of {max}"),
                );
            }
        }
        let (panic, stable) = (self.panic_window, self.stable_window);
        if !panic.is_zero() && panic >= stable {
            let (p, s) = (format_duration(panic), format_duration(stable));
            let message = format!(
                "panic_window {p} must be shorter than stable_window {s}: it is the short window \
                 that catches a surge (by default a tenth of it)"
            );
            err("panic_window", message);
        }
    }
}

/// Why `max` or `min` is out of bounds, if one is.
fn bounds_problem(min: u32, max: u32) -> Option<(&'static str, String)> {
    if max == 0 {
        Some((
            "max",
            "max must be at least 1: it is the most instances the autoscaler may run".into(),
        ))
    } else if max > MAX_INSTANCES {
        Some((
            "max",
            format!("max {max} is more than the limit of {MAX_INSTANCES}"),
        ))
    } else if min > max {
        Some((
            "min",
            format!("min {min} is above max {max}: set min ≤ max"),
        ))
    } else {
        None
    }
}

/// Why `metric` cannot be measured for this service, if it cannot.
fn metric_source_problem(
    metric: ScaleMetric,
    resources: &Resources,
    routed: bool,
) -> Option<String> {
    let name = metric.name();
    let fix = match metric {
        ScaleMetric::Cpu if resources.cpu_millis.is_none() => {
            "as a fraction of the reserved cpu: set resources.cpu, e.g. cpu = 0.5"
        }
        ScaleMetric::Memory if resources.memory_bytes.is_none() => {
            "as a fraction of the reserved memory: set resources.memory, e.g. memory = \"256MiB\""
        }
        m if m.from_router() && !routed => {
            "by the service's load balancer: add `port` to the service"
        }
        _ => return None,
    };
    Some(format!("{name} is measured {fix}"))
}

fn step_problems(steps: &[StepBand], err: &mut impl FnMut(&str, String)) {
    if steps.is_empty() {
        err(
            "steps",
            "policy \"step\" needs at least one band, e.g. { from = 0.8, change = \"+1\" }".into(),
        );
    }
    for (i, b) in steps.iter().enumerate() {
        let field = |name: &str| format!("steps[{i}].{name}");
        if !b.from.is_finite() {
            err(&field("from"), format!("must be a number, got {}", b.from));
        } else if let Some(to) = b.to.filter(|to| !(to.is_finite() && *to > b.from)) {
            err(
                &field("to"),
                format!("to {to} must be above from {}", b.from),
            );
        }
        if let Some(prev) = i.checked_sub(1).map(|p| steps[p]) {
            match prev.to {
                None => {
                    let message = format!(
                        "band {i} comes after a band without `to`, which already covers every \
                         value from {}: give that band a `to`",
                        prev.from
                    );
                    err(&field("from"), message);
                }
                Some(end) if b.from < end => {
                    let message = format!(
                        "from {} overlaps the band before, which ends at {end}: order the bands \
                         by value, without overlap",
                        b.from
                    );
                    err(&field("from"), message);
                }
                _ => {}
            }
        }
        if let Some(message) = b.change.problem() {
            err(&field("change"), message);
        }
    }
}

/// Serde helper: an `Option<Duration>` as integer milliseconds in JSON (`null` for none).
pub mod opt_millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn concurrency(target: f64) -> ScaleTargets {
        ScaleTargets {
            concurrency: Some(target),
            ..ScaleTargets::default()
        }
    }

    /// Fields of the problems of `a` for a routed service with cpu and memory reserved.
    fn fields(a: &AutoscaleSpec) -> Vec<String> {
        let reserved = Resources {
            cpu_millis: Some(500),
            memory_bytes: Some(1 << 28),
        };
        a.problems(&reserved, true)
            .into_iter()
            .map(|(f, _)| f)
            .collect()
    }

    #[test]
    fn defaults_mirror_the_autoscaler_and_design_md() {
        let a = AutoscaleSpec::new(0, 20, concurrency(10.0));
        assert_eq!(a.stable_window, Duration::from_secs(60));
        assert_eq!(a.panic_window, Duration::from_secs(6));
        assert_eq!(a.scale_down_delay, Duration::from_secs(60));
        assert_eq!(a.idle_timeout, Duration::from_secs(300));
        assert_eq!(fields(&a), Vec::<String>::new());
    }

    #[test]
    fn every_policy_round_trips_through_json() {
        let window = ScheduleWindow {
            days: Weekdays::WEEKDAYS,
            start: 9 * 60,
            end: 18 * 60,
            utc_offset_minutes: 60,
            min: 3,
            max: 30,
        };
        let policies = [
            ScalePolicy::Target,
            ScalePolicy::Step {
                metric: ScaleMetric::Cpu,
                steps: vec![
                    StepBand {
                        from: 0.0,
                        to: Some(0.3),
                        change: StepChange::Remove(1),
                    },
                    StepBand {
                        from: 0.9,
                        to: None,
                        change: StepChange::Percent(50.0),
                    },
                ],
            },
            ScalePolicy::Linear {
                metric: ScaleMetric::LatencyP95,
                low: 0.05,
                high: 0.2,
                step: 3,
            },
            ScalePolicy::Schedule {
                windows: vec![window],
            },
        ];
        for policy in policies {
            let mut a = AutoscaleSpec::new(1, 20, concurrency(10.0));
            a.targets.latency_p95 = Some(Duration::from_millis(200));
            a.policy = policy;
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(
                serde_json::from_str::<AutoscaleSpec>(&json).unwrap(),
                a,
                "{json}"
            );
        }
    }

    #[test]
    fn json_spells_changes_days_and_durations_as_people_do() {
        let mut a = AutoscaleSpec::new(0, 5, concurrency(10.0));
        a.targets.latency_p95 = Some(Duration::from_millis(250));
        a.policy = ScalePolicy::Step {
            metric: ScaleMetric::LatencyP95,
            steps: vec![StepBand {
                from: 0.5,
                to: None,
                change: StepChange::Percent(-25.0),
            }],
        };
        let json = serde_json::to_string(&a).unwrap();
        for part in [
            r#""latency_p95":250"#,
            r#""kind":"step","metric":"latency_p95""#,
            r#""change":"-25%""#,
            r#""stable_window":60000"#,
        ] {
            assert!(json.contains(part), "{part} in {json}");
        }
        assert!(!json.contains("rps"), "{json}");
        let w = ScheduleWindow {
            days: Weekdays::WEEKEND,
            start: 0,
            end: MINUTES_PER_DAY,
            utc_offset_minutes: 0,
            min: 0,
            max: 2,
        };
        let json = serde_json::to_string(&w).unwrap();
        assert!(json.contains(r#""days":"sat,sun""#), "{json}");
    }

    #[test]
    fn a_minimal_json_spec_takes_the_defaults() {
        let a: AutoscaleSpec = serde_json::from_str(r#"{"max":3}"#).unwrap();
        assert_eq!(a, AutoscaleSpec::new(0, 3, ScaleTargets::default()));
        let w: ScheduleWindow = serde_json::from_str(r#"{"max":3}"#).unwrap();
        assert_eq!(
            (w.days, w.start, w.end),
            (Weekdays::ALL, 0, MINUTES_PER_DAY)
        );
        assert!(serde_json::from_str::<StepChange>(r#""+0""#).is_err());
        assert!(serde_json::from_str::<Weekdays>(r#""funday""#).is_err());
    }

    #[test]
    fn bounds_need_a_max_of_at_least_one_and_min_at_most_max() {
        let mut a = AutoscaleSpec::new(0, 0, concurrency(1.0));
        assert_eq!(fields(&a), ["max"]);
        a.max = MAX_INSTANCES + 1;
        assert_eq!(fields(&a), ["max"]);
        a.max = 3;
        a.min = 4;
        assert_eq!(fields(&a), ["min"]);
    }

    #[test]
    fn scale_to_zero_needs_a_port_unless_a_schedule_sets_the_bounds() {
        let mut a = AutoscaleSpec::new(
            0,
            3,
            ScaleTargets {
                cpu: Some(0.7),
                ..ScaleTargets::default()
            },
        );
        let reserved = Resources {
            cpu_millis: Some(100),
            memory_bytes: None,
        };
        let problems = a.problems(&reserved, false);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, "min");
        assert!(problems[0].1.contains("add `port`"), "{problems:?}");
        a.policy = ScalePolicy::Schedule {
            windows: vec![ScheduleWindow {
                days: Weekdays::WEEKDAYS,
                start: 0,
                end: MINUTES_PER_DAY,
                utc_offset_minutes: 0,
                min: 2,
                max: 3,
            }],
        };
        assert_eq!(a.problems(&reserved, false), []);
    }

    #[test]
    fn targets_must_be_positive_and_fractions_at_most_one() {
        for (targets, field) in [
            (concurrency(0.0), "concurrency"),
            (concurrency(f64::NAN), "concurrency"),
            (
                ScaleTargets {
                    rps: Some(-1.0),
                    ..ScaleTargets::default()
                },
                "rps",
            ),
            (
                ScaleTargets {
                    cpu: Some(1.5),
                    ..ScaleTargets::default()
                },
                "cpu",
            ),
            (
                ScaleTargets {
                    memory: Some(0.0),
                    ..ScaleTargets::default()
                },
                "memory",
            ),
            (
                ScaleTargets {
                    latency_p95: Some(Duration::ZERO),
                    ..ScaleTargets::default()
                },
                "latency_p95",
            ),
        ] {
            assert_eq!(fields(&AutoscaleSpec::new(1, 3, targets)), [field]);
        }
        let full = ScaleTargets {
            cpu: Some(1.0),
            memory: Some(0.8),
            ..ScaleTargets::default()
        };
        assert_eq!(
            fields(&AutoscaleSpec::new(1, 3, full)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn metrics_need_their_source_reservations_and_the_router() {
        let a = AutoscaleSpec::new(
            1,
            3,
            ScaleTargets {
                cpu: Some(0.5),
                memory: Some(0.5),
                rps: Some(100.0),
                ..ScaleTargets::default()
            },
        );
        let problems = a.problems(&Resources::default(), false);
        let fields: Vec<&str> = problems.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["rps", "cpu", "memory"], "{problems:?}");
        assert!(problems[1].1.contains("set resources.cpu"), "{problems:?}");
    }

    #[test]
    fn target_tracking_and_schedules_need_a_target() {
        let mut a = AutoscaleSpec::new(1, 3, ScaleTargets::default());
        assert_eq!(fields(&a), ["policy"]);
        a.policy = ScalePolicy::Schedule { windows: vec![] };
        assert_eq!(fields(&a), ["policy", "schedule"]);
    }

    #[test]
    fn the_panic_window_must_be_shorter_than_the_stable_window() {
        let mut a = AutoscaleSpec::new(1, 3, concurrency(1.0));
        a.panic_window = a.stable_window;
        assert_eq!(fields(&a), ["panic_window"]);
        a.panic_window = Duration::ZERO;
        assert_eq!(fields(&a), ["panic_window"]);
        a.panic_window = DEFAULT_PANIC_WINDOW;
        a.stable_window = MAX_SCALE_WINDOW + Duration::from_secs(1);
        a.idle_timeout = Duration::ZERO;
        a.scale_down_delay = Duration::ZERO;
        assert_eq!(fields(&a), ["stable_window", "idle_timeout"]);
    }

    #[test]
    fn step_bands_are_ordered_without_overlap_and_refuse_targets() {
        let band = |from: f64, to: Option<f64>, change| StepBand { from, to, change };
        let mut a = AutoscaleSpec::new(1, 10, ScaleTargets::default());
        a.policy = ScalePolicy::Step {
            metric: ScaleMetric::Cpu,
            steps: vec![
                band(0.0, Some(0.3), StepChange::Remove(1)),
                band(0.8, Some(0.9), StepChange::Add(2)),
                band(0.9, None, StepChange::Percent(50.0)),
            ],
        };
        assert_eq!(fields(&a), Vec::<String>::new());
        a.policy = ScalePolicy::Step {
            metric: ScaleMetric::Cpu,
            steps: vec![
                band(0.5, Some(0.4), StepChange::Add(0)),
                band(0.3, None, StepChange::Add(1)),
                band(0.9, Some(1.0), StepChange::Percent(-150.0)),
            ],
        };
        a.targets = concurrency(1.0);
        assert_eq!(
            fields(&a),
            [
                "concurrency",
                "steps[0].to",
                "steps[0].change",
                "steps[1].from",
                "steps[2].from",
                "steps[2].change"
            ]
        );
    }

    #[test]
    fn linear_needs_low_below_high_and_a_step() {
        let mut a = AutoscaleSpec::new(1, 10, ScaleTargets::default());
        a.policy = ScalePolicy::Linear {
            metric: ScaleMetric::Rps,
            low: 50.0,
            high: 200.0,
            step: 3,
        };
        assert_eq!(fields(&a), Vec::<String>::new());
        a.policy = ScalePolicy::Linear {
            metric: ScaleMetric::Rps,
            low: 50.0,
            high: 50.0,
            step: 0,
        };
        assert_eq!(fields(&a), ["high", "step"]);
    }

    #[test]
    fn schedule_windows_are_checked_one_by_one() {
        let ok = ScheduleWindow {
            days: Weekdays::WEEKDAYS,
            start: 22 * 60,
            end: 6 * 60,
            utc_offset_minutes: -330,
            min: 0,
            max: 2,
        };
        let bad = ScheduleWindow {
            days: Weekdays(0),
            start: 600,
            end: 600,
            utc_offset_minutes: 15 * 60,
            min: 3,
            max: 2,
        };
        let mut a = AutoscaleSpec::new(1, 10, concurrency(5.0));
        a.policy = ScalePolicy::Schedule {
            windows: vec![ok, bad],
        };
        assert_eq!(
            fields(&a),
            [
                "schedule[1].days",
                "schedule[1].hours",
                "schedule[1].utc_offset",
                "schedule[1].min"
            ]
        );
        assert_eq!(ok.to_string(), "mon-fri 22:00-06:00 UTC-05:30");
    }

    #[test]
    fn changes_parse_with_a_sign_and_display_back() {
        for (text, change) in [
            ("+2", StepChange::Add(2)),
            ("-1", StepChange::Remove(1)),
            ("+50%", StepChange::Percent(50.0)),
            ("-12.5%", StepChange::Percent(-12.5)),
        ] {
            assert_eq!(StepChange::parse(text), Ok(change), "{text}");
            assert_eq!(change.to_string(), text);
        }
        for (bad, phrase) in [
            ("2", "needs a sign"),
            ("50%", "needs a sign"),
            ("+0", "does nothing"),
            ("+0%", "above 0"),
            ("-101%", "more than 100 %"),
            ("+x", "invalid change"),
            ("", "invalid change"),
            ("+99999", "limit"),
        ] {
            let e = StepChange::parse(bad).unwrap_err();
            assert!(e.contains(phrase), "{bad:?}: {e}");
        }
    }

    #[test]
    fn days_parse_names_ranges_lists_and_shorthands() {
        for (text, days) in [
            ("mon-fri", Weekdays::WEEKDAYS),
            ("sat,sun", Weekdays::WEEKEND),
            ("Saturday, Sunday", Weekdays::WEEKEND),
            ("daily", Weekdays::ALL),
            ("*", Weekdays::ALL),
            ("fri-mon", Weekdays(0b111_0001)),
            ("mon,wed-thu", Weekdays(0b000_1101)),
            ("thurs", Weekdays(0b000_1000)),
        ] {
            assert_eq!(Weekdays::parse(text), Ok(days), "{text}");
            assert_eq!(Weekdays::parse(&days.to_string()), Ok(days), "{days}");
        }
        assert_eq!(Weekdays::WEEKDAYS.to_string(), "mon-fri");
        assert_eq!(Weekdays(0b000_1101).to_string(), "mon,wed,thu");
        for bad in ["", "mo", "funday", "mon-", "mon;tue"] {
            let e = Weekdays::parse(bad).unwrap_err();
            assert!(e.contains("unknown day"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn hours_parse_with_24_00_as_the_end_of_the_day() {
        assert_eq!(parse_hours("09:00-18:00"), Ok((540, 1080)));
        assert_eq!(parse_hours(" 9:30 - 24:00 "), Ok((570, 1440)));
        assert_eq!(parse_hours("22:00-06:00"), Ok((1320, 360)));
        assert_eq!(format_hours(570, 1440), "09:30-24:00");
        for bad in [
            "9-17",
            "24:00-06:00",
            "09:60-10:00",
            "09:00",
            "09:00-24:01",
            "a:bc-d:ef",
        ] {
            assert!(parse_hours(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn utc_offsets_are_fixed_and_within_real_ones() {
        for (text, minutes) in [
            ("+01:00", 60),
            ("-05:30", -330),
            ("+14:00", 840),
            ("+02", 120),
            ("Z", 0),
        ] {
            assert_eq!(parse_utc_offset(text), Ok(minutes), "{text}");
        }
        assert_eq!(format_utc_offset(-330), "-05:30");
        assert!(parse_utc_offset("+14:30")
            .unwrap_err()
            .contains("-12:00 to +14:00"));
        assert!(parse_utc_offset("Europe/Paris")
            .unwrap_err()
            .contains("time-zone names"));
        assert!(parse_utc_offset("1").is_err());
        assert!(parse_utc_offset("+1:00").is_err());
    }

    #[test]
    fn metric_names_parse_and_list_the_valid_ones() {
        assert_eq!(
            ScaleMetric::parse("latency_p95"),
            Ok(ScaleMetric::LatencyP95)
        );
        let names: Vec<&str> = ScaleMetric::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(names, SCALE_METRICS);
        let e = ScaleMetric::parse("qps").unwrap_err();
        assert!(
            e.contains("concurrency, rps, cpu, memory, latency_p95"),
            "{e}"
        );
        let json = serde_json::to_string(&ScaleMetric::LatencyP95).unwrap();
        assert_eq!(json, r#""latency_p95""#);
    }
}
