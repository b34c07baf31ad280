#!/usr/bin/env bash
# Admission latency added by the webhook, as the API server measures it: N opted-in pods
# created by C concurrent clients (curl POSTs with the admin token) through the bundle's webhook
# configuration pointed at a controller on this host; the p50/p99 come from the API server's
# apiserver_admission_webhook_admission_duration_seconds histogram (difference before/after),
# the controller's RSS and CPU time from /proc.
#
#   CO_CLUSTER_DIR (default /tmp/co-bench-wh)  N (default 1000)  C (default 50)
#   CO_BIN (default build/confidential-operator)
set -euo pipefail
cd "$(dirname "$0")/.."
export CO_CLUSTER_DIR=${CO_CLUSTER_DIR:-/tmp/co-bench-wh}
N=${N:-1000} C=${C:-50} PORT=${PORT:-19450}
BIN=${CO_BIN:-$PWD/build/confidential-operator}
hack/cluster-up.sh >/dev/null
# shellcheck source=/dev/null
source "$CO_CLUSTER_DIR/cluster.env"
kc() { "$CO_KUBECTL" --kubeconfig="$KUBECONFIG" "$@"; }
kc apply -f crd/confidentialworkloads.yaml -f manifests/namespace.yaml >/dev/null
kc apply -f - >/dev/null <<'YAML'
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: kata-qemu}
handler: kata-qemu
YAML
kc create --dry-run=client -o json -f manifests/webhook.yaml |
  jq --arg url "https://127.0.0.1:$PORT/mutate" '(if .kind == "List" then .items[] else . end)
    | select(.kind == "MutatingWebhookConfiguration") | .metadata.name = "co-bench-webhook"
    | .webhooks[].clientConfig = {url: $url}' | kc apply -f - >/dev/null
kc delete namespace bench-wh --ignore-not-found --wait=true >/dev/null
kc create namespace bench-wh >/dev/null
log=$(mktemp)
"$BIN" controller --webhook-bind-address=127.0.0.1:$PORT --webhook-config-name=co-bench-webhook \
  --http-bind-address= --log-level=info >"$log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; kc delete mutatingwebhookconfiguration co-bench-webhook --ignore-not-found >/dev/null; rm -f "$log"' EXIT
for _ in $(seq 1 200); do grep -q 'webhook CA bundle injected' "$log" && break; sleep 0.1; done
grep -q 'webhook CA bundle injected' "$log" || { echo "webhook not ready" >&2; exit 1; }
sleep 1

metric() { kc get --raw /metrics | grep '^apiserver_admission_webhook_admission_duration_seconds_' |
  grep 'name="pods.confidential.cypherpunk.io"' | grep 'operation="CREATE"'; }
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
before=$(metric || true)
cpu0=$(cpu)
create() {
  local i=$1
  curl -s -o /dev/null -w '%{http_code}\n' --cacert "$CO_CA_FILE" -H "Authorization: Bearer $CO_ADMIN_TOKEN" \
    -H 'Content-Type: application/json' -X POST "$APISERVER_URL/api/v1/namespaces/bench-wh/pods" \
    -d "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"p$i\"},\"spec\":{\"containers\":[{\"name\":\"c\",\"image\":\"fake\",\"env\":[{\"name\":\"KATA\",\"value\":\"true\"}]}]}}"
}
export -f create
export APISERVER_URL CO_CA_FILE CO_ADMIN_TOKEN
t0=$(date +%s.%N)
codes=$(seq 1 "$N" | xargs -P "$C" -I{} bash -c 'create {}' | sort | uniq -c | tr '\n' ' ')
t1=$(date +%s.%N)
after=$(metric)
cpu1=$(cpu)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
hz=$(getconf CLK_TCK)
mutated=$(kc -n bench-wh get pods -o json | jq '[.items[] | select(.spec.runtimeClassName == "kata-qemu")] | length')
python3 - "$before" "$after" <<'PY'
import re, sys
def parse(t):
    b = {}
    for line in t.splitlines():
        m = re.search(r'_bucket\{.*le="([^"]+)".*\} ([0-9.e+]+)', line)
        if m: b[float(m.group(1))] = b.get(float(m.group(1)), 0) + float(m.group(2))
    return b
b0, b1 = parse(sys.argv[1]), parse(sys.argv[2])
d = sorted((le, b1[le] - b0.get(le, 0)) for le in b1)
total = d[-1][1]
def q(p):
    for le, c in d:
        if c >= p * total: return le
print(f"admission calls {int(total)}: p50 <= {q(0.5)*1000:g} ms, p99 <= {q(0.99)*1000:g} ms (bucket bounds)")
PY
echo "creates: $N by $C clients in $(echo "$t1 - $t0" | bc) s; HTTP codes: $codes; pods with the class: $mutated"
echo "controller: RSS $((rss / 1024)) MiB after the run, CPU $(echo "scale=2; ($cpu1 - $cpu0) / $hz" | bc) s for the run"
