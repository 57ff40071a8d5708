#!/usr/bin/env bash
# t/fuzz/run.sh: `make fuzz`.  Builds t/fuzz/json_fast.c with clang's
# libFuzzer and ASan/UBSan twice, as this machine compiles the module
# (SSE2 on x86-64) and with __SSE2__ undefined (the 64-bit word scan), and
# runs each for FUZZ_TIME seconds (default 60) from a small seed corpus.
# A crash or an abort() of the harness (the scan and jansson disagree)
# fails the run and leaves the input (crash-*) in build/fuzz/.  Before
# them, t/fuzz/sync_reply.c (mqttapi_sync's handling of Redis replies),
# alike.

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SRC=${NGINX_SRC:-/usr/share/nginx/src}
OBJS=$REPO/build/objs
OUT=$REPO/build/fuzz
TIME=${FUZZ_TIME:-60}

# clang, and libFuzzer's runtime (only a Recommends of clang in Debian)
if ! command -v clang >/dev/null \
    || ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a \
        >/dev/null 2>&1
then
    apt-get update
    apt-get install -y --no-install-recommends clang libclang-rt-dev
fi
[ -f "$OBJS/ngx_auto_config.h" ] || { echo "run make first" >&2; exit 1; }

mkdir -p "$OUT/corpus"

# seeds: the OpenAPI's error bodies and a few odd ones
i=0
while IFS= read -r line; do
    printf '%s' "$line" > "$OUT/corpus/seed$((i++))"
done <<'SEEDS'
{"RequestId":"3F0A7C1E-62B1-4B8F-8D8B-2C51A9E0F4D6","HostId":"onsmqtt.cn-hangzhou.aliyuncs.com","Code":"InvalidParameter.InstanceId","Message":"An error occurred while validating the parameter.","Recommend":"https://next.api.aliyun.com/troubleshoot?q=InvalidParameter.InstanceId&product=OnsMqtt"}
{"Code":"ApplyTokenOverFlow","Message":"a \"quoted\" \\ word\n","Retry":3,"F":1.5,"N":null,"T":true,"X":false}
{"Code":"X","Message":"\u00e9t\u00e9","Data":{"a":[1,2]}}
{ "Code" : "Throttling.User" , "n": -0, "e": 1e5 }
SEEDS

INCS=(-I "$SRC/src/core" -I "$SRC/src/event" -I "$SRC/src/event/modules"
      -I "$SRC/src/os/unix" -I "$SRC/src/http" -I "$SRC/src/http/modules"
      -I "$SRC/src/http/v2" -I "$OBJS" -I "$REPO/src")

# mqttapi_sync: what Redis sends, through hiredis's reader and the reply
# parsers (t/fuzz/sync_reply.c), from replies of the scripts and messages

mkdir -p "$OUT/corpus.sync" "$OUT/seeds.sync"
i=0
while IFS= read -r line; do
    printf '%b' "$line" > "$OUT/seeds.sync/seed$((i++))"
done <<'SEEDS'
*4\r\n:2\r\n:950\r\n:1000\r\n$18\r\nApplyTokenOverFlow\r\n
*5\r\n$4\r\nb:AK\r\n:1\r\n:-20\r\n:1000\r\n$1\r\n-\r\n
*3\r\n$7\r\nmessage\r\n$14\r\nmqttapi:events\r\n$40\r\nO fleet 3 990 1000 SystemOverFlow b:AK 1\r\n
*3\r\n$7\r\nmessage\r\n$14\r\nmqttapi:events\r\n$20\r\nC fleet 2 0 0 - b:AK\r\n
*3\r\n:2\r\n:431\r\n:1796226054\r\n
*2\r\n:1796226055\r\n:3\r\n
+OK\r\n$-1\r\n:3\r\n-NOSCRIPT No matching script\r\n
*3\r\n$9\r\nsubscribe\r\n$14\r\nmqttapi:events\r\n:1\r\n
*3\r\n$9\r\nsubscribe\r\n$5\r\nother\r\n:1\r\n
*3\r\n$9\r\nsubscribe\r\n$14\r\nmqttapi:events\r\n:0\r\n
*3\r\n$7\r\nmessage\r\n$14\r\nmqttapi:events\r\n$56\r\nO fleet 1 86400000 86400000 ApplyTokenOverFlow b:AK-long\r\n
*3\r\n$7\r\nmessage\r\n$14\r\nmqttapi:events\r\n$31\r\nO fleet 1 5000 5000  b:AK-empty\r\n
*3\r\n$7\r\nmessage\r\n$14\r\nmqttapi:events\r\n$33\r\nO fleet 1 5000 5000 \xff\xfe\xc3 b:AK-utf8\r\n
*3\r\n$7\r\nmessage\r\n$14\r\nmqttapi:events\r\n$39\r\nO fleet 1 5000 5000 Bad"Code b:AK-quote\r\n
-OOM command not allowed when used memory > 'maxmemory'.\r\n-READONLY You can't write against a read only replica.\r\n
SEEDS

# a code of 4 kB on the channel (the run's longest input)
code=$(head -c 4000 /dev/zero | tr '\0' A)
body="O fleet 1 5000 5000 $code b:AK-huge"
printf '*3\r\n$7\r\nmessage\r\n$14\r\nmqttapi:events\r\n$%d\r\n%s\r\n' \
    "${#body}" "$body" > "$OUT/seeds.sync/seed_huge_code"

bin="$OUT/sync_reply"
clang -g -O1 -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=undefined "${INCS[@]}" \
    "$REPO/t/fuzz/sync_reply.c" -lhiredis -o "$bin"

echo "fuzz: sync_reply, ${TIME}s"
rc=0
(cd "$OUT" && "$bin" -max_total_time="$TIME" -max_len=4096 \
    -print_final_stats=1 corpus.sync seeds.sync) > "$OUT/sync_reply.log" 2>&1 \
    || rc=$?
grep -E 'stat::number_of_executed_units|ERROR|SUMMARY' "$OUT/sync_reply.log" \
    || true
if [ "$rc" != 0 ]; then
    tail -30 "$OUT/sync_reply.log" >&2
    echo "fuzz: sync_reply failed (exit $rc), the input is in $OUT" >&2
    exit 1
fi

echo "fuzz: the sync reply parsers took every input safely"

for variant in as_built no_sse2; do
    extra=()
    [ "$variant" = no_sse2 ] && extra=(-U__SSE2__)
    bin="$OUT/json_fast.$variant"

    clang -g -O1 -fsanitize=fuzzer,address,undefined \
        -fno-sanitize-recover=undefined "${extra[@]}" "${INCS[@]}" \
        "$REPO/t/fuzz/json_fast.c" -ljansson -o "$bin"

    echo "fuzz: $variant, ${TIME}s"
    mkdir -p "$OUT/corpus.$variant"
    rc=0
    (cd "$OUT" && "$bin" -max_total_time="$TIME" -max_len=4096 \
        -print_final_stats=1 "corpus.$variant" corpus) > "$OUT/$variant.log" 2>&1 \
        || rc=$?
    grep -E 'stat::number_of_executed_units|ERROR|SUMMARY' "$OUT/$variant.log" || true
    if [ "$rc" != 0 ]; then
        tail -30 "$OUT/$variant.log" >&2
        echo "fuzz: $variant failed (exit $rc), the input is in $OUT" >&2
        exit 1
    fi
done

echo "fuzz: no disagreement between the fast scan and jansson"
