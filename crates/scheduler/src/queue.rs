//! The job queue's order: which job's next waiting task goes first.
//!
//! Tasks of one job share its priority and queue, so the order is kept per job, never per
//! task: a decision costs a look at each job with work waiting, whatever the number of tasks.
//! The rule, in order: higher priority first; then a job below its minimum parallelism (it
//! needs those tasks); then the queue furthest below its fair share (running tasks over
//! weight, so that two busy queues of weights 3 and 1 run tasks 3:1); then first submitted
//! first (FIFO). A job never runs more than its `max` tasks, and a queue never more than its
//! `max_running`; an idle queue's share is free for the others to borrow.

use std::cmp::Ordering;

/// A job with tasks waiting, as the queue sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// 0–100; higher first.
    pub priority: u8,
    /// Index of its queue in the [`Order`]'s queues.
    pub queue: usize,
    /// When it was submitted (ties broken by `seq`): FIFO within a queue.
    pub submitted_ms: u64,
    /// Unique, stable order among jobs submitted at the same millisecond.
    pub seq: u64,
    /// Tasks ready to run now.
    pub waiting: u32,
    /// Tasks running now.
    pub running: u32,
    /// Its parallelism: it needs `min` running, may run `max`.
    pub min: u32,
    /// See `min`.
    pub max: u32,
}

/// A queue's weight, cap and running tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueLoad {
    /// Fair-share weight, at least 1.
    pub weight: u32,
    /// Most tasks running at once; None: no cap.
    pub max_running: Option<u32>,
    /// Tasks of its jobs running now.
    pub running: u32,
}

/// Picks jobs one task at a time, counting each pick as running, until nothing may start.
#[derive(Debug, Clone)]
pub struct Order {
    queues: Vec<QueueLoad>,
    jobs: Vec<Candidate>,
    /// Jobs that may not take more this round (their task fits no node).
    blocked: Vec<bool>,
}

impl Order {
    /// An order over `jobs` (each naming its queue by index into `queues`).
    pub fn new(queues: Vec<QueueLoad>, jobs: Vec<Candidate>) -> Order {
        let blocked = vec![false; jobs.len()];
        Order {
            queues,
            jobs,
            blocked,
        }
    }

    /// The job (its index in the list given to [`Order::new`]) whose task goes next, counted
    /// as running from now on; None when no job may start a task.
    pub fn pick(&mut self) -> Option<usize> {
        let best = (0..self.jobs.len())
            .filter(|&i| self.eligible(i))
            .max_by(|&a, &b| self.compare(a, b))?;
        let job = &mut self.jobs[best];
        job.waiting -= 1;
        job.running += 1;
        if let Some(q) = self.queues.get_mut(job.queue) {
            q.running += 1;
        }
        Some(best)
    }

    /// The last task picked for `job` found no node: undo the pick and skip the job for the
    /// rest of this round (a smaller task of another job may still fit).
    pub fn unplaced(&mut self, job: usize) {
        let Some(j) = self.jobs.get_mut(job) else {
            return;
        };
        j.waiting += 1;
        j.running = j.running.saturating_sub(1);
        if let Some(q) = self.queues.get_mut(j.queue) {
            q.running = q.running.saturating_sub(1);
        }
        self.blocked[job] = true;
    }

    /// How many more tasks `job` needs to reach its `min`, within [`Order::room_for`]: what
    /// preemption makes room for when its tasks fit nowhere (above `min`, a job grows only
    /// on free capacity).
    pub fn short_of_min(&self, job: usize) -> u32 {
        self.jobs.get(job).map_or(0, |j| {
            j.min.saturating_sub(j.running).min(self.room_for(job))
        })
    }

    /// How many more tasks `job` may start now: its waiting tasks, within its `max` and its
    /// queue's `max_running`.
    pub fn room_for(&self, job: usize) -> u32 {
        let Some(j) = self.jobs.get(job) else {
            return 0;
        };
        let queue_room = self
            .queues
            .get(j.queue)
            .and_then(|q| q.max_running.map(|cap| cap.saturating_sub(q.running)))
            .unwrap_or(u32::MAX);
        j.waiting
            .min(j.max.saturating_sub(j.running))
            .min(queue_room)
    }

    /// Tasks of `queue` running, counting this round's picks.
    pub fn running_in(&self, queue: usize) -> u32 {
        self.queues.get(queue).map_or(0, |q| q.running)
    }

    fn eligible(&self, i: usize) -> bool {
        let j = &self.jobs[i];
        let queue_open = self
            .queues
            .get(j.queue)
            .is_none_or(|q| q.max_running.is_none_or(|cap| q.running < cap));
        !self.blocked[i] && j.waiting > 0 && j.running < j.max && queue_open
    }

    /// Greater is picked first.
    fn compare(&self, a: usize, b: usize) -> Ordering {
        let (x, y) = (&self.jobs[a], &self.jobs[b]);
        x.priority
            .cmp(&y.priority)
            .then_with(|| (x.running < x.min).cmp(&(y.running < y.min)))
            .then_with(|| self.share_cmp(y.queue, x.queue))
            .then_with(|| (y.submitted_ms, y.seq).cmp(&(x.submitted_ms, x.seq)))
    }

    /// Orders queues by running tasks over weight (cross-multiplied: no division).
    fn share_cmp(&self, a: usize, b: usize) -> Ordering {
        let load = |q: usize| {
            self.queues.get(q).map_or((0, 1), |l| {
                (u64::from(l.running), u64::from(l.weight.max(1)))
            })
        };
        let ((ra, wa), (rb, wb)) = (load(a), load(b));
        (ra * wb).cmp(&(rb * wa))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(priority: u8, queue: usize, submitted_ms: u64, waiting: u32) -> Candidate {
        Candidate {
            priority,
            queue,
            submitted_ms,
            seq: submitted_ms,
            waiting,
            running: 0,
            min: 1,
            max: u32::MAX,
        }
    }

    fn queue(weight: u32, max_running: Option<u32>) -> QueueLoad {
        QueueLoad {
            weight,
            max_running,
            running: 0,
        }
    }

    #[test]
    fn higher_priority_goes_first_then_fifo() {
        let mut o = Order::new(
            vec![queue(1, None)],
            vec![job(10, 0, 1, 1), job(90, 0, 3, 1), job(10, 0, 2, 1)],
        );
        assert_eq!(o.pick(), Some(1));
        assert_eq!(o.pick(), Some(0));
        assert_eq!(o.pick(), Some(2));
        assert_eq!(o.pick(), None);
    }

    #[test]
    fn two_busy_queues_share_by_weight() {
        let mut o = Order::new(
            vec![queue(3, None), queue(1, None)],
            vec![job(50, 0, 1, 1000), job(50, 1, 0, 1000)],
        );
        let mut picks = [0u32; 2];
        for _ in 0..400 {
            picks[o.pick().unwrap()] += 1;
        }
        assert_eq!(picks, [300, 100]);
    }

    #[test]
    fn caps_hold_and_an_idle_queues_share_is_borrowed() {
        let mut o = Order::new(
            vec![queue(1, Some(2)), queue(5, None)],
            vec![job(50, 0, 0, 10), job(50, 1, 0, 0)],
        );
        assert_eq!(o.pick(), Some(0));
        assert_eq!(o.pick(), Some(0));
        assert_eq!(o.pick(), None, "max_running 2 reached");
        let mut o = Order::new(vec![queue(1, None), queue(9, None)], vec![job(50, 0, 0, 5)]);
        assert_eq!((0..5).filter_map(|_| o.pick()).count(), 5);
    }

    #[test]
    fn a_job_that_fits_nowhere_steps_aside_for_the_round() {
        let mut o = Order::new(
            vec![queue(1, None)],
            vec![job(90, 0, 0, 3), job(10, 0, 1, 3)],
        );
        assert_eq!(o.pick(), Some(0));
        o.unplaced(0);
        assert_eq!(o.pick(), Some(1));
        assert_eq!(o.running_in(0), 1);
        assert_eq!(o.room_for(0), 3, "3 waiting, no cap");
    }

    #[test]
    fn room_is_within_the_jobs_max_and_the_queues_cap() {
        let mut capped = job(50, 0, 0, 10);
        capped.max = 4;
        capped.running = 1;
        let o = Order::new(vec![queue(1, Some(2))], vec![capped.clone()]);
        assert_eq!(
            o.room_for(0),
            2,
            "queue cap 2, nothing of the queue counted yet"
        );
        let o = Order::new(vec![queue(1, None)], vec![capped]);
        assert_eq!(o.room_for(0), 3, "max 4 with 1 running");
        assert_eq!(o.room_for(7), 0, "no such job");
        let mut elastic = job(50, 0, 0, 10);
        (elastic.min, elastic.max, elastic.running) = (3, 8, 1);
        let o = Order::new(vec![queue(1, None)], vec![elastic]);
        assert_eq!((o.room_for(0), o.short_of_min(0)), (7, 2));
    }
}
