#!/usr/bin/env bash
# Router figures for BENCHMARKS.md (issue 3): wrk against
#   (a) one backend directly, (b) ebb's HTTP proxy (round_robin and peak_ewma),
#   (c) nginx as a proxy, (d) HAProxy, and (e) raw_floor, a bare hand-written HTTP/1.1 proxy
#   on httparse with none of ebb's features (the floor under ebb's own HTTP/1.1 path),
# each proxy with one worker thread, in front of the same two backends (nginx answering a fixed
# 200), keep-alive on both sides, 32 connections. Runs are interleaved, in a new random order
# each round (so no target always follows the same one), and medians are reported; the ratios
# to nginx and HAProxy are also taken round by round (paired), which cancels the slow drifts
# of a shared machine's speed that unpaired medians only average out.
# TLS targets: the same three proxies terminating TLS 1.3 with the same ECDSA P-256 certificate
# (made by openssl for the run), keep-alive (*_tls), and a new connection, hence a full
# handshake, per request (*_hs: wrk with `Connection: close`; wrk resumes no session).
# At the end: each proxy's resident memory with IDLE_CONNECTIONS idle
# keep-alive client connections open on it (IDLE_CONNECTIONS, default 9,000).
# Installs nginx, HAProxy, wrk and openssl from Debian packages when missing. Loopback only.
#
# Where the processes run (LAYOUT):
#   pinned (default): wrk alone on CPU 0; the backend and every proxy on CPU 1. The load
#     generator then takes nothing from the system under test, as when clients are other
#     machines, and the proxy shares its core with the service behind it, as ebb's router does
#     on a node. req/s then follows the proxy's CPU per request (plus the backend's).
#   shared: no pinning; wrk, the backend and the proxy compete for both cores, so req/s follows
#     the sum of all three's CPU per request, wrk's included.
# Before/after a change: BASELINE_PROXY=path/to/an/older/bench_proxy adds the target ebb_base
# (that binary, round robin) beside ebb_rr in the same rounds, and prints ebb_rr/ebb_base.
# TARGETS="ebb_rr ebb_base nginx" runs only those targets; IDLE_CONNECTIONS=0 skips the memory
# measure.
# Usage: bench/router.sh [ROUNDS]   (default 9; DURATION=5s per run, CONNECTIONS=32, LAYOUT=pinned)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-9}
DURATION=${DURATION:-5s}
LAYOUT=${LAYOUT:-pinned}
case $LAYOUT in
  pinned)
    [ "$(nproc)" -ge 2 ] || { echo "LAYOUT=pinned needs 2 cores; use LAYOUT=shared" >&2; exit 2; }
    ON_LOAD=(taskset -c 0) ON_SERVERS=(taskset -c 1) ;;
  shared) ON_LOAD=() ON_SERVERS=() ;;
  *) echo "LAYOUT must be pinned or shared, not '$LAYOUT'" >&2; exit 2 ;;
esac
CONNECTIONS=${CONNECTIONS:-32}
BASE_PORT=${BASE_PORT:-18100}
B1=$((BASE_PORT + 1)) B2=$((BASE_PORT + 2))
P_EBB_RR=$((BASE_PORT + 10)) P_EBB_EWMA=$((BASE_PORT + 11)) P_NGINX=$((BASE_PORT + 12)) P_HAPROXY=$((BASE_PORT + 13))
P_RAW=$((BASE_PORT + 15)) P_EBB_BASE=$((BASE_PORT + 16))
P_EBB_TLS=$((BASE_PORT + 20)) P_NGINX_TLS=$((BASE_PORT + 21)) P_HAPROXY_TLS=$((BASE_PORT + 22))
# 9,000 by default: under this machine's hard open-file limit of 20,000, ebb's cap on client
# connections is (20,000 - 256) / 2 = 9,872 (the other half is kept for instance connections),
# and HAProxy's maxconn must stay under half the limit too.
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-9000}

need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v wrk >/dev/null || need+=(wrk)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  timeout 300 $SUDO apt-get update -qq
  if ! DEBIAN_FRONTEND=noninteractive timeout 600 $SUDO apt-get install -y -qq "${need[@]}" >/dev/null; then
    # nginx-light is gone from newer Debian releases; plain nginx is the same server.
    DEBIAN_FRONTEND=noninteractive timeout 600 $SUDO apt-get install -y -qq "${need[@]/nginx-light/nginx}" >/dev/null
  fi
fi
PATH=$PATH:/usr/sbin

timeout 900 cargo build --release --quiet -p ebb-router --example bench_proxy --example raw_floor
EBB_PROXY=$PWD/target/release/examples/bench_proxy
RAW_FLOOR=$PWD/target/release/examples/raw_floor

# Room for the idle-connection measure in every process (ebb sizes its connection cap from it).
ulimit -n "$(ulimit -Hn)"

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do timeout 5 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$WORK/backend" "$WORK/nginx"
# One certificate for every TLS target: ECDSA P-256, as most sites now serve.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
cat "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/haproxy.pem"
cat >"$WORK/backend/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $WORK/backend/nginx.pid;
error_log $WORK/backend/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000000;
  # Longer than a whole round, so no proxy's idle upstream connections expire between its runs.
  keepalive_timeout 600s;
  client_body_temp_path $WORK/backend/tmp;
  proxy_temp_path $WORK/backend/tmp;
  fastcgi_temp_path $WORK/backend/tmp;
  uwsgi_temp_path $WORK/backend/tmp;
  scgi_temp_path $WORK/backend/tmp;
  server {
    listen 127.0.0.1:$B1;
    listen 127.0.0.1:$B2;
    location / { return 200 "ok\n"; }
  }
}
CONF
cat >"$WORK/nginx/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 16384; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 60s;
  client_body_temp_path $WORK/nginx/tmp;
  proxy_temp_path $WORK/nginx/tmp;
  fastcgi_temp_path $WORK/nginx/tmp;
  uwsgi_temp_path $WORK/nginx/tmp;
  scgi_temp_path $WORK/nginx/tmp;
  upstream backends {
    server 127.0.0.1:$B1;
    server 127.0.0.1:$B2;
    keepalive 32;
    keepalive_requests 100000000;
  }
  server {
    listen 127.0.0.1:$P_NGINX;
    listen 127.0.0.1:$P_NGINX_TLS ssl;
    ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {
      proxy_pass http://backends;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      # ebb adds X-Forwarded-For too; same work for each proxy.
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }
}
CONF
cat >"$WORK/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 9500
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
  option forwardfor
frontend bench
  bind 127.0.0.1:$P_HAPROXY
  bind 127.0.0.1:$P_HAPROXY_TLS ssl crt $WORK/haproxy.pem alpn h2,http/1.1
  default_backend backends
backend backends
  balance roundrobin
  server b1 127.0.0.1:$B1
  server b2 127.0.0.1:$B2
CONF

"${ON_SERVERS[@]}" nginx -p "$WORK/backend" -c "$WORK/backend/nginx.conf" &
PIDS+=($!)
"${ON_SERVERS[@]}" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
PIDS+=($!)
"${ON_SERVERS[@]}" haproxy -db -f "$WORK/haproxy.cfg" &
PIDS+=($!)
"${ON_SERVERS[@]}" "$EBB_PROXY" "127.0.0.1:$P_EBB_RR" round_robin "127.0.0.1:$B1" "127.0.0.1:$B2" &
PIDS+=($!)
"${ON_SERVERS[@]}" "$EBB_PROXY" "127.0.0.1:$P_EBB_EWMA" peak_ewma "127.0.0.1:$B1" "127.0.0.1:$B2" &
PIDS+=($!)
"${ON_SERVERS[@]}" "$RAW_FLOOR" "127.0.0.1:$P_RAW" "127.0.0.1:$B1" "127.0.0.1:$B2" &
PIDS+=($!)
if [ -n "${BASELINE_PROXY:-}" ]; then
  [ -x "$BASELINE_PROXY" ] || { echo "BASELINE_PROXY=$BASELINE_PROXY is not an executable" >&2; exit 2; }
  "${ON_SERVERS[@]}" "$BASELINE_PROXY" "127.0.0.1:$P_EBB_BASE" round_robin "127.0.0.1:$B1" "127.0.0.1:$B2" &
  PIDS+=($!)
fi
EBB_TLS_CERT=$WORK/cert.pem EBB_TLS_KEY=$WORK/key.pem \
  "${ON_SERVERS[@]}" "$EBB_PROXY" "127.0.0.1:$P_EBB_TLS" round_robin "127.0.0.1:$B1" "127.0.0.1:$B2" &
PIDS+=($!)

wait_port() { # port: polls (bounded, 10 s) until something accepts on it
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2; return 1
}
for port in $B1 $B2 $P_EBB_RR $P_EBB_EWMA $P_NGINX $P_HAPROXY $P_RAW $P_EBB_TLS $P_NGINX_TLS $P_HAPROXY_TLS \
  ${BASELINE_PROXY:+$P_EBB_BASE}; do
  wait_port "$port"
done

NAMES=(backend ebb_rr ebb_ewma nginx haproxy raw_floor ebb_tls nginx_tls haproxy_tls ebb_hs nginx_hs haproxy_hs)
[ -n "${BASELINE_PROXY:-}" ] && NAMES+=(ebb_base)
if [ -n "${TARGETS:-}" ]; then
  read -r -a NAMES <<<"$TARGETS"
fi
declare -A PORT=([backend]=$B1 [ebb_rr]=$P_EBB_RR [ebb_ewma]=$P_EBB_EWMA [nginx]=$P_NGINX [haproxy]=$P_HAPROXY [raw_floor]=$P_RAW
  [ebb_base]=$P_EBB_BASE
  [ebb_tls]=$P_EBB_TLS [nginx_tls]=$P_NGINX_TLS [haproxy_tls]=$P_HAPROXY_TLS
  [ebb_hs]=$P_EBB_TLS [nginx_hs]=$P_NGINX_TLS [haproxy_hs]=$P_HAPROXY_TLS)
for name in "${NAMES[@]}"; do
  [ -n "${PORT[$name]:-}" ] || { echo "TARGETS: no target named '$name'" >&2; exit 2; }
  [ "$name" != ebb_base ] || [ -n "${BASELINE_PROXY:-}" ] || { echo "TARGETS: ebb_base needs BASELINE_PROXY" >&2; exit 2; }
done
url() { case $1 in *_tls | *_hs) echo "https://localhost:${PORT[$1]}/" ;; *) echo "http://127.0.0.1:${PORT[$1]}/" ;; esac; }

# Latency as printed by wrk (e.g. 312.00us, 1.20ms, 2.00s) in microseconds.
to_us() { awk -v v="$1" 'BEGIN {
  n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
  if (u == "us") f = 1; else if (u == "ms") f = 1000; else if (u == "s") f = 1000000; else f = 60000000
  printf "%.0f", n * f }'; }

# CPU time (user + system, in clock ticks) of every process listening on a port: the proxy's
# cost per request is this over a run divided by the requests served, a figure far less
# disturbed by a noisy machine than requests per second.
TICKS_PER_SEC=$(getconf CLK_TCK)
cpu_ticks() {
  local total=0 pid
  for pid in $(ss -ltnpH "sport = :$1" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total"
}

echo "machine: $(nproc) cores, $(uname -r); wrk -t1 -c$CONNECTIONS -d$DURATION, $ROUNDS interleaved rounds, layout $LAYOUT"
echo "versions: $(nginx -v 2>&1 | sed 's/.*\///'), haproxy $(haproxy -v | awk 'NR==1 {print $3}'), $(wrk -v 2>&1 | awk 'NR==1 {print $1, $2}')"
for round in $(seq "$ROUNDS"); do
  for name in $(printf '%s\n' "${NAMES[@]}" | shuf); do
    before=$(cpu_ticks "${PORT[$name]}")
    # *_hs: a new connection (and TLS handshake) per request.
    extra=(); case $name in *_hs) extra=(-H "Connection: close") ;; esac
    out=$(timeout 60 "${ON_LOAD[@]}" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "${extra[@]}" "$(url "$name")")
    after=$(cpu_ticks "${PORT[$name]}")
    served=$(awk '/requests in/ {print $1}' <<<"$out")
    cpu_us=$(awk -v t=$((after - before)) -v n="$served" -v hz="$TICKS_PER_SEC" 'BEGIN {printf "%.1f", t * 1e6 / hz / n}')
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p50=$(to_us "$(awk '$1 == "50%" {print $2}' <<<"$out")")
    p99=$(to_us "$(awk '$1 == "99%" {print $2}' <<<"$out")")
    errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
    echo "$name $rps $p50 $p99 $cpu_us $round" >>"$WORK/results"
    printf 'round %d %-11s %10.0f req/s  p50 %6d us  p99 %6d us  cpu %5.1f us/req %s\n' "$round" "$name" "$rps" "$p50" "$p99" "$cpu_us" "$errors"
  done
done

median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
declare -A RPS
echo
printf '%-11s %12s %10s %10s %12s\n' target "req/s" "p50 us" "p99 us" "cpu us/req"
for name in "${NAMES[@]}"; do
  RPS[$name]=$(awk -v n="$name" '$1 == n {print $2}' "$WORK/results" | median)
  p50=$(awk -v n="$name" '$1 == n {print $3}' "$WORK/results" | median)
  p99=$(awk -v n="$name" '$1 == n {print $4}' "$WORK/results" | median)
  cpu=$(awk -v n="$name" '$1 == n {print $5}' "$WORK/results" | median)
  printf '%-11s %12.0f %10.0f %10.0f %12.1f\n' "$name" "${RPS[$name]}" "$p50" "$p99" "$cpu"
done
echo
# Ratios: of the medians, and the median (with the range) of each round's own ratio.
paired() { # name peer: "median (min-max)" of name/peer over the rounds
  awk -v a="$1" -v b="$2" '$1 == a {x[$6] = $2} $1 == b {y[$6] = $2}
    END {for (r in x) if (y[r] > 0) print x[r] / y[r]}' "$WORK/results" | sort -n |
    awk '{v[NR] = $1} END {m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      printf "%.2f (%.2f-%.2f)", m, v[1], v[NR]}'
}
ran() { [[ " ${NAMES[*]} " == *" $1 "* ]]; }
if ran ebb_base && ran ebb_rr; then
  awk -v e="${RPS[ebb_rr]}" -v b="${RPS[ebb_base]}" 'BEGIN {printf "ebb_rr/ebb_base %.3f (this build against BASELINE_PROXY)\n", e / b}'
  echo "  paired by round: $(paired ebb_rr ebb_base)"
fi
for pair in "ebb_rr nginx haproxy" "ebb_ewma nginx haproxy" "raw_floor nginx haproxy" \
  "ebb_tls nginx_tls haproxy_tls" "ebb_hs nginx_hs haproxy_hs"; do
  read -r ebb ngx hap <<<"$pair"
  ran "$ebb" && ran "$ngx" && ran "$hap" || continue
  goal=">= 1.10 and >= 1.00"; [ "$ebb" = ebb_hs ] && goal=">= 1.00 (handshakes)"
  awk -v e="${RPS[$ebb]}" -v n="${RPS[$ngx]}" -v h="${RPS[$hap]}" -v name="$ebb" -v goal="$goal" \
    'BEGIN {printf "%s/nginx %.2f   %s/haproxy %.2f   (goal: %s)\n", name, e / n, name, e / h, goal}'
  echo "  paired by round: /nginx $(paired "$ebb" "$ngx")   /haproxy $(paired "$ebb" "$hap")"
done

# Resident memory with many idle keep-alive clients: each connection sends one request, reads
# the answer and stays open; the proxy's RSS is read before and with them open.
rss_kb() { # port: resident KiB of the processes listening on it
  local total=0 pid
  for pid in $(ss -ltnpH "sport = :$1" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do
    total=$((total + $(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")))
  done
  echo "$total"
}
[ "$IDLE_CONNECTIONS" -gt 0 ] || exit 0
echo
echo "idle connections: $IDLE_CONNECTIONS keep-alive clients, each after one request (RSS in MiB)"
printf '%-11s %10s %10s %14s\n' target before open "KiB/connection"
for name in ebb_rr nginx haproxy; do
  before=$(rss_kb "${PORT[$name]}")
  open=$(timeout 120 python3 - "${PORT[$name]}" "$IDLE_CONNECTIONS" "${PORT[$name]}" <<'PY'
import resource, socket, subprocess, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(n + 1024, hard), hard))
held = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    held.append(s)
for s in held:
    s.settimeout(10)
    got = b""
    while b"\r\n\r\n" not in got:
        got += s.recv(4096)
time.sleep(1)
out = subprocess.run(["bash", "-c", f"ss -ltnpH 'sport = :{port}' | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u"],
                     capture_output=True, text=True).stdout.split()
print(sum(int(next(l.split()[1] for l in open(f"/proc/{p}/status") if l.startswith("VmRSS:"))) for p in out))
PY
)
  awk -v n="$name" -v b="$before" -v o="$open" -v c="$IDLE_CONNECTIONS" \
    'BEGIN {printf "%-11s %10.1f %10.1f %14.2f\n", n, b / 1024, o / 1024, (o - b) / c}'
done
