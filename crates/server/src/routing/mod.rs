//! The router inside the server: one load-balancing listener per service that declares a public
//! `port`, in front of the service's ready instances.
//!
//! Endpoints are recomputed from the store on every change (level-triggered, like the
//! controller) and swapped atomically into the proxy. An instance is routable while it should
//! run, is not draining, and its node last reported it ready. Instances that leave the set are
//! kept here until forgotten, so that the controller can wait for their in-flight requests to
//! finish before it lets the instance be stopped (ARCHITECTURE.md, principle 6).

pub mod peers;
pub mod traffic;

use crate::state::keys::{self, Versioned};
use crate::{lock, now_ms, run_loop, Server};
use ebb_core::traffic::{InstanceTraffic, ServiceTraffic, Traffic};
use ebb_core::{Assignment, DesiredState, Event, EventKind, Protocol, ServiceSpec};
use ebb_router::http::{Proxy, ProxyConfig, Stop};
use ebb_router::limit::ConnectionLimit;
use ebb_router::metrics::{Snapshot, Window};
use ebb_router::read_ahead::ReadAhead;
use ebb_router::{BalanceAlgorithm, Endpoint, Endpoints};
use ebb_store::StoreError;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use traffic::{History, SAMPLE_INTERVAL};

/// Resync at least this often, so that a port that could not be bound is tried again.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(1);

/// Every service's listener (its port, its proxy and its endpoints) on the router's runtime,
/// kept in step with the store; cheap to clone.
#[derive(Clone)]
pub struct Listeners {
    inner: Arc<Inner>,
}

/// Assignments and the ids of draining instances, as one sync read them.
type LastPlaced = (Vec<Versioned<Assignment>>, HashSet<String>);

struct Inner {
    bind: IpAddr,
    runtime: tokio::runtime::Handle,
    /// The cap on client connections open at once, shared by every service's listener.
    connections: ConnectionLimit,
    /// How far responses are read ahead of slow clients, shared by every service's listener.
    read_ahead: Arc<ReadAhead>,
    services: Mutex<HashMap<String, Routed>>,
    /// Endpoints that left their set, by instance id: their in-flight requests are still counted.
    leaving: Mutex<HashMap<String, Arc<Endpoint>>>,
    /// Store revision the endpoint sets were last computed from.
    synced: AtomicU64,
    /// The assignments and draining instances of the last sync: what the endpoints follow
    /// while the store is unreachable.
    last_placed: Mutex<Option<Arc<LastPlaced>>>,
    /// Ports that failed to bind, so the failure is reported once, not every second.
    failed: Mutex<HashSet<(String, u16)>>,
    /// Sampled metrics of services and of instances.
    history: Mutex<Histories>,
    /// Signalled when a request waits at a service without a ready instance.
    demand: Arc<tokio::sync::Notify>,
    /// Counts samples taken, so that the autoscaler decides right after each one.
    sampled: watch::Sender<u64>,
}

#[derive(Default)]
struct Histories {
    services: History,
    instances: History,
}

/// One service's listener.
struct Routed {
    settings: Settings,
    endpoints: Arc<Endpoints>,
    /// None while serving; then how to stop.
    stop: watch::Sender<Option<Stop>>,
    /// A second handle on the listening socket, so that a rebuilt listener takes the socket
    /// over (and the connections waiting in its backlog) instead of closing and binding again,
    /// which would refuse clients in between.
    socket: std::net::TcpListener,
    /// Its TLS, when the service has some: certificates read again when their files change.
    tls: Option<Arc<ebb_router::tls::Terminator>>,
}

/// What a changed listener leaves to its successor on the same port.
struct Handover {
    socket: std::net::TcpListener,
    endpoints: Arc<Endpoints>,
    /// The certificates it served: kept if the files do not load now (mid-renewal, say).
    tls: Option<Arc<ebb_router::tls::Terminator>>,
}

/// What a listener is built from; a change rebuilds it.
#[derive(Clone, PartialEq)]
struct Settings {
    port: u16,
    protocol: Protocol,
    algorithm: BalanceAlgorithm,
    retries: u32,
    request_timeout: Duration,
    slow_start: Duration,
    queue_timeout: Duration,
    hash_header: Option<String>,
    tls: Option<ebb_core::TlsSpec>,
}

impl Settings {
    fn of(spec: &ServiceSpec) -> Option<Settings> {
        Some(Settings {
            port: spec.port?,
            protocol: spec.protocol,
            algorithm: spec.balance.algorithm,
            retries: spec.balance.retries,
            request_timeout: spec.balance.request_timeout,
            slow_start: spec.balance.slow_start,
            queue_timeout: spec.balance.queue_timeout,
            hash_header: spec.balance.hash_header.clone(),
            tls: spec.tls.clone(),
        })
    }
}

impl Listeners {
    /// Listeners bind `bind`; proxies run on `runtime` (the data plane's own threads).
    pub fn new(
        bind: IpAddr,
        runtime: tokio::runtime::Handle,
        connections: ConnectionLimit,
        read_ahead: Arc<ReadAhead>,
    ) -> Listeners {
        Listeners {
            inner: Arc::new(Inner {
                bind,
                runtime,
                connections,
                read_ahead,
                services: Mutex::new(HashMap::new()),
                leaving: Mutex::new(HashMap::new()),
                synced: AtomicU64::new(0),
                last_placed: Mutex::new(None),
                failed: Mutex::new(HashSet::new()),
                history: Mutex::new(Histories::default()),
                demand: Arc::new(tokio::sync::Notify::new()),
                sampled: watch::Sender::new(0),
            }),
        }
    }

    /// The IP address listeners bind.
    pub fn bind(&self) -> IpAddr {
        self.inner.bind
    }

    /// Notified (one stored permit) whenever a request starts waiting at a service that has no
    /// ready instance, so that the autoscaler can start one at once.
    pub fn demand(&self) -> Arc<tokio::sync::Notify> {
        self.inner.demand.clone()
    }

    /// Changes after every sample of the metrics (once a second).
    pub fn samples(&self) -> watch::Receiver<u64> {
        self.inner.sampled.subscribe()
    }

    /// A routed service's metrics over the last `span`, as sampled; None when it has no
    /// listener or no samples yet.
    pub fn service_window(&self, service: &str, span: Duration) -> Option<Window> {
        lock(&self.inner.history).services.window(service, span)
    }

    /// A routed service's counters now, with the identity of the counters read (a rebuilt
    /// listener has new ones): the autoscaler's burst check takes differences of these.
    pub fn service_snapshot(&self, service: &str) -> Option<(usize, Snapshot)> {
        let services = lock(&self.inner.services);
        let routed = services.get(service)?;
        let identity = Arc::as_ptr(&routed.endpoints) as usize;
        Some((identity, routed.endpoints.snapshot(Instant::now())))
    }

    /// Every routed service's counters now, as this server reports them to the leader
    /// ([`peers`]).
    pub fn counters(&self, now: Instant) -> Vec<ebb_core::traffic::RouterCounters> {
        lock(&self.inner.services)
            .iter()
            .map(|(name, routed)| {
                let s = routed.endpoints.snapshot(now);
                ebb_core::traffic::RouterCounters {
                    service: name.clone(),
                    series: Arc::as_ptr(&routed.endpoints) as usize as u64,
                    responses: s.responses,
                    latency: s.latency.to_sparse(),
                    busy_ns: s.busy_ns,
                    in_flight: s.in_flight,
                    queued: routed.endpoints.queued(),
                    connect_errors: s.connect_errors,
                    retries: s.retries,
                    ejections: s.ejections,
                }
            })
            .collect()
    }

    /// Every routed service's endpoint set, whose counters `GET /metrics` reads.
    pub fn endpoints(&self) -> Vec<(String, Arc<Endpoints>)> {
        let mut all: Vec<(String, Arc<Endpoints>)> = lock(&self.inner.services)
            .iter()
            .map(|(name, routed)| (name.clone(), Arc::clone(&routed.endpoints)))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Instances `service`'s load balancer routes to now; None when it has no listener.
    pub fn routed_count(&self, service: &str) -> Option<u32> {
        lock(&self.inner.services)
            .get(service)
            .map(|r| r.endpoints.load().len() as u32)
    }

    /// Requests waiting now for a first ready instance of `service`.
    pub fn queued(&self, service: &str) -> u32 {
        lock(&self.inner.services)
            .get(service)
            .map_or(0, |r| r.endpoints.queued())
    }

    /// Store revision the endpoint sets reflect: a change written at or before it is in effect.
    pub fn synced_revision(&self) -> u64 {
        self.inner.synced.load(Ordering::Acquire)
    }

    /// Requests in flight on an instance, whether it is still routed or leaving.
    pub fn in_flight(&self, instance: &str) -> u32 {
        if let Some(e) = lock(&self.inner.leaving).get(instance) {
            return e.load.in_flight();
        }
        for routed in lock(&self.inner.services).values() {
            let set = routed.endpoints.load();
            if let Some(e) = set.endpoints.iter().find(|e| e.id == instance) {
                return e.load.in_flight();
            }
        }
        0
    }

    /// Whether `port` is free for `service`: it may already be ours for that service.
    pub fn check_port(&self, service: &str, port: u16) -> Result<(), String> {
        if lock(&self.inner.services)
            .get(service)
            .is_some_and(|r| r.settings.port == port)
        {
            return Ok(());
        }
        std::net::TcpListener::bind((self.inner.bind, port))
            .map(drop)
            .map_err(|e| {
                format!(
                    "port {port} is already in use on this machine ({e}); choose another `port`"
                )
            })
    }

    /// Reads certificate files that changed again (each sync: within a second of the change);
    /// says so, or why the new files are not served.
    fn reload_certificates(&self, server: &Server) {
        let terminators: Vec<(String, Arc<ebb_router::tls::Terminator>)> =
            lock(&self.inner.services)
                .iter()
                .filter_map(|(name, routed)| Some((name.clone(), routed.tls.clone()?)))
                .collect();
        for (name, tls) in terminators {
            let Some(result) = tls.reload_if_changed(SystemTime::now()) else {
                continue;
            };
            let events = match result {
                Ok(warnings) => std::iter::once((
                    EventKind::RouterCertificate,
                    "certificate files changed: new connections get the new certificates, open ones keep theirs".to_string(),
                ))
                .chain(warnings.into_iter().map(|w| (EventKind::Warning, w)))
                .collect(),
                Err(e) => vec![(
                    EventKind::Warning,
                    format!("changed certificate files are not served, the previous ones are: {e}"),
                )],
            };
            for (kind, message) in events {
                server.record(Event::new(now_ms(), kind, message).service(&name));
            }
        }
    }

    /// Recomputes every service's endpoints from the store, and starts, rebuilds or stops
    /// listeners to match the specs.
    pub fn sync(&self, server: &Server) -> Result<(), StoreError> {
        self.reload_certificates(server);
        let revision = match server.store().revision() {
            Ok(revision) => revision,
            Err(e @ StoreError::Unavailable { .. }) => {
                self.sync_from_last(server);
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        // Nothing changed and no port waits for a retry: the sets are current.
        if revision == self.synced_revision() && revision > 0 && lock(&self.inner.failed).is_empty()
        {
            return Ok(());
        }
        let specs: BTreeMap<String, ServiceSpec> = keys::services(server.store())?
            .into_iter()
            .map(|v| (v.value.name.clone(), v.value))
            .collect();
        let (assignments, _) = keys::assignments(server.store())?;
        let draining: HashSet<String> = keys::drains(server.store())?.into_keys().collect();
        let wanted = endpoint_sets(&assignments, &draining, &server.statuses());
        self.sync_listeners(server, &specs);
        self.sync_endpoints(&wanted, &assignments);
        self.inner.synced.store(revision, Ordering::Release);
        *lock(&self.inner.last_placed) = Some(Arc::new((assignments, draining)));
        Ok(())
    }

    /// Static stability: with the store unreachable, the endpoints follow the statuses agents
    /// still report (an instance whose health check fails leaves them) over the assignments
    /// last read; listeners stay as they are.
    fn sync_from_last(&self, server: &Server) {
        let Some(last) = lock(&self.inner.last_placed).clone() else {
            return;
        };
        let (assignments, draining) = last.as_ref();
        let wanted = endpoint_sets(assignments, draining, &server.statuses());
        self.sync_endpoints(&wanted, assignments);
    }

    fn sync_listeners(&self, server: &Server, specs: &BTreeMap<String, ServiceSpec>) {
        let mut services = lock(&self.inner.services);
        let mut handovers: HashMap<String, Handover> = HashMap::new();
        services.retain(|name, routed| {
            let wanted = specs.get(name).and_then(Settings::of);
            if wanted.as_ref() == Some(&routed.settings) {
                return true;
            }
            let same_port = wanted.is_some_and(|s| s.port == routed.settings.port);
            let mut stop = Stop::Close;
            if let (true, Ok(socket)) = (same_port, routed.socket.try_clone()) {
                let endpoints = routed.endpoints.clone();
                let tls = routed.tls.clone();
                let handover = Handover {
                    socket,
                    endpoints,
                    tls,
                };
                handovers.insert(name.clone(), handover);
                stop = Stop::Handover;
            }
            let _ = routed.stop.send(Some(stop));
            false
        });
        // A port that failed to bind is retried only while its service still wants it: a
        // service stopped or moved to another port leaves nothing to retry.
        lock(&self.inner.failed).retain(|(name, port)| {
            specs
                .get(name)
                .and_then(Settings::of)
                .is_some_and(|s| s.port == *port)
        });
        for (name, spec) in specs {
            let Some(settings) = Settings::of(spec) else {
                continue;
            };
            if services.contains_key(name) {
                continue;
            }
            match self.start_listener(&settings, handovers.remove(name)) {
                Ok((routed, warnings)) => {
                    for warning in warnings {
                        let event = Event::new(now_ms(), EventKind::Warning, warning);
                        server.record(event.service(name));
                    }
                    lock(&self.inner.failed).remove(&(name.clone(), settings.port));
                    server.record(
                        Event::new(
                            now_ms(),
                            EventKind::RouterListening,
                            format!(
                                "load balancer listening on {}:{} ({:?}{}, {})",
                                self.inner.bind,
                                settings.port,
                                settings.protocol,
                                if settings.tls.is_some() {
                                    " over TLS"
                                } else {
                                    ""
                                },
                                settings.algorithm
                            ),
                        )
                        .service(name),
                    );
                    services.insert(name.clone(), routed);
                }
                Err(e) => {
                    if lock(&self.inner.failed).insert((name.clone(), settings.port)) {
                        server.record(
                            Event::new(
                                now_ms(),
                                EventKind::Warning,
                                format!(
                                    "cannot listen on {}:{}: {e}; retrying",
                                    self.inner.bind, settings.port
                                ),
                            )
                            .service(name),
                        );
                    }
                }
            }
        }
    }

    /// Starts serving `settings.port`: on the socket and endpoints a previous listener of the
    /// service handed over, or on a newly bound socket.
    /// Also returns what loading its certificates found worth a warning (an expired one).
    fn start_listener(
        &self,
        settings: &Settings,
        handover: Option<Handover>,
    ) -> std::io::Result<(Routed, ebb_router::tls::Warnings)> {
        let endpoints = Arc::new(
            Endpoints::with_slow_start(settings.algorithm, settings.slow_start)
                .with_demand_signal(self.inner.demand.clone()),
        );
        let (listener, previous_tls) = match handover {
            Some(h) => {
                endpoints.inherit(&h.endpoints);
                (h.socket, h.tls)
            }
            None => {
                let socket = std::net::TcpListener::bind((self.inner.bind, settings.port))?;
                (socket, None)
            }
        };
        let (tls, warnings) = match &settings.tls {
            Some(spec) => {
                match ebb_router::tls::Terminator::load(&spec.certificates, SystemTime::now()) {
                    Ok((terminator, warnings)) => (Some(Arc::new(terminator)), warnings),
                    // A rebuilt listener keeps serving what it served rather than close the
                    // port: the files are read again when they change.
                    Err(e) => match previous_tls {
                        Some(previous) => (
                            Some(previous),
                            vec![format!(
                                "certificate files do not load ({e}): the previous certificates are served"
                            )],
                        ),
                        None => return Err(std::io::Error::other(e)),
                    },
                }
            }
            None => (None, Vec::new()),
        };
        listener.set_nonblocking(true)?;
        let socket = listener.try_clone()?;
        let (stop, mut stop_rx) = watch::channel(None);
        let shutdown = async move {
            match stop_rx.wait_for(Option::is_some).await {
                Ok(stop) => stop.unwrap_or(Stop::Close),
                Err(_) => Stop::Close,
            }
        };
        let task_endpoints = endpoints.clone();
        let protocol = settings.protocol;
        let config = ProxyConfig {
            request_timeout: settings.request_timeout,
            retries: settings.retries,
            queue_timeout: settings.queue_timeout,
            // The spec was validated: the name parses; an unparsable one hashes on the address.
            hash_header: settings.hash_header.as_deref().and_then(|h| h.parse().ok()),
            connections: Some(self.inner.connections.clone()),
            tls: tls.clone(),
            read_ahead: Arc::clone(&self.inner.read_ahead),
            ..ProxyConfig::default()
        };
        self.inner.runtime.spawn(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => return tracing::error!(error = %e, "router listener failed"),
            };
            match protocol {
                Protocol::Http => {
                    Proxy::new(task_endpoints, config)
                        .serve(listener, shutdown)
                        .await
                }
                Protocol::Tcp => {
                    let tcp = ebb_router::tcp::TcpConfig {
                        queue_timeout: config.queue_timeout,
                        connections: config.connections.clone(),
                        ..ebb_router::tcp::TcpConfig::default()
                    };
                    let shutdown = async move {
                        shutdown.await;
                    };
                    ebb_router::tcp::serve(task_endpoints, listener, tcp, shutdown).await
                }
            }
        });
        Ok((
            Routed {
                settings: settings.clone(),
                endpoints,
                stop,
                socket,
                tls,
            },
            warnings,
        ))
    }

    fn sync_endpoints(
        &self,
        wanted: &HashMap<String, Vec<(String, SocketAddr)>>,
        assignments: &[Versioned<Assignment>],
    ) {
        let now = Instant::now();
        let services = lock(&self.inner.services);
        let mut leaving = lock(&self.inner.leaving);
        for (name, routed) in services.iter() {
            let next = wanted.get(name).map(Vec::as_slice).unwrap_or(&[]);
            for old in routed.endpoints.load().endpoints.iter() {
                if !next.iter().any(|(id, _)| id == &old.id) {
                    leaving.insert(old.id.clone(), old.clone());
                }
            }
            routed.endpoints.update(next, now);
        }
        // Forget leaving endpoints once their instance is gone.
        leaving.retain(|id, _| assignments.iter().any(|a| &a.value.id == id));
    }

    /// Samples every routed service's and instance's counters (once a second, off the hot
    /// path); series of services and instances no longer routed are dropped. Also reaps each
    /// endpoint's stale idle upstream connections.
    pub fn sample(&self, now: Instant) {
        let services = lock(&self.inner.services);
        let mut history = lock(&self.inner.history);
        let mut routed_instances = HashSet::new();
        for (name, routed) in services.iter() {
            let identity = Arc::as_ptr(&routed.endpoints) as usize;
            history
                .services
                .push(name, identity, routed.endpoints.snapshot(now));
            for e in routed.endpoints.load().endpoints.iter() {
                let identity = Arc::as_ptr(e) as usize;
                history.instances.push(&e.id, identity, e.snapshot(now));
                routed_instances.insert(e.id.clone());
                // Off the request path, once a second: stale upstream connections go even
                // where no request comes to take them.
                e.idle.reap(now);
            }
        }
        history.services.retain(|name| services.contains_key(name));
        history.instances.retain(|id| routed_instances.contains(id));
        drop((history, services));
        self.inner.sampled.send_modify(|n| *n += 1);
    }

    /// Every routed service's traffic over the last `span` (as sampled), with its instances'.
    pub fn traffic(&self, span: Duration) -> Vec<ServiceTraffic> {
        let services = lock(&self.inner.services);
        let history = lock(&self.inner.history);
        let now = Instant::now();
        let mut out: Vec<ServiceTraffic> = services
            .iter()
            .map(|(name, routed)| {
                let set = routed.endpoints.load();
                let instances = set
                    .endpoints
                    .iter()
                    .map(|e| InstanceTraffic {
                        id: e.id.clone(),
                        traffic: window_traffic(history.instances.window(&e.id, span)),
                        ejected: e.is_ejected(now),
                    })
                    .collect();
                ServiceTraffic {
                    service: name.clone(),
                    port: routed.settings.port,
                    traffic: window_traffic(history.services.window(name, span)),
                    queued: routed.endpoints.queued(),
                    instances,
                }
            })
            .collect();
        out.sort_by(|a, b| a.service.cmp(&b.service));
        out
    }

    /// Each routed instance's traffic over the last `span`, by instance id.
    pub fn instance_traffic(&self, span: Duration) -> HashMap<String, Traffic> {
        self.traffic(span)
            .into_iter()
            .flat_map(|s| s.instances)
            .map(|i| (i.id, i.traffic))
            .collect()
    }

    /// Stops every listener (in-flight requests finish on the router runtime).
    pub fn stop_all(&self) {
        for (_, routed) in lock(&self.inner.services).drain() {
            let _ = routed.stop.send(Some(Stop::Close));
        }
    }
}

/// The address of an instance that may take traffic, or None.
/// Each service's endpoints as the store says they should be, `(instance id, address)`: the
/// instances meant to run, not draining, whose current generation reported ready with an
/// address. Pure: [`Listeners::sync`] reads the inputs and swaps the sets in.
fn endpoint_sets(
    assignments: &[Versioned<Assignment>],
    draining: &HashSet<String>,
    statuses: &HashMap<String, ebb_core::InstanceStatus>,
) -> HashMap<String, Vec<(String, SocketAddr)>> {
    let mut wanted: HashMap<String, Vec<(String, SocketAddr)>> = HashMap::new();
    for a in assignments {
        if let Some(addr) = routable(&a.value, draining, statuses) {
            wanted
                .entry(a.value.service.clone())
                .or_default()
                .push((a.value.id.clone(), addr));
        }
    }
    wanted
}

fn routable(
    a: &Assignment,
    draining: &HashSet<String>,
    statuses: &HashMap<String, ebb_core::InstanceStatus>,
) -> Option<SocketAddr> {
    if a.desired != DesiredState::Run || draining.contains(&a.id) {
        return None;
    }
    let status = crate::controllers::instances::current_status(a, statuses).filter(|s| s.ready)?;
    status.addr.as_deref()?.parse().ok()
}

/// A sampled window, or an empty one before the first samples.
fn window_traffic(w: Option<Window>) -> Traffic {
    w.as_ref().map(traffic::traffic).unwrap_or_default()
}

/// Samples the router's metrics every [`SAMPLE_INTERVAL`] until `stop` is cancelled.
pub async fn sample(router: Listeners, stop: CancellationToken) {
    let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while run_loop::next(&stop, tick.tick()).await.is_some() {
        router.sample(Instant::now());
    }
}

/// Keeps the router in step with the store until `stop` is cancelled; then closes every
/// listener (requests in flight finish on the router's runtime).
pub async fn run(server: Server, router: Listeners, stop: CancellationToken) {
    tokio::spawn(sample(router.clone(), stop.clone()));
    let mut changes = server.store().subscribe();
    loop {
        let (s, r) = (server.clone(), router.clone());
        run_loop::blocking_pass("router sync", move || r.sync(&s)).await;
        let wake = async {
            tokio::select! {
                _ = changes.changed() => {}
                _ = tokio::time::sleep(RESYNC_INTERVAL) => {}
            }
        };
        if run_loop::next(&stop, wake).await.is_none() {
            router.stop_all();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebb_core::{InstanceState, InstanceStatus};

    fn assignment(id: &str, generation: u64, desired: DesiredState) -> Versioned<Assignment> {
        let spec = ServiceSpec::new("web", vec!["app".into()]);
        Versioned {
            value: Assignment {
                id: id.into(),
                service: "web".into(),
                node: "n1".into(),
                generation,
                version: spec.version(),
                spec,
                desired,
                created_ms: 1,
                task: None,
                placement: None,
            },
            mod_revision: generation,
            create_revision: generation,
        }
    }

    fn status(id: &str, generation: u64, ready: bool, port: u16) -> (String, InstanceStatus) {
        let status = InstanceStatus {
            id: id.into(),
            generation,
            state: InstanceState::Running,
            pid: Some(1),
            addr: Some(format!("127.0.0.1:{port}")),
            ready,
            restarts: 0,
            started_ms: Some(1),
            last_exit: None,
            exit_code: None,
            exit_unknown: false,
            reason: None,
        };
        (id.to_string(), status)
    }

    #[test]
    fn only_ready_running_undrained_instances_of_the_current_generation_are_routed() {
        let assignments = [
            assignment("web-ok", 5, DesiredState::Run),
            assignment("web-unready", 6, DesiredState::Run),
            assignment("web-stopping", 7, DesiredState::Stop),
            assignment("web-draining", 8, DesiredState::Run),
            assignment("web-stale", 9, DesiredState::Run),
            assignment("web-unreported", 10, DesiredState::Run),
        ];
        let statuses = HashMap::from([
            status("web-ok", 5, true, 9001),
            status("web-unready", 6, false, 9002),
            status("web-stopping", 7, true, 9003),
            status("web-draining", 8, true, 9004),
            // A report of an older generation: the fencing ignores it.
            status("web-stale", 4, true, 9005),
        ]);
        let draining = HashSet::from(["web-draining".to_string()]);
        let sets = endpoint_sets(&assignments, &draining, &statuses);
        let addr: SocketAddr = "127.0.0.1:9001".parse().unwrap();
        assert_eq!(sets["web"], [("web-ok".to_string(), addr)]);
        assert_eq!(sets.len(), 1);
    }

    #[test]
    fn a_port_that_failed_to_bind_is_forgotten_once_its_service_is_stopped() {
        use ebb_store::{Expect, KvStore, SqliteStore};
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap());
        let server = Server::new(store.clone(), "t".into()).unwrap();
        let limit = ConnectionLimit::new(64);
        let listeners = Listeners::new(
            [127, 0, 0, 1].into(),
            runtime.handle().clone(),
            limit,
            Arc::new(ReadAhead::in_memory()),
        );
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = holder.local_addr().unwrap().port();
        let mut web = ServiceSpec::new("web", vec!["app".into()]);
        web.port = Some(port);
        let key = keys::service("web");
        store.put(&key, &keys::encode(&web), Expect::Any).unwrap();
        listeners.sync(&server).unwrap();
        let failed = || lock(&listeners.inner.failed).clone();
        assert_eq!(failed(), HashSet::from([("web".to_string(), port)]));
        store.delete(&key, Expect::Any).unwrap();
        listeners.sync(&server).unwrap();
        assert!(failed().is_empty(), "nothing left to retry");
    }
}
