//! CPU and memory use of each running instance, and of the node, sampled once a second by a
//! background task (`tasks::spawn_usage_sampler`) and reported with the next heartbeat.
//!
//! CPU is a rate: the sampler keeps each instance's previous cumulative CPU time and turns the
//! difference into cores used over the interval. An instance appears from its second sample on
//! (no rate before), and its baseline starts again when its process changes (a restart) or its
//! counter changes source — so a report never mixes two processes or two counters.

mod node;
mod sources;

use super::goal::Goal;
use super::shared::{Latest, Shared};
use ebb_core::api::InstanceUsage;
use ebb_core::Resources;
use node::NodeSampler;
use sources::{ProcScan, Processes, Reading, Source};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How often usage is sampled: the autoscaler ticks every second on metrics sampled every
/// second (ARCHITECTURE.md, defaults, issue 4), and heartbeats carry the latest sample every second.
pub const USAGE_INTERVAL: Duration = Duration::from_secs(1);

/// One instance process to measure.
#[derive(Debug, Clone)]
pub struct Target {
    pub id: String,
    pub generation: u64,
    pub pid: u32,
    pub start_ticks: u64,
    pub cgroups: Vec<PathBuf>,
    /// What its spec reserves, for the fractions.
    pub resources: Resources,
    /// Its service autoscales on CPU or memory: sampled every tick, not every
    /// [`SLOW_EVERY`] ticks.
    pub hot: bool,
}

/// Instances whose use no autoscaler waits for are read every this many ticks (10 s): reading
/// a hundred instances' cgroup files every second cost about 0.5 % of a core, for figures only
/// `ebb` shows.
pub const SLOW_EVERY: u64 = 10;

/// An instance's previous CPU reading.
struct Previous {
    pid: u32,
    start_ticks: u64,
    source: Source,
    cpu_ns: u64,
    at: Instant,
}

/// Turns cumulative readings into rates; owned by the sampling task.
#[derive(Default)]
pub struct Sampler {
    previous: HashMap<String, Previous>,
    node: NodeSampler,
    /// Samples taken, to read the instances that are not hot every [`SLOW_EVERY`] of them.
    ticks: u64,
    /// The last usage of every instance, reported until its next reading replaces it.
    reported: HashMap<String, InstanceUsage>,
}

impl Sampler {
    /// Reads every target (blocking file I/O: run it off the async workers) and the node.
    pub fn sample(&mut self, targets: &[Target], now: Instant, now_ms: u64) -> Latest {
        let mut scan = ProcScan::default();
        let all_due = self.ticks.is_multiple_of(SLOW_EVERY);
        self.ticks += 1;
        // New instances are read until their first figure is out (two readings), then as due.
        let due = |t: &&Target| t.hot || all_due || !self.reported.contains_key(&t.id);
        let due: Vec<&Target> = targets.iter().filter(due).collect();
        for t in due {
            let procs = Processes {
                pid: t.pid,
                cgroups: &t.cgroups,
            };
            match sources::read(&procs, &mut scan) {
                Some(reading) => {
                    if let Some(u) = self.record(t, reading, now, now_ms) {
                        self.reported.insert(t.id.clone(), u);
                    }
                }
                None => {
                    self.previous.remove(&t.id);
                    self.reported.remove(&t.id);
                }
            }
        }
        let live: HashSet<&str> = targets.iter().map(|t| t.id.as_str()).collect();
        self.previous.retain(|id, _| live.contains(id.as_str()));
        self.reported.retain(|id, _| live.contains(id.as_str()));
        Latest {
            instances: self.reported.values().cloned().collect(),
            node: self.node.sample(now_ms),
        }
    }

    /// Keeps `reading` as the target's baseline and returns its usage since the previous one.
    fn record(
        &mut self,
        t: &Target,
        reading: Reading,
        now: Instant,
        now_ms: u64,
    ) -> Option<InstanceUsage> {
        let current = Previous {
            pid: t.pid,
            start_ticks: t.start_ticks,
            source: reading.source,
            cpu_ns: reading.cpu_ns,
            at: now,
        };
        let before = self.previous.insert(t.id.clone(), current)?;
        let same = before.pid == t.pid
            && before.start_ticks == t.start_ticks
            && before.source == reading.source;
        if !same {
            return None;
        }
        let elapsed = now.checked_duration_since(before.at)?.as_secs_f64();
        if elapsed <= 0.0 {
            return None;
        }
        let used_ns = reading.cpu_ns.checked_sub(before.cpu_ns)?;
        let cpu_cores = finite(used_ns as f64 / 1e9 / elapsed);
        let memory = reading.memory_bytes;
        let reserved_cores = t.resources.cpu_millis.map(|m| f64::from(m) / 1000.0);
        let reserved_bytes = t.resources.memory_bytes.map(|b| b as f64);
        Some(InstanceUsage {
            id: t.id.clone(),
            generation: t.generation,
            cpu_cores,
            memory_bytes: memory,
            cpu_fraction: fraction(cpu_cores, reserved_cores),
            memory_fraction: fraction(memory as f64, reserved_bytes),
            at_ms: now_ms,
        })
    }
}

/// A figure fit for JSON: NaN and infinities (which serde_json writes as `null`, failing the
/// whole heartbeat on the server) and negative values become 0.
pub fn finite(x: f64) -> f64 {
    if x.is_finite() && x > 0.0 {
        x
    } else {
        0.0
    }
}

fn fraction(used: f64, reserved: Option<f64>) -> Option<f64> {
    reserved.filter(|&r| r > 0.0).map(|r| finite(used / r))
}

/// `read` of the spec an instance runs (or stops) with; None for adopted and leaving ones.
fn spec_of<T>(
    state: &super::shared::State,
    id: &str,
    read: impl Fn(&ebb_core::ServiceSpec) -> T,
) -> Option<T> {
    state.entries.get(id).and_then(|e| match &*e.goal.borrow() {
        Goal::Run(a) | Goal::Stop(a) => Some(read(&a.spec)),
        Goal::Adopted | Goal::Remove | Goal::Shutdown => None,
    })
}

/// Every instance with a live process, read under the state lock (no I/O there).
pub fn targets(shared: &Shared) -> Vec<Target> {
    let state = shared.lock();
    state
        .records
        .iter()
        .map(|(id, r)| Target {
            id: id.clone(),
            generation: r.generation,
            pid: r.pid,
            start_ticks: r.start_ticks,
            cgroups: r.cgroups.clone(),
            resources: spec_of(&state, id, |s| s.resources.clone()).unwrap_or_default(),
            hot: spec_of(&state, id, |s| {
                s.autoscale
                    .as_ref()
                    .is_some_and(|a| a.targets.cpu.is_some() || a.targets.memory.is_some())
            })
            .unwrap_or(false),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(cpu_millis: Option<u32>, memory_bytes: Option<u64>) -> Target {
        Target {
            id: "web-1".into(),
            generation: 7,
            pid: 42,
            start_ticks: 1000,
            cgroups: Vec::new(),
            resources: Resources {
                cpu_millis,
                memory_bytes,
            },
            hot: true,
        }
    }

    fn reading(cpu_ns: u64, memory_bytes: u64) -> Reading {
        Reading {
            cpu_ns,
            source: Source::Cgroup,
            memory_bytes,
        }
    }

    #[test]
    fn cpu_is_a_rate_over_the_interval_and_fractions_are_of_the_reservation() {
        let mut s = Sampler::default();
        let t = target(Some(500), Some(100 << 20));
        let t0 = Instant::now();
        assert!(s.record(&t, reading(0, 1 << 20), t0, 1).is_none());
        let u = s
            .record(
                &t,
                reading(700_000_000, 50 << 20),
                t0 + USAGE_INTERVAL * 2,
                2,
            )
            .unwrap();
        assert!((u.cpu_cores - 0.35).abs() < 1e-9, "{}", u.cpu_cores);
        assert!((u.cpu_fraction.unwrap() - 0.7).abs() < 1e-9);
        assert_eq!(u.memory_bytes, 50 << 20);
        assert_eq!(u.memory_fraction, Some(0.5));
        assert_eq!((u.id.as_str(), u.generation, u.at_ms), ("web-1", 7, 2));
    }

    #[test]
    fn no_reservation_means_no_fraction() {
        let mut s = Sampler::default();
        let t = target(None, Some(0));
        let t0 = Instant::now();
        s.record(&t, reading(0, 1), t0, 1);
        let u = s.record(&t, reading(1, 1), t0 + USAGE_INTERVAL, 2).unwrap();
        assert_eq!((u.cpu_fraction, u.memory_fraction), (None, None));
    }

    #[test]
    fn a_restart_or_a_counter_going_back_starts_a_new_baseline() {
        let mut s = Sampler::default();
        let mut t = target(Some(1000), None);
        let t0 = Instant::now();
        let at = |n: u32| t0 + USAGE_INTERVAL * n;
        s.record(&t, reading(5_000_000_000, 1), at(0), 0);
        t.pid = 43;
        assert!(s.record(&t, reading(10, 1), at(1), 0).is_none(), "new pid");
        assert!(s.record(&t, reading(5, 1), at(2), 0).is_none(), "went back");
        let proc_reading = Reading {
            source: Source::Proc,
            ..reading(6, 1)
        };
        assert!(s.record(&t, proc_reading, at(3), 0).is_none(), "new source");
        assert!(
            s.record(&t, proc_reading, at(3), 0).is_none(),
            "no time passed"
        );
        let u = s.record(&t, reading(1_000_000_006, 1), at(4), 0);
        assert!(u.is_none(), "source changed back");
        let u = s.record(&t, reading(2_000_000_006, 1), at(5), 0).unwrap();
        assert!((u.cpu_cores - 1.0).abs() < 1e-9);
    }

    #[test]
    fn figures_are_always_finite() {
        assert_eq!(finite(f64::NAN), 0.0);
        assert_eq!(finite(f64::INFINITY), 0.0);
        assert_eq!(finite(-1.0), 0.0);
        assert_eq!(finite(0.5), 0.5);
        assert_eq!(fraction(1.0, Some(0.0)), None);
    }

    #[test]
    fn gone_instances_are_forgotten() {
        let mut s = Sampler::default();
        let t = Target {
            pid: u32::MAX,
            ..target(None, None)
        };
        let latest = s.sample(std::slice::from_ref(&t), Instant::now(), 0);
        assert!(latest.instances.is_empty());
        assert!(
            s.previous.is_empty(),
            "an unreadable process keeps no baseline"
        );
        s.record(&t, reading(0, 0), Instant::now(), 0);
        s.sample(&[], Instant::now(), 0);
        assert!(
            s.previous.is_empty(),
            "an instance no longer running is dropped"
        );
    }
}
