//! `ebb sim` as a user runs it: a deploy file, three hours of the NASA-1995 trace kept in the
//! repository, the table, `--json`, `--sweep`, `--chart`, and the mistakes it names.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::*;
use serde_json::Value;
use std::process::{Command, Output};

const NASA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../autoscaler/tests/data/nasa-1995-07-13-0730-3h.txt"
);

const WEB: &str = "[services.web]\ncommand = [\"true\"]\nport = 8080\n[services.web.autoscale]\nmin = 1\nmax = 200\nconcurrency = 0.7\n";

fn sim(dir: &std::path::Path, args: &[&str]) -> Output {
    sim_of(dir, NASA, args)
}

fn sim_of(dir: &std::path::Path, trace: &str, args: &[&str]) -> Output {
    let file = deploy_file(dir, "web.toml", WEB);
    Command::new(EBB)
        .arg("sim")
        .arg(&file)
        .args(["--trace", trace, "--scale", "10"])
        .args(args)
        .output()
        .unwrap()
}

/// Whether a sweep's `utilization` is on its 5 % grid (or past it by 5 % steps), not refined.
fn on_the_grid(utilization: f64) -> bool {
    ((utilization / 0.05).round() * 0.05 - utilization).abs() < 1e-6
}

fn json_of(out: &Output) -> Value {
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_replay_compares_ebb_with_its_peers_the_peak_and_the_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let out = sim(dir.path(), &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    for row in ["oracle", "foresight", "ebb", "hpa", "kpa", "fixed"] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{row} "))),
            "no {row} row: {text}"
        );
    }
    assert!(text.contains("concurrency 0.7"), "{text}");

    let doc = json_of(&sim(dir.path(), &["--json"]));
    assert_eq!(doc["trace"]["seconds"], 10_800);
    let oracle = doc["oracle"]["instance_seconds"].as_u64().unwrap();
    assert_eq!(doc["oracle"]["missed_seconds"], 0);
    for policy in ["foresight", "ebb", "hpa", "kpa", "fixed"] {
        let p = &doc[policy];
        let cost = p["instance_seconds"].as_u64().unwrap();
        // Only by missing seconds can a policy cost less than the oracle.
        let missed = p["missed_seconds"].as_u64().unwrap();
        assert!(
            cost >= oracle || missed > 0,
            "{policy} beat the oracle: {doc}"
        );
        let ratio = p["ratio"].as_f64().unwrap();
        assert!((ratio - cost as f64 / oracle as f64).abs() < 0.001, "{doc}");
        assert!(p["missed_seconds"].as_u64().is_some(), "{doc}");
    }
    assert_eq!(doc["fixed"]["missed_seconds"], 0);
    // The foresight reference: a quantile of one of its windows, within 1 % missed.
    let told = &doc["foresight"];
    assert!(told["missed_percent"].as_f64().unwrap() <= 1.0, "{doc}");
    assert!(
        [60, 600, 3600].contains(&told["window_s"].as_u64().unwrap()),
        "{doc}"
    );
    let q = told["quantile"].as_f64().unwrap();
    assert!((0.5..=1.0).contains(&q), "{doc}");
    // Same input, same figures.
    assert_eq!(doc, json_of(&sim(dir.path(), &["--json"])));
}

#[test]
fn a_sweep_finds_each_policy_s_cheapest_target_within_one_percent_missed() {
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("sim.svg");
    let out = sim(
        dir.path(),
        &[
            "--sweep",
            "--json",
            "--start-delay",
            "10s",
            "--chart",
            chart.to_str().unwrap(),
        ],
    );
    let doc = json_of(&out);
    let runs = doc["runs"].as_array().unwrap();
    let missed = |r: &Value| r["missed_percent"].as_f64().unwrap();
    let utilization = |r: &Value| r["utilization"].as_f64().unwrap();
    let on_grid = |r: &&Value| on_the_grid(utilization(r));
    let mut refined_cheaper = 0;
    for policy in ["ebb", "hpa", "kpa"] {
        let all: Vec<&Value> = runs.iter().filter(|r| r["policy"] == policy).collect();
        assert!(
            all.windows(2)
                .all(|p| utilization(p[1]) > utilization(p[0])),
            "{doc}"
        );
        // The grid's 20 targets, 5 % to 100 %, then on past it in rounds of four while within
        // 1 % missed: past 100 % only from a run within, and each round but the last within.
        let own: Vec<&Value> = all.iter().copied().filter(on_grid).collect();
        assert!(
            own.len() >= 20 && (own.len() - 20).is_multiple_of(4),
            "{policy}: {doc}"
        );
        assert!((utilization(own[19]) - 1.0).abs() < 1e-9, "{doc}");
        assert_eq!(own.len() > 20, missed(own[19]) <= 1.0, "{policy}: {doc}");
        let past: Vec<&&Value> = own[20..].iter().collect();
        for round in past.chunks(4).rev().skip(1) {
            assert!(
                round.iter().all(|r| missed(r) <= 1.0),
                "{policy} went on: {doc}"
            );
        }
        let last = own.last().unwrap();
        let stopped = past.is_empty()
            || past.iter().rev().take(4).any(|r| missed(r) > 1.0)
            || (utilization(last) - 3.0).abs() < 1e-9;
        assert!(stopped, "{policy} stopped early: {doc}");
        // Then twice, half the step above the cheapest run within 1 % missed so far (of the
        // equally cheap, the highest target): 2.5 % above one on the grid, then 1.25 % above
        // that one or the refined one, each while a run a step above it exists.
        let cost = |r: &Value| r["instance_seconds"].as_u64().unwrap();
        let base_of = |runs: &[&Value]| -> Option<(u64, f64)> {
            runs.iter()
                .filter(|r| missed(r) <= 1.0)
                .map(|r| (cost(r), utilization(r)))
                .min_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)))
        };
        let near = |a: f64, b: f64| (a - b).abs() < 1e-6;
        let refined: Vec<&Value> = all.iter().copied().filter(|r| !on_grid(r)).collect();
        let grid_base = base_of(&own);
        match grid_base {
            Some((_, u)) if own.iter().any(|r| near(utilization(r), u + 0.05)) => {
                let first = refined
                    .iter()
                    .copied()
                    .find(|r| near(utilization(r), u + 0.025))
                    .unwrap_or_else(|| panic!("{policy}: no run 2.5 % above {u}: {doc}"));
                let (_, second) = base_of(&[own.as_slice(), &[first]].concat()).unwrap();
                assert_eq!(refined.len(), 2, "{policy}: {doc}");
                assert!(
                    refined
                        .iter()
                        .any(|r| near(utilization(r), second + 0.0125)),
                    "{policy}: no run 1.25 % above {second}: {doc}"
                );
            }
            _ => assert!(refined.is_empty(), "{policy}: {doc}"),
        }
        let best = &doc[policy];
        assert!(best["missed_percent"].as_f64().unwrap() <= 1.0, "{doc}");
        let cheapest = all
            .iter()
            .filter(|r| missed(r) <= 1.0)
            .map(|r| cost(r))
            .min()
            .unwrap();
        assert_eq!(best["instance_seconds"].as_u64().unwrap(), cheapest);
        if grid_base.is_some_and(|(c, _)| cheapest < c) {
            refined_cheaper += 1;
        }
    }
    // On this slice the refinement finds a cheaper target within 1 % for some policy.
    assert!(refined_cheaper > 0, "{doc}");
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("ebb sim: web"),
        "{}",
        &svg[..200.min(svg.len())]
    );
}

#[test]
fn a_sweep_goes_on_past_full_capacity_while_a_policy_misses_little_enough() {
    // One request a second: one instance serves it at any target, so every policy is within
    // 1 % missed at every target and the sweep runs each to 300 %.
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("one.txt");
    std::fs::write(&trace, "1\n".repeat(300)).unwrap();
    let doc = json_of(&sim_of(
        dir.path(),
        trace.to_str().unwrap(),
        &["--sweep", "--json"],
    ));
    let runs = doc["runs"].as_array().unwrap();
    for policy in ["ebb", "hpa", "kpa"] {
        let own: Vec<f64> = runs
            .iter()
            .filter(|r| r["policy"] == policy)
            .map(|r| r["utilization"].as_f64().unwrap())
            .collect();
        // Every run costs the same: the cheapest is the last, at 300 %, with no run above it
        // for the refinement to narrow the gap to.
        assert_eq!(own.len(), 20 + 40, "{policy}: {own:?}");
        assert_eq!(own.last(), Some(&3.0), "{policy}: {own:?}");
    }
}

#[test]
fn bad_input_is_named_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad_trace = dir.path().join("bad.txt");
    std::fs::write(&bad_trace, "3\n4\nfive\n").unwrap();
    let out = sim_of(dir.path(), bad_trace.to_str().unwrap(), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("bad.txt:3: \"five\" is not a number"), "{err}");

    let out = sim(dir.path(), &["--capacity", "0"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    let cpu = deploy_file(
        dir.path(),
        "cpu.toml",
        "[services.api]\ncommand = [\"true\"]\n[services.api.resources]\ncpu = 0.5\n[services.api.autoscale]\nmin = 1\nmax = 5\ncpu = 0.7\n",
    );
    let out = Command::new(EBB)
        .args(["sim", cpu.to_str().unwrap(), "--trace", NASA])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("needs a concurrency or rps target (it has a cpu target)"),
        "{err}"
    );
}

#[test]
fn a_trace_larger_than_any_service_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = deploy_file(dir.path(), "web.toml", WEB);
    let out = Command::new(EBB)
        .arg("sim")
        .arg(&file)
        .args(["--trace", NASA, "--scale", "10000000"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("ebb sim models at most 10000"), "{err}");
}
