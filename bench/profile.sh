#!/bin/bash
#
# bench/profile.sh: instructions per request, case by case, with callgrind
# (perf's hardware counters are not available in this VM:
# "perf stat -e instructions true" says <not supported>).
#
#   bash bench/profile.sh [N] [CASE...]
#
# The gateway of bench/gateway.conf.in runs in one process (master_process
# off) under valgrind --tool=callgrind; the upstream nginx of
# bench/upstream.conf.in runs natively.  For each case: 50 warm-up
# requests, counters zeroed, N requests on one keep-alive connection
# (bench/keys.py repeat), counters dumped.  Prints Ir per request per case
# and writes callgrind_annotate output per case to $OUT (default
# build/bench/profile).  Not part of "make bench".

set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH/.." && pwd)
N=${1:-2000}
shift || true
CASES=${*:-plain_error mod_augment mod_problem lua_capture_error return429 return429_json reject reject_full plain_ok mod_ok}
OUT=${BENCH_OUT:-$REPO/build/bench/profile}
# nginx reads $NGINX as inherited listening sockets: never pass it on
NGINX_BIN=${NGINX:-/usr/sbin/nginx}
unset NGINX
MODULE=${MODULE:-$REPO/build/ngx_http_mqttapi_module.so}
PY=/usr/bin/python3
NFULL=${BENCH_FULL_KEYS:-9000}

declare -A CASE_PATH=(
    [plain_ok]=/plain/ok [mod_ok]=/mod/ok [plain_ok2]=/plain/ok2
    [lua_capture_ok]=/lua/capture/ok [lua_filter_ok]=/lua/filter/ok
    [plain_error]=/plain/error [mod_augment]=/mod/augment
    [mod_problem]=/mod/problem [lua_capture_error]=/lua/capture/error
    [lua_filter_error]=/lua/filter/error
    [return429]=/return429 [return429_json]=/return429json
    [return429_same]=/return429same
    [reject]=/reject/one [reject_full]=/reject/full
    [reject_logged]=/reject/logged
)

log() { printf '[profile %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

command -v valgrind >/dev/null || {
    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y valgrind
}

DIR=$(mktemp -d /tmp/mqttapi-prof-XXXXXX)
mkdir -p "$OUT"
cp "$MODULE" "$DIR/ngx_http_mqttapi_module.so"

read -r PORT UPORT < <("$PY" -c '
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')

NDK_MODULE=/usr/lib/nginx/modules/ndk_http_module.so
LUA_MODULE=/usr/lib/nginx/modules/ngx_http_lua_module.so

render() {
    sed -e "s|@DIR@|$DIR|g" -e "s|@BENCH@|$BENCH|g" \
        -e "s|@PORT@|$PORT|g" -e "s|@UPORT@|$UPORT|g" \
        -e "s|@MODULE@|$DIR/ngx_http_mqttapi_module.so|g" \
        -e "s|@NDK_MODULE@|$NDK_MODULE|g" -e "s|@LUA_MODULE@|$LUA_MODULE|g" \
        -e "s|@CATALOG@|$REPO/conf/mqttapi_catalog.json|g" \
        -e "s|@GWCPU_MASK@|1|g" -e "s|@UPCPU_MASK@|10|g" \
        "$1"
}
render "$BENCH/upstream.conf.in" > "$DIR/upstream.conf"
render "$BENCH/gateway.conf.in" \
    | sed -e '/worker_cpu_affinity/d' \
          -e 's/^worker_processes 1;/worker_processes 1;\nmaster_process off;\ndaemon off;/' \
    > "$DIR/gateway.conf"

UP_MASTER=""; VG=""
cleanup() {
    [ -n "$VG" ] && kill -QUIT "$VG" 2>/dev/null || true
    [ -n "$UP_MASTER" ] && kill -QUIT "$UP_MASTER" 2>/dev/null || true
    sleep 1
    rm -rf "$DIR"
}
trap cleanup EXIT

"$NGINX_BIN" -p "$DIR" -c "$DIR/upstream.conf" -e "$DIR/startup.log"
sleep 0.3
UP_MASTER=$(cat "$DIR/upstream.pid")

valgrind --tool=callgrind --callgrind-out-file="$DIR/cg.out" \
    "$NGINX_BIN" -p "$DIR" -c "$DIR/gateway.conf" -e "$DIR/startup.log" \
    2> "$DIR/valgrind.log" &
VG=$!

GW="http://127.0.0.1:$PORT"
for _ in $(seq 300); do
    curl -s -o /dev/null "$GW/plain/ok" && break
    sleep 0.2
done

QS="Action=ApplyToken&AccessKeyId="
KEY=$("$PY" "$BENCH/keys.py" key backed-off 0)
FKEY=$("$PY" "$BENCH/keys.py" key backed-off-full 0)
curl -s -o /dev/null "$GW/reject/one?$QS$KEY"
case " $CASES " in *" reject_full "*)
    log "filling the zone \"full\" with $NFULL keys (slow under valgrind)"
    "$PY" "$BENCH/keys.py" fill "$GW/reject/full" filler "$NFULL" >&2
    curl -s -o /dev/null "$GW/reject/full?$QS$FKEY" ;;
esac

# callgrind_control is served when the process runs: send a request to
# wake it up (the cheapest location, counted once out of N)
ctl() {
    callgrind_control "$@" "$VG" > /dev/null &
    local c=$!
    sleep 0.5
    curl -s -o /dev/null "$GW/return429"
    wait $c
}

printf '%-20s %12s %10s\n' case Ir Ir/request > "$OUT/summary.txt"
printf 'case\tfunction\tIr_per_request\n' > "$OUT/functions.tsv"
echo "module sha256 $(sha256sum "$DIR/ngx_http_mqttapi_module.so" | cut -c1-16)..., N=$N" \
    > "$OUT/module.txt"
for c in $CASES; do
    k=$KEY; [ "$c" = reject_full ] && k=$FKEY
    "$PY" "$BENCH/keys.py" repeat "$GW${CASE_PATH[$c]}" "$k" 50 > /dev/null
    ctl -z
    "$PY" "$BENCH/keys.py" repeat "$GW${CASE_PATH[$c]}" "$k" "$N" >&2
    ctl -d
    f=$(ls -t "$DIR"/cg.out.* | head -1)
    mv "$f" "$OUT/callgrind.out.$c"
    ir=$(sed -n 's/^summary: *//p; s/^totals: *//p' "$OUT/callgrind.out.$c" \
         | head -1 | awk '{print $1}')
    printf '%-20s %12s %10.0f\n' "$c" "$ir" "$(awk -v a="$ir" -v n="$N" 'BEGIN { print a / n }')" \
        | tee -a "$OUT/summary.txt"
    callgrind_annotate --threshold=100 "$OUT/callgrind.out.$c" 2>/dev/null \
        | head -70 > "$OUT/annotate.$c.txt" || true
    callgrind_annotate --inclusive=yes --threshold=100 \
        "$OUT/callgrind.out.$c" > "$DIR/incl.txt" 2>/dev/null || true
    head -90 "$DIR/incl.txt" > "$OUT/annotate-inclusive.$c.txt"
    # inclusive Ir per request of the functions the notes talk about
    for f in json_loadb ngx_http_mqttapi_json_fast ngx_http_mqttapi_finish \
             ngx_http_mqttapi_throttle_handler ngx_http_mqttapi_zone_lookup \
             ngx_http_mqttapi_request_id RAND_bytes ngx_regex_exec \
             ngx_http_mqttapi_fill; do
        ir=$(grep -E "^ *[0-9,]+ .*[:?]$f( |\$)" "$DIR/incl.txt" | head -1 \
             | awk '{ gsub(",", "", $1); print $1 }' || true)
        [ -n "$ir" ] && printf '%s\t%s\t%.0f\n' "$c" "$f" \
            "$(awk -v a="$ir" -v n="$N" 'BEGIN { print a / n }')" >> "$OUT/functions.tsv"
    done
done

log "per case: $OUT/summary.txt, $OUT/annotate*.txt"
