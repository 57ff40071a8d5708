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
#   * the bytes Redis received and sent per EVALSHA call (INFO stats:
#     total_net_input_bytes and total_net_output_bytes, all of Redis's
#     traffic, the heartbeats and the events published included, over the
#     EVALSHA calls);
#   * the requests a second the three nodes served (and the share of them
#     admitted: each key's own ApplyToken quota, 100/s, applies; the
#     per-action ceiling, 300/s a node in the built-in catalog, is raised
#     to 65,535/s by FLEET_CATALOG, else nearly every request would be
#     refused by it whatever the keys);
#   * the task's time per interval on a node: a fourth node, the same
#     configuration without `sync` (and without mqttapi_sync), takes the
#     same load from its own wrk; the synced nodes' worker CPU time per
#     request (utime + stime of /proc/<pid>/stat) minus the unsynced
#     node's, times the requests a node served per interval, is what sync
#     costs a node's worker in an interval: the task (its walk of the
#     zone, the calls it makes, the replies it applies) plus what sync adds
#     on the request path (small: make bench's sync_quota / quota_ok).
#
#   bash bench/fleet.sh                  (the module must be built)
#   FLEET_KEYS="100 1000 10000" FLEET_DURATION=10 FLEET_WARMUP=3
#   FLEET_CATALOG=file (a user catalog; "" = the built-in one; default:
#   one that raises the per-action ceiling to 65,535/s)
#   NGINX=/usr/sbin/nginx MODULE=build/ngx_http_mqttapi_module.so
#   FLEET_TIMEOUT=200ms: the nodes' mqttapi_sync timeout=
#   FLEET_REDIS_CPU=1: redis-server alone on that CPU and everything else
#   on the others (taskset), as a Redis of its own host would be: on a
#   small machine the load otherwise starves Redis inside its scripts
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
TIMEOUT=${FLEET_TIMEOUT:-200ms}
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

# FLEET_REDIS_CPU: Redis on that CPU, this script (and so every process
# it starts) on the others
RUN_REDIS=()
if [ -n "${FLEET_REDIS_CPU:-}" ]; then
    command -v taskset > /dev/null || die "taskset is not installed"
    others=$(python3 -c "import os; print(','.join(str(c) for c in sorted(os.sched_getaffinity(0)) if c != $FLEET_REDIS_CPU))")
    [ -n "$others" ] || die "no CPU left beside $FLEET_REDIS_CPU"
    taskset -pc "$others" $$ > /dev/null
    RUN_REDIS=(taskset -c "$FLEET_REDIS_CPU")
fi

RPORT=$(port)
"${RUN_REDIS[@]}" redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no \
    > "$DIR/redis.log" 2>&1 &
RPID=$!
PIDS+=("$RPID")
for _ in $(seq 50); do
    [ "$(redis-cli -p "$RPORT" PING 2> /dev/null)" = PONG ] && break
    sleep 0.1
done

UPORT=$(port)

# the ceiling out of the way (FLEET_CATALOG="" keeps the built-in one)
CATALOG=${FLEET_CATALOG-$DIR/catalog.json}
if [ "$CATALOG" = "$DIR/catalog.json" ]; then
    echo '{ "quota": { "api_ceiling": 65535 } }' > "$CATALOG"
fi

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
for i in 1 2 3 0; do
    p=$(port)
    NPORTS+=("$p")
    # node 0: the baseline, no sync
    if [ "$i" = 0 ]; then sync=""; msync=""; else
        sync=" sync"
        msync="mqttapi_sync redis=127.0.0.1:$RPORT interval=100ms timeout=$TIMEOUT;"
    fi
    nginx_conf "$DIR/n$i" "$p" "
    $msync
    mqttapi_throttle_zone \$arg_AccessKeyId zone=quota:64m$sync;
    upstream up { server 127.0.0.1:$UPORT; keepalive 16; }
    server {
        listen 127.0.0.1:$p;
        keepalive_requests 1000000;
        mqttapi on;
        ${CATALOG:+mqttapi_catalog $CATALOG;}
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

cpus() {  # the same, of each pid given
    local p
    for p in "$@"; do echo -n "$(cpu "$p") "; done
}

# the nodes' workers, in the order of NPORTS (n1 n2 n3, then n0)
WORKERS=()
for i in 1 2 3 0; do
    w=$(pgrep -P "$(cat "$DIR/n$i/nginx.pid")" | head -1)
    [ -n "$w" ] || die "no worker for node $i"
    WORKERS+=("$w")
done

info() {  # field of INFO
    redis-cli -p "$RPORT" INFO all | tr -d '\r' | awk -F: -v k="$1" '$1 == k { print $2 }'
}

evalsha() {  # calls usec
    info cmdstat_evalsha | awk -F'[=,]' '{ print $2, $4 }'
}

echo "| active keys | requests/s (3 nodes) | EVALSHA calls/s | Redis usec per call | Redis CPU (% of a core) | bytes received per call | bytes sent per call | worker us/request synced / unsynced | task time per interval and node (ms) | admitted |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"

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
    out0=$(info total_net_output_bytes)
    w0=$(cpus "${WORKERS[@]}")
    sleep "$DURATION"
    read -r calls usec <<< "$(evalsha)"
    w1=$(cpus "${WORKERS[@]}")
    c1=$(cpu "$RPID")
    in1=$(info total_net_input_bytes)
    out1=$(info total_net_output_bytes)

    for w in "${WPIDS[@]}"; do wait "$w" || true; done
    # requests/s of each node (wrk's, over its whole run), n1 n2 n3 n0
    rates=""
    for p in "${NPORTS[@]}"; do
        r=$(awk '/^Requests\/sec/ { print $2 }' "$DIR/wrk$K-$p.txt")
        rates="$rates ${r:-0}"
    done
    # the synced nodes' requests and refusals (wrk's whole runs)
    admitted=$(cat "$DIR"/wrk$K-{${NPORTS[0]},${NPORTS[1]},${NPORTS[2]}}.txt \
        | awk '/ requests in / { n += $1 } /Non-2xx/ { e += $NF }
               END { printf "%.0f%%", n ? 100 * (n - e) / n : 0 }')

    python3 - "$K" "$calls" "$usec" "$c0" "$c1" "$TICKS" "$DURATION" \
              "$in0" "$in1" "$out0" "$out1" "$w0" "$w1" "$rates" "$admitted" \
              <<'EOF'
import sys
a = sys.argv[1:]
k, calls, usec, c0, c1, ticks, dur, in0, in1, out0, out1 = \
    map(float, a[:11])
w0, w1, rates = ([float(x) for x in v.split()] for v in a[11:14])
admitted = a[14]
cps = calls / dur
cpu = (c1 - c0) / ticks / dur * 100
# worker CPU per request: the synced nodes (all three pooled) and node 0
us = [(w1[i] - w0[i]) / ticks * 1e6 / (rates[i] * dur) if rates[i] else 0
      for i in range(4)]
sync_us = sum(w1[i] - w0[i] for i in range(3)) / ticks * 1e6 \
    / (sum(rates[:3]) * dur)
per_interval = (sync_us - us[3]) * sum(rates[:3]) / 3 * 0.1 / 1000
pc = lambda x: x / calls if calls else 0
print("| %d | %d | %.0f | %.0f | %.1f | %.0f | %.0f | %.1f / %.1f "
      "| %.2f | %s |" % (
    k, sum(rates[:3]), cps, pc(usec), cpu,
    pc(in1 - in0), pc(out1 - out0), sync_us, us[3], per_interval,
    admitted))
EOF
done
