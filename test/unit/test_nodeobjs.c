/* Node preparation objects: class facts (kata-deploy overheads), RuntimeClasses and their
 * probe twins, the DaemonSets' selectors and k3s settings, the probe pod, and the verdict on a
 * probe's report. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "co/alloc.h"
#include "co/nodeobjs.h"
#include "co/nodeprep.h"
#include "co_test.h"

static const char *const classes[] = {"kata-qemu", "kata-qemu-snp", "gvisor"};
static const co_nodeobj_opts_t opts = {
    "confidential-nodes", "agent:1", "4.1.0", "busybox:1.36", classes, 3, "kata-qemu"};

/* Value at a dotted path of string keys ("a.b.c"), or NULL. */
static const cJSON *at(const cJSON *o, const char *path) {
  char buf[256];
  snprintf(buf, sizeof(buf), "%s", path);
  for (char *k = buf, *dot; k != NULL && o != NULL; k = dot) {
    dot = strchr(k, '|');
    if (dot != NULL)
      *dot++ = '\0';
    o = cJSON_GetObjectItemCaseSensitive(o, k);
  }
  return o;
}

static const char *str(const cJSON *o, const char *path) {
  const cJSON *v = at(o, path);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void test_class_info(void) {
  co_class_info_t ci;
  co_class_info("kata-qemu", &ci);
  CO_CHECK_STR(ci.handler, "kata-qemu");
  CO_CHECK_STR(ci.memory, "320Mi");
  CO_CHECK_STR(ci.cpu, "250m");
  CO_CHECK(ci.kata && ci.tee == NULL);
  co_class_info("kata-qemu-tdx", &ci);
  CO_CHECK_STR(ci.memory, "2Gi");
  CO_CHECK_STR(ci.tee, "tdx");
  co_class_info("kata-clh", &ci);
  CO_CHECK_STR(ci.memory, "130Mi");
  co_class_info("kata-qemu-coco-dev", &ci);
  CO_CHECK_STR(ci.memory, "160Mi");
  co_class_info("gvisor", &ci);
  CO_CHECK_STR(ci.handler, "runsc");
  CO_CHECK(ci.memory == NULL && !ci.kata);
  co_class_info("kata-new", &ci);
  CO_CHECK_STR(ci.handler, "kata-new");
  CO_CHECK(ci.kata && ci.memory == NULL);
}

static void test_runtimeclass(void) {
  cJSON *rc = co_nodeobj_runtimeclass("kata-qemu-snp", 0);
  CO_CHECK_STR(str(rc, "handler"), "kata-qemu-snp");
  CO_CHECK_STR(str(rc, "overhead|podFixed|memory"), "2Gi");
  CO_CHECK_STR(str(rc, "overhead|podFixed|cpu"), "1");
  CO_CHECK_STR(str(rc, "scheduling|nodeSelector|runtime.confidential.cypherpunk.io/kata-qemu-snp"),
               "ready");
  CO_CHECK(at(rc, "scheduling|tolerations") == NULL);
  cJSON_Delete(rc);
  rc = co_nodeobj_runtimeclass("gvisor", 1);
  CO_CHECK_STR(str(rc, "metadata|name"), "co-probe-gvisor");
  CO_CHECK_STR(str(rc, "handler"), "runsc");
  CO_CHECK(at(rc, "scheduling") == NULL && at(rc, "overhead") == NULL);
  cJSON_Delete(rc);
}

static void test_daemonsets(void) {
  cJSON *ds = co_nodeobj_agent_ds(&opts);
  const cJSON *ps = at(ds, "spec|template|spec");
  CO_CHECK_STR(str(ps, "nodeSelector|confidential.cypherpunk.io/agent"), "true");
  CO_CHECK_STR(str(ds, "metadata|namespace"), "confidential-nodes");
  CO_CHECK_STR(str(cJSON_GetArrayItem(at(ps, "containers"), 0), "image"), "agent:1");
  cJSON_Delete(ds);
  ds = co_nodeobj_kata_deploy_ds(&opts);
  ps = at(ds, "spec|template|spec");
  CO_CHECK_STR(str(ps, "nodeSelector|confidential.cypherpunk.io/prepared"), "true");
  const cJSON *c = cJSON_GetArrayItem(at(ps, "containers"), 0);
  CO_CHECK_STR(str(c, "image"), "quay.io/kata-containers/kata-deploy:4.1.0");
  CO_CHECK(cJSON_IsFalse(at(c, "securityContext|privileged")));
  CO_CHECK(at(ps, "hostPID") == NULL);
  char *js = cJSON_PrintUnformatted(ds);
  CO_CHECK_CONTAINS(js, "{\"name\":\"K8S_DISTRIBUTION\",\"value\":\"k3s\"}");
  CO_CHECK_CONTAINS(js, "{\"name\":\"SHIMS_X86_64\",\"value\":\"qemu qemu-snp\"}");
  CO_CHECK_CONTAINS(js, "{\"name\":\"DEFAULT_SHIM_X86_64\",\"value\":\"qemu\"}");
  CO_CHECK_CONTAINS(js, "\"path\":\"/var/lib/rancher/k3s/agent/etc/containerd/\"");
  CO_CHECK_CONTAINS(js, "\"path\":\"/run/systemd/private\",\"type\":\"Socket\"");
  co_free(js);
  cJSON_Delete(ds);
  /* Before 4.1: privileged with hostPID and the host root. */
  co_nodeobj_opts_t old = opts;
  old.kata_deploy_version = "3.29.0";
  ds = co_nodeobj_kata_deploy_ds(&old);
  ps = at(ds, "spec|template|spec");
  CO_CHECK(cJSON_IsTrue(at(ps, "hostPID")));
  c = cJSON_GetArrayItem(at(ps, "containers"), 0);
  CO_CHECK(cJSON_IsTrue(at(c, "securityContext|privileged")));
  cJSON_Delete(ds);
}

static void test_versions(void) {
  CO_CHECK(co_version_at_least("4.1.0", 4, 1));
  CO_CHECK(co_version_at_least("v4.2", 4, 1));
  CO_CHECK(co_version_at_least("5.0.0", 4, 1));
  CO_CHECK(!co_version_at_least("4.0.9", 4, 1));
  CO_CHECK(!co_version_at_least("3.28.0", 4, 1));
  CO_CHECK(!co_version_at_least("latest", 4, 1));
}

static void test_probe_pod(void) {
  cJSON *p = co_nodeobj_probe_pod(&opts, "node-a", "kata-qemu", 300);
  char name[64];
  co_nodeobj_probe_name("node-a", "kata-qemu", name, sizeof(name));
  CO_CHECK_STR(str(p, "metadata|name"), name);
  char other[64];
  co_nodeobj_probe_name("node-a", "gvisor", other, sizeof(other));
  CO_CHECK(strcmp(name, other) != 0);
  CO_CHECK_STR(str(p, "spec|nodeName"), "node-a");
  CO_CHECK_STR(str(p, "spec|runtimeClassName"), "co-probe-kata-qemu");
  CO_CHECK_STR(str(p, "spec|restartPolicy"), "Never");
  CO_CHECK(cJSON_IsTrue(at(p, "spec|securityContext|runAsNonRoot")));
  const cJSON *c = cJSON_GetArrayItem(at(p, "spec|containers"), 0);
  CO_CHECK(cJSON_IsFalse(at(c, "securityContext|allowPrivilegeEscalation")));
  CO_CHECK_STR(str(c, "resources|requests|cpu"), "10m");
  CO_CHECK_STR(cJSON_GetArrayItem(at(c, "command"), 2)->valuestring,
               "uname -r > /dev/termination-log");
  cJSON_Delete(p);
}

static void test_verdict(void) {
  co_probe_pod_t p;
  memset(&p, 0, sizeof(p));
  char kernel[64], msg[320];
  char m1[] = "6.12.8-kata\n", m2[] = " 6.1.0-host\n", m3[] = "4.4.0";
  p.finished = 1;
  p.message = m1;
  CO_CHECK_INT(co_probe_verdict(&p, "6.1.0-host", kernel, sizeof(kernel), msg, sizeof(msg)), ==, 1);
  CO_CHECK_STR(kernel, "6.12.8-kata");
  CO_CHECK_STR(msg, "sandbox kernel 6.12.8-kata differs from the host's 6.1.0-host");
  p.message = m2;
  CO_CHECK_INT(co_probe_verdict(&p, "6.1.0-host", kernel, sizeof(kernel), msg, sizeof(msg)), ==, 0);
  CO_CHECK_CONTAINS(msg, "is the host's kernel");
  p.message = NULL;
  CO_CHECK_INT(co_probe_verdict(&p, "6.1.0-host", kernel, sizeof(kernel), msg, sizeof(msg)), ==, 0);
  CO_CHECK_CONTAINS(msg, "without a kernel version");
  p.message = m3;
  p.exit_code = 127;
  CO_CHECK_INT(co_probe_verdict(&p, "6.1.0-host", kernel, sizeof(kernel), msg, sizeof(msg)), ==, 0);
  p.exit_code = 0;
  CO_CHECK_INT(co_probe_verdict(&p, NULL, kernel, sizeof(kernel), msg, sizeof(msg)), ==, 0);
  CO_CHECK_CONTAINS(msg, "no kernelVersion");
}

static void test_class_enabled(void) {
  CO_CHECK(co_nodeobj_class_enabled(&opts, "gvisor"));
  CO_CHECK(co_nodeobj_class_enabled(&opts, "co-probe-kata-qemu-snp"));
  CO_CHECK(!co_nodeobj_class_enabled(&opts, "kata-clh"));
  CO_CHECK(!co_nodeobj_class_enabled(&opts, "co-probe-kata-clh"));
  CO_CHECK(!co_nodeobj_class_enabled(&opts, "kata-qemu-s"));
  CO_CHECK(!co_nodeobj_class_enabled(&opts, "co-probe-"));
  CO_CHECK_STR(co_nodeobj_stale_runtime_label(&opts, "runtime.confidential.cypherpunk.io/kata-clh"),
               "kata-clh");
  CO_CHECK(co_nodeobj_stale_runtime_label(&opts, "runtime.confidential.cypherpunk.io/gvisor") ==
           NULL);
  CO_CHECK(co_nodeobj_stale_runtime_label(&opts, "runtime.confidential.cypherpunk.io/") == NULL);
  CO_CHECK(co_nodeobj_stale_runtime_label(&opts, "confidential.cypherpunk.io/kata-clh") == NULL);
  CO_CHECK(co_nodeobj_stale_runtime_label(&opts, "kubernetes.io/hostname") == NULL);
}

/* A RuntimeClass as the API server lists it: labels and the managers of its handler. */
static cJSON *listed_class(const char *managed_by, const char *const *managers, int n) {
  cJSON *rc = co_nodeobj_runtimeclass("kata-clh", 0);
  cJSON *md = cJSON_GetObjectItemCaseSensitive(rc, "metadata");
  cJSON *l = cJSON_GetObjectItemCaseSensitive(md, "labels");
  cJSON_DeleteItemFromObjectCaseSensitive(l, "app.kubernetes.io/managed-by");
  if (managed_by != NULL)
    cJSON_AddStringToObject(l, "app.kubernetes.io/managed-by", managed_by);
  cJSON *mf = cJSON_AddArrayToObject(md, "managedFields");
  /* Every listed class has a status-less update entry without the handler (e.g. a label). */
  cJSON *lab = cJSON_CreateObject();
  cJSON_AddStringToObject(lab, "manager", "kubectl-label");
  cJSON_AddStringToObject(lab, "operation", "Update");
  cJSON_AddObjectToObject(cJSON_AddObjectToObject(lab, "fieldsV1"), "f:metadata");
  cJSON_AddItemToArray(mf, lab);
  for (int i = 0; i < n; i++) {
    char m[64], op[16];
    const char *colon = strchr(managers[i], ':');
    snprintf(m, sizeof(m), "%.*s", (int)(colon - managers[i]), managers[i]);
    snprintf(op, sizeof(op), "%s", colon + 1);
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "manager", m);
    cJSON_AddStringToObject(e, "operation", op);
    cJSON_AddObjectToObject(cJSON_AddObjectToObject(e, "fieldsV1"), "f:handler");
    cJSON_AddItemToArray(mf, e);
  }
  return rc;
}

static void test_class_is_ours(void) {
  static const char *const ours[] = {"confidential-operator:Apply"};
  static const char *const shared[] = {"kubectl-create:Update", "confidential-operator:Apply"};
  static const char *const theirs[] = {"kubectl-client-side-apply:Update"};
  static const char *const our_update[] = {"confidential-operator:Update"};
  const char *fm = CO_NODEOBJ_FIELD_MANAGER;
  cJSON *rc = listed_class("confidential-operator", ours, 1);
  CO_CHECK(co_nodeobj_class_is_ours(rc, fm));
  CO_CHECK(!co_nodeobj_class_is_ours(rc, "someone-else"));
  cJSON_Delete(rc);
  /* Created by someone else with the same handler, then applied by the operator: shared. */
  rc = listed_class("confidential-operator", shared, 2);
  CO_CHECK(!co_nodeobj_class_is_ours(rc, fm));
  cJSON_Delete(rc);
  /* Our label copied onto someone else's class. */
  rc = listed_class("confidential-operator", theirs, 1);
  CO_CHECK(!co_nodeobj_class_is_ours(rc, fm));
  cJSON_Delete(rc);
  rc = listed_class("confidential-operator", our_update, 1);
  CO_CHECK(!co_nodeobj_class_is_ours(rc, fm));
  cJSON_Delete(rc);
  /* Our apply alone, but the label says another manager. */
  rc = listed_class("helm", ours, 1);
  CO_CHECK(!co_nodeobj_class_is_ours(rc, fm));
  cJSON_Delete(rc);
  rc = listed_class(NULL, ours, 1);
  CO_CHECK(!co_nodeobj_class_is_ours(rc, fm));
  cJSON_Delete(rc);
  /* No managedFields at all (a server that strips them): not provably ours. */
  rc = listed_class("confidential-operator", ours, 0);
  CO_CHECK(!co_nodeobj_class_is_ours(rc, fm));
  cJSON_Delete(rc);
}

CO_TEST_MAIN(CO_TEST(test_class_info), CO_TEST(test_class_enabled), CO_TEST(test_class_is_ours),
             CO_TEST(test_runtimeclass), CO_TEST(test_daemonsets), CO_TEST(test_versions),
             CO_TEST(test_probe_pod), CO_TEST(test_verdict))
