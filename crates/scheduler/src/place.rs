//! Filter → score → pick: one exhaustive scan over every node per instance.
//!
//! Exhaustive rather than Nomad's sampling of a few candidates (about `log2(nodes)` for services, two for batch jobs), so
//! the chosen node is the best one, the reasons count every node, and the result does not depend
//! on a sample. It is cheap enough: the scan touches five flat vectors and one label column per
//! constraint, compares integers only, and allocates only when the request has constraints (one
//! small vector of resolved checks). See `benches/place.rs` for the cost per placement.

use crate::cluster::Cluster;
use crate::labels::Check;
use crate::score::{self, mix, Fit};
use crate::{Candidate, Choice, NodeId, NodeState, Request, Resources, Unplaceable};

/// The first filter a node fails, in the order [`Unplaceable`] documents.
#[derive(Debug, Clone, Copy)]
enum Failure {
    State(NodeState),
    /// Index into the request's constraints.
    Constraint(usize),
    Cpu,
    Memory,
}

/// Counts of [`Failure`]s over a scan, kept until the scan proves there is no need for them.
#[derive(Debug)]
struct Tally {
    down: u32,
    suspect: u32,
    draining: u32,
    constraints: Vec<u32>,
    cpu: u32,
    memory: u32,
}

impl Tally {
    fn new(constraints: usize) -> Self {
        Tally {
            down: 0,
            suspect: 0,
            draining: 0,
            constraints: vec![0; constraints],
            cpu: 0,
            memory: 0,
        }
    }

    #[inline]
    fn record(&mut self, failure: Failure) {
        let counter = match failure {
            Failure::State(NodeState::Down) => &mut self.down,
            Failure::State(NodeState::Suspect) => &mut self.suspect,
            // `Ready` never fails the state filter; grouped here only to keep the match total.
            Failure::State(NodeState::Draining | NodeState::Ready) => &mut self.draining,
            Failure::Constraint(k) => &mut self.constraints[k],
            Failure::Cpu => &mut self.cpu,
            Failure::Memory => &mut self.memory,
        };
        *counter += 1;
    }

    fn into_unplaceable(self, nodes: usize, request: &Request) -> Unplaceable {
        let not_matching = request
            .constraints
            .iter()
            .zip(self.constraints)
            .filter(|(_, n)| *n > 0)
            .map(|(c, n)| (c.clone(), n))
            .collect();
        Unplaceable {
            nodes: nodes as u32,
            down: self.down,
            suspect: self.suspect,
            draining: self.draining,
            not_matching,
            insufficient_cpu: self.cpu,
            insufficient_memory: self.memory,
        }
    }
}

/// The leading candidate of a scan.
#[derive(Debug, Clone, Copy)]
struct Best {
    index: usize,
    score: f64,
    tie_key: u64,
}

impl Best {
    /// Before any candidate: every real score (finite) beats it.
    const NONE: Best = Best {
        index: usize::MAX,
        score: f64::NEG_INFINITY,
        tie_key: 0,
    };
}

/// What one scan found: the winner, the best of the rest, how many fit, and why the others
/// did not.
#[derive(Debug)]
struct Scan {
    best: Best,
    second: Best,
    fitting: u32,
    tally: Tally,
}

/// Walks a service's (node, count) pairs alongside the scan, so the count for node `i` costs a
/// comparison instead of a search.
struct Neighbours<'a> {
    rest: &'a [(u32, u32)],
}

impl Neighbours<'_> {
    /// Instances of the service on node `i`; must be called for every `i` in increasing order.
    #[inline]
    fn at(&mut self, i: usize) -> u32 {
        match self.rest.split_first() {
            Some((&(node, count), rest)) if node as usize == i => {
                self.rest = rest;
                count
            }
            _ => 0,
        }
    }
}

impl Cluster {
    /// Chooses the node for one instance, without reserving anything.
    ///
    /// Filters every node (ready, constraints, free cpu, free memory), scores the survivors
    /// (fit for `request.placement` minus anti-affinity; see [`crate::ANTI_AFFINITY_WEIGHT`]) and
    /// returns the highest, breaking exact ties by a hash of `seed` and the node's name. The same
    /// cluster, request and seed always give the same node; the order nodes were added in does
    /// not matter. `Err` says how many nodes each filter turned away.
    pub fn place(&self, request: &Request, seed: u64) -> Result<NodeId, Unplaceable> {
        let scan = self.scan(request, seed);
        match scan.best.index {
            usize::MAX => Err(scan.tally.into_unplaceable(self.len(), request)),
            index => Ok(NodeId(index as u32)),
        }
    }

    /// [`Cluster::place`], and why: how the chosen node and the best other one scored, and the
    /// nodes turned away. The same scan, so the same node.
    pub fn place_explained(&self, request: &Request, seed: u64) -> Result<Choice, Unplaceable> {
        self.explain(request, seed).map(|(_, choice)| choice)
    }

    /// [`Cluster::place_explained`], with the chosen node's id.
    fn explain(&self, request: &Request, seed: u64) -> Result<(NodeId, Choice), Unplaceable> {
        let scan = self.scan(request, seed);
        let turned_away = scan.tally.into_unplaceable(self.len(), request);
        if scan.best.index == usize::MAX {
            return Err(turned_away);
        }
        let candidate = |b: Best| {
            let same_service = self.instances(NodeId(b.index as u32), &request.service);
            let fit = b.score + score::ANTI_AFFINITY_WEIGHT * f64::from(same_service);
            Candidate {
                node: self.name(b.index).to_string(),
                free_after: Fit::new(request.placement).free_share(fit),
                same_service,
                score: b.score,
            }
        };
        let choice = Choice {
            placement: request.placement,
            service: request.service.clone(),
            chosen: candidate(scan.best),
            runner_up: (scan.second.index != usize::MAX).then(|| candidate(scan.second)),
            fitting: scan.fitting,
            turned_away,
        };
        Ok((NodeId(scan.best.index as u32), choice))
    }

    /// Filters and scores every node (see [`Cluster::place`]), keeping the runner-up too.
    fn scan(&self, request: &Request, seed: u64) -> Scan {
        let checks: Vec<Check> = request
            .constraints
            .iter()
            .map(|c| self.labels.resolve(c))
            .collect();
        let mut neighbours = Neighbours {
            rest: self
                .services
                .on_nodes(&request.service)
                .map_or(&[], |nodes| nodes.as_slice()),
        };
        let mut tally = Tally::new(checks.len());
        let (mut best, mut second) = (Best::NONE, Best::NONE);
        let mut fitting = 0;
        let fit = Fit::new(request.placement);
        let hot = &self.hot;
        let rows = hot
            .states
            .iter()
            .zip(&hot.free_cpu)
            .zip(&hot.free_memory)
            .zip(&hot.scales);
        for (i, (((&state, &free_cpu), &free_memory), &scale)) in rows.enumerate() {
            let same_service = neighbours.at(i);
            let free = Resources::new(free_cpu, free_memory);
            match self.filter(i, state, free, &checks, request.resources) {
                Err(failure) => tally.record(failure),
                Ok(after) => {
                    let fit = fit.score(scale, after.cpu_millis, after.memory_bytes);
                    let score = score::total(fit, same_service);
                    fitting += 1;
                    self.offer(&mut best, &mut second, i, score, seed);
                }
            }
        }
        Scan {
            best,
            second,
            fitting,
            tally,
        }
    }

    /// Whether node `node` would take `request` if it had the room: it is ready and passes
    /// every constraint. What preemption asks before it counts what it could free there.
    pub fn admits(&self, node: NodeId, request: &Request) -> bool {
        let i = node.index();
        i < self.len()
            && self.hot.states[i] == NodeState::Ready
            && request
                .constraints
                .iter()
                .all(|c| self.labels.passes(self.labels.resolve(c), i))
    }

    /// [`Cluster::place`], then reserves the request on the chosen node. Never overcommits:
    /// the node was chosen because the request fits in what it has free.
    pub fn place_and_reserve(
        &mut self,
        request: &Request,
        seed: u64,
    ) -> Result<NodeId, Unplaceable> {
        let node = self.place(request, seed)?;
        self.commit(node.index(), &request.service, request.resources);
        Ok(node)
    }

    /// [`Cluster::place_explained`], then reserves the request on the chosen node.
    pub fn place_and_reserve_explained(
        &mut self,
        request: &Request,
        seed: u64,
    ) -> Result<Choice, Unplaceable> {
        let (node, choice) = self.explain(request, seed)?;
        self.commit(node.index(), &request.service, request.resources);
        Ok(choice)
    }

    /// Places and reserves each request in order, each seeing the reservations of those before
    /// it; result `k` is request `k`'s. Request `k` uses a seed derived from `(seed, k)`, so the
    /// whole batch is deterministic. Requests are not reordered: callers that want tighter
    /// packing can sort largest-first, callers with priorities sort by priority.
    pub fn place_batch(
        &mut self,
        requests: &[Request],
        seed: u64,
    ) -> Vec<Result<NodeId, Unplaceable>> {
        requests
            .iter()
            .enumerate()
            .map(|(k, request)| self.place_and_reserve(request, batch_seed(seed, k)))
            .collect()
    }

    /// The first filter node `i` fails, or what it would have free after taking the request.
    #[inline]
    fn filter(
        &self,
        i: usize,
        state: NodeState,
        free: Resources,
        checks: &[Check],
        want: Resources,
    ) -> Result<Resources, Failure> {
        if state != NodeState::Ready {
            return Err(Failure::State(state));
        }
        if let Some(k) = checks.iter().position(|&c| !self.labels.passes(c, i)) {
            return Err(Failure::Constraint(k));
        }
        let cpu = free
            .cpu_millis
            .checked_sub(want.cpu_millis)
            .ok_or(Failure::Cpu)?;
        let memory = free
            .memory_bytes
            .checked_sub(want.memory_bytes)
            .ok_or(Failure::Memory)?;
        Ok(Resources::new(cpu, memory))
    }

    /// Makes node `i` the leader if it scores higher, or ties and wins the tie-break (the
    /// leader it displaces comes second); else second if it beats the second.
    #[inline]
    fn offer(&self, leader: &mut Best, second: &mut Best, i: usize, score: f64, seed: u64) {
        if score < second.score {
            return;
        }
        let challenger = self.candidate(i, score, seed);
        if self.beats(&challenger, leader) {
            *second = std::mem::replace(leader, challenger);
        } else if self.beats(&challenger, second) {
            *second = challenger;
        }
    }

    /// Scores higher, or ties and wins the tie-break.
    #[inline]
    fn beats(&self, challenger: &Best, other: &Best) -> bool {
        challenger.score > other.score
            || (challenger.score == other.score && self.wins_tie(challenger, other))
    }

    fn candidate(&self, i: usize, score: f64, seed: u64) -> Best {
        Best {
            index: i,
            score,
            tie_key: score::tie_key(seed, self.hot.name_hashes[i]),
        }
    }

    /// Higher tie key wins; on a hash collision, the smaller name, so the outcome still does not
    /// depend on node order.
    fn wins_tie(&self, challenger: &Best, leader: &Best) -> bool {
        match challenger.tie_key.cmp(&leader.tie_key) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => self.name(challenger.index) < self.name(leader.index),
        }
    }
}

/// The seed of the `k`-th request of a batch.
fn batch_seed(seed: u64, k: usize) -> u64 {
    mix(seed.wrapping_add(mix(k as u64)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Constraint, Node, Placement, Reason};

    const GIB: u64 = 1 << 30;

    fn node(name: &str, cpu: u64, gib: u64) -> Node {
        Node::new(name, Resources::new(cpu, gib * GIB))
    }

    fn cluster(nodes: Vec<Node>) -> Cluster {
        let mut cluster = Cluster::new();
        for n in nodes {
            cluster.add_node(n).unwrap();
        }
        cluster
    }

    fn name(cluster: &Cluster, placed: Result<NodeId, Unplaceable>) -> String {
        cluster.node(placed.unwrap()).unwrap().name().to_owned()
    }

    fn small(service: &str) -> Request {
        Request::new(service, Resources::new(500, GIB))
    }

    #[test]
    fn every_filter_is_counted_under_its_own_reason() {
        let c = cluster(vec![
            node("down", 8000, 8).state(NodeState::Down),
            node("suspect", 8000, 8).state(NodeState::Suspect),
            node("drain1", 8000, 8).state(NodeState::Draining),
            node("drain2", 8000, 8).state(NodeState::Draining),
            node("zone-b", 8000, 8).label("zone", "b"),
            node("no-zone", 8000, 8),
            node("low-cpu", 100, 8).label("zone", "a"),
            node("low-mem", 8000, 0).label("zone", "a"),
        ]);
        let zone_a = Constraint::equal("zone", "a");
        let request = small("web").constraint(zone_a.clone());
        let pending = c.place(&request, 1).unwrap_err();
        assert_eq!(pending.nodes, 8);
        assert_eq!(pending.count(Reason::Down), 1);
        assert_eq!(pending.count(Reason::Suspect), 1);
        assert_eq!(pending.count(Reason::Draining), 2);
        assert_eq!(pending.count(Reason::NotMatching(&zone_a)), 2);
        assert_eq!(pending.count(Reason::InsufficientCpu), 1);
        assert_eq!(pending.count(Reason::InsufficientMemory), 1);
        assert_eq!(
            pending.to_string(),
            "no node fits: 2 draining, 2 not matching zone=a, 1 down, 1 suspect, \
             1 insufficient cpu, 1 insufficient memory"
        );
    }

    #[test]
    fn a_node_failing_several_filters_counts_only_its_first() {
        // Draining, wrong zone and too small: counted as draining only.
        let c = cluster(vec![node("n", 100, 0)
            .label("zone", "b")
            .state(NodeState::Draining)]);
        let request = small("web").constraint(Constraint::equal("zone", "a"));
        assert_eq!(
            c.place(&request, 0).unwrap_err().to_string(),
            "no node fits: 1 draining"
        );
        // Too little cpu and memory: counted as cpu.
        let c = cluster(vec![node("n", 100, 0)]);
        assert_eq!(
            c.place(&small("web"), 0).unwrap_err().to_string(),
            "no node fits: 1 insufficient cpu"
        );
    }

    #[test]
    fn the_issue_message_comes_out_as_written() {
        let c = cluster(vec![
            node("a", 100, 8),
            node("b", 200, 8),
            node("c", 8000, 8).state(NodeState::Draining),
        ]);
        assert_eq!(
            c.place(&small("web"), 0).unwrap_err().to_string(),
            "no node fits: 2 insufficient cpu, 1 draining"
        );
    }

    #[test]
    fn an_empty_cluster_says_there_are_no_nodes() {
        let pending = Cluster::new().place(&small("web"), 0).unwrap_err();
        assert_eq!(pending.to_string(), "no node fits: no nodes");
        assert_eq!(pending.nodes, 0);
    }

    #[test]
    fn constraints_on_unknown_labels_fail_equal_and_pass_not_equal() {
        let c = cluster(vec![node("n", 8000, 8).label("zone", "a")]);
        let gpu = Constraint::equal("gpu", "yes");
        let pending = c.place(&small("x").constraint(gpu), 0).unwrap_err();
        assert_eq!(pending.to_string(), "no node fits: 1 not matching gpu=yes");
        let no_gpu = small("x").constraint(Constraint::not_equal("gpu", "yes"));
        assert_eq!(name(&c, c.place(&no_gpu, 0)), "n");
    }

    #[test]
    fn not_equal_excludes_only_nodes_with_that_value() {
        let c = cluster(vec![
            node("a", 8000, 8).label("zone", "a"),
            node("b", 1000, 8).label("zone", "b"),
            node("none", 2000, 8),
        ]);
        let not_a = small("x").constraint(Constraint::not_equal("zone", "a"));
        let mut seen: Vec<String> = (0..32).map(|s| name(&c, c.place(&not_a, s))).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen, ["b"], "bin-pack picks the fuller of b and none");
        let spread = not_a.clone().placement(Placement::Spread);
        assert_eq!(name(&c, c.place(&spread, 0)), "none");
        let c = cluster(vec![node("a", 8000, 8).label("zone", "a")]);
        let pending = c.place(&not_a, 0).unwrap_err();
        assert_eq!(pending.to_string(), "no node fits: 1 not matching zone!=a");
    }

    #[test]
    fn bin_pack_fills_the_fullest_node_and_spread_the_emptiest() {
        let mut c = cluster(vec![node("busy", 4000, 8), node("idle", 4000, 8)]);
        let busy = c.node_id("busy").unwrap();
        c.reserve(busy, "other", Resources::new(3000, 6 * GIB))
            .unwrap();
        let request = small("web");
        assert_eq!(name(&c, c.place(&request, 0)), "busy");
        let spread = request.placement(Placement::Spread);
        assert_eq!(name(&c, c.place(&spread, 0)), "idle");
    }

    /// The explained placement picks what `place` picks, and says why: the chosen and the next
    /// node with their free share and neighbours, and the nodes turned away.
    #[test]
    fn the_explained_choice_is_the_same_node_with_its_reasons() {
        let mut c = cluster(vec![
            node("busy", 4000, 8),
            node("idle", 4000, 8),
            node("full", 400, 8),
            node("away", 4000, 8).state(NodeState::Draining),
        ]);
        let busy = c.node_id("busy").unwrap();
        c.reserve(busy, "web", Resources::new(1500, 3 * GIB))
            .unwrap();
        let spread = small("web").placement(Placement::Spread);
        for seed in 0..50 {
            let choice = c.place_explained(&spread, seed).unwrap();
            assert_eq!(choice.chosen.node, name(&c, c.place(&spread, seed)));
        }
        let choice = c.place_explained(&spread, 7).unwrap();
        assert_eq!(choice.chosen.node, "idle");
        assert_eq!(choice.fitting, 2);
        let next = choice.runner_up.as_ref().unwrap();
        assert_eq!((next.node.as_str(), next.same_service), ("busy", 1));
        // idle: 3500 of 4000 cpu and 7 of 8 GiB left, 87.5 % on average.
        assert!((choice.chosen.free_after - 0.875).abs() < 1e-9);
        assert_eq!(
            choice.to_string(),
            "idle, best of 2 nodes that fit (spread: 88% free after it, 0 other instances of \
             web there); next busy (50% free, 1 there); turned away: 1 draining, \
             1 insufficient cpu"
        );
        // Bin-pack would rather fill busy, but one more instance of web there outweighs it.
        let packed = c.place_explained(&small("web"), 7).unwrap();
        assert_eq!(packed.chosen.node, "idle");
        assert!(packed.to_string().contains("binpack: 88% free"), "{packed}");
        // Two identical nodes: a tie, said so.
        let twins = cluster(vec![node("a", 1000, 1), node("b", 1000, 1)]);
        let tied = twins.place_explained(&small("x"), 3).unwrap().to_string();
        assert!(
            tied.ends_with("a tie settled by the seeded tie-break"),
            "{tied}"
        );
        assert_eq!(
            twins.place_explained(&small("x").constraint(Constraint::equal("zone", "q")), 0),
            Err(twins
                .place(&small("x").constraint(Constraint::equal("zone", "q")), 0)
                .unwrap_err())
        );
    }

    /// A task kept off every node at its cap has a constraint per such node: the text names
    /// four reasons and counts the rest.
    #[test]
    fn many_reasons_are_named_four_and_the_rest_counted() {
        let mut nodes: Vec<Node> = (1..=7)
            .map(|i| node(&format!("n{i}"), 4000, 8).label("id", i.to_string()))
            .collect();
        nodes.push(node("free", 4000, 8).label("id", "0"));
        let c = cluster(nodes);
        let mut request = small("batch");
        for i in 1..=7 {
            request = request.constraint(Constraint::not_equal("id", i.to_string()));
        }
        let text = c.place_explained(&request, 0).unwrap().to_string();
        assert!(
            text.ends_with("turned away: 1 not matching id!=1, 1 not matching id!=2, 1 not matching id!=3, 1 not matching id!=4, 3 for 3 other reasons"),
            "{text}"
        );
    }

    #[test]
    fn bin_pack_weighs_cpu_and_memory_equally() {
        // After placement: cpu-heavy is 90 % / 10 % used, balanced 60 % / 60 %: means .5 and .6.
        let mut c = cluster(vec![
            node("cpu-heavy", 1000, 10),
            node("balanced", 1000, 10),
        ]);
        let heavy = c.node_id("cpu-heavy").unwrap();
        let balanced = c.node_id("balanced").unwrap();
        c.reserve(heavy, "o", Resources::new(800, 0)).unwrap();
        c.reserve(balanced, "o", Resources::new(500, 5 * GIB))
            .unwrap();
        let request = Request::new("web", Resources::new(100, GIB));
        assert_eq!(name(&c, c.place(&request, 0)), "balanced");
    }

    #[test]
    fn anti_affinity_spreads_one_service_even_when_bin_packing() {
        let mut c = cluster(vec![
            node("n1", 8000, 32),
            node("n2", 8000, 32),
            node("n3", 8000, 32),
        ]);
        for _ in 0..6 {
            c.place_and_reserve(&small("web"), 7).unwrap();
        }
        for n in c.nodes() {
            assert_eq!(n.instances("web"), 2, "{}", n.name());
        }
        // Another service bin-packs onto a node already used, not a new one: its own
        // anti-affinity is unaffected by web's instances.
        let n1 = c.node_id("n1").unwrap();
        c.reserve(n1, "filler", Resources::new(4000, 0)).unwrap();
        assert_eq!(name(&c, c.place(&small("db"), 7)), "n1");
    }

    #[test]
    fn anti_affinity_gives_way_when_only_one_node_fits() {
        let mut c = cluster(vec![node("big", 8000, 32), node("tiny", 100, 32)]);
        for _ in 0..3 {
            let placed = c.place_and_reserve(&small("web"), 0);
            assert_eq!(name(&c, placed), "big");
        }
        assert_eq!(c.instances(c.node_id("big").unwrap(), "web"), 3);
    }

    #[test]
    fn same_input_and_seed_give_the_same_node_and_seeds_break_ties_differently() {
        let nodes: Vec<Node> = (0..16).map(|i| node(&format!("n{i}"), 4000, 8)).collect();
        let c = cluster(nodes.clone());
        let request = small("web");
        let first = c.place(&request, 99).unwrap();
        for _ in 0..5 {
            assert_eq!(c.place(&request, 99).unwrap(), first);
            assert_eq!(c.clone().place(&request, 99).unwrap(), first);
        }
        let chosen: std::collections::BTreeSet<String> =
            (0..64).map(|s| name(&c, c.place(&request, s))).collect();
        assert!(chosen.len() > 4, "ties went to only {chosen:?}");
        // The order nodes were added in does not matter, only their names.
        let reversed = cluster(nodes.into_iter().rev().collect());
        for seed in 0..16 {
            assert_eq!(
                name(&c, c.place(&request, seed)),
                name(&reversed, reversed.place(&request, seed))
            );
        }
    }

    #[test]
    fn zero_requests_fit_any_ready_node_even_one_without_capacity() {
        let c = cluster(vec![
            node("empty", 0, 0),
            node("drained", 0, 0).state(NodeState::Draining),
        ]);
        let nothing = Request::new("sidecar", Resources::ZERO);
        assert_eq!(name(&c, c.place(&nothing, 0)), "empty");
        let some = Request::new("web", Resources::new(1, 0));
        assert_eq!(
            c.place(&some, 0).unwrap_err().to_string(),
            "no node fits: 1 draining, 1 insufficient cpu"
        );
    }

    #[test]
    fn place_and_reserve_takes_the_resources_and_stops_when_full() {
        let mut c = cluster(vec![node("n", 1000, 2)]);
        let half = Request::new("web", Resources::new(500, GIB));
        c.place_and_reserve(&half, 0).unwrap();
        c.place_and_reserve(&half, 0).unwrap();
        let n = c.node(c.node_id("n").unwrap()).unwrap();
        assert_eq!(n.free(), Resources::ZERO);
        assert_eq!(
            c.place_and_reserve(&half, 0).unwrap_err().to_string(),
            "no node fits: 1 insufficient cpu"
        );
    }

    #[test]
    fn huge_values_do_not_overflow() {
        let max = Resources::new(u64::MAX, u64::MAX);
        let mut c = cluster(vec![Node::new("n", max), Node::new("m", max)]);
        let request = Request::new("web", Resources::new(u64::MAX - 1, u64::MAX));
        c.place_and_reserve(&request, 0).unwrap();
        c.place_and_reserve(&request, 0).unwrap();
        assert!(c.place_and_reserve(&Request::new("web", max), 0).is_err());
    }

    #[test]
    fn a_batch_is_deterministic_and_sees_its_own_reservations() {
        let c = cluster((0..4).map(|i| node(&format!("n{i}"), 1000, 4)).collect());
        let requests: Vec<Request> = (0..10)
            .map(|k| Request::new(format!("s{}", k % 3), Resources::new(400, GIB)))
            .collect();
        let (mut one, mut two) = (c.clone(), c);
        let first = one.place_batch(&requests, 5);
        assert_eq!(first, two.place_batch(&requests, 5));
        assert_eq!(first.iter().filter(|r| r.is_ok()).count(), 8);
        assert_eq!(
            first[9].as_ref().unwrap_err().to_string(),
            "no node fits: 4 insufficient cpu"
        );
    }
}
