#!/usr/bin/env bash
# Operates on the local control plane started by hack/cluster-up.sh (fault injection for tests).
#
#   hack/cluster.sh env                      print the path of cluster.env (source it)
#   hack/cluster.sh status                   components, PIDs, health
#   hack/cluster.sh stop    <component>      kill by recorded PID and wait for exit
#   hack/cluster.sh start   <component>      start with the same flags as cluster-up, wait healthy
#   hack/cluster.sh restart <component>      stop + start
#   hack/cluster.sh compact                  compact etcd at its current revision (physical);
#                                            prints the revision on stdout
#   hack/cluster.sh kubectl ARGS...          the built kubectl with the admin kubeconfig
#
# <component>: etcd | apiserver | controller-manager | scheduler | kwok  (or the full binary names)
# CO_CLUSTER_DIR selects the cluster (default /tmp/co-cluster).
set -euo pipefail
CO_LOG_TAG=cluster
# shellcheck source=hack/lib/cluster-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/cluster-lib.sh"

usage() { sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

cmd_start() {
  local c=$1 pid
  if pid=$(co_pid "$c"); then
    co_log "$c already running (pid $pid)"
    return 0
  fi
  co_start "$c"
  co_wait "$c"
  co_log "$c started (pid $(co_pid "$c")) and healthy at $(co_elapsed)s"
}

cmd_compact() {
  local rev resp
  # Any range answers with the store's current revision in its header; key "\0" is cheap.
  resp=$(curl -sf --max-time 5 -X POST "$ETCD_URL/v3/kv/range" -d '{"key":"AA==","limit":1}') \
    || co_die "etcd range request to $ETCD_URL failed"
  rev=$(jq -r '.header.revision' <<< "$resp")
  [[ "$rev" =~ ^[0-9]+$ ]] || co_die "no revision in etcd answer: $resp"
  resp=$(curl -s --max-time 30 -X POST "$ETCD_URL/v3/kv/compaction" \
    -d "{\"revision\":\"$rev\",\"physical\":true}")
  if jq -e '.header' <<< "$resp" > /dev/null 2>&1; then
    co_log "etcd compacted at revision $rev"
  elif grep -q 'compacted' <<< "$resp"; then
    # The apiserver compacts on its own every 5 min; that already covers this revision.
    co_log "etcd was already compacted at or beyond revision $rev"
  else
    co_die "etcd compaction at $rev failed: $resp"
  fi
  # Verify: reading below the compacted revision must now fail with ErrCompacted.
  if ((rev > 1)); then
    resp=$(curl -s --max-time 5 -X POST "$ETCD_URL/v3/kv/range" \
      -d "{\"key\":\"AA==\",\"revision\":\"$((rev - 1))\"}")
    grep -q 'required revision has been compacted' <<< "$resp" \
      || co_die "compaction not effective: range at $((rev - 1)) answered $resp"
    co_log "verified: range at revision $((rev - 1)) -> 'required revision has been compacted'"
  fi
  echo "$rev"
}

cmd_status() {
  local c pid
  for c in "${CO_COMPONENTS[@]}"; do
    if pid=$(co_pid "$c"); then printf '%-24s running  pid %s\n' "$c" "$pid"
    else printf '%-24s STOPPED\n' "$c"; fi
  done
  printf '%-24s %s\n' "apiserver /readyz" \
    "$(curl -s --max-time 3 --cacert "$CO_PKI/ca.crt" "https://127.0.0.1:$APISERVER_PORT/readyz" 2>&1 || echo unreachable)"
  printf '%-24s %s\n' "etcd /health" "$(curl -s --max-time 3 "$ETCD_URL/health" 2>&1 || echo unreachable)"
}

[ $# -ge 1 ] || usage
op=$1; shift
case "$op" in
  env)
    [ -f "$CO_ENV_FILE" ] || co_die "no cluster in $CO_CLUSTER_DIR; run hack/cluster-up.sh"
    echo "$CO_ENV_FILE"
    ;;
  status) co_load_env; cmd_status ;;
  start | stop | restart)
    [ $# -eq 1 ] || usage
    c=$(co_component "$1") || { co_log "unknown component '$1'"; usage; }
    co_load_env
    case "$op" in
      stop) co_stop "$c" ;;
      start) cmd_start "$c" ;;
      restart) co_stop "$c"; cmd_start "$c" ;;
    esac
    ;;
  compact) co_load_env; cmd_compact ;;
  kubectl) co_load_env; co_kubectl "$@" ;;
  -h | --help | help) usage ;;
  *) co_log "unknown command '$op'"; usage ;;
esac
