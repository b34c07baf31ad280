/* The mutating admission webhook's logic: an admission.k8s.io/v1 AdmissionReview in, the
 * AdmissionReview response out. No I/O: the HTTP server hands the request body over and sends
 * back what this returns.
 *
 * Deployments and StatefulSets (CREATE, UPDATE) are decoded into the same projection the
 * informers cache (co_type_deployments.decode) and decided by the same function as the
 * reconciler (the decide callback; in the controller co_reconciler_decide, which gathers the
 * namespace labels and the selecting ConfidentialWorkloads from the controller's caches). The
 * decision becomes the write the reconciler would make (co_wplan_build, co/wplan.h: one
 * plan, rendered here as JSONPatch and by the reconciler as a merge patch):
 *   SET     -> spec.template.spec.runtimeClassName = class, and the original-class
 *              annotation when absent (not when onFailure: Revert took that class away);
 *   SET or NONE by a CR asking for spec.hardening -> emptyDirs medium: Memory with a size
 *              limit, automountServiceAccountToken false, and the record of what they
 *              replaced, so the admitted object is already the one the reconciler would
 *              write (no second rollout) and deleting the CR restores it exactly;
 *   RESTORE -> the class the decision leaves, the original-class annotation removed, and the
 *              recorded hardening put back;
 *   others  -> admitted unchanged, with a warning for DENIED, CONFLICT and FOREIGN.
 *
 * Pods (CREATE) are decided on the pod itself as a template (its annotations, its env vars,
 * its runtimeClassName; no CR selects a pod). SET sets spec.runtimeClassName and nothing else:
 * spec.hardening comes only from a CR, which never selects a Pod, and a Pod's volumes cannot
 * be changed after creation, so hardening there could never be reverted with its CR. Pods of
 * a hardened Deployment or StatefulSet inherit it from their template. A pod that
 * stays without an allowed sandbox class although it is opted in (DENIED: class not
 * allowed, conflicting env vars; FOREIGN: another class set; CONFLICT) is denied when
 * fail_closed is set, else admitted with a warning. A pod already carrying an allowed class
 * is always admitted unchanged, and a pod is never un-sandboxed (RESTORE admits unchanged).
 *
 * Anything else (other kinds and operations, subresources) is admitted unchanged. */
#ifndef CO_ADMISSION_H
#define CO_ADMISSION_H

#include <stddef.h>
#include <stdint.h>

#include "co/decide.h"
#include "co/objects.h"

/* Largest AdmissionReview accepted (the API server sends object and oldObject, each up to
 * its 3 MiB request limit in the worst case; etcd keeps objects under 1.5 MiB). */
#define CO_ADMISSION_MAX_BODY (7u * 1024 * 1024)

/* Decides for w (kind 'd' Deployment, 's' StatefulSet, 'p' Pod); w is borrowed for the call.
 * Returns what co_decide returns. */
typedef int (*co_admission_decide_fn)(void *ud, char kind, const co_workload_t *w,
                                      co_decision_t *out);

typedef struct co_admission_stats_s {
  uint64_t reviews;   /* well-formed reviews answered */
  uint64_t mutated;   /* answered with a patch */
  uint64_t denied;    /* pods denied (fail closed) */
  uint64_t malformed; /* bodies refused (HTTP 400) */
} co_admission_stats_t;

typedef struct co_admission_s {
  /* public */
  co_admission_decide_fn decide;
  void *decide_ud;
  const co_policy_t *policy; /* borrowed: the allow-list for pods */
  int fail_closed;           /* deny opted-in pods that would run without a sandbox class */
  /* read-only */
  co_admission_stats_t stats;
} co_admission_t;

/* Answers one AdmissionReview (body: len bytes, need not be NUL-terminated).
 * Returns 0 with *out (owned, co_free; NUL-terminated, *out_len bytes) the AdmissionReview to
 * send with HTTP 200 — allowed, patched or denied. Returns CO_ETOOBIG (len past
 * CO_ADMISSION_MAX_BODY), CO_EPARSE (not JSON) or CO_EINVAL (not a v1 AdmissionReview request,
 * no uid, an object that cannot be decoded) with a message for the client in err (always
 * NUL-terminated when errlen > 0) and *out NULL: answer HTTP 400 with it. */
int co_admission_review(co_admission_t *a, const char *body, size_t len, char **out,
                        size_t *out_len, char *err, size_t errlen);

#endif
