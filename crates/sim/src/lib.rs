//! `ebb sim`: replays a request-rate trace against a service's `[autoscale]` policy (the
//! production autoscaler, [`ebb::Ebb`]) and against models of Kubernetes' HPA and Knative's KPA
//! ([`peers`]), a fleet fixed at the peak and the optimal oracle ([`oracle`]), all under one
//! cost/SLO model ([`model`]), so their figures compare. The foresight reference
//! ([`foresight`]), told the load's level ahead but not its seconds, says how much of a
//! policy's gap to the oracle knowing the level would close.
//!
//! Policies are compared at a *utilization*: the share of an instance's capacity their target
//! aims at (ebb's concurrency target 0.7 with a capacity of 10 req/s and 100 ms per request is
//! 0.7 × 10 × 0.1). [`Scenario::sweep`] finds each policy's cheapest utilization within 1 %
//! missed seconds. Everything is deterministic: the same input gives the same figures.

pub mod ebb;
pub mod foresight;
pub mod model;
pub mod oracle;
pub mod peers;
pub mod trace;

use ebb_core::autoscale::{AutoscaleSpec, ScalePolicy};
use model::{Model, Outcome, Policy, Second, SERVICE_TIME_S};
use serde::Serialize;

/// Most missed seconds, in percent, a setting may cost to count in a sweep (the SLO).
pub const SWEEP_MISSED_PERCENT: f64 = 1.0;
/// The step between the utilizations a sweep tries: 5 % of an instance's capacity.
pub const SWEEP_STEP: f64 = 0.05;

/// The utilizations a sweep tries for every policy: 5 % to 100 % of an instance's capacity, by
/// [`SWEEP_STEP`] (a policy that reacts late needs a low target to miss little).
pub fn sweep_grid() -> Vec<f64> {
    (1..=20).map(|k| f64::from(k) * SWEEP_STEP).collect()
}

/// The highest utilization a sweep tries: past the grid, a policy still within the budget at
/// its top goes on by [`SWEEP_STEP`] until it misses more, up to this. A target above an
/// instance's capacity is a policy's knob like any other: ebb adds headroom for the load's
/// noise, so at 100 % it can still miss less than the budget allows (0.5 % on the idle trace,
/// 0.8 % on the flash trace at d = 10 s), and a sweep that stopped there did not find its
/// cheapest setting. Three times the capacity is far past any policy's cheapest.
pub const SWEEP_MAX_UTILIZATION: f64 = 3.0;

/// The policies replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Which {
    /// ebb's autoscaler.
    Ebb,
    /// Kubernetes' HPA model.
    Hpa,
    /// Knative's KPA model.
    Kpa,
}

impl Which {
    /// The three policies with a target.
    pub const ALL: [Which; 3] = [Which::Ebb, Which::Hpa, Which::Kpa];

    /// Its name in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Which::Ebb => "ebb",
            Which::Hpa => "hpa",
            Which::Kpa => "kpa",
        }
    }
}

/// What a scenario cannot replay.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SimError {
    /// The policy does not follow requests.
    #[error("ebb sim replays request load: the service's [autoscale] needs a concurrency or rps target (it has {0})")]
    NoRequestTarget(String),
    /// A schedule's windows need wall-clock times, which a trace of counts does not have.
    #[error("ebb sim does not replay policy = \"schedule\" (a trace of counts has no wall-clock times for its windows); replay the same service with policy = \"target\"")]
    Schedule,
    /// The trace needs more instances than any policy may run.
    #[error("the trace's busiest second needs {needed} instances at this --capacity and --scale; ebb sim models at most {max}")]
    TooLarge {
        /// Instances the busiest second needs.
        needed: u32,
        /// [`MAX_INSTANCES`].
        max: u32,
    },
}

/// Most instances a replay models: a service's most (the oracle's cost grows with it).
pub const MAX_INSTANCES: u32 = ebb_core::service::MAX_INSTANCES;

/// A trace, the model, and the service's autoscaling.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The cost/SLO model.
    pub model: Model,
    /// Requests per second, second by second (already scaled).
    pub load: Vec<f64>,
    /// The service's `[autoscale]`, as deployed.
    pub autoscale: AutoscaleSpec,
}

/// One policy's replay at one utilization.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    /// The policy.
    pub policy: Which,
    /// The share of an instance's capacity its target aims at.
    pub utilization: f64,
    /// Its target as configured: `concurrency 0.7`, `rps 7`.
    pub target: String,
    /// What it cost and missed.
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl Scenario {
    /// Checks that the service's autoscaling follows requests (target tracking on concurrency or
    /// requests per second).
    pub fn new(model: Model, load: Vec<f64>, autoscale: AutoscaleSpec) -> Result<Self, SimError> {
        let follows_requests =
            autoscale.targets.concurrency.is_some() || autoscale.targets.rps.is_some();
        if matches!(autoscale.policy, ScalePolicy::Schedule { .. }) {
            return Err(SimError::Schedule);
        }
        if !follows_requests || !matches!(autoscale.policy, ScalePolicy::Target) {
            return Err(SimError::NoRequestTarget(describe_targets(&autoscale)));
        }
        let needed = load.iter().map(|l| model.needed(*l)).max().unwrap_or(0);
        if needed > MAX_INSTANCES {
            return Err(SimError::TooLarge {
                needed,
                max: MAX_INSTANCES,
            });
        }
        Ok(Scenario {
            model,
            load,
            autoscale,
        })
    }

    /// The utilization the service's own target aims at.
    pub fn own_utilization(&self) -> f64 {
        let t = &self.autoscale.targets;
        match (t.concurrency, t.rps) {
            (Some(c), _) => c / (self.model.capacity * SERVICE_TIME_S),
            (None, Some(r)) => r / self.model.capacity,
            (None, None) => 1.0,
        }
    }

    /// Instances at the first second: what it needs, within the bounds.
    fn initial(&self, min: u32, max: u32) -> u32 {
        let first = self.load.first().copied().unwrap_or(0.0);
        self.model.needed(first).clamp(min, max.max(min))
    }

    /// Replays `which` at `utilization`, keeping the seconds in `record` for a chart.
    pub fn run(
        &self,
        which: Which,
        utilization: f64,
        record: std::ops::Range<usize>,
    ) -> (Run, Vec<Second>) {
        let (min, max) = (self.autoscale.min, self.autoscale.max);
        let per_instance_rps = utilization * self.model.capacity;
        let per_instance_concurrency = per_instance_rps * SERVICE_TIME_S;
        let (mut policy, target, initial): (Box<dyn Policy>, String, u32) = match which {
            Which::Ebb => {
                // Only the request target: the replay has no cpu, memory or latency samples (a
                // target without samples holds the count), and one swept target is compared.
                let mut config = self.autoscale.clone();
                let swept = ebb_core::autoscale::ScaleTargets::default();
                let target = if config.targets.concurrency.is_some() {
                    config.targets = ebb_core::autoscale::ScaleTargets {
                        concurrency: Some(per_instance_concurrency),
                        ..swept
                    };
                    format!("concurrency {}", round3(per_instance_concurrency))
                } else {
                    config.targets = ebb_core::autoscale::ScaleTargets {
                        rps: Some(per_instance_rps),
                        ..swept
                    };
                    format!("rps {}", round3(per_instance_rps))
                };
                (
                    Box::new(ebb::Ebb::new(config)),
                    target,
                    self.initial(min, max),
                )
            }
            Which::Hpa => (
                Box::new(peers::Hpa::new(per_instance_rps, min, max)),
                format!("rps {} per pod", round3(per_instance_rps)),
                self.initial(min.max(1), max),
            ),
            Which::Kpa => {
                // KPA aims at 70 % of its target: the target that makes `utilization` its aim.
                let target = per_instance_concurrency / peers::KPA_UTILIZATION;
                (
                    Box::new(peers::Kpa::new(target, min, max)),
                    format!("concurrency {} (70 %)", round3(target)),
                    self.initial(min, max),
                )
            }
        };
        let (outcome, seconds) =
            model::replay(&self.model, &self.load, policy.as_mut(), initial, record);
        let run = Run {
            policy: which,
            utilization,
            target,
            outcome,
        };
        (run, seconds)
    }

    /// Every policy at every utilization of `grid`, and past its top by [`SWEEP_STEP`] for each
    /// policy still within the budget there, up to [`SWEEP_MAX_UTILIZATION`]; on every core.
    /// Runs come by policy ([`Which::ALL`]'s order), then by utilization.
    pub fn sweep(&self, grid: &[f64]) -> Vec<Run> {
        let jobs: Vec<(Which, f64)> = Which::ALL
            .iter()
            .flat_map(|w| grid.iter().map(move |u| (*w, *u)))
            .collect();
        let mut runs = on_every_core(&jobs, |&(which, u)| self.run(which, u, 0..0).0);
        let mut past = runs_past(&runs, grid);
        while !past.is_empty() {
            runs.extend(on_every_core(&past, |&(which, u)| {
                self.run(which, u, 0..0).0
            }));
            past = runs_past(&runs, grid);
        }
        let order = |w: Which| Which::ALL.iter().position(|x| *x == w);
        runs.sort_by(|a, b| {
            (order(a.policy), a.utilization)
                .partial_cmp(&(order(b.policy), b.utilization))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        runs
    }
}

/// How many runs of a policy in a row, its highest among them, must cost the same for a sweep
/// to stop going past its grid: a quarter of an instance's capacity. Where the target changes
/// nothing (a load that one instance serves whatever the target, as on the sparse trace),
/// higher targets would not either; but a count rounded up stays the same over a few steps
/// (4.5 instances' load is 5 from 90 % to 110 %), and a cheaper target can come after.
const SWEEP_FLAT_RUNS: usize = 5;

/// The next utilization to try past `grid`'s top, for each policy whose highest run so far
/// (the grid's top, or a step past it) was within the budget, unless the target stopped
/// changing its cost ([`SWEEP_FLAT_RUNS`]).
fn runs_past(runs: &[Run], grid: &[f64]) -> Vec<(Which, f64)> {
    let Some(&top) = grid.last() else {
        return Vec::new();
    };
    Which::ALL
        .iter()
        .filter_map(|&w| {
            let mut own: Vec<&Run> = runs.iter().filter(|r| r.policy == w).collect();
            own.sort_by(|a, b| b.utilization.total_cmp(&a.utilization));
            let highest = own.first()?;
            // Counted in steps from the top, so that the utilizations do not drift.
            let steps = ((highest.utilization - top) / SWEEP_STEP).round().max(0.0);
            let next = top + (steps + 1.0) * SWEEP_STEP;
            let within = highest.outcome.missed_percent() <= SWEEP_MISSED_PERCENT;
            let cost = |r: &Run| r.outcome.instance_seconds;
            let flat = own.len() >= SWEEP_FLAT_RUNS
                && own[..SWEEP_FLAT_RUNS]
                    .iter()
                    .all(|r| cost(r) == cost(highest));
            (within && !flat && next <= SWEEP_MAX_UTILIZATION + SWEEP_STEP / 2.0)
                .then_some((w, next))
        })
        .collect()
}

/// `f` of every job, in the jobs' order, computed on every core.
pub(crate) fn on_every_core<J: Sync, R: Send>(jobs: &[J], f: impl Fn(&J) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(jobs.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<Option<R>> = std::iter::repeat_with(|| None).take(jobs.len()).collect();
    let slots = std::sync::Mutex::new(&mut results);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(job) = jobs.get(i) else {
                    break;
                };
                let result = f(job);
                if let Ok(mut r) = slots.lock() {
                    r[i] = Some(result);
                }
            });
        }
    });
    results.into_iter().flatten().collect()
}

/// The cheapest run of `which` within the SLO, if any.
pub fn cheapest(runs: &[Run], which: Which) -> Option<&Run> {
    runs.iter()
        .filter(|r| r.policy == which && r.outcome.missed_percent() <= SWEEP_MISSED_PERCENT)
        .min_by_key(|r| r.outcome.instance_seconds)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn describe_targets(a: &AutoscaleSpec) -> String {
    let t = &a.targets;
    let mut parts = Vec::new();
    if t.cpu.is_some() {
        parts.push("a cpu target");
    }
    if t.memory.is_some() {
        parts.push("a memory target");
    }
    if t.latency_p95.is_some() {
        parts.push("a latency target");
    }
    match a.policy {
        ScalePolicy::Step { .. } => parts.push("a step policy"),
        ScalePolicy::Linear { .. } => parts.push("a linear policy"),
        _ => {}
    }
    if parts.is_empty() {
        "no target".into()
    } else {
        parts.join(" and ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebb_core::autoscale::ScaleTargets;

    fn scenario(load: Vec<f64>, min: u32) -> Scenario {
        let targets = ScaleTargets {
            concurrency: Some(0.7),
            ..ScaleTargets::default()
        };
        let model = Model {
            capacity: 10.0,
            start_delay_s: 10,
        };
        Scenario::new(model, load, AutoscaleSpec::new(min, 100, targets)).unwrap_or_else(|e| {
            panic!("{e}");
        })
    }

    /// Each policy's utilizations in a sweep's runs, in their order.
    fn utilizations(runs: &[Run], which: Which) -> Vec<f64> {
        runs.iter()
            .filter(|r| r.policy == which)
            .map(|r| (r.utilization * 100.0).round() / 100.0)
            .collect()
    }

    #[test]
    fn a_sweep_goes_past_its_grid_while_a_policy_misses_little_enough() {
        // 45 req/s, steady: 5 instances serve it at 90 % and up, 4 do not at 112.5 % and up.
        let load = vec![45.0; 3600];
        let runs = scenario(load, 1).sweep(&[0.9, 1.0]);
        let ebb = utilizations(&runs, Which::Ebb);
        assert_eq!(ebb, [0.9, 1.0, 1.05, 1.1, 1.15], "{runs:?}");
        let missed = |u: f64| {
            runs.iter()
                .find(|r| r.policy == Which::Ebb && (r.utilization - u).abs() < 1e-9)
                .map(|r| r.outcome.missed_percent())
        };
        assert!(missed(1.1).is_some_and(|m| m <= SWEEP_MISSED_PERCENT));
        assert!(missed(1.15).is_some_and(|m| m > SWEEP_MISSED_PERCENT));
        // Runs come by policy, then by utilization.
        let order: Vec<Which> = runs.iter().map(|r| r.policy).collect();
        let mut sorted = order.clone();
        sorted.sort_by_key(|w| Which::ALL.iter().position(|x| x == w));
        assert_eq!(order, sorted);
        for w in Which::ALL {
            let u = utilizations(&runs, w);
            assert!(u.windows(2).all(|p| p[0] < p[1]), "{w:?}: {u:?}");
        }
    }

    #[test]
    fn a_sweep_stops_where_the_target_changes_nothing() {
        // One request a second, served by one instance at any target: the sweep stops where
        // five targets in a row cost the same, not at three times the capacity.
        let runs = scenario(vec![1.0; 3600], 1).sweep(&[0.8, 0.9, 1.0]);
        for w in Which::ALL {
            let u = utilizations(&runs, w);
            assert_eq!(u, [0.8, 0.9, 1.0, 1.05, 1.1], "{w:?}: {runs:?}");
        }
    }
}
