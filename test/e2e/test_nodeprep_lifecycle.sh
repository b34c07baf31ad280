# shellcheck shell=bash
# Node preparation across the life of nodes and of the operator's configuration, on kwok nodes
# of the test's own (created and deleted here; helpers of test_nodeprep.sh): a Node deleted
# while it holds the restart grant (the grant goes to the next node, its probe pod goes, and a
# node re-created under that name is prepared from scratch), and a runtime disabled between two
# runs of the controller (its RuntimeClasses, probe pods and node labels go, kata-deploy leaves
# the nodes and then goes with the last Kata class, and classes that are not the operator's
# alone stay).

NPL_A=kwok-npl-a
NPL_B=kwok-npl-b

# npl_node NAME [HANDLER]: creates a kwok node (as hack/cluster-up.sh does) and waits until it is
# Ready. With HANDLER, the node registers enabled and with that runtime handler already served
# (a reinstalled machine whose kubelet sets --node-labels).
npl_node() {
  local extra="" handlers=""
  if [ -n "${2:-}" ]; then
    extra=", $NP_D/enabled: \"true\""
    handlers="runtimeHandlers: [{name: $2, features: {recursiveReadOnlyMounts: true}}]"
  fi
  kc create -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $1
  annotations: {node.alpha.kubernetes.io/ttl: "0", kwok.x-k8s.io/node: fake}
  labels: {kubernetes.io/hostname: $1, kubernetes.io/os: linux, type: kwok$extra}
spec: {}
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "110"}
  capacity: {cpu: "32", memory: 256Gi, pods: "110"}
  nodeInfo: {architecture: amd64, operatingSystem: linux, kernelVersion: "$NP_KERNEL",
    containerRuntimeVersion: containerd://2.0.5-k3s1, kubeletVersion: v1.36.3, kubeProxyVersion: v1.36.3,
    machineID: $1, systemUUID: $1, bootID: boot-$1, osImage: Debian}
  $handlers
EOF
  wait_jp "" "node/$1" '{.status.conditions[?(@.type=="Ready")].status}' True 30
}

npl_delete_nodes() {
  kc delete node "$@" --ignore-not-found --wait=true >/dev/null 2>&1
}

# npl_answer_probe NODE CLASS KERNEL: waits for the probe pod of (NODE, CLASS) and answers it.
npl_answer_probe() {
  local p
  p=$(np_wait_probe "$1" "$2" none 20) || { log "  no probe pod for $1/$2"; return 1; }
  np_answer "${p% *}" "$3"
}

npl_wait_event() { # KIND NAME REASON: waits (5 s) for an event with REASON about that object
  local i
  for i in $(seq 1 50); do
    npl_has_event "$@" && return 0
    sleep 0.1
  done
  return 1
}

npl_has_event() { # KIND NAME REASON: an event with REASON about that object exists
  "$CO_KUBECTL" --kubeconfig="$KUBECONFIG" -n default get events.events.k8s.io -o json |
    jq -e --arg k "$1" --arg n "$2" --arg r "$3" \
      'any(.items[]; .regarding.kind == $k and .regarding.name == $n and .reason == $r)' >/dev/null
}
npl_no_event() { ! npl_has_event "$@"; }

npl_pod_gone() { # NAME UID TIMEOUT_S: the pod NAME with that uid is gone
  local i
  for i in $(seq 1 $(($3 * 10))); do
    [ "$(kc -n $NP_NS get pod "$1" -o jsonpath='{.metadata.uid}' 2>/dev/null)" != "$2" ] && return 0
    sleep 0.1
  done
  return 1
}

test_nodeprep_node_deleted() {
  np_namespace
  npl_delete_nodes $NPL_A $NPL_B
  kc -n default delete events.events.k8s.io --field-selector regarding.name=$NPL_A >/dev/null 2>&1
  kc -n $NP_NS delete pods -l $NP_D/probe=true --grace-period=0 --force >/dev/null 2>&1
  check "node A created" npl_node $NPL_A
  check "node B created" npl_node $NPL_B
  # A long probe interval: a result is only reused if the controller wrongly kept it.
  ctrl_start nodeprep-node-deleted "${NP_FLAGS[@]}" --probe-interval=600 --restart-timeout=600
  kc label node $NPL_A $NP_D/enabled=true >/dev/null
  kc label node $NPL_B $NP_D/enabled=true >/dev/null
  check "agent=true on A" wait_jp "" node/$NPL_A "{.metadata.labels.confidential\\.cypherpunk\\.io/agent}" true 10
  check "agent=true on B" wait_jp "" node/$NPL_B "{.metadata.labels.confidential\\.cypherpunk\\.io/agent}" true 10

  # A is verified once (probe answered with a kernel of its own), then gets a probe pod that
  # stays unanswered: the kubelet reports a second handler.
  kc annotate node $NPL_A $NP_D/agent-state=Prepared --overwrite >/dev/null
  check "A: kata-qemu ready after its probe" np_ready_runtime $NPL_A kata-qemu 6.12.8-kata
  check "A: condition True/Verified" np_wait_cond $NPL_A reason '^Verified$' 10
  kc annotate node $NPL_A $NP_D/agent-runtimes=kata-qemu,runsc --overwrite >/dev/null
  local pg
  pg=$(np_wait_probe $NPL_A gvisor none 20)
  check "A: a gvisor probe pod runs (unanswered)" [ -n "$pg" ]

  # A asks for a restart and holds the grant; B asks too and waits.
  kc annotate node $NPL_A $NP_D/agent-state=RestartRequested $NP_D/restart-request=a1 --overwrite >/dev/null
  check "A holds the grant" \
    wait_jp "" node/$NPL_A "{.metadata.annotations.confidential\\.cypherpunk\\.io/restart-grant}" a1 10
  kc annotate node $NPL_B $NP_D/agent-state=RestartRequested $NP_D/restart-request=b1 --overwrite >/dev/null
  sleep 2
  check "B waits while A restarts" [ -z "$(np_ann $NPL_B $NP_D/restart-grant)" ]

  # A's Node object is deleted (the machine is gone).
  kc delete node $NPL_A --wait=true >/dev/null
  check "the grant goes to B" \
    wait_jp "" node/$NPL_B "{.metadata.annotations.confidential\\.cypherpunk\\.io/restart-grant}" b1 10
  check "the controller dropped A's state" \
    wait_log ".msg==\"node deleted: its preparation state is dropped\" and .node==\"$NPL_A\" and (.restart | startswith(\"released\"))" 5
  # The pod GC of kube-controller-manager would take 40 s and more: the controller is faster.
  check "A's probe pod deleted" npl_pod_gone "${pg% *}" "${pg#* }" 10

  # A comes back under the same name, as a new machine: prepared from scratch.
  check "A re-created" npl_node $NPL_A
  kc label node $NPL_A $NP_D/enabled=true >/dev/null
  check "new A: agent=true" wait_jp "" node/$NPL_A "{.metadata.labels.confidential\\.cypherpunk\\.io/agent}" true 10
  kc annotate node $NPL_A $NP_D/agent-state=Prepared --overwrite >/dev/null
  np_handlers $NPL_A kata-qemu
  local p
  p=$(np_wait_probe $NPL_A kata-qemu none 20)
  check "new A: probed again (the old result is not reused)" [ -n "$p" ]
  sleep 1
  check "new A: not ready before its own probe answered" [ -z "$(np_label $NPL_A runtime.$NP_D/kata-qemu)" ]
  check "new A: condition written, Probing" np_wait_cond $NPL_A reason '^Probing$' 10
  np_answer "${p% *}" 6.12.9-kata
  check "new A: ready after its probe" \
    wait_jp "" node/$NPL_A "{.metadata.labels.runtime\\.confidential\\.cypherpunk\\.io/kata-qemu}" ready 10
  check "new A: condition message from the new probe" np_wait_cond $NPL_A message "sandbox kernel 6.12.9-kata differs" 10
  check "B keeps its grant" [ "$(np_ann $NPL_B $NP_D/restart-grant)" = b1 ]
  check "new A: no restart granted while B restarts" [ -z "$(np_ann $NPL_A $NP_D/restart-grant)" ]
  # The old A never completed its restart: the new A never restarted at all.
  check "new A: no RestartCompleted (the old node's restart is not the new one's)" \
    npl_no_event Node $NPL_A RestartCompleted

  # B completes its restart and is verified; then its Node is deleted and re-created while it
  # holds no grant: its verdict is not carried over either.
  kc annotate node $NPL_B $NP_D/restart-request- $NP_D/agent-state=Prepared --overwrite >/dev/null
  check "B: grant removed once its agent is done" \
    wait_jp "" node/$NPL_B "{.metadata.annotations.confidential\\.cypherpunk\\.io/restart-grant}" "" 10
  check "B: kata-qemu ready after its probe" np_ready_runtime $NPL_B kata-qemu 6.12.8-kata
  kc delete node $NPL_B --wait=true >/dev/null
  check "B re-created, enabled, kata-qemu served from the start" npl_node $NPL_B kata-qemu
  check "new B: agent=true" wait_jp "" node/$NPL_B "{.metadata.labels.confidential\\.cypherpunk\\.io/agent}" true 10
  p=$(np_wait_probe $NPL_B kata-qemu none 20)
  check "new B: probed again (the old result is not reused)" [ -n "$p" ]
  check "new B: not ready before its own probe answered" [ -z "$(np_label $NPL_B runtime.$NP_D/kata-qemu)" ]
  np_answer "${p% *}" 6.12.9-kata
  check "new B: ready after its probe" \
    wait_jp "" node/$NPL_B "{.metadata.labels.runtime\\.confidential\\.cypherpunk\\.io/kata-qemu}" ready 10

  ctrl_stop_clean
  kc -n $NP_NS delete pods -l $NP_D/probe=true --grace-period=0 --force >/dev/null 2>&1
  npl_delete_nodes $NPL_A $NPL_B
}

# npl_foreign_class NAME HANDLER: a RuntimeClass someone else created, with the operator's labels
# copied onto it (the label alone does not make a class the operator's).
npl_foreign_class() {
  kc create -f - >/dev/null <<EOF
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: $1
  labels: {app.kubernetes.io/name: confidential-operator, app.kubernetes.io/component: runtime,
    app.kubernetes.io/managed-by: confidential-operator}
handler: $2
overhead: {podFixed: {cpu: 250m, memory: 130Mi}}
scheduling: {nodeSelector: {runtime.confidential.cypherpunk.io/$1: ready}}
EOF
}

npl_exists() { kc get "$@" -o name >/dev/null 2>&1; }
npl_gone() { # TIMEOUT_S OBJECT...
  local t=$1 i; shift
  for i in $(seq 1 $((t * 10))); do
    npl_exists "$@" || return 0
    sleep 0.1
  done
  return 1
}

test_nodeprep_runtime_disabled() {
  np_namespace
  npl_delete_nodes $NPL_A
  kc -n $NP_NS delete pods -l $NP_D/probe=true --grace-period=0 --force >/dev/null 2>&1
  kc delete runtimeclass kata-qemu co-probe-kata-qemu gvisor co-probe-gvisor kata-clh co-probe-kata-clh kata-fc \
    --ignore-not-found >/dev/null
  kc -n $NP_NS delete daemonset kata-deploy --ignore-not-found >/dev/null
  check "node created" npl_node $NPL_A
  # kata-clh exists before the operator (someone else's, same values); kata-fc too, never
  # enabled.
  check "someone else's kata-clh" npl_foreign_class kata-clh kata-clh
  check "someone else's kata-fc" npl_foreign_class kata-fc kata-fc

  # Run 1: kata-qemu, gvisor and kata-clh enabled.
  ctrl_start nodeprep-disabled-1 "${NP_FLAGS[@]}" --runtime-classes=kata-qemu,gvisor,kata-clh \
    --default-runtime-class=kata-qemu
  local c
  for c in kata-qemu co-probe-kata-qemu gvisor co-probe-gvisor co-probe-kata-clh; do
    check "run 1: RuntimeClass $c" wait_jp "" runtimeclass/$c '{.metadata.labels.app\.kubernetes\.io/managed-by}' confidential-operator 15
  done
  check "run 1: kata-clh applied by the operator too (shared)" bash -c \
    "'$CO_KUBECTL' --kubeconfig='$KUBECONFIG' get runtimeclass kata-clh --show-managed-fields -o json | jq -e '[.metadata.managedFields[].manager] | index(\"confidential-operator\")' >/dev/null"
  check "run 1: kata-deploy DaemonSet" wait_jp $NP_NS daemonset/kata-deploy '{.metadata.name}' kata-deploy 15
  kc label node $NPL_A $NP_D/enabled=true >/dev/null
  check "run 1: agent=true" wait_jp "" node/$NPL_A "{.metadata.labels.confidential\\.cypherpunk\\.io/agent}" true 10
  # A KVM node: kata-deploy is scheduled there (prepared=true) and reports itself done.
  kc label node $NPL_A $NP_D/kvm=true >/dev/null
  kc annotate node $NPL_A $NP_D/agent-state=Prepared $NP_D/agent-runtimes=kata-qemu,runsc,kata-clh --overwrite >/dev/null
  check "run 1: prepared=true (kata-deploy)" \
    wait_jp "" node/$NPL_A "{.metadata.labels.confidential\\.cypherpunk\\.io/prepared}" true 10
  kc label node $NPL_A katacontainers.io/kata-runtime=true >/dev/null
  check "run 1: kata-qemu probed" npl_answer_probe $NPL_A kata-qemu 6.12.8-kata
  check "run 1: gvisor probed" npl_answer_probe $NPL_A gvisor 4.4.0
  local pc
  pc=$(np_wait_probe $NPL_A kata-clh none 20)
  check "run 1: a kata-clh probe pod runs (unanswered)" [ -n "$pc" ]
  check "run 1: kata-qemu ready" \
    wait_jp "" node/$NPL_A "{.metadata.labels.runtime\\.confidential\\.cypherpunk\\.io/kata-qemu}" ready 10
  check "run 1: gvisor ready" \
    wait_jp "" node/$NPL_A "{.metadata.labels.runtime\\.confidential\\.cypherpunk\\.io/gvisor}" ready 10
  check "run 1: the condition names kata-qemu" np_wait_cond $NPL_A message 'kata-qemu: ready' 10
  local rc=0; ctrl_stop || rc=$?
  check "run 1: clean exit (rc $rc)" [ "$rc" -eq 0 ]
  check "run 1: no sanitizer report" sanitizer_clean

  # Run 2: only gvisor (no Kata class left).
  ctrl_start nodeprep-disabled-2 "${NP_FLAGS[@]}" --runtime-classes=gvisor --default-runtime-class=gvisor
  check "run 2: kata-qemu RuntimeClass deleted" npl_gone 15 runtimeclass kata-qemu
  check "run 2: its probe twin deleted" npl_gone 5 runtimeclass co-probe-kata-qemu
  check "run 2: the probe twin of kata-clh (the operator's alone) deleted" npl_gone 5 runtimeclass co-probe-kata-clh
  check "run 2: kata-clh (also someone else's) kept" npl_exists runtimeclass kata-clh
  check "run 2: kata-fc (someone else's, our labels) kept" npl_exists runtimeclass kata-fc
  check "run 2: gvisor kept" npl_exists runtimeclass gvisor
  check "run 2: co-probe-gvisor kept" npl_exists runtimeclass co-probe-gvisor
  check "run 2: kata-qemu node label removed" \
    wait_jp "" node/$NPL_A "{.metadata.labels.runtime\\.confidential\\.cypherpunk\\.io/kata-qemu}" "" 10
  check "run 2: gvisor node label kept" [ "$(np_label $NPL_A runtime.$NP_D/gvisor)" = ready ]
  check "run 2: the kata-clh probe pod deleted" npl_pod_gone "${pc% *}" "${pc#* }" 10
  # No Kata class left: kata-deploy leaves the node (a restart, under the one-at-a-time rule),
  # and its DaemonSet goes only once its cleanup is done.
  check "run 2: prepared=true removed" \
    wait_jp "" node/$NPL_A "{.metadata.labels.confidential\\.cypherpunk\\.io/prepared}" "" 10
  check "run 2: KataDeployRemoved event" npl_wait_event Node $NPL_A KataDeployRemoved
  check "run 2: the condition says kata-deploy cleans up" np_wait_cond $NPL_A message 'kata-deploy cleans up' 10
  sleep 2
  check "run 2: kata-deploy DaemonSet kept while its cleanup runs" npl_exists -n $NP_NS daemonset kata-deploy
  kc label node $NPL_A katacontainers.io/kata-runtime- >/dev/null # kata-deploy's cleanup is done
  check "run 2: kata-deploy DaemonSet deleted (no Kata class, no node left)" npl_gone 15 -n $NP_NS daemonset kata-deploy
  check "run 2: gvisor probed again (new process)" npl_answer_probe $NPL_A gvisor 4.4.0
  check "run 2: the condition is about gvisor only" np_wait_cond $NPL_A message '^gvisor: ready, [^;]*$' 15
  check "run 2: condition True/Verified" np_wait_cond $NPL_A reason '^Verified$' 5
  check "run 2: RuntimeDisabled event on the node" npl_wait_event Node $NPL_A RuntimeDisabled
  check "run 2: RuntimeClassDeleted event" npl_wait_event RuntimeClass kata-qemu RuntimeClassDeleted
  check "run 2: the log says kata-clh is left alone" \
    wait_log '.msg | startswith("RuntimeClass of a runtime not enabled left alone")' 1
  sleep 3 # resyncs: nothing comes back, nothing else goes
  check "run 2: kata-qemu stays deleted" bash -c "! '$CO_KUBECTL' --kubeconfig='$KUBECONFIG' get runtimeclass kata-qemu -o name 2>/dev/null | grep -q ."
  check "run 2: kata-clh still kept" npl_exists runtimeclass kata-clh
  rc=0; ctrl_stop || rc=$?
  check "run 2: clean exit (rc $rc)" [ "$rc" -eq 0 ]
  check "run 2: no sanitizer report" sanitizer_clean
  kc -n $NP_NS delete pods -l $NP_D/probe=true --grace-period=0 --force >/dev/null 2>&1
  kc delete runtimeclass kata-clh kata-fc --ignore-not-found >/dev/null
  npl_delete_nodes $NPL_A
}
