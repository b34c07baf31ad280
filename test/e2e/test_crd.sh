# shellcheck shell=bash
# The ConfidentialWorkload CRD on the real API server: it is accepted (structural schema, CEL
# compiles within the cost budget), the samples apply, printer columns show, every invalid spec
# is rejected with a clear message, and the status subresource behaves as the controller needs.

CRDTEST_CRD=crd/confidentialworkloads.yaml
CRDTEST_NAME=confidentialworkloads.confidential.cypherpunk.io

# crdtest_apply: applies the CRD (idempotent: other test files may apply it too) and waits until
# it is Established and served through discovery (kubectl resolves "cwl").
crdtest_apply() {
  local out i
  if ! out=$(kc apply -f "$CRDTEST_CRD" 2>&1); then
    fail "CRD apply refused: $out"
    return 1
  fi
  log "  $out"
  if grep -q 'Warning' <<<"$out"; then
    fail "CRD apply warned: $out"
  fi
  kc wait --for=condition=Established "crd/$CRDTEST_NAME" --timeout=30s >/dev/null ||
    { fail "CRD not Established"; return 1; }
  for i in $(seq 1 100); do
    kc get cwl -A >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  fail "cwl not served by discovery 10s after Established"
  return 1
}

# crdtest_kc ARGS...: kubectl with its stdout discarded (errors still show).
crdtest_kc() { kc "$@" >/dev/null; }

# crdtest_1l TEXT: TEXT on one line, cut to 200 characters, for log lines.
crdtest_1l() { tr '\n' ' ' <<<"$1" | cut -c1-200; }

# crdtest_ns NAME: creates the namespace if missing.
crdtest_ns() {
  kc get namespace "$1" >/dev/null 2>&1 || kc create namespace "$1" >/dev/null
}

# crdtest_reject NS WHAT REGEX < manifest: creating the manifest must fail, with an error
# matching REGEX (grep -E), and leave no object behind.
crdtest_reject() {
  local ns=$1 what=$2 re=$3 out rc=0 name
  local manifest
  manifest=$(cat)
  name=$(printf '%s\n' "$manifest" | sed -n 's/^  name: *//p' | head -1)
  out=$(printf '%s\n' "$manifest" | kc -n "$ns" create -f - 2>&1) || rc=$?
  if [ "$rc" -eq 0 ]; then
    fail "$what: accepted by the API server"
    kc -n "$ns" delete cwl "$name" --wait=false >/dev/null 2>&1
    return 1
  fi
  if ! printf '%s' "$out" | grep -qE -- "$re"; then
    fail "$what: rejected, but the message does not match /$re/: $out"
    return 1
  fi
  if kc -n "$ns" get cwl "$name" >/dev/null 2>&1; then
    fail "$what: object $name exists after the rejection"
    return 1
  fi
  log "  ok: rejected $what: $(crdtest_1l "$out")"
}

# crdtest_field NS NAME JSONPATH: prints a field of cwl NAME.
crdtest_field() {
  kc -n "$1" get cwl "$2" -o jsonpath="{$3}"
}

test_crd_accepted_samples_and_columns() {
  crdtest_apply || return
  # idempotent: a second apply changes nothing
  local out
  out=$(kc apply -f "$CRDTEST_CRD" 2>&1)
  check "second apply is a no-op ($(crdtest_1l "$out"))" grep -q unchanged <<<"$out"
  local conds
  conds=$(kc get crd "$CRDTEST_NAME" -o jsonpath='{range .status.conditions[*]}{.type}={.status};{end}')
  check "schema structural, names accepted ($conds)" \
    bash -c "[[ '$conds' == *Established=True* && '$conds' == *NamesAccepted=True* && '$conds' != *NonStructural* ]]"

  local ns=e2e-crd-samples
  crdtest_ns $ns
  check "sample (selector) applies" crdtest_kc -n $ns apply -f manifests/samples/confidentialworkload.yaml
  check "sample (targetRefs) applies" \
    crdtest_kc -n $ns apply -f manifests/samples/confidentialworkload-targetrefs.yaml
  check "samples re-apply unchanged" \
    bash -c "'$CO_KUBECTL' --kubeconfig='$KUBECONFIG' -n $ns apply -f manifests/samples/ | grep -c unchanged | grep -qx 2"

  # the schema's defaults are applied by the API server
  check "default onFailure Hold" [ "$(crdtest_field $ns tenant-app .spec.onFailure)" = Hold ]
  check "default revertAfterSeconds 600" \
    [ "$(crdtest_field $ns tenant-app .spec.revertAfterSeconds)" = 600 ]
  check "explicit values kept" \
    [ "$(crdtest_field $ns tenant-backend .spec.revertAfterSeconds)/$(crdtest_field $ns tenant-backend .spec.hardening.emptyDirSizeLimit)" = 900/512Mi ]
  check "no hardening defaults without hardening" \
    [ -z "$(crdtest_field $ns tenant-app .spec.hardening)" ]

  local hdr wide
  hdr=$(kc -n $ns get cwl | head -1 | tr -s ' ')
  check "printer columns: '$hdr'" [ "$hdr" = "NAME RUNTIME READY WORKLOADS AGE" ]
  wide=$(kc -n $ns get cwl -o wide | head -1 | tr -s ' ')
  check "wide columns: '$wide'" [ "$wide" = "NAME RUNTIME REQUESTED READY WORKLOADS REASON AGE" ]
  check "requested class in the wide view" \
    bash -c "'$CO_KUBECTL' --kubeconfig='$KUBECONFIG' -n $ns get cwl tenant-backend -o wide --no-headers | grep -qw auto"
  check "short name, singular, plural and category resolve" \
    bash -c "for r in cwl confidentialworkload confidentialworkloads confidential; do '$CO_KUBECTL' --kubeconfig='$KUBECONFIG' -n $ns get \$r tenant-app -o name >/dev/null 2>&1 || [ \$r = confidential ] || exit 1; done; '$CO_KUBECTL' --kubeconfig='$KUBECONFIG' -n $ns get confidential -o name | grep -q tenant-app"
  check "kubectl explain documents the classes" \
    bash -c "'$CO_KUBECTL' --kubeconfig='$KUBECONFIG' explain cwl.spec.runtimeClassName | grep -q 'strongest class'"
  check "kubectl explain documents onFailure" \
    bash -c "'$CO_KUBECTL' --kubeconfig='$KUBECONFIG' explain cwl.spec.onFailure | grep -q 'fail closed'"
  kc delete namespace $ns --wait=false >/dev/null
}

test_crd_rejects_invalid_specs() {
  crdtest_apply || return
  local ns=e2e-crd-invalid
  crdtest_ns $ns
  local head='apiVersion: confidential.cypherpunk.io/v1alpha1
kind: ConfidentialWorkload
metadata:
  name: bad
spec:'

  crdtest_reject $ns "unknown class runc" 'spec.runtimeClassName: Unsupported value: "runc"' <<EOF
$head
  runtimeClassName: runc
  selector: {matchLabels: {app: a}}
EOF
  crdtest_reject $ns "missing runtimeClassName" 'spec.runtimeClassName: Required value' <<EOF
$head
  selector: {matchLabels: {app: a}}
EOF
  crdtest_reject $ns "missing spec" 'spec: Required value' <<EOF
apiVersion: confidential.cypherpunk.io/v1alpha1
kind: ConfidentialWorkload
metadata:
  name: bad
EOF
  crdtest_reject $ns "neither selector nor targetRefs" \
    'spec must set selector or targetRefs \(or both\)' <<EOF
$head
  runtimeClassName: gvisor
EOF
  crdtest_reject $ns "empty selector" \
    'spec.selector: Invalid value: .*spec.selector must not be empty; use matchLabels or targetRefs' <<EOF
$head
  runtimeClassName: gvisor
  selector: {}
EOF
  crdtest_reject $ns "selector with empty matchLabels and matchExpressions" \
    'spec.selector must not be empty; use matchLabels or targetRefs' <<EOF
$head
  runtimeClassName: gvisor
  selector: {matchLabels: {}, matchExpressions: []}
EOF
  crdtest_reject $ns "matchExpressions In without values" \
    'matchExpressions\[0\]\.values: Required value: operator In needs at least one value \(key tier\)' <<EOF
$head
  runtimeClassName: gvisor
  selector:
    matchExpressions: [{key: tier, operator: In}]
EOF
  crdtest_reject $ns "matchExpressions NotIn with empty values" \
    'matchExpressions\[0\]\.values: Required value: operator NotIn needs at least one value' <<EOF
$head
  runtimeClassName: gvisor
  selector:
    matchExpressions: [{key: tier, operator: NotIn, values: []}]
EOF
  crdtest_reject $ns "matchExpressions Exists with values" \
    'matchExpressions\[1\]\.values: Forbidden: operator Exists must not have values \(key tier\)' <<EOF
$head
  runtimeClassName: gvisor
  selector:
    matchExpressions:
      - {key: app, operator: DoesNotExist}
      - {key: tier, operator: Exists, values: [db]}
EOF
  crdtest_reject $ns "matchExpressions unknown operator" \
    'operator: Unsupported value: "Gt"' <<EOF
$head
  runtimeClassName: gvisor
  selector:
    matchExpressions: [{key: tier, operator: Gt, values: ["1"]}]
EOF
  crdtest_reject $ns "matchLabels key that is not a label key" \
    'spec.selector.matchLabels keys must be valid label keys' <<EOF
$head
  runtimeClassName: gvisor
  selector: {matchLabels: {"app name": a}}
EOF
  crdtest_reject $ns "matchLabels value that is not a label value" \
    'spec.selector.matchLabels.app: Invalid value: "-a"' <<EOF
$head
  runtimeClassName: gvisor
  selector: {matchLabels: {app: "-a"}}
EOF
  crdtest_reject $ns "targetRefs kind Pod" \
    'spec.targetRefs\[0\]\.kind: Unsupported value: "Pod"' <<EOF
$head
  runtimeClassName: gvisor
  targetRefs: [{kind: Pod, name: web}]
EOF
  crdtest_reject $ns "targetRefs name not a DNS-1123 subdomain" \
    'spec.targetRefs\[0\]\.name: Invalid value: "Web_1"' <<EOF
$head
  runtimeClassName: gvisor
  targetRefs: [{kind: Deployment, name: Web_1}]
EOF
  crdtest_reject $ns "duplicate targetRefs" 'spec.targetRefs\[1\]: Duplicate value' <<EOF
$head
  runtimeClassName: gvisor
  targetRefs: [{kind: Deployment, name: web}, {kind: Deployment, name: web}]
EOF
  crdtest_reject $ns "empty targetRefs without selector" \
    'spec.targetRefs: Invalid value: 0: .*at least 1 items' <<EOF
$head
  runtimeClassName: gvisor
  targetRefs: []
EOF
  local refs i
  refs=$(for i in $(seq 0 100); do printf '    - {kind: Deployment, name: w%d}\n' "$i"; done)
  crdtest_reject $ns "101 targetRefs" 'spec.targetRefs: Too many: 101: must have at most 100 items' <<EOF
$head
  runtimeClassName: gvisor
  targetRefs:
$refs
EOF
  crdtest_reject $ns "bad onFailure" 'spec.onFailure: Unsupported value: "Retry"' <<EOF
$head
  runtimeClassName: gvisor
  targetRefs: [{kind: Deployment, name: web}]
  onFailure: Retry
EOF
  crdtest_reject $ns "revertAfterSeconds 5" \
    'spec.revertAfterSeconds: Invalid value: 5: .*greater than or equal to 60' <<EOF
$head
  runtimeClassName: gvisor
  targetRefs: [{kind: Deployment, name: web}]
  onFailure: Revert
  revertAfterSeconds: 5
EOF
  crdtest_reject $ns "revertAfterSeconds beyond a day" \
    'spec.revertAfterSeconds: Invalid value: 86401: .*less than or equal to 86400' <<EOF
$head
  runtimeClassName: gvisor
  targetRefs: [{kind: Deployment, name: web}]
  revertAfterSeconds: 86401
EOF
  crdtest_reject $ns "emptyDirSizeLimit 1Ti" \
    'spec.hardening.emptyDirSizeLimit: Invalid value: "1Ti"' <<EOF
$head
  runtimeClassName: gvisor
  targetRefs: [{kind: Deployment, name: web}]
  hardening: {memoryBackedEmptyDirs: true, emptyDirSizeLimit: 1Ti}
EOF
  crdtest_reject $ns "memoryBackedEmptyDirs not a boolean" \
    'spec.hardening.memoryBackedEmptyDirs: Invalid value: "string"' <<EOF
$head
  runtimeClassName: gvisor
  targetRefs: [{kind: Deployment, name: web}]
  hardening: {memoryBackedEmptyDirs: "yes"}
EOF
  crdtest_reject $ns "misspelt field (strict field validation)" 'unknown field "spec.runtimeclassname"' <<EOF
$head
  runtimeClassName: gvisor
  runtimeclassname: kata-qemu
  targetRefs: [{kind: Deployment, name: web}]
EOF

  # the rules hold on update too
  check "valid CR created" crdtest_kc -n $ns apply -f manifests/samples/confidentialworkload.yaml
  local out
  out=$(kc -n $ns patch cwl tenant-app --type=merge -p '{"spec":{"selector":{"matchLabels":null}}}' 2>&1)
  check "update to an empty selector rejected ($(crdtest_1l "$out"))" \
    grep -q 'spec.selector must not be empty; use matchLabels or targetRefs' <<<"$out"
  out=$(kc -n $ns patch cwl tenant-app --type=merge -p '{"spec":{"runtimeClassName":"runc"}}' 2>&1)
  check "update to runc rejected ($(crdtest_1l "$out"))" grep -q 'Unsupported value: "runc"' <<<"$out"
  check "class unchanged after the rejected updates" \
    [ "$(crdtest_field $ns tenant-app .spec.runtimeClassName)" = kata-qemu ]
  check "switch to targetRefs only is fine" crdtest_kc -n $ns patch cwl tenant-app --type=merge \
    -p '{"spec":{"selector":null,"targetRefs":[{"kind":"StatefulSet","name":"db"}]}}'
  kc delete namespace $ns --wait=false >/dev/null
}

test_crd_status_subresource() {
  crdtest_apply || return
  local ns=e2e-crd-status
  crdtest_ns $ns
  kc -n $ns apply -f manifests/samples/confidentialworkload.yaml >/dev/null || {
    fail "sample refused"
    return
  }
  check "new CR has generation 1" [ "$(crdtest_field $ns tenant-app .metadata.generation)" = 1 ]

  local now status
  now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  status=$(cat <<EOF
{"status":{"observedGeneration":1,"runtimeClassName":"kata-qemu",
 "conditions":[
  {"type":"Ready","status":"True","reason":"AllSandboxed","message":"1/1 workloads sandboxed","lastTransitionTime":"$now","observedGeneration":1},
  {"type":"Progressing","status":"False","reason":"RolloutComplete","message":"","lastTransitionTime":"$now","observedGeneration":1},
  {"type":"Degraded","status":"False","reason":"AsExpected","message":"","lastTransitionTime":"$now","observedGeneration":1}],
 "workloads":[{"kind":"Deployment","name":"web","phase":"Sandboxed","reason":"RolloutComplete","replicas":2,"readyReplicas":2,"updatedReplicas":2,"sandboxedReplicas":2,"observedGeneration":3}],
 "workloadsTotal":1,"workloadsSandboxed":1,"workloadsSummary":"1/1 sandboxed"}}
EOF
)
  check "status written through /status" \
    crdtest_kc -n $ns patch cwl tenant-app --subresource=status --type=merge -p "$status"
  check "status stored" [ "$(crdtest_field $ns tenant-app .status.workloads[0].phase)" = Sandboxed ]
  check "status write does not bump generation" \
    [ "$(crdtest_field $ns tenant-app .metadata.generation)" = 1 ]
  local row
  row=$(kc -n $ns get cwl tenant-app --no-headers | tr -s ' ')
  check "columns show the status ('$row')" grep -qE '^tenant-app kata-qemu True 1/1 sandboxed ' <<<"$row"
  check "kubectl wait --for=condition=Ready works" \
    crdtest_kc -n $ns wait --for=condition=Ready cwl/tenant-app --timeout=5s

  # status through the main resource is ignored (the subresource owns it)
  kc -n $ns patch cwl tenant-app --type=merge -p '{"status":{"runtimeClassName":"gvisor"}}' >/dev/null 2>&1
  check "status not writable through the main resource" \
    [ "$(crdtest_field $ns tenant-app .status.runtimeClassName)" = kata-qemu ]
  # spec through /status is ignored
  kc -n $ns patch cwl tenant-app --subresource=status --type=merge \
    -p '{"spec":{"runtimeClassName":"gvisor"}}' >/dev/null 2>&1
  check "spec not writable through /status" \
    [ "$(crdtest_field $ns tenant-app .spec.runtimeClassName)" = kata-qemu ]

  # the status schema is enforced too
  local out
  out=$(kc -n $ns patch cwl tenant-app --subresource=status --type=merge \
    -p '{"status":{"workloads":[{"kind":"Deployment","name":"web","phase":"Bogus"}]}}' 2>&1)
  check "unknown workload phase rejected ($(crdtest_1l "$out"))" \
    grep -q 'status.workloads\[0\].phase: Unsupported value: "Bogus"' <<<"$out"
  out=$(kc -n $ns patch cwl tenant-app --subresource=status --type=json \
    -p '[{"op":"replace","path":"/status/conditions/0/status","value":"Maybe"}]' 2>&1)
  check "condition status outside True/False/Unknown rejected ($(crdtest_1l "$out"))" \
    grep -q 'status.conditions\[0\].status: Unsupported value: "Maybe"' <<<"$out"
  out=$(kc -n $ns patch cwl tenant-app --subresource=status --type=json \
    -p '[{"op":"add","path":"/status/conditions/-","value":{"type":"Ready","status":"False","reason":"X","message":"","lastTransitionTime":"'"$now"'"}}]' 2>&1)
  check "duplicate condition type rejected ($(crdtest_1l "$out"))" grep -q 'Duplicate value' <<<"$out"

  # spec changes bump the generation; metadata and status changes do not
  check "spec change accepted" crdtest_kc -n $ns patch cwl tenant-app --type=merge -p '{"spec":{"onFailure":"Revert"}}'
  check "spec change bumps generation to 2" [ "$(crdtest_field $ns tenant-app .metadata.generation)" = 2 ]
  check "status kept across the spec change" \
    [ "$(crdtest_field $ns tenant-app .status.observedGeneration)" = 1 ]
  kc -n $ns label cwl tenant-app team=x >/dev/null
  kc -n $ns patch cwl tenant-app --subresource=status --type=merge -p '{"status":{"observedGeneration":2}}' >/dev/null
  check "label and status changes leave generation at 2" \
    [ "$(crdtest_field $ns tenant-app .metadata.generation)" = 2 ]
  check "observedGeneration updated" [ "$(crdtest_field $ns tenant-app .status.observedGeneration)" = 2 ]

  # the finalizer the controller uses is accepted and holds deletion
  check "finalizer added" crdtest_kc -n $ns patch cwl tenant-app --type=merge \
    -p '{"metadata":{"finalizers":["confidential.cypherpunk.io/finalizer"]}}'
  kc -n $ns delete cwl tenant-app --wait=false >/dev/null
  check "deletion held by the finalizer" \
    bash -c "[ -n \"\$('$CO_KUBECTL' --kubeconfig='$KUBECONFIG' -n $ns get cwl tenant-app -o jsonpath='{.metadata.deletionTimestamp}')\" ]"
  kc -n $ns patch cwl tenant-app --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null
  check "released once the finalizer is removed" \
    crdtest_kc -n $ns wait --for=delete cwl/tenant-app --timeout=10s
  kc delete namespace $ns --wait=false >/dev/null
}
