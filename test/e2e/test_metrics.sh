# /metrics, /healthz and /readyz of the controller: readiness follows the caches, the
# exposition format parses, every metric family is there, and the values move with what the
# controller does.

# ops_port: the port the controller under test serves /metrics on (from its log).
ops_port() {
  wait_log '.msg=="serving /metrics, /healthz, /readyz"' 10 || return 1
  grep '^{' "$CTRL_LOG" | jq -r 'select(.msg=="serving /metrics, /healthz, /readyz") | .port' | head -1
}

# http_code PATH [CURL_ARGS...]: the status code of a request to the controller under test;
# the body goes to $E2E_DIR/http.body.
http_code() {
  local path=$1; shift
  curl -s -o "$E2E_DIR/http.body" -w '%{http_code}' --max-time 5 "$@" "http://127.0.0.1:$OPS_PORT$path"
}

# scrape: /metrics into $E2E_DIR/metrics.txt.
scrape() { [ "$(http_code /metrics)" = 200 ] && cp "$E2E_DIR/http.body" "$E2E_DIR/metrics.txt"; }

# metric SERIES: the value of one sample line of the last scrape ("name" or 'name{l="v",...}'),
# 0 when absent.
metric() {
  awk -v s="$1" '$1 == s { v = $2 } END { print (v == "" ? 0 : v) }' "$E2E_DIR/metrics.txt"
}

# metric_sum NAME: the sum over every label set of a family.
metric_sum() {
  awk -v n="$1" '{ k = $1; sub(/\{.*/, "", k) } k == n { s += $2 } END { print s + 0 }' "$E2E_DIR/metrics.txt"
}

# exposition_valid FILE: every line is a HELP, TYPE or sample line of the text format 0.0.4,
# and every sample belongs to a family declared by a TYPE line before it.
exposition_valid() {
  local name='[a-zA-Z_:][a-zA-Z0-9_:]*' lbl='[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*"'
  local num='(-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?|[-+]Inf|NaN)'
  local bad
  bad=$(grep -vE "^(# HELP $name .*|# TYPE $name (counter|gauge|histogram|summary|untyped)|$name(\{($lbl(,$lbl)*)?\})? $num)\$" "$1")
  if [ -n "$bad" ]; then
    log "  invalid lines:"; head -5 <<<"$bad" >&2
    return 1
  fi
  awk '
    /^# TYPE / { type[$3] = $4; next }
    /^#/ { next }
    { n = $1; sub(/\{.*/, "", n); b = n; sub(/_(bucket|sum|count)$/, "", b)
      if (!(n in type) && !((b in type) && type[b] == "histogram")) { print "undeclared: " n; bad = 1 } }
    END { exit bad }' "$1" >&2
}

# unreachable_kubeconfig FILE: the test cluster's kubeconfig pointing at a closed port.
unreachable_kubeconfig() {
  sed -E 's#(server: *)https://[^ ]*#\1https://127.0.0.1:1#' "$KUBECONFIG" > "$1"
}

test_health_endpoints_follow_the_caches() {
  # No API server: the loop runs (healthz) but the caches never sync (readyz).
  local kcfg="$E2E_DIR/unreachable.kubeconfig" rc=0
  unreachable_kubeconfig "$kcfg"
  ctrl_start health-down --kubeconfig="$kcfg"
  OPS_PORT=$(ops_port)
  check "listening on a port" [ -n "$OPS_PORT" ]
  check "/healthz 200 without an API server" [ "$(http_code /healthz)" = 200 ]
  check "/readyz 503 while caches are not synced" [ "$(http_code /readyz)" = 503 ]
  check "/readyz names the failing check" grep -q '^\[-\]informers-synced' "$E2E_DIR/http.body"
  sleep 2
  check "/readyz still 503 later" [ "$(http_code /readyz)" = 503 ]
  check "unknown path 404" [ "$(http_code /nope)" = 404 ]
  check "POST /metrics 405" [ "$(http_code /metrics -X POST -d x)" = 405 ]
  ctrl_stop || rc=$?
  check "clean exit without an API server (rc $rc)" [ "$rc" -eq 0 ]
  check "no sanitizer report" sanitizer_clean

  # With the API server: not ready at first, ready once every cache synced.
  ctrl_start health-up
  OPS_PORT=$(ops_port)
  local first
  first=$(http_code /readyz)
  log "  first /readyz answer: $first"
  check "first /readyz answered" grep -qE '^(200|503)$' <<<"$first"
  check "caches sync" wait_log '.msg=="all caches synced"' 30
  check "/readyz 200 after sync" [ "$(http_code /readyz)" = 200 ]
  check "/readyz lists the check as passing" grep -q '^\[+\]informers-synced ok' "$E2E_DIR/http.body"
  check "/healthz 200" [ "$(http_code /healthz)" = 200 ]
  # Keep-alive connections left open do not delay the shutdown.
  curl -s -o /dev/null --max-time 30 "http://127.0.0.1:$OPS_PORT/healthz" \
    "http://127.0.0.1:$OPS_PORT/healthz" --keepalive-time 30 &
  local t0 t1
  t0=$(now)
  rc=0
  ctrl_stop || rc=$?
  t1=$(now)
  check "clean exit (rc $rc)" [ "$rc" -eq 0 ]
  check "stopped within 5 s ($(echo "$t1 - $t0" | bc)s)" [ "$(echo "$t1 - $t0 < 5" | bc)" -eq 1 ]
  check "no sanitizer report" sanitizer_clean
  check "port closed after exit" [ "$(http_code /healthz)" = 000 ]
  wait 2>/dev/null || true
}

test_metrics_parse_and_move() {
  wl_setup
  kc create namespace e2e-metrics >/dev/null
  ctrl_start metrics
  OPS_PORT=$(ops_port)
  check "caches sync" wait_log '.msg=="all caches synced"' 30
  check "scrape" scrape
  check "exposition format valid" exposition_valid "$E2E_DIR/metrics.txt"
  local fam
  for fam in confidential_operator_build_info confidential_operator_api_requests_total \
    confidential_operator_watch_restarts_total confidential_operator_relists_total \
    confidential_operator_reconcile_duration_seconds_bucket confidential_operator_workqueue_depth \
    confidential_operator_workloads confidential_operator_nodes_ready confidential_operator_leader; do
    check "family $fam has samples" grep -qE "^$fam(\{| )" "$E2E_DIR/metrics.txt"
  done
  check "reconciles counted from 0" grep -qE "^confidential_operator_reconciles_total\{result=\"(success|error)\"\} [0-9]+$" "$E2E_DIR/metrics.txt"
  check "build info carries the version" \
    grep -qE '^confidential_operator_build_info\{version="[0-9.]+",git="[^"]+"\} 1$' "$E2E_DIR/metrics.txt"
  check "leader 1 without leader election" [ "$(metric confidential_operator_leader)" = 1 ]
  check "the list requests were counted" \
    [ "$(metric 'confidential_operator_api_requests_total{verb="GET",code="200"}')" -ge 6 ]
  local want
  want=$(kc get nodes -l runtime.confidential.cypherpunk.io/kata-qemu=ready --no-headers | wc -l)
  check "nodes ready for kata-qemu = $want" \
    [ "$(metric 'confidential_operator_nodes_ready{runtime_class="kata-qemu"}')" = "$want" ]
  check "gvisor listed with 0 nodes" \
    [ "$(metric 'confidential_operator_nodes_ready{runtime_class="gvisor"}')" = 0 ]

  # An opted-in Deployment: a reconcile, a PATCH, a workload in a phase.
  local rec0 patch0 hist0
  rec0=$(metric 'confidential_operator_reconciles_total{result="success"}')
  patch0=$(awk '$1 ~ /^confidential_operator_api_requests_total\{verb="PATCH",code="2[0-9][0-9]"\}$/ { s += $2 } END { print s + 0 }' "$E2E_DIR/metrics.txt")
  hist0=$(metric confidential_operator_reconcile_duration_seconds_count)
  deploy e2e-metrics opted '[{name: KATA, value: ""}]'
  check "rewritten" wait_jp e2e-metrics deploy/opted '{.spec.template.spec.runtimeClassName}' kata-qemu 15
  sleep 0.5
  check "scrape" scrape
  local rec1 patch1 hist1 i
  rec1=$(metric 'confidential_operator_reconciles_total{result="success"}')
  patch1=$(awk '$1 ~ /^confidential_operator_api_requests_total\{verb="PATCH",code="2[0-9][0-9]"\}$/ { s += $2 } END { print s + 0 }' "$E2E_DIR/metrics.txt")
  hist1=$(metric confidential_operator_reconcile_duration_seconds_count)
  check "reconciles grew ($rec0 -> $rec1)" [ "$rec1" -gt "$rec0" ]
  check "PATCH 2xx requests grew ($patch0 -> $patch1)" [ "$patch1" -gt "$patch0" ]
  check "latency histogram grew ($hist0 -> $hist1)" [ "$hist1" -gt "$hist0" ]
  check "+Inf bucket equals the count" \
    [ "$(metric 'confidential_operator_reconcile_duration_seconds_bucket{le="+Inf"}')" = "$hist1" ]
  # Phases are counted at most every 5 s.
  local phased=0
  for i in $(seq 1 70); do
    scrape && phased=$(metric_sum confidential_operator_workloads)
    [ "$phased" -ge 1 ] && break
    sleep 0.1
  done
  check "the Deployment counts in a phase ($phased)" [ "$phased" -ge 1 ]
  check "exposition format still valid" exposition_valid "$E2E_DIR/metrics.txt"

  # A node labelled ready shows up at the next scrape.
  kc label node kwok-node-1 runtime.confidential.cypherpunk.io/gvisor=ready --overwrite >/dev/null
  local i got=0
  for i in $(seq 1 50); do
    scrape && got=$(metric 'confidential_operator_nodes_ready{runtime_class="gvisor"}')
    [ "$got" = 1 ] && break
    sleep 0.1
  done
  check "gvisor node counted ($got)" [ "$got" = 1 ]
  kc label node kwok-node-1 runtime.confidential.cypherpunk.io/gvisor- >/dev/null

  # The API server restarts: every watch breaks and is started again.
  local w0 w1=0
  w0=$(metric_sum confidential_operator_watch_restarts_total)
  hack/cluster.sh restart apiserver >/dev/null
  for i in $(seq 1 60); do
    scrape && w1=$(metric_sum confidential_operator_watch_restarts_total)
    [ "$w1" -gt "$w0" ] && break
    sleep 0.5
  done
  check "watch restarts grew after an API server restart ($w0 -> $w1)" [ "$w1" -gt "$w0" ]
  check "restarts counted per resource" \
    [ "$(metric 'confidential_operator_watch_restarts_total{resource="deployments"}')" -ge 1 ]
  check "unknown path 404" [ "$(http_code /metrics/x)" = 404 ]
  local rc=0
  ctrl_stop || rc=$?
  check "clean exit (rc $rc)" [ "$rc" -eq 0 ]
  check "no sanitizer report" sanitizer_clean
  kc delete namespace e2e-metrics --wait=false >/dev/null
}

test_metrics_leader_gauge() {
  kc create namespace confidential-system >/dev/null 2>&1 || true
  ctrl_start metrics-le --leader-elect=true --leader-elect-identity=metrics-a \
    --leader-elect-lease-duration=6 --leader-elect-renew-deadline=4 --leader-elect-retry-period=1
  OPS_PORT=$(ops_port)
  check "became leader" wait_log '.msg=="became leader"' 20
  check "scrape" scrape
  check "leader gauge 1" [ "$(metric confidential_operator_leader)" = 1 ]
  # A second replica waits for the Lease: its gauge says 0.
  le_start metrics-le-b metrics-b
  local port_b="" i
  for i in $(seq 1 100); do
    port_b=$(grep '^{' "$LE_LOG" | jq -r 'select(.msg=="serving /metrics, /healthz, /readyz") | .port' | head -1)
    [ -n "$port_b" ] && break
    sleep 0.1
  done
  local saved=$OPS_PORT
  OPS_PORT=$port_b
  sleep 1
  check "second replica scraped" scrape
  check "second replica: leader gauge 0" [ "$(metric confidential_operator_leader)" = 0 ]
  OPS_PORT=$saved
  kill -TERM "$LE_PID" 2>/dev/null; wait "$LE_PID" 2>/dev/null; LE_PID=""
  local rc=0
  ctrl_stop || rc=$?
  check "clean exit (rc $rc)" [ "$rc" -eq 0 ]
  check "no sanitizer report" sanitizer_clean
}
