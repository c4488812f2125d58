#!/usr/bin/env bash
# ebb sim --sweep on the synthetic traces of bench/traces/generate.py at a tenth and ten times
# their rate, at start delays of 10 s and 60 s: whether the defaults still beat the HPA and KPA
# models when a service needs one or two instances, or hundreds. The project is measured on
# traces it does not have, at scales it cannot know. Prints a Markdown table of each policy's
# cost at its cheapest target within 1 % missed seconds, as a ratio to the oracle.
#
# Usage: EBB_BIN=target/release/ebb bench/sim-scales.sh [OUT_DIR]   (about 8 minutes on 2 cores)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
ebb="${EBB_BIN:-$here/../target/release/ebb}"
out="${1:-$(mktemp -d)}"
python3 "$here/traces/generate.py" "$out/traces" 2>/dev/null
cat > "$out/web.toml" <<'TOML'
[services.web]
command = ["true"]
port = 8080
[services.web.autoscale]
min = 1
max = 1000
concurrency = 0.7
TOML

echo "| trace | scale | d | foresight | ebb | HPA model | KPA model |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for t in noisy flash steps diurnal surges; do
    for scale in 0.1 10; do
        for d in 10s 60s; do
            json="$out/$t-$scale-$d.json"
            "$ebb" sim "$out/web.toml" --trace "$out/traces/$t.txt" --scale "$scale" \
                --start-delay "$d" --sweep --json > "$json"
            python3 - "$json" "$t" "$scale" "$d" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
def cell(p):
    r = doc[p]
    return "–" if r is None else f"{r['ratio']:.3f}"
print(f"| {sys.argv[2]} | ×{sys.argv[3]} | {sys.argv[4]} | {cell('foresight')} | {cell('ebb')} | {cell('hpa')} | {cell('kpa')} |")
PY
        done
    done
done
