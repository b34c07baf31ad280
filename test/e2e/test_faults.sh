# Faults injected between the controller and the API server by hack/faultproxy: 409 on
# workload and status writes, 429 with Retry-After, 500/503 bursts, a silently stalled watch.
# Each test logs what it measured ("measured: ...", collected in docs/reliability.md).
# shellcheck source=test/e2e/faultlib.sh
source test/e2e/faultlib.sh

cr_ready() { kc -n "$1" get cwl "$2" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null; }

test_fault_conflict_on_workload_and_status_writes() {
  wl_setup
  local ns=e2e-f409
  kc create namespace $ns >/dev/null
  deploy $ns app
  kc -n $ns apply -f - >/dev/null <<YAML
apiVersion: confidential.cypherpunk.io/v1alpha1
kind: ConfidentialWorkload
metadata: {name: cr}
spec: {runtimeClassName: kata-qemu, selector: {matchLabels: {app: app}}}
YAML
  fp_start f409 || return
  # The first two writes of each kind are answered 409 by the proxy, never reach the server.
  fp_rule "{\"method\":\"PATCH\",\"path\":\"^/apis/apps/v1/namespaces/$ns/deployments/app\$\",\"count\":2,\"status\":409}"
  fp_rule "{\"method\":\"PATCH\",\"path\":\"^/apis/confidential.cypherpunk.io/v1alpha1/namespaces/$ns/confidentialworkloads/cr/status\$\",\"count\":2,\"status\":409}"
  local t0 t1
  t0=$(now)
  ctrl_start f409 --kubeconfig="$FP_KUBECONFIG"
  check "rewritten to kata-qemu despite two conflicts" \
    wait_jp $ns deploy/app '{.spec.template.spec.runtimeClassName}' kata-qemu 30
  t1=$(now)
  check "CR Ready despite two status conflicts" wait_jp $ns cwl/cr '{.status.conditions[?(@.type=="Ready")].status}' True 60
  sleep 2
  local inj_w inj_s fwd_w gen
  inj_w=$(fp_count ".injected and .method==\"PATCH\" and (.path|endswith(\"/deployments/app\"))")
  inj_s=$(fp_count ".injected and .method==\"PATCH\" and (.path|endswith(\"/cr/status\"))")
  fwd_w=$(fp_patches "/deployments/app\$")
  gen=$(jp $ns deploy/app '{.metadata.generation}')
  log "  measured: 409 x$inj_w on workload PATCH, x$inj_s on status PATCH; rewrite after $(echo "$t1 - $t0" | bc)s from start;" \
      "workload PATCHes reaching the server: $fwd_w; generation $gen"
  check "both workload conflicts were served" [ "$inj_w" -eq 2 ]
  check "both status conflicts were served" [ "$inj_s" -eq 2 ]
  check "the controller saw the conflicts" [ "$(log_count '.msg=="workload write failed" and .status==409')" -ge 2 ]
  check "exactly one workload PATCH reached the server" [ "$fwd_w" -eq 1 ]
  check "exactly one rewrite: generation 2" [ "$gen" = 2 ]
  check "status written after the conflicts" [ "$(fp_patches '/cr/status$')" -ge 1 ]
  local rc=0
  ctrl_stop || rc=$?
  check "clean exit (rc $rc)" [ "$rc" -eq 0 ]
  check "no sanitizer report" sanitizer_clean
  fp_stop
  kc -n $ns patch cwl cr --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
  kc delete namespace $ns --wait=false >/dev/null
}

test_fault_too_many_requests_waits_retry_after() {
  wl_setup
  local ns=e2e-f429
  kc create namespace $ns >/dev/null
  fp_start f429 || return
  ctrl_start f429 --kubeconfig="$FP_KUBECONFIG"
  check "caches sync" wait_log '.msg=="all caches synced"' 30
  fp_rule "{\"method\":\"PATCH\",\"path\":\"^/apis/apps/v1/namespaces/$ns/deployments/app\$\",\"count\":1,\"status\":429,\"retryAfter\":3}"
  deploy $ns app '[{name: KATA, value: "true"}]'
  check "rewritten after the 429" wait_jp $ns deploy/app '{.spec.template.spec.runtimeClassName}' kata-qemu 30
  local t429 tok waited
  t429=$(jq -r 'select(.injected and .status==429) | .end' "$FP_LOG" | head -1)
  tok=$(jq -r 'select(.method=="PATCH" and (.injected|not) and (.path|endswith("/deployments/app"))) | .ts' "$FP_LOG" | head -1)
  if [ -z "$t429" ] || [ -z "$tok" ]; then
    fail "no 429 or no later PATCH in the proxy log"
  else
    waited=$(echo "$(date -d "$tok" +%s.%N) - $(date -d "$t429" +%s.%N)" | bc)
    log "  measured: Retry-After 3 s -> next PATCH after ${waited}s"
    check "waited at least Retry-After (3 s), got ${waited}s" [ "$(echo "$waited >= 3.0" | bc)" -eq 1 ]
    check "and not much longer (< 5 s), got ${waited}s" [ "$(echo "$waited < 5.0" | bc)" -eq 1 ]
  fi
  check "the client logged the retry with the server's delay" \
    [ "$(log_count '.msg=="retrying request" and .status==429 and .delay_ms==3000')" -eq 1 ]
  check "one PATCH reached the server" [ "$(fp_patches "/deployments/app\$")" -eq 1 ]
  check "generation 2" wait_jp $ns deploy/app '{.metadata.generation}' 2 1
  local rc=0
  ctrl_stop || rc=$?
  check "clean exit (rc $rc)" [ "$rc" -eq 0 ]
  check "no sanitizer report" sanitizer_clean
  fp_stop
  kc delete namespace $ns --wait=false >/dev/null
}

test_fault_server_error_burst() {
  wl_setup
  local ns=e2e-f5xx n=20
  kc create namespace $ns >/dev/null
  gen_deploys $ns a $n optin | kc apply -f - >/dev/null
  fp_start f5xx || return
  # A burst on every request: the initial lists, the watches and the writes. 500 and 503
  # alternate by rule order (the first rule is used up first).
  fp_rule '{"path":"^/api","count":15,"status":500}'
  fp_rule '{"path":"^/api","count":15,"status":503}'
  local t0 took
  t0=$(now)
  ctrl_start f5xx --kubeconfig="$FP_KUBECONFIG"
  if took=$(wait_rewritten $ns a $n 90); then
    log "  measured: 30 x 500/503 at start -> $n/$n rewritten ${took}s after start"
  else
    fail "not all $n rewritten after a 5xx burst"
  fi
  check "the whole burst was served" [ "$(fp_count '.injected and (.status==500 or .status==503)')" -eq 30 ]
  # A second burst while running, on writes only: new workloads get 500/503 first.
  fp_clear
  fp_rule "{\"method\":\"PATCH\",\"path\":\"/namespaces/$ns/\",\"count\":10,\"status\":503}"
  fp_rule "{\"method\":\"PATCH\",\"path\":\"/namespaces/$ns/\",\"count\":10,\"status\":500}"
  t0=$(now)
  gen_deploys $ns b $n optin | kc apply -f - >/dev/null
  if took=$(wait_rewritten $ns b $n 90); then
    log "  measured: 20 x 503/500 on PATCH -> $n/$n new workloads rewritten ${took}s after create"
  else
    fail "not all of the second batch rewritten after a PATCH 5xx burst"
  fi
  sleep 2
  check "first batch: each rewritten exactly once" generations_once $ns a $n
  check "second batch: each rewritten exactly once" generations_once $ns b $n
  local fwd
  fwd=$(fp_patches "/namespaces/$ns/deployments/")
  log "  measured: workload PATCHes reaching the server: $fwd for $((2 * n)) workloads"
  check "one successful PATCH per workload" [ "$fwd" -eq $((2 * n)) ]
  check "controller still running" ctrl_alive
  local rc=0
  ctrl_stop || rc=$?
  check "clean exit (rc $rc)" [ "$rc" -eq 0 ]
  check "no sanitizer report" sanitizer_clean
  fp_stop
  kc delete namespace $ns --wait=false >/dev/null
}

test_fault_stalled_watch_replaced() {
  wl_setup
  local ns=e2e-fstall stall=5
  kc create namespace $ns >/dev/null
  fp_start fstall || return
  ctrl_start fstall --kubeconfig="$FP_KUBECONFIG" --watch-stall-timeout=$stall
  check "caches sync" wait_log '.msg=="all caches synced"' 30
  sleep 1
  local n t0
  n=$(fp_stall '^/apis/apps/v1/deployments[?].*watch=(1|true)')
  t0=$(now)
  log "  stalled $n deployment watch stream(s)"
  check "one deployment watch was open to stall" [ "$n" -eq 1 ]
  # Changes made while the stream is silent must arrive once the watch is replaced.
  deploy $ns app '[{name: KATA, value: "true"}]'
  # Bound: stall timeout + first backoff (<= 1.6 s) + 1.5 s slack.
  wait_event deployments add $ns/app "$t0" "$(echo "$stall + 3.1" | bc)"
  local tdet
  tdet=$(log_ts_after '.msg=="watch stream stalled, reconnecting" and .path=="/apis/apps/v1/deployments"' "$t0") \
    || fail "no stall detected"
  [ -n "$tdet" ] && log "  measured: stall detected after $(echo "$tdet - $t0" | bc)s (--watch-stall-timeout=$stall)"
  check "rewritten after the watch came back" wait_jp $ns deploy/app '{.spec.template.spec.runtimeClassName}' kata-qemu 10
  check "generation 2" wait_jp $ns deploy/app '{.metadata.generation}' 2 3
  check "controller still running" ctrl_alive
  local rc=0
  ctrl_stop || rc=$?
  check "clean exit (rc $rc)" [ "$rc" -eq 0 ]
  check "no sanitizer report" sanitizer_clean
  fp_stop
  kc delete namespace $ns --wait=false >/dev/null
}
