#!/usr/bin/env bash
# Starts a local Kubernetes control plane on 127.0.0.1 only, for tests and the demo:
# etcd -> kube-apiserver -> kube-controller-manager + kube-scheduler -> kwok -> N fake nodes.
#
#   hack/cluster-up.sh                       start (or reuse) the cluster; prints cluster.env on stdout
#   eval "$(hack/cluster-up.sh)"             ... and export KUBECONFIG, CO_KUBECTL, ports, etc.
#
# Environment:
#   CO_CLUSTER_DIR   state dir (default /tmp/co-cluster): pki/, admin.kubeconfig, logs/, pids/, cluster.env
#   CO_NODES         number of kwok nodes kwok-node-0..N-1 (default 2)
#   CO_NODE_KERNEL   status.nodeInfo.kernelVersion of the nodes (default 6.1.0-kwok)
#   CO_CACHE, K8S_VERSION, ETCD_VERSION, KWOK_VERSION   passed to hack/build-control-plane.sh
#
# Idempotent: a healthy cluster in CO_CLUSTER_DIR is reused; a stale one is cleaned and restarted.
# Binaries come from the build cache; if missing they are built first (a cold build is slow).
set -euo pipefail
CO_LOG_TAG=cluster-up
# shellcheck source=hack/lib/cluster-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/cluster-lib.sh"

CO_NODES=${CO_NODES:-2}
CO_NODE_KERNEL=${CO_NODE_KERNEL:-6.1.0-kwok}
[[ "$CO_NODES" =~ ^[0-9]+$ ]] || co_die "CO_NODES must be a number, got '$CO_NODES'"

# --- reuse or clean up --------------------------------------------------------------------------
if [ -f "$CO_ENV_FILE" ] && (co_load_env && co_cluster_healthy); then
  co_log "cluster already running in $CO_CLUSTER_DIR; reusing it"
  cat "$CO_ENV_FILE"
  exit 0
fi
if [ -e "$CO_CLUSTER_DIR" ]; then
  co_log "stale state in $CO_CLUSTER_DIR: stopping recorded processes and removing it"
  co_stop_all
  rm -rf "$CO_CLUSTER_DIR"
fi

co_ensure_binaries
t_bin=$(co_elapsed)

mkdir -p "$CO_CLUSTER_DIR" "$CO_LOGS" "$CO_PIDS"
chmod 700 "$CO_CLUSTER_DIR"
# If anything below fails, do not leave half a cluster running.
on_exit() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    co_log "startup failed (rc=$rc); stopping what was started, logs kept in $CO_LOGS"
    co_stop_all
  fi
}
trap on_exit EXIT

read -r ETCD_PORT ETCD_PEER_PORT APISERVER_PORT KCM_PORT SCHEDULER_PORT KWOK_PORT <<< "$(co_free_ports 6)"
co_gen_pki
co_write_kubeconfig
co_write_kwok_config
co_write_env
co_log "ports: etcd=$ETCD_PORT apiserver=$APISERVER_PORT kcm=$KCM_PORT scheduler=$SCHEDULER_PORT kwok=$KWOK_PORT; pki+kubeconfig at $(co_elapsed)s"

co_start etcd
co_wait etcd
co_log "etcd healthy at $(co_elapsed)s"

co_start kube-apiserver
co_wait kube-apiserver
co_log "kube-apiserver ready at $(co_elapsed)s"

co_start kube-controller-manager
co_start kube-scheduler
co_start kwok

# Nodes are created right away: kwok picks them up as soon as it runs. No kwok NoSchedule
# taint, so the operator's pods land without tolerations. Each node gets its own InternalIP
# (kwok keeps an address it finds) and a kernel version later features compare against.
nodes_yaml() {
  local i
  for ((i = 0; i < CO_NODES; i++)); do
    cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    node.alpha.kubernetes.io/ttl: "0"
    kwok.x-k8s.io/node: fake
  labels:
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    beta.kubernetes.io/os: linux
    beta.kubernetes.io/arch: amd64
    node-role.kubernetes.io/worker: ""
    topology.kubernetes.io/zone: z$((i % 2))
    type: kwok
spec: {}
status:
  addresses:
  - {type: InternalIP, address: "10.200.0.$((i + 1))"}
  - {type: Hostname, address: "kwok-node-$i"}
  allocatable: {cpu: "32", memory: 256Gi, pods: "110", ephemeral-storage: 100Gi}
  capacity:    {cpu: "32", memory: 256Gi, pods: "110", ephemeral-storage: 100Gi}
  nodeInfo:
    architecture: amd64
    operatingSystem: linux
    osImage: Debian GNU/Linux 12 (bookworm)
    kernelVersion: "$CO_NODE_KERNEL"
    containerRuntimeVersion: containerd://2.0.5-k3s1
    kubeletVersion: "${K8S_VERSION:-v1.36.3}"
    kubeProxyVersion: "${K8S_VERSION:-v1.36.3}"
    machineID: "kwok-node-$i"
    systemUUID: "00000000-0000-0000-0000-00000000000$i"
    bootID: "boot-kwok-node-$i"
EOF
  done
}
if ((CO_NODES > 0)); then
  nodes_yaml | co_kubectl create -f - > /dev/null
fi

co_wait kube-controller-manager
co_wait kube-scheduler
co_wait kwok
co_log "controller-manager, scheduler, kwok healthy at $(co_elapsed)s"

# Ready means: condition Ready=True AND the node.kubernetes.io/* taints added at creation are
# gone (node-lifecycle removes them), so pods can actually be scheduled.
start=$SECONDS
while :; do
  ready=$(co_kubectl get nodes -o json | jq '[.items[]
      | select(any(.status.conditions[]?; .type == "Ready" and .status == "True"))
      | select(all(.spec.taints[]?; (.key | startswith("node.kubernetes.io/")) | not))] | length')
  [ "$ready" -ge "$CO_NODES" ] && break
  ((SECONDS - start < 60)) || co_die "only $ready/$CO_NODES nodes Ready+untainted after 60s; see $CO_LOGS"
  sleep 0.3
done
co_log "$CO_NODES nodes Ready at $(co_elapsed)s"

# ServiceAccount admission is on: pods in 'default' need serviceaccount/default (token controller).
start=$SECONDS
until co_kubectl get serviceaccount default -n default > /dev/null 2>&1; do
  ((SECONDS - start < 30)) || co_die "serviceaccount default/default not created after 30s"
  sleep 0.3
done

trap - EXIT
co_log "cluster up in $(co_elapsed)s (binaries located in ${t_bin}s); env: $CO_ENV_FILE"
co_log "use: . $CO_ENV_FILE && \"\$CO_KUBECTL\" get nodes"
cat "$CO_ENV_FILE"
