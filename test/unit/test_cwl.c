/* ConfidentialWorkload codec: the samples decode, LabelSelector semantics, validation messages,
 * and malformed objects fail cleanly. */
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "co/alloc.h"
#include "co/error.h"
#include "co_test.h"
#include "cwl.h"

#define SAMPLES CO_TEST_DATA "/../../../manifests/samples"

/* ---- helpers --------------------------------------------------------------------------- */

/* YAML node → cJSON, typing plain scalars the way the API server's YAML decoder does for the
 * values the samples use (booleans, integers, null); quoted scalars stay strings. */
static cJSON *yaml_to_json(yaml_document_t *doc, yaml_node_t *n) {
  if (n == NULL)
    return NULL;
  switch (n->type) {
  case YAML_SCALAR_NODE: {
    const char *v = (const char *)n->data.scalar.value;
    if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
      if (strcmp(v, "true") == 0)
        return cJSON_CreateTrue();
      if (strcmp(v, "false") == 0)
        return cJSON_CreateFalse();
      if (strcmp(v, "null") == 0 || strcmp(v, "~") == 0 || v[0] == '\0')
        return cJSON_CreateNull();
      char *end;
      long long x = strtoll(v, &end, 10);
      if (end != v && *end == '\0')
        return cJSON_CreateNumber((double)x);
    }
    return cJSON_CreateString(v);
  }
  case YAML_SEQUENCE_NODE: {
    cJSON *a = cJSON_CreateArray();
    for (yaml_node_item_t *i = n->data.sequence.items.start; i < n->data.sequence.items.top; i++)
      cJSON_AddItemToArray(a, yaml_to_json(doc, yaml_document_get_node(doc, *i)));
    return a;
  }
  case YAML_MAPPING_NODE: {
    cJSON *o = cJSON_CreateObject();
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
      yaml_node_t *k = yaml_document_get_node(doc, p->key);
      cJSON_AddItemToObject(o, (const char *)k->data.scalar.value,
                            yaml_to_json(doc, yaml_document_get_node(doc, p->value)));
    }
    return o;
  }
  default:
    return NULL;
  }
}

static cJSON *load_yaml(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    fprintf(stderr, "# cannot open %s\n", path);
    return NULL;
  }
  yaml_parser_t parser;
  yaml_document_t doc;
  yaml_parser_initialize(&parser);
  yaml_parser_set_input_file(&parser, f);
  cJSON *j = NULL;
  if (yaml_parser_load(&parser, &doc)) {
    j = yaml_to_json(&doc, yaml_document_get_root_node(&doc));
    yaml_document_delete(&doc);
  }
  yaml_parser_delete(&parser);
  fclose(f);
  return j;
}

/* Decodes obj into a new projection in namespace ns; *rc gets decode's result. Returns owned
 * (free with cwl_free) even when decode fails. */
static co_cwl_t *decode_obj(const cJSON *obj, const char *ns, int *rc) {
  co_cwl_t *cr = co_calloc(1, co_type_cwl.size);
  cr->meta.ns = ns;
  cr->meta.name = "cr";
  *rc = co_type_cwl.decode(obj, &cr->meta);
  return cr;
}

static void cwl_free(co_cwl_t *cr) {
  if (cr == NULL)
    return;
  co_type_cwl.release(&cr->meta);
  co_free(cr);
}

/* Decodes a whole object given as JSON text; *rc gets decode's result (CO_EPARSE for JSON that
 * does not parse). */
static co_cwl_t *decode_json(const char *json, int *rc) {
  cJSON *j = cJSON_Parse(json);
  if (j == NULL) {
    fprintf(stderr, "# bad fixture: %s\n", json);
    *rc = CO_EPARSE;
    return NULL;
  }
  co_cwl_t *cr = decode_obj(j, "ns", rc);
  cJSON_Delete(j);
  return cr;
}

/* Decodes {"spec": SPEC}; the spec must decode. */
static co_cwl_t *spec(const char *spec_json) {
  char buf[8192];
  snprintf(buf, sizeof(buf), "{\"metadata\":{\"name\":\"cr\",\"namespace\":\"ns\"},\"spec\":%s}",
           spec_json);
  int rc;
  co_cwl_t *cr = decode_json(buf, &rc);
  if (rc != 0) {
    fprintf(stderr, "# spec did not decode (%s): %s\n", co_err_name(rc), spec_json);
    co__test_failed = 1;
  }
  return cr;
}

/* Labels from "a=1,b=2" ("" = no labels). */
typedef struct {
  char data[512];
  co_kv_t kv;
} labels_t;

static const co_kv_t *labels(labels_t *l, const char *s) {
  memset(l, 0, sizeof(*l));
  size_t n = strlen(s);
  if (n == 0)
    return &l->kv;
  memcpy(l->data, s, n + 1); /* the rest of data is zero: the block's final empty string */
  for (size_t i = 0; i < n; i++) {
    if (l->data[i] == ',')
      l->data[i] = '\0';
  }
  l->kv.data = l->data;
  return &l->kv;
}

static const char *const allowed[] = {"kata-qemu", "kata-clh", "gvisor"};
#define N_ALLOWED (sizeof(allowed) / sizeof(allowed[0]))

/* Validation message of spec_json against the allow-list above; "" when valid. */
static const char *problems(const char *spec_json, char *msg, size_t len) {
  co_cwl_t *cr = spec(spec_json);
  int rc = co_cwl_validate(cr, allowed, N_ALLOWED, msg, len);
  if ((rc == 0) != (msg[0] == '\0')) {
    fprintf(stderr, "# validate rc %d with message \"%s\"\n", rc, msg);
    co__test_failed = 1;
  }
  cwl_free(cr);
  return msg;
}

/* ---- tests ----------------------------------------------------------------------------- */

static void test_type(void) {
  CO_CHECK_STR(co_type_cwl.name, "confidentialworkloads");
  CO_CHECK_STR(co_type_cwl.path, "/apis/confidential.cypherpunk.io/v1alpha1/confidentialworkloads");
  CO_CHECK_INT(co_type_cwl.size, ==, sizeof(co_cwl_t));
  CO_CHECK(co_type_cwl.decode != NULL && co_type_cwl.release != NULL && co_type_cwl.equal != NULL);
  CO_CHECK_STR(CO_CWL_FINALIZER, "confidential.cypherpunk.io/finalizer");
}

static void test_sample_selector(void) {
  cJSON *j = load_yaml(SAMPLES "/confidentialworkload.yaml");
  CO_CHECK(j != NULL);
  if (j == NULL)
    return;
  int rc;
  co_cwl_t *cr = decode_obj(j, "tenant-a", &rc);
  CO_CHECK_INT(rc, ==, 0);
  CO_CHECK_STR(cr->runtime_class, "kata-qemu");
  CO_CHECK_INT(cr->has_selector, ==, 1);
  CO_CHECK_INT(co_kv_count(&cr->match_labels), ==, 1);
  CO_CHECK_STR(co_kv_get(&cr->match_labels, "app"), "tenant-app");
  CO_CHECK_INT(cr->n_exprs, ==, 0);
  CO_CHECK_INT(cr->n_target_refs, ==, 0);
  CO_CHECK_INT(cr->on_failure, ==, CO_ON_FAILURE_HOLD);
  CO_CHECK_INT(cr->revert_after_s, ==, 600);
  CO_CHECK_INT(cr->has_hardening, ==, 0);
  CO_CHECK_INT(cr->memory_backed_empty_dirs, ==, 0);
  CO_CHECK_STR(cr->empty_dir_size_limit, "256Mi");
  CO_CHECK_INT(cr->automount_sa_token, ==, -1);
  CO_CHECK_INT(cr->has_finalizer, ==, 0);
  char msg[512];
  CO_CHECK_INT(co_cwl_validate(cr, allowed, N_ALLOWED, msg, sizeof(msg)), ==, 0);
  CO_CHECK_STR(msg, "");
  labels_t l;
  CO_CHECK_INT(co_cwl_targets(cr, "Deployment", "tenant-a", "web", labels(&l, "app=tenant-app")),
               ==, 1);
  CO_CHECK_INT(co_cwl_targets(cr, "StatefulSet", "tenant-a", "db", labels(&l, "app=tenant-app")),
               ==, 1);
  CO_CHECK_INT(co_cwl_targets(cr, "Deployment", "tenant-b", "web", labels(&l, "app=tenant-app")),
               ==, 0);
  CO_CHECK_INT(co_cwl_targets(cr, "Deployment", "tenant-a", "web", labels(&l, "app=other")), ==, 0);
  cwl_free(cr);
  cJSON_Delete(j);
}

static void test_sample_targetrefs(void) {
  cJSON *j = load_yaml(SAMPLES "/confidentialworkload-targetrefs.yaml");
  CO_CHECK(j != NULL);
  if (j == NULL)
    return;
  int rc;
  co_cwl_t *cr = decode_obj(j, "tenant-b", &rc);
  CO_CHECK_INT(rc, ==, 0);
  CO_CHECK_STR(cr->runtime_class, "auto");
  CO_CHECK_INT(cr->n_target_refs, ==, 2);
  if (cr->n_target_refs == 2) {
    CO_CHECK_STR(cr->target_refs[0].kind, "Deployment");
    CO_CHECK_STR(cr->target_refs[0].name, "api");
    CO_CHECK_STR(cr->target_refs[1].kind, "StatefulSet");
    CO_CHECK_STR(cr->target_refs[1].name, "postgres");
  }
  CO_CHECK_INT(cr->n_exprs, ==, 1);
  if (cr->n_exprs == 1) {
    CO_CHECK_STR(cr->exprs[0].key, "sandbox");
    CO_CHECK_INT(cr->exprs[0].op, ==, CO_SEL_OP_NOT_IN);
    CO_CHECK_INT(cr->exprs[0].n_values, ==, 1);
    CO_CHECK_STR(cr->exprs[0].values[0], "opt-out");
  }
  CO_CHECK_INT(cr->on_failure, ==, CO_ON_FAILURE_REVERT);
  CO_CHECK_INT(cr->revert_after_s, ==, 900);
  CO_CHECK_INT(cr->has_hardening, ==, 1);
  CO_CHECK_INT(cr->memory_backed_empty_dirs, ==, 1);
  CO_CHECK_STR(cr->empty_dir_size_limit, "512Mi");
  CO_CHECK_INT(cr->automount_sa_token, ==, 0);
  char msg[512];
  CO_CHECK_INT(co_cwl_validate(cr, allowed, N_ALLOWED, msg, sizeof(msg)), ==, 0);
  CO_CHECK_STR(msg, "");
  /* auto with nothing enabled cannot resolve */
  CO_CHECK_INT(co_cwl_validate(cr, NULL, 0, msg, sizeof(msg)), ==, CO_EINVAL);
  CO_CHECK_CONTAINS(msg, "auto: no sandbox RuntimeClass is enabled");

  labels_t l;
  /* by name, whatever the labels */
  CO_CHECK_INT(co_cwl_targets(cr, "Deployment", "tenant-b", "api", NULL), ==, 1);
  CO_CHECK_INT(co_cwl_targets(cr, "StatefulSet", "tenant-b", "postgres", labels(&l, "")), ==, 1);
  CO_CHECK_INT(co_cwl_refs(cr, "StatefulSet", "api"), ==, 0);
  CO_CHECK_INT(co_cwl_targets(cr, "StatefulSet", "tenant-b", "api", NULL), ==, 0);
  /* by selector: tier=backend and not sandbox=opt-out */
  CO_CHECK_INT(co_cwl_targets(cr, "Deployment", "tenant-b", "w", labels(&l, "tier=backend")), ==,
               1);
  CO_CHECK_INT(
      co_cwl_targets(cr, "Deployment", "tenant-b", "w", labels(&l, "tier=backend,sandbox=opt-out")),
      ==, 0);
  CO_CHECK_INT(
      co_cwl_targets(cr, "Deployment", "tenant-b", "w", labels(&l, "tier=backend,sandbox=yes")), ==,
      1);
  /* a listed name in another namespace is not this CR's */
  CO_CHECK_INT(co_cwl_targets(cr, "Deployment", "tenant-c", "api", NULL), ==, 0);
  cwl_free(cr);
  cJSON_Delete(j);
}

/* Exactly what the API server stores for the targetRefs sample (kubectl get -o json). */
static void test_server_json(void) {
  static const char json[] =
      "{\"apiVersion\":\"confidential.cypherpunk.io/v1alpha1\",\"kind\":\"ConfidentialWorkload\","
      "\"metadata\":{\"creationTimestamp\":\"2026-11-25T17:43:53Z\",\"generation\":1,"
      "\"finalizers\":[\"other.example.com/x\",\"confidential.cypherpunk.io/finalizer\"],"
      "\"name\":\"tenant-backend\",\"namespace\":\"s1\",\"resourceVersion\":\"299\","
      "\"uid\":\"493c6975-f09b-4fcf-a1af-ba8279fa53eb\"},"
      "\"spec\":{\"hardening\":{\"automountServiceAccountToken\":false,"
      "\"emptyDirSizeLimit\":\"512Mi\",\"memoryBackedEmptyDirs\":true},\"onFailure\":\"Revert\","
      "\"revertAfterSeconds\":900,\"runtimeClassName\":\"auto\",\"selector\":{"
      "\"matchExpressions\":[{\"key\":\"sandbox\",\"operator\":\"NotIn\",\"values\":[\"opt-out\"]}"
      "],\"matchLabels\":{\"tier\":\"backend\"}},\"targetRefs\":[{\"kind\":\"Deployment\","
      "\"name\":\"api\"},{\"kind\":\"StatefulSet\",\"name\":\"postgres\"}]},"
      "\"status\":{\"observedGeneration\":1,\"runtimeClassName\":\"kata-qemu\","
      "\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\",\"reason\":\"AllSandboxed\","
      "\"message\":\"\",\"lastTransitionTime\":\"2026-11-25T17:44:00Z\"}],"
      "\"workloadsSummary\":\"2/2 sandboxed\"}}";
  int rc;
  co_cwl_t *cr = decode_json(json, &rc);
  CO_CHECK_INT(rc, ==, 0);
  CO_CHECK_INT(cr->has_finalizer, ==, 1);
  CO_CHECK_INT(cr->status_observed_generation, ==, 1);
  CO_CHECK_INT(cr->n_target_refs, ==, 2);
  CO_CHECK_STR(cr->empty_dir_size_limit, "512Mi");

  /* equal is field-wise: a second decode is equal, a status change is not */
  int rc2;
  co_cwl_t *same = decode_json(json, &rc2);
  CO_CHECK_INT(rc2, ==, 0);
  CO_CHECK_INT(co_type_cwl.equal(&cr->meta, &same->meta), ==, 1);
  cJSON *j = cJSON_Parse(json);
  cJSON_ReplaceItemInObject(cJSON_GetObjectItem(j, "status"), "observedGeneration",
                            cJSON_CreateNumber(2));
  co_cwl_t *newer = decode_obj(j, "s1", &rc2);
  CO_CHECK_INT(rc2, ==, 0);
  CO_CHECK_INT(newer->status_observed_generation, ==, 2);
  CO_CHECK_INT(co_type_cwl.equal(&cr->meta, &newer->meta), ==, 0);
  cwl_free(newer);
  /* and so is a changed value deep in the selector */
  cJSON *v = cJSON_GetArrayItem(
      cJSON_GetObjectItem(
          cJSON_GetArrayItem(
              cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "spec"), "selector"),
                                  "matchExpressions"),
              0),
          "values"),
      0);
  cJSON_SetValuestring(v, "opt-outs");
  newer = decode_obj(j, "s1", &rc2);
  CO_CHECK_INT(co_type_cwl.equal(&cr->meta, &newer->meta), ==, 0);
  cwl_free(newer);
  cJSON_Delete(j);
  cwl_free(same);
  cwl_free(cr);
}

static void test_defaults(void) {
  /* no spec at all decodes (validation reports it), with the schema's defaults */
  int rc;
  co_cwl_t *cr = decode_json("{\"metadata\":{\"name\":\"x\"}}", &rc);
  CO_CHECK_INT(rc, ==, 0);
  CO_CHECK(cr->runtime_class == NULL);
  CO_CHECK_INT(cr->has_selector, ==, 0);
  CO_CHECK_INT(cr->on_failure, ==, CO_ON_FAILURE_HOLD);
  CO_CHECK_INT(cr->revert_after_s, ==, CO_CWL_DEFAULT_REVERT_AFTER_S);
  CO_CHECK_STR(cr->empty_dir_size_limit, "256Mi");
  CO_CHECK_INT(cr->automount_sa_token, ==, -1);
  CO_CHECK_INT(cr->status_observed_generation, ==, 0);
  char msg[512];
  CO_CHECK_INT(co_cwl_validate(cr, allowed, N_ALLOWED, msg, sizeof(msg)), ==, CO_EINVAL);
  CO_CHECK_CONTAINS(msg, "spec.runtimeClassName is required");
  CO_CHECK_CONTAINS(msg, "spec must set selector or targetRefs (or both)");
  cwl_free(cr);

  /* nulls read as absent; an integer size limit is kept as bytes */
  cr = spec("{\"runtimeClassName\":\"gvisor\",\"selector\":{\"matchLabels\":{\"a\":\"b\"},"
            "\"matchExpressions\":null},\"targetRefs\":null,\"onFailure\":null,"
            "\"hardening\":{\"emptyDirSizeLimit\":1048576,\"memoryBackedEmptyDirs\":null}}");
  CO_CHECK_INT(cr->n_exprs, ==, 0);
  CO_CHECK_INT(cr->n_target_refs, ==, 0);
  CO_CHECK_INT(cr->on_failure, ==, CO_ON_FAILURE_HOLD);
  CO_CHECK_INT(cr->has_hardening, ==, 1);
  CO_CHECK_INT(cr->memory_backed_empty_dirs, ==, 0);
  CO_CHECK_STR(cr->empty_dir_size_limit, "1048576");
  CO_CHECK_INT(co_cwl_validate(cr, allowed, N_ALLOWED, msg, sizeof(msg)), ==, 0);
  cwl_free(cr);
}

/* One row: selector JSON, workload labels, expected co_selector_matches. */
typedef struct {
  const char *selector;
  const char *labels;
  int want;
} sel_case_t;

static void test_selector_semantics(void) {
  static const sel_case_t cases[] = {
      /* matchLabels: every pair must be present with that value */
      {"{\"matchLabels\":{\"app\":\"a\"}}", "app=a", 1},
      {"{\"matchLabels\":{\"app\":\"a\"}}", "app=a,x=y", 1},
      {"{\"matchLabels\":{\"app\":\"a\"}}", "app=b", 0},
      {"{\"matchLabels\":{\"app\":\"a\"}}", "", 0},
      {"{\"matchLabels\":{\"app\":\"a\"}}", "application=a", 0},
      {"{\"matchLabels\":{\"app\":\"a\"}}", "ap=a", 0},
      {"{\"matchLabels\":{\"app\":\"a\",\"tier\":\"db\"}}", "app=a", 0},
      {"{\"matchLabels\":{\"app\":\"a\",\"tier\":\"db\"}}", "tier=db,app=a", 1},
      {"{\"matchLabels\":{\"app\":\"\"}}", "app=", 1}, /* empty value is a value */
      {"{\"matchLabels\":{\"app\":\"\"}}", "", 0},
      {"{\"matchLabels\":{\"example.com/app\":\"a\"}}", "example.com/app=a", 1},
      /* In */
      {"{\"matchExpressions\":[{\"key\":\"t\",\"operator\":\"In\",\"values\":[\"a\",\"b\"]}]}",
       "t=b", 1},
      {"{\"matchExpressions\":[{\"key\":\"t\",\"operator\":\"In\",\"values\":[\"a\",\"b\"]}]}",
       "t=c", 0},
      {"{\"matchExpressions\":[{\"key\":\"t\",\"operator\":\"In\",\"values\":[\"a\"]}]}", "", 0},
      {"{\"matchExpressions\":[{\"key\":\"t\",\"operator\":\"In\",\"values\":[\"\"]}]}", "t=", 1},
      /* NotIn: absent key matches */
      {"{\"matchExpressions\":[{\"key\":\"t\",\"operator\":\"NotIn\",\"values\":[\"a\"]}]}", "", 1},
      {"{\"matchExpressions\":[{\"key\":\"t\",\"operator\":\"NotIn\",\"values\":[\"a\"]}]}", "t=a",
       0},
      {"{\"matchExpressions\":[{\"key\":\"t\",\"operator\":\"NotIn\",\"values\":[\"a\"]}]}", "t=b",
       1},
      {"{\"matchExpressions\":[{\"key\":\"t\",\"operator\":\"NotIn\",\"values\":[\"a\"]}]}", "u=a",
       1},
      /* Exists / DoesNotExist */
      {"{\"matchExpressions\":[{\"key\":\"t\",\"operator\":\"Exists\"}]}", "t=", 1},
      {"{\"matchExpressions\":[{\"key\":\"t\",\"operator\":\"Exists\"}]}", "t=x", 1},
      {"{\"matchExpressions\":[{\"key\":\"t\",\"operator\":\"Exists\"}]}", "tt=x", 0},
      {"{\"matchExpressions\":[{\"key\":\"t\",\"operator\":\"DoesNotExist\"}]}", "", 1},
      {"{\"matchExpressions\":[{\"key\":\"t\",\"operator\":\"DoesNotExist\"}]}", "t=", 0},
      {"{\"matchExpressions\":[{\"key\":\"t\",\"operator\":\"DoesNotExist\"}]}", "x=t", 1},
      /* empty matchLabels with expressions: only the expressions count */
      {"{\"matchLabels\":{},\"matchExpressions\":[{\"key\":\"t\",\"operator\":\"Exists\"}]}", "t=1",
       1},
      {"{\"matchLabels\":{},\"matchExpressions\":[{\"key\":\"t\",\"operator\":\"Exists\"}]}", "",
       0},
      /* matchLabels AND all expressions */
      {"{\"matchLabels\":{\"app\":\"a\"},\"matchExpressions\":[{\"key\":\"t\",\"operator\":"
       "\"Exists\"},{\"key\":\"env\",\"operator\":\"NotIn\",\"values\":[\"prod\"]}]}",
       "app=a,t=1", 1},
      {"{\"matchLabels\":{\"app\":\"a\"},\"matchExpressions\":[{\"key\":\"t\",\"operator\":"
       "\"Exists\"},{\"key\":\"env\",\"operator\":\"NotIn\",\"values\":[\"prod\"]}]}",
       "app=a,t=1,env=prod", 0},
      {"{\"matchLabels\":{\"app\":\"a\"},\"matchExpressions\":[{\"key\":\"t\",\"operator\":"
       "\"Exists\"}]}",
       "t=1", 0},
      /* Kubernetes: an empty selector matches everything ... */
      {"{}", "", 1},
      {"{\"matchLabels\":{},\"matchExpressions\":[]}", "a=b", 1},
      /* ... and an invalid one matches nothing */
      {"{\"matchExpressions\":[{\"key\":\"t\",\"operator\":\"In\"}]}", "t=", 0},
      {"{\"matchExpressions\":[{\"key\":\"t\",\"operator\":\"NotIn\",\"values\":[]}]}", "", 0},
      {"{\"matchExpressions\":[{\"key\":\"t\",\"operator\":\"Exists\",\"values\":[\"x\"]}]}", "t=x",
       0},
      {"{\"matchExpressions\":[{\"key\":\"t\",\"operator\":\"DoesNotExist\",\"values\":[\"x\"]}]}",
       "", 0},
      {"{\"matchExpressions\":[{\"key\":\"t\",\"operator\":\"Gt\",\"values\":[\"1\"]}]}", "t=2", 0},
      {"{\"matchExpressions\":[{\"key\":\"t\"}]}", "t=2", 0},
      {"{\"matchExpressions\":[{\"operator\":\"DoesNotExist\"}]}", "", 0},
      {"{\"matchExpressions\":[{\"key\":\"t\",\"operator\":\"In\",\"values\":[\"a b\",\"x\"]}]}",
       "t=x", 0},
      {"{\"matchLabels\":{\"a=b\":\"c\"}}", "a=b=c", 0},
      {"{\"matchLabels\":{\"a=b\":\"c\",\"x\":\"y\"}}", "x=y", 0},
      {"{\"matchLabels\":{\"bad key\":\"c\"}}", "bad key=c", 0},
      {"{\"matchLabels\":{\"k\":\"-bad\"}}", "k=-bad", 0},
  };
  char buf[1024];
  labels_t l;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    snprintf(buf, sizeof(buf), "{\"runtimeClassName\":\"gvisor\",\"selector\":%s}",
             cases[i].selector);
    co_cwl_t *cr = spec(buf);
    int got = cr != NULL ? co_selector_matches(cr, labels(&l, cases[i].labels)) : -1;
    if (got != cases[i].want) {
      fprintf(stderr, "# case %zu: selector %s labels \"%s\": got %d want %d\n", i,
              cases[i].selector, cases[i].labels, got, cases[i].want);
      co__test_failed = 1;
    }
    cwl_free(cr);
  }
  /* NULL labels are no labels; no selector matches nothing */
  co_cwl_t *cr = spec("{\"runtimeClassName\":\"gvisor\",\"selector\":{\"matchExpressions\":"
                      "[{\"key\":\"t\",\"operator\":\"DoesNotExist\"}]}}");
  CO_CHECK_INT(co_selector_matches(cr, NULL), ==, 1);
  cwl_free(cr);
  cr = spec("{\"runtimeClassName\":\"gvisor\",\"targetRefs\":[{\"kind\":\"Deployment\","
            "\"name\":\"w\"}]}");
  CO_CHECK_INT(co_selector_matches(cr, labels(&l, "a=b")), ==, 0);
  cwl_free(cr);
}

static void test_targets(void) {
  labels_t l;
  /* an empty selector selects nothing through co_cwl_targets (it would take the namespace) */
  co_cwl_t *cr = spec("{\"runtimeClassName\":\"gvisor\",\"selector\":{}}");
  CO_CHECK_INT(co_selector_matches(cr, labels(&l, "a=b")), ==, 1);
  CO_CHECK_INT(co_cwl_targets(cr, "Deployment", "ns", "w", labels(&l, "a=b")), ==, 0);
  cwl_free(cr);
  cr =
      spec("{\"runtimeClassName\":\"gvisor\",\"selector\":{\"matchLabels\":{},"
           "\"matchExpressions\":[]},\"targetRefs\":[{\"kind\":\"StatefulSet\",\"name\":\"db\"}]}");
  CO_CHECK_INT(co_cwl_targets(cr, "Deployment", "ns", "w", NULL), ==, 0);
  CO_CHECK_INT(co_cwl_targets(cr, "StatefulSet", "ns", "db", NULL), ==, 1);
  CO_CHECK_INT(co_cwl_targets(cr, "Deployment", "ns", "db", NULL), ==, 0); /* kind counts */
  CO_CHECK_INT(co_cwl_targets(cr, "StatefulSet", NULL, "db", NULL), ==, 0);
  CO_CHECK_INT(co_cwl_targets(NULL, "StatefulSet", "ns", "db", NULL), ==, 0);
  cwl_free(cr);
  /* selector OR targetRefs */
  cr = spec("{\"runtimeClassName\":\"gvisor\",\"selector\":{\"matchLabels\":{\"app\":\"a\"}},"
            "\"targetRefs\":[{\"kind\":\"Deployment\",\"name\":\"named\"}]}");
  CO_CHECK_INT(co_cwl_targets(cr, "Deployment", "ns", "named", labels(&l, "app=b")), ==, 1);
  CO_CHECK_INT(co_cwl_targets(cr, "Deployment", "ns", "other", labels(&l, "app=a")), ==, 1);
  CO_CHECK_INT(co_cwl_targets(cr, "StatefulSet", "ns", "other", labels(&l, "app=a")), ==, 1);
  CO_CHECK_INT(co_cwl_targets(cr, "Deployment", "ns", "other", labels(&l, "app=b")), ==, 0);
  cwl_free(cr);
}

static void test_validation(void) {
  char msg[1024];
  CO_CHECK_STR(problems("{\"runtimeClassName\":\"gvisor\",\"selector\":{\"matchLabels\":{\"a\":"
                        "\"b\"}}}",
                        msg, sizeof(msg)),
               "");
  /* allowed by the schema, not enabled in this cluster: the list of enabled classes is shown */
  CO_CHECK_STR(problems("{\"runtimeClassName\":\"kata-qemu-snp\",\"targetRefs\":[{\"kind\":"
                        "\"Deployment\",\"name\":\"w\"}]}",
                        msg, sizeof(msg)),
               "spec.runtimeClassName \"kata-qemu-snp\" is not enabled in this cluster "
               "(enabled: kata-qemu, kata-clh, gvisor)");
  CO_CHECK_CONTAINS(problems("{\"runtimeClassName\":\"runc\",\"targetRefs\":[{\"kind\":"
                             "\"Deployment\",\"name\":\"w\"}]}",
                             msg, sizeof(msg)),
                    "\"runc\" is not enabled");
  CO_CHECK_CONTAINS(problems("{\"runtimeClassName\":\"\",\"targetRefs\":[{\"kind\":"
                             "\"Deployment\",\"name\":\"w\"}]}",
                             msg, sizeof(msg)),
                    "spec.runtimeClassName is required");
  CO_CHECK_STR(problems("{\"runtimeClassName\":\"gvisor\"}", msg, sizeof(msg)),
               "spec must set selector or targetRefs (or both)");
  CO_CHECK_STR(problems("{\"runtimeClassName\":\"gvisor\",\"targetRefs\":[]}", msg, sizeof(msg)),
               "spec must set selector or targetRefs (or both)");
  CO_CHECK_STR(problems("{\"runtimeClassName\":\"gvisor\",\"selector\":{}}", msg, sizeof(msg)),
               "spec.selector must not be empty; use matchLabels or targetRefs");
  CO_CHECK_STR(problems("{\"runtimeClassName\":\"gvisor\",\"selector\":{\"matchLabels\":{},"
                        "\"matchExpressions\":[]}}",
                        msg, sizeof(msg)),
               "spec.selector must not be empty; use matchLabels or targetRefs");
  CO_CHECK_STR(problems("{\"runtimeClassName\":\"gvisor\",\"selector\":{\"matchExpressions\":"
                        "[{\"key\":\"tier\",\"operator\":\"In\",\"values\":[]}]}}",
                        msg, sizeof(msg)),
               "spec.selector.matchExpressions[0] (key \"tier\", operator In) needs at least one "
               "value; the selector never matches");
  CO_CHECK_CONTAINS(
      problems("{\"runtimeClassName\":\"gvisor\",\"selector\":{\"matchExpressions\":"
               "[{\"key\":\"a\",\"operator\":\"Exists\"},{\"key\":\"tier\","
               "\"operator\":\"DoesNotExist\",\"values\":[\"x\"]}]}}",
               msg, sizeof(msg)),
      "matchExpressions[1] (key \"tier\", operator DoesNotExist) must not have values");
  CO_CHECK_CONTAINS(problems("{\"runtimeClassName\":\"gvisor\",\"selector\":{\"matchExpressions\":"
                             "[{\"key\":\"tier\",\"operator\":\"Gt\",\"values\":[\"1\"]}]}}",
                             msg, sizeof(msg)),
                    "operator is not In, NotIn, Exists or DoesNotExist");
  CO_CHECK_CONTAINS(problems("{\"runtimeClassName\":\"gvisor\",\"selector\":{\"matchExpressions\":"
                             "[{\"key\":\"\",\"operator\":\"Exists\"}]}}",
                             msg, sizeof(msg)),
                    "key is not a valid label key");
  CO_CHECK_CONTAINS(problems("{\"runtimeClassName\":\"gvisor\",\"selector\":{\"matchLabels\":"
                             "{\"a=b\":\"c\"}}}",
                             msg, sizeof(msg)),
                    "key containing '='");
  CO_CHECK_CONTAINS(problems("{\"runtimeClassName\":\"gvisor\",\"selector\":{\"matchLabels\":"
                             "{\"Example.com/app\":\"c\"}}}",
                             msg, sizeof(msg)),
                    "matchLabels \"Example.com/app=c\" is not a valid label key/value pair");
  /* duplicates, kinds, names */
  CO_CHECK_STR(problems("{\"runtimeClassName\":\"gvisor\",\"targetRefs\":[{\"kind\":"
                        "\"Deployment\",\"name\":\"w\"},{\"kind\":\"StatefulSet\",\"name\":\"w\"},"
                        "{\"kind\":\"Deployment\",\"name\":\"w\"}]}",
                        msg, sizeof(msg)),
               "spec.targetRefs[2] duplicates spec.targetRefs[0] (Deployment/w)");
  CO_CHECK_STR(problems("{\"runtimeClassName\":\"gvisor\",\"targetRefs\":[{\"kind\":\"Pod\","
                        "\"name\":\"w\"}]}",
                        msg, sizeof(msg)),
               "spec.targetRefs[0].kind \"Pod\" is not Deployment or StatefulSet");
  CO_CHECK_STR(problems("{\"runtimeClassName\":\"gvisor\",\"targetRefs\":[{\"kind\":"
                        "\"Deployment\",\"name\":\"Web_1\"},{\"kind\":\"Deployment\"}]}",
                        msg, sizeof(msg)),
               "spec.targetRefs[0].name \"Web_1\" is not a valid object name; "
               "spec.targetRefs[1].name \"\" is not a valid object name");
  /* onFailure, revertAfterSeconds, size limit */
  CO_CHECK_STR(problems("{\"runtimeClassName\":\"gvisor\",\"targetRefs\":[{\"kind\":"
                        "\"Deployment\",\"name\":\"w\"}],\"onFailure\":\"Retry\","
                        "\"revertAfterSeconds\":5,\"hardening\":{\"emptyDirSizeLimit\":\"1Ti\"}}",
                        msg, sizeof(msg)),
               "spec.onFailure must be Hold or Revert; spec.revertAfterSeconds must be between 60 "
               "and 86400 (got 5); spec.hardening.emptyDirSizeLimit \"1Ti\" must be a positive "
               "number of bytes or of Ki, Mi or Gi");
  CO_CHECK_CONTAINS(problems("{\"runtimeClassName\":\"gvisor\",\"targetRefs\":[{\"kind\":"
                             "\"Deployment\",\"name\":\"w\"}],\"hardening\":{\"emptyDirSizeLimit\":"
                             "0}}",
                             msg, sizeof(msg)),
                    "emptyDirSizeLimit \"0\"");
  CO_CHECK_STR(problems("{\"runtimeClassName\":\"gvisor\",\"targetRefs\":[{\"kind\":"
                        "\"Deployment\",\"name\":\"w\"}],\"revertAfterSeconds\":86400,"
                        "\"hardening\":{\"emptyDirSizeLimit\":\"1Gi\"}}",
                        msg, sizeof(msg)),
               "");
  /* every problem at once, truncated safely */
  char small[40];
  co_cwl_t *cr = spec("{\"runtimeClassName\":\"runc\",\"selector\":{},\"onFailure\":\"x\"}");
  CO_CHECK_INT(co_cwl_validate(cr, allowed, N_ALLOWED, small, sizeof(small)), ==, CO_EINVAL);
  CO_CHECK_INT(strlen(small), ==, sizeof(small) - 1);
  CO_CHECK_INT(co_cwl_validate(cr, allowed, N_ALLOWED, NULL, 0), ==, CO_EINVAL);
  CO_CHECK_INT(co_cwl_validate(cr, allowed, N_ALLOWED, small, 1), ==, CO_EINVAL);
  CO_CHECK_STR(small, "");
  cwl_free(cr);
  CO_CHECK_INT(co_cwl_validate(NULL, allowed, N_ALLOWED, msg, sizeof(msg)), ==, CO_EINVAL);
}

/* Wrong JSON types and oversized lists fail decode cleanly (release still frees what was
 * decoded: ASan/LSan would tell). */
static void test_malformed(void) {
  static const struct {
    const char *json;
    int want;
  } cases[] = {
      {"{\"spec\":[]}", CO_EPARSE},
      {"{\"spec\":\"x\"}", CO_EPARSE},
      {"{\"spec\":{\"runtimeClassName\":1}}", CO_EPARSE},
      {"{\"spec\":{\"runtimeClassName\":true}}", CO_EPARSE},
      {"{\"spec\":{\"selector\":[]}}", CO_EPARSE},
      {"{\"spec\":{\"selector\":\"app=a\"}}", CO_EPARSE},
      {"{\"spec\":{\"selector\":{\"matchLabels\":[\"a\"]}}}", CO_EPARSE},
      {"{\"spec\":{\"selector\":{\"matchLabels\":{\"a\":1}}}}", CO_EPARSE},
      {"{\"spec\":{\"selector\":{\"matchLabels\":{\"a\":\"b\",\"c\":null}}}}", CO_EPARSE},
      {"{\"spec\":{\"selector\":{\"matchExpressions\":{}}}}", CO_EPARSE},
      {"{\"spec\":{\"selector\":{\"matchExpressions\":[1]}}}", CO_EPARSE},
      {"{\"spec\":{\"selector\":{\"matchExpressions\":[{\"key\":1,\"operator\":\"In\"}]}}}",
       CO_EPARSE},
      {"{\"spec\":{\"selector\":{\"matchExpressions\":[{\"key\":\"a\",\"operator\":[]}]}}}",
       CO_EPARSE},
      {"{\"spec\":{\"selector\":{\"matchExpressions\":[{\"key\":\"a\",\"operator\":\"In\","
       "\"values\":\"x\"}]}}}",
       CO_EPARSE},
      {"{\"spec\":{\"selector\":{\"matchExpressions\":[{\"key\":\"a\",\"operator\":\"In\","
       "\"values\":[\"x\",2,\"y\"]}]}}}",
       CO_EPARSE},
      {"{\"spec\":{\"selector\":{\"matchExpressions\":[{\"key\":\"a\",\"operator\":\"Exists\"},"
       "\"oops\"]}}}",
       CO_EPARSE},
      {"{\"spec\":{\"targetRefs\":{\"kind\":\"Deployment\"}}}", CO_EPARSE},
      {"{\"spec\":{\"targetRefs\":[{\"kind\":\"Deployment\",\"name\":\"a\"},[]]}}", CO_EPARSE},
      {"{\"spec\":{\"targetRefs\":[{\"kind\":\"Deployment\",\"name\":7}]}}", CO_EPARSE},
      {"{\"spec\":{\"onFailure\":false}}", CO_EPARSE},
      {"{\"spec\":{\"revertAfterSeconds\":\"600\"}}", CO_EPARSE},
      {"{\"spec\":{\"revertAfterSeconds\":60.5}}", CO_EPARSE},
      {"{\"spec\":{\"hardening\":true}}", CO_EPARSE},
      {"{\"spec\":{\"hardening\":{\"memoryBackedEmptyDirs\":\"true\"}}}", CO_EPARSE},
      {"{\"spec\":{\"hardening\":{\"automountServiceAccountToken\":0}}}", CO_EPARSE},
      {"{\"spec\":{\"hardening\":{\"emptyDirSizeLimit\":[]}}}", CO_EPARSE},
      {"{\"spec\":{\"hardening\":{\"emptyDirSizeLimit\":1.5}}}", CO_EPARSE},
      {"{\"metadata\":{\"finalizers\":\"confidential.cypherpunk.io/finalizer\"}}", CO_EPARSE},
      {"{\"metadata\":{\"finalizers\":[1]}}", CO_EPARSE},
      /* huge numbers are clamped, not undefined behaviour */
      {"{\"spec\":{\"revertAfterSeconds\":1e300}}", 0},
      {"{\"spec\":{\"revertAfterSeconds\":-1e300}}", 0},
      {"{\"spec\":{\"hardening\":{\"emptyDirSizeLimit\":1e30}}}", 0},
      /* status is read leniently */
      {"{\"spec\":{},\"status\":{\"observedGeneration\":\"3\"}}", 0},
      {"{\"spec\":{},\"status\":[]}", 0},
      {"[]", 0},
      {"\"x\"", 0},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    int rc;
    co_cwl_t *cr = decode_json(cases[i].json, &rc);
    if (rc != cases[i].want) {
      fprintf(stderr, "# case %zu: %s: got %s want %s\n", i, cases[i].json, co_err_name(rc),
              co_err_name(cases[i].want));
      co__test_failed = 1;
    }
    if (rc == 0) { /* whatever decoded can be validated and matched */
      char msg[256];
      labels_t l;
      (void)co_cwl_validate(cr, allowed, N_ALLOWED, msg, sizeof(msg));
      (void)co_cwl_targets(cr, "Deployment", "ns", "a", labels(&l, "a=b"));
    }
    cwl_free(cr);
  }
}

static void append(char *buf, size_t cap, const char *s) {
  size_t len = strlen(buf);
  snprintf(buf + len, cap - len, "%s", s);
}

/* Appends n comma-separated entries pre<i>post to buf. */
static void repeat(char *buf, size_t cap, const char *pre, const char *post, int n) {
  for (int i = 0; i < n; i++) {
    size_t len = strlen(buf);
    snprintf(buf + len, cap - len, "%s%s%d%s", i > 0 ? "," : "", pre, i, post);
  }
}

static void test_bounds(void) {
  static char buf[65536];
  int rc;
  co_cwl_t *cr;
  for (int n = CO_CWL_MAX_TARGET_REFS; n <= CO_CWL_MAX_TARGET_REFS + 1; n++) {
    snprintf(buf, sizeof(buf), "{\"spec\":{\"runtimeClassName\":\"gvisor\",\"targetRefs\":[");
    repeat(buf, sizeof(buf), "{\"kind\":\"Deployment\",\"name\":\"w", "\"}", n);
    append(buf, sizeof(buf), "]}}");
    cr = decode_json(buf, &rc);
    CO_CHECK_INT(rc, ==, n > CO_CWL_MAX_TARGET_REFS ? CO_ETOOBIG : 0);
    if (rc == 0) {
      CO_CHECK_INT(cr->n_target_refs, ==, n);
      CO_CHECK_INT(co_cwl_refs(cr, "Deployment", "w99"), ==, 1);
    }
    cwl_free(cr);
  }
  for (int n = CO_CWL_MAX_EXPRESSIONS; n <= CO_CWL_MAX_EXPRESSIONS + 1; n++) {
    snprintf(buf, sizeof(buf), "{\"spec\":{\"selector\":{\"matchExpressions\":[");
    repeat(buf, sizeof(buf), "{\"key\":\"k", "\",\"operator\":\"Exists\"}", n);
    append(buf, sizeof(buf), "]}}}");
    cr = decode_json(buf, &rc);
    CO_CHECK_INT(rc, ==, n > CO_CWL_MAX_EXPRESSIONS ? CO_ETOOBIG : 0);
    cwl_free(cr);
  }
  for (int n = CO_CWL_MAX_VALUES; n <= CO_CWL_MAX_VALUES + 1; n++) {
    snprintf(buf, sizeof(buf),
             "{\"spec\":{\"selector\":{\"matchExpressions\":[{\"key\":\"k\",\"operator\":\"In\","
             "\"values\":[");
    repeat(buf, sizeof(buf), "\"v", "\"", n);
    append(buf, sizeof(buf), "]}]}}}");
    cr = decode_json(buf, &rc);
    CO_CHECK_INT(rc, ==, n > CO_CWL_MAX_VALUES ? CO_ETOOBIG : 0);
    if (rc == 0) {
      labels_t l;
      CO_CHECK_INT(co_selector_matches(cr, labels(&l, "k=v63")), ==, 1);
    }
    cwl_free(cr);
  }
  for (int n = CO_CWL_MAX_MATCH_LABELS; n <= CO_CWL_MAX_MATCH_LABELS + 1; n++) {
    snprintf(buf, sizeof(buf), "{\"spec\":{\"selector\":{\"matchLabels\":{");
    repeat(buf, sizeof(buf), "\"k", "\":\"v\"", n);
    append(buf, sizeof(buf), "}}}}");
    cr = decode_json(buf, &rc);
    CO_CHECK_INT(rc, ==, n > CO_CWL_MAX_MATCH_LABELS ? CO_ETOOBIG : 0);
    cwl_free(cr);
  }
}

static void test_finalizer(void) {
  int rc;
  co_cwl_t *cr =
      decode_json("{\"metadata\":{\"finalizers\":[\"confidential.cypherpunk.io/finalizer-x\","
                  "\"confidential.cypherpunk.io\"]},\"spec\":{}}",
                  &rc);
  CO_CHECK_INT(rc, ==, 0);
  CO_CHECK_INT(cr->has_finalizer, ==, 0);
  cwl_free(cr);
  cr = decode_json("{\"metadata\":{\"finalizers\":[\"confidential.cypherpunk.io/finalizer\"]}}",
                   &rc);
  CO_CHECK_INT(cr->has_finalizer, ==, 1);
  cwl_free(cr);
}

static void test_names(void) {
  CO_CHECK_STR(co_sel_op_name(CO_SEL_OP_IN), "In");
  CO_CHECK_STR(co_sel_op_name(CO_SEL_OP_NOT_IN), "NotIn");
  CO_CHECK_STR(co_sel_op_name(CO_SEL_OP_EXISTS), "Exists");
  CO_CHECK_STR(co_sel_op_name(CO_SEL_OP_DOES_NOT_EXIST), "DoesNotExist");
  CO_CHECK_STR(co_sel_op_name(CO_SEL_OP_INVALID), "Invalid");
  CO_CHECK_STR(co_on_failure_name(CO_ON_FAILURE_HOLD), "Hold");
  CO_CHECK_STR(co_on_failure_name(CO_ON_FAILURE_REVERT), "Revert");
}

CO_TEST_MAIN(CO_TEST(test_type), CO_TEST(test_sample_selector), CO_TEST(test_sample_targetrefs),
             CO_TEST(test_server_json), CO_TEST(test_defaults), CO_TEST(test_selector_semantics),
             CO_TEST(test_targets), CO_TEST(test_validation), CO_TEST(test_malformed),
             CO_TEST(test_bounds), CO_TEST(test_finalizer), CO_TEST(test_names))
