# shellcheck shell=bash
# Node preparation, controller side, on kwok nodes. kwok runs no pod for real, so the test plays
# the node agent (restart-request, agent-runtimes, agent-state annotations), kata-deploy (its
# katacontainers.io/kata-runtime label), the kubelet (status.runtimeHandlers, the probe pod's
# termination message) and checks what the controller does: the DaemonSets and RuntimeClasses,
# agent labels, one restart at a time with servers last, runtime labels only after the probe,
# and the removal (eviction honouring a PodDisruptionBudget, agent-action=remove, cleanup).

NP_NS=confidential-nodes
NP_N0=kwok-node-0
NP_N1=kwok-node-1
NP_D=confidential.cypherpunk.io
NP_KERNEL=6.1.0-kwok # hack/cluster-up.sh CO_NODE_KERNEL

# The controller flags of these tests: short probe interval and resync.
NP_FLAGS=(--node-namespace=$NP_NS --probe-interval=3 --probe-timeout=60 --node-resync=2
  --eviction-timeout=60 --restart-timeout=60 --runtime-classes=kata-qemu,kata-qemu-snp,gvisor)

np_quiet() { "$@" >/dev/null 2>&1; }

# np_namespace: the privileged namespace of the node DaemonSets and the RBAC of the bundle.
np_namespace() {
  kc apply -f manifests/node-agent-rbac.yaml -f manifests/nodeprep-rbac.yaml >/dev/null
}

# np_reset_node NODE: removes everything node preparation (or the test) put on the node.
np_reset_node() {
  local n=$1 keys k
  keys=$(kc get node "$n" -o json | jq -r --arg d "$NP_D" '.metadata.labels | keys[]
    | select(startswith($d + "/") or startswith("runtime." + $d + "/")
      or . == "katacontainers.io/kata-runtime" or . == "node-role.kubernetes.io/control-plane")')
  for k in $keys; do kc label node "$n" "$k-" >/dev/null; done
  keys=$(kc get node "$n" -o json | jq -r --arg d "$NP_D" '.metadata.annotations // {} | keys[]
    | select(startswith($d + "/"))')
  for k in $keys; do kc annotate node "$n" "$k-" >/dev/null; done
  kc patch node "$n" --subresource=status --type=strategic -p \
    '{"status":{"runtimeHandlers":null,"conditions":[{"type":"ConfidentialSandboxVerified","$patch":"delete"},{"type":"ConfidentialRuntimeReady","$patch":"delete"}]}}' >/dev/null
}

# np_handlers NODE NAMES...: sets status.runtimeHandlers the way the kubelet reports them.
np_handlers() {
  local n=$1 js; shift
  js=$(printf '%s\n' "$@" | jq -R '{name: ., features: {recursiveReadOnlyMounts: true}}' | jq -sc .)
  kc patch node "$n" --subresource=status --type=merge -p "{\"status\":{\"runtimeHandlers\":$js}}" >/dev/null
}

# np_probe NODE CLASS: "name uid" of the live probe pod for (NODE, CLASS), or nothing.
np_probe() {
  kc -n $NP_NS get pods -l $NP_D/probe=true -o json | jq -r --arg n "$1" --arg c "$2" \
    '.items[] | select(.spec.nodeName == $n and .metadata.annotations["confidential.cypherpunk.io/probe-class"] == $c
      and .metadata.deletionTimestamp == null) | "\(.metadata.name) \(.metadata.uid)"' | head -1
}

# np_wait_probe NODE CLASS NOT_UID TIMEOUT_S: waits for a probe pod other than NOT_UID.
np_wait_probe() {
  local i p
  for i in $(seq 1 $(($4 * 10))); do
    p=$(np_probe "$1" "$2")
    if [ -n "$p" ] && [ "${p#* }" != "$3" ]; then echo "$p"; return 0; fi
    sleep 0.1
  done
  return 1
}

# np_answer POD KERNEL: the kubelet's report of a finished probe: `uname -r` in the message.
np_answer() {
  kc -n $NP_NS patch pod "$1" --subresource=status --type=merge -p "$(jq -nc --arg m "$2" '{status: {phase: "Succeeded",
    containerStatuses: [{name: "probe", image: "busybox:1.36", imageID: "", ready: false, restartCount: 0,
      state: {terminated: {exitCode: 0, reason: "Completed", message: ($m + "\n")}}}]}}')" >/dev/null
}

# np_ready_runtime NODE CLASS KERNEL: handler served, probe answered with KERNEL; waits for the
# runtime label. Used by the install test too.
np_ready_runtime() {
  local n=$1 c=$2 p
  np_handlers "$n" "$c"
  p=$(np_wait_probe "$n" "$c" none 20) || { log "  no probe pod for $n/$c"; return 1; }
  np_answer "${p% *}" "$3"
  wait_jp "" "node/$n" "{.metadata.labels.runtime\\.confidential\\.cypherpunk\\.io/$c}" ready 20
}

np_label() { jp "" "node/$1" "{.metadata.labels.${2//./\\.}}"; }
np_ann() { jp "" "node/$1" "{.metadata.annotations.${2//./\\.}}"; }
np_cond() { jp "" "node/$1" "{.status.conditions[?(@.type==\"ConfidentialSandboxVerified\")].$2}"; }

# np_wait_cond NODE FIELD REGEX TIMEOUT_S
np_wait_cond() {
  local i got=""
  for i in $(seq 1 $(($4 * 10))); do
    got=$(np_cond "$1" "$2")
    [[ $got =~ $3 ]] && return 0
    sleep 0.1
  done
  log "  $1 condition $2 = '$got' (want /$3/)"
  return 1
}

# np_node_events NODE: "reason" of every event about the node, space separated.
np_node_events() {
  kc -n default get events.events.k8s.io -o json | jq -r --arg n "$1" \
    '[.items[] | select(.regarding.kind == "Node" and .regarding.name == $n) | .reason] | join(" ")'
}

np_setup() {
  np_namespace
  kc delete runtimeclass kata-clh --ignore-not-found >/dev/null # left by other tests' controllers
  kc -n $NP_NS delete pods -l $NP_D/probe=true --grace-period=0 --force >/dev/null 2>&1
  np_reset_node $NP_N0
  np_reset_node $NP_N1
}

np_cleanup() {
  np_reset_node $NP_N0
  np_reset_node $NP_N1
}

test_nodeprep_objects() {
  np_setup
  ctrl_start nodeprep-objects "${NP_FLAGS[@]}"
  local ds=daemonset/confidential-operator-node-agent kd=daemonset/kata-deploy
  check "node-agent DaemonSet nodeSelector agent=true" \
    wait_jp $NP_NS $ds '{.spec.template.spec.nodeSelector}' "{\"$NP_D/agent\":\"true\"}" 20
  check "kata-deploy DaemonSet nodeSelector prepared=true" \
    wait_jp $NP_NS $kd '{.spec.template.spec.nodeSelector}' "{\"$NP_D/prepared\":\"true\"}" 20
  check "kata-deploy upstream image, default version 4.1.0" \
    wait_jp $NP_NS $kd '{.spec.template.spec.containers[0].image}' quay.io/kata-containers/kata-deploy:4.1.0 1
  check "kata-deploy K8S_DISTRIBUTION=k3s" \
    wait_jp $NP_NS $kd '{.spec.template.spec.containers[0].env[?(@.name=="K8S_DISTRIBUTION")].value}' k3s 1
  check "kata-deploy shims are the enabled Kata classes" \
    wait_jp $NP_NS $kd '{.spec.template.spec.containers[0].env[?(@.name=="SHIMS_X86_64")].value}' "qemu qemu-snp" 1
  check "kata-deploy mounts the k3s containerd directory at /etc/containerd/" \
    wait_jp $NP_NS $kd '{.spec.template.spec.volumes[?(@.name=="containerd-conf")].hostPath.path}' /var/lib/rancher/k3s/agent/etc/containerd/ 1
  check "node-agent runs the node-agent subcommand on the host root" \
    wait_jp $NP_NS $ds '{.spec.template.spec.containers[0].args[0]} {.spec.template.spec.containers[0].args[1]}' "node-agent --host-root=/host" 1

  # One source of truth: the DaemonSet of the bundle's manifests/node-agent.yaml is the object
  # the controller applies (image aside: the controller's flag decides it).
  local want got
  # Created (dry run, under another name: the real one exists) to get the server's defaults.
  want=$(sed '0,/name: confidential-operator-node-agent/s//name: np-compare/' manifests/node-agent.yaml |
    kc create --dry-run=server -f - -o json 2>/dev/null |
    jq -c 'if .kind == "List" then .items[] else . end | select(.kind == "DaemonSet") | .spec.template.spec | del(.containers[].image)')
  got=$(kc -n $NP_NS get $ds -o json | jq -c '.spec.template.spec | del(.containers[].image)')
  check "the bundle's DaemonSet read" [ -n "$want" ]
  [ "$want" = "$got" ] || { log "  bundle: $want"; log "  applied: $got"; }
  check "the applied node-agent DaemonSet is the bundle's (manifests/node-agent.yaml)" [ "$want" = "$got" ]

  # RuntimeClasses: handler, kata-deploy's overhead, the readiness nodeSelector.
  check "kata-qemu handler" wait_jp "" runtimeclass/kata-qemu '{.handler}' kata-qemu 10
  check "kata-qemu overhead 320Mi/250m (kata-deploy 4.1.0)" \
    wait_jp "" runtimeclass/kata-qemu '{.overhead.podFixed.memory}/{.overhead.podFixed.cpu}' 320Mi/250m 10
  check "kata-qemu nodeSelector runtime label ready" \
    wait_jp "" runtimeclass/kata-qemu '{.scheduling.nodeSelector}' "{\"runtime.$NP_D/kata-qemu\":\"ready\"}" 10
  check "kata-qemu-snp overhead 2Gi (2048Mi)/1" \
    wait_jp "" runtimeclass/kata-qemu-snp '{.overhead.podFixed.memory}/{.overhead.podFixed.cpu}' 2Gi/1 10
  check "gvisor handler runsc, no overhead" wait_jp "" runtimeclass/gvisor '{.handler}|{.overhead}' 'runsc|' 10
  check "probe twin class: same handler, no nodeSelector" \
    wait_jp "" runtimeclass/co-probe-kata-qemu '{.handler}|{.scheduling}' 'kata-qemu|' 10
  check "a class not enabled is not created" bash -c "! '$CO_KUBECTL' --kubeconfig='$KUBECONFIG' get runtimeclass kata-clh -o name 2>/dev/null | grep -q ."

  # Drift is repaired; re-applying changes nothing.
  kc -n $NP_NS patch $ds --type=merge -p '{"spec":{"template":{"spec":{"nodeSelector":{"x":"y"}}}}}' >/dev/null
  check "manual nodeSelector drift repaired" \
    wait_jp $NP_NS $ds '{.spec.template.spec.nodeSelector}' "{\"$NP_D/agent\":\"true\"}" 15
  sleep 1
  local rv1 rv2 rc1 rc2
  rv1=$(jp $NP_NS $kd '{.metadata.resourceVersion}')
  rc1=$(jp "" runtimeclass/kata-qemu '{.metadata.resourceVersion}')
  sleep 5 # two resyncs
  rv2=$(jp $NP_NS $kd '{.metadata.resourceVersion}')
  rc2=$(jp "" runtimeclass/kata-qemu '{.metadata.resourceVersion}')
  check "re-applying the DaemonSet is a no-op ($rv1 = $rv2)" [ "$rv1" = "$rv2" ]
  check "re-applying the RuntimeClass is a no-op ($rc1 = $rc2)" [ "$rc1" = "$rc2" ]
  check "applies were repeated meanwhile" wait_log '.msg=="applied" and .object=="DaemonSet/kata-deploy"' 1 3

  # The DaemonSet runs only where the controller put agent=true (the enabled nodes).
  kc label node $NP_N0 $NP_D/enabled=true >/dev/null
  check "agent=true on the enabled node" wait_jp "" node/$NP_N0 "{.metadata.labels.confidential\\.cypherpunk\\.io/agent}" true 10
  sleep 1
  check "no agent label on the other node" [ -z "$(np_label $NP_N1 $NP_D/agent)" ]
  local nodes=""
  for _ in $(seq 1 100); do
    nodes=$(kc -n $NP_NS get pods -l app.kubernetes.io/component=node-agent -o jsonpath='{range .items[*]}{.spec.nodeName}{" "}{end}')
    [ -n "$nodes" ] && break
    sleep 0.1
  done
  # (Other tests' nodes may still carry pods until the pod GC removes them: look at these two.)
  check "a node-agent pod on the enabled node ('$nodes')" grep -qw "$NP_N0" <<<"$nodes"
  check "no node-agent pod on the other node ('$nodes')" bash -c "! grep -qw '$NP_N1' <<<'$nodes'"
  ctrl_stop_clean
  np_cleanup
}

test_nodeprep_restarts_one_at_a_time() {
  np_setup
  kc label node $NP_N1 node-role.kubernetes.io/control-plane=true >/dev/null # the k3s server
  ctrl_start nodeprep-restarts "${NP_FLAGS[@]}" --restart-timeout=4
  kc label node $NP_N0 $NP_D/enabled=true >/dev/null
  kc label node $NP_N1 $NP_D/enabled=true >/dev/null
  check "agent=true on node 0" wait_jp "" node/$NP_N0 "{.metadata.labels.confidential\\.cypherpunk\\.io/agent}" true 10
  check "agent=true on node 1" wait_jp "" node/$NP_N1 "{.metadata.labels.confidential\\.cypherpunk\\.io/agent}" true 10
  # Both agents start; the server's asks first, while node 0's still detects.
  kc annotate node $NP_N0 $NP_D/agent-state=Detecting --overwrite >/dev/null
  kc annotate node $NP_N1 $NP_D/agent-state=RestartRequested $NP_D/restart-request=s1 --overwrite >/dev/null
  sleep 2
  check "the server waits while an agent node still prepares" [ -z "$(np_ann $NP_N1 $NP_D/restart-grant)" ]
  kc annotate node $NP_N0 $NP_D/agent-state=RestartRequested $NP_D/restart-request=a1 --overwrite >/dev/null
  check "the agent (non-server) node is granted first" \
    wait_jp "" node/$NP_N0 "{.metadata.annotations.confidential\\.cypherpunk\\.io/restart-grant}" a1 10
  local both=0 i g0 g1
  for i in $(seq 1 20); do
    g0=$(np_ann $NP_N0 $NP_D/restart-grant); g1=$(np_ann $NP_N1 $NP_D/restart-grant)
    [ -n "$g0" ] && [ -n "$g1" ] && both=1
    sleep 0.1
  done
  check "the server waits while the agent node restarts" [ -z "$g1" ]
  # A restart that does not complete (4 s here) is reported; nothing else restarts meanwhile.
  check "restart timeout: condition RestartTimedOut" np_wait_cond $NP_N0 reason '^RestartTimedOut$' 15
  check "restart timeout: Warning event" bash -c "for i in \$(seq 1 50); do [[ \$('$CO_KUBECTL' --kubeconfig='$KUBECONFIG' -n default get events.events.k8s.io --field-selector reason=RestartTimedOut -o jsonpath='{.items[*].regarding.name}') == *$NP_N0* ]] && exit 0; sleep 0.1; done; exit 1"
  check "still no second grant after the timeout" [ -z "$(np_ann $NP_N1 $NP_D/restart-grant)" ]
  # The agent on node 0 is done: it removes its request.
  kc annotate node $NP_N0 $NP_D/restart-request- $NP_D/agent-state=Prepared --overwrite >/dev/null
  for i in $(seq 1 100); do
    g0=$(np_ann $NP_N0 $NP_D/restart-grant); g1=$(np_ann $NP_N1 $NP_D/restart-grant)
    [ -n "$g0" ] && [ -n "$g1" ] && both=1
    [ -n "$g1" ] && [ -z "$g0" ] && break
    sleep 0.1
  done
  check "then the server is granted (s1) and node 0's grant removed" [ "$g1" = s1 ] && [ -z "$g0" ]
  check "never two grants at once" [ "$both" -eq 0 ]
  kc annotate node $NP_N1 $NP_D/restart-request- $NP_D/agent-state=Prepared --overwrite >/dev/null
  check "server grant removed once its agent is done" \
    wait_jp "" node/$NP_N1 "{.metadata.annotations.confidential\\.cypherpunk\\.io/restart-grant}" "" 10

  # kata-deploy: prepared=true on a KVM node is a restart too, until the Kata handlers show up.
  kc label node $NP_N0 $NP_D/kvm=true >/dev/null
  check "prepared=true once the agent is done and KVM is there" \
    wait_jp "" node/$NP_N0 "{.metadata.labels.confidential\\.cypherpunk\\.io/prepared}" true 10
  kc annotate node $NP_N1 $NP_D/agent-state=RestartRequested $NP_D/restart-request=s2 --overwrite >/dev/null
  sleep 2
  check "no grant while kata-deploy installs on another node" [ -z "$(np_ann $NP_N1 $NP_D/restart-grant)" ]
  check "the condition says why node 0 waits" np_wait_cond $NP_N0 reason '^Restart(ing|TimedOut)$' 5
  kc label node $NP_N0 katacontainers.io/kata-runtime=true >/dev/null
  check "kata-deploy done (its label): the server is granted" \
    wait_jp "" node/$NP_N1 "{.metadata.annotations.confidential\\.cypherpunk\\.io/restart-grant}" s2 10
  check "events: RestartGranted, KataDeployScheduled, RestartCompleted" \
    bash -c "e='$(np_node_events $NP_N0)'; [[ \$e == *RestartGranted* && \$e == *KataDeployScheduled* && \$e == *RestartCompleted* ]]"
  ctrl_stop_clean
  np_cleanup
}

test_nodeprep_probe_and_removal() {
  np_setup
  ctrl_start nodeprep-probe "${NP_FLAGS[@]}"
  kc label node $NP_N0 $NP_D/enabled=true >/dev/null
  check "agent=true" wait_jp "" node/$NP_N0 "{.metadata.labels.confidential\\.cypherpunk\\.io/agent}" true 10
  kc annotate node $NP_N0 $NP_D/agent-state=Prepared --overwrite >/dev/null # the agent's part
  check "no runtime served: condition NoRuntime" np_wait_cond $NP_N0 reason '^NoRuntime$' 10
  check "no probe pod before the handler is served" [ -z "$(np_probe $NP_N0 kata-qemu)" ]

  # The kubelet reports the handler: a probe pod pinned to the node with the (twin) class.
  np_handlers $NP_N0 kata-qemu
  local p uid name
  p=$(np_wait_probe $NP_N0 kata-qemu none 20)
  check "probe pod created" [ -n "$p" ]
  name=${p% *}; uid=${p#* }
  check "probe pinned to the node" wait_jp $NP_NS pod/$name '{.spec.nodeName}' $NP_N0 1
  check "probe uses the twin of kata-qemu" wait_jp $NP_NS pod/$name '{.spec.runtimeClassName}' co-probe-kata-qemu 1
  check "probe: restricted security context" wait_jp $NP_NS pod/$name \
    '{.spec.securityContext.runAsNonRoot} {.spec.containers[0].securityContext.allowPrivilegeEscalation} {.spec.containers[0].securityContext.capabilities.drop[0]}' "true false ALL" 1
  check "probe: tiny requests" wait_jp $NP_NS pod/$name '{.spec.containers[0].resources.requests.cpu}' 10m 1
  check "probe: uname -r into the termination message" wait_jp $NP_NS pod/$name '{.spec.containers[0].command[2]}' "uname -r > /dev/termination-log" 1
  check "probe: default image busybox" wait_jp $NP_NS pod/$name '{.spec.containers[0].image}' busybox:1.36 1
  check "not ready before the probe answered" [ -z "$(np_label $NP_N0 runtime.$NP_D/kata-qemu)" ]

  # Same kernel as the host: not ready, with the reason.
  np_answer "$name" "$NP_KERNEL"
  check "same kernel: condition False/ProbeFailed" np_wait_cond $NP_N0 reason '^ProbeFailed$' 10
  check "the message says why" np_wait_cond $NP_N0 message "kata-qemu: NOT ready, sandbox kernel $NP_KERNEL is the host's kernel" 1
  check "runtime label not set" [ -z "$(np_label $NP_N0 runtime.$NP_D/kata-qemu)" ]

  # The re-probe (interval 3 s) reports a kernel of its own: ready.
  p=$(np_wait_probe $NP_N0 kata-qemu "$uid" 20)
  check "probe repeated on schedule" [ -n "$p" ]
  name=${p% *}; uid=${p#* }
  np_answer "$name" 6.12.8-kata
  check "different kernel: runtime label ready" \
    wait_jp "" node/$NP_N0 "{.metadata.labels.runtime\\.confidential\\.cypherpunk\\.io/kata-qemu}" ready 10
  check "condition True/Verified with the kernels" np_wait_cond $NP_N0 status '^True$' 10
  check "condition message: kernels and time" \
    np_wait_cond $NP_N0 message "kata-qemu: ready, sandbox kernel 6.12.8-kata differs from the host's $NP_KERNEL \\(probed 20[0-9-]+T" 1
  check "probe pod deleted after its result" bash -c "for i in \$(seq 1 50); do [ \"\$('$CO_KUBECTL' --kubeconfig='$KUBECONFIG' -n $NP_NS get pod $name -o jsonpath='{.metadata.uid}' 2>/dev/null)\" != $uid ] && exit 0; sleep 0.1; done; exit 1"
  check "gvisor not served: no label" [ -z "$(np_label $NP_N0 runtime.$NP_D/gvisor)" ]
  check "kata-qemu-snp served by no TEE: no label" [ -z "$(np_label $NP_N0 runtime.$NP_D/kata-qemu-snp)" ]

  # `status` shows the result.
  local st=$E2E_DIR/np-status
  "$CO_BIN" status -o json > "$st.json" 2>"$st.err"
  check "status -o json has the probe result" np_quiet jq -e --arg n $NP_N0 \
    '.nodes[] | select(.name == $n) | .confidentialSandboxVerified.message | test("sandbox kernel 6.12.8-kata differs")' "$st.json"
  "$CO_BIN" status > "$st.out" 2>>"$st.err"
  check "status table: SANDBOX-VERIFIED True/Verified" grep -qE "^$NP_N0 .* True/Verified \\[[0-9]+\\]" "$st.out"
  check "status table: the note with the kernels" grep -q "6.12.8-kata differs from the host's $NP_KERNEL" "$st.out"

  # Verification fails (the handler is gone): the label goes.
  np_handlers $NP_N0 runc
  check "handler gone: runtime label removed" \
    wait_jp "" node/$NP_N0 "{.metadata.labels.runtime\\.confidential\\.cypherpunk\\.io/kata-qemu}" "" 10
  check "ready again after handler and probe" np_ready_runtime $NP_N0 kata-qemu 6.12.8-kata

  # A sandboxed workload under a PodDisruptionBudget that allows no disruption.
  local ns=e2e-np
  kc create namespace $ns >/dev/null 2>&1
  kc -n $ns apply -f - >/dev/null <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: tenant}
spec:
  replicas: 1
  selector: {matchLabels: {app: tenant}}
  template:
    metadata: {labels: {app: tenant}}
    spec:
      runtimeClassName: kata-qemu
      containers: [{name: app, image: fake}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: tenant}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: tenant}}
YAML
  local pod=""
  for _ in $(seq 1 100); do
    pod=$(kc -n $ns get pods -l app=tenant -o jsonpath='{range .items[?(@.status.phase=="Running")]}{.metadata.name}@{.spec.nodeName}{end}')
    [ -n "$pod" ] && break
    sleep 0.2
  done
  check "sandboxed pod runs on the prepared node ($pod)" [ "${pod#*@}" = $NP_N0 ]
  check "PDB allows no disruption" wait_jp $ns pdb/tenant '{.status.disruptionsAllowed}' 0 20

  # Unlabel: runtime label first, then eviction, blocked by the PDB.
  kc label node $NP_N0 $NP_D/enabled- >/dev/null
  check "runtime label removed at once" \
    wait_jp "" node/$NP_N0 "{.metadata.labels.runtime\\.confidential\\.cypherpunk\\.io/kata-qemu}" "" 10
  check "eviction blocked: condition EvictionBlocked" np_wait_cond $NP_N0 reason '^EvictionBlocked$' 15
  check "the message names the pod and the budget" np_wait_cond $NP_N0 message "${pod%@*}.*disruption budget" 1
  check "Warning event EvictionBlocked on the node" bash -c "for i in \$(seq 1 50); do [[ \$('$CO_KUBECTL' --kubeconfig='$KUBECONFIG' -n default get events.events.k8s.io --field-selector reason=EvictionBlocked -o jsonpath='{.items[*].regarding.name}') == *$NP_N0* ]] && exit 0; sleep 0.1; done; exit 1"
  check "no agent-action while pods remain" [ -z "$(np_ann $NP_N0 $NP_D/agent-action)" ]
  check "the pod is still there" np_quiet kc -n $ns get pod "${pod%@*}"

  # The budget goes: the pod is evicted, then the agent is told to remove its changes.
  kc -n $ns delete pdb tenant >/dev/null
  check "pod evicted" bash -c "for i in \$(seq 1 150); do '$CO_KUBECTL' --kubeconfig='$KUBECONFIG' -n $ns get pod ${pod%@*} >/dev/null 2>&1 || exit 0; sleep 0.1; done; exit 1"
  check "agent-action=remove" wait_jp "" node/$NP_N0 "{.metadata.annotations.confidential\\.cypherpunk\\.io/agent-action}" remove 15
  check "agent label kept while the agent removes" [ "$(np_label $NP_N0 $NP_D/agent)" = true ]
  # The agent removes its changes (restart under the grant), then reports Removed.
  kc annotate node $NP_N0 $NP_D/agent-state=Removing $NP_D/restart-request=r9 --overwrite >/dev/null
  check "removal restart granted" \
    wait_jp "" node/$NP_N0 "{.metadata.annotations.confidential\\.cypherpunk\\.io/restart-grant}" r9 10
  kc annotate node $NP_N0 $NP_D/agent-state=Removed $NP_D/restart-request- --overwrite >/dev/null
  check "agent label removed at the end" \
    wait_jp "" node/$NP_N0 "{.metadata.labels.confidential\\.cypherpunk\\.io/agent}" "" 15
  local left
  left=$(kc get node $NP_N0 -o json | jq -r --arg d "$NP_D" '[(.metadata.labels | keys[]), (.metadata.annotations // {} | keys[]),
    (.status.conditions[].type)] | map(select(startswith($d + "/") or startswith("runtime." + $d) or startswith("Confidential"))) | join(",")')
  check "every label, annotation and condition of the operator cleared ('$left')" [ -z "$left" ]
  local ev
  ev=$(np_node_events $NP_N0)
  log "  node events: $ev"
  for r in AgentScheduled ProbeFailed ProbeSucceeded RuntimeReady VerificationFailed RemovalStarted EvictionBlocked Evicted AgentRemoving RestartGranted Cleared; do
    check "event $r" grep -qw "$r" <<<"$ev"
  done
  ctrl_stop_clean
  kc delete namespace $ns --wait=false >/dev/null
  np_cleanup
}
