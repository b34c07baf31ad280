# The informers see what kubectl does, within a second, and the process stops cleanly.

test_informer_sees_kubectl_changes() {
  kc create namespace e2e-inf >/dev/null
  kc -n e2e-inf create deployment pre --image=fake --replicas=0 >/dev/null
  ctrl_start informer
  check "caches sync" wait_log '.msg=="all caches synced"' 30
  check "pre-existing deployment listed" wait_log "$(event_filter deployments add e2e-inf/pre)" 5

  # Latency is measured from the moment kubectl sent its write request.
  local t
  t=$(kc_write -n e2e-inf create deployment web --image=fake --replicas=0)
  wait_event deployments add e2e-inf/web "$t" 1
  sleep 1 # let the deployment controller's status updates settle
  t=$(kc_write -n e2e-inf label deployment web tier=frontend)
  wait_event deployments update e2e-inf/web "$t" 1
  t=$(kc_write -n e2e-inf delete deployment web --wait=false)
  wait_event deployments delete e2e-inf/web "$t" 1

  t=$(kc_write -n e2e-inf apply -f - <<'YAML'
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  replicas: 0
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: fake}]}
YAML
)
  wait_event statefulsets add e2e-inf/db "$t" 1
  t=$(kc_write -n e2e-inf delete statefulset db --wait=false)
  wait_event statefulsets delete e2e-inf/db "$t" 1

  t=$(kc_write label node kwok-node-0 confidential.cypherpunk.io/enabled=true --overwrite)
  wait_event nodes update kwok-node-0 "$t" 1
  # Node preparation answers the label (agent=true, then its cleanup once the label is gone):
  # let it settle before counting events.
  local agent_jp='{.metadata.labels.confidential\.cypherpunk\.io/agent}'
  for _ in $(seq 1 100); do [ -n "$(kc get node kwok-node-0 -o jsonpath="$agent_jp")" ] && break; sleep 0.1; done
  kc label node kwok-node-0 confidential.cypherpunk.io/enabled- >/dev/null
  for _ in $(seq 1 100); do [ -z "$(kc get node kwok-node-0 -o jsonpath="$agent_jp")" ] && break; sleep 0.1; done
  sleep 1

  # Node heartbeats change nothing the controller reads: no update events for them.
  local before after
  before=$(log_count '.msg=="informer event" and .resource=="nodes" and .type=="update"')
  sleep 12
  after=$(log_count '.msg=="informer event" and .resource=="nodes" and .type=="update"')
  check "node heartbeats do not wake handlers ($before -> $after)" [ "$after" -eq "$before" ]

  local rc=0
  ctrl_stop || rc=$?
  check "SIGTERM exits 0 (got $rc)" [ "$rc" -eq 0 ]
  check "informers closed on shutdown" wait_log '.msg=="informer stopped"' 1 3
  check "no sanitizer report" sanitizer_clean
  kc delete namespace e2e-inf --wait=false >/dev/null
}

test_paginated_list() {
  kc create namespace e2e-page >/dev/null
  local i
  for i in $(seq 1 25); do
    printf -- '---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: p%s, namespace: e2e-page}\nspec:\n  replicas: 0\n  selector: {matchLabels: {app: p%s}}\n  template:\n    metadata: {labels: {app: p%s}}\n    spec: {containers: [{name: c, image: fake}]}\n' "$i" "$i" "$i"
  done | kc apply -f - >/dev/null
  ctrl_start paged --list-page-size=10
  check "caches sync" wait_log '.msg=="all caches synced"' 30
  local pages objects added
  pages=$(grep '^{' "$CTRL_LOG" | jq -r 'select(.msg=="list complete" and .resource=="deployments") | .pages' | head -1)
  objects=$(grep '^{' "$CTRL_LOG" | jq -r 'select(.msg=="list complete" and .resource=="deployments") | .objects' | head -1)
  added=$(log_count '.msg=="informer event" and .type=="add" and (.key|startswith("e2e-page/"))')
  check "deployments listed in pages of 10 (pages=$pages)" [ "${pages:-0}" -ge 3 ]
  check "the list holds them all (objects=$objects)" [ "${objects:-0}" -ge 25 ]
  check "every deployment of the namespace in the cache ($added/25)" [ "$added" -eq 25 ]
  local rc=0
  ctrl_stop || rc=$?
  check "clean exit (rc $rc)" [ "$rc" -eq 0 ]
  check "no sanitizer report" sanitizer_clean
  kc delete namespace e2e-page --wait=false >/dev/null
}
