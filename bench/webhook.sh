#!/usr/bin/env bash
# Admission latency added by the webhook, as the API server measures it: N opted-in pods
# created by C concurrent clients (one curl --parallel, admin token) through the bundle's webhook
# configuration pointed at a controller on this host; the p50/p99 come from the API server's
# apiserver_admission_webhook_admission_duration_seconds histogram (difference before/after),
# the controller's RSS and CPU time from /proc.
#
#   CO_CLUSTER_DIR (default /tmp/co-bench-wh)  N (default 1000)  C (default 50)
#   CO_BIN (default build/confidential-operator)
#   KIND=deployment: creates opted-in Deployments (replicas 0) instead of Pods, with
#     kube-controller-manager stopped for the run: one webhook call per create and no scheduler,
#     kwok or ReplicaSet work, so the API server's CPU goes to the creates themselves.
#   WEBHOOK=reference: the same run against hack/refwebhook (Go standard library, built here),
#     which only sets the class: the API server's floor for a webhook call on this machine.
#   WAVE=S: the creates go in waves of C sent at once, one wave every S seconds (C concurrent
#     creates with the API server's CPU recovering in between), instead of C clients in a
#     closed loop that keep the API server saturated.
#   RAW=/path/prefix: also keep the API server histogram before/after and the client latencies
#     there (RAW.api-before, RAW.api-after, RAW.client), for bench/webhook-compare.sh.
#   WEBHOOK=none: no webhook at all; the creates' client-side latency (curl's time_total, shown
#     for every run) is then the baseline that the other runs' added latency is measured from.
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
WEBHOOK=${WEBHOOK:-operator} KIND=${KIND:-pod}
# A new namespace per run: the API server looks a recently deleted namespace up in etcd on every
# create for a while (NamespaceLifecycle), which would load the run. Deleted (and waited for) at exit.
ns=bench-wh-$(date +%s)
kc create namespace "$ns" >/dev/null
if [ "$KIND" = deployment ]; then
  hook=workloads.confidential.cypherpunk.io path=apis/apps/v1/namespaces/$ns/deployments
  body='{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"dNAME"},"spec":{"replicas":0,"selector":{"matchLabels":{"app":"dNAME"}},"template":{"metadata":{"labels":{"app":"dNAME"}},"spec":{"containers":[{"name":"c","image":"fake","env":[{"name":"KATA","value":"true"}]}]}}}}'
else
  hook=pods.confidential.cypherpunk.io path=api/v1/namespaces/$ns/pods
  body='{"apiVersion":"v1","kind":"Pod","metadata":{"name":"pNAME"},"spec":{"containers":[{"name":"c","image":"fake","env":[{"name":"KATA","value":"true"}]}]}}'
fi
body=${body//\"/\\\"} # escaped for curl's config file
log=$(mktemp)
config() { # the bundle's webhook configuration at 127.0.0.1:PORT, caBundle $1 (empty: the operator injects it)
  kc create --dry-run=client -o json -f manifests/webhook.yaml |
    jq --arg url "https://127.0.0.1:$PORT/mutate" --arg ca "$1" '(if .kind == "List" then .items[] else . end)
      | select(.kind == "MutatingWebhookConfiguration") | .metadata.name = "co-bench-webhook"
      | .webhooks[].clientConfig = ({url: $url} + (if $ca == "" then {} else {caBundle: $ca} end))' | kc apply -f - >/dev/null
}
if [ "$WEBHOOK" = none ]; then
  kc delete mutatingwebhookconfiguration co-bench-webhook --ignore-not-found >/dev/null
  sleep 3600 & # stands in for a webhook process
elif [ "$WEBHOOK" = reference ]; then
  ref=$CO_CLUSTER_DIR/refwebhook
  (cd hack/refwebhook && GOFLAGS= go build -o "$ref" main.go)
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=refwebhook \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$CO_CLUSTER_DIR/ref.key" -out "$CO_CLUSTER_DIR/ref.crt" 2>/dev/null
  config "$(base64 -w0 <"$CO_CLUSTER_DIR/ref.crt")"
  "$ref" -addr 127.0.0.1:$PORT -cert "$CO_CLUSTER_DIR/ref.crt" -key "$CO_CLUSTER_DIR/ref.key" >"$log" 2>&1 &
else
  config ""
  "$BIN" controller --webhook-bind-address=127.0.0.1:$PORT --webhook-config-name=co-bench-webhook \
    --http-bind-address=127.0.0.1:$((PORT + 1)) --log-level=info >"$log" 2>&1 &
fi
pid=$!
cleanup() {
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  [ "$KIND" != deployment ] || hack/cluster.sh start controller-manager >/dev/null || true
  kc delete mutatingwebhookconfiguration co-bench-webhook --ignore-not-found >/dev/null || true
  kc delete namespace "$ns" --wait=true >/dev/null || true
  cp "$log" "$CO_CLUSTER_DIR/webhook-bench.log"
  rm -f "$log"
}
trap cleanup EXIT
[ "$KIND" != deployment ] || hack/cluster.sh stop controller-manager >/dev/null
# Ready when the API server's own call mutates a server-side dry run (certificate served, caBundle
# injected, this replica leading or not): up to a minute, a previous run's lease may still hold.
probe_pod='{"apiVersion":"v1","kind":"Pod","metadata":{"name":"probe"},"spec":{"containers":[{"name":"c","image":"fake","env":[{"name":"KATA","value":"true"}]}]}}'
ready=
[ "$WEBHOOK" != none ] || ready=1
for _ in $(seq 1 120); do
  [ -z "$ready" ] || break
  if [ "$(kc -n "$ns" create --dry-run=server -o jsonpath='{.spec.runtimeClassName}' -f - <<<"$probe_pod" 2>/dev/null)" = kata-qemu ]; then
    ready=1
    break
  fi
  sleep 0.5
done
[ -n "$ready" ] || { echo "webhook not ready (log: $CO_CLUSTER_DIR/webhook-bench.log)" >&2; exit 1; }

metric() { kc get --raw /metrics | grep '^apiserver_admission_webhook_admission_duration_seconds_' |
  grep "name=\"$hook\"" | grep 'operation="CREATE"'; }
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
own() { # the operator's own histograms (none for the others)
  [ "$WEBHOOK" != operator ] || curl -s "http://127.0.0.1:$((PORT + 1))/metrics" | grep "^confidential_operator_$1_seconds_bucket"
}
conns() { [ "$WEBHOOK" != operator ] || curl -s "http://127.0.0.1:$((PORT + 1))/metrics" | awk '/^confidential_operator_webhook_connections_total/ {print $2}'; }
before=$(metric || true)
h_before=$(own webhook_handler) r_before=$(own webhook_request) l_before=$(own loop_busy) c_before=$(conns)
cpu0=$(cpu)
# One curl process drives all clients (--parallel, HTTP/2 to the API server): no fork per
# request, so the load generator does not take the CPU the API server and the webhook need.
# One curl config per wave of C creates (WAVE set), or one for all N.
reqs=$(mktemp -d)
for i in $(seq 1 "$N"); do
  f=$reqs/all
  [ -z "${WAVE:-}" ] || f=$reqs/$(printf '%06d' $(((i - 1) / C)))
  [ ! -s "$f" ] || echo next >>"$f"
  printf '%s\n' "url = \"$APISERVER_URL/$path\"" 'request = "POST"' \
    "header = \"Authorization: Bearer $CO_ADMIN_TOKEN\"" 'header = "Content-Type: application/json"' \
    "data = \"${body//NAME/$i}\"" \
    "cacert = \"$CO_CA_FILE\"" 'output = "/dev/null"' 'write-out = "%{http_code} %{time_total}\n"' silent >>"$f"
done
t0=$(date +%s.%N)
out=$(for f in "$reqs"/*; do
  w0=$(date +%s.%N)
  curl -s --parallel --parallel-immediate --parallel-max "$C" --config "$f" 2>/dev/null
  # a wave: C creates sent at once, then quiet until WAVE seconds after it began
  [ -z "${WAVE:-}" ] || sleep "$(echo "x = $WAVE - ($(date +%s.%N) - $w0); if (x > 0) x else 0" | bc -l)"
done)
rm -rf "$reqs"
t1=$(date +%s.%N)
codes=$(awk '{print $1}' <<<"$out" | sort | uniq -c | tr '\n' ' ')
after=$(metric || true)
h_after=$(own webhook_handler) r_after=$(own webhook_request) l_after=$(own loop_busy) c_after=$(conns)
cpu1=$(cpu)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
hz=$(getconf CLK_TCK)
mutated=$(kc -n "$ns" get "${KIND}s" -o json |
  jq '[.items[] | select((.spec.runtimeClassName // .spec.template.spec.runtimeClassName) == "kata-qemu")] | length')
quantiles() {
  [ -n "$2" ] || return 0
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
total = d[-1][1] if d else 0
if total == 0: sys.exit(0)  # no call in the window (no webhook)
def q(p):
    for le, c in d:
        if c >= p * total: return le
le5 = next((c for le, c in d if abs(le - 0.005) < 1e-9), None)
share = f", {100 * le5 / total:.1f} % <= 5 ms" if le5 is not None else ""
top = next((le for le, c in reversed(d) if c < total), None)
share += f", longest > {top*1000:g} ms" if top is not None and top != float("inf") else ""
print(f"{sys.argv[3]}: {int(total)} calls, p50 <= {q(0.5)*1000:g} ms, p99 <= {q(0.99)*1000:g} ms (bucket bounds){share}")
PY
}
quantiles "$before" "$after" "API server (apiserver_admission_webhook_admission_duration_seconds)"
quantiles "$r_before" "$r_after" "webhook, request read to answer (confidential_operator_webhook_request_seconds)"
quantiles "$h_before" "$h_after" "webhook, handler only (confidential_operator_webhook_handler_seconds)"
quantiles "$l_before" "$l_after" "controller loop turns (confidential_operator_loop_busy_seconds)"
client=$(awk '{print $2 * 1000}' <<<"$out" | sort -n | awk '{v[NR] = $1} END {
  printf "p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms", v[int(NR * 0.5 + 0.5)], v[int(NR * 0.9 + 0.5)], v[int(NR * 0.99 + 0.5)], v[NR] }')
echo "creates as the client sees them (curl time_total): $client"
if [ -n "${RAW:-}" ]; then
  printf '%s\n' "$before" >"$RAW.api-before"
  printf '%s\n' "$after" >"$RAW.api-after"
  awk '{print $2 * 1000}' <<<"$out" >"$RAW.client"
fi
[ "$WEBHOOK" != operator ] || echo "webhook connections accepted during the run: $(echo "${c_after:-0} - ${c_before:-0}" | bc)"
echo "creates: $N by $C clients in $(echo "$t1 - $t0" | bc) s; HTTP codes: $codes; ${KIND}s with the class: $mutated"
[ "$WEBHOOK" = none ] || echo "$WEBHOOK webhook: RSS $((rss / 1024)) MiB after the run, CPU $(echo "scale=2; ($cpu1 - $cpu0) / $hz" | bc) s for the run"
