#!/usr/bin/env bash
# The demo: a local control plane with two kwok nodes, the controller running against it,
# and a few objects for it to see. `hack/demo.sh down` stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
export CO_CLUSTER_DIR=${CO_CLUSTER_DIR:-/tmp/co-demo}
CO_BIN=${CO_BIN:-$PWD/build/confidential-operator}
PIDFILE=$CO_CLUSTER_DIR/controller.pid
LOG=$CO_CLUSTER_DIR/controller.log

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
  kill -TERM "$(cat "$PIDFILE")"; sleep 1
fi
kc label node kwok-node-0 confidential.cypherpunk.io/enabled=true --overwrite >/dev/null
"$CO_BIN" controller --kubeconfig="$KUBECONFIG" --log-level=debug >"$LOG" 2>&1 &
echo $! > "$PIDFILE"

for _ in $(seq 1 100); do grep -q 'all caches synced' "$LOG" && break; sleep 0.1; done
kc create namespace demo --dry-run=client -o yaml | kc apply -f - >/dev/null
kc -n demo apply -f - >/dev/null <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: tenant-app}
spec:
  replicas: 2
  selector: {matchLabels: {app: tenant-app}}
  template:
    metadata: {labels: {app: tenant-app}}
    spec:
      containers:
      - name: app
        image: nginx
        env: [{name: KATA, value: "true"}]
YAML
kc -n demo rollout status deployment/tenant-app --timeout=60s >/dev/null
sleep 1

echo
echo "== nodes"
kc get nodes -L confidential.cypherpunk.io/enabled
echo
echo "== deployment demo/tenant-app (pods on kwok nodes)"
kc -n demo get deploy,pods -o wide
echo
echo "== controller log (informer sync and events)"
grep -E 'starting controller|cache synced|all caches synced|informer event.*demo/' "$LOG" | cut -c1-200
echo
echo "demo ready in $(( $(date +%s) - t0 ))s. Controller log: $LOG"
echo "kubectl: $CO_KUBECTL --kubeconfig=$KUBECONFIG"
echo "stop everything: make demo-down"
