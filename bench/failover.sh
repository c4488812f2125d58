#!/usr/bin/env bash
# Failover figures for BENCHMARKS.md (issue 5), on the release binary, loopback only: an
# `ebb server` and three `ebb agent`s (127.0.0.2-4) as separate processes, a service of 3
# instances behind the router under constant keep-alive load (wrk, 4 connections); then kill -9
# of one agent and of its instance (a lost machine). Reports, per round, the time from the kill
# to the replacement ready (`ebb ps`: 3 ready, none on the lost node) and the failed requests
# (wrk's non-2xx responses and socket errors). Installs wrk from Debian when missing.
# Usage: bench/failover.sh [ROUNDS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
. bench/lib.sh
ensure_wrk
EBB=$(build_ebb)
PYTHONPATH=bench exec python3 - "$EBB" "$ROUNDS" <<'PY'
import json, os, re, signal, socket, statistics, subprocess, sys, tempfile, time

EBB, ROUNDS = sys.argv[1], int(sys.argv[2])

import functools
from benchlib import free_port, kill_by_env, wait, wrk_failures
wait = functools.partial(wait, every=0.02)  # each poll runs the CLI

def kill_node_instances(name):
    kill_by_env(f"EBB_NODE={name}".encode())

times, failed, total = [], [], []
for r in range(ROUNDS):
    work = tempfile.mkdtemp(prefix="ebb-failover-")
    api = free_port(); lb = free_port()
    env = dict(os.environ, EBB_ADDR=f"127.0.0.1:{api}")
    cli = lambda *a: subprocess.run([EBB, "--data-dir", f"{work}/s", *a], env=env, capture_output=True, text=True, check=True).stdout
    procs = [subprocess.Popen([EBB, "--data-dir", f"{work}/s", "server", "--listen", f"127.0.0.1:{api}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    wait("the server", lambda: os.path.exists(f"{work}/s/join-token") and os.path.exists(f"{work}/s/api.addr"))
    token = open(f"{work}/s/join-token").read().strip()
    names = [f"r{r}-n{i}" for i in (1, 2, 3)]
    agents = {}
    for i, name in enumerate(names):
        agents[name] = subprocess.Popen([EBB, "--data-dir", f"{work}/{name}", "agent", "--server", f"127.0.0.1:{api}",
                                         "--name", name, "--advertise", f"127.0.0.{i + 2}"],
                                        env=dict(env, EBB_JOIN_TOKEN=token), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait("3 nodes", lambda: len([n for n in json.loads(cli("nodes", "--json")) if n["state"] == "ready"]) == 3)
    open(f"{work}/web.toml", "w").write(
        f'[services.web]\ncommand = ["ebb", "example-app"]\ninstances = 3\nport = {lb}\n'
        '[services.web.health]\nhttp = "/healthz"\ninterval = "1s"\n')
    cli("deploy", f"{work}/web.toml")
    load = subprocess.Popen(["wrk", "-t1", "-c4", "-d12s", f"http://127.0.0.1:{lb}/"], stdout=subprocess.PIPE, text=True)
    time.sleep(2)
    lost = names[0]
    t0 = time.monotonic()
    agents[lost].kill(); agents[lost].wait(); kill_node_instances(lost)
    def replaced():
        ready = [i for i in json.loads(cli("ps", "web", "--json")) if i["ready"] and i["desired"] == "run"]
        return len(ready) == 3 and all(i["node"] != lost for i in ready)
    wait("the replacement", replaced, 20)
    times.append(time.monotonic() - t0)
    out = load.communicate()[0]
    reqs, bad = wrk_failures(out)
    failed.append(bad); total.append(reqs)
    print(f"round {r}: replacement ready {times[-1] * 1000:.0f} ms after the kill; {bad} failed of {reqs} requests", flush=True)
    for p in list(agents.values()) + procs:
        p.terminate()
        try: p.wait(timeout=10)
        except subprocess.TimeoutExpired: p.kill()
    for name in names: kill_node_instances(name)

print(f"machine: {os.cpu_count()} cores; {ROUNDS} rounds; down after 3 s of silence")
print(f"failover (kill -9 of an agent and its instance -> replacement ready): median {statistics.median(times) * 1000:.0f} ms"
      f"  (all: {[round(t * 1000) for t in times]} ms)")
print(f"failed requests under load: {sum(failed)} of {sum(total)}")
PY
