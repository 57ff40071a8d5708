#!/usr/bin/python3
"""bench/delay_profile.py: instructions per request of other keys' success
path with and without 10,000 waiting requests (bench/delay.py's "others"),
with callgrind.  Not part of "make bench".

    python3 bench/delay_profile.py [mqttapi|limit_req|limit_req_still ...]
    python3 bench/delay_profile.py --report CASE...   (the tables again)

The gateway of bench/delay.py runs in one process (master_process off)
under valgrind --tool=callgrind (BENCH_CACHESIM=1 adds --cache-sim=yes,
an L2 of 512 KB as the last level); the upstream nginx runs natively.
For each case a fresh gateway:

  none      N requests on /ok (QueryToken, a key of their own, one
            keep-alive connection), counters zeroed before and dumped
            after
  hold      10,000 requests held waiting (as bench/delay.py holds them)
            and SETTLE seconds (all of them accepted and waiting: a "with"
            phase that still accepts some says so)
  with      the same N requests, the 10,000 waiting
  idle      the next S seconds with no request sent: only the waiting
            ones let go (200/s), to price one release
  after     the held connections closed, the same N requests again

The waiting requests are let go at 200/s meanwhile (their quota's rate),
so "with" also counts the releases that fell into it; they are counted
(calls of ngx_http_upstream_init() beyond the N) and priced by "idle",
function by function, and taken off.  limit_req_still holds with
limit_req at 1 request a minute (nothing let go): nginx's cost of the
connections and timers alone.  Per function only Ir is read (the cache
events' columns are left blank where zero).

Environment: PROFILE_N=2000 PROFILE_IDLE=3 PROFILE_HOLD=10000 PROFILE_SETTLE=5
BENCH_OUT=build/bench/delay_profile.  Prints a table per case, writes the
callgrind files and per-function tables in BENCH_OUT.
"""

import http.client
import json
import os
import re
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import delay  # noqa: E402

OUT = os.environ.get("BENCH_OUT", os.path.join(delay.REPO,
                                               "build/bench/delay_profile"))
N = int(os.environ.get("PROFILE_N", "2000"))
IDLE = float(os.environ.get("PROFILE_IDLE", "3"))
HOLD = int(os.environ.get("PROFILE_HOLD", "10000"))
SETTLE = float(os.environ.get("PROFILE_SETTLE", "5"))
CACHESIM = os.environ.get("BENCH_CACHESIM", "") == "1"
NGINX = delay.NGINX
MODULE = delay.MODULE

CASES = {
    "mqttapi": "/hold?Action=ApplyToken&AccessKeyId=held",
    "limit_req": "/holdlr?AccessKeyId=held",
    "limit_req_still": "/holdstill?AccessKeyId=held",
}


def gateway_conf(gport, uport):
    text = delay.GATEWAY % {"dir": OUT, "module": MODULE, "uport": uport,
                            "gport": gport, "hold": HOLD}
    text = text.replace("worker_cpu_affinity 01;\n",
                        "master_process off;\ndaemon off;\n")
    text = text.replace(
        "    limit_req_zone", "    limit_req_zone $arg_AccessKeyId "
        "zone=lrs:1m rate=1r/m;\n    limit_req_zone", 1)
    text = text.replace(
        "        location /ok {",
        "        location = /wake { return 204; }\n"
        "        location /holdstill {\n"
        "            limit_req zone=lrs burst=%d;\n"
        "            proxy_pass http://api;\n"
        "        }\n"
        "        location /ok {" % HOLD, 1)
    return text


def get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("GET", path)
    r = c.getresponse()
    r.read()
    c.close()
    return r.status


def ok_requests(port, key, n):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    seen = {}
    for _ in range(n):
        c.request("GET", "/ok?Action=QueryToken&AccessKeyId=%s" % key)
        r = c.getresponse()
        r.read()
        seen[r.status] = seen.get(r.status, 0) + 1
    c.close()
    if set(seen) != {200}:
        raise SystemExit("/ok answered %r" % seen)


def ctl(vg, port, arg):
    """callgrind_control is served when the process runs: wake it up with
    one request (a "return 204", counted once)"""
    p = subprocess.Popen(["callgrind_control", arg, str(vg)],
                         stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    get(port, "/wake")
    p.wait()


def dump(vg, port, name):
    before = set(os.listdir(OUT))
    ctl(vg, port, "-d")
    new = [f for f in os.listdir(OUT)
           if f.startswith("cg.out.") and f not in before]
    new.sort(key=lambda f: os.path.getmtime(os.path.join(OUT, f)))
    dest = os.path.join(OUT, "callgrind.%s" % name)
    os.rename(os.path.join(OUT, new[-1]), dest)
    return dest


def functions(path):
    """{function: [Ir, ...events]} exclusive, and the totals"""
    out = subprocess.run(["callgrind_annotate", "--threshold=100", path],
                         capture_output=True, text=True).stdout
    total = None
    fn = {}
    for line in out.splitlines():
        toks = re.sub(r"\(\s*[\d.]+%\)", " ", line).split()
        v = []
        while toks and re.match(r"^[\d,]+$", toks[0]):
            v.append(int(toks.pop(0).replace(",", "")))
        if not v or not toks:
            continue
        rest = " ".join(toks)
        if rest == "PROGRAM TOTALS":
            total = v
            continue
        m = re.match(r"^\S*:(\S+)", rest)
        if not m or m.group(1) in ("main", "(below", "0x000000000001ab70",
                                   "__libc_start_main@@GLIBC_2.34"):
            continue
        name = m.group(1)
        fn[name] = [a + b for a, b in zip(fn.get(name, [0] * len(v)), v)]
    return total, fn


def calls(path, func):
    """how many times func was called (its "calls=" lines)"""
    n = 0
    cfn = None
    want = False
    names = {}
    for line in open(path):
        if line.startswith("cfn="):
            m = re.match(r"cfn=\((\d+)\)(?: (.*))?", line.strip())
            if m.group(2):
                names[m.group(1)] = m.group(2)
            cfn = names.get(m.group(1))
            want = cfn == func
        elif line.startswith("fn="):
            m = re.match(r"fn=\((\d+)\)(?: (.*))?", line.strip())
            if m and m.group(2):
                names[m.group(1)] = m.group(2)
        elif line.startswith("calls=") and want:
            n += int(line.split("=")[1].split()[0])
            want = False
    return n


def profile(case, uport):
    gport = delay.free_port()
    conf = os.path.join(OUT, "gateway-%s.conf" % case)
    with open(conf, "w") as f:
        f.write(gateway_conf(gport, uport))
    cmd = ["valgrind", "--tool=callgrind",
           "--callgrind-out-file=%s/cg.out" % OUT]
    if CACHESIM:
        # valgrind takes this VM's last level for 256 MB direct-mapped: an
        # EPYC core's L2 (512 KB, 8 ways) stands for the last level here
        cmd += ["--cache-sim=yes", "--D1=32768,8,64", "--LL=524288,8,64"]
    vg = subprocess.Popen(cmd + [NGINX, "-p", OUT, "-c", conf, "-e",
                                 os.path.join(OUT, "gw-startup.log")],
                          stderr=open(os.path.join(OUT, "valgrind-%s.log"
                                                   % case), "w"))
    try:
        for _ in range(600):
            try:
                get(gport, "/wake")
                break
            except OSError:
                time.sleep(0.2)
        path = CASES[case]
        ok_requests(gport, "warm", 300)
        res = {}
        ctl(vg.pid, gport, "-z")
        ok_requests(gport, "k-none", N)
        res["none"] = dump(vg.pid, gport, case + ".none")
        t0 = time.time()
        socks = delay.hold(gport, path, HOLD)
        sys.stderr.write("%s: %d held in %.1f s\n"
                         % (case, HOLD, time.time() - t0))
        time.sleep(SETTLE)
        res["hold"] = dump(vg.pid, gport, case + ".hold")
        ok_requests(gport, "k-with", N)
        res["with"] = dump(vg.pid, gport, case + ".with")
        ctl(vg.pid, gport, "-z")
        time.sleep(IDLE)
        res["idle"] = dump(vg.pid, gport, case + ".idle")
        for s in socks:
            s.close()
        time.sleep(2)
        ctl(vg.pid, gport, "-z")
        ok_requests(gport, "k-aftr", N)
        res["after"] = dump(vg.pid, gport, case + ".after")
    finally:
        vg.send_signal(3)
        vg.wait()
    return res


EVENTS = ["Ir", "Dr", "Dw", "I1mr", "D1mr", "D1mw", "ILmr", "DLmr", "DLmw"]
GROUPS = {
    "timers": ("ngx_rbtree_insert_timer_value", "ngx_event_find_timer",
               "ngx_event_expire_timers", "ngx_rbtree_insert",
               "ngx_rbtree_delete"),
    "malloc": ("_int_malloc", "unlink_chunk.constprop.0", "_int_free",
               "malloc", "free", "posix_memalign", "_int_memalign"),
}


def report(case, res):
    prof = {k: functions(v) for k, v in res.items()}
    # a release is a proxied request that is not one of the N
    rel = {k: calls(v, "ngx_http_upstream_init")
           - (N if k in ("none", "with", "after") else 0)
           for k, v in res.items()}
    tot = {k: prof[k][0] for k in prof}
    lines = ["case %s, N=%d, held %d; releases counted: %s"
             % (case, N, HOLD, ", ".join("%s %d" % kv
                                         for kv in sorted(rel.items())))]
    events = len(tot["none"])
    per_rel = [t / rel["idle"] for t in tot["idle"]] if rel["idle"] else \
        [0] * events
    base = [(a + b) / 2.0 / N for a, b in zip(tot["none"], tot["after"])]
    w = [t / N for t in tot["with"]]
    wc = [(t - rel["with"] * p) / N for t, p in zip(tot["with"], per_rel)]
    lines.append("events: " + " ".join(EVENTS[:events]))
    lines.append("events per ok request: none %s | after %s | with %s | "
                 "with, releases taken off %s | one release %s"
                 % ([round(t / N) for t in tot["none"]],
                    [round(t / N) for t in tot["after"]],
                    [round(x) for x in w], [round(x) for x in wc],
                    [round(x) for x in per_rel]))
    lines.append("Ir ratio (without over with): raw %.3f, releases off %.3f"
                 % (base[0] / w[0], base[0] / wc[0]))
    # per function, Ir per ok request: with (releases off) - without
    fw, fi = prof["with"][1], prof["idle"][1]
    fn0, fa = prof["none"][1], prof["after"][1]
    k = rel["with"] / rel["idle"] if rel["idle"] else 0
    diff = []
    for f in set(fw) | set(fn0) | set(fa):
        a = (fw.get(f, [0])[0] - k * fi.get(f, [0])[0]) / N
        b = (fn0.get(f, [0])[0] + fa.get(f, [0])[0]) / 2.0 / N
        diff.append((a - b, f, a, b))
    diff.sort(reverse=True)
    for g in ("timers", "malloc", "module"):
        names = GROUPS.get(g) or [f for f in set(fw) | set(fn0) | set(fa)
                                  if f.startswith("ngx_http_mqttapi_")]
        ir = {ph: sum(prof[ph][1].get(f, [0])[0] for f in names)
              for ph in prof}
        lines.append("Ir per ok request in %s: none %.0f, after %.0f, with "
                     "(releases off) %.0f; per release %.0f"
                     % (g, ir["none"] / N, ir["after"] / N,
                        (ir["with"] - k * ir["idle"]) / N,
                        ir["idle"] / rel["idle"] if rel["idle"] else 0))
    lines.append("connections accepted in the with phase: %d (2: the /ok "
                 "connection and the wake-up's; more: held ones still "
                 "coming in)"
                 % calls(res["with"], "ngx_event_accept"))
    if "hold" in res:
        lines.append("the hold phase, per request held: %s"
                     % ", ".join("%s %.2f" % (f, calls(res["hold"], f)
                                              / float(HOLD))
                                 for f in ("malloc", "free", "posix_memalign",
                                           "ngx_alloc")))
    lines.append("calls of ngx_memalign() (pools and their blocks): per ok "
                 "request %.2f; per release %.2f"
                 % (calls(res["none"], "ngx_memalign") / N,
                    calls(res["idle"], "ngx_memalign") / rel["idle"]
                    if rel["idle"] else 0))
    lines.append("Ir per ok request by function, with (releases off) - "
                 "without, largest:")
    for d, f, a, b in diff[:25]:
        lines.append("  %+8.0f  %8.0f %8.0f  %s" % (d, a, b, f))
    text = "\n".join(lines) + "\n"
    with open(os.path.join(OUT, "summary-%s.txt" % case), "w") as f:
        f.write(text)
    sys.stdout.write(text)


def main():
    if sys.argv[1:2] == ["--report"]:
        for case in sys.argv[2:]:
            res = {k: os.path.join(OUT, "callgrind.%s.%s" % (case, k))
                   for k in ("none", "hold", "with", "idle", "after")}
            report(case, {k: v for k, v in res.items()
                          if os.path.exists(v)})
        return
    os.makedirs(OUT, exist_ok=True)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with open(os.path.join(OUT, "hold.json"), "w") as f:
        json.dump({"actions": {"ApplyToken": {"quota": 200}}}, f)
    with open(os.path.join(OUT, "ok.json"), "w") as f:
        json.dump({"actions": {"QueryToken": {"quota": 65535}},
                   "quota": {"api_ceiling": 65535}}, f)
    delay.OUT = OUT
    uport = delay.free_port()
    um = delay.start("upstream", delay.UPSTREAM, {"dir": OUT, "uport": uport})
    try:
        for case in sys.argv[1:] or ["mqttapi", "limit_req",
                                     "limit_req_still"]:
            report(case, profile(case, uport))
    finally:
        delay.stop(um)


if __name__ == "__main__":
    main()
