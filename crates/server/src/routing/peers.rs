//! The load through every server, for the leader's autoscaler. Every server routes every
//! service, so the leader's own load balancer sees only the clients that came to it. Each
//! server that does not lead sends its load balancers' counters to the leader four times a
//! second, and at once when a request waits at a service with no instance
//! ([`report`], `POST /v1/traffic`); the leader keeps the last few reports of each server
//! ([`PeerLoad`]) and its autoscaler adds their windows to its own.
//!
//! Nothing of this goes through the store: an idle cluster writes nothing, and a busy one no
//! more than before. Counters are cumulative, so a lost report loses no request; a server not
//! heard from for [`PEER_STALE`] counts for nothing (it stopped, or cannot reach the leader,
//! and its clients' load is unknown rather than guessed).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ebb_client::{Client, Trust};
use ebb_core::traffic::{RouterCounters, TrafficReport};
use ebb_router::metrics::{Counts, Snapshot, Window};
use ebb_store::Leadership;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::traffic::Series;
use super::Listeners;
use crate::{lock, run_loop, Server};

/// How often a server that does not lead sends its counters: four times a second, the pace
/// of the autoscaler's burst check, so that a burst at any server is seen as soon as at the
/// leader's own.
pub const REPORT_EVERY: Duration = Duration::from_millis(250);

/// A report that takes longer is given up; the next one covers it (counters are cumulative).
pub const REPORT_TIMEOUT: Duration = Duration::from_secs(1);

/// Reports kept per server and service: 2 s at [`REPORT_EVERY`], more than the autoscaler's
/// longest read (its 1 s tick sample; the burst check reads half a second).
pub const PEER_SAMPLES: usize = 9;

/// A server whose last report is older counts for nothing: eight missed reports.
pub const PEER_STALE: Duration = Duration::from_secs(2);

/// Servers whose reports are kept at once: a control plane has three or five; the bound keeps
/// a caller with the token from growing the leader's memory without end.
pub const MAX_PEERS: usize = 16;

/// Services one report may carry, for the same reason.
pub const MAX_REPORTED_SERVICES: usize = 4096;

/// The other servers' recent counters, by server, as the leader keeps them.
#[derive(Debug, Default)]
pub struct PeerLoad {
    peers: Mutex<HashMap<String, Peer>>,
}

/// One server's recent reports.
#[derive(Debug)]
struct Peer {
    incarnation: u64,
    /// This server's instant of the sender's first report, and that report's `at_ms`: later
    /// reports are placed by the difference of the sender's clock, not by when they arrived.
    origin: (Instant, u64),
    /// The latest `at_ms` taken: an older or repeated report is dropped.
    last_at_ms: u64,
    /// When its last report arrived.
    heard: Instant,
    services: HashMap<String, PeerService>,
}

#[derive(Debug)]
struct PeerService {
    series: Series,
    queued: u32,
}

impl Peer {
    fn new(report: &TrafficReport, now: Instant) -> Peer {
        Peer {
            incarnation: report.incarnation,
            origin: (now, report.at_ms),
            last_at_ms: report.at_ms,
            heard: now,
            services: HashMap::new(),
        }
    }

    fn is_fresh(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.heard) < PEER_STALE
    }
}

impl PeerLoad {
    /// Takes `report`, received at `now`. Whether a request waits at one of its services (the
    /// leader's autoscaler should look at once). A report that cannot be read changes nothing.
    pub fn ingest(&self, report: &TrafficReport, now: Instant) -> Result<bool, String> {
        if report.server.is_empty() {
            return Err("a traffic report must name its server".into());
        }
        if report.services.len() > MAX_REPORTED_SERVICES {
            return Err(format!(
                "a traffic report may carry at most {MAX_REPORTED_SERVICES} services, not {}",
                report.services.len()
            ));
        }
        let counts: Vec<Counts> = report
            .services
            .iter()
            .map(|c| Counts::from_sparse(&c.latency).map_err(|e| format!("{}: {e}", c.service)))
            .collect::<Result<_, _>>()?;
        let mut peers = lock(&self.peers);
        peers.retain(|_, p| p.is_fresh(now));
        if !peers.contains_key(&report.server) && peers.len() >= MAX_PEERS {
            return Err(format!(
                "traffic reports from more than {MAX_PEERS} servers at once"
            ));
        }
        let peer = match peers.entry(report.server.clone()) {
            std::collections::hash_map::Entry::Vacant(e) => e.insert(Peer::new(report, now)),
            std::collections::hash_map::Entry::Occupied(e) => {
                let peer = e.into_mut();
                if peer.incarnation != report.incarnation {
                    // The sender restarted: its counters started again.
                    *peer = Peer::new(report, now);
                } else if report.at_ms <= peer.last_at_ms {
                    return Ok(false); // repeated, or overtaken by a newer one
                }
                peer
            }
        };
        peer.heard = now;
        peer.last_at_ms = report.at_ms;
        let at = peer.origin.0 + Duration::from_millis(report.at_ms - peer.origin.1);
        let mut waiting = false;
        for (c, latency) in report.services.iter().zip(counts) {
            let identity = c.series as usize;
            let kept = peer
                .services
                .entry(c.service.clone())
                .or_insert_with(|| PeerService {
                    series: Series::of_counters_elsewhere(identity, PEER_SAMPLES),
                    queued: 0,
                });
            kept.series.push(identity, snapshot(c, at, latency));
            kept.queued = c.queued;
            waiting |= c.queued > 0;
        }
        let reported: std::collections::HashSet<&str> =
            report.services.iter().map(|c| c.service.as_str()).collect();
        peer.services
            .retain(|name, _| reported.contains(name.as_str()));
        Ok(waiting)
    }

    /// Of the servers `expected` to report, those not heard from lately: their load is unknown.
    pub fn silent(&self, expected: &[String], now: Instant) -> Vec<String> {
        let peers = lock(&self.peers);
        expected
            .iter()
            .filter(|name| !peers.get(name.as_str()).is_some_and(|p| p.is_fresh(now)))
            .cloned()
            .collect()
    }

    /// Forgets every report: a new term as leader starts from what the others send it now.
    pub fn clear(&self) {
        lock(&self.peers).clear();
    }

    /// `service`'s load over about `span` through every other server heard from lately, added
    /// up; None when none has a window of it.
    pub fn window(&self, service: &str, span: Duration, now: Instant) -> Option<Window> {
        let peers = lock(&self.peers);
        let mut total: Option<Window> = None;
        for w in peers
            .values()
            .filter(|p| p.is_fresh(now))
            .filter_map(|p| p.services.get(service)?.series.window(span))
        {
            match &mut total {
                Some(t) => t.add(&w),
                None => total = Some(w),
            }
        }
        total
    }

    /// Requests waiting at `service` on the other servers heard from lately.
    pub fn queued(&self, service: &str, now: Instant) -> u32 {
        lock(&self.peers)
            .values()
            .filter(|p| p.is_fresh(now))
            .filter_map(|p| p.services.get(service))
            .fold(0u32, |n, s| n.saturating_add(s.queued))
    }
}

fn snapshot(c: &RouterCounters, at: Instant, latency: Counts) -> Snapshot {
    Snapshot {
        at,
        responses: c.responses,
        latency,
        busy_ns: c.busy_ns,
        in_flight: c.in_flight,
        connect_errors: c.connect_errors,
        retries: c.retries,
        ejections: c.ejections,
    }
}

/// `service`'s load over about `span` through this server's load balancer and every other
/// server's: what the leader's autoscaler decides on. None while a server in the registry has
/// not reported lately: the load through it is unknown, and a missing figure never scales a
/// service down (a third of the load is not the load).
pub fn cluster_window(
    server: &Server,
    router: &Listeners,
    service: &str,
    span: Duration,
) -> Option<Window> {
    let now = Instant::now();
    let me = server.identity().map(|i| i.name.as_str());
    let others: Vec<String> = server
        .registry()
        .live()
        .into_iter()
        .filter(|name| Some(name.as_str()) != me)
        .collect();
    if !server.peer_load().silent(&others, now).is_empty() {
        return None;
    }
    let mut total = router.service_window(service, span);
    if let Some(w) = server.peer_load().window(service, span, now) {
        match &mut total {
            Some(t) => t.add(&w),
            None => total = Some(w),
        }
    }
    total
}

/// Requests waiting at `service` here and at every other server.
pub fn cluster_queued(server: &Server, router: &Listeners, service: &str) -> u32 {
    router
        .queued(service)
        .saturating_add(server.peer_load().queued(service, Instant::now()))
}

/// What a server needs to call the leader's API: the shared token, and the CA to trust when
/// the API speaks TLS.
#[derive(Debug, Clone)]
pub struct PeerLink {
    /// The API token (the same on every server of the control plane).
    pub token: String,
    /// The shared CA, when the servers' APIs speak TLS.
    pub trust: Option<Trust>,
}

/// The leader this server reports to: its name and a client of its API.
struct Target {
    leader: String,
    client: Client,
}

/// While this server does not lead, sends its load balancers' counters to the leader every
/// [`REPORT_EVERY`], and at once when a request waits here at a service with no instance.
/// Runs until `stop`; does nothing on a server alone.
pub async fn report(server: Server, router: Listeners, link: PeerLink, stop: CancellationToken) {
    let Some(mut leadership) = server.leadership_channel() else {
        return;
    };
    let Some(name) = server.identity().map(|i| i.name.clone()) else {
        return;
    };
    let incarnation: u64 = rand::random();
    let started = Instant::now();
    let demand = router.demand();
    let mut tick = tokio::time::interval(REPORT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watching = true;
    let mut target: Option<Target> = None;
    loop {
        // A server restarted within its old session's TTL may see itself lead for a moment.
        let leader = following(&leadership).filter(|l| *l != name);
        let wake = async {
            tokio::select! {
                _ = tick.tick() => false,
                // Only while another server leads: the leader's own autoscaler waits on it.
                _ = demand.notified(), if leader.is_some() => true,
                changed = leadership.changed(), if watching => {
                    watching = changed.is_ok();
                    false
                }
            }
        };
        let Some(demanded) = run_loop::next(&stop, wake).await else {
            return;
        };
        let Some(leader) = following(&leadership).filter(|l| *l != name) else {
            if demanded {
                // This server leads now: the wake is its autoscaler's.
                demand.notify_one();
            }
            continue;
        };
        if target.as_ref().is_none_or(|t| t.leader != leader) {
            target = connect(&server, &leader, &link).await;
        }
        let Some(to) = &target else {
            continue;
        };
        let report = TrafficReport {
            server: name.clone(),
            incarnation,
            at_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            services: router.counters(Instant::now()),
        };
        match tokio::time::timeout(REPORT_TIMEOUT, to.client.report_traffic(&report)).await {
            Ok(Ok(ack)) if ack.leading => {}
            Ok(Ok(_)) => target = None, // it no longer leads: look it up again
            Ok(Err(error)) => {
                tracing::debug!(%leader, %error, "could not report traffic to the leader");
                target = None;
            }
            Err(_) => target = None,
        }
    }
}

/// The leader's name while another server leads.
fn following(leadership: &watch::Receiver<Leadership>) -> Option<String> {
    match &*leadership.borrow() {
        Leadership::Following { leader } => leader.clone(),
        Leadership::Leading(_) => None,
    }
}

/// A client of `leader`'s API, from its registry record; None if it has none yet.
async fn connect(server: &Server, leader: &str, link: &PeerLink) -> Option<Target> {
    let cluster = server.cluster()?.clone();
    // Quietly: while etcd is away this is tried four times a second.
    let listed = tokio::task::spawn_blocking(move || cluster.servers()).await;
    let record = match listed {
        Ok(Ok(servers)) => servers.into_iter().find(|(name, _)| name == leader)?.1,
        Ok(Err(error)) => {
            tracing::debug!(%error, "could not read the servers' registry");
            return None;
        }
        Err(_) => return None,
    };
    let identity: crate::Identity = serde_json::from_slice(&record).ok()?;
    match Client::with_trust(&identity.api, Some(link.token.clone()), link.trust.clone()) {
        Ok(client) => Some(Target {
            leader: leader.to_string(),
            client,
        }),
        Err(error) => {
            tracing::warn!(%leader, api = %identity.api, %error, "cannot call the leader's API");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(service: &str, series: u64, ok: u64, busy_s: f64, queued: u32) -> RouterCounters {
        RouterCounters {
            service: service.into(),
            series,
            responses: [0, ok, 0, 0, 0],
            latency: vec![[10, ok]],
            busy_ns: (busy_s * 1e9) as i64,
            queued,
            ..RouterCounters::default()
        }
    }

    fn report(server: &str, incarnation: u64, at_ms: u64, c: Vec<RouterCounters>) -> TrafficReport {
        TrafficReport {
            server: server.into(),
            incarnation,
            at_ms,
            services: c,
        }
    }

    #[test]
    fn windows_are_differences_of_a_servers_reports_added_over_servers() {
        let load = PeerLoad::default();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // s2 has counted 5,000 requests before the first report: they are not this second's.
        for i in 0..=4u64 {
            let r = report(
                "s2",
                1,
                10_000 + i * 250,
                vec![counters(
                    "web",
                    7,
                    5_000 + i * 25,
                    100.0 + i as f64 * 0.5,
                    0,
                )],
            );
            assert!(!load.ingest(&r, t0 + ms(i * 250)).unwrap());
            let r = report(
                "s3",
                9,
                400 + i * 250,
                vec![counters("web", 3, i * 75, i as f64 * 1.5, 0)],
            );
            load.ingest(&r, t0 + ms(i * 250 + 5)).unwrap();
        }
        let w = load
            .window("web", Duration::from_secs(1), t0 + ms(1010))
            .unwrap();
        assert_eq!(w.requests, 100 + 300);
        assert!((w.rps - 400.0).abs() < 1e-6, "{}", w.rps);
        assert!((w.concurrency - 8.0).abs() < 1e-6, "{}", w.concurrency);
        assert!(load
            .window("api", Duration::from_secs(1), t0 + ms(1010))
            .is_none());
    }

    #[test]
    fn one_report_is_no_window_and_a_restart_or_new_listener_starts_again() {
        let load = PeerLoad::default();
        let t0 = Instant::now();
        let s = Duration::from_secs;
        load.ingest(
            &report("s2", 1, 0, vec![counters("web", 7, 9_000, 0.0, 0)]),
            t0,
        )
        .unwrap();
        assert!(
            load.window("web", s(1), t0).is_none(),
            "counts before the first report are not load"
        );
        load.ingest(
            &report("s2", 1, 1000, vec![counters("web", 7, 9_010, 0.0, 0)]),
            t0 + s(1),
        )
        .unwrap();
        assert_eq!(load.window("web", s(1), t0 + s(1)).unwrap().requests, 10);
        // A new listener (new series) and then a restarted server (new incarnation).
        load.ingest(
            &report("s2", 1, 2000, vec![counters("web", 8, 3, 0.0, 0)]),
            t0 + s(2),
        )
        .unwrap();
        assert!(load.window("web", s(1), t0 + s(2)).is_none());
        load.ingest(
            &report("s2", 2, 50, vec![counters("web", 8, 1, 0.0, 0)]),
            t0 + s(3),
        )
        .unwrap();
        assert!(load.window("web", s(1), t0 + s(3)).is_none());
    }

    #[test]
    fn a_silent_server_counts_for_nothing_and_queued_requests_wake_the_leader() {
        let load = PeerLoad::default();
        let t0 = Instant::now();
        let s = Duration::from_secs;
        for i in 0..3 {
            let r = report("s2", 1, i * 1000, vec![counters("web", 1, i * 10, 0.0, 2)]);
            assert!(load.ingest(&r, t0 + s(i)).unwrap(), "a request waits");
        }
        assert_eq!(load.queued("web", t0 + s(2)), 2);
        assert!(load.window("web", s(1), t0 + s(2)).is_some());
        let later = t0 + s(2) + PEER_STALE;
        assert_eq!(load.queued("web", later), 0);
        assert!(load.window("web", s(1), later).is_none());
        // A server of the registry that has not reported is named: its load is unknown.
        let expected = vec!["s2".to_string(), "s3".to_string()];
        assert_eq!(load.silent(&expected, t0 + s(2)), vec!["s3".to_string()]);
        assert_eq!(load.silent(&expected, later), expected);
        load.clear();
        assert_eq!(
            load.queued("web", t0 + s(2)),
            0,
            "a new term starts from nothing"
        );
    }

    #[test]
    fn bad_or_excessive_reports_change_nothing() {
        let load = PeerLoad::default();
        let t0 = Instant::now();
        let mut bad = counters("web", 1, 1, 0.0, 0);
        bad.latency = vec![[u64::MAX, 1]];
        let err = load.ingest(&report("s2", 1, 0, vec![bad]), t0).unwrap_err();
        assert!(err.contains("web: latency bucket"), "{err}");
        assert!(load.peers.lock().unwrap().is_empty());
        let many = vec![counters("x", 1, 1, 0.0, 0); MAX_REPORTED_SERVICES + 1];
        assert!(load.ingest(&report("s2", 1, 0, many), t0).is_err());
        assert!(load.ingest(&report("", 1, 0, vec![]), t0).is_err());
        for i in 0..MAX_PEERS {
            load.ingest(&report(&format!("s{i}"), 1, 0, vec![]), t0)
                .unwrap();
        }
        let err = load
            .ingest(&report("one-more", 1, 0, vec![]), t0)
            .unwrap_err();
        assert!(err.contains("servers at once"), "{err}");
        // Once the others fall silent, a new server is heard again.
        load.ingest(&report("one-more", 1, 0, vec![]), t0 + PEER_STALE)
            .unwrap();
    }

    #[test]
    fn an_older_report_than_the_last_is_dropped() {
        let load = PeerLoad::default();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let at = |at_ms: u64, ok: u64| report("s2", 1, at_ms, vec![counters("web", 1, ok, 0.0, 0)]);
        load.ingest(&at(0, 0), t0).unwrap();
        load.ingest(&at(1000, 20), t0 + ms(1000)).unwrap();
        load.ingest(&at(500, 10), t0 + ms(1000)).unwrap();
        load.ingest(&at(1000, 30), t0 + ms(1000)).unwrap(); // the same report again
        let w = load.window("web", ms(1000), t0 + ms(1000)).unwrap();
        assert_eq!(w.requests, 20);
        assert_eq!(w.span, ms(1000));
    }
}
