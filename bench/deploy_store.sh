#!/usr/bin/env bash
# Deploy to ready on each store for BENCHMARKS.md (issue 16), release binary, loopback only:
# an `ebb server` (embedded SQLite, or `--store etcd://...` on a real three-member etcd) and one
# `ebb agent`; `ebb deploy` of one service of INSTANCES example-app instances, timed until it
# returns (it waits until every instance is ready); then `ebb stop`. ROUNDS per store, interleaved.
# Usage: bench/deploy_store.sh [ROUNDS] [INSTANCES]   (defaults 5 and 20)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
INSTANCES=${2:-20}
. bench/lib.sh
ensure_etcd
EBB=$(build_ebb)
PYTHONPATH=bench exec python3 - "$EBB" "$ROUNDS" "$INSTANCES" <<'PY'
import os, shutil, signal, statistics, subprocess, sys, tempfile, time

EBB, ROUNDS, INSTANCES = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
from benchlib import Etcd, free_port, wait, stop_all

def one(store, r):
    work = tempfile.mkdtemp(prefix="ebb-deploy-store-")
    etcd = Etcd(work) if store == "etcd" else None
    port = free_port()
    args = [EBB, "--data-dir", f"{work}/s", "server", "--listen", f"127.0.0.1:{port}", "--router-bind", "127.0.0.1"]
    if etcd: args += ["--store", etcd.url(), "--name", "s1"]
    procs = [subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        wait("the server", lambda: os.path.exists(f"{work}/s/api.addr"), 30)
        name = f"d{store}{r}"
        procs.append(subprocess.Popen([EBB, "--data-dir", f"{work}/a", "agent", "--server", f"127.0.0.1:{port}",
                                       "--token-file", f"{work}/s/join-token", "--name", name],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        cli = lambda *a: subprocess.run([EBB, "--data-dir", f"{work}/s", *a], capture_output=True, text=True, check=True).stdout
        wait("the node", lambda: name in cli("nodes"), 30, every=0.1)
        with open(f"{work}/web.toml", "w") as f:
            f.write(f'[services.web]\ncommand = ["ebb", "example-app"]\ninstances = {INSTANCES}\n'
                    '[services.web.health]\nhttp = "/healthz"\ninterval = "200ms"\n')
        t = time.monotonic()
        cli("deploy", f"{work}/web.toml")
        took = time.monotonic() - t
        cli("stop", "web")
        return took
    finally:
        stop_all(procs)
        if etcd: etcd.stop()
        shutil.rmtree(work, ignore_errors=True)

times = {"sqlite": [], "etcd": []}
for r in range(ROUNDS):
    for store in ("sqlite", "etcd"):
        times[store].append(one(store, r) * 1000)
        print(f"round {r + 1} {store}: {times[store][-1]:.0f} ms", flush=True)
print(f"machine: {os.cpu_count()} cores; one server, one agent, {INSTANCES} instances, {ROUNDS} rounds per store")
for store, ms in times.items():
    print(f"{store}: deploy to ready median {statistics.median(ms):.0f} ms (min {min(ms):.0f}, max {max(ms):.0f})")
print(f"etcd / sqlite: {statistics.median(times['etcd']) / statistics.median(times['sqlite']):.2f}")
PY
