#!/usr/bin/env bash
# Jobs throughput for BENCHMARKS.md (issue 17), release binary, loopback only: an `ebb server`
# (embedded SQLite) and three `ebb agent`s on 127.0.0.2-4; one job of TASKS tasks of `true`
# (`parallelism` unbounded, tasks reserve nothing), timed from `ebb deploy` to the job
# completed. Prints the wall time, task starts per second and the queue wait p50/p99 (from
# `ebb job --json`: placement time minus the time the task could first run).
# Usage: bench/jobs.sh [ROUNDS] [TASKS]   (defaults 3 and 10000)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
TASKS=${2:-10000}
. bench/lib.sh
EBB=$(build_ebb)
PYTHONPATH=bench exec python3 - "$EBB" "$ROUNDS" "$TASKS" <<'PY'
import json, os, shutil, statistics, subprocess, sys, tempfile, time

EBB, ROUNDS, TASKS = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
from benchlib import free_port, wait, stop_all

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]

def one(r):
    work = tempfile.mkdtemp(prefix="ebb-jobs-bench-")
    port = free_port()
    procs = [subprocess.Popen([EBB, "--data-dir", f"{work}/s", "server", "--listen", f"127.0.0.1:{port}",
                               "--router-bind", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        wait("the server", lambda: os.path.exists(f"{work}/s/api.addr"), 30)
        cli = lambda *a: subprocess.run([EBB, "--data-dir", f"{work}/s", *a], capture_output=True, text=True, check=True).stdout
        for i in range(3):
            procs.append(subprocess.Popen([EBB, "--data-dir", f"{work}/a{i}", "agent", "--server", f"127.0.0.1:{port}",
                                           "--token-file", f"{work}/s/join-token", "--name", f"j{r}n{i}",
                                           "--advertise", f"127.0.0.{i + 2}"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait("three nodes", lambda: cli("nodes").count(f"j{r}n") == 3, 30, every=0.1)
        with open(f"{work}/job.toml", "w") as f:
            f.write(f'[jobs.many]\ncommand = ["true"]\ntasks = {TASKS}\n')
        t = time.monotonic()
        cli("deploy", f"{work}/job.toml")
        def done():
            j = json.loads(cli("jobs", "--json"))[0]
            return j["state"] in ("completed", "failed", "cancelled") and j
        j = wait("the job", done, 600, every=0.05)
        took = time.monotonic() - t
        detail = json.loads(cli("job", "many", "--json"))
        waits = [t["queue_wait_ms"] for t in detail["tasks"] if t.get("queue_wait_ms") is not None]
        retried = sum(1 for t in detail["tasks"] if t["attempt"] > 1)
        # Queue wait while capacity is free: a job of fewer tasks than the nodes take at once.
        with open(f"{work}/few.toml", "w") as f:
            f.write('[jobs.few]\ncommand = ["true"]\ntasks = 60\n')
        cli("deploy", f"{work}/few.toml")
        wait("the small job", lambda: json.loads(cli("job", "few", "--json"))["job"]["state"] == "completed", 60, every=0.05)
        free = [t["queue_wait_ms"] for t in json.loads(cli("job", "few", "--json"))["tasks"]]
        return j["state"], took, waits, retried, free
    finally:
        stop_all(procs)
        shutil.rmtree(work, ignore_errors=True)

walls, frees = [], []
for r in range(ROUNDS):
    state, took, waits, retried, free = one(r)
    walls.append(took)
    frees += free
    print(f"round {r + 1}: {state} in {took:.2f} s, {TASKS / took:.0f} task starts/s, "
          f"queue wait p50 {pct(waits, 0.5)} ms p99 {pct(waits, 0.99)} ms (capacity full), "
          f"{retried} tasks ran twice; 60 tasks on free capacity: queue wait p50 {pct(free, 0.5)} ms "
          f"p99 {pct(free, 0.99)} ms", flush=True)
print(f"queue wait on free capacity over all rounds: p50 {pct(frees, 0.5)} ms, p99 {pct(frees, 0.99)} ms")
print(f"machine: {os.cpu_count()} cores; one server (SQLite), three agents, {TASKS} tasks of `true`, {ROUNDS} rounds")
m = statistics.median(walls)
print(f"median wall time {m:.2f} s ({TASKS / m:.0f} tasks/s)")
PY
