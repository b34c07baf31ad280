/* Workload reconciler: rewrites opted-in Deployments and StatefulSets to their sandbox
 * RuntimeClass, follows their rollouts and reports on the ConfidentialWorkloads.
 *
 * Keys on one work queue: "d:ns/name" (Deployment), "s:ns/name" (StatefulSet), "c:ns/name"
 * (ConfidentialWorkload). Workload keys decide (co_decide) and write at most one minimal merge
 * patch; CR keys keep the finalizer and write the status when it changed. Everything is read
 * from the informer caches: no GET. A workload is written at most once per generation: after
 * a PATCH, nothing more is written for it until the cache has caught up with the generation
 * the PATCH produced. */
#ifndef CO_RECONCILE_H
#define CO_RECONCILE_H

#include <stdint.h>
#include <uv.h>

#include "co/client.h"
#include "co/decide.h"
#include "co/informer.h"
#include "co/workqueue.h"

typedef struct co_reconciler_s co_reconciler_t;
typedef void (*co_reconciler_close_cb)(co_reconciler_t *rec);

typedef struct co_reconciler_stats_s {
  uint64_t reconciles;
  uint64_t patches; /* workload writes (set or restore) */
  uint64_t restores;
  uint64_t status_writes;
  uint64_t finalizer_writes;
  uint64_t write_errors;
  uint64_t events;
  uint64_t events_dropped; /* dropped: too many already waiting for the event bucket */
} co_reconciler_stats_t;

struct co__rec_write;
struct co__rec_status;
struct co__rec_op;

struct co_reconciler_s {
  /* public */
  void *data;
  /* read-only */
  co_reconciler_stats_t stats;
  /* private */
  co_client_t *client;
  co_informer_t *deployments, *statefulsets, *namespaces, *pods, *cwls, *nodes;
  co_policy_t policy;
  co_wq_t queue;
  struct co__rec_write *writes;    /* per workload key: last write, failure tracking */
  struct co__rec_status *statuses; /* per CR key: last status written */
  char *instance;                  /* reportingInstance of events */
  struct co__rec_op *ops;          /* requests started and not completed */
  int in_flight;
  int events_pending; /* Event POSTs started and not answered */
  /* The initial pass (co_reconciler_start): which workload informer (0 Deployments,
   * 1 StatefulSets, 2 done), the seq it ends at, and the last object it queued. */
  int pass_kind;
  uint64_t pass_end, pass_seq;
  char pass_key[512];
  int closing;
  co_reconciler_close_cb close_cb;
};

/* Everything borrowed: the informers and the policy must outlive the reconciler. The queue is
 * created but not started. */
int co_reconciler_init(uv_loop_t *loop, co_reconciler_t *rec, co_client_t *client,
                       co_informer_t *deployments, co_informer_t *statefulsets,
                       co_informer_t *namespaces, co_informer_t *pods, co_informer_t *cwls,
                       co_informer_t *nodes, const co_policy_t *policy);

/* Starts processing (call once every cache has synced): queues every CR, and every workload
 * in batches as the queue drains (the initial pass). */
int co_reconciler_start(co_reconciler_t *rec);

/* Informer notifications: queue the keys the change affects. */
void co_reconciler_workload_changed(co_reconciler_t *rec, char kind, const co_obj_t *w);
void co_reconciler_cr_changed(co_reconciler_t *rec, const co_obj_t *cr);
void co_reconciler_namespace_changed(co_reconciler_t *rec, const co_obj_t *ns);
void co_reconciler_pod_changed(co_reconciler_t *rec, const co_obj_t *pod);
void co_reconciler_nodes_changed(co_reconciler_t *rec);

/* Decides for workload w with the inputs every reconcile uses: the policy, the labels of its
 * namespace from the namespace cache and (kind 'd' Deployment, 's' StatefulSet) the
 * ConfidentialWorkloads of the CR cache that select it; kind 'p' (a Pod, which no CR selects)
 * gets no CRs. Reads the caches only, so the admission webhook decides exactly as the
 * reconciler would. w is borrowed. Returns what co_decide returns. */
int co_reconciler_decide(co_reconciler_t *rec, char kind, const co_workload_t *w,
                         co_decision_t *out);

/* 1 when d (SET) names the class recorded in CO_ANN_REVERTED on w: onFailure: Revert took it
 * away and it is not written again until someone removes the record. */
int co_reconciler_revert_holds(const co_workload_t *w, const co_decision_t *d);

/* Resolves "auto" from the node cache: the strongest class a ready node offers. */
const char *co_reconciler_resolve_auto(void *rec);

/* Calls cb(data, kind, phase) for every opted-in workload (kind "Deployment" or
 * "StatefulSet", phase as in the CR status: Pending, Patched, RollingOut, Sandboxed, Failed,
 * Conflict, Denied), computed from the caches as the CR status is. Strings are static. */
typedef void (*co_reconciler_phase_cb)(void *data, const char *kind, const char *phase);
void co_reconciler_count_phases(co_reconciler_t *rec, co_reconciler_phase_cb cb, void *data);

/* Stops the queue, waits for the requests in flight, frees everything; cb fires once. */
void co_reconciler_close(co_reconciler_t *rec, co_reconciler_close_cb cb);

#endif
