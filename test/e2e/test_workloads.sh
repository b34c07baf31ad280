# The workload controller against the real API server, controller-manager and kwok: opt-in by
# env var, annotation and ConfidentialWorkload; rollouts to sandboxed pods; drift; deletion.

# Cluster-wide setup shared by these tests: the CRD, two RuntimeClasses whose nodeSelector
# points at the readiness label, and kwok-node-0 ready for kata-qemu only.
wl_setup() {
  kc apply -f crd/confidentialworkloads.yaml >/dev/null
  kc wait --for=condition=Established crd/confidentialworkloads.confidential.cypherpunk.io --timeout=30s >/dev/null
  local c h
  for c in kata-qemu gvisor; do
    h=$c; [ "$c" = gvisor ] && h=runsc
    kc apply -f - >/dev/null <<YAML
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: $c}
handler: $h
scheduling:
  nodeSelector: {runtime.confidential.cypherpunk.io/$c: ready}
YAML
  done
  kc label node kwok-node-0 runtime.confidential.cypherpunk.io/kata-qemu=ready --overwrite >/dev/null
}

# deploy NS NAME [ENV_YAML]: a Deployment with two containers; ENV_YAML goes on the second.
deploy() {
  local ns=$1 name=$2 env=${3:-}
  kc -n "$ns" apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: $name, labels: {app: $name}}
spec:
  replicas: 1
  selector: {matchLabels: {app: $name}}
  template:
    metadata: {labels: {app: $name}}
    spec:
      containers:
      - {name: sidecar, image: fake}
      - name: app
        image: fake
        ${env:+env: $env}
YAML
}

jp() { kc -n "$1" get "$2" -o jsonpath="$3" 2>/dev/null; }

# wait_jp NS OBJ JSONPATH WANT TIMEOUT_S
wait_jp() {
  local i got=""
  for i in $(seq 1 $(( $5 * 10 ))); do
    got=$(jp "$1" "$2" "$3")
    [ "$got" = "$4" ] && return 0
    sleep 0.1
  done
  log "  $2 $3 = '$got' (want '$4')"
  return 1
}

pods_with_class() { kc -n "$1" get pods -l "app=$2" -o jsonpath='{range .items[*]}{.spec.runtimeClassName}{"@"}{.spec.nodeName}{" "}{end}'; }

test_env_optin_rewrites_and_rolls_out() {
  wl_setup
  kc create namespace e2e-env >/dev/null
  deploy e2e-env akash-app '[{name: KATA, value: ""}]'
  deploy e2e-env plain
  ctrl_start env
  check "akash-style deployment rewritten to kata-qemu" \
    wait_jp e2e-env deploy/akash-app '{.spec.template.spec.runtimeClassName}' kata-qemu 15
  check "original class recorded as none" \
    wait_jp e2e-env deploy/akash-app '{.metadata.annotations.confidential\.cypherpunk\.io/original-runtime-class}' "" 1
  check "one write: generation 2" wait_jp e2e-env deploy/akash-app '{.metadata.generation}' 2 5
  check "rollout completes" kc -n e2e-env rollout status deploy/akash-app --timeout=60s
  local pods
  pods=$(pods_with_class e2e-env akash-app)
  log "  pods: $pods"
  check "the pod runs with kata-qemu on the ready node" [ "$pods" = "kata-qemu@kwok-node-0 " ]
  check "plain deployment untouched" wait_jp e2e-env deploy/plain '{.metadata.generation}' 1 1
  check "plain deployment has no class" [ -z "$(jp e2e-env deploy/plain '{.spec.template.spec.runtimeClassName}')" ]
  sleep 3
  check "still exactly one write after settling" wait_jp e2e-env deploy/akash-app '{.metadata.generation}' 2 1
  check "rewrite event recorded" bash -c "'$CO_KUBECTL' --kubeconfig='$KUBECONFIG' -n e2e-env get events.events.k8s.io -o jsonpath='{.items[*].reason}' | grep -q OptedInByEnv"
  ctrl_stop_clean
  kc delete namespace e2e-env --wait=false >/dev/null
}

test_cr_selects_reports_ready_and_restores_on_delete() {
  wl_setup
  kc create namespace e2e-cr >/dev/null
  deploy e2e-cr web
  kc -n e2e-cr apply -f - >/dev/null <<'YAML'
apiVersion: confidential.cypherpunk.io/v1alpha1
kind: ConfidentialWorkload
metadata: {name: web}
spec:
  runtimeClassName: kata-qemu
  selector: {matchLabels: {app: web}}
YAML
  ctrl_start cr
  check "CR becomes Ready" kc -n e2e-cr wait --for=condition=Ready cwl/web --timeout=60s
  check "deployment runs kata-qemu" wait_jp e2e-cr deploy/web '{.spec.template.spec.runtimeClassName}' kata-qemu 1
  check "status summary" wait_jp e2e-cr cwl/web '{.status.workloadsSummary}' "1/1 sandboxed" 5
  check "workload phase Sandboxed" wait_jp e2e-cr cwl/web '{.status.workloads[0].phase}' Sandboxed 1
  check "finalizer set" wait_jp e2e-cr cwl/web '{.metadata.finalizers[0]}' confidential.cypherpunk.io/finalizer 1
  # Events are posted after the status write that reports the phase (their own token bucket):
  # wait for them rather than read once.
  local evs
  for _ in $(seq 1 100); do
    evs=$(kc -n e2e-cr get events.events.k8s.io \
      -o jsonpath='{range .items[?(@.regarding.kind=="ConfidentialWorkload")]}{.reason}{" "}{end}')
    grep -q OptedInByCR <<<"$evs" && grep -q Sandboxed <<<"$evs" && break
    sleep 0.1
  done
  log "  events on the CR: $evs"
  check "the rewrite is recorded on the CR" grep -q OptedInByCR <<<"$evs"
  check "reaching Ready is recorded on the CR" grep -q Sandboxed <<<"$evs"

  # Drift: the owner re-applies its template without the class (as the Akash provider does).
  local g0 g
  g0=$(jp e2e-cr deploy/web '{.metadata.generation}')
  kc -n e2e-cr patch deploy web --type=json \
    -p '[{"op":"remove","path":"/spec/template/spec/runtimeClassName"},{"op":"add","path":"/spec/template/metadata/labels/rev","value":"2"}]' >/dev/null
  check "drift re-asserted" wait_jp e2e-cr deploy/web '{.spec.template.spec.runtimeClassName}' kata-qemu 10
  sleep 4
  g=$(jp e2e-cr deploy/web '{.metadata.generation}')
  check "exactly one re-assert for one owner update (generation $g0 -> $g)" [ "$g" -eq $(( g0 + 2 )) ]

  kc -n e2e-cr delete cwl web --wait=false >/dev/null
  check "class removed after the CR is deleted" wait_jp e2e-cr deploy/web '{.spec.template.spec.runtimeClassName}' "" 15
  check "original annotation removed" \
    wait_jp e2e-cr deploy/web '{.metadata.annotations.confidential\.cypherpunk\.io/original-runtime-class}' "" 1
  check "CR released by the finalizer" kc -n e2e-cr wait --for=delete cwl/web --timeout=15s
  ctrl_stop_clean
  kc delete namespace e2e-cr --wait=false >/dev/null
}

test_unschedulable_and_conflict_are_reported() {
  wl_setup
  kc create namespace e2e-bad >/dev/null
  deploy e2e-bad nowhere
  deploy e2e-bad contested
  kc -n e2e-bad apply -f - >/dev/null <<'YAML'
apiVersion: confidential.cypherpunk.io/v1alpha1
kind: ConfidentialWorkload
metadata: {name: nowhere}
spec:
  runtimeClassName: gvisor
  targetRefs: [{kind: Deployment, name: nowhere}]
---
apiVersion: confidential.cypherpunk.io/v1alpha1
kind: ConfidentialWorkload
metadata: {name: contest-a}
spec:
  runtimeClassName: kata-qemu
  targetRefs: [{kind: Deployment, name: contested}]
---
apiVersion: confidential.cypherpunk.io/v1alpha1
kind: ConfidentialWorkload
metadata: {name: contest-b}
spec:
  runtimeClassName: gvisor
  selector: {matchLabels: {app: contested}}
YAML
  ctrl_start bad
  check "rewritten to gvisor although no node is ready" \
    wait_jp e2e-bad deploy/nowhere '{.spec.template.spec.runtimeClassName}' gvisor 15
  check "status says the pods cannot be scheduled" bash -c "
    for i in \$(seq 1 300); do
      m=\$('$CO_KUBECTL' --kubeconfig='$KUBECONFIG' -n e2e-bad get cwl nowhere -o jsonpath='{.status.workloads[0].message}')
      case \"\$m\" in *Unschedulable*) echo \"#   \$m\" >&2; exit 0;; esac; sleep 0.1; done; exit 1"
  check "not Ready" wait_jp e2e-bad cwl/nowhere '{.status.conditions[?(@.type=="Ready")].status}' False 5
  check "conflict on the first CR" wait_jp e2e-bad cwl/contest-a '{.status.workloads[0].phase}' Conflict 10
  check "conflict on the second CR" wait_jp e2e-bad cwl/contest-b '{.status.workloads[0].phase}' Conflict 5
  check "contested deployment untouched" [ -z "$(jp e2e-bad deploy/contested '{.spec.template.spec.runtimeClassName}')" ]
  check "Degraded on conflict" wait_jp e2e-bad cwl/contest-a '{.status.conditions[?(@.type=="Degraded")].status}' True 5
  ctrl_stop_clean
  kc -n e2e-bad delete cwl --all --wait=false >/dev/null
  kc -n e2e-bad patch cwl nowhere contest-a contest-b --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
  kc delete namespace e2e-bad --wait=false >/dev/null
}

test_on_failure_revert_and_hold() {
  wl_setup
  kc create namespace e2e-fail >/dev/null
  deploy e2e-fail rev
  deploy e2e-fail hold
  kc -n e2e-fail patch deploy hold --type=merge -p '{"spec":{"progressDeadlineSeconds":15}}' >/dev/null
  # No node is ready for gvisor: the sandboxed pods never schedule.
  kc -n e2e-fail apply -f - >/dev/null <<'YAML'
apiVersion: confidential.cypherpunk.io/v1alpha1
kind: ConfidentialWorkload
metadata: {name: rev}
spec:
  runtimeClassName: gvisor
  targetRefs: [{kind: Deployment, name: rev}]
  onFailure: Revert
  revertAfterSeconds: 60
---
apiVersion: confidential.cypherpunk.io/v1alpha1
kind: ConfidentialWorkload
metadata: {name: hold}
spec:
  runtimeClassName: gvisor
  targetRefs: [{kind: Deployment, name: hold}]
YAML
  ctrl_start onfailure
  check "both rewritten to gvisor" wait_jp e2e-fail deploy/rev '{.spec.template.spec.runtimeClassName}' gvisor 15
  check "hold rewritten too" wait_jp e2e-fail deploy/hold '{.spec.template.spec.runtimeClassName}' gvisor 5
  check "Hold reports Degraded once the rollout fails" \
    wait_jp e2e-fail cwl/hold '{.status.conditions[?(@.type=="Degraded")].status}' True 40
  check "Revert has not reverted before revertAfterSeconds" \
    wait_jp e2e-fail deploy/rev '{.spec.template.spec.runtimeClassName}' gvisor 1
  check "Revert restores the original class after 60s" \
    wait_jp e2e-fail deploy/rev '{.spec.template.spec.runtimeClassName}' "" 60
  check "the failed class is recorded" \
    wait_jp e2e-fail deploy/rev '{.metadata.annotations.confidential\.cypherpunk\.io/reverted-runtime-class}' gvisor 2
  check "status says Reverted" wait_jp e2e-fail cwl/rev '{.status.workloads[0].reason}' Reverted 10
  check "Hold stays sandboxed (fail closed)" \
    wait_jp e2e-fail deploy/hold '{.spec.template.spec.runtimeClassName}' gvisor 1
  sleep 3
  check "no flapping after the revert" wait_jp e2e-fail deploy/rev '{.spec.template.spec.runtimeClassName}' "" 1
  kc -n e2e-fail delete cwl rev hold --wait=false >/dev/null
  check "CRs released" kc -n e2e-fail wait --for=delete cwl/rev cwl/hold --timeout=20s
  ctrl_stop_clean
  kc delete namespace e2e-fail --wait=false >/dev/null
}

test_hardening_applied_and_reverted() {
  wl_setup
  kc create namespace e2e-hard >/dev/null
  kc -n e2e-hard apply -f - >/dev/null <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: vault, labels: {app: vault}}
spec:
  replicas: 1
  selector: {matchLabels: {app: vault}}
  template:
    metadata: {labels: {app: vault}}
    spec:
      containers: [{name: app, image: fake, volumeMounts: [{name: scratch, mountPath: /tmp}]}]
      volumes:
      - {name: scratch, emptyDir: {}}
      - {name: cache, emptyDir: {sizeLimit: 1Gi}}
      - {name: conf, configMap: {name: vault-conf}}
---
apiVersion: confidential.cypherpunk.io/v1alpha1
kind: ConfidentialWorkload
metadata: {name: vault}
spec:
  runtimeClassName: kata-qemu
  targetRefs: [{kind: Deployment, name: vault}]
  hardening: {memoryBackedEmptyDirs: true, automountServiceAccountToken: false}
YAML
  ctrl_start hardening
  check "class set" wait_jp e2e-hard deploy/vault '{.spec.template.spec.runtimeClassName}' kata-qemu 15
  check "scratch emptyDir in memory" \
    wait_jp e2e-hard deploy/vault '{.spec.template.spec.volumes[?(@.name=="scratch")].emptyDir.medium}' Memory 2
  check "with the default size limit" \
    wait_jp e2e-hard deploy/vault '{.spec.template.spec.volumes[?(@.name=="scratch")].emptyDir.sizeLimit}' 256Mi 1
  check "an existing size limit is kept" \
    wait_jp e2e-hard deploy/vault '{.spec.template.spec.volumes[?(@.name=="cache")].emptyDir.sizeLimit}' 1Gi 1
  check "other volumes untouched" \
    wait_jp e2e-hard deploy/vault '{.spec.template.spec.volumes[?(@.name=="conf")].configMap.name}' vault-conf 1
  check "service account token not mounted" \
    wait_jp e2e-hard deploy/vault '{.spec.template.spec.automountServiceAccountToken}' false 1
  check "one write for class and hardening" wait_jp e2e-hard deploy/vault '{.metadata.generation}' 2 3
  check "CR Ready" kc -n e2e-hard wait --for=condition=Ready cwl/vault --timeout=60s
  kc -n e2e-hard delete cwl vault --wait=false >/dev/null
  check "class removed" wait_jp e2e-hard deploy/vault '{.spec.template.spec.runtimeClassName}' "" 15
  check "scratch back on disk" \
    wait_jp e2e-hard deploy/vault '{.spec.template.spec.volumes[?(@.name=="scratch")].emptyDir.medium}' "" 2
  check "scratch size limit removed" \
    wait_jp e2e-hard deploy/vault '{.spec.template.spec.volumes[?(@.name=="scratch")].emptyDir.sizeLimit}' "" 1
  check "cache keeps its own limit" \
    wait_jp e2e-hard deploy/vault '{.spec.template.spec.volumes[?(@.name=="cache")].emptyDir.sizeLimit}' 1Gi 1
  check "automount back to unset" \
    wait_jp e2e-hard deploy/vault '{.spec.template.spec.automountServiceAccountToken}' "" 1
  check "records removed" \
    wait_jp e2e-hard deploy/vault '{.metadata.annotations.confidential\.cypherpunk\.io/original-hardening}' "" 1
  check "CR released" kc -n e2e-hard wait --for=delete cwl/vault --timeout=20s
  ctrl_stop_clean
  kc delete namespace e2e-hard --wait=false >/dev/null
}

test_cr_made_invalid_fails_closed() {
  wl_setup
  kc create namespace e2e-typo >/dev/null
  deploy e2e-typo api
  kc -n e2e-typo apply -f - >/dev/null <<'YAML'
apiVersion: confidential.cypherpunk.io/v1alpha1
kind: ConfidentialWorkload
metadata: {name: api}
spec:
  runtimeClassName: kata-qemu
  targetRefs: [{kind: Deployment, name: api}]
YAML
  ctrl_start typo --runtime-classes=kata-qemu,gvisor
  check "rewritten" wait_jp e2e-typo deploy/api '{.spec.template.spec.runtimeClassName}' kata-qemu 15
  # kata-fc passes the schema but is not enabled here.
  kc -n e2e-typo patch cwl api --type=merge -p '{"spec":{"runtimeClassName":"kata-fc"}}' >/dev/null
  check "CR reports the invalid spec" \
    wait_jp e2e-typo cwl/api '{.status.conditions[?(@.type=="Degraded")].reason}' InvalidSpec 10
  sleep 2
  check "the workload stays sandboxed (fail closed)" \
    wait_jp e2e-typo deploy/api '{.spec.template.spec.runtimeClassName}' kata-qemu 1
  check "no write after the typo" wait_jp e2e-typo deploy/api '{.metadata.generation}' 2 1
  kc -n e2e-typo delete cwl api --wait=false >/dev/null
  check "deleting the CR still restores" wait_jp e2e-typo deploy/api '{.spec.template.spec.runtimeClassName}' "" 15
  check "CR released" kc -n e2e-typo wait --for=delete cwl/api --timeout=20s
  ctrl_stop_clean
  kc delete namespace e2e-typo --wait=false >/dev/null
}
