#!/usr/bin/env bash
# Scale benchmark of the workload controller on its own local control plane (numbers and
# findings: bench/RESULTS.md).
#
#   bench/run.sh                              full run: 100 namespaces x 100 Deployments
#   N_NS=10 N_DEP=100 bench/run.sh            quick run
#   nohup bench/run.sh > /tmp/co-bench.out 2>&1 &    (the full run takes a few minutes)
#
# Phases:
#   1. cluster: CO_CLUSTER_DIR=/tmp/co-bench hack/cluster-up.sh, CRD, RuntimeClasses kata-qemu and
#      gvisor (as test/e2e wl_setup), then kube-controller-manager is STOPPED, so that nothing but
#      the operator reads or writes Deployments (no ReplicaSets, no status updates) and the API
#      server's request counters for deployments belong to the operator alone.
#   1b. baseline: the controller on the still empty cluster (RSS with 0 Deployments).
#   2. load: N_NS namespaces x N_DEP Deployments, replicas 0, env KATA="" on the container,
#      created with parallel `kubectl create -f` of one List per namespace.
#   3. rewrite: the controller starts (--log-level=info); measured: time to "all caches synced",
#      time to N_NS*N_DEP "workload rewritten" lines, RSS (VmRSS/VmHWM) after sync and at the
#      end, CPU time, API requests by resource and verb (diff of apiserver_request_total), and
#      every Deployment's generation (2 = exactly one spec write).
#   4. restart: the controller is stopped (SIGTERM) and started again with --log-level=debug on
#      the rewritten cluster: must write nothing.
#   5. latency: with that controller synced and idle, LAT_N Deployments are created one at a time
#      (POST with curl, LAT_SLEEP s apart); latency = "workload rewritten" ts - informer "add"
#      ts of the same key (both from the controller's log, ms precision). The API server's
#      PATCH duration histogram over the same window gives the server part of the round trip.
#
# Environment (defaults in brackets):
#   N_NS [100]  N_DEP [100]  QPS [200]  BURST [400]  CREATE_PAR [6]
#   LAT_N [200]  LAT_SLEEP [0.1]  SETTLE [3]  REWRITE_TIMEOUT [600]
#   PERF [0]     1: perf record -g of the controller during the rewrite phase
#   PROBE [1]    1: uprobes (perf probe, needs root + tracefs) during the latency phase, to split
#                event->PATCH into in-process time and PATCH round trip (skipped if unavailable)
#   CTRL_FLAGS [""]  extra controller flags for both runs, e.g. "--list-page-size=100"
#   CO_BENCH_BIN [build-bench/confidential-operator]  (built as Release if missing)
#   GNUTLS_NO_IMPLICIT_INIT [1, as in the image; empty: GnuTLS initialises as without the image]
#   CO_CLUSTER_DIR [/tmp/co-bench]  OUT [/tmp/co-bench-out/<date>]  KEEP_CLUSTER [0]
# Output: $OUT/summary.json plus logs, metric scrapes, RSS samples; a summary on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

N_NS=${N_NS:-100}
N_DEP=${N_DEP:-100}
QPS=${QPS:-200}
BURST=${BURST:-400}
CREATE_PAR=${CREATE_PAR:-6}
LAT_N=${LAT_N:-200}
LAT_SLEEP=${LAT_SLEEP:-0.1}
SETTLE=${SETTLE:-3}
REWRITE_TIMEOUT=${REWRITE_TIMEOUT:-600}
PERF=${PERF:-0}
PROBE=${PROBE:-1}
KEEP_CLUSTER=${KEEP_CLUSTER:-0}
CTRL_FLAGS=${CTRL_FLAGS:-}
BIN=${CO_BENCH_BIN:-$ROOT/build-bench/confidential-operator}
export CO_CLUSTER_DIR=${CO_CLUSTER_DIR:-/tmp/co-bench}
OUT=${OUT:-/tmp/co-bench-out/$(date -u +%Y%m%dT%H%M%SZ)-${N_NS}x${N_DEP}}
TOTAL=$((N_NS * N_DEP))

mkdir -p "$OUT"
# The environment the image sets (hack/build-image.sh), so the numbers are the deployed ones.
export GNUTLS_NO_IMPLICIT_INIT=${GNUTLS_NO_IMPLICIT_INIT-1}
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
trap bench_cleanup EXIT

bench_build
# ---- 1. cluster -----------------------------------------------------------------------------
bench_cluster

# ---- 1b. baseline: the controller on the empty cluster (no Deployments yet) ---------------
LOG0="$OUT/controller-baseline.log"
"$BIN" controller --kubeconfig="$KUBECONFIG" --log-format=json --log-level=info \
  --kube-api-qps="$QPS" --kube-api-burst="$BURST" > "$LOG0" 2>&1 &
CTRL_PID=$!
wait_log "$LOG0" '"msg":"all caches synced"' 1 60 "$CTRL_PID"
sleep 2
read -r rss_base _ _ anon_base file_base <<< "$(status_of "$CTRL_PID")"
save_smaps "$CTRL_PID" baseline
kill -TERM "$CTRL_PID"; wait "$CTRL_PID" || true; CTRL_PID=""
log "baseline (0 Deployments): RSS $rss_base KiB (anon $anon_base, file $file_base)"

# ---- 2. load --------------------------------------------------------------------------------
bench_load bench

# ---- 3. rewrite -----------------------------------------------------------------------------
scrape "$OUT/metrics-before.txt"
LOG1="$OUT/controller-rewrite.log"
# shellcheck disable=SC2206 # CTRL_FLAGS: extra flags, split on spaces
CMD1=("$BIN" controller --kubeconfig="$KUBECONFIG" --log-format=json --log-level=info
  --kube-api-qps="$QPS" --kube-api-burst="$BURST" $CTRL_FLAGS)
echo "${CMD1[*]}" > "$OUT/command-rewrite.txt"
t0=$(date +%s.%N)
"${CMD1[@]}" > "$LOG1" 2>&1 &
CTRL_PID=$!
sampler "$CTRL_PID" "$t0" > "$OUT/rss-rewrite.tsv" &
SAMPLER_PID=$!

deadline=$((SECONDS + REWRITE_TIMEOUT))
until grep -q '"msg":"all caches synced"' "$LOG1"; do
  kill -0 "$CTRL_PID" 2> /dev/null || die "controller exited: $(tail -3 "$LOG1")"
  ((SECONDS < deadline)) || die "no sync after ${REWRITE_TIMEOUT}s"
  sleep 0.05
done
read -r rss_sync hwm_sync cpu_sync anon_sync file_sync <<< "$(status_of "$CTRL_PID")"
cp0=$(cp_ticks); read -r mb0 mi0 <<< "$(machine_busy_ticks)"; load_sync=$(cut -d' ' -f1-3 /proc/loadavg)
save_smaps "$CTRL_PID" rewrite-sync
if [ "$PERF" = 1 ]; then
  perf record -F 999 -g -p "$CTRL_PID" -o "$OUT/perf-rewrite.data" > "$OUT/perf-record.log" 2>&1 &
  PERF_PID=$!
fi
log "synced (RSS $rss_sync KiB); waiting for $TOTAL rewrites"
n=0
while :; do
  n=$(grep -c '"msg":"workload rewritten"' "$LOG1" || true)
  [ "$n" -ge "$TOTAL" ] && break
  kill -0 "$CTRL_PID" 2> /dev/null || die "controller exited: $(tail -3 "$LOG1")"
  ((SECONDS < deadline)) || die "only $n/$TOTAL rewritten after ${REWRITE_TIMEOUT}s"
  sleep 0.2
done
cp1=$(cp_ticks); read -r mb1 mi1 <<< "$(machine_busy_ticks)"; load_done=$(cut -d' ' -f1-3 /proc/loadavg)
if [ -n "$PERF_PID" ]; then
  kill -INT "$PERF_PID"; wait "$PERF_PID" || true; PERF_PID=""
fi
log "all $TOTAL rewritten; settling ${SETTLE}s (update events of our own writes come back)"
sleep "$SETTLE"
read -r rss_end hwm_end cpu_end anon_end file_end <<< "$(status_of "$CTRL_PID")"
save_smaps "$CTRL_PID" rewrite-end
scrape "$OUT/metrics-after.txt"
kill -TERM "$CTRL_PID"
wait "$CTRL_PID" || log "controller exit code $?"
CTRL_PID=""
kill "$SAMPLER_PID" 2> /dev/null; wait "$SAMPLER_PID" 2> /dev/null || true; SAMPLER_PID=""

$PY requests "$OUT/metrics-before.txt" "$OUT/metrics-after.txt" > "$OUT/requests-rewrite.json"
$PY logstats "$LOG1" "$t0" > "$OUT/logstats-rewrite.json"
# Every Deployment's generation: 1 at creation, +1 per spec write (nothing else writes them).
api "$APISERVER_URL/apis/apps/v1/deployments?limit=20000" | jq -c '
  [.items[] | select(.metadata.namespace | startswith("bench-"))] |
  {total: length,
   kata: map(select(.spec.template.spec.runtimeClassName == "kata-qemu")) | length,
   annotated: map(select(.metadata.annotations["confidential.cypherpunk.io/original-runtime-class"] == "")) | length,
   generations: (group_by(.metadata.generation) | map({key: (.[0].metadata.generation | tostring), value: length}) | from_entries)}' \
  > "$OUT/deployments-after.json"

# ---- 4. restart (debug logs, for phase 5) --------------------------------------------------
scrape "$OUT/metrics-restart-before.txt"
LOG2="$OUT/controller-latency.log"
# shellcheck disable=SC2206
CMD2=("$BIN" controller --kubeconfig="$KUBECONFIG" --log-format=json --log-level=debug
  --kube-api-qps="$QPS" --kube-api-burst="$BURST" $CTRL_FLAGS)
echo "${CMD2[*]}" > "$OUT/command-latency.txt"
t2=$(date +%s.%N)
"${CMD2[@]}" > "$LOG2" 2>&1 &
CTRL_PID=$!
sampler "$CTRL_PID" "$t2" > "$OUT/rss-latency.tsv" &
SAMPLER_PID=$!
deadline=$((SECONDS + 120))
until grep -q '"msg":"all caches synced"' "$LOG2"; do
  kill -0 "$CTRL_PID" 2> /dev/null || die "controller exited: $(tail -3 "$LOG2")"
  ((SECONDS < deadline)) || die "no sync after restart"
  sleep 0.05
done
sleep "$SETTLE"
read -r rss_sync2 hwm_sync2 _ anon_sync2 file_sync2 <<< "$(status_of "$CTRL_PID")"
save_smaps "$CTRL_PID" restart-sync
restart_writes=$(grep -c '"msg":"workload rewritten"' "$LOG2" || true)
scrape "$OUT/metrics-restart-after.txt"
$PY requests "$OUT/metrics-restart-before.txt" "$OUT/metrics-restart-after.txt" > "$OUT/requests-restart.json"
log "restarted and synced: $restart_writes rewrites (want 0), RSS $rss_sync2 KiB"

# ---- 5. latency -----------------------------------------------------------------------------
# Optional uprobes (root, tracefs): on_add (informer add handler), curl_multi_add_handle (a
# request handed to libcurl, after the client rate limiter), on_workload_written (PATCH answer),
# plus context-switch records of the controller, to tell its own time from time spent waiting
# for a CPU.
PROBE_OK=0
if [ "$PROBE" = 1 ]; then
  LIBCURL=$(ldd "$BIN" | awk '/libcurl/ {print $3}')
  perf probe -q -d 'probe_confidential:*' > /dev/null 2>&1 || true
  perf probe -q -d 'probe_libcurl:*' > /dev/null 2>&1 || true
  if perf probe -q -x "$BIN" -a on_add -a on_workload_written > "$OUT/probe.log" 2>&1 &&
    perf probe -q -x "$LIBCURL" -a curl_multi_add_handle >> "$OUT/probe.log" 2>&1; then
    perf record -q --switch-events -e 'probe_confidential:*' -e 'probe_libcurl:*' -p "$CTRL_PID" \
      -o "$OUT/perf-probes.data" > "$OUT/perf-probes.log" 2>&1 &
    PERF_PID=$!
    PROBE_OK=1
    sleep 1
  else
    log "uprobes unavailable (see $OUT/probe.log); latency from logs only"
  fi
fi
scrape "$OUT/metrics-lat-before.txt"
load_lat0=$(cut -d' ' -f1-3 /proc/loadavg)
read -r lb0 li0 <<< "$(machine_busy_ticks)"
for ((i = 0; i < LAT_N; i++)); do
  api -o /dev/null -w '%{http_code}\n' -X POST -H 'Content-Type: application/json' \
    --data-binary "@$OUT/gen-lat/lat-$(printf '%04d' "$i").json" \
    "$APISERVER_URL/apis/apps/v1/namespaces/bench-lat/deployments" >> "$OUT/lat-create.log"
  sleep "$LAT_SLEEP"
done
deadline=$((SECONDS + 60))
until [ "$(grep -c '"key":"d:bench-lat/' "$LOG2" || true)" -ge "$LAT_N" ]; do
  ((SECONDS < deadline)) || { log "not all latency Deployments rewritten"; break; }
  sleep 0.2
done
sleep 1
scrape "$OUT/metrics-lat-after.txt"
load_lat1=$(cut -d' ' -f1-3 /proc/loadavg)
read -r lb1 li1 <<< "$(machine_busy_ticks)"
if [ -n "$PERF_PID" ]; then
  kill -INT "$PERF_PID"; wait "$PERF_PID" || true; PERF_PID=""
fi
echo '{}' > "$OUT/probes.json"
if [ "$PROBE_OK" = 1 ]; then
  perf script --show-switch-events -i "$OUT/perf-probes.data" > "$OUT/perf-probes.txt" 2> /dev/null || true
  $PY probes "$OUT/perf-probes.txt" > "$OUT/probes.json"
  perf probe -q -d 'probe_confidential:*' > /dev/null 2>&1 || true
  perf probe -q -d 'probe_libcurl:*' > /dev/null 2>&1 || true
fi
read -r rss_end2 hwm_end2 cpu_end2 _ _ <<< "$(status_of "$CTRL_PID")"
kill -TERM "$CTRL_PID"
wait "$CTRL_PID" || log "controller exit code $?"
CTRL_PID=""
kill "$SAMPLER_PID" 2> /dev/null; wait "$SAMPLER_PID" 2> /dev/null || true; SAMPLER_PID=""
$PY latency "$LOG2" bench-lat > "$OUT/latency.json"
$PY hist "$OUT/metrics-lat-before.txt" "$OUT/metrics-lat-after.txt" PATCH deployments > "$OUT/patch-server-latency.json"
$PY hist "$OUT/metrics-lat-before.txt" "$OUT/metrics-lat-after.txt" POST deployments > "$OUT/post-server-latency.json"
$PY requests "$OUT/metrics-lat-before.txt" "$OUT/metrics-lat-after.txt" > "$OUT/requests-latency.json"
$PY logstats "$LOG2" "$t2" > "$OUT/logstats-latency.json"

if [ -f "$OUT/perf-rewrite.data" ]; then
  perf report -i "$OUT/perf-rewrite.data" --stdio --no-children --percent-limit 1 \
    > "$OUT/perf-report.txt" 2> /dev/null || true
  perf report -i "$OUT/perf-rewrite.data" --stdio --no-children --sort dso \
    > "$OUT/perf-dso.txt" 2> /dev/null || true
fi

# ---- summary --------------------------------------------------------------------------------
jq -n \
  --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  --arg cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')" \
  --argjson nproc "$(nproc)" \
  --arg binary "$("$BIN" --version 2> /dev/null | head -1)" \
  --arg repo_head "$(git describe --always --dirty 2> /dev/null || echo unknown)" \
  --arg k8s "$("$CO_KUBECTL" version --client -o json 2> /dev/null | jq -r .clientVersion.gitVersion)" \
  --arg cmd1 "${CMD1[*]}" --arg cmd2 "${CMD2[*]}" \
  --argjson n_ns "$N_NS" --argjson n_dep "$N_DEP" --argjson total "$TOTAL" \
  --argjson qps "$QPS" --argjson burst "$BURST" --argjson create_s "$create_s" \
  --argjson rss_sync "$rss_sync" --argjson hwm_sync "$hwm_sync" \
  --argjson rss_end "$rss_end" --argjson hwm_end "$hwm_end" \
  --argjson cpu_sync "$(cpu_s "$cpu_sync")" --argjson cpu_end "$(cpu_s "$cpu_end")" \
  --argjson rss_sync2 "$rss_sync2" --argjson hwm_sync2 "$hwm_sync2" \
  --argjson rss_end2 "$rss_end2" --argjson hwm_end2 "$hwm_end2" --argjson cpu_end2 "$(cpu_s "$cpu_end2")" \
  --argjson restart_writes "$restart_writes" \
  --argjson rss_base "$rss_base" --argjson anon_base "$anon_base" --argjson file_base "$file_base" \
  --argjson anon_sync "$anon_sync" --argjson file_sync "$file_sync" \
  --argjson anon_end "$anon_end" --argjson file_end "$file_end" \
  --argjson anon_sync2 "$anon_sync2" --argjson file_sync2 "$file_sync2" \
  --argjson cp_cpu "$(cpu_s $((cp1 - cp0)))" \
  --argjson machine_busy "$(echo "scale=3; ($mb1 - $mb0) / ($mb1 - $mb0 + $mi1 - $mi0)" | bc)" \
  --arg load_sync "$load_sync" --arg load_done "$load_done" \
  --slurpfile probes "$OUT/probes.json" \
  --arg load_lat "$load_lat0 -> $load_lat1" \
  --argjson lat_busy "$(echo "scale=3; ($lb1 - $lb0) / ($lb1 - $lb0 + $li1 - $li0)" | bc)" \
  --slurpfile logstats "$OUT/logstats-rewrite.json" \
  --slurpfile req "$OUT/requests-rewrite.json" \
  --slurpfile req_restart "$OUT/requests-restart.json" \
  --slurpfile deps "$OUT/deployments-after.json" \
  --slurpfile lat "$OUT/latency.json" \
  --slurpfile patch_srv "$OUT/patch-server-latency.json" \
  --slurpfile post_srv "$OUT/post-server-latency.json" \
  '{date: $date, machine: {nproc: $nproc, cpu: $cpu}, binary: $binary, repo_head_at_end: $repo_head, kubernetes: $k8s, etcd: "v3.6.16",
    workloads: {namespaces: $n_ns, per_namespace: $n_dep, total: $total, create_s: $create_s},
    baseline_no_objects: {rss_kib: $rss_base, rss_anon_kib: $anon_base, rss_file_kib: $file_base},
    rewrite: {command: $cmd1, qps: $qps, burst: $burst, log: $logstats[0],
              rss_after_sync_kib: $rss_sync, hwm_at_sync_kib: $hwm_sync,
              rss_end_kib: $rss_end, hwm_end_kib: $hwm_end,
              rss_anon_after_sync_kib: $anon_sync, rss_file_after_sync_kib: $file_sync,
              rss_anon_end_kib: $anon_end, rss_file_end_kib: $file_end,
              cpu_s_at_sync: $cpu_sync, cpu_s_end: $cpu_end,
              apiserver_etcd_cpu_s_sync_to_done: $cp_cpu, machine_busy_fraction_sync_to_done: $machine_busy,
              loadavg_at_sync: $load_sync, loadavg_done: $load_done,
              deployments_requests: $req[0].by_resource_verb.deployments,
              events_requests: ($req[0].by_resource_verb.events // {}),
              all_requests_in_window: $req[0].by_resource_verb,
              deployments_after: $deps[0]},
    restart: {command: $cmd2, rewrites: $restart_writes,
              deployments_requests: ($req_restart[0].by_resource_verb.deployments // {}),
              rss_after_sync_kib: $rss_sync2, hwm_after_sync_kib: $hwm_sync2,
              rss_anon_after_sync_kib: $anon_sync2, rss_file_after_sync_kib: $file_sync2},
    latency: {n: $lat[0].paired, add_to_rewritten: $lat[0], probes: $probes[0], server_patch: $patch_srv[0],
              server_post_create: $post_srv[0], rss_end_kib: $rss_end2, hwm_end_kib: $hwm_end2,
              loadavg: $load_lat, machine_busy_fraction: $lat_busy,
              cpu_s_end: $cpu_end2}}' > "$OUT/summary.json"

jq -r '
  def kib2mib: . / 1024 * 100 | round / 100;
  "binary               \(.binary) on \(.machine.nproc) x \(.machine.cpu), Kubernetes \(.kubernetes), etcd \(.etcd)",
  "workloads            \(.workloads.total) (\(.workloads.namespaces) x \(.workloads.per_namespace)), created in \(.workloads.create_s)s",
  "command              \(.rewrite.command)",
  "time to sync         \(.rewrite.log.sync_s)s (controller: \(.rewrite.log.sync_ms_internal) ms)",
  "time to all rewritten \(.rewrite.log.last_rewrite_s)s (\(.rewrite.log.rewritten) rewrites, \(.rewrite.log.distinct_keys) keys, \(.rewrite.log.rewrites_per_s_after_sync)/s after sync)",
  "deployments requests \(.rewrite.deployments_requests)",
  "events requests      \(.rewrite.events_requests)",
  "PATCH per Deployment \((.rewrite.deployments_requests.PATCH // 0) / .workloads.total)   GET \(.rewrite.deployments_requests.GET // 0)",
  "generations          \(.rewrite.deployments_after.generations) kata-qemu \(.rewrite.deployments_after.kata)",
  "RSS, 0 Deployments   \(.baseline_no_objects.rss_kib | kib2mib) MiB (anon \(.baseline_no_objects.rss_anon_kib | kib2mib), file \(.baseline_no_objects.rss_file_kib | kib2mib))",
  "RSS after sync       \(.rewrite.rss_after_sync_kib | kib2mib) MiB (HWM \(.rewrite.hwm_at_sync_kib | kib2mib) MiB; anon \(.rewrite.rss_anon_after_sync_kib | kib2mib), file \(.rewrite.rss_file_after_sync_kib | kib2mib))",
  "RSS end / peak       \(.rewrite.rss_end_kib | kib2mib) MiB / \(.rewrite.hwm_end_kib | kib2mib) MiB",
  "CPU                  \(.rewrite.cpu_s_at_sync)s at sync, \(.rewrite.cpu_s_end)s at end; apiserver+etcd \(.rewrite.apiserver_etcd_cpu_s_sync_to_done)s, machine busy \(.rewrite.machine_busy_fraction_sync_to_done) (load \(.rewrite.loadavg_done))",
  "restart              \(.restart.rewrites) rewrites, deployments requests \(.restart.deployments_requests), RSS \(.restart.rss_after_sync_kib | kib2mib) MiB",
  "latency add->rewritten \(.latency.add_to_rewritten) (load \(.latency.loadavg), machine busy \(.latency.machine_busy_fraction))",
  "probes               \(.latency.probes)",
  "server PATCH         \(.latency.server_patch)",
  "reconciler           \(.rewrite.log.reconciler_stopped)"' "$OUT/summary.json"
log "done; output in $OUT"
