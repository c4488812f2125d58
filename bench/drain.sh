#!/usr/bin/env bash
# Drain and migrate figures for BENCHMARKS.md, on the release binary, loopback only: an
# `ebb server` and three `ebb agent`s (n1-n3 on 127.0.0.2-4) as separate processes, a service of
# 6 instances behind the router under constant keep-alive load (wrk, 4 connections); then
# `ebb drain n1` (timed; it returns when the node is empty), checks (6 ready, none on n1, n1
# draining), `ebb migrate` of an instance from n2 to n3 (timed) and `ebb undrain n1`. Reports, per
# round, the drain time, the instances it moved, the time per move, the migrate time and the
# failed requests (wrk's non-2xx responses and socket errors). Exits non-zero when a request
# failed or a check did not hold; the data dir of such a round is kept and its path printed.
# Installs wrk from Debian when missing.
# Usage: bench/drain.sh [ROUNDS]   (default 3; KEEP=1 keeps every round's data dir)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
. bench/lib.sh
ensure_wrk
EBB=$(build_ebb)
PYTHONPATH=bench exec python3 - "$EBB" "$ROUNDS" <<'PY'
import functools, json, os, re, shutil, signal, statistics, subprocess, sys, tempfile, time

EBB, ROUNDS = sys.argv[1], int(sys.argv[2])

from benchlib import free_port, kill_by_env, wait, wrk_failures
wait = functools.partial(wait, every=0.02)  # each poll runs the CLI

# Every process of a round (server, agents, and the instances, which inherit the agents'
# environment but for EBB_*) carries MARK=<the round's dir>: the cleanup kills by it.
MARK = "DRAIN_BENCH"

def kill_marked(work):
    kill_by_env(f"{MARK}={work}".encode())

# A SIGTERM/SIGHUP ends the bench through `finally` like Ctrl-C does.
def on_signal(sig, _):
    raise SystemExit(f"stopped by signal {sig}")
signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGHUP, on_signal)

class CheckFailed(Exception): pass

def check(ok, what):
    if not ok: raise CheckFailed(what)

rows, problems = [], []
for r in range(ROUNDS):
    work = tempfile.mkdtemp(prefix="ebb-drain-")
    api = free_port(); lb = free_port()
    env = dict(os.environ, EBB_ADDR=f"127.0.0.1:{api}", **{MARK: work})
    def cli(*a, timeout=30):
        p = subprocess.run([EBB, "--data-dir", f"{work}/s", *a], env=env, capture_output=True, text=True, timeout=timeout)
        if p.returncode != 0:
            raise CheckFailed(f"`ebb {' '.join(a)}` exited {p.returncode}: {p.stderr.strip()}")
        return p.stdout
    procs, load, failed = [], None, None
    try:
        procs.append(subprocess.Popen([EBB, "--data-dir", f"{work}/s", "server", "--listen", f"127.0.0.1:{api}"],
                                      env=env, stdout=subprocess.DEVNULL, stderr=open(f"{work}/server.log", "w")))
        wait("the server", lambda: os.path.exists(f"{work}/s/join-token") and os.path.exists(f"{work}/s/api.addr"))
        token = open(f"{work}/s/join-token").read().strip()
        names = ["n1", "n2", "n3"]
        for i, name in enumerate(names):
            procs.append(subprocess.Popen([EBB, "--data-dir", f"{work}/{name}", "agent", "--server", f"127.0.0.1:{api}",
                                           "--name", name, "--advertise", f"127.0.0.{i + 2}"],
                                          env=dict(env, EBB_JOIN_TOKEN=token), stdout=subprocess.DEVNULL,
                                          stderr=open(f"{work}/{name}.log", "w")))
        wait("3 nodes", lambda: len([n for n in json.loads(cli("nodes", "--json")) if n["state"] == "ready"]) == 3)
        open(f"{work}/web.toml", "w").write(
            f'[services.web]\ncommand = ["ebb", "example-app"]\ninstances = 6\nport = {lb}\n'
            '[services.web.health]\nhttp = "/healthz"\ninterval = "200ms"\n')
        cli("deploy", f"{work}/web.toml", timeout=60)
        def ready():
            return [i for i in json.loads(cli("ps", "web", "--json")) if i["ready"] and i["desired"] == "run"]
        wait("6 ready", lambda: len(ready()) == 6)
        on_n1 = sum(1 for i in ready() if i["node"] == "n1")

        load = subprocess.Popen(["wrk", "-t1", "-c4", "-d120s", f"http://127.0.0.1:{lb}/"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(1)

        # 1. drain n1
        t0 = time.monotonic()
        out = cli("drain", "n1", timeout=120)
        drain_s = time.monotonic() - t0
        open(f"{work}/drain.out", "w").write(out)
        m = re.search(r"(\d+) instances moved", out)
        check(m, f"no 'N instances moved' in the drain's output:\n{out}")
        moved = int(m.group(1))
        check(moved == on_n1, f"drain moved {moved} instances, n1 held {on_n1}")

        # 2. where things are now
        now = ready()
        check(len(now) == 6, f"{len(now)} ready after the drain, not 6")
        left = [i["id"] for i in json.loads(cli("ps", "web", "--json")) if i["node"] == "n1" and i["desired"] == "run"]
        check(not left, f"still on n1 after the drain: {left}")
        n1 = next(n for n in json.loads(cli("nodes", "--json")) if n["name"] == "n1")
        check(n1["state"] == "draining", f"n1 is {n1['state']!r} after the drain, not 'draining'")

        # 3. migrate one instance n2 -> n3
        inst = next(i["id"] for i in now if i["node"] == "n2")
        t0 = time.monotonic()
        out = cli("migrate", inst, "--to", "n3", timeout=120)
        migrate_s = time.monotonic() - t0
        open(f"{work}/migrate.out", "w").write(out)
        after = ready()
        check(len(after) == 6, f"{len(after)} ready after the migrate, not 6")
        check(all(i["id"] != inst for i in after), f"{inst} is still running after its migrate")
        check(sum(1 for i in after if i["node"] == "n3") == sum(1 for i in now if i["node"] == "n3") + 1,
              "n3 did not gain an instance from the migrate")

        # 4. undrain n1
        cli("undrain", "n1")
        n1 = next(n for n in json.loads(cli("nodes", "--json")) if n["name"] == "n1")
        check(n1["state"] == "ready", f"n1 is {n1['state']!r} after the undrain, not 'ready'")
        time.sleep(0.5)

        # The same two spans as the server recorded them (its events), free of the CLI's 200 ms
        # polling: node.draining -> node.drained of n1, instance.migrating -> instance.stopped of inst.
        evs = json.loads(cli("events", "--json", "--limit", "1000"))
        def at(kind, **k):
            t = [e["time_ms"] for e in evs if e["kind"] == kind and all(e.get(a) == b for a, b in k.items())]
            check(t, f"no {kind} event for {k}")
            return t[-1]
        drain_srv = (at("node.drained", node="n1") - at("node.draining", node="n1")) / 1000
        migrate_srv = (at("instance.stopped", instance=inst) - at("instance.migrating", instance=inst)) / 1000

        # 5. the load
        load.send_signal(signal.SIGINT)  # wrk prints its summary on SIGINT
        wout = load.communicate(timeout=15)[0]
        open(f"{work}/wrk.out", "w").write(wout)
        reqs, bad = wrk_failures(wout)
        rows.append(dict(drain=drain_s, moved=moved, migrate=migrate_s, drain_srv=drain_srv, migrate_srv=migrate_srv, reqs=reqs, bad=bad))
        print(f"round {r}: drain n1 {drain_s * 1000:.0f} ms (server {drain_srv * 1000:.0f} ms), {moved} instances moved "
              f"({drain_s * 1000 / max(moved, 1):.0f} ms per move, server {drain_srv * 1000 / max(moved, 1):.0f}); "
              f"migrate n2 -> n3 {migrate_s * 1000:.0f} ms (server {migrate_srv * 1000:.0f} ms); "
              f"{bad} failed of {reqs} requests", flush=True)
        if bad:
            failed = f"{bad} failed requests (wrk: {work}/wrk.out)"
    except (CheckFailed, SystemExit, subprocess.TimeoutExpired, StopIteration, KeyError, ValueError, AttributeError) as e:
        failed = f"{type(e).__name__}: {e}"
        print(f"round {r}: FAILED: {failed}", flush=True)
        if isinstance(e, SystemExit) and str(e).startswith("stopped by signal"):
            raise
    finally:
        if failed:
            try:
                open(f"{work}/events.txt", "w").write(cli("events"))
            except Exception:
                pass
        if load and load.poll() is None:
            load.kill(); load.wait()
        for p in procs:
            p.terminate()
        for p in procs:
            try: p.wait(timeout=10)
            except subprocess.TimeoutExpired: p.kill(); p.wait()
        kill_marked(work)
    if failed:
        problems.append(failed)
        print(f"round {r}: data dir kept: {work} (events.txt, wrk.out, drain.out, migrate.out, *.log)", flush=True)
    elif os.environ.get("KEEP"):
        print(f"round {r}: data dir kept (KEEP): {work}", flush=True)
    else:
        shutil.rmtree(work, ignore_errors=True)

print(f"machine: {os.cpu_count()} cores; {ROUNDS} rounds; 6 instances on 3 nodes, health check every 200ms; wrk -c4")
if rows:
    med = lambda k: statistics.median(x[k] for x in rows)
    per_move = statistics.median(x["drain"] / max(x["moved"], 1) for x in rows)
    ms = lambda k: [round(x[k] * 1000) for x in rows]
    per_move_srv = statistics.median(x["drain_srv"] / max(x["moved"], 1) for x in rows)
    print("times: `ebb drain`/`ebb migrate` wall time (the CLI polls every 200 ms); server: between its events")
    print(f"drain n1 (returns when empty): median {med('drain') * 1000:.0f} ms  (all: {ms('drain')} ms);"
          f" server: median {med('drain_srv') * 1000:.0f} ms  (all: {ms('drain_srv')} ms)")
    print(f"instances moved per drain: {[x['moved'] for x in rows]} (total {sum(x['moved'] for x in rows)});"
          f" median {per_move * 1000:.0f} ms per move, server {per_move_srv * 1000:.0f} ms")
    print(f"migrate n2 -> n3: median {med('migrate') * 1000:.0f} ms  (all: {ms('migrate')} ms);"
          f" server: median {med('migrate_srv') * 1000:.0f} ms  (all: {ms('migrate_srv')} ms)")
    print(f"failed requests under load: {sum(x['bad'] for x in rows)} of {sum(x['reqs'] for x in rows)}")
if problems or len(rows) < ROUNDS:
    print(f"FAILED: {len(problems)} of {ROUNDS} rounds had a problem")
    sys.exit(1)
PY
