# shellcheck shell=bash
# The README's uninstall order, step by step with its commands, on the real control plane: CRs
# deleted first are released only after their workloads are restored; removing the env var and
# annotation opt-ins restores the rest; nothing carries the operator's annotation any more; then
# the bundle deletes cleanly (CRD and namespace gone). The CRD is applied again at the end for
# the tests that follow. Uses wl_setup, jp, wait_jp (test_workloads.sh) and wm_deploy
# (test_workloads_more.sh).

UN_NS=e2e-uninstall
UN_ORIG='{.metadata.annotations.confidential\.cypherpunk\.io/original-runtime-class}'

# un_marked: the README's query for workloads that still carry the operator's annotation,
# limited to this test's namespace.
un_marked() {
  kc get deploy,sts -A -o json | jq -r '.items[] | select(.metadata.annotations
     ["confidential.cypherpunk.io/original-runtime-class"] != null) | "\(.kind) \(.metadata.namespace)/\(.metadata.name)"' |
    grep " $UN_NS/" || true
}

un_none_marked() {
  local m
  m=$(un_marked)
  [ -z "$m" ] || { log "  still marked: $m"; return 1; }
}

test_uninstall_order() {
  wl_setup
  check "the bundle applies" inst_quiet kc apply -f manifests/install.yaml
  webhook_local confidential-operator 9443 # the controller below serves it on this host
  kc create namespace $UN_NS >/dev/null
  wm_deploy $UN_NS by-cr
  wm_deploy $UN_NS by-env 'env=[{name: KATA, value: "true"}]'
  wm_deploy $UN_NS by-ann 'ann={confidential.cypherpunk.io/runtime: kata-qemu}'
  wm_deploy $UN_NS plain
  kc -n $UN_NS apply -f - >/dev/null <<'YAML'
apiVersion: confidential.cypherpunk.io/v1alpha1
kind: ConfidentialWorkload
metadata: {name: by-cr}
spec:
  runtimeClassName: kata-qemu
  targetRefs: [{kind: Deployment, name: by-cr}]
YAML
  ctrl_start uninstall
  local d
  for d in by-cr by-env by-ann; do
    check "$d sandboxed" wait_jp $UN_NS deploy/$d '{.spec.template.spec.runtimeClassName}' kata-qemu 20
  done
  check "the CR holds the finalizer" \
    wait_jp $UN_NS cwl/by-cr '{.metadata.finalizers[0]}' confidential.cypherpunk.io/finalizer 5

  # 1. Delete the CRs (README: --all -A; here the test's namespace) and wait for them.
  check "kubectl delete cwl --all --wait=false" inst_quiet kc delete cwl --all -n $UN_NS --wait=false
  check "kubectl wait --for=delete cwl --all" inst_quiet kc wait --for=delete cwl --all -n $UN_NS --timeout=60s
  check "by-cr restored when its CR is gone" wait_jp $UN_NS deploy/by-cr '{.spec.template.spec.runtimeClassName}' "" 1
  check "by-cr: no original annotation" wait_jp $UN_NS deploy/by-cr "$UN_ORIG" "" 1
  check "by-env, by-ann still sandboxed" bash -c \
    "[ \"\$1\" = kata-qemu ] && [ \"\$2\" = kata-qemu ]" _ \
    "$(jp $UN_NS deploy/by-env '{.spec.template.spec.runtimeClassName}')" \
    "$(jp $UN_NS deploy/by-ann '{.spec.template.spec.runtimeClassName}')"
  log "  still marked after step 1: $(un_marked | tr '\n' ' ')"
  check "the README's query lists the two left" test "$(un_marked | wc -l)" -eq 2

  # 2. Remove the other opt-ins.
  kc -n $UN_NS set env deploy/by-env KATA- >/dev/null
  kc -n $UN_NS annotate deploy/by-ann confidential.cypherpunk.io/runtime- >/dev/null
  check "by-env restored" wait_jp $UN_NS deploy/by-env '{.spec.template.spec.runtimeClassName}' "" 20
  check "by-ann restored" wait_jp $UN_NS deploy/by-ann '{.spec.template.spec.runtimeClassName}' "" 20
  sleep 1
  check "the README's query lists nothing" un_none_marked
  check "plain never touched (generation 1)" wait_jp $UN_NS deploy/plain '{.metadata.generation}' 1 1
  ctrl_stop_clean

  # 4. Delete the bundle (node preparation, step 3, has nothing to undo here).
  check "kubectl delete -f manifests/install.yaml" inst_quiet kc delete -f manifests/install.yaml --timeout=90s
  check "the CRD is gone" bash -c "! '$CO_KUBECTL' --kubeconfig='$KUBECONFIG' get crd \
    confidentialworkloads.confidential.cypherpunk.io >/dev/null 2>&1"
  check "the namespace is gone" inst_quiet kc wait --for=delete namespace/confidential-system --timeout=60s
  check "workloads stay as restored" wait_jp $UN_NS deploy/by-cr '{.spec.template.spec.runtimeClassName}' "" 1

  kc delete namespace $UN_NS --wait=false >/dev/null
  # The next tests expect the CRD.
  kc apply -f crd/confidentialworkloads.yaml >/dev/null
  kc wait --for=condition=Established crd/confidentialworkloads.confidential.cypherpunk.io --timeout=30s >/dev/null
}
