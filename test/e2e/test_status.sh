# shellcheck shell=bash
# The `status` subcommand against the real API server: nodes x runtimes, ConfidentialWorkloads
# and their workloads as tables and as JSON, -n, --all-workloads, API errors (403 with the
# server's message, unreachable server, CRD not installed). The controller does not run here:
# the tests write the CRs' status themselves, the way the controller would.

STATUS_NODE0=kwok-node-0
STATUS_NODE1=kwok-node-1

# st_run OUT_PREFIX ARGS...: runs `status`, stdout in OUT_PREFIX.out, stderr in OUT_PREFIX.err;
# returns its exit code.
st_run() {
  local p=$1; shift
  local rc=0
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
    timeout 60 "$CO_BIN" status "$@" >"$p.out" 2>"$p.err" || rc=$?
  log "  status $* -> exit $rc"
  return $rc
}

# st_no_sanitizer FILE: no ASan/LSan/UBSan report in FILE.
st_no_sanitizer() { ! grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$1"; }

# st_cell FILE SECTION KEY COLUMN: prints the cell of COLUMN in the row of the table under the
# title SECTION whose first fields are the words of KEY. Cells other than the last hold no
# blanks; the last column is printed whole.
st_cell() {
  awk -v sec="$2" -v key="$3" -v col="$4" '
    BEGIN { nk = split(key, kw, " ") }
    $0 == sec { insec = 1; hdr = 0; next }
    insec && $0 == "" { exit }
    insec && !hdr { for (i = 1; i <= NF; i++) idx[$i] = i; last = NF; hdr = 1; next }
    insec && hdr {
      ok = 1
      for (i = 1; i <= nk; i++) if ($i != kw[i]) ok = 0
      if (!ok) next
      c = idx[col]
      if (c == "") exit
      if (c < last) { print $c; exit }
      s = $0; for (i = 1; i < last; i++) sub(/^[^ ]+ +/, "", s); print s; exit
    }' "$1"
}

# st_expect FILE SECTION KEY COLUMN VALUE
st_expect() {
  local got
  got=$(st_cell "$1" "$2" "$3" "$4")
  if [ "$got" = "$5" ]; then
    log "  ok: [$2] $3 $4 = $5"
  else
    fail "[$2] row '$3' column $4: got '$got', want '$5'"
  fi
}

# st_jq FILE DESCRIPTION FILTER: the jq filter must print true.
st_jq() {
  local got
  got=$(jq -e "$3" "$1" 2>&1)
  if [ "$got" = "true" ]; then log "  ok: $2"; else fail "$2 (jq '$3' -> $got)"; fi
}

# st_kubeconfig OUT TOKEN [SERVER]: a kubeconfig for the test cluster with a bearer token.
st_kubeconfig() {
  local server cadata
  server=${3:-$(kc config view --raw -o jsonpath='{.clusters[0].cluster.server}')}
  cadata=$(kc config view --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
  cat >"$1" <<YAML
apiVersion: v1
kind: Config
current-context: t
contexts: [{name: t, context: {cluster: t, user: t}}]
clusters: [{name: t, cluster: {server: "$server", certificate-authority-data: "$cadata"}}]
users: [{name: t, user: {token: "$2"}}]
YAML
}

ST_LONG_MSG="0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling"

# A message with a terminal escape sequence, a C1 control and multi-byte characters.
ST_ESC_MSG='\u001b[31mred\u001b[0m \u009b2J ünïcödé ünïcödé ünïcödé ünïcödé ünïcödé ünïcödé ünïcödé ünïcödé ünïcödé ünïcödé'

# st_setup S: namespaces st-S-a and st-S-b with workloads and CRs whose status is set here,
# node labels and a node condition.
st_setup() {
  local a=st-$1-a b=st-$1-b now
  now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  if ! kc create namespace "$a" >/dev/null || ! kc create namespace "$b" >/dev/null; then
    fail "cannot create namespaces"
    return 1
  fi
  kc apply -f - >/dev/null <<YAML || { fail "cannot create the objects"; return 1; }
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: $a, labels: {app: x}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: registry.invalid/web:1}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: plain, namespace: $a}
spec:
  replicas: 0
  selector: {matchLabels: {app: plain}}
  template:
    metadata: {labels: {app: plain}}
    spec: {containers: [{name: c, image: registry.invalid/plain:1}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
  namespace: $a
  annotations: {confidential.cypherpunk.io/original-runtime-class: ""}
spec:
  replicas: 0
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      runtimeClassName: gvisor
      containers: [{name: c, image: registry.invalid/db:1}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: other, namespace: $b, labels: {app: x}}
spec:
  replicas: 1
  selector: {matchLabels: {app: other}}
  template:
    metadata: {labels: {app: other}}
    spec: {containers: [{name: c, image: registry.invalid/other:1}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: envapp, namespace: $b}
spec:
  replicas: 0
  selector: {matchLabels: {app: envapp}}
  template:
    metadata: {labels: {app: envapp}}
    spec:
      containers:
      - {name: first, image: registry.invalid/a:1}
      - {name: second, image: registry.invalid/b:1, env: [{name: KATA, value: "true"}]}
---
apiVersion: confidential.cypherpunk.io/v1alpha1
kind: ConfidentialWorkload
metadata: {name: cw1, namespace: $a}
spec:
  runtimeClassName: kata-qemu
  selector: {matchLabels: {app: x}}
---
apiVersion: confidential.cypherpunk.io/v1alpha1
kind: ConfidentialWorkload
metadata: {name: cw-new, namespace: $a}
spec:
  runtimeClassName: kata-clh
  selector: {matchLabels: {app: nothing}}
---
apiVersion: confidential.cypherpunk.io/v1alpha1
kind: ConfidentialWorkload
metadata: {name: cw2, namespace: $b}
spec:
  runtimeClassName: gvisor
  selector: {matchLabels: {app: x}}
YAML
  kc -n "$a" patch cwl cw1 --subresource=status --type=merge -p "$(cat <<JSON
{"status": {"observedGeneration": 1, "runtimeClassName": "kata-qemu",
  "conditions": [
    {"type": "Ready", "status": "False", "reason": "RollingOut", "message": "0/1 workloads sandboxed",
     "lastTransitionTime": "$now", "observedGeneration": 1}],
  "workloads": [
    {"kind": "Deployment", "name": "web", "phase": "RollingOut", "reason": "Unschedulable",
     "message": "$ST_LONG_MSG", "replicas": 2, "readyReplicas": 1, "updatedReplicas": 1,
     "sandboxedReplicas": 1, "observedGeneration": 2}],
  "workloadsTotal": 1, "workloadsSandboxed": 0, "workloadsSummary": "0/1"}}
JSON
)" >/dev/null || { fail "cannot patch the status of cw1"; return 1; }
  kc -n "$b" patch cwl cw2 --subresource=status --type=merge -p "$(cat <<JSON
{"status": {"observedGeneration": 1, "runtimeClassName": "gvisor",
  "conditions": [
    {"type": "Ready", "status": "True", "reason": "AllSandboxed", "message": "1/1 workloads sandboxed",
     "lastTransitionTime": "$now", "observedGeneration": 1}],
  "workloads": [
    {"kind": "Deployment", "name": "other", "phase": "Sandboxed", "reason": "AllPodsSandboxed",
     "message": "", "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1,
     "sandboxedReplicas": 1, "observedGeneration": 1},
    {"kind": "StatefulSet", "name": "esc", "phase": "Failed", "reason": "SandboxFailed",
     "message": "$ST_ESC_MSG"}],
  "workloadsTotal": 1, "workloadsSandboxed": 1, "workloadsSummary": "1/1"}}
JSON
)" >/dev/null || { fail "cannot patch the status of cw2"; return 1; }
  kc label node "$STATUS_NODE0" --overwrite runtime.confidential.cypherpunk.io/kata-qemu=ready \
    confidential.cypherpunk.io/enabled=true confidential.cypherpunk.io/tee=snp >/dev/null
  kc label node "$STATUS_NODE1" --overwrite runtime.confidential.cypherpunk.io/kata-fc=pending \
    >/dev/null
  kc patch node "$STATUS_NODE0" --subresource=status --type=strategic -p "$(cat <<JSON
{"status": {"conditions": [{"type": "ConfidentialRuntimeReady", "status": "True",
  "reason": "Verified", "message": "kata-qemu: probe kernel 6.12.8 differs from the host's",
  "lastHeartbeatTime": "$now", "lastTransitionTime": "$now"}]}}
JSON
)" >/dev/null
}

# st_cleanup S: removes what st_setup made. The CRs and workloads are deleted and waited for,
# so that a controller started by a later test never sees them; the namespaces (slow to
# terminate) go in the background.
st_cleanup() {
  local ns
  for ns in "st-$1-a" "st-$1-b"; do
    kc -n "$ns" delete cwl,deployments,statefulsets --all --wait=true --timeout=60s \
      >/dev/null 2>&1 || log "  objects of $ns not deleted in time"
  done
  kc delete namespace "st-$1-a" "st-$1-b" --wait=false >/dev/null 2>&1
  kc label node "$STATUS_NODE0" runtime.confidential.cypherpunk.io/kata-qemu- \
    confidential.cypherpunk.io/enabled- confidential.cypherpunk.io/tee- >/dev/null 2>&1
  kc label node "$STATUS_NODE1" runtime.confidential.cypherpunk.io/kata-fc- >/dev/null 2>&1
  # shellcheck disable=SC2016 # $patch is a strategic-merge directive, not a variable
  kc patch node "$STATUS_NODE0" --subresource=status --type=strategic \
    -p '{"status":{"conditions":[{"type":"ConfidentialRuntimeReady","$patch":"delete"}]}}' \
    >/dev/null 2>&1
}

test_status_help() {
  local d=$E2E_DIR/status-help rc=0
  mkdir -p "$d"
  st_run "$d/help" --help || rc=$?
  check "status --help exits 0 (rc $rc)" [ "$rc" -eq 0 ]
  check "help lists the flags" grep -q -- '--all-workloads' "$d/help.out"
  rc=0; st_run "$d/bad" --output=yaml || rc=$?
  check "invalid --output exits 2 (rc $rc)" [ "$rc" -eq 2 ]
  check "invalid --output is explained" grep -q 'table or json' "$d/bad.err"
  rc=0; st_run "$d/bad2" --bogus || rc=$?
  check "unknown flag exits 2 (rc $rc)" [ "$rc" -eq 2 ]
}

test_status_table() {
  local d=$E2E_DIR/status-table rc=0 s=tbl
  mkdir -p "$d"
  st_setup $s || { st_cleanup $s; return; }
  st_run "$d/t" || rc=$?
  sed 's/^/#   | /' "$d/t.out" >&2
  check "exit 0 (rc $rc)" [ "$rc" -eq 0 ]
  check "nothing on stderr: $(head -c 300 "$d/t.err")" [ ! -s "$d/t.err" ]
  # nodes x runtimes: classes from node labels (kata-qemu, kata-fc) and from the CRs (gvisor,
  # kata-clh) are columns.
  local hdr
  hdr=$(sed -n '2p' "$d/t.out")
  check "node header: $hdr" bash -c "[[ '$hdr' == 'NAME '*READY*OPTED-IN*gvisor*kata-clh*kata-fc*kata-qemu*TEE*KERNEL*RUNTIME-READY ]]"
  st_expect "$d/t.out" NODES "$STATUS_NODE0" READY True
  st_expect "$d/t.out" NODES "$STATUS_NODE0" OPTED-IN yes
  st_expect "$d/t.out" NODES "$STATUS_NODE0" kata-qemu ready
  st_expect "$d/t.out" NODES "$STATUS_NODE0" gvisor -
  st_expect "$d/t.out" NODES "$STATUS_NODE0" TEE snp
  st_expect "$d/t.out" NODES "$STATUS_NODE0" KERNEL 6.1.0-kwok
  st_expect "$d/t.out" NODES "$STATUS_NODE0" RUNTIME-READY "True/Verified [1]"
  st_expect "$d/t.out" NODES "$STATUS_NODE1" OPTED-IN no
  st_expect "$d/t.out" NODES "$STATUS_NODE1" kata-qemu -
  st_expect "$d/t.out" NODES "$STATUS_NODE1" kata-fc pending
  st_expect "$d/t.out" NODES "$STATUS_NODE1" TEE -
  check "condition message as a footnote" \
    grep -qx "  \[1\] $STATUS_NODE0: kata-qemu: probe kernel 6.12.8 differs from the host's" "$d/t.out"
  # ConfidentialWorkloads
  st_expect "$d/t.out" CONFIDENTIALWORKLOADS "st-$s-a cw1" RUNTIME kata-qemu
  st_expect "$d/t.out" CONFIDENTIALWORKLOADS "st-$s-a cw1" READY False
  st_expect "$d/t.out" CONFIDENTIALWORKLOADS "st-$s-a cw1" REASON RollingOut
  st_expect "$d/t.out" CONFIDENTIALWORKLOADS "st-$s-a cw1" WORKLOADS 0/1
  st_expect "$d/t.out" CONFIDENTIALWORKLOADS "st-$s-a cw-new" RUNTIME "kata-clh(requested)"
  st_expect "$d/t.out" CONFIDENTIALWORKLOADS "st-$s-a cw-new" READY -
  st_expect "$d/t.out" CONFIDENTIALWORKLOADS "st-$s-b cw2" RUNTIME gvisor
  st_expect "$d/t.out" CONFIDENTIALWORKLOADS "st-$s-b cw2" READY True
  st_expect "$d/t.out" CONFIDENTIALWORKLOADS "st-$s-b cw2" REASON AllSandboxed
  st_expect "$d/t.out" CONFIDENTIALWORKLOADS "st-$s-b cw2" WORKLOADS 1/1
  # workloads of the CRs
  st_expect "$d/t.out" WORKLOADS "st-$s-a cw1 Deployment/web" PHASE RollingOut
  st_expect "$d/t.out" WORKLOADS "st-$s-a cw1 Deployment/web" SANDBOXED 1/2
  st_expect "$d/t.out" WORKLOADS "st-$s-b cw2 Deployment/other" PHASE Sandboxed
  st_expect "$d/t.out" WORKLOADS "st-$s-b cw2 Deployment/other" SANDBOXED 1/1
  st_expect "$d/t.out" WORKLOADS "st-$s-b cw2 Deployment/other" MESSAGE AllPodsSandboxed
  local msg line
  msg=$(st_cell "$d/t.out" WORKLOADS "st-$s-a cw1 Deployment/web" MESSAGE)
  line=$(grep "^st-$s-a  *cw1  *Deployment/web " "$d/t.out")
  check "long message cut with '...': $msg" bash -c "[[ '$msg' == 'Unschedulable: 0/2 nodes are available'*'...' ]]"
  check "workload line fits 100 columns (${#line})" [ "${#line}" -le 100 ]
  line=$(grep "^st-$s-b  *cw2  *StatefulSet/esc " "$d/t.out")
  check "no control characters printed" bash -c "! LC_ALL=C grep -q \$'[\x01-\x08\x0b-\x1f\x7f]\\|\xc2[\x80-\x9f]' '$d/t.out'"
  check "escape replaced: ${line:0:90}" grep -q 'SandboxFailed: ?\[31mred?\[0m ?2J ünïcödé' <<<"$line"
  check "multi-byte message cut on a character: ${line: -20}" \
    bash -c "iconv -f UTF-8 -t UTF-8 <<<'$line' >/dev/null && [[ '$line' == *'...' ]] && [ \$(LC_ALL=C.UTF-8 wc -m <<<'$line') -le 101 ]"
  check "no --all-workloads section by default" bash -c "! grep -q 'OPTED-IN WORKLOADS' '$d/t.out'"
  check "no sanitizer report" st_no_sanitizer "$d/t.err"
  st_cleanup $s
}

test_status_json() {
  local d=$E2E_DIR/status-json rc=0 s=json
  mkdir -p "$d"
  st_setup $s || { st_cleanup $s; return; }
  st_run "$d/j" --output json || rc=$?
  check "exit 0 (rc $rc)" [ "$rc" -eq 0 ]
  check "valid JSON" jq -e . "$d/j.out" >/dev/null
  local n0=".nodes[] | select(.name==\"$STATUS_NODE0\")"
  local n1=".nodes[] | select(.name==\"$STATUS_NODE1\")"
  st_jq "$d/j.out" "two nodes" '.nodes | length == 2'
  st_jq "$d/j.out" "node0 ready for kata-qemu" "$n0 | .runtimes[\"kata-qemu\"] == \"ready\""
  st_jq "$d/j.out" "node0 opted in, TEE snp, kernel" \
    "$n0 | .optedIn == true and .tee == \"snp\" and .kernelVersion == \"6.1.0-kwok\" and .ready == \"True\""
  st_jq "$d/j.out" "node0 condition" \
    "$n0 | .confidentialRuntimeReady.status == \"True\" and .confidentialRuntimeReady.reason == \"Verified\""
  st_jq "$d/j.out" "node1 not opted in, kata-fc pending, no condition" \
    "$n1 | .optedIn == false and .tee == null and .runtimes == {\"kata-fc\": \"pending\"} and .confidentialRuntimeReady == null"
  # (RuntimeClasses other tests left, e.g. the node preparation's, may be listed too.)
  st_jq "$d/j.out" "runtime classes" '(["gvisor","kata-clh","kata-fc","kata-qemu"] - .runtimeClasses) == [] and .runtimeClasses == (.runtimeClasses | sort)'
  local c1=".confidentialWorkloads[] | select(.namespace==\"st-$s-a\" and .name==\"cw1\")"
  st_jq "$d/j.out" "three CRs of this test" \
    "[.confidentialWorkloads[] | select(.namespace | startswith(\"st-$s-\"))] | length == 3"
  st_jq "$d/j.out" "cw1 fields" \
    "$c1 | .runtimeClassName == \"kata-qemu\" and .requestedRuntimeClassName == \"kata-qemu\" and .ready.status == \"False\" and .ready.reason == \"RollingOut\" and .workloadsSummary == \"0/1\" and .workloadsTotal == 1 and .workloadsSandboxed == 0 and .observedGeneration == 1"
  st_jq "$d/j.out" "cw-new has no status" \
    ".confidentialWorkloads[] | select(.namespace==\"st-$s-a\" and .name==\"cw-new\") | .runtimeClassName == null and .requestedRuntimeClassName == \"kata-clh\" and .ready == null"
  local w=".workloads[] | select(.namespace==\"st-$s-a\" and .name==\"web\")"
  st_jq "$d/j.out" "web workload" \
    "$w | .confidentialWorkload == \"cw1\" and .kind == \"Deployment\" and .phase == \"RollingOut\" and .reason == \"Unschedulable\" and .replicas == 2 and .sandboxedReplicas == 1 and .readyReplicas == 1 and .updatedReplicas == 1"
  st_jq "$d/j.out" "full message in JSON" "$w | .message == \"$ST_LONG_MSG\""
  st_jq "$d/j.out" "no errors" '.errors == []'
  st_jq "$d/j.out" "no allWorkloads without the flag" 'has("allWorkloads") | not'
  check "no sanitizer report" st_no_sanitizer "$d/j.err"
  st_cleanup $s
}

test_status_namespace() {
  local d=$E2E_DIR/status-ns rc=0 s=ns
  mkdir -p "$d"
  st_setup $s || { st_cleanup $s; return; }
  st_run "$d/j" -n "st-$s-b" -o json || rc=$?
  check "exit 0 (rc $rc)" [ "$rc" -eq 0 ]
  st_jq "$d/j.out" "only the CR of st-$s-b" "[.confidentialWorkloads[].name] == [\"cw2\"]"
  st_jq "$d/j.out" "only its workloads" "[.workloads[] | .namespace + \"/\" + .name] == [\"st-$s-b/other\",\"st-$s-b/esc\"]"
  st_jq "$d/j.out" "nodes still listed" '.nodes | length == 2'
  rc=0; st_run "$d/t" --namespace="st-$s-a" || rc=$?
  check "table exit 0 (rc $rc)" [ "$rc" -eq 0 ]
  st_expect "$d/t.out" CONFIDENTIALWORKLOADS "st-$s-a cw1" RUNTIME kata-qemu
  check "no CR of another namespace" bash -c "! grep -q 'st-$s-b' '$d/t.out'"
  # One object per page: the lists follow the continue tokens to the end.
  rc=0; st_run "$d/p" --list-page-size=1 --all-workloads -o json || rc=$?
  check "paged: exit 0 (rc $rc)" [ "$rc" -eq 0 ]
  st_jq "$d/p.out" "paged: every node, CR, workload" \
    "(.nodes | length == 2) and ([.confidentialWorkloads[] | select(.namespace | startswith(\"st-$s-\"))] | length == 3) and ([.workloads[] | select(.namespace | startswith(\"st-$s-\"))] | length == 3) and ([.allWorkloads[] | select(.namespace | startswith(\"st-$s-\"))] | length == 2)"
  rc=0; st_run "$d/e" -n "st-$s-none" || rc=$?
  check "empty namespace: exit 0 (rc $rc)" [ "$rc" -eq 0 ]
  check "empty namespace said" grep -q "No ConfidentialWorkloads found in namespace st-$s-none" "$d/e.out"
  check "no sanitizer report" st_no_sanitizer "$d/j.err"
  st_cleanup $s
}

test_status_all_workloads() {
  local d=$E2E_DIR/status-all rc=0 s=all
  mkdir -p "$d"
  st_setup $s || { st_cleanup $s; return; }
  # What the controller would have done to web for cw1.
  kc -n "st-$s-a" patch deployment web --type=merge -p \
    '{"metadata":{"annotations":{"confidential.cypherpunk.io/original-runtime-class":""}},"spec":{"template":{"spec":{"runtimeClassName":"kata-qemu"}}}}' >/dev/null
  st_run "$d/j" --all-workloads -o json || rc=$?
  check "exit 0 (rc $rc)" [ "$rc" -eq 0 ]
  local mine="[.allWorkloads[] | select(.namespace | startswith(\"st-$s-\"))]"
  st_jq "$d/j.out" "opted-in workloads only" \
    "$mine | map(.namespace + \"/\" + .kind + \"/\" + .name) | sort == [\"st-$s-a/Deployment/web\",\"st-$s-a/StatefulSet/db\",\"st-$s-b/Deployment/envapp\"]"
  st_jq "$d/j.out" "web linked to cw1" \
    "${mine}[] | select(.name==\"web\") | .confidentialWorkload == \"cw1\" and .runtimeClassName == \"kata-qemu\" and .originalRuntimeClass == \"\" and .replicas == 2"
  st_jq "$d/j.out" "env opt-in on a second container" \
    "${mine}[] | select(.name==\"envapp\") | .optInEnv == \"KATA=true\" and .confidentialWorkload == null and .runtimeClassName == null"
  st_jq "$d/j.out" "statefulset with its class" \
    "${mine}[] | select(.name==\"db\") | .runtimeClassName == \"gvisor\" and .kind == \"StatefulSet\""
  rc=0; st_run "$d/t" --all-workloads -n "st-$s-a" || rc=$?
  check "table exit 0 (rc $rc)" [ "$rc" -eq 0 ]
  sed 's/^/#   | /' "$d/t.out" >&2
  st_expect "$d/t.out" "OPTED-IN WORKLOADS" "st-$s-a Deployment/web" RUNTIME kata-qemu
  st_expect "$d/t.out" "OPTED-IN WORKLOADS" "st-$s-a Deployment/web" ORIGINAL "<none>"
  st_expect "$d/t.out" "OPTED-IN WORKLOADS" "st-$s-a Deployment/web" OPT-IN cwl:cw1
  st_expect "$d/t.out" "OPTED-IN WORKLOADS" "st-$s-a StatefulSet/db" RUNTIME gvisor
  st_expect "$d/t.out" "OPTED-IN WORKLOADS" "st-$s-a StatefulSet/db" READY 0/0
  check "plain Deployment not listed" bash -c "! grep -q 'Deployment/plain' '$d/t.out'"
  check "other namespace not listed with -n" bash -c "! grep -q 'envapp' '$d/t.out'"
  check "no sanitizer report" st_no_sanitizer "$d/t.err"
  st_cleanup $s
}

test_status_forbidden() {
  local d=$E2E_DIR/status-rbac rc=0 ns=st-rbac
  mkdir -p "$d"
  kc create namespace $ns >/dev/null
  kc -n $ns create serviceaccount nobody >/dev/null
  kc -n $ns create serviceaccount nodes-only >/dev/null
  kc create clusterrole st-nodes-only --verb=list --resource=nodes >/dev/null
  kc create clusterrolebinding st-nodes-only --clusterrole=st-nodes-only \
    --serviceaccount=$ns:nodes-only >/dev/null
  st_kubeconfig "$d/nobody.kubeconfig" "$(kc -n $ns create token nobody)"
  st_kubeconfig "$d/nodes.kubeconfig" "$(kc -n $ns create token nodes-only)"

  st_run "$d/nobody" --kubeconfig="$d/nobody.kubeconfig" || rc=$?
  sed 's/^/#   stderr| /' "$d/nobody.err" >&2
  check "no RBAC: exit 1 (rc $rc)" [ "$rc" -eq 1 ]
  check "403 for nodes with the API server's message" \
    grep -qE '^error: cannot list nodes: nodes is forbidden: User "system:serviceaccount:st-rbac:nobody" cannot list resource "nodes" .*\(HTTP 403 Forbidden\)$' "$d/nobody.err"
  check "403 for the CRs too" \
    grep -qE '^error: cannot list confidentialworkloads: .*cannot list resource "confidentialworkloads"' "$d/nobody.err"
  check "one line per failure" [ "$(grep -c . "$d/nobody.err")" -eq 2 ]
  check "no table printed" [ ! -s "$d/nobody.out" ]

  # Nodes allowed, CRs not: the nodes still print, the error is said, exit 1.
  rc=0; st_run "$d/nodes" --kubeconfig="$d/nodes.kubeconfig" || rc=$?
  check "partial RBAC: exit 1 (rc $rc)" [ "$rc" -eq 1 ]
  check "nodes printed" grep -q "^$STATUS_NODE0 " "$d/nodes.out"
  check "CR error said" grep -q 'cannot list resource "confidentialworkloads"' "$d/nodes.err"
  rc=0; st_run "$d/nodesj" --kubeconfig="$d/nodes.kubeconfig" -o json || rc=$?
  check "partial RBAC json: exit 1 (rc $rc)" [ "$rc" -eq 1 ]
  st_jq "$d/nodesj.out" "json: nodes, null CRs, the error" \
    '(.nodes | length == 2) and .confidentialWorkloads == null and .errors[0].status == 403 and .errors[0].reason == "Forbidden" and .errors[0].resource == "confidentialworkloads"'
  check "no sanitizer report" bash -c "! grep -qE 'Sanitizer|runtime error:' '$d/nobody.err' '$d/nodes.err' '$d/nodesj.err'"

  # Unreachable server: one line, quickly.
  st_kubeconfig "$d/down.kubeconfig" x https://127.0.0.1:9
  rc=0; st_run "$d/down" --kubeconfig="$d/down.kubeconfig" || rc=$?
  sed 's/^/#   stderr| /' "$d/down.err" >&2
  check "unreachable: exit 1 (rc $rc)" [ "$rc" -eq 1 ]
  check "unreachable: one error line" [ "$(grep -c '^error: ' "$d/down.err")" -eq 1 ]
  check "unreachable: says it cannot connect" grep -q 'cannot connect' "$d/down.err"

  kc delete clusterrolebinding st-nodes-only >/dev/null
  kc delete clusterrole st-nodes-only >/dev/null
  kc delete namespace $ns --wait=false >/dev/null
}

# Runs last of these (alphabetical): deletes the CRD, then puts it back.
test_status_without_crd() {
  local d=$E2E_DIR/status-nocrd rc=0 crd=confidentialworkloads.confidential.cypherpunk.io _
  mkdir -p "$d"
  kc delete crd $crd --wait=true --timeout=60s >/dev/null || { fail "cannot delete the CRD"; return; }
  for _ in $(seq 1 100); do
    kc get --raw /apis/confidential.cypherpunk.io/v1alpha1/confidentialworkloads >/dev/null 2>&1 || break
    sleep 0.1
  done
  st_run "$d/t" || rc=$?
  sed 's/^/#   stderr| /' "$d/t.err" >&2
  check "exit 1 (rc $rc)" [ "$rc" -eq 1 ]
  check "CRD missing said" grep -q '^error: the ConfidentialWorkload CRD is not installed' "$d/t.err"
  check "nodes still printed" grep -q "^$STATUS_NODE0 " "$d/t.out"
  check "no CR section" bash -c "! grep -q CONFIDENTIALWORKLOADS '$d/t.out'"
  rc=0; st_run "$d/j" -o json || rc=$?
  check "json: exit 1 (rc $rc)" [ "$rc" -eq 1 ]
  st_jq "$d/j.out" "json: nodes and the error" \
    '(.nodes | length == 2) and .confidentialWorkloads == null and (.errors[0].message | test("CRD is not installed"))'
  check "no sanitizer report" st_no_sanitizer "$d/t.err"

  kc apply -f crd/confidentialworkloads.yaml >/dev/null
  kc wait --for=condition=Established crd/$crd --timeout=30s >/dev/null || fail "CRD not re-established"
  for _ in $(seq 1 100); do
    kc get cwl -A >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  fail "CRD not served again"
}
