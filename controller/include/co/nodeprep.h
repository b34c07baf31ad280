/* Node preparation, controller side: keeps the node-agent and kata-deploy DaemonSets and the
 * RuntimeClasses of the enabled runtimes (server-side apply), labels enabled nodes for the
 * agent, grants k3s restarts one node at a time (servers last), verifies each runtime on each
 * node (handler served + a probe pod whose kernel differs from the host's) before labelling the
 * node ready for it, and takes a node back out (eviction honouring PodDisruptionBudgets, then
 * the agent's removal, then every label/annotation/condition of the operator cleared).
 * Runtimes no longer enabled (a restart with fewer --runtime-classes): the RuntimeClasses the
 * operator alone created for them, their node labels and probe pods are deleted, and the
 * kata-deploy DaemonSet once no Kata class is enabled and no node has it any more. A deleted
 * Node's in-memory state is dropped (co_nodeprep_node_deleted).
 * The protocol with the node agent is co/nodeproto.h.
 *
 * Keys on its own work queue: "apply" (DaemonSets, RuntimeClasses) and "nodes" (every node in
 * one pass, so the one-restart-at-a-time rule is decided over the whole cluster at once). A
 * pass writes at most one change per node, and decides nothing about restarts while the cache
 * has not yet seen one of its own node writes. Only the leader runs it (co_nodeprep_start). */
#ifndef CO_NODEPREP_H
#define CO_NODEPREP_H

#include <stdint.h>
#include <uv.h>

#include "co/client.h"
#include "co/informer.h"
#include "co/nodeobjs.h"
#include "co/workqueue.h"

/* Probe pods (label confidential.cypherpunk.io/probe=true): what the probe reported. */
typedef struct co_probe_pod_s {
  co_obj_t meta;
  char *node;    /* spec.nodeName */
  char *class;   /* annotation probe-class */
  int finished;  /* the container terminated */
  int exit_code; /* when finished */
  char *message; /* terminated message (the kernel), or NULL */
  char *reason;  /* terminated or waiting reason, or the phase; NULL when none */
} co_probe_pod_t;

extern const co_resource_type_t co_type_probe_pods;

/* Compares the kernel a probe reported (its termination message) with the host's. Returns 1
 * when the sandbox runs its own kernel; writes the verdict to msg either way. */
int co_probe_verdict(const co_probe_pod_t *p, const char *host_kernel, char *kernel,
                     size_t kernel_len, char *msg, size_t msg_len);

typedef struct co_nodeprep_opts_s {
  co_nodeobj_opts_t objs;  /* namespace, images, classes (borrowed) */
  long probe_interval_s;   /* re-probe every this long (and after every restart) */
  long probe_timeout_s;    /* a probe pod that has not finished by then fails */
  long restart_timeout_s;  /* a restart not completed by then is reported */
  long eviction_timeout_s; /* eviction blocked for this long is reported as timed out */
  long resync_s;           /* re-apply the objects (drift repair) and re-check nodes */
} co_nodeprep_opts_t;

typedef struct co_nodeprep_stats_s {
  uint64_t passes, applies, node_writes, grants, probes, evictions, write_errors, events;
} co_nodeprep_stats_t;

typedef struct co_nodeprep_s co_nodeprep_t;
typedef void (*co_nodeprep_close_cb)(co_nodeprep_t *np);

struct co__np_node;
struct co__np_op;

struct co_nodeprep_s {
  /* public */
  void *data;
  /* read-only */
  co_nodeprep_stats_t stats;
  /* private */
  co_client_t *client;
  co_informer_t *nodes, *pods, *probes;
  co_nodeprep_opts_t opts;
  co_wq_t queue;
  uv_timer_t resync;
  struct co__np_node *state; /* per node name */
  struct co__np_op *ops;     /* requests in flight */
  uint64_t node_serial;      /* the last serial given to a node's state */
  int classes_swept;         /* the RuntimeClasses of runtimes no longer enabled are gone */
  int kata_ds_removed;       /* no Kata class enabled: the kata-deploy DaemonSet is gone */
  int kata_nodes;            /* nodes with prepared=true or kata-deploy's label at the last pass */
  int in_flight;
  int pass_pending; /* writes of the current "nodes" or "apply" pass not yet completed */
  int apply_pending;
  int pass_failed, apply_failed;
  char *instance;
  int started;
  int closing;
  int handles;
  co_nodeprep_close_cb close_cb;
};

/* Everything borrowed (the informers, the option strings) must outlive np. */
int co_nodeprep_init(uv_loop_t *loop, co_nodeprep_t *np, co_client_t *client, co_informer_t *nodes,
                     co_informer_t *pods, co_informer_t *probes, const co_nodeprep_opts_t *opts);
/* Starts processing (leader, caches synced). */
int co_nodeprep_start(co_nodeprep_t *np);
/* A node, pod or probe pod changed: queue a pass (no-op before start). */
void co_nodeprep_changed(co_nodeprep_t *np);
/* A Node was deleted (informer delete): drops what the controller kept about it (restart,
 * probes, eviction, condition), so that a node re-created under that name starts from scratch,
 * and queues a pass (the next restart request can be granted; its probe pods are deleted).
 * name is borrowed. */
void co_nodeprep_node_deleted(co_nodeprep_t *np, const char *name);
/* Stops, cancels the requests in flight, frees everything; cb fires once, later. */
void co_nodeprep_close(co_nodeprep_t *np, co_nodeprep_close_cb cb);

#endif
