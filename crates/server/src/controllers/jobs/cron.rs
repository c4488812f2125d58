//! Scheduled jobs in a pass: a job with a `schedule` gets its next run once the last one has
//! ended (its record is written ahead, with the run's firing time as its submission, and the
//! pass leaves it alone until then), or has its running run replaced (`overlap = "replace"`).
//! The decision is [`ebb_core::schedule::decide`]'s, at the pass's time.

use super::decide::JobView;
use crate::controllers::instances::{Plan, Recheck};
use crate::state::keys;
use ebb_core::schedule::{self, format_utc, Firing};
use ebb_core::{Event, EventKind, JobEnd, JobRecord, JobState};
use ebb_store::{Expect, Op};

/// Writes the next run of every scheduled job that is due one; passes run every second while
/// any scheduled job is there (firings come with time, not with store changes).
pub(super) fn plan_schedules(views: &mut [JobView], plan: &mut Plan, budget: &mut usize) {
    let now = plan.now_ms;
    let mut scheduled = false;
    for view in views.iter_mut() {
        let spec = &view.record.spec;
        let Some(schedule) = spec.parsed_schedule() else {
            continue;
        };
        if view.record.cancelled_ms.is_some() {
            continue;
        }
        scheduled = true;
        let ended = view.finished();
        let firing = schedule::decide(
            &schedule,
            spec.overlap,
            view.record.submitted_ms,
            ended,
            now,
        );
        let (at_ms, message) = match firing {
            Firing::Wait => continue,
            Firing::NextRun { at_ms, skipped_ms } => {
                let skipped = skipped_ms.map_or(String::new(), |s| {
                    format!(
                        "; the firing at {} was skipped: run {} was still running (overlap = \"skip\")",
                        format_utc(s),
                        view.record.run
                    )
                });
                let when = if at_ms <= now {
                    "now".to_string()
                } else {
                    format!("at {}", format_utc(at_ms))
                };
                (at_ms, format!("run {} starts {when}{skipped}", view.record.run + 1))
            }
            Firing::Replace { fired_ms } => (
                fired_ms,
                format!(
                    "run {} replaces run {}, still running at the firing of {} (overlap = \"replace\"): its {} running task(s) stop",
                    view.record.run + 1,
                    view.record.run,
                    format_utc(fired_ms),
                    view.running.len()
                ),
            ),
        };
        if *budget == 0 {
            plan.recheck = Recheck::Soon;
            return;
        }
        *budget -= 1;
        let next = JobRecord {
            spec: spec.clone(),
            run: view.record.run + 1,
            submitted_ms: at_ms,
            cancelled_ms: None,
        };
        plan.ops.push(Op::put(
            keys::job(view.name),
            keys::encode(&next),
            Expect::ModRevision(view.revision),
        ));
        let kind = match firing {
            Firing::Replace { fired_ms } => {
                // The replaced run ends here (its progress says so), and starts nothing more
                // in this pass; the next pass stops its attempts as an older run's.
                view.end(JobEnd {
                    state: JobState::Cancelled,
                    at_ms: now,
                    reason: format!(
                        "replaced by run {} at the firing of {}",
                        view.record.run + 1,
                        format_utc(fired_ms)
                    ),
                });
                EventKind::JobCancelled
            }
            _ => EventKind::JobSubmitted,
        };
        plan.events.push(
            Event::new(
                now,
                kind,
                format!(
                    "job {} (schedule {:?}): {message}",
                    view.name,
                    spec.schedule.as_deref().unwrap_or("")
                ),
            )
            .service(view.name),
        );
    }
    if scheduled && plan.recheck == Recheck::OnChange {
        plan.recheck = Recheck::EverySecond;
    }
}
