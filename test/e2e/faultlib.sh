# Helpers for the fault-injection e2e tests: the fault proxy (hack/faultproxy) between the
# controller and the API server, and Deployment generators. Sourced by test/e2e/run.sh
# through the test files that use it.

FP_PID=""
FP_LOG=""
FP_ADMIN=""
FP_KUBECONFIG=""

# fp_start NAME: starts the proxy in front of the API server; the controller started with
# --kubeconfig="$FP_KUBECONFIG" talks to it (plain HTTP on 127.0.0.1, the admin token).
fp_start() {
  local name=$1 bin ports="$E2E_DIR/$1.fp-ports" i
  bin=$(hack/build-faultproxy.sh) || { fail "cannot build the fault proxy"; return 1; }
  FP_LOG="$E2E_DIR/$name.fp.log"
  : > "$FP_LOG"
  rm -f "$ports"
  "$bin" -upstream "$APISERVER_URL" -ca "$CO_CA_FILE" -ports-file "$ports" -log "$FP_LOG" \
    2>>"$E2E_DIR/$name.fp.err" &
  FP_PID=$!
  for i in $(seq 1 100); do [ -s "$ports" ] && break; sleep 0.05; done
  [ -s "$ports" ] || { fail "fault proxy did not start"; return 1; }
  local pport aport
  read -r pport aport < "$ports"
  FP_ADMIN="http://127.0.0.1:$aport"
  FP_KUBECONFIG="$E2E_DIR/$name.fp.kubeconfig"
  cat > "$FP_KUBECONFIG" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: via-proxy
  cluster: {server: "http://127.0.0.1:$pport"}
users:
- name: admin
  user: {token: "$CO_ADMIN_TOKEN"}
contexts:
- name: via-proxy
  context: {cluster: via-proxy, user: admin}
current-context: via-proxy
YAML
}

fp_stop() {
  [ -n "$FP_PID" ] || return 0
  kill -TERM "$FP_PID" 2>/dev/null || true
  wait "$FP_PID" 2>/dev/null || true
  FP_PID=""
}

# fp_rule JSON: adds an injection rule (see hack/faultproxy/main.go).
# The rule goes on stdin: a body can exceed the 128 KiB limit of one argument.
fp_rule() { printf "%s" "$1" | curl -sf -X POST "$FP_ADMIN/rules" --data-binary @- >/dev/null || fail "fault proxy refused rule: ${1:0:200}"; }
fp_clear() { curl -sf -X POST "$FP_ADMIN/clear" >/dev/null; }
# fp_stall PATH_REGEX: silences the matching open streams; prints how many.
fp_stall() { curl -sf -X POST "$FP_ADMIN/stall" -d "{\"path\":\"$1\"}" | jq -r .stalled; }

# fp_count JQ_FILTER: number of proxy log lines matching a jq select() expression.
fp_count() { jq -c "select($1)" "$FP_LOG" | wc -l; }

# fp_patches PATH_REGEX: PATCH requests that reached the API server and succeeded.
fp_patches() { fp_count ".method==\"PATCH\" and (.injected|not) and .status<300 and (.path|test(\"$1\"))"; }

# gen_deploys NS PREFIX N [OPTIN]: a kubectl List of N Deployments PREFIX-0..N-1 with
# replicas 0 (nothing to schedule), opted in by env KATA=true when OPTIN is "optin".
gen_deploys() {
  local ns=$1 prefix=$2 n=$3 optin=${4:-} env="" i
  [ "$optin" = optin ] && env=',"env":[{"name":"KATA","value":"true"}]'
  printf '{"apiVersion":"v1","kind":"List","items":['
  for ((i = 0; i < n; i++)); do
    ((i > 0)) && printf ','
    printf '{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"%s-%d","namespace":"%s","labels":{"app":"%s"}},' \
      "$prefix" "$i" "$ns" "$prefix"
    printf '"spec":{"replicas":0,"selector":{"matchLabels":{"app":"%s-%d"}},"template":{"metadata":{"labels":{"app":"%s-%d"}},' \
      "$prefix" "$i" "$prefix" "$i"
    printf '"spec":{"containers":[{"name":"app","image":"fake"%s}]}}}}' "$env"
  done
  printf ']}\n'
}

# deploy_states NS PREFIX: "name class generation" per Deployment of that prefix, sorted.
deploy_states() {
  kc -n "$1" get deploy -o json | jq -r --arg p "$2-" \
    '.items[] | select(.metadata.name | startswith($p)) |
     "\(.metadata.name) \(.spec.template.spec.runtimeClassName // "-") \(.metadata.generation)"' | sort
}

# wait_rewritten NS PREFIX N TIMEOUT_S: waits until all N carry kata-qemu; prints seconds taken.
wait_rewritten() {
  local ns=$1 prefix=$2 n=$3 timeout=$4 t0 got=0
  t0=$(now)
  while (( $(echo "$(now) - $t0 < $timeout" | bc) )); do
    got=$(deploy_states "$ns" "$prefix" | awk '$2=="kata-qemu"' | wc -l)
    [ "$got" -eq "$n" ] && { echo "$(now) - $t0" | bc; return 0; }
    sleep 0.2
  done
  log "  only $got/$n rewritten after ${timeout}s"
  return 1
}

# generations_once NS PREFIX N: every one of the N carries kata-qemu and metadata.generation
# 2 (created at 1, rewritten exactly once).
generations_once() {
  local bad
  bad=$(deploy_states "$1" "$2" | awk '$2!="kata-qemu" || $3!=2')
  [ "$(deploy_states "$1" "$2" | wc -l)" -eq "$3" ] || { log "  count differs from $3"; return 1; }
  [ -z "$bad" ] || { log "  not rewritten exactly once: $(head -5 <<<"$bad" | tr '\n' ';')"; return 1; }
}
