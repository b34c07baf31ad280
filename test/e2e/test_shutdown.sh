# shellcheck shell=bash
# Bounded shutdown: a part that never reports closed is named at error level and the process
# exits 3 at --shutdown-timeout, or at once on a second signal; a webhook client that never
# reads its answers does not hold a normal shutdown back.

# sd_stuck_kubeconfig DIR: a kubeconfig for this cluster whose tokenFile is a FIFO nobody writes:
# reading it never returns (as on a hung volume), so every API request waits for the token and
# neither the informers nor the client can close.
sd_stuck_kubeconfig() {
  local d=$1 server
  mkdir -p "$d"
  rm -f "$d/token"
  mkfifo "$d/token"
  server=$(kc config view --raw -o jsonpath='{.clusters[0].cluster.server}')
  kubeconfig_user "$d/kubeconfig" "$server" "{tokenFile: \"$d/token\"}"
}

# sd_wait_exit TIMEOUT_S: waits for the controller to exit; sets SD_RC to its exit code, or
# to "running" when it is still there after TIMEOUT_S (it is then killed).
sd_wait_exit() {
  local i
  SD_RC=running
  for i in $(seq 1 $(( $1 * 20 ))); do
    if ! kill -0 "$CTRL_PID" 2>/dev/null; then
      SD_RC=0
      wait "$CTRL_PID" || SD_RC=$?
      CTRL_PID=""
      return
    fi
    sleep 0.05
  done
  kill -KILL "$CTRL_PID" 2>/dev/null
  wait "$CTRL_PID" 2>/dev/null
  CTRL_PID=""
}

test_shutdown_deadline_names_stuck_parts() {
  local d=$E2E_DIR/stuck t0 t1 rc
  sd_stuck_kubeconfig "$d"
  ctrl_start stuck --kubeconfig="$d/kubeconfig" --shutdown-timeout=3
  check "started" wait_log '.msg=="starting controller"' 10
  sleep 1 # every informer's first list is waiting for the token
  t0=$(now)
  kill -TERM "$CTRL_PID"
  sd_wait_exit 15
  rc=$SD_RC
  t1=$(now)
  check "exit code 3 at the deadline (got $rc)" [ "$rc" = 3 ]
  check "exited at the deadline, not before (3 s)" [ "$(echo "$t1 - $t0 >= 2.9" | bc)" = 1 ]
  check "exited soon after the deadline" [ "$(echo "$t1 - $t0 < 6" | bc)" = 1 ]
  check "deadline logged at error level with the open parts" \
    [ "$(log_count '.level=="error" and .msg=="shutdown deadline passed, exiting" and .shutdown_timeout_s==3 and .exit_code==3 and (.open|test("informer/deployments")) and (.open|test("api-client"))')" -eq 1 ]
  check "each informer named, its request in flight" \
    [ "$(log_count '.level=="error" and .msg=="shutdown: part still open" and (.part|startswith("informer/")) and .request_in_flight==true')" -eq 7 ]
  check "the client's requests in flight counted" \
    [ "$(log_count '.msg=="shutdown: part still open" and .part=="api-client" and .requests_in_flight>=7')" -eq 1 ]
  check "parts that did close are not named" \
    [ "$(log_count '.msg=="shutdown: part still open" and (.part=="reconciler" or .part=="node-preparation" or .part=="metrics-server")')" -eq 0 ]
  check "no sanitizer report" sanitizer_clean
  rm -rf "$d"
}

test_shutdown_second_signal_exits_at_once() {
  local d=$E2E_DIR/stuck2 t0 t1 rc
  sd_stuck_kubeconfig "$d"
  ctrl_start stuck2 --kubeconfig="$d/kubeconfig" --shutdown-timeout=60
  check "started" wait_log '.msg=="starting controller"' 10
  sleep 1
  kill -TERM "$CTRL_PID"
  check "shutdown began" wait_log '.msg=="shutting down"' 5
  sleep 0.5
  check "still stuck after the first signal" kill -0 "$CTRL_PID"
  t0=$(now)
  kill -INT "$CTRL_PID"
  sd_wait_exit 10
  rc=$SD_RC
  t1=$(now)
  check "exit code 3 on the second signal (got $rc)" [ "$rc" = 3 ]
  check "exited at once (< 2 s)" [ "$(echo "$t1 - $t0 < 2" | bc)" = 1 ]
  check "second signal logged with the open parts" \
    [ "$(log_count '.level=="error" and .msg=="second signal during shutdown, exiting" and (.open|test("api-client"))')" -eq 1 ]
  check "no sanitizer report" sanitizer_clean
  rm -rf "$d"
}

# A client of the webhook that keeps sending pipelined requests and never reads the answers:
# the server's writes stall on the full socket (libh2o has no write timeout). The shutdown
# still ends cleanly (exit 0) within a few seconds: the connection is cut.
test_shutdown_clean_with_stalled_webhook_client() {
  local d=$E2E_DIR/stalled cl sendq t0 t1 rc
  mkdir -p "$d"
  wh_setup
  wh_start stalled --shutdown-timeout=20
  python3 - "$WH_PORT" > "$d/client.out" 2>&1 <<'PY' &
import socket, ssl, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", int(sys.argv[1])))
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
t = ctx.wrap_socket(s)
t.settimeout(1)
batch = b"GET /mutate HTTP/1.1\r\nHost: t\r\n\r\n" * 64
try:
    for _ in range(100000):
        t.sendall(batch)
except (socket.timeout, ssl.SSLError):
    print("stalled", flush=True)
time.sleep(600)
PY
  cl=$!
  local i
  for i in $(seq 1 300); do
    grep -q stalled "$d/client.out" && break
    sleep 0.1
  done
  sendq=$(ss -Htn state established "( sport = :$WH_PORT )" | awk '{ if ($2 > m) m = $2 } END { print m + 0 }')
  check "the client stopped being able to send (the server stopped reading)" grep -q stalled "$d/client.out"
  check "the webhook holds unsent answers (send queue $sendq)" [ "$sendq" -gt 10000 ]
  t0=$(now)
  rc=0
  ctrl_stop || rc=$?
  t1=$(now)
  check "clean exit (rc $rc)" [ "$rc" -eq 0 ]
  check "stopped within 5 s" [ "$(echo "$t1 - $t0 < 5" | bc)" = 1 ]
  check "the stalled connection was cut" \
    wait_log '.msg=="HTTP server close: connections cut after the grace period" and .connections==1' 1
  check "webhook stopped" wait_log '.msg=="webhook stopped"' 1
  check "no sanitizer report" sanitizer_clean
  kill "$cl" 2>/dev/null
  wait "$cl" 2>/dev/null
  rm -rf "$d"
  wh_unregister
}

# TLS clients of the webhook that reset their connection mid-request (as an API server giving
# up on a call does): the controller releases them, and a later SIGTERM ends cleanly at once
# instead of waiting for them until the deadline.
test_shutdown_clean_after_webhook_clients_reset() {
  local d=$E2E_DIR/reset t0 t1 rc
  mkdir -p "$d"
  wh_setup
  wh_start reset --shutdown-timeout=20
  python3 - "$WH_PORT" > "$d/client.out" 2>&1 <<'PY'
import socket, ssl, struct, sys, time
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
h2 = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
h2.check_hostname = False
h2.verify_mode = ssl.CERT_NONE
h2.set_alpn_protocols(["h2"])
for i in range(6):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    # three over HTTP/1.1 mid-body, three over HTTP/2 (the API server's) after the preface
    t = (ctx if i < 3 else h2).wrap_socket(s)
    if i < 3:
        t.sendall(b"POST /mutate HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{")
    else:
        assert t.selected_alpn_protocol() == "h2"
        t.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    time.sleep(0.1)
    t.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    t.close()  # RST
print("reset", flush=True)
PY
  check "the clients reset their connections" grep -q reset "$d/client.out"
  check "the controller released them" \
    wait_log '.msg=="HTTP server: released connections reset by their peer"' 5
  check "all six" [ "$(grep '^{' "$CTRL_LOG" | jq -s '[.[] | select(.msg=="HTTP server: released connections reset by their peer") | .connections] | add')" = 6 ]
  t0=$(now)
  rc=0
  ctrl_stop || rc=$?
  t1=$(now)
  check "clean exit (rc $rc)" [ "$rc" -eq 0 ]
  check "stopped within 3 s" [ "$(echo "$t1 - $t0 < 3" | bc)" = 1 ]
  check "webhook stopped" wait_log '.msg=="webhook stopped"' 1
  check "no sanitizer report" sanitizer_clean
  rm -rf "$d"
  wh_unregister
}
