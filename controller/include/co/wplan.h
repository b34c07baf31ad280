/* The write a decision makes to a Deployment or StatefulSet, computed once from the decision
 * and the workload's projection, then rendered either as the reconciler's strategic merge
 * patch or as the admission webhook's JSONPatch. Both therefore write exactly the same
 * fields with the same values, so an object the webhook admitted is one the reconciler
 * leaves alone (no second rollout), and the records the webhook sets are the ones the
 * reconciler restores from.
 *
 * What is written:
 * - SET: runtimeClassName = class, CO_ANN_ORIGINAL = the class in force ("" for none) when
 *   absent; nothing at all while onFailure: Revert holds that class back
 *   (co_reconciler_revert_holds).
 * - SET, or NONE by a CR with the class in force, when the decision carries spec.hardening:
 *   every emptyDir of the template becomes medium: Memory, and one without a sizeLimit gets
 *   the CR's (memory-backed scratch counts against the pod's memory: always bounded);
 *   automountServiceAccountToken becomes false when the CR says false. What this replaces is
 *   recorded in CO_ANN_HARDENING (JSON: {"emptyDirs":{"name":"medium|sizeLimit"},
 *   "automountServiceAccountToken":-1|0|1}) when not recorded yet, and extended with an
 *   emptyDir the record lacks (one the owner added later). A NONE decision writes only when
 *   some hardening is missing, and then also records CO_ANN_ORIGINAL when absent, so that
 *   removing the CR restores.
 * - RESTORE: runtimeClassName = the class the decision leaves (removed for none) when it
 *   differs, CO_ANN_ORIGINAL removed, and every recorded emptyDir still there and the
 *   automount setting put back as recorded, CO_ANN_HARDENING removed.
 * - Anything else: nothing.
 * Pure: no I/O. */
#ifndef CO_WPLAN_H
#define CO_WPLAN_H

#include <cjson/cJSON.h>

#include "co/buf.h"
#include "co/decide.h"
#include "co/objects.h"

typedef enum { CO_FIELD_KEEP = 0, CO_FIELD_SET, CO_FIELD_REMOVE } co_field_op_t;

/* One emptyDir volume's change (fields of .emptyDir). */
typedef struct co_wplan_vol_s {
  char name[254]; /* the volume's name (a DNS label, at most 253 bytes) */
  co_field_op_t medium_op;
  char medium[160]; /* CO_FIELD_SET: the medium */
  co_field_op_t size_op;
  char size[64]; /* CO_FIELD_SET: the sizeLimit */
} co_wplan_vol_t;

typedef struct co_wplan_s {
  int write;          /* 1 when anything below changes */
  int restore;        /* a RESTORE */
  const char *reason; /* for events: the decision's, or "Hardened" (static or borrowed) */
  co_field_op_t class_op;
  const char *class;           /* CO_FIELD_SET: the runtimeClassName (borrowed from d) */
  const char *record_original; /* CO_ANN_ORIGINAL to add with this value (borrowed), or NULL */
  int drop_original;           /* remove CO_ANN_ORIGINAL */
  char *record_hardening;      /* CO_ANN_HARDENING to add with this JSON (owned), or NULL */
  int drop_hardening;          /* remove CO_ANN_HARDENING */
  co_wplan_vol_t *vols;        /* owned, n_vols entries, in template order */
  size_t n_vols;
  co_field_op_t automount_op;
  int automount; /* CO_FIELD_SET: automountServiceAccountToken */
} co_wplan_t;

/* Computes the write for decision d on w (both borrowed; the plan borrows strings from both,
 * so it must not outlive them). Always fills *out (free it with co_wplan_free); returns 0 or
 * CO_EINVAL (NULL argument). */
int co_wplan_build(const co_decision_t *d, const co_workload_t *w, co_wplan_t *out);

/* 1 when the spec.hardening d carries is not (fully) in force on w: the reconciler reports
 * the workload Pending until it is. */
int co_wplan_hardening_missing(const co_decision_t *d, const co_workload_t *w);

void co_wplan_free(co_wplan_t *p);

/* Renders the plan into a strategic merge patch: annotations into ann (null removes), the
 * pod template's fields into tspec (volumes merge by name). */
void co_wplan_merge(const co_wplan_t *p, cJSON *ann, cJSON *tspec);

/* Renders the plan as JSONPatch operations appended to ops, against obj: the Deployment or
 * StatefulSet the API server sent, which the projection w was decoded from (volume indexes
 * and whether the annotation map exists come from it). Removes only what obj has. */
void co_wplan_jsonpatch(const co_wplan_t *p, const cJSON *obj, cJSON *ops);

/* Appends one JSONPatch operation {op, path[, value]} to ops; takes ownership of value. */
void co_jsonpatch_op(cJSON *ops, const char *op, const char *path, cJSON *value);

/* Appends s to b as a JSON pointer reference token (RFC 6901: '~' -> "~0", '/' -> "~1"). */
int co_json_pointer_append(co_buf_t *b, const char *s);

#endif
