#!/usr/bin/env python3
"""Helpers for bench/run.sh: API server metric diffs, log timings, latency percentiles.

  analyze.py gen PREFIX N_NS N_DEP DIR      per namespace a kind: List of opted-in Deployments
  analyze.py gen-each NS N DIR              N single Deployments as JSON files (bodies for a POST)
  analyze.py requests BEFORE AFTER          apiserver_request_total diff -> JSON by resource/verb
  analyze.py hist BEFORE AFTER VERB RES     apiserver_request_duration_seconds diff -> JSON quantiles
  analyze.py logstats LOG T0                sync / rewrite timings from a JSON controller log
  analyze.py latency LOG NS                 informer add -> "workload rewritten" per key in NS
  analyze.py probes PERF_SCRIPT_TXT         uprobe timings: add -> PATCH handed to curl -> answer
Only the standard library; timestamps in the log are RFC 3339 UTC with milliseconds.
"""
import json
import re
import sys
from datetime import datetime, timezone

METRIC_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\}\s+(\S+)$')
LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def deployment(ns, name):
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name, "bench": "co"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, "bench": "co"}},
                "spec": {
                    "containers": [{
                        "name": "app",
                        "image": "registry.example/bench/app:1.0",
                        "env": [{"name": "KATA", "value": ""}],
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                    }]
                },
            },
        },
    }


def cmd_gen(prefix, n_ns, n, outdir):
    """One kind: List per namespace PREFIX-000.., in outdir/PREFIX-NNN.json."""
    for i in range(int(n_ns)):
        ns = "%s-%03d" % (prefix, i)
        items = [deployment(ns, "app-%04d" % j) for j in range(int(n))]
        with open("%s/%s.json" % (outdir, ns), "w") as f:
            json.dump({"apiVersion": "v1", "kind": "List", "items": items}, f,
                      separators=(",", ":"))


def cmd_gen_each(ns, n, outdir):
    """n single Deployments ns/lat-NNNN as outdir/lat-NNNN.json (bodies for a POST)."""
    for j in range(int(n)):
        with open("%s/lat-%04d.json" % (outdir, j), "w") as f:
            json.dump(deployment(ns, "lat-%04d" % j), f, separators=(",", ":"))


def parse_metrics(path, name):
    out = []
    with open(path) as f:
        for line in f:
            if not line.startswith(name + "{"):
                continue
            m = METRIC_RE.match(line.strip())
            if not m or m.group(1) != name:
                continue
            labels = dict(LABEL_RE.findall(m.group(2)))
            out.append((labels, float(m.group(3))))
    return out


def keyed(samples, keys):
    d = {}
    for labels, v in samples:
        k = tuple(labels.get(x, "") for x in keys)
        d[k] = d.get(k, 0.0) + v
    return d


def cmd_requests(before, after):
    keys = ("group", "resource", "subresource", "verb", "code")
    b = keyed(parse_metrics(before, "apiserver_request_total"), keys)
    a = keyed(parse_metrics(after, "apiserver_request_total"), keys)
    rows = []
    for k, v in a.items():
        dv = v - b.get(k, 0.0)
        if dv > 0:
            rows.append(dict(zip(keys, k), count=int(dv)))
    rows.sort(key=lambda r: (-r["count"], r["resource"], r["verb"]))
    by = {}
    for r in rows:
        res = r["resource"] + ("/" + r["subresource"] if r["subresource"] else "")
        by.setdefault(res, {})
        by[res][r["verb"]] = by[res].get(r["verb"], 0) + r["count"]
    print(json.dumps({"by_resource_verb": by, "rows": rows}, indent=1, sort_keys=True))


def quantile(q, buckets):
    """histogram_quantile over cumulative (le, count) pairs, le ascending, last +Inf."""
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if le == float("inf"):
                return prev_le
            if c == prev_c:
                return le
            return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c)
        prev_le, prev_c = le, c
    return buckets[-1][0]


def cmd_hist(before, after, verb, resource):
    name = "apiserver_request_duration_seconds_bucket"

    def load(path):
        d = {}
        for labels, v in parse_metrics(path, name):
            if labels.get("verb") != verb or labels.get("resource") != resource:
                continue
            if labels.get("subresource", "") != "":
                continue
            le = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
            d[le] = d.get(le, 0.0) + v
        return d

    b, a = load(before), load(after)
    buckets = sorted((le, a[le] - b.get(le, 0.0)) for le in a)
    res = {"verb": verb, "resource": resource, "count": int(buckets[-1][1]) if buckets else 0}
    if buckets and buckets[-1][1] > 0:
        for q in (0.5, 0.9, 0.99):
            res["p%d_ms" % round(q * 100)] = round(quantile(q, buckets) * 1000, 2)
        res["buckets_ms"] = [[le * 1000 if le != float("inf") else "+Inf", int(c)]
                             for le, c in buckets if c > 0][:8]
    print(json.dumps(res))


def ts(s):
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def read_log(path):
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("{"):
                try:
                    yield json.loads(line)
                except ValueError:
                    pass


def cmd_logstats(path, t0):
    t0 = float(t0)
    out = {"rewritten": 0, "distinct_keys": 0, "write_failed": 0, "warnings": 0, "errors": 0}
    keys = {}
    first = last = None
    times = []
    for e in read_log(path):
        msg = e.get("msg")
        lvl = e.get("level")
        if lvl in ("warn", "warning"):
            out["warnings"] += 1
        elif lvl == "error":
            out["errors"] += 1
        if msg == "starting controller" and "t_start" not in out:
            out["t_start_log_s"] = round(ts(e["ts"]) - t0, 3)
        elif msg == "all caches synced" and "sync_s" not in out:
            out["sync_s"] = round(ts(e["ts"]) - t0, 3)
            out["sync_ms_internal"] = e.get("ms")
            out["synced_deployments"] = e.get("deployments")
        elif msg == "workload rewritten":
            t = ts(e["ts"])
            out["rewritten"] += 1
            keys[e.get("key")] = keys.get(e.get("key"), 0) + 1
            times.append(t)
            first = t if first is None else min(first, t)
            last = t if last is None else max(last, t)
        elif msg == "workload write failed":
            out["write_failed"] += 1
        elif msg == "reconciler stopped":
            out["reconciler_stopped"] = {k: v for k, v in e.items() if k not in ("ts", "level", "msg")}
    out["distinct_keys"] = len(keys)
    # Densest 1 s window of answered PATCHes (each is followed by one Event POST).
    times.sort()
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - 1.0:
            j += 1
        best = max(best, i - j + 1)
    out["max_rewrites_in_1s"] = best
    out["keys_written_more_than_once"] = sum(1 for v in keys.values() if v > 1)
    if first is not None:
        out["first_rewrite_s"] = round(first - t0, 3)
        out["last_rewrite_s"] = round(last - t0, 3)
        if "sync_s" in out and last > first:
            span = last - (t0 + out["sync_s"])
            out["rewrite_after_sync_s"] = round(span, 3)
            out["rewrites_per_s_after_sync"] = round(out["rewritten"] / span, 1) if span > 0 else None
    print(json.dumps(out))


def pct(sorted_vals, p):
    """Nearest-rank percentile."""
    if not sorted_vals:
        return None
    k = max(1, int(-(-p * len(sorted_vals) // 100)))
    return sorted_vals[min(k, len(sorted_vals)) - 1]


def cmd_latency(path, ns):
    adds, done = {}, {}
    for e in read_log(path):
        msg = e.get("msg")
        if msg == "informer event" and e.get("resource") == "deployments" and e.get("type") == "add":
            k = e.get("key", "")
            if k.startswith(ns + "/") and k not in adds:
                adds[k] = ts(e["ts"])
        elif msg == "workload rewritten":
            k = e.get("key", "")
            if k.startswith("d:" + ns + "/") and k[2:] not in done:
                done[k[2:]] = ts(e["ts"])
    lat = sorted((done[k] - adds[k]) * 1000.0 for k in done if k in adds)
    res = {"adds": len(adds), "rewritten": len(done), "paired": len(lat)}
    if lat:
        res.update({
            "p50_ms": round(pct(lat, 50), 1), "p90_ms": round(pct(lat, 90), 1),
            "p99_ms": round(pct(lat, 99), 1), "max_ms": round(lat[-1], 1),
            "min_ms": round(lat[0], 1), "mean_ms": round(sum(lat) / len(lat), 2),
        })
    print(json.dumps(res))


def cmd_probes(path):
    """`perf script --show-switch-events` output of uprobes on_add, curl_multi_add_handle,
    on_workload_written, with the controller's context switches. At low load the sequence per
    Deployment is: on_add, add_handle (the PATCH), its answer on_workload_written, add_handle
    (the Event POST). Pairs each on_add with the first add_handle after it and the first
    on_workload_written after that. Time the controller was switched out inside add -> send is
    split into preempted (runnable, waiting for a CPU) and voluntary (sleeping in the loop)."""
    ev, sw = [], []
    rx = re.compile(r'\s(\d+\.\d+):\s+(?:PERF_RECORD_SWITCH (IN|OUT)( preempt)?|\S*probe\S*:(\w+))')
    with open(path) as f:
        for line in f:
            m = rx.search(line)
            if not m:
                continue
            t = float(m.group(1))
            if m.group(2):
                sw.append((t, m.group(2), bool(m.group(3))))
            else:
                ev.append((t, m.group(4)))
    ev.sort()
    sw.sort()
    # Off-CPU intervals: OUT .. next IN.
    off = []
    pending = None
    for t, kind, pre in sw:
        if kind == "OUT":
            pending = (t, pre)
        elif pending is not None:
            off.append((pending[0], t, pending[1]))
            pending = None

    def off_cpu(a, b):
        pre = vol = 0.0
        for s0, s1, p in off:
            o = min(b, s1) - max(a, s0)
            if o > 0:
                if p:
                    pre += o
                else:
                    vol += o
        return pre * 1000.0, vol * 1000.0

    send, rtt, total, oncpu, preempted = [], [], [], [], []
    i = 0
    while i < len(ev):
        t, name = ev[i]
        if name != "on_add":
            i += 1
            continue
        j = i + 1
        while j < len(ev) and ev[j][1] not in ("curl_multi_add_handle", "on_add"):
            j += 1
        if j >= len(ev) or ev[j][1] != "curl_multi_add_handle":
            i = j
            continue
        k = j + 1
        while k < len(ev) and ev[k][1] not in ("on_workload_written", "on_add"):
            k += 1
        if k >= len(ev) or ev[k][1] != "on_workload_written":
            i = k
            continue
        gap = (ev[j][0] - t) * 1000.0
        pre, vol = off_cpu(t, ev[j][0])
        send.append(gap)
        oncpu.append(gap - pre - vol)
        preempted.append(pre)
        rtt.append((ev[k][0] - ev[j][0]) * 1000.0)
        total.append((ev[k][0] - t) * 1000.0)
        i = k + 1

    def stats(v):
        v = sorted(v)
        if not v:
            return {}
        return {"n": len(v), "p50_ms": round(pct(v, 50), 3), "p90_ms": round(pct(v, 90), 3),
                "p99_ms": round(pct(v, 99), 3), "max_ms": round(v[-1], 3)}

    print(json.dumps({"add_to_patch_sent": stats(send),
                      "add_to_patch_sent_on_cpu": stats(oncpu),
                      "add_to_patch_sent_preempted": stats(preempted),
                      "switch_events": len(sw),
                      "patch_round_trip": stats(rtt),
                      "add_to_patch_answered": stats(total)}))


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmds = {"gen": cmd_gen, "gen-each": cmd_gen_each, "probes": cmd_probes, "requests": cmd_requests, "hist": cmd_hist,
            "logstats": cmd_logstats, "latency": cmd_latency}
    fn = cmds.get(argv[1])
    if fn is None:
        print(__doc__, file=sys.stderr)
        return 2
    fn(*argv[2:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
