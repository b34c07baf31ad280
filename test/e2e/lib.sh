# Helpers for the e2e tests: assertions, the controller under test, log queries.
# Sourced by test/e2e/run.sh; every test file defines functions named test_*.

E2E_PASSED=${E2E_PASSED:-0}
E2E_FAILED=${E2E_FAILED:-0}
E2E_CURRENT=""
E2E_CURRENT_FAILED=0

log() { printf '# %s\n' "$*" >&2; }

fail() {
  printf '#   FAIL [%s]: %s\n' "$E2E_CURRENT" "$*" >&2
  E2E_CURRENT_FAILED=1
}

# check DESCRIPTION COMMAND...: runs the command, fails the test when it fails.
check() {
  local what=$1; shift
  if "$@"; then log "  ok: $what"; else fail "$what"; fi
}

now() { date +%s.%N; }

kc() { "$CO_KUBECTL" --kubeconfig="$KUBECONFIG" "$@"; }

# kc_write ARGS...: runs a mutating kubectl command and prints when its write request was
# sent (epoch seconds), read from kubectl's own request log (-v=7 logs each request just
# before sending it), so that latencies measured from it exclude kubectl's start-up time.
kc_write() {
  local out line ts
  out=$("$CO_KUBECTL" --kubeconfig="$KUBECONFIG" -v=7 "$@" 2>&1 >/dev/null) || { echo "$out" >&2; return 1; }
  line=$(grep -E '"Request" verb="(POST|PUT|PATCH|DELETE)"' <<<"$out" | head -1)
  [ -n "$line" ] || { echo "no write request in kubectl's log" >&2; return 1; }
  ts=$(sed -E 's/^[IWE][0-9]{2}([0-9]{2}) ([0-9:.]+) .*/\2/' <<<"$line")
  date -d "$(date +%Y-%m-%d) $ts" +%s.%N
}

# ---- the controller under test -------------------------------------------------------
CTRL_PID=""
CTRL_LOG=""

# ctrl_start NAME [flags...]: runs the controller with JSON debug logs into $E2E_DIR/NAME.log.
# Its /metrics, /healthz and /readyz listen on a free loopback port (see ops_port), so that
# several controllers (and several test runs on one machine) never compete for :8080.
# The webhook is off (tests of it pass their own --webhook-bind-address, which wins): it needs
# the operator namespace for its certificate Secret, and /readyz waits for that certificate.
ctrl_start() {
  local name=$1; shift
  CTRL_LOG="$E2E_DIR/$name.log"
  : > "$CTRL_LOG"
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
    "$CO_BIN" controller --log-format=json --log-level=debug --http-bind-address=127.0.0.1:0 \
    --webhook-bind-address= "$@" >>"$CTRL_LOG" 2>&1 &
  CTRL_PID=$!
}

# ctrl_stop: SIGTERM, wait; returns the exit code.
ctrl_stop() {
  [ -n "$CTRL_PID" ] || return 0
  kill -TERM "$CTRL_PID" 2>/dev/null || true
  local rc=0
  wait "$CTRL_PID" || rc=$?
  CTRL_PID=""
  return $rc
}

ctrl_alive() { [ -n "$CTRL_PID" ] && kill -0 "$CTRL_PID" 2>/dev/null; }

# ctrl_stop_clean: ctrl_stop, checking that the controller exited 0 with no sanitizer report.
ctrl_stop_clean() {
  local rc=0
  ctrl_stop || rc=$?
  check "clean exit (rc $rc)" [ "$rc" -eq 0 ]
  check "no sanitizer report" sanitizer_clean
}

# log_count JQ_FILTER: number of JSON log lines matching a jq select() expression.
log_count() {
  grep '^{' "$CTRL_LOG" | jq -c "select($1)" 2>/dev/null | wc -l
}

# wait_log JQ_FILTER TIMEOUT_S [MIN_COUNT]: waits for matching log lines.
wait_log() {
  local filter=$1 timeout=$2 min=${3:-1}
  local deadline
  deadline=$(echo "$(now) + $timeout" | bc)
  while (( $(echo "$(now) < $deadline" | bc) )); do
    [ "$(log_count "$filter")" -ge "$min" ] && return 0
    sleep 0.05
  done
  return 1
}

# log_ts JQ_FILTER: epoch seconds (fractional) of the first matching line.
log_ts() {
  local ts
  ts=$(grep '^{' "$CTRL_LOG" | jq -r "select($1) | .ts" | head -1)
  [ -n "$ts" ] || return 1
  date -d "$ts" +%s.%N
}

# event_filter RESOURCE TYPE KEY
event_filter() {
  printf '.msg=="informer event" and .resource=="%s" and .type=="%s" and .key=="%s"' "$1" "$2" "$3"
}

# log_ts_after JQ_FILTER SINCE_EPOCH: epoch seconds of the first matching line logged at or
# after SINCE_EPOCH (log timestamps are cut to milliseconds, hence 1 ms of slack).
log_ts_after() {
  local ts e
  while read -r ts; do
    e=$(date -d "$ts" +%s.%N)
    if (( $(echo "$e >= $2 - 0.001" | bc) )); then echo "$e"; return 0; fi
  done < <(grep '^{' "$CTRL_LOG" | jq -r "select($1) | .ts")
  return 1
}

# wait_event RESOURCE TYPE KEY SINCE_EPOCH MAX_S: waits for the first such event logged after
# SINCE_EPOCH and checks that it came at most MAX_S later.
wait_event() {
  local res=$1 type=$2 key=$3 since=$4 max=$5
  local f ts="" lat deadline
  f=$(event_filter "$res" "$type" "$key")
  deadline=$(echo "$(now) + 30" | bc)
  while (( $(echo "$(now) < $deadline" | bc) )); do
    ts=$(log_ts_after "$f" "$since") && break
    sleep 0.05
  done
  if [ -z "$ts" ]; then
    fail "no $type event for $res $key after $since"
    grep '^{' "$CTRL_LOG" | jq -c "select(.key==\"$key\") | {ts, msg, resource, type}" | tail -5 >&2
    return 1
  fi
  lat=$(echo "$ts - $since" | bc)
  log "  $res $type $key seen after ${lat}s"
  if (( $(echo "$lat > $max" | bc) )); then
    fail "$res $type $key seen after ${lat}s (limit ${max}s)"
    return 1
  fi
  return 0
}

# sanitizer_clean: the log holds no ASan/UBSan/LSan report.
sanitizer_clean() {
  ! grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$CTRL_LOG"
}

# webhook_local NAME PORT: points every webhook of the MutatingWebhookConfiguration NAME (the
# bundle's is "confidential-operator") at https://127.0.0.1:PORT/mutate, where a controller run
# on this host serves it: the API server here has no route to the bundle's Service, and would
# wait timeoutSeconds on every create instead of failing open at once.
webhook_local() {
  local n
  n=$(kc get mutatingwebhookconfiguration "$1" -o jsonpath='{.webhooks[*].name}' | wc -w)
  kc patch mutatingwebhookconfiguration "$1" --type=json -p "$(
    jq -cn --argjson n "$n" --arg url "https://127.0.0.1:$2/mutate" \
      '[range(0; $n) as $i | {op: "replace", path: "/webhooks/\($i)/clientConfig", value: {url: $url}}]')" >/dev/null
}

# kubeconfig_user OUT SERVER USER [CA]: a kubeconfig for the test cluster at SERVER with the
# user USER (a YAML flow map, e.g. '{token: "x"}') and the cluster's CA (or CA, base64 PEM).
kubeconfig_user() {
  local out=$1 server=$2 user=$3 ca=${4:-}
  local cadata
  cadata=$(kc config view --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
  [ -n "$ca" ] && cadata=$ca
  cat > "$out" <<YAML
apiVersion: v1
kind: Config
current-context: t
contexts: [{name: t, context: {cluster: t, user: t}}]
clusters: [{name: t, cluster: {server: "$server", certificate-authority-data: "$cadata"}}]
users: [{name: t, user: $user}]
YAML
}

# kubeconfig_with OUT SERVER TOKEN [CA]: the same with a bearer token.
kubeconfig_with() { kubeconfig_user "$1" "$2" "{token: \"$3\"}" "${4:-}"; }
