//! The health loop of one running process: probe every interval, publish ready/unready, and return
//! when the instance must be killed as unhealthy. It only touches shared state, never the runner,
//! so the runner can select on it next to the process exit and its goal.

use super::health::{self, Change, Target, Tracker};
use super::shared::Shared;
use ebb_core::{EventKind, HealthSpec, InstanceState};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::{self, MissedTickBehavior};

/// Until an instance first passes its check, it is probed this often, whatever its interval: a
/// cold start (a request held while the first instance of a service starts) waits for exactly
/// this moment, and issue 4 allows 20 ms of overhead over the app's own start. A failed probe of
/// a port nobody listens on yet costs a refused connect, nothing more.
pub const STARTUP_PROBE_INTERVAL: Duration = Duration::from_millis(10);

/// Floor for intervals and timeouts, so a zero from a bad spec cannot spin or panic.
const MIN_PERIOD: Duration = Duration::from_millis(10);

pub struct Monitor {
    pub shared: Arc<Shared>,
    pub id: String,
    pub service: String,
    pub spec: HealthSpec,
    pub target: Target,
    /// When the process started: failures only kill it after `start_period`.
    pub started_at: Instant,
}

impl Monitor {
    /// Runs until the instance is unhealthy; returns the last failure.
    pub async fn run(self) -> String {
        let ready = self.shared.status(&self.id).is_some_and(|s| s.ready);
        let mut tracker = Tracker::new(&self.spec, ready);
        let interval = self.spec.interval.max(MIN_PERIOD);
        let timeout = self.spec.timeout.max(MIN_PERIOD);
        let mut prober = health::Prober::new(self.spec.check.clone(), self.target.clone());
        if !ready {
            self.probe_until_first_pass(&mut prober, &mut tracker, interval, timeout)
                .await;
        }
        let start = next_on_grid(self.shared.epoch, time::Instant::now(), interval);
        let mut ticker = time::interval_at(start, interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            let result = prober.probe(timeout).await;
            self.publish(tracker.record(result.is_ok()), &tracker, &result);
            if let Err(error) = result {
                if health::is_unhealthy(&self.spec, tracker.failures(), self.started_at.elapsed()) {
                    return error;
                }
            }
            ticker.tick().await;
        }
    }

    /// Probes every [`STARTUP_PROBE_INTERVAL`] until the first pass (published at once), for
    /// at most one `interval` — the time the first regular probe would have taken anyway, so a
    /// failing instance is judged no later than before. Failures here are not counted: a
    /// process that has not bound its port yet is starting, not unhealthy.
    async fn probe_until_first_pass(
        &self,
        prober: &mut health::Prober,
        tracker: &mut Tracker,
        interval: Duration,
        timeout: Duration,
    ) {
        let until = time::Instant::now() + interval;
        while time::Instant::now() < until {
            time::sleep(STARTUP_PROBE_INTERVAL).await;
            let result = prober.probe(timeout.min(interval)).await;
            if result.is_ok() {
                self.publish(tracker.record(true), tracker, &result);
                if tracker.is_ready() {
                    return;
                }
            }
        }
    }

    fn publish(&self, change: Change, tracker: &Tracker, result: &Result<(), String>) {
        match change {
            Change::Ready => {
                self.shared.update(&self.id, |s| {
                    s.ready = true;
                    s.state = InstanceState::Running;
                    s.reason = None;
                });
                let message = format!("ready: {} health check passed", check_name(&self.spec));
                self.shared
                    .event(EventKind::InstanceReady, &self.service, &self.id, message);
            }
            Change::Unready => {
                let why = result.as_ref().err().map_or("", String::as_str);
                let reason = format!("health: {why}");
                self.shared.update(&self.id, |s| {
                    s.ready = false;
                    s.reason = Some(reason);
                });
                let message = format!("unready: {why} ({} failure in a row)", tracker.failures());
                self.shared
                    .event(EventKind::InstanceUnready, &self.service, &self.id, message);
            }
            // Not ready yet and failing: the failure is why (an update that changes nothing
            // sends nothing).
            Change::None => {
                if let (Err(why), false) = (result, tracker.is_ready()) {
                    let reason = format!("health: {why}");
                    self.shared.update(&self.id, |s| s.reason = Some(reason));
                }
            }
        }
    }
}

/// The first instant at or after `now` on the grid `epoch + k × interval`. Every instance with
/// the same interval probes on the same grid, so the runtime wakes once per interval for all of
/// them rather than once per instance: this halves the cost of checking many instances.
fn next_on_grid(epoch: time::Instant, now: time::Instant, interval: Duration) -> time::Instant {
    let elapsed = now.saturating_duration_since(epoch).as_nanos();
    let step = interval.as_nanos().max(1);
    let periods = elapsed.div_ceil(step);
    let offset = u64::try_from(periods.saturating_mul(step)).unwrap_or(u64::MAX);
    epoch + Duration::from_nanos(offset)
}

fn check_name(spec: &HealthSpec) -> String {
    match &spec.check {
        ebb_core::HealthCheck::Tcp => "tcp".into(),
        ebb_core::HealthCheck::Http { path } => format!("http GET {path}"),
        ebb_core::HealthCheck::Command { .. } => "command".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_of_equal_interval_share_one_grid() {
        let epoch = time::Instant::now();
        let second = Duration::from_secs(1);
        let at = |ms: u64| epoch + Duration::from_millis(ms);
        assert_eq!(next_on_grid(epoch, at(0), second), at(0));
        assert_eq!(next_on_grid(epoch, at(1), second), at(1000));
        assert_eq!(next_on_grid(epoch, at(1000), second), at(1000));
        assert_eq!(next_on_grid(epoch, at(2500), second), at(3000));
        assert_eq!(
            next_on_grid(at(10), epoch, second),
            at(10),
            "a clock before the epoch"
        );
    }
}
