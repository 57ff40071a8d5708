#!/usr/bin/python3
"""bench/analyze.py: raw results of bench/run.sh -> bench/RESULTS.md.

  analyze.py OUTDIR RESULTS.md     (RESULTS.md "-" prints to stdout)

OUTDIR holds raw.tsv (one line per case run), env.txt (versions, settings,
zone capacity) and optionally profile/summary.txt-like notes.  Ratios are
computed round by round (a case against its baseline of the same round),
then the median and the range over the rounds are reported; CPU ratios
compare the gateway worker's CPU time per request (utime+stime).

The table of earlier runs is kept in RESULTS.md itself (the raw outputs
are not in git): its rows are read back from the RESULTS.md being
replaced, and each run in OUTDIR/../history/<run>/raw.tsv adds or
replaces its own row.
"""

import os
import random
import re
import statistics
import sys

# (case, baseline, target, what): the performance targets
TARGETS = [
    ("mod_ok", "plain_ok", 0.98,
     "success response through `mqttapi on` / plain `proxy_pass`"),
    ("mod_augment", "plain_error", 0.92,
     "error annotated (`augment`) / plain `proxy_pass` relaying the same error"),
    ("mod_augment", "lua_capture_error", 1.25,
     "error annotated (`augment`) / the same in Lua, `ngx.location.capture`"),
    ("reject", "return429_same", 0.95,
     "local reject while backed off / `return 429` of the identical answer"),
    ("status_ok", "mod_ok", 0.99,
     "success with a `mqttapi_status` location configured / without"),
    ("status_augment", "mod_augment", 0.99,
     "error annotated with a `mqttapi_status` location configured / without"),
    ("sync_ok", "zone_ok", 0.98,
     "success, throttle zone synced through Redis (`mqttapi_sync`) / sync off"),
    ("sync_augment", "zone_augment", 0.98,
     "error annotated, throttle zone synced through Redis / sync off"),
    ("sync_reject", "reject", 0.98,
     "local reject, back-off zone synced through Redis / sync off"),
    ("sync_quota", "quota_ok", 0.98,
     "success under a quota (`mqttapi_quota`), zone synced through Redis "
     "(demand-driven grants) / sync off"),
]

# more comparisons, for information
OTHERS = [
    ("plain_ok2", "plain_ok", "A/A: the same plain proxy location twice (the noise floor)"),
    ("mod_problem", "plain_error", "error annotated (`problem`) / plain proxy, same error"),
    ("mod_augment", "lua_filter_error", "`augment` / Lua body filter (body only)"),
    ("mod_problem", "lua_capture_error", "`problem` / Lua capture"),
    ("lua_capture_error", "plain_error", "Lua capture / plain proxy, error path (expected: about 0.66)"),
    ("lua_filter_error", "plain_error", "Lua body filter / plain proxy, error path (expected: about 0.68)"),
    ("lua_capture_ok", "plain_ok", "Lua capture / plain proxy, success path (expected: about 0.82)"),
    ("lua_filter_ok", "plain_ok", "Lua body filter / plain proxy, success path (expected: about 0.90)"),
    ("reject", "return429_json", "local reject / `return 429` with a JSON body of the same size"),
    ("reject", "return429", "local reject / nginx's own `return 429` page (the baseline before the identical answer)"),
    ("return429_same", "return429", "`return 429` of the module's answer as text / nginx's 429 page (what the answer's bytes and headers cost nginx and the kernel)"),
    ("reject_full", "reject", "reject with a full zone (~8,100 keys) / with one key"),
    ("reject_logged", "reject", "reject logged at warn (default) / logged at info (not written)"),
    ("status_reject", "reject", "local reject with a `mqttapi_status` location configured / without"),
    ("reject_logged", "return429_same", "reject at the default log level (warn) / `return 429` of the identical answer (goal: the same as at info, within noise)"),
]


def load_env(path):
    env = {}
    if os.path.exists(path):
        for line in open(path):
            if ": " in line:
                k, v = line.rstrip("\n").split(": ", 1)
                env.setdefault(k, v)
                if k == "pkg":
                    env.setdefault("pkgs", []).append(v)
    return env


def load_raw(path):
    """the runs of raw.tsv or check.tsv; "block" counts the times the
    round goes back (in check.tsv, one block of rounds 1..N per pair)"""
    runs = []
    block, last = 0, 0
    with open(path) as f:
        head = f.readline().rstrip("\n").split("\t")
        for line in f:
            row = dict(zip(head, line.rstrip("\n").split("\t")))
            if not row.get("rps"):
                continue
            if int(row["round"]) < last:
                block += 1
            last = int(row["round"])
            r = {
                "block": block,
                "round": int(row["round"]),
                "case": row["case"],
                "rps": float(row["rps"]),
                "requests": int(row["requests"]),
                "seconds": float(row["seconds"]),
                "ticks": int(row["cpu_ticks"]),
                "hz": int(row["hz"]),
                "non2xx": int(row["non2xx"] or 0),
                "errors": int(row["socket_errors"] or 0),
                "load1": float(row["load1"]),
            }
            r["cpu_us"] = (r["ticks"] / r["hz"] * 1e6 / r["requests"]
                           if r["requests"] else float("nan"))
            r["util"] = r["ticks"] / r["hz"] / r["seconds"] if r["seconds"] else 0
            # the load side's core: wrk and the upstream worker (runs of
            # before 2026-12-02 did not record it)
            if row.get("load_ticks") and r["seconds"]:
                r["load_util"] = ((int(row["load_ticks"])
                                   + int(row.get("upstream_ticks") or 0))
                                  / r["hz"] / r["seconds"])
            runs.append(r)
    return runs


def check_runs(check, case, base):
    """the check's runs of this pair only: a case of several pairs (mod_ok,
    reject, ...) is run again in each of their blocks, minutes apart, and
    pooling them all would set runs of other minutes against the baseline"""
    for block in sorted(set(r["block"] for r in check)):
        runs = [r for r in check if r["block"] == block]
        if set(r["case"] for r in runs) == set((case, base)):
            return runs
    return []


def pooled(runs, case, base):
    """(req/s, CPU) ratios of all runs of case and base pooled: all the
    requests over all the seconds, all the ticks over all the requests"""
    a = [r for r in runs if r["case"] == case]
    b = [r for r in runs if r["case"] == base]
    if not a or not b:
        return None
    def tot(rs, k):
        return float(sum(r[k] for r in rs))
    rps = (tot(a, "requests") / tot(a, "seconds")) / \
          (tot(b, "requests") / tot(b, "seconds"))
    cpu = (tot(b, "ticks") / tot(b, "requests")) / \
          (tot(a, "ticks") / tot(a, "requests"))
    return rps, cpu, len(a)


def pooled_ci(runs, case, base, n=2000):
    """95% bootstrap interval of the pooled (req/s, CPU) ratios: the A B B A
    repetitions of the check drawn with replacement, n times (a fixed seed,
    so that a report is reproducible)"""
    reps = sorted(k for k in set(r["round"] for r in runs)
                  if set((case, base)) <= set(r["case"] for r in runs
                                              if r["round"] == k))
    if len(reps) < 3:
        return None
    by_rep = dict((k, [r for r in runs if r["round"] == k]) for k in reps)
    rng = random.Random(9)
    rs, cs = [], []
    for _ in range(n):
        sample = []
        for _ in reps:
            sample.extend(by_rep[rng.choice(reps)])
        p = pooled(sample, case, base)
        if p:
            rs.append(p[0])
            cs.append(p[1])
    if not rs:
        return None
    rs.sort()
    cs.sort()
    lo, hi = int(0.025 * len(rs)), int(0.975 * len(rs)) - 1
    return (rs[lo], rs[hi]), (cs[lo], cs[hi])


def fmt_check(chk, ci):
    """the pooled check ratios with their bootstrap intervals"""
    if not chk:
        return "-"
    if not ci:
        return "%s / %s" % (fmt(chk[0]), fmt(chk[1]))
    return "%s [%s-%s] / %s [%s-%s]" % (
        fmt(chk[0]), fmt(ci[0][0]), fmt(ci[0][1]),
        fmt(chk[1]), fmt(ci[1][0]), fmt(ci[1][1]))


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def load_busy(rs):
    """median busy of the load side's core over runs that recorded it"""
    return med([r["load_util"] for r in rs if "load_util" in r])


def quartiles(xs):
    """first and third quartile (the middle half of the values)"""
    if len(xs) < 4:
        return min(xs), max(xs)
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[2]


def fmt(x, nd=2):
    return ("%.*f" % (nd, x)) if x == x else "-"


HISTORY_ROW = re.compile(r"^\| (\d{8}-\d{6}) \| .*\|$")


def kept_history(path):
    """the rows of the history table of an earlier RESULTS.md, by run"""
    rows = {}
    if path != "-" and os.path.exists(path):
        for line in open(path, encoding="utf-8"):
            m = HISTORY_ROW.match(line.rstrip("\n"))
            if m:
                rows[m.group(1)] = m.group(0)
    return rows


# sections measured by the tests or another script, not by this run: kept
# as they are (bench/delay.py writes the quotas that wait, bench/fleet.sh
# the Redis cost of quotas by demand)
KEPT_SECTIONS = ["## The fleet under faults",
                 "## Quotas that wait (`mqttapi_quota ... delay=`)",
                 "## Redis cost of quotas by demand (bench/fleet.sh)"]


def kept_sections(path):
    """the text of KEPT_SECTIONS in an earlier RESULTS.md, title included"""
    out = []
    if path == "-" or not os.path.exists(path):
        return out
    text = open(path, encoding="utf-8").read()
    for title in KEPT_SECTIONS:
        m = re.search(r"^%s\n.*?(?=^## |\Z)" % re.escape(title), text,
                      re.M | re.S)
        if m:
            out.append(m.group(0).rstrip("\n"))
    return out


def history_table(hdir, kept):
    """one line per run: the target ratios; the kept rows, then (added or
    replacing them) the runs whose raw numbers are in hdir"""
    rows = {}
    for run, row in kept.items():
        # a row of a run that had fewer targets: "-" for the ones it lacks,
        # its A/A ratio still last
        cells = [c.strip() for c in row.strip("|").split("|")]
        missing = 2 + len(TARGETS) + 1 - len(cells)
        if missing > 0:
            cells[-1:-1] = ["-"] * missing
        rows[run] = "| %s |" % " | ".join(cells)
    for d in sorted(os.listdir(hdir)) if os.path.isdir(hdir) else []:
        p = os.path.join(hdir, d, "raw.tsv")
        if not os.path.exists(p):
            continue
        runs = load_raw(p)
        br = {}
        for r in runs:
            br.setdefault(r["round"], {})[r["case"]] = r
        cells = []
        for case, base, target, what in TARGETS:
            rr, cc = [], []
            for n in br:
                x, y = br[n].get(case), br[n].get(base)
                if x and y and y["rps"] > 0 and x["cpu_us"] > 0:
                    rr.append(x["rps"] / y["rps"])
                    cc.append(y["cpu_us"] / x["cpu_us"])
            cells.append("%s / %s" % (fmt(med(rr)), fmt(med(cc))) if rr else "-")
        rr, cc = [], []
        for n in br:
            x, y = br[n].get("plain_ok2"), br[n].get("plain_ok")
            if x and y:
                rr.append(x["rps"] / y["rps"])
                cc.append(y["cpu_us"] / x["cpu_us"])
        cells.append("%s / %s" % (fmt(med(rr)), fmt(med(cc))) if rr else "-")
        rows[d] = "| %s | %d | %s |" % (d, len(br), " | ".join(cells))
    if not rows:
        return []
    head = ["| run (UTC) | rounds | " + " | ".join(
        "%s / %s (>= %s)" % (c, b, t) for c, b, t, _ in TARGETS)
        + " | A/A plain_ok2 / plain_ok |",
        "| --- | --- |" + " --- |" * (len(TARGETS) + 1)]
    return head + [rows[k] for k in sorted(rows)]


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    outdir, dest = sys.argv[1], sys.argv[2]
    kept = kept_history(dest)
    sections = kept_sections(dest)
    env = load_env(os.path.join(outdir, "env.txt"))
    runs = load_raw(os.path.join(outdir, "raw.tsv"))
    cpath = os.path.join(outdir, "check.tsv")
    check = load_raw(cpath) if os.path.exists(cpath) else []

    by_case = {}
    by_round = {}
    for r in runs:
        by_case.setdefault(r["case"], []).append(r)
        by_round.setdefault(r["round"], {})[r["case"]] = r
    cases = list(dict.fromkeys(r["case"] for r in runs))
    rounds = sorted(by_round)

    # callgrind (bench/profile.sh): instructions per request, user space
    prof, funcs, prof_note = {}, {}, ""
    pdir = os.path.join(outdir, "profile")
    if os.path.exists(os.path.join(pdir, "summary.txt")):
        for line in open(os.path.join(pdir, "summary.txt")).readlines()[1:]:
            f = line.split()
            if len(f) == 3:
                prof[f[0]] = int(float(f[2]))
        if os.path.exists(os.path.join(pdir, "functions.tsv")):
            for line in open(os.path.join(pdir, "functions.tsv")).readlines()[1:]:
                c, fn, ir = line.rstrip("\n").split("\t")
                funcs.setdefault(c, {})[fn] = int(ir)
        if os.path.exists(os.path.join(pdir, "module.txt")):
            prof_note = open(os.path.join(pdir, "module.txt")).read().strip()

    def aa_noise():
        """the spread of the A/A pair's per-round ratios (IQR), or 0.03"""
        if "plain_ok2" not in by_case or "plain_ok" not in by_case:
            return 0.03
        rps, cpu = ratios("plain_ok2", "plain_ok")
        q1, q3 = quartiles(rps)
        c1, c3 = quartiles(cpu)
        return max(0.01, q3 - q1, c3 - c1,
                   abs(med(rps) - 1), abs(med(cpu) - 1))

    def ratios(case, base):
        rps, cpu = [], []
        for n in rounds:
            a, b = by_round[n].get(case), by_round[n].get(base)
            if a and b and b["rps"] > 0 and a["cpu_us"] > 0:
                rps.append(a["rps"] / b["rps"])
                cpu.append(b["cpu_us"] / a["cpu_us"])
        return rps, cpu

    out = []
    w = out.append

    w("# Benchmarks")
    w("")
    w("Generated by `make bench` (`bench/run.sh`, then `bench/analyze.py`) "
      "on %s; git %s." % (env.get("date", "?"), env.get("git", "?")))
    w("Profiling notes (callgrind, `bench/profile.sh`): "
      "[PROFILE.md](PROFILE.md).")
    w("")
    w("## The performance targets on this machine")
    w("")
    w("Requests/s ratios are taken round by round (the case and its "
      "baseline of the same round), then the median over %d rounds is "
      "given with the lowest and highest round.  *CPU ratio* is the same "
      "comparison on the gateway worker's CPU time per request "
      "(baseline CPU/request divided by case CPU/request, so that above "
      "1 is better, like the requests/s ratio): it is what a saturated "
      "worker would deliver, and it backs the close calls." % len(rounds))
    w("")
    nchk = int(env.get("check", "0") or 0)
    w("*Check* is the same pair run again after the rounds, alone, A B B A "
      "%d times (%d runs of each) after an unrecorded warm-up of both: "
      "its runs pooled (all requests over all "
      "seconds, all CPU ticks over all requests) are steadier than the "
      "median of the rounds; the interval beside each is a bootstrap "
      "over its A B B A repetitions (drawn with replacement 2,000 times), "
      "what the pooled ratio could have been had the same minutes gone "
      "otherwise.  A target is met when the rounds and the "
      "check both meet it, missed when the check misses it on both "
      "counts, a close call otherwise." % (nchk, 2 * nchk))
    w("")
    w("| case | baseline (same run) | target | req/s ratio, median [min-max] "
      "| CPU ratio, median [min-max] | check: req/s / CPU, pooled "
      "[95% interval] "
      "| instructions/request, case vs baseline | met? |")
    w("| --- | --- | --- | --- | --- | --- | --- | --- |")
    verdicts = []
    close_notes = []
    noise = aa_noise()
    for case, base, target, what in TARGETS:
        if case not in by_case or base not in by_case:
            continue
        rps, cpu = ratios(case, base)
        m, c = med(rps), med(cpu)
        own = check_runs(check, case, base)
        chk = pooled(own, case, base)
        # requests/s decides, backed by the CPU time per request
        # and by the check; a miss by less than the noise measured by the
        # A/A pair is a close call, for the instruction counts to settle
        if chk:
            if min(m, c, chk[0], chk[1]) >= target:
                v = "**yes**"
            elif chk[0] < target and chk[1] < target:
                v = "**no** (the check: %s / %s)" % (fmt(chk[0]), fmt(chk[1]))
            else:
                v = "close call (the rounds and the check disagree, or " \
                    "one measure is under the target)"
        elif m >= target and c >= target:
            v = "**yes**"
        elif m < target - noise and c < target - noise:
            v = "**no**"
        else:
            v = "close call (within the A/A noise of %.2f; see the " \
                "instruction counts)" % noise
        if v.startswith("close"):
            aa_r, aa_c = ratios("plain_ok2", "plain_ok")
            note = "%s / %s: %s; the A/A pair came out at %s (CPU %s) in " \
                   "the same run" % (case, base,
                   ("instructions %+d (%+.1f%% of the baseline's user-space "
                    "work)" % (prof[case] - prof[base],
                               100.0 * (prof[case] - prof[base]) / prof[base]))
                   if case in prof and base in prof else "no instruction counts",
                   fmt(med(aa_r)), fmt(med(aa_c)))
            close_notes.append(note)
        verdicts.append((what, target, m, c, v))
        ir = ("%s vs %s" % (prof[case], prof[base])
              if case in prof and base in prof else "-")
        w("| %s | %s | >= %s | %s [%s-%s] | %s [%s-%s] | %s | %s | %s |" % (
            case, base, ("%.2f" % target) if target < 1 else
            ("%.2fx" % target), fmt(m), fmt(min(rps)), fmt(max(rps)),
            fmt(c), fmt(min(cpu)), fmt(max(cpu)),
            fmt_check(chk, pooled_ci(own, case, base)), ir, v))
    cap = env.get("capacity_check", "")
    held = None
    for part in cap.split():
        if part.startswith("local="):
            held = int(part[6:])
    if held is not None:
        w("| memory: keys held by a 1 MB throttle zone | - | >= 8,000 | "
          "%d of %s keys | - | - | %s |" % (held, env.get("nkeys", "?"),
                                       "**yes**" if held >= 8000 else "**no**"))
    w("")
    if close_notes:
        w("Close calls: " + "; ".join(close_notes) + ".  See the previous "
          "runs below and bench/PROFILE.md.")
        w("")
    hist = history_table(os.path.join(os.path.dirname(os.path.abspath(outdir)),
                                      "history"), kept)
    if hist:
        w("The same targets in every `make bench` run (req/s ratio / CPU "
          "ratio, medians over the rounds of each run; the rows of earlier "
          "runs are kept here, their raw numbers are not; runs before "
          "2026-12-02 17:00 UTC took the local reject against nginx's own "
          "`return 429` page, not the identical answer, and had no status "
          "or sync rows):")
        w("")
        out.extend(hist)
        w("")

    w("## Every case")
    w("")
    w("Requests/s and the gateway worker's CPU time per request "
      "(utime+stime from `/proc/<pid>/stat`, %s ticks/s), median [min-max] "
      "over the rounds; *busy* is the worker's CPU time over the wall "
      "time of the run (1.00 = the core was saturated by the gateway); "
      "*load busy* is the same for the other core: wrk's CPU time (the "
      "cutime and cstime it leaves to the shell that waited for it) plus "
      "the upstream worker's, over the wall time."
      % (runs[0]["hz"] if runs else "?"))
    w("")
    w("| case | location | req/s median | req/s min-max | spread | "
      "CPU us/req median | CPU min-max | busy | load busy | non-2xx/3xx | "
      "socket errors |")
    w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    loc = {
        "plain_ok": "proxy_pass (200)", "mod_ok": "mqttapi on (200)",
        "plain_ok2": "proxy_pass (200), A/A twin of plain_ok",
        "lua_capture_ok": "Lua capture (200)", "lua_filter_ok": "Lua body filter (200)",
        "plain_error": "proxy_pass (400)", "mod_augment": "mqttapi augment (400)",
        "mod_problem": "mqttapi problem (400)",
        "lua_capture_error": "Lua capture (400)",
        "lua_filter_error": "Lua body filter (400)",
        "return429": "return 429", "return429_json": "return 429 + JSON body",
        "return429_same": "return 429 + the reject's answer as text",
        "reject": "back-off reject, 1 key", "reject_full": "back-off reject, full zone",
        "reject_logged": "back-off reject, logged at warn",
        "status_ok": "mqttapi on (200), status endpoint configured",
        "status_augment": "mqttapi augment (400), status endpoint configured",
        "status_reject": "back-off reject, 1 key, status endpoint configured",
        "zone_ok": "mqttapi on (200), throttle zone, key not backed off",
        "zone_augment": "mqttapi augment (400), throttle zone",
        "sync_ok": "zone_ok with the zone synced (`mqttapi_sync`)",
        "sync_augment": "zone_augment with the zone synced",
        "sync_reject": "back-off reject, 1 key, zone synced",
        "quota_ok": "mqttapi on (200), mqttapi_quota, 64 keys under their quota",
        "sync_quota": "quota_ok with the zone synced (grants by demand)",
    }
    spreads = {}
    for c in cases:
        rs = by_case[c]
        rps = [r["rps"] for r in rs]
        cpu = [r["cpu_us"] for r in rs]
        util = [r["util"] for r in rs]
        lbusy = load_busy(rs)
        m = med(rps)
        spreads[c] = (max(rps) - min(rps)) / m if m else 0
        w("| %s | %s | %.0f | %.0f-%.0f | %.0f%% | %s | %s-%s | %.2f | %s "
          "| %d | %d |" % (
            c, loc.get(c, ""), m, min(rps), max(rps), 100 * spreads[c],
            fmt(med(cpu)), fmt(min(cpu)), fmt(max(cpu)), med(util),
            fmt(lbusy),
            sum(r["non2xx"] for r in rs), sum(r["errors"] for r in rs)))
    w("")

    w("## Other comparisons")
    w("")
    w("| comparison | req/s ratio, median [min-max] | CPU ratio, median [min-max] | check: req/s / CPU, pooled [95% interval] |")
    w("| --- | --- | --- | --- |")
    for case, base, what in OTHERS:
        if case not in by_case or base not in by_case:
            continue
        rps, cpu = ratios(case, base)
        own = check_runs(check, case, base)
        chk = pooled(own, case, base)
        w("| %s (`%s` / `%s`) | %s [%s-%s] | %s [%s-%s] | %s |" % (
            what, case, base, fmt(med(rps)), fmt(min(rps)), fmt(max(rps)),
            fmt(med(cpu)), fmt(min(cpu)), fmt(max(cpu)),
            fmt_check(chk, pooled_ci(own, case, base))))
    w("")

    if "reject" in by_case and "reject_full" in by_case:
        one = med([r["cpu_us"] for r in by_case["reject"]])
        full = med([r["cpu_us"] for r in by_case["reject_full"]])
        w("Zone lookup, full vs one key: the reject costs %s us of CPU per "
          "request with %s keys in the zone and %s us with one key "
          "(difference %+.2f us; compare with the CPU ranges above)." % (
              fmt(full), env.get("full_zone_keys", "?"), fmt(one), full - one))
        lk = [funcs.get(c, {}).get("ngx_http_mqttapi_zone_lookup")
              for c in ("reject", "reject_full")]
        if lk[0] and lk[1]:
            w("Callgrind: `ngx_http_mqttapi_zone_lookup()` takes %d "
              "instructions per request with one key and %d with the full "
              "zone (a red-black tree of ~%s nodes), of %s and %s for the "
              "whole reject." % (lk[0], lk[1], env.get("full_zone_keys", "?"),
                                  prof.get("reject", "?"),
                                  prof.get("reject_full", "?")))
        w("")

    if prof:
        w("## Instructions per request (callgrind)")
        w("")
        w("`bench/profile.sh`: the same gateway configuration in one "
          "process under `valgrind --tool=callgrind`, N requests per case "
          "on one keep-alive connection, counters zeroed before and dumped "
          "after each case (%s).  User-space instructions only: the "
          "kernel's share (socket reads and writes, most of the CPU time "
          "of a proxied request here) is the same for a case and its "
          "baseline, so ratios of these counts overstate the differences; "
          "the differences themselves are exact.  `perf stat -e "
          "instructions` is not supported in this VM." % prof_note)
        w("")
        w("| case | instructions/request | vs baseline | notable functions (inclusive, per request) |")
        w("| --- | --- | --- | --- |")
        basel = {"mod_ok": "plain_ok", "mod_augment": "plain_error",
                 "mod_problem": "plain_error", "lua_capture_error": "plain_error",
                 "lua_filter_error": "plain_error", "reject": "return429_same",
                 "return429_json": "return429", "return429_same": "return429",
                 "reject_full": "reject"}
        for c in ["plain_ok", "mod_ok", "plain_error", "mod_augment",
                  "mod_problem", "lua_capture_error", "lua_filter_error",
                  "return429", "return429_json", "return429_same", "reject",
                  "reject_full"]:
            if c not in prof:
                continue
            b = basel.get(c)
            d = ("%+d vs %s" % (prof[c] - prof[b], b)) if b in prof else ""
            fn = ", ".join("`%s` %d" % (k, v) for k, v in
                           sorted(funcs.get(c, {}).items(), key=lambda kv: -kv[1]))
            w("| %s | %d | %s | %s |" % (c, prof[c], d, fn))
        w("")

    w("## Zone capacity (keys per MB)")
    w("")
    w("A 1 MB zone (`mqttapi_throttle_zone $arg_AccessKeyId zone=cap:1m "
      "backoff=60s max_backoff=60s`): the upstream answers "
      "`ApplyTokenOverFlow` for %s distinct 24-character AccessKeyId-like "
      "keys, then every key is requested again on a location of the same "
      "zone whose upstream answers 200; a key still answered locally "
      "(`X-MQTTAPI-Throttled: gateway`) is held by the zone." %
      env.get("nkeys", "?"))
    w("")
    w("    %s" % env.get("capacity_fill", "?"))
    w("    %s" % env.get("capacity_check", "?"))
    w("")
    if held is not None:
        w("**%d keys per MB** (target >= 8,000)." % held)
    w("")

    w("## Noise")
    w("")
    allsp = sorted(spreads.values())
    loads = [r["load1"] for r in runs]
    utils = [r["util"] for r in runs]
    w("Spread (max-min)/median of requests/s over the rounds, per case: "
      "median %.0f%%, largest %.0f%% (%s).  Load average (1 min) during "
      "the runs: %.2f-%.2f.  Gateway worker busy: %.2f-%.2f of a core "
      "(below ~0.95 the worker was waiting: the load side on the other core "
      "or other processes on the machine took the time)." % (
          100 * med(allsp), 100 * allsp[-1],
          max(spreads, key=spreads.get), min(loads), max(loads),
          min(utils), max(utils)))
    w("")
    sides = {}
    for case, base, _, _ in TARGETS:
        if case not in by_case or base not in by_case:
            continue
        for c in (case, base):
            lbusy = load_busy(by_case[c])
            if lbusy == lbusy and c not in sides:
                sides[c] = (c, med([r["util"] for r in by_case[c]]), lbusy)
    if sides:
        w("Which core was the limit (median busy of the gateway's core / of "
          "the load side's core): %s.  Where the load side's core is the "
          "fuller one, wrk could not ask faster: the requests/s of that "
          "case say as much about wrk (which parses every header and byte "
          "of the answer) as about the gateway, and the gateway's CPU time "
          "per request is its own measure." % ", ".join(
              "%s %.2f / %.2f" % x for x in sides.values()))
        w("")
    def iqr_rel(xs):
        q1, q3 = quartiles(xs)
        return (q3 - q1) / med(xs)
    riqr = sorted(iqr_rel([x["rps"] for x in by_case[c]]) for c in cases)
    ciqr = sorted(iqr_rel([x["cpu_us"] for x in by_case[c]]) for c in cases)
    w("Without the outlying rounds (interquartile range over the median): "
      "requests/s %.0f%% for the median case (%.0f%% at most), CPU time "
      "per request %.0f%% (%.0f%% at most)." % (
          100 * med(riqr), 100 * riqr[-1], 100 * med(ciqr), 100 * ciqr[-1]))
    if "plain_ok2" in by_case and "plain_ok" in by_case:
        a, b = ratios("plain_ok2", "plain_ok")
        w("The A/A pair (two identical plain proxy locations, `plain_ok2` / "
          "`plain_ok`) measures the noise of a ratio: requests/s %s "
          "[%s-%s], CPU %s [%s-%s] over the rounds; a target missed by less "
          "than %.2f (the wider of its interquartile ranges) is reported as "
          "a close call." % (
              fmt(med(a)), fmt(min(a)), fmt(max(a)), fmt(med(b)),
              fmt(min(b)), fmt(max(b)), noise))
    w("")
    w("This is a shared 2-core VM: whatever else runs on the host (and, "
      "on a busy machine, other processes of this one) takes the cores at "
      "random moments, which starves the gateway or the load side; that is "
      "why requests/s swing so much between rounds, and why the same pair "
      "measured minutes apart can differ by 5-10%.  Only ratios within a "
      "round, or within the check, are compared; where they disagree on a "
      "target it is reported as a close call, and the instruction counts "
      "(exact) say how much work the module adds.")
    w("")

    for section in sections:
        w(section)
        w("")

    w("## How it was run")
    w("")
    w("    make bench        # = make deps module && bash bench/run.sh")
    w("")
    w("- gateway: one nginx, `worker_processes 1`, `worker_cpu_affinity` on "
      "core %s, every case a location of one server "
      "(`bench/gateway.conf.in`); upstream: a second nginx, one worker "
      "pinned to core %s, `return 200/400` with fixed JSON bodies "
      "(`bench/upstream.conf.in`), reached over keep-alive (`keepalive 64`, "
      "`proxy_http_version 1.1`, `proxy_set_header Connection \"\"`)." % (
          env.get("gateway_cpu", "0"), env.get("load_cpu", "1")))
    w("- load: `%s`, one URL per case, e.g. `%s`; wrk shares core %s with "
      "the upstream." % (env.get("wrk_cmd", "?"), env.get("url_example", "?"),
                         env.get("load_cpu", "1")))
    w("- %s rounds of %s s per case, all cases in every round, after a "
      "1 s warm-up of every case; each case runs next to its baseline "
      "(groups: plain_ok mod_ok status_ok..., plain_error mod_augment "
      "status_augment..., return429 return429_same reject...; the groups "
      "rotate from round to round and the order within a group is "
      "reversed every other round; the first case of a group runs 1 s "
      "unrecorded before its run, since the first run after a change of "
      "location came out 3-5%% slower); %s s of runs in all." % (
          env.get("rounds", "?"), env.get("duration", "?"),
          env.get("elapsed", "?")))
    w("- the status_* cases run the same locations as mod_ok, "
      "mod_augment and reject in a copy of the gateway with `location = "
      "/mqttapi/status { mqttapi_status; }` added (another nginx on the "
      "same core, its worker's CPU time measured alike): with it, every "
      "request of that copy is counted.")
    w("- the sync_* cases run the zone_* locations (and the reject's) in a "
      "copy of the gateway whose zones have `sync`, with `mqttapi_sync "
      "redis=...` of a private `redis-server` (`--save '' --appendonly "
      "no`) on the load side's core, running for the whole run; its "
      "back-off of the benchmark key is published in Redis before the "
      "runs, and the copy is still subscribed after them.  `quota_ok` "
      "and `sync_quota` count every request in a "
      "quota zone (`mqttapi_quota`, its own zone, synced in the copy: "
      "the grants of src/ngx_http_mqttapi_quota_sync.c), with a catalog "
      "(`bench/quota_catalog.json`) that raises ApplyToken's quota and the "
      "per-action ceiling to 65,535/s so that the load stays under both: "
      "the success path through the quota; wrk spreads their requests "
      "round-robin over 64 keys (`bench/quota_keys.lua`: a synced quota "
      "lets at most 31 requests of a key through within 2 ms of a "
      "second's boundary, which one key at tens of thousands a second "
      "would exceed).")
    w("- the reject cases use a key backed off once with `backoff=1h "
      "max_backoff=1h` before the runs; `reject_full` uses a zone filled "
      "first with %s keys (LRU keeps the newest)." %
      env.get("full_zone_keys", "?"))
    w("- the Lua cases: `bench/lua/mqttapi_bench.lua`, the same catalog "
      "(`conf/mqttapi_catalog.json`, loaded at start-up), cjson "
      "decode/append/encode; the capture variant sets the same headers "
      "with `ngx.header`, the body filter variant rewrites the body only.")
    w("- the `reject` locations log their rejects at "
      "`mqttapi_throttle_log_level info` (below `error_log ... warn`, as "
      "one would set `limit_req_log_level`); `reject_logged` keeps the "
      "default (warn): the key's first local answer of the back-off is "
      "logged, the others only counted, so it should cost what `reject` "
      "costs.")
    w("")
    w("Versions:")
    w("")
    for k in ("nginx", "wrk", "module", "kernel", "cpu", "debian"):
        if k in env:
            w("- %s: %s" % (k, env[k]))
    for p in env.get("pkgs", []):
        w("- package %s" % p)
    w("")
    w("Raw numbers (not in git): `build/bench/latest/raw.tsv` (one line "
      "per run), wrk outputs, sample responses of every case "
      "(`build/bench/latest/samples.txt`) and the rendered configs.")
    w("")

    text = "\n".join(out)
    if dest == "-":
        sys.stdout.write(text)
    else:
        with open(dest, "w") as f:
            f.write(text)
    # a short summary on stderr
    for what, target, m, c, v in verdicts:
        sys.stderr.write("%-75s %.2f (CPU %.2f) target %.2f: %s\n" %
                         (what[:75], m, c, target, v.replace("*", "")))
    if held is not None:
        sys.stderr.write("keys held by a 1 MB zone: %d\n" % held)


if __name__ == "__main__":
    main()
