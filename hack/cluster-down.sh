#!/usr/bin/env bash
# Stops the local control plane started by hack/cluster-up.sh, by recorded PID only
# (kwok, scheduler, controller-manager, apiserver, etcd), then removes the state dir.
#
#   CO_CLUSTER_DIR   state dir (default /tmp/co-cluster)
#   CO_KEEP=1        keep the state dir (logs, certs, etcd data) for inspection
set -euo pipefail
CO_LOG_TAG=cluster-down
# shellcheck source=hack/lib/cluster-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/cluster-lib.sh"

if [ ! -e "$CO_CLUSTER_DIR" ]; then
  co_log "nothing to do: $CO_CLUSTER_DIR does not exist"
  exit 0
fi
# Remember the PIDs before stopping, to verify afterwards that each one is really gone.
pids=()
for c in "${CO_COMPONENTS[@]}"; do
  if pid=$(co_pid "$c"); then pids+=("$c:$pid"); fi
done
co_stop_all

left=""
for e in ${pids[@]+"${pids[@]}"}; do
  pid=${e#*:}
  if ! co_gone "$pid"; then
    left="$left ${e%%:*}($pid)"
  fi
done
[ -z "$left" ] || co_die "still running:$left"

if [ "${CO_KEEP:-0}" = 1 ]; then
  co_log "stopped; state kept in $CO_CLUSTER_DIR (CO_KEEP=1)"
else
  rm -rf "$CO_CLUSTER_DIR"
  co_log "stopped; removed $CO_CLUSTER_DIR"
fi
