#!/usr/bin/env bash
# Root smoke test of tapdeck-collector against a throwaway nginx on 127.0.0.1.
#
#   sudo scripts/nginx-smoke.sh [path/to/tapdeck-collector] [path/to/tapdeck-dump]
#
# Starts nginx (own config in a temp dir: `/` returns 200, /api/ proxies to a second
# server block, /static/ serves a file with sendfile and 404s on missing files),
# runs the collector on the nginx master pid for DURATION seconds, sends a bounded
# set of curl requests (incl. keep-alive and X-Request-ID), then checks the spans
# and prints counts, durations, CPU and RSS. Everything it starts is stopped.
# Traffic stays on 127.0.0.1.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-$here/target/release/tapdeck-collector}
DUMP=${2:-$here/target/release/tapdeck-dump}
DURATION=${DURATION:-15}
PORT=${PORT:-18080}
UPORT=${UPORT:-18081}
N=${N:-50}          # requests per single-request kind (4 kinds)
# EXTRA_ARGS: more collector arguments, e.g. EXTRA_ARGS="--max-payload 64"
KA=${KA:-10}        # keep-alive curl invocations, 5 requests each

[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 2; }
command -v jq >/dev/null || { echo "jq is needed" >&2; exit 2; }

T=$(mktemp -d /tmp/tapdeck-smoke.XXXXXX)
chmod 755 "$T"
nginx_pid=""
col_pid=""
sleep_pid=""
cleanup() {
  [ -n "$col_pid" ] && kill "$col_pid" 2>/dev/null || true
  [ -n "$sleep_pid" ] && kill "$sleep_pid" 2>/dev/null || true
  [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null || true
  sleep 0.3
  [ -n "$nginx_pid" ] && kill -9 "$nginx_pid" 2>/dev/null || true
}
trap cleanup EXIT

mkdir -p "$T/www/static" "$T/tmp"
head -c 20000 /dev/zero | tr '\0' 'x' > "$T/www/static/file.txt"
chmod -R a+rX "$T/www"
cat > "$T/nginx.conf" <<CONF
worker_processes 2;
daemon on;
pid $T/nginx.pid;
error_log $T/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  sendfile on;
  client_body_temp_path $T/tmp/body;
  proxy_temp_path $T/tmp/proxy;
  fastcgi_temp_path $T/tmp/fcgi;
  uwsgi_temp_path $T/tmp/uwsgi;
  scgi_temp_path $T/tmp/scgi;
  upstream backend { server 127.0.0.1:$UPORT; keepalive 8; }
  server {
    listen 127.0.0.1:$PORT;
    listen [::1]:$PORT;
    location = / { return 200 "hello\n"; }
    location /api/ {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
    location /static/ { root $T/www; }
    # gzip drops Content-Length: these responses are chunked.
    location /gz/ {
      gzip on; gzip_min_length 1; gzip_types text/plain;
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
  server {
    listen 127.0.0.1:$UPORT;
    location / {
      add_header X-Request-ID \$http_x_request_id always;
      return 200 "upstream \$request_uri\n";
    }
  }
}
CONF
nginx -c "$T/nginx.conf" -p "$T"
sleep 0.3
nginx_pid=$(cat "$T/nginx.pid")
echo "nginx master pid $nginx_pid, workers: $(pgrep -P "$nginx_pid" | tr '\n' ' ')"

# stdin stays open (a sleeping writer on a fifo) so only --duration ends the run.
mkfifo "$T/stdin"
sleep $((DURATION + 10)) > "$T/stdin" 2>/dev/null &
sleep_pid=$!
"$BIN" --process "$nginx_pid" --duration "${DURATION}s" ${EXTRA_ARGS:-} < "$T/stdin" > "$T/stream.bin" 2> "$T/collector.err" &
col_pid=$!
sleep 1.5   # load + attach + first /proc scan

base="http://127.0.0.1:$PORT"
start_ns=$(date +%s%N)
for i in $(seq 1 "$N"); do curl -s -o /dev/null -H "X-Request-ID: root-$i" "$base/"; done
for i in $(seq 1 "$N"); do curl -s -o /dev/null -H "X-Request-ID: api-$i" "$base/api/item?n=$i"; done
for i in $(seq 1 "$N"); do curl -s -o /dev/null -H "X-Request-ID: static-$i" "$base/static/file.txt"; done
for i in $(seq 1 "$N"); do curl -s -o /dev/null -H "X-Request-ID: miss-$i" "$base/static/missing-$i"; done
for i in $(seq 1 "$KA"); do
  curl -s -o /dev/null -o /dev/null -o /dev/null -o /dev/null -o /dev/null -H "X-Request-ID: ka-$i" \
    "$base/" "$base/api/ka?i=$i" "$base/static/file.txt" "$base/static/nope" "$base/"
done
GZ=${GZ:-4}        # keep-alive curl invocations of 3 chunked (gzip) responses each
for i in $(seq 1 "$GZ"); do
  curl -s --compressed -o /dev/null -o /dev/null -o /dev/null -H "X-Request-ID: gz-$i" \
    "$base/gz/a?i=$i" "$base/gz/b?i=$i" "$base/gz/c?i=$i"
done
V6=${V6:-5}        # requests over IPv6 loopback
for i in $(seq 1 "$V6"); do curl -s -o /dev/null -g -H "X-Request-ID: v6-$i" "http://[::1]:$PORT/"; done
end_ns=$(date +%s%N)
sent=$((4 * N + 5 * KA + 3 * GZ + V6))
echo "sent $sent requests in $(( (end_ns - start_ns) / 1000000 )) ms"

# Peak RSS while running, then wait for --duration to end the run.
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$col_pid/status" 2>/dev/null || echo 0)
wait "$col_pid" || { echo "collector exited with $?" >&2; }
col_pid=""

"$DUMP" "$T/stream.bin" > "$T/frames.jsonl"
jq -c 'select(.type=="span") | .body' "$T/frames.jsonl" > "$T/spans.jsonl"
echo "frames: $(jq -r .type "$T/frames.jsonl" | sort | uniq -c | tr '\n' ' ')"
echo "first frame: $(head -1 "$T/frames.jsonl" | jq -r .type), last: $(tail -1 "$T/frames.jsonl" | jq -c .body)"

sp_front=$(jq -s "[.[] | select(.observation_point==\"s-p\" and .server_port==$PORT)]" "$T/spans.jsonl")
echo "s-p spans on :$PORT: $(jq length <<<"$sp_front") (requests sent: $sent)"
echo "  by resource/status:"
jq -r '.[] | "\(.request_type) \(.endpoint) \(.response_code)"' <<<"$sp_front" | sed -E 's/missing-[0-9]+/missing-N/' | sort | uniq -c | sed 's/^/    /'
api_sent=$((N + KA + 3 * GZ))
cp=$(jq -s '[.[] | select(.observation_point=="c-p")]' "$T/spans.jsonl")
echo "c-p spans: $(jq length <<<"$cp") (proxied requests sent: $api_sent)"
echo "s-p spans on upstream :$UPORT: $(jq -s "[.[] | select(.observation_point==\"s-p\" and .server_port==$UPORT)] | length" "$T/spans.jsonl")"
echo "c-p spans whose x_request_id_0 matches an s-p span's: $(jq -s '
  ([.[] | select(.observation_point=="s-p") | .x_request_id_0] | unique) as $ids
  | [.[] | select(.observation_point=="c-p" and .x_request_id_0 != null and (.x_request_id_0 as $x | $ids | index($x)))] | length' "$T/spans.jsonl")"
echo "c-p spans sharing syscall_trace_id_request with an s-p span: $(jq -s '
  ([.[] | select(.observation_point=="s-p") | .syscall_trace_id_request] | unique) as $ids
  | [.[] | select(.observation_point=="c-p" and (.syscall_trace_id_request as $x | $ids | index($x)))] | length' "$T/spans.jsonl")"
echo "x_request_id_1 echoed on upstream responses: $(jq -s '[.[] | select(.x_request_id_1 != null)] | length' "$T/spans.jsonl")"
echo "distinct single-request ids seen as s-p on :$PORT: $(jq -r '.[] | .x_request_id_0' <<<"$sp_front" | grep -vE '^(ka|v6|gz)-' | sort -u | wc -l) of $((4 * N))"
echo "chunked (gzip) s-p spans on :$PORT with status 200: $(jq '[.[] | select((.endpoint|startswith("/gz/")) and .response_code==200)] | length' <<<"$sp_front") of $((3 * GZ))"
echo "IPv6 s-p spans (client ::1): $(jq -s '[.[] | select(.client_ip=="::1" and .server_ip=="::1")] | length' "$T/spans.jsonl") of $V6"
echo "unknown-status spans: $(jq -s '[.[] | select(.response_status=="unknown")] | length' "$T/spans.jsonl")"
echo "duration_us s-p :$PORT  min/median/p99/max: $(jq -r '[.[] | .duration_us] | sort | "\(.[0]) \(.[length/2|floor]) \(.[(length*0.99)|floor]) \(.[-1])"' <<<"$sp_front")"
echo "duration_us c-p         min/median/max: $(jq -r '[.[] | .duration_us] | sort | "\(.[0]) \(.[length/2|floor]) \(.[-1])"' <<<"$cp")"
jq -c 'select(.type=="stats" and .body.final==true) | .body | {events_seen, events_lost, spans_sent, drops, parse_errors, cpu_user_us, cpu_sys_us, rss_bytes, elapsed_ms}' "$T/frames.jsonl"
echo "peak rss from stats frames: $(jq -s '[.[] | select(.type=="stats") | .body.rss_bytes] | max' "$T/frames.jsonl") bytes; VmHWM during load: ${hwm} kB"
echo "collector stderr:"; sed 's/^/    /' "$T/collector.err"
echo "artifacts in $T"
