//! The last hour of each service's instances against its load, for the dashboard's sparklines
//! (`GET /v1/history`). Sampled by this server every [`STEP`] from its own load balancer and the
//! services' rollout counts, and kept in memory: a restarted server starts a new hour.

use crate::Server;
use ebb_core::api::{HistorySample, ServiceHistory};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Time between samples: 10 s, the load balancer's view window (`routing::traffic::VIEW_WINDOW`),
/// so that each sample's rate covers the step before it and no request is counted twice.
pub const STEP: Duration = Duration::from_secs(10);

/// How much is kept: the hour the sparkline shows (360 samples a service).
pub const SPAN: Duration = Duration::from_secs(3600);

const SAMPLES: usize = (SPAN.as_secs() / STEP.as_secs()) as usize;

/// Each service's samples, oldest first.
#[derive(Default)]
pub struct History {
    series: Mutex<BTreeMap<String, VecDeque<HistorySample>>>,
}

impl History {
    /// Adds one sample per service. A service missing from `samples` was stopped: its history
    /// goes, so that what is kept is bounded by the services that exist.
    pub fn record(&self, samples: Vec<(String, HistorySample)>) {
        let names: std::collections::HashSet<&str> =
            samples.iter().map(|(name, _)| name.as_str()).collect();
        let mut series = self.lock();
        series.retain(|name, _| names.contains(name.as_str()));
        for (name, sample) in samples {
            let points = series.entry(name).or_default();
            if points.len() == SAMPLES {
                points.pop_front();
            }
            points.push_back(sample);
        }
    }

    /// The history of one service, or of all.
    pub fn view(&self, service: Option<&str>) -> Vec<ServiceHistory> {
        self.lock()
            .iter()
            .filter(|(name, _)| service.is_none_or(|s| s == name.as_str()))
            .map(|(name, points)| ServiceHistory {
                service: name.clone(),
                samples: points.iter().copied().collect(),
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, VecDeque<HistorySample>>> {
        self.series.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Samples every [`STEP`] until `stop`.
pub async fn sample(server: Server, stop: CancellationToken) {
    let mut tick = tokio::time::interval(STEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match current(&server) {
            Ok(samples) => server.history().record(samples),
            Err(e) => tracing::debug!(error = %e.message(), "no history sample this step"),
        }
    }
}

/// One sample per service: its rollout counts and its load over the last step.
fn current(server: &Server) -> Result<Vec<(String, HistorySample)>, crate::api::ApiError> {
    let views = crate::api::service_views(server)?;
    let traffic = server.router().map(|r| r.traffic(STEP)).unwrap_or_default();
    let at_ms = crate::now_ms();
    Ok(views
        .into_iter()
        .map(|view| {
            let rps = traffic
                .iter()
                .find(|t| t.service == view.name)
                .map_or(0.0, |t| t.traffic.rps);
            let sample = HistorySample {
                at_ms,
                rps,
                desired: view.desired,
                ready: view.ready,
            };
            (view.name, sample)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64, ready: u32) -> HistorySample {
        HistorySample {
            at_ms: ms,
            rps: ms as f64,
            desired: ready,
            ready,
        }
    }

    #[test]
    fn an_hour_is_kept_and_the_oldest_goes_first() {
        let history = History::default();
        for i in 0..(SAMPLES as u64 + 5) {
            history.record(vec![("web".into(), at(i, 1))]);
        }
        let view = history.view(Some("web"));
        assert_eq!(view[0].samples.len(), SAMPLES);
        assert_eq!(view[0].samples[0].at_ms, 5);
        assert_eq!(view[0].samples.last().unwrap().at_ms, SAMPLES as u64 + 4);
    }

    #[test]
    fn a_stopped_service_loses_its_history() {
        let history = History::default();
        history.record(vec![("web".into(), at(1, 1)), ("api".into(), at(1, 2))]);
        history.record(vec![("api".into(), at(2, 3))]);
        let view = history.view(None);
        assert_eq!(view.len(), 1);
        assert_eq!(view[0].service, "api");
        assert_eq!(view[0].samples.len(), 2);
        assert!(history.view(Some("web")).is_empty());
    }
}
