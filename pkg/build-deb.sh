#!/usr/bin/env bash
# pkg/build-deb.sh: `make deb`.  Packages build/ngx_http_mqttapi_module.so
# (built against Debian's nginx-dev, the default `make`) the way Debian
# packages its own nginx modules (libnginx-mod-*), with dpkg-deb:
#
#   /usr/lib/nginx/modules/ngx_http_mqttapi_module.so
#   /usr/share/nginx/modules-available/mod-http-mqttapi.conf  (load_module)
#   /usr/share/doc/libnginx-mod-http-mqttapi/copyright
#   postinst, prerm, postrm: the link
#   /etc/nginx/modules-enabled/50-mod-http-mqttapi.conf, and a reload of a
#   running nginx through its dpkg trigger (as dh_nginx writes them)
#
# Depends: the nginx ABI the module was built for (nginx-abi-1.22.1-7, from
# nginx-dev's debian/libnginx-mod.abisubstvars) and the shared libraries it
# links (dpkg-shlibdeps: libc6, libjansson4, libhiredis0.14).
#
# Writes build/libnginx-mod-http-mqttapi_<version>_<arch>.deb (DEB_OUT:
# another directory) and prints its path.  Environment: MODULE (the .so,
# default build/ngx_http_mqttapi_module.so), NGINX_DEV (default
# /usr/share/nginx/src).

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PKG=$REPO/pkg
NAME=libnginx-mod-http-mqttapi
MODULE=${MODULE:-$REPO/build/ngx_http_mqttapi_module.so}
NGINX_DEV=${NGINX_DEV:-/usr/share/nginx/src}
OUT=${DEB_OUT:-$REPO/build}

die() { echo "build-deb.sh: $*" >&2; exit 1; }

[ -f "$MODULE" ] || die "no module at $MODULE: run 'make' first"

# the module must be the one of nginx-dev's tree: a module built against
# another nginx would not load into the packaged one
from=$REPO/build/objs/configured-from
if [ "$MODULE" = "$REPO/build/ngx_http_mqttapi_module.so" ]; then
    [ -f "$from" ] && [ "$(cut -d' ' -f1 "$from")" = "$NGINX_DEV" ] \
        && cmp -s "$REPO/build/objs/ngx_http_mqttapi_module.so" "$MODULE" \
        || die "$MODULE is not the build of $NGINX_DEV: run 'make' (without NGINX_SRC)"
fi

abi=$(sed -n 's/^nginx:abi=//p' "$NGINX_DEV/debian/libnginx-mod.abisubstvars" \
          2>/dev/null || true)
[ -n "$abi" ] || die "no nginx ABI in $NGINX_DEV/debian/libnginx-mod.abisubstvars (nginx-dev)"

version=$(cat "$PKG/VERSION")
arch=$(dpkg --print-architecture)
deb=$OUT/${NAME}_${version}_${arch}.deb

work=$(mktemp -d "${TMPDIR:-/tmp}/mqttapi-deb-XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root

install -d -m 755 "$root/DEBIAN" "$root/usr/lib/nginx/modules" \
    "$root/usr/share/nginx/modules-available" "$root/usr/share/doc/$NAME"
install -m 644 "$MODULE" "$root/usr/lib/nginx/modules/ngx_http_mqttapi_module.so"
strip --strip-unneeded --remove-section=.comment --remove-section=.note \
    "$root/usr/lib/nginx/modules/ngx_http_mqttapi_module.so"
install -m 644 "$PKG/mod-http-mqttapi.conf" "$root/usr/share/nginx/modules-available/"
{
    echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
    echo "Upstream-Name: ngx_http_mqttapi_module"
    echo
    echo "Files: *"
    echo "License: BSD-2-clause"
    sed -e 's/^$/./' -e 's/^/ /' "$REPO/LICENSE"
} > "$root/usr/share/doc/$NAME/copyright"
chmod 644 "$root/usr/share/doc/$NAME/copyright"
for s in postinst prerm postrm; do
    install -m 755 "$PKG/$s" "$root/DEBIAN/$s"
done

# the libraries' packages, as debhelper finds them
mkdir -p "$work/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$NAME" "$NAME" \
    > "$work/debian/control"
shlibs=$(cd "$work" && dpkg-shlibdeps -O \
             "root/usr/lib/nginx/modules/ngx_http_mqttapi_module.so" \
             2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || die "dpkg-shlibdeps found no dependencies"
for lib in libjansson4 libhiredis; do
    case "$shlibs" in *"$lib"*) ;; *) die "no $lib in: $shlibs" ;; esac
done

size=$(du -k -s --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<EOF
Package: $NAME
Version: $version
Architecture: $arch
Maintainer: ngx_http_mqttapi_module authors <root@localhost>
Installed-Size: $size
Depends: $abi, $shlibs
Recommends: nginx
Section: httpd
Priority: optional
Description: ApsaraMQ for MQTT OpenAPI gateway module for Nginx
 An nginx HTTP module for an edge gateway in front of the ApsaraMQ for
 MQTT OpenAPI: it annotates and normalizes the OpenAPI's error responses
 from an error catalog and rate-limits clients after throttling codes.
EOF

(cd "$root" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' \
    | sort -z | xargs -0 md5sum) > "$root/DEBIAN/md5sums"
chmod 644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"

mkdir -p "$OUT"
dpkg-deb --root-owner-group --build "$root" "$deb.tmp" >/dev/null
mv -f "$deb.tmp" "$deb"
echo "$deb"
