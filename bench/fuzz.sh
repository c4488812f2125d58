#!/usr/bin/env bash
# Fuzzing figures for BENCHMARKS.md (issue 15): runs each cargo-fuzz target in fuzz/ under
# libFuzzer for FUZZ_SECONDS (default 600) on a copy of its seed corpus (fuzz/corpus/TARGET), JOBS
# targets at once (default: one per core), and prints per target the executions, executions
# per second, the corpus it grew to, and the crashes (inputs that panicked, leaked past
# RSS_MB or hung past 10 s; kept in fuzz/artifacts/TARGET/ to be replayed and fixed).
# KEEP=1 merges what each run found into fuzz/corpus/TARGET (libFuzzer's -merge, so only inputs
# that add coverage are kept); the corpus tests then replay them on every `cargo test`.
# Needs a nightly toolchain (rustup) and cargo-fuzz, installed here when missing.
# Usage: bench/fuzz.sh [TARGET...]   (FUZZ_SECONDS=600, JOBS=$(nproc), RSS_MB=2048, KEEP=0)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${FUZZ_SECONDS:-600}
JOBS=${JOBS:-$(nproc)}
RSS_MB=${RSS_MB:-2048}
KEEP=${KEEP:-0}
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(h1_request h1_response chunked deploy_file api_json)

rustup toolchain list | grep -q '^nightly' || timeout 900 rustup toolchain install nightly --profile minimal
cargo fuzz --version >/dev/null 2>&1 || timeout 1200 cargo install --locked cargo-fuzz
# Build every target once, before any clock starts.
(cd fuzz && timeout 1800 cargo +nightly fuzz build -O --debug-assertions 2>&1 | tail -2)

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
run() { # target: one bounded libFuzzer run; its log in $WORK/TARGET.log
  local t=$1
  mkdir -p "$WORK/$t/corpus" "fuzz/artifacts/$t"
  cp fuzz/corpus/"$t"/* "$WORK/$t/corpus/"
  (cd fuzz && timeout $((SECONDS_PER_TARGET + 300)) cargo +nightly fuzz run -O --debug-assertions "$t" "$WORK/$t/corpus" -- \
    -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 -rss_limit_mb="$RSS_MB" -timeout=10 \
    -artifact_prefix="$PWD/artifacts/$t/" >"$WORK/$t.log" 2>&1) || true
  if [ "$KEEP" = 1 ]; then
    (cd fuzz && cargo +nightly fuzz cmin -O "$t" "$WORK/$t/corpus" >/dev/null 2>&1 || true)
    mkdir -p "$WORK/$t/merged"
    (cd fuzz && cargo +nightly fuzz run -O "$t" "$WORK/$t/merged" "corpus/$t" "$WORK/$t/corpus" -- -merge=1 >/dev/null 2>&1 || true)
    cp -n "$WORK/$t/merged"/* "fuzz/corpus/$t/" 2>/dev/null || true
  fi
}
running=0
for t in "${TARGETS[@]}"; do
  run "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then wait -n; running=$((running - 1)); fi
done
wait

echo "machine: $(nproc) cores; $(cargo +nightly --version); ${SECONDS_PER_TARGET} s per target, $JOBS at once"
printf '%-12s %14s %10s %8s %8s\n' target executions "exec/s" corpus crashes
for t in "${TARGETS[@]}"; do
  log=$WORK/$t.log
  execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log" | tail -1)
  secs=$(awk '/stat::average_exec_per_sec/ {print $2}' "$log" | tail -1)
  corpus=$(find "$WORK/$t/corpus" -type f | wc -l)
  crashes=$(grep -cE '^==[0-9]+== ERROR|panicked at|Test unit written to' "$log" || true)
  printf '%-12s %14s %10s %8s %8s\n' "$t" "${execs:-?}" "${secs:-?}" "$corpus" "$crashes"
  if [ "$crashes" != 0 ] || [ -z "$execs" ]; then
    echo "  $t: see its log:"; tail -20 "$log" | sed 's/^/    /'
  fi
done
