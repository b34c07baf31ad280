# Bad input: CRs the schema admits but that make no sense, objects at the API server's size
# limits, labels and annotations at their maximum sizes, and malformed JSON (deeply nested,
# invalid UTF-8) served by the fault proxy in place of a list. Clear status or log, nothing
# lost, no crash.
# shellcheck source=test/e2e/faultlib.sh
source test/e2e/faultlib.sh

# ready_of NS CR: "status reason: message" of the Ready condition.
ready_of() {
  kc -n "$1" get cwl "$2" -o json | jq -r '.status.conditions[]? | select(.type=="Ready") | "\(.status) \(.reason): \(.message)"'
}

# wait_ready_reason NS CR STATUS REASON TIMEOUT_S
wait_ready_reason() {
  local got t0
  t0=$(now)
  while (( $(echo "$(now) - $t0 < $5" | bc) )); do
    got=$(ready_of "$1" "$2")
    [[ "$got" == "$3 $4"* ]] && { log "  $2: Ready=$got"; return 0; }
    sleep 0.2
  done
  log "  $2: Ready=$got (want $3 $4)"
  return 1
}

cr_yaml() {
  kc -n "$1" apply -f - >/dev/null <<YAML
apiVersion: confidential.cypherpunk.io/v1alpha1
kind: ConfidentialWorkload
metadata: {name: $2}
spec: $3
YAML
}

test_input_nonsense_crs_get_clear_status() {
  wl_setup
  local ns=e2e-nonsense
  kc create namespace $ns >/dev/null
  deploy $ns real
  cr_yaml $ns nomatch '{runtimeClassName: kata-qemu, selector: {matchLabels: {app: nothing-has-this}}}'
  cr_yaml $ns missing '{runtimeClassName: kata-qemu, targetRefs: [{kind: Deployment, name: does-not-exist}]}'
  cr_yaml $ns badclass '{runtimeClassName: kata-fc, selector: {matchLabels: {app: real}}}'
  ctrl_start nonsense
  check "caches sync" wait_log '.msg=="all caches synced"' 30
  check "selector matching nothing: Ready False, NoWorkloads" wait_ready_reason $ns nomatch False NoWorkloads 20
  check "targetRef to a missing object: Ready False, reported" wait_ready_reason $ns missing False '' 20
  check "class not enabled (kata-fc is not in --runtime-classes): Ready False, reported" wait_ready_reason $ns badclass False '' 20
  log "  missing: $(ready_of $ns missing)"
  log "  badclass: $(ready_of $ns badclass)"
  check "the workload of the class-less CR is left alone" wait_jp $ns deploy/real '{.metadata.generation}' 1 1
  check "no class set on it" [ -z "$(jp $ns deploy/real '{.spec.template.spec.runtimeClassName}')" ]
  check "controller still running" ctrl_alive
  local rc=0
  ctrl_stop || rc=$?
  check "clean exit (rc $rc)" [ "$rc" -eq 0 ]
  check "no sanitizer report" sanitizer_clean
  for c in nomatch missing badclass; do
    kc -n $ns patch cwl $c --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
  done
  kc delete namespace $ns --wait=false >/dev/null
}

test_input_objects_at_size_limits() {
  wl_setup
  local ns=e2e-big d="$E2E_DIR/big"
  mkdir -p "$d"
  kc create namespace $ns >/dev/null
  ctrl_start big
  check "caches sync" wait_log '.msg=="all caches synced"' 30
  # 1. ~1.4 MB in the pod template (etcd's request limit is 1.5 MiB): an env var value.
  python3 - "$ns" > "$d/huge.json" <<'PY'
import json, sys
big = "x" * (1400 * 1024)
print(json.dumps({"apiVersion": "apps/v1", "kind": "Deployment",
  "metadata": {"name": "huge", "namespace": sys.argv[1], "labels": {"app": "huge"}},
  "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "huge"}},
    "template": {"metadata": {"labels": {"app": "huge"}},
      "spec": {"containers": [{"name": "app", "image": "fake",
        "env": [{"name": "KATA", "value": "true"}, {"name": "BLOB", "value": big}]}]}}}}))
PY
  # 2. Annotations at their total limit (256 KiB) and labels at their maximum sizes: 253-char
  #    prefix / 63-char name keys, 63-char values.
  python3 - "$ns" > "$d/maxmeta.json" <<'PY'
import json, sys
prefix = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])  # 253 chars
labels = {"app": "maxmeta"}
for i in range(20):
    labels[f"{prefix}/{'n' * 60}{i:03d}"] = "v" * 60 + f"{i:03d}"
# key + value sizes count; stay a little under 256 KiB with the opt-in annotation.
ann = {"big.example.com/blob": "y" * (255 * 1024)}
ann["confidential.cypherpunk.io/runtime-class"] = "kata-qemu"
print(json.dumps({"apiVersion": "apps/v1", "kind": "Deployment",
  "metadata": {"name": "maxmeta", "namespace": sys.argv[1], "labels": labels, "annotations": ann},
  "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "maxmeta"}},
    "template": {"metadata": {"labels": {"app": "maxmeta"}},
      "spec": {"containers": [{"name": "app", "image": "fake",
        "env": [{"name": "KATA", "value": "true"}]}]}}}}))
PY
  check "1.4 MB Deployment accepted by the API server" kc create -f "$d/huge.json"
  check "Deployment with maximum labels and annotations accepted" kc create -f "$d/maxmeta.json"
  check "1.4 MB Deployment rewritten" wait_jp $ns deploy/huge '{.spec.template.spec.runtimeClassName}' kata-qemu 30
  check "max-metadata Deployment rewritten" wait_jp $ns deploy/maxmeta '{.spec.template.spec.runtimeClassName}' kata-qemu 30
  check "huge: generation 2" wait_jp $ns deploy/huge '{.metadata.generation}' 2 5
  check "maxmeta: generation 2" wait_jp $ns deploy/maxmeta '{.metadata.generation}' 2 5
  check "the blob is intact" [ "$(kc -n $ns get deploy huge -o json | jq -r '.spec.template.spec.containers[0].env[1].value | length')" -eq $((1400 * 1024)) ]
  # A restart lists them again (one large list page).
  ctrl_stop
  ctrl_start big2
  check "relist with the large objects" wait_log '.msg=="all caches synced"' 30
  check "listed the 1.4 MB object" wait_log "$(event_filter deployments add $ns/huge)" 5
  check "no further write after the relist" wait_jp $ns deploy/huge '{.metadata.generation}' 2 3
  local rc=0
  ctrl_stop || rc=$?
  check "clean exit (rc $rc)" [ "$rc" -eq 0 ]
  check "no sanitizer report" sanitizer_clean
  kc delete namespace $ns --wait=false >/dev/null
}

test_input_malformed_json_from_the_server() {
  wl_setup
  local ns=e2e-badjson
  kc create namespace $ns >/dev/null
  deploy $ns app '[{name: KATA, value: "true"}]'
  fp_start badjson || return
  # The first Deployment list answers 100,000 nested arrays, the second a truncated document:
  # both refused (CO_EPARSE), listed again after a backoff. The third is a well-formed
  # DeploymentList whose item carries invalid UTF-8 (which the API server never sends: it
  # encodes with U+FFFD); it is taken as data: logged as valid JSON, no write to it succeeds.
  local deep bad
  deep=$(python3 -c 'import base64; print(base64.b64encode(b"[" * 100000 + b"]" * 100000).decode())')
  bad=$(python3 -c '
import base64
doc = b"{\"kind\":\"DeploymentList\",\"apiVersion\":\"apps/v1\",\"metadata\":{\"resourceVersion\":\"1\"},\"items\":[{\"metadata\":{\"name\":\"bad\xff\xfe\",\"namespace\":\"'"$ns"'\",\"uid\":\"u\xc3\x28\",\"labels\":{\"k\xff\":\"v\xe2\x82\"}},\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":\"c\",\"env\":[{\"name\":\"KATA\",\"value\":\"\xff\"}]}]}}}}]}"
print(base64.b64encode(doc).decode())')
  fp_rule "{\"method\":\"GET\",\"path\":\"^/apis/apps/v1/deployments\$\",\"query\":\"limit=\",\"count\":1,\"status\":200,\"bodyB64\":\"$deep\"}"
  fp_rule "{\"method\":\"GET\",\"path\":\"^/apis/apps/v1/deployments\$\",\"query\":\"limit=\",\"count\":1,\"status\":200,\"bodyB64\":\"$(printf '{"kind":"DeploymentList","items":[{"metadata":' | base64 -w0)\"}"
  fp_rule "{\"method\":\"GET\",\"path\":\"^/apis/apps/v1/deployments\$\",\"query\":\"limit=\",\"count\":1,\"status\":200,\"bodyB64\":\"$bad\"}"
  ctrl_start badjson --kubeconfig="$FP_KUBECONFIG"
  check "caches sync in the end" wait_log '.msg=="all caches synced"' 60
  check "the real workload is rewritten" wait_jp $ns deploy/app '{.spec.template.spec.runtimeClassName}' kata-qemu 30
  check "generation 2" wait_jp $ns deploy/app '{.metadata.generation}' 2 3
  check "all three bad answers were served" [ "$(fp_count '.injected')" -eq 3 ]
  log "  controller said: $(grep '^{' "$CTRL_LOG" | jq -r 'select(.path=="/apis/apps/v1/deployments" and (.level=="warn" or .level=="error")) | "\(.msg) (\(.err // "") \(.error // "") \(.message // ""))"' | sort | uniq -c | tr '\n' ';')"
  check "both malformed lists were refused" \
    [ "$(log_count '.msg=="list failed" and .path=="/apis/apps/v1/deployments" and .err=="CO_EPARSE"')" -eq 2 ]
  check "every log line is valid JSON (invalid UTF-8 escaped)" python3 -c '
import json, sys
for raw in open(sys.argv[1], "rb"):
    if raw.startswith(b"{"):
        json.loads(raw.decode("utf-8"))' "$CTRL_LOG"
  check "no write to the invalid object succeeded" [ "$(fp_count '.method=="PATCH" and .status<300 and (.path|test("/deployments/bad"))')" -eq 0 ]
  check "controller still running" ctrl_alive
  local rc=0
  ctrl_stop || rc=$?
  check "clean exit (rc $rc)" [ "$rc" -eq 0 ]
  check "no sanitizer report" sanitizer_clean
  fp_stop
  kc delete namespace $ns --wait=false >/dev/null
}
