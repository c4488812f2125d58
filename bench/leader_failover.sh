#!/usr/bin/env bash
# Leader failover for BENCHMARKS.md (issue 16), on the release binary, loopback only: a real
# three-member etcd (Debian's etcd-server), three `ebb server --store etcd://...`; per round,
# kill -9 of the leader, then the time until another server logs that it leads and has started
# its controllers ("leading the control plane": its controllers start in the same instant), from
# the servers' own log timestamps. The killed server is started again before the next round.
# Usage: bench/leader_failover.sh [ROUNDS]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-10}
. bench/lib.sh
ensure_etcd
EBB=$(build_ebb)
PYTHONPATH=bench exec python3 - "$EBB" "$ROUNDS" <<'PY'
import datetime, json, os, re, shutil, signal, statistics, subprocess, sys, tempfile, time

EBB, ROUNDS = sys.argv[1], int(sys.argv[2])
from benchlib import Etcd, free_port, wait, stop_all

work = tempfile.mkdtemp(prefix="ebb-leader-failover-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
etcd = Etcd(work)
ports = [free_port() for _ in range(3)]
procs = [None] * 3
LEADS = re.compile(r"^(\S+)\s+INFO .*leading the control plane")

def start(i):
    data = f"{work}/s{i}"
    try: os.remove(f"{data}/api.addr")
    except FileNotFoundError: pass
    log = open(f"{work}/s{i}.log", "a")
    procs[i] = subprocess.Popen([EBB, "--data-dir", data, "server", "--listen", f"127.0.0.1:{ports[i]}",
                                 "--store", etcd.url(), "--name", f"s{i}", "--router-bind", f"127.0.1.{i + 1}"],
                                stdout=log, stderr=log, env=dict(os.environ, NO_COLOR="1"))
    wait(f"server s{i}", lambda: os.path.exists(f"{data}/api.addr"), 30)

def leader():
    for i in range(3):
        if procs[i] is None or procs[i].poll() is not None: continue
        r = subprocess.run([EBB, "--data-dir", f"{work}/s{i}", "servers", "--json"], capture_output=True, text=True)
        if r.returncode != 0: continue
        for s in json.loads(r.stdout):
            if s["leader"]: return (int(s["name"][1:]),)  # a tuple: server 0 is not "nothing yet"
    return None

def leads_after(i, t):
    """The first time server i logged that it leads, after wall time t."""
    for line in open(f"{work}/s{i}.log", errors="replace"):
        m = LEADS.match(line)
        if not m: continue
        at = datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
        if at > t: return at
    return None

times = []
try:
    for i in range(3): start(i)
    for r in range(ROUNDS):
        (old,) = wait("a leader", leader, 30, every=0.05)
        time.sleep(1)
        killed = time.time()
        procs[old].send_signal(signal.SIGKILL); procs[old].wait()
        def new_leader():
            for i in range(3):
                if i == old: continue
                at = leads_after(i, killed)
                if at: return at
            return None
        at = wait("a new leader", new_leader, 30, every=0.02)
        times.append(at - killed)
        print(f"round {r + 1}: {(at - killed) * 1000:.0f} ms", flush=True)
        start(old)
        time.sleep(3)
finally:
    stop_all(procs, grace=15)
    etcd.stop()
    shutil.rmtree(work, ignore_errors=True)

ms = sorted(t * 1000 for t in times)
print(f"machine: {os.cpu_count()} cores; 3 etcd members, 3 ebb servers, {ROUNDS} kill -9s of the leader")
print(f"failover (kill -9 -> another server leads, controllers started): median {statistics.median(ms):.0f} ms,"
      f" min {ms[0]:.0f} ms, max {ms[-1]:.0f} ms")
PY
