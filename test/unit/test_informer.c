/* Informer cache semantics, driven through the reflector's callbacks without a server. */
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>

#include "co/client.h"
#include "co/error.h"
#include "co/objects.h"
#include "co_test.h"

typedef struct {
  int adds, updates, deletes, synced;
  char last[256];
} counts_t;

static counts_t g;

static void on_add(co_informer_t *inf, const co_obj_t *o) {
  (void)inf;
  g.adds++;
  snprintf(g.last, sizeof(g.last), "add %s", o->key);
}
static void on_update(co_informer_t *inf, const co_obj_t *a, const co_obj_t *b) {
  (void)inf;
  g.updates++;
  snprintf(g.last, sizeof(g.last), "update %s ready %d->%d", b->key,
           ((const co_workload_t *)a)->ready_replicas, ((const co_workload_t *)b)->ready_replicas);
}
static void on_delete(co_informer_t *inf, const co_obj_t *o) {
  (void)inf;
  g.deletes++;
  snprintf(g.last, sizeof(g.last), "delete %s", o->key);
}
static void on_synced(co_informer_t *inf) {
  (void)inf;
  g.synced++;
}

static cJSON *deploy(const char *ns, const char *name, const char *rv, int ready, const char *rc,
                     const char *env) {
  char buf[2048];
  snprintf(
      buf, sizeof(buf),
      "{\"metadata\":{\"namespace\":\"%s\",\"name\":\"%s\",\"uid\":\"6f1d8f7e-3b2a-4c5d-8e9f-"
      "00000000000%s\","
      "\"resourceVersion\":\"%s\",\"generation\":1,\"labels\":{\"app\":\"%s\"},"
      "\"annotations\":{\"confidential.cypherpunk.io/runtime\":\"kata-qemu\",\"other\":\"x\"}},"
      "\"spec\":{\"replicas\":2,\"template\":{\"spec\":{%s%s%s"
      "\"initContainers\":[{\"name\":\"i\",\"env\":[{\"name\":\"CONFIDENTIAL_RUNTIME\","
      "\"value\":\"gvisor\"}]}],"
      "\"containers\":[{\"name\":\"a\"},{\"name\":\"b\",\"env\":[{\"name\":\"X\",\"value\":\"1\"}%"
      "s]}]}}},"
      "\"status\":{\"readyReplicas\":%d}}",
      ns, name, name, rv, name, rc ? "\"runtimeClassName\":\"" : "", rc ? rc : "", rc ? "\"," : "",
      env ? env : "", ready);
  cJSON *j = cJSON_Parse(buf);
  if (j == NULL)
    fprintf(stderr, "# bad fixture: %s\n", buf);
  return j;
}

static void closed_inf(co_informer_t *inf) { (void)inf; }
static void closed_client(co_client_t *c) { (void)c; }

static void test_cache(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  co_kubeconfig_t cfg = {0};
  char server[] = "https://127.0.0.1:1";
  cfg.server = server;
  co_client_t client;
  char err[256];
  CO_CHECK_INT(co_client_init(&loop, &client, &cfg, NULL, err, sizeof(err)), ==, 0);
  co_informer_t inf;
  co_informer_handlers_t h = {on_add, on_update, on_delete, on_synced};
  CO_CHECK_INT(co_informer_init(&client, &inf, &co_type_deployments, &h, NULL), ==, 0);
  co_reflector_t *r = &inf.reflector;
  memset(&g, 0, sizeof(g));

  /* first list: two objects */
  r->ops.list_begin(r);
  cJSON *a = deploy("ns1", "a", "10", 0, NULL, ",{\"name\":\"KATA\",\"value\":\"\"}");
  cJSON *b = deploy("ns2", "b", "11", 0, "kata-qemu", NULL);
  r->ops.list_item(r, a);
  r->ops.list_item(r, b);
  CO_CHECK_INT(g.synced, ==, 0);
  r->ops.list_end(r);
  CO_CHECK_INT(g.adds, ==, 2);
  CO_CHECK_INT(g.synced, ==, 1);
  CO_CHECK_INT(inf.synced, ==, 1);
  CO_CHECK_INT(inf.count, ==, 2);

  const co_workload_t *w = (const co_workload_t *)co_informer_get(&inf, "ns1/a");
  CO_CHECK(w != NULL);
  if (w != NULL) {
    CO_CHECK_STR(w->meta.ns, "ns1");
    CO_CHECK_STR(w->meta.name, "a");
    char uid[CO_UID_STR_LEN];
    CO_CHECK_STR(co_uid_str(&w->meta.uid, uid), "6f1d8f7e-3b2a-4c5d-8e9f-00000000000a");
    CO_CHECK_INT(w->replicas, ==, 2);
    CO_CHECK(w->runtime_class == NULL);
    CO_CHECK_STR(co_kv_get(&w->labels, "app"), "a");
    CO_CHECK_STR(co_kv_get(&w->annotations, "confidential.cypherpunk.io/runtime"), "kata-qemu");
    CO_CHECK(co_kv_get(&w->annotations, "other") == NULL); /* only the project's prefix */
    CO_CHECK_STR(co_kv_get(&w->template_env, "KATA"), "");
    CO_CHECK_STR(co_kv_get(&w->template_env, "CONFIDENTIAL_RUNTIME"), "gvisor");
    CO_CHECK(co_kv_get(&w->template_env, "X") == NULL);
    /* one allocation: the header's strings and every field decode allocated live in it */
    const char *lo = (const char *)w, *hi = lo + malloc_usable_size((void *)(uintptr_t)w);
    const char *inside[] = {w->meta.key, w->meta.name, w->labels.data, w->annotations.data,
                            w->template_env.data};
    for (size_t i = 0; i < sizeof(inside) / sizeof(inside[0]); i++)
      CO_CHECK(inside[i] != NULL && inside[i] > lo && inside[i] < hi);
    /* the blocks' ends too */
    CO_CHECK(w->template_env.data + co_kv_size(&w->template_env) <= hi);
    CO_CHECK(w->annotations.data + co_kv_size(&w->annotations) <= hi);
    /* the namespace is shared, not in the object */
    CO_CHECK(w->meta.ns < lo || w->meta.ns >= hi);
  }
  w = (const co_workload_t *)co_informer_get(&inf, "ns2/b");
  CO_CHECK(w != NULL && w->runtime_class != NULL && strcmp(w->runtime_class, "kata-qemu") == 0);
  if (w != NULL)
    CO_CHECK(w->runtime_class > (const char *)w &&
             w->runtime_class < (const char *)w + malloc_usable_size((void *)(uintptr_t)w));

  /* a watch update that changes nothing projected: no handler, the object kept */
  const co_obj_t *before = co_informer_get(&inf, "ns1/a");
  cJSON *a2 = deploy("ns1", "a", "12", 0, NULL, ",{\"name\":\"KATA\",\"value\":\"\"}");
  r->ops.event(r, CO_WATCH_MODIFIED, a2);
  CO_CHECK_INT(g.updates, ==, 0);
  CO_CHECK(co_informer_get(&inf, "ns1/a") == before);
  CO_CHECK_INT(inf.stats.unchanged, ==, 1);

  /* a real change */
  cJSON *a3 = deploy("ns1", "a", "13", 2, NULL, ",{\"name\":\"KATA\",\"value\":\"\"}");
  r->ops.event(r, CO_WATCH_MODIFIED, a3);
  CO_CHECK_INT(g.updates, ==, 1);
  CO_CHECK_STR(g.last, "update ns1/a ready 0->2");
  CO_CHECK_INT(((const co_workload_t *)co_informer_get(&inf, "ns1/a"))->ready_replicas, ==, 2);

  /* a watch add, then delete */
  cJSON *c = deploy("ns1", "c", "14", 0, NULL, NULL);
  r->ops.event(r, CO_WATCH_ADDED, c);
  CO_CHECK_INT(inf.count, ==, 3);
  /* one copy of each namespace name (LeakSanitizer checks that the last object frees it) */
  CO_CHECK(co_informer_get(&inf, "ns1/c")->ns == co_informer_get(&inf, "ns1/a")->ns);
  CO_CHECK_STR(co_informer_get(&inf, "ns1/c")->ns, "ns1");
  r->ops.event(r, CO_WATCH_DELETED, c);
  CO_CHECK_INT(g.deletes, ==, 1);
  CO_CHECK_STR(g.last, "delete ns1/c");
  CO_CHECK(co_informer_get(&inf, "ns1/c") == NULL);

  /* relist without b: b is deleted by the sweep, a is unchanged, synced does not fire again */
  r->ops.list_begin(r);
  r->ops.list_item(r, a3);
  r->ops.list_end(r);
  CO_CHECK_INT(g.deletes, ==, 2);
  CO_CHECK_STR(g.last, "delete ns2/b");
  CO_CHECK_INT(inf.count, ==, 1);
  CO_CHECK_INT(g.synced, ==, 1);

  /* an object without a name is skipped */
  cJSON *bad = cJSON_Parse("{\"metadata\":{\"namespace\":\"x\"}}");
  r->ops.event(r, CO_WATCH_ADDED, bad);
  CO_CHECK_INT(inf.stats.decode_errors, ==, 1);
  CO_CHECK_INT(inf.count, ==, 1);

  /* a labels field of the wrong type fails the decode of that object only */
  cJSON *odd = cJSON_Parse("{\"metadata\":{\"namespace\":\"x\",\"name\":\"y\",\"labels\":[1]}}");
  r->ops.event(r, CO_WATCH_ADDED, odd);
  CO_CHECK_INT(inf.stats.decode_errors, ==, 2);
  CO_CHECK(co_informer_get(&inf, "x/y") == NULL);

  cJSON_Delete(a);
  cJSON_Delete(a2);
  cJSON_Delete(a3);
  cJSON_Delete(b);
  cJSON_Delete(c);
  cJSON_Delete(bad);
  cJSON_Delete(odd);
  co_informer_close(&inf, closed_inf);
  co_client_close(&client, closed_client);
  uv_run(&loop, UV_RUN_DEFAULT);
  CO_CHECK_INT(uv_loop_close(&loop), ==, 0);
}

static void test_nodes(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  co_kubeconfig_t cfg = {0};
  char server[] = "https://127.0.0.1:1";
  cfg.server = server;
  co_client_t client;
  char err[256];
  CO_CHECK_INT(co_client_init(&loop, &client, &cfg, NULL, err, sizeof(err)), ==, 0);
  co_informer_t inf;
  co_informer_handlers_t h = {on_add, on_update, on_delete, on_synced};
  CO_CHECK_INT(co_informer_init(&client, &inf, &co_type_nodes, &h, NULL), ==, 0);
  memset(&g, 0, sizeof(g));
  cJSON *n = cJSON_Parse(
      "{\"metadata\":{\"name\":\"n1\",\"resourceVersion\":\"5\",\"labels\":"
      "{\"confidential.cypherpunk.io/enabled\":\"true\"}},\"spec\":{\"unschedulable\":true},"
      "\"status\":{\"conditions\":[{\"type\":\"MemoryPressure\",\"status\":\"False\"},"
      "{\"type\":\"Ready\",\"status\":\"True\"}],\"nodeInfo\":{\"kernelVersion\":\"6.1.0\"},"
      "\"runtimeHandlers\":[{\"name\":\"\"},{\"name\":\"runc\"},{\"name\":\"kata-qemu\"}]}}");
  inf.reflector.ops.event(&inf.reflector, CO_WATCH_ADDED, n);
  const co_node_t *node = (const co_node_t *)co_informer_get(&inf, "n1");
  CO_CHECK(node != NULL);
  if (node != NULL) {
    CO_CHECK_STR(node->meta.ns, "");
    CO_CHECK_STR(node->rv, "5");
    CO_CHECK_INT(node->ready, ==, 1);
    CO_CHECK_INT(node->unschedulable, ==, 1);
    CO_CHECK_STR(node->kernel_version, "6.1.0");
    CO_CHECK_STR(node->runtime_handlers, "runc,kata-qemu");
    CO_CHECK_STR(co_kv_get(&node->labels, "confidential.cypherpunk.io/enabled"), "true");
  }
  cJSON_Delete(n);
  co_informer_close(&inf, closed_inf);
  co_client_close(&client, closed_client);
  uv_run(&loop, UV_RUN_DEFAULT);
  CO_CHECK_INT(uv_loop_close(&loop), ==, 0);
}

/* Numbers from outside are clamped, never cast out of range (UBSan checks the cast). */
static void test_json_int64(void) {
  cJSON *j = cJSON_Parse("[5.3e51, -5.3e51, 42, 1e999, \"7\"]");
  CO_CHECK_INT((long long)co_json_int64(cJSON_GetArrayItem(j, 0), 0), ==, (long long)INT64_MAX);
  CO_CHECK_INT((long long)co_json_int64(cJSON_GetArrayItem(j, 1), 0), ==, (long long)INT64_MIN);
  CO_CHECK_INT((long long)co_json_int64(cJSON_GetArrayItem(j, 2), 0), ==, 42);
  CO_CHECK_INT((long long)co_json_int64(cJSON_GetArrayItem(j, 3), 0), ==, (long long)INT64_MAX);
  CO_CHECK_INT((long long)co_json_int64(cJSON_GetArrayItem(j, 4), -1), ==, -1);
  cJSON_Delete(j);
}

/* Object uids are kept as their 16 bytes; the text comes back exactly. */
static void test_uid(void) {
  const char *text = "0b5e2a34-9c1f-4d7e-a6b8-3f20c1d4e5f6";
  co_uid_t u, v;
  char s[CO_UID_STR_LEN];
  CO_CHECK_INT(co_uid_parse(text, &u), ==, 0);
  CO_CHECK(co_uid_present(&u));
  CO_CHECK_STR(co_uid_str(&u, s), text);
  CO_CHECK_INT(co_uid_parse("0b5e2a34-9c1f-4d7e-a6b8-3f20c1d4e5f6", &v), ==, 0);
  CO_CHECK(co_uid_same(&u, &v));
  CO_CHECK_INT(co_uid_parse("0b5e2a34-9c1f-4d7e-a6b8-3f20c1d4e5f7", &v), ==, 0);
  CO_CHECK(!co_uid_same(&u, &v));
  /* not as the API server writes them: absent */
  const char *bad[] = {NULL,
                       "",
                       "u-a",
                       "0B5E2A34-9C1F-4D7E-A6B8-3F20C1D4E5F6",
                       "0b5e2a34-9c1f-4d7e-a6b8-3f20c1d4e5f",
                       "0b5e2a34-9c1f-4d7e-a6b8-3f20c1d4e5f66",
                       "0b5e2a349c1f-4d7e-a6b8-3f20c1d4e5f6-",
                       "0b5e2a34-9c1f-4d7e-a6b8-3f20c1d4e5g6"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    CO_CHECK_INT(co_uid_parse(bad[i], &v), ==, CO_EPARSE);
    CO_CHECK(!co_uid_present(&v) && co_uid_str(&v, s) == NULL && !co_uid_same(&v, &v));
  }
}

/* A kv block ends with an empty string: no count is stored. */
static void test_kv(void) {
  static char two[] = "a=1\0bb=\0";
  co_kv_t kv = {two}, none = {NULL}, one = {two + 4};
  CO_CHECK_INT(co_kv_count(&kv), ==, 2);
  CO_CHECK_INT(co_kv_size(&kv), ==, sizeof(two)); /* "a=1", "bb=", "" */
  CO_CHECK_INT(co_kv_count(&none), ==, 0);
  CO_CHECK_INT(co_kv_size(&none), ==, 0);
  CO_CHECK(co_kv_next(&none, NULL) == NULL);
  CO_CHECK_STR(co_kv_get(&kv, "a"), "1");
  CO_CHECK_STR(co_kv_get(&kv, "bb"), "");
  CO_CHECK(co_kv_get(&kv, "b") == NULL);
  CO_CHECK(co_kv_getn(&kv, "bbb", 2) != NULL);
  CO_CHECK(co_kv_getn(NULL, "a", 1) == NULL);
  const char *p = co_kv_next(&kv, NULL);
  CO_CHECK_STR(p, "a=1");
  p = co_kv_next(&kv, p);
  CO_CHECK_STR(p, "bb=");
  CO_CHECK(co_kv_next(&kv, p) == NULL);
  CO_CHECK(co_kv_equal(&kv, &kv) && co_kv_equal(&none, &none));
  CO_CHECK(!co_kv_equal(&kv, &one) && !co_kv_equal(&one, &none));
}

CO_TEST_MAIN(CO_TEST(test_json_int64), CO_TEST(test_uid), CO_TEST(test_kv), CO_TEST(test_cache),
             CO_TEST(test_nodes))
