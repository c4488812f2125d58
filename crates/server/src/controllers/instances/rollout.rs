//! The rollout plan: a pure function from a service's desired state and its instances to the
//! actions that bring them closer. The controller applies the plan; tests drive it directly.
//!
//! Rules (start-before-stop, ARCHITECTURE.md, principle 6):
//! - Instances on an older version are replaced one at a time: a new one starts, and an old one
//!   is stopped only when a new one is ready. At most one new instance is starting at a time
//!   while old ones remain, so a rollout never runs more than `desired + 1` instances.
//! - An instance being migrated (moved off its node) counts as an old one whatever its version:
//!   its replacement starts first, and it stops once the replacement is ready.
//! - Without old instances, missing instances all start at once and extras stop at once
//!   (the least useful first: not ready, then the youngest).

use ebb_core::DesiredState;

/// What the planner needs to know of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The instance id.
    pub id: String,
    /// The service version it runs.
    pub version: String,
    /// What the server wants of it; a draining instance is already `Stop`.
    pub desired: DesiredState,
    /// Passed its health check, per its node's last report: it can take over from an old one.
    pub ready: bool,
    /// Stopped for good: its record can be forgotten.
    pub stopped: bool,
    /// Unix milliseconds when its assignment was created: among equals the youngest stops first.
    pub created_ms: u64,
    /// Being moved to another node (`ebb migrate`, `ebb drain`): replaced like an old version.
    pub migrating: bool,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create this many new instances of the current version.
    Start {
        /// New instances to create.
        count: u32,
    },
    /// Ask this instance to stop, for the reason given.
    Stop {
        /// The instance to stop.
        id: String,
        /// Why it stops, for its event and drain record.
        reason: StopReason,
    },
    /// Remove the record of an instance that has stopped.
    Forget {
        /// The instance whose record is removed.
        id: String,
    },
}

/// Why the plan stops an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// More instances of the current version run than desired.
    ScaleIn,
    /// On an older version, and a ready instance of the current one took its place.
    Replaced,
    /// Moved off its node (`ebb migrate`, `ebb drain`): its replacement is ready.
    Migrated,
    /// The service was removed.
    ServiceStopped,
}

impl StopReason {
    /// The reason in words, as events and drain records give it.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::ScaleIn => "scale in",
            StopReason::Replaced => "replaced by a newer version",
            StopReason::Migrated => "moved to another node",
            StopReason::ServiceStopped => "service stopped",
        }
    }
}

/// Plans the next actions for a service that should run `desired` instances of `version`.
/// `desired = None` means the service was removed: everything stops.
pub fn plan(desired: Option<u32>, version: &str, instances: &[Observed]) -> Vec<Action> {
    let mut actions: Vec<Action> = instances
        .iter()
        .filter(|i| i.desired == DesiredState::Stop && i.stopped)
        .map(|i| Action::Forget { id: i.id.clone() })
        .collect();
    let live: Vec<&Observed> = instances
        .iter()
        .filter(|i| i.desired == DesiredState::Run)
        .collect();
    let Some(desired) = desired else {
        actions.extend(live.iter().map(|i| stop(i, StopReason::ServiceStopped)));
        return actions;
    };
    let desired = desired as usize;
    let (mut new, mut old): (Vec<&Observed>, Vec<&Observed>) = live
        .into_iter()
        .partition(|i| i.version == version && !i.migrating);
    // Least useful first: not ready before ready, then the youngest.
    new.sort_by_key(|i| (i.ready, std::cmp::Reverse(i.created_ms)));
    // Old instances go oldest-first among equals, but never a ready one before an unready one;
    // a migrating one goes first among the ready, as the replacement that just became ready
    // was started for it.
    old.sort_by_key(|i| (i.ready, !i.migrating, i.created_ms));

    if new.len() > desired {
        let extra = new.len() - desired;
        actions.extend(new.drain(..extra).map(|i| stop(i, StopReason::ScaleIn)));
    }
    let ready_new = new.iter().filter(|i| i.ready).count();
    let old_keep = desired.saturating_sub(ready_new).min(old.len());
    let old_stop = old.len() - old_keep;
    actions.extend(old.drain(..old_stop).map(|i| {
        let reason = if i.migrating {
            StopReason::Migrated
        } else {
            StopReason::Replaced
        };
        stop(i, reason)
    }));

    let missing = desired.saturating_sub(new.len());
    let starting = new.len() - ready_new;
    let start = if old.is_empty() {
        missing
    } else {
        missing.min(1usize.saturating_sub(starting))
    };
    if start > 0 {
        actions.push(Action::Start {
            count: start as u32,
        });
    }
    actions
}

fn stop(i: &Observed, reason: StopReason) -> Action {
    Action::Stop {
        id: i.id.clone(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(id: &str, version: &str, ready: bool, created_ms: u64) -> Observed {
        Observed {
            id: id.into(),
            version: version.into(),
            desired: DesiredState::Run,
            ready,
            stopped: false,
            created_ms,
            migrating: false,
        }
    }

    fn starts(actions: &[Action]) -> u32 {
        actions
            .iter()
            .map(|a| {
                if let Action::Start { count } = a {
                    *count
                } else {
                    0
                }
            })
            .sum()
    }

    fn stops(actions: &[Action]) -> Vec<&str> {
        actions
            .iter()
            .filter_map(|a| {
                if let Action::Stop { id, .. } = a {
                    Some(id.as_str())
                } else {
                    None
                }
            })
            .collect()
    }

    #[test]
    fn a_new_service_starts_all_instances_at_once() {
        assert_eq!(plan(Some(3), "v1", &[]), vec![Action::Start { count: 3 }]);
    }

    #[test]
    fn a_settled_service_needs_nothing() {
        let is = [inst("a", "v1", true, 1), inst("b", "v1", true, 2)];
        assert!(plan(Some(2), "v1", &is).is_empty());
    }

    #[test]
    fn scale_in_stops_unready_then_youngest_first() {
        let is = [
            inst("a", "v1", true, 1),
            inst("b", "v1", true, 3),
            inst("c", "v1", false, 2),
        ];
        assert_eq!(stops(&plan(Some(1), "v1", &is)), ["c", "b"]);
    }

    #[test]
    fn rolling_update_starts_one_new_before_stopping_any_old() {
        let is = [inst("a", "v1", true, 1), inst("b", "v1", true, 2)];
        let actions = plan(Some(2), "v2", &is);
        assert_eq!(starts(&actions), 1);
        assert!(stops(&actions).is_empty());
    }

    #[test]
    fn rolling_update_waits_while_the_new_instance_is_not_ready() {
        let is = [
            inst("a", "v1", true, 1),
            inst("b", "v1", true, 2),
            inst("n", "v2", false, 3),
        ];
        assert!(plan(Some(2), "v2", &is).is_empty());
    }

    #[test]
    fn rolling_update_stops_the_oldest_once_a_new_one_is_ready_and_starts_the_next() {
        let is = [
            inst("a", "v1", true, 1),
            inst("b", "v1", true, 2),
            inst("n", "v2", true, 3),
        ];
        let actions = plan(Some(2), "v2", &is);
        assert_eq!(stops(&actions), ["a"]);
        assert_eq!(starts(&actions), 1);
    }

    #[test]
    fn removed_service_stops_everything_and_forgets_the_stopped() {
        let mut gone = inst("z", "v1", false, 0);
        gone.desired = DesiredState::Stop;
        gone.stopped = true;
        let is = [inst("a", "v1", true, 1), gone];
        let actions = plan(None, "v1", &is);
        assert!(actions.contains(&Action::Forget { id: "z".into() }));
        assert_eq!(stops(&actions), ["a"]);
    }

    #[test]
    fn a_migrating_instance_is_replaced_before_it_stops() {
        let mut moving = inst("b", "v1", true, 2);
        moving.migrating = true;
        let is = [inst("a", "v1", true, 1), moving.clone()];
        assert_eq!(plan(Some(2), "v1", &is), vec![Action::Start { count: 1 }]);
        let starting = [
            inst("a", "v1", true, 1),
            moving.clone(),
            inst("n", "v1", false, 3),
        ];
        assert!(plan(Some(2), "v1", &starting).is_empty(), "wait for ready");
        let ready = [inst("a", "v1", true, 1), moving, inst("n", "v1", true, 3)];
        assert_eq!(
            plan(Some(2), "v1", &ready),
            vec![Action::Stop {
                id: "b".into(),
                reason: StopReason::Migrated
            }]
        );
    }

    #[test]
    fn a_migrating_instance_stops_before_an_older_leftover_of_a_rollout() {
        let mut moving = inst("m", "v2", true, 5);
        moving.migrating = true;
        let is = [inst("old", "v1", true, 1), moving, inst("n", "v2", true, 6)];
        let actions = plan(Some(2), "v2", &is);
        assert_eq!(stops(&actions), ["m"], "{actions:?}");
    }

    #[test]
    fn migrations_of_one_service_move_one_instance_at_a_time() {
        let mut is = vec![inst("a", "v1", true, 1), inst("b", "v1", true, 2)];
        for i in is.iter_mut() {
            i.migrating = true;
        }
        assert_eq!(plan(Some(2), "v1", &is), vec![Action::Start { count: 1 }]);
    }

    /// Applies a plan to a set of instances: stops drop out, starts arrive (not ready yet).
    fn step(is: &mut Vec<Observed>, actions: &[Action], version: &str, next_id: &mut u64) {
        for a in actions {
            match a {
                Action::Stop { id, .. } => is.retain(|i| &i.id != id),
                Action::Start { count } => {
                    for _ in 0..*count {
                        *next_id += 1;
                        is.push(inst(
                            &format!("s{next_id}"),
                            version,
                            false,
                            1000 + *next_id,
                        ));
                    }
                }
                Action::Forget { .. } => {}
            }
        }
    }

    fn mix(olds: &[bool], news: &[bool]) -> Vec<Observed> {
        let mut is = Vec::new();
        for (n, ready) in olds.iter().enumerate() {
            is.push(inst(&format!("o{n}"), "v1", *ready, n as u64));
        }
        for (n, ready) in news.iter().enumerate() {
            is.push(inst(&format!("n{n}"), "v2", *ready, 100 + n as u64));
        }
        is
    }

    proptest::proptest! {
        /// A plan never lowers ready capacity below what is wanted, and while old instances remain
        /// it never starts more than one instance beyond the desired count.
        #[test]
        fn plans_keep_ready_capacity_and_bound_the_surge(
            desired in 0u32..6,
            olds in proptest::collection::vec(proptest::bool::ANY, 0..6),
            news in proptest::collection::vec(proptest::bool::ANY, 0..6),
        ) {
            let mut is = mix(&olds, &news);
            let ready_before = is.iter().filter(|i| i.ready).count();
            let actions = plan(Some(desired), "v2", &is);
            let started = starts(&actions) as usize;
            step(&mut is, &actions, "v2", &mut 0);
            let ready_after = is.iter().filter(|i| i.ready).count();
            proptest::prop_assert!(ready_after >= ready_before.min(desired as usize));
            if started > 0 {
                let limit = if olds.is_empty() { desired as usize } else { desired as usize + 1 };
                proptest::prop_assert!(is.len() <= limit.max(is.len() - started));
            }
        }

        /// Whatever the starting mix, repeating plan → apply → instances become ready ends with
        /// exactly `desired` ready instances of the new version, in a bounded number of steps.
        #[test]
        fn rollouts_converge(
            desired in 0u32..6,
            olds in proptest::collection::vec(proptest::bool::ANY, 0..6),
            news in proptest::collection::vec(proptest::bool::ANY, 0..6),
        ) {
            let mut is = mix(&olds, &news);
            let mut next_id = 0;
            for _ in 0..(2 * (desired as usize + olds.len() + news.len()) + 2) {
                let actions = plan(Some(desired), "v2", &is);
                // An empty plan with unready instances is waiting for them, not done.
                if actions.is_empty() && is.iter().all(|i| i.ready) {
                    break;
                }
                step(&mut is, &actions, "v2", &mut next_id);
                for i in is.iter_mut() {
                    i.ready = true;
                }
            }
            proptest::prop_assert_eq!(is.len(), desired as usize);
            proptest::prop_assert!(is.iter().all(|i| i.version == "v2" && i.ready));
        }
    }
}
