# Watches survive an API server restart; a 410 forces a relist and nothing is lost.

test_watch_survives_apiserver_restart() {
  kc create namespace e2e-res >/dev/null
  ctrl_start restart
  check "caches sync" wait_log '.msg=="all caches synced"' 30
  hack/cluster.sh restart apiserver >/dev/null
  local t
  t=$(now); kc -n e2e-res create deployment after-restart --image=fake --replicas=0 >/dev/null
  # The watch broke with the server: the reflector backs off (<= 1.6 s) and resumes.
  wait_event deployments add e2e-res/after-restart "$t" 5
  check "watch failure was noticed" wait_log '.msg=="watch failed" or .msg=="backing off"' 1
  check "controller still running" ctrl_alive
  local rc=0
  ctrl_stop || rc=$?
  check "clean exit after restart (rc $rc)" [ "$rc" -eq 0 ]
  check "no sanitizer report" sanitizer_clean
  kc delete namespace e2e-res --wait=false >/dev/null
}

test_relist_after_expired_resource_version() {
  kc create namespace e2e-gone >/dev/null
  kc -n e2e-gone create deployment doomed --image=fake --replicas=0 >/dev/null
  ctrl_start relist
  check "caches sync" wait_log '.msg=="all caches synced"' 30
  check "doomed listed" wait_log "$(event_filter deployments add e2e-gone/doomed)" 5
  # Freeze the controller, change the world behind its back, compact etcd past its
  # resourceVersion and restart the API server so no watch cache holds the old window.
  kill -STOP "$CTRL_PID"
  kc -n e2e-gone delete deployment doomed >/dev/null
  kc -n e2e-gone create deployment born --image=fake --replicas=0 >/dev/null
  for i in $(seq 1 5); do kc -n e2e-gone label deployment born "n=$i" --overwrite >/dev/null; done
  hack/cluster.sh compact >/dev/null
  hack/cluster.sh restart apiserver >/dev/null
  kill -CONT "$CTRL_PID"
  check "relist after 410" wait_log '.msg=="resource version expired, relisting" and .path=="/apis/apps/v1/deployments"' 40
  check "deletion missed by the watch is seen after relist" \
    wait_log "$(event_filter deployments delete e2e-gone/doomed)" 10
  check "creation missed by the watch is seen after relist" \
    wait_log "$(event_filter deployments add e2e-gone/born)" 10
  local rc=0
  ctrl_stop || rc=$?
  check "clean exit (rc $rc)" [ "$rc" -eq 0 ]
  check "no sanitizer report" sanitizer_clean
  kc delete namespace e2e-gone --wait=false >/dev/null
}
