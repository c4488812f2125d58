//! What the autoscaler remembers about a service between ticks. The caller owns it (one per
//! service) and passes it to every [`decide`](crate::decide) and [`demand`](crate::demand); a
//! fresh `State::default()` after a server restart is safe: it forgets panic and history, and
//! gives a running service a full `idle_timeout` before it may go to zero.

use crate::dips::Dips;
use crate::forecast::Forecaster;
use crate::keep_alive::KeepAlive;
use crate::metrics::Metrics;
use crate::noise::Baseline;
use crate::start_time::StartTimes;
use ebb_core::autoscale::ScaleMetric;
use std::collections::VecDeque;
use std::time::Duration;

/// Memory of one service's autoscaler.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    /// The count decided last; the base of stabilization and rate limits (HPA's "current
    /// replicas" is the spec, not the ready pods).
    pub(crate) desired: Option<u32>,
    /// First time this state was used: the start of idleness when no request was ever seen.
    pub(crate) first_seen: Option<Duration>,
    /// End of the last second with a request (or when [`demand`](crate::demand) was called).
    pub(crate) last_request: Option<Duration>,
    /// Last time the panic condition held; `Some` while panicking.
    pub(crate) panic_last: Option<Duration>,
    /// Highest count asked for during the current panic (Knative's `maxPanicPods`).
    pub(crate) panic_max: u32,
    /// Burst readings over the threshold in a row, and when the last one was taken.
    pub(crate) burst_streak: (u32, Option<Duration>),
    /// Recommendations of the last `scale_down_delay`, oldest first.
    pub(crate) recommendations: VecDeque<(Duration, u32)>,
    /// Instances added, and when, over the last scale-up period, oldest first.
    pub(crate) scale_ups: VecDeque<(Duration, u32)>,
    /// Each metric's load over the stable window at the last tick, indexed by
    /// `ScaleMetric as usize`: what a [`burst`](crate::burst) reading must rise above.
    pub(crate) baselines: [Option<Baseline>; ScaleMetric::ALL.len()],
    /// The per-minute history and the forecast learned from it (kept only while the spec's
    /// `forecast` is not off). A server keeps the history in its store across restarts.
    pub(crate) forecaster: Forecaster,
    /// The scale-ups awaited and how long the instances took to serve.
    pub(crate) starts: StartTimes,
    /// The idle gaps between requests, and the keep-alive of `idle_timeout = "auto"` learned
    /// from them.
    pub(crate) keep_alive: KeepAlive,
    /// How long the recommendation stayed below each count it fell from, and the scale-down
    /// delay of `scale_down_delay = "auto"` learned from it.
    pub(crate) dips: Dips,
}

impl State {
    /// The count decided last, if any.
    pub fn desired(&self) -> Option<u32> {
        self.desired
    }

    /// When the service last had a request, as far as this state has seen.
    pub fn last_request(&self) -> Option<Duration> {
        self.last_request
    }

    /// The history and the forecast learned from it.
    pub fn forecaster(&self) -> &Forecaster {
        &self.forecaster
    }

    /// The history and forecast, to restore a kept history into.
    pub fn forecaster_mut(&mut self) -> &mut Forecaster {
        &mut self.forecaster
    }

    /// How long the service's instances took to serve, as measured by this state.
    pub fn start_times(&self) -> &StartTimes {
        &self.starts
    }

    /// The start times, to restore kept ones into.
    pub fn start_times_mut(&mut self) -> &mut StartTimes {
        &mut self.starts
    }

    /// The idle gaps seen and the keep-alive learned from them.
    pub fn keep_alive(&self) -> &KeepAlive {
        &self.keep_alive
    }

    /// The idle gaps, to restore kept ones into.
    pub fn keep_alive_mut(&mut self) -> &mut KeepAlive {
        &mut self.keep_alive
    }

    /// The dips of the recommendation and the scale-down delay learned from them.
    pub fn dips(&self) -> &Dips {
        &self.dips
    }

    /// The dips, to restore kept ones into.
    pub fn dips_mut(&mut self) -> &mut Dips {
        &mut self.dips
    }

    /// Whether the last decision was made in panic mode.
    pub fn panicking(&self) -> bool {
        self.panic_last.is_some()
    }

    /// The load `metric` must rise above, as of the last tick.
    pub(crate) fn baseline(&self, metric: ScaleMetric) -> Option<Baseline> {
        self.baselines[metric as usize]
    }

    /// Forgets the panic (the service went idle).
    pub(crate) fn end_panic(&mut self) {
        self.panic_last = None;
        self.panic_max = 0;
    }

    /// Notes the time and the newest request in `metrics`.
    pub(crate) fn observe(&mut self, metrics: &Metrics, now: Duration) {
        self.first_seen.get_or_insert(now);
        if let Some(at) = metrics.last_active(now) {
            self.saw_request(at);
        }
    }

    pub(crate) fn saw_request(&mut self, at: Duration) {
        self.first_seen.get_or_insert(at);
        if let Some(previous) = self.last_request {
            self.keep_alive.request(previous, at);
        }
        self.last_request = Some(self.last_request.map_or(at, |t| t.max(at)));
    }

    /// How long since the last request, or since the state was first used if none was seen.
    pub(crate) fn quiet_for(&self, now: Duration) -> Duration {
        let since = self.last_request.or(self.first_seen).unwrap_or(now);
        now.saturating_sub(since)
    }

    /// Records a recommendation and forgets those older than `keep`.
    pub(crate) fn recommend(&mut self, now: Duration, count: u32, keep: Duration) {
        prune(&mut self.recommendations, now, keep);
        self.recommendations.push_back((now, count));
    }

    /// The highest recommendation in `(now - len, now]`.
    pub(crate) fn highest_recommendation(&self, now: Duration, len: Duration) -> Option<u32> {
        self.recommendations
            .iter()
            .rev()
            .take_while(|(at, _)| at.saturating_add(len) > now)
            .map(|&(_, c)| c)
            .max()
    }

    /// Records `added` instances at `now` and forgets additions older than `keep`.
    pub(crate) fn scaled_up(&mut self, now: Duration, added: u32, keep: Duration) {
        prune(&mut self.scale_ups, now, keep);
        self.scale_ups.push_back((now, added));
    }

    /// Instances added in `(now - len, now]`.
    pub(crate) fn added_within(&self, now: Duration, len: Duration) -> u32 {
        self.scale_ups
            .iter()
            .rev()
            .take_while(|(at, _)| at.saturating_add(len) > now)
            .map(|&(_, n)| n)
            .fold(0, u32::saturating_add)
    }
}

fn prune(history: &mut VecDeque<(Duration, u32)>, now: Duration, keep: Duration) {
    while history
        .front()
        .is_some_and(|(at, _)| at.saturating_add(keep) <= now)
    {
        history.pop_front();
    }
}
