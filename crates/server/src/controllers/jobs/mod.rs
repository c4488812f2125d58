//! Jobs: tasks that run to completion, queued by priority and fair share, retried, timed out,
//! cancelled and failed at their deadline. They are part of the service controller's pass
//! (one snapshot, one [`Placer`](crate::controllers::instances::Placer) with every
//! reservation, one transaction), so services and tasks never both take the same free
//! capacity. [`TaskBook`] is the leader's index of task records; [`plan_jobs`] the decision.

mod book;
mod cron;
mod decide;
mod preempt;

pub use book::{BookChange, JobTasks, RunId, TaskBook};
pub use decide::{plan_jobs, JobsInput};
