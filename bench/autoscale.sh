#!/usr/bin/env bash
# Autoscaler figures for BENCHMARKS.md (issue 4), on the release binary, loopback only:
#   1. reaction to a 4x load step: time from the step to the scale-out decision (event), and
#      until the new instances serve (ready in `ebb ps`);
#   2. cold-start overhead: latency of the first request to a service at zero, minus the app's
#      own start-to-listening time (measured separately, same machine, same moment);
#   3. the pure core: decisions per second over 10,000 services (criterion bench).
# Installs wrk from Debian when missing. Usage: bench/autoscale.sh [ROUNDS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
. bench/lib.sh
ensure_wrk
EBB=$(build_ebb)
PYTHONPATH=bench exec python3 - "$EBB" "$ROUNDS" <<'PY'
import json, os, signal, socket, statistics, subprocess, sys, tempfile, time, urllib.request

EBB, ROUNDS = sys.argv[1], int(sys.argv[2])

from benchlib import free_port, wait

class Ebb:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="ebb-bench-")
        self.api = free_port()
        self.env = dict(os.environ, EBB_ADDR=f"127.0.0.1:{self.api}")
        self.proc = subprocess.Popen([EBB, "up", "--data-dir", self.dir, "--listen", f"127.0.0.1:{self.api}",
                                      "--router-bind", "127.0.0.1"], stdout=subprocess.DEVNULL,
                                     stderr=open(f"{self.dir}/up.log", "w"), start_new_session=True)
        try:
            wait("the API token", lambda: os.path.exists(f"{self.dir}/api-token"))
            self.env["EBB_TOKEN"] = open(f"{self.dir}/api-token").read().strip()
            wait("the API", lambda: self.cli("status", check=False) == 0)
        except BaseException:
            self.stop()
            raise
    def cli(self, *args, check=True, out=False):
        r = subprocess.run([EBB, *args], env=self.env, capture_output=True, text=True)
        if check and r.returncode != 0: raise SystemExit(f"ebb {' '.join(args)}: {r.stderr}")
        return r.stdout if out else r.returncode
    def events(self):
        return json.loads(self.cli("events", "--json", "--limit", "1000", out=True))
    def stop(self):
        os.killpg(self.proc.pid, signal.SIGTERM); self.proc.wait(timeout=30)

def service(name, port, extra):
    return (f'[services.{name}]\ncommand = ["ebb", "example-app"]\nport = {port}\n'
            f'[services.{name}.health]\nhttp = "/healthz"\ninterval = "1s"\n'
            f'[services.{name}.balance]\nalgorithm = "least_request"\nqueue_timeout = "30s"\n'
            f'[services.{name}.autoscale]\n{extra}')

def get(port, path="/"):
    t = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
        r.read(); assert r.status == 200
    return time.monotonic() - t

def accepts(port):
    try: socket.create_connection(("127.0.0.1", port), timeout=0.1).close(); return True
    except OSError: return False

def app_start_time():
    """Time from spawning `ebb example-app` to its port accepting a connection."""
    port = free_port()
    t = time.monotonic()
    p = subprocess.Popen([EBB, "example-app", "--port", str(port)], stdout=subprocess.DEVNULL)
    wait("example-app", lambda: accepts(port))
    took = time.monotonic() - t
    p.terminate(); p.wait()
    return took

ebb = Ebb()
try:
    # 1. Cold start: a request at zero, against the app's own start time.
    cold, own = [], []
    for r in range(ROUNDS):
        port = free_port(); name = f"cold{r}"
        path = f"{ebb.dir}/{name}.toml"
        open(path, "w").write(service(name, port, 'min = 0\nmax = 2\nconcurrency = 10\n'))
        ebb.cli("deploy", "--detach", path)
        wait("the listener", lambda: accepts(port))
        own.append(app_start_time())
        cold.append(get(port))
        ebb.cli("stop", name)
    overhead = [c - o for c, o in zip(cold, own)]

    # 2. Reaction to a 4x step: 2 -> 8 clients on /slow?ms=100 with a target of 2.5 in flight
    #    each: the base (2 in flight, 0.8 of one instance's target) stays within tolerance at 1
    #    instance, and the step asks for 8 / 2.5 -> 4.
    reactions, serving = [], []
    for r in range(ROUNDS):
        port = free_port(); name = f"step{r}"
        path = f"{ebb.dir}/{name}.toml"
        open(path, "w").write(service(name, port, 'min = 1\nmax = 8\nconcurrency = 2.5\n'))
        ebb.cli("deploy", path)
        url = f"http://127.0.0.1:{port}/slow?ms=100"
        base = subprocess.Popen(["wrk", "-t1", "-c2", "-d15s", url], stdout=subprocess.DEVNULL)
        time.sleep(7)  # settle at the base load (1 instance), past the 6 s panic window
        seen = {e["seq"] for e in ebb.events()}
        step = subprocess.Popen(["wrk", "-t1", "-c6", "-d8s", url], stdout=subprocess.DEVNULL)
        t0 = time.time()
        def decided():
            for e in ebb.events():
                if e["seq"] not in seen and e.get("service") == name and e["kind"] == "service.scaled":
                    return e
        e = wait("a scale-out decision", decided, 10)
        reactions.append(e["time_ms"] / 1000 - t0)
        print(f"step {r}: {round((e['time_ms'] / 1000 - t0) * 1000)} ms: {e['message']}", flush=True)
        want = int(e["message"].split("→")[1].split(":")[0])
        def ready():
            rows = json.loads(ebb.cli("ps", name, "--json", out=True))
            return sum(1 for i in rows if i["ready"]) >= want
        wait("new instances ready", ready, 15)
        serving.append(time.time() - t0)
        step.wait(); base.wait()
        ebb.cli("stop", name)
finally:
    ebb.stop()

ms = lambda xs: f"{statistics.median(xs) * 1000:.0f} ms"
print(f"machine: {os.cpu_count()} cores; {ROUNDS} rounds; medians")
print(f"cold start: first request {ms(cold)}, app's own start {ms(own)}, overhead {ms(overhead)}"
      f"  (all: {[round(x * 1000) for x in overhead]} ms)")
print(f"4x step: decision after {ms(reactions)}, new instances ready after {ms(serving)}"
      f"  (all: {[round(x * 1000) for x in reactions]} / {[round(x * 1000) for x in serving]} ms)")
PY
