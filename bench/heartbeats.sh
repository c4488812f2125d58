#!/usr/bin/env bash
# Server CPU under heartbeats for BENCHMARKS.md (issue 5), on the release binary, loopback only:
# one `ebb server` and AGENTS simulated agents (crates/client/examples/heartbeats.rs: one API
# client and keep-alive connection each, a sync a second spread evenly over the second, and the
# assignments long-poll a real agent keeps open). After a 5 s warm-up in which the nodes join,
# it samples the server's CPU time (utime + stime, /proc/PID/stat) in 5 s windows over SECONDS,
# and its VmRSS; then checks that `ebb nodes --json` lists all AGENTS nodes as ready while they
# still heartbeat. The generator's own CPU is measured too: it shares the machine's cores.
# With INSTANCES > 0, that many instances (10 services) are deployed on the simulated nodes
# during a longer warm-up; the nodes do not run them but report them running and ready, with
# their usage, in every sync (as a steady agent does), and `ebb ps` must show them all ready.
# Fails if any sync or long-poll failed, or a node or instance is not ready.
# With STORE=etcd, the server keeps its state on a real three-member etcd (Debian's etcd-server)
# and the store writes per second (store revisions, each etcd transaction is one) are reported
# for the idle server and for the measured window; the etcd members' CPU too.
# Usage: [STORE=etcd] bench/heartbeats.sh [AGENTS] [SECONDS] [INSTANCES]   (defaults 1000, 30 and 0)
set -euo pipefail
cd "$(dirname "$0")/.."
AGENTS=${1:-1000}
SECONDS_MEASURED=${2:-30}
INSTANCES=${3:-0}
. bench/lib.sh
[ "${STORE:-}" = etcd ] && ensure_etcd
EBB=$(build_ebb)
timeout 900 cargo build --release --quiet -p ebb-client --example heartbeats
GEN=$PWD/target/release/examples/heartbeats
PYTHONPATH=bench exec python3 - "$EBB" "$GEN" "$AGENTS" "$SECONDS_MEASURED" "$INSTANCES" <<'PY'
import json, os, resource, select, shutil, signal, statistics, subprocess, sys, tempfile, time

EBB, GEN, AGENTS, SECONDS, INSTANCES = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
# Seconds: the nodes join (and the instances are deployed); `ebb nodes` is checked; one CPU sample.
WARMUP, TAIL, WINDOW = (25 if INSTANCES else 5), 5, 5
SERVICES = 10
HZ = os.sysconf("SC_CLK_TCK")

from benchlib import Etcd, free_port, wait
ETCD = os.environ.get("STORE") == "etcd"

# Two connections per agent on each side (sync and long-poll): raise the open-files limit.
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
need = 4 * AGENTS + 256
if soft < need:
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))

def ticks(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])  # utime, stime (fields 14 and 15)

def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"): return int(line.split()[1]) / 1024
    return 0.0

def pct(dt, seconds): return dt / HZ / seconds * 100

work = tempfile.mkdtemp(prefix="ebb-heartbeats-", dir="/dev/shm" if ETCD and os.path.isdir("/dev/shm") else None)
data = f"{work}/data"
port = free_port()
etcd = Etcd(work) if ETCD else None
store_args = ["--store", etcd.url(), "--name", "s1"] if etcd else []
def revision():
    r = subprocess.run([EBB, "--data-dir", data, "status", "--json"], capture_output=True, text=True,
                       env=dict(os.environ, EBB_ADDR=f"127.0.0.1:{port}"))
    return json.loads(r.stdout)["store_revision"] if r.returncode == 0 else 0
def etcd_ticks():
    return sum(ticks(p.pid) for p in etcd.procs) if etcd else 0
server = subprocess.Popen([EBB, "--data-dir", data, "server", "--listen", f"127.0.0.1:{port}", *store_args],
                          stdout=subprocess.DEVNULL, stderr=open(f"{work}/server.log", "w"),
                          start_new_session=True)
gen = None
try:
    wait("the server", lambda: os.path.exists(f"{data}/join-token") and os.path.exists(f"{data}/api.addr"))
    time.sleep(2)
    t0, c0, r0 = time.monotonic(), ticks(server.pid), revision()
    time.sleep(10 if etcd else 3)
    idle_writes = (revision() - r0) / (time.monotonic() - t0)
    idle = pct(ticks(server.pid) - c0, time.monotonic() - t0)
    idle_rss = rss_mib(server.pid)

    total = 0.2 + WARMUP + SECONDS + TAIL
    gen = subprocess.Popen(["timeout", str(int(total) + 60), GEN, "--addr", f"127.0.0.1:{port}",
                            "--token-file", f"{data}/join-token", "--agents", str(AGENTS),
                            "--warmup", str(WARMUP), "--seconds", str(SECONDS), "--tail", str(TAIL)],
                           stdout=subprocess.PIPE, text=True, start_new_session=True)
    gen_pid = None
    def gen_child():  # the generator itself, under `timeout`
        kids = open(f"/proc/{gen.pid}/task/{gen.pid}/children").read().split()
        return int(kids[0]) if kids else None
    gen_pid = wait("the generator", gen_child, 10)
    j0, g0 = ticks(server.pid), ticks(gen_pid)
    env = dict(os.environ, EBB_ADDR=f"127.0.0.1:{port}")
    def ebb(*args, timeout=30):
        r = subprocess.run([EBB, "--data-dir", data, *args], env=env, capture_output=True, text=True,
                           timeout=timeout)
        if r.returncode != 0: raise SystemExit(f"ebb {' '.join(args)}: {r.stderr}")
        return r.stdout

    deployed = None
    if INSTANCES:
        def all_ready():
            return sum(1 for n in json.loads(ebb("nodes", "--json")) if n["state"] == "ready") == AGENTS
        wait(f"{AGENTS} nodes ready", all_ready, WARMUP / 2, every=0.5)
        with open(f"{work}/sim.toml", "w") as f:
            for k in range(SERVICES):
                count = INSTANCES // SERVICES + (1 if k < INSTANCES % SERVICES else 0)
                f.write(f'[services.sim{k:02}]\ncommand = ["ebb", "example-app"]\ninstances = {count}\n\n')
        t = time.monotonic()
        ebb("deploy", "--timeout", "60s", f"{work}/sim.toml", timeout=90)
        deployed = time.monotonic() - t

    def line(limit):
        ready, _, _ = select.select([gen.stdout], [], [], limit)
        if not ready: raise SystemExit("the generator said nothing in time")
        return gen.stdout.readline().strip()
    if line(WARMUP + 30) != "measuring": raise SystemExit("the generator did not start measuring")

    # The measured window: the server's CPU in WINDOW-second samples, and its RSS.
    start = time.monotonic()
    s_first, g_first, rev_first, e_first = ticks(server.pid), ticks(gen_pid), revision(), etcd_ticks()
    samples, rss = [], []
    prev, prev_t = s_first, start
    for k in range(1, SECONDS // WINDOW + 1):
        time.sleep(max(0.0, start + k * WINDOW - time.monotonic()))
        now_t, now = time.monotonic(), ticks(server.pid)
        samples.append(pct(now - prev, now_t - prev_t))
        rss.append(rss_mib(server.pid))
        prev, prev_t = now, now_t
    time.sleep(max(0.0, start + SECONDS - time.monotonic()))
    end = time.monotonic()
    window_writes = (revision() - rev_first) / (end - start)
    e_total = pct(etcd_ticks() - e_first, end - start)
    s_total = pct(ticks(server.pid) - s_first, end - start)
    g_total = pct(ticks(gen_pid) - g_first, end - start)
    join_cpu = pct(s_first - j0, WARMUP)  # the warm-up, while the nodes join

    # While the agents still heartbeat (the tail): every node listed, every one ready.
    nodes = json.loads(ebb("nodes", "--json"))
    running = [i for i in json.loads(ebb("ps", "--json")) if i["desired"] == "run"] if INSTANCES else []
    states = {}
    for n in nodes: states[n["state"]] = states.get(n["state"], 0) + 1
    ready = sum(1 for n in nodes if n["state"] == "ready" and n["name"].startswith("sim-"))

    rest = []
    while True:
        l = line(TAIL + 60)
        if not l: break
        rest.append(l)
    rc = gen.wait(timeout=60)
    report = json.loads(rest[-1]) if rest and rest[-1].startswith("{") else None
    if report is None: raise SystemExit(f"the generator gave no report (exit {rc})")
finally:
    for p in (gen, server):
        if p is None or p.poll() is not None: continue
        os.killpg(p.pid, signal.SIGTERM)
        try: p.wait(timeout=15)
        except subprocess.TimeoutExpired: os.killpg(p.pid, signal.SIGKILL); p.wait()
    if etcd: etcd.stop()
    keep = os.environ.get("KEEP_LOG")
    if keep: shutil.copy(f"{work}/server.log", keep)
    shutil.rmtree(work, ignore_errors=True)

w = report["window"]
print(f"machine: {os.cpu_count()} cores; {AGENTS} simulated agents, a sync each per second"
      f" (own keep-alive connection each, plus the assignments long-poll); {SECONDS} s measured after {WARMUP} s of warm-up")
if INSTANCES:
    print(f"instances: {INSTANCES} in {SERVICES} services, reported running by the simulated nodes;"
          f" `ebb deploy` until all ready took {deployed * 1000:.0f} ms; {sum(i['ready'] for i in running)}"
          f" of {len(running)} ready at the end")
print(f"syncs: {report['syncs_per_s']:.1f}/s achieved (offered {AGENTS}/s); outcomes {w['outcomes']};"
      f" latency p50 {w['p50_ms']:.2f} ms, p99 {w['p99_ms']:.2f} ms, max {w['max_ms']:.2f} ms")
print(f"server CPU: median {statistics.median(samples):.1f} % of one core over {WINDOW} s windows"
      f" (samples {' '.join(f'{s:.1f}' for s in samples)}), {s_total:.1f} % over the whole {SECONDS} s;"
      f" {idle:.2f} % idle before the agents came")
print(f"server RSS: {rss[-1]:.0f} MiB at the end (max {max(rss):.0f}; {idle_rss:.0f} MiB with no node)")
print(f"generator CPU: {g_total:.1f} % of one core over the window (same machine, 1 thread)")
print(f"store: {'etcd, 3 members' if etcd else 'sqlite'}; writes (store revisions) per second: idle {idle_writes:.2f},"
      f" measured window {window_writes:.2f}" + (f"; etcd members' CPU {e_total:.1f} % of one core (all three)" if etcd else ""))
wu = report["warmup"]
print(f"warm-up (joins): all {AGENTS} joined {report['all_joined_ms']} ms after the first sync;"
      f" server CPU {join_cpu:.1f} % of one core; sync p50 {wu['p50_ms']:.2f} ms, p99 {wu['p99_ms']:.2f} ms,"
      f" max {wu['max_ms']:.2f} ms; outcomes {wu['outcomes']}")
print(f"long-polls answered: {report['long_polls']}; failed: {report['long_poll_errors'] or 'none'}")
print(f"ebb nodes --json: {len(nodes)} nodes, {ready} ready (states {states})")
bad = []
if report["failed"]: bad.append("a sync or long-poll failed (outcomes by phase: "
                                + ", ".join(f"{p} {report[p]['outcomes']}" for p in ("warmup", "window", "tail")) + ")")
if ready != AGENTS or len(nodes) != AGENTS: bad.append(f"{ready} of {AGENTS} nodes ready")
if INSTANCES and (len(running) != INSTANCES or not all(i["ready"] for i in running)):
    bad.append(f"{sum(i['ready'] for i in running)} of {INSTANCES} instances ready")
if bad: raise SystemExit("FAILED: " + "; ".join(bad))
PY
