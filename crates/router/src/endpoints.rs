//! Endpoints: the ready instances of a service, as the data plane sees them.
//!
//! The set is swapped atomically ([`arc_swap::ArcSwap`], ARCHITECTURE.md, principle 7): a request loads
//! the current set without a lock, and an update builds a new set while requests in flight keep
//! the old one. An endpoint that stays across updates keeps its `Arc`, so its load statistics
//! (in-flight count, latency estimate) survive the swap.

use crate::balance::{BalanceAlgorithm, Balancer, Load};
use crate::metrics::{Metrics, Snapshot};
use crate::pool::IdlePool;
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// Most requests that may wait for a ready instance at once, per service; beyond it they fail
/// fast with 503. 10,000: Linkerd's default queue capacity (ARCHITECTURE.md, defaults,
/// "cold-start queue").
pub const MAX_QUEUED: u32 = 10_000;

/// A request counted in a service's cold-start queue until dropped.
struct Queued<'a>(&'a AtomicU32);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One instance that may receive traffic.
#[derive(Debug)]
pub struct Endpoint {
    /// The instance id (`web-1a2b3c4d`).
    pub id: String,
    pub addr: SocketAddr,
    /// `addr` as a URI authority, made once: requests clone it (a reference count) instead of
    /// formatting the address each time.
    pub authority: hyper::http::uri::Authority,
    /// Load statistics the balancers read and requests update; lock-free.
    pub load: Load,
    /// Passive outlier detection: consecutive failures and ejection; lock-free.
    pub outlier: Outlier,
    /// Requests, latency and errors of this instance, for the API and the autoscaler.
    pub metrics: Metrics,
    /// Idle keep-alive connections to this instance (HTTP/1.1 path); they close when the
    /// endpoint leaves the set and its last request ends.
    pub idle: IdlePool,
}

impl Endpoint {
    pub fn new(id: impl Into<String>, addr: SocketAddr, now: Instant) -> Endpoint {
        Endpoint {
            id: id.into(),
            addr,
            authority: authority_of(addr),
            load: Load::new(now),
            outlier: Outlier::new(now),
            metrics: Metrics::new(now),
            idle: IdlePool::default(),
        }
    }

    /// This endpoint's cumulative metrics at `now`.
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        self.metrics.snapshot(now, self.outlier.ejections())
    }

    /// Whether passive outlier detection has taken this endpoint out of rotation at `now`.
    pub fn is_ejected(&self, now: Instant) -> bool {
        self.outlier.is_ejected(now)
    }

    /// Marks a request as started on this endpoint. It stays in flight (for balancing, drains
    /// and metrics) until the returned guard is dropped: after the response body, or the tunnel.
    pub fn begin(self: &Arc<Self>, now: Instant) -> InFlight {
        self.load.start();
        self.metrics.concurrency.start(now);
        InFlight {
            endpoint: Arc::clone(self),
            started: now,
            ended: false,
        }
    }
}

fn authority_of(addr: SocketAddr) -> hyper::http::uri::Authority {
    // A formatted socket address is always a valid authority; the fallback is never taken.
    addr.to_string()
        .parse()
        .unwrap_or_else(|_| hyper::http::uri::Authority::from_static("0.0.0.0:0"))
}

/// Consecutive failures (connect errors, resets, 502/503/504) that eject an endpoint: 5, Envoy's
/// `consecutive_5xx` and `consecutive_gateway_failure` default (ARCHITECTURE.md, defaults).
pub const EJECT_AFTER_FAILURES: u32 = 5;

/// How long the first ejection lasts; the n-th lasts n times this. 30 s: Envoy's
/// `base_ejection_time` default (ARCHITECTURE.md, defaults).
pub const BASE_EJECTION: Duration = Duration::from_secs(30);

/// Longest ejection, however often an endpoint was ejected: 300 s, Envoy's `max_ejection_time`
/// default, so a recovered instance is always tried again within five minutes.
pub const MAX_EJECTION: Duration = Duration::from_secs(300);

/// Most of a set that may be ejected at once, in percent: 10, Envoy's `max_ejection_percent`
/// default. As in Envoy, at least one endpoint may always be ejected (so a set of fewer than 10
/// may lose one), but never the last one that is not ejected.
pub const MAX_EJECTION_PERCENT: usize = 10;

/// Whether one more endpoint may be ejected from a set of `total` of which `ejected` already
/// are (pure; see [`MAX_EJECTION_PERCENT`]).
pub fn may_eject(ejected: usize, total: usize) -> bool {
    let cap = (total * MAX_EJECTION_PERCENT / 100).max(1);
    ejected < cap && ejected + 1 < total
}

/// How long the `times`-th ejection (1-based) of an endpoint lasts: [`BASE_EJECTION`] × times,
/// at most [`MAX_EJECTION`].
pub fn ejection_time(times: u32) -> Duration {
    BASE_EJECTION.saturating_mul(times.max(1)).min(MAX_EJECTION)
}

/// An endpoint's passive outlier state (Envoy's outlier detection, consecutive failures only).
///
/// Requests report each attempt's outcome; the proxy ejects after [`EJECT_AFTER_FAILURES`] in a
/// row and picks skip an ejected endpoint until its ejection ends. All atomics: the hot path
/// (a success) is one relaxed load, plus a store only when a failure streak was under way.
/// Two endpoints reaching the threshold at the same instant may both pass the
/// [`may_eject`] check; the overshoot is bounded by the number of simultaneous failures.
#[derive(Debug)]
pub struct Outlier {
    consecutive: AtomicU32,
    /// The multiplier of the next ejection's length; quiet time lowers it.
    times_ejected: AtomicU32,
    /// Every ejection ever, for metrics (never lowered).
    ejections: AtomicU64,
    /// Nanoseconds from `born` to the end of the current ejection; 0 when never ejected.
    ejected_until_ns: AtomicU64,
    born: Instant,
}

impl Outlier {
    pub fn new(now: Instant) -> Outlier {
        Outlier {
            consecutive: AtomicU32::new(0),
            times_ejected: AtomicU32::new(0),
            ejections: AtomicU64::new(0),
            ejected_until_ns: AtomicU64::new(0),
            born: now,
        }
    }

    fn since_born(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.born).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether the endpoint is ejected at `now`.
    pub fn is_ejected(&self, now: Instant) -> bool {
        let until = self.ejected_until_ns.load(Ordering::Relaxed);
        until != 0 && self.since_born(now) < until
    }

    /// How many times the endpoint has been ejected (less those forgiven, see
    /// [`Outlier::next_ejection_count`]).
    pub fn times_ejected(&self) -> u32 {
        self.times_ejected.load(Ordering::Relaxed)
    }

    /// Ejections since the endpoint joined its set.
    pub fn ejections(&self) -> u64 {
        self.ejections.load(Ordering::Relaxed)
    }

    /// The count the ejection happening at `now` makes. As Envoy decrements its ejection
    /// multiplier while a host stays healthy, every [`BASE_EJECTION`] without an ejection since
    /// the last one ended forgives one earlier ejection: an instance that failed once last week
    /// starts again at 30 s, not at the 5-minute cap.
    fn next_ejection_count(&self, now: Instant) -> u32 {
        let ended = self.ejected_until_ns.load(Ordering::Relaxed);
        let quiet = self.since_born(now).saturating_sub(ended);
        let forgiven = if ended == 0 {
            0
        } else {
            u32::try_from(quiet / BASE_EJECTION.as_nanos() as u64).unwrap_or(u32::MAX)
        };
        let times = self
            .times_ejected
            .load(Ordering::Relaxed)
            .saturating_sub(forgiven)
            + 1;
        self.times_ejected.store(times, Ordering::Relaxed);
        times
    }

    /// Failures in a row since the last success or ejection.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive.load(Ordering::Relaxed)
    }

    /// An attempt succeeded: the failure streak ends.
    pub fn success(&self) {
        if self.consecutive.load(Ordering::Relaxed) != 0 {
            self.consecutive.store(0, Ordering::Relaxed);
        }
    }

    /// An attempt failed at `now`. Returns true when this failure completes a streak of
    /// [`EJECT_AFTER_FAILURES`] and `may_eject()` (called only then; it counts the set's
    /// ejected endpoints) allows it: the endpoint is then ejected for [`ejection_time`].
    pub fn failure(&self, now: Instant, may_eject: impl FnOnce() -> bool) -> bool {
        let streak = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        if streak < EJECT_AFTER_FAILURES || self.is_ejected(now) || !may_eject() {
            return false;
        }
        // Only the failure that wins the reset ejects, so a burst ejects once.
        if self
            .consecutive
            .compare_exchange(streak, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        let times = self.next_ejection_count(now);
        self.ejections.fetch_add(1, Ordering::Relaxed);
        let until = self
            .since_born(now)
            .saturating_add(u64::try_from(ejection_time(times).as_nanos()).unwrap_or(u64::MAX))
            .max(1);
        self.ejected_until_ns.store(until, Ordering::Relaxed);
        true
    }
}

/// A request in flight on an endpoint; dropping it ends the request. A request that never got
/// a response head (cancelled, failed) gives no latency sample.
#[derive(Debug)]
pub struct InFlight {
    endpoint: Arc<Endpoint>,
    started: Instant,
    /// Ended by [`InFlight::end`] with the caller's clock reading, so the drop reads none.
    ended: bool,
}

impl InFlight {
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }

    /// The response head arrived at `now` with `status`: the time since the start feeds the
    /// latency estimate and the metrics. The request stays in flight until dropped.
    pub fn head(&self, status: u16, now: Instant) {
        let rtt = now.saturating_duration_since(self.started);
        self.endpoint.load.observe(rtt, now);
        self.endpoint.metrics.response(status, rtt);
    }

    /// When the request started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Ends the request at `now`, a clock reading the caller already has (dropping it reads
    /// the clock itself): the hot path reads the clock a few times per request, not a dozen.
    pub fn end(mut self, now: Instant) {
        self.finish(now);
    }

    fn finish(&mut self, now: Instant) {
        self.ended = true;
        self.endpoint.load.end(None, now);
        self.endpoint.metrics.concurrency.end(now);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.ended {
            self.finish(Instant::now());
        }
    }
}

/// An immutable snapshot of a service's endpoints, in a stable order (by id).
///
/// Every set gets a process-wide unique generation when built, so a balancer that caches
/// something derived from a set (consistent hashing's ring) recognises the set in O(1). A set is
/// never changed in place: a change is a new set (and `endpoints` is public for reading only;
/// changing it would keep the old generation and so a stale ring).
#[derive(Debug)]
pub struct EndpointSet {
    pub endpoints: Vec<Arc<Endpoint>>,
    generation: u64,
}

/// The generation of the next [`EndpointSet`]; 0 is never handed out.
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

impl Default for EndpointSet {
    fn default() -> EndpointSet {
        EndpointSet::new(Vec::new())
    }
}

impl EndpointSet {
    pub fn new(endpoints: Vec<Arc<Endpoint>>) -> EndpointSet {
        EndpointSet {
            endpoints,
            generation: NEXT_GENERATION.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// This set's generation: unique to it among all sets of the process.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }
}

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
}

impl Endpoints {
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

    /// Waits up to `limit` for the set to have an endpoint (the cold-start queue). Returns at
    /// once when it has one; false when the wait timed out or [`MAX_QUEUED`] requests already
    /// wait, so the caller fails fast instead of piling up.
    pub async fn wait_ready(&self, limit: Duration) -> bool {
        if !self.current.load().is_empty() {
            return true;
        }
        if self.queued.fetch_add(1, Ordering::Relaxed) >= MAX_QUEUED {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        // Counted out on drop, so that a waiter cancelled by its caller (a request timeout
        // shorter than the queue wait, a client gone) does not stay counted forever.
        let _queued = Queued(&self.queued);
        if let Some(demand) = &self.demand {
            demand.notify_one();
        }
        let mut ready = self.ready.subscribe();
        let waited = tokio::time::timeout(limit, ready.wait_for(|r| *r)).await;
        matches!(waited, Ok(Ok(_)))
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
    /// ejected by this failure (within the set's [`MAX_EJECTION_PERCENT`], never the last).
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
