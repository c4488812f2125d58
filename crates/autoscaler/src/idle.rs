//! The rules of a `min = 0` service between requests: to zero after `idle_timeout` (fixed, or
//! the keep-alive learned by `idle_timeout = "auto"`, and while it learns as long as a cold
//! start costs), one instance kept until then, a pre-warm ahead of a request the gaps say is
//! due, and what the scale-down delay of `auto` learns from the load meanwhile.

use crate::explain;
use crate::keep_alive::{break_even, KeepAlivePlan, MIN_GAP, MIN_GAPS};
use crate::metrics::Metrics;
use crate::state::State;
use crate::Rule;
use ebb_core::autoscale::{AutoscaleSpec, Bounds};
use std::time::Duration;

/// Where a service stands between requests, at one tick.
pub(crate) struct Idle {
    /// How long since the last request.
    quiet: Duration,
    /// The keep-alive learned for a `min = 0` service with `idle_timeout = "auto"`.
    plan: Option<KeepAlivePlan>,
    /// How long without a request ends everything until a keep-alive is learned (see
    /// [`unlearned_timeout`]).
    timeout: Duration,
    /// The start time of the service's instances that the timeout was read for.
    start: Duration,
    /// Whether the service goes to zero now.
    pub(crate) idle: bool,
    /// Whether a pre-warm window is open.
    prewarming: bool,
    /// A pre-warmed count still held for the requests it was started for.
    hold: Option<u32>,
}

/// The count a tick asked for, after the bounds, and the count before the tick.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Counts {
    pub(crate) asked: u32,
    pub(crate) clamped: u32,
    pub(crate) base: u32,
}

impl Idle {
    /// Reads the state at `now` for a service whose lower bound is `min`.
    pub(crate) fn read(
        config: &AutoscaleSpec,
        state: &mut State,
        metrics: &Metrics,
        min: u32,
        now: Duration,
    ) -> Idle {
        let quiet = state.quiet_for(now);
        let start = state.starts.estimate();
        let plan = match config.idle_auto && min == 0 {
            true => state.keep_alive.plan(start),
            false => None,
        };
        let timeout = unlearned_timeout(config, state, start);
        // No request for idle_timeout ends everything, a panic included: a panic is about
        // requests, and there are none. A learned keep-alive, or one kept while learning, may
        // be seconds long: it releases only on seconds known to be quiet, not on a peer
        // server's silence (while learning, until the full idle_timeout).
        let idle = min == 0
            && match plan {
                Some(plan) => plan.releases(quiet) && !metrics.unknown_within(now, plan.keep),
                None => {
                    quiet >= config.idle_timeout
                        || (quiet >= timeout && !metrics.unknown_within(now, timeout))
                }
            };
        let prewarming = !idle && plan.is_some_and(|p| p.prewarms(quiet));
        // A pre-warmed count holds while the stable window still averages the quiet before
        // the requests it was started for.
        let hold = match idle || prewarming {
            true => None,
            false => state.keep_alive.held(now),
        };
        Idle {
            quiet,
            plan,
            timeout,
            start,
            idle,
            prewarming,
            hold,
        }
    }

    /// The fewest instances while not idle: a pre-warm's, a held pre-warm's, one for a
    /// `min = 0` service that had a request (see [`keeps_one`]), or `min`.
    pub(crate) fn floor(&self, state: &State, min: u32, base: u32) -> u32 {
        if self.prewarming {
            state.keep_alive.prewarm_count()
        } else if let Some(n) = self.hold {
            n.max(min)
        } else if min == 0 && keeps_one(state, base) {
            1
        } else {
            min
        }
    }

    /// What the rules here add to the reason, the rule, and the instances the scale-up rate
    /// limit leaves out (a pre-warm is planned), when they set the count; `None` otherwise.
    pub(crate) fn explain(
        &self,
        config: &AutoscaleSpec,
        state: &State,
        counts: Counts,
        min: u32,
    ) -> Option<(String, Rule, u32)> {
        let Counts {
            asked,
            clamped,
            base,
        } = counts;
        if let (true, Some(plan)) = (clamped > asked && self.prewarming, self.plan) {
            let planned = clamped - asked.max(base).min(clamped);
            let text = prewarm_reason(plan, clamped, self.quiet);
            return Some((text, Rule::Prewarm, planned));
        }
        if self.hold.is_some() && clamped > asked && clamped > min {
            let text = format!(
                "; held at {clamped}: pre-warmed for these requests, until the stable window has \
                 seen them"
            );
            return Some((text, Rule::Prewarm, 0));
        }
        if clamped == 1 && asked == 0 && min == 0 {
            let after = explain::duration(self.plan.map_or(self.timeout, |p| p.keep));
            let timeout = match self.plan {
                None if !config.idle_auto => "idle_timeout".to_string(),
                None => self.timeout(config, state),
                Some(p) => format!("idle_timeout auto, learned from {} gaps", p.gaps),
            };
            let text =
                format!("; kept at 1: zero only after {after} without a request ({timeout})");
            return Some((text, Rule::Stabilized, 0));
        }
        None
    }

    /// What the tick teaches: the count serving the requests (what a pre-warm starts), a
    /// pre-warm's hold, and the load's dips (`scale_down_delay = "auto"`).
    pub(crate) fn learn(
        &self,
        config: &AutoscaleSpec,
        state: &mut State,
        (recommendation, clamped): (u32, u32),
        bounds: Bounds,
        now: Duration,
    ) {
        if self.quiet < MIN_GAP {
            state.keep_alive.serving(recommendation.min(bounds.max));
        } else if self.prewarming {
            state.keep_alive.hold(now + config.stable_window, clamped);
        }
        if self.idle || clamped == 0 {
            // At zero, the idle keep-alive decides what runs when requests come back: the
            // levels left are not dips of the load.
            state.dips.idle();
        } else if config.scale_down_auto {
            // Only the levels instances may follow: none above the upper bound. Below the
            // lower bound the load's dips are still its own, and a schedule window's raised
            // floor must not be held, as a recommendation, once the window ends.
            state.dips.observe(now, recommendation.min(bounds.max));
        }
    }

    /// The reason of going to zero.
    pub(crate) fn idle_reason(&self, config: &AutoscaleSpec, state: &State) -> String {
        let (q, timeout) = (explain::duration(self.quiet), self.timeout(config, state));
        match state.last_request {
            Some(_) => format!("no request for {q} ({timeout}) → 0"),
            None => format!("no request in the {q} observed ({timeout}) → 0"),
        }
    }

    /// The idle timeout in force, as a reason says it: `idle_timeout 5m`, or what `auto`
    /// learned.
    fn timeout(&self, config: &AutoscaleSpec, state: &State) -> String {
        let fixed = explain::duration(config.idle_timeout);
        let Some(plan) = self.plan else {
            if !config.idle_auto {
                return format!("idle_timeout {fixed}");
            }
            let seen = state.keep_alive.gaps();
            if self.timeout < config.idle_timeout {
                let keep = explain::duration(self.timeout);
                let why = match self.timeout <= MIN_GAP {
                    true => "the shortest keep-alive".to_string(),
                    false => format!(
                        "as long as a cold start of {} costs",
                        explain::duration(self.start)
                    ),
                };
                return format!(
                    "idle_timeout auto, not learned yet: {seen} of {MIN_GAPS} gaps, so {keep}: {why}"
                );
            }
            return format!("idle_timeout auto, not learned yet: {seen} of {MIN_GAPS} gaps");
        };
        let keep = explain::duration(plan.keep);
        let learned = format!("learned from {} gaps", plan.gaps);
        match plan.prewarm {
            None => format!("idle_timeout auto: {keep}, {learned}"),
            Some((from, until)) => {
                let (f, u) = (explain::duration(from), explain::duration(until));
                format!("idle_timeout auto: {keep}, pre-warmed from {f} to {u} of quiet, {learned}")
            }
        }
    }
}

/// How long without a request ends everything while no keep-alive is learned. A fixed
/// `idle_timeout` is what it says. With `auto`, the service's gaps are not known yet, and the
/// choice is the ski-rental problem with nothing learned: keep an idle instance as long as a
/// cold start costs ([`break_even`]), which costs at most twice the better of keeping and
/// releasing at once, whatever the gap. The timeout stays the ceiling (`auto` never keeps
/// longer before it has learned than the fixed timeout would), and so does it for a service
/// that has had no request since this state began (a fresh state after a restart gives a
/// running service the full timeout). At least [`MIN_GAP`], a pause within a visit.
fn unlearned_timeout(config: &AutoscaleSpec, state: &State, start: Duration) -> Duration {
    match config.idle_auto && state.last_request.is_some() {
        true => config.idle_timeout.min(break_even(start).max(MIN_GAP)),
        false => config.idle_timeout,
    }
}

/// A `min = 0` service that is not idle keeps one instance: it had a request within its
/// keep-alive (its cold start may still be under way), or it runs and no request was ever
/// seen (a fresh state after a restart gives it a full `idle_timeout`). A service found at zero
/// with no request seen stays there.
fn keeps_one(state: &State, base: u32) -> bool {
    state.last_request.is_some() || base > 0
}

/// What a pre-warm adds to a reason.
fn prewarm_reason(plan: KeepAlivePlan, count: u32, quiet: Duration) -> String {
    let q = explain::duration(quiet);
    let until = plan.prewarm.map_or(String::new(), |(_, u)| {
        format!(" by {} of quiet", explain::duration(u))
    });
    format!(
        "; pre-warmed at {count} (the most the last requests asked for): quiet for {q}, the next \
         request is due{until} (idle_timeout auto, learned from {} gaps)",
        plan.gaps
    )
}
