//! Invariants of placement over random clusters and random sequences of operations, checked
//! against a naive model written from the documentation (strings, divisions, no interning).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use ebb_scheduler::{
    Cluster, Constraint, Node, NodeId, NodeState, NodeView, Placement, Reason, Request, Resources,
    Unplaceable, ANTI_AFFINITY_WEIGHT,
};
use proptest::prelude::*;
use std::collections::BTreeMap;

/// One step of a random history.
#[derive(Debug, Clone)]
enum Op {
    Place(Request, u64),
    /// Release the placement at this index (modulo the number of live placements).
    Release(usize),
    SetState(usize, NodeState),
}

fn state() -> impl Strategy<Value = NodeState> {
    prop_oneof![
        6 => Just(NodeState::Ready),
        1 => Just(NodeState::Suspect),
        1 => Just(NodeState::Down),
        1 => Just(NodeState::Draining),
    ]
}

/// Small amounts so that nodes fill up and filters bite; sometimes zero, sometimes enormous.
fn amount(small: u64) -> impl Strategy<Value = u64> {
    prop_oneof![
        1 => Just(0u64),
        8 => 0..small,
        1 => (u64::MAX - small)..=u64::MAX,
    ]
}

/// A node size: mostly from a few standard sizes, so that nodes tie and the tie-break matters.
fn size(small: u64) -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => proptest::sample::select(vec![small / 4, small / 2, small]),
        1 => amount(small),
    ]
}

fn label(values: &'static [&'static str]) -> impl Strategy<Value = Option<&'static str>> {
    proptest::option::of(proptest::sample::select(values))
}

fn node(index: usize) -> impl Strategy<Value = Node> {
    (
        state(),
        size(4000),
        size(4096),
        prop_oneof![Just(0u64), Just(100), 0u64..=100],
        label(&["a", "b", "c"]),
        label(&["ssd", "hdd"]),
    )
        .prop_map(move |(state, cpu, memory, reserved_pct, zone, disk)| {
            let capacity = Resources::new(cpu, memory);
            let reserved = Resources::new(
                (cpu as u128 * reserved_pct as u128 / 200) as u64,
                (memory as u128 * reserved_pct as u128 / 200) as u64,
            );
            let mut node = Node::new(format!("node-{index}"), capacity)
                .state(state)
                .reserved(reserved);
            if let Some(zone) = zone {
                node = node.label("zone", zone);
            }
            if let Some(disk) = disk {
                node = node.label("disk", disk);
            }
            node
        })
}

fn nodes() -> impl Strategy<Value = Vec<Node>> {
    (0usize..12).prop_flat_map(|n| (0..n).map(node).collect::<Vec<_>>())
}

fn constraint() -> impl Strategy<Value = Constraint> {
    let key = proptest::sample::select(&["zone", "disk", "gpu"][..]);
    let value = proptest::sample::select(&["a", "b", "ssd", "hdd", "yes"][..]);
    (key, value, any::<bool>()).prop_map(|(k, v, equal)| match equal {
        true => Constraint::equal(k, v),
        false => Constraint::not_equal(k, v),
    })
}

fn request() -> impl Strategy<Value = Request> {
    (
        0u8..4,
        amount(2000),
        amount(2048),
        proptest::collection::vec(constraint(), 0..3),
        any::<bool>(),
    )
        .prop_map(|(service, cpu, memory, constraints, spread)| Request {
            service: format!("svc-{service}"),
            resources: Resources::new(cpu, memory),
            constraints,
            placement: if spread {
                Placement::Spread
            } else {
                Placement::BinPack
            },
        })
}

fn op(nodes: usize) -> impl Strategy<Value = Op> {
    let slot = 0..nodes.max(1);
    prop_oneof![
        8 => (request(), any::<u64>()).prop_map(|(r, s)| Op::Place(r, s)),
        2 => any::<usize>().prop_map(Op::Release),
        1 => (slot, state()).prop_map(|(n, s)| Op::SetState(n, s)),
    ]
}

fn scenario() -> impl Strategy<Value = (Vec<Node>, Vec<Op>)> {
    nodes().prop_flat_map(|nodes| {
        let ops = proptest::collection::vec(op(nodes.len()), 0..40);
        (Just(nodes), ops)
    })
}

fn build(nodes: &[Node]) -> Cluster {
    let mut cluster = Cluster::new();
    for node in nodes {
        cluster.add_node(node.clone()).unwrap();
    }
    cluster
}

/// The first filter a node fails, per the documented order; None if it passes all.
fn first_failure<'a>(node: &NodeView<'_>, request: &'a Request) -> Option<Reason<'a>> {
    match node.state() {
        NodeState::Ready => {}
        NodeState::Down => return Some(Reason::Down),
        NodeState::Suspect => return Some(Reason::Suspect),
        NodeState::Draining => return Some(Reason::Draining),
    }
    let labels = node.labels();
    if let Some(c) = request
        .constraints
        .iter()
        .find(|c| !c.matches(labels.get(&c.key).map(String::as_str)))
    {
        return Some(Reason::NotMatching(c));
    }
    let free = node.free();
    if request.resources.cpu_millis > free.cpu_millis {
        return Some(Reason::InsufficientCpu);
    }
    if request.resources.memory_bytes > free.memory_bytes {
        return Some(Reason::InsufficientMemory);
    }
    None
}

/// The documented score, computed with divisions: mean utilisation after placement (a
/// dimension without capacity counts as full) for bin-pack, its complement for spread, minus the
/// anti-affinity penalty.
fn naive_score(node: &NodeView<'_>, request: &Request) -> f64 {
    let used = |cap: u64, free: u64, want: u64| -> f64 {
        match cap {
            0 => 1.0,
            _ => 1.0 - (free - want) as f64 / cap as f64,
        }
    };
    let (cap, free, want) = (node.capacity(), node.free(), request.resources);
    let utilisation = 0.5
        * (used(cap.cpu_millis, free.cpu_millis, want.cpu_millis)
            + used(cap.memory_bytes, free.memory_bytes, want.memory_bytes));
    let fit = match request.placement {
        Placement::BinPack => utilisation,
        Placement::Spread => 1.0 - utilisation,
    };
    fit - ANTI_AFFINITY_WEIGHT * f64::from(node.instances(&request.service))
}

/// Checks one placement decision against the model, before it is reserved.
fn check_decision(cluster: &Cluster, request: &Request, outcome: &Result<NodeId, Unplaceable>) {
    match outcome {
        Ok(chosen) => {
            let chosen = cluster.node(*chosen).unwrap();
            assert_eq!(
                first_failure(&chosen, request),
                None,
                "placed on {}",
                chosen.name()
            );
            let best = cluster
                .nodes()
                .filter(|n| first_failure(n, request).is_none())
                .map(|n| naive_score(&n, request))
                .fold(f64::NEG_INFINITY, f64::max);
            assert!(
                naive_score(&chosen, request) >= best - 1e-9,
                "{} is not the best node",
                chosen.name()
            );
        }
        Err(pending) => {
            assert_eq!(pending.nodes as usize, cluster.len());
            let mut expected: BTreeMap<String, u32> = BTreeMap::new();
            for node in cluster.nodes() {
                let reason = first_failure(&node, request);
                let reason = reason.expect("unplaceable, yet this node passes every filter");
                *expected.entry(reason.to_string()).or_default() += 1;
            }
            let reported: BTreeMap<String, u32> = pending
                .reasons()
                .into_iter()
                .map(|(r, n)| (r.to_string(), n))
                .collect();
            assert_eq!(reported, expected);
        }
    }
}

/// The explained placement chooses the same node; its runner-up is the node `place` chooses once
/// the winner takes nothing new, and it counts every node that fits.
fn check_explanation(
    cluster: &Cluster,
    request: &Request,
    seed: u64,
    decided: &Result<NodeId, Unplaceable>,
) {
    let explained = cluster.place_explained(request, seed);
    let chosen = match (decided, &explained) {
        (Ok(node), Ok(choice)) => {
            assert_eq!(cluster.node(*node).unwrap().name(), choice.chosen.node);
            choice
        }
        (Err(a), Err(b)) => return assert_eq!(a, b),
        (a, b) => panic!("place gave {a:?}, place_explained {b:?}"),
    };
    let fitting = cluster
        .nodes()
        .filter(|n| first_failure(n, request).is_none())
        .count();
    assert_eq!(chosen.fitting as usize, fitting);
    let mut without = cluster.clone();
    let winner = without.node_id(&chosen.chosen.node).unwrap();
    without.set_state(winner, NodeState::Draining).unwrap();
    let next = without
        .place(request, seed)
        .ok()
        .map(|n| without.node(n).unwrap().name().to_owned());
    assert_eq!(next, chosen.runner_up.as_ref().map(|r| r.node.clone()));
    if let Some(r) = &chosen.runner_up {
        assert!(r.score <= chosen.chosen.score);
    }
}

/// Runs a history, checking every step; returns each placement's node name (or its reason).
fn run(cluster: &mut Cluster, ops: &[Op]) -> Vec<Result<String, String>> {
    let initial: Vec<Resources> = cluster.nodes().map(|n| n.reserved()).collect();
    let mut model = initial.clone();
    let mut live: Vec<(NodeId, Request)> = Vec::new();
    let mut outcomes = Vec::new();
    for op in ops {
        match op {
            Op::Place(request, seed) => {
                let decided = cluster.place(request, *seed);
                check_decision(cluster, request, &decided);
                check_explanation(cluster, request, *seed, &decided);
                let placed = cluster.place_and_reserve(request, *seed);
                assert_eq!(
                    placed, decided,
                    "place_and_reserve must reserve where place chose"
                );
                if let Ok(node) = placed {
                    let i = node.index();
                    model[i] = model[i].checked_add(request.resources).unwrap();
                    live.push((node, request.clone()));
                }
                outcomes.push(placed.map(|n| cluster.node(n).unwrap().name().to_owned()));
            }
            Op::Release(k) if !live.is_empty() => {
                let (node, request) = live.swap_remove(k % live.len());
                cluster
                    .release(node, &request.service, request.resources)
                    .unwrap();
                model[node.index()] = model[node.index()].checked_sub(request.resources).unwrap();
            }
            Op::Release(_) => {}
            Op::SetState(n, state) => {
                let node = cluster.nodes().nth(*n).map(|v| v.id());
                if let Some(node) = node {
                    cluster.set_state(node, *state).unwrap();
                }
            }
        }
        for node in cluster.nodes() {
            let reserved = model[node.id().index()];
            assert!(
                reserved.fits_in(node.capacity()),
                "{} overcommitted",
                node.name()
            );
            assert_eq!(node.reserved(), reserved, "{} books disagree", node.name());
        }
    }
    outcomes
        .into_iter()
        .map(|o| o.map_err(|e: Unplaceable| e.to_string()))
        .collect()
}

proptest! {
    #[test]
    fn placements_respect_filters_never_overcommit_and_pick_the_best((nodes, ops) in scenario()) {
        run(&mut build(&nodes), &ops);
    }

    #[test]
    fn the_same_history_gives_the_same_placements_whatever_the_node_order(
        (nodes, ops) in scenario()
    ) {
        let first = run(&mut build(&nodes), &ops);
        prop_assert_eq!(&first, &run(&mut build(&nodes), &ops));
        // Reversing the nodes reverses their ids: map SetState's index to the same node.
        let reversed: Vec<Node> = nodes.iter().rev().cloned().collect();
        let last = nodes.len().saturating_sub(1);
        let remapped: Vec<Op> = ops
            .iter()
            .map(|op| match op {
                Op::SetState(n, s) if *n <= last => Op::SetState(last - n, *s),
                other => other.clone(),
            })
            .collect();
        prop_assert_eq!(&first, &run(&mut build(&reversed), &remapped));
    }

    #[test]
    fn a_batch_equals_its_requests_placed_one_by_one(
        (nodes, ops) in scenario(),
        seed in any::<u64>(),
    ) {
        let requests: Vec<Request> = ops
            .into_iter()
            .filter_map(|op| match op {
                Op::Place(r, _) => Some(r),
                _ => None,
            })
            .collect();
        let mut batch = build(&nodes);
        let results = batch.place_batch(&requests, seed);
        let mut again = build(&nodes);
        prop_assert_eq!(&results, &again.place_batch(&requests, seed));
        for node in batch.nodes() {
            prop_assert!(node.reserved().fits_in(node.capacity()));
        }
    }

    #[test]
    fn parsing_any_text_never_panics_and_what_parses_prints_back(text in ".{0,24}") {
        if let Ok(constraint) = Constraint::parse(&text) {
            prop_assert_eq!(Constraint::parse(&constraint.to_string()), Ok(constraint));
        }
    }

    #[test]
    fn parsing_constraint_like_text_never_panics(text in "[a-z!= /<]{0,12}") {
        match Constraint::parse(&text) {
            Ok(c) => prop_assert_eq!(c.to_string().parse::<Constraint>(), Ok(c)),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}
