/* The node-agent process (see co/nodeagent.h): an informer on its own Node, passes on the
 * thread pool, the Node writes and the restart handshake, all driven from one libuv loop.
 *
 * Level-triggered: every change of the Node, a timer or a finished restart runs a new pass, and
 * the decision is made from the pass result plus what the Node says (the protocol annotations),
 * so a restarted agent picks up where the previous one stopped. The only state kept in memory
 * is the restart this process performed (never run twice for one request id). */
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "agentnode.h"
#include "co/alloc.h"
#include "co/client.h"
#include "co/controller.h"
#include "co/error.h"
#include "co/kubeconfig.h"
#include "co/log.h"
#include "co/nodeagent.h"
#include "co/nodeproto.h"

#define MAX_CLASSES 16
#define RETRY_MS 2000
#define WRITE_RETRY_MS 5000

typedef struct agent_s {
  uv_loop_t loop;
  co_client_t client;
  co_informer_t inf;
  uv_timer_t retry, resync;
  uv_signal_t sigint, sigterm;
  uv_work_t work;
  uv_process_t proc;
  co_req_t req;
  const co_node_agent_opts_t *o;
  char *lists;
  const char *enabled[MAX_CLASSES + 1];
  co_agent_pass_in_t in;
  co_agent_pass_out_t out;
  int work_active, proc_active, proc_inited, dirty, synced, stopping, closed, exit_code;
  /* The restart this process ran: its request id, when it finished, how. */
  char restarted_id[64];
  uint64_t restarted_ms;
  int restart_failed;
  char restart_err[160];
  int failed_after_restart; /* no new request for an unchanged host after a failed check */
  int idle;                 /* the last look found nothing to do (node not enabled) */
  /* The decision of the last pass, being written. */
  const char *state;
  char *writes[2]; /* metadata merge patch, status strategic merge patch (owned) */
  int nwrite;
  int spawn_after_write;
  char unit[32];
  char change_msg[768]; /* message of the pass that wrote, until the change is in effect */
} agent_t;

static void kick(agent_t *a);
static void finish(agent_t *a);

static const co_agent_node_t *my_node(agent_t *a) {
  return (const co_agent_node_t *)co_informer_get(&a->inf, a->o->node_name);
}

static const char *ann(const co_agent_node_t *n, const char *key) {
  return co_kv_get(&n->node.annotations, key);
}

static int str_eq(const char *x, const char *y) {
  return x == NULL || y == NULL ? x == y : strcmp(x, y) == 0;
}

static void rfc3339(char *buf, size_t n) {
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- the pass on the thread pool ----------------------------------------------------------- */

static void on_pass(uv_work_t *w) {
  agent_t *a = w->data;
  co_agent_pass(&a->in, &a->out);
}

static void decide(agent_t *a);
static void maybe_run(agent_t *a);

static void on_pass_done(uv_work_t *w, int status) {
  agent_t *a = w->data;
  /* work_active stays set while deciding: a decision that writes nothing goes on to
   * maybe_run, which must not queue the next pass into a->out before it is freed here. */
  if (!a->stopping && status == 0)
    decide(a);
  co_agent_pass_free(&a->out);
  a->work_active = 0;
  if (a->stopping)
    finish(a);
  else
    maybe_run(a);
}

static void maybe_run(agent_t *a) {
  if (a->stopping || !a->dirty || a->work_active || a->nwrite > 0 || co_req_active(&a->req) ||
      a->proc_active)
    return;
  const co_agent_node_t *n = my_node(a);
  if (n == NULL)
    return;
  a->dirty = 0;
  co_agent_act_t act = co_agent_node_action(&n->node);
  if (act == CO_AGENT_ACT_NONE) {
    if (!a->idle)
      co_log(CO_LOG_INFO, "node not enabled and no removal asked: nothing to do",
             CO_S("node", a->o->node_name));
    a->idle = 1;
    if (a->o->once) {
      a->exit_code = 0;
      a->stopping = 1;
      finish(a);
    }
    return;
  }
  a->idle = 0;
  a->in.host_root = a->o->host_root;
  a->in.remove = act == CO_AGENT_ACT_REMOVE;
  a->in.enabled = a->enabled;
  a->in.containerd_major_hint = n->containerd_major;
  a->work.data = a;
  if (uv_queue_work(&a->loop, &a->work, on_pass, on_pass_done) == 0)
    a->work_active = 1;
}

static void kick(agent_t *a) {
  a->dirty = 1;
  maybe_run(a);
}

static void on_retry(uv_timer_t *t) { kick(t->data); }

/* ---- writes to the Node -------------------------------------------------------------------- */

static void write_next(agent_t *a);

static void after_writes(agent_t *a);

static void on_write_done(co_req_t *req) {
  agent_t *a = req->data;
  if (req->err != 0) {
    co_log(CO_LOG_ERROR, "node write failed", CO_S("node", a->o->node_name), CO_E(req->err),
           CO_S("detail", req->status_message ? req->status_message : ""));
    for (int i = 0; i < a->nwrite; i++)
      co_free(a->writes[i]);
    a->nwrite = 0;
    a->spawn_after_write = 0;
    co_req_cleanup(req);
    if (a->stopping) {
      finish(a);
      return;
    }
    a->dirty = 1; /* the next pass recomputes what to write */
    uv_timer_start(&a->retry, on_retry, WRITE_RETRY_MS, 0);
    return;
  }
  co_req_cleanup(req);
  write_next(a);
}

static void write_next(agent_t *a) {
  if (a->stopping) {
    for (int i = 0; i < a->nwrite; i++)
      co_free(a->writes[i]);
    a->nwrite = 0;
    finish(a);
    return;
  }
  if (a->nwrite == 0) {
    after_writes(a);
    return;
  }
  char *body = a->writes[0];
  int status = body[0] == 'S'; /* tag: 'S' status patch, 'M' metadata patch */
  memmove(a->writes, a->writes + 1, sizeof a->writes[0] * (size_t)(--a->nwrite));
  char path[512];
  snprintf(path, sizeof path, "/api/v1/nodes/%s%s", a->o->node_name, status ? "/status" : "");
  co_req_init(&a->client, &a->req);
  a->req.data = a;
  int rc = co_req_start(&a->req, status ? CO_PATCH_STRATEGIC : CO_PATCH_MERGE, path, body + 1,
                        strlen(body + 1), on_write_done);
  co_log(CO_LOG_DEBUG, "node write", CO_S("path", path), CO_S("body", body + 1));
  co_free(body);
  if (rc != 0) {
    a->req.err = rc;
    on_write_done(&a->req);
  }
}

static void queue_write(agent_t *a, char tag, cJSON *doc) {
  char *txt = cJSON_PrintUnformatted(doc);
  size_t n = strlen(txt);
  char *body = co_malloc(n + 2);
  body[0] = tag;
  memcpy(body + 1, txt, n + 1);
  cJSON_free(txt);
  a->writes[a->nwrite++] = body;
}

static void set_kv(cJSON *obj, const co_kv_t *have, const char *key, const char *want, int *n) {
  const char *cur = co_kv_get(have, key);
  if (str_eq(cur, want))
    return;
  if (want == NULL)
    cJSON_AddNullToObject(obj, key);
  else
    cJSON_AddStringToObject(obj, key, want);
  (*n)++;
}

/* ---- the restart ----------------------------------------------------------------------------- */

static void on_proc_closed(uv_handle_t *h) {
  agent_t *a = h->data;
  a->proc_active = 0;
  if (a->stopping) {
    finish(a);
    return;
  }
  kick(a);
}

static void on_proc_exit(uv_process_t *p, int64_t status, int sig) {
  agent_t *a = p->data;
  a->restarted_ms = uv_now(&a->loop);
  if (status != 0 || sig != 0) {
    a->restart_failed = 1;
    snprintf(a->restart_err, sizeof a->restart_err,
             "the restart command failed (exit status %lld, signal %d)", (long long)status, sig);
  }
  co_log(status == 0 && sig == 0 ? CO_LOG_INFO : CO_LOG_ERROR, "restart command finished",
         CO_S("node", a->o->node_name), CO_I("exit_status", status), CO_I("signal", sig));
  uv_close((uv_handle_t *)p, on_proc_closed);
}

static void spawn_restart(agent_t *a) {
  char cmd[1024];
  /* Default: this binary's host-exec (PID 1's namespaces; the image has no nsenter). */
  const char *argv_default[] = {"/proc/self/exe", "host-exec", "systemctl",
                                "restart",        a->unit,     NULL};
  const char *argv_sh[] = {"/bin/sh", "-c", cmd, NULL};
  const char **args = argv_default;
  if (a->o->restart_command != NULL && a->o->restart_command[0] != '\0') {
    snprintf(cmd, sizeof cmd, "%s", a->o->restart_command);
    args = argv_sh;
  }
  /* The command learns the unit from the environment (tests and wrappers use it). */
  setenv("CO_K3S_UNIT", a->unit, 1);
  uv_process_options_t po;
  memset(&po, 0, sizeof po);
  uv_stdio_container_t stdio[3] = {
      {UV_IGNORE, {0}}, {UV_INHERIT_FD, {.fd = 2}}, {UV_INHERIT_FD, {.fd = 2}}};
  po.file = args[0];
  po.args = (char **)(uintptr_t)args;
  po.exit_cb = on_proc_exit;
  po.stdio = stdio;
  po.stdio_count = 3;
  a->proc.data = a;
  a->restart_failed = 0;
  a->restarted_ms = 0;
  co_log(CO_LOG_INFO, "restarting k3s (granted)", CO_S("node", a->o->node_name),
         CO_S("unit", a->unit), CO_S("request", a->restarted_id), CO_S("command", args[0]));
  int rc = uv_spawn(&a->loop, &a->proc, &po);
  if (rc != 0) {
    a->restart_failed = 1;
    a->restarted_ms = uv_now(&a->loop);
    snprintf(a->restart_err, sizeof a->restart_err, "cannot run the restart command %s: %s",
             args[0], uv_strerror(rc));
    co_log(CO_LOG_ERROR, "restart command failed to start", CO_S("detail", a->restart_err));
    /* uv_spawn initialised the handle even on failure: it must be closed. */
  }
  a->proc_active = 1;
  if (rc != 0)
    uv_close((uv_handle_t *)&a->proc, on_proc_closed);
}

static void after_writes(agent_t *a) {
  if (a->spawn_after_write) {
    a->spawn_after_write = 0;
    spawn_restart(a);
    return;
  }
  if (a->o->once && !a->proc_active) {
    int bad = a->state == NULL || strcmp(a->state, CO_AGENT_FAILED) == 0 ||
              strcmp(a->state, CO_AGENT_REFUSED) == 0;
    a->exit_code = bad ? 1 : 0;
    a->stopping = 1;
    finish(a);
    return;
  }
  maybe_run(a);
}

/* ---- the decision ---------------------------------------------------------------------------- */

static void join_changes(const co_nodetemplate_result_t *res, char *dst, size_t n) {
  dst[0] = '\0';
  for (size_t i = 0; i < res->nchanged; i++) {
    size_t len = strlen(dst);
    if (len + strlen(res->changed[i]) + 2 >= n)
      break;
    snprintf(dst + len, n - len, "%s%s", i ? "," : "", res->changed[i]);
  }
}

static void decide(agent_t *a) {
  const co_agent_node_t *n = my_node(a);
  co_agent_pass_out_t *p = &a->out;
  if (n == NULL)
    return;
  int remove = a->in.remove;
  /* The Node changed its request while the pass ran (the controller cleared it after the
   * removal, say): a pass that changed nothing on the host has nothing to report there, and
   * its state written now would put back what the controller just removed. Look again. */
  if (co_agent_node_action(&n->node) != (remove ? CO_AGENT_ACT_REMOVE : CO_AGENT_ACT_PREPARE) &&
      p->res.nchanged == 0) {
    co_log(CO_LOG_DEBUG, "node changed during the pass: looking again",
           CO_S("node", a->o->node_name));
    a->dirty = 1;
    return;
  }
  const char *request = ann(n, CO_NODE_ANN_RESTART_REQUEST);
  const char *grant = ann(n, CO_NODE_ANN_RESTART_GRANT);
  const char *cur_state = ann(n, CO_NODE_ANN_AGENT_STATE);
  const char *done = remove ? CO_AGENT_REMOVED : CO_AGENT_PREPARED;
  if (p->detected)
    snprintf(a->unit, sizeof a->unit, "%s", p->k3s.unit);
  else if (a->unit[0] == '\0')
    snprintf(a->unit, sizeof a->unit, "k3s.service");

  /* A restart this process ran for the pending request (or, after an agent restart, one the
   * Node says was under way: state Restarting with the grant matching the request). */
  if (a->restarted_id[0] == '\0' && request != NULL && str_eq(request, grant) &&
      str_eq(cur_state, CO_AGENT_RESTARTING)) {
    snprintf(a->restarted_id, sizeof a->restarted_id, "%s", request);
    a->restarted_ms = uv_now(&a->loop);
  }
  int post = a->restarted_id[0] != '\0' && str_eq(request, a->restarted_id) && !a->proc_active;

  char msg[1024];
  const char *state;
  const char *want_request = NULL; /* restart-request value to publish */
  char idbuf[64];
  int retry_ms = 0, still_restarting = 0;
  /* Until the change is in effect, the condition keeps saying what the writing pass did. */
  /* What was changed only: the verification of the writing pass ("the rendered config does
   * not load ... yet") is stale once k3s restarted. */
  if (p->res.nchanged > 0)
    snprintf(a->change_msg, sizeof a->change_msg, "%s", p->res.message);
  const char *what = p->rc == 0 && a->change_msg[0] ? a->change_msg : p->message;
  snprintf(msg, sizeof msg, "%s", what);
  if (p->rc != 0) {
    state = p->refused ? CO_AGENT_REFUSED : CO_AGENT_FAILED;
    if (!p->refused)
      retry_ms = (int)(a->o->resync_s * 1000); /* transient (k3s not rendered yet...) */
  } else if (post) {
    uint64_t elapsed = uv_now(&a->loop) - a->restarted_ms;
    if (a->restart_failed) {
      state = CO_AGENT_FAILED;
      snprintf(msg, sizeof msg, "%s; %s", a->restart_err, what);
    } else if (n->node.ready && p->verified) {
      state = done;
      snprintf(msg, sizeof msg, "%s; k3s restarted (%s), node Ready", what, a->unit);
    } else if (elapsed < (uint64_t)a->o->restart_timeout_s * 1000) {
      state = CO_AGENT_RESTARTING;
      still_restarting = 1;
      want_request = request;
      snprintf(msg, sizeof msg, "k3s restarted (%s); waiting for %s%s", a->unit,
               n->node.ready ? "" : "the node Ready and ", p->verified ? "" : p->message);
      retry_ms = RETRY_MS;
    } else {
      state = CO_AGENT_FAILED;
      a->failed_after_restart = 1;
      snprintf(msg, sizeof msg, "%lds after the restart of %s: %s%s", a->o->restart_timeout_s,
               a->unit, n->node.ready ? "" : "node not Ready; ", what);
    }
    if (!still_restarting)
      a->restarted_id[0] = '\0';
  } else {
    int need = remove ? (p->res.restart_needed || request != NULL || !p->verified) : !p->verified;
    int stuck = !p->res.restart_needed && request == NULL &&
                (a->failed_after_restart || str_eq(cur_state, CO_AGENT_FAILED));
    if (!need) {
      state = done;
      if (request != NULL)
        snprintf(msg, sizeof msg, "%s; already in effect", what);
    } else if (stuck) {
      state = CO_AGENT_FAILED; /* a restart did not help before: no restart loop */
    } else {
      if (request == NULL) {
        snprintf(idbuf, sizeof idbuf, "%s-%llx", remove ? "remove" : "prepare",
                 (unsigned long long)uv_hrtime() / 1000000ULL);
        request = idbuf;
      }
      want_request = request;
      if (str_eq(grant, request)) {
        state = CO_AGENT_RESTARTING;
        snprintf(a->restarted_id, sizeof a->restarted_id, "%s", request);
        a->spawn_after_write = 1;
        snprintf(msg, sizeof msg, "%s; restarting %s (grant %s)", what, a->unit, request);
      } else {
        state = CO_AGENT_RESTART_REQUESTED;
        snprintf(msg, sizeof msg, "%s; waiting for restart-grant=%s", what, request);
      }
    }
  }
  a->state = state;
  if (strcmp(state, CO_AGENT_RESTART_REQUESTED) != 0 && strcmp(state, CO_AGENT_RESTARTING) != 0)
    a->change_msg[0] = '\0';
  /* A pass that changed nothing keeps the message of the pass that did (what was changed, or
   * why it was refused), so that a re-run writes nothing. */
  int final = strcmp(state, CO_AGENT_PREPARED) == 0 || strcmp(state, CO_AGENT_REMOVED) == 0 ||
              strcmp(state, CO_AGENT_REFUSED) == 0;
  if (final && p->res.nchanged == 0 && str_eq(n->cond_reason, state) && n->cond_message != NULL)
    snprintf(msg, sizeof msg, "%s", n->cond_message);

  /* Removed is where the controller takes over: it clears the Node's conditions and
   * annotations in two writes, in either order. A pass that sees one half done (triggered by
   * it) and has nothing to remove must not write the other half back. */
  if (remove && str_eq(cur_state, CO_AGENT_REMOVED) && strcmp(state, CO_AGENT_REMOVED) == 0 &&
      p->res.nchanged == 0 && want_request == NULL) {
    write_next(a);
    return;
  }

  /* Status first: the condition, only when it changed (lastTransitionTime when the status
   * did). The controller acts on the state annotation (on Removed it clears the Node), so the
   * condition must be written before it: a condition still in flight would land after the
   * clear. */
  cJSON *doc;
  const char *cstatus = strcmp(state, CO_AGENT_PREPARED) == 0 ? "True" : "False";
  if (!str_eq(n->cond_status, cstatus) || !str_eq(n->cond_reason, state) ||
      !str_eq(n->cond_message, msg)) {
    char now[32];
    rfc3339(now, sizeof now);
    doc = cJSON_CreateObject();
    cJSON *st = cJSON_AddObjectToObject(doc, "status");
    cJSON *conds = cJSON_AddArrayToObject(st, "conditions");
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "type", CO_NODE_COND_RUNTIME_READY);
    cJSON_AddStringToObject(c, "status", cstatus);
    cJSON_AddStringToObject(c, "reason", state);
    cJSON_AddStringToObject(c, "message", msg);
    cJSON_AddStringToObject(c, "lastHeartbeatTime", now);
    if (!str_eq(n->cond_status, cstatus))
      cJSON_AddStringToObject(c, "lastTransitionTime", now);
    cJSON_AddItemToArray(conds, c);
    queue_write(a, 'S', doc);
    cJSON_Delete(doc);
  }

  /* Metadata: hardware labels (not while removing: the controller clears them) and the
   * protocol annotations. */
  doc = cJSON_CreateObject();
  cJSON *meta = cJSON_AddObjectToObject(doc, "metadata");
  cJSON *labels = cJSON_CreateObject(), *anns = cJSON_CreateObject();
  int nl = 0, na = 0;
  if (!remove)
    for (size_t i = 0; i < p->nlabels; i++)
      set_kv(labels, &n->node.labels, p->labels[i].key, p->labels[i].value, &nl);
  set_kv(anns, &n->node.annotations, CO_NODE_ANN_AGENT_STATE, state, &na);
  set_kv(anns, &n->node.annotations, CO_NODE_ANN_RESTART_REQUEST, want_request, &na);
  if (p->rc == 0 && p->rendered_rc == 0)
    set_kv(anns, &n->node.annotations, CO_NODE_ANN_AGENT_RUNTIMES, p->rendered.handlers, &na);
  if (p->res.nchanged > 0) {
    char changes[2048];
    join_changes(&p->res, changes, sizeof changes);
    set_kv(anns, &n->node.annotations, CO_NODE_ANN_AGENT_CHANGES, changes, &na);
  }
  if (nl > 0)
    cJSON_AddItemToObject(meta, "labels", labels);
  else
    cJSON_Delete(labels);
  if (na > 0)
    cJSON_AddItemToObject(meta, "annotations", anns);
  else
    cJSON_Delete(anns);
  if (nl + na > 0)
    queue_write(a, 'M', doc);
  cJSON_Delete(doc);

  if (!str_eq(cur_state, state) || !str_eq(n->cond_message, msg))
    co_log(CO_LOG_INFO, "node agent state", CO_S("node", a->o->node_name), CO_S("state", state),
           CO_S("message", msg), CO_S("restart_request", want_request ? want_request : ""));
  if (retry_ms > 0 && !a->o->once)
    uv_timer_start(&a->retry, on_retry, (uint64_t)retry_ms, 0);
  write_next(a);
}

/* ---- informer, signals, life cycle ---------------------------------------------------------- */

static void on_add(co_informer_t *inf, const co_obj_t *o) {
  (void)o;
  kick(inf->data);
}

static void on_update(co_informer_t *inf, const co_obj_t *old, const co_obj_t *o) {
  (void)old;
  (void)o;
  kick(inf->data);
}

static void on_delete(co_informer_t *inf, const co_obj_t *o) {
  (void)o;
  co_log(CO_LOG_WARN, "own Node deleted; waiting for it to come back");
  (void)inf;
}

static void on_synced(co_informer_t *inf) {
  agent_t *a = inf->data;
  a->synced = 1;
  if (my_node(a) != NULL)
    return;
  co_log(CO_LOG_ERROR, "own Node not found", CO_S("node", a->o->node_name));
  if (a->o->once) {
    a->exit_code = 1;
    a->stopping = 1;
    finish(a);
  }
}

static void on_resync(uv_timer_t *t) { kick(t->data); }

static void on_client_closed(co_client_t *c) {
  agent_t *a = c->data;
  uv_close((uv_handle_t *)&a->sigint, NULL);
  uv_close((uv_handle_t *)&a->sigterm, NULL);
  uv_close((uv_handle_t *)&a->retry, NULL);
  uv_close((uv_handle_t *)&a->resync, NULL);
}

static void on_informer_closed(co_informer_t *inf) {
  agent_t *a = inf->data;
  co_client_close(&a->client, on_client_closed);
}

/* Closes everything once nothing is in flight (called again as each piece completes). */
static void finish(agent_t *a) {
  if (!a->stopping || a->closed || a->work_active || co_req_active(&a->req) || a->proc_active)
    return;
  a->closed = 1;
  uv_timer_stop(&a->retry);
  uv_timer_stop(&a->resync);
  co_informer_close(&a->inf, on_informer_closed);
}

static void on_signal(uv_signal_t *h, int signum) {
  agent_t *a = h->data;
  co_log(CO_LOG_INFO, "signal received", CO_S("signal", signum == SIGINT ? "SIGINT" : "SIGTERM"));
  a->stopping = 1;
  co_req_cancel(&a->req);
  finish(a);
}

void co_node_agent_opts_default(co_node_agent_opts_t *o) {
  memset(o, 0, sizeof *o);
  o->host_root = "/host";
  o->node_name = getenv("NODE_NAME");
  o->runtime_classes = "kata-qemu,kata-clh,kata-qemu-coco-dev,kata-qemu-snp,kata-qemu-tdx,gvisor";
  o->restart_timeout_s = 300;
  o->resync_s = 300;
}

static int split_classes(agent_t *a) {
  a->lists = co_strdup(a->o->runtime_classes);
  int n = 0;
  for (char *s = a->lists; s != NULL && *s != '\0';) {
    char *comma = strchr(s, ',');
    if (comma != NULL)
      *comma = '\0';
    if (*s != '\0') {
      if (n == MAX_CLASSES)
        return CO_EINVAL;
      a->enabled[n++] = s;
    }
    s = comma != NULL ? comma + 1 : NULL;
  }
  a->enabled[n] = NULL;
  return CO_OK;
}

int co_node_agent_run(const co_node_agent_opts_t *o) {
  if (o->node_name == NULL || o->node_name[0] == '\0' || strlen(o->node_name) > 253 ||
      strchr(o->node_name, '/') != NULL) {
    co_log(CO_LOG_ERROR, "--node-name (or $NODE_NAME) must name this node");
    return 2;
  }
  agent_t *a = co_calloc(1, sizeof *a);
  a->o = o;
  if (split_classes(a) != 0) {
    co_log(CO_LOG_ERROR, "invalid --runtime-classes (at most 16 names)");
    co_free(a->lists);
    co_free(a);
    return 2;
  }
  co_kubeconfig_t cfg;
  memset(&cfg, 0, sizeof cfg);
  char err[512] = "";
  int rc = co_controller_load_config(&cfg, o->kubeconfig, NULL, err, sizeof err);
  if (rc == 0) {
    uv_loop_init(&a->loop);
    rc = co_client_init(&a->loop, &a->client, &cfg, NULL, err, sizeof err);
    co_kubeconfig_free(&cfg);
    if (rc != 0)
      uv_loop_close(&a->loop);
  }
  if (rc != 0) {
    co_log(CO_LOG_ERROR, "cannot connect to the API server", CO_S("detail", err), CO_E(rc));
    co_free(a->lists);
    co_free(a);
    return 2;
  }
  a->client.data = a;
  co_log(CO_LOG_INFO, "starting node agent", CO_S("node", o->node_name),
         CO_S("host_root", o->host_root), CO_B("once", o->once),
         CO_S("restart_command", o->restart_command ? o->restart_command
                                                    : "(systemctl restart in PID 1's namespaces)"));

  static const co_informer_handlers_t handlers = {on_add, on_update, on_delete, on_synced};
  char fs[300];
  snprintf(fs, sizeof fs, "metadata.name=%s", o->node_name);
  co_informer_init(&a->client, &a->inf, &co_type_agent_node, &handlers, NULL);
  co_informer_set_field_selector(&a->inf, fs);
  a->inf.data = a;
  uv_timer_init(&a->loop, &a->retry);
  uv_timer_init(&a->loop, &a->resync);
  a->retry.data = a->resync.data = a;
  uv_signal_init(&a->loop, &a->sigint);
  uv_signal_init(&a->loop, &a->sigterm);
  a->sigint.data = a->sigterm.data = a;
  uv_signal_start(&a->sigint, on_signal, SIGINT);
  uv_signal_start(&a->sigterm, on_signal, SIGTERM);
  if (!o->once)
    uv_timer_start(&a->resync, on_resync, (uint64_t)o->resync_s * 1000,
                   (uint64_t)o->resync_s * 1000);
  co_informer_start(&a->inf);

  uv_run(&a->loop, UV_RUN_DEFAULT);
  rc = uv_loop_close(&a->loop);
  if (rc != 0)
    co_log(CO_LOG_ERROR, "event loop closed with handles still open", CO_I("rc", rc));
  int code = rc == 0 ? a->exit_code : 1;
  co_log(CO_LOG_INFO, "node agent stopped", CO_S("state", a->state ? a->state : ""),
         CO_I("exit_code", code));
  co_free(a->lists);
  co_free(a);
  return code;
}
