//! A service's endpoints as the data plane sees them: the current [`EndpointSet`], its
//! balancer, the service's metrics, and the cold-start queue (`queue.rs`).
//!
//! The set is swapped atomically ([`arc_swap::ArcSwap`], ARCHITECTURE.md, principle 7): a
//! request loads the current set without a lock, and an update builds a new set while requests
//! in flight keep the old one. An endpoint that stays across updates keeps its `Arc`, so its
//! load statistics (in-flight count, latency estimate) survive the swap.

mod queue;

pub use queue::MAX_QUEUED;

use crate::balance::{BalanceAlgorithm, Balancer};
use crate::endpoint::{may_eject, Endpoint, EndpointSet};
use crate::http_metrics::{DurationHistogram, HttpMetrics};
use crate::metrics::{Metrics, Snapshot};
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// A service's live endpoint set, its balancer, its service-level metrics and the queue of
/// requests waiting for a first endpoint.
pub struct Endpoints {
    current: ArcSwap<EndpointSet>,
    balancer: Box<dyn Balancer>,
    /// Whether the set has an endpoint; requests in the queue wait for it to turn true.
    ready: watch::Sender<bool>,
    /// Requests waiting in the queue now.
    queued: AtomicU32,
    /// Ejections of any endpoint of the service, ever (endpoints come and go; this stays).
    ejections: AtomicU64,
    /// Signalled when a request starts waiting for a first endpoint: a service at zero must
    /// start an instance now, not at the autoscaler's next tick.
    demand: Option<Arc<Notify>>,
    /// What clients of the service see: every request, including those that waited or failed.
    pub metrics: Metrics,
    /// The same requests as OpenTelemetry's `http.server.request.duration`, for Prometheus.
    pub http: HttpMetrics,
    /// How long requests waited in the cold-start queue (only those that found no endpoint).
    pub queue_wait: DurationHistogram,
}

impl Endpoints {
    /// An empty set whose balancer is `algorithm`, without slow start.
    pub fn new(algorithm: BalanceAlgorithm) -> Endpoints {
        Endpoints::with_slow_start(algorithm, Duration::ZERO)
    }

    /// A set whose new endpoints ramp up their share linearly over `slow_start` (0: off).
    pub fn with_slow_start(algorithm: BalanceAlgorithm, slow_start: Duration) -> Endpoints {
        Endpoints {
            current: ArcSwap::from_pointee(EndpointSet::default()),
            balancer: crate::balance::build(algorithm, slow_start),
            ready: watch::Sender::new(false),
            queued: AtomicU32::new(0),
            ejections: AtomicU64::new(0),
            demand: None,
            metrics: Metrics::new(Instant::now()),
            http: HttpMetrics::default(),
            queue_wait: DurationHistogram::default(),
        }
    }

    /// The current set (lock-free).
    pub fn load(&self) -> Arc<EndpointSet> {
        self.current.load_full()
    }

    /// Requests waiting for a ready endpoint now.
    pub fn queued(&self) -> u32 {
        self.queued.load(Ordering::Relaxed)
    }

    /// The service's cumulative metrics at `now`.
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        self.metrics
            .snapshot(now, self.ejections.load(Ordering::Relaxed))
    }

    /// Replaces the set with these `(id, addr)` pairs. Endpoints whose id and address are
    /// unchanged keep their statistics; new ones start fresh at `now`.
    pub fn update(&self, wanted: &[(String, SocketAddr)], now: Instant) {
        let old = self.current.load();
        let mut endpoints: Vec<Arc<Endpoint>> = wanted
            .iter()
            .map(|(id, addr)| {
                old.endpoints
                    .iter()
                    .find(|e| &e.id == id && e.addr == *addr)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Endpoint::new(id.clone(), *addr, now)))
            })
            .collect();
        endpoints.sort_by(|a, b| a.id.cmp(&b.id));
        endpoints.dedup_by(|a, b| a.id == b.id);
        let unchanged = endpoints.len() == old.endpoints.len()
            && endpoints
                .iter()
                .zip(&old.endpoints)
                .all(|(new, old)| Arc::ptr_eq(new, old));
        // The server calls this on every change of the store; an unchanged set stays the same
        // set (and generation), so balancers keep what they derived from it.
        if !unchanged {
            self.swap(Arc::new(EndpointSet::new(endpoints)));
        }
    }

    /// Signals `demand` whenever a request starts waiting for a first endpoint.
    pub fn with_demand_signal(mut self, demand: Arc<Notify>) -> Endpoints {
        self.demand = Some(demand);
        self
    }

    /// Takes over another set's endpoints as they are (same `Arc`s, so their in-flight counts,
    /// latency estimates and metrics carry on): for a listener rebuilt with new settings.
    pub fn inherit(&self, from: &Endpoints) {
        self.swap(from.current.load_full());
    }

    /// Makes `set` the current one and wakes the queue when it has an endpoint.
    fn swap(&self, set: Arc<EndpointSet>) {
        let has_any = !set.is_empty();
        self.current.store(set);
        self.ready
            .send_if_modified(|ready| std::mem::replace(ready, has_any) != has_any);
    }

    /// Picks an endpoint for a request: `key` is the request's hash key for consistent hashing
    /// (ignored by other algorithms). None when the set is empty.
    pub fn pick(&self, key: Option<u64>, now: Instant) -> Option<Arc<Endpoint>> {
        let set = self.current.load();
        let i = self.balancer.pick(&set, key, now)?;
        set.endpoints.get(i).cloned()
    }

    /// Records a failed attempt on `endpoint` at `now` for outlier detection; true when it was
    /// ejected by this failure (within the set's [`MAX_EJECTION_PERCENT`](crate::endpoint::MAX_EJECTION_PERCENT), never the last).
    pub fn report_failure(&self, endpoint: &Endpoint, now: Instant) -> bool {
        let ejected = endpoint.outlier.failure(now, || {
            let set = self.current.load();
            let ejected = set.endpoints.iter().filter(|e| e.is_ejected(now)).count();
            may_eject(ejected, set.len())
        });
        if ejected {
            self.ejections.fetch_add(1, Ordering::Relaxed);
        }
        ejected
    }

    /// Picks an endpoint that is not ejected and not in `tried` when there is one; otherwise
    /// as [`Endpoints::pick_excluding`] (a request still goes somewhere rather than nowhere).
    pub fn pick_available(
        &self,
        key: Option<u64>,
        tried: &[SocketAddr],
        now: Instant,
    ) -> Option<Arc<Endpoint>> {
        self.pick_matching(key, now, |e| !e.is_ejected(now) && !tried.contains(&e.addr))
            .or_else(|| self.pick_excluding(key, tried, now))
    }

    /// Picks an endpoint other than those in `tried` (for retries); falls back to any if all were tried.
    pub fn pick_excluding(
        &self,
        key: Option<u64>,
        tried: &[SocketAddr],
        now: Instant,
    ) -> Option<Arc<Endpoint>> {
        self.pick_matching(key, now, |e| !tried.contains(&e.addr))
            .or_else(|| self.pick(key, now))
    }

    /// A balanced pick that `accept`s, trying the balancer a few times before taking the first
    /// acceptable endpoint of the set (so the balancer's choice wins whenever it can).
    fn pick_matching(
        &self,
        key: Option<u64>,
        now: Instant,
        accept: impl Fn(&Endpoint) -> bool,
    ) -> Option<Arc<Endpoint>> {
        for _ in 0..3 {
            let e = self.pick(key, now)?;
            if accept(&e) {
                return Some(e);
            }
        }
        self.current
            .load()
            .endpoints
            .iter()
            .find(|e| accept(e))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::*;

    #[test]
    fn an_unchanged_update_keeps_the_set_and_every_change_makes_a_new_generation() {
        let endpoints = Endpoints::new(BalanceAlgorithm::Hash);
        let a = SocketAddr::from(([127, 0, 0, 1], 8080));
        let b = SocketAddr::from(([127, 0, 0, 2], 8080));
        let one = [("web-1".to_owned(), a)];
        endpoints.update(&one, Instant::now());
        let first = endpoints.load();
        endpoints.update(&one, Instant::now());
        assert!(Arc::ptr_eq(&first, &endpoints.load()), "the same set, kept");
        let two = [("web-1".to_owned(), a), ("web-2".to_owned(), b)];
        endpoints.update(&two, Instant::now());
        let second = endpoints.load();
        assert!(Arc::ptr_eq(&first.endpoints[0], &second.endpoints[0]));
        assert_ne!(first.generation(), second.generation());
        endpoints.update(&one, Instant::now());
        let third = endpoints.load();
        assert_ne!(
            third.generation(),
            first.generation(),
            "same members, new set"
        );
        let rebuilt = EndpointSet::new(third.endpoints.clone());
        assert_ne!(rebuilt.generation(), third.generation());
        assert_ne!(EndpointSet::default().generation(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_queue_wait_is_counted_out() {
        let endpoints = Endpoints::new(BalanceAlgorithm::RoundRobin);
        let wait = endpoints.wait_ready(Duration::from_secs(60));
        assert!(tokio::time::timeout(Duration::from_millis(20), wait)
            .await
            .is_err());
        assert_eq!(endpoints.queued(), 0);
    }

    #[test]
    fn ejection_cap_follows_envoy_max_ejection_percent() {
        assert!(!may_eject(0, 1), "never the last one");
        assert!(may_eject(0, 2));
        assert!(!may_eject(1, 2));
        assert!(may_eject(0, 9), "at least one even below 10 %");
        assert!(!may_eject(1, 9));
        assert!(may_eject(1, 20));
        assert!(!may_eject(2, 20));
    }

    #[test]
    fn ejection_time_grows_with_each_ejection_up_to_the_cap() {
        assert_eq!(ejection_time(1), Duration::from_secs(30));
        assert_eq!(ejection_time(3), Duration::from_secs(90));
        assert_eq!(ejection_time(100), MAX_EJECTION);
    }

    #[test]
    fn five_failures_in_a_row_eject_for_thirty_seconds_then_sixty() {
        let t0 = Instant::now();
        let o = Outlier::new(t0);
        for _ in 0..4 {
            assert!(!o.failure(t0, || true));
        }
        o.success();
        for _ in 0..4 {
            assert!(!o.failure(t0, || true), "the streak restarted");
        }
        assert!(o.failure(t0, || true));
        assert!(o.is_ejected(t0 + Duration::from_secs(29)));
        assert!(!o.is_ejected(t0 + Duration::from_secs(30)));
        let t1 = t0 + Duration::from_secs(31);
        for _ in 0..4 {
            assert!(!o.failure(t1, || true));
        }
        assert!(o.failure(t1, || true));
        assert_eq!(o.times_ejected(), 2);
        assert!(o.is_ejected(t1 + Duration::from_secs(59)));
        assert!(!o.is_ejected(t1 + Duration::from_secs(60)));
    }

    #[test]
    fn quiet_time_after_an_ejection_forgives_earlier_ones() {
        let t0 = Instant::now();
        let o = Outlier::new(t0);
        let eject = |at: Instant| {
            for _ in 0..EJECT_AFTER_FAILURES {
                o.failure(at, || true);
            }
        };
        eject(t0); // 1st: until 30 s
        let t1 = t0 + Duration::from_secs(31);
        eject(t1); // 2nd right after: 60 s, until 91 s
        assert_eq!(o.times_ejected(), 2);
        // Quiet for 100 s after the end: three base periods forgive both earlier ejections.
        let t2 = t1 + Duration::from_secs(60 + 100);
        eject(t2);
        assert_eq!(o.times_ejected(), 1, "back to the first step");
        assert_eq!(o.ejections(), 3, "the metric still counts every ejection");
        assert!(!o.is_ejected(t2 + BASE_EJECTION));
    }

    #[test]
    fn a_refused_ejection_keeps_the_endpoint_in_rotation() {
        let t0 = Instant::now();
        let o = Outlier::new(t0);
        for _ in 0..10 {
            assert!(!o.failure(t0, || false));
        }
        assert!(!o.is_ejected(t0));
    }

    #[tokio::test]
    async fn a_waiting_request_signals_demand_at_once() {
        let demand = Arc::new(Notify::new());
        let endpoints = Arc::new(
            Endpoints::new(BalanceAlgorithm::RoundRobin).with_demand_signal(demand.clone()),
        );
        let waiter = {
            let e = endpoints.clone();
            tokio::spawn(async move { e.wait_ready(Duration::from_millis(50)).await })
        };
        tokio::time::timeout(Duration::from_secs(5), demand.notified())
            .await
            .expect("demand signalled");
        assert!(!waiter.await.unwrap(), "nothing became ready");
    }

    #[tokio::test]
    async fn a_full_queue_fails_fast_and_a_ready_endpoint_releases_every_waiter() {
        let endpoints = Arc::new(Endpoints::new(BalanceAlgorithm::RoundRobin));
        let waiters: Vec<_> = (0..MAX_QUEUED)
            .map(|_| {
                let e = endpoints.clone();
                tokio::spawn(async move { e.wait_ready(Duration::from_secs(60)).await })
            })
            .collect();
        while endpoints.queued() < MAX_QUEUED {
            tokio::task::yield_now().await;
        }
        let started = Instant::now();
        assert!(!endpoints.wait_ready(Duration::from_secs(60)).await);
        assert!(started.elapsed() < Duration::from_secs(60), "failed fast");
        let addr = SocketAddr::from(([127, 0, 0, 1], 1000));
        endpoints.update(&[("web-0".to_string(), addr)], Instant::now());
        for w in waiters {
            assert!(w.await.unwrap());
        }
        assert_eq!(endpoints.queued(), 0);
    }

    #[test]
    fn picks_skip_an_ejected_endpoint_but_the_set_keeps_its_last() {
        let t0 = Instant::now();
        let endpoints = Endpoints::new(BalanceAlgorithm::RoundRobin);
        let wanted: Vec<(String, SocketAddr)> = (0..3)
            .map(|i| {
                (
                    format!("web-{i}"),
                    SocketAddr::from(([127, 0, 0, 1], 1000 + i)),
                )
            })
            .collect();
        endpoints.update(&wanted, t0);
        let set = endpoints.load();
        let (bad, other) = (&set.endpoints[0], &set.endpoints[1]);
        for _ in 0..EJECT_AFTER_FAILURES {
            endpoints.report_failure(bad, t0);
        }
        assert!(bad.is_ejected(t0));
        for _ in 0..30 {
            let e = endpoints.pick_available(None, &[], t0).expect("pick");
            assert_ne!(e.id, bad.id);
        }
        for _ in 0..EJECT_AFTER_FAILURES {
            endpoints.report_failure(other, t0);
        }
        assert!(!other.is_ejected(t0), "10 % of 3 allows one ejection");
        let later = t0 + BASE_EJECTION;
        assert!(!bad.is_ejected(later), "back after 30 s");
    }
}
