#!/bin/bash
#
# bench/run.sh: the benchmarks of ngx_http_mqttapi_module.
#
#   make bench                  (builds the module, then runs this)
#   bash bench/run.sh           (the module must be built already)
#
# One gateway nginx (one worker, pinned to core 0) holds every case as a
# location; a second nginx (one worker, pinned to core 1) plays the OpenAPI
# upstream; wrk runs on core 1 too (taskset).  A copy of the gateway with a
# status endpoint configured (its requests are counted) runs the status_*
# cases, pinned to core 0 as well; a copy whose zones are synced through a
# private redis-server (on core 1) runs the sync_* cases, against the
# zone_* ones of the gateway (the same locations, sync off).  Cases are interleaved round
# by round (each next to its baseline, see round_order); each run reports wrk's
# requests/s, the gateway worker's CPU time (utime+stime from
# /proc/<pid>/stat) per request, and what the load side used of its core
# (wrk's and the upstream worker's CPU time).  bench/analyze.py turns the
# raw numbers into bench/RESULTS.md.
#
# Environment (all optional):
#   BENCH_ROUNDS=10  BENCH_DURATION=3  BENCH_CONNS=16  BENCH_KEYS=12000
#   BENCH_CASES="plain_ok mod_ok ..."   a subset of the cases below
#   BENCH_OUT=build/bench/latest        raw results, samples, logs (not
#                                       in git; a run of the default
#                                       also keeps its numbers in
#                                       build/bench/history/<UTC time>)
#   BENCH_RESULTS=bench/RESULTS.md      the report ("" = do not write it)
#   BENCH_KEEP=1                        leave both nginx running at the end
#   BENCH_PROFILE=0                     skip the callgrind counts
#                                       (bench/profile.sh, ~30 s)
#   BENCH_SETUP_ONLY=1                  set up, check every case, keep running
#   BENCH_CHECK=6                       ABBA repetitions per target pair
#                                       after the rounds (0 = none)
#   NGINX=/usr/sbin/nginx  MODULE=build/ngx_http_mqttapi_module.so

set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH/.." && pwd)

ROUNDS=${BENCH_ROUNDS:-10}
DURATION=${BENCH_DURATION:-3}
CONNS=${BENCH_CONNS:-16}
NKEYS=${BENCH_KEYS:-12000}
NFULL=${BENCH_FULL_KEYS:-9000}
OUT=${BENCH_OUT:-$REPO/build/bench/latest}
RESULTS=${BENCH_RESULTS-$BENCH/RESULTS.md}
# nginx reads $NGINX as inherited listening sockets: never pass it on
NGINX_BIN=${NGINX:-/usr/sbin/nginx}
unset NGINX
MODULE=${MODULE:-$REPO/build/ngx_http_mqttapi_module.so}
PY=/usr/bin/python3

ALL_CASES="plain_ok mod_ok plain_ok2 lua_capture_ok lua_filter_ok
           plain_error mod_augment mod_problem lua_capture_error
           lua_filter_error
           return429 return429_json return429_same reject reject_full
           reject_logged status_ok status_augment status_reject
           zone_ok zone_augment sync_ok sync_augment sync_reject
           quota_ok sync_quota"
CASES=$(echo ${BENCH_CASES:-$ALL_CASES})

declare -A CASE_PATH=(
    [plain_ok]=/plain/ok
    [mod_ok]=/mod/ok
    [plain_ok2]=/plain/ok2
    [lua_capture_ok]=/lua/capture/ok
    [lua_filter_ok]=/lua/filter/ok
    [plain_error]=/plain/error
    [mod_augment]=/mod/augment
    [mod_problem]=/mod/problem
    [lua_capture_error]=/lua/capture/error
    [lua_filter_error]=/lua/filter/error
    [return429]=/return429
    [return429_json]=/return429json
    [return429_same]=/return429same
    [reject]=/reject/one
    [reject_full]=/reject/full
    [reject_logged]=/reject/logged
    [status_ok]=/mod/ok
    [status_augment]=/mod/augment
    [status_reject]=/reject/one
    [zone_ok]=/zone/ok
    [zone_augment]=/zone/augment
    [sync_ok]=/zone/ok
    [sync_augment]=/zone/augment
    [sync_reject]=/reject/one
    [quota_ok]=/quota/ok
    [sync_quota]=/quota/ok
)

# the status every response of a case must have
declare -A CASE_STATUS=(
    [plain_ok]=200 [mod_ok]=200 [plain_ok2]=200 [lua_capture_ok]=200 [lua_filter_ok]=200
    [plain_error]=400 [mod_augment]=400 [mod_problem]=400
    [lua_capture_error]=400 [lua_filter_error]=400
    [return429]=429 [return429_json]=429 [return429_same]=429
    [reject]=429 [reject_full]=429 [reject_logged]=429
    [status_ok]=200 [status_augment]=400 [status_reject]=429
    [zone_ok]=200 [zone_augment]=400
    [sync_ok]=200 [sync_augment]=400 [sync_reject]=429
    [quota_ok]=200 [sync_quota]=200
)

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }


# ---- what it needs -------------------------------------------------------

# (the Makefile's BENCH_PKGS; `make deps` installs them)
need_pkgs=""
for p in wrk libnginx-mod-http-lua lua-cjson nginx curl python3 valgrind \
         redis-server; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null \
        | grep -q '^install ok installed$' || need_pkgs="$need_pkgs $p"
done
[ -z "$need_pkgs" ] || die "missing packages:$need_pkgs (run 'make deps')"

[ -x "$PY" ] || die "$PY is missing (Debian's python3)"
[ -x "$NGINX_BIN" ] || die "no nginx at $NGINX_BIN"
[ -f "$MODULE" ] || die "no module at $MODULE: run 'make bench' (or 'make')"

# the lua module and its NDK: the path Debian's modules-available uses
find_module() {
    local name=$1 f p
    for p in /usr/lib/nginx/modules/$name /usr/share/nginx/modules/$name; do
        [ -f "$p" ] && { echo "$p"; return; }
    done
    for f in /usr/share/nginx/modules-available/*.conf; do
        p=$(sed -n "s|^[[:space:]]*load_module[[:space:]]*\\(.*$name\\);.*|\\1|p" \
                "$f" 2>/dev/null | head -1)
        [ -n "$p" ] || continue
        case $p in /*) ;; *) p=/usr/share/nginx/$p ;; esac
        [ -f "$p" ] && { echo "$p"; return; }
    done
    die "cannot find $name (libnginx-mod-http-lua)"
}
NDK_MODULE=$(find_module ndk_http_module.so)
LUA_MODULE=$(find_module ngx_http_lua_module.so)

# cores: the gateway alone on one, wrk and the upstream on the other
NCPU=$(nproc)
if [ "$NCPU" -ge 2 ]; then
    GW_CPU=0; LOAD_CPU=1
else
    log "warning: one core only, nothing is pinned apart"
    GW_CPU=0; LOAD_CPU=0
fi
mask() { local m="1" i; for ((i = 0; i < $1; i++)); do m="${m}0"; done; echo "$m"; }
GW_MASK=$(mask $GW_CPU)
LOAD_MASK=$(mask $LOAD_CPU)
WRK=(taskset -c "$LOAD_CPU" wrk)


# ---- the two nginx -------------------------------------------------------

DIR=$(mktemp -d /tmp/mqttapi-bench-XXXXXX)
mkdir -p "$OUT"
rm -rf "$OUT"/*.txt "$OUT"/*.tsv "$OUT"/*.log "$OUT"/*.conf "$OUT/profile" \
    2>/dev/null || true

free_ports() {
    "$PY" -c '
import socket
ss = [socket.socket() for _ in range(5)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))'
}
read -r PORT UPORT SPORT YPORT RPORT < <(free_ports)

BENCH_KEY=$("$PY" "$BENCH/keys.py" key backed-off 0)
FULL_KEY=$("$PY" "$BENCH/keys.py" key backed-off-full 0)

render() {
    sed -e "s|@DIR@|$DIR|g" -e "s|@BENCH@|$BENCH|g" \
        -e "s|@PORT@|$PORT|g" -e "s|@UPORT@|$UPORT|g" \
        -e "s|@MODULE@|$DIR/ngx_http_mqttapi_module.so|g" -e "s|@NDK_MODULE@|$NDK_MODULE|g" \
        -e "s|@LUA_MODULE@|$LUA_MODULE|g" \
        -e "s|@CATALOG@|$REPO/conf/mqttapi_catalog.json|g" \
        -e "s|@GWCPU_MASK@|$GW_MASK|g" -e "s|@UPCPU_MASK@|$LOAD_MASK|g" \
        "$1" > "$2"
}
# a private copy of the module: a rebuild overwrites build/*.so in place,
# which would crash a running nginx that has it mapped
cp "$MODULE" "$DIR/ngx_http_mqttapi_module.so"
MODULE_SHA=$(sha256sum "$DIR/ngx_http_mqttapi_module.so" | cut -c1-16)
MODULE_DATE=$(stat -c '%y' "$MODULE" | cut -d. -f1)

render "$BENCH/upstream.conf.in" "$DIR/upstream.conf"
render "$BENCH/gateway.conf.in" "$DIR/gateway.conf"

# the same gateway with a status endpoint: every request of it is counted
sed -e "s|$DIR/gateway\.pid|$DIR/gateway-status.pid|" \
    -e "s|$DIR/gateway-error\.log|$DIR/gateway-status-error.log|" \
    -e "s|listen 127\.0\.0\.1:$PORT |listen 127.0.0.1:$SPORT |" \
    -e 's|^\( *\)# mqttapi_status:.*|\1location = /mqttapi/status { mqttapi_status; allow 127.0.0.1; deny all; }|' \
    "$DIR/gateway.conf" > "$DIR/gateway-status.conf"
grep -q 'mqttapi_status;' "$DIR/gateway-status.conf" \
    || die "gateway-status.conf has no status location"

# the same gateway with its zones synced through Redis
sed -e "s|$DIR/gateway\.pid|$DIR/gateway-sync.pid|" \
    -e "s|$DIR/gateway-error\.log|$DIR/gateway-sync-error.log|" \
    -e "s|listen 127\.0\.0\.1:$PORT |listen 127.0.0.1:$YPORT |" \
    -e "s|^\( *\)# mqttapi_sync:.*|\1mqttapi_sync redis=127.0.0.1:$RPORT;|" \
    -e 's|\(max_backoff=[0-9a-z]*\);|\1 sync;|' \
    "$DIR/gateway.conf" > "$DIR/gateway-sync.conf"
grep -q 'mqttapi_sync redis=' "$DIR/gateway-sync.conf" \
    || die "gateway-sync.conf has no mqttapi_sync"

GW_MASTER=""; UP_MASTER=""; ST_MASTER=""; SY_MASTER=""; REDIS_PID=""

cleanup() {
    local rc=$?
    if [ "${BENCH_KEEP:-}" = 1 ]; then
        log "left running: gateway 127.0.0.1:$PORT (master $GW_MASTER)," \
            "upstream 127.0.0.1:$UPORT (master $UP_MASTER)," \
            "synced gateway 127.0.0.1:$YPORT (master $SY_MASTER)," \
            "redis-server 127.0.0.1:$RPORT (pid $REDIS_PID), files in $DIR"
        exit $rc
    fi
    for m in $GW_MASTER $UP_MASTER $ST_MASTER $SY_MASTER; do
        kill -QUIT "$m" 2>/dev/null || true
    done
    sleep 0.5
    for m in $GW_MASTER $UP_MASTER $ST_MASTER $SY_MASTER; do
        kill -0 "$m" 2>/dev/null && kill -TERM "$m" 2>/dev/null || true
    done
    [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null || true
    # the gateway's log: its end only
    tail -n 200 "$DIR"/gateway-error.log > "$OUT"/gateway-error.tail.log \
        2>/dev/null || true
    rm -rf "$DIR"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_nginx() {
    local conf=$1 pidf=$2
    "$NGINX_BIN" -t -q -p "$DIR" -c "$conf" -e "$DIR/startup.log" \
        || { cat "$DIR/startup.log" >&2; die "nginx -t failed for $conf"; }
    "$NGINX_BIN" -p "$DIR" -c "$conf" -e "$DIR/startup.log" \
        || { cat "$DIR/startup.log" >&2; die "nginx failed to start ($conf)"; }
    for _ in $(seq 50); do [ -s "$pidf" ] && break; sleep 0.1; done
    cat "$pidf"
}

worker_of() {
    local w=""
    for _ in $(seq 50); do
        w=$(pgrep -P "$1" | head -1) && [ -n "$w" ] && break
        sleep 0.1
    done
    [ -n "$w" ] || die "no worker for master $1"
    echo "$w"
}

# Redis, for the synced copy (running for the whole run: the cases without
# sync run beside it alike); on the load side's core
taskset -c "$LOAD_CPU" redis-server --port "$RPORT" --bind 127.0.0.1 \
    --save '' --appendonly no --daemonize no --dir "$DIR" \
    > "$DIR/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 50); do
    [ "$(redis-cli -p "$RPORT" PING 2>/dev/null)" = PONG ] && break
    sleep 0.1
done
[ "$(redis-cli -p "$RPORT" PING 2>/dev/null)" = PONG ] \
    || die "redis-server did not start (see $DIR/redis.log)"

UP_MASTER=$(start_nginx "$DIR/upstream.conf" "$DIR/upstream.pid")
GW_MASTER=$(start_nginx "$DIR/gateway.conf" "$DIR/gateway.pid")
ST_MASTER=$(start_nginx "$DIR/gateway-status.conf" "$DIR/gateway-status.pid")
SY_MASTER=$(start_nginx "$DIR/gateway-sync.conf" "$DIR/gateway-sync.pid")
GW_WORKER=$(worker_of "$GW_MASTER")
ST_WORKER=$(worker_of "$ST_MASTER")
SY_WORKER=$(worker_of "$SY_MASTER")
UP_WORKER=$(worker_of "$UP_MASTER")
log "gateway 127.0.0.1:$PORT worker $GW_WORKER and the one with a status" \
    "endpoint 127.0.0.1:$SPORT worker $ST_WORKER on core $GW_CPU;" \
    "upstream 127.0.0.1:$UPORT worker $UP_WORKER and wrk on core $LOAD_CPU"

GW="http://127.0.0.1:$PORT"
STGW="http://127.0.0.1:$SPORT"
SYGW="http://127.0.0.1:$YPORT"
QS="Action=ApplyToken&AccessKeyId="

url_of() {
    case $1 in
        reject_full) echo "$GW${CASE_PATH[$1]}?$QS$FULL_KEY" ;;
        status_*)    echo "$STGW${CASE_PATH[$1]}?$QS$BENCH_KEY" ;;
        sync_*)      echo "$SYGW${CASE_PATH[$1]}?$QS$BENCH_KEY" ;;
        *)           echo "$GW${CASE_PATH[$1]}?$QS$BENCH_KEY" ;;
    esac
}

# the gateway worker that serves a case
worker_of_case() {
    case $1 in
        status_*) echo "$ST_WORKER" ;;
        sync_*)   echo "$SY_WORKER" ;;
        *)        echo "$GW_WORKER" ;;
    esac
}


# ---- back-offs and the zones ---------------------------------------------

# one throttle answer opens a back-off of 1h for the benchmark key (in
# both gateways)
curl -s -o /dev/null "$GW/reject/one?$QS$BENCH_KEY"
curl -s -o /dev/null "$STGW/reject/one?$QS$BENCH_KEY"

# the synced copy: connected to Redis, and its back-off published there
for _ in $(seq 100); do
    [ "$(redis-cli -p "$RPORT" PUBSUB NUMSUB mqttapi:events | tail -1)" = 1 ] \
        && break
    sleep 0.1
done
[ "$(redis-cli -p "$RPORT" PUBSUB NUMSUB mqttapi:events | tail -1)" = 1 ] \
    || die "the synced gateway did not connect to Redis" \
           "(see $DIR/gateway-sync-error.log)"
curl -s -o /dev/null "$SYGW/reject/one?$QS$BENCH_KEY"
# (the zone's back-offs are one hash, "{zone}:b", see
# src/ngx_http_mqttapi_sync_scripts.c; a field names the key)
published() {
    redis-cli -p "$RPORT" HKEYS "mqttapi:{one}:b" | grep -qF "$BENCH_KEY"
}
for _ in $(seq 50); do
    published && break
    sleep 0.1
done
published || die "the synced gateway did not publish its back-off"

# the "full" zone: more keys than it holds, then the benchmark key
log "filling the zone \"full\" with $NFULL keys"
"$PY" "$BENCH/keys.py" fill "$GW/reject/full" filler "$NFULL" \
    > "$OUT/zone-full-fill.txt"
curl -s -o /dev/null "$GW/reject/full?$QS$FULL_KEY"
FULL_HELD=$("$PY" "$BENCH/keys.py" check "$GW/reject/full_ok" filler "$NFULL" \
            | tee -a "$OUT/zone-full-fill.txt" \
            | sed -n 's/.* local=\([0-9]*\) .*/\1/p')
log "zone \"full\" holds $FULL_HELD filler keys + the benchmark key"

# keys per MB: NKEYS keys into the 1 MB zone "cap" (back-off 60s), then
# every key again on a location whose upstream answers 200
log "capacity: $NKEYS keys into a 1 MB zone"
"$PY" "$BENCH/keys.py" fill "$GW/cap/throttle" capacity "$NKEYS" \
    > "$OUT/capacity.txt"
"$PY" "$BENCH/keys.py" check "$GW/cap/ok" capacity "$NKEYS" \
    >> "$OUT/capacity.txt"
cat "$OUT/capacity.txt" >&2


# ---- every case answers as it should -------------------------------------

: > "$OUT/samples.txt"
for c in $CASES; do
    u=$(url_of "$c")
    resp=$(curl -s -i "$u")
    printf '===== %s  GET %s\n%s\n\n' "$c" "${u#$GW}" "$resp" >> "$OUT/samples.txt"
    h=$(sed '/^\r*$/q' <<<"$resp" | tr -d '\r')
    st=$(head -1 <<<"$h" | cut -d' ' -f2)
    [ "$st" = "${CASE_STATUS[$c]}" ] \
        || die "$c: status $st, expected ${CASE_STATUS[$c]} (see $OUT/samples.txt)"
    case $c in
        mod_augment|mod_problem|lua_capture_error|status_augment|\
        zone_augment|sync_augment)
            grep -qi '^X-MQTTAPI-Error-Code: InvalidParameter.InstanceId' <<<"$h" \
                || die "$c: not annotated" ;;
        reject|reject_full|reject_logged|status_reject|sync_reject)
            grep -qi '^X-MQTTAPI-Throttled: gateway' <<<"$h" \
                || die "$c: not answered locally" ;;
        mod_ok|plain_ok|plain_ok2|plain_error|status_ok|zone_ok|sync_ok|\
        quota_ok|sync_quota)
            ! grep -qi '^X-MQTTAPI-' <<<"$h" || die "$c: annotated" ;;
    esac
done
log "all cases answer as expected (samples in $OUT/samples.txt)"

[ "${BENCH_SETUP_ONLY:-}" = 1 ] && { BENCH_KEEP=1; exit 0; }


# ---- the runs ------------------------------------------------------------

stat_ticks() {
    # two fields of /proc/<pid>/stat added, counted from its third (the
    # state) as 0: 11 12 utime + stime, 13 14 cutime + cstime (what the
    # children the process waited for used)
    local s f
    s=$(cat "/proc/$1/stat")
    read -ra f <<<"${s##*) }"
    echo $(( f[$2] + f[$3] ))
}

# a worker's CPU time; wrk's, as what this shell's children used
cpu_ticks() { stat_ticks "$1" 11 12; }
load_ticks() { stat_ticks $$ 13 14; }

HZ=$(getconf CLK_TCK)
RAW="$OUT/raw.tsv"
printf 'round\tcase\trps\trequests\tseconds\tcpu_ticks\thz\tnon2xx\tsocket_errors\tload1\tload_ticks\tupstream_ticks\n' > "$RAW"

run_case() {
    local round=$1 c=$2 d=$3 u t0 t1 l0 l1 p0 p1 w rps reqs secs non2xx errs
    local load1 gw script=()
    u=$(url_of "$c")
    gw=$(worker_of_case "$c")
    # the quota cases: 64 keys (bench/quota_keys.lua says why)
    case $c in quota_ok|sync_quota) script=(-s "$BENCH/quota_keys.lua") ;; esac
    l0=$(load_ticks)
    p0=$(cpu_ticks "$UP_WORKER")
    t0=$(cpu_ticks "$gw")
    w=$("${WRK[@]}" -t1 -c"$CONNS" -d"${d}s" "${script[@]}" "$u" 2>&1) \
        || die "wrk failed for $c: $w"
    t1=$(cpu_ticks "$gw")
    p1=$(cpu_ticks "$UP_WORKER")
    l1=$(load_ticks)
    [ "$round" = 0 ] && return 0
    rps=$(sed -n 's/^Requests\/sec:[[:space:]]*\([0-9.]*\).*/\1/p' <<<"$w")
    read -r reqs secs < <(sed -n \
        's/^[[:space:]]*\([0-9]*\) requests in \([0-9.]*\)\(m\{0,1\}s\).*/\1 \2 \3/p' \
        <<<"$w" | awk '{ print $1, ($3 == "ms" ? $2 / 1000 : $2) }')
    non2xx=$(sed -n 's/^[[:space:]]*Non-2xx or 3xx responses:[[:space:]]*\([0-9]*\).*/\1/p' <<<"$w")
    errs=$(sed -n 's/^[[:space:]]*Socket errors:.*connect \([0-9]*\), read \([0-9]*\), write \([0-9]*\), timeout \([0-9]*\).*/\1+\2+\3+\4/p' <<<"$w")
    load1=$(cut -d' ' -f1 /proc/loadavg)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" \
        "$c" "$rps" "$reqs" "$secs" "$((t1 - t0))" "$HZ" "${non2xx:-0}" \
        "$(( ${errs:-0} ))" "$load1" "$((l1 - l0))" "$((p1 - p0))" >> "$RAW"
    echo "$w" > "$OUT/wrk-${WRK_TAG:-r}$round-$c.txt"
    printf '  %-18s %10s req/s  %6.2f us CPU/req\n' "$c" "$rps" \
        "$(awk -v t=$((t1 - t0)) -v hz="$HZ" -v n="$reqs" \
            'BEGIN { print (n > 0 ? t * 1e6 / hz / n : 0) }')" >&2
}

read -ra case_list <<<"$CASES"

# A case runs next to its baseline: the cases are grouped by baseline, the
# groups rotate from round to round, and within a group the order is
# reversed every other round (ABBA), so that a drift of the machine during
# a round weighs on a case and its baseline alike.  Each target pair is
# adjacent (plain_ok mod_ok status_ok, zone_ok sync_ok, plain_error
# mod_augment status_augment, zone_augment sync_augment, quota_ok
# sync_quota, return429_same reject sync_reject); return429 stands next to return429_same,
# status_reject, reject_logged and reject_full next to reject.
CASE_GROUPS=("plain_ok mod_ok status_ok zone_ok sync_ok quota_ok sync_quota plain_ok2 lua_capture_ok lua_filter_ok"
        "plain_error mod_augment status_augment zone_augment sync_augment mod_problem lua_capture_error lua_filter_error"
        "return429 return429_same reject sync_reject status_reject reject_logged reject_full return429_json")
grouped=" ${CASE_GROUPS[*]} "
others=""
for c in "${case_list[@]}"; do
    case $grouped in *" $c "*) ;; *) others="$others $c" ;; esac
done
[ -n "$others" ] && CASE_GROUPS+=("$others")
declare -A GROUP_OF
for ((g = 0; g < ${#CASE_GROUPS[@]}; g++)); do
    for c in ${CASE_GROUPS[$g]}; do GROUP_OF[$c]=$g; done
done

round_order() {
    local r=$1 ng=${#CASE_GROUPS[@]} g i c list out=""
    for ((g = 0; g < ng; g++)); do
        read -ra list <<<"${CASE_GROUPS[$(( (g + r - 1) % ng ))]}"
        if (( r % 2 == 0 )); then
            for ((i = ${#list[@]} - 1; i >= 0; i--)); do out="$out ${list[$i]}"; done
        else
            out="$out ${list[*]}"
        fi
    done
    for c in $out; do
        case " $CASES " in *" $c "*) echo "$c" ;; esac
    done
}

log "warm-up: 1s per case"
for c in "${case_list[@]}"; do run_case 0 "$c" 1; done

START=$(date +%s)
for ((r = 1; r <= ROUNDS; r++)); do
    log "round $r/$ROUNDS"
    g=""
    for c in $(round_order "$r"); do
        # a group's first case warms up first (1 s, not recorded), as the
        # check does: the first run after a change of location is slower
        [ "${GROUP_OF[$c]}" != "$g" ] && run_case 0 "$c" 1
        g=${GROUP_OF[$c]}
        run_case "$r" "$c" "$DURATION"
    done
done
ELAPSED=$(( $(date +%s) - START ))

# The check: each target pair again, alone, A B B A repeated
# BENCH_CHECK times; bench/analyze.py pools these runs (all ticks over
# all requests), which is steadier than the median of the round ratios.
# Each pair is warmed up first (not recorded): the first run after a
# change of location came out 3-5% slower here, which would weigh on A.
CHECK=${BENCH_CHECK:-6}
CHECK_PAIRS="mod_ok:plain_ok mod_augment:plain_error
             mod_augment:lua_capture_error reject:return429
             reject:return429_same return429_same:return429
             status_ok:mod_ok status_augment:mod_augment
             reject_logged:return429_same sync_ok:zone_ok
             sync_augment:zone_augment sync_reject:reject
             sync_quota:quota_ok"
RAW_ROUNDS=$RAW
RAW="$OUT/check.tsv"
WRK_TAG=check
printf 'round\tcase\trps\trequests\tseconds\tcpu_ticks\thz\tnon2xx\tsocket_errors\tload1\tload_ticks\tupstream_ticks\n' > "$RAW"
if (( CHECK > 0 )); then
    for pair in $CHECK_PAIRS; do
        a=${pair%%:*} b=${pair#*:}
        case " $CASES " in *" $a "*) ;; *) continue ;; esac
        case " $CASES " in *" $b "*) ;; *) continue ;; esac
        log "check: $a / $b, ABBA x $CHECK"
        run_case 0 "$b" 1
        run_case 0 "$a" 2
        for ((i = 1; i <= CHECK; i++)); do
            for c in "$a" "$b" "$b" "$a"; do
                run_case "$i" "$c" "$DURATION"
            done
        done
    done
fi
RAW=$RAW_ROUNDS
WRK_TAG=r


# ---- after the runs ------------------------------------------------------

# the back-offs held for the whole run
for c in reject reject_full status_reject sync_reject; do
    case " $CASES " in *" $c "*) ;; *) continue ;; esac
    curl -s -D - -o /dev/null "$(url_of $c)" | tr -d '\r' \
        | grep -qi '^X-MQTTAPI-Throttled: gateway' \
        || die "$c: the key is no longer backed off after the run"
done

# the status gateway counted its requests: its endpoint, kept with the run
curl -s "$STGW/mqttapi/status?format=prometheus" > "$OUT/status.prom"
case " $CASES " in
    *" status_augment "*)
        grep -Eq '^mqttapi_responses_total\{.*\} [1-9][0-9]*$' "$OUT/status.prom" \
            || die "the status gateway counted no response (see $OUT/status.prom)" ;;
esac

# the synced copy stayed connected (a reconnection is logged at error)
case " $CASES " in
    *" sync_"*)
        [ "$(redis-cli -p "$RPORT" PUBSUB NUMSUB mqttapi:events | tail -1)" = 1 ] \
            || die "the synced gateway is not subscribed after the run" ;;
esac

if cat "$DIR/gateway-error.log" "$DIR/gateway-status-error.log" \
        "$DIR/gateway-sync-error.log" \
        | grep -E '\[(alert|crit|emerg)\]' > "$OUT/gateway-alerts.txt"; then
    log "warning: alerts in the gateway's error log (see $OUT/gateway-alerts.txt)"
fi

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "git: $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null)$(cd "$REPO" && git diff --quiet HEAD -- src ngx_http_mqttapi_module.c config 2>/dev/null || echo ' (+ uncommitted changes in the sources)')"
    echo "module: $MODULE (built $MODULE_DATE, sha256 $MODULE_SHA...)"
    echo "nginx: $("$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: //')"
    echo "wrk: $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}')"
    for p in nginx libnginx-mod-http-lua libnginx-mod-http-ndk lua-cjson \
             libluajit2-5.1-2 libjansson4 libhiredis0.14 redis-server wrk; do
        echo "pkg: $p $(dpkg-query -W -f '${Version}' "$p" 2>/dev/null || echo '-')"
    done
    echo "kernel: $(uname -sr)"
    echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1) x $NCPU"
    echo "debian: $(cat /etc/debian_version 2>/dev/null)"
    echo "gateway_cpu: $GW_CPU"
    echo "load_cpu: $LOAD_CPU"
    echo "rounds: $ROUNDS"
    echo "duration: $DURATION"
    echo "conns: $CONNS"
    echo "elapsed: $ELAPSED"
    echo "check: $CHECK"
    echo "wrk_cmd: taskset -c $LOAD_CPU wrk -t1 -c$CONNS -d${DURATION}s URL"
    echo "url_example: ${CASE_PATH[mod_augment]}?$QS$BENCH_KEY"
    echo "full_zone_keys: $FULL_HELD"
    echo "nkeys: $NKEYS"
    sed -n 's/^fill .*/capacity_fill: &/p; s/^check .*/capacity_check: &/p' \
        "$OUT/capacity.txt"
    echo "load_before_after: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$OUT/env.txt"

cp "$DIR/gateway.conf" "$OUT/gateway.conf"
cp "$DIR/gateway-sync.conf" "$OUT/gateway-sync.conf"
cp "$DIR/upstream.conf" "$OUT/upstream.conf"

# instructions per request (callgrind): deterministic, backs the close calls
if [ "${BENCH_PROFILE:-1}" = 1 ] && command -v valgrind >/dev/null; then
    log "callgrind: instructions per request"
    BENCH_OUT="$OUT/profile" MODULE="$MODULE" NGINX="$NGINX_BIN" \
        bash "$BENCH/profile.sh" "${BENCH_PROFILE_N:-1000}" \
        plain_ok mod_ok plain_error mod_augment mod_problem \
        lua_capture_error lua_filter_error return429 return429_json \
        return429_same reject reject_full > "$OUT/profile.log" 2>&1 \
        || log "warning: the profile failed (see $OUT/profile.log)"
fi

# every run's numbers are kept (small, outside git): RESULTS.md adds the
# run's row to its table of runs, which keeps the rows of earlier ones
if [ "$OUT" = "$REPO/build/bench/latest" ]; then
    H="$REPO/build/bench/history/$(date -u +%Y%m%d-%H%M%S)"
    mkdir -p "$H"
    cp "$OUT/raw.tsv" "$OUT/env.txt" "$H/"
    [ -f "$OUT/check.tsv" ] && cp "$OUT/check.tsv" "$H/"
    [ -f "$OUT/profile/summary.txt" ] && cp "$OUT/profile/summary.txt" "$H/"
fi

if [ -n "$RESULTS" ]; then
    "$PY" "$BENCH/analyze.py" "$OUT" "$RESULTS"
    log "wrote $RESULTS"
else
    "$PY" "$BENCH/analyze.py" "$OUT" -
fi
