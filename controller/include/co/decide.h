/* The opt-in decision: which sandbox RuntimeClass a Deployment or StatefulSet must run with.
 * One pure function shared by the controller and the admission webhook, so both always
 * agree. No I/O, no allocation; table-tested (test/unit/test_decide.c).
 *
 * Rules, in order:
 * - Protected namespaces (kube-system, kube-public, kube-node-lease, the operator's own, and a
 *   missing namespace) are never changed: NONE, whatever the CRs, annotations or env vars say,
 *   even with a recorded original (the operator never wrote there).
 * - Sources: CRs > annotation CO_ANN_RUNTIME > opt-in env vars. The first present source
 *   decides; lower ones are not consulted. CRs count in any other namespace whatever the
 *   preset (explicit request by someone with rights there); annotation and env only where
 *   co_decide_namespace_allowed() says so.
 * - Values (annotation, env): "", "true", "yes", "on", "1" (case-insensitive) = the default
 *   class; "false", "no", "off", "0" = not opted in; "auto" = resolve_auto; anything else is
 *   a class name. A CR's class is a class name, "auto", or empty/NULL = the default class.
 *   An annotation "false" is an explicit opt-out that env vars cannot override.
 * - Env vars: every opt-in variable counts ("any container"); an opt-out value on one does not
 *   cancel an opt-in on another; opt-ins resolving to different classes -> DENIED
 *   ConflictingOptIn. (Only the first occurrence of each name is visible: see objects.h.)
 * - Only allow-listed classes are written, never "runc" or "auto" even if listed. A request
 *   for another class -> DENIED ClassNotAllowed; the default class outside the allow-list ->
 *   DENIED ClassNotAllowed (misconfiguration); "auto" with no ready class -> DENIED
 *   NoReadyRuntime. DENIED and CONFLICT write nothing, so a class in force stays (fail closed).
 * - "auto" is satisfied by an allowed class already in force (no rollout per readiness flap);
 *   otherwise resolve_auto is called, at most once per decision.
 * - CRs: each must resolve to an allowed class (else DENIED naming it, checked before any
 *   disagreement); different resolved classes -> CONFLICT naming two CR keys; all agreeing ->
 *   source CR, cr_key = the first.
 * - Class in force (current): equal to the desired class -> NONE AlreadySandboxed; none, or
 *   recorded original present (ours, or an owner's drift rewrite) -> SET; someone else's class
 *   -> SET if the source is a CR (it takes over; the caller records current as original),
 *   else FOREIGN (left alone).
 * - Not opted in (no source, opt-out value, namespace not allowed) with a recorded original ->
 *   RESTORE to it (NULL for ""). Exception: if the class in force is not one the operator
 *   writes (not allowed) and differs from the original, the owner changed it since our
 *   rewrite; their choice stays (RESTORE with class = current) and only the record goes.
 *   Limit: an owner who changed it to another allowed class is indistinguishable from us.
 * - Hardening: only a CR asks for it (spec.hardening); the decision carries the deciding CR's
 *   (the first of agreeing ones) when it sets or keeps the class. Pods are never selected by
 *   CRs, so they never get any.
 *
 * Reasons: OptedInByCR, OptedInByAnnotation, OptedInByEnv (SET), AlreadySandboxed (NONE with a
 * source), NotOptedIn, NamespaceNotAllowed (NONE, or RESTORE when the namespace stopped
 * counting), OptInRemoved (RESTORE), ClassNotAllowed, NoReadyRuntime, ConflictingOptIn
 * (DENIED), Conflict (CONFLICT), ForeignRuntimeClass (FOREIGN), InvalidInput (CO_EINVAL). */
#ifndef CO_DECIDE_H
#define CO_DECIDE_H

#include <stddef.h>

#include "co/objects.h"

#define CO_ANN_RUNTIME CO_DOMAIN "/runtime"
#define CO_ANN_ORIGINAL CO_DOMAIN "/original-runtime-class"
/* Set by onFailure: Revert to the class that failed; that class is not written again while
 * the annotation names it (remove it, or change the CR's class, to try again). */
#define CO_ANN_REVERTED CO_DOMAIN "/reverted-runtime-class"
/* What spec.hardening changed, as JSON, so that a restore puts it back exactly. */
#define CO_ANN_HARDENING CO_DOMAIN "/original-hardening"
#define CO_CLASS_AUTO "auto"

typedef enum {
  CO_NS_POLICY_DEFAULT = 0, /* every namespace but kube-system, kube-public, kube-node-lease and
                               the operator's own */
  CO_NS_POLICY_AKASH        /* namespaces labelled akash.network=true that also carry the
                               akash.network/namespace label */
} co_ns_policy_t;

/* Cluster-wide settings (flags / ConfigMap). Everything borrowed. */
typedef struct co_policy_s {
  const char *const *allowed; /* sandbox classes that may ever be written */
  size_t n_allowed;
  const char *default_class; /* class for an empty/"true" opt-in (must be allowed) */
  co_ns_policy_t ns_policy;
  const char *operator_namespace; /* never touched (NULL or "": "confidential-system") */
  /* Resolves "auto" to the strongest class a ready node offers (TEE > VM > gVisor), or NULL
   * when no node is ready for any allowed class. May be NULL: "auto" then fails. */
  const char *(*resolve_auto)(void *ud);
  void *resolve_ud;
} co_policy_t;

/* spec.hardening of a ConfidentialWorkload: what co_wplan_build (co/wplan.h) changes in the
 * pod template besides the class. */
typedef struct co_hardening_s {
  int memory_backed_empty_dirs;     /* emptyDirs become medium: Memory */
  const char *empty_dir_size_limit; /* ... with this sizeLimit when they have none (borrowed) */
  int automount_sa_token;           /* 0: automountServiceAccountToken false; -1/1: keep */
} co_hardening_t;

/* A ConfidentialWorkload that selects the workload (selector or targetRefs matched by the
 * caller). Borrowed. */
typedef struct co_decide_cr_s {
  const char *key;                 /* "namespace/name" */
  const char *class;               /* spec.runtimeClassName as written ("auto" allowed) */
  const co_hardening_t *hardening; /* NULL when it asks for no hardening */
} co_decide_cr_t;

typedef struct co_decide_input_s {
  const co_workload_t *workload; /* borrowed projection */
  const co_kv_t *ns_labels;      /* labels of the workload's namespace; NULL if unknown */
  const co_decide_cr_t *crs;     /* CRs selecting the workload (being deleted ones excluded) */
  size_t n_crs;
} co_decide_input_t;

typedef enum {
  CO_ACTION_NONE = 0, /* nothing to write (not opted in, or already right) */
  CO_ACTION_SET,      /* write runtimeClassName = class; record the current class ("" for
                         none) in CO_ANN_ORIGINAL unless that annotation already exists */
  CO_ACTION_RESTORE,  /* opt-in gone: runtimeClassName = class (NULL = remove; skip if
                         already so) and remove CO_ANN_ORIGINAL */
  CO_ACTION_CONFLICT, /* CRs disagree: write nothing, report Conflict on each */
  CO_ACTION_DENIED,   /* opt-in asks for something not allowed: write nothing, report */
  CO_ACTION_FOREIGN   /* opted in by env/annotation, but someone else set another class:
                         leave it, report */
} co_action_t;

typedef enum { CO_SOURCE_NONE = 0, CO_SOURCE_CR, CO_SOURCE_ANNOTATION, CO_SOURCE_ENV } co_source_t;

typedef struct co_decision_s {
  co_action_t action;
  co_source_t source;
  const char *class;  /* SET: the class to write (always allowed); NONE with a source: the
                         class in force; RESTORE: the class to leave in force (the original,
                         or the owner's newer one) or NULL; FOREIGN: the foreign class in
                         force; otherwise NULL. Borrowed from the inputs, the policy or
                         resolve_auto, valid as long as they are. */
  const char *cr_key; /* source CR: the deciding CR (DENIED: the offending one; CONFLICT: the
                         first; the message names both) */
  const char *reason; /* CamelCase reason for status and events (static) */
  char message[256];  /* human-readable explanation */
  /* SET, or NONE with a class in force, by CRs: the deciding CR's (cr_key) spec.hardening,
   * copied (its size limit stays borrowed); harden 0 otherwise. */
  int harden;
  co_hardening_t hardening;
} co_decision_t;

/* Decides. Never returns a class outside policy->allowed for SET. Returns 0, or CO_EINVAL
 * for missing inputs (policy, in, in->workload, out; crs NULL with n_crs > 0; allowed NULL
 * with n_allowed > 0); out, when given, is then zeroed with reason InvalidInput. */
int co_decide(const co_policy_t *policy, const co_decide_input_t *in, co_decision_t *out);

/* 1 when env/annotation opt-ins count in this namespace under the policy (never in a
 * protected namespace; AKASH: akash.network=true and akash.network/namespace present). */
int co_decide_namespace_allowed(const co_policy_t *policy, const char *ns,
                                const co_kv_t *ns_labels);

/* 1 when class is in policy->allowed; never for NULL, "", "runc" or "auto". */
int co_decide_class_allowed(const co_policy_t *policy, const char *class);

const char *co_action_name(co_action_t a);
const char *co_source_name(co_source_t s);

#endif
