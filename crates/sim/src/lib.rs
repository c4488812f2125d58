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

/// How many steps of [`SWEEP_STEP`] a sweep may go past its grid's top: to 300 % of an
/// instance's capacity past [`sweep_grid`]. A policy still within the budget at the grid's top
/// goes on, [`SWEEP_STEPS_PER_ROUND`] steps at a time, until a round has a run that misses more
/// or the last step is run. Every run of a round counts, as every run of the grid does, but
/// no further round of whole steps is run to look for a higher target within the budget (the
/// refinement, [`SWEEP_REFINEMENTS`], only narrows the gap above the cheapest). A target above an
/// instance's capacity is a policy's knob like any other: ebb adds headroom for the load's
/// noise, so at 100 % it can still miss less than the budget allows (0.50 % on the idle trace
/// at d = 10 s, 0.82 % / 0.95 % on the flash trace at d = 10 s / 60 s), and a sweep that
/// stopped there did not find its cheapest setting.
pub const SWEEP_STEPS_PAST: u32 = 40;

/// Steps past the grid's top run at once for each policy still going: a round's runs share the
/// cores, where one step at a time would replay one policy on one core.
pub const SWEEP_STEPS_PER_ROUND: u32 = 4;

/// How many times a sweep halves its step between each policy's cheapest run within the budget
/// and the run above it (5 % → 2.5 % → 1.25 % of an instance's capacity). A policy's cheapest
/// setting within the budget is often between two of the grid's: on the NASA trace ×100 at
/// d = 10 s the refinement found ebb's at 82.5 % (1.761× the oracle against 1.811× at 80 %)
/// and the HPA model's at 31.25 % (1.931× against 2.012×) (BENCHMARKS.md, issue 19,
/// seventeenth part). Every policy is refined alike, so each policy's cost at its cheapest can
/// only fall (its missed seconds may rise, within the budget).
pub const SWEEP_REFINEMENTS: u32 = 2;

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

impl Run {
    /// Whether it missed at most [`SWEEP_MISSED_PERCENT`] of the seconds: a sweep's budget.
    pub fn within_budget(&self) -> bool {
        self.outcome.missed_percent() <= SWEEP_MISSED_PERCENT
    }
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
                    format!("concurrency {}", round4(per_instance_concurrency))
                } else {
                    config.targets = ebb_core::autoscale::ScaleTargets {
                        rps: Some(per_instance_rps),
                        ..swept
                    };
                    format!("rps {}", round4(per_instance_rps))
                };
                (
                    Box::new(ebb::Ebb::new(config)),
                    target,
                    self.initial(min, max),
                )
            }
            Which::Hpa => (
                Box::new(peers::Hpa::new(per_instance_rps, min, max)),
                format!("rps {} per pod", round4(per_instance_rps)),
                self.initial(min.max(1), max),
            ),
            Which::Kpa => {
                // KPA aims at 70 % of its target: the target that makes `utilization` its aim.
                let target = per_instance_concurrency / peers::KPA_UTILIZATION;
                (
                    Box::new(peers::Kpa::new(target, min, max)),
                    format!("concurrency {} (70 %)", round4(target)),
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

    /// Every policy at every utilization of `grid` (spaced by [`SWEEP_STEP`], as
    /// [`sweep_grid`]'s), past its top for each policy still within the budget there
    /// ([`SWEEP_STEPS_PAST`]), and refined above each policy's cheapest
    /// ([`SWEEP_REFINEMENTS`]); on every core. Runs come by policy ([`Which::ALL`]'s order), then
    /// by utilization.
    pub fn sweep(&self, grid: &[f64]) -> Vec<Run> {
        let jobs: Vec<(Which, f64)> = Which::ALL
            .iter()
            .flat_map(|w| grid.iter().map(move |u| (*w, *u)))
            .collect();
        let mut runs = on_every_core(&jobs, |&(which, u)| self.run(which, u, 0..0).0);
        if let Some(&top) = grid.last() {
            self.go_past(top, &mut runs);
        }
        self.refine(&mut runs);
        let order = |w: Which| Which::ALL.iter().position(|x| *x == w);
        runs.sort_by(|a, b| {
            order(a.policy)
                .cmp(&order(b.policy))
                .then(a.utilization.total_cmp(&b.utilization))
        });
        runs
    }

    /// Adds to `runs` the runs past the grid's `top` (see [`SWEEP_STEPS_PAST`]), for each
    /// policy whose run at `top` is within the budget. Ends by construction: at most
    /// [`SWEEP_STEPS_PAST`] steps, whatever the runs.
    fn go_past(&self, top: f64, runs: &mut Vec<Run>) {
        let mut going: Vec<Which> = Which::ALL
            .into_iter()
            .filter(|w| runs_within_budget(runs, *w).any(|r| r.utilization == top))
            .collect();
        let mut done = 0;
        while !going.is_empty() && done < SWEEP_STEPS_PAST {
            let steps = done + 1..=(done + SWEEP_STEPS_PER_ROUND).min(SWEEP_STEPS_PAST);
            // Counted in steps from the top, so that the utilizations do not drift.
            let jobs: Vec<(Which, f64)> = going
                .iter()
                .flat_map(|w| {
                    steps
                        .clone()
                        .map(move |k| (*w, top + f64::from(k) * SWEEP_STEP))
                })
                .collect();
            let round = on_every_core(&jobs, |&(which, u)| self.run(which, u, 0..0).0);
            going.retain(|w| {
                round
                    .iter()
                    .filter(|r| r.policy == *w)
                    .all(Run::within_budget)
            });
            runs.extend(round);
            done = *steps.end();
        }
    }

    /// Adds to `runs` the refinement's runs ([`SWEEP_REFINEMENTS`]). Each round halves the step
    /// and tries, for each policy, its base plus that step, when another run of the policy lies
    /// within the previous step above the base (a gap to narrow) and none at that utilization
    /// yet. The base is the policy's cheapest run within the budget; of several as cheap, the
    /// highest target, as the gap to narrow is above them all ([`cheapest`], which reports the
    /// lowest of them, the one with the most headroom for the same cost). Ends by construction:
    /// at most one run per policy per round.
    fn refine(&self, runs: &mut Vec<Run>) {
        let mut step = SWEEP_STEP;
        for _ in 0..SWEEP_REFINEMENTS {
            step /= 2.0;
            let jobs: Vec<(Which, f64)> = Which::ALL
                .into_iter()
                .filter_map(|w| {
                    let own = || runs.iter().filter(move |r| r.policy == w);
                    let base = runs_within_budget(runs, w)
                        .min_by(|a, b| {
                            let cost = |r: &Run| r.outcome.instance_seconds;
                            cost(a)
                                .cmp(&cost(b))
                                .then(b.utilization.total_cmp(&a.utilization))
                        })?
                        .utilization;
                    let probe = base + step;
                    let gap_above = |u: f64| u > base && u <= base + 2.0 * step + 1e-9;
                    let tried = own().any(|r| (r.utilization - probe).abs() < 1e-9);
                    (own().any(|r| gap_above(r.utilization)) && !tried).then_some((w, probe))
                })
                .collect();
            let round = on_every_core(&jobs, |&(which, u)| self.run(which, u, 0..0).0);
            runs.extend(round);
        }
    }
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
    runs_within_budget(runs, which).min_by_key(|r| r.outcome.instance_seconds)
}

/// The runs of `which` within the SLO.
fn runs_within_budget(runs: &[Run], which: Which) -> impl Iterator<Item = &Run> {
    runs.iter()
        .filter(move |r| r.policy == which && r.within_budget())
}

/// A target to four decimals: a refined sweep's utilizations are multiples of 1.25 %
/// ([`SWEEP_REFINEMENTS`]), which read exactly at the default capacity.
fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
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
            .map(|r| round4(r.utilization))
            .collect()
    }

    #[test]
    fn a_sweep_goes_past_its_grid_while_a_policy_misses_little_enough() {
        // 45 req/s, steady: 5 instances serve it up to 112.5 %, 4 do not from there on.
        let runs = scenario(vec![45.0; 1800], 1).sweep(&sweep_grid());
        let ebb = utilizations(&runs, Which::Ebb);
        // The grid, then one round of four steps past it: 115 % and 120 % miss. Then the
        // refinement: 112.5 % misses too, and 111.25 % is 5 instances like 110 %.
        assert_eq!(ebb.len(), 26, "{ebb:?}");
        assert_eq!(
            ebb[19..],
            [1.0, 1.05, 1.1, 1.1125, 1.125, 1.15, 1.2],
            "{runs:?}"
        );
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
    fn the_refinement_never_runs_a_utilization_twice() {
        // 45 req/s on a grid 2.5 % apart: 110 % is the highest of the cheapest, and 112.5 %,
        // a step above it, was run already and misses; only 111.25 % is new.
        let runs = scenario(vec![45.0; 1800], 1).sweep(&[1.075, 1.1, 1.125]);
        for w in Which::ALL {
            let u = utilizations(&runs, w);
            assert_eq!(u, [1.075, 1.1, 1.1125, 1.125], "{w:?}: {runs:?}");
        }
    }

    #[test]
    fn a_sweep_past_its_grid_ends_at_three_times_the_capacity() {
        // One request a second, served by one instance at any target: every policy is within
        // the budget at every step, and stops at the last.
        let runs = scenario(vec![1.0; 300], 1).sweep(&[1.0]);
        for w in Which::ALL {
            let u = utilizations(&runs, w);
            // Every run costs the same: the cheapest is the last, with no run above it for the
            // refinement to narrow the gap to.
            assert_eq!(u.len(), 1 + SWEEP_STEPS_PAST as usize, "{w:?}: {u:?}");
            assert_eq!(u.last(), Some(&3.0), "{w:?}: {u:?}");
        }
        // A grid whose top is not a number ends too, with no run past it.
        let runs = scenario(vec![1.0; 60], 1).sweep(&[f64::NAN]);
        assert_eq!(runs.len(), Which::ALL.len());
        assert!(runs.iter().all(|r| r.utilization.is_nan()), "{runs:?}");
    }
}
