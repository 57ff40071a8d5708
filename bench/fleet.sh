#!/bin/bash
#
# bench/fleet.sh: what quotas by demand cost Redis (SPEC 10's last target
# row).  Three gateway nodes (one worker each) synced through one private
# redis-server (interval=100ms), one upstream, and wrk against each node
# with requests spread over K active keys (ApplyToken), for K in
# FLEET_KEYS.  For each K, over FLEET_DURATION seconds of load (after
# FLEET_WARMUP seconds that let every key reach every node):
#
#   * the EVALSHA calls a second (all scripts: the grants, heartbeats and
#     back-offs; the grant calls are one per zone and interval per node,
#     plus the immediate ones of keys that ask) and Redis's own time in
#     them (INFO commandstats);
#   * redis-server's CPU time (utime + stime of /proc/<pid>/stat) as a
#     share of one core;
#   * the bytes Redis received per call (INFO stats);
#   * the requests a second the three nodes served.
#
#   bash bench/fleet.sh                  (the module must be built)
#   FLEET_KEYS="100 1000 10000" FLEET_DURATION=10 FLEET_WARMUP=3
#   NGINX=/usr/sbin/nginx MODULE=build/ngx_http_mqttapi_module.so
#
# Prints a Markdown table (summarised in bench/RESULTS.md); the files of
# the run stay in build/bench/fleet (not in git).

set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH/.." && pwd)
NGINX=${NGINX:-/usr/sbin/nginx}
MODULE=${MODULE:-$REPO/build/ngx_http_mqttapi_module.so}
KEYS=${FLEET_KEYS:-100 1000 10000}
DURATION=${FLEET_DURATION:-10}
WARMUP=${FLEET_WARMUP:-3}
DIR=$REPO/build/bench/fleet
TICKS=$(getconf CLK_TCK)

die() { echo "bench/fleet.sh: $*" >&2; exit 1; }

[ -f "$MODULE" ] || die "no $MODULE: make module first"
for p in redis-server redis-cli wrk python3; do
    command -v "$p" > /dev/null || die "$p is not installed"
done

rm -rf "$DIR"
mkdir -p "$DIR"

port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2> /dev/null || true; done
    for d in "$DIR"/n*; do
        [ -f "$d/nginx.pid" ] && kill "$(cat "$d/nginx.pid")" 2> /dev/null || true
    done
}
trap cleanup EXIT

RPORT=$(port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no \
    > "$DIR/redis.log" 2>&1 &
RPID=$!
PIDS+=("$RPID")
for _ in $(seq 50); do
    [ "$(redis-cli -p "$RPORT" PING 2> /dev/null)" = PONG ] && break
    sleep 0.1
done

UPORT=$(port)

nginx_conf() {   # dir, port, http body
    mkdir -p "$1/logs"
    cat > "$1/nginx.conf" <<EOF
load_module $MODULE;
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log notice;
events { worker_connections 1024; }
http {
    access_log off;
    $3
}
EOF
    "$NGINX" -p "$1" -c "$1/nginx.conf" -e "$1/error.log"
}

nginx_conf "$DIR/nu" "$UPORT" "
    server {
        listen 127.0.0.1:$UPORT;
        keepalive_requests 1000000;
        default_type application/json;
        location / { return 200 '{\"RequestId\":\"UP\"}'; }
    }"

NPORTS=()
for i in 1 2 3; do
    p=$(port)
    NPORTS+=("$p")
    nginx_conf "$DIR/n$i" "$p" "
    mqttapi_sync redis=127.0.0.1:$RPORT interval=100ms timeout=200ms;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=quota:64m sync;
    upstream up { server 127.0.0.1:$UPORT; keepalive 16; }
    server {
        listen 127.0.0.1:$p;
        keepalive_requests 1000000;
        mqttapi on;
        location / {
            mqttapi_quota zone=quota;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_pass http://up;
        }
    }"
done

for _ in $(seq 100); do
    [ "$(redis-cli -p "$RPORT" ZCARD mqttapi:nodes)" = 3 ] && break
    sleep 0.1
done
[ "$(redis-cli -p "$RPORT" ZCARD mqttapi:nodes)" = 3 ] \
    || die "the nodes did not join (see $DIR/n*/error.log)"

cpu() {   # utime + stime of a pid, in ticks
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

info() {  # field of INFO
    redis-cli -p "$RPORT" INFO all | tr -d '\r' | awk -F: -v k="$1" '$1 == k { print $2 }'
}

evalsha() {  # calls usec
    info cmdstat_evalsha | awk -F'[=,]' '{ print $2, $4 }'
}

echo "| active keys | requests/s (3 nodes) | EVALSHA calls/s | Redis usec per call | Redis CPU (% of a core) | bytes received per call |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: |"

for K in $KEYS; do
    cat > "$DIR/keys$K.lua" <<EOF
local n = 0
request = function()
    n = n + 1
    return wrk.format("GET", "/?AccessKeyId=AK-bench-" .. (n % $K) .. "&Action=ApplyToken")
end
EOF
    WPIDS=()
    for p in "${NPORTS[@]}"; do
        wrk -t1 -c4 -d$((WARMUP + DURATION))s -s "$DIR/keys$K.lua" \
            "http://127.0.0.1:$p/" > "$DIR/wrk$K-$p.txt" 2>&1 &
        WPIDS+=("$!")
    done

    sleep "$WARMUP"
    redis-cli -p "$RPORT" CONFIG RESETSTAT > /dev/null
    c0=$(cpu "$RPID")
    in0=$(info total_net_input_bytes)
    sleep "$DURATION"
    read -r calls usec <<< "$(evalsha)"
    c1=$(cpu "$RPID")
    in1=$(info total_net_input_bytes)

    for w in "${WPIDS[@]}"; do wait "$w" || true; done
    rps=0
    for p in "${NPORTS[@]}"; do
        r=$(awk '/^Requests\/sec/ { print int($2) }' "$DIR/wrk$K-$p.txt")
        rps=$((rps + ${r:-0}))
    done

    python3 - "$K" "$rps" "$calls" "$usec" "$c0" "$c1" "$TICKS" "$DURATION" \
              "$in0" "$in1" <<'EOF'
import sys
k, rps, calls, usec, c0, c1, ticks, dur, in0, in1 = map(float, sys.argv[1:])
cps = calls / dur
cpu = (c1 - c0) / ticks / dur * 100
print("| %d | %d | %.0f | %.0f | %.1f | %.0f |" % (
    k, rps, cps, usec / calls if calls else 0, cpu,
    (in1 - in0) / calls if calls else 0))
EOF
done
