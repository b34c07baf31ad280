/* The opt-in decision: one table of cases covering every rule, exhaustive invariants over
 * generated inputs, and a few Deployments decoded from JSON (env var on a non-first
 * container and on an init container, as the projection really delivers them). */
#include "co/decide.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "co/error.h"
#include "co_test.h"

/* ---- policies ---- */

typedef struct {
  const char *ret;
  int calls;
} resolver_t;

static const char *resolve_fn(void *ud) {
  resolver_t *r = ud;
  r->calls++;
  return r->ret;
}

static resolver_t res_snp = {"kata-qemu-snp", 0};
static resolver_t res_none = {NULL, 0};
static resolver_t res_runc = {"runc", 0};

static const char *const allowed[] = {"kata-qemu", "kata-qemu-snp", "gvisor"};
static const char *const allowed_runc[] = {"kata-qemu", "runc"};
#define N_ALLOWED (sizeof(allowed) / sizeof(allowed[0]))

#define POLICY(def, nsp, opns, fn, ud)                                                      \
  {                                                                                         \
    .allowed = allowed, .n_allowed = N_ALLOWED, .default_class = (def), .ns_policy = (nsp), \
    .operator_namespace = (opns), .resolve_auto = (fn), .resolve_ud = (ud)                  \
  }
#define DEF CO_NS_POLICY_DEFAULT
#define OPNS "confidential-system"

static const co_policy_t pol_def = POLICY("kata-qemu", DEF, OPNS, resolve_fn, &res_snp);
static const co_policy_t pol_akash =
    POLICY("kata-qemu", CO_NS_POLICY_AKASH, OPNS, resolve_fn, &res_snp);
static const co_policy_t pol_noready = POLICY("kata-qemu", DEF, OPNS, resolve_fn, &res_none);
static const co_policy_t pol_noresolver = POLICY("kata-qemu", DEF, OPNS, NULL, NULL);
static const co_policy_t pol_autorunc = POLICY("kata-qemu", DEF, OPNS, resolve_fn, &res_runc);
static const co_policy_t pol_baddefault = POLICY("kata-clh", DEF, OPNS, resolve_fn, &res_snp);
static const co_policy_t pol_opns = POLICY("kata-qemu", DEF, "cc-op", resolve_fn, &res_snp);
static const co_policy_t pol_opnull = POLICY("kata-qemu", DEF, NULL, resolve_fn, &res_snp);
/* Misconfigured allow-list that lists runc and uses it as default: still never written. */
static const co_policy_t pol_runc = {.allowed = allowed_runc,
                                     .n_allowed = 2,
                                     .default_class = "runc",
                                     .ns_policy = CO_NS_POLICY_DEFAULT,
                                     .operator_namespace = "confidential-system"};

/* ---- fixtures ---- */

#define RT CO_ANN_RUNTIME "="
#define ORIG CO_ANN_ORIGINAL "="
#define AKASH_LABELS "akash.network=true|akash.network/namespace=tenant"

/* Builds a kv block from "k=v|k=v" into buf (NULL or "": empty). */
static void kv_build(char *buf, size_t size, const char *spec, co_kv_t *out) {
  memset(out, 0, sizeof(*out));
  if (spec == NULL || spec[0] == '\0')
    return;
  size_t len = strlen(spec) + 1;
  CO_CHECK(len < size);
  if (len >= size)
    return;
  memcpy(buf, spec, len);
  buf[len] = '\0'; /* the block's final empty string */
  for (size_t i = 0; i < len; i++) {
    if (buf[i] == '|')
      buf[i] = '\0';
  }
  out->data = buf;
}

#define MAX_CRS 4

typedef struct {
  co_workload_t w;
  co_kv_t ns_labels;
  co_decide_cr_t crs[MAX_CRS];
  size_t n_crs;
  char ann_buf[512], env_buf[512], lbl_buf[512], cr_buf[1024], rc_buf[128];
} fixture_t;

/* crs: "ns/name=class|..."; an entry without '=' has a NULL class. */
static void fixture(fixture_t *f, const char *ns, const char *labels, const char *rc,
                    const char *ann, const char *env, const char *crs) {
  memset(f, 0, sizeof(*f));
  f->w.meta.ns = ns;
  f->w.meta.name = "app";
  if (rc != NULL) {
    snprintf(f->rc_buf, sizeof(f->rc_buf), "%s", rc);
    f->w.runtime_class = f->rc_buf;
  }
  kv_build(f->ann_buf, sizeof(f->ann_buf), ann, &f->w.annotations);
  kv_build(f->env_buf, sizeof(f->env_buf), env, &f->w.template_env);
  kv_build(f->lbl_buf, sizeof(f->lbl_buf), labels, &f->ns_labels);
  if (crs == NULL)
    return;
  snprintf(f->cr_buf, sizeof(f->cr_buf), "%s", crs);
  char *p = f->cr_buf;
  while (p != NULL && *p != '\0' && f->n_crs < MAX_CRS) {
    char *bar = strchr(p, '|');
    if (bar != NULL)
      *bar = '\0';
    char *eq = strchr(p, '=');
    if (eq != NULL)
      *eq = '\0';
    f->crs[f->n_crs].key = p;
    f->crs[f->n_crs].class = eq != NULL ? eq + 1 : NULL;
    f->n_crs++;
    p = bar != NULL ? bar + 1 : NULL;
  }
}

static int run(const co_policy_t *p, fixture_t *f, int labels_known, co_decision_t *out) {
  co_decide_input_t in = {.workload = &f->w,
                          .ns_labels = labels_known ? &f->ns_labels : NULL,
                          .crs = f->n_crs ? f->crs : NULL,
                          .n_crs = f->n_crs};
  return co_decide(p, &in, out);
}

/* SET must name a class of the policy's list, never runc (rule 7). */
static int set_class_ok(const co_policy_t *p, const char *cls) {
  if (cls == NULL || strcmp(cls, "runc") == 0 || strcmp(cls, "auto") == 0)
    return 0;
  for (size_t i = 0; i < p->n_allowed; i++) {
    if (strcmp(p->allowed[i], cls) == 0)
      return 1;
  }
  return 0;
}

/* ---- the table ---- */

typedef struct {
  const char *name;
  const co_policy_t *policy;
  const char *ns;
  const char *labels; /* namespace labels; NULL: unknown */
  const char *rc;     /* runtimeClassName in force */
  const char *ann;
  const char *env;
  const char *crs;
  co_action_t action;
  co_source_t source;
  const char *cls;
  const char *reason;
  const char *cr_key;
  const char *msg; /* expected substring of the message, or NULL */
} row_t;

#define A(x) CO_ACTION_##x
#define S(x) CO_SOURCE_##x

static const row_t rows[] = {
    /* env var opt-in */
    {"nothing", &pol_def, "tenant", NULL, NULL, NULL, NULL, NULL, A(NONE), S(NONE), NULL,
     "NotOptedIn", NULL, "not opted in"},
    {"legacy PoC: KATA empty -> default kata-qemu", &pol_def, "tenant", NULL, NULL, NULL,
     "KATA=", NULL, A(SET), S(ENV), "kata-qemu", "OptedInByEnv", NULL, "env var KATA"},
    {"KATA=true", &pol_def, "tenant", NULL, NULL, NULL, "KATA=true", NULL, A(SET), S(ENV),
     "kata-qemu", "OptedInByEnv", NULL, "kata-qemu"},
    {"KATA=TRUE", &pol_def, "tenant", NULL, NULL, NULL, "KATA=TRUE", NULL, A(SET), S(ENV),
     "kata-qemu", "OptedInByEnv", NULL, NULL},
    {"KATA=1", &pol_def, "tenant", NULL, NULL, NULL, "KATA=1", NULL, A(SET), S(ENV), "kata-qemu",
     "OptedInByEnv", NULL, NULL},
    {"KATA=yes", &pol_def, "tenant", NULL, NULL, NULL, "KATA=yes", NULL, A(SET), S(ENV),
     "kata-qemu", "OptedInByEnv", NULL, NULL},
    {"CONFIDENTIAL_RUNTIME=gvisor", &pol_def, "tenant", NULL, NULL, NULL,
     "CONFIDENTIAL_RUNTIME=gvisor", NULL, A(SET), S(ENV), "gvisor", "OptedInByEnv", NULL,
     "CONFIDENTIAL_RUNTIME"},
    {"CONFIDENTIAL_RUNTIME=kata-qemu-snp", &pol_def, "tenant", NULL, NULL, NULL,
     "CONFIDENTIAL_RUNTIME=kata-qemu-snp", NULL, A(SET), S(ENV), "kata-qemu-snp", "OptedInByEnv",
     NULL, NULL},
    {"KATA=false", &pol_def, "tenant", NULL, NULL, NULL, "KATA=false", NULL, A(NONE), S(NONE), NULL,
     "NotOptedIn", NULL, "opts out"},
    {"KATA=0", &pol_def, "tenant", NULL, NULL, NULL, "KATA=0", NULL, A(NONE), S(NONE), NULL,
     "NotOptedIn", NULL, NULL},
    {"KATA=no", &pol_def, "tenant", NULL, NULL, NULL, "KATA=no", NULL, A(NONE), S(NONE), NULL,
     "NotOptedIn", NULL, NULL},
    {"KATA=runc is denied", &pol_def, "tenant", NULL, NULL, NULL, "KATA=runc", NULL, A(DENIED),
     S(ENV), NULL, "ClassNotAllowed", NULL,
     "runtime class \"runc\" is not an allowed sandbox class (allowed: kata-qemu, kata-qemu-snp, "
     "gvisor)"},
    {"class outside the allow-list is denied", &pol_def, "tenant", NULL, NULL, NULL,
     "CONFIDENTIAL_RUNTIME=kata-clh", NULL, A(DENIED), S(ENV), NULL, "ClassNotAllowed", NULL,
     "\"kata-clh\" is not an allowed"},
    {"env naming nvidia is denied", &pol_def, "tenant", NULL, NULL, NULL,
     "CONFIDENTIAL_RUNTIME=nvidia", NULL, A(DENIED), S(ENV), NULL, "ClassNotAllowed", NULL,
     "nvidia"},
    {"opt-out on one var does not cancel opt-in on another", &pol_def, "tenant", NULL, NULL, NULL,
     "KATA=false|CONFIDENTIAL_RUNTIME=gvisor", NULL, A(SET), S(ENV), "gvisor", "OptedInByEnv", NULL,
     NULL},
    {"two env vars agreeing", &pol_def, "tenant", NULL, NULL, NULL,
     "KATA=|CONFIDENTIAL_RUNTIME=kata-qemu", NULL, A(SET), S(ENV), "kata-qemu", "OptedInByEnv",
     NULL, NULL},
    {"two env vars disagreeing", &pol_def, "tenant", NULL, NULL, NULL,
     "KATA=|CONFIDENTIAL_RUNTIME=gvisor", NULL, A(DENIED), S(ENV), NULL, "ConflictingOptIn", NULL,
     "KATA and CONFIDENTIAL_RUNTIME"},
    {"KATA=auto resolves to kata-qemu-snp", &pol_def, "tenant", NULL, NULL, NULL, "KATA=auto", NULL,
     A(SET), S(ENV), "kata-qemu-snp", "OptedInByEnv", NULL, NULL},
    {"auto with no ready runtime", &pol_noready, "tenant", NULL, NULL, NULL, "KATA=auto", NULL,
     A(DENIED), S(ENV), NULL, "NoReadyRuntime", NULL, "no ready node"},
    {"auto without a resolver", &pol_noresolver, "tenant", NULL, NULL, NULL, "KATA=auto", NULL,
     A(DENIED), S(ENV), NULL, "NoReadyRuntime", NULL, NULL},
    {"auto resolving to runc is denied", &pol_autorunc, "tenant", NULL, NULL, NULL, "KATA=auto",
     NULL, A(DENIED), S(ENV), NULL, "ClassNotAllowed", NULL, "\"runc\""},
    {"auto kept: allowed class in force, no resolver call needed", &pol_noready, "tenant", NULL,
     "gvisor", ORIG, "KATA=auto", NULL, A(NONE), S(ENV), "gvisor", "AlreadySandboxed", NULL, NULL},
    {"auto with no ready runtime after drift: nothing written", &pol_noready, "tenant", NULL,
     "nvidia", ORIG "nvidia", "KATA=auto", NULL, A(DENIED), S(ENV), NULL, "NoReadyRuntime", NULL,
     NULL},
    {"default class not allowed (misconfiguration)", &pol_baddefault, "tenant", NULL, NULL, NULL,
     "KATA=", NULL, A(DENIED), S(ENV), NULL, "ClassNotAllowed", NULL, "configured default"},
    {"runc default, even allow-listed, is denied", &pol_runc, "tenant", NULL, NULL, NULL,
     "KATA=true", NULL, A(DENIED), S(ENV), NULL, "ClassNotAllowed", NULL, "\"runc\""},
    {"runc allow-listed but never written", &pol_runc, "tenant", NULL, NULL, NULL,
     "CONFIDENTIAL_RUNTIME=runc", NULL, A(DENIED), S(ENV), NULL, "ClassNotAllowed", NULL, NULL},
    {"misconfigured list still allows its sandbox class", &pol_runc, "tenant", NULL, NULL, NULL,
     "CONFIDENTIAL_RUNTIME=kata-qemu", NULL, A(SET), S(ENV), "kata-qemu", "OptedInByEnv", NULL,
     NULL},

    /* annotation */
    {"annotation class", &pol_def, "tenant", NULL, NULL, RT "gvisor", NULL, NULL, A(SET),
     S(ANNOTATION), "gvisor", "OptedInByAnnotation", NULL, CO_ANN_RUNTIME},
    {"annotation empty -> default", &pol_def, "tenant", NULL, NULL, RT, NULL, NULL, A(SET),
     S(ANNOTATION), "kata-qemu", "OptedInByAnnotation", NULL, NULL},
    {"annotation beats env", &pol_def, "tenant", NULL, NULL, RT "gvisor", "KATA=", NULL, A(SET),
     S(ANNOTATION), "gvisor", "OptedInByAnnotation", NULL, NULL},
    {"annotation false is an explicit opt-out over env", &pol_def, "tenant", NULL, NULL, RT "false",
     "KATA=", NULL, A(NONE), S(NONE), NULL, "NotOptedIn", NULL, "opts out"},
    {"annotation naming runc", &pol_def, "tenant", NULL, NULL, RT "runc", NULL, NULL, A(DENIED),
     S(ANNOTATION), NULL, "ClassNotAllowed", NULL, "not an allowed sandbox class"},
    {"annotation auto", &pol_def, "tenant", NULL, NULL, RT "auto", NULL, NULL, A(SET),
     S(ANNOTATION), "kata-qemu-snp", "OptedInByAnnotation", NULL, NULL},
    {"other project annotations are not an opt-in", &pol_def, "tenant", NULL, NULL,
     CO_DOMAIN "/hardening=true", NULL, NULL, A(NONE), S(NONE), NULL, "NotOptedIn", NULL, NULL},

    /* ConfidentialWorkloads */
    {"CR beats annotation", &pol_def, "tenant", NULL, NULL, RT "kata-qemu", NULL,
     "tenant/cw=gvisor", A(SET), S(CR), "gvisor", "OptedInByCR", "tenant/cw",
     "ConfidentialWorkload tenant/cw"},
    {"CR beats an annotation opt-out", &pol_def, "tenant", NULL, NULL, RT "false", "KATA=false",
     "tenant/cw=gvisor", A(SET), S(CR), "gvisor", "OptedInByCR", "tenant/cw", NULL},
    {"CR beats env", &pol_def, "tenant", NULL, NULL, NULL, "KATA=", "tenant/cw=kata-qemu-snp",
     A(SET), S(CR), "kata-qemu-snp", "OptedInByCR", "tenant/cw", NULL},
    {"two CRs, same class", &pol_def, "tenant", NULL, NULL, NULL, NULL,
     "tenant/a=gvisor|tenant/b=gvisor", A(SET), S(CR), "gvisor", "OptedInByCR", "tenant/a",
     "1 more"},
    {"two CRs, different classes", &pol_def, "tenant", NULL, NULL, NULL, NULL,
     "tenant/a=gvisor|tenant/b=kata-qemu", A(CONFLICT), S(CR), NULL, "Conflict", "tenant/a",
     "tenant/a (runtime class \"gvisor\") and tenant/b (runtime class \"kata-qemu\")"},
    {"three CRs, the third disagrees", &pol_def, "tenant", NULL, NULL, NULL, NULL,
     "tenant/a=gvisor|tenant/b=gvisor|tenant/c=kata-qemu", A(CONFLICT), S(CR), NULL, "Conflict",
     "tenant/a", "tenant/c"},
    {"CR auto agrees with CR naming the resolved class", &pol_def, "tenant", NULL, NULL, NULL, NULL,
     "tenant/a=auto|tenant/b=kata-qemu-snp", A(SET), S(CR), "kata-qemu-snp", "OptedInByCR",
     "tenant/a", NULL},
    {"CR without a class -> default", &pol_def, "tenant", NULL, NULL, NULL, NULL, "tenant/cw",
     A(SET), S(CR), "kata-qemu", "OptedInByCR", "tenant/cw", NULL},
    {"CR empty class -> default", &pol_def, "tenant", NULL, NULL, NULL, NULL, "tenant/cw=", A(SET),
     S(CR), "kata-qemu", "OptedInByCR", "tenant/cw", NULL},
    {"CR naming runc", &pol_def, "tenant", NULL, NULL, NULL, NULL, "tenant/cw=runc", A(DENIED),
     S(CR), NULL, "ClassNotAllowed", "tenant/cw", "ConfidentialWorkload tenant/cw"},
    {"CR 'true' is not a class", &pol_def, "tenant", NULL, NULL, NULL, NULL, "tenant/cw=true",
     A(DENIED), S(CR), NULL, "ClassNotAllowed", "tenant/cw", NULL},
    {"bad CR is reported before a disagreement", &pol_def, "tenant", NULL, NULL, NULL, NULL,
     "tenant/good=kata-qemu|tenant/bad=runc", A(DENIED), S(CR), NULL, "ClassNotAllowed",
     "tenant/bad", "tenant/bad"},
    {"CR auto with no ready runtime", &pol_noready, "tenant", NULL, NULL, NULL, NULL,
     "tenant/cw=auto", A(DENIED), S(CR), NULL, "NoReadyRuntime", "tenant/cw", NULL},
    {"CR in kube-system ignored", &pol_def, "kube-system", NULL, NULL, NULL, NULL,
     "kube-system/cw=gvisor", A(NONE), S(NONE), NULL, "NamespaceNotAllowed", NULL, "ignored"},
    {"CR in the operator namespace ignored", &pol_def, "confidential-system", NULL, NULL, NULL,
     NULL, "confidential-system/cw=gvisor", A(NONE), S(NONE), NULL, "NamespaceNotAllowed", NULL,
     NULL},
    {"CR in kube-node-lease ignored, record present: still untouched", &pol_def, "kube-node-lease",
     NULL, "kata-qemu", ORIG, NULL, "kube-node-lease/cw=gvisor", A(NONE), S(NONE), NULL,
     "NamespaceNotAllowed", NULL, NULL},
    {"CR counts under akash in a non-akash namespace", &pol_akash, "team-a", "team=a", NULL, NULL,
     NULL, "team-a/cw=gvisor", A(SET), S(CR), "gvisor", "OptedInByCR", "team-a/cw", NULL},
    {"CR counts under akash with unknown labels", &pol_akash, "team-a", NULL, NULL, NULL, NULL,
     "team-a/cw=gvisor", A(SET), S(CR), "gvisor", "OptedInByCR", "team-a/cw", NULL},

    /* namespace policy */
    {"default policy: kube-system", &pol_def, "kube-system", "", NULL, NULL, "KATA=", NULL, A(NONE),
     S(NONE), NULL, "NamespaceNotAllowed", NULL, "kube-system"},
    {"default policy: kube-public", &pol_def, "kube-public", "", NULL, RT "gvisor", NULL, NULL,
     A(NONE), S(NONE), NULL, "NamespaceNotAllowed", NULL, NULL},
    {"default policy: kube-node-lease", &pol_def, "kube-node-lease", "", NULL, NULL, "KATA=", NULL,
     A(NONE), S(NONE), NULL, "NamespaceNotAllowed", NULL, NULL},
    {"default policy: operator namespace", &pol_def, "confidential-system", "", NULL, NULL,
     "KATA=", NULL, A(NONE), S(NONE), NULL, "NamespaceNotAllowed", NULL, NULL},
    {"custom operator namespace excluded", &pol_opns, "cc-op", "", NULL, NULL, "KATA=", NULL,
     A(NONE), S(NONE), NULL, "NamespaceNotAllowed", NULL, NULL},
    {"custom operator namespace: confidential-system is a tenant", &pol_opns, "confidential-system",
     "", NULL, NULL, "KATA=", NULL, A(SET), S(ENV), "kata-qemu", "OptedInByEnv", NULL, NULL},
    {"operator namespace unset defaults to confidential-system", &pol_opnull, "confidential-system",
     "", NULL, NULL, "KATA=", NULL, A(NONE), S(NONE), NULL, "NamespaceNotAllowed", NULL, NULL},
    {"no namespace", &pol_def, "", "", NULL, NULL, "KATA=", NULL, A(NONE), S(NONE), NULL,
     "NamespaceNotAllowed", NULL, NULL},
    {"opt-out in kube-system is just not opted in", &pol_def, "kube-system", "", NULL, NULL,
     "KATA=false", NULL, A(NONE), S(NONE), NULL, "NotOptedIn", NULL, NULL},
    {"akash: tenant namespace", &pol_akash, "tenant", AKASH_LABELS, NULL, NULL, "KATA=", NULL,
     A(SET), S(ENV), "kata-qemu", "OptedInByEnv", NULL, NULL},
    {"akash: akash-services (no akash.network/namespace)", &pol_akash, "akash-services",
     "akash.network=true", NULL, NULL, "KATA=", NULL, A(NONE), S(NONE), NULL, "NamespaceNotAllowed",
     NULL, "akash-services"},
    {"akash: only akash.network/namespace", &pol_akash, "tenant", "akash.network/namespace=tenant",
     NULL, NULL, "KATA=", NULL, A(NONE), S(NONE), NULL, "NamespaceNotAllowed", NULL, NULL},
    {"akash: akash.network=false", &pol_akash, "tenant",
     "akash.network=false|akash.network/namespace=tenant", NULL, NULL, "KATA=", NULL, A(NONE),
     S(NONE), NULL, "NamespaceNotAllowed", NULL, NULL},
    {"akash: labels unknown", &pol_akash, "tenant", NULL, NULL, NULL, "KATA=", NULL, A(NONE),
     S(NONE), NULL, "NamespaceNotAllowed", NULL, NULL},
    {"akash: annotation in a plain namespace", &pol_akash, "team-a", "team=a", NULL, RT "gvisor",
     NULL, NULL, A(NONE), S(NONE), NULL, "NamespaceNotAllowed", NULL, NULL},
    {"akash: plain namespace, record present -> restore", &pol_akash, "team-a", "team=a",
     "kata-qemu", ORIG, "KATA=", NULL, A(RESTORE), S(NONE), NULL, "NamespaceNotAllowed", NULL,
     "Restoring"},
    {"akash: bad class in a plain namespace is not evaluated", &pol_akash, "team-a", "", NULL, NULL,
     "KATA=runc", NULL, A(NONE), S(NONE), NULL, "NamespaceNotAllowed", NULL, NULL},

    /* the class in force */
    {"already sandboxed by the operator", &pol_def, "tenant", NULL, "kata-qemu", ORIG,
     "KATA=", NULL, A(NONE), S(ENV), "kata-qemu", "AlreadySandboxed", NULL, "already in force"},
    {"already sandboxed by the owner", &pol_def, "tenant", NULL, "kata-qemu", NULL, "KATA=", NULL,
     A(NONE), S(ENV), "kata-qemu", "AlreadySandboxed", NULL, NULL},
    {"already sandboxed by CR", &pol_def, "tenant", NULL, "gvisor", ORIG, NULL, "tenant/cw=gvisor",
     A(NONE), S(CR), "gvisor", "AlreadySandboxed", "tenant/cw", NULL},
    {"foreign nvidia with env", &pol_def, "tenant", NULL, "nvidia", NULL, "KATA=", NULL, A(FOREIGN),
     S(ENV), "nvidia", "ForeignRuntimeClass", NULL, "\"nvidia\" was set by someone"},
    {"foreign provider TEE class with env", &pol_def, "tenant", NULL, "kata-qemu-tdx", NULL,
     "KATA=", NULL, A(FOREIGN), S(ENV), "kata-qemu-tdx", "ForeignRuntimeClass", NULL, NULL},
    {"foreign allowed class with a different env class", &pol_def, "tenant", NULL, "gvisor", NULL,
     "KATA=", NULL, A(FOREIGN), S(ENV), "gvisor", "ForeignRuntimeClass", NULL, NULL},
    {"foreign explicit runc with env", &pol_def, "tenant", NULL, "runc", NULL, "KATA=", NULL,
     A(FOREIGN), S(ENV), "runc", "ForeignRuntimeClass", NULL, NULL},
    {"foreign nvidia with annotation", &pol_def, "tenant", NULL, "nvidia", RT "gvisor", NULL, NULL,
     A(FOREIGN), S(ANNOTATION), "nvidia", "ForeignRuntimeClass", NULL, NULL},
    {"foreign nvidia with CR -> CR takes over", &pol_def, "tenant", NULL, "nvidia", NULL, NULL,
     "tenant/cw=kata-qemu", A(SET), S(CR), "kata-qemu", "OptedInByCR", "tenant/cw",
     "replacing runtime class \"nvidia\""},
    {"operator-set class switched by CR", &pol_def, "tenant", NULL, "kata-qemu", ORIG, NULL,
     "tenant/cw=gvisor", A(SET), S(CR), "gvisor", "OptedInByCR", "tenant/cw",
     "set by the operator"},
    {"operator-set class switched by env", &pol_def, "tenant", NULL, "kata-qemu", ORIG "nvidia",
     "CONFIDENTIAL_RUNTIME=gvisor", NULL, A(SET), S(ENV), "gvisor", "OptedInByEnv", NULL, NULL},
    {"drift: owner dropped the class, re-assert", &pol_def, "tenant", NULL, NULL, ORIG,
     "KATA=", NULL, A(SET), S(ENV), "kata-qemu", "OptedInByEnv", NULL, NULL},
    {"drift: provider rewrote nvidia, re-assert", &pol_def, "tenant", NULL, "nvidia", ORIG "nvidia",
     "KATA=", NULL, A(SET), S(ENV), "kata-qemu", "OptedInByEnv", NULL, NULL},
    {"empty runtimeClassName is none", &pol_def, "tenant", NULL, "", NULL, "KATA=", NULL, A(SET),
     S(ENV), "kata-qemu", "OptedInByEnv", NULL, NULL},

    /* opt-in removed */
    {"opt-in removed -> restore none", &pol_def, "tenant", NULL, "kata-qemu", ORIG, NULL, NULL,
     A(RESTORE), S(NONE), NULL, "OptInRemoved", NULL, "no runtime class"},
    {"opt-in removed -> restore nvidia", &pol_def, "tenant", NULL, "kata-qemu", ORIG "nvidia", NULL,
     NULL, A(RESTORE), S(NONE), "nvidia", "OptInRemoved", NULL, "\"nvidia\""},
    {"KATA=false with record -> restore", &pol_def, "tenant", NULL, "kata-qemu", ORIG, "KATA=false",
     NULL, A(RESTORE), S(NONE), NULL, "OptInRemoved", NULL, "opts out"},
    {"annotation false with record -> restore", &pol_def, "tenant", NULL, "gvisor",
     ORIG "nvidia|" RT "false", "KATA=", NULL, A(RESTORE), S(NONE), "nvidia", "OptInRemoved", NULL,
     "annotation " CO_ANN_RUNTIME "=\"false\" opts out"},
    {"owner set another class since -> keep it, drop record", &pol_def, "tenant", NULL, "nvidia",
     ORIG, NULL, NULL, A(RESTORE), S(NONE), "nvidia", "OptInRemoved", NULL, "changed"},
    {"owner removed the class since -> keep none", &pol_def, "tenant", NULL, NULL, ORIG "nvidia",
     NULL, NULL, A(RESTORE), S(NONE), NULL, "OptInRemoved", NULL, "changed"},
    {"already at the original -> only the record goes", &pol_def, "tenant", NULL, "nvidia",
     ORIG "nvidia", NULL, NULL, A(RESTORE), S(NONE), "nvidia", "OptInRemoved", NULL, NULL},
    {"denied keeps the operator's class (no restore)", &pol_def, "tenant", NULL, "kata-qemu", ORIG,
     "KATA=runc", NULL, A(DENIED), S(ENV), NULL, "ClassNotAllowed", NULL, NULL},
    {"conflict keeps the operator's class (no restore)", &pol_def, "tenant", NULL, "kata-qemu",
     ORIG, NULL, "tenant/a=gvisor|tenant/b=kata-qemu", A(CONFLICT), S(CR), NULL, "Conflict",
     "tenant/a", NULL},
    {"akash: CR deleted -> restore", &pol_akash, "tenant", AKASH_LABELS, "gvisor", ORIG, NULL, NULL,
     A(RESTORE), S(NONE), NULL, "OptInRemoved", NULL, NULL},
};

static void test_table(void) {
  size_t n_set = 0;
  for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
    const row_t *r = &rows[i];
    fixture_t f;
    co_decision_t d;
    fixture(&f, r->ns, r->labels, r->rc, r->ann, r->env, r->crs);
    int before = co__test_failed;
    co__test_failed = 0;
    CO_CHECK_INT(run(r->policy, &f, r->labels != NULL, &d), ==, 0);
    CO_CHECK_STR(co_action_name(d.action), co_action_name(r->action));
    CO_CHECK_STR(co_source_name(d.source), co_source_name(r->source));
    CO_CHECK_STR(d.class, r->cls);
    CO_CHECK_STR(d.reason, r->reason);
    CO_CHECK_STR(d.cr_key, r->cr_key);
    CO_CHECK(d.message[0] != '\0');
    CO_CHECK(strlen(d.message) < sizeof(d.message));
    if (r->msg != NULL)
      CO_CHECK_CONTAINS(d.message, r->msg);
    /* Rule 7, for every row. */
    if (d.action == CO_ACTION_SET) {
      CO_CHECK(set_class_ok(r->policy, d.class));
      CO_CHECK(co_decide_class_allowed(r->policy, d.class));
      n_set++;
    }
    if (co__test_failed)
      fprintf(stderr, "#   in row %zu \"%s\": %s/%s class=%s reason=%s: %s\n", i, r->name,
              co_action_name(d.action), co_source_name(d.source), d.class ? d.class : "(null)",
              d.reason, d.message);
    co__test_failed |= before;
  }
  CO_CHECK_INT(n_set, >=, 20);
}

/* ---- exhaustive invariants ---- */

static const char *const g_ns[] = {"tenant",          "kube-system",         "kube-public",
                                   "kube-node-lease", "confidential-system", "team-a"};
static const char *const g_labels[] = {NULL, "", AKASH_LABELS, "akash.network=true"};
static const char *const g_rc[] = {NULL, "", "kata-qemu", "gvisor", "nvidia", "runc"};
static const char *const g_ann[] = {NULL,
                                    RT,
                                    RT "gvisor",
                                    RT "false",
                                    RT "runc",
                                    RT "auto",
                                    ORIG,
                                    ORIG "nvidia",
                                    ORIG "|" RT,
                                    ORIG "nvidia|" RT "kata-qemu-snp",
                                    ORIG "|" RT "false"};
static const char *const g_env[] = {NULL,
                                    "KATA=",
                                    "KATA=false",
                                    "KATA=runc",
                                    "KATA=auto",
                                    "CONFIDENTIAL_RUNTIME=gvisor",
                                    "KATA=|CONFIDENTIAL_RUNTIME=gvisor",
                                    "KATA=no|CONFIDENTIAL_RUNTIME=kata-qemu"};
static const char *const g_crs[] = {NULL,
                                    "x/a=gvisor",
                                    "x/a=runc",
                                    "x/a=auto",
                                    "x/a",
                                    "x/a=gvisor|x/b=gvisor",
                                    "x/a=gvisor|x/b=kata-qemu"};
static const co_policy_t *const g_pol[] = {&pol_def,  &pol_akash,    &pol_noready, &pol_baddefault,
                                           &pol_runc, &pol_autorunc, &pol_opnull,  &pol_noresolver};

static int known_reason(const char *r) {
  static const char *const reasons[] = {
      "OptedInByCR",    "OptedInByAnnotation", "OptedInByEnv", "AlreadySandboxed",
      "NotOptedIn",     "NamespaceNotAllowed", "OptInRemoved", "ClassNotAllowed",
      "NoReadyRuntime", "ConflictingOptIn",    "Conflict",     "ForeignRuntimeClass"};
  for (size_t i = 0; r != NULL && i < sizeof(reasons) / sizeof(reasons[0]); i++) {
    if (strcmp(r, reasons[i]) == 0)
      return 1;
  }
  return 0;
}

#define LEN(a) (sizeof(a) / sizeof((a)[0]))

static void test_invariants(void) {
  size_t cases = 0, fails = 0;
  for (size_t p = 0; p < LEN(g_pol); p++)
    for (size_t a = 0; a < LEN(g_ns); a++)
      for (size_t b = 0; b < LEN(g_labels); b++)
        for (size_t c = 0; c < LEN(g_rc); c++)
          for (size_t d = 0; d < LEN(g_ann); d++)
            for (size_t e = 0; e < LEN(g_env); e++)
              for (size_t g = 0; g < LEN(g_crs); g++) {
                const co_policy_t *pol = g_pol[p];
                fixture_t f;
                co_decision_t o;
                fixture(&f, g_ns[a], g_labels[b], g_rc[c], g_ann[d], g_env[e], g_crs[g]);
                int rc = run(pol, &f, g_labels[b] != NULL, &o);
                const char *cur = g_rc[c] != NULL && g_rc[c][0] ? g_rc[c] : NULL;
                int has_orig = co_kv_get(&f.w.annotations, CO_ANN_ORIGINAL) != NULL;
                int prot = a >= 1 && a <= 4;
                int ok = rc == 0 && known_reason(o.reason) && o.message[0] != '\0' &&
                         strlen(o.message) < sizeof(o.message);
                /* Rule 7: SET only allow-listed classes, never runc. */
                if (o.action == CO_ACTION_SET)
                  ok = ok && set_class_ok(pol, o.class);
                /* Never anything but NONE in system/operator namespaces. */
                if (prot)
                  ok = ok && o.action == CO_ACTION_NONE;
                /* Restore only what was recorded. */
                if (o.action == CO_ACTION_RESTORE)
                  ok = ok && has_orig;
                /* A class someone else set is only replaced on a CR's request. */
                if (o.action == CO_ACTION_SET && cur != NULL && !has_orig)
                  ok = ok && o.source == CO_SOURCE_CR;
                /* Writing is only ever a change. */
                if (o.action == CO_ACTION_SET)
                  ok = ok && (cur == NULL || strcmp(cur, o.class) != 0);
                if (o.action == CO_ACTION_CONFLICT)
                  ok = ok && o.source == CO_SOURCE_CR && g_crs[g] != NULL && o.class == NULL;
                if (o.action == CO_ACTION_DENIED)
                  ok = ok && o.class == NULL;
                /* Env/annotation opt-ins never act where the namespace policy says no. */
                if (g_crs[g] == NULL &&
                    !co_decide_namespace_allowed(pol, g_ns[a], g_labels[b] ? &f.ns_labels : NULL))
                  ok = ok && (o.action == CO_ACTION_NONE || o.action == CO_ACTION_RESTORE);
                cases++;
                if (!ok && fails++ < 10)
                  fprintf(stderr,
                          "# invariant broken: pol=%zu ns=%s labels=%s rc=%s ann=%s env=%s "
                          "crs=%s -> %s %s class=%s reason=%s: %s\n",
                          p, g_ns[a], g_labels[b] ? g_labels[b] : "(unknown)",
                          g_rc[c] ? g_rc[c] : "(null)", g_ann[d] ? g_ann[d] : "-",
                          g_env[e] ? g_env[e] : "-", g_crs[g] ? g_crs[g] : "-",
                          co_action_name(o.action), co_source_name(o.source),
                          o.class ? o.class : "(null)", o.reason, o.message);
              }
  CO_CHECK_INT(fails, ==, 0);
  CO_CHECK_INT(cases, >, 100000);
}

/* ---- focused checks ---- */

static void test_invalid_inputs(void) {
  fixture_t f;
  co_decision_t d;
  fixture(&f, "tenant", NULL, NULL, NULL, "KATA=", NULL);
  co_decide_input_t in = {.workload = &f.w};
  CO_CHECK_INT(co_decide(NULL, &in, &d), ==, CO_EINVAL);
  CO_CHECK_STR(d.reason, "InvalidInput");
  CO_CHECK_INT(d.action, ==, CO_ACTION_NONE);
  CO_CHECK_INT(co_decide(&pol_def, NULL, &d), ==, CO_EINVAL);
  CO_CHECK_INT(co_decide(&pol_def, &in, NULL), ==, CO_EINVAL);
  co_decide_input_t no_w = {.workload = NULL};
  CO_CHECK_INT(co_decide(&pol_def, &no_w, &d), ==, CO_EINVAL);
  co_decide_input_t no_crs = {.workload = &f.w, .crs = NULL, .n_crs = 2};
  CO_CHECK_INT(co_decide(&pol_def, &no_crs, &d), ==, CO_EINVAL);
  co_policy_t no_list = pol_def;
  no_list.allowed = NULL;
  CO_CHECK_INT(co_decide(&no_list, &in, &d), ==, CO_EINVAL);
  /* An empty allow-list is valid and denies everything. */
  no_list.n_allowed = 0;
  CO_CHECK_INT(co_decide(&no_list, &in, &d), ==, 0);
  CO_CHECK_INT(d.action, ==, CO_ACTION_DENIED);
  CO_CHECK_CONTAINS(d.message, "allowed: none");
  /* NULL namespace: never touched. */
  f.w.meta.ns = NULL;
  CO_CHECK_INT(co_decide(&pol_def, &in, &d), ==, 0);
  CO_CHECK_INT(d.action, ==, CO_ACTION_NONE);
  CO_CHECK_STR(d.reason, "NamespaceNotAllowed");
}

static void test_helpers(void) {
  CO_CHECK(co_decide_class_allowed(&pol_def, "kata-qemu"));
  CO_CHECK(co_decide_class_allowed(&pol_def, "gvisor"));
  CO_CHECK(!co_decide_class_allowed(&pol_def, "kata-clh"));
  CO_CHECK(!co_decide_class_allowed(&pol_def, "runc"));
  CO_CHECK(!co_decide_class_allowed(&pol_runc, "runc"));
  CO_CHECK(co_decide_class_allowed(&pol_runc, "kata-qemu"));
  CO_CHECK(!co_decide_class_allowed(&pol_def, "auto"));
  CO_CHECK(!co_decide_class_allowed(&pol_def, ""));
  CO_CHECK(!co_decide_class_allowed(&pol_def, NULL));
  CO_CHECK(!co_decide_class_allowed(NULL, "kata-qemu"));
  CO_CHECK(!co_decide_class_allowed(&pol_def, "KATA-QEMU"));

  fixture_t f;
  fixture(&f, "x", AKASH_LABELS, NULL, NULL, NULL, NULL);
  CO_CHECK(co_decide_namespace_allowed(&pol_def, "tenant", NULL));
  CO_CHECK(co_decide_namespace_allowed(&pol_def, "default", NULL));
  CO_CHECK(!co_decide_namespace_allowed(&pol_def, "kube-system", NULL));
  CO_CHECK(!co_decide_namespace_allowed(&pol_def, NULL, NULL));
  CO_CHECK(!co_decide_namespace_allowed(NULL, "tenant", NULL));
  CO_CHECK(co_decide_namespace_allowed(&pol_akash, "x", &f.ns_labels));
  CO_CHECK(!co_decide_namespace_allowed(&pol_akash, "x", NULL));
  CO_CHECK(!co_decide_namespace_allowed(&pol_akash, "kube-system", &f.ns_labels));
  CO_CHECK(!co_decide_namespace_allowed(&pol_akash, "confidential-system", &f.ns_labels));

  CO_CHECK_STR(co_action_name(CO_ACTION_SET), "Set");
  CO_CHECK_STR(co_action_name(CO_ACTION_RESTORE), "Restore");
  CO_CHECK_STR(co_action_name((co_action_t)42), "Unknown");
  CO_CHECK_STR(co_source_name(CO_SOURCE_ENV), "Env");
  CO_CHECK_STR(co_source_name(CO_SOURCE_CR), "ConfidentialWorkload");
  CO_CHECK_STR(co_source_name((co_source_t)42), "Unknown");
}

/* "auto" is resolved at most once per decision, and not at all when an allowed class is in
 * force, so CRs and the webhook see one consistent answer. */
static void test_auto_resolved_once(void) {
  fixture_t f;
  co_decision_t d;
  res_snp.calls = 0;
  fixture(&f, "tenant", NULL, NULL, NULL, NULL, "tenant/a=auto|tenant/b=auto|tenant/c=auto");
  CO_CHECK_INT(run(&pol_def, &f, 0, &d), ==, 0);
  CO_CHECK_INT(d.action, ==, CO_ACTION_SET);
  CO_CHECK_STR(d.class, "kata-qemu-snp");
  CO_CHECK_INT(res_snp.calls, ==, 1);

  res_snp.calls = 0;
  fixture(&f, "tenant", NULL, "gvisor", ORIG, "KATA=auto", NULL);
  CO_CHECK_INT(run(&pol_def, &f, 0, &d), ==, 0);
  CO_CHECK_INT(d.action, ==, CO_ACTION_NONE);
  CO_CHECK_STR(d.class, "gvisor");
  CO_CHECK_INT(res_snp.calls, ==, 0);

  res_snp.calls = 0;
  fixture(&f, "tenant", NULL, NULL, NULL, "KATA=", NULL);
  CO_CHECK_INT(run(&pol_def, &f, 0, &d), ==, 0);
  CO_CHECK_INT(res_snp.calls, ==, 0);
}

/* Long keys and values are bounded in the message, never overflow. */
static void test_long_inputs(void) {
  char key[600], env[700];
  memset(key, 'k', sizeof(key) - 1);
  key[sizeof(key) - 1] = '\0';
  key[5] = '/';
  fixture_t f;
  co_decision_t d;
  fixture(&f, "tenant", NULL, NULL, NULL, NULL, NULL);
  co_decide_cr_t crs[2] = {{key, "gvisor", NULL}, {key, "kata-qemu", NULL}};
  co_decide_input_t in = {.workload = &f.w, .crs = crs, .n_crs = 2};
  CO_CHECK_INT(co_decide(&pol_def, &in, &d), ==, 0);
  CO_CHECK_INT(d.action, ==, CO_ACTION_CONFLICT);
  CO_CHECK_INT(strlen(d.message), ==, sizeof(d.message) - 1);

  snprintf(env, sizeof(env), "KATA=%0500d", 7);
  fixture(&f, "tenant", NULL, NULL, NULL, env, NULL);
  CO_CHECK_INT(run(&pol_def, &f, 0, &d), ==, 0);
  CO_CHECK_INT(d.action, ==, CO_ACTION_DENIED);
  CO_CHECK_STR(d.reason, "ClassNotAllowed");
  CO_CHECK(strlen(d.message) < sizeof(d.message));
  CO_CHECK_CONTAINS(d.message, "allowed: kata-qemu, kata-qemu-snp, gvisor");

  /* An allow-list too long for the message is cut visibly. */
  static const char *const many[] = {
      "kata-qemu",      "kata-clh",      "kata-fc",       "kata-qemu-snp", "kata-qemu-tdx",
      "kata-qemu-coco", "kata-dragon",   "gvisor",        "gvisor-kvm",    "kata-qemu-nv1",
      "kata-qemu-nv2",  "kata-qemu-nv3", "kata-qemu-nv4", "kata-qemu-nv5"};
  co_policy_t big = pol_def;
  big.allowed = many;
  big.n_allowed = LEN(many);
  fixture(&f, "tenant", NULL, NULL, NULL, "KATA=runc", NULL);
  CO_CHECK_INT(run(&big, &f, 0, &d), ==, 0);
  CO_CHECK_CONTAINS(d.message, "...");
}

/* spec.hardening travels with the deciding CR's decision when it sets or keeps the class, and
 * never otherwise (a conflict, a protected namespace, no CR). */
static void test_hardening_carried(void) {
  static const co_hardening_t hard = {1, "512Mi", 0};
  fixture_t f;
  co_decision_t d;
  fixture(&f, "tenant", NULL, NULL, NULL, NULL, "tenant/a=gvisor");
  f.crs[0].hardening = &hard;
  CO_CHECK_INT(run(&pol_def, &f, 0, &d), ==, 0);
  CO_CHECK_INT(d.action, ==, CO_ACTION_SET);
  CO_CHECK(d.harden);
  CO_CHECK_INT(d.hardening.memory_backed_empty_dirs, ==, 1);
  CO_CHECK_STR(d.hardening.empty_dir_size_limit, "512Mi");
  CO_CHECK_INT(d.hardening.automount_sa_token, ==, 0);

  fixture(&f, "tenant", NULL, "gvisor", NULL, NULL, "tenant/a=gvisor");
  f.crs[0].hardening = &hard;
  CO_CHECK_INT(run(&pol_def, &f, 0, &d), ==, 0);
  CO_CHECK_INT(d.action, ==, CO_ACTION_NONE);
  CO_CHECK(d.harden);

  fixture(&f, "tenant", NULL, NULL, NULL, NULL, "tenant/a=gvisor|tenant/b=kata-qemu");
  f.crs[0].hardening = &hard;
  CO_CHECK_INT(run(&pol_def, &f, 0, &d), ==, 0);
  CO_CHECK_INT(d.action, ==, CO_ACTION_CONFLICT);
  CO_CHECK(!d.harden);

  fixture(&f, "kube-system", NULL, NULL, NULL, NULL, "kube-system/a=gvisor");
  f.crs[0].hardening = &hard;
  CO_CHECK_INT(run(&pol_def, &f, 0, &d), ==, 0);
  CO_CHECK(!d.harden);

  fixture(&f, "tenant", NULL, NULL, NULL, "KATA=true", NULL);
  CO_CHECK_INT(run(&pol_def, &f, 0, &d), ==, 0);
  CO_CHECK_INT(d.action, ==, CO_ACTION_SET);
  CO_CHECK(!d.harden);
}

/* ---- end to end with the real projection ---- */

static int decode(const char *json, co_workload_t *w, const char *ns) {
  memset(w, 0, sizeof(*w));
  cJSON *obj = cJSON_Parse(json);
  CO_CHECK(obj != NULL);
  if (obj == NULL)
    return -1;
  int rc = co_type_deployments.decode(obj, &w->meta);
  cJSON_Delete(obj);
  w->meta.ns = ns;
  return rc;
}

static void check_json(const char *json, const char *ns, const co_kv_t *labels, co_action_t action,
                       const char *cls, const char *reason) {
  co_workload_t w;
  co_decision_t d;
  CO_CHECK_INT(decode(json, &w, ns), ==, 0);
  co_decide_input_t in = {.workload = &w, .ns_labels = labels};
  CO_CHECK_INT(co_decide(labels ? &pol_akash : &pol_def, &in, &d), ==, 0);
  CO_CHECK_STR(co_action_name(d.action), co_action_name(action));
  CO_CHECK_STR(d.class, cls);
  CO_CHECK_STR(d.reason, reason);
  co_type_deployments.release(&w.meta);
}

static void test_projection(void) {
  /* Env on the second container, not the first. */
  check_json("{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":\"a\",\"env\":[{"
             "\"name\":\"AKASH_OWNER\",\"value\":\"akash1x\"}]},{\"name\":\"b\",\"env\":[{"
             "\"name\":\"KATA\",\"value\":\"\"}]}]}}}}",
             "tenant", NULL, CO_ACTION_SET, "kata-qemu", "OptedInByEnv");
  /* Env on an init container only. */
  check_json("{\"spec\":{\"template\":{\"spec\":{\"initContainers\":[{\"name\":\"i\",\"env\":[{"
             "\"name\":\"CONFIDENTIAL_RUNTIME\",\"value\":\"gvisor\"}]}],\"containers\":[{"
             "\"name\":\"a\"}]}}}}",
             "tenant", NULL, CO_ACTION_SET, "gvisor", "OptedInByEnv");
  /* The legacy PoC: KATA on the first container, value absent. */
  check_json("{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":\"a\",\"env\":[{"
             "\"name\":\"KATA\"}]}]}}}}",
             "tenant", NULL, CO_ACTION_SET, "kata-qemu", "OptedInByEnv");
  /* An Akash GPU lease: the provider's nvidia class is foreign to an env opt-in. */
  fixture_t f;
  fixture(&f, "x", AKASH_LABELS, NULL, NULL, NULL, NULL);
  check_json("{\"metadata\":{\"labels\":{\"akash.network\":\"true\"}},\"spec\":{\"template\":{"
             "\"spec\":{\"runtimeClassName\":\"nvidia\",\"containers\":[{\"name\":\"a\",\"env\":"
             "[{\"name\":\"KATA\",\"value\":\"true\"}]}]}}}}",
             "tenant", &f.ns_labels, CO_ACTION_FOREIGN, "nvidia", "ForeignRuntimeClass");
  /* Operator-rewritten then opt-in removed: restore from the recorded annotation. */
  check_json("{\"metadata\":{\"annotations\":{\"confidential.cypherpunk.io/"
             "original-runtime-class\":\"\",\"other/x\":\"y\"}},\"spec\":{\"template\":{\"spec\":{"
             "\"runtimeClassName\":\"kata-qemu\",\"containers\":[{\"name\":\"a\"}]}}}}",
             "tenant", NULL, CO_ACTION_RESTORE, NULL, "OptInRemoved");
}

CO_TEST_MAIN(CO_TEST(test_table), CO_TEST(test_invariants), CO_TEST(test_invalid_inputs),
             CO_TEST(test_helpers), CO_TEST(test_auto_resolved_once), CO_TEST(test_long_inputs),
             CO_TEST(test_projection), CO_TEST(test_hardening_carried))
