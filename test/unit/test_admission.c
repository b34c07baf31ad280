/* The admission webhook's logic on AdmissionReview fixtures (test/unit/data/admission/): the
 * patch for each decision, pods denied or warned, system namespaces and subresources untouched,
 * malformed reviews refused with a message. Decisions come from co_decide, the controller's
 * function, with namespace labels and CRs supplied as the controller's caches would. */
#include "co/admission.h"

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "co/alloc.h"
#include "co/error.h"
#include "co/buf.h"
#include "co/wplan.h"
#include "co_test.h"

static const char *const allowed[] = {"kata-qemu", "kata-clh", "gvisor"};
static const co_policy_t policy = {.allowed = allowed,
                                   .n_allowed = 3,
                                   .default_class = "kata-qemu",
                                   .ns_policy = CO_NS_POLICY_DEFAULT,
                                   .operator_namespace = "confidential-system"};

static int decide_calls;
static char last_kind;
static int vault_cr = 1; /* 0: the CR shop/vault-cr is gone (deleted) */

/* The controller's inputs for namespace "shop": a CR shop/api-cr (gvisor) selecting the
 * workloads labelled tier=backend, and (while vault_cr) a CR shop/vault-cr (kata-qemu) with
 * spec.hardening {memoryBackedEmptyDirs: true, automountServiceAccountToken: false}
 * selecting those labelled tier=vault. Pods get no CRs. */
static int decide(void *ud, char kind, const co_workload_t *w, co_decision_t *out) {
  (void)ud;
  decide_calls++;
  last_kind = kind;
  static const co_decide_cr_t cr = {"shop/api-cr", "gvisor", NULL};
  const char *tier = co_kv_get(&w->labels, "tier");
  co_decide_input_t in = {w, NULL, NULL, 0};
  if (kind != 'p' && tier != NULL && strcmp(tier, "backend") == 0 &&
      strcmp(w->meta.ns, "shop") == 0) {
    in.crs = &cr;
    in.n_crs = 1;
  }
  static const co_hardening_t hard = {1, "256Mi", 0};
  static const co_decide_cr_t vault = {"shop/vault-cr", "kata-qemu", &hard};
  if (kind != 'p' && vault_cr && tier != NULL && strcmp(tier, "vault") == 0 &&
      strcmp(w->meta.ns, "shop") == 0) {
    in.crs = &vault;
    in.n_crs = 1;
  }
  return co_decide(&policy, &in, out);
}

static char *read_fixture(const char *name, size_t *len) {
  char path[512];
  snprintf(path, sizeof(path), "%s/admission/%s", CO_TEST_DATA, name);
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    fprintf(stderr, "# cannot open %s\n", path);
    return NULL;
  }
  static char buf[256 * 1024];
  *len = fread(buf, 1, sizeof(buf) - 1, f);
  buf[*len] = '\0';
  fclose(f);
  return buf;
}

typedef struct {
  cJSON *review; /* the whole response document */
  const cJSON *resp;
  int allowed;
  char patch[4096]; /* decoded JSONPatch, "" when none */
  const char *warning;
  const char *message; /* status.message when denied */
} result_t;

static void result_free(result_t *r) { cJSON_Delete(r->review); }

static int run(co_admission_t *a, const char *fixture, result_t *r) {
  memset(r, 0, sizeof(*r));
  size_t len = 0;
  const char *body = read_fixture(fixture, &len);
  if (body == NULL)
    return -1;
  char *out = NULL, err[256];
  size_t out_len = 0;
  int rc = co_admission_review(a, body, len, &out, &out_len, err, sizeof(err));
  if (rc != 0) {
    fprintf(stderr, "# %s: %s\n", fixture, err);
    return rc;
  }
  CO_CHECK_INT(strlen(out), ==, out_len);
  r->review = cJSON_Parse(out);
  co_free(out);
  CO_CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(r->review, "apiVersion")),
               "admission.k8s.io/v1");
  CO_CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(r->review, "kind")), "AdmissionReview");
  r->resp = cJSON_GetObjectItem(r->review, "response");
  r->allowed = cJSON_IsTrue(cJSON_GetObjectItem(r->resp, "allowed"));
  const char *p = cJSON_GetStringValue(cJSON_GetObjectItem(r->resp, "patch"));
  if (p != NULL) {
    CO_CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(r->resp, "patchType")), "JSONPatch");
    CO_CHECK_INT(strlen(p), <, 4 * sizeof(r->patch) / 3);
    int n = EVP_DecodeBlock((unsigned char *)r->patch, (const unsigned char *)p, (int)strlen(p));
    CO_CHECK_INT(n, >, 0);
    /* EVP_DecodeBlock counts the padding as zero bytes. */
    while (n > 0 && r->patch[n - 1] == '\0')
      n--;
    r->patch[n > 0 ? n : 0] = '\0';
  }
  r->warning =
      cJSON_GetStringValue(cJSON_GetArrayItem(cJSON_GetObjectItem(r->resp, "warnings"), 0));
  r->message =
      cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(r->resp, "status"), "message"));
  return 0;
}

static co_admission_t adm(int fail_closed) {
  co_admission_t a;
  memset(&a, 0, sizeof(a));
  a.decide = decide;
  a.policy = &policy;
  a.fail_closed = fail_closed;
  return a;
}

static void test_deployment_create_env(void) {
  co_admission_t a = adm(0);
  result_t r;
  decide_calls = 0;
  CO_CHECK_INT(run(&a, "deployment-create-env.json", &r), ==, 0);
  CO_CHECK_INT(decide_calls, ==, 1);
  CO_CHECK_INT(last_kind, ==, 'd');
  CO_CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(r.resp, "uid")),
               "5b0b6f4e-1f7c-4a8e-9a55-0c6f0d1e2a01");
  CO_CHECK(r.allowed);
  CO_CHECK_STR(r.patch, "[{\"op\":\"add\",\"path\":\"/spec/template/spec/runtimeClassName\","
                        "\"value\":\"kata-qemu\"},{\"op\":\"add\",\"path\":\"/metadata/"
                        "annotations\",\"value\":{\"confidential.cypherpunk.io/"
                        "original-runtime-class\":\"\"}}]");
  CO_CHECK(r.warning == NULL);
  CO_CHECK_INT(a.stats.reviews, ==, 1);
  CO_CHECK_INT(a.stats.mutated, ==, 1);
  result_free(&r);
}

/* The owner's update dropped the class: set again, the recorded original stays. */
static void test_deployment_update_dropped(void) {
  co_admission_t a = adm(0);
  result_t r;
  CO_CHECK_INT(run(&a, "deployment-update-dropped.json", &r), ==, 0);
  CO_CHECK(r.allowed);
  CO_CHECK_STR(r.patch, "[{\"op\":\"add\",\"path\":\"/spec/template/spec/runtimeClassName\","
                        "\"value\":\"kata-qemu\"}]");
  result_free(&r);
}

/* Existing annotations: one key added, with '/' escaped as ~1. */
static void test_statefulset_annotation(void) {
  co_admission_t a = adm(0);
  result_t r;
  CO_CHECK_INT(run(&a, "statefulset-create-annotation.json", &r), ==, 0);
  CO_CHECK_INT(last_kind, ==, 's');
  CO_CHECK_STR(r.patch, "[{\"op\":\"add\",\"path\":\"/spec/template/spec/runtimeClassName\","
                        "\"value\":\"gvisor\"},{\"op\":\"add\",\"path\":\"/metadata/annotations/"
                        "confidential.cypherpunk.io~1original-runtime-class\",\"value\":\"\"}]");
  result_free(&r);
}

static void test_pod_env(void) {
  co_admission_t a = adm(1);
  result_t r;
  CO_CHECK_INT(run(&a, "pod-create-env.json", &r), ==, 0);
  CO_CHECK_INT(last_kind, ==, 'p');
  CO_CHECK(r.allowed);
  CO_CHECK_STR(r.patch,
               "[{\"op\":\"add\",\"path\":\"/spec/runtimeClassName\",\"value\":\"kata-qemu\"}]");
  result_free(&r);
}

/* An opted-in pod asking for a class outside the allow-list (env var of an init container,
 * generateName, namespace only in the request): denied when fail closed, else warned. */
static void test_pod_bad_class(void) {
  co_admission_t a = adm(1);
  result_t r;
  CO_CHECK_INT(run(&a, "pod-create-bad-class.json", &r), ==, 0);
  CO_CHECK(!r.allowed);
  CO_CHECK_STR(r.patch, "");
  CO_CHECK_CONTAINS(r.message, "would run without one");
  CO_CHECK_CONTAINS(r.message, "kata-fast");
  CO_CHECK_CONTAINS(r.message, "ClassNotAllowed");
  CO_CHECK_INT(
      cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(r.resp, "status"), "code")), ==,
      403);
  CO_CHECK_INT(a.stats.denied, ==, 1);
  result_free(&r);

  co_admission_t open = adm(0);
  CO_CHECK_INT(run(&open, "pod-create-bad-class.json", &r), ==, 0);
  CO_CHECK(r.allowed);
  CO_CHECK_STR(r.patch, "");
  CO_CHECK_CONTAINS(r.warning, "kata-fast");
  CO_CHECK_INT(open.stats.denied, ==, 0);
  result_free(&r);
}

static void test_system_namespace(void) {
  co_admission_t a = adm(1);
  result_t r;
  CO_CHECK_INT(run(&a, "pod-create-kube-system.json", &r), ==, 0);
  CO_CHECK(r.allowed);
  CO_CHECK_STR(r.patch, "");
  CO_CHECK(r.warning == NULL);
  result_free(&r);
}

/* Someone else's class: left alone, with a warning. */
static void test_deployment_foreign(void) {
  co_admission_t a = adm(1);
  result_t r;
  CO_CHECK_INT(run(&a, "deployment-foreign.json", &r), ==, 0);
  CO_CHECK(r.allowed);
  CO_CHECK_STR(r.patch, "");
  CO_CHECK_CONTAINS(r.warning, "nvidia");
  result_free(&r);
}

/* Opt-out by annotation after the operator's rewrite: the original comes back at admission
 * (one rollout instead of two), and the record goes. */
static void test_deployment_optout_restores(void) {
  co_admission_t a = adm(0);
  result_t r;
  CO_CHECK_INT(run(&a, "deployment-update-optout.json", &r), ==, 0);
  CO_CHECK(r.allowed);
  CO_CHECK_STR(r.patch, "[{\"op\":\"remove\",\"path\":\"/spec/template/spec/runtimeClassName\"},"
                        "{\"op\":\"remove\",\"path\":\"/metadata/annotations/"
                        "confidential.cypherpunk.io~1original-runtime-class\"}]");
  result_free(&r);
}

/* A CR selects the workload, but onFailure: Revert took its class away: nothing is written. */
static void test_deployment_reverted(void) {
  co_admission_t a = adm(0);
  result_t r;
  CO_CHECK_INT(run(&a, "deployment-reverted.json", &r), ==, 0);
  CO_CHECK(r.allowed);
  CO_CHECK_STR(r.patch, "");
  result_free(&r);
}

static void test_subresource_untouched(void) {
  co_admission_t a = adm(1);
  result_t r;
  decide_calls = 0;
  CO_CHECK_INT(run(&a, "deployment-status.json", &r), ==, 0);
  CO_CHECK(r.allowed);
  CO_CHECK_STR(r.patch, "");
  CO_CHECK_INT(decide_calls, ==, 0);
  result_free(&r);
}

/* A CR selecting a Deployment created with a class the CR's class replaces. */
static void test_cr_takes_over(void) {
  co_admission_t a = adm(0);
  const char *body =
      "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{"
      "\"uid\":\"u1\",\"kind\":{\"group\":\"apps\",\"version\":\"v1\",\"kind\":\"Deployment\"},"
      "\"namespace\":\"shop\",\"operation\":\"CREATE\",\"object\":{\"metadata\":{\"name\":\"api\","
      "\"labels\":{\"tier\":\"backend\"},\"annotations\":{\"a~b/c\":\"x\"}},\"spec\":{"
      "\"template\":{\"spec\":{\"runtimeClassName\":\"kata-clh\",\"containers\":[]}}}}}}";
  char *out = NULL, err[128];
  size_t n;
  CO_CHECK_INT(co_admission_review(&a, body, strlen(body), &out, &n, err, sizeof(err)), ==, 0);
  cJSON *rv = cJSON_Parse(out);
  const char *p =
      cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(rv, "response"), "patch"));
  char patch[1024] = "";
  if (p != NULL) {
    int l = EVP_DecodeBlock((unsigned char *)patch, (const unsigned char *)p, (int)strlen(p));
    patch[l > 0 ? l : 0] = '\0';
  }
  CO_CHECK_CONTAINS(patch, "\"value\":\"gvisor\"");
  CO_CHECK_CONTAINS(patch, "original-runtime-class\",\"value\":\"kata-clh\"");
  cJSON_Delete(rv);
  co_free(out);
}

static int refuse(co_admission_t *a, const char *body, size_t len, const char *want) {
  static char sentinel[] = "x";
  char *out = sentinel, err[256];
  size_t n = 7;
  int rc = co_admission_review(a, body, len, &out, &n, err, sizeof(err));
  CO_CHECK(out == NULL);
  CO_CHECK_INT(n, ==, 0);
  CO_CHECK_CONTAINS(err, want);
  return rc;
}

static void test_malformed(void) {
  co_admission_t a = adm(1);
  CO_CHECK_INT(refuse(&a, "{\"apiVersion\":", 14, "not JSON"), ==, CO_EPARSE);
  CO_CHECK_INT(refuse(&a, "", 0, "not JSON"), ==, CO_EPARSE);
  CO_CHECK_INT(refuse(&a, NULL, 0, "not JSON"), ==, CO_EPARSE);
  CO_CHECK_INT(refuse(&a, "[]", 2, "AdmissionReview"), ==, CO_EINVAL);
  const char *v1beta1 = "{\"apiVersion\":\"admission.k8s.io/v1beta1\",\"kind\":\"AdmissionReview\","
                        "\"request\":{\"uid\":\"u\",\"operation\":\"CREATE\"}}";
  CO_CHECK_INT(refuse(&a, v1beta1, strlen(v1beta1), "admission.k8s.io/v1"), ==, CO_EINVAL);
  const char *nouid = "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\","
                      "\"request\":{\"operation\":\"CREATE\"}}";
  CO_CHECK_INT(refuse(&a, nouid, strlen(nouid), "uid"), ==, CO_EINVAL);
  const char *noobj = "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\","
                      "\"request\":{\"uid\":\"u\",\"operation\":\"CREATE\",\"namespace\":\"s\","
                      "\"kind\":{\"group\":\"\",\"version\":\"v1\",\"kind\":\"Pod\"},"
                      "\"object\":\"pod\"}}";
  CO_CHECK_INT(refuse(&a, noobj, strlen(noobj), "object"), ==, CO_EINVAL);
  /* A field of the wrong type inside the object: the projection's decoder refuses it. */
  const char *badlabels = "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\","
                          "\"request\":{\"uid\":\"u\",\"operation\":\"CREATE\",\"namespace\":\"s\","
                          "\"kind\":{\"group\":\"\",\"version\":\"v1\",\"kind\":\"Pod\"},"
                          "\"object\":{\"metadata\":{\"labels\":[1]}}}}";
  CO_CHECK_INT(refuse(&a, badlabels, strlen(badlabels), "cannot be decoded"), ==, CO_EINVAL);
  static char big[CO_ADMISSION_MAX_BODY + 2];
  memset(big, ' ', sizeof(big));
  CO_CHECK_INT(refuse(&a, big, sizeof(big), "exceeds"), ==, CO_ETOOBIG);
  /* Nested past cJSON's limit: refused, not a stack overflow. */
  static char deep[20000];
  memset(deep, '[', sizeof(deep));
  CO_CHECK_INT(refuse(&a, deep, sizeof(deep), "not JSON"), ==, CO_EPARSE);
  CO_CHECK_INT(a.stats.malformed, ==, 10);
  CO_CHECK_INT(a.stats.reviews, ==, 0);
}

/* DELETE and other kinds: admitted without a decision. */
/* RFC 6901 escaping of names in JSON pointers: '~' first, so "~1" in a name stays literal. */
static void test_pointer_escaping(void) {
  co_buf_t b;
  co_buf_init(&b, 256);
  CO_CHECK_INT(co_json_pointer_append(&b, "example.com/a~b/~1c"), ==, 0);
  CO_CHECK_STR(co_buf_str(&b), "example.com~1a~0b~1~01c");
  co_buf_free(&b);
  /* And in a patch: a recorded original under an existing annotation map. */
  co_admission_t a = adm(0);
  result_t r;
  CO_CHECK_INT(run(&a, "statefulset-create-annotation.json", &r), ==, 0);
  CO_CHECK_CONTAINS(r.patch,
                    "\"/metadata/annotations/confidential.cypherpunk.io~1original-runtime-class\"");
  result_free(&r);
}

static void test_other_operations(void) {
  co_admission_t a = adm(1);
  const char *del = "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\","
                    "\"request\":{\"uid\":\"d\",\"operation\":\"DELETE\",\"namespace\":\"s\","
                    "\"kind\":{\"group\":\"apps\",\"version\":\"v1\",\"kind\":\"Deployment\"}}}";
  const char *cm = "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\","
                   "\"request\":{\"uid\":\"c\",\"operation\":\"CREATE\",\"namespace\":\"s\","
                   "\"kind\":{\"group\":\"\",\"version\":\"v1\",\"kind\":\"ConfigMap\"},"
                   "\"object\":{}}}";
  const char *podupd = "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\","
                       "\"request\":{\"uid\":\"p\",\"operation\":\"UPDATE\",\"namespace\":\"s\","
                       "\"kind\":{\"group\":\"\",\"version\":\"v1\",\"kind\":\"Pod\"},"
                       "\"object\":{\"spec\":{\"containers\":[{\"env\":[{\"name\":\"KATA\"}]}]}}}}";
  const char *bodies[] = {del, cm, podupd};
  decide_calls = 0;
  for (size_t i = 0; i < 3; i++) {
    char *out = NULL, err[128];
    size_t n;
    CO_CHECK_INT(co_admission_review(&a, bodies[i], strlen(bodies[i]), &out, &n, err, sizeof(err)),
                 ==, 0);
    CO_CHECK_CONTAINS(out, "\"allowed\":true");
    CO_CHECK(strstr(out, "patch") == NULL);
    co_free(out);
  }
  CO_CHECK_INT(decide_calls, ==, 0);
}

/* ---- spec.hardening: the same write as the reconciler's, in the same patch ---------------- */

/* Applies a JSONPatch of "add" and "remove" operations (what the webhook emits) to doc, as the
 * API server does: object members and array indexes, pointer tokens unescaped. Returns 0, or
 * -1 when an operation does not apply (which the API server would refuse). */
static int apply_patch(cJSON *doc, const char *patch) {
  cJSON *ops = cJSON_Parse(patch);
  int rc = cJSON_IsArray(ops) ? 0 : -1;
  const cJSON *op;
  cJSON_ArrayForEach(op, ops) {
    const char *kind = cJSON_GetStringValue(cJSON_GetObjectItem(op, "op"));
    const char *path = cJSON_GetStringValue(cJSON_GetObjectItem(op, "path"));
    if (kind == NULL || path == NULL || path[0] != '/') {
      rc = -1;
      break;
    }
    cJSON *parent = doc;
    char tok[512];
    const char *p = path + 1;
    for (;;) {
      size_t n = 0;
      for (; *p != '\0' && *p != '/' && n < sizeof(tok) - 1; p++) {
        if (p[0] == '~' && (p[1] == '0' || p[1] == '1')) {
          tok[n++] = p[1] == '0' ? '~' : '/';
          p++;
        } else {
          tok[n++] = *p;
        }
      }
      tok[n] = '\0';
      if (*p == '\0')
        break;
      p++;
      parent = cJSON_IsArray(parent) ? cJSON_GetArrayItem(parent, (int)strtol(tok, NULL, 10))
                                     : cJSON_GetObjectItemCaseSensitive(parent, tok);
      if (parent == NULL)
        return cJSON_Delete(ops), -1;
    }
    if (!cJSON_IsObject(parent)) {
      rc = -1; /* only object members are patched */
      break;
    }
    if (strcmp(kind, "add") == 0) {
      cJSON *v = cJSON_Duplicate(cJSON_GetObjectItem(op, "value"), 1);
      if (cJSON_GetObjectItemCaseSensitive(parent, tok) != NULL)
        cJSON_ReplaceItemInObjectCaseSensitive(parent, tok, v);
      else
        cJSON_AddItemToObject(parent, tok, v);
    } else if (strcmp(kind, "remove") == 0) {
      if (cJSON_GetObjectItemCaseSensitive(parent, tok) == NULL) {
        rc = -1;
        break;
      }
      cJSON_DeleteItemFromObjectCaseSensitive(parent, tok);
    } else {
      rc = -1;
      break;
    }
  }
  cJSON_Delete(ops);
  return rc;
}

/* Reviews review (a document) with operation op; fills r. */
static int run_doc(co_admission_t *a, cJSON *review, const char *op, result_t *r) {
  cJSON_ReplaceItemInObject(cJSON_GetObjectItem(review, "request"), "operation",
                            cJSON_CreateString(op));
  char *body = cJSON_PrintUnformatted(review);
  memset(r, 0, sizeof(*r));
  char *out = NULL, err[256];
  size_t out_len = 0;
  int rc = co_admission_review(a, body, strlen(body), &out, &out_len, err, sizeof(err));
  cJSON_free(body);
  if (rc != 0)
    return rc;
  r->review = cJSON_Parse(out);
  co_free(out);
  r->resp = cJSON_GetObjectItem(r->review, "response");
  r->allowed = cJSON_IsTrue(cJSON_GetObjectItem(r->resp, "allowed"));
  const char *p = cJSON_GetStringValue(cJSON_GetObjectItem(r->resp, "patch"));
  if (p != NULL && strlen(p) < 4 * sizeof(r->patch) / 3) {
    int n = EVP_DecodeBlock((unsigned char *)r->patch, (const unsigned char *)p, (int)strlen(p));
    while (n > 0 && r->patch[n - 1] == '\0')
      n--;
    r->patch[n > 0 ? n : 0] = '\0';
  }
  return 0;
}

#define HARDENED_PATCH                                                                           \
  "[{\"op\":\"add\",\"path\":\"/spec/template/spec/runtimeClassName\",\"value\":\"kata-qemu\"}," \
  "{\"op\":\"add\",\"path\":\"/metadata/annotations\",\"value\":{"                               \
  "\"confidential.cypherpunk.io/original-runtime-class\":\"\","                                  \
  "\"confidential.cypherpunk.io/original-hardening\":\"{\\\"emptyDirs\\\":{\\\"scratch\\\":"     \
  "\\\"|\\\",\\\"cache\\\":\\\"|1Gi\\\",\\\"mem\\\":\\\"Memory|\\\"},"                           \
  "\\\"automountServiceAccountToken\\\":-1}\"}},"                                                \
  "{\"op\":\"add\",\"path\":\"/spec/template/spec/volumes/1/emptyDir/medium\","                  \
  "\"value\":\"Memory\"},"                                                                       \
  "{\"op\":\"add\",\"path\":\"/spec/template/spec/volumes/1/emptyDir/sizeLimit\","               \
  "\"value\":\"256Mi\"},"                                                                        \
  "{\"op\":\"add\",\"path\":\"/spec/template/spec/volumes/2/emptyDir/medium\","                  \
  "\"value\":\"Memory\"},"                                                                       \
  "{\"op\":\"add\",\"path\":\"/spec/template/spec/volumes/3/emptyDir/sizeLimit\","               \
  "\"value\":\"256Mi\"},"                                                                        \
  "{\"op\":\"add\",\"path\":\"/spec/template/spec/automountServiceAccountToken\","               \
  "\"value\":false}]"

/* A Deployment with emptyDirs (none, a size limit, already in memory) and a configMap volume,
 * selected by a CR with spec.hardening: class, both records and the hardening in one patch;
 * the patched object reviewed again needs nothing; with the CR gone, the restore patch gives
 * back exactly the object as created. */
static void test_deployment_hardening(void) {
  co_admission_t a = adm(0);
  result_t r;
  vault_cr = 1;
  CO_CHECK_INT(run(&a, "deployment-create-hardening.json", &r), ==, 0);
  CO_CHECK(r.allowed);
  CO_CHECK_STR(r.patch, HARDENED_PATCH);
  char patch[sizeof(r.patch)];
  snprintf(patch, sizeof(patch), "%s", r.patch);
  result_free(&r);

  size_t len = 0;
  const char *body = read_fixture("deployment-create-hardening.json", &len);
  CO_CHECK(body != NULL);
  cJSON *review = cJSON_ParseWithLength(body, len);
  cJSON *obj = cJSON_GetObjectItem(cJSON_GetObjectItem(review, "request"), "object");
  cJSON *created = cJSON_Duplicate(obj, 1);
  CO_CHECK_INT(apply_patch(obj, patch), ==, 0);
  const cJSON *vols = cJSON_GetObjectItem(
      cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(obj, "spec"), "template"),
                          "spec"),
      "volumes");
  CO_CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(
                   cJSON_GetObjectItem(cJSON_GetArrayItem(vols, 1), "emptyDir"), "medium")),
               "Memory");

  /* The owner (or the reconciler's own write) sends it again: nothing to add. */
  int64_t mutated = (int64_t)a.stats.mutated;
  CO_CHECK_INT(run_doc(&a, review, "UPDATE", &r), ==, 0);
  CO_CHECK(r.allowed);
  CO_CHECK_STR(r.patch, "");
  CO_CHECK_INT(a.stats.mutated, ==, mutated);
  result_free(&r);

  /* The CR is deleted: the restore removes the class and both records and puts every
   * emptyDir and the automount setting back. */
  vault_cr = 0;
  CO_CHECK_INT(run_doc(&a, review, "UPDATE", &r), ==, 0);
  CO_CHECK_CONTAINS(r.patch, "{\"op\":\"remove\",\"path\":\"/spec/template/spec/"
                             "runtimeClassName\"}");
  CO_CHECK_CONTAINS(r.patch, "{\"op\":\"remove\",\"path\":\"/metadata/annotations/"
                             "confidential.cypherpunk.io~1original-runtime-class\"}");
  CO_CHECK_CONTAINS(r.patch, "{\"op\":\"remove\",\"path\":\"/metadata/annotations/"
                             "confidential.cypherpunk.io~1original-hardening\"}");
  /* A field the owner did not have is removed, never set to "". */
  CO_CHECK(strstr(r.patch, "\"value\":\"\"") == NULL);
  CO_CHECK_INT(apply_patch(obj, r.patch), ==, 0);
  result_free(&r);
  /* The empty annotation map the patch left behind is the only trace. */
  cJSON *md = cJSON_GetObjectItem(obj, "metadata");
  CO_CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItem(md, "annotations")), ==, 0);
  cJSON_DeleteItemFromObject(md, "annotations");
  CO_CHECK(cJSON_Compare(obj, created, 1));
  CO_CHECK_INT(run_doc(&a, review, "UPDATE", &r), ==, 0);
  CO_CHECK_STR(r.patch, "");
  result_free(&r);
  vault_cr = 1;
  cJSON_Delete(created);
  cJSON_Delete(review);
}

/* The owner rewrites the hardened template from its manifest (as the Akash provider does:
 * annotations kept, class dropped, an emptyDir as in the manifest) and adds an emptyDir: one
 * patch hardens it again and extends the record with the new volume; the CR deleted, the
 * restore gives back every volume as the owner first had it, the new one included. */
static void test_deployment_hardening_owner_update(void) {
  co_admission_t a = adm(0);
  result_t r;
  vault_cr = 1;
  CO_CHECK_INT(run(&a, "deployment-create-hardening.json", &r), ==, 0);
  size_t len = 0;
  const char *body = read_fixture("deployment-create-hardening.json", &len);
  CO_CHECK(body != NULL);
  cJSON *review = cJSON_ParseWithLength(body, len);
  cJSON *obj = cJSON_GetObjectItem(cJSON_GetObjectItem(review, "request"), "object");
  /* What the restore must give back: the template as created, plus the owner's new volume. */
  cJSON *want = cJSON_Duplicate(obj, 1);
  cJSON_AddItemToArray(
      cJSON_GetObjectItem(
          cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(want, "spec"), "template"),
                              "spec"),
          "volumes"),
      cJSON_Parse("{\"name\":\"extra\",\"emptyDir\":{}}"));
  CO_CHECK_INT(apply_patch(obj, r.patch), ==, 0);
  result_free(&r);

  cJSON *tspec = cJSON_GetObjectItem(
      cJSON_GetObjectItem(cJSON_GetObjectItem(obj, "spec"), "template"), "spec");
  cJSON_DeleteItemFromObject(tspec, "runtimeClassName");
  cJSON *vols = cJSON_GetObjectItem(tspec, "volumes");
  /* scratch as in the owner's manifest: neither medium nor sizeLimit. */
  cJSON_ReplaceItemInObject(cJSON_GetArrayItem(vols, 1), "emptyDir", cJSON_CreateObject());
  cJSON_AddItemToArray(vols, cJSON_Parse("{\"name\":\"extra\",\"emptyDir\":{}}"));
  CO_CHECK_INT(run_doc(&a, review, "UPDATE", &r), ==, 0);
  CO_CHECK_STR(
      r.patch,
      "[{\"op\":\"add\",\"path\":\"/spec/template/spec/runtimeClassName\",\"value\":\"kata-qemu\"},"
      "{\"op\":\"add\",\"path\":\"/metadata/annotations/"
      "confidential.cypherpunk.io~1original-hardening\",\"value\":\"{\\\"emptyDirs\\\":{"
      "\\\"scratch\\\":\\\"|\\\",\\\"cache\\\":\\\"|1Gi\\\",\\\"mem\\\":\\\"Memory|\\\","
      "\\\"extra\\\":\\\"|\\\"},\\\"automountServiceAccountToken\\\":-1}\"},"
      "{\"op\":\"add\",\"path\":\"/spec/template/spec/volumes/1/emptyDir/medium\","
      "\"value\":\"Memory\"},"
      "{\"op\":\"add\",\"path\":\"/spec/template/spec/volumes/1/emptyDir/sizeLimit\","
      "\"value\":\"256Mi\"},"
      "{\"op\":\"add\",\"path\":\"/spec/template/spec/volumes/4/emptyDir/medium\","
      "\"value\":\"Memory\"},"
      "{\"op\":\"add\",\"path\":\"/spec/template/spec/volumes/4/emptyDir/sizeLimit\","
      "\"value\":\"256Mi\"}]");
  CO_CHECK_INT(apply_patch(obj, r.patch), ==, 0);
  result_free(&r);

  vault_cr = 0;
  CO_CHECK_INT(run_doc(&a, review, "UPDATE", &r), ==, 0);
  CO_CHECK_INT(apply_patch(obj, r.patch), ==, 0);
  result_free(&r);
  vault_cr = 1;
  /* Every volume as the owner first had it, the new one too; no class, no records. */
  cJSON *md = cJSON_GetObjectItem(obj, "metadata");
  CO_CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItem(md, "annotations")), ==, 0);
  cJSON_DeleteItemFromObject(md, "annotations");
  CO_CHECK(cJSON_Compare(obj, want, 1));
  cJSON_Delete(want);
  cJSON_Delete(review);
}

CO_TEST_MAIN(CO_TEST(test_deployment_create_env), CO_TEST(test_deployment_update_dropped),
             CO_TEST(test_statefulset_annotation), CO_TEST(test_pod_env),
             CO_TEST(test_pod_bad_class), CO_TEST(test_system_namespace),
             CO_TEST(test_deployment_foreign), CO_TEST(test_deployment_optout_restores),
             CO_TEST(test_deployment_reverted), CO_TEST(test_subresource_untouched),
             CO_TEST(test_cr_takes_over), CO_TEST(test_malformed), CO_TEST(test_other_operations),
             CO_TEST(test_deployment_hardening), CO_TEST(test_deployment_hardening_owner_update),
             CO_TEST(test_pointer_escaping))
