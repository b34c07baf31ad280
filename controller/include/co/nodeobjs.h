/* The objects node preparation keeps in the cluster, built as JSON (pure functions, no I/O):
 * the node-agent and kata-deploy DaemonSets, the RuntimeClasses of the enabled runtimes (with
 * kata-deploy's overhead figures) and the probe pod that proves a sandbox has its own kernel.
 *
 * The controller applies them with server-side apply. The bundle carries the namespace and RBAC
 * they run with, and the node-agent DaemonSet too (manifests/node-agent.yaml, so that the agent
 * can be installed and inspected without the controller): co_nodeobj_agent_ds builds that same
 * object, and test/e2e/test_nodeprep.sh fails when the two differ. */
#ifndef CO_NODEOBJS_H
#define CO_NODEOBJS_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "co/objects.h" /* CO_DOMAIN */

#define CO_NODE_AGENT_DS "confidential-operator-node-agent"
#define CO_KATA_DEPLOY_DS "kata-deploy"
#define CO_KATA_DEPLOY_IMAGE "quay.io/kata-containers/kata-deploy"
/* Current upstream release (shared/reference/node-install.md: chart appVersion 4.1.0). */
#define CO_KATA_DEPLOY_DEFAULT_VERSION "4.1.0"
/* Label kata-deploy puts on a node once its runtimes are installed (every version). */
#define CO_KATA_RUNTIME_LABEL "katacontainers.io/kata-runtime"
/* Probe pods carry this label (the controller watches only these pods). */
#define CO_PROBE_LABEL CO_DOMAIN "/probe"
/* Prefix of the probe twin of a RuntimeClass (see co_nodeobj_runtimeclass). */
#define CO_PROBE_CLASS_PREFIX "co-probe-"

typedef struct co_nodeobj_opts_s {
  const char *ns;                  /* namespace of the DaemonSets and probe pods */
  const char *agent_image;         /* node-agent image */
  const char *kata_deploy_version; /* e.g. "4.1.0" */
  const char *probe_image;         /* image with sh and uname */
  const char *const *classes;      /* enabled RuntimeClasses */
  size_t n_classes;
  const char *default_class; /* decides kata-deploy's default shim when it is a Kata class */
} co_nodeobj_opts_t;

/* What the controller knows about a class: the containerd handler, kata-deploy's
 * overhead.podFixed (NULL when none), and the TEE a node must have (NULL when none). All
 * static strings. Unknown classes: handler = name, no overhead, no TEE. */
typedef struct co_class_info_s {
  const char *handler;
  const char *memory, *cpu;
  const char *tee; /* value of the node label confidential.cypherpunk.io/tee */
  int kata;        /* installed by kata-deploy */
} co_class_info_t;

void co_class_info(const char *class, co_class_info_t *out);

/* Each builder returns an owned cJSON object (cJSON_Delete), never NULL. All inputs borrowed. */

/* The RuntimeClass for class. probe = 0: scheduling.nodeSelector
 * runtime.confidential.cypherpunk.io/<class>=ready. probe = 1: the twin class
 * "co-probe-<class>" (same handler and overhead, no scheduling) that probe pods use: the kubelet
 * checks a bound pod's nodeSelector too, and the probe runs before the node is labelled ready. */
cJSON *co_nodeobj_runtimeclass(const char *class, int probe);

/* The node-agent DaemonSet (nodeSelector confidential.cypherpunk.io/agent=true). */
cJSON *co_nodeobj_agent_ds(const co_nodeobj_opts_t *o);

/* The kata-deploy DaemonSet for k3s (nodeSelector confidential.cypherpunk.io/prepared=true),
 * shims = the enabled Kata classes. Layout by version: >= 4.1 unprivileged with the systemd
 * D-Bus socket; older: privileged with hostPID. */
cJSON *co_nodeobj_kata_deploy_ds(const co_nodeobj_opts_t *o);

/* The probe pod for (node, class): pinned by nodeName, the twin RuntimeClass, restricted
 * security context, tiny requests, `uname -r` into the termination message. name: see
 * co_nodeobj_probe_name. deadline_s bounds its run time. */
cJSON *co_nodeobj_probe_pod(const co_nodeobj_opts_t *o, const char *node, const char *class,
                            long deadline_s);

/* Writes the probe pod's name for (node, class) ("co-probe-<16 hex>") into out. */
void co_nodeobj_probe_name(const char *node, const char *class, char *out, size_t len);

/* The field manager of the operator's server-side applies (the client's default). */
#define CO_NODEOBJ_FIELD_MANAGER "confidential-operator"

/* 1 when name (a RuntimeClass) is one of o's classes or the probe twin of one. */
int co_nodeobj_class_enabled(const co_nodeobj_opts_t *o, const char *name);

/* For a Node label key runtime.confidential.cypherpunk.io/<class> whose class is not among o's
 * classes: the class (a pointer into key); otherwise NULL. */
const char *co_nodeobj_stale_runtime_label(const co_nodeobj_opts_t *o, const char *key);

/* 1 when a RuntimeClass as the API server returns it (borrowed, managedFields included) is the
 * operator's to delete: it carries app.kubernetes.io/managed-by=confidential-operator and its
 * handler was set by field_manager's server-side apply alone. A class someone else created or
 * applied with the same name (and handler) has another manager of the handler: never ours. */
int co_nodeobj_class_is_ours(const cJSON *rc, const char *field_manager);

/* Returns 1 when version (X.Y[.Z]) is at least major.minor. */
int co_version_at_least(const char *version, int major, int minor);

#endif
