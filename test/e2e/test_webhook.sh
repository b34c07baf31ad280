# shellcheck shell=bash
# The mutating admission webhook with the real kube-apiserver calling it. The controller runs on
# this host, so the test registers the bundle's MutatingWebhookConfiguration (same rules,
# selectors, failure policy and timeout) with clientConfig.url https://127.0.0.1:PORT/mutate
# instead of the Service; the controller injects the caBundle into it.

WH_PORT=${WH_PORT:-19443}
WH_CONFIG=co-e2e-webhook
WH_SECRET=confidential-operator-webhook-cert

# wh_register: the bundle's webhook configuration, pointed at this host.
wh_register() {
  kc create --dry-run=client -o json -f manifests/webhook.yaml |
    jq --arg url "https://127.0.0.1:$WH_PORT/mutate" --arg name "$WH_CONFIG" '
      (if .kind == "List" then .items[] else . end)
      | select(.kind == "MutatingWebhookConfiguration")
      | .metadata.name = $name
      | .webhooks[].clientConfig = {url: $url}' | kc apply -f - >/dev/null
}

wh_unregister() { kc delete mutatingwebhookconfiguration $WH_CONFIG --ignore-not-found >/dev/null; }

# wh_finish NAMESPACE...: the controller stopped cleanly, the webhook unregistered, the test's
# namespaces going.
wh_finish() {
  ctrl_stop_clean
  wh_unregister
  kc delete namespace "$@" --wait=false >/dev/null
}

# wh_start NAME [flags...]: the controller with its webhook on WH_PORT, ready to serve (caches
# synced, certificate loaded and injected).
wh_start() {
  local name=$1; shift
  ctrl_start "$name" --webhook-bind-address=127.0.0.1:$WH_PORT --webhook-config-name=$WH_CONFIG \
    --webhook-fail-closed=true "$@"
  check "caches synced" wait_log '.msg=="all caches synced"' 20
  check "webhook listening" wait_log '.msg=="webhook listening"' 20
  check "caBundle injected" wait_caBundle 20
}

# wait_caBundle TIMEOUT_S: every webhook of the configuration carries the Secret's ca.crt.
wait_caBundle() {
  local i want got
  for i in $(seq 1 $(( $1 * 10 ))); do
    want=$(kc -n confidential-system get secret $WH_SECRET -o jsonpath='{.data.ca\.crt}' 2>/dev/null)
    got=$(kc get mutatingwebhookconfiguration $WH_CONFIG -o jsonpath='{range .webhooks[*]}{.clientConfig.caBundle}{" "}{end}')
    [ -n "$want" ] && [ "$got" = "$want $want " ] && return 0
    sleep 0.1
  done
  return 1
}

wh_setup() {
  wl_setup
  kc apply -f manifests/namespace.yaml >/dev/null
  wh_register
}

# wh_reviews FILTER: admission reviews the controller answered, as logged (jq select filter).
wh_reviews() { log_count ".msg==\"admission review\" and ($1)"; }

# The apiserver's "failing open" lines for our webhook since line $1 of its log.
wh_failed_open() {
  tail -n +"$1" "$CO_CLUSTER_DIR/logs/kube-apiserver.log" | grep -c 'failing open.*confidential.cypherpunk.io' || true
}

apiserver_lines() { wc -l < "$CO_CLUSTER_DIR/logs/kube-apiserver.log"; }

test_webhook_first_replicaset_sandboxed_and_owner_update() {
  local ns=e2e-wh
  wh_setup
  kc delete namespace $ns --ignore-not-found --wait=true >/dev/null
  kc create namespace $ns >/dev/null
  wh_start webhook
  # Created with kubectl: the class is there before any ReplicaSet exists.
  deploy $ns akash-app '[{name: KATA, value: "true"}]'
  check "created with the class" wait_jp $ns deploy/akash-app '{.spec.template.spec.runtimeClassName}' kata-qemu 1
  check "original class recorded as none" \
    wait_jp $ns deploy/akash-app '{.metadata.annotations.confidential\.cypherpunk\.io/original-runtime-class}' "" 1
  check "rollout completes" kc -n $ns rollout status deploy/akash-app --timeout=60s
  local rs pods
  rs=$(kc -n $ns get rs -l app=akash-app -o jsonpath='{range .items[*]}{.spec.template.spec.runtimeClassName}{" "}{end}')
  check "the first (only) ReplicaSet is sandboxed ($rs)" [ "$rs" = "kata-qemu " ]
  pods=$(pods_with_class $ns akash-app)
  check "no pod ever ran without the class ($pods)" [ "$pods" = "kata-qemu@kwok-node-0 " ]
  sleep 2
  check "the controller never wrote it: generation 1" wait_jp $ns deploy/akash-app '{.metadata.generation}' 1 1

  # The owner rewrites the template without the class (as the Akash provider does): one new
  # ReplicaSet, already sandboxed, and no second write by the controller.
  kc -n $ns get deploy akash-app -o json |
    jq '.spec.template.spec |= (del(.runtimeClassName) | .containers[1].image = "fake2")
        | del(.metadata.annotations["confidential.cypherpunk.io/original-runtime-class"])' |
    kc replace -f - >/dev/null
  check "the update kept the class" wait_jp $ns deploy/akash-app '{.spec.template.spec.runtimeClassName}' kata-qemu 1
  check "rollout of the update completes" kc -n $ns rollout status deploy/akash-app --timeout=60s
  sleep 2
  rs=$(kc -n $ns get rs -l app=akash-app -o jsonpath='{range .items[*]}{.spec.template.spec.runtimeClassName}{" "}{end}')
  check "exactly two ReplicaSets, both sandboxed ($rs)" [ "$rs" = "kata-qemu kata-qemu " ]
  check "one generation per owner write: generation 2" wait_jp $ns deploy/akash-app '{.metadata.generation}' 2 1
  check "reviews answered with a patch" [ "$(wh_reviews '.key=="'$ns'/akash-app" and .ops > 0')" -ge 2 ]

  # A StatefulSet with the annotation: sandboxed at creation too.
  kc -n $ns apply -f - >/dev/null <<'YAML'
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, labels: {app: db}, annotations: {confidential.cypherpunk.io/runtime: gvisor}}
spec:
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: fake}]}
YAML
  check "StatefulSet created with gvisor" wait_jp $ns sts/db '{.spec.template.spec.runtimeClassName}' gvisor 1
  check "StatefulSet: generation 1" wait_jp $ns sts/db '{.metadata.generation}' 1 1
  wh_finish $ns
}

# vault_deploy NS: a Deployment with emptyDirs (none set, a size limit) and a configMap volume.
vault_deploy() {
  kc -n "$1" create -f - >/dev/null <<'YAML'
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
      - {name: conf, configMap: {name: vault-conf}}
      - {name: scratch, emptyDir: {}}
      - {name: cache, emptyDir: {sizeLimit: 1Gi}}
YAML
}

vault_volume() { jp "$1" deploy/vault "{.spec.template.spec.volumes[?(@.name==\"$2\")].emptyDir.$3}"; }

# spec.hardening at admission: the first ReplicaSet already has the class and the memory-backed
# emptyDirs, the controller does not roll it again, and deleting the CR restores exactly the
# template as created (compared with the same Deployment created where no CR selects it).
test_webhook_hardening_in_first_replicaset() {
  local ns=e2e-wh-hard plain=e2e-wh-hard-plain
  wh_setup
  kc delete namespace $ns $plain --ignore-not-found --wait=true >/dev/null
  kc create namespace $ns >/dev/null
  kc create namespace $plain >/dev/null
  wh_start webhook-hardening
  kc -n $ns apply -f - >/dev/null <<'YAML'
apiVersion: confidential.cypherpunk.io/v1alpha1
kind: ConfidentialWorkload
metadata: {name: vault}
spec:
  runtimeClassName: kata-qemu
  targetRefs: [{kind: Deployment, name: vault}]
  hardening: {memoryBackedEmptyDirs: true, automountServiceAccountToken: false}
YAML
  # The finalizer is the controller's first write: its cache holds the CR from then on.
  check "CR seen by the controller" \
    wait_jp $ns cwl/vault '{.metadata.finalizers[0]}' confidential.cypherpunk.io/finalizer 15
  vault_deploy $ns
  vault_deploy $plain
  check "created with the class" wait_jp $ns deploy/vault '{.spec.template.spec.runtimeClassName}' kata-qemu 1
  check "created with scratch in memory" [ "$(vault_volume $ns scratch medium)" = Memory ]
  check "... with the default size limit" [ "$(vault_volume $ns scratch sizeLimit)" = 256Mi ]
  check "cache in memory, its own limit kept" [ "$(vault_volume $ns cache medium)/$(vault_volume $ns cache sizeLimit)" = Memory/1Gi ]
  check "created without the service account token" \
    [ "$(jp $ns deploy/vault '{.spec.template.spec.automountServiceAccountToken}')" = false ]
  check "the original class is recorded" \
    [ "$(jp $ns deploy/vault '{.metadata.annotations.confidential\.cypherpunk\.io/original-runtime-class}')" = "" ]
  check "what hardening replaced is recorded" \
    [ -n "$(jp $ns deploy/vault '{.metadata.annotations.confidential\.cypherpunk\.io/original-hardening}')" ]
  check "the CR is Ready: the controller saw it sandboxed" kc -n $ns wait --for=condition=Ready cwl/vault --timeout=60s
  sleep 2
  local rs
  rs=$(kc -n $ns get rs -l app=vault -o jsonpath='{range .items[*]}{.spec.template.spec.runtimeClassName}/{.spec.template.spec.volumes[?(@.name=="scratch")].emptyDir.medium}{" "}{end}')
  check "exactly one ReplicaSet, sandboxed and hardened ($rs)" [ "$rs" = "kata-qemu/Memory " ]
  check "the controller did not roll it again: generation 1" wait_jp $ns deploy/vault '{.metadata.generation}' 1 1
  check "no write by the controller" [ "$(log_count '.msg=="workload rewritten" and .key=="d:'$ns'/vault"')" -eq 0 ]
  check "the review patched it" [ "$(wh_reviews '.key=="'$ns'/vault" and .ops > 0')" -ge 1 ]

  # Deleting the CR restores everything: one more rollout, back to the template as created.
  kc -n $ns delete cwl vault --wait=false >/dev/null
  check "CR released" kc -n $ns wait --for=delete cwl/vault --timeout=30s
  check "class removed" wait_jp $ns deploy/vault '{.spec.template.spec.runtimeClassName}' "" 5
  check "records removed" [ -z "$(kc -n $ns get deploy vault -o json | jq -r '.metadata.annotations // {} | keys[] | select(startswith("confidential.cypherpunk.io/"))')" ]
  local got want
  got=$(kc -n $ns get deploy vault -o json | jq -S .spec.template)
  want=$(kc -n $plain get deploy vault -o json | jq -S .spec.template)
  check "the template is exactly as created" [ "$got" = "$want" ]
  [ "$got" = "$want" ] || diff <(echo "$want") <(echo "$got") >&2 || true
  check "one restore: generation 2" wait_jp $ns deploy/vault '{.metadata.generation}' 2 5
  sleep 1
  rs=$(kc -n $ns get rs -l app=vault --sort-by=.metadata.creationTimestamp -o jsonpath='{range .items[*]}{.spec.template.spec.runtimeClassName}/{.spec.template.spec.volumes[?(@.name=="scratch")].emptyDir.medium}{" "}{end}')
  check "two ReplicaSets, the new one as created ($rs)" [ "$rs" = "kata-qemu/Memory / " ]
  wh_finish $ns $plain
}

test_webhook_pods_and_system_namespaces() {
  local ns=e2e-wh-pods
  wh_setup
  kc create namespace $ns >/dev/null 2>&1 || true
  wh_start webhook-pods
  check "a bare opted-in Pod is created" inst_quiet kc -n $ns run bare --image=fake --env=KATA=true
  check "it got the class" wait_jp $ns pod/bare '{.spec.runtimeClassName}' kata-qemu 1
  local out
  out=$(kc -n $ns run bad --image=fake --env=KATA=kata-fast 2>&1) && fail "a pod asking for a class outside the allow-list was admitted"
  log "  denied: $out"
  check "fail-closed: denied with the reason" grep -q 'would run without one.*kata-fast' <<<"$out"
  check "a plain Pod is untouched" inst_quiet kc -n $ns run plain --image=fake
  check "plain Pod has no class" [ -z "$(jp $ns pod/plain '{.spec.runtimeClassName}')" ]
  # System namespaces never reach the webhook (namespaceSelector), and would not be changed.
  check "opted-in Pod in kube-public is created" inst_quiet kc -n kube-public run sys --image=fake --env=KATA=true
  check "it has no class" [ -z "$(jp kube-public pod/sys '{.spec.runtimeClassName}')" ]
  check "no review for kube-public" [ "$(wh_reviews '.key | startswith("kube-public/")')" -eq 0 ]
  check "reviews for $ns" [ "$(wh_reviews '.key | startswith("'$ns'/")')" -ge 3 ]
  # The webhook's metrics count them, and the API server kept its HTTP/2 connection (one
  # connection, not one per call: each would cost a TLS handshake).
  OPS_PORT=$(ops_port)
  check "metrics scraped" scrape
  local mutated denied conns
  mutated=$(metric 'confidential_operator_webhook_reviews_total{result="mutated"}')
  denied=$(metric 'confidential_operator_webhook_reviews_total{result="denied"}')
  conns=$(metric confidential_operator_webhook_connections_total)
  check "one review counted as mutated, the bare Pod ($mutated)" [ "$mutated" = 1 ]
  check "one counted as denied ($denied)" [ "$denied" = 1 ]
  check "handler times observed" [ "$(metric confidential_operator_webhook_handler_seconds_count)" != 0 ]
  check "the API server reused its connection ($conns connections)" [ "${conns%.*}" -ge 1 ] && [ "${conns%.*}" -le 2 ]
  kc -n kube-public delete pod sys --wait=false >/dev/null
  wh_finish $ns
}

# Webhook down: creates still succeed (failurePolicy Ignore), and the controller converges them
# once it runs.
test_webhook_down_fails_open_controller_converges() {
  local ns=e2e-wh-down
  wh_setup
  # A fresh certificate: not one left nearly expired by the rotation test.
  kc -n confidential-system delete secret $WH_SECRET --ignore-not-found >/dev/null
  kc create namespace $ns >/dev/null 2>&1 || true
  local t0 t1
  t0=$(now)
  deploy $ns late '[{name: KATA, value: ""}]'
  t1=$(now)
  log "  create with the webhook down took $(echo "$t1 - $t0" | bc) s"
  check "created without the class" [ -z "$(jp $ns deploy/late '{.spec.template.spec.runtimeClassName}')" ]
  check "the create did not wait for the timeout" [ "$(echo "$t1 - $t0 < 3" | bc)" -eq 1 ]
  wh_start webhook-down
  check "the controller converges it" wait_jp $ns deploy/late '{.spec.template.spec.runtimeClassName}' kata-qemu 15
  local rc=0; ctrl_stop || rc=$?
  check "clean exit (rc $rc)" [ "$rc" -eq 0 ]
  wh_unregister
  kc delete namespace $ns --wait=false >/dev/null
}

# Certificates rotated every ~40 s (validity 60 s) while pods are created in a loop: every
# create is mutated, none fails open.
test_webhook_cert_rotation_loses_no_request() {
  local ns=e2e-wh-rot
  wh_setup
  kc create namespace $ns >/dev/null 2>&1 || true
  # Pods of a new namespace are refused until the controller-manager made its default
  # ServiceAccount (slow after the control-plane restarts of earlier tests): not a loss.
  local w
  for w in $(seq 1 600); do kc -n $ns get serviceaccount default >/dev/null 2>&1 && break; sleep 0.1; done
  kc -n confidential-system delete secret $WH_SECRET --ignore-not-found >/dev/null
  wh_start webhook-rot --webhook-cert-validity=60
  local a0 i n=0 end
  a0=$(apiserver_lines)
  end=$(( $(date +%s) + 70 ))
  i=0
  while [ "$(date +%s)" -lt $end ]; do
    i=$((i + 1))
    if kc -n $ns run "p$i" --image=fake --env=KATA=true >/dev/null 2>"$E2E_DIR/wh-rot.err"; then
      n=$((n + 1))
    else
      log "  p$i: $(head -c 300 "$E2E_DIR/wh-rot.err")"
    fi
    sleep 0.3
  done
  local rot swaps mutated
  rot=$(log_count '.msg=="webhook certificate Secret rotated"')
  swaps=$(log_count '.msg=="webhook serves the new certificate for new connections"')
  mutated=$(kc -n $ns get pods -o json | jq '[.items[] | select(.spec.runtimeClassName == "kata-qemu")] | length')
  log "  created $n/$i pods, $mutated with the class, rotations $rot, certificate swaps $swaps"
  check "at least one rotation" [ "$rot" -ge 1 ]
  check "the server swapped certificates" [ "$swaps" -ge 1 ]
  check "every create succeeded" [ "$n" -eq "$i" ]
  check "every pod was mutated" [ "$mutated" -eq "$n" ]
  check "no call failed open" [ "$(wh_failed_open "$a0")" -eq 0 ]
  wh_finish $ns
}

# Two replicas started at once, the Secret missing: both serve the same certificate.
test_webhook_two_replicas_one_certificate() {
  wh_setup
  kc -n confidential-system delete secret $WH_SECRET --ignore-not-found >/dev/null
  local l1=$E2E_DIR/wh-r1.log l2=$E2E_DIR/wh-r2.log p1 p2
  "$CO_BIN" controller --log-format=json --webhook-bind-address=127.0.0.1:$WH_PORT \
    --webhook-config-name=$WH_CONFIG --leader-elect=true --leader-elect-retry-period=1 \
    --http-bind-address= >"$l1" 2>&1 &
  p1=$!
  "$CO_BIN" controller --log-format=json --webhook-bind-address=127.0.0.1:$((WH_PORT + 1)) \
    --webhook-config-name=$WH_CONFIG --leader-elect=true --leader-elect-retry-period=1 \
    --http-bind-address= >"$l2" 2>&1 &
  p2=$!
  local f1="" f2="" i
  for i in $(seq 1 100); do
    f1=$(echo | openssl s_client -connect 127.0.0.1:$WH_PORT 2>/dev/null | openssl x509 -noout -fingerprint -sha256 2>/dev/null)
    f2=$(echo | openssl s_client -connect 127.0.0.1:$((WH_PORT + 1)) 2>/dev/null | openssl x509 -noout -fingerprint -sha256 2>/dev/null)
    [ -n "$f1" ] && [ "$f1" = "$f2" ] && break
    sleep 0.2
  done
  log "  replica 1: $f1"
  log "  replica 2: $f2"
  check "both replicas serve" [ -n "$f1" ] && [ -n "$f2" ]
  check "the same certificate" [ "$f1" = "$f2" ]
  local created
  created=$(cat "$l1" "$l2" | grep -c 'webhook certificate Secret created' || true)
  check "exactly one replica created the Secret ($created)" [ "$created" -eq 1 ]
  kill -TERM $p1 $p2 2>/dev/null
  wait $p1 $p2 2>/dev/null || true
  wh_unregister
}

# A malformed AdmissionReview: 400 with a message, an oversized one 413 (HTTP/1.1) or a reset
# stream (HTTP/2); the controller keeps
# serving.
test_webhook_malformed_review_400() {
  wh_setup
  wh_start webhook-bad
  local url=https://127.0.0.1:$WH_PORT/mutate code body
  body=$(curl -sk -o /dev/stdout -w '\n%{http_code}' -X POST -H 'Content-Type: application/json' \
    --data 'not json' "$url")
  code=$(tail -1 <<<"$body")
  check "not JSON: 400 ($code)" [ "$code" = 400 ]
  check "with a message" grep -q 'not JSON' <<<"$body"
  code=$(curl -sk -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
    --data '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}' "$url")
  check "no uid: 400 ($code)" [ "$code" = 400 ]
  head -c $((8 * 1024 * 1024)) /dev/zero | tr '\0' ' ' > "$E2E_DIR/big.json"
  code=$(curl -sk --http1.1 -o /dev/null -w '%{http_code}' -X POST \
    -H 'Content-Type: application/json' --data-binary @"$E2E_DIR/big.json" "$url")
  check "oversized, HTTP/1.1: 413 ($code)" [ "$code" = 413 ]
  # HTTP/2 (what the API server negotiates): libh2o resets the stream, the body is not read
  code=$(curl -sk --http2 -o /dev/null -w '%{http_code} %{http_version}' -X POST \
    -H 'Content-Type: application/json' --data-binary @"$E2E_DIR/big.json" "$url" || true)
  check "oversized, HTTP/2: refused ($code)" [ "${code%% *}" = 000 ]
  code=$(curl -sk -o /dev/null -w '%{http_code}' "$url")
  check "GET: 405 ($code)" [ "$code" = 405 ]
  check "the controller keeps running" ctrl_alive
  kc create namespace e2e-wh-bad >/dev/null 2>&1 || true
  check "and still mutates" inst_quiet kc -n e2e-wh-bad run after --image=fake --env=KATA=true
  check "the pod got the class" wait_jp e2e-wh-bad pod/after '{.spec.runtimeClassName}' kata-qemu 1
  wh_finish e2e-wh-bad
}
