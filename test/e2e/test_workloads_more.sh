# More workload-controller e2e tests (issue 3, "Tests"): annotation opt-in and opt-out,
# StatefulSets with an init-container opt-in, the akash namespace preset, denied classes,
# restoring on opt-in removal, foreign classes, restart mid-rollout without duplicate writes,
# and a CR whose selector changes. Uses wl_setup, jp and wait_jp from test_workloads.sh.

WM_ANN_ORIG=confidential.cypherpunk.io/original-runtime-class

# wm_deploy NS NAME [env=FLOW_LIST] [ann=FLOW_MAP] [rc=CLASS] [replicas=N]: a Deployment with two
# containers; env goes on the second one, ann on the Deployment's metadata, rc is the template's
# runtimeClassName.
wm_deploy() {
  local ns=$1 name=$2 env="" ann="" rc="" replicas=1 a
  shift 2
  for a in "$@"; do
    case $a in
    env=*) env=${a#env=} ;;
    ann=*) ann=${a#ann=} ;;
    rc=*) rc=${a#rc=} ;;
    replicas=*) replicas=${a#replicas=} ;;
    esac
  done
  kc -n "$ns" apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata:
  name: $name
  labels: {app: $name}
  ${ann:+annotations: $ann}
spec:
  replicas: $replicas
  selector: {matchLabels: {app: $name}}
  template:
    metadata: {labels: {app: $name}}
    spec:
      ${rc:+runtimeClassName: $rc}
      containers:
      - {name: sidecar, image: fake}
      - name: app
        image: fake
        ${env:+env: $env}
YAML
}

# wm_nvidia_rc: a RuntimeClass someone else uses (no scheduling constraint, any node runs it).
wm_nvidia_rc() {
  kc apply -f - >/dev/null <<'YAML'
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: nvidia}
handler: nvidia
YAML
}

# wm_has_orig NS OBJ: the original-runtime-class annotation exists (any value, "" included).
wm_has_orig() {
  kc -n "$1" get "$2" -o json 2>/dev/null |
    jq -e --arg k "$WM_ANN_ORIG" '(.metadata.annotations // {}) | has($k)' >/dev/null
}

wm_no_orig() { ! wm_has_orig "$1" "$2"; }

# wm_wait_no_orig NS OBJ TIMEOUT_S: waits until the annotation is gone.
wm_wait_no_orig() {
  local i
  for i in $(seq 1 $(($3 * 10))); do
    wm_has_orig "$1" "$2" || return 0
    sleep 0.1
  done
  log "  $2 still has $WM_ANN_ORIG=$(jp "$1" "$2" '{.metadata.annotations.confidential\.cypherpunk\.io/original-runtime-class}')"
  return 1
}

# wm_untouched NS DEPLOY: never written: generation 1, no class, no annotation of ours.
wm_untouched() {
  local g c
  g=$(jp "$1" "deploy/$2" '{.metadata.generation}')
  c=$(jp "$1" "deploy/$2" '{.spec.template.spec.runtimeClassName}')
  if [ "$g" != 1 ] || [ -n "$c" ] || wm_has_orig "$1" "deploy/$2"; then
    log "  $1/$2: generation $g, class '$c', original annotation $(wm_has_orig "$1" "deploy/$2" && echo present || echo absent)"
    return 1
  fi
  return 0
}

# wm_rewrites KEY: "workload rewritten" lines for a queue key in the current log.
wm_rewrites() { log_count ".msg==\"workload rewritten\" and .key==\"$1\""; }

# wm_finish: stops the controller and checks exit code and sanitizers.
wm_finish() {
  local rc=0
  ctrl_stop || rc=$?
  check "clean exit (rc $rc)" [ "$rc" -eq 0 ]
  check "no sanitizer report" sanitizer_clean
}

# ---------------------------------------------------------------------------------------------

test_annotation_optin() {
  wl_setup
  local ns=e2e-m-ann
  kc create namespace $ns >/dev/null
  wm_deploy $ns ann-gvisor 'ann={confidential.cypherpunk.io/runtime: gvisor}'
  wm_deploy $ns ann-optout 'ann={confidential.cypherpunk.io/runtime: "false"}' \
    'env=[{name: KATA, value: ""}]'
  ctrl_start annotation
  check "annotation runtime=gvisor -> class gvisor" \
    wait_jp $ns deploy/ann-gvisor '{.spec.template.spec.runtimeClassName}' gvisor 15
  check "original class recorded (as none)" wm_has_orig $ns deploy/ann-gvisor
  check "one write: generation 2" wait_jp $ns deploy/ann-gvisor '{.metadata.generation}' 2 5
  check "rewrite logged with the annotation as the reason" \
    wait_log '.msg=="workload rewritten" and .key=="d:'$ns'/ann-gvisor" and (.detail|test("annotation"))' 5
  sleep 2
  check "annotation \"false\" beats env KATA=\"\": untouched" wm_untouched $ns ann-optout
  check "still one write after settling" wait_jp $ns deploy/ann-gvisor '{.metadata.generation}' 2 1
  check "no rewrite of the opted-out deployment logged" [ "$(wm_rewrites "d:$ns/ann-optout")" -eq 0 ]
  wm_finish
  kc delete namespace $ns --wait=false >/dev/null
}

test_statefulset_optin() {
  wl_setup
  local ns=e2e-m-sts
  kc create namespace $ns >/dev/null
  kc -n $ns apply -f - >/dev/null <<'YAML'
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{port: 5432}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, labels: {app: db}}
spec:
  replicas: 1
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      initContainers:
      - name: init
        image: fake
        env: [{name: CONFIDENTIAL_RUNTIME, value: kata-qemu}]
      containers:
      - {name: db, image: fake}
YAML
  ctrl_start statefulset
  check "statefulset rewritten to kata-qemu (opt-in on an init container)" \
    wait_jp $ns sts/db '{.spec.template.spec.runtimeClassName}' kata-qemu 15
  check "original class recorded" wm_has_orig $ns sts/db
  check "one write: generation 2" wait_jp $ns sts/db '{.metadata.generation}' 2 5
  check "rewrite logged for s:$ns/db" wait_log '.msg=="workload rewritten" and .key=="s:'$ns'/db"' 5
  check "rollout completes" kc -n $ns rollout status sts/db --timeout=45s >/dev/null
  local pods=""
  for _ in $(seq 1 100); do
    pods=$(pods_with_class $ns db)
    [ "$pods" = "kata-qemu@kwok-node-0 " ] && break
    sleep 0.1
  done
  log "  pods: $pods"
  check "the pod runs kata-qemu on the node ready for it" [ "$pods" = "kata-qemu@kwok-node-0 " ]
  check "still one write after the rollout" wait_jp $ns sts/db '{.metadata.generation}' 2 1
  wm_finish
  kc delete namespace $ns --wait=false >/dev/null
}

test_namespace_policy_akash() {
  wl_setup
  local a=e2e-m-akash-a b=e2e-m-akash-b c=e2e-m-akash-c
  kc create namespace $a >/dev/null
  kc label namespace $a akash.network=true akash.network/namespace=lease-a >/dev/null
  kc create namespace $b >/dev/null
  local env='env=[{name: KATA, value: ""}]'
  wm_deploy $a web "$env"
  wm_deploy $b web "$env"
  kc -n kube-system delete deploy e2e-m-kata --ignore-not-found >/dev/null
  wm_deploy kube-system e2e-m-kata "$env" replicas=0

  ctrl_start akash --namespace-policy=akash
  check "lease namespace (akash labels): rewritten" \
    wait_jp $a deploy/web '{.spec.template.spec.runtimeClassName}' kata-qemu 15
  check "lease namespace: one write" wait_jp $a deploy/web '{.metadata.generation}' 2 5
  sleep 2
  check "unlabelled namespace: untouched" wm_untouched $b web
  check "kube-system: untouched (akash preset)" wm_untouched kube-system e2e-m-kata

  # The provider labels the namespace later (as it does for a new lease): that alone must
  # trigger the decision.
  kc label namespace $b akash.network=true akash.network/namespace=lease-b >/dev/null
  check "namespace labelled: rewritten" \
    wait_jp $b deploy/web '{.spec.template.spec.runtimeClassName}' kata-qemu 15
  check "namespace labelled: one write" wait_jp $b deploy/web '{.metadata.generation}' 2 5
  # Only akash.network=true without akash.network/namespace (like akash-services): not a tenant.
  kc create namespace $c >/dev/null
  kc label namespace $c akash.network=true >/dev/null
  wm_deploy $c web "$env"
  sleep 2
  check "akash.network=true without akash.network/namespace: untouched" wm_untouched $c web
  check "kube-system: still untouched" wm_untouched kube-system e2e-m-kata
  wm_finish

  # The default policy: every namespace but the system ones.
  ctrl_start akash-default
  check "default policy: the namespace the preset skipped is rewritten" \
    wait_jp $c deploy/web '{.spec.template.spec.runtimeClassName}' kata-qemu 15
  sleep 2
  check "kube-system: untouched (default policy)" wm_untouched kube-system e2e-m-kata
  check "already sandboxed ones not written again" wait_jp $a deploy/web '{.metadata.generation}' 2 1
  check "no rewrite of kube-system logged" [ "$(wm_rewrites "d:kube-system/e2e-m-kata")" -eq 0 ]
  wm_finish
  kc -n kube-system delete deploy e2e-m-kata --wait=false >/dev/null
  kc delete namespace $a $b $c --wait=false >/dev/null
}

test_denied_class() {
  wl_setup
  local ns=e2e-m-denied
  kc create namespace $ns >/dev/null
  wm_deploy $ns want-runc 'env=[{name: CONFIDENTIAL_RUNTIME, value: runc}]'
  wm_deploy $ns want-fc 'env=[{name: CONFIDENTIAL_RUNTIME, value: kata-fc}]'
  wm_deploy $ns want-gvisor 'env=[{name: CONFIDENTIAL_RUNTIME, value: gvisor}]'
  ctrl_start denied --runtime-classes=kata-qemu,gvisor
  check "an allowed class is written (control)" \
    wait_jp $ns deploy/want-gvisor '{.spec.template.spec.runtimeClassName}' gvisor 15
  local d
  for d in want-runc want-fc; do
    check "$d: denial logged (workload left unchanged, action DENIED, ClassNotAllowed)" \
      wait_log '.msg=="workload left unchanged" and .key=="d:'$ns/$d'" and (.action|ascii_upcase)=="DENIED" and .reason=="ClassNotAllowed"' 10
  done
  sleep 2
  for d in want-runc want-fc; do
    check "$d: never written" wm_untouched $ns $d
    check "$d: no rewrite logged" [ "$(wm_rewrites "d:$ns/$d")" -eq 0 ]
  done
  grep '^{' "$CTRL_LOG" | jq -r 'select(.msg=="workload left unchanged") | "#   \(.key) \(.action) \(.reason): \(.message)"' | sort -u >&2
  wm_finish
  kc delete namespace $ns --wait=false >/dev/null
}

test_optin_removed_restores() {
  wl_setup
  wm_nvidia_rc
  local ns=e2e-m-restore
  kc create namespace $ns >/dev/null
  wm_deploy $ns envopt 'env=[{name: KATA, value: ""}]'
  wm_deploy $ns gpu rc=nvidia
  kc -n $ns apply -f - >/dev/null <<'YAML'
apiVersion: confidential.cypherpunk.io/v1alpha1
kind: ConfidentialWorkload
metadata: {name: gpu}
spec:
  runtimeClassName: kata-qemu
  targetRefs: [{kind: Deployment, name: gpu}]
YAML
  ctrl_start restores
  # Env opt-in, then the owner removes the env var.
  check "env opt-in rewritten" wait_jp $ns deploy/envopt '{.spec.template.spec.runtimeClassName}' kata-qemu 15
  check "original recorded as \"\"" wm_has_orig $ns deploy/envopt
  check "original is empty" [ -z "$(jp $ns deploy/envopt '{.metadata.annotations.confidential\.cypherpunk\.io/original-runtime-class}')" ]
  check "one write: generation 2" wait_jp $ns deploy/envopt '{.metadata.generation}' 2 5
  kc -n $ns set env deploy/envopt KATA- >/dev/null
  check "opt-in removed: class removed" wait_jp $ns deploy/envopt '{.spec.template.spec.runtimeClassName}' "" 15
  check "opt-in removed: original annotation removed" wm_wait_no_orig $ns deploy/envopt 5
  check "restore logged" wait_log '.msg=="workload restored" and .key=="d:'$ns'/envopt"' 5

  # A class set by someone else, taken over by a CR, comes back exactly after the CR goes.
  check "CR takes over nvidia" wait_jp $ns deploy/gpu '{.spec.template.spec.runtimeClassName}' kata-qemu 15
  check "nvidia recorded as the original" \
    wait_jp $ns deploy/gpu '{.metadata.annotations.confidential\.cypherpunk\.io/original-runtime-class}' nvidia 5
  kc -n $ns delete cwl gpu --wait=false >/dev/null
  check "CR deleted: back to nvidia" wait_jp $ns deploy/gpu '{.spec.template.spec.runtimeClassName}' nvidia 15
  check "CR deleted: original annotation removed" wm_wait_no_orig $ns deploy/gpu 5
  check "CR released by the finalizer" kc -n $ns wait --for=delete cwl/gpu --timeout=15s
  sleep 2
  # 1 created, 2 rewrite, 3 owner's set env, 4 restore; 1, 2 take-over, 3 restore.
  check "envopt: no further writes (generation 4)" wait_jp $ns deploy/envopt '{.metadata.generation}' 4 1
  check "gpu: no further writes (generation 3)" wait_jp $ns deploy/gpu '{.metadata.generation}' 3 1
  wm_finish
  kc -n $ns patch cwl gpu --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
  kc delete namespace $ns --wait=false >/dev/null
}

test_foreign_class_left_alone() {
  wl_setup
  wm_nvidia_rc
  local ns=e2e-m-foreign
  kc create namespace $ns >/dev/null
  wm_deploy $ns gpu rc=nvidia 'env=[{name: KATA, value: ""}]'
  ctrl_start foreign
  check "FOREIGN logged (workload left unchanged, ForeignRuntimeClass)" \
    wait_log '.msg=="workload left unchanged" and .key=="d:'$ns'/gpu" and (.action|ascii_upcase)=="FOREIGN" and .reason=="ForeignRuntimeClass"' 15
  sleep 2
  check "class stays nvidia" [ "$(jp $ns deploy/gpu '{.spec.template.spec.runtimeClassName}')" = nvidia ]
  check "generation stays 1" [ "$(jp $ns deploy/gpu '{.metadata.generation}')" = 1 ]
  check "no annotation of ours" wm_no_orig $ns deploy/gpu
  check "no rewrite logged" [ "$(wm_rewrites "d:$ns/gpu")" -eq 0 ]
  wm_finish
  kc delete namespace $ns --wait=false >/dev/null
}

# wm_restart_state NS: "name generation class rolledout" per Deployment of NS, one a line;
# rolledout is 1 when the rollout of the current generation is complete (what `kubectl rollout
# status` waits for).
wm_restart_state() {
  kc -n "$1" get deploy -o json | jq -r '.items[] | [.metadata.name, .metadata.generation,
    (.spec.template.spec.runtimeClassName // "-"),
    (if (.status.observedGeneration // 0) >= .metadata.generation
        and (.status.updatedReplicas // 0) == .spec.replicas
        and (.status.replicas // 0) == .spec.replicas
        and (.status.availableReplicas // 0) == .spec.replicas then 1 else 0 end)] | @tsv'
}

test_restart_mid_rollout_no_duplicate_writes() {
  wl_setup
  local ns=e2e-m-restart n=20 i
  kc create namespace $ns >/dev/null
  for i in $(seq -w 1 $n); do wm_deploy $ns "d$i" 'env=[{name: KATA, value: ""}]'; done
  # A slow client (5 requests/s, no burst) spreads the 20 writes (and their events) over a few
  # seconds, so the kill lands mid-way.
  ctrl_start restart-1 --kube-api-qps=5 --kube-api-burst=1
  if ! wait_log '.msg=="workload rewritten"' 30; then
    fail "no rewrite before the kill"
  fi
  kill -KILL "$CTRL_PID" 2>/dev/null
  wait "$CTRL_PID" 2>/dev/null
  CTRL_PID=""
  local logged1 written1
  logged1=$(log_count '.msg=="workload rewritten"')
  sleep 1 # a PATCH in flight at the kill may still land
  written1=$(wm_restart_state $ns | awk '$3=="kata-qemu"' | wc -l)
  log "  killed after $logged1 logged rewrites; $written1/$n deployments carry the class"
  [ "$written1" -lt "$n" ] || log "  (all written before the kill: the split point is at the end)"

  ctrl_start restart-2
  local state="" done_n=0
  for _ in $(seq 1 150); do
    state=$(wm_restart_state $ns)
    done_n=$(awk '$3=="kata-qemu"' <<<"$state" | wc -l)
    [ "$done_n" -eq $n ] && break
    sleep 0.2
  done
  check "all $n deployments end with kata-qemu ($done_n)" [ "$done_n" -eq $n ]
  sleep 3
  local bad
  bad=$(wm_restart_state $ns | awk '$2!=2 {printf " %s:%s", $1, $2}')
  check "every deployment written exactly once (generation 2)${bad:+; not:$bad}" [ -z "$bad" ]
  local logged2
  logged2=$(log_count '.msg=="workload rewritten"')
  log "  second run logged $logged2 rewrites"
  check "second run writes only the rest ($logged2 = $n - $written1)" [ "$logged2" -eq $((n - written1)) ]
  local notdone=""
  for _ in $(seq 1 120); do
    notdone=$(wm_restart_state $ns | awk '$4!=1 {printf " %s", $1}')
    [ -z "$notdone" ] && break
    sleep 0.25
  done
  check "rollout completes for all${notdone:+; not:$notdone}" [ -z "$notdone" ]
  bad=$(wm_restart_state $ns | awk '$2!=2 {printf " %s:%s", $1, $2}')
  check "still one write each after the rollouts${bad:+; not:$bad}" [ -z "$bad" ]
  wm_finish
  kc delete namespace $ns --wait=false >/dev/null
}

test_cr_selector_change() {
  wl_setup
  local ns=e2e-m-sel
  kc create namespace $ns >/dev/null
  wm_deploy $ns a
  wm_deploy $ns b
  kc -n $ns apply -f - >/dev/null <<'YAML'
apiVersion: confidential.cypherpunk.io/v1alpha1
kind: ConfidentialWorkload
metadata: {name: sel}
spec:
  runtimeClassName: kata-qemu
  selector: {matchLabels: {app: a}}
YAML
  ctrl_start selector
  check "a rewritten" wait_jp $ns deploy/a '{.spec.template.spec.runtimeClassName}' kata-qemu 15
  check "status lists a" wait_jp $ns cwl/sel '{.status.workloads[*].name}' a 10
  check "b untouched so far" wm_untouched $ns b

  kc -n $ns patch cwl sel --type=merge -p '{"spec":{"selector":{"matchLabels":{"app":"b"}}}}' >/dev/null
  check "b rewritten" wait_jp $ns deploy/b '{.spec.template.spec.runtimeClassName}' kata-qemu 15
  check "a restored (no class)" wait_jp $ns deploy/a '{.spec.template.spec.runtimeClassName}' "" 15
  check "a: original annotation removed" wm_wait_no_orig $ns deploy/a 5
  check "status lists only b" wait_jp $ns cwl/sel '{.status.workloads[*].name}' b 10
  sleep 2
  check "a: rewrite + restore only (generation 3)" wait_jp $ns deploy/a '{.metadata.generation}' 3 1
  check "b: one write (generation 2)" wait_jp $ns deploy/b '{.metadata.generation}' 2 1

  kc -n $ns delete cwl sel --wait=false >/dev/null
  check "CR deleted: b restored" wait_jp $ns deploy/b '{.spec.template.spec.runtimeClassName}' "" 15
  check "CR released" kc -n $ns wait --for=delete cwl/sel --timeout=15s
  wm_finish
  kc -n $ns patch cwl sel --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
  kc delete namespace $ns --wait=false >/dev/null
}
