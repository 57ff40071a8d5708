#!/usr/bin/env bash
# conf/run.sh: the demo of `make run` (the Makefile builds the module
# first).  Checks that its two ports are free, writes build/run/nginx.conf
# from conf/gateway.conf, checks it with `nginx -t`, prints example
# requests, then runs nginx in the foreground: Ctrl-C (SIGINT) or SIGTERM
# stops it, SIGQUIT gracefully.  The error log (stderr, level info) leaves
# out nginx's line for every keep-alive connection a client closes.
#
# Environment:
#   MQTTAPI_PORT            gateway port (default 8080)
#   MQTTAPI_EMULATOR_PORT   OpenAPI emulator port (default 8081)
#   MQTTAPI_CONF            the template to run (default conf/gateway.conf):
#                           a copy of it, edited, with the same @...@
#                           placeholders
#   MQTTAPI_RUN_DIR         nginx prefix: the generated nginx.conf, pid
#                           file, temp directories (default build/run)
#   NGINX                   nginx binary (default /usr/sbin/nginx, or
#                           build/nginx when STATIC is set)
#   STATIC                  non-empty: the module is compiled into
#                           build/nginx (make NGINX_SRC=... STATIC=1), no
#                           load_module
#   MQTTAPI_MODULE          the .so to load (default
#                           build/ngx_http_mqttapi_module.so)

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$(pwd -P)

PORT=${MQTTAPI_PORT:-8080}
EMULATOR_PORT=${MQTTAPI_EMULATOR_PORT:-8081}
STATIC=${STATIC:-}

if [ -n "$STATIC" ]; then
    NGINX_BIN=${NGINX:-$REPO/build/nginx}
else
    NGINX_BIN=${NGINX:-/usr/sbin/nginx}
fi
# nginx reads $NGINX as a list of inherited listening sockets (binary
# upgrade): an [emerg] "invalid socket number" if it is passed on
unset NGINX

MODULE=${MQTTAPI_MODULE:-$REPO/build/ngx_http_mqttapi_module.so}
RUN=${MQTTAPI_RUN_DIR:-$REPO/build/run}
TEMPLATE=${MQTTAPI_CONF:-$REPO/conf/gateway.conf}

for p in "$PORT" "$EMULATOR_PORT"; do
    if ! [[ $p =~ ^[0-9]+$ ]] || [ "$p" -lt 1 ] || [ "$p" -gt 65535 ]; then
        echo "run.sh: invalid port \"$p\"" >&2
        exit 1
    fi
done

if [ "$PORT" = "$EMULATOR_PORT" ]; then
    echo "run.sh: MQTTAPI_PORT and MQTTAPI_EMULATOR_PORT must differ" >&2
    exit 1
fi

if [ ! -x "$NGINX_BIN" ]; then
    echo "run.sh: no nginx binary at $NGINX_BIN (run 'make deps', or set NGINX)" >&2
    exit 1
fi

if [ -z "$STATIC" ] && [ ! -f "$MODULE" ]; then
    echo "run.sh: $MODULE not found: run 'make' first" >&2
    exit 1
fi

if [ ! -r "$TEMPLATE" ]; then
    echo "run.sh: cannot read the template $TEMPLATE (MQTTAPI_CONF)" >&2
    exit 1
fi

# in_use(port): something listens on it (on any address: the demo's
# 127.0.0.1 would collide with a wildcard listener)
in_use() {
    if command -v ss >/dev/null 2>&1; then
        [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
    fi
}

busy=""
for p in "$PORT" "$EMULATOR_PORT"; do
    in_use "$p" && busy="$busy $p"
done
if [ -n "$busy" ]; then
    echo "run.sh: port(s)$busy already in use on this machine." >&2
    echo "run.sh: pick free ones, for example:" >&2
    echo "    MQTTAPI_PORT=9080 MQTTAPI_EMULATOR_PORT=9081 make run" >&2
    exit 1
fi

mkdir -p "$RUN/temp"
RUN=$(cd "$RUN" && pwd -P)
CONF=$RUN/nginx.conf

# sed replacement text: escape \ & and the | delimiter
sed_escape() {
    printf '%s' "$1" | sed -e 's/[\\&|]/\\&/g'
}

sed -e "s|@MODULE@|$(sed_escape "$MODULE")|g" \
    -e "s|@CONF_DIR@|$(sed_escape "$REPO/conf")|g" \
    -e "s|@PORT@|$PORT|g" \
    -e "s|@EMULATOR_PORT@|$EMULATOR_PORT|g" \
    ${STATIC:+-e '/^load_module /d'} \
    "$TEMPLATE" > "$CONF.tmp"
mv "$CONF.tmp" "$CONF"

# -e stderr: the packaged nginx would otherwise try its compiled-in
# /var/log/nginx/error.log before reading the configuration
NGINX_ARGS=(-p "$RUN/" -e stderr -c "$CONF")

"$NGINX_BIN" "${NGINX_ARGS[@]}" -g 'daemon off;' -t

GW="http://127.0.0.1:$PORT"
TOKEN_ARGS="InstanceId=mqtt-cn-demo&Resources=demo%2Fdevice1&Actions=R,W&ExpireTime=1999999999000"

cat <<EOF

=====================================================================
 ngx_http_mqttapi_module demo
   gateway   $GW/   (mqttapi on, proxy_pass to the emulator)
   emulator  http://127.0.0.1:$EMULATOR_PORT/   (ApsaraMQ for MQTT OpenAPI)
   config    $CONF
             (generated from ${TEMPLATE#$REPO/}; edit that one)
   access log with the annotations on stdout, error log on stderr
   Ctrl-C stops nginx.
=====================================================================

# 1. ApplyToken, success: passed through byte for byte
curl -i '$GW/?Action=ApplyToken&$TOKEN_ARGS'

# 2. ApplyToken without ExpireTime: InvalidParameter.ExpireTime, annotated
curl -i '$GW/?Action=ApplyToken&InstanceId=mqtt-cn-demo&Resources=demo%2Fdevice1&Actions=R,W'

# 3. unknown instance: InstanceNotFound
curl -i '$GW/?Action=ApplyToken&InstanceId=mqtt-cn-missing&Resources=demo%2Fdevice1&Actions=R,W&ExpireTime=1999999999000'

# 4. CreateGroupId of an existing group, Traditional Chinese description
curl -i -H 'Accept-Language: zh-TW' '$GW/?Action=CreateGroupId&InstanceId=mqtt-cn-demo&GroupId=GID_existing'

# 5. ApplyToken burst: the emulator throttles (ApplyTokenOverFlow), then the
#    gateway backs off for this AccessKeyId and answers locally (429);
#    [1-8] is curl's URL globbing: 8 requests on one connection
curl -s -o /dev/null -w '%{http_code} %header{x-mqttapi-error-code} throttled=%header{x-mqttapi-throttled} retry-after=%header{retry-after}\n' \\
  '$GW/?Action=ApplyToken&AccessKeyId=LTAIdemo&$TOKEN_ARGS&n=[1-8]'

# 6. any catalog code on demand (emulator argument mqttemu_code)
curl -i '$GW/?Action=QueryToken&InstanceId=mqtt-cn-demo&Token=abc&mqttemu_code=InternalError'

# The status endpoint (from 127.0.0.1 only): what the gateway counted
#   curl -s '$GW/mqttapi/status'                     JSON
#   curl -s '$GW/mqttapi/status?format=prometheus'   Prometheus text
#   $GW/mqttapi/status in a browser                    the status page

EOF

# nginx logs at info why a response was passed through, and also, at the
# same level, every keep-alive connection a client closes (each curl):
# those lines are left out.  The filter ignores SIGINT so that a Ctrl-C
# still shows nginx's last lines; it ends when nginx closes stderr.
exec "$NGINX_BIN" "${NGINX_ARGS[@]}" -g 'daemon off;' \
    2> >(trap '' INT; exec grep --line-buffered -v \
             '^[0-9/]* [0-9:]* \[info\] [0-9]*#[0-9]*: \*[0-9]* client .* closed keepalive connection' >&2)
