#!/usr/bin/env bash
# Core-runtime figures for BENCHMARKS.md:
#   1. `ebb up` resident memory and CPU when idle, with 0 and with 100 instances of the example app;
#   2. time from `ebb deploy` of 20 instances to all ready (median of several runs).
# Usage: bench/runtime.sh [RUNS]   (default 5 deploy runs; idle CPU: median of 3 samples of 30 s)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
IDLE_SECONDS=${IDLE_SECONDS:-30}

cargo build --release --quiet
EBB=$PWD/target/release/ebb
WORK=$(mktemp -d)
DATA=$WORK/data
trap 'kill -TERM $UP_PID 2>/dev/null; wait $UP_PID 2>/dev/null; rm -rf "$WORK"' EXIT

"$EBB" --data-dir "$DATA" up --listen 127.0.0.1:0 >"$WORK/up.log" 2>&1 &
UP_PID=$!
for _ in $(seq 100); do [ -s "$DATA/api.addr" ] && break; sleep 0.1; done
ebb() { "$EBB" --data-dir "$DATA" "$@"; }
ebb status >/dev/null

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$UP_PID/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$UP_PID/stat"; }
# CPU of ebb up over IDLE_SECONDS, as a percentage of one core.
idle_cpu_percent() {
  local hz t0 t1
  hz=$(getconf CLK_TCK)
  t0=$(cpu_ticks); sleep "$IDLE_SECONDS"; t1=$(cpu_ticks)
  awk -v a="$t0" -v b="$t1" -v hz="$hz" -v s="$IDLE_SECONDS" 'BEGIN {printf "%.2f", (b - a) / hz / s * 100}'
}

service_file() { # name count
  cat >"$WORK/$1.toml" <<TOML
[services.$1]
command = ["ebb", "example-app"]
instances = $2
[services.$1.health]
http = "/healthz"
interval = "1s"
TOML
  echo "$WORK/$1.toml"
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
sleep 2
# Median of three idle CPU samples.
idle_cpu_median() {
  local a b c
  a=$(idle_cpu_percent); b=$(idle_cpu_percent); c=$(idle_cpu_percent)
  printf '%s\n' "$a" "$b" "$c" | sort -n | sed -n 2p | tr -d '\n'
  printf ' (samples %s %s %s)' "$a" "$b" "$c"
}

echo "idle, 0 instances:   rss $(( $(rss_kib) / 1024 )) MiB, cpu $(idle_cpu_median) % of a core"

times=()
for run in $(seq "$RUNS"); do
  f=$(service_file "burst$run" 20)
  start=$(date +%s%N)
  ebb deploy "$f" >/dev/null
  end=$(date +%s%N)
  times+=("$(( (end - start) / 1000000 ))")
  ebb stop "burst$run" >/dev/null
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n | tr '\n' ' ')
median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "deploy 20 instances → all ready: median ${median} ms over $RUNS runs (all: ${sorted}ms)"

f=$(service_file idle 100)
ebb deploy --timeout 2m "$f" >/dev/null
sleep 5
echo "idle, 100 instances: rss $(( $(rss_kib) / 1024 )) MiB, cpu $(idle_cpu_median) % of a core (health check: HTTP every 1 s per instance)"
ebb stop idle >/dev/null

# --- Peer, same run: supervisord (PyPI `supervisor`), the classic process supervisor, running the
# same example app. It does no health checks, rollouts or API of ebb's kind: a lower bound on
# what supervising processes costs.
kill -TERM $UP_PID; wait $UP_PID 2>/dev/null || true
python3 -m pip install --quiet --disable-pip-version-check supervisor >/dev/null 2>&1 || { echo "peer: supervisor could not be installed from PyPI"; exit 0; }
SUP=$WORK/sup; mkdir -p "$SUP"
cat >"$SUP/supervisord.conf" <<CONF
[supervisord]
nodaemon=true
logfile=$SUP/supervisord.log
pidfile=$SUP/supervisord.pid
[unix_http_server]
file=$SUP/sock
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl=unix://$SUP/sock
[program:idle]
command=$EBB example-app
numprocs=100
numprocs_start=21000
process_name=idle_%(process_num)d
environment=PORT="%(process_num)d",HOST="127.0.0.1"
autostart=false
startsecs=0
stdout_logfile=$SUP/%(process_num)d.log
[program:burst]
command=$EBB example-app
numprocs=20
numprocs_start=22000
process_name=burst_%(process_num)d
environment=PORT="%(process_num)d",HOST="127.0.0.1"
autostart=false
startsecs=0
stdout_logfile=$SUP/%(process_num)d.log
CONF
python3 -m supervisor.supervisord -c "$SUP/supervisord.conf" >"$SUP/out.log" 2>&1 &
UP_PID=$!
ctl() { python3 -m supervisor.supervisorctl -c "$SUP/supervisord.conf" "$@"; }
for _ in $(seq 100); do ctl status >/dev/null 2>&1 && break; sleep 0.1; done
sleep 2
echo "peer supervisord, idle, 0 programs:   rss $(( $(rss_kib) / 1024 )) MiB, cpu $(idle_cpu_median) % of a core"
# Start 20, wait until every one answers HTTP (what `ebb deploy` waits for).
answering() { for p in $(seq 22000 22019); do curl -fs "http://127.0.0.1:$p/healthz" >/dev/null || return 1; done; }
times=()
for run in $(seq "$RUNS"); do
  start=$(date +%s%N)
  ctl start 'burst:*' >/dev/null
  until answering; do sleep 0.01; done
  end=$(date +%s%N)
  times+=("$(( (end - start) / 1000000 ))")
  ctl stop 'burst:*' >/dev/null
done
median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "peer supervisord, start 20 → all answering: median ${median} ms over $RUNS runs (all: $(printf '%s\n' "${times[@]}" | sort -n | tr '\n' ' ')ms)"
ctl start 'idle:*' >/dev/null
sleep 5
echo "peer supervisord, idle, 100 programs: rss $(( $(rss_kib) / 1024 )) MiB, cpu $(idle_cpu_median) % of a core (no health checks)"
ctl stop all >/dev/null
ctl shutdown >/dev/null 2>&1 || true
