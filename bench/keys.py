#!/usr/bin/python3
"""bench/keys.py: drive many distinct throttle keys through the gateway.

  keys.py fill  URL PREFIX N   one request per key; URL answers a throttle
                               code, so each key opens a back-off
  keys.py check URL PREFIX N   one request per key on a URL whose upstream
                               answers 200; counts the keys still answered
                               locally (X-MQTTAPI-Throttled: gateway), i.e.
                               the keys the zone still holds
  keys.py key   PREFIX I       print the I-th key
  keys.py repeat URL KEY N     N requests for one key (profiling)

Keys look like AccessKeyIds: 24 characters, "LTAI5t" + 18 [A-Za-z0-9],
derived from PREFIX and the index.  One keep-alive connection, no
dependencies beyond Debian's python3.
"""

import hashlib
import http.client
import sys
import time
import urllib.parse

ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def key(prefix, i):
    d = hashlib.sha256(("%s:%d" % (prefix, i)).encode()).digest()
    return "LTAI5t" + "".join(ALNUM[b % len(ALNUM)] for b in d[:18])


def run(mode, url, prefix, n):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    held = statuses = 0
    seen = {}
    t0 = time.time()
    for i in range(n):
        path = "%s?Action=ApplyToken&AccessKeyId=%s" % (u.path, key(prefix, i))
        for attempt in range(3):
            try:
                conn.request("GET", path)
                r = conn.getresponse()
                r.read()
                break
            except (http.client.HTTPException, OSError):
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port,
                                                  timeout=10)
        else:
            raise SystemExit("request %d failed 3 times" % i)
        seen[r.status] = seen.get(r.status, 0) + 1
        if r.getheader("X-MQTTAPI-Throttled") == "gateway":
            held += 1
    dt = time.time() - t0
    print("%s keys=%d local=%d seconds=%.2f statuses=%s"
          % (mode, n, held, dt,
             ",".join("%d:%d" % kv for kv in sorted(seen.items()))))
    return held


def repeat(url, k, n):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    path = "%s?Action=ApplyToken&AccessKeyId=%s" % (u.path, k)
    seen = {}
    for i in range(n):
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        seen[r.status] = seen.get(r.status, 0) + 1
    conn.close()
    print("repeat %s n=%d statuses=%s" % (u.path, n, ",".join(
        "%d:%d" % kv for kv in sorted(seen.items()))))


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "repeat":
        repeat(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    if len(sys.argv) == 4 and sys.argv[1] == "key":
        print(key(sys.argv[2], int(sys.argv[3])))
        return
    if len(sys.argv) != 5 or sys.argv[1] not in ("fill", "check"):
        raise SystemExit(__doc__)
    run(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))


if __name__ == "__main__":
    main()
