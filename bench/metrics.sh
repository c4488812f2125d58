#!/usr/bin/env bash
# `GET /metrics` at size for BENCHMARKS.md (issue 18): an `ebb up` (release binary, loopback
# only) with SERVICES services of INSTANCES example-app instances each, every service behind its
# own load-balancer port and sent a few requests (a 200 and a 404 each, so that each has request
# histograms of two status classes); then SCRAPES scrapes timed one after the other (median and
# max of the time to the last byte, and the size), and `promtool check metrics` on the last one.
# Usage: bench/metrics.sh [SERVICES] [INSTANCES] [SCRAPES]   (defaults 100, 10, 20)
set -euo pipefail
cd "$(dirname "$0")/.."
SERVICES=${1:-100}
INSTANCES=${2:-10}
SCRAPES=${3:-20}
. bench/lib.sh
ensure_deb promtool prometheus
EBB=$(build_ebb)
PYTHONPATH=bench exec python3 - "$EBB" "$SERVICES" "$INSTANCES" "$SCRAPES" <<'PY'
import json, os, shutil, statistics, subprocess, sys, tempfile, time, urllib.request

EBB, SERVICES, INSTANCES, SCRAPES = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
from benchlib import free_port, stop_all, wait

work = tempfile.mkdtemp(prefix="ebb-metrics-")
data = f"{work}/data"
ports = []
with open(f"{work}/many.toml", "w") as f:
    for i in range(SERVICES):
        port = free_port()
        ports.append(port)
        f.write(f'[services.s{i:03}]\ncommand = ["ebb", "example-app"]\ninstances = {INSTANCES}\nport = {port}\n'
                f'[services.s{i:03}.health]\nhttp = "/healthz"\ninterval = "5s"\n\n')
up = subprocess.Popen([EBB, "--data-dir", data, "up", "--listen", "127.0.0.1:0"],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    wait("the API", lambda: os.path.exists(f"{data}/api.addr"), 30)
    addr = open(f"{data}/api.addr").read().strip()
    token = open(f"{data}/api-token").read().strip()
    cli = lambda *a: subprocess.run([EBB, "--data-dir", data, *a], check=True, capture_output=True, text=True).stdout
    started = time.monotonic()
    cli("deploy", "--timeout", "10m", f"{work}/many.toml")
    print(f"{SERVICES} services x {INSTANCES} instances ready in {time.monotonic() - started:.1f} s", flush=True)
    for port in ports:
        for path in ("/", "/no-such-page"):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10).read()
            except urllib.error.HTTPError:
                pass
    def scrape():
        req = urllib.request.Request(f"http://{addr}/metrics", headers={"Authorization": f"Bearer {token}"})
        t = time.monotonic()
        body = urllib.request.urlopen(req, timeout=30).read()
        return time.monotonic() - t, body
    scrape()  # warm
    times, size, body = [], 0, b""
    for _ in range(SCRAPES):
        took, body = scrape()
        times.append(took)
    lines = [l for l in body.decode().splitlines() if l and not l.startswith("#")]
    checked = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True)
    print(f"scrape: median {statistics.median(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms over {SCRAPES}; "
          f"{len(body) / 1024:.0f} KiB, {len(lines)} samples; promtool exit {checked.returncode} "
          f"{(checked.stdout + checked.stderr).decode().strip()[:300]}")
finally:
    stop_all([up], grace=120)
    shutil.rmtree(work, ignore_errors=True)
PY
