//! Simulated agents for `bench/heartbeats.sh` (issue 5): N nodes heartbeat an `ebb server` the
//! way `ebb agent` does, through this crate's [`Client::sync`], with nothing to run.
//!
//! Each simulated agent has its own [`Client`] (its own reqwest pool, so its own keep-alive
//! connection, as each real agent has) and POSTs a `SyncRequest` once a second on a fixed
//! schedule, the agents' starts spread evenly over the first second. A real agent sleeps a second
//! *after* each sync; a fixed schedule keeps the offered rate at N per second whatever the
//! latency. Like a real agent, each also keeps an assignments long-poll open on a second
//! connection (`--no-long-poll` leaves it out). Bodies: a distinct name (`sim-0001`) and address,
//! capacity, enforcement, a zone label, and the machine's usage (`node_usage`, changing every
//! second). Instances placed on a simulated node are not run: the node reports each one running
//! and ready (the same status every time, as a steady real agent does) with its CPU and memory
//! use (changing every second), and each one it was told to stop as stopped. No events.
//!
//! Phases: warm-up (`--warmup` s: the nodes join), the measured window (`--seconds` s), and a
//! tail (`--tail` s, while the caller checks `ebb nodes`). It prints `measuring` and `measured`
//! on stdout at the window's edges and, at the end, one JSON line of results (a summary goes to
//! stderr). Exits 1 if any sync or long-poll failed, in any phase.
//!
//! Usage: `heartbeats --addr HOST:PORT --token-file FILE [--agents 1000] [--warmup 5]
//! [--seconds 30] [--tail 5] [--threads 1] [--no-long-poll]`
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark tool, not production code

use ebb_client::{Client, ClientError};
use ebb_core::api::{AssignmentsResponse, InstanceUsage, NodeInfo, NodeUsage, SyncRequest};
use ebb_core::{Assignment, DesiredState, InstanceState, InstanceStatus};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::{Instant, MissedTickBehavior};

/// A real agent's heartbeat interval and long-poll wait (crates/agent/src/sync.rs).
const PERIOD: Duration = Duration::from_secs(1);
const LONG_POLL_WAIT: Duration = Duration::from_secs(30);
const RETRY_PAUSE: Duration = Duration::from_millis(500);

struct Args {
    addr: String,
    token_file: String,
    agents: u32,
    warmup: u64,
    seconds: u64,
    tail: u64,
    threads: usize,
    long_poll: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        addr: String::new(),
        token_file: String::new(),
        agents: 1000,
        warmup: 5,
        seconds: 30,
        tail: 5,
        threads: 1,
        long_poll: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--no-long-poll" {
            a.long_poll = false;
            continue;
        }
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        match flag.as_str() {
            "--addr" => a.addr = value.clone(),
            "--token-file" => a.token_file = value.clone(),
            "--agents" => a.agents = number()?.try_into().map_err(|_| "--agents too large")?,
            "--warmup" => a.warmup = number()?,
            "--seconds" => a.seconds = number()?,
            "--tail" => a.tail = number()?,
            "--threads" => a.threads = number()?.max(1) as usize,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if a.addr.is_empty() || a.token_file.is_empty() || a.agents == 0 || a.seconds == 0 {
        return Err(
            "usage: heartbeats --addr HOST:PORT --token-file FILE [--agents 1000] \
                    [--warmup 5] [--seconds 30] [--tail 5] [--threads 1] [--no-long-poll]"
                .into(),
        );
    }
    Ok(a)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("heartbeats: {e}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let failed = runtime.block_on(run(args));
    std::process::exit(i32::from(failed));
}

/// Where a sync falls, by when it was sent.
const WARMUP: usize = 0;
const WINDOW: usize = 1;
const TAIL: usize = 2;
const PHASES: [&str; 3] = ["warmup", "window", "tail"];

/// Outcomes (`200`, `503`, `timeout`, ...) and latencies of the syncs of one phase.
#[derive(Default)]
struct Tally {
    outcomes: BTreeMap<String, u64>,
    latencies_us: Vec<u32>,
}

impl Tally {
    fn add(&mut self, outcome: String, latency: Duration) {
        *self.outcomes.entry(outcome).or_default() += 1;
        self.latencies_us
            .push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
    }

    fn merge(&mut self, other: Tally) {
        for (k, v) in other.outcomes {
            *self.outcomes.entry(k).or_default() += v;
        }
        self.latencies_us.extend(other.latencies_us);
    }

    fn failures(&self) -> u64 {
        self.outcomes
            .iter()
            .filter(|(k, _)| k.as_str() != "200")
            .map(|(_, v)| v)
            .sum()
    }

    fn count(&self) -> u64 {
        self.outcomes.values().sum()
    }

    /// The p-th percentile latency in milliseconds (nearest rank); 0 when empty.
    fn percentile_ms(&mut self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        self.latencies_us.sort_unstable();
        let rank = ((p / 100.0) * self.latencies_us.len() as f64).ceil() as usize;
        f64::from(self.latencies_us[rank.clamp(1, self.latencies_us.len()) - 1]) / 1000.0
    }
}

/// What one simulated agent saw.
#[derive(Default)]
struct AgentStats {
    phases: [Tally; 3],
    /// Since the start, when its first sync succeeded (it joined).
    joined: Option<Duration>,
    polls: u64,
    poll_errors: BTreeMap<String, u64>,
}

fn outcome(result: &Result<impl Sized, ClientError>) -> String {
    match result {
        Ok(_) => "200".into(),
        Err(e) => match (e.status(), e) {
            (Some(status), _) => status.to_string(),
            (None, ClientError::Timeout { .. }) => "timeout".into(),
            (None, ClientError::Connect { .. }) => "connect error".into(),
            (None, _) => "protocol error".into(),
        },
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Agent `i`'s description of itself: the same in every sync (a change would be a store write).
fn node_info(i: u32, width: usize) -> NodeInfo {
    NodeInfo {
        name: format!("sim-{:0width$}", i + 1),
        address: format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
        cpu_millis: if i.is_multiple_of(2) { 4000 } else { 8000 },
        memory_bytes: 16 << 30,
        enforcement: "cgroup v2".into(),
        labels: BTreeMap::from([("zone".into(), ["a", "b", "c"][i as usize % 3].into())]),
    }
}

/// The machine's use, different at every heartbeat as a real node's is.
fn node_usage(i: u32, seq: u64) -> NodeUsage {
    let mix = u64::from(i) * 7919 + seq * 104_729;
    NodeUsage {
        cpu_cores: 0.25 + (mix % 350) as f64 / 100.0,
        memory_bytes: (4 << 30) + (mix % 4096) * (1 << 20),
        at_ms: now_ms(),
    }
}

/// The node's newest set of assignments, from syncs and long-polls (which answer concurrently:
/// an older set must not replace a newer one).
#[derive(Default)]
struct Held {
    revision: u64,
    assignments: Vec<Assignment>,
}

fn keep(held: &Mutex<Held>, resp: AssignmentsResponse) {
    let mut held = held.lock().unwrap_or_else(|p| p.into_inner());
    if resp.revision >= held.revision {
        held.revision = resp.revision;
        held.assignments = resp.assignments;
    }
}

/// What a steady agent reports of its instances: running and ready (stopped once told to stop),
/// always the same status, so that only the first report is a store write; and their use.
fn report(
    held: &Mutex<Held>,
    node: &NodeInfo,
    seq: u64,
) -> (Vec<InstanceStatus>, Vec<InstanceUsage>) {
    let held = held.lock().unwrap_or_else(|p| p.into_inner());
    let mut statuses = Vec::with_capacity(held.assignments.len());
    let mut usage = Vec::with_capacity(held.assignments.len());
    for a in &held.assignments {
        let run = a.desired == DesiredState::Run;
        let port = 20_000 + a.generation % 40_000;
        statuses.push(InstanceStatus {
            id: a.id.clone(),
            generation: a.generation,
            state: if run {
                InstanceState::Running
            } else {
                InstanceState::Stopped
            },
            pid: run.then_some(port as u32),
            addr: run.then(|| format!("{}:{port}", node.address)),
            ready: run,
            restarts: 0,
            started_ms: run.then_some(a.created_ms),
            last_exit: None,
            exit_code: None,
            exit_unknown: false,
            reason: None,
        });
        if run {
            let mix = a.generation * 7919 + seq * 104_729;
            usage.push(InstanceUsage {
                id: a.id.clone(),
                generation: a.generation,
                cpu_cores: 0.01 + (mix % 50) as f64 / 100.0,
                memory_bytes: (40 << 20) + (mix % 64) * (1 << 20),
                cpu_fraction: None,
                memory_fraction: None,
                at_ms: now_ms(),
            });
        }
    }
    (statuses, usage)
}

struct Clock {
    start: Instant,
    window: Instant,
    tail: Instant,
    end: Instant,
}

impl Clock {
    fn phase(&self, at: Instant) -> usize {
        if at < self.window {
            WARMUP
        } else if at < self.tail {
            WINDOW
        } else {
            TAIL
        }
    }
}

async fn agent(
    i: u32,
    n: u32,
    width: usize,
    client: Client,
    clock: Arc<Clock>,
    long_poll: bool,
) -> AgentStats {
    let offset = Duration::from_nanos(PERIOD.as_nanos() as u64 * u64::from(i) / u64::from(n));
    let first = clock.start + offset;
    let node = node_info(i, width);
    let held = Arc::new(Mutex::new(Held::default()));
    let poll = long_poll.then(|| {
        tokio::spawn(long_poll_loop(
            client.clone(),
            node.name.clone(),
            held.clone(),
            first,
            clock.end,
        ))
    });
    let mut stats = AgentStats::default();
    let mut tick = tokio::time::interval_at(first, PERIOD);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    for seq in 0.. {
        tick.tick().await;
        let sent = Instant::now();
        if sent >= clock.end {
            break;
        }
        let (statuses, usage) = report(&held, &node, seq);
        let req = SyncRequest {
            node: node.clone(),
            statuses,
            events: Vec::new(),
            usage,
            node_usage: Some(node_usage(i, seq)),
        };
        let result = client.sync(&req).await;
        let done = Instant::now();
        let outcome = outcome(&result);
        if let Ok(resp) = result {
            keep(&held, resp);
        }
        if outcome == "200" && stats.joined.is_none() {
            stats.joined = Some(done - clock.start);
        }
        stats.phases[clock.phase(sent)].add(outcome, done - sent);
    }
    if let Some(poll) = poll {
        if let Ok((polls, errors)) = poll.await {
            stats.polls = polls;
            stats.poll_errors = errors;
        }
    }
    stats
}

/// A real agent's assignments long-poll, until `end`: answers, and failures by outcome.
async fn long_poll_loop(
    client: Client,
    node: String,
    held: Arc<Mutex<Held>>,
    first: Instant,
    end: Instant,
) -> (u64, BTreeMap<String, u64>) {
    tokio::time::sleep_until(first).await;
    let (mut after, mut answers, mut errors) = (0, 0, BTreeMap::new());
    loop {
        tokio::select! {
            result = client.assignments(&node, after, LONG_POLL_WAIT) => {
                match result {
                    Ok(resp) => {
                        after = resp.revision;
                        answers += 1;
                        keep(&held, resp);
                    }
                    Err(_) => {
                        *errors.entry(outcome(&result)).or_default() += 1;
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                }
            }
            _ = tokio::time::sleep_until(end) => return (answers, errors),
        }
    }
}

/// Runs every agent through the phases; returns whether anything failed.
async fn run(args: Args) -> bool {
    let token = match std::fs::read_to_string(&args.token_file) {
        Ok(t) => t.trim().to_string(),
        Err(e) => {
            eprintln!("heartbeats: reading {}: {e}", args.token_file);
            return true;
        }
    };
    let width = args.agents.to_string().len().max(4);
    // Each simulated node trades the join token for its own credential first, as `ebb agent`
    // does on its first start; the heartbeats then carry that credential.
    let mut clients = Vec::with_capacity(args.agents as usize);
    for i in 0..args.agents {
        // One client each, as each `ebb agent` has: its own connection pool.
        let joined = match Client::new(&args.addr, Some(token.clone())) {
            Ok(c) => c
                .join(&node_info(i, width).name)
                .await
                .map(|r| c.with_token(r.credential)),
            Err(e) => Err(e),
        };
        match joined {
            Ok(client) => clients.push(client),
            Err(e) => {
                eprintln!("heartbeats: joining node {i}: {e}");
                return true;
            }
        }
    }
    let start = Instant::now() + Duration::from_millis(200);
    let window = start + Duration::from_secs(args.warmup);
    let tail = window + Duration::from_secs(args.seconds);
    let clock = Arc::new(Clock {
        start,
        window,
        tail,
        end: tail + Duration::from_secs(args.tail),
    });
    let mut tasks = Vec::with_capacity(args.agents as usize);
    for (i, client) in (0..args.agents).zip(clients) {
        tasks.push(tokio::spawn(agent(
            i,
            args.agents,
            width,
            client,
            clock.clone(),
            args.long_poll,
        )));
    }
    let say = |line: &str| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    };
    tokio::time::sleep_until(window).await;
    say("measuring");
    tokio::time::sleep_until(tail).await;
    say("measured");

    let mut phases: [Tally; 3] = Default::default();
    let (mut joined, mut never_joined, mut polls) = (Duration::ZERO, 0u32, 0u64);
    let mut poll_errors: BTreeMap<String, u64> = BTreeMap::new();
    for task in tasks {
        let Ok(stats) = task.await else {
            never_joined += 1;
            continue;
        };
        for (all, mine) in phases.iter_mut().zip(stats.phases) {
            all.merge(mine);
        }
        match stats.joined {
            Some(at) => joined = joined.max(at),
            None => never_joined += 1,
        }
        polls += stats.polls;
        for (k, v) in stats.poll_errors {
            *poll_errors.entry(k).or_default() += v;
        }
    }

    let mut report = serde_json::Map::new();
    report.insert("agents".into(), args.agents.into());
    report.insert("seconds".into(), args.seconds.into());
    report.insert("long_poll".into(), args.long_poll.into());
    report.insert(
        "all_joined_ms".into(),
        (never_joined == 0)
            .then_some(joined.as_millis() as u64)
            .into(),
    );
    report.insert("never_joined".into(), never_joined.into());
    report.insert(
        "syncs_per_s".into(),
        (phases[WINDOW].count() as f64 / args.seconds as f64).into(),
    );
    for (name, tally) in PHASES.iter().zip(phases.iter_mut()) {
        report.insert(
            (*name).into(),
            serde_json::json!({
                "syncs": tally.count(),
                "outcomes": tally.outcomes,
                "p50_ms": tally.percentile_ms(50.0),
                "p99_ms": tally.percentile_ms(99.0),
                "max_ms": tally.percentile_ms(100.0),
            }),
        );
    }
    report.insert("long_polls".into(), polls.into());
    report.insert("long_poll_errors".into(), serde_json::json!(poll_errors));
    let failures: u64 = phases.iter().map(Tally::failures).sum();
    let failed = failures > 0 || never_joined > 0 || !poll_errors.is_empty();
    report.insert("failed".into(), failed.into());

    let w = &mut phases[WINDOW];
    eprintln!(
        "heartbeats: {} agents, {:.1} syncs/s over {} s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; \
         outcomes {:?}; {}; {} failed syncs in all phases; long-polls {} ({:?} failed)",
        args.agents,
        w.count() as f64 / args.seconds as f64,
        args.seconds,
        w.percentile_ms(50.0),
        w.percentile_ms(99.0),
        w.percentile_ms(100.0),
        w.outcomes,
        if never_joined == 0 {
            format!("all joined after {} ms", joined.as_millis())
        } else {
            format!("{never_joined} never joined")
        },
        failures,
        polls,
        poll_errors,
    );
    say(&serde_json::Value::Object(report).to_string());
    failed
}
