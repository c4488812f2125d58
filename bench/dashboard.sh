#!/usr/bin/env bash
# The server's idle CPU with one open dashboard, for BENCHMARKS.md (issue 18): an `ebb up`
# (release binary, loopback only) with SERVICES services of INSTANCES example-app instances,
# no load. Then ROUNDS rounds of three windows of WINDOW seconds each, in turn: nothing open;
# one headless Chromium showing /ui/ (logged in through `ebb ui --print`); one `ebb events -f`
# (a plain event-stream client, for comparison). Each window's figure is the CPU time of the
# `ebb up` process (utime + stime from /proc) over the window, as a percentage of one core;
# the medians per kind and the extra of each over nothing open are printed.
# Usage: bench/dashboard.sh [SERVICES] [INSTANCES] [ROUNDS] [WINDOW]   (defaults 10, 2, 5, 30)
set -euo pipefail
cd "$(dirname "$0")/.."
SERVICES=${1:-10}
INSTANCES=${2:-2}
ROUNDS=${3:-5}
WINDOW=${4:-30}
. bench/lib.sh
ensure_deb chromium chromium
EBB=$(build_ebb)
PYTHONPATH=bench exec python3 - "$EBB" "$SERVICES" "$INSTANCES" "$ROUNDS" "$WINDOW" <<'PY'
import os, shutil, statistics, subprocess, sys, tempfile, time

EBB, SERVICES, INSTANCES, ROUNDS, WINDOW = sys.argv[1], *map(int, sys.argv[2:6])
from benchlib import free_port, stop_all, wait

TICKS = os.sysconf("SC_CLK_TCK")
work = tempfile.mkdtemp(prefix="ebb-dashboard-")
data = f"{work}/data"
with open(f"{work}/many.toml", "w") as f:
    for i in range(SERVICES):
        f.write(f'[services.s{i:02}]\ncommand = ["ebb", "example-app"]\ninstances = {INSTANCES}\nport = {free_port()}\n'
                f'[services.s{i:02}.health]\nhttp = "/healthz"\ninterval = "5s"\n\n')
up = subprocess.Popen([EBB, "--data-dir", data, "up", "--listen", "127.0.0.1:0"],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime

def window():
    before, t = cpu_seconds(up.pid), time.monotonic()
    time.sleep(WINDOW)
    return 100 * (cpu_seconds(up.pid) - before) / (time.monotonic() - t)

def browser():
    url = cli("ui", "--print").strip()
    profile = tempfile.mkdtemp(dir=work)
    return subprocess.Popen(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             "--remote-debugging-port=0", f"--user-data-dir={profile}", url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

def follower():
    return subprocess.Popen([EBB, "--data-dir", data, "events", "-f"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)

cli = lambda *a: subprocess.run([EBB, "--data-dir", data, *a], check=True, capture_output=True, text=True).stdout
figures = {"nothing open": [], "one dashboard": [], "one ebb events -f": []}
try:
    wait("the API", lambda: os.path.exists(f"{data}/api.addr"), 30)
    cli("deploy", "--timeout", "5m", f"{work}/many.toml")
    print(f"{SERVICES} services x {INSTANCES} instances ready; {ROUNDS} rounds of {WINDOW} s windows", flush=True)
    time.sleep(WINDOW)  # settle
    for r in range(ROUNDS):
        figures["nothing open"].append(window())
        for kind, start in (("one dashboard", browser), ("one ebb events -f", follower)):
            client = start()
            time.sleep(5)  # the page's first load is not idle
            figures[kind].append(window())
            client.terminate()
            client.wait(timeout=30)
        print("round", r + 1, {k: f"{v[-1]:.2f}%" for k, v in figures.items()}, flush=True)
    base = statistics.median(figures["nothing open"])
    for kind, values in figures.items():
        median = statistics.median(values)
        print(f"{kind}: median {median:.2f}% of a core (min {min(values):.2f}, max {max(values):.2f}); "
              f"extra over nothing open {median - base:+.2f} points")
finally:
    stop_all([up], grace=120)
    shutil.rmtree(work, ignore_errors=True)
PY
