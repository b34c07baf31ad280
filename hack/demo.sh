#!/usr/bin/env bash
# The demo: a local control plane with two kwok nodes (one opted in), the bundle's namespace,
# CRD and RBAC, the controller running with nothing but the bundle's ServiceAccount token,
# and the samples; then `confidential-operator status`. `hack/demo.sh down` stops it all.
#
# kwok runs no pod for real, so the demo plays the node agent (agent-state), the kubelet (the
# kata-qemu handler in status.runtimeHandlers, the probe pod's `uname -r`) for kwok-node-0; the
# controller creates the RuntimeClasses, verifies the runtime with its probe pod and labels the
# node ready for kata-qemu.
set -euo pipefail
cd "$(dirname "$0")/.."
export CO_CLUSTER_DIR=${CO_CLUSTER_DIR:-/tmp/co-demo}
CO_BIN=${CO_BIN:-$PWD/build/confidential-operator}
PIDFILE=$CO_CLUSTER_DIR/controller.pid
LOG=$CO_CLUSTER_DIR/controller.log
NS=demo

if [ "${1:-}" = "down" ]; then
  if [ -f "$PIDFILE" ]; then kill -TERM "$(cat "$PIDFILE")" 2>/dev/null || true; fi
  hack/cluster-down.sh
  exit 0
fi

t0=$(date +%s)
CO_NODES=2 hack/cluster-up.sh >/dev/null
# shellcheck disable=SC1091
source "$CO_CLUSTER_DIR/cluster.env"
kc() { "$CO_KUBECTL" --kubeconfig="$KUBECONFIG" "$@"; }

if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  kill -TERM "$(cat "$PIDFILE")"; sleep 2
fi

echo "== install: namespaces, CRD, RBAC from the bundle"
kc apply -f manifests/namespace.yaml -f crd/confidentialworkloads.yaml -f manifests/rbac.yaml \
  -f manifests/node-agent-rbac.yaml -f manifests/nodeprep-rbac.yaml >/dev/null
kc wait --for=condition=Established --timeout=30s crd/confidentialworkloads.confidential.cypherpunk.io >/dev/null

echo "== nodes: kwok-node-0 opted in"
kc label node kwok-node-0 confidential.cypherpunk.io/enabled=true --overwrite >/dev/null

echo "== controller: with the bundle's ServiceAccount token only"
token=$(kc -n confidential-system create token confidential-operator-controller --duration=24h)
server=$(kc config view --raw -o jsonpath='{.clusters[0].cluster.server}')
cadata=$(kc config view --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
SA_KUBECONFIG=$CO_CLUSTER_DIR/controller.kubeconfig
cat > "$SA_KUBECONFIG" <<YAML
apiVersion: v1
kind: Config
current-context: controller
contexts: [{name: controller, context: {cluster: demo, user: controller}}]
clusters: [{name: demo, cluster: {server: "$server", certificate-authority-data: "$cadata"}}]
users: [{name: controller, user: {token: "$token"}}]
YAML
chmod 600 "$SA_KUBECONFIG"
"$CO_BIN" controller --kubeconfig="$SA_KUBECONFIG" --leader-elect=true >"$LOG" 2>&1 &
echo $! > "$PIDFILE"
for _ in $(seq 1 100); do grep -q 'became leader' "$LOG" && break; sleep 0.1; done

echo "== kwok-node-0: the agent's and the kubelet's part; the controller probes and labels"
kc annotate node kwok-node-0 confidential.cypherpunk.io/agent-state=Prepared --overwrite >/dev/null
kc patch node kwok-node-0 --subresource=status --type=merge \
  -p '{"status":{"runtimeHandlers":[{"name":"kata-qemu","features":{"recursiveReadOnlyMounts":true}}]}}' >/dev/null
probe=""
for _ in $(seq 1 300); do
  probe=$(kc -n confidential-nodes get pods -l confidential.cypherpunk.io/probe=true \
    --field-selector spec.nodeName=kwok-node-0 -o json |
    jq -r '.items[] | select(.spec.runtimeClassName == "co-probe-kata-qemu") | .metadata.name' | head -1)
  [ -n "$probe" ] && break
  sleep 0.1
done
[ -n "$probe" ] || { echo "no probe pod; see $LOG" >&2; exit 1; }
kc -n confidential-nodes patch pod "$probe" --subresource=status --type=merge -p '{"status":{"phase":"Succeeded",
  "containerStatuses":[{"name":"probe","image":"busybox:1.36","imageID":"","ready":false,"restartCount":0,
  "state":{"terminated":{"exitCode":0,"reason":"Completed","message":"6.12.8-kata\n"}}}]}}' >/dev/null
kc wait --for=jsonpath='{.metadata.labels.runtime\.confidential\.cypherpunk\.io/kata-qemu}'=ready \
  node/kwok-node-0 --timeout=60s >/dev/null

echo "== samples: a ConfidentialWorkload, an Akash-style Deployment (env KATA), a plain one"
kc create namespace "$NS" --dry-run=client -o yaml | kc apply -f - >/dev/null
kc -n "$NS" apply -f manifests/samples/workloads.yaml -f manifests/samples/confidentialworkload.yaml >/dev/null
kc -n "$NS" wait --for=condition=Ready cwl/tenant-app --timeout=90s >/dev/null
kc -n "$NS" rollout status deploy/akash-lease --timeout=60s >/dev/null

echo
"$CO_BIN" status --kubeconfig="$KUBECONFIG" --all-workloads
echo
echo "== pods"
kc -n "$NS" get pods -o custom-columns='POD:.metadata.name,RUNTIMECLASS:.spec.runtimeClassName,NODE:.spec.nodeName,PHASE:.status.phase'
echo
echo "demo ready in $(( $(date +%s) - t0 ))s. Controller log: $LOG"
echo "kubectl: $CO_KUBECTL --kubeconfig=$KUBECONFIG"
echo "stop everything: make demo-down"
