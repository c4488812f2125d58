//! Properties of the job queue's order (`ebb_scheduler::queue`), over random queues and jobs:
//! a pick never passes over a higher-priority job that could run, caps are never exceeded, and
//! every queue with weight and work gets picks while capacity lasts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ebb_scheduler::queue::{Candidate, Order, QueueLoad};
use proptest::prelude::*;

fn queues() -> impl Strategy<Value = Vec<QueueLoad>> {
    prop::collection::vec(
        (1u32..10, prop::option::of(1u32..20), 0u32..5).prop_map(|(weight, cap, running)| {
            QueueLoad {
                weight,
                max_running: cap,
                running: cap.map_or(running, |c| running.min(c)),
            }
        }),
        1..6,
    )
}

fn jobs(queues: usize) -> impl Strategy<Value = Vec<Candidate>> {
    prop::collection::vec(
        (
            0u8..=100,
            0..queues,
            0u64..1000,
            0u32..30,
            1u32..10,
            0u32..20,
        )
            .prop_map(
                |(priority, queue, submitted_ms, waiting, min, extra)| Candidate {
                    priority,
                    queue,
                    submitted_ms,
                    seq: submitted_ms,
                    waiting,
                    running: 0,
                    min,
                    max: min + extra,
                },
            ),
        0..12,
    )
}

fn case() -> impl Strategy<Value = (Vec<QueueLoad>, Vec<Candidate>, u32)> {
    queues().prop_flat_map(|q| {
        let n = q.len();
        (Just(q), jobs(n), 0u32..200)
    })
}

/// Whether job `i` could take a task given the picks so far.
fn eligible(queues: &[QueueLoad], jobs: &[Candidate], i: usize) -> bool {
    let j = &jobs[i];
    let q = &queues[j.queue];
    j.waiting > 0 && j.running < j.max && q.max_running.is_none_or(|c| q.running < c)
}

proptest! {
    #[test]
    fn picks_respect_priority_and_caps((qs, js, capacity) in case()) {
        let mut order = Order::new(qs.clone(), js.clone());
        let (mut queues, mut jobs) = (qs, js);
        for _ in 0..capacity {
            let best_priority = (0..jobs.len())
                .filter(|&i| eligible(&queues, &jobs, i))
                .map(|i| jobs[i].priority)
                .max();
            let Some(pick) = order.pick() else {
                prop_assert!(best_priority.is_none(), "nothing picked while job could run");
                break;
            };
            prop_assert!(eligible(&queues, &jobs, pick), "picked a job that may not run");
            prop_assert_eq!(Some(jobs[pick].priority), best_priority, "passed over higher priority");
            jobs[pick].waiting -= 1;
            jobs[pick].running += 1;
            let q = jobs[pick].queue;
            queues[q].running += 1;
            prop_assert!(queues[q].max_running.is_none_or(|c| queues[q].running <= c));
            prop_assert!(jobs[pick].running <= jobs[pick].max);
        }
    }

    /// Two queues of equal priority with plenty of work: each gets picks in proportion to its
    /// weight (within one pick), so a queue of weight 1 is never starved by one of weight 9.
    #[test]
    fn no_positive_weight_queue_starves(w0 in 1u32..10, w1 in 1u32..10, picks in 10u32..200) {
        let q = |weight| QueueLoad { weight, max_running: None, running: 0 };
        let job = |queue| Candidate {
            priority: 50, queue, submitted_ms: 0, seq: queue as u64,
            waiting: 10_000, running: 0, min: 0, max: u32::MAX,
        };
        let mut order = Order::new(vec![q(w0), q(w1)], vec![job(0), job(1)]);
        let mut got = [0u32; 2];
        for _ in 0..picks {
            got[order.pick().unwrap()] += 1;
        }
        let share = f64::from(picks) * f64::from(w1) / f64::from(w0 + w1);
        prop_assert!((f64::from(got[1]) - share).abs() <= 1.0, "{:?} for weights {} {}", got, w0, w1);
    }
}
