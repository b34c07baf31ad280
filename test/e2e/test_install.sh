# The install bundle (manifests/install.yaml): it applies cleanly and idempotently, the controller's
# pod template meets the restricted Pod Security Standard, and its RBAC is exactly what the
# controller uses: the controller runs a full scenario with nothing but a token of the bundle's
# ServiceAccount; a missing permission (any 403) or an excess one (a granted verb the API server's
# audit log never saw it use) fails the test.

INST_NS=confidential-system
INST_SA=confidential-operator-controller
INST_USER=system:serviceaccount:$INST_NS:$INST_SA
INST_DEPLOY=deploy/confidential-operator-controller
INST_WH_PORT=19444

# Granted (group/resource verb) pairs that the scenario is allowed not to use, one per line with
# the reason after a '#'. (Only a binary built
# without leader election gets the Lease verbs reserved, see test_least_privilege_token.)
INST_RESERVED="apps/daemonsets create # a server-side apply that creates is authorised as create, audited as patch
node.k8s.io/runtimeclasses create # the same for the RuntimeClasses
node.k8s.io/runtimeclasses delete # only a class of a runtime no longer enabled (test_nodeprep_lifecycle.sh)
apps/daemonsets deletecollection # kata-deploy, only once no Kata class is enabled (test_nodeprep_lifecycle.sh)"

inst_quiet() { "$@" >/dev/null; }

# inst_no_warnings FILE: the file (kubectl's stderr) holds no "Warning:" line.
inst_no_warnings() {
  if grep -q 'Warning' "$1"; then sed 's/^/#     /' "$1" >&2; return 1; fi
}

# inst_all_unchanged FILE: every line of kubectl apply's output says "unchanged", or
# "configured" for a no-op patch (checked separately by the resourceVersions): client-side apply
# always re-sends a PodDisruptionBudget's selector, whose patch strategy is "replace".
inst_all_unchanged() {
  local bad
  bad=$(grep -vE ' unchanged$' "$1" | grep -vE '^poddisruptionbudget\.policy/.* configured$' || true)
  [ -s "$1" ] && [ -z "$bad" ] && return 0
  printf '#     changed: %s\n' "$bad" >&2
  return 1
}

# inst_rvs: "Kind/name resourceVersion" of every object of the bundle but the Deployment (whose
# status the controller-manager keeps updating; kubectl reports it unchanged or not).
inst_rvs() {
  kc get -f manifests/install.yaml -o json |
    jq -r '.items[] | select(.kind != "Deployment") | "\(.kind)/\(.metadata.name) \(.metadata.resourceVersion)"'
}

# inst_pod_field JSONPATH WANT: a field of the controller's pod template.
inst_pod_field() {
  local got
  got=$(jp "$INST_NS" "$INST_DEPLOY" "{.spec.template.spec$1}")
  [ "$got" = "$2" ] && return 0
  log "  pod template $1 = '$got' (want '$2')"
  return 1
}

test_install_bundle_applies() {
  local d=$E2E_DIR/install
  mkdir -p "$d"
  check "the generated bundle is up to date" hack/gen-install.sh --check

  check "kubectl apply of the bundle succeeds" bash -c "'$CO_KUBECTL' --kubeconfig='$KUBECONFIG' apply \
    --validate=strict -f manifests/install.yaml >'$d/apply1.out' 2>'$d/apply1.err'"
  sed 's/^/#     /' "$d/apply1.out" >&2
  check "no warning on apply (Pod Security warn=restricted covers the Deployment's template)" \
    inst_no_warnings "$d/apply1.err"
  check "server-side dry run of the whole bundle succeeds" \
    bash -c "'$CO_KUBECTL' --kubeconfig='$KUBECONFIG' apply --dry-run=server --validate=strict -f manifests/install.yaml >'$d/dry.out' 2>'$d/dry.err'"
  check "no warning on the server-side dry run" inst_no_warnings "$d/dry.err"

  # The objects.
  check "namespace enforces restricted" \
    wait_jp "" "ns/$INST_NS" '{.metadata.labels.pod-security\.kubernetes\.io/enforce}' restricted 5
  check "CRD established" inst_quiet kc wait --for=condition=Established --timeout=30s \
    crd/confidentialworkloads.confidential.cypherpunk.io
  check "ServiceAccount exists" inst_quiet kc -n "$INST_NS" get serviceaccount "$INST_SA" -o name
  check "ClusterRole exists" inst_quiet kc get clusterrole confidential-operator-controller -o name
  check "ClusterRoleBinding names the ServiceAccount" \
    wait_jp "" clusterrolebinding/confidential-operator-controller '{.subjects[0].namespace}/{.subjects[0].name}' "$INST_NS/$INST_SA" 1
  check "Role for the Lease exists" inst_quiet kc -n "$INST_NS" get role confidential-operator-leader-election -o name
  check "no wildcard in any (Cluster)Role of the bundle" bash -c "'$CO_KUBECTL' --kubeconfig='$KUBECONFIG' get \
    -f manifests/install.yaml -o json | jq -e '[.items[] | select(.kind == \"ClusterRole\" or .kind == \"Role\")
      | .rules[] | (.apiGroups + .resources + .verbs + (.resourceNames // []))[]] | length > 0 and all(. != \"*\")' >/dev/null"
  check "Deployment with 2 replicas" wait_jp "$INST_NS" "$INST_DEPLOY" '{.spec.replicas}' 2 5
  check "PodDisruptionBudget minAvailable 1" \
    wait_jp "$INST_NS" pdb/confidential-operator-controller '{.spec.minAvailable}' 1 5

  # The restricted profile, field by field.
  check "pod runAsNonRoot" inst_pod_field '.securityContext.runAsNonRoot' true
  check "pod runAsUser 65532" inst_pod_field '.securityContext.runAsUser' 65532
  check "pod seccomp RuntimeDefault" inst_pod_field '.securityContext.seccompProfile.type' RuntimeDefault
  check "container readOnlyRootFilesystem" \
    inst_pod_field '.containers[0].securityContext.readOnlyRootFilesystem' true
  check "container allowPrivilegeEscalation false" \
    inst_pod_field '.containers[0].securityContext.allowPrivilegeEscalation' false
  check "container drops ALL capabilities" \
    inst_pod_field '.containers[0].securityContext.capabilities.drop' '["ALL"]'
  check "container seccomp RuntimeDefault" \
    inst_pod_field '.containers[0].securityContext.seccompProfile.type' RuntimeDefault
  check "container runAsNonRoot" inst_pod_field '.containers[0].securityContext.runAsNonRoot' true
  check "cpu request 10m" inst_pod_field '.containers[0].resources.requests.cpu' 10m
  check "memory limit 128Mi" inst_pod_field '.containers[0].resources.limits.memory' 128Mi
  check "POD_NAMESPACE from the downward API" \
    inst_pod_field '.containers[0].env[?(@.name=="POD_NAMESPACE")].valueFrom.fieldRef.fieldPath' metadata.namespace
  check "uses the bundle's ServiceAccount" inst_pod_field '.serviceAccountName' "$INST_SA"
  check "liveness probe on /healthz" \
    inst_pod_field '.containers[0].livenessProbe.httpGet.path' /healthz
  check "readiness probe on /readyz" \
    inst_pod_field '.containers[0].readinessProbe.httpGet.path' /readyz
  check "metrics container port 8080" \
    inst_pod_field '.containers[0].ports[?(@.name=="metrics")].containerPort' 8080
  check "Service with a metrics port" \
    wait_jp "$INST_NS" svc/confidential-operator '{.spec.ports[?(@.name=="metrics")].port}' 8080 5

  # Pod Security admission (enforce=restricted) admitted both pods: the ReplicaSet created them
  # (kwok then marks them Running without running anything).
  local n=0 i
  for i in $(seq 1 150); do
    n=$(kc -n "$INST_NS" get pods -l app.kubernetes.io/component=controller -o name | wc -l)
    [ "$n" -ge 2 ] && break
    sleep 0.2
  done
  check "both controller pods admitted under enforce=restricted ($n)" [ "$n" -ge 2 ]
  check "no FailedCreate on the ReplicaSet" bash -c "! '$CO_KUBECTL' --kubeconfig='$KUBECONFIG' -n $INST_NS get events \
    --field-selector reason=FailedCreate -o name | grep -q ."
  check "re-labelling enforce=restricted warns about no existing pod" bash -c \
    "'$CO_KUBECTL' --kubeconfig='$KUBECONFIG' label --dry-run=server --overwrite ns $INST_NS \
     pod-security.kubernetes.io/enforce=restricted >/dev/null 2>'$d/label.err' && ! grep -q . '$d/label.err'"

  # Idempotent: a second apply changes nothing, and kubectl diff (server-side) finds nothing.
  inst_rvs > "$d/rv1.txt"
  check "second apply succeeds" bash -c "'$CO_KUBECTL' --kubeconfig='$KUBECONFIG' apply --validate=strict \
    -f manifests/install.yaml >'$d/apply2.out' 2>'$d/apply2.err'"
  check "second apply: every object unchanged" inst_all_unchanged "$d/apply2.out"
  inst_rvs > "$d/rv2.txt"
  check "second apply wrote nothing (resourceVersions unchanged)" diff "$d/rv1.txt" "$d/rv2.txt"
  check "kubectl diff finds no difference" bash -c "'$CO_KUBECTL' --kubeconfig='$KUBECONFIG' diff \
    -f manifests/install.yaml >'$d/diff.out' 2>&1"

  # The webhook configuration: fail open, short timeout, system namespaces never sent.
  local mwc=mutatingwebhookconfiguration/confidential-operator
  check "webhook failurePolicy Ignore" wait_jp "" $mwc '{.webhooks[*].failurePolicy}' "Ignore Ignore" 1
  check "webhook timeoutSeconds 3" wait_jp "" $mwc '{.webhooks[*].timeoutSeconds}' "3 3" 1
  check "webhook excludes the system namespaces and the operator's" wait_jp "" $mwc \
    '{.webhooks[0].namespaceSelector.matchExpressions[0].values}' \
    '["kube-system","kube-public","kube-node-lease","confidential-system"]' 1
  check "webhook Service 443 -> webhook port" \
    wait_jp "$INST_NS" svc/confidential-operator-webhook '{.spec.ports[0].port}/{.spec.ports[0].targetPort}' 443/webhook 1
  # Nothing serves the Service here: later tests must not wait on it.
  kc delete $mwc >/dev/null
}

# ---- least privilege ------------------------------------------------------------------------

# inst_granted: "group/resource verb" for every rule of every (Cluster)Role bound to the
# ServiceAccount, one per line, sorted. A wildcard, a nonResourceURL or an aggregated role would
# be printed as such and fail the comparison.
inst_granted() {
  local crb rb
  crb=$(kc get clusterrolebindings -o json)
  rb=$(kc get rolebindings -A -o json)
  {
    local r
    for r in $(jq -r --arg ns "$INST_NS" --arg sa "$INST_SA" \
        '.items[] | select(any(.subjects[]?; .kind=="ServiceAccount" and .namespace==$ns and .name==$sa))
         | .roleRef.name' <<<"$crb"); do
      kc get clusterrole "$r" -o json
    done
    jq -c --arg ns "$INST_NS" --arg sa "$INST_SA" \
        '.items[] | select(any(.subjects[]?; .kind=="ServiceAccount" and .namespace==$ns and .name==$sa))
         | [.metadata.namespace, .roleRef.kind, .roleRef.name]' <<<"$rb" |
      while read -r x; do
        local ns kind name
        ns=$(jq -r '.[0]' <<<"$x"); kind=$(jq -r '.[1]' <<<"$x"); name=$(jq -r '.[2]' <<<"$x")
        if [ "$kind" = Role ]; then kc -n "$ns" get role "$name" -o json; else kc get clusterrole "$name" -o json; fi
      done
  } | jq -r '.rules[]? |
      if .nonResourceURLs then "nonResourceURLs \(.nonResourceURLs|join(",")) \(.verbs|join(","))"
      else .apiGroups[] as $g | .resources[] as $r | .verbs[] as $v | "\($g)/\($r) \($v)" end' | sort -u
}

# inst_used AUDIT_FILE: "group/resource verb" of every request of the ServiceAccount the API
# server allowed, sorted and unique.
inst_used() {
  jq -r --arg u "$INST_USER" 'select(.user.username==$u and .objectRef != null
      and ((.userAgent // "") | startswith("kubectl") | not)
      and (.responseStatus.code // 200) != 403)
    | "\(.objectRef.apiGroup // "")/\(.objectRef.resource)\(if .objectRef.subresource then "/" + .objectRef.subresource else "" end) \(.verb)"' \
    "$1" | sort -u
}

test_least_privilege_token() {
  local d=$E2E_DIR/least-privilege ns=e2e-lp audit="$CO_CLUSTER_DIR/logs/audit.log"
  mkdir -p "$d"
  check "bundle applied" bash -c "'$CO_KUBECTL' --kubeconfig='$KUBECONFIG' apply -f manifests/install.yaml >/dev/null"
  if [ ! -f "$audit" ]; then
    fail "no audit log at $audit (the apiserver runs without --audit-log-path: restart the cluster)"
    return
  fi
  wl_setup
  local a0 server token
  server=$(kc config view --raw -o jsonpath='{.clusters[0].cluster.server}')
  token=$(kc -n "$INST_NS" create token "$INST_SA" --duration=1h)
  check "TokenRequest for the bundle's ServiceAccount" [ -n "$token" ]
  kubeconfig_with "$d/kubeconfig" "$server" "$token"
  local sa=("$CO_KUBECTL" --kubeconfig="$d/kubeconfig")
  check "the token is the ServiceAccount" \
    bash -c "'$CO_KUBECTL' --kubeconfig='$d/kubeconfig' auth whoami -o jsonpath='{.status.userInfo.username}' | grep -qx '$INST_USER'"
  check "the token may not read secrets" [ "$("${sa[@]}" auth can-i list secrets -A 2>/dev/null)" = no ]
  check "the token may not GET deployments" [ "$("${sa[@]}" auth can-i get deployments -A 2>/dev/null)" = no ]
  check "the token may not delete pods" [ "$("${sa[@]}" auth can-i delete pods -A 2>/dev/null)" = no ]
  check "the token may update only its own Lease" \
    [ "$("${sa[@]}" -n "$INST_NS" auth can-i update lease/other 2>/dev/null)" = no ]

  # The scenario: an env opt-in Deployment, a CR selecting a StatefulSet, a plain Deployment.
  kc create namespace $ns >/dev/null
  deploy $ns akash-app '[{name: KATA, value: ""}]'
  deploy $ns plain
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
      containers: [{name: db, image: fake}]
---
apiVersion: confidential.cypherpunk.io/v1alpha1
kind: ConfidentialWorkload
metadata: {name: db}
spec:
  runtimeClassName: kata-qemu
  selector: {matchLabels: {app: db}}
YAML
  # Leader election as in the bundle's Deployment: a fresh Lease (create), renewals (get +
  # update), the release on shutdown (update).
  local le=() reserved=$INST_RESERVED
  if "$CO_BIN" controller --help 2>&1 | grep -q -- '--leader-elect '; then
    le=(--leader-elect=true --leader-elect-retry-period=1)
    kc -n "$INST_NS" delete lease confidential-operator --ignore-not-found >/dev/null
  else
    log "  this binary has no --leader-elect: the Lease verbs are reserved"
    reserved+=$'\ncoordination.k8s.io/leases create # leader election not in this binary'
    reserved+=$'\ncoordination.k8s.io/leases get # leader election not in this binary'
    reserved+=$'\ncoordination.k8s.io/leases update # leader election not in this binary'
  fi
  # The webhook: the Secret created anew, the caBundle injected into the bundle's configuration
  # (pointed at this host), the Secret replaced once when it is found unusable (below).
  kc -n "$INST_NS" delete secret confidential-operator-webhook-cert --ignore-not-found >/dev/null
  webhook_local confidential-operator "$INST_WH_PORT"
  # The audit log from here on is the controller's (the test's own kubectl calls above used the
  # token too; they are also excluded by their user agent).
  sleep 0.5
  a0=$(wc -l < "$audit")
  ctrl_start lp --kubeconfig="$d/kubeconfig" --operator-namespace="$INST_NS" "${le[@]}" \
    --webhook-bind-address=127.0.0.1:$INST_WH_PORT
  check "webhook certificate created and loaded" wait_log '.msg=="webhook listening"' 20
  check "caBundle injected" wait_log '.msg=="webhook CA bundle injected"' 20
  kc -n "$INST_NS" patch secret confidential-operator-webhook-cert --type=merge \
    -p '{"data":{"tls.crt":"bm90IGEgY2VydGlmaWNhdGU="}}' >/dev/null
  check "an unusable certificate Secret is replaced" wait_log '.msg=="webhook certificate Secret rotated"' 20
  check "env opt-in Deployment rewritten" \
    wait_jp $ns deploy/akash-app '{.spec.template.spec.runtimeClassName}' kata-qemu 20
  check "StatefulSet selected by the CR rewritten" \
    wait_jp $ns sts/db '{.spec.template.spec.runtimeClassName}' kata-qemu 20
  check "CR becomes Ready" inst_quiet kc -n $ns wait --for=condition=Ready cwl/db --timeout=60s
  check "CR status summary" wait_jp $ns cwl/db '{.status.workloadsSummary}' "1/1 sandboxed" 5
  check "finalizer set" wait_jp $ns cwl/db '{.metadata.finalizers[0]}' confidential.cypherpunk.io/finalizer 1
  check "plain Deployment untouched" wait_jp $ns deploy/plain '{.metadata.generation}' 1 1
  # Node preparation (helpers of test_nodeprep.sh): kwok-node-1 enabled, its runtime verified by
  # a probe pod, a sandboxed pod on it evicted when it is taken back out, the node cleared.
  np_reset_node kwok-node-1
  kc label node kwok-node-1 confidential.cypherpunk.io/enabled=true >/dev/null
  kc annotate node kwok-node-1 confidential.cypherpunk.io/agent-state=Prepared --overwrite >/dev/null
  check "node: agent=true" wait_jp "" node/kwok-node-1 '{.metadata.labels.confidential\.cypherpunk\.io/agent}' true 20
  check "node: kata-qemu verified by the probe" np_ready_runtime kwok-node-1 kata-qemu 6.12.8-kata
  kc -n $ns apply -f - >/dev/null <<'YAML'
apiVersion: v1
kind: Pod
metadata: {name: sandboxed}
spec:
  nodeName: kwok-node-1
  runtimeClassName: kata-qemu
  containers: [{name: app, image: fake}]
YAML
  kc label node kwok-node-1 confidential.cypherpunk.io/enabled- >/dev/null
  check "node: sandboxed pod evicted" inst_quiet kc -n $ns wait --for=delete pod/sandboxed --timeout=30s
  check "node: agent-action=remove" wait_jp "" node/kwok-node-1 '{.metadata.annotations.confidential\.cypherpunk\.io/agent-action}' remove 20
  kc annotate node kwok-node-1 confidential.cypherpunk.io/agent-state=Removed --overwrite >/dev/null
  check "node: cleared" wait_jp "" node/kwok-node-1 '{.metadata.labels.confidential\.cypherpunk\.io/agent}' "" 20
  kc -n $ns delete cwl db --wait=false >/dev/null
  check "StatefulSet restored after the CR is deleted" \
    wait_jp $ns sts/db '{.spec.template.spec.runtimeClassName}' "" 15
  check "CR released by the finalizer" inst_quiet kc -n $ns wait --for=delete cwl/db --timeout=15s
  local evs
  for _ in $(seq 1 50); do
    evs=$(kc -n $ns get events.events.k8s.io -o jsonpath='{range .items[*]}{.regarding.kind}:{.reason}:{.action}{" "}{end}')
    grep -q 'StatefulSet:[A-Za-z]*:Restore' <<<"$evs" && break
    sleep 0.1
  done
  log "  events: $evs"
  check "event: env opt-in" grep -q 'Deployment:OptedInByEnv' <<<"$evs"
  check "event: CR opt-in" grep -q 'StatefulSet:OptedInByCR' <<<"$evs"
  check "event: CR Sandboxed" grep -q 'ConfidentialWorkload:Sandboxed' <<<"$evs"
  check "event: restore on CR deletion" grep -q 'StatefulSet:[A-Za-z]*:Restore' <<<"$evs"
  ctrl_stop_clean

  # (a) Missing permission: the controller never got a 403.
  local forbidden
  forbidden=$(grep -c CO_EFORBIDDEN "$CTRL_LOG" || true)
  check "no CO_EFORBIDDEN in the controller log ($forbidden)" [ "$forbidden" -eq 0 ]
  tail -n +"$((a0 + 1))" "$audit" > "$d/audit.json"
  local denied
  denied=$(jq -r --arg u "$INST_USER" 'select(.user.username==$u and .responseStatus.code==403)
    | "\(.verb) \(.requestURI)"' "$d/audit.json" | sort -u)
  [ -z "$denied" ] || printf '#     denied: %s\n' "$denied" >&2
  check "no 403 for the ServiceAccount in the audit log" [ -z "$denied" ]

  # (b) Excess permission: every granted (resource, verb) was used, unless reserved.
  inst_granted > "$d/granted.txt"
  inst_used "$d/audit.json" > "$d/used.txt"
  printf '%s\n' "$reserved" | sed 's/[[:space:]]*#.*//; /^$/d' | sort -u > "$d/reserved.txt"
  log "  granted: $(tr '\n' ';' < "$d/granted.txt")"
  log "  used:    $(tr '\n' ';' < "$d/used.txt")"
  check "the audit log saw the ServiceAccount" [ -s "$d/used.txt" ]
  check "the grant is non-empty" [ -s "$d/granted.txt" ]
  local excess missing
  excess=$(comm -23 "$d/granted.txt" <(sort -u "$d/used.txt" "$d/reserved.txt"))
  missing=$(comm -13 "$d/granted.txt" "$d/used.txt")
  [ -z "$excess" ] && log "  excess: none" || printf '#     excess (granted, never used): %s\n' "$excess" >&2
  check "no excess permission" [ -z "$excess" ]
  check "nothing used that is not granted" [ -z "$missing" ]
  check "no wildcard or nonResourceURL granted" bash -c "! grep -qE '\\*|^nonResourceURLs' '$d/granted.txt'"
  local unused_reserved
  unused_reserved=$(comm -12 "$d/reserved.txt" "$d/used.txt")
  [ -z "$unused_reserved" ] || log "  reserved but now used (drop them from INST_RESERVED): $unused_reserved"

  # The comparison sees every binding: an extra ClusterRole bound to the ServiceAccount shows up
  # as excess (then it is removed again).
  kc apply -f - >/dev/null <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: e2e-lp-extra}
rules: [{apiGroups: [apps], resources: [replicasets], verbs: [deletecollection]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: e2e-lp-extra}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: e2e-lp-extra}
subjects: [{kind: ServiceAccount, name: $INST_SA, namespace: $INST_NS}]
YAML
  inst_granted > "$d/granted-extra.txt"
  check "self-check: an extra grant is detected as excess" \
    grep -qx 'apps/replicasets deletecollection' <(comm -23 "$d/granted-extra.txt" <(sort -u "$d/used.txt" "$d/reserved.txt"))
  kc delete clusterrolebinding/e2e-lp-extra clusterrole/e2e-lp-extra >/dev/null

  kc delete namespace $ns --wait=false >/dev/null
  kc delete mutatingwebhookconfiguration confidential-operator --ignore-not-found >/dev/null
}
