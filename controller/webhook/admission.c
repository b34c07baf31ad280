/* AdmissionReview in, AdmissionReview out (see co/admission.h). */
#include "co/admission.h"

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "co/alloc.h"
#include "co/buf.h"
#include "co/error.h"
#include "co/log.h"
#include "co/wplan.h"

#define UID_MAX 128
#define NAME_MAX_LEN 253
#define PATCH_MAX (64 * 1024)
#define WARN_PREFIX "confidential-operator: "

typedef enum { KIND_OTHER = 0, KIND_DEPLOYMENT, KIND_STATEFULSET, KIND_POD } kind_t;

static const char *str_item(const cJSON *o, const char *name) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int str_is(const char *a, const char *b) { return a != NULL && strcmp(a, b) == 0; }

static kind_t kind_of(const cJSON *req) {
  const cJSON *k = cJSON_GetObjectItemCaseSensitive(req, "kind");
  const char *group = str_item(k, "group"), *version = str_item(k, "version");
  const char *kind = str_item(k, "kind");
  if (!str_is(version, "v1") || group == NULL || kind == NULL)
    return KIND_OTHER;
  if (strcmp(group, "apps") == 0 && strcmp(kind, "Deployment") == 0)
    return KIND_DEPLOYMENT;
  if (strcmp(group, "apps") == 0 && strcmp(kind, "StatefulSet") == 0)
    return KIND_STATEFULSET;
  if (group[0] == '\0' && strcmp(kind, "Pod") == 0)
    return KIND_POD;
  return KIND_OTHER;
}

/* The write the reconciler would make for a Deployment or StatefulSet: the same plan,
 * rendered as JSONPatch. */
static void workload_patch(cJSON *ops, const cJSON *obj, const co_workload_t *w,
                           const co_decision_t *d) {
  co_wplan_t plan;
  if (co_wplan_build(d, w, &plan) == 0 && plan.write)
    co_wplan_jsonpatch(&plan, obj, ops);
  co_wplan_free(&plan);
}

/* Builds the projection of obj (a Pod is seen as its own template) and its header, whose
 * strings go to *block (owned by the caller; project_release frees it). */
static int project(cJSON *obj, kind_t kind, const char *ns, co_workload_t *w, char **block) {
  cJSON *md = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
  const char *name = str_item(md, "name");
  if (name == NULL)
    name = str_item(md, "generateName");
  if (name == NULL)
    name = "";
  size_t nl = strnlen(ns, NAME_MAX_LEN + 1), ml = strnlen(name, NAME_MAX_LEN + 1);
  if (nl > NAME_MAX_LEN || ml > NAME_MAX_LEN)
    return CO_EINVAL;
  /* One block: "ns/name", then "ns" and "name". */
  char *b = co_malloc(nl + 1 + ml + 1 + nl + 1 + ml + 1);
  memcpy(b, ns, nl);
  b[nl] = '/';
  memcpy(b + nl + 1, name, ml + 1);
  char *nsv = b + nl + 1 + ml + 1;
  memcpy(nsv, ns, nl + 1);
  memcpy(nsv + nl + 1, name, ml + 1);
  *block = b;
  w->meta.key = b;
  w->meta.ns = nsv;
  w->meta.name = nsv + nl + 1;
  co_uid_parse(str_item(md, "uid"), &w->meta.uid); /* absent (a CREATE has none) unless a UUID */
  const cJSON *gen = cJSON_GetObjectItemCaseSensitive(md, "generation");
  w->meta.generation = co_json_int64(gen, 0);
  if (kind != KIND_POD)
    return co_type_deployments.decode(obj, &w->meta);
  /* The pod's spec where a workload has its template's: one decoder for both. */
  cJSON *wrap = cJSON_CreateObject();
  if (md != NULL)
    cJSON_AddItemReferenceToObject(wrap, "metadata", md);
  cJSON *spec = cJSON_GetObjectItemCaseSensitive(obj, "spec");
  if (spec != NULL)
    cJSON_AddItemReferenceToObject(
        cJSON_AddObjectToObject(cJSON_AddObjectToObject(wrap, "spec"), "template"), "spec", spec);
  int rc = co_type_deployments.decode(wrap, &w->meta);
  cJSON_Delete(wrap);
  return rc;
}

static void project_release(co_workload_t *w, char *block) {
  co_type_deployments.release(&w->meta);
  co_free(block);
}

static char *base64(const char *s, size_t n) {
  char *out = co_malloc(4 * ((n + 2) / 3) + 1);
  EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
  return out;
}

static void warn(cJSON *resp, const char *msg) {
  cJSON *w = cJSON_GetObjectItemCaseSensitive(resp, "warnings");
  if (w == NULL)
    w = cJSON_AddArrayToObject(resp, "warnings");
  char buf[sizeof(WARN_PREFIX) + 512]; /* a decision message is at most 511 bytes */
  snprintf(buf, sizeof(buf), WARN_PREFIX "%s", msg);
  cJSON_AddItemToArray(w, cJSON_CreateString(buf));
}

static void deny(cJSON *resp, const char *msg) {
  cJSON_ReplaceItemInObjectCaseSensitive(resp, "allowed", cJSON_CreateFalse());
  cJSON *st = cJSON_AddObjectToObject(resp, "status");
  cJSON_AddStringToObject(st, "status", "Failure");
  cJSON_AddNumberToObject(st, "code", 403);
  cJSON_AddStringToObject(st, "reason", "Forbidden");
  cJSON_AddStringToObject(st, "message", msg);
}

/* Pods: only SET mutates; an opted-in pod left without an allowed sandbox class is denied
 * (fail closed) or admitted with a warning. */
static void pod_outcome(co_admission_t *a, cJSON *resp, cJSON *ops, const co_workload_t *w,
                        const co_decision_t *d) {
  switch (d->action) {
  case CO_ACTION_SET:
    co_jsonpatch_op(ops, "add", "/spec/runtimeClassName", cJSON_CreateString(d->class));
    return;
  case CO_ACTION_DENIED:
  case CO_ACTION_FOREIGN:
  case CO_ACTION_CONFLICT:
    break;
  default:
    return;
  }
  if (co_decide_class_allowed(a->policy, w->runtime_class))
    return; /* sandboxed already, whatever else it asks for */
  char msg[512];
  snprintf(msg, sizeof(msg), "pod is opted in to a sandbox but would run without one (%s): %s",
           d->reason, d->message);
  if (a->fail_closed) {
    char full[560];
    snprintf(full, sizeof(full), WARN_PREFIX "%s", msg);
    deny(resp, full);
    a->stats.denied++;
  } else {
    warn(resp, msg);
  }
}

int co_admission_review(co_admission_t *a, const char *body, size_t len, char **out,
                        size_t *out_len, char *err, size_t errlen) {
  *out = NULL;
  *out_len = 0;
  if (errlen > 0)
    err[0] = '\0';
  if (len > CO_ADMISSION_MAX_BODY) {
    a->stats.malformed++;
    co_set_err(err, errlen, "AdmissionReview of %zu bytes exceeds the limit of %u bytes", len,
               CO_ADMISSION_MAX_BODY);
    return CO_ETOOBIG;
  }
  cJSON *root = body != NULL ? cJSON_ParseWithLength(body, len) : NULL;
  if (root == NULL) {
    a->stats.malformed++;
    co_set_err(err, errlen, "request body is not JSON");
    return CO_EPARSE;
  }
  int rc = CO_EINVAL;
  cJSON *req = cJSON_GetObjectItemCaseSensitive(root, "request");
  const char *uid = str_item(req, "uid");
  const char *op = str_item(req, "operation");
  if (!cJSON_IsObject(root) || !str_is(str_item(root, "apiVersion"), "admission.k8s.io/v1") ||
      !str_is(str_item(root, "kind"), "AdmissionReview")) {
    co_set_err(err, errlen, "not an admission.k8s.io/v1 AdmissionReview");
    goto fail;
  }
  if (!cJSON_IsObject(req) || uid == NULL || uid[0] == '\0' || strlen(uid) > UID_MAX ||
      op == NULL) {
    co_set_err(err, errlen, "AdmissionReview without a request, its uid or its operation");
    goto fail;
  }

  cJSON *review = cJSON_CreateObject();
  cJSON_AddStringToObject(review, "apiVersion", "admission.k8s.io/v1");
  cJSON_AddStringToObject(review, "kind", "AdmissionReview");
  cJSON *resp = cJSON_AddObjectToObject(review, "response");
  cJSON_AddStringToObject(resp, "uid", uid);
  cJSON_AddTrueToObject(resp, "allowed");

  kind_t kind = kind_of(req);
  const char *sub = str_item(req, "subResource");
  int create = strcmp(op, "CREATE") == 0, update = strcmp(op, "UPDATE") == 0;
  int handled = kind != KIND_OTHER && (sub == NULL || sub[0] == '\0') &&
                (create || (update && kind != KIND_POD));
  if (handled) {
    cJSON *obj = cJSON_GetObjectItemCaseSensitive(req, "object");
    const char *ns = str_item(req, "namespace");
    if (ns == NULL || ns[0] == '\0')
      ns = str_item(cJSON_GetObjectItemCaseSensitive(obj, "metadata"), "namespace");
    if (!cJSON_IsObject(obj) || ns == NULL) {
      co_set_err(err, errlen, "AdmissionReview request without its object or namespace");
      cJSON_Delete(review);
      goto fail;
    }
    co_workload_t w;
    memset(&w, 0, sizeof(w));
    char *block = NULL;
    int prc = project(obj, kind, ns, &w, &block);
    co_decision_t d;
    if (prc == 0)
      prc = a->decide(a->decide_ud,
                      kind == KIND_DEPLOYMENT    ? 'd'
                      : kind == KIND_STATEFULSET ? 's'
                                                 : 'p',
                      &w, &d);
    if (prc != 0) {
      co_set_err(err, errlen, "the object in the AdmissionReview cannot be decoded: %s",
                 co_strerror(prc));
      project_release(&w, block);
      cJSON_Delete(review);
      goto fail;
    }
    cJSON *ops = cJSON_CreateArray();
    if (kind == KIND_POD) {
      pod_outcome(a, resp, ops, &w, &d);
    } else {
      workload_patch(ops, obj, &w, &d);
      if (d.action == CO_ACTION_DENIED || d.action == CO_ACTION_CONFLICT ||
          d.action == CO_ACTION_FOREIGN)
        warn(resp, d.message);
    }
    co_log(CO_LOG_DEBUG, "admission review", CO_S("uid", uid), CO_S("operation", op),
           CO_S("kind", kind == KIND_POD          ? "Pod"
                        : kind == KIND_DEPLOYMENT ? "Deployment"
                                                  : "StatefulSet"),
           CO_S("key", w.meta.key), CO_S("action", co_action_name(d.action)),
           CO_S("reason", d.reason), CO_I("ops", cJSON_GetArraySize(ops)),
           CO_B("allowed", cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(resp, "allowed"))));
    project_release(&w, block);
    if (cJSON_GetArraySize(ops) > 0) {
      char *patch = cJSON_PrintUnformatted(ops);
      size_t pl = strlen(patch);
      if (pl <= PATCH_MAX) {
        char *b64 = base64(patch, pl);
        cJSON_AddStringToObject(resp, "patchType", "JSONPatch");
        cJSON_AddStringToObject(resp, "patch", b64);
        co_free(b64);
        a->stats.mutated++;
      }
      cJSON_free(patch);
    }
    cJSON_Delete(ops);
  }
  char *s = cJSON_PrintUnformatted(review);
  cJSON_Delete(review);
  cJSON_Delete(root);
  *out_len = strlen(s);
  *out = co_strndup(s, *out_len);
  cJSON_free(s);
  a->stats.reviews++;
  return 0;

fail:
  a->stats.malformed++;
  cJSON_Delete(root);
  return rc;
}
