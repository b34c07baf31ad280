/* Workload reconciler: decisions turned into minimal writes, and CR status. */
#include "co/reconcile.h"

#include <cjson/cJSON.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uthash.h>

#include "co/alloc.h"
#include "co/error.h"
#include "co/event.h"
#include "co/log.h"
#include "co/metrics.h"
#include "co/wplan.h"
#include "cwl.h"

/* CRs that may select one workload; more is a misconfiguration reported as a conflict. */
#define MAX_CRS 16
#define KEY_MAX 1024
#define PASS_BATCH 256        /* keys the initial pass queues at a time */
#define PASS_LOW 64           /* ... when the queue holds no more than this */
#define EVENTS_PENDING_MAX 64 /* Event POSTs waiting or in flight before new ones are dropped */

/* What the reconciler remembers of one workload (by queue key "d:ns/name"). */
typedef struct co__rec_write {
  char *key;
  co_uid_t uid;              /* of the workload our last PATCH wrote; absent = none pending */
  int64_t generation;        /* metadata.generation our last PATCH produced; 0 = none */
  uint64_t failing_since_ms; /* onFailure: Revert: since when its rollout fails; 0 = not */
  int revert;                /* the time is up: the workload key reverts on its next pass */
  UT_hash_handle hh;
} write_t;

enum { COND_READY, COND_PROGRESSING, COND_DEGRADED, COND_COUNT };
static const char *cond_types[COND_COUNT] = {"Ready", "Progressing", "Degraded"};

typedef struct co__rec_status {
  char *key; /* CR key "ns/name" */
  co_uid_t uid;
  uint64_t hash;                   /* of the last status body written */
  char cond_status[COND_COUNT][8]; /* "True"/"False" last written */
  char cond_since[COND_COUNT][32]; /* lastTransitionTime last written */
  UT_hash_handle hh;
} status_t;

typedef enum { OP_WORKLOAD, OP_STATUS, OP_FINALIZER, OP_EVENT } op_kind_t;

typedef struct co__rec_op {
  co_req_t req;
  co_reconciler_t *rec;
  op_kind_t kind;
  char *qkey;   /* queue key to mark done; NULL for events */
  co_uid_t uid; /* workload uid (OP_WORKLOAD) */
  char *note;   /* event to emit after success, or NULL */
  char *reason; /* event reason */
  char *regarding_kind, *regarding_ns, *regarding_name;
  char *cr_key; /* the CR the write is for, if any: it gets an event too */
  int restore;
  struct co__rec_op *prev, *next; /* requests in flight, canceled on close */
} op_t;

/* ---- small helpers --------------------------------------------------------------------- */

static const char *kind_name(char k) {
  return k == 'd' ? "Deployment" : k == 's' ? "StatefulSet" : "ConfidentialWorkload";
}

static const char *kind_path(char k) { return k == 'd' ? "deployments" : "statefulsets"; }

static co_informer_t *workload_informer(co_reconciler_t *rec, char k) {
  return k == 'd' ? rec->deployments : rec->statefulsets;
}

static void queue_key(co_reconciler_t *rec, char prefix, const char *key) {
  char buf[KEY_MAX];
  int n = snprintf(buf, sizeof(buf), "%c:%s", prefix, key);
  if (n > 0 && (size_t)n < sizeof(buf))
    co_wq_add(&rec->queue, buf);
}

static uint64_t fnv1a(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 1099511628211ull;
  }
  return h;
}

static void now_rfc3339(char *out, size_t len, int micro) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
  if (micro)
    snprintf(out + n, len - n, ".%06ldZ", ts.tv_nsec / 1000);
  else
    snprintf(out + n, len - n, "Z");
}

static int cr_valid(co_reconciler_t *rec, const co_cwl_t *cr, char *msg, size_t len) {
  return co_cwl_validate(cr, rec->policy.allowed, rec->policy.n_allowed, msg, len) == 0;
}

/* CRs (not being deleted) that select workload w of kind k. */
static size_t collect_crs(co_reconciler_t *rec, char k, const co_workload_t *w, co_decide_cr_t *out,
                          co_hardening_t *hard, size_t max) {
  size_t n = 0;
  for (const co_obj_t *o = co_informer_first(rec->cwls); o != NULL; o = co_informer_next(o)) {
    const co_cwl_t *cr = (const co_cwl_t *)o;
    if (o->deleting || strcmp(o->ns, w->meta.ns) != 0)
      continue;
    /* An invalid CR still counts: co_decide reports it (DENIED) and writes nothing, so a
     * typo in a CR never un-sandboxes what it selected. */
    if (!co_cwl_targets(cr, kind_name(k), w->meta.ns, w->meta.name, &w->labels))
      continue;
    if (n < max) {
      out[n].key = o->key;
      out[n].class = cr->runtime_class;
      out[n].hardening = NULL;
      if (cr->has_hardening && (cr->memory_backed_empty_dirs || cr->automount_sa_token == 0)) {
        hard[n] = (co_hardening_t){cr->memory_backed_empty_dirs, cr->empty_dir_size_limit,
                                   cr->automount_sa_token};
        out[n].hardening = &hard[n];
      }
      n++;
    }
  }
  return n;
}

int co_reconciler_decide(co_reconciler_t *rec, char kind, const co_workload_t *w,
                         co_decision_t *out) {
  co_decide_cr_t crs[MAX_CRS];
  co_hardening_t hard[MAX_CRS]; /* copied into the decision: need not outlive the call */
  const co_namespace_t *ns = (const co_namespace_t *)co_informer_get(rec->namespaces, w->meta.ns);
  co_decide_input_t in = {w, ns ? &ns->labels : NULL, crs, 0};
  if (kind == 'd' || kind == 's')
    in.n_crs = collect_crs(rec, kind, w, crs, hard, MAX_CRS);
  return co_decide(&rec->policy, &in, out);
}

int co_reconciler_revert_holds(const co_workload_t *w, const co_decision_t *d) {
  const char *rv = co_kv_get(&w->annotations, CO_ANN_REVERTED);
  return d->action == CO_ACTION_SET && rv != NULL && d->class != NULL && strcmp(rv, d->class) == 0;
}

/* ---- events (events.k8s.io/v1), fire and forget --------------------------------------- */

static void op_unlink(co_reconciler_t *rec, op_t *op) {
  if (op->prev)
    op->prev->next = op->next;
  else if (rec->ops == op)
    rec->ops = op->next;
  if (op->next)
    op->next->prev = op->prev;
  op->prev = op->next = NULL;
}

static void op_free(op_t *op) {
  op_unlink(op->rec, op);
  co_req_cleanup(&op->req);
  co_free(op->qkey);
  co_free(op->note);
  co_free(op->reason);
  co_free(op->regarding_kind);
  co_free(op->regarding_ns);
  co_free(op->regarding_name);
  co_free(op->cr_key);
  co_free(op);
}

static void maybe_closed(co_reconciler_t *rec);

static void on_event_done(co_req_t *req) {
  op_t *op = req->data;
  co_reconciler_t *rec = op->rec;
  rec->in_flight--;
  rec->events_pending--;
  if (req->err != 0 && req->err != CO_ECANCELED)
    co_log(CO_LOG_WARN, "cannot record event", CO_E(req->err), CO_S("reason", op->reason),
           CO_S("message", req->status_message));
  op_free(op);
  maybe_closed(rec);
}

static void emit_event(co_reconciler_t *rec, const char *type, const char *reason,
                       const char *action, const char *kind, const char *ns, const char *name,
                       const co_uid_t *uid, const char *note) {
  if (rec->closing)
    return;
  /* Events are best effort: past their own rate (the client's event bucket) they would pile
   * up without bound during a mass rollout, so beyond a few waiting they are dropped, as
   * client-go's spam filter does. */
  if (rec->events_pending >= EVENTS_PENDING_MAX) {
    rec->stats.events_dropped++;
    co_log(CO_LOG_DEBUG, "event dropped: too many waiting", CO_S("reason", reason),
           CO_S("kind", kind), CO_S("namespace", ns), CO_S("name", name));
    return;
  }
  const char *api =
      strcmp(kind, "ConfidentialWorkload") == 0 ? CO_CWL_GROUP "/" CO_CWL_VERSION : "apps/v1";
  char uid_str[CO_UID_STR_LEN];
  co_event_t e = {
      rec->instance, type, reason, action, api, kind, ns, name, co_uid_str(uid, uid_str), note};
  char path[KEY_MAX];
  char *body = co_event_body(&e, path, sizeof(path));
  op_t *op = co_calloc(1, sizeof(*op));
  op->rec = rec;
  op->kind = OP_EVENT;
  op->reason = co_strdup(reason);
  co_req_init(rec->client, &op->req);
  op->req.data = op;
  if (co_req_start(&op->req, CO_POST, path, body, strlen(body), on_event_done) == 0) {
    rec->in_flight++;
    rec->events_pending++;
    rec->stats.events++;
    op->next = rec->ops;
    if (op->next)
      op->next->prev = op;
    rec->ops = op;
  } else {
    op_free(op);
  }
  co_free(body);
}

/* ---- workload writes ------------------------------------------------------------------ */

static write_t *write_find(co_reconciler_t *rec, const char *qkey) {
  write_t *w = NULL;
  HASH_FIND_STR(rec->writes, qkey, w);
  return w;
}

static void write_forget(co_reconciler_t *rec, const char *qkey) {
  write_t *w = write_find(rec, qkey);
  if (w == NULL)
    return;
  HASH_DEL(rec->writes, w);
  co_free(w->key);
  co_free(w);
}

static write_t *write_get(co_reconciler_t *rec, const char *qkey) {
  write_t *w = write_find(rec, qkey);
  if (w == NULL) {
    w = co_calloc(1, sizeof(*w));
    w->key = co_strdup(qkey);
    HASH_ADD_KEYPTR(hh, rec->writes, w->key, strlen(w->key), w);
  }
  return w;
}

static void write_record(co_reconciler_t *rec, const char *qkey, const co_uid_t *uid, int64_t gen) {
  write_t *w = write_get(rec, qkey);
  w->uid = *uid;
  w->generation = gen;
}

/* 1 while the cache has not yet seen the generation of our last write to this workload. */
static int write_pending(co_reconciler_t *rec, const char *qkey, const co_workload_t *w) {
  write_t *wr = write_find(rec, qkey);
  if (wr == NULL)
    return 0;
  if (!co_uid_present(&wr->uid))
    return 0; /* failure tracking only */
  if (!co_uid_same(&wr->uid, &w->meta.uid)) {
    write_forget(rec, qkey); /* a new object under the same name */
    return 0;
  }
  if (w->meta.generation < wr->generation)
    return 1;
  /* The cache has caught up: the record has served its purpose. */
  if (wr->failing_since_ms == 0 && !wr->revert)
    write_forget(rec, qkey);
  else {
    memset(&wr->uid, 0, sizeof(wr->uid));
    wr->generation = 0;
  }
  return 0;
}

static void finish(co_reconciler_t *rec, const char *qkey) { co_wq_done(&rec->queue, qkey); }

/* Stops tracking a failure (the state itself stays for the write record). */
static void failing_clear(co_reconciler_t *rec, const char *wkey) {
  write_t *f = write_find(rec, wkey);
  if (f != NULL) {
    f->failing_since_ms = 0;
    f->revert = 0;
  }
}

static void on_workload_written(co_req_t *req) {
  op_t *op = req->data;
  co_reconciler_t *rec = op->rec;
  rec->in_flight--;
  if (req->err == 0) {
    int64_t gen = 0;
    cJSON *obj = cJSON_ParseWithLength(req->body.data, req->body.len);
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(obj, "metadata"), "generation");
    gen = co_json_int64(g, gen);
    cJSON_Delete(obj);
    write_record(rec, op->qkey, &op->uid, gen);
    rec->stats.patches++;
    if (op->restore)
      rec->stats.restores++;
    co_log(CO_LOG_INFO, op->restore ? "workload restored" : "workload rewritten",
           CO_S("key", op->qkey), CO_I("generation", gen), CO_S("detail", op->note));
    co_wq_forget(&rec->queue, op->qkey);
    emit_event(rec, "Normal", op->reason, op->restore ? "Restore" : "Rewrite", op->regarding_kind,
               op->regarding_ns, op->regarding_name, &op->uid, op->note);
    const co_obj_t *cr = op->cr_key ? co_informer_get(rec->cwls, op->cr_key) : NULL;
    if (cr != NULL) {
      co_buf_t note;
      co_buf_init(&note, 1200);
      co_buf_appendf(&note, "%s %s: %s", op->regarding_kind, op->regarding_name, op->note);
      emit_event(rec, "Normal", op->reason, op->restore ? "Restore" : "Rewrite",
                 "ConfidentialWorkload", cr->ns, cr->name, &cr->uid, co_buf_str(&note));
      co_buf_free(&note);
    }
  } else if (req->err == CO_ENOTFOUND || req->err == CO_ECANCELED) {
    /* Gone (its delete event follows) or shutting down. */
  } else {
    rec->stats.write_errors++;
    co_log(CO_LOG_WARN, "workload write failed", CO_S("key", op->qkey), CO_E(req->err),
           CO_I("status", req->http_status), CO_S("reason", req->status_reason),
           CO_S("message", req->status_message));
    if (!rec->closing)
      co_wq_add_rate_limited(&rec->queue, op->qkey);
  }
  finish(rec, op->qkey);
  op_free(op);
  maybe_closed(rec);
}

static int start_op(co_reconciler_t *rec, op_t *op, co_verb_t verb, const char *path, char *body,
                    co_req_cb cb) {
  co_req_init(rec->client, &op->req);
  op->req.data = op;
  int rc = co_req_start(&op->req, verb, path, body, strlen(body), cb);
  co_free(body);
  if (rc == 0) {
    rec->in_flight++;
    op->next = rec->ops;
    if (op->next)
      op->next->prev = op;
    rec->ops = op;
  }
  return rc;
}

/* The plan (co/wplan.h: the same write the admission webhook makes) as one strategic merge
 * patch; reverted, when given, also records the class onFailure: Revert took away.
 * metadata.uid makes the write fail rather than land on a workload recreated under the same
 * name. */
static void write_workload(co_reconciler_t *rec, const char *qkey, char k, const co_workload_t *w,
                           const co_decision_t *d, const co_wplan_t *plan, const char *reverted) {
  int restore = plan->restore;
  cJSON *p = cJSON_CreateObject();
  cJSON *md = cJSON_AddObjectToObject(p, "metadata");
  char uid[CO_UID_STR_LEN];
  if (co_uid_str(&w->meta.uid, uid) != NULL)
    cJSON_AddStringToObject(md, "uid", uid);
  cJSON *ann = cJSON_AddObjectToObject(md, "annotations");
  cJSON *tspec = cJSON_AddObjectToObject(
      cJSON_AddObjectToObject(cJSON_AddObjectToObject(p, "spec"), "template"), "spec");
  if (reverted != NULL)
    cJSON_AddStringToObject(ann, CO_ANN_REVERTED, reverted);
  co_wplan_merge(plan, ann, tspec);
  char *body = cJSON_PrintUnformatted(p);
  cJSON_Delete(p);

  op_t *op = co_calloc(1, sizeof(*op));
  op->rec = rec;
  op->kind = OP_WORKLOAD;
  op->qkey = co_strdup(qkey);
  op->uid = w->meta.uid;
  op->restore = restore;
  op->reason = co_strdup(plan->reason);
  op->regarding_kind = co_strdup(kind_name(k));
  op->regarding_ns = co_strdup(w->meta.ns);
  op->regarding_name = co_strdup(w->meta.name);
  op->cr_key = d->source == CO_SOURCE_CR ? co_strdup(d->cr_key) : NULL;
  co_buf_t note;
  co_buf_init(&note, 1024);
  if (restore)
    co_buf_appendf(&note, "runtimeClassName restored to %s: %s",
                   d->class && d->class[0] ? d->class : "(none)", d->message);
  else if (plan->class_op == CO_FIELD_KEEP)
    co_buf_appendf(&note, "spec.hardening applied with runtimeClassName %s: %s",
                   d->class ? d->class : "(none)", d->message);
  else
    co_buf_appendf(&note, "runtimeClassName %s -> %s: %s",
                   w->runtime_class ? w->runtime_class : "(none)", d->class, d->message);
  op->note = co_buf_steal(&note);
  char path[KEY_MAX];
  snprintf(path, sizeof(path), "/apis/apps/v1/namespaces/%s/%s/%s", w->meta.ns, kind_path(k),
           w->meta.name);
  /* Strategic merge: volumes merge by name; for everything else it acts as a merge patch. */
  int rc = start_op(rec, op, CO_PATCH_STRATEGIC, path, body, on_workload_written);
  if (rc != 0) {
    co_log(CO_LOG_WARN, "cannot start workload write", CO_S("key", qkey), CO_E(rc));
    co_wq_add_rate_limited(&rec->queue, qkey);
    finish(rec, qkey);
    op_free(op);
  }
}

/* Queues the CRs (deleting ones too) that select w, for their status. */
static void queue_crs_of(co_reconciler_t *rec, char k, const co_workload_t *w) {
  for (const co_obj_t *o = co_informer_first(rec->cwls); o != NULL; o = co_informer_next(o)) {
    if (strcmp(o->ns, w->meta.ns) != 0)
      continue;
    if (co_cwl_targets((const co_cwl_t *)o, kind_name(k), w->meta.ns, w->meta.name, &w->labels))
      queue_key(rec, 'c', o->key);
  }
}

static void reconcile_workload(co_reconciler_t *rec, const char *qkey) {
  char k = qkey[0];
  const co_workload_t *w =
      (const co_workload_t *)co_informer_get(workload_informer(rec, k), qkey + 2);
  if (w == NULL || w->meta.deleting) {
    write_forget(rec, qkey);
    finish(rec, qkey);
    return;
  }
  queue_crs_of(rec, k, w);
  if (write_pending(rec, qkey, w)) {
    /* Our last write is not in the cache yet: its watch event brings us back. */
    finish(rec, qkey);
    return;
  }
  co_decision_t d;
  if (co_reconciler_decide(rec, k, w, &d) != 0) {
    finish(rec, qkey);
    return;
  }
  write_t *f = write_find(rec, qkey);
  if (f != NULL && f->revert && d.action == CO_ACTION_NONE && d.source == CO_SOURCE_CR &&
      d.class != NULL) {
    const char *orig = co_kv_get(&w->annotations, CO_ANN_ORIGINAL);
    co_decision_t r = d;
    r.action = CO_ACTION_RESTORE;
    r.class = orig != NULL && orig[0] != '\0' ? orig : NULL;
    r.reason = "Reverted";
    snprintf(r.message, sizeof(r.message),
             "the rollout with %s kept failing (onFailure: Revert of %s)", d.class,
             d.cr_key ? d.cr_key : "?");
    char failed[256];
    snprintf(failed, sizeof(failed), "%s", d.class);
    failing_clear(rec, qkey);
    co_wplan_t plan;
    co_wplan_build(&r, w, &plan);
    write_workload(rec, qkey, k, w, &r, &plan, failed);
    co_wplan_free(&plan);
    return;
  }
  if (d.action == CO_ACTION_DENIED || d.action == CO_ACTION_FOREIGN ||
      d.action == CO_ACTION_CONFLICT)
    co_log(CO_LOG_DEBUG, "workload left unchanged", CO_S("key", qkey),
           CO_S("action", co_action_name(d.action)), CO_S("reason", d.reason),
           CO_S("message", d.message));
  /* Nothing to write: not opted in, already right (hardening included), or a class that
   * onFailure: Revert took away and that is not written again until someone says so. */
  co_wplan_t plan;
  co_wplan_build(&d, w, &plan);
  if (!plan.write) {
    co_wplan_free(&plan);
    finish(rec, qkey);
    return;
  }
  write_workload(rec, qkey, k, w, &d, &plan, NULL);
  co_wplan_free(&plan);
}

/* ---- CR status -------------------------------------------------------------------------- */

static int selector_matches_pod(const co_workload_t *w, const co_pod_t *p) {
  if (w->selector.data == NULL)
    return 0;
  CO_KV_FOREACH(&w->selector, s) {
    const char *eq = strchr(s, '=');
    if (eq == NULL)
      return 0;
    const char *v = co_kv_getn(&p->labels, s, (size_t)(eq - s));
    if (v == NULL || strcmp(v, eq + 1) != 0)
      return 0;
  }
  return 1;
}

typedef struct phase_s {
  const char *phase;
  const char *reason;
  char message[512];
  int32_t sandboxed;
} phase_t;

static void workload_phase(co_reconciler_t *rec, char k, const co_workload_t *w, const char *qkey,
                           const co_decision_t *d, const char *class, phase_t *ph) {
  memset(ph, 0, sizeof(*ph));
  ph->reason = d->reason;
  switch (d->action) {
  case CO_ACTION_CONFLICT:
    ph->phase = "Conflict";
    snprintf(ph->message, sizeof(ph->message), "%s", d->message);
    return;
  case CO_ACTION_DENIED:
    ph->phase = "Denied";
    snprintf(ph->message, sizeof(ph->message), "%s", d->message);
    return;
  case CO_ACTION_SET:
    if (co_reconciler_revert_holds(w, d)) {
      ph->phase = "Failed";
      ph->reason = "Reverted";
      snprintf(ph->message, sizeof(ph->message),
               "%s failed and was reverted (onFailure: Revert); remove the annotation "
               "%s or change the class to try again",
               d->class, CO_ANN_REVERTED);
      return;
    }
    ph->phase = write_pending(rec, qkey, w) ? "Patched" : "Pending";
    snprintf(ph->message, sizeof(ph->message), "runtimeClassName %s is to become %s",
             w->runtime_class ? w->runtime_class : "(none)", d->class);
    return;
  default:
    break;
  }
  if (w->runtime_class == NULL || class == NULL || strcmp(w->runtime_class, class) != 0) {
    ph->phase = "Pending";
    ph->reason = "NotSandboxed";
    snprintf(ph->message, sizeof(ph->message), "%s", d->message);
    return;
  }
  if (co_wplan_hardening_missing(d, w)) {
    ph->phase = "Pending";
    ph->reason = "HardeningPending";
    snprintf(ph->message, sizeof(ph->message), "spec.hardening is not applied yet");
    return;
  }
  if (w->observed_generation < w->meta.generation) {
    ph->phase = "Patched";
    ph->reason = "WaitingForController";
    snprintf(ph->message, sizeof(ph->message),
             "the %s controller has not yet observed generation %lld", kind_name(k),
             (long long)w->meta.generation);
    return;
  }
  int32_t other = 0;
  const char *why = NULL;
  for (const co_obj_t *o = co_informer_first(rec->pods); o != NULL; o = co_informer_next(o)) {
    const co_pod_t *p = (const co_pod_t *)o;
    if (o->deleting || p->terminal || strcmp(o->ns, w->meta.ns) != 0 || !selector_matches_pod(w, p))
      continue;
    if (p->runtime_class != NULL && strcmp(p->runtime_class, class) == 0) {
      if (p->ready)
        ph->sandboxed++;
      else if (why == NULL)
        why = p->waiting_reason;
    } else {
      other++;
    }
  }
  if (w->failure_message != NULL || w->progress_failed) {
    ph->phase = "Failed";
    ph->reason = "RolloutFailed";
    snprintf(ph->message, sizeof(ph->message), "%s",
             w->failure_message ? w->failure_message : "rollout made no progress");
    return;
  }
  if (other > 0 || ph->sandboxed < w->replicas || w->updated_replicas < w->replicas ||
      w->ready_replicas < w->replicas) {
    ph->phase = "RollingOut";
    ph->reason = why != NULL ? "PodsNotRunning" : "RollingOut";
    snprintf(ph->message, sizeof(ph->message), "%d/%d pods sandboxed and ready, %d unsandboxed%s%s",
             ph->sandboxed, w->replicas, other, why ? "; " : "", why ? why : "");
    return;
  }
  ph->phase = "Sandboxed";
  ph->reason = "Sandboxed";
  snprintf(ph->message, sizeof(ph->message), "all %d pods run with %s", w->replicas, class);
}

void co_reconciler_count_phases(co_reconciler_t *rec, co_reconciler_phase_cb cb, void *data) {
  static const char kinds[] = {'d', 's'};
  for (size_t i = 0; i < 2; i++) {
    co_informer_t *inf = workload_informer(rec, kinds[i]);
    for (const co_obj_t *o = co_informer_first(inf); o != NULL; o = co_informer_next(o)) {
      const co_workload_t *w = (const co_workload_t *)o;
      co_decision_t d;
      if (o->deleting || co_reconciler_decide(rec, kinds[i], w, &d) != 0 ||
          d.source == CO_SOURCE_NONE)
        continue;
      char wkey[KEY_MAX];
      snprintf(wkey, sizeof(wkey), "%c:%s", kinds[i], o->key);
      phase_t ph;
      workload_phase(rec, kinds[i], w, wkey, &d, d.class, &ph);
      cb(data, kind_name(kinds[i]), ph.phase);
    }
  }
}

static void on_status_written(co_req_t *req) {
  op_t *op = req->data;
  co_reconciler_t *rec = op->rec;
  rec->in_flight--;
  if (req->err == 0) {
    if (op->kind == OP_STATUS)
      rec->stats.status_writes++;
    else
      rec->stats.finalizer_writes++;
    co_wq_forget(&rec->queue, op->qkey);
  } else if (req->err != CO_ENOTFOUND && req->err != CO_ECANCELED) {
    rec->stats.write_errors++;
    co_log(CO_LOG_WARN, op->kind == OP_STATUS ? "status write failed" : "finalizer write failed",
           CO_S("key", op->qkey), CO_E(req->err), CO_I("status", req->http_status),
           CO_S("message", req->status_message));
    /* The status cache entry is stale now: write again next time. */
    status_t *st = NULL;
    HASH_FIND_STR(rec->statuses, op->qkey + 2, st);
    if (st != NULL)
      st->hash = 0;
    if (!rec->closing)
      co_wq_add_rate_limited(&rec->queue, op->qkey);
  }
  finish(rec, op->qkey);
  op_free(op);
  maybe_closed(rec);
}

static void cr_path(char *out, size_t len, const co_obj_t *cr, const char *sub) {
  snprintf(out, len,
           "/apis/" CO_CWL_GROUP "/" CO_CWL_VERSION "/namespaces/%s/confidentialworkloads/%s%s",
           cr->ns, cr->name, sub);
}

static void write_cr(co_reconciler_t *rec, const char *qkey, const co_obj_t *cr, op_kind_t kind,
                     co_verb_t verb, const char *sub, char *body) {
  op_t *op = co_calloc(1, sizeof(*op));
  op->rec = rec;
  op->kind = kind;
  op->qkey = co_strdup(qkey);
  char path[KEY_MAX];
  cr_path(path, sizeof(path), cr, sub);
  if (start_op(rec, op, verb, path, body, on_status_written) != 0) {
    co_wq_add_rate_limited(&rec->queue, qkey);
    finish(rec, qkey);
    op_free(op);
  }
}

static status_t *status_get(co_reconciler_t *rec, const co_obj_t *cr) {
  status_t *st = NULL;
  HASH_FIND_STR(rec->statuses, cr->key, st);
  if (st != NULL && !co_uid_same(&st->uid, &cr->uid)) {
    HASH_DEL(rec->statuses, st);
    co_free(st->key);
    co_free(st);
    st = NULL;
  }
  if (st == NULL) {
    st = co_calloc(1, sizeof(*st));
    st->key = co_strdup(cr->key);
    st->uid = cr->uid;
    HASH_ADD_KEYPTR(hh, rec->statuses, st->key, strlen(st->key), st);
  }
  return st;
}

static void status_forget(co_reconciler_t *rec, const char *key) {
  status_t *st = NULL;
  HASH_FIND_STR(rec->statuses, key, st);
  if (st == NULL)
    return;
  HASH_DEL(rec->statuses, st);
  co_free(st->key);
  co_free(st);
}

/* Returns 1 when the condition changed from a value this process had written before. */
static int add_condition(cJSON *arr, status_t *st, int i, int value, const char *reason,
                         const char *message, int64_t gen) {
  const char *s = value ? "True" : "False";
  int changed = 0;
  if (strcmp(st->cond_status[i], s) != 0 || st->cond_since[i][0] == '\0') {
    changed = st->cond_status[i][0] != '\0';
    snprintf(st->cond_status[i], sizeof(st->cond_status[i]), "%s", s);
    now_rfc3339(st->cond_since[i], sizeof(st->cond_since[i]), 0);
  }
  cJSON *c = cJSON_CreateObject();
  cJSON_AddStringToObject(c, "type", cond_types[i]);
  cJSON_AddStringToObject(c, "status", s);
  cJSON_AddNumberToObject(c, "observedGeneration", (double)gen);
  cJSON_AddStringToObject(c, "lastTransitionTime", st->cond_since[i]);
  cJSON_AddStringToObject(c, "reason", reason);
  cJSON_AddStringToObject(c, "message", message);
  cJSON_AddItemToArray(arr, c);
  return changed;
}

/* onFailure: Revert. A sandboxed rollout that keeps failing (rollout failed, or pods that do
 * not run) for revertAfterSeconds gets its recorded class back, and the failed class is
 * marked so it is not written again. Hold (the default) only reports. */
static void track_failure(co_reconciler_t *rec, const char *crkey, const co_cwl_t *cr, char k,
                          const co_workload_t *w, const char *wkey, const co_decision_t *d,
                          phase_t *ph) {
  int failing = strcmp(ph->phase, "Failed") == 0 ||
                (strcmp(ph->phase, "RollingOut") == 0 && strcmp(ph->reason, "PodsNotRunning") == 0);
  if (!failing || strcmp(ph->reason, "Reverted") == 0 || cr->on_failure != CO_ON_FAILURE_REVERT ||
      d->action != CO_ACTION_NONE || d->source != CO_SOURCE_CR) {
    failing_clear(rec, wkey);
    return;
  }
  uint64_t now = uv_now(rec->queue.loop);
  write_t *f = write_get(rec, wkey);
  if (f->failing_since_ms == 0)
    f->failing_since_ms = now;
  uint64_t after = (uint64_t)(cr->revert_after_s > 0 ? cr->revert_after_s : 600) * 1000;
  if (now - f->failing_since_ms < after) {
    co_wq_add_after(&rec->queue, crkey, after - (now - f->failing_since_ms) + 100);
    return;
  }
  /* The write is the workload key's job, so one key is never written twice at once. */
  if (!f->revert)
    co_log(CO_LOG_WARN, "sandboxed rollout keeps failing, reverting", CO_S("key", wkey),
           CO_S("cr", cr->meta.key), CO_S("class", d->class), CO_S("message", ph->message));
  f->revert = 1;
  co_wq_add(&rec->queue, wkey);
}

/* Removes our finalizer once no workload still carries this CR's class on its behalf. */
static void reconcile_deleting_cr(co_reconciler_t *rec, const char *qkey, const co_cwl_t *cr) {
  int pending = 0;
  static const char kinds[] = {'d', 's'};
  for (size_t i = 0; i < 2; i++) {
    co_informer_t *inf = workload_informer(rec, kinds[i]);
    for (const co_obj_t *o = co_informer_first(inf); o != NULL; o = co_informer_next(o)) {
      const co_workload_t *w = (const co_workload_t *)o;
      if (strcmp(o->ns, cr->meta.ns) != 0 ||
          !co_cwl_targets(cr, kind_name(kinds[i]), o->ns, o->name, &w->labels))
        continue;
      char wkey[KEY_MAX];
      snprintf(wkey, sizeof(wkey), "%c:%s", kinds[i], o->key);
      co_decision_t d;
      if (co_reconciler_decide(rec, kinds[i], w, &d) != 0)
        continue;
      if (d.action == CO_ACTION_RESTORE || write_pending(rec, wkey, w)) {
        pending++;
        co_wq_add(&rec->queue, wkey);
      }
    }
  }
  if (pending > 0) {
    co_log(CO_LOG_DEBUG, "waiting for workloads to be restored", CO_S("cr", cr->meta.key),
           CO_I("pending", pending));
    finish(rec, qkey);
    return;
  }
  /* JSON patch: remove exactly our entry, tested first so a concurrent change fails. */
  cJSON *ops = cJSON_CreateArray();
  cJSON *fins = cJSON_CreateArray();
  int idx = cr->finalizer_index;
  char p[64];
  snprintf(p, sizeof(p), "/metadata/finalizers/%d", idx);
  cJSON *t = cJSON_CreateObject();
  cJSON_AddStringToObject(t, "op", "test");
  cJSON_AddStringToObject(t, "path", p);
  cJSON_AddStringToObject(t, "value", CO_CWL_FINALIZER);
  cJSON_AddItemToArray(ops, t);
  cJSON *r = cJSON_CreateObject();
  cJSON_AddStringToObject(r, "op", "remove");
  cJSON_AddStringToObject(r, "path", p);
  cJSON_AddItemToArray(ops, r);
  cJSON_Delete(fins);
  char *body = cJSON_PrintUnformatted(ops);
  cJSON_Delete(ops);
  co_log(CO_LOG_INFO, "workloads restored, releasing the ConfidentialWorkload",
         CO_S("cr", cr->meta.key));
  status_forget(rec, cr->meta.key);
  write_cr(rec, qkey, &cr->meta, OP_FINALIZER, CO_PATCH_JSON, "", body);
}

static void add_finalizer(co_reconciler_t *rec, const char *qkey, const co_cwl_t *cr) {
  cJSON *ops = cJSON_CreateArray();
  cJSON *op = cJSON_CreateObject();
  cJSON_AddStringToObject(op, "op", "add");
  if (cr->n_finalizers > 0) {
    cJSON_AddStringToObject(op, "path", "/metadata/finalizers/-");
    cJSON_AddStringToObject(op, "value", CO_CWL_FINALIZER);
  } else {
    cJSON_AddStringToObject(op, "path", "/metadata/finalizers");
    cJSON *v = cJSON_AddArrayToObject(op, "value");
    cJSON_AddItemToArray(v, cJSON_CreateString(CO_CWL_FINALIZER));
  }
  cJSON_AddItemToArray(ops, op);
  char *body = cJSON_PrintUnformatted(ops);
  cJSON_Delete(ops);
  write_cr(rec, qkey, &cr->meta, OP_FINALIZER, CO_PATCH_JSON, "", body);
}

static void reconcile_cr(co_reconciler_t *rec, const char *qkey) {
  const co_cwl_t *cr = (const co_cwl_t *)co_informer_get(rec->cwls, qkey + 2);
  if (cr == NULL) {
    status_forget(rec, qkey + 2);
    finish(rec, qkey);
    return;
  }
  if (cr->meta.deleting) {
    if (cr->has_finalizer)
      reconcile_deleting_cr(rec, qkey, cr);
    else
      finish(rec, qkey);
    return;
  }
  if (!cr->has_finalizer) {
    add_finalizer(rec, qkey, cr);
    return;
  }

  char invalid[512] = "";
  int valid = cr_valid(rec, cr, invalid, sizeof(invalid));
  const char *class = cr->runtime_class;
  if (class != NULL && strcmp(class, CO_CLASS_AUTO) == 0)
    class = rec->policy.resolve_auto ? rec->policy.resolve_auto(rec->policy.resolve_ud) : NULL;

  status_t *st = status_get(rec, &cr->meta);
  cJSON *root = cJSON_CreateObject();
  cJSON *status = cJSON_AddObjectToObject(root, "status");
  cJSON_AddNumberToObject(status, "observedGeneration", (double)cr->meta.generation);
  if (class != NULL)
    cJSON_AddStringToObject(status, "runtimeClassName", class);
  cJSON *wl = cJSON_AddArrayToObject(status, "workloads");
  int total = 0, sandboxed = 0, progressing = 0, degraded = 0;
  char first_problem[600] = "";
  static const char kinds[] = {'d', 's'};
  for (size_t i = 0; i < 2 && valid; i++) {
    co_informer_t *inf = workload_informer(rec, kinds[i]);
    for (const co_obj_t *o = co_informer_first(inf); o != NULL; o = co_informer_next(o)) {
      const co_workload_t *w = (const co_workload_t *)o;
      if (o->deleting || strcmp(o->ns, cr->meta.ns) != 0 ||
          !co_cwl_targets(cr, kind_name(kinds[i]), o->ns, o->name, &w->labels))
        continue;
      char wkey[KEY_MAX];
      snprintf(wkey, sizeof(wkey), "%c:%s", kinds[i], o->key);
      co_decision_t d;
      if (co_reconciler_decide(rec, kinds[i], w, &d) != 0)
        continue;
      phase_t ph;
      workload_phase(rec, kinds[i], w, wkey, &d, d.class ? d.class : class, &ph);
      track_failure(rec, qkey, cr, kinds[i], w, wkey, &d, &ph);
      total++;
      if (strcmp(ph.phase, "Sandboxed") == 0)
        sandboxed++;
      else if (strcmp(ph.phase, "Failed") == 0 || strcmp(ph.phase, "Conflict") == 0 ||
               strcmp(ph.phase, "Denied") == 0)
        degraded++;
      else
        progressing++;
      if (strcmp(ph.phase, "Sandboxed") != 0 && first_problem[0] == '\0')
        snprintf(first_problem, sizeof(first_problem), "%s %s: %s", kind_name(kinds[i]), o->name,
                 ph.message);
      if (total > 1000)
        continue; /* the schema caps the list; counts stay exact */
      cJSON *e = cJSON_CreateObject();
      cJSON_AddStringToObject(e, "kind", kind_name(kinds[i]));
      cJSON_AddStringToObject(e, "name", o->name);
      cJSON_AddStringToObject(e, "phase", ph.phase);
      cJSON_AddStringToObject(e, "reason", ph.reason);
      cJSON_AddStringToObject(e, "message", ph.message);
      cJSON_AddNumberToObject(e, "observedGeneration", (double)w->observed_generation);
      cJSON_AddNumberToObject(e, "replicas", w->replicas);
      cJSON_AddNumberToObject(e, "readyReplicas", w->ready_replicas);
      cJSON_AddNumberToObject(e, "updatedReplicas", w->updated_replicas);
      cJSON_AddNumberToObject(e, "sandboxedReplicas", ph.sandboxed);
      cJSON_AddItemToArray(wl, e);
    }
  }
  cJSON_AddNumberToObject(status, "workloadsTotal", total);
  cJSON_AddNumberToObject(status, "workloadsSandboxed", sandboxed);
  char summary[64];
  snprintf(summary, sizeof(summary), "%d/%d sandboxed", sandboxed, total);
  cJSON_AddStringToObject(status, "workloadsSummary", summary);

  cJSON *conds = cJSON_AddArrayToObject(status, "conditions");
  int64_t gen = cr->meta.generation;
  char msg[768];
  if (!valid) {
    add_condition(conds, st, COND_READY, 0, "InvalidSpec", invalid, gen);
    add_condition(conds, st, COND_PROGRESSING, 0, "InvalidSpec", invalid, gen);
    add_condition(conds, st, COND_DEGRADED, 1, "InvalidSpec", invalid, gen);
  } else if (class == NULL) {
    const char *m = "no node is ready for any allowed sandbox class, so auto resolves to none";
    add_condition(conds, st, COND_READY, 0, "NoReadyRuntime", m, gen);
    add_condition(conds, st, COND_PROGRESSING, 0, "NoReadyRuntime", m, gen);
    add_condition(conds, st, COND_DEGRADED, 1, "NoReadyRuntime", m, gen);
  } else {
    if (total == 0)
      snprintf(msg, sizeof(msg), "no Deployment or StatefulSet is selected");
    else if (sandboxed == total)
      snprintf(msg, sizeof(msg), "all %d workloads run sandboxed with %s", total, class);
    else
      snprintf(msg, sizeof(msg), "%d/%d workloads sandboxed; %s", sandboxed, total, first_problem);
    int ready_changed = add_condition(conds, st, COND_READY, total > 0 && sandboxed == total,
                                      total == 0           ? "NoWorkloads"
                                      : sandboxed == total ? "AllSandboxed"
                                                           : "NotSandboxed",
                                      msg, gen);
    add_condition(conds, st, COND_PROGRESSING, progressing > 0,
                  progressing > 0 ? "RollingOut" : "Stable", msg, gen);
    int degraded_changed =
        add_condition(conds, st, COND_DEGRADED, degraded > 0,
                      degraded > 0 ? "WorkloadsFailing" : "AsExpected", msg, gen);
    if (ready_changed && total > 0 && sandboxed == total)
      emit_event(rec, "Normal", "Sandboxed", "Report", "ConfidentialWorkload", cr->meta.ns,
                 cr->meta.name, &cr->meta.uid, msg);
    if (degraded_changed && degraded > 0)
      emit_event(rec, "Warning", "WorkloadsFailing", "Report", "ConfidentialWorkload", cr->meta.ns,
                 cr->meta.name, &cr->meta.uid, msg);
  }
  char *body = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  uint64_t h = fnv1a(body);
  if (h == st->hash) {
    co_free(body);
    finish(rec, qkey);
    return;
  }
  st->hash = h;
  write_cr(rec, qkey, &cr->meta, OP_STATUS, CO_PATCH_MERGE, "/status", body);
}

/* ---- queue, notifications, lifecycle -------------------------------------------------- */

static void on_key_done(co_wq_t *wq, const char *key, uint64_t ns, int failed) {
  co_metrics_reconcile(failed, (double)ns / 1e9);
}

static void pass_feed(co_reconciler_t *rec);

static void process(co_wq_t *wq, const char *key) {
  co_reconciler_t *rec = wq->data;
  rec->stats.reconciles++;
  if (rec->pass_kind < 2 && co_wq_len(wq) <= PASS_LOW)
    pass_feed(rec);
  if (rec->closing) {
    co_wq_done(wq, key);
    return;
  }
  switch (key[0]) {
  case 'd':
  case 's':
    reconcile_workload(rec, key);
    break;
  case 'c':
    reconcile_cr(rec, key);
    break;
  default:
    co_wq_done(wq, key);
    break;
  }
}

void co_reconciler_workload_changed(co_reconciler_t *rec, char kind, const co_obj_t *w) {
  queue_key(rec, kind, w->key);
}

static void queue_workloads_in(co_reconciler_t *rec, const char *ns) {
  static const char kinds[] = {'d', 's'};
  for (size_t i = 0; i < 2; i++)
    for (const co_obj_t *o = co_informer_first(workload_informer(rec, kinds[i])); o != NULL;
         o = co_informer_next(o))
      if (strcmp(o->ns, ns) == 0)
        queue_key(rec, kinds[i], o->key);
}

void co_reconciler_cr_changed(co_reconciler_t *rec, const co_obj_t *cr) {
  queue_key(rec, 'c', cr->key);
  /* Its selection may have changed: every workload of its namespace decides again. */
  queue_workloads_in(rec, cr->ns);
}

void co_reconciler_namespace_changed(co_reconciler_t *rec, const co_obj_t *ns) {
  queue_workloads_in(rec, ns->name);
}

void co_reconciler_pod_changed(co_reconciler_t *rec, const co_obj_t *pod) {
  for (const co_obj_t *o = co_informer_first(rec->cwls); o != NULL; o = co_informer_next(o))
    if (strcmp(o->ns, pod->ns) == 0)
      queue_key(rec, 'c', o->key);
}

void co_reconciler_nodes_changed(co_reconciler_t *rec) {
  for (const co_obj_t *o = co_informer_first(rec->cwls); o != NULL; o = co_informer_next(o))
    co_reconciler_cr_changed(rec, o);
}

/* Strongest first: hardware TEE, then VMs, then the user-space kernel. */
static const char *const auto_order[] = {"kata-qemu-snp", "kata-qemu-tdx", "kata-qemu",
                                         "kata-clh",      "kata-fc",       "kata-qemu-coco-dev",
                                         "gvisor"};

const char *co_reconciler_resolve_auto(void *ud) {
  co_reconciler_t *rec = ud;
  for (size_t i = 0; i < sizeof(auto_order) / sizeof(auto_order[0]); i++) {
    if (!co_decide_class_allowed(&rec->policy, auto_order[i]))
      continue;
    char label[256];
    snprintf(label, sizeof(label), "runtime." CO_DOMAIN "/%s", auto_order[i]);
    for (const co_obj_t *o = co_informer_first(rec->nodes); o != NULL; o = co_informer_next(o)) {
      const co_node_t *n = (const co_node_t *)o;
      const char *v = co_kv_get(&n->labels, label);
      if (n->ready && v != NULL && strcmp(v, "ready") == 0)
        return auto_order[i];
    }
  }
  return NULL;
}

int co_reconciler_init(uv_loop_t *loop, co_reconciler_t *rec, co_client_t *client,
                       co_informer_t *deployments, co_informer_t *statefulsets,
                       co_informer_t *namespaces, co_informer_t *pods, co_informer_t *cwls,
                       co_informer_t *nodes, const co_policy_t *policy) {
  memset(rec, 0, sizeof(*rec));
  rec->client = client;
  rec->deployments = deployments;
  rec->statefulsets = statefulsets;
  rec->namespaces = namespaces;
  rec->pods = pods;
  rec->cwls = cwls;
  rec->nodes = nodes;
  rec->policy = *policy;
  if (rec->policy.resolve_auto == NULL) {
    rec->policy.resolve_auto = co_reconciler_resolve_auto;
    rec->policy.resolve_ud = rec;
  }
  char host[256] = "";
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0')
    snprintf(host, sizeof(host), "confidential-operator");
  rec->instance = co_strdup(host);
  co_wq_opts_t o;
  co_wq_opts_default(&o);
  int rc = co_wq_init(loop, &rec->queue, &o, process);
  if (rc != 0) {
    co_free(rec->instance);
    return rc;
  }
  rec->queue.data = rec;
  rec->queue.on_done = on_key_done;
  return CO_OK;
}

/* The initial pass over every workload feeds the queue in batches as it drains, rather than
 * queueing every key at once (10,000 queued keys hold about 1.2 MB until the pass reaches
 * them). The walk resumes after the last object it queued; when that object has left the
 * cache (deleted or changed: a changed object goes last with a new seq and is queued by its
 * notification), it starts over, skipping what it already passed by seq. Objects with a seq
 * above the one the pass started with entered the cache later and were queued then. */
static const co_obj_t *pass_resume(co_reconciler_t *rec, co_informer_t *inf) {
  if (rec->pass_seq == 0)
    return co_informer_first(inf);
  const co_obj_t *o = co_informer_get(inf, rec->pass_key);
  if (o != NULL && o->seq == rec->pass_seq)
    return co_informer_next(o);
  for (o = co_informer_first(inf); o != NULL && o->seq <= rec->pass_seq; o = co_informer_next(o))
    ;
  return o;
}

static void pass_feed(co_reconciler_t *rec) {
  static const char kinds[] = {'d', 's'};
  size_t queued = 0;
  while (rec->pass_kind < 2 && queued < PASS_BATCH) {
    co_informer_t *inf = workload_informer(rec, kinds[rec->pass_kind]);
    const co_obj_t *o = pass_resume(rec, inf);
    for (; o != NULL && o->seq <= rec->pass_end && queued < PASS_BATCH; o = co_informer_next(o)) {
      queue_key(rec, kinds[rec->pass_kind], o->key);
      rec->pass_seq = o->seq;
      snprintf(rec->pass_key, sizeof(rec->pass_key), "%s", o->key);
      queued++;
    }
    if (queued < PASS_BATCH || o == NULL || o->seq > rec->pass_end) {
      /* This informer is done: on to the next kind. */
      rec->pass_kind++;
      rec->pass_seq = 0;
      if (rec->pass_kind < 2)
        rec->pass_end = workload_informer(rec, kinds[rec->pass_kind])->seq;
    }
  }
  co_log(CO_LOG_DEBUG, "initial pass fed", CO_I("keys", queued),
         CO_I("queue", co_wq_len(&rec->queue)), CO_B("done", rec->pass_kind >= 2));
}

int co_reconciler_start(co_reconciler_t *rec) {
  rec->pass_kind = 0;
  rec->pass_seq = 0;
  rec->pass_end = workload_informer(rec, 'd')->seq;
  pass_feed(rec);
  for (const co_obj_t *o = co_informer_first(rec->cwls); o != NULL; o = co_informer_next(o))
    queue_key(rec, 'c', o->key);
  return co_wq_start(&rec->queue);
}

static void free_all(co_reconciler_t *rec) {
  write_t *w, *wt;
  HASH_ITER(hh, rec->writes, w, wt) {
    HASH_DEL(rec->writes, w);
    co_free(w->key);
    co_free(w);
  }
  status_t *s, *stmp;
  HASH_ITER(hh, rec->statuses, s, stmp) {
    HASH_DEL(rec->statuses, s);
    co_free(s->key);
    co_free(s);
  }
  co_free(rec->instance);
  rec->instance = NULL;
}

static void on_queue_closed(co_wq_t *wq) {
  co_reconciler_t *rec = wq->data;
  free_all(rec);
  if (rec->close_cb != NULL)
    rec->close_cb(rec);
}

static void maybe_closed(co_reconciler_t *rec) {
  if (rec->closing && rec->in_flight == 0 && rec->closing == 1) {
    rec->closing = 2;
    co_wq_close(&rec->queue, on_queue_closed);
  }
}

void co_reconciler_close(co_reconciler_t *rec, co_reconciler_close_cb cb) {
  if (rec->closing)
    return;
  rec->closing = 1;
  rec->close_cb = cb;
  co_wq_stop(&rec->queue);
  for (op_t *op = rec->ops; op != NULL; op = op->next)
    co_req_cancel(&op->req);
  maybe_closed(rec);
}
