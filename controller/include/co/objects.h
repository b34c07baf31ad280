/* Projections of the Kubernetes objects the controllers read, and their resource types.
 * Each projection keeps only what a controller decides on; everything is owned by the
 * cached object and freed with it. */
#ifndef CO_OBJECTS_H
#define CO_OBJECTS_H

#include <stddef.h>
#include <stdint.h>

#include "co/informer.h"

/* Label/annotation prefix of the project. */
#define CO_DOMAIN "confidential.cypherpunk.io"

/* "k=v" pairs, each NUL-terminated, one after the other in one owned block that ends with an
 * empty string (the block ends in two NULs); data is NULL when there are no pairs. A pair is
 * never empty (it holds at least the '='). One pointer, no count: a cached object holds several
 * of these, and 10,000 objects are cached. */
typedef struct co_kv_s {
  char *data;
} co_kv_t;

/* Returns the value of key in kv (borrowed), or NULL. */
const char *co_kv_get(const co_kv_t *kv, const char *key);
/* The same for the key key[0..kl) (need not be NUL-terminated); kv may be NULL. */
const char *co_kv_getn(const co_kv_t *kv, const char *key, size_t kl);
/* The pair after p (borrowed), or the first one when p is NULL; NULL after the last. */
const char *co_kv_next(const co_kv_t *kv, const char *p);
/* Every pair p of kv, in order. */
#define CO_KV_FOREACH(kv, p) \
  for (const char *p = co_kv_next((kv), NULL); p != NULL; p = co_kv_next((kv), p))
/* The number of pairs. */
size_t co_kv_count(const co_kv_t *kv);
/* Bytes of the block, its final empty string included; 0 when data is NULL. */
size_t co_kv_size(const co_kv_t *kv);
/* 1 when a and b hold the same pairs in the same order. */
int co_kv_equal(const co_kv_t *a, const co_kv_t *b);

/* The integer value of a JSON number, clamped to int64_t (a cast of an out-of-range double is
 * undefined behaviour, and the number comes from outside); dflt when v is not a number. */
int64_t co_json_int64(const cJSON *v, int64_t dflt);

/* Deployment or StatefulSet. */
typedef struct co_workload_s {
  co_obj_t meta;
  int64_t observed_generation;
  int32_t replicas; /* spec.replicas (default 1) */
  int32_t status_replicas, ready_replicas, updated_replicas, available_replicas;
  /* in the padding before the pointers (10,000 workloads are cached) */
  int8_t automount_sa_token; /* template automountServiceAccountToken: -1 unset, 0, 1 */
  uint8_t progress_failed;   /* Deployment condition Progressing=False (deadline exceeded) */
  char *runtime_class;       /* spec.template.spec.runtimeClassName, or NULL */
  co_kv_t labels;            /* metadata.labels */
  co_kv_t annotations;       /* metadata.annotations with the project's prefix only */
  co_kv_t template_env;      /* opt-in env vars found on any container or init container:
                                name=value (first occurrence of each name) */
  co_kv_t selector;          /* spec.selector.matchLabels (pods of the workload) */
  co_kv_t empty_dirs;        /* emptyDir volumes of the template: name=medium|sizeLimit (either
                                part may be empty) */
  char *failure_message;     /* ReplicaFailure=True / Progressing=False message, or NULL */
} co_workload_t;

typedef struct co_node_s {
  co_obj_t meta;
  /* metadata.resourceVersion of the last change the projection saw (an update that changes
   * nothing projected keeps the cached object): tells whether a write of ours is in the cache
   * yet. NULL if absent. Only nodes keep it; the other projections need no version. */
  char *rv;
  int ready; /* condition Ready=True */
  int unschedulable;
  char *kernel_version;   /* status.nodeInfo.kernelVersion */
  co_kv_t labels;         /* metadata.labels */
  co_kv_t annotations;    /* metadata.annotations of the operator's domain (node protocol) */
  char *runtime_handlers; /* status.runtimeHandlers[].name joined by ',' or NULL */
} co_node_t;

typedef struct co_namespace_s {
  co_obj_t meta;
  co_kv_t labels;
} co_namespace_t;

typedef struct co_pod_s {
  co_obj_t meta;
  co_kv_t labels;
  char *runtime_class;  /* spec.runtimeClassName, or NULL */
  char *node_name;      /* spec.nodeName, or NULL */
  int ready;            /* condition Ready=True */
  int terminal;         /* phase Succeeded or Failed */
  char *waiting_reason; /* why it does not run: "Unschedulable: <message>" from PodScheduled,
                           or a container's waiting reason such as CreateContainerError;
                           NULL when none */
} co_pod_t;

extern const co_resource_type_t co_type_namespaces;
extern const co_resource_type_t co_type_pods;
extern const co_resource_type_t co_type_deployments;
extern const co_resource_type_t co_type_statefulsets;
extern const co_resource_type_t co_type_nodes;

/* Env var names that opt a workload in (borrowed; default {"KATA", "CONFIDENTIAL_RUNTIME"}).
 * Set before informers start. */
void co_objects_set_optin_env(const char *const *names, unsigned count);

#endif
