# shellcheck shell=bash
# Node preparation end to end: the real controller and the real node agent together on one kwok
# Node, the agent on a fixture host tree built like test_node_agent.sh's (k3s agent, containerd
# 2 / config-v3 layout, runsc installed) plus /dev/kvm. Neither side is played by the test: it
# only plays what k3s and the kubelet do (the restart command renders config.toml from the
# template; status.runtimeHandlers after each restart; the probe pods' termination messages),
# and kata-deploy's result (its handler reported by the kubelet once kata-deploy ran).
#
# Label -> agent scheduled -> hardware labels, template patched, restart requested -> granted ->
# performed -> Prepared -> kata-deploy's turn -> probes -> runtime labels ready, conditions True,
# `status` shows it. Unlabel -> runtime labels gone, sandboxed pod evicted -> agent removes its
# changes (template byte-identical) -> restart granted and performed -> every label, annotation
# and condition of the operator gone, and it stays so while the agent still runs.

NF_NODE=e2e-flow-0
NF_D=confidential.cypherpunk.io
NF_NS=confidential-nodes
NF_KERNEL=6.1.0-kwok
NF_CLASSES=kata-qemu,kata-qemu-snp,gvisor
NF_FLAGS=(--node-namespace=$NF_NS --runtime-classes=$NF_CLASSES --probe-interval=600
  --probe-timeout=60 --node-resync=2 --eviction-timeout=30 --restart-timeout=30)

# nf_node: a kwok Node with the kernel the probes compare against (no operator label yet).
nf_node() {
  kc create -f - >/dev/null <<YAML
apiVersion: v1
kind: Node
metadata:
  name: $NF_NODE
  annotations: {kwok.x-k8s.io/node: fake}
  labels: {type: kwok, kubernetes.io/hostname: $NF_NODE, kubernetes.io/os: linux}
spec: {}
status:
  allocatable: {cpu: "8", memory: 32Gi, pods: "110"}
  capacity: {cpu: "8", memory: 32Gi, pods: "110"}
  nodeInfo:
    architecture: amd64
    operatingSystem: linux
    kernelVersion: "$NF_KERNEL"
    containerRuntimeVersion: containerd://2.0.5-k3s1
    kubeletVersion: v1.36.3
    machineID: $NF_NODE
    systemUUID: 00000000-0000-0000-0000-0000000000f0
    bootID: boot-$NF_NODE
YAML
  kc wait --for=condition=Ready "node/$NF_NODE" --timeout=30s >/dev/null
}

# nf_operator_keys: the operator's labels, annotations and conditions left on the node.
nf_operator_keys() {
  kc get node $NF_NODE -o json | jq -r --arg d "$NF_D" '[(.metadata.labels // {} | keys[]),
    (.metadata.annotations // {} | keys[]), (.status.conditions // [] | .[].type)]
    | map(select(startswith($d + "/") or startswith("runtime." + $d + "/") or startswith("Confidential")))
    | join(",")'
}

# nf_cond TYPE: "status/reason" of a node condition.
nf_cond() {
  kc get node $NF_NODE -o json | jq -r --arg t "$1" '.status.conditions[]? | select(.type == $t) | "\(.status)/\(.reason)"'
}
nf_cond_msg() {
  kc get node $NF_NODE -o json | jq -r --arg t "$1" '.status.conditions[]? | select(.type == $t) | .message'
}

# nf_agent_log JQ_FILTER: matching lines of the agent's JSON log; nf_agent_has: there is one.
nf_agent_log() { grep '^{' "$NA_LOG" | jq -c "select($1)" 2>/dev/null; }
nf_agent_has() { [ -n "$(nf_agent_log "$1")" ]; }
NF_REQ='.msg == "node agent state" and .state == "RestartRequested"'

# nf_wait_for TIMEOUT_S CMD...: waits until CMD succeeds.
nf_wait_for() {
  local t=$1 i; shift
  for i in $(seq 1 $((t * 10))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

# nf_granted ID: the controller granted restart ID to the node (its event, the annotation may
# already be gone again).
nf_granted() {
  kc -n default get events.events.k8s.io --field-selector reason=RestartGranted -o json |
    jq -e --arg n $NF_NODE --arg id "$1" '.items[] | select(.regarding.name == $n and (.note | contains($id)))' >/dev/null
}

# nf_pods_on [-l SELECTOR]: names of the pods in the node namespace on the node.
nf_pods_on() { kc -n $NF_NS get pods "$@" --field-selector spec.nodeName=$NF_NODE -o name; }
nf_has_agent_pod() { nf_pods_on -l app.kubernetes.io/component=node-agent | grep -q .; }
nf_no_agent_pod() { ! nf_has_agent_pod; }
nf_has_kata_deploy_pod() { nf_pods_on | grep -q kata-deploy; }
nf_no_runtime_label() {
  [ -z "$(kc get node $NF_NODE -o json | jq -r --arg p "runtime.$NF_D/" '.metadata.labels | keys[] | select(startswith($p))')" ]
}
nf_pod_gone() { ! kc -n "$1" get pod "$2" -o name >/dev/null 2>&1; }
nf_no_operator_keys() { [ -z "$(nf_operator_keys)" ]; }
nf_restarts_are() { [ "$(na_restarts "$1")" -eq "$2" ]; }

nf_agent_alive() { [ -n "$NA_PID" ] && kill -0 "$NA_PID" 2>/dev/null; }

nf_cleanup() {
  na_stop >/dev/null 2>&1
  kc -n e2e-flow delete pod tenant --grace-period=0 --force --ignore-not-found >/dev/null 2>&1
  kc delete node $NF_NODE --ignore-not-found >/dev/null
  kc -n $NF_NS delete pods -l $NF_D/probe=true --field-selector spec.nodeName=$NF_NODE \
    --grace-period=0 --force >/dev/null 2>&1
}

test_node_flow_controller_and_agent() {
  local d=$E2E_DIR/node-flow h rc
  local tmpl=$'# kata-deploy 3.27: the base template\n{{ template "base" . }}\n'
  h=$d/host/$NA_CD
  kc apply -f manifests/node-agent-rbac.yaml -f manifests/nodeprep-rbac.yaml >/dev/null
  kc delete node $NF_NODE --ignore-not-found >/dev/null
  na_fixture "$d" "$tmpl"
  : > "$d/host/dev/kvm" # KVM: the Kata classes are offered
  rm -rf "$d/pristine" && cp -a "$d/host" "$d/pristine"
  nf_node
  check "token of the node agent's ServiceAccount" na_token_kubeconfig "$d/kubeconfig"
  ctrl_start node-flow "${NF_FLAGS[@]}"

  # 1. The admin opts the node in; the controller schedules the agent there (agent=true, the
  # DaemonSet's nodeSelector), and the agent starts as the DaemonSet would start it.
  kc label node $NF_NODE $NF_D/enabled=true >/dev/null
  check "controller: agent=true" wait_na true 15 na_label $NF_NODE $NF_D/agent
  check "controller: a node-agent pod scheduled on the node" nf_wait_for 15 nf_has_agent_pod
  na_start node-flow-agent $NF_NODE "$d" "$d/kubeconfig" --runtime-classes=$NF_CLASSES \
    --restart-timeout=30

  # 2. The agent detects the hardware, patches the template and asks for a restart; the
  # controller grants it, the agent performs it (the fixture's restart renders config.toml).
  check "agent: kvm=true" wait_na true 15 na_label $NF_NODE $NF_D/kvm
  check "agent: tee=none" wait_na none 1 na_label $NF_NODE $NF_D/tee
  check "agent: tpm=true" wait_na true 1 na_label $NF_NODE $NF_D/tpm
  check "agent: restart requested" nf_wait_for 15 nf_agent_has "$NF_REQ"
  local id
  id=$(nf_agent_log "$NF_REQ" | head -1 | jq -r .restart_request)
  log "  restart request: $id"
  check "agent: template imports config-v3.toml.d" \
    grep -q 'imports = \[".*config-v3.toml.d/\*.toml"\]' "$h/config-v3.toml.tmpl"
  check "agent: gVisor drop-in written" grep -q "runtimes.runsc\]" "$h/config-v3.toml.d/confidential-operator-runsc.toml"
  check "controller: restart $id granted" nf_wait_for 15 nf_granted "$id"
  check "agent: restart performed under grant $id" nf_wait_for 15 \
    nf_agent_has ".msg == \"restarting k3s (granted)\" and .request == \"$id\""
  check "k3s restarted once (k3s-agent.service)" nf_wait_for 15 grep -qx 'restart k3s-agent.service' "$d/restarts.log"
  # The kubelet of the restarted k3s reports the handlers of the rendered config.
  np_handlers $NF_NODE runc runsc
  check "agent: Prepared" wait_na Prepared 20 na_ann $NF_NODE agent-state
  check "agent: restart-request removed" wait_na "" 10 na_ann $NF_NODE restart-request
  check "controller: restart-grant removed" wait_na "" 10 na_ann $NF_NODE restart-grant
  check "agent: agent-runtimes runc,runsc" wait_na "runc,runsc" 5 na_ann $NF_NODE agent-runtimes
  check "rendered config loads the drop-in dir" grep -q 'config-v3.toml.d' "$h/config.toml"

  # 3. KVM is there: kata-deploy's turn (prepared=true, its own restart). kwok runs no
  # kata-deploy: the test reports its handler the way the kubelet would after that restart.
  check "controller: prepared=true (kata-deploy scheduled)" wait_na true 15 na_label $NF_NODE $NF_D/prepared
  check "controller: a kata-deploy pod scheduled on the node" nf_wait_for 15 nf_has_kata_deploy_pod
  np_handlers $NF_NODE runc runsc kata-qemu

  # 4. The probes: a kernel other than the node's in each sandbox.
  local pg pk
  pg=$(np_wait_probe $NF_NODE gvisor none 20)
  check "controller: gvisor probe pod on the node" [ -n "$pg" ]
  pk=$(np_wait_probe $NF_NODE kata-qemu none 20)
  check "controller: kata-qemu probe pod on the node" [ -n "$pk" ]
  check "not ready before the probes answered" [ -z "$(na_label $NF_NODE runtime.$NF_D/gvisor)" ]
  [ -n "$pg" ] && np_answer "${pg% *}" 4.4.0
  [ -n "$pk" ] && np_answer "${pk% *}" 6.12.8-kata
  check "runtime.$NF_D/gvisor=ready" wait_na ready 20 na_label $NF_NODE runtime.$NF_D/gvisor
  check "runtime.$NF_D/kata-qemu=ready" wait_na ready 20 na_label $NF_NODE runtime.$NF_D/kata-qemu
  check "no kata-qemu-snp label without the TEE" [ -z "$(na_label $NF_NODE runtime.$NF_D/kata-qemu-snp)" ]
  check "ConfidentialRuntimeReady True/Prepared" wait_na True/Prepared 10 nf_cond ConfidentialRuntimeReady
  check "ConfidentialSandboxVerified True/Verified" wait_na True/Verified 10 nf_cond ConfidentialSandboxVerified
  local vmsg; vmsg=$(nf_cond_msg ConfidentialSandboxVerified)
  log "  verified: $vmsg"
  check "verified message: gvisor's kernel differs from the node's" \
    grep -q "gvisor: ready, sandbox kernel 4.4.0 differs from the host's $NF_KERNEL" <<<"$vmsg"
  check "verified message: kata-qemu's kernel differs from the node's" \
    grep -q "kata-qemu: ready, sandbox kernel 6.12.8-kata differs from the host's $NF_KERNEL" <<<"$vmsg"
  check "verified message: kata-qemu-snp not served (no TEE, kata-deploy installs no SNP shim)" \
    grep -q 'kata-qemu-snp: not verified' <<<"$vmsg"
  local amsg; amsg=$(nf_cond_msg ConfidentialRuntimeReady)
  log "  agent: $amsg"
  check "agent message: what changed, k3s restarted, no stale verification note" \
    bash -c "grep -Eq 'changed [0-9]+ path.*k3s restarted \(k3s-agent.service\), node Ready' <<<\"\$1\" && ! grep -q 'does not load' <<<\"\$1\"" _ "$amsg"
  check "agent: exactly one restart so far" [ "$(na_restarts "$d")" -eq 1 ]

  local st=$E2E_DIR/node-flow-status
  "$CO_BIN" status -o json >"$st.json" 2>"$st.err"
  check "status -o json: the node's runtimes ready and both conditions True" np_quiet jq -e --arg n $NF_NODE \
    '.nodes[] | select(.name == $n) | .confidentialRuntimeReady.status == "True" and
      .confidentialSandboxVerified.status == "True" and (tostring | test("gvisor")) and (tostring | test("kata-qemu"))' "$st.json"
  "$CO_BIN" status >"$st.out" 2>>"$st.err"
  check "status table: the node with True/Prepared and True/Verified" grep -qE "^$NF_NODE .*True/Prepared.*True/Verified" "$st.out"
  grep -E "^(NAME|$NF_NODE) " "$st.out" >&2

  # 5. A sandboxed pod on the node (the RuntimeClass' nodeSelector brings it here).
  kc create namespace e2e-flow >/dev/null 2>&1
  kc -n e2e-flow apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: tenant}
spec:
  runtimeClassName: gvisor
  containers: [{name: app, image: fake}]
YAML
  check "sandboxed pod runs on the node" wait_jp e2e-flow pod/tenant '{.spec.nodeName}/{.status.phase}' $NF_NODE/Running 20

  # 6. Unlabel: runtime labels go, the pod is evicted, kata-deploy leaves, the agent removes
  # its changes under a new grant, the controller clears the node.
  kc label node $NF_NODE $NF_D/enabled- >/dev/null
  check "controller: runtime labels removed" nf_wait_for 10 nf_no_runtime_label
  check "controller: sandboxed pod evicted" nf_wait_for 20 nf_pod_gone e2e-flow tenant
  check "agent: removal restart requested" nf_wait_for 20 nf_agent_has "$NF_REQ and .restart_request != \"$id\""
  local id2
  id2=$(nf_agent_log "$NF_REQ and .restart_request != \"$id\"" | head -1 | jq -r .restart_request)
  log "  removal restart request: $id2"
  check "controller: removal restart $id2 granted" nf_wait_for 15 nf_granted "$id2"
  check "agent: removal restart performed under grant $id2" nf_wait_for 15 \
    nf_agent_has ".msg == \"restarting k3s (granted)\" and .request == \"$id2\""
  check "k3s restarted a second time" nf_wait_for 15 nf_restarts_are "$d" 2
  np_handlers $NF_NODE runc # the kubelet after the restart
  local left=""
  nf_wait_for 20 nf_no_operator_keys
  left=$(nf_operator_keys)
  check "every label, annotation and condition of the operator gone ('$left')" [ -z "$left" ]
  check "template byte-identical to the original" cmp "$h/config-v3.toml.tmpl" "$d/pristine/$NA_CD/config-v3.toml.tmpl"
  check "host tree identical to the original (rendered config included)" diff -r "$d/pristine" "$d/host"
  local ev; ev=$(np_node_events $NF_NODE)
  log "  node events: $ev"
  for r in AgentScheduled RestartGranted RestartCompleted KataDeployScheduled ProbeSucceeded RuntimeReady \
    RemovalStarted KataDeployRemoved AgentRemoving Cleared; do
    check "event $r" grep -qw "$r" <<<"$ev"
  done

  # 7. Until its pod is gone the agent still runs: it must not prepare the node again.
  sleep 3
  left=$(nf_operator_keys)
  check "nothing of the operator back on the node ('$left')" [ -z "$left" ]
  check "host tree still the original" diff -r "$d/pristine" "$d/host"
  check "no third restart" [ "$(na_restarts "$d")" -eq 2 ]
  check "agent still running" nf_agent_alive
  check "controller: the node-agent pod leaves the node" nf_wait_for 15 nf_no_agent_pod
  rc=0; na_stop || rc=$?
  check "agent: clean exit (rc $rc)" [ "$rc" -eq 0 ]
  check "agent: no sanitizer report, no 403" na_clean_log
  rc=0; ctrl_stop || rc=$?
  check "controller: clean exit (rc $rc)" [ "$rc" -eq 0 ]
  check "controller: no sanitizer report" sanitizer_clean
  kc delete namespace e2e-flow --wait=false >/dev/null 2>&1
  nf_cleanup
}
