/* Decoders of the cached projections (Deployments, StatefulSets, Nodes). */
#include "co/objects.h"

#include <stddef.h>
#include <string.h>

#include "co/alloc.h"
#include "co/buf.h"
#include "co/error.h"

#define KV_MAX (1024 * 1024)
/* Condition messages kept for status: enough to explain, bounded. */
#define MSG_MAX 1024
#define MAX_OPTIN 8

static const char *default_optin[] = {"KATA", "CONFIDENTIAL_RUNTIME"};
static const char *const *optin_names = default_optin;
static unsigned optin_count = 2;

void co_objects_set_optin_env(const char *const *names, unsigned count) {
  optin_names = names;
  optin_count = count > MAX_OPTIN ? MAX_OPTIN : count;
}

const char *co_kv_get(const co_kv_t *kv, const char *key) {
  return co_kv_getn(kv, key, strlen(key));
}

const char *co_kv_getn(const co_kv_t *kv, const char *key, size_t kl) {
  if (kv == NULL)
    return NULL;
  CO_KV_FOREACH(kv, p) {
    if (strlen(p) > kl && p[kl] == '=' && memcmp(p, key, kl) == 0)
      return p + kl + 1;
  }
  return NULL;
}

const char *co_kv_next(const co_kv_t *kv, const char *p) {
  if (kv->data == NULL)
    return NULL;
  p = p == NULL ? kv->data : p + strlen(p) + 1;
  return p[0] != '\0' ? p : NULL;
}

size_t co_kv_count(const co_kv_t *kv) {
  size_t n = 0;
  CO_KV_FOREACH(kv, p) {
    (void)p;
    n++;
  }
  return n;
}

size_t co_kv_size(const co_kv_t *kv) {
  if (kv->data == NULL)
    return 0;
  const char *p = kv->data;
  while (p[0] != '\0')
    p += strlen(p) + 1;
  return (size_t)(p - kv->data) + 1;
}

int co_kv_equal(const co_kv_t *a, const co_kv_t *b) {
  size_t n = co_kv_size(a);
  return n == co_kv_size(b) && (n == 0 || memcmp(a->data, b->data, n) == 0);
}

static int kv_add(co_buf_t *b, const char *k, const char *v) {
  int rc = co_buf_appendf(b, "%s=%s", k, v);
  if (rc == 0)
    rc = co_buf_append(b, "", 1); /* the pair's terminating NUL */
  return rc;
}

/* The buffer's own terminating NUL is the block's final empty string. */
static void kv_finish(co_buf_t *b, co_kv_t *out) {
  size_t len = b->len; /* co_buf_steal resets it */
  /* Cached for the object's life: give back the growth slack. */
  out->data = len > 0 ? co_realloc(co_buf_steal(b), len + 1) : NULL;
  co_buf_free(b);
}

/* Copies a string map (labels/annotations); prefix filters keys when not NULL. */
static int kv_from_map(const cJSON *map, const char *prefix, co_kv_t *out) {
  memset(out, 0, sizeof(*out));
  if (map == NULL)
    return 0;
  if (!cJSON_IsObject(map))
    return CO_EPARSE;
  co_buf_t b;
  co_buf_init(&b, KV_MAX);
  const cJSON *it;
  cJSON_ArrayForEach(it, map) {
    if (!cJSON_IsString(it) || it->string == NULL)
      continue;
    if (prefix != NULL && strstr(it->string, prefix) == NULL)
      continue;
    if (kv_add(&b, it->string, it->valuestring) != 0) {
      co_buf_free(&b);
      return CO_ETOOBIG;
    }
  }
  kv_finish(&b, out);
  return 0;
}

static int str_equal(const char *a, const char *b) {
  return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static const cJSON *path(const cJSON *o, const char *a, const char *b, const char *c) {
  o = cJSON_GetObjectItemCaseSensitive(o, a);
  if (b != NULL)
    o = cJSON_GetObjectItemCaseSensitive(o, b);
  if (c != NULL)
    o = cJSON_GetObjectItemCaseSensitive(o, c);
  return o;
}

static const char *str_of(const cJSON *v) { return cJSON_IsString(v) ? v->valuestring : NULL; }

static char *dup_str(const cJSON *v) {
  return cJSON_IsString(v) ? co_strdup(v->valuestring) : NULL;
}

static int32_t int_or(const cJSON *v, int32_t dflt) {
  if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 2147483647.0)
    return dflt;
  return (int32_t)v->valuedouble;
}

/* Opt-in env vars of every container and init container. Only literal values count:
 * valueFrom is not visible to the operator. */
static int scan_env(const cJSON *podspec, co_kv_t *out) {
  memset(out, 0, sizeof(*out));
  co_buf_t b;
  co_buf_init(&b, KV_MAX);
  static const char *lists[] = {"initContainers", "containers"};
  for (size_t l = 0; l < 2; l++) {
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(podspec, lists[l])) {
      const cJSON *e;
      cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(c, "env")) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "name");
        if (!cJSON_IsString(name))
          continue;
        for (unsigned i = 0; i < optin_count; i++) {
          if (strcmp(name->valuestring, optin_names[i]) != 0)
            continue;
          const cJSON *val = cJSON_GetObjectItemCaseSensitive(e, "value");
          out->data = b.data; /* the pairs so far (the buffer keeps a NUL after them) */
          if (b.data != NULL && co_kv_get(out, optin_names[i]) != NULL)
            break;
          if (kv_add(&b, optin_names[i], cJSON_IsString(val) ? val->valuestring : "") != 0) {
            co_buf_free(&b);
            memset(out, 0, sizeof(*out));
            return CO_ETOOBIG;
          }
        }
      }
    }
  }
  kv_finish(&b, out);
  return 0;
}

/* emptyDir volumes with their medium and size limit (a number or a quantity string). */
static int scan_empty_dirs(const cJSON *podspec, co_kv_t *out) {
  memset(out, 0, sizeof(*out));
  co_buf_t b;
  co_buf_init(&b, KV_MAX);
  const cJSON *v;
  cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(podspec, "volumes")) {
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(v, "name");
    const cJSON *ed = cJSON_GetObjectItemCaseSensitive(v, "emptyDir");
    if (!cJSON_IsString(name) || !cJSON_IsObject(ed))
      continue;
    const cJSON *medium = cJSON_GetObjectItemCaseSensitive(ed, "medium");
    const cJSON *limit = cJSON_GetObjectItemCaseSensitive(ed, "sizeLimit");
    char lim[64] = "";
    if (cJSON_IsString(limit))
      snprintf(lim, sizeof(lim), "%s", limit->valuestring);
    else if (cJSON_IsNumber(limit))
      snprintf(lim, sizeof(lim), "%.0f", limit->valuedouble);
    char val[160];
    snprintf(val, sizeof(val), "%s|%s", cJSON_IsString(medium) ? medium->valuestring : "", lim);
    if (kv_add(&b, name->valuestring, val) != 0) {
      co_buf_free(&b);
      return CO_ETOOBIG;
    }
  }
  kv_finish(&b, out);
  return 0;
}

static void kv_free(co_kv_t *kv) {
  co_free(kv->data);
  memset(kv, 0, sizeof(*kv));
}

static int workload_decode(const cJSON *obj, co_obj_t *out) {
  co_workload_t *w = (co_workload_t *)out;
  const cJSON *spec = cJSON_GetObjectItemCaseSensitive(obj, "spec");
  const cJSON *status = cJSON_GetObjectItemCaseSensitive(obj, "status");
  const cJSON *podspec = path(spec, "template", "spec", NULL);
  w->replicas = int_or(cJSON_GetObjectItemCaseSensitive(spec, "replicas"), 1);
  w->observed_generation =
      int_or(cJSON_GetObjectItemCaseSensitive(status, "observedGeneration"), 0);
  w->status_replicas = int_or(cJSON_GetObjectItemCaseSensitive(status, "replicas"), 0);
  w->ready_replicas = int_or(cJSON_GetObjectItemCaseSensitive(status, "readyReplicas"), 0);
  w->updated_replicas = int_or(cJSON_GetObjectItemCaseSensitive(status, "updatedReplicas"), 0);
  w->available_replicas = int_or(cJSON_GetObjectItemCaseSensitive(status, "availableReplicas"), 0);
  w->runtime_class = dup_str(cJSON_GetObjectItemCaseSensitive(podspec, "runtimeClassName"));
  int rc = kv_from_map(path(obj, "metadata", "labels", NULL), NULL, &w->labels);
  if (rc == 0)
    rc = kv_from_map(path(obj, "metadata", "annotations", NULL), CO_DOMAIN "/", &w->annotations);
  if (rc == 0)
    rc = scan_env(podspec, &w->template_env);
  if (rc == 0)
    rc = kv_from_map(path(spec, "selector", "matchLabels", NULL), NULL, &w->selector);
  if (rc == 0)
    rc = scan_empty_dirs(podspec, &w->empty_dirs);
  const cJSON *am = cJSON_GetObjectItemCaseSensitive(podspec, "automountServiceAccountToken");
  w->automount_sa_token = cJSON_IsBool(am) ? cJSON_IsTrue(am) : -1;
  const cJSON *cond;
  cJSON_ArrayForEach(cond, cJSON_GetObjectItemCaseSensitive(status, "conditions")) {
    const char *type = str_of(cJSON_GetObjectItemCaseSensitive(cond, "type"));
    const char *st = str_of(cJSON_GetObjectItemCaseSensitive(cond, "status"));
    const char *msg = str_of(cJSON_GetObjectItemCaseSensitive(cond, "message"));
    if (type == NULL || st == NULL)
      continue;
    int stuck = strcmp(type, "Progressing") == 0 && strcmp(st, "False") == 0;
    int failed = stuck || (strcmp(type, "ReplicaFailure") == 0 && strcmp(st, "True") == 0);
    if (stuck)
      w->progress_failed = 1;
    if (failed && w->failure_message == NULL && msg != NULL)
      w->failure_message = co_strndup(msg, strnlen(msg, MSG_MAX));
  }
  return rc;
}

static void workload_release(co_obj_t *o) {
  co_workload_t *w = (co_workload_t *)o;
  co_free(w->runtime_class);
  kv_free(&w->labels);
  kv_free(&w->annotations);
  kv_free(&w->template_env);
  kv_free(&w->selector);
  kv_free(&w->empty_dirs);
  co_free(w->failure_message);
}

static int workload_equal(const co_obj_t *a, const co_obj_t *b) {
  const co_workload_t *x = (const co_workload_t *)a, *y = (const co_workload_t *)b;
  return x->observed_generation == y->observed_generation && x->replicas == y->replicas &&
         x->status_replicas == y->status_replicas && x->ready_replicas == y->ready_replicas &&
         x->updated_replicas == y->updated_replicas &&
         x->available_replicas == y->available_replicas &&
         str_equal(x->runtime_class, y->runtime_class) && co_kv_equal(&x->labels, &y->labels) &&
         co_kv_equal(&x->annotations, &y->annotations) &&
         co_kv_equal(&x->template_env, &y->template_env) &&
         co_kv_equal(&x->selector, &y->selector) && co_kv_equal(&x->empty_dirs, &y->empty_dirs) &&
         x->automount_sa_token == y->automount_sa_token &&
         x->progress_failed == y->progress_failed &&
         str_equal(x->failure_message, y->failure_message);
}

static int node_decode(const cJSON *obj, co_obj_t *out) {
  co_node_t *n = (co_node_t *)out;
  const cJSON *status = cJSON_GetObjectItemCaseSensitive(obj, "status");
  const cJSON *c;
  cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(status, "conditions")) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(c, "type");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(c, "status");
    if (cJSON_IsString(t) && strcmp(t->valuestring, "Ready") == 0)
      n->ready = cJSON_IsString(s) && strcmp(s->valuestring, "True") == 0;
  }
  n->unschedulable = cJSON_IsTrue(path(obj, "spec", "unschedulable", NULL));
  n->rv = dup_str(path(obj, "metadata", "resourceVersion", NULL));
  n->kernel_version = dup_str(path(status, "nodeInfo", "kernelVersion", NULL));
  co_buf_t b;
  co_buf_init(&b, 64 * 1024);
  const cJSON *h;
  cJSON_ArrayForEach(h, cJSON_GetObjectItemCaseSensitive(status, "runtimeHandlers")) {
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(h, "name");
    if (!cJSON_IsString(name) || name->valuestring[0] == '\0')
      continue;
    if ((b.len > 0 && co_buf_append(&b, ",", 1) != 0) || co_buf_appends(&b, name->valuestring)) {
      co_buf_free(&b);
      return CO_ETOOBIG;
    }
  }
  n->runtime_handlers = b.len > 0 ? co_buf_steal(&b) : NULL;
  co_buf_free(&b);
  int rc = kv_from_map(path(obj, "metadata", "labels", NULL), NULL, &n->labels);
  if (rc == 0)
    rc = kv_from_map(path(obj, "metadata", "annotations", NULL), CO_DOMAIN "/", &n->annotations);
  return rc;
}

static void node_release(co_obj_t *o) {
  co_node_t *n = (co_node_t *)o;
  co_free(n->rv);
  co_free(n->kernel_version);
  co_free(n->runtime_handlers);
  kv_free(&n->labels);
  kv_free(&n->annotations);
}

static int node_equal(const co_obj_t *a, const co_obj_t *b) {
  const co_node_t *x = (const co_node_t *)a, *y = (const co_node_t *)b;
  return x->ready == y->ready && x->unschedulable == y->unschedulable &&
         str_equal(x->kernel_version, y->kernel_version) &&
         str_equal(x->runtime_handlers, y->runtime_handlers) &&
         co_kv_equal(&x->labels, &y->labels) && co_kv_equal(&x->annotations, &y->annotations);
}

static int namespace_decode(const cJSON *obj, co_obj_t *out) {
  co_namespace_t *n = (co_namespace_t *)out;
  return kv_from_map(path(obj, "metadata", "labels", NULL), NULL, &n->labels);
}

static void namespace_release(co_obj_t *o) { kv_free(&((co_namespace_t *)o)->labels); }

static int namespace_equal(const co_obj_t *a, const co_obj_t *b) {
  return co_kv_equal(&((const co_namespace_t *)a)->labels, &((const co_namespace_t *)b)->labels);
}

/* The first reason a pod does not run: unschedulable, or a container stuck waiting (sandbox
 * or image problems). */
static char *pod_waiting_reason(const cJSON *status) {
  const cJSON *c;
  cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(status, "conditions")) {
    const char *type = str_of(cJSON_GetObjectItemCaseSensitive(c, "type"));
    const char *st = str_of(cJSON_GetObjectItemCaseSensitive(c, "status"));
    const char *reason = str_of(cJSON_GetObjectItemCaseSensitive(c, "reason"));
    const char *msg = str_of(cJSON_GetObjectItemCaseSensitive(c, "message"));
    if (type != NULL && strcmp(type, "PodScheduled") == 0 && st != NULL &&
        strcmp(st, "False") == 0) {
      co_buf_t b;
      co_buf_init(&b, MSG_MAX);
      co_buf_appendf(&b, "%s: %.900s", reason ? reason : "Unschedulable", msg ? msg : "");
      return co_buf_steal(&b);
    }
  }
  static const char *lists[] = {"initContainerStatuses", "containerStatuses"};
  for (size_t l = 0; l < 2; l++) {
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(status, lists[l])) {
      const cJSON *w = path(c, "state", "waiting", NULL);
      const char *reason = str_of(cJSON_GetObjectItemCaseSensitive(w, "reason"));
      const char *msg = str_of(cJSON_GetObjectItemCaseSensitive(w, "message"));
      if (reason == NULL || strcmp(reason, "ContainerCreating") == 0 ||
          strcmp(reason, "PodInitializing") == 0)
        continue;
      co_buf_t b;
      co_buf_init(&b, MSG_MAX);
      co_buf_appendf(&b, "%s: %.900s", reason, msg ? msg : "");
      return co_buf_steal(&b);
    }
  }
  return NULL;
}

static int pod_decode(const cJSON *obj, co_obj_t *out) {
  co_pod_t *p = (co_pod_t *)out;
  const cJSON *spec = cJSON_GetObjectItemCaseSensitive(obj, "spec");
  const cJSON *status = cJSON_GetObjectItemCaseSensitive(obj, "status");
  p->runtime_class = dup_str(cJSON_GetObjectItemCaseSensitive(spec, "runtimeClassName"));
  p->node_name = dup_str(cJSON_GetObjectItemCaseSensitive(spec, "nodeName"));
  const char *phase = str_of(cJSON_GetObjectItemCaseSensitive(status, "phase"));
  p->terminal = phase != NULL && (strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0);
  const cJSON *c;
  cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(status, "conditions")) {
    const char *type = str_of(cJSON_GetObjectItemCaseSensitive(c, "type"));
    const char *st = str_of(cJSON_GetObjectItemCaseSensitive(c, "status"));
    if (type != NULL && strcmp(type, "Ready") == 0)
      p->ready = st != NULL && strcmp(st, "True") == 0;
  }
  p->waiting_reason = p->ready ? NULL : pod_waiting_reason(status);
  return kv_from_map(path(obj, "metadata", "labels", NULL), NULL, &p->labels);
}

static void pod_release(co_obj_t *o) {
  co_pod_t *p = (co_pod_t *)o;
  co_free(p->runtime_class);
  co_free(p->node_name);
  co_free(p->waiting_reason);
  kv_free(&p->labels);
}

static int pod_equal(const co_obj_t *a, const co_obj_t *b) {
  const co_pod_t *x = (const co_pod_t *)a, *y = (const co_pod_t *)b;
  return x->ready == y->ready && x->terminal == y->terminal &&
         str_equal(x->runtime_class, y->runtime_class) && str_equal(x->node_name, y->node_name) &&
         str_equal(x->waiting_reason, y->waiting_reason) && co_kv_equal(&x->labels, &y->labels);
}

/* What each decode allocates (and its release frees): packed by the informer. */
#define OWN_STR(type, field) \
  { (uint16_t) offsetof(type, field), CO_OWNED_STR }
#define OWN_KV(type, field) \
  { (uint16_t) offsetof(type, field), CO_OWNED_KV }

static const co_owned_field_t namespace_owned[] = {OWN_KV(co_namespace_t, labels), {0, 0}};

static const co_owned_field_t pod_owned[] = {OWN_KV(co_pod_t, labels),
                                             OWN_STR(co_pod_t, runtime_class),
                                             OWN_STR(co_pod_t, node_name),
                                             OWN_STR(co_pod_t, waiting_reason),
                                             {0, 0}};

static const co_owned_field_t workload_owned[] = {
    OWN_STR(co_workload_t, runtime_class),   OWN_KV(co_workload_t, labels),
    OWN_KV(co_workload_t, annotations),      OWN_KV(co_workload_t, template_env),
    OWN_KV(co_workload_t, selector),         OWN_KV(co_workload_t, empty_dirs),
    OWN_STR(co_workload_t, failure_message), {0, 0}};

static const co_owned_field_t node_owned[] = {OWN_STR(co_node_t, rv),
                                              OWN_STR(co_node_t, kernel_version),
                                              OWN_STR(co_node_t, runtime_handlers),
                                              OWN_KV(co_node_t, labels),
                                              OWN_KV(co_node_t, annotations),
                                              {0, 0}};

const co_resource_type_t co_type_namespaces = {
    "namespaces",      "/api/v1/namespaces", sizeof(co_namespace_t), namespace_decode,
    namespace_release, namespace_equal,      namespace_owned};

const co_resource_type_t co_type_pods = {"pods",      "/api/v1/pods", sizeof(co_pod_t), pod_decode,
                                         pod_release, pod_equal,      pod_owned};

int64_t co_json_int64(const cJSON *v, int64_t dflt) {
  if (!cJSON_IsNumber(v) || v->valuedouble != v->valuedouble)
    return dflt;
  if (v->valuedouble >= 9223372036854775807.0) /* 2^63 */
    return INT64_MAX;
  if (v->valuedouble <= -9223372036854775807.0)
    return INT64_MIN;
  return (int64_t)v->valuedouble;
}

const co_resource_type_t co_type_deployments = {"deployments",         "/apis/apps/v1/deployments",
                                                sizeof(co_workload_t), workload_decode,
                                                workload_release,      workload_equal,
                                                workload_owned};

const co_resource_type_t co_type_statefulsets = {
    "statefulsets",        "/apis/apps/v1/statefulsets",
    sizeof(co_workload_t), workload_decode,
    workload_release,      workload_equal,
    workload_owned};

const co_resource_type_t co_type_nodes = {
    "nodes", "/api/v1/nodes", sizeof(co_node_t), node_decode, node_release, node_equal, node_owned};
