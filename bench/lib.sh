# shellcheck shell=bash
# Shared by bench/run.sh and bench/profile.sh (sourced; expects ROOT, OUT, BIN, N_NS, N_DEP,
# LAT_N, CREATE_PAR, KEEP_CLUSTER and CO_CLUSTER_DIR set, and the working directory at ROOT).

PY="python3 $ROOT/bench/analyze.py"
TCK=$(getconf CLK_TCK)

log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

CTRL_PID=""
SAMPLER_PID=""
PERF_PID=""
PROBE_OK=0
bench_cleanup() {
  local rc=$?
  [ -n "$PERF_PID" ] && kill -INT "$PERF_PID" 2> /dev/null && wait "$PERF_PID" 2> /dev/null
  [ -n "$SAMPLER_PID" ] && kill "$SAMPLER_PID" 2> /dev/null && wait "$SAMPLER_PID" 2> /dev/null
  if [ -n "$CTRL_PID" ]; then
    kill -TERM "$CTRL_PID" 2> /dev/null && wait "$CTRL_PID" 2> /dev/null
  fi
  if [ "$PROBE_OK" = 1 ]; then
    perf probe -q -d 'probe_confidential:*' > /dev/null 2>&1 || true
    perf probe -q -d 'probe_libcurl:*' > /dev/null 2>&1 || true
  fi
  if [ "$KEEP_CLUSTER" != 1 ]; then
    hack/cluster-down.sh > "$OUT/cluster-down.log" 2>&1 || log "cluster-down failed, see $OUT/cluster-down.log"
  fi
  [ "$rc" -eq 0 ] || log "exit $rc; output kept in $OUT"
}

bench_build() {
  if [ ! -x "$BIN" ]; then
    log "building $BIN (Release)"
    cmake -S "$ROOT" -B "$(dirname "$BIN")" -DCMAKE_BUILD_TYPE=Release -DCO_ASAN=OFF -DCO_UBSAN=OFF > "$OUT/build.log"
    cmake --build "$(dirname "$BIN")" -j2 --target confidential-operator >> "$OUT/build.log"
  fi
}

kc() { "$CO_KUBECTL" --kubeconfig="$KUBECONFIG" "$@"; }
api() { curl -sS --cacert "$CO_CA_FILE" -H "Authorization: Bearer $CO_ADMIN_TOKEN" "$@"; }
scrape() { api "$APISERVER_URL/metrics" > "$1"; }

# Cluster, CRD, RuntimeClasses (as test/e2e wl_setup), kube-controller-manager stopped.
bench_cluster() {
  log "cluster in $CO_CLUSTER_DIR"
  hack/cluster-up.sh > "$OUT/cluster-up.log" 2>&1 || die "cluster-up failed, see $OUT/cluster-up.log"
  # shellcheck disable=SC1091
  . "$CO_CLUSTER_DIR/cluster.env"
  kc apply -f crd/confidentialworkloads.yaml > /dev/null
  kc wait --for=condition=Established crd/confidentialworkloads.confidential.cypherpunk.io --timeout=30s > /dev/null
  local c h
  for c in kata-qemu gvisor; do
    h=$c; [ "$c" = gvisor ] && h=runsc
    kc apply -f - > /dev/null << YAML
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: $c}
handler: $h
scheduling:
  nodeSelector: {runtime.confidential.cypherpunk.io/$c: ready}
YAML
  done
  kc label node kwok-node-0 runtime.confidential.cypherpunk.io/kata-qemu=ready --overwrite > /dev/null
  hack/cluster.sh stop controller-manager >> "$OUT/cluster-up.log" 2>&1 || true
  log "kube-controller-manager stopped: only the operator touches deployments from now on"
}

# bench_load PREFIX: namespaces PREFIX-000.. with N_DEP Deployments each, plus PREFIX-lat (empty)
# and LAT_N single Deployment bodies in $OUT/gen-lat. Sets create_s.
bench_load() {
  local prefix=$1 i
  mkdir -p "$OUT/gen" "$OUT/gen-lat"
  {
    for ((i = 0; i < N_NS; i++)); do
      printf -- '---\napiVersion: v1\nkind: Namespace\nmetadata: {name: %s-%03d}\n' "$prefix" "$i"
    done
    printf -- '---\napiVersion: v1\nkind: Namespace\nmetadata: {name: %s-lat}\n' "$prefix"
  } > "$OUT/gen/namespaces.yaml"
  $PY gen "$prefix" "$N_NS" "$N_DEP" "$OUT/gen"
  $PY gen-each "$prefix-lat" "$LAT_N" "$OUT/gen-lat"
  local t_create0 t_create1 created want
  t_create0=$(date +%s.%N)
  kc create -f "$OUT/gen/namespaces.yaml" > /dev/null
  find "$OUT/gen" -name "$prefix-*.json" -print0 | xargs -0 -P "$CREATE_PAR" -n 1 \
    "$CO_KUBECTL" --kubeconfig="$KUBECONFIG" create -o name -f > "$OUT/create.log" 2>&1 \
    || die "creating Deployments failed: $(grep -v '^deployment' "$OUT/create.log" | head -5)"
  t_create1=$(date +%s.%N)
  created=$(grep -c "^deployment" "$OUT/create.log" || true)
  want=$((N_NS * N_DEP))
  [ "$created" -eq "$want" ] || die "expected $want Deployments created, kubectl reported $created"
  create_s=$(echo "$t_create1 - $t_create0" | bc)
  log "created $want Deployments in ${create_s}s ($CREATE_PAR parallel kubectl create)"
}

# status_of PID -> "rss_kb hwm_kb cpu_ticks rss_anon_kb rss_file_kb"
status_of() {
  local k v rss=0 hwm=0 anon=0 file=0 st
  while read -r k v _; do
    case $k in VmRSS:) rss=$v ;; VmHWM:) hwm=$v ;; RssAnon:) anon=$v ;; RssFile:) file=$v ;; esac
  done < "/proc/$1/status"
  read -r -a st < "/proc/$1/stat"
  echo "$rss $hwm $((st[13] + st[14])) $anon $file"
}
# cpu_ticks_of PID: utime+stime (0 if gone)
cpu_ticks_of() {
  local st
  read -r -a st < "/proc/$1/stat" 2> /dev/null || { echo 0; return; }
  echo $((st[13] + st[14]))
}
# Control plane CPU (apiserver, etcd) and machine CPU, to show where the time goes.
cp_pids() { cat "$CO_CLUSTER_DIR/pids/kube-apiserver.pid" "$CO_CLUSTER_DIR/pids/etcd.pid" 2> /dev/null; }
cp_ticks() { local p s=0; for p in $(cp_pids); do s=$((s + $(cpu_ticks_of "$p"))); done; echo $s; }
machine_busy_ticks() { local c u n s i rest; read -r c u n s i rest < /proc/stat; echo "$((u + n + s)) $i"; }
cpu_s() { echo "scale=2; $1 / $TCK" | bc; }
sampler() {
  local pid=$1 t0=$2
  while [ -e "/proc/$pid/status" ]; do
    printf '%s %s\n' "$(echo "$EPOCHREALTIME - $t0" | bc)" "$(status_of "$pid" 2> /dev/null)" || true
    sleep 0.25
  done
}
# save_smaps PID NAME: memory map breakdown (per mapping RSS) into $OUT/NAME.smaps*
save_smaps() {
  cat "/proc/$1/smaps_rollup" > "$OUT/$2.smaps_rollup" 2> /dev/null || true
  awk '/^[0-9a-f]+-[0-9a-f]+ / {name = ($6 == "" ? "[anon]" : $6)} /^Rss:/ {rss[name] += $2}
       END {for (n in rss) if (rss[n] > 0) printf "%8d kB  %s\n", rss[n], n}' "/proc/$1/smaps" |
    sort -rn > "$OUT/$2.smaps_by_mapping" 2> /dev/null || true
}

# wait_log LOG PATTERN COUNT TIMEOUT_S PID: until COUNT lines of LOG contain PATTERN.
wait_log() {
  local logf=$1 pat=$2 want=$3 deadline=$((SECONDS + $4)) pid=$5 n
  while :; do
    n=$(grep -c -F "$pat" "$logf" || true)
    [ "$n" -ge "$want" ] && return 0
    kill -0 "$pid" 2> /dev/null || die "controller exited: $(tail -3 "$logf")"
    ((SECONDS < deadline)) || die "only $n/$want '$pat' after $4 s"
    sleep 0.05
  done
}
