#!/usr/bin/env bash
# Cold start through the leader's and through another server's load balancer, for
# BENCHMARKS.md (issue 16), on the release binary, loopback only: a real three-member etcd
# (Debian's etcd-server), three `ebb server --store etcd://...` (load balancers on 127.0.1.1-3)
# and one `ebb agent` given all three. One example-app service scaled to zero (min = 0,
# idle_timeout 2s). Per round, once no instance is left: one GET through the leader's load
# balancer or through a follower's (alternating), timed until its full response: the first
# instance's start, asked for by the leader's autoscaler, which hears of a request waiting at a
# follower from that follower's load report. An untimed request through each load balancer
# comes first.
# Usage: bench/cold_start_ha.sh [ROUNDS]   (default 10 per path)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-10}
. bench/lib.sh
ensure_etcd
EBB=$(build_ebb)
PYTHONPATH=bench exec python3 - "$EBB" "$ROUNDS" <<'PY'
import json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

EBB, ROUNDS = sys.argv[1], int(sys.argv[2])
from benchlib import Etcd, free_port, wait, stop_all

work = tempfile.mkdtemp(prefix="ebb-cold-ha-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
etcd = Etcd(work)
ports = [free_port() for _ in range(3)]
lb = free_port()
procs = []
quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

def cli(*args):
    return subprocess.run([EBB, "--data-dir", f"{work}/s0", *args], capture_output=True, text=True, check=True).stdout

def leader():
    for s in json.loads(cli("servers", "--json")):
        if s["leader"]: return int(s["name"][1:])
    return None

def instances():
    return len(json.loads(cli("ps", "--json", "cold")))

def get(host):
    """One GET through the load balancer on `host`; seconds to the end of a 200 response."""
    t = time.monotonic()
    with socket.create_connection((host, lb), timeout=30) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: cold\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536): data += chunk
    took = time.monotonic() - t
    if not data.startswith(b"HTTP/1.1 200"): raise SystemExit(f"through {host}: {data[:80]!r}")
    return took

def get_ok(host):
    try: return get(host) is not None
    except (OSError, SystemExit): return False

times = {"leader": [], "follower": []}
try:
    for i in range(3):
        procs.append(subprocess.Popen([EBB, "--data-dir", f"{work}/s{i}", "server", "--listen", f"127.0.0.1:{ports[i]}",
                                       "--store", etcd.url(), "--name", f"s{i}", "--router-bind", f"127.0.1.{i + 1}"], **quiet))
    for i in range(3): wait(f"server s{i}", lambda: os.path.exists(f"{work}/s{i}/api.addr"), 30)
    servers = ",".join(f"127.0.0.1:{p}" for p in ports)
    procs.append(subprocess.Popen([EBB, "--data-dir", f"{work}/a", "agent", "--server", servers,
                                   "--token-file", f"{work}/s0/join-token", "--name", "cold-node"], **quiet))
    wait("the node", lambda: "cold-node" in cli("nodes"), 30, every=0.1)
    with open(f"{work}/cold.toml", "w") as f:
        f.write(f'[services.cold]\ncommand = ["{EBB}", "example-app"]\nport = {lb}\n'
                '[services.cold.health]\nhttp = "/healthz"\ninterval = "100ms"\n'
                '[services.cold.autoscale]\nmin = 0\nmax = 1\nconcurrency = 10\nidle_timeout = "2s"\nscale_down_delay = "0s"\n')
    cli("deploy", f"{work}/cold.toml")
    # Not timed: the first request after the deploy also waits for every load balancer to
    # open the port.
    wait("zero instances", lambda: instances() == 0, 60, every=0.2)
    wait("the load balancers", lambda: all(get_ok(f"127.0.1.{i + 1}") for i in range(3)), 60, every=0.2)
    for r in range(2 * ROUNDS):
        path = "leader" if r % 2 == 0 else "follower"
        wait("zero instances", lambda: instances() == 0, 60, every=0.2)
        (lead,) = wait("a leader", lambda: (leader(),) if leader() is not None else None, 30)
        target = lead if path == "leader" else (lead + 1) % 3
        took = get(f"127.0.1.{target + 1}")
        times[path].append(took * 1000)
        print(f"round {r // 2 + 1} {path} (s{target}): {took * 1000:.0f} ms", flush=True)
finally:
    stop_all(procs)
    etcd.stop()
    shutil.rmtree(work, ignore_errors=True)

print(f"machine: {os.cpu_count()} cores; 3 etcd members, 3 ebb servers, 1 agent; {ROUNDS} cold starts per path")
for path, ms in times.items():
    print(f"cold start through the {path}'s load balancer: median {statistics.median(ms):.0f} ms (min {min(ms):.0f}, max {max(ms):.0f})")
print(f"follower / leader: {statistics.median(times['follower']) / statistics.median(times['leader']):.2f}")
PY
