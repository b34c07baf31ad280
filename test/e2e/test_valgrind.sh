# A full controller start, sync, rewrite, status write and shutdown under valgrind memcheck
# on a plain (non-sanitizer) build: any memory error or definite/indirect leak fails.
#   CO_PLAIN_BIN   the plain build (default build/confidential-operator, as `make build` makes)

test_valgrind_start_sync_shutdown_clean() {
  local bin=${CO_PLAIN_BIN:-$PWD/build/confidential-operator} ns=e2e-vg
  if [ ! -x "$bin" ]; then fail "no plain build at $bin (make build)"; return; fi
  if ! command -v valgrind >/dev/null; then fail "valgrind missing (hack/install-deps.sh)"; return; fi
  wl_setup
  kc create namespace confidential-system >/dev/null 2>&1 || true
  kc create namespace $ns >/dev/null
  deploy $ns env-app '[{name: KATA, value: "true"}]'
  deploy $ns cr-app
  kc -n $ns apply -f - >/dev/null <<YAML
apiVersion: confidential.cypherpunk.io/v1alpha1
kind: ConfidentialWorkload
metadata: {name: cr}
spec: {runtimeClassName: kata-qemu, selector: {matchLabels: {app: cr-app}}}
YAML
  CTRL_LOG="$E2E_DIR/valgrind.log"
  local vglog="$E2E_DIR/valgrind.memcheck"
  : > "$CTRL_LOG"
  valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect \
    --errors-for-leak-kinds=definite,indirect --error-exitcode=1 --track-origins=yes \
    --log-file="$vglog" \
    "$bin" controller --log-format=json --log-level=debug --http-bind-address=127.0.0.1:0 \
    --leader-elect=true \
    --leader-elect-identity=vg >>"$CTRL_LOG" 2>&1 &
  CTRL_PID=$!
  local t0
  t0=$(now)
  check "caches sync under valgrind" wait_log '.msg=="all caches synced"' 120
  check "env opt-in rewritten" wait_jp $ns deploy/env-app '{.spec.template.spec.runtimeClassName}' kata-qemu 60
  check "CR workload rewritten" wait_jp $ns deploy/cr-app '{.spec.template.spec.runtimeClassName}' kata-qemu 60
  check "CR status written" wait_jp $ns cwl/cr '{.status.workloads[0].name}' cr-app 60
  log "  synced and wrote in $(echo "$(now) - $t0" | bc)s under valgrind"
  # Deleting the CR runs the restore path and the finalizer release.
  kc -n $ns delete cwl cr --wait=false >/dev/null
  check "CR released by the finalizer" kc -n $ns wait --for=delete cwl/cr --timeout=60s
  local rc=0
  ctrl_stop || rc=$?
  local summary
  summary=$(grep -E 'ERROR SUMMARY|definitely lost|indirectly lost' "$vglog" | sed 's/^==[0-9]*== //' | tr '\n' ';')
  log "  measured: valgrind: $summary"
  check "valgrind exit code 0 (rc $rc)" [ "$rc" -eq 0 ]
  check "no memcheck errors" grep -q 'ERROR SUMMARY: 0 errors' "$vglog"
  grep -q 'ERROR SUMMARY: 0 errors' "$vglog" || sed -n '1,80p' "$vglog" >&2
  kc -n $ns patch cwl cr --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
  kc delete namespace $ns --wait=false >/dev/null
}
