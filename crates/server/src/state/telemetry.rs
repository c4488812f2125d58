//! Counters the server accumulates for Prometheus (`GET /metrics`) that no other part keeps:
//! the autoscaler's decisions by rule and its forecasts' error, instances' restarts and health
//! failures (counted from the events this server records), the controller's pass durations and
//! the queue wait of the tasks it placed.
//!
//! What is state elsewhere (instance counts, nodes, jobs, the router's counters) is read at
//! scrape time instead of being copied here. Series of a removed service or queue are dropped
//! at the next scrape ([`Telemetry::retain`]); between scrapes (or with no Prometheus at all)
//! each map holds at most [`MAX_SERIES`] names, since an agent's events may name any service.

use crate::lock;
use ebb_autoscaler::Rule;
use ebb_core::{Event, EventKind};
use ebb_router::http_metrics::{DurationHistogram, HistogramReading};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

/// Most names (services, queues) each counter map keeps; past it a new name is not counted.
/// Far above any real deployment; it only bounds what a misbehaving agent can make the server
/// keep.
pub const MAX_SERIES: usize = 10_000;

/// Instance events counted per service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InstanceCounts {
    /// `instance.restarting`: an exited instance is started again.
    pub restarts: u64,
    /// `instance.unready`: a ready instance failed a health check and left the load balancer.
    pub unready: u64,
    /// `instance.unhealthy`: failed health checks got an instance killed.
    pub killed: u64,
}

/// The autoscaler's decisions on one service by one rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecisionCounts {
    /// Every decision: one per tick, and those of demand and bursts.
    pub decisions: u64,
    /// Those that changed the desired count.
    pub changes: u64,
}

/// How one service's forecast has done, as of the last minute that completed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ForecastReading {
    /// Minutes scored.
    pub minutes: u64,
    /// Weighted absolute percentage error of the per-minute counts; `None` before any count.
    pub error: Option<f64>,
    /// The start time measured, if any.
    pub start: Option<Duration>,
}

/// The server's own counters; cheap to update, read once per scrape.
#[derive(Debug, Default)]
pub struct Telemetry {
    decisions: Mutex<BTreeMap<(String, Rule), DecisionCounts>>,
    forecasts: Mutex<BTreeMap<String, ForecastReading>>,
    instances: Mutex<BTreeMap<String, InstanceCounts>>,
    queue_waits: Mutex<BTreeMap<String, DurationHistogram>>,
    passes: DurationHistogram,
}

impl Telemetry {
    /// The autoscaler decided on `service` by `rule`; `changed`: the desired count changed.
    pub fn decision(&self, service: &str, rule: Rule, changed: bool) {
        let mut decisions = lock(&self.decisions);
        let key = (service.to_string(), rule);
        if decisions.len() >= MAX_SERIES && !decisions.contains_key(&key) {
            return;
        }
        let counts = decisions.entry(key).or_default();
        counts.decisions += 1;
        counts.changes += u64::from(changed);
    }

    /// The forecast of `service` as of the minute that just completed.
    pub fn forecast(&self, service: &str, reading: ForecastReading) {
        let mut forecasts = lock(&self.forecasts);
        if forecasts.len() >= MAX_SERIES && !forecasts.contains_key(service) {
            return;
        }
        forecasts.insert(service.to_string(), reading);
    }

    /// Forgets `service`'s forecast (switched off, or no longer autoscaled).
    pub fn forget_forecast(&self, service: &str) {
        lock(&self.forecasts).remove(service);
    }

    /// The forecasts' readings, by service.
    pub fn forecasts(&self) -> BTreeMap<String, ForecastReading> {
        lock(&self.forecasts).clone()
    }

    /// Counts the instance events among `events` (those with a service).
    pub fn events<'a>(&self, events: impl IntoIterator<Item = &'a Event>) {
        let mut counts = None;
        for event in events {
            let (Some(service), Some(field)) = (&event.service, counted(event.kind)) else {
                continue;
            };
            let counts = counts.get_or_insert_with(|| lock(&self.instances));
            if counts.len() >= MAX_SERIES && !counts.contains_key(service) {
                continue;
            }
            let entry = counts.entry(service.clone()).or_default();
            match field {
                Counted::Restart => entry.restarts += 1,
                Counted::Unready => entry.unready += 1,
                Counted::Killed => entry.killed += 1,
            }
        }
    }

    /// A controller pass took `duration`.
    pub fn pass(&self, duration: Duration) {
        self.passes.record(duration);
    }

    /// A task of a job in `queue` started after waiting `wait` since it could run.
    pub fn queue_wait(&self, queue: &str, wait: Duration) {
        let mut waits = lock(&self.queue_waits);
        if let Some(h) = waits.get(queue) {
            h.record(wait);
        } else if waits.len() < MAX_SERIES {
            let h = DurationHistogram::default();
            h.record(wait);
            waits.insert(queue.to_string(), h);
        }
    }

    /// Forgets the series of services and queues that no longer exist.
    pub fn retain(&self, services: &BTreeSet<&str>, queues: &BTreeSet<&str>) {
        lock(&self.decisions).retain(|(s, _), _| services.contains(s.as_str()));
        lock(&self.forecasts).retain(|s, _| services.contains(s.as_str()));
        lock(&self.instances).retain(|s, _| services.contains(s.as_str()));
        lock(&self.queue_waits).retain(|q, _| queues.contains(q.as_str()));
    }

    /// Decisions so far, by service and rule.
    pub fn decisions(&self) -> BTreeMap<(String, Rule), DecisionCounts> {
        lock(&self.decisions).clone()
    }

    /// Instance events so far, by service.
    pub fn instance_counts(&self) -> BTreeMap<String, InstanceCounts> {
        lock(&self.instances).clone()
    }

    /// Queue waits so far, by queue.
    pub fn queue_waits(&self) -> BTreeMap<String, HistogramReading> {
        lock(&self.queue_waits)
            .iter()
            .map(|(q, h)| (q.clone(), h.read()))
            .collect()
    }

    /// Controller pass durations so far.
    pub fn passes(&self) -> HistogramReading {
        self.passes.read()
    }
}

enum Counted {
    Restart,
    Unready,
    Killed,
}

fn counted(kind: EventKind) -> Option<Counted> {
    match kind {
        EventKind::InstanceRestarting => Some(Counted::Restart),
        EventKind::InstanceUnready => Some(Counted::Unready),
        EventKind::InstanceUnhealthy => Some(Counted::Killed),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, service: Option<&str>) -> Event {
        let mut e = Event::new(0, kind, "x");
        e.service = service.map(str::to_string);
        e
    }

    #[test]
    fn counts_restarts_and_health_failures_per_service_and_forgets_removed_services() {
        let t = Telemetry::default();
        t.events(&[
            event(EventKind::InstanceRestarting, Some("web")),
            event(EventKind::InstanceRestarting, Some("web")),
            event(EventKind::InstanceUnready, Some("web")),
            event(EventKind::InstanceUnhealthy, Some("api")),
            event(EventKind::InstanceReady, Some("web")),
            event(EventKind::InstanceRestarting, None),
        ]);
        t.decision("web", Rule::Panic, true);
        t.decision("web", Rule::Panic, false);
        t.decision("api", Rule::Idle, true);
        t.queue_wait("batch", Duration::from_millis(30));
        let counts = t.instance_counts();
        assert_eq!(
            counts["web"],
            InstanceCounts {
                restarts: 2,
                unready: 1,
                killed: 0
            }
        );
        assert_eq!(counts["api"].killed, 1);
        let web = t.decisions()[&("web".to_string(), Rule::Panic)];
        assert_eq!((web.decisions, web.changes), (2, 1));
        assert_eq!(t.queue_waits()["batch"].count(), 1);

        t.retain(&BTreeSet::from(["web"]), &BTreeSet::new());
        assert!(!t.instance_counts().contains_key("api"));
        assert_eq!(t.decisions().len(), 1);
        assert!(t.queue_waits().is_empty());
    }

    #[test]
    fn names_from_agents_cannot_grow_the_maps_without_bound() {
        let t = Telemetry::default();
        let flood: Vec<Event> = (0..MAX_SERIES + 50)
            .map(|i| event(EventKind::InstanceRestarting, Some(&format!("made-up-{i}"))))
            .collect();
        t.events(&flood);
        assert_eq!(t.instance_counts().len(), MAX_SERIES);
        // A service already counted still is.
        t.events(&[event(EventKind::InstanceRestarting, Some("made-up-0"))]);
        assert_eq!(t.instance_counts()["made-up-0"].restarts, 2);
    }
}
