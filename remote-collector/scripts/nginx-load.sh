#!/usr/bin/env bash
# Rough overhead figures (not a benchmark gate): a fixed number of keep-alive
# requests against a throwaway nginx on 127.0.0.1, first without, then with the
# collector attached; prints wall time per run, the collector's CPU and peak RSS,
# and spans seen vs requests sent.
#
#   sudo scripts/nginx-load.sh [tapdeck-collector] [tapdeck-dump]
#   REQS=20000 CLIENTS=2 PATH_=/api/x sudo -E scripts/nginx-load.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-$here/target/release/tapdeck-collector}
DUMP=${2:-$here/target/release/tapdeck-dump}
REQS=${REQS:-20000}      # per client, sequential on one keep-alive connection
CLIENTS=${CLIENTS:-2}
PATH_=${PATH_:-/api/x}   # /api/x is proxied (3 spans per request), / is direct (1 span)
PORT=18090; UPORT=18091
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 2; }

T=$(mktemp -d /tmp/tapdeck-load.XXXXXX); chmod 755 "$T"; mkdir -p "$T/tmp"
nginx_pid=""; col_pid=""; sleep_pid=""
cleanup() {
  [ -n "$col_pid" ] && kill "$col_pid" 2>/dev/null
  [ -n "$sleep_pid" ] && kill "$sleep_pid" 2>/dev/null
  [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null
  true
}
trap cleanup EXIT
cat > "$T/nginx.conf" <<CONF
worker_processes 2;
pid $T/nginx.pid;
error_log $T/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $T/tmp/b; proxy_temp_path $T/tmp/p; fastcgi_temp_path $T/tmp/f; uwsgi_temp_path $T/tmp/u; scgi_temp_path $T/tmp/s;
  upstream backend { server 127.0.0.1:$UPORT; keepalive 8; }
  server {
    listen 127.0.0.1:$PORT;
    location = / { return 200 "hello\n"; }
    location /api/ { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
  server { listen 127.0.0.1:$UPORT; location / { return 200 "upstream\n"; } }
}
CONF
nginx -c "$T/nginx.conf" -p "$T"; sleep 0.3; nginx_pid=$(cat "$T/nginx.pid")

load() {
  local s e
  s=$(date +%s%N)
  for c in $(seq 1 "$CLIENTS"); do
    timeout 300 curl -s -H "X-Request-ID: load-$c" "http://127.0.0.1:$PORT$PATH_?c=$c&i=[1-$REQS]" > /dev/null &
  done
  wait
  e=$(date +%s%N)
  echo $(( (e - s) / 1000000 ))
}

load > /dev/null   # warm-up
base_ms=$(load)
echo "without collector: $((CLIENTS * REQS)) requests in $base_ms ms ($(( CLIENTS * REQS * 1000 / base_ms )) req/s)"

mkfifo "$T/stdin"
sleep 400 > "$T/stdin" 2>/dev/null &
sleep_pid=$!
"$BIN" --process "$nginx_pid" --duration 300s < "$T/stdin" > "$T/stream.bin" 2> "$T/collector.err" &
col_pid=$!
sleep 1.5
ticks() { awk '{print $14 + $15}' "/proc/$col_pid/stat"; }
t0=$(ticks)
with_ms=$(load)
t1=$(ticks)
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$col_pid/status")
hz=$(getconf CLK_TCK)
sleep 1
kill -TERM "$col_pid"; wait "$col_pid" || true; col_pid=""
echo "with collector:    $((CLIENTS * REQS)) requests in $with_ms ms ($(( CLIENTS * REQS * 1000 / with_ms )) req/s)"
echo "collector CPU during the loaded run: $(( (t1 - t0) * 1000 / hz )) ms over $with_ms ms wall ($(( (t1 - t0) * 100000 / hz / with_ms ))% of one core); peak RSS ${hwm} kB"
"$DUMP" "$T/stream.bin" > "$T/frames.jsonl"
echo "spans: $(jq -s '[.[] | select(.type=="span")] | group_by(.body.observation_point + ":" + (.body.server_port|tostring)) | map("\(.[0].body.observation_point):\(.[0].body.server_port)=\(length)") | join(" ")' "$T/frames.jsonl")"
jq -c 'select(.type=="stats" and .body.final) | .body | {events_seen, events_lost, spans_sent, drops, cpu_user_us, cpu_sys_us, rss_bytes}' "$T/frames.jsonl"
echo "artifacts in $T"
