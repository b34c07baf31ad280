/* Builders of the node preparation objects (see co/nodeobjs.h). */
#include "co/nodeobjs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "co/nodeproto.h"

#define MANAGED_BY "app.kubernetes.io/managed-by"
#define OPERATOR "confidential-operator"
/* k3s keeps containerd's configuration here (node-install.md §1.4). */
#define K3S_CONTAINERD_DIR "/var/lib/rancher/k3s/agent/etc/containerd/"

/* kata-deploy 4.1.0 chart figures (node-install.md §3), written as the API server normalises
 * them (2048Mi is stored as 2Gi) so that re-applying changes nothing; gVisor defines none. */
static const struct {
  const char *name, *handler, *memory, *cpu, *tee;
} known[] = {
    {"kata-qemu", "kata-qemu", "320Mi", "250m", NULL},
    {"kata-qemu-runtime-rs", "kata-qemu-runtime-rs", "320Mi", "250m", NULL},
    {"kata-qemu-coco-dev", "kata-qemu-coco-dev", "160Mi", "250m", NULL},
    {"kata-clh", "kata-clh", "130Mi", "250m", NULL},
    {"kata-fc", "kata-fc", "130Mi", "250m", NULL},
    {"kata-dragonball", "kata-dragonball", "130Mi", "250m", NULL},
    {"kata-qemu-snp", "kata-qemu-snp", "2Gi", "1", "snp"},
    {"kata-qemu-tdx", "kata-qemu-tdx", "2Gi", "1", "tdx"},
    {"gvisor", "runsc", NULL, NULL, NULL},
};

void co_class_info(const char *class, co_class_info_t *out) {
  memset(out, 0, sizeof(*out));
  out->handler = class;
  out->kata = strncmp(class, "kata-", 5) == 0;
  for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
    if (strcmp(known[i].name, class) == 0) {
      out->handler = known[i].handler;
      out->memory = known[i].memory;
      out->cpu = known[i].cpu;
      out->tee = known[i].tee;
      return;
    }
  }
}

int co_version_at_least(const char *version, int major, int minor) {
  if (version == NULL)
    return 0;
  if (version[0] == 'v')
    version++;
  char *end = NULL;
  long ma = strtol(version, &end, 10);
  if (end == version)
    return 0;
  long mi = 0;
  if (*end == '.')
    mi = strtol(end + 1, NULL, 10);
  return ma > major || (ma == major && mi >= minor);
}

static cJSON *labels(cJSON *parent, const char *component) {
  cJSON *l = cJSON_AddObjectToObject(parent, "labels");
  cJSON_AddStringToObject(l, "app.kubernetes.io/name", OPERATOR);
  cJSON_AddStringToObject(l, "app.kubernetes.io/component", component);
  cJSON_AddStringToObject(l, MANAGED_BY, OPERATOR);
  return l;
}

static cJSON *object(const char *api, const char *kind, const char *ns, const char *name) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "apiVersion", api);
  cJSON_AddStringToObject(o, "kind", kind);
  cJSON *md = cJSON_AddObjectToObject(o, "metadata");
  cJSON_AddStringToObject(md, "name", name);
  if (ns != NULL)
    cJSON_AddStringToObject(md, "namespace", ns);
  return o;
}

cJSON *co_nodeobj_runtimeclass(const char *class, int probe) {
  co_class_info_t ci;
  co_class_info(class, &ci);
  char name[256];
  snprintf(name, sizeof(name), "%s%s", probe ? CO_PROBE_CLASS_PREFIX : "", class);
  cJSON *o = object("node.k8s.io/v1", "RuntimeClass", NULL, name);
  labels(cJSON_GetObjectItemCaseSensitive(o, "metadata"), probe ? "probe" : "runtime");
  cJSON_AddStringToObject(o, "handler", ci.handler);
  if (ci.memory != NULL) {
    cJSON *pf = cJSON_AddObjectToObject(cJSON_AddObjectToObject(o, "overhead"), "podFixed");
    cJSON_AddStringToObject(pf, "cpu", ci.cpu);
    cJSON_AddStringToObject(pf, "memory", ci.memory);
  }
  if (!probe) {
    /* No tolerations: the operator adds no taint, and a toleration here would let sandboxed
     * pods onto nodes whose admins tainted them for other reasons. */
    char label[256];
    snprintf(label, sizeof(label), CO_NODE_RUNTIME_LABEL_PREFIX "%s", class);
    cJSON *ns = cJSON_AddObjectToObject(cJSON_AddObjectToObject(o, "scheduling"), "nodeSelector");
    cJSON_AddStringToObject(ns, label, "ready");
  }
  return o;
}

static void add_env(cJSON *env, const char *name, const char *value) {
  cJSON *e = cJSON_CreateObject();
  cJSON_AddStringToObject(e, "name", name);
  cJSON_AddStringToObject(e, "value", value);
  cJSON_AddItemToArray(env, e);
}

static void add_env_node_name(cJSON *env) {
  cJSON *e = cJSON_CreateObject();
  cJSON_AddStringToObject(e, "name", "NODE_NAME");
  cJSON *fr = cJSON_AddObjectToObject(cJSON_AddObjectToObject(e, "valueFrom"), "fieldRef");
  cJSON_AddStringToObject(fr, "fieldPath", "spec.nodeName");
  cJSON_AddItemToArray(env, e);
}

/* hostPath volume + its mount. type may be NULL. */
static void add_host(cJSON *vols, cJSON *mounts, const char *name, const char *host,
                     const char *type, const char *at, int ro) {
  cJSON *v = cJSON_CreateObject();
  cJSON_AddStringToObject(v, "name", name);
  cJSON *hp = cJSON_AddObjectToObject(v, "hostPath");
  cJSON_AddStringToObject(hp, "path", host);
  if (type != NULL)
    cJSON_AddStringToObject(hp, "type", type);
  cJSON_AddItemToArray(vols, v);
  cJSON *m = cJSON_CreateObject();
  cJSON_AddStringToObject(m, "name", name);
  cJSON_AddStringToObject(m, "mountPath", at);
  if (ro)
    cJSON_AddBoolToObject(m, "readOnly", 1);
  cJSON_AddItemToArray(mounts, m);
}

/* The DaemonSet skeleton; returns the pod spec and the (only) container through out params. */
static cJSON *daemonset(const co_nodeobj_opts_t *o, const char *name, const char *component,
                        const char *node_label, cJSON **pod_spec, cJSON **container) {
  cJSON *ds = object("apps/v1", "DaemonSet", o->ns, name);
  cJSON *l = cJSON_AddObjectToObject(cJSON_GetObjectItemCaseSensitive(ds, "metadata"), "labels");
  cJSON_AddStringToObject(l, "app.kubernetes.io/name", OPERATOR);
  cJSON_AddStringToObject(l, "app.kubernetes.io/component", component);
  cJSON *spec = cJSON_AddObjectToObject(ds, "spec");
  cJSON_AddNumberToObject(spec, "revisionHistoryLimit", 3);
  cJSON *sel = cJSON_AddObjectToObject(cJSON_AddObjectToObject(spec, "selector"), "matchLabels");
  cJSON_AddStringToObject(sel, "app.kubernetes.io/name", OPERATOR);
  cJSON_AddStringToObject(sel, "app.kubernetes.io/component", component);
  cJSON *us = cJSON_AddObjectToObject(spec, "updateStrategy");
  cJSON_AddStringToObject(us, "type", "RollingUpdate");
  cJSON_AddNumberToObject(cJSON_AddObjectToObject(us, "rollingUpdate"), "maxUnavailable", 1);
  cJSON *tmpl = cJSON_AddObjectToObject(spec, "template");
  cJSON *tl = cJSON_AddObjectToObject(cJSON_AddObjectToObject(tmpl, "metadata"), "labels");
  cJSON_AddStringToObject(tl, "app.kubernetes.io/name", OPERATOR);
  cJSON_AddStringToObject(tl, "app.kubernetes.io/component", component);
  cJSON *ps = cJSON_AddObjectToObject(tmpl, "spec");
  cJSON_AddStringToObject(ps, "serviceAccountName", name);
  cJSON_AddStringToObject(ps, "priorityClassName", "system-node-critical");
  cJSON_AddStringToObject(cJSON_AddObjectToObject(ps, "nodeSelector"), node_label, "true");
  cJSON *c = cJSON_CreateObject();
  cJSON_AddItemToArray(cJSON_AddArrayToObject(ps, "containers"), c);
  *pod_spec = ps;
  *container = c;
  return ds;
}

/* Field for field the DaemonSet of manifests/node-agent.yaml (the bundle carries the same
 * object; test/e2e/test_nodeprep.sh checks that the two agree), image and namespace aside. */
cJSON *co_nodeobj_agent_ds(const co_nodeobj_opts_t *o) {
  cJSON *ps, *c;
  cJSON *ds = daemonset(o, CO_NODE_AGENT_DS, "node-agent", CO_NODE_LABEL_AGENT, &ps, &c);
  cJSON_AddBoolToObject(ps, "automountServiceAccountToken", 1);
  cJSON_AddBoolToObject(ps, "enableServiceLinks", 0);
  /* The restart enters PID 1's namespaces (nsenter): hostPID and privileged. */
  cJSON_AddBoolToObject(ps, "hostPID", 1);
  /* Every opted-in node, whatever its taints (control-plane servers included). */
  cJSON *tol = cJSON_CreateObject();
  cJSON_AddStringToObject(tol, "operator", "Exists");
  cJSON_AddItemToArray(cJSON_AddArrayToObject(ps, "tolerations"), tol);
  cJSON_AddNumberToObject(ps, "terminationGracePeriodSeconds", 30);
  cJSON_AddStringToObject(c, "name", "node-agent");
  cJSON_AddStringToObject(c, "image", o->agent_image);
  cJSON_AddStringToObject(c, "imagePullPolicy", "IfNotPresent");
  cJSON *args = cJSON_AddArrayToObject(c, "args");
  cJSON_AddItemToArray(args, cJSON_CreateString("node-agent"));
  cJSON_AddItemToArray(args, cJSON_CreateString("--host-root=/host"));
  cJSON_AddItemToArray(args, cJSON_CreateString("--log-format=json"));
  cJSON *env = cJSON_AddArrayToObject(c, "env");
  add_env_node_name(env);
  cJSON *sc = cJSON_AddObjectToObject(c, "securityContext");
  cJSON_AddBoolToObject(sc, "privileged", 1);
  cJSON_AddNumberToObject(sc, "runAsUser", 0);
  cJSON_AddBoolToObject(sc, "readOnlyRootFilesystem", 1);
  cJSON *res = cJSON_AddObjectToObject(c, "resources");
  cJSON *rq = cJSON_AddObjectToObject(res, "requests");
  cJSON_AddStringToObject(rq, "cpu", "5m");
  cJSON_AddStringToObject(rq, "memory", "16Mi");
  cJSON *lim = cJSON_AddObjectToObject(res, "limits");
  cJSON_AddStringToObject(lim, "cpu", "100m");
  cJSON_AddStringToObject(lim, "memory", "64Mi");
  cJSON *vols = cJSON_AddArrayToObject(ps, "volumes");
  cJSON *mounts = cJSON_AddArrayToObject(c, "volumeMounts");
  add_host(vols, mounts, "host", "/", "Directory", "/host", 1);
  cJSON_AddStringToObject(cJSON_GetArrayItem(mounts, 0), "mountPropagation", "HostToContainer");
  /* The only host path written: the k3s containerd directory. */
  add_host(vols, mounts, "k3s-containerd", "/var/lib/rancher/k3s/agent/etc/containerd", "Directory",
           "/host/var/lib/rancher/k3s/agent/etc/containerd", 0);
  return ds;
}

cJSON *co_nodeobj_kata_deploy_ds(const co_nodeobj_opts_t *o) {
  cJSON *ps, *c;
  cJSON *ds = daemonset(o, CO_KATA_DEPLOY_DS, "kata-deploy", CO_NODE_LABEL_PREPARED, &ps, &c);
  int v41 = co_version_at_least(o->kata_deploy_version, 4, 1);
  /* Cleanup runs on SIGTERM and restarts k3s (>= 3.28). */
  cJSON_AddNumberToObject(ps, "terminationGracePeriodSeconds", 600);
  if (!v41)
    cJSON_AddBoolToObject(ps, "hostPID", 1);
  char image[512];
  snprintf(image, sizeof(image), CO_KATA_DEPLOY_IMAGE ":%s", o->kata_deploy_version);
  cJSON_AddStringToObject(c, "name", "kube-kata");
  cJSON_AddStringToObject(c, "image", image);
  cJSON_AddStringToObject(c, "imagePullPolicy", "IfNotPresent");
  cJSON *cmd = cJSON_AddArrayToObject(c, "command");
  cJSON_AddItemToArray(cmd, cJSON_CreateString("/usr/bin/kata-deploy"));
  cJSON_AddItemToArray(cmd, cJSON_CreateString("install"));
  /* Shims: the enabled Kata classes without their "kata-" prefix. */
  char shims[512] = "", def[64] = "";
  size_t n = 0;
  for (size_t i = 0; i < o->n_classes; i++) {
    co_class_info_t ci;
    co_class_info(o->classes[i], &ci);
    if (!ci.kata)
      continue;
    int w = snprintf(shims + n, sizeof(shims) - n, "%s%s", n ? " " : "", o->classes[i] + 5);
    if (w > 0 && (size_t)w < sizeof(shims) - n)
      n += (size_t)w;
    if (def[0] == '\0' || (o->default_class && strcmp(o->default_class, o->classes[i]) == 0))
      snprintf(def, sizeof(def), "%s", o->classes[i] + 5);
  }
  cJSON *env = cJSON_AddArrayToObject(c, "env");
  add_env_node_name(env);
  add_env(env, "DAEMONSET_NAME", CO_KATA_DEPLOY_DS);
  add_env(env, "K8S_DISTRIBUTION", "k3s");
  add_env(env, "DEBUG", "false");
  add_env(env, "SHIMS_X86_64", shims);
  add_env(env, "DEFAULT_SHIM_X86_64", def);
  /* RuntimeClasses are the controller's (with its own nodeSelector): never kata-deploy's. */
  add_env(env, "CREATE_RUNTIMECLASSES", "false");
  add_env(env, "CREATE_DEFAULT_RUNTIMECLASS", "false");
  cJSON *sc = cJSON_AddObjectToObject(c, "securityContext");
  cJSON *vols = cJSON_AddArrayToObject(ps, "volumes");
  cJSON *mounts = cJSON_AddArrayToObject(c, "volumeMounts");
  add_host(vols, mounts, "crio-conf", "/etc/crio/", "DirectoryOrCreate", "/etc/crio/", 0);
  /* k8sDistribution=k3s: the k3s containerd directory, never /etc/containerd (failure mode 1). */
  add_host(vols, mounts, "containerd-conf", K3S_CONTAINERD_DIR, "DirectoryOrCreate",
           "/etc/containerd/", 0);
  add_host(vols, mounts, "kata-artifacts", "/opt/kata/", "DirectoryOrCreate", "/opt/kata/", 0);
  if (v41) {
    cJSON_AddBoolToObject(sc, "privileged", 0);
    cJSON_AddBoolToObject(sc, "readOnlyRootFilesystem", 1);
    cJSON_AddNumberToObject(sc, "runAsUser", 0);
    add_host(vols, mounts, "systemd-units", "/etc/systemd/system/", "Directory",
             "/etc/systemd/system/", 0);
    add_host(vols, mounts, "systemd-bus", "/run/systemd/private", "Socket", "/run/systemd/private",
             0);
    add_host(vols, mounts, "boot", "/boot/", "Directory", "/boot/", 1);
    add_host(vols, mounts, "machine-id", "/etc/machine-id", "File", "/host-machine-id", 1);
    add_host(vols, mounts, "run-lock", "/run/lock/", "DirectoryOrCreate", "/host-run-lock", 0);
    static const char *const bins[] = {"/usr/bin",        "/usr/sbin", "/usr/local/bin",
                                       "/usr/local/sbin", "/bin",      "/sbin"};
    static const char *const names[] = {"host-usr-bin",       "host-usr-sbin",
                                        "host-usr-local-bin", "host-usr-local-sbin",
                                        "host-bin",           "host-sbin"};
    for (size_t i = 0; i < 6; i++) {
      char at[64];
      snprintf(at, sizeof(at), "/host%s", bins[i]);
      add_host(vols, mounts, names[i], bins[i], NULL, at, 1);
    }
    cJSON *tmp = cJSON_CreateObject();
    cJSON_AddStringToObject(tmp, "name", "tmp");
    cJSON_AddObjectToObject(tmp, "emptyDir");
    cJSON_AddItemToArray(vols, tmp);
    cJSON *tm = cJSON_CreateObject();
    cJSON_AddStringToObject(tm, "name", "tmp");
    cJSON_AddStringToObject(tm, "mountPath", "/tmp");
    cJSON_AddItemToArray(mounts, tm);
  } else {
    cJSON_AddBoolToObject(sc, "privileged", 1);
    add_host(vols, mounts, "host", "/", "Directory", "/host/", 0);
  }
  return ds;
}

static uint64_t fnv1a(const char *a, const char *b) {
  uint64_t h = 1469598103934665603ull;
  for (const char *s = a; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 1099511628211ull;
  }
  h ^= '/';
  h *= 1099511628211ull;
  for (const char *s = b; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 1099511628211ull;
  }
  return h;
}

void co_nodeobj_probe_name(const char *node, const char *class, char *out, size_t len) {
  snprintf(out, len, "co-probe-%016llx", (unsigned long long)fnv1a(node, class));
}

cJSON *co_nodeobj_probe_pod(const co_nodeobj_opts_t *o, const char *node, const char *class,
                            long deadline_s) {
  char name[64], rc[256];
  co_nodeobj_probe_name(node, class, name, sizeof(name));
  snprintf(rc, sizeof(rc), CO_PROBE_CLASS_PREFIX "%s", class);
  cJSON *p = object("v1", "Pod", o->ns, name);
  cJSON *md = cJSON_GetObjectItemCaseSensitive(p, "metadata");
  cJSON *l = labels(md, "probe");
  cJSON_AddStringToObject(l, CO_PROBE_LABEL, "true");
  cJSON *an = cJSON_AddObjectToObject(md, "annotations");
  cJSON_AddStringToObject(an, CO_DOMAIN "/probe-node", node);
  cJSON_AddStringToObject(an, CO_DOMAIN "/probe-class", class);
  cJSON *ps = cJSON_AddObjectToObject(p, "spec");
  cJSON_AddStringToObject(ps, "nodeName", node);
  cJSON_AddStringToObject(ps, "runtimeClassName", rc);
  cJSON_AddStringToObject(ps, "restartPolicy", "Never");
  cJSON_AddNumberToObject(ps, "activeDeadlineSeconds", (double)deadline_s);
  cJSON_AddNumberToObject(ps, "terminationGracePeriodSeconds", 1);
  cJSON_AddBoolToObject(ps, "automountServiceAccountToken", 0);
  cJSON_AddBoolToObject(ps, "enableServiceLinks", 0);
  cJSON *tol = cJSON_CreateObject();
  cJSON_AddStringToObject(tol, "operator", "Exists");
  cJSON_AddItemToArray(cJSON_AddArrayToObject(ps, "tolerations"), tol);
  cJSON *psc = cJSON_AddObjectToObject(ps, "securityContext");
  cJSON_AddBoolToObject(psc, "runAsNonRoot", 1);
  cJSON_AddNumberToObject(psc, "runAsUser", 65534);
  cJSON_AddNumberToObject(psc, "runAsGroup", 65534);
  cJSON_AddStringToObject(cJSON_AddObjectToObject(psc, "seccompProfile"), "type", "RuntimeDefault");
  cJSON *c = cJSON_CreateObject();
  cJSON_AddItemToArray(cJSON_AddArrayToObject(ps, "containers"), c);
  cJSON_AddStringToObject(c, "name", "probe");
  cJSON_AddStringToObject(c, "image", o->probe_image);
  cJSON_AddStringToObject(c, "imagePullPolicy", "IfNotPresent");
  cJSON *cmd = cJSON_AddArrayToObject(c, "command");
  cJSON_AddItemToArray(cmd, cJSON_CreateString("/bin/sh"));
  cJSON_AddItemToArray(cmd, cJSON_CreateString("-c"));
  /* The kernel the sandbox runs, as the kubelet reports it: the termination message. */
  cJSON_AddItemToArray(cmd, cJSON_CreateString("uname -r > /dev/termination-log"));
  cJSON_AddStringToObject(c, "terminationMessagePolicy", "File");
  cJSON *sc = cJSON_AddObjectToObject(c, "securityContext");
  cJSON_AddBoolToObject(sc, "allowPrivilegeEscalation", 0);
  cJSON_AddBoolToObject(sc, "readOnlyRootFilesystem", 1);
  cJSON_AddBoolToObject(sc, "runAsNonRoot", 1);
  cJSON_AddItemToArray(cJSON_AddArrayToObject(cJSON_AddObjectToObject(sc, "capabilities"), "drop"),
                       cJSON_CreateString("ALL"));
  cJSON_AddStringToObject(cJSON_AddObjectToObject(sc, "seccompProfile"), "type", "RuntimeDefault");
  cJSON *res = cJSON_AddObjectToObject(c, "resources");
  cJSON *rq = cJSON_AddObjectToObject(res, "requests");
  cJSON_AddStringToObject(rq, "cpu", "10m");
  cJSON_AddStringToObject(rq, "memory", "16Mi");
  cJSON *lim = cJSON_AddObjectToObject(res, "limits");
  cJSON_AddStringToObject(lim, "cpu", "100m");
  cJSON_AddStringToObject(lim, "memory", "32Mi");
  return p;
}

int co_nodeobj_class_enabled(const co_nodeobj_opts_t *o, const char *name) {
  size_t pl = strlen(CO_PROBE_CLASS_PREFIX);
  if (strncmp(name, CO_PROBE_CLASS_PREFIX, pl) == 0)
    name += pl;
  for (size_t i = 0; i < o->n_classes; i++)
    if (strcmp(o->classes[i], name) == 0)
      return 1;
  return 0;
}

const char *co_nodeobj_stale_runtime_label(const co_nodeobj_opts_t *o, const char *key) {
  size_t pl = strlen(CO_NODE_RUNTIME_LABEL_PREFIX);
  if (strncmp(key, CO_NODE_RUNTIME_LABEL_PREFIX, pl) != 0 || key[pl] == '\0')
    return NULL;
  for (size_t i = 0; i < o->n_classes; i++)
    if (strcmp(o->classes[i], key + pl) == 0)
      return NULL;
  return key + pl;
}

/* 1 when the managedFields entry e owns the field "f:handler". */
static int owns_handler(const cJSON *e) {
  return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(e, "fieldsV1"),
                                          "f:handler") != NULL;
}

int co_nodeobj_class_is_ours(const cJSON *rc, const char *field_manager) {
  const cJSON *md = cJSON_GetObjectItemCaseSensitive(rc, "metadata");
  const cJSON *by =
      cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(md, "labels"), MANAGED_BY);
  if (!cJSON_IsString(by) || strcmp(by->valuestring, OPERATOR) != 0)
    return 0;
  int ours = 0;
  const cJSON *e;
  cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(md, "managedFields")) {
    if (!owns_handler(e))
      continue;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "manager");
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(e, "operation");
    if (cJSON_IsString(m) && strcmp(m->valuestring, field_manager) == 0 && cJSON_IsString(op) &&
        strcmp(op->valuestring, "Apply") == 0)
      ours = 1;
    else
      return 0; /* someone else set the handler too: the class is (also) theirs */
  }
  return ours;
}
