# shellcheck shell=bash
# Shared functions for the local control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kwok) on 127.0.0.1. Sourced by hack/cluster-up.sh, hack/cluster-down.sh and
# hack/cluster.sh. Every component's command line lives here (co_start_<component>), so a
# restart from hack/cluster.sh uses exactly the flags cluster-up used.
#
# Reference: shared/reference/local-control-plane.md (sections 2.3, 3, 4.1).

CO_HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Absolute and without a trailing slash: PID ownership checks match on "$CO_CLUSTER_DIR/".
CO_CLUSTER_DIR=$(realpath -m "${CO_CLUSTER_DIR:-/tmp/co-cluster}")
case "$CO_CLUSTER_DIR" in
  / | "$HOME" | /tmp | /root | /home) echo "refusing CO_CLUSTER_DIR=$CO_CLUSTER_DIR (it gets rm -rf'ed)" >&2; exit 1 ;;
esac
# Start order; stop order is the reverse.
CO_COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

co_log() { printf '[%s %s] %s\n' "$(date +%H:%M:%S)" "${CO_LOG_TAG:-cluster}" "$*" >&2; }
co_die() { co_log "ERROR: $*"; exit 1; }

# Seconds since the script started, with one decimal, for the timing lines.
CO_T0=$(date +%s.%N)
co_elapsed() { awk -v a="$CO_T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# Accept short names on the command line.
co_component() {
  case "$1" in
    etcd) echo etcd ;;
    apiserver | kube-apiserver) echo kube-apiserver ;;
    controller-manager | kcm | kube-controller-manager) echo kube-controller-manager ;;
    scheduler | kube-scheduler) echo kube-scheduler ;;
    kwok) echo kwok ;;
    *) return 1 ;;
  esac
}

# ---------------------------------------------------------------------------------------------
# Binaries
# ---------------------------------------------------------------------------------------------

# The cache layout must match hack/build-control-plane.sh (same variables, same defaults).
co_cache_out() {
  local k8s=${K8S_VERSION:-v1.36.3} etcd=${ETCD_VERSION:-v3.6.16} kwok=${KWOK_VERSION:-v0.8.0}
  local cache=${CO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/confidential-operator}
  echo "$cache/cp-k8s-$k8s-etcd-$etcd-kwok-$kwok"
}

co_bins_complete() {
  local out=$1 b
  for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok; do
    [ -x "$out/bin/$b" ] || return 1
  done
  [ -s "$out/kwok.yaml" ]
}

# Sets CO_CP_OUT, CO_CP_BIN, CO_KUBECTL, CO_KWOK_STAGES; builds the binaries if they are missing.
co_ensure_binaries() {
  CO_CP_OUT=$(co_cache_out)
  if ! co_bins_complete "$CO_CP_OUT"; then
    co_log "control-plane binaries missing under $CO_CP_OUT"
    co_log "building them with hack/build-control-plane.sh: a COLD BUILD TAKES 20-40 MIN on 2 cores"
    co_log "(progress goes to stderr below; a second run reuses the cache)"
    CO_CP_OUT=$("$CO_HACK_DIR/build-control-plane.sh") || co_die "hack/build-control-plane.sh failed"
    co_bins_complete "$CO_CP_OUT" || co_die "build finished but binaries are incomplete in $CO_CP_OUT"
  fi
  CO_CP_BIN="$CO_CP_OUT/bin"
  CO_KUBECTL="$CO_CP_BIN/kubectl"
  CO_KWOK_STAGES="$CO_CP_OUT/kwok.yaml"
}

# ---------------------------------------------------------------------------------------------
# State directory layout
# ---------------------------------------------------------------------------------------------

co_paths() {
  D=$CO_CLUSTER_DIR
  CO_ENV_FILE="$D/cluster.env"
  CO_PKI="$D/pki"
  CO_LOGS="$D/logs"
  CO_PIDS="$D/pids"
  CO_KUBECONFIG="$D/admin.kubeconfig"
  CO_KWOK_CONFIG="$D/kwok.yaml"
}
co_paths

# Loads cluster.env of a running (or stale) cluster; fails if there is none.
co_load_env() {
  [ -f "$CO_ENV_FILE" ] || co_die "no cluster in $CO_CLUSTER_DIR (missing $CO_ENV_FILE); run hack/cluster-up.sh"
  # shellcheck disable=SC1090
  . "$CO_ENV_FILE"
}

co_write_env() {
  local tmp="$CO_ENV_FILE.tmp"
  cat > "$tmp" <<EOF
# Local control plane started by hack/cluster-up.sh. Source this file.
export CO_CLUSTER_DIR='$CO_CLUSTER_DIR'
export KUBECONFIG='$CO_KUBECONFIG'
export CO_CP_OUT='$CO_CP_OUT'
export CO_CP_BIN='$CO_CP_BIN'
export CO_KUBECTL='$CO_KUBECTL'
export CO_KWOK_STAGES='$CO_KWOK_STAGES'
export CO_KWOK_CONFIG='$CO_KWOK_CONFIG'
export CO_NODES='$CO_NODES'
export APISERVER_PORT='$APISERVER_PORT'
export APISERVER_URL='https://127.0.0.1:$APISERVER_PORT'
export CO_CA_FILE='$CO_PKI/ca.crt'
export CO_ADMIN_TOKEN='$CO_ADMIN_TOKEN'
export ETCD_PORT='$ETCD_PORT'
export ETCD_PEER_PORT='$ETCD_PEER_PORT'
export ETCD_URL='http://127.0.0.1:$ETCD_PORT'
export KCM_PORT='$KCM_PORT'
export SCHEDULER_PORT='$SCHEDULER_PORT'
export KWOK_PORT='$KWOK_PORT'
EOF
  mv "$tmp" "$CO_ENV_FILE"
}

# ---------------------------------------------------------------------------------------------
# Ports and PKI
# ---------------------------------------------------------------------------------------------

# Prints N distinct free loopback ports. All sockets are held open together so the kernel
# cannot hand out the same port twice; a small race with other processes remains.
co_free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

co_gen_pki() {
  mkdir -p "$CO_PKI"
  (
    cd "$CO_PKI" || exit 1
    # Throw-away CA; it signs the apiserver serving cert and is the root CA handed to pods.
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=co-local-ca" \
      -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
      -keyout apiserver.key -out apiserver.csr 2>/dev/null
    # SANs: Go rejects CN-only certs; 10.0.0.1 is the 'kubernetes' Service IP of the range below.
    printf '%s\n' \
      'subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local' \
      'extendedKeyUsage=serverAuth' 'keyUsage=digitalSignature,keyEncipherment' > apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile apiserver.ext -out apiserver.crt 2>/dev/null
    # Service-account token signing pair (TokenRequest, token controller).
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    # Static admin token (system:masters bypasses RBAC); everything else goes through RBAC.
    openssl rand -hex 24 > admin.token
    printf '%s,admin,admin,system:masters\n' "$(cat admin.token)" > tokens.csv
    chmod 600 ./*.key tokens.csv admin.token
  )
  CO_ADMIN_TOKEN=$(cat "$CO_PKI/admin.token")
}

# kwok's config for this cluster: an explicit KwokConfiguration plus the Stage documents from the
# build cache. The options must be spelled out: kwok v0.8.0 applies its defaults only when the
# config has no KwokConfiguration at all, so an empty 'options: {}' leaves e.g.
# nodeLeaseParallelism at 0 and kwok exits ("node leases parallelism must be greater than 0").
co_write_kwok_config() {
  {
    cat <<'EOF'
kind: KwokConfiguration
apiVersion: config.kwok.x-k8s.io/v1alpha1
options:
  podPlayStageParallelism: 4
  nodePlayStageParallelism: 4
  nodeLeaseParallelism: 4
  podsOnNodeSyncParallelism: 1
  enablePodsOnNodeSyncListPager: true
  enablePodsOnNodeSyncStreamWatch: false
  enableDebuggingHandlers: true
  enableProfilingHandler: false
  enableContentionProfiling: false
EOF
    # Every document of the stage file except a KwokConfiguration.
    awk 'function flush() { if (doc != "" && doc !~ /(^|\n)kind: KwokConfiguration/) printf "---\n%s", doc; doc = "" }
         /^---[[:space:]]*$/ { flush(); next } { doc = doc $0 "\n" } END { flush() }' "$CO_KWOK_STAGES"
  } > "$CO_KWOK_CONFIG"
  grep -q '^kind: Stage' "$CO_KWOK_CONFIG" || co_die "no kwok Stage documents in $CO_KWOK_STAGES"
}

co_write_kubeconfig() {
  local tmp="$CO_KUBECONFIG.tmp"
  cat > "$tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: co-local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 < "$CO_PKI/ca.crt")
users:
- name: admin
  user:
    token: $CO_ADMIN_TOKEN
contexts:
- name: co-local
  context: {cluster: co-local, user: admin}
current-context: co-local
EOF
  chmod 600 "$tmp"
  mv "$tmp" "$CO_KUBECONFIG"
}

# ---------------------------------------------------------------------------------------------
# Process handling (by recorded PID only)
# ---------------------------------------------------------------------------------------------

# Runs "$@" detached (own session, so a Ctrl-C or process-group kill of the caller does not
# take the cluster down) and records its PID. The inner shell writes its own PID and then
# execs, so the PID file names the component process itself even if setsid had to fork.
co_spawn() {
  local name=$1; shift
  local pidfile="$CO_PIDS/$name.pid" i
  mkdir -p "$CO_PIDS" "$CO_LOGS"
  rm -f "$pidfile"
  printf '\n==== %s start %s\n' "$(date -Is)" "$name" >> "$CO_LOGS/$name.log"
  # shellcheck disable=SC2016 # $$ and $@ belong to the inner shell
  setsid bash -c 'echo $$ > "$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$pidfile" "$@" \
    < /dev/null >> "$CO_LOGS/$name.log" 2>&1 &
  for i in $(seq 100); do [ -s "$pidfile" ] && return 0; sleep 0.05; done
  co_die "$name: no pid file after 5s"
}

# Prints the PID of a component if it is alive AND is ours: its command line must mention the
# cluster dir (every component has a flag pointing into it), which protects against PID reuse.
co_pid() {
  local pidfile="$CO_PIDS/$1.pid" pid
  [ -s "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$CO_CLUSTER_DIR/" || return 1
  echo "$pid"
}

# True once the process is gone (or a zombie: in a container nothing may reap it).
# Builtins only: this runs in a polling loop.
co_gone() {
  local st
  { read -r st < "/proc/$1/stat"; } 2> /dev/null || return 0
  st=${st##*) }
  [ "${st:0:1}" = Z ]
}
co_wait_gone() {
  local pid=$1 deadline=$((${EPOCHREALTIME/./} + $2 * 1000000))
  while ((${EPOCHREALTIME/./} < deadline)); do co_gone "$pid" && return 0; sleep 0.1; done
  co_gone "$pid"
}

# SIGTERM first (graceful). kube-apiserver keeps serving open watches for up to a minute after
# SIGTERM; the Kubernetes signal handler exits at once on a SECOND signal, so that comes next,
# then SIGKILL as a last resort.
co_stop() {
  local name=$1 pid
  if ! pid=$(co_pid "$name"); then
    rm -f "$CO_PIDS/$name.pid"
    return 0
  fi
  co_log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2> /dev/null || true
  if ! co_wait_gone "$pid" "${CO_STOP_GRACE:-3}"; then
    co_log "$name (pid $pid) still running after ${CO_STOP_GRACE:-3}s, sending a second SIGTERM"
    kill -TERM "$pid" 2> /dev/null || true
    if ! co_wait_gone "$pid" 3; then
      co_log "$name (pid $pid) still running, sending SIGKILL"
      kill -KILL "$pid" 2> /dev/null || true
      co_wait_gone "$pid" 5 || co_die "$name (pid $pid) survived SIGKILL"
    fi
  fi
  rm -f "$CO_PIDS/$name.pid"
}

co_stop_all() {
  local i
  for ((i = ${#CO_COMPONENTS[@]} - 1; i >= 0; i--)); do co_stop "${CO_COMPONENTS[$i]}"; done
}

# Polls a URL until it answers 200 with the expected body prefix; fails early if the process died.
co_wait_http() {
  local name=$1 url=$2 timeout=$3 expect=$4 start body
  shift 4
  start=$SECONDS
  while :; do
    if body=$(curl -sf --max-time 2 "$@" "$url" 2> /dev/null); then
      [ -z "$expect" ] || [[ "$body" == "$expect"* ]] && return 0
    fi
    co_pid "$name" > /dev/null || co_die "$name exited; last log lines:$(printf '\n'; tail -n 25 "$CO_LOGS/$name.log")"
    ((SECONDS - start < timeout)) || co_die "$name not healthy at $url after ${timeout}s; see $CO_LOGS/$name.log"
    sleep 0.2
  done
}

# ---------------------------------------------------------------------------------------------
# Components: the ONE place their command lines are defined
# ---------------------------------------------------------------------------------------------

co_start_etcd() {
  mkdir -p "$D/etcd"
  co_spawn etcd "$CO_CP_BIN/etcd" \
    --name=co --data-dir="$D/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="co=http://127.0.0.1:$ETCD_PEER_PORT" \
    --enable-grpc-gateway=true \
    --unsafe-no-fsync=true \
    --watch-progress-notify-interval=5s \
    --log-level=warn
}
co_wait_etcd() { co_wait_http etcd "http://127.0.0.1:$ETCD_PORT/health" "${1:-30}" '{"health":"true"'; }

# Audit log (Metadata level, ServiceAccounts only, so it stays small): who used which verb on which
# resource. test/e2e/test_install.sh compares the verbs the operator's ServiceAccount used with
# the verbs its RBAC grants.
co_start_kube_apiserver() {
  printf '%s\n' 'apiVersion: audit.k8s.io/v1' 'kind: Policy' 'omitStages: [RequestReceived]' 'rules:' \
    '- {level: Metadata, userGroups: ["system:serviceaccounts"]}' '- {level: None}' > "$D/audit-policy.yaml"
  co_spawn kube-apiserver "$CO_CP_BIN/kube-apiserver" \
    --audit-policy-file="$D/audit-policy.yaml" --audit-log-path="$CO_LOGS/audit.log" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --secure-port="$APISERVER_PORT" \
    --advertise-address=127.0.0.1 \
    --cert-dir="$D/apiserver-certs" \
    --tls-cert-file="$CO_PKI/apiserver.crt" --tls-private-key-file="$CO_PKI/apiserver.key" \
    --client-ca-file="$CO_PKI/ca.crt" --token-auth-file="$CO_PKI/tokens.csv" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$CO_PKI/sa.pub" \
    --service-account-signing-key-file="$CO_PKI/sa.key" \
    --service-cluster-ip-range=10.0.0.0/24 \
    --authorization-mode=Node,RBAC \
    --allow-privileged=true \
    --endpoint-reconciler-type=none \
    --profiling=false \
    --v=1
}
co_wait_kube_apiserver() {
  co_wait_http kube-apiserver "https://127.0.0.1:$APISERVER_PORT/readyz" "${1:-90}" ok \
    --cacert "$CO_PKI/ca.crt"
}

# The admin kubeconfig carries system:masters; --authorization-always-allow-paths lets the
# health checks through unauthenticated.
co_start_kube_controller_manager() {
  co_spawn kube-controller-manager "$CO_CP_BIN/kube-controller-manager" \
    --kubeconfig="$CO_KUBECONFIG" \
    --authentication-kubeconfig="$CO_KUBECONFIG" --authorization-kubeconfig="$CO_KUBECONFIG" \
    --authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" \
    --cert-dir="$D/kcm-certs" \
    --leader-elect=false \
    --controllers='*' \
    --service-account-private-key-file="$CO_PKI/sa.key" \
    --root-ca-file="$CO_PKI/ca.crt" \
    --cluster-signing-cert-file="$CO_PKI/ca.crt" --cluster-signing-key-file="$CO_PKI/ca.key" \
    --node-monitor-period=2s \
    --kube-api-qps=100 --kube-api-burst=200 \
    --profiling=false \
    --v=1
}
co_wait_kube_controller_manager() {
  co_wait_http kube-controller-manager "https://127.0.0.1:$KCM_PORT/healthz" "${1:-60}" ok -k
}

co_start_kube_scheduler() {
  co_spawn kube-scheduler "$CO_CP_BIN/kube-scheduler" \
    --kubeconfig="$CO_KUBECONFIG" \
    --authentication-kubeconfig="$CO_KUBECONFIG" --authorization-kubeconfig="$CO_KUBECONFIG" \
    --authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics \
    --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" \
    --cert-dir="$D/scheduler-certs" \
    --leader-elect=false \
    --profiling=false \
    --v=1
}
co_wait_kube_scheduler() {
  co_wait_http kube-scheduler "https://127.0.0.1:$SCHEDULER_PORT/healthz" "${1:-60}" ok -k
}

# kwok plays kubelet for every Node (--manage-all-nodes): node Ready + lease heartbeats, pods
# Running/Ready, deletion of terminating pods. Its logs/exec server stays on loopback.
co_start_kwok() {
  co_spawn kwok "$CO_CP_BIN/kwok" \
    --kubeconfig="$CO_KUBECONFIG" \
    --config="$CO_KWOK_CONFIG" \
    --manage-all-nodes=true \
    --cidr=10.244.0.0/16 \
    --node-ip=10.200.0.1 \
    --node-lease-duration-seconds=40 \
    --server-address="127.0.0.1:$KWOK_PORT"
}
co_wait_kwok() { co_wait_http kwok "http://127.0.0.1:$KWOK_PORT/healthz" "${1:-60}" ''; }

# Dispatch helpers: co_start <component>, co_wait <component> [timeout].
co_start() { "co_start_${1//-/_}"; }
co_wait() { "co_wait_${1//-/_}" "${2:-}"; }

# True if every component is alive and the apiserver is ready.
co_cluster_healthy() {
  local c
  [ -f "$CO_ENV_FILE" ] || return 1
  for c in "${CO_COMPONENTS[@]}"; do co_pid "$c" > /dev/null || return 1; done
  curl -sf --max-time 3 --cacert "$CO_PKI/ca.crt" "https://127.0.0.1:$APISERVER_PORT/readyz" > /dev/null
}

co_kubectl() { "$CO_KUBECTL" --kubeconfig="$CO_KUBECONFIG" "$@"; }
