# The initial pass over every workload feeds the work queue in batches as it drains instead of
# queueing everything at start, and loses nothing when the cache changes under it.
# shellcheck source=test/e2e/faultlib.sh
source test/e2e/faultlib.sh

# queue_depth PORT: the work queue depth gauge from /metrics.
queue_depth() {
  curl -sf "http://127.0.0.1:$1/metrics" | awk '$1=="confidential_operator_workqueue_depth" { print $2 }'
}

test_initial_pass_is_batched_and_survives_changes() {
  wl_setup
  local ns=e2e-pass n=700 i
  kc create namespace $ns >/dev/null
  gen_deploys $ns w $n optin | kc create -f - >/dev/null
  # Let the deployment controller write their first status: an object that changes during the
  # pass is queued by its update event instead, which would hide what the pass itself does.
  kc -n $ns wait deploy --all --for=jsonpath='{.status.observedGeneration}'=1 --timeout=120s >/dev/null ||
    fail "the deployment controller did not settle"
  # 20 writes/s: the pass takes about 35 s, long enough to change the cache under it.
  ctrl_start pass --kube-api-qps=20 --kube-api-burst=5
  check "caches sync" wait_log '.msg=="all caches synced"' 60
  local port
  port=$(grep '^{' "$CTRL_LOG" | jq -r 'select(.msg=="serving /metrics, /healthz, /readyz") | .port' | head -1)
  # Listed in key order, so w-5xx come late in the pass: delete 20 of them and change 20
  # others before the pass reaches them.
  kc -n $ns delete deploy $(for i in $(seq 500 519); do printf 'w-%d ' "$i"; done) --wait=false >/dev/null
  kc -n $ns label deploy $(for i in $(seq 520 539); do printf 'w-%d ' "$i"; done) changed=yes >/dev/null
  local max=0 d
  for i in $(seq 1 50); do
    d=$(queue_depth "$port")
    d=${d%.*}
    [ -n "$d" ] && [ "$d" -gt "$max" ] && max=$d
    sleep 0.2
  done
  # The depth also counts the keys our own PATCHes bring back (their update events), which wait
  # behind the pass; the pass itself adds at most 256 keys, when the queue holds 64 or fewer.
  log "  measured: work queue depth at most $max during the pass of $n workloads"
  check "the queue never held the whole pass (max depth $max < $n)" [ "$max" -lt "$n" ]
  local took
  if took=$(wait_rewritten $ns w $((n - 20)) 120); then
    log "  measured: $((n - 20)) rewritten ${took}s after the changes"
  else
    fail "not every remaining workload rewritten"
  fi
  sleep 1
  local feeds
  feeds=$(grep '^{' "$CTRL_LOG" | jq -c 'select(.msg=="initial pass fed") | [.keys, .queue, .done]')
  log "  feeds [keys, queue after, done]: $(tr '\n' ' ' <<<"$feeds")"
  check "fed in batches of at most 256 keys" \
    [ -z "$(jq -r 'select(.[0] > 256 or .[1] > 320)' <<<"$feeds")" ]
  check "at least three feeds for $n workloads" [ "$(wc -l <<<"$feeds")" -ge 3 ]
  check "the pass ended" [ "$(tail -1 <<<"$feeds" | jq -r '.[2]')" = true ]
  check "each rewritten exactly once, the deleted ones gone" generations_once $ns w $((n - 20))
  check "the changed ones rewritten too" \
    [ "$(kc -n $ns get deploy -l changed=yes -o json | jq '[.items[] | select(.spec.template.spec.runtimeClassName=="kata-qemu")] | length')" -eq 20 ]
  local rc=0
  ctrl_stop || rc=$?
  check "clean exit (rc $rc)" [ "$rc" -eq 0 ]
  check "no sanitizer report" sanitizer_clean
  kc delete namespace $ns --wait=false >/dev/null
}
