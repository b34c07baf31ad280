/* Node preparation, controller side (see co/nodeprep.h for the contract and co/nodeproto.h for
 * the protocol with the node agent). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uthash.h>

#include "co/alloc.h"
#include "co/error.h"
#include "co/event.h"
#include "co/log.h"
#include "co/nodeprep.h"
#include "co/nodeproto.h"
#include "co/objects.h"

#define MAX_CLASSES 16
#define PATH_MAX_LEN 1024
#define WHAT_LEN 768 /* "kind/name" or "label key=value", for logs and events */
/* URL-encoded label selectors: app.kubernetes.io/managed-by=confidential-operator, and
 * app.kubernetes.io/name=confidential-operator,app.kubernetes.io/component=kata-deploy. */
#define MANAGED_BY_SELECTOR "app.kubernetes.io%2Fmanaged-by%3Dconfidential-operator"
#define KATA_DS_SELECTOR \
  "app.kubernetes.io%2Fname%3Dconfidential-operator%2Capp.kubernetes.io%2Fcomponent%3Dkata-deploy"
#define KEY_APPLY "apply"
#define KEY_NODES "nodes"
/* A probe pod that vanished from the cache this long after its creation is created again. */
#define PROBE_LOST_MS 15000
/* Blocked evictions are tried again this often. */
#define EVICT_RETRY_MS 5000

typedef struct {
  int running; /* a probe pod is (being) created and its result awaited */
  int created; /* the create request succeeded (or the pod already existed) */
  uint64_t started_ms;
  int have_result; /* ok/kernel/when/msg hold the last result */
  int ok;
  uint64_t done_ms;
  char when[32];
  char msg[320];
} probe_t;

typedef struct co__np_node {
  char *name;
  uint64_t serial; /* tells a node re-created under the same name from the one deleted */
  uint64_t min_rv; /* the cache must reach this resourceVersion (our last node write) */
  int busy;        /* a write for this node is in flight */
  int restarting;  /* seen restarting at the last pass */
  uint64_t restart_since_ms, restart_done_ms;
  int restart_timed_out;
  int unpreparing; /* we removed prepared=true: kata-deploy cleans up and restarts k3s */
  uint64_t evict_since_ms, evict_next_ms;
  int evict_blocked, evict_timed_out, evict_reported;
  char evict_msg[400];
  probe_t probes[MAX_CLASSES];
  uint64_t cond_hash;
  char cond_status[8], cond_since[32];
  UT_hash_handle hh;
} np_node_t;

typedef enum {
  OP_APPLY,
  OP_NODE,
  OP_STATUS,
  OP_EVENT,
  OP_PROBE_CREATE,
  OP_PROBE_DELETE,
  OP_EVICT,
  OP_RC_LIST,    /* the operator's RuntimeClasses, to delete those of runtimes not enabled */
  OP_RC_DELETE,  /* one of them */
  OP_KATA_DELETE /* the kata-deploy DaemonSet once no Kata class is enabled */
} op_kind_t;

typedef struct co__np_op {
  co_req_t req;
  co_nodeprep_t *np;
  op_kind_t kind;
  char pass; /* 'a' apply, 'n' nodes, 0 none (events) */
  char *node;
  uint64_t serial; /* of the node's state when the request started */
  char *what;
  int class_idx;
  struct co__np_op *prev, *next;
} op_t;

/* ---- helpers ----------------------------------------------------------------------------- */

static uint64_t now_ms(co_nodeprep_t *np) { return uv_now(np->queue.loop); }

static void rfc3339(char *out, size_t len) {
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static uint64_t fnv1a(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 1099511628211ull;
  }
  return h;
}

static int is_true(const char *v) { return v != NULL && strcmp(v, "true") == 0; }

static const char *label(const co_node_t *n, const char *k) { return co_kv_get(&n->labels, k); }
static const char *ann(const co_node_t *n, const char *k) { return co_kv_get(&n->annotations, k); }

static int same(const char *a, const char *b) {
  return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/* 1 when item is one of the comma list (may be NULL). */
static int in_list(const char *list, const char *item) {
  size_t il = strlen(item);
  while (list != NULL && *list != '\0') {
    const char *c = strchr(list, ',');
    size_t l = c ? (size_t)(c - list) : strlen(list);
    while (l > 0 && list[0] == ' ') {
      list++;
      l--;
    }
    if (l == il && strncmp(list, item, il) == 0)
      return 1;
    list = c ? c + 1 : NULL;
  }
  return 0;
}

/* k3s servers (and kubeadm-style control planes) restart last. */
static int is_server(const co_node_t *n) {
  return label(n, "node-role.kubernetes.io/control-plane") != NULL ||
         label(n, "node-role.kubernetes.io/master") != NULL ||
         label(n, "node-role.kubernetes.io/etcd") != NULL;
}

static size_t n_classes(co_nodeprep_t *np) {
  return np->opts.objs.n_classes < MAX_CLASSES ? np->opts.objs.n_classes : MAX_CLASSES;
}

static const char *class_at(co_nodeprep_t *np, size_t i) { return np->opts.objs.classes[i]; }

static int any_kata(co_nodeprep_t *np) {
  for (size_t i = 0; i < n_classes(np); i++) {
    co_class_info_t ci;
    co_class_info(class_at(np, i), &ci);
    if (ci.kata)
      return 1;
  }
  return 0;
}

static np_node_t *state_get(co_nodeprep_t *np, const char *name) {
  np_node_t *s = NULL;
  HASH_FIND_STR(np->state, name, s);
  if (s == NULL) {
    s = co_calloc(1, sizeof(*s));
    s->name = co_strdup(name);
    s->serial = ++np->node_serial;
    HASH_ADD_KEYPTR(hh, np->state, s->name, strlen(s->name), s);
  }
  return s;
}

static uint64_t rv_num(const char *rv) { return rv ? strtoull(rv, NULL, 10) : 0; }

/* ---- requests ---------------------------------------------------------------------------- */

static void op_free(op_t *op) {
  co_nodeprep_t *np = op->np;
  if (op->prev)
    op->prev->next = op->next;
  else if (np->ops == op)
    np->ops = op->next;
  if (op->next)
    op->next->prev = op->prev;
  co_req_cleanup(&op->req);
  co_free(op->node);
  co_free(op->what);
  co_free(op);
}

static void maybe_closed(co_nodeprep_t *np);
static void on_op_done(co_req_t *req);
static int kata_node(const co_node_t *n);

/* Starts a request; body is owned (freed here). Returns 0 when started. */
static int start_op(co_nodeprep_t *np, op_kind_t kind, char pass, co_verb_t verb, const char *path,
                    char *body, const char *node, const char *what, int class_idx) {
  op_t *op = co_calloc(1, sizeof(*op));
  op->np = np;
  op->kind = kind;
  op->pass = pass;
  op->node = node ? co_strdup(node) : NULL;
  op->what = co_strdup(what);
  op->class_idx = class_idx;
  co_req_init(np->client, &op->req);
  op->req.data = op;
  if (kind == OP_EVICT)
    op->req.no_retry = 1;
  int rc = co_req_start(&op->req, verb, path, body, body ? strlen(body) : 0, on_op_done);
  co_free(body);
  if (rc != 0) {
    co_log(CO_LOG_WARN, "cannot start request", CO_S("what", what), CO_E(rc));
    co_req_cleanup(&op->req);
    co_free(op->node);
    co_free(op->what);
    co_free(op);
    return rc;
  }
  np->in_flight++;
  if (pass == 'n')
    np->pass_pending++;
  else if (pass == 'a')
    np->apply_pending++;
  op->next = np->ops;
  if (op->next)
    op->next->prev = op;
  np->ops = op;
  if (node != NULL) {
    np_node_t *st = state_get(np, node);
    op->serial = st->serial;
    if (pass == 'n')
      st->busy = 1;
  }
  return 0;
}

static void node_event(co_nodeprep_t *np, const co_node_t *n, const char *type, const char *reason,
                       const char *action, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static void node_event(co_nodeprep_t *np, const co_node_t *n, const char *type, const char *reason,
                       const char *action, const char *fmt, ...) {
  if (np->closing)
    return;
  char note[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(note, sizeof(note), fmt, ap);
  va_end(ap);
  co_log(strcmp(type, "Warning") == 0 ? CO_LOG_WARN : CO_LOG_INFO, "node preparation",
         CO_S("node", n->meta.name), CO_S("reason", reason), CO_S("detail", note));
  char uid[CO_UID_STR_LEN];
  co_event_t e = {np->instance, type,         reason,
                  action,       "v1",         "Node",
                  "",           n->meta.name, co_uid_str(&n->meta.uid, uid),
                  note};
  char path[PATH_MAX_LEN];
  char *body = co_event_body(&e, path, sizeof(path));
  if (start_op(np, OP_EVENT, 0, CO_POST, path, body, NULL, reason, -1) == 0)
    np->stats.events++;
}

/* An event about a RuntimeClass (cluster-scoped: it lives in "default"). */
static void class_event(co_nodeprep_t *np, const char *class, const char *type, const char *reason,
                        const char *note) {
  if (np->closing)
    return;
  co_event_t e = {np->instance,   type, reason, "Delete", "node.k8s.io/v1",
                  "RuntimeClass", "",   class,  NULL,     note};
  char path[PATH_MAX_LEN];
  char *body = co_event_body(&e, path, sizeof(path));
  if (start_op(np, OP_EVENT, 0, CO_POST, path, body, NULL, reason, -1) == 0)
    np->stats.events++;
}

/* The answer to the list of the operator's RuntimeClasses: deletes those of classes not enabled
 * that are provably the operator's (co_nodeobj_class_is_ours), each under a uid and
 * resourceVersion precondition (a class changed since the list is not deleted blindly).
 * Returns how many deletes could not be started. */
static int sweep_classes(co_nodeprep_t *np, co_req_t *req) {
  cJSON *list = cJSON_ParseWithLength(req->body.data, req->body.len);
  int failed = list == NULL;
  const cJSON *item;
  cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(list, "items")) {
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(item, "metadata");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(md, "name");
    const cJSON *uid = cJSON_GetObjectItemCaseSensitive(md, "uid");
    const cJSON *rv = cJSON_GetObjectItemCaseSensitive(md, "resourceVersion");
    if (!cJSON_IsString(name) || !cJSON_IsString(uid) || !cJSON_IsString(rv) ||
        co_nodeobj_class_enabled(&np->opts.objs, name->valuestring))
      continue;
    if (!co_nodeobj_class_is_ours(item, CO_NODEOBJ_FIELD_MANAGER)) {
      co_log(CO_LOG_INFO,
             "RuntimeClass of a runtime not enabled left alone: another manager set its handler",
             CO_S("name", name->valuestring));
      continue;
    }
    cJSON *opts = cJSON_CreateObject();
    cJSON_AddStringToObject(opts, "apiVersion", "v1");
    cJSON_AddStringToObject(opts, "kind", "DeleteOptions");
    cJSON *pre = cJSON_AddObjectToObject(opts, "preconditions");
    cJSON_AddStringToObject(pre, "uid", uid->valuestring);
    cJSON_AddStringToObject(pre, "resourceVersion", rv->valuestring);
    char *body = cJSON_PrintUnformatted(opts);
    cJSON_Delete(opts);
    char path[PATH_MAX_LEN], what[WHAT_LEN];
    snprintf(path, sizeof(path), "/apis/node.k8s.io/v1/runtimeclasses/%s", name->valuestring);
    snprintf(what, sizeof(what), "RuntimeClass/%s", name->valuestring);
    if (start_op(np, OP_RC_DELETE, 'a', CO_DELETE, path, body, NULL, what, -1) != 0)
      failed++;
  }
  cJSON_Delete(list);
  return failed;
}

static void pass_finished(co_nodeprep_t *np, const char *key, int failed) {
  if (failed && !np->closing)
    co_wq_add_rate_limited(&np->queue, key);
  else
    co_wq_forget(&np->queue, key);
  co_wq_done(&np->queue, key);
}

static void on_op_done(co_req_t *req) {
  op_t *op = req->data;
  co_nodeprep_t *np = op->np;
  np->in_flight--;
  np_node_t *st = NULL;
  if (op->node != NULL)
    HASH_FIND_STR(np->state, op->node, st);
  if (st != NULL && st->serial != op->serial)
    st = NULL; /* the node was deleted (and maybe re-created) meanwhile: not this state's answer */
  if (st != NULL && op->pass == 'n')
    st->busy = 0;
  int err = req->err, failed = 0;
  switch (op->kind) {
  case OP_EVENT:
    if (err != 0 && err != CO_ECANCELED)
      co_log(CO_LOG_WARN, "cannot record event", CO_E(err), CO_S("reason", op->what));
    break;
  case OP_NODE:
  case OP_STATUS:
    if (err == 0) {
      np->stats.node_writes++;
      /* Labels and annotations are in the cached projection, conditions are not: only a
       * metadata write must be seen by the cache before the next decision about this node. */
      cJSON *o = op->kind == OP_NODE ? cJSON_ParseWithLength(req->body.data, req->body.len) : NULL;
      const cJSON *rv = cJSON_GetObjectItemCaseSensitive(
          cJSON_GetObjectItemCaseSensitive(o, "metadata"), "resourceVersion");
      if (st != NULL && cJSON_IsString(rv))
        st->min_rv = rv_num(rv->valuestring);
      cJSON_Delete(o);
      co_log(CO_LOG_INFO, "node written", CO_S("node", op->node), CO_S("what", op->what));
    } else if (err != CO_ECANCELED && err != CO_ENOTFOUND) {
      failed = 1;
    }
    break;
  case OP_APPLY:
    if (err == 0) {
      np->stats.applies++;
      co_log(CO_LOG_DEBUG, "applied", CO_S("object", op->what));
    } else if (err == CO_ECONFLICT) {
      /* Another manager owns a field with another value (e.g. someone else's RuntimeClass of
       * that name): it is left alone, never taken over. */
      co_log(CO_LOG_WARN, "object owned by another manager, left unchanged",
             CO_S("object", op->what), CO_S("message", req->status_message));
    } else if (err != CO_ECANCELED) {
      failed = 1;
    }
    break;
  case OP_PROBE_CREATE:
    if (st != NULL && op->class_idx >= 0) {
      probe_t *p = &st->probes[op->class_idx];
      if (err == 0 || err == CO_EEXIST || err == CO_ECONFLICT) {
        p->created = 1;
        p->started_ms = now_ms(np);
        np->stats.probes++;
      } else {
        p->running = 0;
        if (err != CO_ECANCELED)
          failed = 1;
      }
    }
    break;
  case OP_PROBE_DELETE:
    if (err != 0 && err != CO_ENOTFOUND && err != CO_ECANCELED)
      failed = 1;
    break;
  case OP_RC_LIST:
    if (err == 0)
      np->classes_swept = sweep_classes(np, req) == 0;
    else if (err != CO_ECANCELED)
      failed = 1;
    break;
  case OP_RC_DELETE:
    if (err == 0) {
      co_log(CO_LOG_INFO, "RuntimeClass of a runtime no longer enabled deleted",
             CO_S("object", op->what));
      class_event(np, op->what + strlen("RuntimeClass/"), "Normal", "RuntimeClassDeleted",
                  "runtime class no longer enabled (--runtime-classes): the operator deleted "
                  "the RuntimeClass it had created");
    } else if (err != CO_ENOTFOUND && err != CO_ECANCELED) {
      np->classes_swept = 0; /* changed meanwhile (precondition) or failed: list again */
      failed = 1;
    }
    break;
  case OP_KATA_DELETE:
    if (err == 0) {
      np->kata_ds_removed = 1;
      cJSON *l = cJSON_ParseWithLength(req->body.data, req->body.len);
      int n = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(l, "items"));
      cJSON_Delete(l);
      if (n > 0)
        co_log(CO_LOG_INFO, "no Kata runtime class enabled: the kata-deploy DaemonSet deleted",
               CO_S("namespace", np->opts.objs.ns));
    } else if (err != CO_ECANCELED) {
      failed = 1;
    }
    break;
  case OP_EVICT:
    if (st == NULL)
      break;
    if (err == 0) {
      np->stats.evictions++;
      co_log(CO_LOG_INFO, "pod evicted", CO_S("node", op->node), CO_S("pod", op->what));
    } else if (err == CO_ETOOMANY) {
      st->evict_blocked = 1;
      snprintf(st->evict_msg, sizeof(st->evict_msg), "eviction of pod %s is blocked: %s", op->what,
               req->status_message ? req->status_message : "429 Too Many Requests");
    } else if (err != CO_ENOTFOUND && err != CO_ECANCELED) {
      snprintf(st->evict_msg, sizeof(st->evict_msg), "eviction of pod %s failed: %s", op->what,
               req->status_message ? req->status_message : co_strerror(err));
    }
    break;
  }
  if (failed && op->pass == 'a')
    np->apply_failed = 1;
  if (failed) {
    np->stats.write_errors++;
    np->pass_failed = 1;
    co_log(CO_LOG_WARN, "node preparation write failed", CO_S("what", op->what),
           CO_S("node", op->node), CO_E(err), CO_I("status", req->http_status),
           CO_S("message", req->status_message));
  }
  char pass = op->pass;
  op_free(op);
  if (pass == 'n' && --np->pass_pending == 0) {
    int f = np->pass_failed;
    np->pass_failed = 0;
    /* A pass that wrote looks again soon: steps it deferred (one write per node) go on even
     * when the write changes nothing the informers report. */
    if (!np->closing && !f)
      co_wq_add_after(&np->queue, KEY_NODES, 500);
    pass_finished(np, KEY_NODES, f);
  } else if (pass == 'a' && --np->apply_pending == 0) {
    int f = np->apply_failed;
    np->apply_failed = 0;
    pass_finished(np, KEY_APPLY, f);
  }
  maybe_closed(np);
}

/* ---- apply: DaemonSets and RuntimeClasses ------------------------------------------------- */

static void apply_obj(co_nodeprep_t *np, cJSON *obj, const char *path, int force) {
  char full[PATH_MAX_LEN + 16]; /* path plus the force query */
  snprintf(full, sizeof(full), "%s%s", path, force ? "?force=true" : "?force=false");
  const char *name =
      cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(obj, "metadata"), "name")
          ->valuestring;
  char what[WHAT_LEN];
  snprintf(what, sizeof(what), "%s/%s", cJSON_GetObjectItemCaseSensitive(obj, "kind")->valuestring,
           name);
  char *body = cJSON_PrintUnformatted(obj);
  cJSON_Delete(obj);
  start_op(np, OP_APPLY, 'a', CO_APPLY, full, body, NULL, what, -1);
}

static void reconcile_apply(co_nodeprep_t *np) {
  const co_nodeobj_opts_t *o = &np->opts.objs;
  char path[PATH_MAX_LEN];
  /* Our DaemonSets: force, so a manual edit is taken back (drift repair). */
  snprintf(path, sizeof(path), "/apis/apps/v1/namespaces/%s/daemonsets/" CO_NODE_AGENT_DS, o->ns);
  apply_obj(np, co_nodeobj_agent_ds(o), path, 1);
  if (any_kata(np)) {
    snprintf(path, sizeof(path), "/apis/apps/v1/namespaces/%s/daemonsets/" CO_KATA_DEPLOY_DS,
             o->ns);
    apply_obj(np, co_nodeobj_kata_deploy_ds(o), path, 1);
  }
  /* RuntimeClasses: no force, so a class of that name managed by someone else with other
   * values is never taken over (the conflict is logged). */
  for (size_t i = 0; i < n_classes(np); i++) {
    for (int probe = 0; probe < 2; probe++) {
      snprintf(path, sizeof(path), "/apis/node.k8s.io/v1/runtimeclasses/%s%s",
               probe ? CO_PROBE_CLASS_PREFIX : "", class_at(np, i));
      apply_obj(np, co_nodeobj_runtimeclass(class_at(np, i), probe), path, 0);
    }
  }
  /* The classes this operator created for runtimes that are no longer enabled (the set only
   * changes with a restart: once swept, done). */
  if (!np->classes_swept)
    start_op(np, OP_RC_LIST, 'a', CO_GET,
             "/apis/node.k8s.io/v1/runtimeclasses?labelSelector=" MANAGED_BY_SELECTOR, NULL, NULL,
             "list RuntimeClasses", -1);
  if (!any_kata(np) && !np->kata_ds_removed) {
    int kata_nodes = 0;
    for (const co_obj_t *n = co_informer_first(np->nodes); n != NULL; n = co_informer_next(n))
      kata_nodes += kata_node((const co_node_t *)n);
    if (kata_nodes == 0) {
      /* By label, so that only the operator's DaemonSet of that name can go. */
      snprintf(path, sizeof(path), "/apis/apps/v1/namespaces/%s/daemonsets?labelSelector=%s", o->ns,
               KATA_DS_SELECTOR);
      start_op(np, OP_KATA_DELETE, 'a', CO_DELETE, path, NULL, NULL, "DaemonSet/" CO_KATA_DEPLOY_DS,
               -1);
    } else {
      co_log(CO_LOG_DEBUG, "no Kata class enabled: kata-deploy stays until it left every node",
             CO_I("nodes", kata_nodes));
    }
  }
  if (np->apply_pending == 0)
    co_wq_done(&np->queue, KEY_APPLY);
}

/* ---- node writes -------------------------------------------------------------------------- */

typedef struct {
  cJSON *root, *labels, *annotations;
} mpatch_t;

static void mp_init(mpatch_t *p) {
  p->root = cJSON_CreateObject();
  cJSON *md = cJSON_AddObjectToObject(p->root, "metadata");
  p->labels = cJSON_AddObjectToObject(md, "labels");
  p->annotations = cJSON_AddObjectToObject(md, "annotations");
}

static void mp_set(cJSON *map, const char *k, const char *v) {
  if (v != NULL)
    cJSON_AddStringToObject(map, k, v);
  else
    cJSON_AddNullToObject(map, k);
}

static void mp_send(co_nodeprep_t *np, mpatch_t *p, const co_node_t *n, const char *what) {
  char path[PATH_MAX_LEN];
  snprintf(path, sizeof(path), "/api/v1/nodes/%s", n->meta.name);
  char *body = cJSON_PrintUnformatted(p->root);
  cJSON_Delete(p->root);
  start_op(np, OP_NODE, 'n', CO_PATCH_MERGE, path, body, n->meta.name, what, -1);
}

/* One label or annotation change as its own patch. */
static void set_label(co_nodeprep_t *np, const co_node_t *n, const char *k, const char *v) {
  mpatch_t p;
  mp_init(&p);
  mp_set(p.labels, k, v);
  char what[WHAT_LEN];
  snprintf(what, sizeof(what), "label %s=%s", k, v ? v : "(removed)");
  mp_send(np, &p, n, what);
}

static void set_ann(co_nodeprep_t *np, const co_node_t *n, const char *k, const char *v) {
  mpatch_t p;
  mp_init(&p);
  mp_set(p.annotations, k, v);
  char what[WHAT_LEN];
  snprintf(what, sizeof(what), "annotation %s=%s", k, v ? v : "(removed)");
  mp_send(np, &p, n, what);
}

/* Strategic merge on nodes/status: conditions merge by type, the kubelet's stay. */
static void write_condition(co_nodeprep_t *np, const co_node_t *n, np_node_t *st, int status,
                            const char *reason, const char *msg) {
  const char *s = status ? "True" : "False";
  char buf[2400];
  snprintf(buf, sizeof(buf), "%s|%s|%s", s, reason, msg);
  uint64_t h = fnv1a(buf);
  if (h == st->cond_hash)
    return;
  if (strcmp(st->cond_status, s) != 0 || st->cond_since[0] == '\0') {
    rfc3339(st->cond_since, sizeof(st->cond_since));
    snprintf(st->cond_status, sizeof(st->cond_status), "%s", s);
  }
  char now[32];
  rfc3339(now, sizeof(now));
  cJSON *root = cJSON_CreateObject();
  cJSON *c = cJSON_CreateObject();
  cJSON_AddItemToArray(
      cJSON_AddArrayToObject(cJSON_AddObjectToObject(root, "status"), "conditions"), c);
  cJSON_AddStringToObject(c, "type", CO_NODE_COND_SANDBOX_VERIFIED);
  cJSON_AddStringToObject(c, "status", s);
  cJSON_AddStringToObject(c, "reason", reason);
  cJSON_AddStringToObject(c, "message", msg);
  cJSON_AddStringToObject(c, "lastHeartbeatTime", now);
  cJSON_AddStringToObject(c, "lastTransitionTime", st->cond_since);
  char *body = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  char path[PATH_MAX_LEN];
  snprintf(path, sizeof(path), "/api/v1/nodes/%s/status", n->meta.name);
  if (start_op(np, OP_STATUS, 'n', CO_PATCH_STRATEGIC, path, body, n->meta.name,
               "condition " CO_NODE_COND_SANDBOX_VERIFIED, -1) == 0)
    st->cond_hash = h;
}

/* ---- restarts ----------------------------------------------------------------------------- */

static int kata_done(co_nodeprep_t *np, const co_node_t *n) {
  if (!n->ready)
    return 0;
  if (is_true(label(n, CO_KATA_RUNTIME_LABEL)))
    return 1;
  for (size_t i = 0; i < n_classes(np); i++) {
    co_class_info_t ci;
    co_class_info(class_at(np, i), &ci);
    if (ci.kata && in_list(n->runtime_handlers, ci.handler))
      return 1;
  }
  return 0;
}

static int enabled(const co_node_t *n) { return is_true(label(n, CO_NODE_LABEL_ENABLED)); }

/* kata-deploy runs (or cleans up) on n. */
static int kata_node(const co_node_t *n) {
  return is_true(label(n, CO_NODE_LABEL_PREPARED)) || label(n, CO_KATA_RUNTIME_LABEL) != NULL;
}

/* Why n counts as restarting (static string), or NULL. */
static const char *restarting(co_nodeprep_t *np, const co_node_t *n, np_node_t *st) {
  const char *req = ann(n, CO_NODE_ANN_RESTART_REQUEST), *grant = ann(n, CO_NODE_ANN_RESTART_GRANT);
  if (same(req, grant))
    return "the node agent restarts k3s";
  if (is_true(label(n, CO_NODE_LABEL_PREPARED)) && !kata_done(np, n))
    return "kata-deploy installs and restarts k3s";
  if (st->unpreparing && label(n, CO_KATA_RUNTIME_LABEL) != NULL)
    return "kata-deploy cleans up and restarts k3s";
  if (st->unpreparing && !n->ready)
    return "kata-deploy cleans up and restarts k3s";
  return NULL;
}

static int want_prepared(co_nodeprep_t *np, const co_node_t *n) {
  return enabled(n) && any_kata(np) && same(ann(n, CO_NODE_ANN_AGENT_STATE), CO_AGENT_PREPARED) &&
         is_true(label(n, CO_DOMAIN "/kvm")) && !is_true(label(n, CO_NODE_LABEL_PREPARED));
}

typedef struct {
  const co_node_t *n;
  int server;
  int kind; /* 'g' grant the agent's request, 'p' label prepared, 'u' unlabel prepared */
} cand_t;

static int cand_cmp(const void *a, const void *b) {
  const cand_t *x = a, *y = b;
  if (x->server != y->server)
    return x->server - y->server;
  return strcmp(x->n->meta.name, y->n->meta.name);
}

/* ---- removal ------------------------------------------------------------------------------ */

static int is_sandbox_class(co_nodeprep_t *np, const char *rc) {
  if (rc == NULL)
    return 0;
  if (strncmp(rc, CO_PROBE_CLASS_PREFIX, strlen(CO_PROBE_CLASS_PREFIX)) == 0)
    return 1;
  for (size_t i = 0; i < n_classes(np); i++)
    if (strcmp(rc, class_at(np, i)) == 0)
      return 1;
  return 0;
}

/* Evicts the sandboxed pods on n; returns how many are still there. */
static int evict_pods(co_nodeprep_t *np, const co_node_t *n, np_node_t *st, uint64_t now) {
  int left = 0, sent = 0;
  int retry = now >= st->evict_next_ms;
  for (const co_obj_t *o = co_informer_first(np->pods); o != NULL; o = co_informer_next(o)) {
    const co_pod_t *p = (const co_pod_t *)o;
    if (p->terminal || !same(p->node_name, n->meta.name) || !is_sandbox_class(np, p->runtime_class))
      continue;
    left++;
    if (o->deleting || !retry)
      continue;
    char path[PATH_MAX_LEN];
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods/%s/eviction", o->ns, o->name);
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "apiVersion", "policy/v1");
    cJSON_AddStringToObject(ev, "kind", "Eviction");
    cJSON *md = cJSON_AddObjectToObject(ev, "metadata");
    cJSON_AddStringToObject(md, "name", o->name);
    cJSON_AddStringToObject(md, "namespace", o->ns);
    char *body = cJSON_PrintUnformatted(ev);
    cJSON_Delete(ev);
    if (start_op(np, OP_EVICT, 'n', CO_POST, path, body, n->meta.name, o->key, -1) == 0)
      sent++;
  }
  if (sent > 0) {
    st->evict_blocked = 0; /* the answers say again */
    st->evict_next_ms = now + EVICT_RETRY_MS;
  }
  return left;
}

/* Clears everything of the operator on n: its conditions, labels and annotations, agent=true
 * last (in the same patch). */
static void clear_node(co_nodeprep_t *np, const co_node_t *n) {
  cJSON *root = cJSON_CreateObject();
  cJSON *conds = cJSON_AddArrayToObject(cJSON_AddObjectToObject(root, "status"), "conditions");
  const char *types[] = {CO_NODE_COND_RUNTIME_READY, CO_NODE_COND_SANDBOX_VERIFIED};
  for (int i = 0; i < 2; i++) {
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "type", types[i]);
    cJSON_AddStringToObject(c, "$patch", "delete");
    cJSON_AddItemToArray(conds, c);
  }
  char *body = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  char path[PATH_MAX_LEN];
  snprintf(path, sizeof(path), "/api/v1/nodes/%s/status", n->meta.name);
  start_op(np, OP_STATUS, 'n', CO_PATCH_STRATEGIC, path, body, n->meta.name, "clear conditions",
           -1);
  mpatch_t p;
  mp_init(&p);
  CO_KV_FOREACH(&n->labels, kv) {
    const char *eq = strchr(kv, '=');
    size_t kl = eq ? (size_t)(eq - kv) : strlen(kv);
    char k[320];
    snprintf(k, sizeof(k), "%.*s", (int)kl, kv);
    if (strncmp(k, CO_DOMAIN "/", strlen(CO_DOMAIN) + 1) == 0 ||
        strncmp(k, CO_NODE_RUNTIME_LABEL_PREFIX, strlen(CO_NODE_RUNTIME_LABEL_PREFIX)) == 0)
      mp_set(p.labels, k, NULL);
  }
  CO_KV_FOREACH(&n->annotations, kv) {
    const char *eq = strchr(kv, '=');
    size_t kl = eq ? (size_t)(eq - kv) : strlen(kv);
    char k[320];
    snprintf(k, sizeof(k), "%.*s", (int)kl, kv);
    mp_set(p.annotations, k, NULL);
  }
  mp_send(np, &p, n, "clear labels and annotations");
}

/* Only nodes the controller took in (agent=true) are taken back out: runtime labels someone
 * else set by hand on a node never enabled are not ours to remove. */
static int has_operator_state(const co_node_t *n) { return is_true(label(n, CO_NODE_LABEL_AGENT)); }

/* Adds to p the removal of every runtime label of n whose class is not enabled (all == 0) or of
 * every runtime label (all == 1); writes the classes, comma separated, to classes. Returns how
 * many. */
static int drop_runtime_labels(co_nodeprep_t *np, const co_node_t *n, int all, mpatch_t *p,
                               char *classes, size_t len) {
  int count = 0;
  size_t cl = 0;
  classes[0] = '\0';
  CO_KV_FOREACH(&n->labels, kv) {
    const char *eq = strchr(kv, '=');
    char k[320];
    snprintf(k, sizeof(k), "%.*s", (int)(eq ? (size_t)(eq - kv) : strlen(kv)), kv);
    const char *class = co_nodeobj_stale_runtime_label(&np->opts.objs, k);
    if (all && class == NULL &&
        strncmp(k, CO_NODE_RUNTIME_LABEL_PREFIX, strlen(CO_NODE_RUNTIME_LABEL_PREFIX)) == 0)
      class = k + strlen(CO_NODE_RUNTIME_LABEL_PREFIX);
    if (class == NULL)
      continue;
    if (count++ == 0)
      mp_init(p);
    mp_set(p->labels, k, NULL);
    int w = snprintf(classes + cl, len - cl, "%s%s", cl ? "," : "", class);
    if (w > 0 && (size_t)w < len - cl)
      cl += (size_t)w;
  }
  return count;
}

/* The removal steps for a node whose enabled label is gone; one write per pass. Returns the
 * delay after which the pass should look again (0: an informer event will come). */
static uint64_t remove_node(co_nodeprep_t *np, const co_node_t *n, np_node_t *st, uint64_t now,
                            int *want_unprepare) {
  /* 1. Nothing new lands here: the runtime labels go first (those of classes no longer
   * enabled too). */
  mpatch_t p;
  char classes[400];
  if (drop_runtime_labels(np, n, 1, &p, classes, sizeof(classes)) > 0) {
    mp_send(np, &p, n, "remove runtime labels");
    node_event(np, n, "Normal", "RemovalStarted", "Remove",
               "the enabled label is gone: runtime labels removed (%s), sandboxed pods are "
               "evicted next",
               classes);
    return 0;
  }
  /* 2. Sandboxed pods leave through the Eviction API (PodDisruptionBudgets hold). */
  if (st->evict_since_ms == 0)
    st->evict_since_ms = now;
  int left = evict_pods(np, n, st, now);
  if (left > 0) {
    int timed_out = now - st->evict_since_ms >= (uint64_t)np->opts.eviction_timeout_s * 1000;
    if (st->evict_blocked || timed_out) {
      const char *reason = timed_out ? "EvictionTimedOut" : "EvictionBlocked";
      char msg[700];
      snprintf(msg, sizeof(msg), "%d sandboxed pod(s) still on the node%s; %s", left,
               timed_out ? " after the eviction timeout (never forced: relax the "
                           "PodDisruptionBudget or move the pods)"
                         : "",
               st->evict_msg[0] ? st->evict_msg : "waiting for the pods to terminate");
      write_condition(np, n, st, 0, reason, msg);
      if (st->evict_reported != (timed_out ? 2 : 1)) {
        st->evict_reported = timed_out ? 2 : 1;
        node_event(np, n, "Warning", reason, "Evict", "%s", msg);
      }
    }
    return EVICT_RETRY_MS;
  }
  if (st->evict_reported) {
    st->evict_reported = 0;
    node_event(np, n, "Normal", "Evicted", "Evict", "no sandboxed pod left on the node");
  }
  st->evict_blocked = 0;
  st->evict_msg[0] = '\0';
  /* 3. kata-deploy leaves (its cleanup restarts k3s: a granted restart). */
  if (is_true(label(n, CO_NODE_LABEL_PREPARED))) {
    *want_unprepare = 1;
    return 0;
  }
  if (st->unpreparing && (label(n, CO_KATA_RUNTIME_LABEL) != NULL || !n->ready))
    return 0;
  st->unpreparing = 0;
  /* 4. The agent removes what it added. */
  const char *state = ann(n, CO_NODE_ANN_AGENT_STATE);
  if (state != NULL && !same(state, CO_AGENT_REMOVED)) {
    if (!same(ann(n, CO_NODE_ANN_AGENT_ACTION), CO_NODE_AGENT_ACTION_REMOVE)) {
      set_ann(np, n, CO_NODE_ANN_AGENT_ACTION, CO_NODE_AGENT_ACTION_REMOVE);
      node_event(np, n, "Normal", "AgentRemoving", "Remove",
                 "sandboxed pods evicted: the node agent removes what it added");
    }
    return 0;
  }
  /* 5. Removed (or the agent never changed anything): clear the node. */
  if (ann(n, CO_NODE_ANN_RESTART_REQUEST) != NULL && state != NULL)
    return 0; /* the agent still restarts */
  clear_node(np, n);
  node_event(np, n, "Normal", "Cleared", "Remove",
             "the node agent removed its changes: the operator's labels, annotations and "
             "conditions are cleared");
  memset(st->probes, 0, sizeof(st->probes));
  st->cond_hash = 0;
  st->evict_since_ms = 0;
  st->evict_reported = 0;
  return 0;
}

/* ---- verification and probes ------------------------------------------------------------- */

static void probe_key(co_nodeprep_t *np, const char *node, const char *class, char *out,
                      size_t len) {
  char name[64];
  co_nodeobj_probe_name(node, class, name, sizeof(name));
  snprintf(out, len, "%s/%s", np->opts.objs.ns, name);
}

static void delete_probe(co_nodeprep_t *np, const char *node, const char *class) {
  char name[64], path[PATH_MAX_LEN];
  co_nodeobj_probe_name(node, class, name, sizeof(name));
  snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods/%s?gracePeriodSeconds=0",
           np->opts.objs.ns, name);
  start_op(np, OP_PROBE_DELETE, 'n', CO_DELETE, path, NULL, node, name, -1);
}

static void create_probe(co_nodeprep_t *np, const co_node_t *n, size_t i, probe_t *p,
                         uint64_t now) {
  char path[PATH_MAX_LEN];
  snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods", np->opts.objs.ns);
  cJSON *pod =
      co_nodeobj_probe_pod(&np->opts.objs, n->meta.name, class_at(np, i), np->opts.probe_timeout_s);
  char *body = cJSON_PrintUnformatted(pod);
  cJSON_Delete(pod);
  p->running = 1;
  p->created = 0;
  p->started_ms = now;
  char what[WHAT_LEN];
  snprintf(what, sizeof(what), "probe %s", class_at(np, i));
  if (start_op(np, OP_PROBE_CREATE, 'n', CO_POST, path, body, n->meta.name, what, (int)i) != 0)
    p->running = 0;
}

static void record(probe_t *p, int ok, const char *msg, uint64_t now) {
  p->running = 0;
  p->have_result = 1;
  p->ok = ok;
  p->done_ms = now;
  rfc3339(p->when, sizeof(p->when));
  snprintf(p->msg, sizeof(p->msg), "%s", msg);
}

/* Runs the probe state machine of class i on n; may start one write. Returns a delay after
 * which to look again, or 0. */
static uint64_t probe_step(co_nodeprep_t *np, const co_node_t *n, np_node_t *st, size_t i,
                           uint64_t now, int *wrote) {
  probe_t *p = &st->probes[i];
  const char *class = class_at(np, i);
  char key[400];
  probe_key(np, n->meta.name, class, key, sizeof(key));
  const co_probe_pod_t *pod = (const co_probe_pod_t *)co_informer_get(np->probes, key);
  uint64_t interval = (uint64_t)np->opts.probe_interval_s * 1000;
  uint64_t timeout = (uint64_t)np->opts.probe_timeout_s * 1000;
  if (!p->running) {
    int due = !p->have_result || p->done_ms < st->restart_done_ms || now - p->done_ms >= interval;
    if (!due)
      return p->done_ms + interval - now;
    if (pod != NULL) {
      if (pod->meta.deleting || p->have_result)
        return 1000; /* the last probe pod is still going away */
      /* Left over from before a controller restart: adopt it. */
      p->running = 1;
      p->created = 1;
      p->started_ms = now;
    } else {
      create_probe(np, n, i, p, now);
      *wrote = 1;
      return 0;
    }
  }
  if (!p->created)
    return 0; /* the create request is in flight */
  if (pod == NULL) {
    if (now - p->started_ms > PROBE_LOST_MS)
      p->running = 0; /* deleted by someone: probe again */
    return 1000;
  }
  char msg[320], kernel[64];
  if (pod->finished) {
    int ok = co_probe_verdict(pod, n->kernel_version, kernel, sizeof(kernel), msg, sizeof(msg));
    record(p, ok, msg, now);
    node_event(np, n, ok ? "Normal" : "Warning", ok ? "ProbeSucceeded" : "ProbeFailed", "Probe",
               "%s: %s", class, msg);
  } else if (now - p->started_ms >= timeout) {
    snprintf(msg, sizeof(msg), "probe pod did not finish within %lds (%s)",
             np->opts.probe_timeout_s, pod->reason ? pod->reason : "no status");
    record(p, 0, msg, now);
    node_event(np, n, "Warning", "ProbeFailed", "Probe", "%s: %s", class, msg);
  } else {
    return p->started_ms + timeout - now;
  }
  delete_probe(np, n->meta.name, class);
  *wrote = 1;
  return 0;
}

/* Verification of every enabled class on an enabled node, the runtime labels and the
 * condition. At most one label write per pass (plus probe pods and the condition). */
static uint64_t verify_node(co_nodeprep_t *np, const co_node_t *n, np_node_t *st, uint64_t now,
                            const char *why_restarting) {
  uint64_t next = 0;
  char msg[2000] = "";
  size_t ml = 0;
  int ready = 0, failed = 0, probing = 0, label_written = 0;
  const char *tee = label(n, CO_DOMAIN "/tee");
  for (size_t i = 0; i < n_classes(np); i++) {
    const char *class = class_at(np, i);
    co_class_info_t ci;
    co_class_info(class, &ci);
    probe_t *p = &st->probes[i];
    char lk[320];
    snprintf(lk, sizeof(lk), CO_NODE_RUNTIME_LABEL_PREFIX "%s", class);
    const char *cur = label(n, lk);
    int served = in_list(n->runtime_handlers, ci.handler) ||
                 in_list(ann(n, CO_NODE_ANN_AGENT_RUNTIMES), ci.handler);
    int tee_ok = ci.tee == NULL || same(tee, ci.tee);
    char part[600];
    int keep = 0; /* label stays/gets "ready" */
    if (!served || !tee_ok) {
      if (!served)
        snprintf(part, sizeof(part),
                 "%s: not verified (handler %s neither in "
                 "status.runtimeHandlers nor in agent-runtimes)",
                 class, ci.handler);
      else
        snprintf(part, sizeof(part), "%s: needs TEE %s (node: %s)", class, ci.tee,
                 tee ? tee : "none");
      if (p->running)
        delete_probe(np, n->meta.name, class);
      memset(p, 0, sizeof(*p));
      if (cur != NULL) {
        char m[700];
        snprintf(m, sizeof(m), "%s; label removed", part);
        node_event(np, n, "Warning", "VerificationFailed", "Verify", "%s", m);
      }
    } else if (why_restarting != NULL || !n->ready) {
      snprintf(part, sizeof(part), "%s: waiting (%s)", class,
               why_restarting ? why_restarting : "node not Ready");
      keep = cur != NULL && p->have_result && p->ok;
    } else {
      int wrote = 0;
      uint64_t d = probe_step(np, n, st, i, now, &wrote);
      if (d > 0 && (next == 0 || d < next))
        next = d;
      keep = p->have_result && p->ok;
      if (p->running && !p->have_result) {
        probing++;
        snprintf(part, sizeof(part), "%s: handler served, probe pod running", class);
      } else if (p->have_result) {
        snprintf(part, sizeof(part), "%s: %s, %s (probed %s)%s", class,
                 p->ok ? "ready" : "NOT ready", p->msg, p->when, p->running ? "; re-probing" : "");
      } else {
        snprintf(part, sizeof(part), "%s: handler served, probe pending", class);
      }
    }
    if (keep)
      ready++;
    else if (p->have_result && !p->ok)
      failed++;
    int w = snprintf(msg + ml, sizeof(msg) - ml, "%s%s", ml ? "; " : "", part);
    if (w > 0 && (size_t)w < sizeof(msg) - ml)
      ml += (size_t)w;
    /* The label follows the verdict. */
    if (!label_written && keep && !same(cur, "ready")) {
      set_label(np, n, lk, "ready");
      node_event(np, n, "Normal", "RuntimeReady", "Verify", "%s verified and probed: %s", class,
                 p->msg);
      label_written = 1;
    } else if (!label_written && !keep && cur != NULL &&
               (!served || !tee_ok || (p->have_result && !p->ok))) {
      set_label(np, n, lk, NULL);
      label_written = 1;
    }
  }
  int status = ready > 0 && failed == 0;
  const char *reason = why_restarting && st->restart_timed_out ? "RestartTimedOut"
                       : why_restarting                        ? "Restarting"
                       : failed                                ? "ProbeFailed"
                       : probing                               ? "Probing"
                       : ready                                 ? "Verified"
                                                               : "NoRuntime";
  if (why_restarting && st->restart_timed_out) {
    char m[2400];
    snprintf(m, sizeof(m), "restart not completed after %lds (%s): other nodes wait; %s",
             np->opts.restart_timeout_s, why_restarting, msg);
    write_condition(np, n, st, status, reason, m);
  } else {
    write_condition(np, n, st, status, reason, msg);
  }
  return next;
}

/* ---- the pass over all nodes --------------------------------------------------------------- */

/* Deletes the probe pods no node state waits for: pinned to a node that is gone, or probing a
 * class that is not enabled (any more). Returns how many deletes it started. */
static int sweep_probes(co_nodeprep_t *np) {
  int n = 0;
  for (const co_obj_t *o = co_informer_first(np->probes); o != NULL; o = co_informer_next(o)) {
    const co_probe_pod_t *p = (const co_probe_pod_t *)o;
    if (o->deleting || p->node == NULL)
      continue;
    int gone = co_informer_get(np->nodes, p->node) == NULL;
    int stale = p->class == NULL || !co_nodeobj_class_enabled(&np->opts.objs, p->class) ||
                strncmp(p->class, CO_PROBE_CLASS_PREFIX, strlen(CO_PROBE_CLASS_PREFIX)) == 0;
    if (!gone && !stale)
      continue;
    char path[PATH_MAX_LEN];
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods/%s?gracePeriodSeconds=0", o->ns,
             o->name);
    co_log(CO_LOG_INFO, "probe pod deleted", CO_S("pod", o->key), CO_S("node", p->node),
           CO_S("class", p->class),
           CO_S("why", gone ? "its node was deleted" : "its class is not enabled"));
    if (start_op(np, OP_PROBE_DELETE, 'n', CO_DELETE, path, NULL, NULL, o->name, -1) == 0)
      n++;
  }
  return n;
}

static void reconcile_nodes(co_nodeprep_t *np) {
  np->stats.passes++;
  uint64_t now = now_ms(np), next = 0;
  int stale = 0;
  const char *busy = NULL;
  int agents_working = 0; /* a non-server node's agent is still preparing or removing */
  size_t nn = np->nodes->count, nc = 0;
  cand_t *cands = co_calloc(nn + 1, sizeof(*cands));
  /* Pass 1: the restart view of the cluster. */
  for (const co_obj_t *o = co_informer_first(np->nodes); o != NULL; o = co_informer_next(o)) {
    const co_node_t *n = (const co_node_t *)o;
    if (!enabled(n) && !has_operator_state(n))
      continue;
    np_node_t *st = state_get(np, o->name);
    if (st->min_rv > rv_num(n->rv) || st->busy)
      stale = 1;
    const char *as = ann(n, CO_NODE_ANN_AGENT_STATE);
    if (!is_server(n) && (ann(n, CO_NODE_ANN_RESTART_REQUEST) != NULL ||
                          same(as, CO_AGENT_DETECTING) || same(as, CO_AGENT_RESTART_REQUESTED) ||
                          same(as, CO_AGENT_RESTARTING) || same(as, CO_AGENT_REMOVING)))
      agents_working = 1;
    const char *why = restarting(np, n, st);
    if (why != NULL) {
      if (!st->restarting) {
        st->restarting = 1;
        if (st->restart_since_ms == 0)
          st->restart_since_ms = now;
      }
      if (busy == NULL)
        busy = o->name;
      uint64_t limit = (uint64_t)np->opts.restart_timeout_s * 1000;
      if (now - st->restart_since_ms >= limit) {
        if (!st->restart_timed_out) {
          st->restart_timed_out = 1;
          node_event(np, n, "Warning", "RestartTimedOut", "Restart",
                     "restart not completed after %lds (%s); no other node restarts until it "
                     "does or the node's enabled label is removed",
                     np->opts.restart_timeout_s, why);
        }
      } else {
        uint64_t d = st->restart_since_ms + limit - now;
        if (next == 0 || d < next)
          next = d;
      }
    } else if (st->restarting) {
      st->restarting = 0;
      st->restart_since_ms = 0;
      st->restart_timed_out = 0;
      st->restart_done_ms = now; /* every class is probed again */
      node_event(np, n, "Normal", "RestartCompleted", "Restart",
                 "restart completed, node Ready: the runtimes are verified again");
    }
  }
  /* Pass 2: per-node steps. */
  for (const co_obj_t *o = co_informer_first(np->nodes); o != NULL; o = co_informer_next(o)) {
    const co_node_t *n = (const co_node_t *)o;
    int en = enabled(n);
    if (!en && !has_operator_state(n))
      continue;
    np_node_t *st = state_get(np, o->name);
    if (st->busy || st->min_rv > rv_num(n->rv))
      continue; /* our last write is not in the cache yet */
    const char *req = ann(n, CO_NODE_ANN_RESTART_REQUEST);
    const char *grant = ann(n, CO_NODE_ANN_RESTART_GRANT);
    if (req != NULL && !same(req, grant))
      cands[nc++] = (cand_t){n, is_server(n), 'g'};
    if (grant != NULL && req == NULL) {
      set_ann(np, n, CO_NODE_ANN_RESTART_GRANT, NULL); /* the agent is done */
      continue;
    }
    if (en) {
      if (!is_true(label(n, CO_NODE_LABEL_AGENT))) {
        set_label(np, n, CO_NODE_LABEL_AGENT, "true");
        node_event(np, n, "Normal", "AgentScheduled", "Prepare",
                   "node enabled: the node agent is scheduled here");
        continue;
      }
      if (same(ann(n, CO_NODE_ANN_AGENT_ACTION), CO_NODE_AGENT_ACTION_REMOVE) &&
          same(ann(n, CO_NODE_ANN_AGENT_STATE), CO_AGENT_REMOVED)) {
        set_ann(np, n, CO_NODE_ANN_AGENT_ACTION, NULL); /* enabled again: prepare again */
        continue;
      }
      st->evict_since_ms = 0;
      mpatch_t p;
      char classes[400];
      if (drop_runtime_labels(np, n, 0, &p, classes, sizeof(classes)) > 0) {
        mp_send(np, &p, n, "remove runtime labels of classes not enabled");
        node_event(np, n, "Normal", "RuntimeDisabled", "Verify",
                   "runtime label removed: %s no longer enabled (--runtime-classes)", classes);
        continue;
      }
      if (st->unpreparing && !is_true(label(n, CO_NODE_LABEL_PREPARED)) &&
          label(n, CO_KATA_RUNTIME_LABEL) == NULL && n->ready)
        st->unpreparing = 0; /* kata-deploy has cleaned up */
      if (want_prepared(np, n) && req == NULL)
        cands[nc++] = (cand_t){n, is_server(n), 'p'};
      /* No Kata class enabled any more: kata-deploy leaves (its cleanup restarts k3s). */
      if (!any_kata(np) && is_true(label(n, CO_NODE_LABEL_PREPARED)) && req == NULL)
        cands[nc++] = (cand_t){n, is_server(n), 'u'};
      uint64_t d = verify_node(np, n, st, now, restarting(np, n, st));
      if (d > 0 && (next == 0 || d < next))
        next = d;
    } else {
      int unprep = 0;
      uint64_t d = remove_node(np, n, st, now, &unprep);
      if (unprep)
        cands[nc++] = (cand_t){n, is_server(n), 'u'};
      if (d > 0 && (next == 0 || d < next))
        next = d;
    }
  }
  /* Pass 3: at most one restart in the cluster; agents before servers. */
  if (!stale && busy == NULL && nc > 0 && !np->closing) {
    qsort(cands, nc, sizeof(*cands), cand_cmp);
    const cand_t *c = &cands[0];
    np_node_t *st = state_get(np, c->n->meta.name);
    /* A server restarts only once no agent node is still on its way (k3s agents first). */
    if (c->server && agents_working) {
      co_log(CO_LOG_DEBUG, "server restart waits for the agent nodes",
             CO_S("node", c->n->meta.name));
    } else if (!st->busy) {
      st->restart_since_ms = now;
      st->restarting = 1;
      np->stats.grants++;
      if (c->kind == 'g') {
        const char *req = ann(c->n, CO_NODE_ANN_RESTART_REQUEST);
        set_ann(np, c->n, CO_NODE_ANN_RESTART_GRANT, req);
        node_event(np, c->n, "Normal", "RestartGranted", "Restart",
                   "k3s restart %s granted to the node agent (one node at a time%s)", req,
                   c->server ? ", servers last" : "");
      } else if (c->kind == 'p') {
        set_label(np, c->n, CO_NODE_LABEL_PREPARED, "true");
        node_event(np, c->n, "Normal", "KataDeployScheduled", "Restart",
                   "kata-deploy %s scheduled here; it restarts k3s (counted as this node's "
                   "restart until the Kata handlers are served)",
                   np->opts.objs.kata_deploy_version);
      } else {
        st->unpreparing = 1;
        set_label(np, c->n, CO_NODE_LABEL_PREPARED, NULL);
        node_event(np, c->n, "Normal", "KataDeployRemoved", "Restart",
                   "kata-deploy leaves the node (%s); its cleanup restarts k3s",
                   enabled(c->n) ? "no Kata runtime class is enabled any more"
                                 : "the node is taken out");
      }
    }
  } else if (busy != NULL && nc > 0) {
    co_log(CO_LOG_DEBUG, "restart requests wait", CO_S("restarting", busy), CO_I("waiting", nc));
  }
  co_free(cands);
  sweep_probes(np);
  /* The kata-deploy DaemonSet of a cluster with no Kata class enabled goes once no node has it
   * (or its cleanup) any more: the apply pass deletes it. */
  int kata_nodes = 0;
  for (const co_obj_t *o = co_informer_first(np->nodes); o != NULL; o = co_informer_next(o))
    kata_nodes += kata_node((const co_node_t *)o);
  if (!any_kata(np) && !np->kata_ds_removed && kata_nodes == 0 && np->kata_nodes > 0)
    co_wq_add(&np->queue, KEY_APPLY);
  np->kata_nodes = kata_nodes;
  if (next > 0 && !np->closing)
    co_wq_add_after(&np->queue, KEY_NODES, next + 50);
  if (np->pass_pending == 0)
    pass_finished(np, KEY_NODES, 0);
}

/* ---- queue, lifecycle -------------------------------------------------------------------- */

static void process(co_wq_t *wq, const char *key) {
  co_nodeprep_t *np = wq->data;
  if (np->closing) {
    co_wq_done(wq, key);
    return;
  }
  if (strcmp(key, KEY_APPLY) == 0)
    reconcile_apply(np);
  else if (strcmp(key, KEY_NODES) == 0)
    reconcile_nodes(np);
  else
    co_wq_done(wq, key);
}

static void on_resync(uv_timer_t *t) {
  co_nodeprep_t *np = t->data;
  co_wq_add(&np->queue, KEY_APPLY);
  co_wq_add(&np->queue, KEY_NODES);
}

int co_nodeprep_init(uv_loop_t *loop, co_nodeprep_t *np, co_client_t *client, co_informer_t *nodes,
                     co_informer_t *pods, co_informer_t *probes, const co_nodeprep_opts_t *opts) {
  memset(np, 0, sizeof(*np));
  np->client = client;
  np->nodes = nodes;
  np->pods = pods;
  np->probes = probes;
  np->opts = *opts;
  char host[256] = "";
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0')
    snprintf(host, sizeof(host), "confidential-operator");
  np->instance = co_strdup(host);
  co_wq_opts_t o;
  co_wq_opts_default(&o);
  o.workers = 2;
  int rc = co_wq_init(loop, &np->queue, &o, process);
  if (rc != 0) {
    co_free(np->instance);
    return rc;
  }
  np->queue.data = np;
  uv_timer_init(loop, &np->resync);
  np->resync.data = np;
  return CO_OK;
}

int co_nodeprep_start(co_nodeprep_t *np) {
  np->started = 1;
  co_wq_add(&np->queue, KEY_APPLY);
  co_wq_add(&np->queue, KEY_NODES);
  uint64_t every = (uint64_t)(np->opts.resync_s > 0 ? np->opts.resync_s : 60) * 1000;
  uv_timer_start(&np->resync, on_resync, every, every);
  return co_wq_start(&np->queue);
}

void co_nodeprep_changed(co_nodeprep_t *np) {
  if (np->started && !np->closing)
    co_wq_add(&np->queue, KEY_NODES);
}

void co_nodeprep_node_deleted(co_nodeprep_t *np, const char *name) {
  np_node_t *st = NULL;
  HASH_FIND_STR(np->state, name, st);
  if (st != NULL) {
    int probes = 0;
    for (size_t i = 0; i < MAX_CLASSES; i++)
      probes += st->probes[i].running;
    /* A restart grant lives on the deleted Node object: it goes with it, and the next pass
     * grants the next request. In-flight requests for it find no state when they complete. */
    co_log(st->restarting ? CO_LOG_WARN : CO_LOG_INFO,
           "node deleted: its preparation state is dropped", CO_S("node", name),
           CO_S("restart", st->restarting ? "released (the node was restarting)" : "none"),
           CO_I("probes_running", probes), CO_I("evicting", st->evict_since_ms != 0));
    HASH_DEL(np->state, st);
    co_free(st->name);
    co_free(st);
  }
  co_nodeprep_changed(np);
}

static void free_all(co_nodeprep_t *np) {
  np_node_t *s, *tmp;
  HASH_ITER(hh, np->state, s, tmp) {
    HASH_DEL(np->state, s);
    co_free(s->name);
    co_free(s);
  }
  co_free(np->instance);
  np->instance = NULL;
}

static void on_part_closed(co_nodeprep_t *np) {
  if (--np->handles > 0)
    return;
  free_all(np);
  if (np->close_cb != NULL)
    np->close_cb(np);
}

static void on_queue_closed(co_wq_t *wq) { on_part_closed(wq->data); }

static void on_timer_closed(uv_handle_t *h) { on_part_closed(h->data); }

static void maybe_closed(co_nodeprep_t *np) {
  if (np->closing == 1 && np->in_flight == 0) {
    np->closing = 2;
    np->handles = 2;
    uv_close((uv_handle_t *)&np->resync, on_timer_closed);
    co_wq_close(&np->queue, on_queue_closed);
  }
}

void co_nodeprep_close(co_nodeprep_t *np, co_nodeprep_close_cb cb) {
  if (np->closing)
    return;
  np->closing = 1;
  np->close_cb = cb;
  co_wq_stop(&np->queue);
  uv_timer_stop(&np->resync);
  for (op_t *op = np->ops; op != NULL; op = op->next)
    co_req_cancel(&op->req);
  maybe_closed(np);
}
