/* ConfidentialWorkload (confidential.cypherpunk.io/v1alpha1): the informer projection of the
 * custom resource, its checks beyond the CRD schema, and LabelSelector matching.
 *
 * The schema in crd/confidentialworkloads.yaml rejects malformed specs at the API server; the
 * decoder still assumes nothing about its input (an object written before the schema existed,
 * a different CRD version, a fuzzer). It fails only on wrong JSON types and on lists past the
 * bounds below; missing or unknown values decode and are reported by co_cwl_validate, so the
 * controller can say what is wrong in the CR's status instead of skipping it silently. */
#ifndef CO_CWL_H
#define CO_CWL_H

#include <stddef.h>
#include <stdint.h>

#include "co/informer.h"
#include "co/objects.h"

#define CO_CWL_GROUP "confidential.cypherpunk.io"
#define CO_CWL_VERSION "v1alpha1"
#define CO_CWL_FINALIZER CO_DOMAIN "/finalizer"

/* Decode bounds (the schema has the same maxItems/maxProperties); beyond → CO_ETOOBIG. */
#define CO_CWL_MAX_TARGET_REFS 100
#define CO_CWL_MAX_EXPRESSIONS 64
#define CO_CWL_MAX_VALUES 64
#define CO_CWL_MAX_MATCH_LABELS 64

/* Schema defaults, applied by the decoder too when a field is absent. */
#define CO_CWL_DEFAULT_REVERT_AFTER_S 600
#define CO_CWL_MIN_REVERT_AFTER_S 60
#define CO_CWL_MAX_REVERT_AFTER_S 86400
#define CO_CWL_DEFAULT_EMPTYDIR_LIMIT "256Mi"

typedef enum {
  CO_SEL_OP_INVALID = 0, /* not one of the four below (reported by co_cwl_validate) */
  CO_SEL_OP_IN,
  CO_SEL_OP_NOT_IN,
  CO_SEL_OP_EXISTS,
  CO_SEL_OP_DOES_NOT_EXIST
} co_sel_op_t;

/* One matchExpressions requirement. */
typedef struct co_sel_expr_s {
  char *key; /* owned, never NULL after a successful decode ("" if absent) */
  co_sel_op_t op;
  char **values; /* owned array of owned strings, n_values entries (NULL when 0) */
  uint32_t n_values;
} co_sel_expr_t;

/* One spec.targetRefs entry. kind is kept as written ("Deployment", "StatefulSet", or anything
 * else, which co_cwl_validate reports). */
typedef struct co_target_ref_s {
  char *kind; /* owned, never NULL after a successful decode ("" if absent) */
  char *name; /* owned, idem */
} co_target_ref_t;

typedef enum {
  CO_ON_FAILURE_HOLD = 0, /* default: stay sandboxed, report Degraded (fail closed) */
  CO_ON_FAILURE_REVERT,   /* restore the recorded class after revert_after_s of failure */
  CO_ON_FAILURE_INVALID   /* unknown value (reported by co_cwl_validate; treated as Hold) */
} co_on_failure_t;

/* Cached projection of a ConfidentialWorkload. Everything is owned by the object and freed by
 * co_type_cwl.release. */
typedef struct co_cwl_s {
  co_obj_t meta;
  char *runtime_class; /* spec.runtimeClassName as written ("auto" allowed), or NULL */

  /* spec.selector */
  int has_selector;           /* spec.selector present (possibly empty) */
  int selector_bad_label_key; /* a matchLabels key is empty or contains '=': no label can
                                 carry it, so the selector never matches (such pairs are
                                 not stored in match_labels) */
  co_kv_t match_labels;       /* matchLabels as "k=v" pairs */
  co_sel_expr_t *exprs;       /* owned array, n_exprs entries (NULL when 0) */
  uint32_t n_exprs;

  co_target_ref_t *target_refs; /* owned array, n_target_refs entries (NULL when 0) */
  uint32_t n_target_refs;

  co_on_failure_t on_failure;
  int64_t revert_after_s; /* default 600; out-of-range values are kept for validate */

  /* spec.hardening */
  int has_hardening;
  int memory_backed_empty_dirs; /* default 0 */
  char *empty_dir_size_limit;   /* owned, never NULL after decode: default "256Mi"; an
                                   integer number of bytes is kept as its decimal string */
  int automount_sa_token;       /* -1 unset (keep the workload's), 0 false, 1 true */

  int has_finalizer;                  /* metadata.finalizers holds CO_CWL_FINALIZER */
  int finalizer_index;                /* its position in metadata.finalizers */
  uint32_t n_finalizers;              /* entries in metadata.finalizers */
  int64_t status_observed_generation; /* status.observedGeneration, 0 if absent */
} co_cwl_t;

/* Informer type: name "confidentialworkloads",
 * path "/apis/confidential.cypherpunk.io/v1alpha1/confidentialworkloads". decode returns 0,
 * CO_EPARSE (a field of the wrong JSON type) or CO_ETOOBIG (a list past the bounds above). */
extern const co_resource_type_t co_type_cwl;

/* Checks what the schema cannot (or what slipped past it): the class is missing, or is neither
 * "auto" nor in allowed (the classes enabled in this cluster; borrowed, n_allowed entries);
 * neither selector nor targetRefs; an empty selector (it would select every workload of the
 * namespace); requirements that can never match (In/NotIn without values, Exists/DoesNotExist
 * with values, unknown operator, empty key, a matchLabels key no label can carry); targetRefs
 * with an unknown kind, an empty name or duplicates; an unknown onFailure; revertAfterSeconds
 * outside 60..86400; a malformed emptyDirSizeLimit.
 * Returns 0, or CO_EINVAL with every problem found written to msg ("; "-separated, truncated
 * to msglen, always NUL-terminated when msglen > 0; msg may be NULL when msglen is 0). */
int co_cwl_validate(const co_cwl_t *cr, const char *const *allowed, size_t n_allowed, char *msg,
                    size_t msglen);

/* Kubernetes LabelSelector semantics (metav1.LabelSelectorAsSelector) over labels (borrowed;
 * NULL means no labels): every matchLabels pair AND every requirement must hold. In: the key
 * is present with one of the values; NotIn: the key is absent or its value is none of the
 * values; Exists: present; DoesNotExist: absent. Like Kubernetes, an empty selector
 * (no matchLabels, no matchExpressions) matches everything and an invalid one (In/NotIn without
 * values, Exists/DoesNotExist with values, unknown operator, bad matchLabels key) matches
 * nothing. Returns 1 or 0; 0 when cr has no selector. */
int co_selector_matches(const co_cwl_t *cr, const co_kv_t *labels);

/* 1 when cr is listed in spec.targetRefs with this kind ("Deployment"/"StatefulSet") and name. */
int co_cwl_refs(const co_cwl_t *cr, const char *kind, const char *name);

/* 1 when cr selects the workload kind ns/name carrying labels (borrowed, may be NULL): the
 * workload is in the CR's namespace AND (it is in targetRefs OR the selector matches it).
 * Unlike co_selector_matches, an empty selector selects nothing here (the schema and
 * co_cwl_validate reject it; the operator never takes over a whole namespace by accident).
 * Callers also skip CRs that fail co_cwl_validate; meta.deleting is not looked at here. */
int co_cwl_targets(const co_cwl_t *cr, const char *kind, const char *ns, const char *name,
                   const co_kv_t *labels);

/* Static names: "In", "NotIn", "Exists", "DoesNotExist" (or "Invalid"); "Hold", "Revert". */
const char *co_sel_op_name(co_sel_op_t op);
const char *co_on_failure_name(co_on_failure_t f);

#endif
