//! `ebb demo`: autoscaling to watch, in one command. It starts a throwaway ebb (a child
//! `ebb up` on a temporary data dir, everything on loopback), deploys an autoscaled example
//! service, and drives a wave of load at its load balancer with its own clients:
//!
//! | phase | load (`GET /slow?ms=50`, keep-alive) | what ebb does |
//! | --- | --- | --- |
//! | rise (25 %) | 1 → 8 clients | wakes from zero, scales out step by step |
//! | spike (15 %) | 32 clients | panics: scales out at once, up to the max of 8 |
//! | fall (20 %) | 2 clients | scales back in after the scale-down delay |
//! | idle (the rest) | none | scales to zero after `idle_timeout` |
//! | cold start | one request | holds it, starts an instance, serves it |
//!
//! Once a second it shows the phase, instances, traffic and the last decision (a redrawn block
//! on a terminal, one plain line otherwise), then prints a summary and removes everything it
//! started, also on Ctrl-C. Exit code 1 if a request failed or ebb could not start.

pub mod chart;
mod child;
mod load;
mod view;

use anyhow::Context;
use ebb_client::Client;
use ebb_core::{Event, EventKind, ServiceSpec};
use load::{Load, Outcome};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, Signal, SignalKind};
use view::{say, Frame, Screen};

/// The deploy file of the demo's service (its port and idle_timeout are set per run).
const SERVICE_TOML: &str = include_str!("../../../examples/demo.toml");
/// The service's name in that file.
pub const SERVICE: &str = "demo";
/// What each client asks for: 50 ms of work, so that requests in flight (the metric the
/// service scales on) follow the number of clients.
const LOAD_PATH: &str = "/slow?ms=50";
/// The cold start's request: the app answers at once, so its latency is the cold start's.
const COLD_PATH: &str = "/";
/// Clients at the top of the rise, in the spike, and in the fall.
const RISE_CLIENTS: usize = 8;
const SPIKE_CLIENTS: usize = 32;
const FALL_CLIENTS: usize = 2;
/// Shortest and longest --duration.
const MIN_DURATION: Duration = Duration::from_secs(15);
const MAX_DURATION: Duration = Duration::from_secs(3600);
/// How long the API may take to answer one poll of the live view.
const POLL_LIMIT: Duration = Duration::from_secs(2);
/// How long the router may take to open the service's port after the deploy.
const LISTEN_LIMIT: Duration = Duration::from_secs(10);

/// When each phase ends, from the start of the wave.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The whole wave: the `--duration` asked for.
    pub total: Duration,
    /// End of the rise (25 % of `total`): clients step up from 1 to 8.
    pub rise_end: Duration,
    /// End of the spike (the next 15 %): 32 clients.
    pub spike_end: Duration,
    /// End of the fall (the next 20 %): 2 clients, then the load stops.
    pub fall_end: Duration,
    /// The idle phase waits for zero until here at most.
    pub idle_end: Duration,
    /// The service's idle_timeout: about a tenth of the duration, at least 3 s.
    pub idle_timeout: Duration,
}

impl Plan {
    /// The plan of a wave lasting `total`; an error for the user if it is not within 15 s to 1 h.
    pub fn new(total: Duration) -> Result<Plan, String> {
        if !(MIN_DURATION..=MAX_DURATION).contains(&total) {
            return Err(format!(
                "--duration must be between {}s and {}s (the wave needs time to rise, spike, fall and idle to zero); got {}",
                MIN_DURATION.as_secs(),
                MAX_DURATION.as_secs(),
                ebb_core::quantity::format_duration(total)
            ));
        }
        let part = |percent: u32| total * percent / 100;
        let idle_timeout = Duration::from_secs((total.as_secs() / 10).max(3));
        let fall_end = part(25) + part(15) + part(20);
        // The idle phase gets the rest, but always time enough for the idle timeout and the
        // instances' stop, so that zero is reached even with a short --duration.
        let idle_end = total.max(fall_end + idle_timeout + Duration::from_secs(6));
        Ok(Plan {
            total,
            rise_end: part(25),
            spike_end: part(25) + part(15),
            fall_end,
            idle_end,
            idle_timeout,
        })
    }
}

/// The demo's service: the embedded deploy file, on `port`, going idle after `idle_timeout`.
pub fn service_spec(port: u16, idle_timeout: Duration) -> anyhow::Result<ServiceSpec> {
    let base = std::env::temp_dir();
    let mut specs = ebb_spec::parse_str("demo.toml", SERVICE_TOML, &base).map_err(|errors| {
        let rendered: Vec<String> = errors.0.iter().map(|e| e.render()).collect();
        anyhow::anyhow!(
            "the demo's embedded deploy file is invalid:\n{}",
            rendered.join("\n")
        )
    })?;
    let mut spec = specs
        .pop()
        .context("the demo's deploy file has no service")?;
    spec.port = Some(port);
    if let Some(a) = spec.autoscale.as_mut() {
        a.idle_timeout = idle_timeout;
        a.idle_auto = false;
    }
    Ok(spec)
}

/// What `ebb demo` was asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long the load wave takes (see [`Plan::new`] for the bounds).
    pub duration: Duration,
    /// The demo service's port on 127.0.0.1; `None`: a free one.
    pub port: Option<u16>,
    /// The `ebb` executable the demo starts as `ebb up` (the running binary, for the CLI).
    pub ebb: PathBuf,
    /// Where to write the instances-against-load chart (SVG), if anywhere.
    pub chart: Option<PathBuf>,
}

/// Why the demo did not succeed; the CLI turns the kind into its exit code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DemoError {
    /// What kind of failure.
    pub kind: Failure,
    /// What happened, for the user.
    pub message: String,
}

/// The kinds of [`DemoError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// An option out of bounds (`--duration 1s`): nothing was started.
    InvalidOption,
    /// Ctrl-C or SIGTERM: everything started was stopped and removed.
    Interrupted,
    /// ebb could not start, or a request failed.
    Failed,
}

/// `ebb demo [--duration 60s] [--port N]`: the whole demo, start to summary and clean-up.
/// Errors that decide the exit code are [`DemoError`]s.
pub async fn run(options: &Options) -> anyhow::Result<()> {
    let args = options;
    let plan = Plan::new(args.duration).map_err(|message| DemoError {
        kind: Failure::InvalidOption,
        message,
    })?;
    if let Some(path) = &args.chart {
        chart::check_path(path).map_err(|message| DemoError {
            kind: Failure::InvalidOption,
            message,
        })?;
    }
    let mut signals = Signals::new()?;
    let port = match args.port {
        Some(p) => p,
        None => free_port().context("finding a free port for the demo service")?,
    };
    let spec = service_spec(port, plan.idle_timeout)?;
    let mut ebb = child::Ebb::spawn(&args.ebb).context("ebb could not start")?;
    say(&format!(
        "ebb demo: a load wave of {} against an autoscaled service (0 to 8 instances, 4 requests in flight each)",
        view::secs(plan.total)
    ));
    say(&format!(
        "  ebb's state and log: {} (removed at the end)",
        ebb.dir().display()
    ));

    let outcome = tokio::select! {
        r = wave(&mut ebb, spec, &plan, port, args.chart.as_deref()) => Some(r),
        _ = signals.next() => None,
    };

    let interrupted = outcome.is_none();
    let errored = matches!(&outcome, Some(Err(_)));
    let failed_requests = match &outcome {
        Some(Ok(tally)) => tally.failed,
        _ => 0,
    };
    if interrupted {
        say("\ninterrupted: stopping ebb and its instances (Ctrl-C again to kill them now)");
    } else {
        say("stopping ebb and its instances...");
    }
    let stopped = ebb.stop(signals.next()).await;
    let kept_log = if errored || failed_requests > 0 {
        ebb.keep_log()
    } else {
        None
    };
    let tail = if errored {
        ebb.log_tail(15)
    } else {
        Vec::new()
    };
    let dir = ebb.dir().to_path_buf();
    let removed = ebb.remove();
    match (&stopped, &removed) {
        (Some((_, true)), _) => say("  ebb up did not stop in time and was killed"),
        (_, Err(e)) => say(&format!("  could not remove {}: {e}", dir.display())),
        _ => say(&format!("  done: removed {}", dir.display())),
    }

    match outcome {
        None => Err(DemoError {
            kind: Failure::Interrupted,
            message: "ebb demo: interrupted".to_string(),
        }
        .into()),
        Some(Err(e)) => {
            let mut message = format!("error: {e:#}");
            if !tail.is_empty() {
                message.push_str("\n  last lines of ebb up's log:");
                for line in tail {
                    message.push_str(&format!("\n    {line}"));
                }
            }
            if let Some(log) = kept_log {
                message.push_str(&format!("\n  ebb up's full log: {}", log.display()));
            }
            if args.port.is_some() && message.contains("already in use") {
                message.push_str("\n  hint: pick another --port, or leave it out for a free one");
            }
            Err(DemoError {
                kind: Failure::Failed,
                message,
            }
            .into())
        }
        Some(Ok(tally)) if tally.failed > 0 => {
            let mut message = format!("ebb demo: {} requests failed:", tally.failed);
            for (reason, n) in &tally.reasons {
                message.push_str(&format!("\n  {n} × {reason}"));
            }
            if let Some(log) = kept_log {
                message.push_str(&format!("\n  ebb up's log: {}", log.display()));
            }
            Err(DemoError {
                kind: Failure::Failed,
                message,
            }
            .into())
        }
        Some(Ok(_)) => Ok(()),
    }
}

/// Start-up, the wave with its live view, and the summary; the outcomes of the requests.
async fn wave(
    ebb: &mut child::Ebb,
    spec: ServiceSpec,
    plan: &Plan,
    port: u16,
    chart_to: Option<&std::path::Path>,
) -> anyhow::Result<load::Tally> {
    let max = spec.autoscale.as_ref().map_or(1, |a| a.max);
    let client = ebb.client().await.context("ebb could not start")?;
    client
        .apply(vec![spec])
        .await
        .context("deploying the demo service")?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_listening(addr)
        .await
        .with_context(|| format!("the demo service's load balancer did not open {addr}"))?;
    say(&format!(
        "  service {SERVICE} on http://{addr}/ (try `curl http://{addr}/` meanwhile); load: GET {LOAD_PATH}"
    ));
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        say("  each second: time, phase, clients, instances ready/desired, rps and p99 at the load balancer (last 2s), requests ok/failed | the last decision");
    }
    say("");

    let wave = Wave {
        client: client.clone(),
        plan: plan.clone(),
        max,
        started: Instant::now(),
        started_ms: now_ms(),
        state: RefCell::new(State::default()),
    };
    let mut load = Load::new(addr, LOAD_PATH);
    let counter = load.counter();
    let mut screen = Screen::new();
    tokio::select! {
        _ = wave.drive(&mut load) => {}
        _ = wave.monitor(&counter, &mut screen) => {}
        status = ebb.exited() => {
            screen.finish();
            anyhow::bail!("`ebb up` exited during the demo ({status})");
        }
    }
    // The last events (the cold start's instance) and a last frame.
    wave.poll_events().await;
    let frame = wave.frame(&load.tally()).await;
    screen.show(&wave.new_decisions(), &frame);
    screen.finish();
    let tally = load.tally();
    for line in wave.summary(&tally) {
        say(&line);
    }
    if let Some(path) = chart_to {
        let title = format!(
            "ebb demo: instances against load over {}",
            view::secs(plan.total)
        );
        chart::write_svg(path, &title, &wave.state.borrow().series).map_err(anyhow::Error::msg)?;
        say(&format!("  chart: {}", path.display()));
    }
    Ok(tally)
}

/// The phases, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// Clients step up from 1 to 8.
    #[default]
    Rise,
    /// 32 clients at once.
    Spike,
    /// 2 clients.
    Fall,
    /// No load: waiting for the service to scale to zero.
    Idle,
    /// One request to the service at zero, held while an instance starts.
    ColdStart,
    /// The cold start's request has completed: the wave is over.
    Done,
}

impl Phase {
    /// The phase's name in the live view (`cold start`).
    pub fn name(self) -> &'static str {
        match self {
            Phase::Rise => "rise",
            Phase::Spike => "spike",
            Phase::Fall => "fall",
            Phase::Idle => "idle",
            Phase::ColdStart => "cold start",
            Phase::Done => "done",
        }
    }
}

/// What the wave has seen so far (one task: the driver and the monitor take turns).
#[derive(Default)]
struct State {
    phase: Phase,
    clients: usize,
    /// The service's events, in order.
    events: Vec<Event>,
    events_after: u64,
    /// Decisions already printed above the live block.
    decisions_shown: usize,
    peak_ready: u32,
    /// Unix ms: the spike began, the load stopped, zero was reached, the cold request was sent.
    spike_ms: Option<u64>,
    load_stopped_ms: Option<u64>,
    zero_ms: Option<u64>,
    cold_sent_ms: Option<u64>,
    /// The cold start's request: ok or why not, and how long it took.
    cold: Option<(Result<(), String>, Duration)>,
    /// One point a frame, for `--chart`.
    series: Vec<chart::Point>,
}

struct Wave {
    client: Client,
    plan: Plan,
    /// The service's most instances.
    max: u32,
    started: Instant,
    started_ms: u64,
    state: RefCell<State>,
}

impl Wave {
    fn set(&self, phase: Phase, clients: usize, load: &mut Load) {
        load.set_clients(clients);
        let mut s = self.state.borrow_mut();
        s.phase = phase;
        s.clients = clients;
    }

    async fn until(&self, offset: Duration) {
        tokio::time::sleep_until((self.started + offset).into()).await;
    }

    /// The load wave, phase by phase; every step bounded in time.
    async fn drive(&self, load: &mut Load) {
        let plan = &self.plan;
        for k in 1..=RISE_CLIENTS {
            self.set(Phase::Rise, k, load);
            self.until(plan.rise_end * k as u32 / RISE_CLIENTS as u32)
                .await;
        }
        self.set(Phase::Spike, SPIKE_CLIENTS, load);
        self.state.borrow_mut().spike_ms = Some(now_ms());
        self.until(plan.spike_end).await;
        self.set(Phase::Fall, FALL_CLIENTS, load);
        self.until(plan.fall_end).await;

        self.set(Phase::Idle, 0, load);
        load.stop_all().await;
        self.state.borrow_mut().load_stopped_ms = Some(now_ms());
        let idle_end = self.started + plan.idle_end;
        while Instant::now() < idle_end {
            if self.at_zero().await {
                self.state.borrow_mut().zero_ms = Some(now_ms());
                // A moment at zero to see, then the cold start.
                let pause = Instant::now() + Duration::from_secs(2);
                tokio::time::sleep_until(pause.min(idle_end).into()).await;
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }

        self.set(Phase::ColdStart, 0, load);
        self.state.borrow_mut().clients = 1;
        self.state.borrow_mut().cold_sent_ms = Some(now_ms());
        let (outcome, took) = load.single(COLD_PATH).await;
        let result = match outcome {
            Outcome::Ok => Ok(()),
            Outcome::Failed(reason) => Err(reason),
        };
        let mut s = self.state.borrow_mut();
        s.cold = Some((result, took));
        s.phase = Phase::Done;
        s.clients = 0;
    }

    /// No instance at all (not even one stopping), and none wanted.
    async fn at_zero(&self) -> bool {
        let instances = tokio::time::timeout(POLL_LIMIT, self.client.instances(Some(SERVICE)));
        let service = tokio::time::timeout(POLL_LIMIT, self.client.service(SERVICE));
        match tokio::join!(instances, service) {
            (Ok(Ok(i)), Ok(Ok(s))) => i.is_empty() && s.desired == 0,
            _ => false,
        }
    }

    /// Once a second: poll ebb and draw a frame. Never returns (the driver's end ends it).
    async fn monitor(&self, counter: &load::Counter, screen: &mut Screen) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            self.poll_events().await;
            let tally = load::read(counter);
            let frame = self.frame(&tally).await;
            screen.show(&self.new_decisions(), &frame);
        }
    }

    /// Fetches the service's new events.
    async fn poll_events(&self) {
        let after = self.state.borrow().events_after;
        let Ok(Ok(resp)) =
            tokio::time::timeout(POLL_LIMIT, self.client.events(after, 1000, Duration::ZERO)).await
        else {
            return;
        };
        let mut s = self.state.borrow_mut();
        s.events_after = s.events_after.max(resp.last_seq);
        s.events.extend(
            resp.events
                .into_iter()
                .filter(|e| e.service.as_deref() == Some(SERVICE) && e.seq > after),
        );
    }

    /// This moment's figures: instances from the service, traffic from the router's last 2 s.
    async fn frame(&self, tally: &load::Tally) -> Frame {
        let service = tokio::time::timeout(POLL_LIMIT, self.client.service(SERVICE));
        let metrics = tokio::time::timeout(POLL_LIMIT, self.client.metrics(Some(SERVICE), "2s"));
        let (service, metrics) = tokio::join!(service, metrics);
        let service = service.ok().and_then(Result::ok);
        let traffic = metrics
            .ok()
            .and_then(Result::ok)
            .and_then(|m| m.services.into_iter().find(|s| s.service == SERVICE));
        let mut s = self.state.borrow_mut();
        if let Some(v) = &service {
            s.peak_ready = s.peak_ready.max(v.ready);
            let rps = traffic.as_ref().map_or(0.0, |t| t.traffic.rps);
            s.series.push(chart::Point {
                at_s: self.started.elapsed().as_secs_f64(),
                ready: v.ready,
                desired: v.desired,
                rps,
            });
        }
        let last_decision = s
            .events
            .iter()
            .rev()
            .find(|e| e.kind == EventKind::ServiceScaled)
            .map(|e| (self.rel(e.time_ms), e.message.clone()));
        Frame {
            elapsed: self.started.elapsed(),
            total: self.plan.total,
            phase: s.phase,
            clients: s.clients,
            ready: service.as_ref().map(|v| v.ready),
            desired: service.as_ref().map(|v| v.desired),
            max: self.max,
            rps: traffic.as_ref().map(|t| t.traffic.rps),
            p99_ms: traffic.as_ref().and_then(|t| t.traffic.p99_ms),
            queued: traffic.as_ref().map_or(0, |t| t.queued),
            ok: tally.ok,
            failed: tally.failed,
            last_decision,
        }
    }

    /// Decisions not yet printed above the live block, as lines.
    fn new_decisions(&self) -> Vec<String> {
        let mut s = self.state.borrow_mut();
        let decisions: Vec<String> = s
            .events
            .iter()
            .filter(|e| e.kind == EventKind::ServiceScaled)
            .map(|e| view::decision_line(self.rel(e.time_ms), &e.message))
            .collect();
        let new = decisions[s.decisions_shown.min(decisions.len())..].to_vec();
        s.decisions_shown = decisions.len();
        new
    }

    /// Seconds from the start of the wave to `ms`.
    fn rel(&self, ms: u64) -> f64 {
        (ms as f64 - self.started_ms as f64) / 1000.0
    }

    fn summary(&self, tally: &load::Tally) -> Vec<String> {
        let s = self.state.borrow();
        view::summary(&view::Facts {
            tally,
            events: &s.events,
            started_ms: self.started_ms,
            peak_ready: s.peak_ready,
            spike_ms: s.spike_ms,
            load_stopped_ms: s.load_stopped_ms,
            zero_ms: s.zero_ms,
            cold_sent_ms: s.cold_sent_ms,
            cold: s.cold.clone(),
        })
    }
}

/// Waits until something accepts connections on `addr`.
async fn wait_listening(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + LISTEN_LIMIT;
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(anyhow::Error::new(e).context(format!(
                    "waited {}s; is the port taken? Pick another with --port",
                    LISTEN_LIMIT.as_secs()
                )))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A port that was free on 127.0.0.1 a moment ago.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Ctrl-C, SIGTERM and SIGHUP (the terminal closed): each ends the demo the same clean way.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
            _ = self.hangup.recv() => {}
        }
    }
}

/// Wall-clock milliseconds, to compare with the times of ebb's events.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_follow_the_duration_and_leave_time_to_reach_zero() {
        let p = Plan::new(Duration::from_secs(60)).unwrap();
        assert_eq!(p.rise_end, Duration::from_secs(15));
        assert_eq!(p.spike_end, Duration::from_secs(24));
        assert_eq!(p.fall_end, Duration::from_secs(36));
        assert_eq!(p.idle_end, Duration::from_secs(60));
        assert_eq!(p.idle_timeout, Duration::from_secs(6));
        let short = Plan::new(Duration::from_secs(20)).unwrap();
        assert_eq!(short.idle_timeout, Duration::from_secs(3));
        assert!(short.idle_end >= short.fall_end + short.idle_timeout + Duration::from_secs(5));
        assert!(Plan::new(Duration::from_secs(5)).is_err());
        assert!(Plan::new(Duration::from_secs(7200)).is_err());
    }

    #[test]
    fn the_embedded_service_is_valid_and_takes_the_port_and_idle_timeout() {
        let spec = service_spec(18080, Duration::from_secs(4)).unwrap();
        assert_eq!(spec.name, SERVICE);
        assert_eq!(spec.port, Some(18080));
        assert!(spec.validate().is_empty(), "{:?}", spec.validate());
        let a = spec.autoscale.expect("autoscaled");
        assert_eq!((a.min, a.max), (0, 8));
        assert_eq!(a.idle_timeout, Duration::from_secs(4));
    }
}
