//! Logs from every node: a server without a local agent and agents as separate processes, each
//! on its own 127.0.0.x address. The agents hold the files and serve them over their log
//! channel; `ebb logs` reads, follows and names the node that cannot answer.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Instances that say where they run, then tick five times a second, saying when (unix ms).
const TICKER: &str = "[services.echo]\ncommand = [\"sh\", \"-c\", \"echo hello from $EBB_NODE as $EBB_INSTANCE_ID; i=0; while true; do i=$((i+1)); echo tick $i at $(date +%s%3N); sleep 0.2; done\"]\ninstances = 2\nplacement = \"spread\"\n[services.echo.health]\ncommand = [\"true\"]\n";

fn instance_on(server: &Ebb, node: &str) -> String {
    let ready = server.ready("echo");
    let row = ready.iter().find(|i| i["node"] == node);
    row.and_then(|i| i["id"].as_str()).unwrap().to_string()
}

#[test]
fn logs_of_instances_on_remote_agents_read_and_follow_as_local_ones_do() {
    let (server, mut agents, _) = cluster_with("logs", 2, &[]);
    let file = deploy_file(server.dir.path(), "echo.toml", TICKER);
    server.ok(&["deploy", "--timeout", "20s", file.to_str().unwrap()]);
    server.wait_ready("echo", 2, Duration::from_secs(20));
    let (one, two) = (
        instance_on(&server, "logs-1"),
        instance_on(&server, "logs-2"),
    );

    // Every instance's lines, from both nodes, each prefixed by its instance.
    let all = eventually("both nodes' lines", Duration::from_secs(10), || {
        let out = server.ok(&["logs", "echo", "--tail", "1000"]);
        (out.contains("hello from logs-1") && out.contains("hello from logs-2")).then_some(out)
    });
    assert!(
        all.contains(&format!("{one} | hello from logs-1 as {one}")),
        "{all}"
    );
    assert!(
        all.contains(&format!("{two} | hello from logs-2 as {two}")),
        "{all}"
    );
    let last = server.ok(&["logs", "echo", "--instance", &two, "--tail", "2"]);
    assert_eq!(last.lines().count(), 2, "{last}");
    assert!(last.lines().all(|l| l.starts_with("tick ")), "{last}");
    lines_carry_their_times(&server, &two);

    // -f goes on through the server, and an instance that moves joins the stream.
    let (mut child, rx) = follow(&server, &["logs", "echo", "-f", "--tail", "1"]);
    expect_line(&rx, &format!("{two} | tick"));
    server.ok(&["migrate", &one, "--to", "logs-2"]);
    let moved = eventually("the moved instance", Duration::from_secs(20), || {
        let ready = server.ready("echo");
        let ids: Vec<&str> = ready.iter().filter_map(|i| i["id"].as_str()).collect();
        (ready.len() == 2 && !ids.contains(&one.as_str()))
            .then(|| ids.into_iter().find(|id| *id != two).unwrap().to_string())
    });
    expect_line(&rx, &format!("{moved} | "));
    let _ = child.kill();
    let _ = child.wait();

    // A node that is lost says so, at once, instead of hanging; the other node's lines come.
    agents[1].lose_machine();
    eventually("logs-2 down", Duration::from_secs(10), || {
        let nodes: Vec<Value> = serde_json::from_str(&server.ok(&["nodes", "--json"])).unwrap();
        nodes
            .iter()
            .any(|n| n["name"] == "logs-2" && n["state"] == "down")
            .then_some(())
    });
    let started = Instant::now();
    let out = server.cli(&["logs", "echo", "--instance", &two]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Its instance may have been replaced on logs-1 already: then the server no longer knows
    // where it ran, and says which node it could not ask.
    assert!(
        stderr.contains(&format!("the log of {two} is unavailable: "))
            && stderr.contains("node logs-2 is down"),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(1), "nothing could be read: {out:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

/// `--timestamps` and `--since` on instances of remote agents: each line's time is no earlier
/// than the instance's own clock reading before it wrote the line, and at most the agent's
/// look interval (plus a loaded machine's slack) later; `--since` leaves out older lines.
fn lines_carry_their_times(server: &Ebb, two: &str) {
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    // The instances have run for a while: their first line is older than what --since asks.
    std::thread::sleep(Duration::from_secs(3));
    let json = server.ok(&[
        "logs",
        "echo",
        "--instance",
        two,
        "--tail",
        "10",
        "--timestamps",
        "--json",
    ]);
    let mut times = Vec::new();
    for line in json.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let text = v["line"].as_str().unwrap();
        let at = humantime::parse_rfc3339(v["at"].as_str().unwrap()).unwrap();
        let at = at
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let written: i64 = text
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("{text}: {json}"));
        // The file's time can lag a clock reading by a kernel tick.
        assert!(at >= written - 20, "{text} stamped at {at}");
        assert!(
            at - written <= 1_500,
            "{text} stamped {} ms late",
            at - written
        );
        times.push(at);
    }
    assert_eq!(times.len(), 10, "{json}");
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    // Both instances, in time order, each line after its instance and time.
    let since = now_ms() - 2_000;
    let recent = server.ok(&[
        "logs",
        "echo",
        "--since",
        "2s",
        "--timestamps",
        "--tail",
        "1000",
    ]);
    assert!(!recent.contains("hello from"), "older than 2 s: {recent}");
    let mut by_instance = std::collections::BTreeSet::new();
    let mut last = 0;
    for line in recent.lines() {
        let (who, rest) = line.split_once(" | ").unwrap();
        by_instance.insert(who.to_string());
        let (at, text) = rest.split_once(' ').unwrap();
        assert!(text.starts_with("tick "), "{line}");
        let at = humantime::parse_rfc3339(at).unwrap();
        let at = at
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        // Whole seconds asked (rounded up), and the server's clock read a moment later.
        assert!(at >= since - 1_000, "{line} is older than --since 2s");
        assert!(at >= last, "not in time order: {recent}");
        last = at;
    }
    assert_eq!(by_instance.len(), 2, "{recent}");
    let all = server.ok(&["logs", "echo", "--since", "1h", "--tail", "1000"]);
    assert!(all.contains("hello from"), "{all}");
}

#[test]
fn task_logs_and_ebb_run_output_come_from_a_remote_agent() {
    let (server, _agents, _) = cluster_with("tlogs", 1, &[]);
    let text = "[jobs.words]\ncommand = [\"sh\", \"-c\", \"echo task $EBB_TASK_INDEX of $EBB_TASK_COUNT on $EBB_NODE\"]\ntasks = 3\n";
    let file = deploy_file(server.dir.path(), "words.toml", text);
    server.ok(&["deploy", file.to_str().unwrap()]);
    eventually("the job completed", Duration::from_secs(30), || {
        let jobs: Vec<Value> = serde_json::from_str(&server.ok(&["jobs", "--json"])).unwrap();
        jobs.iter()
            .any(|j| j["name"] == "words" && j["state"] == "completed")
            .then_some(())
    });
    let one = server.ok(&["logs", "words", "--task", "1"]);
    assert_eq!(one.trim(), "task 1 of 3 on tlogs-1", "{one}");

    let out = server.cli(&["run", "--", "sh", "-c", "echo out-of-a-remote-task; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("out-of-a-remote-task"), "{stdout}");
}
