#!/usr/bin/env bash
# Profiles the controller during the same scenario as bench/run.sh (own cluster, N_NS x N_DEP
# opted-in Deployments at replicas 0, kube-controller-manager stopped), for the findings in
# RESULTS.md. Not for the headline numbers: the profilers slow the controller down.
#
#   MODE=perf   bench/profile.sh    perf record --call-graph dwarf from sync to all rewritten
#   MODE=massif bench/profile.sh    valgrind massif (heap by allocation site) from start to end
#   MODE=smaps  bench/profile.sh    /proc/PID/smaps at start, sync, end (no profiler)
#
# Environment: N_NS [100] N_DEP [100] QPS [200] BURST [400] CREATE_PAR [6]
#   CO_BENCH_BIN, CO_CLUSTER_DIR [/tmp/co-bench], OUT [/tmp/co-bench-out/profile-MODE-<date>],
#   KEEP_CLUSTER [0], REWRITE_TIMEOUT [900],
#   LOG_LEVEL [info], CTRL_FLAGS [""] extra controller flags (e.g. --list-page-size=100),
#   REWRITES [N_NS*N_DEP]: stop after this many rewrites (massif is slow: e.g. REWRITES=2000)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=${MODE:-perf}
N_NS=${N_NS:-100}
N_DEP=${N_DEP:-100}
QPS=${QPS:-200}
BURST=${BURST:-400}
CREATE_PAR=${CREATE_PAR:-6}
LAT_N=0
KEEP_CLUSTER=${KEEP_CLUSTER:-0}
LOG_LEVEL=${LOG_LEVEL:-info}
CTRL_FLAGS=${CTRL_FLAGS:-}
REWRITE_TIMEOUT=${REWRITE_TIMEOUT:-900}
BIN=${CO_BENCH_BIN:-$ROOT/build-bench/confidential-operator}
export CO_CLUSTER_DIR=${CO_CLUSTER_DIR:-/tmp/co-bench}
OUT=${OUT:-/tmp/co-bench-out/profile-$MODE-$(date -u +%Y%m%dT%H%M%SZ)-${N_NS}x${N_DEP}}
TOTAL=$((N_NS * N_DEP))
REWRITES=${REWRITES:-$TOTAL}
mkdir -p "$OUT"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
trap bench_cleanup EXIT
case $MODE in perf | massif | smaps) ;; *) die "MODE must be perf, massif or smaps" ;; esac

bench_build
bench_cluster
bench_load prof

LOG="$OUT/controller.log"
# shellcheck disable=SC2206 # CTRL_FLAGS: extra flags, split on spaces
ARGS=(controller --kubeconfig="$KUBECONFIG" --log-format=json --log-level="$LOG_LEVEL"
  --kube-api-qps="$QPS" --kube-api-burst="$BURST" $CTRL_FLAGS)
if [ "$MODE" = massif ]; then
  CMD=(valgrind --tool=massif --massif-out-file="$OUT/massif.out" --threshold=0.5
    --detailed-freq=4 --max-snapshots=200 "$BIN" "${ARGS[@]}")
else
  CMD=("$BIN" "${ARGS[@]}")
fi
echo "${CMD[*]}" > "$OUT/command.txt"
t0=$(date +%s.%N)
"${CMD[@]}" > "$LOG" 2>&1 &
CTRL_PID=$!
sampler "$CTRL_PID" "$t0" > "$OUT/rss.tsv" &
SAMPLER_PID=$!
sleep 0.3
[ "$MODE" = smaps ] && save_smaps "$CTRL_PID" start
wait_log "$LOG" '"msg":"all caches synced"' 1 "$REWRITE_TIMEOUT" "$CTRL_PID"
log "synced: $(status_of "$CTRL_PID")"
[ "$MODE" = smaps ] && save_smaps "$CTRL_PID" sync
if [ "$MODE" = perf ]; then
  perf record -q --call-graph dwarf,16384 -F 400 -p "$CTRL_PID" -o "$OUT/perf.data" \
    > "$OUT/perf-record.log" 2>&1 &
  PERF_PID=$!
fi
wait_log "$LOG" '"msg":"workload rewritten"' "$REWRITES" "$REWRITE_TIMEOUT" "$CTRL_PID"
if [ -n "$PERF_PID" ]; then
  kill -INT "$PERF_PID"; wait "$PERF_PID" || true; PERF_PID=""
fi
sleep 3
log "$REWRITES rewritten: $(status_of "$CTRL_PID")"
[ "$MODE" = smaps ] && save_smaps "$CTRL_PID" end
kill -TERM "$CTRL_PID"
wait "$CTRL_PID" || log "controller exit code $?"
CTRL_PID=""
kill "$SAMPLER_PID" 2> /dev/null; wait "$SAMPLER_PID" 2> /dev/null || true; SAMPLER_PID=""
$PY logstats "$LOG" "$t0" > "$OUT/logstats.json"

case $MODE in
  perf)
    perf report -i "$OUT/perf.data" --stdio --no-children --percent-limit 0.7 \
      --sort symbol -g none > "$OUT/perf-self.txt" 2> /dev/null || true
    perf report -i "$OUT/perf.data" --stdio --children --percent-limit 3 \
      --sort symbol -g none > "$OUT/perf-children.txt" 2> /dev/null || true
    perf report -i "$OUT/perf.data" --stdio --no-children --sort dso \
      -g none > "$OUT/perf-dso.txt" 2> /dev/null || true
    perf report -i "$OUT/perf.data" --stdio --no-children --percent-limit 2 \
      --sort symbol -g caller,0.5,callee --max-stack 14 > "$OUT/perf-callers.txt" 2> /dev/null || true
    log "perf reports in $OUT/perf-*.txt"
    ;;
  massif)
    ms_print "$OUT/massif.out" > "$OUT/massif.txt"
    log "massif report in $OUT/massif.txt"
    ;;
  smaps) log "smaps in $OUT/*.smaps*" ;;
esac
cat "$OUT/logstats.json"
