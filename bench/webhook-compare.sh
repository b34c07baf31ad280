#!/usr/bin/env bash
# Added admission latency, compared under the same load: R rounds, each creating N objects with
# C concurrent clients three times in turn (bench/webhook.sh): without a webhook, with the
# operator's webhook, and with hack/refwebhook (a Go standard-library webhook that only sets the
# class). Per webhook, over all rounds: the API server's
# apiserver_admission_webhook_admission_duration_seconds (bucket bounds, share of calls <= 5 ms)
# and the client-side create latency (p50/p99, and the difference to the run without a webhook).
#
#   R (default 3)  N (default 1000)  C (default 50)  KIND (default deployment)
#   CO_BIN, CO_CLUSTER_DIR: as bench/webhook.sh
set -euo pipefail
cd "$(dirname "$0")/.."
R=${R:-3} KIND=${KIND:-deployment}
export N=${N:-1000} C=${C:-50} KIND
raw=$(mktemp -d)
trap 'rm -rf "$raw"' EXIT
for r in $(seq 1 "$R"); do
  for w in none operator reference; do
    echo "== round $r: $w (load $(cut -d' ' -f1-3 /proc/loadavg))"
    WEBHOOK=$w RAW="$raw/$w-$r" bench/webhook.sh 2>&1 | grep -E 'calls|creates|webhook:' || true
  done
done
python3 - "$raw" "$R" <<'PY'
import glob, os, re, sys
raw, rounds = sys.argv[1], int(sys.argv[2])
def buckets(path):
    b = {}
    if not os.path.exists(path): return b
    for line in open(path):
        m = re.search(r'_bucket\{.*le="([^"]+)".*\} ([0-9.e+]+)', line)
        if m: b[float(m.group(1))] = b.get(float(m.group(1)), 0) + float(m.group(2))
    return b
def pct(v, p): return v[min(len(v) - 1, int(len(v) * p + 0.5) - 1)] if v else float("nan")
client = {}
print(f"\nover {rounds} rounds:")
for w in ("none", "operator", "reference"):
    api = {}
    lat = []
    for r in range(1, rounds + 1):
        b0, b1 = buckets(f"{raw}/{w}-{r}.api-before"), buckets(f"{raw}/{w}-{r}.api-after")
        for le in b1: api[le] = api.get(le, 0) + b1[le] - b0.get(le, 0)
        if os.path.exists(f"{raw}/{w}-{r}.client"):
            lat += [float(x) for x in open(f"{raw}/{w}-{r}.client") if x.strip()]
    lat.sort()
    client[w] = (pct(lat, 0.5), pct(lat, 0.99))
    line = f"{w:9s} client create p50 {client[w][0]:6.1f} ms, p99 {client[w][1]:6.1f} ms"
    if w != "none":
        line += f" (added: p50 {client[w][0] - client['none'][0]:+.1f} ms, p99 {client[w][1] - client['none'][1]:+.1f} ms)"
    d = sorted(api.items()); total = d[-1][1] if d else 0
    if total > 0:
        q = lambda p: next(le for le, c in d if c >= p * total)
        le5 = next((c for le, c in d if abs(le - 0.005) < 1e-9), 0)
        line += f"; API server: {int(total)} calls, p50 <= {q(0.5)*1000:g} ms, p99 <= {q(0.99)*1000:g} ms, {100*le5/total:.1f} % <= 5 ms"
    print(line)
PY
