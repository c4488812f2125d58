#!/usr/bin/env bash
# Core-runtime figures for BENCHMARKS.md:
#   1. `ebb up` resident memory and CPU when idle, with 0 and with 100 instances of the example app;
#   2. time from `ebb deploy` of 20 instances to all ready (median of several runs).
# Usage: bench/runtime.sh [RUNS]   (default 5 deploy runs; idle CPU sampled over 30 s)
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
echo "idle, 0 instances:   rss $(( $(rss_kib) / 1024 )) MiB, cpu $(idle_cpu_percent) % of a core"

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
echo "idle, 100 instances: rss $(( $(rss_kib) / 1024 )) MiB, cpu $(idle_cpu_percent) % of a core (health check: HTTP every 1 s per instance)"
ebb stop idle >/dev/null
