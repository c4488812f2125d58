//! Preemption: which running tasks of lower priority to stop so that a request of higher
//! priority fits, when it fits nowhere as things are.
//!
//! The rule (issue 17; Kubernetes' scheduler and Kueue choose their victims alike):
//! - only tasks of strictly lower priority, and never one younger than its job's `min_runtime`;
//! - on each node, tasks of elastic jobs above their `min` before any task a job needs, and
//!   among those the cheapest first (lowest priority, then the youngest: least work lost); then
//!   as many of the chosen are spared again, most expensive first, as still leave room;
//! - among the nodes, the one whose victims cost least: spare tasks only over any task a job
//!   needs, then the lowest highest priority, then the fewest needed tasks, then the fewest
//!   victims, then the least run time lost.
//!
//! The picture it works on counts tasks that are already stopping as gone, so a request whose
//! room is being made waits for them ([`Room::Waiting`]) instead of taking more victims; each
//! room made is reserved in the picture, so two requests never count on the same victims. The
//! caller holds the part of each room that is free already (see [`Cluster::reserve_up_to`]),
//! so that work of lower priority does not take it while the victims stop, and tells the
//! picture of its other placements ([`Preemption::placed`]).

use crate::cluster::Cluster;
use crate::score;
use crate::{NodeId, Request, Resources};
use std::collections::HashMap;

/// A running task, as preemption sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// Its node.
    pub node: NodeId,
    /// Its job: an index into the jobs given to [`Preemption::new`].
    pub job: usize,
    /// Its job's priority.
    pub priority: u8,
    /// What it reserves.
    pub resources: Resources,
    /// When it started (unix ms): the run time a preemption loses.
    pub started_ms: u64,
    /// It may not be preempted before this (started + its job's `min_runtime`).
    pub protected_until_ms: u64,
}

/// A job of running tasks: its name (its reservations' service name in the [`Cluster`]) and
/// how many of its running tasks are above its `min`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSlack {
    /// The job's name.
    pub name: String,
    /// Running tasks above its `min` parallelism: these go first.
    pub spare: u32,
}

/// What wants room.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// Who asks (`service web`, `job render`): room already being made for it is its own.
    pub owner: &'a str,
    /// Its reservation, constraints and service name.
    pub request: &'a Request,
    /// Its priority: only tasks of lower priority make room for it.
    pub priority: u8,
    /// Whether it is a task, which also needs a task slot on the node (see `task_cap`).
    pub task: bool,
    /// Most victims the caller can stop now (its store writes left): a room that needs more
    /// is not made, rather than made by half.
    pub max_victims: usize,
}

/// Room being made for someone: what a task that was preempted for `owner` and is still
/// stopping will free on `node`. Only `owner` counts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The node.
    pub node: NodeId,
    /// Who the task was preempted for.
    pub owner: String,
    /// What it holds.
    pub resources: Resources,
}

/// Where room is for an [`Ask`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Room {
    /// It fits on this node once the tasks already stopping there have ended: nothing more
    /// to stop.
    Waiting(NodeId),
    /// Stopping these tasks (indices into the tasks given to [`Preemption::new`]) makes room
    /// on `node`.
    Made {
        /// The node.
        node: NodeId,
        /// The victims, all on `node`.
        victims: Vec<usize>,
    },
}

/// The cost of a node's victims; less is cheaper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Cost {
    /// Any task a job needs (below its `min` once stopped) is worse than any spare one.
    any_needed: bool,
    highest_priority: u8,
    needed: u32,
    victims: usize,
    lost_ms: u64,
    /// Exact ties go to a hash of the seed and the node's name, as placement breaks them.
    tie: u64,
}

/// Running tasks and the cluster's picture, asked for room one request at a time.
#[derive(Debug, Clone)]
pub struct Preemption {
    cluster: Cluster,
    jobs: Vec<JobSlack>,
    tasks: Vec<Running>,
    /// Rooms being made, each for its owner only.
    pending: Vec<Pending>,
    /// Per node, its tasks' indices, cheapest first.
    by_node: Vec<Vec<usize>>,
    /// Tasks chosen as victims so far.
    gone: Vec<bool>,
    /// Per node, its tasks not gone.
    tasks_on: Vec<u32>,
    task_cap: u32,
    now_ms: u64,
    held_back: bool,
}

impl Preemption {
    /// Preemption over `cluster` (every reservation held, except those of tasks already
    /// stopping for another reason than a preemption), the rooms `pending` (tasks stopping
    /// because they were preempted), the jobs' slack, and `tasks` (every running task not
    /// already stopping). A node runs at most `task_cap` tasks. `now_ms` decides which tasks
    /// `min_runtime` protects.
    pub fn new(
        cluster: Cluster,
        pending: Vec<Pending>,
        jobs: Vec<JobSlack>,
        tasks: Vec<Running>,
        task_cap: u32,
        now_ms: u64,
    ) -> Preemption {
        let mut by_node = vec![Vec::new(); cluster.len()];
        let mut tasks_on = vec![0u32; cluster.len()];
        for (t, task) in tasks.iter().enumerate() {
            if let Some(list) = by_node.get_mut(task.node.index()) {
                list.push(t);
                tasks_on[task.node.index()] += 1;
            }
        }
        for list in &mut by_node {
            // Lowest priority first, then the youngest (least work lost), then a stable order.
            list.sort_by_key(|&t| {
                let task = &tasks[t];
                (task.priority, std::cmp::Reverse(task.started_ms), t)
            });
        }
        let gone = vec![false; tasks.len()];
        Preemption {
            cluster,
            jobs,
            tasks,
            pending,
            by_node,
            gone,
            tasks_on,
            task_cap,
            now_ms,
            held_back: false,
        }
    }

    /// Room for `ask`: a node where it fits once tasks already stopping end, or the cheapest
    /// set of victims that makes room. The room is reserved (and the victims count as gone)
    /// for the asks that follow. None: nothing of lower priority that may be stopped makes
    /// room anywhere.
    pub fn make_room(&mut self, ask: &Ask, seed: u64) -> Option<Room> {
        if let Some(node) = self.own_room(ask) {
            return Some(Room::Waiting(node));
        }
        let mut best: Option<(Cost, NodeId, Vec<usize>)> = None;
        let mut protected = false;
        for i in 0..self.cluster.len() {
            let node = NodeId(u32::try_from(i).unwrap_or(u32::MAX));
            if !self.cluster.admits(node, ask.request) {
                continue;
            }
            let Some(victims) = self.victims_on(node, ask, &mut protected) else {
                continue;
            };
            let cost = self.cost(node, &victims, seed);
            if best.as_ref().is_none_or(|(b, _, _)| cost < *b) {
                best = Some((cost, node, victims));
            }
        }
        let Some((_, node, victims)) = best else {
            self.held_back |= protected;
            return None;
        };
        self.commit(node, &victims, ask);
        Some(if victims.is_empty() {
            Room::Waiting(node)
        } else {
            Room::Made { node, victims }
        })
    }

    /// A node where room is being made for `ask`'s owner on which, with what is free there,
    /// the ask fits: that room is taken (for this ask) and the node returned.
    fn own_room(&mut self, ask: &Ask) -> Option<NodeId> {
        let mut nodes: Vec<NodeId> = self
            .pending
            .iter()
            .filter(|p| p.owner == ask.owner)
            .map(|p| p.node)
            .collect();
        nodes.sort_unstable_by_key(|n| n.index());
        nodes.dedup();
        let node = nodes
            .into_iter()
            .find(|&node| self.own_room_fits(node, ask))?;
        let free = self.cluster.node(node)?.free();
        // The part free now is reserved; the rest comes out of the owner's pending rooms.
        let mut left = ask.request.resources.saturating_sub(free);
        self.pending.retain_mut(|p| {
            if p.owner != ask.owner || p.node != node || left.is_zero() {
                return true;
            }
            let used = Resources::new(
                p.resources.cpu_millis.min(left.cpu_millis),
                p.resources.memory_bytes.min(left.memory_bytes),
            );
            left = left.saturating_sub(used);
            p.resources = p.resources.saturating_sub(used);
            !p.resources.is_zero()
        });
        let _ = self
            .cluster
            .reserve_up_to(node, &ask.request.service, ask.request.resources);
        if ask.task {
            self.tasks_on[node.index()] += 1;
        }
        Some(node)
    }

    /// Whether `ask` fits on `node` in what is free there plus its owner's pending rooms.
    fn own_room_fits(&self, node: NodeId, ask: &Ask) -> bool {
        let Some(view) = self.cluster.node(node) else {
            return false;
        };
        let mine = self
            .pending
            .iter()
            .filter(|p| p.owner == ask.owner && p.node == node)
            .fold(view.free(), |room, p| {
                room.checked_add(p.resources).unwrap_or(room)
            });
        let slot = !ask.task || self.tasks_on[node.index()] < self.task_cap;
        slot && self.cluster.admits(node, ask.request) && ask.request.resources.fits_in(mine)
    }

    /// Whether an ask found no room only because a task that would have made it is younger
    /// than its `min_runtime`: asking again later may succeed.
    pub fn held_back(&self) -> bool {
        self.held_back
    }

    /// The cheapest victims on `node` that make room for `ask` (none if it fits already), or
    /// None if even every task that may be stopped there does not.
    fn victims_on(&self, node: NodeId, ask: &Ask, protected: &mut bool) -> Option<Vec<usize>> {
        let i = node.index();
        let free = self.cluster.node(node)?.free();
        let fits = |room: Resources, count: u32| {
            ask.request.resources.fits_in(room) && (!ask.task || count < self.task_cap)
        };
        if fits(free, self.tasks_on[i]) {
            return Some(Vec::new());
        }
        let mut candidates: Vec<usize> = Vec::new();
        for &t in &self.by_node[i] {
            let task = &self.tasks[t];
            if self.gone[t] || task.priority >= ask.priority {
                continue;
            }
            if task.protected_until_ms > self.now_ms {
                *protected = true;
                continue;
            }
            candidates.push(t);
        }
        // Each job's spare tasks (its cheapest) go before the tasks it needs.
        let mut spare_left: HashMap<usize, u32> = HashMap::new();
        let mut needed: Vec<bool> = Vec::with_capacity(candidates.len());
        for &t in &candidates {
            let job = self.tasks[t].job;
            let left = spare_left
                .entry(job)
                .or_insert_with(|| self.jobs.get(job).map_or(0, |j| j.spare));
            needed.push(*left == 0);
            *left = left.saturating_sub(1);
        }
        let mut order: Vec<(bool, usize)> = needed.into_iter().zip(candidates).collect();
        order.sort_by_key(|&(needed, _)| needed); // stable: cheapest first within each class
        let (mut room, mut count) = (free, self.tasks_on[i]);
        let mut chosen = Vec::new();
        for &(_, t) in &order {
            if fits(room, count) {
                break;
            }
            room = room.checked_add(self.tasks[t].resources).unwrap_or(room);
            count = count.saturating_sub(1);
            chosen.push(t);
        }
        if !fits(room, count) {
            return None;
        }
        // Spare again what is not needed, the most expensive first.
        let mut kept = Vec::with_capacity(chosen.len());
        for &t in chosen.iter().rev() {
            let without = room.checked_sub(self.tasks[t].resources);
            match without {
                Some(less) if fits(less, count + 1) => {
                    room = less;
                    count += 1;
                }
                _ => kept.push(t),
            }
        }
        kept.reverse();
        // Fewest: one task that makes the room alone, no dearer than the set (not needed where
        // the set takes only spare tasks, of no higher priority than the set's highest), goes
        // instead of several.
        if kept.len() > 1 {
            let set_needed = order.iter().any(|&(n, t)| n && kept.contains(&t));
            let set_priority = kept.iter().map(|&t| self.tasks[t].priority).max();
            let single = order.iter().find(|&&(n, t)| {
                let task = &self.tasks[t];
                let room = free.checked_add(task.resources).unwrap_or(free);
                fits(room, self.tasks_on[i].saturating_sub(1))
                    && (set_needed || !n)
                    && Some(task.priority) <= set_priority
            });
            if let Some(&(_, t)) = single {
                kept = vec![t];
            }
        }
        (kept.len() <= ask.max_victims).then_some(kept)
    }

    fn cost(&self, node: NodeId, victims: &[usize], seed: u64) -> Cost {
        let mut per_job: HashMap<usize, u32> = HashMap::new();
        let mut highest_priority = 0;
        let mut lost_ms = 0u64;
        for &t in victims {
            let task = &self.tasks[t];
            *per_job.entry(task.job).or_insert(0) += 1;
            highest_priority = highest_priority.max(task.priority);
            lost_ms = lost_ms.saturating_add(self.now_ms.saturating_sub(task.started_ms));
        }
        let needed: u32 = per_job
            .iter()
            .map(|(&job, &n)| n.saturating_sub(self.jobs.get(job).map_or(0, |j| j.spare)))
            .sum();
        let hash = self.cluster.hot.name_hashes[node.index()];
        Cost {
            any_needed: needed > 0,
            highest_priority,
            needed,
            victims: victims.len(),
            lost_ms,
            tie: u64::MAX - score::tie_key(seed, hash),
        }
    }

    /// Takes the victims out of the picture and reserves the ask's room on `node`.
    fn commit(&mut self, node: NodeId, victims: &[usize], ask: &Ask) {
        let i = node.index();
        for &t in victims {
            self.gone[t] = true;
            self.tasks_on[i] = self.tasks_on[i].saturating_sub(1);
            let task = &self.tasks[t];
            if let Some(job) = self.jobs.get_mut(task.job) {
                job.spare = job.spare.saturating_sub(1);
                // `resources` is what the task holds (the caller's reservation of it).
                let _ = self.cluster.release(node, &job.name, task.resources);
            }
        }
        let _ = self
            .cluster
            .reserve_up_to(node, &ask.request.service, ask.request.resources);
        if ask.task {
            self.tasks_on[i] += 1;
        }
    }

    /// Notes an instance placed on `node` after the picture was taken, so that rooms are not
    /// made of what it took.
    pub fn placed(&mut self, node: NodeId, request: &Request, task: bool) {
        let _ = self
            .cluster
            .reserve_up_to(node, &request.service, request.resources);
        if let Some(count) = self.tasks_on.get_mut(node.index()).filter(|_| task) {
            *count += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Constraint, Node, NodeState};

    const GIB: u64 = 1 << 30;

    #[derive(Clone)]
    struct Setup {
        cluster: Cluster,
        jobs: Vec<JobSlack>,
        tasks: Vec<Running>,
    }

    /// Nodes n0.. of 4 cpu each.
    fn setup(nodes: usize) -> Setup {
        let mut cluster = Cluster::new();
        for n in 0..nodes {
            cluster
                .add_node(Node::new(format!("n{n}"), Resources::new(4000, 8 * GIB)))
                .unwrap();
        }
        Setup {
            cluster,
            jobs: Vec::new(),
            tasks: Vec::new(),
        }
    }

    impl Setup {
        fn job(&mut self, name: &str, spare: u32) -> usize {
            self.jobs.push(JobSlack {
                name: name.into(),
                spare,
            });
            self.jobs.len() - 1
        }

        /// A running task of `job` on node `n`, reserving `cpu`, started at `started_ms`.
        fn task(&mut self, job: usize, priority: u8, n: u32, cpu: u64, started_ms: u64) -> usize {
            let resources = Resources::new(cpu, GIB);
            let name = self.jobs[job].name.clone();
            self.cluster.reserve(NodeId(n), &name, resources).unwrap();
            self.tasks.push(Running {
                node: NodeId(n),
                job,
                priority,
                resources,
                started_ms,
                protected_until_ms: started_ms + 30_000,
            });
            self.tasks.len() - 1
        }

        fn preemption(self, now_ms: u64) -> Preemption {
            Preemption::new(self.cluster, Vec::new(), self.jobs, self.tasks, 32, now_ms)
        }
    }

    fn ask(request: &Request, priority: u8) -> Ask<'_> {
        Ask {
            owner: "high",
            request,
            priority,
            task: true,
            max_victims: usize::MAX,
        }
    }

    fn cpu(n: u64) -> Request {
        Request::new("high", Resources::new(n, GIB))
    }

    #[test]
    fn the_fewest_cheapest_victims_on_the_cheapest_node() {
        let mut s = setup(2);
        let low = s.job("low", 0);
        let mid = s.job("mid", 0);
        // n0: four 1-cpu tasks of priority 10; n1: one 4-cpu task of priority 40.
        for k in 0..4 {
            s.task(low, 10, 0, 1000, k * 1000);
        }
        s.task(mid, 40, 1, 4000, 0);
        let mut p = s.preemption(100_000);
        // Two cpus: two priority-10 tasks (the youngest) beat one priority-40 task.
        let room = p.make_room(&ask(&cpu(2000), 90), 1).unwrap();
        assert_eq!(
            room,
            Room::Made {
                node: NodeId(0),
                victims: vec![3, 2]
            }
        );
        // The rest of n0's tasks are next; then only n1's big task is left.
        let room = p.make_room(&ask(&cpu(2000), 90), 1).unwrap();
        assert_eq!(
            room,
            Room::Made {
                node: NodeId(0),
                victims: vec![1, 0]
            }
        );
        let room = p.make_room(&ask(&cpu(1000), 90), 1).unwrap();
        assert_eq!(
            room,
            Room::Made {
                node: NodeId(1),
                victims: vec![4]
            }
        );
        // What n1's victim freed beyond that is there to take; beyond it, nothing is left.
        assert_eq!(
            p.make_room(&ask(&cpu(3000), 90), 1),
            Some(Room::Waiting(NodeId(1)))
        );
        assert_eq!(p.make_room(&ask(&cpu(1000), 90), 1), None, "nothing left");
    }

    #[test]
    fn one_big_victim_goes_rather_than_several_small_ones() {
        let mut s = setup(1);
        let low = s.job("low", 0);
        // One old 2-cpu task and four young half-cpu ones, all of priority 10.
        s.task(low, 10, 0, 2000, 0);
        for k in 0..4 {
            s.task(low, 10, 0, 500, 10_000 + k);
        }
        let mut p = s.preemption(100_000);
        assert_eq!(
            p.make_room(&ask(&cpu(2000), 90), 1),
            Some(Room::Made {
                node: NodeId(0),
                victims: vec![0]
            })
        );
    }

    #[test]
    fn only_lower_priority_and_never_younger_than_min_runtime() {
        let mut s = setup(1);
        let same = s.job("same", 0);
        let young = s.job("young", 0);
        s.task(same, 50, 0, 2000, 0);
        s.task(young, 10, 0, 2000, 90_000);
        let mut p = s.clone().preemption(100_000);
        assert_eq!(p.make_room(&ask(&cpu(2000), 50), 1), None);
        assert!(p.held_back(), "the young task would have made room");
        // Once its min_runtime has passed, it goes.
        let mut p = s.preemption(120_000);
        assert_eq!(
            p.make_room(&ask(&cpu(2000), 50), 1),
            Some(Room::Made {
                node: NodeId(0),
                victims: vec![1]
            })
        );
    }

    #[test]
    fn elastic_jobs_shrink_toward_min_first() {
        let mut s = setup(1);
        // Job "elastic" runs 3 with min 1 (2 spare); job "fixed" runs 1 it needs, at a lower
        // priority and younger: cheaper by every other measure.
        let elastic = s.job("elastic", 2);
        let fixed = s.job("fixed", 0);
        s.task(elastic, 30, 0, 1000, 0);
        s.task(elastic, 30, 0, 1000, 1000);
        s.task(elastic, 30, 0, 1000, 2000);
        s.task(fixed, 10, 0, 1000, 5000);
        let mut p = s.preemption(100_000);
        let room = p.make_room(&ask(&cpu(2000), 100), 1).unwrap();
        assert_eq!(
            room,
            Room::Made {
                node: NodeId(0),
                victims: vec![2, 1]
            }
        );
        // At its min, the elastic job's last task is needed like the fixed job's: now the
        // cheaper of those goes.
        let room = p.make_room(&ask(&cpu(1000), 100), 1).unwrap();
        assert_eq!(
            room,
            Room::Made {
                node: NodeId(0),
                victims: vec![3]
            }
        );
    }

    #[test]
    fn room_being_made_is_waited_for_not_taken_twice() {
        let mut s = setup(1);
        let low = s.job("low", 0);
        s.task(low, 10, 0, 2000, 0);
        // Two cpus are free already in the picture (a task stopping there was left out).
        let mut p = s.preemption(100_000);
        assert_eq!(
            p.make_room(&ask(&cpu(2000), 90), 1),
            Some(Room::Waiting(NodeId(0)))
        );
        // The second ask does not count on the same two cpus: it takes the running task.
        assert_eq!(
            p.make_room(&ask(&cpu(2000), 90), 1),
            Some(Room::Made {
                node: NodeId(0),
                victims: vec![0]
            })
        );
    }

    #[test]
    fn room_being_made_for_one_asker_is_not_anothers() {
        let mut s = setup(2);
        let low = s.job("low", 0);
        // n0 is full but a task preempted for `job a` stops there (2 cpus pending); n1 runs
        // four old 1-cpu tasks.
        s.cluster
            .reserve(NodeId(0), "low", Resources::new(4000, 0))
            .unwrap();
        for k in 0..4 {
            s.task(low, 10, 1, 1000, k);
        }
        let pending = vec![Pending {
            node: NodeId(0),
            owner: "job a".into(),
            resources: Resources::new(2000, 0),
        }];
        let mut p = Preemption::new(s.cluster, pending, s.jobs, s.tasks, 32, 100_000);
        let two = cpu(2000);
        let other = Ask {
            owner: "service web",
            ..ask(&two, 90)
        };
        let mine = Ask {
            owner: "job a",
            ..ask(&two, 90)
        };
        // Another asker preempts on n1 rather than count on job a's room...
        assert!(matches!(
            p.make_room(&other, 1),
            Some(Room::Made {
                node: NodeId(1),
                ..
            })
        ));
        // ...which stays job a's, taken once.
        assert_eq!(p.make_room(&mine, 1), Some(Room::Waiting(NodeId(0))));
        assert!(matches!(
            p.make_room(&mine, 1),
            Some(Room::Made {
                node: NodeId(1),
                ..
            })
        ));
    }

    #[test]
    fn a_room_needing_more_victims_than_allowed_is_not_made() {
        let mut s = setup(1);
        let low = s.job("low", 0);
        for k in 0..4 {
            s.task(low, 10, 0, 1000, k);
        }
        let mut p = s.preemption(100_000);
        let two_cpus = cpu(2000);
        let two = Ask {
            max_victims: 1,
            ..ask(&two_cpus, 90)
        };
        assert_eq!(p.make_room(&two, 1), None);
        assert!(matches!(
            p.make_room(&ask(&two_cpus, 90), 1),
            Some(Room::Made { .. })
        ));
    }

    #[test]
    fn the_task_cap_counts_as_room_and_constraints_and_states_are_kept() {
        let mut s = setup(2);
        let low = s.job("low", 0);
        s.task(low, 10, 0, 0, 0);
        s.task(low, 10, 1, 0, 0);
        s.cluster.set_state(NodeId(1), NodeState::Draining).unwrap();
        let mut p = Preemption::new(
            s.cluster.clone(),
            Vec::new(),
            s.jobs.clone(),
            s.tasks.clone(),
            1,
            100_000,
        );
        // A task that reserves nothing still needs a slot: node 0's one task goes.
        let nothing = Request::new("high", Resources::new(0, 0));
        assert_eq!(
            p.make_room(&ask(&nothing, 90), 1),
            Some(Room::Made {
                node: NodeId(0),
                victims: vec![0]
            })
        );
        // A service needs no slot; a constraint no ready node passes finds no room.
        let mut p = Preemption::new(s.cluster, Vec::new(), s.jobs, s.tasks, 1, 100_000);
        let service = Ask {
            owner: "service web",
            request: &nothing,
            priority: 90,
            task: false,
            max_victims: usize::MAX,
        };
        assert_eq!(p.make_room(&service, 1), Some(Room::Waiting(NodeId(0))));
        let pinned = cpu(8000).constraint(Constraint::parse("zone=b").unwrap());
        assert_eq!(p.make_room(&ask(&pinned, 90), 1), None);
    }
}
