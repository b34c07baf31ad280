#!/usr/bin/env bash
# Admission latency added by the webhook, as the API server measures it: N opted-in pods
# created by C concurrent clients (one curl --parallel, admin token) through the bundle's webhook
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
  --http-bind-address=127.0.0.1:$((PORT + 1)) --log-level=info >"$log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; kc delete mutatingwebhookconfiguration co-bench-webhook --ignore-not-found >/dev/null; cp "$log" "${CO_CLUSTER_DIR}/webhook-bench.log"; rm -f "$log"' EXIT
# Ready when the API server's own call mutates a server-side dry run (certificate served, caBundle
# injected, this replica leading or not): up to a minute, a previous run's lease may still hold.
probe_pod='{"apiVersion":"v1","kind":"Pod","metadata":{"name":"probe"},"spec":{"containers":[{"name":"c","image":"fake","env":[{"name":"KATA","value":"true"}]}]}}'
ready=
for _ in $(seq 1 120); do
  if [ "$(kc -n bench-wh create --dry-run=server -o jsonpath='{.spec.runtimeClassName}' -f - <<<"$probe_pod" 2>/dev/null)" = kata-qemu ]; then
    ready=1
    break
  fi
  sleep 0.5
done
[ -n "$ready" ] || { echo "webhook not ready (log: $CO_CLUSTER_DIR/webhook-bench.log)" >&2; exit 1; }

metric() { kc get --raw /metrics | grep '^apiserver_admission_webhook_admission_duration_seconds_' |
  grep 'name="pods.confidential.cypherpunk.io"' | grep 'operation="CREATE"'; }
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
own() { curl -s "http://127.0.0.1:$((PORT + 1))/metrics" | grep "^confidential_operator_webhook_$1_seconds_bucket"; }
before=$(metric || true)
h_before=$(own handler) r_before=$(own request) c_before=$(curl -s "http://127.0.0.1:$((PORT + 1))/metrics" | awk '/^confidential_operator_webhook_connections_total/ {print $2}')
cpu0=$(cpu)
# One curl process drives all clients (--parallel, HTTP/2 to the API server): no fork per
# request, so the load generator does not take the CPU the API server and the webhook need.
reqs=$(mktemp)
for i in $(seq 1 "$N"); do
  [ "$i" -gt 1 ] && echo next
  printf '%s\n' "url = \"$APISERVER_URL/api/v1/namespaces/bench-wh/pods\"" 'request = "POST"' \
    "header = \"Authorization: Bearer $CO_ADMIN_TOKEN\"" 'header = "Content-Type: application/json"' \
    "data = \"{\\\"apiVersion\\\":\\\"v1\\\",\\\"kind\\\":\\\"Pod\\\",\\\"metadata\\\":{\\\"name\\\":\\\"p$i\\\"},\\\"spec\\\":{\\\"containers\\\":[{\\\"name\\\":\\\"c\\\",\\\"image\\\":\\\"fake\\\",\\\"env\\\":[{\\\"name\\\":\\\"KATA\\\",\\\"value\\\":\\\"true\\\"}]}]}}\"" \
    "cacert = \"$CO_CA_FILE\"" 'output = "/dev/null"' 'write-out = "%{http_code}\n"' silent
done >"$reqs"
t0=$(date +%s.%N)
codes=$(curl -s --parallel --parallel-immediate --parallel-max "$C" --config "$reqs" | sort | uniq -c | tr '\n' ' ')
rm -f "$reqs"
t1=$(date +%s.%N)
after=$(metric)
h_after=$(own handler) r_after=$(own request) c_after=$(curl -s "http://127.0.0.1:$((PORT + 1))/metrics" | awk '/^confidential_operator_webhook_connections_total/ {print $2}')
cpu1=$(cpu)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
hz=$(getconf CLK_TCK)
mutated=$(kc -n bench-wh get pods -o json | jq '[.items[] | select(.spec.runtimeClassName == "kata-qemu")] | length')
quantiles() {
  python3 - "$1" "$2" "$3" <<'PY'
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
print(f"{sys.argv[3]}: {int(total)} calls, p50 <= {q(0.5)*1000:g} ms, p99 <= {q(0.99)*1000:g} ms (bucket bounds)")
PY
}
quantiles "$before" "$after" "API server (apiserver_admission_webhook_admission_duration_seconds)"
quantiles "$r_before" "$r_after" "webhook, request read to answer (confidential_operator_webhook_request_seconds)"
quantiles "$h_before" "$h_after" "webhook, handler only (confidential_operator_webhook_handler_seconds)"
echo "webhook connections accepted during the run: $(echo "${c_after:-0} - ${c_before:-0}" | bc)"
echo "creates: $N by $C clients in $(echo "$t1 - $t0" | bc) s; HTTP codes: $codes; pods with the class: $mutated"
echo "controller: RSS $((rss / 1024)) MiB after the run, CPU $(echo "scale=2; ($cpu1 - $cpu0) / $hz" | bc) s for the run"
