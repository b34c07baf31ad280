#!/usr/bin/env bash
# Runs every e2e test (functions test_* in test/e2e/test_*.sh) against a real local control
# plane started for the run. Prints TAP-like lines and "N passed, N failed".
#   CO_BIN      binary under test (default build-asan/confidential-operator)
#   E2E_ONLY    run only tests whose name matches this regex
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export CO_BIN=${CO_BIN:-$ROOT/build-asan/confidential-operator}
export CO_CLUSTER_DIR=${CO_CLUSTER_DIR:-/tmp/co-e2e-cluster}
export E2E_DIR=${E2E_DIR:-/tmp/co-e2e}
rm -rf "$E2E_DIR"; mkdir -p "$E2E_DIR"

if [ ! -x "$CO_BIN" ]; then echo "missing binary $CO_BIN" >&2; exit 2; fi

cleanup() {
  [ -n "${CTRL_PID:-}" ] && kill -KILL "$CTRL_PID" 2>/dev/null
  [ -n "${FP_PID:-}" ] && kill -KILL "$FP_PID" 2>/dev/null
  [ -n "${NA_PID:-}" ] && kill -KILL "$NA_PID" 2>/dev/null
  hack/cluster-down.sh >/dev/null 2>&1 || true
}
trap cleanup EXIT

t0=$(date +%s)
hack/cluster-up.sh || { echo "cluster-up failed" >&2; exit 2; }
# shellcheck disable=SC1091
source "$CO_CLUSTER_DIR/cluster.env"
echo "# control plane up in $(( $(date +%s) - t0 ))s"
# The CRD is part of every install: without it the controller waits for it.
"$CO_KUBECTL" --kubeconfig="$KUBECONFIG" apply -f crd/confidentialworkloads.yaml >/dev/null
"$CO_KUBECTL" --kubeconfig="$KUBECONFIG" wait --for=condition=Established --timeout=30s \
  crd/confidentialworkloads.confidential.cypherpunk.io >/dev/null

source test/e2e/lib.sh
for f in test/e2e/test_*.sh; do source "$f"; done

n=0
for t in $(declare -F | awk '{print $3}' | grep '^test_' ); do
  if [ -n "${E2E_ONLY:-}" ] && ! [[ $t =~ $E2E_ONLY ]]; then continue; fi
  n=$((n + 1))
  E2E_CURRENT=$t
  E2E_CURRENT_FAILED=0
  echo "# --- $t"
  ts=$(date +%s)
  "$t"
  [ -n "${CTRL_PID:-}" ] && { kill -KILL "$CTRL_PID" 2>/dev/null; wait "$CTRL_PID" 2>/dev/null; CTRL_PID=""; }
  [ -n "${LE_PID:-}" ] && { kill -KILL "$LE_PID" 2>/dev/null; wait "$LE_PID" 2>/dev/null; LE_PID=""; }
  [ -n "${FP_PID:-}" ] && { kill -KILL "$FP_PID" 2>/dev/null; wait "$FP_PID" 2>/dev/null; FP_PID=""; }
  [ -n "${NA_PID:-}" ] && { kill -KILL "$NA_PID" 2>/dev/null; wait "$NA_PID" 2>/dev/null; NA_PID=""; }
  if [ $E2E_CURRENT_FAILED -eq 0 ]; then
    echo "ok $n - $t ($(( $(date +%s) - ts ))s)"
    E2E_PASSED=$((E2E_PASSED + 1))
  else
    echo "not ok $n - $t ($(( $(date +%s) - ts ))s)"
    E2E_FAILED=$((E2E_FAILED + 1))
    echo "# logs kept in $E2E_DIR"
  fi
done
echo "e2e: $E2E_PASSED passed, $E2E_FAILED failed"
[ "$E2E_FAILED" -eq 0 ] && [ "$n" -gt 0 ]
