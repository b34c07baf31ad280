# Bad connection settings give clear errors; API errors keep the server's Status message.

# run_ctrl_expect_exit CODE PATTERN ARGS...: the controller must exit with CODE quickly and
# print PATTERN.
run_ctrl_expect_exit() {
  local code=$1 pattern=$2; shift 2
  local out rc=0
  out=$(timeout 20 "$CO_BIN" controller --http-bind-address=127.0.0.1:0 "$@" 2>&1) || rc=$?
  if [ "$rc" -ne "$code" ]; then
    fail "exit $rc (want $code) for: $* :: $out"
    return 1
  fi
  if ! grep -qE -- "$pattern" <<<"$out"; then
    fail "output lacks /$pattern/ for: $* :: $out"
    return 1
  fi
  log "  ok: $* -> $(grep -oE -- "$pattern" <<<"$out" | head -1)"
}

test_bad_kubeconfigs_are_reported() {
  local d=$E2E_DIR/kubeconfigs
  mkdir -p "$d"
  run_ctrl_expect_exit 2 'no such file|cannot read|not found' --kubeconfig="$d/missing"
  printf 'apiVersion: v1\nclusters: [\n  - {name: a\n' > "$d/syntax"
  run_ctrl_expect_exit 2 'line [0-9]+' --kubeconfig="$d/syntax"
  : > "$d/empty"
  run_ctrl_expect_exit 2 'empty' --kubeconfig="$d/empty"
  run_ctrl_expect_exit 2 'context.*nope' --kubeconfig="$KUBECONFIG" --context=nope
  cat > "$d/exec" <<'YAML'
apiVersion: v1
kind: Config
current-context: c
contexts: [{name: c, context: {cluster: k, user: u}}]
clusters: [{name: k, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {exec: {command: aws, apiVersion: client.authentication.k8s.io/v1}}}]
YAML
  run_ctrl_expect_exit 2 'exec' --kubeconfig="$d/exec"
  run_ctrl_expect_exit 2 'invalid value' --kube-api-qps=fast
}

test_api_errors_are_reported_and_retried() {
  local d=$E2E_DIR/api-errors server
  mkdir -p "$d"
  server=$(kc config view --raw -o jsonpath='{.clusters[0].cluster.server}')

  # Unreachable server: the controller keeps trying with backoff and stops cleanly.
  kubeconfig_with "$d/down" "https://127.0.0.1:9" "x"
  ctrl_start unreachable --kubeconfig="$d/down"
  check "connection failure logged" wait_log '.msg=="list failed" and .err=="CO_ECONNECT"' 30
  check "backoff grows" wait_log '.msg=="backing off"' 10 6
  local rc=0; ctrl_stop || rc=$?
  check "clean exit while unreachable (rc $rc)" [ "$rc" -eq 0 ]
  check "no sanitizer report" sanitizer_clean

  # Wrong CA: a TLS error, never a silent insecure fallback.
  local otherca
  otherca=$(openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=other -keyout /dev/null 2>/dev/null | base64 -w0)
  kubeconfig_with "$d/badca" "$server" "x" "$otherca"
  ctrl_start badca --kubeconfig="$d/badca"
  check "certificate verification failure logged" wait_log '.msg=="list failed" and .err=="CO_ETLS"' 30
  ctrl_stop || true

  # Invalid token: 401 with the server's Status kept.
  kubeconfig_with "$d/badtoken" "$server" "not-a-valid-token"
  ctrl_start badtoken --kubeconfig="$d/badtoken"
  check "401 logged with the server's reason" \
    wait_log '.msg=="list failed" and .err=="CO_EUNAUTHORIZED" and .status==401 and .reason=="Unauthorized"' 30
  ctrl_stop || true

  # A ServiceAccount with no RBAC: 403 with the API server's message naming the resource.
  kc -n default create serviceaccount e2e-nobody >/dev/null 2>&1 || true
  kubeconfig_with "$d/nobody" "$server" "$(kc -n default create token e2e-nobody)"
  ctrl_start nobody --kubeconfig="$d/nobody"
  check "403 logged with the API server's message" \
    wait_log '.msg=="list failed" and .err=="CO_EFORBIDDEN" and .reason=="Forbidden" and (.message|test("cannot list resource"))' 30
  ctrl_stop || true
  check "no sanitizer report" sanitizer_clean
}

test_token_file_rotation() {
  local d=$E2E_DIR/rotation server
  mkdir -p "$d"
  server=$(kc config view --raw -o jsonpath='{.clusters[0].cluster.server}')
  kc create namespace e2e-rot >/dev/null
  kc -n e2e-rot create serviceaccount watcher >/dev/null
  kc create clusterrole e2e-rot-watch --verb=list,watch \
    --resource=deployments.apps,statefulsets.apps,nodes,namespaces,pods \
    --resource=confidentialworkloads.confidential.cypherpunk.io >/dev/null
  kc create clusterrolebinding e2e-rot-watch --clusterrole=e2e-rot-watch \
    --serviceaccount=e2e-rot:watcher >/dev/null
  # Tokens bound to Secrets: deleting the Secret revokes its token, as rotation does.
  kc -n e2e-rot create secret generic token-a >/dev/null
  kc -n e2e-rot create secret generic token-b >/dev/null
  kc -n e2e-rot create token watcher --bound-object-kind=Secret --bound-object-name=token-a > "$d/token"
  kc -n e2e-rot create token watcher --bound-object-kind=Secret --bound-object-name=token-b > "$d/token-b"
  kubeconfig_user "$d/kubeconfig" "$server" "{tokenFile: \"$d/token\"}"
  ctrl_start rotation --kubeconfig="$d/kubeconfig"
  check "caches sync with the first token" wait_log '.msg=="all caches synced"' 30
  # Rotate the file the way the kubelet does (rename over it), then revoke the old token.
  mv "$d/token-b" "$d/token"
  kc -n e2e-rot delete secret token-a >/dev/null
  # Every connection is made again, with the old token still in memory.
  hack/cluster.sh restart apiserver >/dev/null
  local t
  t=$(now); kc -n e2e-rot create deployment after-rotation --image=fake --replicas=0 >/dev/null
  wait_event deployments add e2e-rot/after-rotation "$t" 10
  check "token re-read after the 401" wait_log '.msg=="bearer token reloaded"' 1
  check "the 401 never reached the informers" \
    [ "$(log_count '(.msg=="watch failed" or .msg=="list failed") and .err=="CO_EUNAUTHORIZED"')" -eq 0 ]
  local rc=0
  ctrl_stop || rc=$?
  check "clean exit (rc $rc)" [ "$rc" -eq 0 ]
  check "no sanitizer report" sanitizer_clean
  kc delete clusterrolebinding e2e-rot-watch >/dev/null
  kc delete clusterrole e2e-rot-watch >/dev/null
  kc delete namespace e2e-rot --wait=false >/dev/null
}
