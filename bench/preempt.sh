#!/usr/bin/env bash
# Preemption latency for BENCHMARKS.md (issue 17), release binary, loopback only: an `ebb
# server` (embedded SQLite) and three `ebb agent`s of 2 CPUs on 127.0.0.2-4, full with twelve
# half-CPU tasks of priority 10 (min_runtime 1 s). A one-CPU task of priority 90 is deployed;
# the time is from just before `ebb deploy` to the high task's first line (it writes the wall
# clock when it starts). Two kinds of victims, both with a 2 s stop grace: tasks that exit on
# SIGTERM (the common case) and tasks that ignore it (killed when the grace ends). Goal: at
# most the victims' grace + 1 s.
# Usage: bench/preempt.sh [ROUNDS]   (default 7)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-7}
. bench/lib.sh
EBB=$(build_ebb)
PYTHONPATH=bench exec python3 - "$EBB" "$ROUNDS" <<'PY'
import json, os, shutil, statistics, subprocess, sys, tempfile, time

EBB, ROUNDS = sys.argv[1], int(sys.argv[2])
from benchlib import free_port, wait, stop_all, kill_by_env

GRACE_S = 2
LOW = {
    "exit on SIGTERM": '["sleep", "3600"]',
    "ignore SIGTERM": '''["sh", "-c", "trap '' TERM; while true; do sleep 0.2; done"]''',
}

def main():
    work = tempfile.mkdtemp(prefix="ebb-preempt-bench-")
    port = free_port()
    procs = [subprocess.Popen([EBB, "--data-dir", f"{work}/s", "server", "--listen", f"127.0.0.1:{port}",
                               "--router-bind", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    results = {kind: [] for kind in LOW}
    try:
        wait("the server", lambda: os.path.exists(f"{work}/s/api.addr"), 30)
        cli = lambda *a: subprocess.run([EBB, "--data-dir", f"{work}/s", *a], capture_output=True, text=True, check=True).stdout
        for i in range(3):
            procs.append(subprocess.Popen([EBB, "--data-dir", f"{work}/a{i}", "agent", "--server", f"127.0.0.1:{port}",
                                           "--token-file", f"{work}/s/join-token", "--name", f"p{i}",
                                           "--advertise", f"127.0.0.{i + 2}", "--cpu", "2"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait("three nodes", lambda: cli("nodes").count("ready") >= 3, 30, every=0.1)
        row = lambda name: next((j for j in json.loads(cli("jobs", "--json")) if j["name"] == name), None)
        for r in range(ROUNDS):
            for k, (kind, command) in enumerate(LOW.items()):
                low, high = f"low{r}k{k}", f"high{r}k{k}"
                with open(f"{work}/{low}.toml", "w") as f:
                    f.write(f'[jobs.{low}]\ncommand = {command}\ntasks = 12\nparallelism = 12\npriority = 10\n'
                            f'min_runtime = "1s"\n[jobs.{low}.resources]\ncpu = 0.5\n[jobs.{low}.stop]\ngrace = "{GRACE_S}s"\n')
                cli("deploy", f"{work}/{low}.toml")
                wait("the cluster full", lambda: (row(low) or {}).get("running") == 12, 60, every=0.05)
                time.sleep(1.2)  # past the victims' min_runtime
                mark = f"{work}/{high}.start"
                with open(f"{work}/{high}.toml", "w") as f:
                    f.write(f'[jobs.{high}]\ncommand = ["sh", "-c", "date +%s.%N > {mark}"]\npriority = 90\n'
                            f'[jobs.{high}.resources]\ncpu = 1\n')
                t0 = time.time()
                cli("deploy", f"{work}/{high}.toml")
                wait("the high task", lambda: os.path.exists(mark) and os.path.getsize(mark) > 0, 60, every=0.01)
                started = float(open(mark).read().strip())
                results[kind].append(started - t0)
                victims = cli("events", "--limit", "1000").count(f"preempted by job {high} ")
                print(f"round {r + 1}, victims that {kind}: {started - t0:.3f} s, {victims} victims", flush=True)
                cli("cancel", low)
                wait("the low job's tasks gone", lambda: (row(low) or {}).get("running") == 0, 60, every=0.05)
    finally:
        stop_all(procs)
        # Tasks outlive a stopped agent (a restarted one adopts them): end this bench's own.
        for r in range(ROUNDS):
            for k in range(len(LOW)):
                kill_by_env(f"EBB_JOB=low{r}k{k}".encode())
        shutil.rmtree(work, ignore_errors=True)
    print(f"machine: {os.cpu_count()} cores; one server (SQLite), three agents of 2 CPUs full with 12 half-CPU "
          f"tasks of priority 10; a one-CPU task of priority 90 arrives; stop grace {GRACE_S} s; {ROUNDS} rounds")
    for kind, xs in results.items():
        m = statistics.median(xs)
        print(f"victims that {kind}: median {m:.3f} s, min {min(xs):.3f} s, max {max(xs):.3f} s "
              f"(goal: at most grace + 1 s = {GRACE_S + 1} s)")

main()
PY
