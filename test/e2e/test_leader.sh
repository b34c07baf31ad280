# Leader election on a Lease: one writer, immediate hand-over on SIGTERM, takeover after the
# lease duration on SIGKILL.

# le_start NAME IDENTITY: a second controller process beside ctrl_start's; sets LE_PID.
le_start() {
  LE_LOG="$E2E_DIR/$1.log"
  : > "$LE_LOG"
  "$CO_BIN" controller --log-format=json --log-level=debug --leader-elect=true \
    --http-bind-address=127.0.0.1:0 \
    --leader-elect-identity="$2" --leader-elect-lease-duration=6 \
    --leader-elect-renew-deadline=4 --leader-elect-retry-period=1 >>"$LE_LOG" 2>&1 &
  LE_PID=$!
}

# first_ts LOG JQ: epoch seconds of the first matching line.
first_ts() {
  local ts
  ts=$(grep '^{' "$1" | jq -r "select($2) | .ts" | head -1)
  [ -n "$ts" ] && date -d "$ts" +%s.%N
}

test_leader_election_one_writer_and_failover() {
  wl_setup
  kc create namespace confidential-system >/dev/null 2>&1 || true
  kc create namespace e2e-le >/dev/null
  deploy e2e-le first '[{name: KATA, value: ""}]'
  ctrl_start le-a --leader-elect=true --leader-elect-identity=replica-a \
    --leader-elect-lease-duration=6 --leader-elect-renew-deadline=4 --leader-elect-retry-period=1
  check "replica a leads" wait_log '.msg=="became leader"' 20
  le_start le-b replica-b
  check "a writes" wait_jp e2e-le deploy/first '{.spec.template.spec.runtimeClassName}' kata-qemu 15
  sleep 3
  check "b does not lead while a renews" bash -c "! grep -q 'became leader' '$LE_LOG'"
  check "b never wrote" bash -c "! grep -q 'workload rewritten' '$LE_LOG'"
  check "lease held by a" wait_jp confidential-system lease/confidential-operator '{.spec.holderIdentity}' replica-a 1

  # Graceful stop: a hands the Lease back; b leads within 3 s.
  local t0 t1 rc=0
  t0=$(now)
  ctrl_stop || rc=$?
  check "a exits cleanly (rc $rc)" [ "$rc" -eq 0 ]
  check "a released the lease" grep -q 'leader election lease released' "$CTRL_LOG"
  for _ in $(seq 1 100); do grep -q 'became leader' "$LE_LOG" && break; sleep 0.1; done
  t1=$(first_ts "$LE_LOG" '.msg=="became leader"')
  if [ -n "$t1" ]; then
    log "  b leads $(echo "$t1 - $t0" | bc)s after a was asked to stop"
    check "b leads within 3 s of SIGTERM" [ "$(echo "$t1 - $t0 < 3" | bc)" -eq 1 ]
  else
    fail "b never became leader"
  fi
  deploy e2e-le second '[{name: KATA, value: ""}]'
  check "b writes" wait_jp e2e-le deploy/second '{.spec.template.spec.runtimeClassName}' kata-qemu 15
  check "first was written once" wait_jp e2e-le deploy/first '{.metadata.generation}' 2 1

  # Crash: with c standing by, b is killed; c takes over once the lease expires (6 s) plus at
  # most one retry (1 s), measured from b's last renewal, which is at most 1 s before the kill.
  ctrl_start le-c --leader-elect=true --leader-elect-identity=replica-c \
    --leader-elect-lease-duration=6 --leader-elect-renew-deadline=4 --leader-elect-retry-period=1
  check "c synced while standing by" wait_log '.msg=="all caches synced"' 20
  sleep 2
  check "c does not lead while b renews" bash -c "! grep -q 'became leader' '$CTRL_LOG'"
  kill -KILL "$LE_PID"; wait "$LE_PID" 2>/dev/null
  t0=$(now)
  check "c leads after the lease expires" wait_log '.msg=="became leader"' 15
  t1=$(first_ts "$CTRL_LOG" '.msg=="became leader"')
  [ -n "$t1" ] && log "  c leads $(echo "$t1 - $t0" | bc)s after b was killed"
  [ -n "$t1" ] && check "takeover within lease duration + retry" [ "$(echo "$t1 - $t0 < 7.2" | bc)" -eq 1 ]
  check "lease held by c" wait_jp confidential-system lease/confidential-operator '{.spec.holderIdentity}' replica-c 2
  check "transitions counted" [ "$(jp confidential-system lease/confidential-operator '{.spec.leaseTransitions}')" -ge 2 ]
  rc=0; ctrl_stop || rc=$?
  check "c exits cleanly (rc $rc)" [ "$rc" -eq 0 ]
  check "no sanitizer report" sanitizer_clean
  kc delete namespace e2e-le --wait=false >/dev/null
}
