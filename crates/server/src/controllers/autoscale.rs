//! The autoscaler loop: once per metrics sample (every second), each autoscaled service's
//! router metrics go into its window, the pure policy ([`ebb_autoscaler::decide`]) proposes a
//! count, and a change is written to the service's `instances` with the decision's reason as
//! an event. The controller then starts or drains instances as for any scale.
//!
//! A request that arrives at a service with no ready instance wakes the loop at once (the
//! router's demand signal), so a service at zero starts its first instance without waiting for
//! the next tick. Between ticks, every `BURST_CHECK` the load of the last half second goes to
//! the policy's burst check ([`ebb_autoscaler::burst`]): a step of load enters panic mode
//! within a second instead of the 2 s the panic window takes to average a 4× step in.
//!
//! With several servers, each routes every service: the load is this server's load balancer's
//! plus what the others last reported ([`crate::routing::peers`]), and a request waiting at
//! another server wakes the loop as one waiting here does.

use crate::controllers::{forecast_history, learned, recent_load};
use crate::routing::{peers, Listeners};
use crate::state::keys::{self, Versioned};
use crate::state::telemetry::ForecastReading;
use crate::{lock, now_ms, run_loop, Server};
use ebb_autoscaler::{
    block_of, burst, decide, demand, minute_of, Decision, Metrics, Now, Past, Reading, Sample,
    State,
};
use ebb_core::autoscale::ForecastMode;
use ebb_core::{Event, EventKind, ServiceSpec};
use ebb_store::{Expect, StoreError};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The span of one sample: the router is sampled every second.
const SAMPLE_SPAN: Duration = crate::routing::traffic::SAMPLE_INTERVAL;

/// How often the load of the last [`BURST_SPAN`] is checked for a burst: 4 times a second, each
/// reading overlapping the one before, so that a step is seen within a check of the moment it
/// dominates the span. Copies a few counters per autoscaled service;
/// nothing when none is.
const BURST_CHECK: Duration = Duration::from_millis(250);
/// The span of a burst reading: the check two before, half a second ago less the timer's
/// jitter (a mark taken 499.9 ms ago must count, or the reading falls back to 750 ms).
const BURST_SPAN: Duration = Duration::from_millis(450);
/// Counter snapshots kept per service for the burst readings: enough to find one at least
/// [`BURST_SPAN`] old.
const BURST_MARKS: usize = 4;

/// A service's summed use over reservation, per resource.
struct Usage {
    cpu: Option<f64>,
    memory: Option<f64>,
}

/// A sum that is missing as soon as one term is.
fn sum(total: Option<f64>, term: Option<f64>) -> Option<f64> {
    Some(total? + term?)
}

/// One autoscaled service as the loop tracks it.
struct Scaled {
    /// The autoscale settings the state was built for; new settings start afresh (with the
    /// forecast's history and what the store keeps of the service's past).
    spec: ebb_core::AutoscaleSpec,
    /// The service's incarnation (the create revision of its spec's key): a service deleted and
    /// deployed again under the same name, even between two ticks, starts afresh, and what the
    /// store keeps of its predecessor is not read.
    incarnation: u64,
    metrics: Metrics,
    state: State,
    /// The last decision's reason, shown by `ebb status`.
    last_reason: Option<String>,
    /// The router's counters at the last few burst checks, oldest first, with their identity.
    marks: std::collections::VecDeque<(usize, ebb_router::metrics::Snapshot)>,
    /// The newest minute of the forecast's history recorded since the service was tracked (in
    /// progress): when a newer one comes, it has completed.
    seen_minute: Option<i64>,
    /// The days with completed minutes not yet kept in the store, oldest first.
    unkept_days: Vec<i64>,
    /// When the history was last written (or a write failed), and whether that write failed.
    history_written: Option<(Instant, bool)>,
    /// Whether the kept history was read: until it is, nothing is written, so that a failed
    /// read cannot overwrite the stored days with an empty history.
    loaded: bool,
    /// The gaps, dips and start times noted ([`learned::noted`]) when they were last kept (or
    /// read); `None` while they are not kept: nothing learned from the past, or a failed read
    /// (which must not be overwritten with less).
    learned_kept: Option<learned::Noted>,
    /// When they were last written.
    learned_written: Option<Instant>,
    /// The newest block of the recent load kept in the store ([`recent_load`]), or read from
    /// it: the blocks after it are written as they end.
    window_written: Option<u64>,
}

impl Scaled {
    /// The autoscaling of a service's `incarnation` afresh at `now`, with its forecast's history
    /// from the store (or none kept, with the forecast off), and its recent load `carried` over
    /// from the settings before, or else as the store keeps it.
    fn new(
        server: &Server,
        name: &str,
        incarnation: u64,
        spec: &ebb_core::AutoscaleSpec,
        carried: Option<(Past, Option<u64>)>,
        now: Duration,
    ) -> Scaled {
        let mut state = State::default();
        let mut loaded = false;
        if !forecasts(spec) {
            forget_history(server, name);
        } else {
            // Reported from the start; the figures follow once a minute.
            server
                .telemetry()
                .forecast(name, ForecastReading::default());
            let today = forecast_history::day_of(minute_of(now_ms() as i64));
            let basis = forecast_history::basis(spec);
            let history = state.forecaster_mut();
            let store = server.store();
            match forecast_history::load(store, name, incarnation, today, &basis, history) {
                Ok(days) => {
                    loaded = true;
                    tracing::debug!(service = name, days, "autoscaler: history restored");
                }
                Err(e) => tracing::warn!(
                    service = name,
                    "autoscaler: the forecast's history could not be read; it starts empty, \
                     and is not kept until the service's autoscaling is next set up: {e}"
                ),
            }
        }
        let learned_kept = restore_learned(server, name, incarnation, spec, &mut state);
        let (past, window_written) =
            carried.unwrap_or_else(|| restore_window(server, name, incarnation));
        let mut metrics = Metrics::for_config(spec);
        metrics.resume(&past, now);
        Scaled {
            incarnation,
            learned_kept,
            learned_written: None,
            window_written,
            metrics,
            spec: spec.clone(),
            seen_minute: None,
            unkept_days: Vec::new(),
            history_written: None,
            loaded,
            state,
            last_reason: None,
            marks: std::collections::VecDeque::with_capacity(BURST_MARKS),
        }
    }

    /// Notes the minutes of the forecast's history that completed, reports the forecast's
    /// figures once a minute, and keeps the days of the completed minutes in the store when
    /// [`forecast_history::write_due`]; with `now` (the state is about to go), at once, the
    /// minute in progress too. Nothing is written while the kept history is unread.
    fn keep_history(&mut self, server: &Server, name: &str, now: bool) {
        if !forecasts(&self.spec) {
            return;
        }
        self.note_minutes(server, name);
        if !self.loaded {
            return;
        }
        if let Some(minute) = self.seen_minute.filter(|_| now) {
            self.note_unkept(forecast_history::day_of(minute));
        }
        self.write_days(server, name, now);
    }

    /// When a new minute is recorded: the last one completed (its day is to write, if the
    /// history may be written), and the forecast's figures are reported.
    fn note_minutes(&mut self, server: &Server, name: &str) {
        let newest = self.state.forecaster().history().last_minute();
        if newest.is_none() || newest == self.seen_minute {
            return;
        }
        if let Some(done) = self.seen_minute.filter(|_| self.loaded) {
            self.note_unkept(forecast_history::day_of(done));
        }
        self.seen_minute = newest;
        let error = self.state.forecaster().error();
        let reading = ForecastReading {
            minutes: error.minutes,
            error: error.wape(),
            start: self.state.start_times().measured(),
        };
        server.telemetry().forecast(name, reading);
    }

    /// Writes the unkept days that are due. A failed write is logged: the history in memory
    /// stays whole, and the next write is tried a [`forecast_history::WRITE_EVERY`] later (at
    /// once with `now`).
    fn write_days(&mut self, server: &Server, name: &str, now: bool) {
        let newest = self.seen_minute;
        let since = self.history_written.map(|(t, _)| t.elapsed());
        let failed = self.history_written.is_some_and(|(_, failed)| failed);
        if failed && !now && since.is_some_and(|s| s < forecast_history::WRITE_EVERY) {
            return;
        }
        let due: Vec<i64> = (self.unkept_days.iter().copied())
            .filter(|&day| forecast_history::write_due(day, newest, since, now))
            .collect();
        if due.is_empty() {
            return;
        }
        let basis = forecast_history::basis(&self.spec);
        let mut failed = false;
        for day in due {
            let (f, store, incarnation) =
                (self.state.forecaster(), server.store(), self.incarnation);
            match forecast_history::keep(store, name, incarnation, day, &basis, f) {
                Ok(()) => self.unkept_days.retain(|&d| d != day),
                Err(e) => {
                    failed = true;
                    tracing::warn!(
                        service = name,
                        "autoscaler: history of day {day} not kept: {e}"
                    );
                }
            }
        }
        self.history_written = Some((Instant::now(), failed));
        // A day past those kept is not worth a write any more (nor whole in memory).
        let oldest = newest.map_or(i64::MIN, |m| {
            forecast_history::day_of(m) - forecast_history::KEPT_DAYS + 1
        });
        self.unkept_days.retain(|&d| d > oldest);
    }

    fn note_unkept(&mut self, day: i64) {
        if !self.unkept_days.contains(&day) {
            self.unkept_days.push(day);
        }
    }

    /// Keeps what was learned from the service's past (gaps, dips, start times) in the store
    /// when [`learned::write_due`] (with `now`, the state is about to go). A failed write is
    /// logged and tried again at the next interval.
    fn keep_learned(&mut self, server: &Server, name: &str, now: bool) {
        let Some(kept) = self.learned_kept else {
            return;
        };
        let noted = learned::noted(&self.spec, &self.state);
        let since = self.learned_written.map(|t| t.elapsed());
        if !learned::write_due(kept, noted, since, now) {
            return;
        }
        self.learned_written = Some(Instant::now());
        match learned::keep(
            server.store(),
            name,
            self.incarnation,
            &self.spec,
            &self.state,
        ) {
            Ok(()) => self.learned_kept = Some(noted),
            Err(e) => tracing::warn!(
                service = name,
                "autoscaler: what was learned is not kept: {e}"
            ),
        }
    }

    /// Keeps the blocks of the recent load that ended since the last write in the store; with
    /// `now` (the state is about to go), the block in progress too. A failed write is logged
    /// and tried again at the next tick.
    fn keep_window(&mut self, server: &Server, name: &str, now: bool) {
        let newest = self.metrics.samples().next_back().map(|s| block_of(s.at));
        let ended = newest.is_some_and(|n| self.window_written.is_none_or(|w| n > w + 1));
        let in_progress = now && newest > self.window_written;
        if !(ended || in_progress) {
            return;
        }
        let past = self.metrics.past();
        let (store, written) = (server.store(), self.window_written);
        match recent_load::keep(store, name, self.incarnation, &past, written, now) {
            Ok(written) => self.window_written = written,
            Err(e) => tracing::warn!(
                service = name,
                "autoscaler: the recent load is not kept: {e}"
            ),
        }
    }
}

/// The recent load kept of a service's `incarnation`, and its newest block; none when it could
/// not be read (the window then starts afresh, as on a first start).
fn restore_window(server: &Server, name: &str, incarnation: u64) -> (Past, Option<u64>) {
    match recent_load::load(server.store(), name, incarnation) {
        Ok((past, newest)) => {
            if !past.samples.is_empty() {
                let hour = past.hours.iter().map(|(_, b)| b.len()).max().unwrap_or(0);
                tracing::info!(
                    service = name,
                    samples = past.samples.len(),
                    hour_blocks = hour,
                    "autoscaler: recent load taken up from the store"
                );
            }
            // The newest block read may have been kept in part (the autoscaler stopped while
            // it ran): it is written again when it ends.
            (past, newest.and_then(|n| n.checked_sub(1)))
        }
        Err(e) => {
            tracing::warn!(
                service = name,
                "autoscaler: the kept recent load could not be read; the window starts afresh: {e}"
            );
            (Past::default(), None)
        }
    }
}

/// Deletes a service's kept recent load; a failure is logged (the keys stay until the next
/// time).
fn forget_window(server: &Server, name: &str) {
    if let Err(e) = recent_load::forget(server.store(), name) {
        tracing::warn!(
            service = name,
            "autoscaler: kept recent load not deleted: {e}"
        );
    }
}

/// Reads what a service learned from its past into `state` when its settings learn from it,
/// and deletes it otherwise. Returns what was noted after the read, from which new spells are
/// kept; `None` when nothing is to be kept.
fn restore_learned(
    server: &Server,
    name: &str,
    incarnation: u64,
    spec: &ebb_core::AutoscaleSpec,
    state: &mut State,
) -> Option<learned::Noted> {
    if !learned::learns(spec) {
        forget_learned(server, name);
        return None;
    }
    match learned::load(server.store(), name, incarnation, state) {
        Ok(spells) => {
            tracing::debug!(
                service = name,
                spells,
                "autoscaler: idle gaps and dips restored"
            );
            Some(learned::noted(spec, state))
        }
        Err(e) => {
            tracing::warn!(
                service = name,
                "autoscaler: the kept idle gaps, dips and start times could not be read; they are learned afresh, \
                 and they are not kept until the service's autoscaling is next set up: {e}"
            );
            None
        }
    }
}

/// Whether `spec` forecasts (in `shadow` or `on` mode): its history is kept.
fn forecasts(spec: &ebb_core::AutoscaleSpec) -> bool {
    spec.forecast != ForecastMode::Off
}

/// Deletes what a service learned from its past; a failure is logged (the key stays until the
/// next time).
fn forget_learned(server: &Server, name: &str) {
    if let Err(e) = learned::forget(server.store(), name) {
        tracing::warn!(
            service = name,
            "autoscaler: kept idle gaps and dips not deleted: {e}"
        );
    }
}

/// Deletes a service's kept history and its forecast's gauges; a failure is logged (the keys
/// stay until the next time the service is forgotten, or a load finds them unusable), and never
/// holds up a decision.
fn forget_history(server: &Server, name: &str) {
    server.telemetry().forget_forecast(name);
    if let Err(e) = forecast_history::forget(server.store(), name) {
        tracing::warn!(service = name, "autoscaler: kept history not deleted: {e}");
    }
}

/// One service's inputs to a tick, read from the store and the router.
struct TickInput {
    spec: Versioned<ServiceSpec>,
    /// The load of the last second.
    sample: Sample,
    /// The instances serving it.
    ready: u32,
}

/// Decides one autoscaled service's count for a tick at `now`: its window takes the sample and
/// [`decide`] (pure) proposes the count. `None` for a service no longer tracked (no longer
/// autoscaled). Touches nothing outside `services`.
fn decide_one(
    services: &mut HashMap<String, Scaled>,
    input: TickInput,
    now: Now,
) -> Option<(Versioned<ServiceSpec>, Decision)> {
    let s = services.get_mut(&input.spec.value.name)?;
    if let Some(stale) = s.metrics.push(input.sample) {
        tracing::warn!(
            service = %input.spec.value.name,
            refused = s.metrics.stale(),
            "autoscaler: {stale}"
        );
    }
    let decision = decide(&s.spec, &mut s.state, &s.metrics, input.ready, now);
    Some((input.spec, decision))
}

/// The loop's state across ticks; the decisions themselves are pure.
pub struct Autoscaler {
    server: Server,
    router: Listeners,
    services: HashMap<String, Scaled>,
    /// Origin of the monotonic clock handed to the policy.
    epoch: Instant,
    /// What that clock reads at `epoch`: the wall clock's time then, so that the samples a
    /// past process kept ([`recent_load`]) stand before this one's on the same clock, in the
    /// same 90 s blocks.
    origin: Duration,
    /// Whether what the store keeps of services that no longer use it was swept (at the first
    /// refresh: a service deleted while no autoscaler ran left its keys).
    swept: bool,
}

impl Autoscaler {
    /// An autoscaler for `server`'s services that reads their traffic from `router`; it tracks
    /// nothing before its first tick.
    pub fn new(server: Server, router: Listeners) -> Autoscaler {
        Autoscaler {
            server,
            router,
            services: HashMap::new(),
            epoch: Instant::now(),
            origin: Duration::from_millis(now_ms()),
            swept: false,
        }
    }

    /// Keeps every service's idle gaps, dips and forecast history noted since their last write (the
    /// autoscaler stops).
    pub fn flush(&mut self) {
        for (name, s) in &mut self.services {
            s.keep_learned(&self.server, name, true);
            s.keep_history(&self.server, name, true);
            s.keep_window(&self.server, name, true);
        }
    }

    /// Deletes what the store keeps of services that do not use it now (a service deleted, or
    /// whose settings changed, while no autoscaler ran left it there): the idle gaps and dips of
    /// services that learn from neither, the forecast's days of services without a forecast.
    /// Only keys are read.
    fn sweep_kept(&self, specs: &[Versioned<ServiceSpec>]) -> Result<(), StoreError> {
        let uses = |name: &str, rule: fn(&ebb_core::AutoscaleSpec) -> bool| {
            specs
                .iter()
                .any(|v| v.value.name == name && v.value.autoscale.as_ref().is_some_and(rule))
        };
        let store = self.server.store();
        for key in store.list_keys(keys::AUTOSCALE_GAPS)? {
            let name = key.trim_start_matches(keys::AUTOSCALE_GAPS);
            if !uses(name, learned::learns) {
                forget_learned(&self.server, name);
            }
        }
        for name in forecast_history::kept_services(store)? {
            if !uses(&name, forecasts) {
                forget_history(&self.server, &name);
            }
        }
        for name in recent_load::kept_services(store)? {
            if !uses(&name, |_| true) {
                forget_window(&self.server, &name);
            }
        }
        Ok(())
    }

    fn now(&self) -> Now {
        Now::new(self.origin + self.epoch.elapsed(), now_ms() as i64)
    }

    /// Autoscaled services as stored now; services no longer autoscaled are forgotten.
    fn refresh(&mut self) -> Result<Vec<Versioned<ServiceSpec>>, StoreError> {
        let specs: Vec<Versioned<ServiceSpec>> = keys::services(self.server.store())?
            .into_iter()
            .filter(|v| v.value.autoscale.is_some())
            .collect();
        let gone: Vec<String> = self
            .services
            .keys()
            .filter(|name| !specs.iter().any(|v| &v.value.name == *name))
            .cloned()
            .collect();
        for name in gone {
            self.services.remove(&name);
            forget_history(&self.server, &name);
            forget_learned(&self.server, &name);
            forget_window(&self.server, &name);
        }
        if !self.swept {
            // Best effort: a failed sweep must not hold up scaling; the next leader sweeps.
            if let Err(e) = self.sweep_kept(&specs) {
                tracing::warn!("autoscaler: what the store keeps of gone services not swept: {e}");
            }
            self.swept = true;
        }
        for v in &specs {
            let Some(wanted) = &v.value.autoscale else {
                continue;
            };
            let (name, incarnation) = (&v.value.name, v.create_revision);
            let carried = match self.services.get_mut(name) {
                Some(s) if s.incarnation == incarnation && &s.spec == wanted => continue,
                // New settings for the same service: what was noted since the last write is kept
                // before the store is read again, and the recent load carries over (the load is
                // the same whatever the settings).
                Some(s) if s.incarnation == incarnation => {
                    s.keep_learned(&self.server, name, true);
                    s.keep_history(&self.server, name, true);
                    Some((s.metrics.past(), s.window_written))
                }
                // A new service, or one deleted and deployed again since the last tick: what
                // the old one learned is not its own.
                _ => None,
            };
            let now = self.now().mono;
            let scaled = Scaled::new(&self.server, name, incarnation, wanted, carried, now);
            self.services.insert(name.clone(), scaled);
        }
        Ok(specs)
    }

    /// One tick: a sample per service, a decision, and the writes it calls for.
    pub fn tick(&mut self) -> Result<(), StoreError> {
        let specs = self.refresh()?;
        if specs.is_empty() {
            return Ok(());
        }
        let now = self.now();
        let wants_usage = specs.iter().any(|v| {
            v.value
                .autoscale
                .as_ref()
                .is_some_and(|a| a.targets.cpu.is_some() || a.targets.memory.is_some())
        });
        let usage = if wants_usage {
            self.usage_by_service()?
        } else {
            HashMap::new()
        };
        let inputs: Vec<TickInput> = specs
            .into_iter()
            .map(|spec| {
                let name = spec.value.name.as_str();
                let mut sample = self.sample(name, now.mono);
                if let Some(u) = usage.get(name) {
                    (sample.cpu, sample.memory) = (u.cpu, u.memory);
                }
                // The policy compares load with the instances serving it: the routed ones (a
                // service without a port has no router view; its count stands in).
                let ready = self
                    .router
                    .routed_count(name)
                    .unwrap_or(spec.value.instances);
                TickInput {
                    spec,
                    sample,
                    ready,
                }
            })
            .collect();
        // Decided and written one service at a time: a failed write ends the tick before the
        // next service's state moves on to a count that was never stored.
        for input in inputs {
            if let Some((spec, decision)) = decide_one(&mut self.services, input, now) {
                self.apply(spec, decision)?;
            }
        }
        for (name, s) in &mut self.services {
            s.keep_history(&self.server, name, false);
            s.keep_learned(&self.server, name, false);
            s.keep_window(&self.server, name, false);
        }
        Ok(())
    }

    /// Requests wait at a service with no instance: start one now (the policy's `demand`).
    pub fn on_demand(&mut self) -> Result<(), StoreError> {
        let specs = self.refresh()?;
        let now = self.now();
        for v in specs {
            let queued = peers::cluster_queued(&self.server, &self.router, &v.value.name);
            if v.value.instances > 0 || queued == 0 {
                continue;
            }
            let Some(s) = self.services.get_mut(&v.value.name) else {
                continue;
            };
            if let Some(decision) = demand(&s.spec, &mut s.state, 0, now) {
                self.apply(v, decision)?;
            }
        }
        Ok(())
    }

    /// Between ticks: services whose load over the last half second calls for panic, reading
    /// after reading, scale at once. Reads the store only for a service that scales.
    pub fn burst(&mut self) -> Result<(), StoreError> {
        let now = self.now();
        let mut scaling = Vec::new();
        for (name, s) in self.services.iter_mut() {
            let mut since = None;
            if let Some((identity, snapshot)) = self.router.service_snapshot(name) {
                // A rebuilt listener has new counters: older marks cannot be compared with them.
                s.marks.retain(|(id, _)| *id == identity);
                since = s
                    .marks
                    .iter()
                    .rev()
                    .find(|(_, m)| snapshot.at.duration_since(m.at) >= BURST_SPAN)
                    .map(|(_, m)| snapshot.since(m));
                if s.marks.len() == BURST_MARKS {
                    s.marks.pop_front();
                }
                s.marks.push_back((identity, snapshot));
            } else {
                s.marks.clear();
            }
            // The other servers' load over the same half second, from their latest reports.
            let elsewhere = self
                .server
                .peer_load()
                .window(name, BURST_SPAN, Instant::now());
            let w = match (since, elsewhere) {
                (Some(mut w), Some(e)) => {
                    w.add(&e);
                    w
                }
                (Some(w), None) | (None, Some(w)) => w,
                (None, None) => continue,
            };
            let ready = self.router.routed_count(name).unwrap_or(0);
            let reading = Reading {
                span: w.span,
                concurrency: Some(w.concurrency),
                rps: Some(w.rps),
            };
            if let Some(d) = burst(&s.spec, &mut s.state, &reading, ready, now) {
                scaling.push((name.clone(), d));
            }
        }
        for (name, decision) in scaling {
            let Some(v) = keys::get_service(self.server.store(), &name)? else {
                continue;
            };
            // Deleted and deployed again since the last tick: a decision from its predecessor's
            // state is not this service's (the next tick tracks it afresh).
            if self.services.get(&name).map(|s| s.incarnation) == Some(v.create_revision) {
                self.apply(v, decision)?;
            }
        }
        Ok(())
    }

    /// Whether any service is autoscaled (the burst check has nothing to do otherwise).
    pub fn is_idle(&self) -> bool {
        self.services.is_empty()
    }

    /// This second's figures for `service` from the load balancers of every server (none
    /// without a public port: missing metrics never scale a service down).
    fn sample(&self, service: &str, at: Duration) -> Sample {
        let mut sample = Sample::new(at);
        let queued = peers::cluster_queued(&self.server, &self.router, service);
        if let Some(w) = peers::cluster_window(&self.server, &self.router, service, SAMPLE_SPAN) {
            sample.concurrency = Some(w.concurrency);
            sample.rps = Some(w.rps);
            sample.latency_p95 = w.p(0.95);
            sample.requests = w.requests.saturating_add(u64::from(queued));
        } else if queued > 0 {
            sample.requests = u64::from(queued);
        }
        sample
    }

    /// Each service's CPU and memory use as its nodes last reported it: the sum over its
    /// running instances of use / reservation (3 instances at 70 % → 2.1, what the policy
    /// divides by the per-instance target). None when an instance has no figure yet — a
    /// missing metric, which never scales the service down.
    fn usage_by_service(&self) -> Result<HashMap<String, Usage>, StoreError> {
        let reported = self.server.nodes().instance_usage();
        let (assignments, _) = keys::assignments(self.server.store())?;
        let mut out: HashMap<String, Usage> = HashMap::new();
        for a in assignments
            .iter()
            .filter(|a| a.value.desired == ebb_core::DesiredState::Run)
        {
            let u = reported.get(&a.value.id);
            let entry = out.entry(a.value.service.clone()).or_insert(Usage {
                cpu: Some(0.0),
                memory: Some(0.0),
            });
            entry.cpu = sum(entry.cpu, u.and_then(|u| u.cpu_fraction));
            entry.memory = sum(entry.memory, u.and_then(|u| u.memory_fraction));
        }
        Ok(out)
    }

    /// Writes a changed count (compare-and-swap on the spec, so a concurrent deploy wins and
    /// the next tick decides again) and records why.
    fn apply(&mut self, v: Versioned<ServiceSpec>, decision: Decision) -> Result<(), StoreError> {
        let name = v.value.name.clone();
        if let Some(s) = self.services.get_mut(&name) {
            s.last_reason = Some(decision.reason.clone());
        }
        let from = v.value.instances;
        if decision.desired == from {
            self.server
                .telemetry()
                .decision(&name, decision.rule, false);
            return Ok(());
        }
        let mut spec = v.value;
        spec.instances = decision.desired;
        let written = self.server.store().put(
            &keys::service(&name),
            &keys::encode(&spec),
            Expect::ModRevision(v.mod_revision),
        );
        // A change counts once it is written: a write that lost a race changed nothing.
        self.server
            .telemetry()
            .decision(&name, decision.rule, written.is_ok());
        match written {
            Ok(_) => {
                self.server.record(
                    Event::new(
                        now_ms(),
                        EventKind::ServiceScaled,
                        format!(
                            "autoscaled {from} → {}: {}",
                            decision.desired, decision.reason
                        ),
                    )
                    .service(&name),
                );
                Ok(())
            }
            Err(StoreError::Conflict { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The last decision's reason per autoscaled service.
    pub fn reasons(&self) -> HashMap<String, String> {
        self.services
            .iter()
            .filter_map(|(n, s)| s.last_reason.clone().map(|r| (n.clone(), r)))
            .collect()
    }
}

/// The autoscaler's last reason per service, for `ebb status` and `ebb ps`; the API reads it.
#[derive(Debug, Default)]
pub struct Reasons(std::sync::Mutex<HashMap<String, String>>);

impl Reasons {
    /// Replaces the last reasons (by service).
    pub fn set(&self, reasons: HashMap<String, String>) {
        *lock(&self.0) = reasons;
    }

    /// The last reason for `service`, if it is autoscaled.
    pub fn get(&self, service: &str) -> Option<String> {
        lock(&self.0).get(service).cloned()
    }
}

/// What woke the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// A new router sample: decide for every autoscaled service.
    Tick,
    /// A request waits at a service with no instance.
    Demand,
    /// Time to check the load since the last sample.
    Burst,
}

/// Runs the autoscaler until `stop` is cancelled: after every router sample, and at once on
/// demand at a service with no instance.
pub async fn run(server: Server, router: Listeners, stop: CancellationToken) {
    let mut samples = router.samples();
    let demand = router.demand();
    let autoscaler = std::sync::Arc::new(std::sync::Mutex::new(Autoscaler::new(
        server.clone(),
        router,
    )));
    let mut bursts = tokio::time::interval(BURST_CHECK);
    bursts.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let wake = async {
            tokio::select! {
                _ = samples.changed() => Pass::Tick,
                _ = demand.notified() => Pass::Demand,
                _ = bursts.tick() => Pass::Burst,
            }
        };
        let Some(pass) = run_loop::next(&stop, wake).await else {
            let a = autoscaler.clone();
            run_loop::blocking_pass("autoscaler's last write of what it learned", move || {
                lock(&a).flush();
                Ok::<(), StoreError>(())
            })
            .await;
            return;
        };
        if pass == Pass::Burst && lock(&autoscaler).is_idle() {
            continue;
        }
        let (a, server) = (autoscaler.clone(), server.clone());
        run_loop::blocking_pass("autoscaler pass", move || {
            let mut a = lock(&a);
            let result = match pass {
                Pass::Tick => a.tick(),
                Pass::Demand => a.on_demand(),
                Pass::Burst => a.burst(),
            };
            server.autoscale_reasons().set(a.reasons());
            result
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebb_core::autoscale::{AutoscaleSpec, ScaleTargets};

    fn scaled(spec: &AutoscaleSpec) -> Scaled {
        Scaled {
            incarnation: 7,
            learned_kept: None,
            learned_written: None,
            window_written: None,
            metrics: Metrics::for_config(spec),
            spec: spec.clone(),
            state: State::default(),
            last_reason: None,
            marks: Default::default(),
            seen_minute: None,
            unkept_days: Vec::new(),
            history_written: None,
            loaded: true,
        }
    }

    fn input(name: &str, autoscale: &AutoscaleSpec, at: Duration, concurrency: f64) -> TickInput {
        let mut spec = ServiceSpec::new(name, vec!["app".into()]);
        spec.instances = 1;
        spec.autoscale = Some(autoscale.clone());
        TickInput {
            spec: Versioned {
                value: spec,
                mod_revision: 7,
                create_revision: 7,
            },
            sample: Sample {
                concurrency: Some(concurrency),
                requests: 100,
                ..Sample::new(at)
            },
            ready: 1,
        }
    }

    /// A server on `store`, its writes fenced on a leader key that `lose` takes away.
    fn fenced_server(store: &std::sync::Arc<ebb_store::SqliteStore>) -> (Server, impl Fn()) {
        use ebb_store::{Fence, FencedStore, KvStore};
        let key = "control/leader";
        let revision = store.put(key, b"me", Expect::Any).unwrap();
        let fence = Fence {
            key: key.into(),
            revision,
        };
        let fenced = FencedStore::new(store.clone(), fence);
        let server = Server::new(std::sync::Arc::new(fenced), "t".into()).unwrap();
        let inner = store.clone();
        let lose = move || {
            inner.put(key, b"another", Expect::Any).unwrap();
        };
        (server, lose)
    }

    #[test]
    fn a_day_whose_last_write_failed_is_kept_with_the_next_at_the_stop() {
        use ebb_store::KvStore;
        let (_dir, store) = crate::controllers::temp_store();
        let store = std::sync::Arc::new(store);
        let (fenced, lose) = fenced_server(&store);
        let plain = Server::new(store.clone(), "t".into()).unwrap();
        let mut s = scaled(&AutoscaleSpec::new(1, 5, ScaleTargets::default()));
        assert_eq!(s.spec.forecast, ForecastMode::On);
        let (day, minute) = (19, 19 * ebb_autoscaler::DAY_MINUTES);
        let record = |s: &mut Scaled, m: i64, server: &Server| {
            s.state.forecaster_mut().history_mut().record(m, 3.0);
            s.keep_history(server, "web", false);
        };
        // 23:59 of day 19 is in progress; it completes at 00:00, when the leadership is lost.
        record(&mut s, minute + 1439, &fenced);
        lose();
        record(&mut s, minute + 1440, &fenced);
        assert_eq!(s.unkept_days, [day], "the failed day is still to write");
        // 00:01: day 20 has a completed minute too; the failed write backs off.
        record(&mut s, minute + 1441, &fenced);
        assert_eq!(s.unkept_days, [day, day + 1]);
        let kept = |d: i64| store.get(&keys::autoscale_history("web", d)).unwrap();
        assert!(kept(day).is_none() && kept(day + 1).is_none());
        // The stop writes both days, the minute in progress with them.
        s.keep_history(&plain, "web", true);
        assert!(s.unkept_days.is_empty());
        let mut restored = ebb_autoscaler::Forecaster::default();
        let basis = forecast_history::basis(&s.spec);
        let days = forecast_history::load(&*store, "web", 7, day + 1, &basis, &mut restored);
        assert_eq!(days.unwrap(), 2);
        for m in [minute + 1439, minute + 1440, minute + 1441] {
            assert_eq!(restored.history().get(m), Some(3.0), "minute {m}");
        }
    }

    #[test]
    fn a_tick_feeds_each_window_and_decides_from_it_with_the_clock_given() {
        let targets = ScaleTargets {
            concurrency: Some(10.0),
            ..ScaleTargets::default()
        };
        let autoscale = AutoscaleSpec::new(1, 20, targets);
        let mut services = HashMap::from([("web".to_string(), scaled(&autoscale))]);
        let mut last = None;
        for second in 1..=10u64 {
            let at = Duration::from_secs(second);
            let one = input("web", &autoscale, at, 43.2);
            last = decide_one(&mut services, one, Now::unix(at));
        }
        let (spec, decision) = last.expect("a decision");
        assert_eq!(spec.value.name, "web");
        assert_eq!(decision.desired, 5, "{}", decision.reason);
        assert_eq!(
            services["web"].metrics.samples().count(),
            10,
            "one sample per tick"
        );
    }

    /// An autoscaler on `store`, with the runtime its router is carried on (only carried: one
    /// without worker threads will do).
    fn autoscaler_on(
        store: &std::sync::Arc<ebb_store::SqliteStore>,
    ) -> (tokio::runtime::Runtime, Autoscaler) {
        use ebb_router::{limit::ConnectionLimit, read_ahead::ReadAhead};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let server = Server::new(store.clone(), "t".into()).unwrap();
        let router = Listeners::new(
            [127, 0, 0, 1].into(),
            runtime.handle().clone(),
            ConnectionLimit::new(8),
            std::sync::Arc::new(ReadAhead::in_memory()),
        );
        (runtime, Autoscaler::new(server, router))
    }

    #[test]
    fn a_service_deleted_and_deployed_again_between_two_ticks_starts_afresh() {
        use ebb_store::KvStore;
        let (_dir, store) = crate::controllers::temp_store();
        let store = std::sync::Arc::new(store);
        let (_runtime, mut autoscaler) = autoscaler_on(&store);
        let mut web = ServiceSpec::new("web", vec!["app".into()]);
        web.autoscale = Some(AutoscaleSpec::new(1, 5, ScaleTargets::default()));
        let key = keys::service("web");
        let deploy = || store.put(&key, &keys::encode(&web), Expect::Any).unwrap();
        deploy();
        autoscaler.refresh().unwrap();
        let first = autoscaler.services["web"].incarnation;
        let minute = 19 * ebb_autoscaler::DAY_MINUTES;
        let history_at =
            |a: &Autoscaler| a.services["web"].state.forecaster().history().get(minute);
        let s = autoscaler.services.get_mut("web").unwrap();
        s.state.forecaster_mut().history_mut().record(minute, 3.0);
        assert_eq!(history_at(&autoscaler), Some(3.0));
        // An unchanged service keeps what it learned from one tick to the next.
        autoscaler.refresh().unwrap();
        assert_eq!(history_at(&autoscaler), Some(3.0));
        // Deleted and deployed again under its name before the next tick: a new incarnation,
        // which learns nothing from its predecessor.
        store.delete(&key, Expect::Any).unwrap();
        deploy();
        autoscaler.refresh().unwrap();
        assert_ne!(autoscaler.services["web"].incarnation, first);
        assert_eq!(history_at(&autoscaler), None);
    }

    #[test]
    fn a_learned_scale_down_delay_keeps_its_dips_across_autoscalers_and_forgets_them_when_off() {
        use ebb_autoscaler::Dip;
        use ebb_store::KvStore;
        let (_dir, store) = crate::controllers::temp_store();
        let store = std::sync::Arc::new(store);
        let mut web = ServiceSpec::new("web", vec!["app".into()]);
        // scale_down_delay = "auto", the default.
        let auto = AutoscaleSpec::new(1, 5, ScaleTargets::default());
        web.autoscale = Some(auto.clone());
        let key = keys::service("web");
        store.put(&key, &keys::encode(&web), Expect::Any).unwrap();
        let dips =
            |a: &Autoscaler| -> Vec<Dip> { a.services["web"].state.dips().all_dips().collect() };
        // Rises of one level and of two.
        let seen: Vec<Dip> = (1..=10)
            .map(|s| Dip::new(Duration::from_secs(s), 1 + s as u32 % 2))
            .collect();
        {
            let (_runtime, mut first) = autoscaler_on(&store);
            first.refresh().unwrap();
            let s = first.services.get_mut("web").unwrap();
            // Level 1's dips, and those of 2–3 (two levels a rise).
            let of = |levels| {
                seen.iter()
                    .copied()
                    .filter(|d| d.levels == levels)
                    .collect()
            };
            let bands: [Vec<Dip>; 2] = [of(1), of(2)];
            s.state.dips_mut().restore(seen.iter().copied(), bands);
            first.flush();
        }
        // The next leader, or this server after a restart: the delay is learned at once.
        let (_runtime, mut next) = autoscaler_on(&store);
        next.refresh().unwrap();
        assert_eq!(dips(&next), seen);
        let band = |b| next.services["web"].state.dips().band_dips(b).count();
        assert_eq!((band(0), band(1)), (5, 5));
        // The fixed delay again: nothing is learned, and what was kept is deleted.
        web.autoscale = Some(AutoscaleSpec {
            scale_down_auto: false,
            ..auto
        });
        store.put(&key, &keys::encode(&web), Expect::Any).unwrap();
        next.refresh().unwrap();
        assert!(store.get(&keys::autoscale_gaps("web")).unwrap().is_none());
    }

    #[test]
    fn the_first_refresh_sweeps_what_services_that_do_not_use_it_left() {
        use ebb_store::KvStore;
        let (_dir, store) = crate::controllers::temp_store();
        let store = std::sync::Arc::new(store);
        // web forecasts and learns a keep-alive and a delay; plain lost its [autoscale] while
        // no autoscaler ran (so none tracks it); gone was deleted then.
        let mut web = ServiceSpec::new("web", vec!["app".into()]);
        web.autoscale = Some(AutoscaleSpec::new(0, 5, ScaleTargets::default()));
        let plain = ServiceSpec::new("plain", vec!["app".into()]);
        for spec in [&web, &plain] {
            let key = keys::service(&spec.name);
            store.put(&key, &keys::encode(spec), Expect::Any).unwrap();
        }
        let left = |service: &str| {
            vec![
                keys::autoscale_history(service, 20_000),
                keys::autoscale_history(service, 20_001),
                keys::autoscale_gaps(service),
            ]
        };
        for service in ["web", "plain", "gone"] {
            for key in left(service) {
                // Not decodable: read, the autoscaler would skip it but leave it in place.
                store.put(&key, b"x", Expect::Any).unwrap();
            }
        }
        let (_runtime, mut autoscaler) = autoscaler_on(&store);
        autoscaler.refresh().unwrap();
        let kept = |key: &String| store.get(key).unwrap().is_some();
        assert!(left("web").iter().all(kept), "web still uses them");
        for service in ["plain", "gone"] {
            assert!(!left(service).iter().any(kept), "{service}'s are swept");
        }
    }

    #[test]
    fn a_service_no_longer_tracked_gets_no_decision() {
        let autoscale = AutoscaleSpec::new(1, 5, ScaleTargets::default());
        let mut services = HashMap::new();
        let at = Duration::from_secs(1);
        let gone = input("gone", &autoscale, at, 5.0);
        assert!(decide_one(&mut services, gone, Now::unix(at)).is_none());
    }
}
