/* The opt-in decision (see co/decide.h for the rules). Pure: reads only its inputs, calls
 * only policy->resolve_auto (at most once), writes only *out. */
#include "co/decide.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "co/error.h"

/* Longest user-supplied value quoted in a message, so one long value cannot crowd out the
 * rest of the sentence. */
#define QUOTE_MAX 63
#define DEFAULT_OPERATOR_NS "confidential-system"

static const char *const protected_ns[] = {"kube-system", "kube-public", "kube-node-lease"};

static void say(co_decision_t *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(co_decision_t *out, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(out->message, sizeof(out->message), fmt, ap);
  va_end(ap);
  if (n < 0)
    out->message[0] = '\0';
}

static const char *or_q(const char *s) { return s != NULL ? s : "?"; }

static int str_eq(const char *a, const char *b) {
  return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* NULL and "" both mean "no runtimeClassName". */
static const char *nonempty(const char *s) { return s != NULL && s[0] != '\0' ? s : NULL; }

int co_decide_class_allowed(const co_policy_t *policy, const char *class) {
  if (policy == NULL || class == NULL || class[0] == '\0')
    return 0;
  /* Even a misconfigured allow-list can never make the operator write the host runtime or
   * the "auto" placeholder. */
  if (strcmp(class, "runc") == 0 || strcmp(class, CO_CLASS_AUTO) == 0)
    return 0;
  if (policy->allowed == NULL)
    return 0;
  for (size_t i = 0; i < policy->n_allowed; i++) {
    if (policy->allowed[i] != NULL && strcmp(policy->allowed[i], class) == 0)
      return 1;
  }
  return 0;
}

/* System namespaces and the operator's own: never touched, whatever the opt-in source. */
static int ns_protected(const co_policy_t *policy, const char *ns) {
  if (ns == NULL || ns[0] == '\0')
    return 1;
  for (size_t i = 0; i < sizeof(protected_ns) / sizeof(protected_ns[0]); i++) {
    if (strcmp(ns, protected_ns[i]) == 0)
      return 1;
  }
  const char *own = nonempty(policy->operator_namespace);
  return strcmp(ns, own != NULL ? own : DEFAULT_OPERATOR_NS) == 0;
}

int co_decide_namespace_allowed(const co_policy_t *policy, const char *ns,
                                const co_kv_t *ns_labels) {
  if (policy == NULL || ns_protected(policy, ns))
    return 0;
  switch (policy->ns_policy) {
  case CO_NS_POLICY_DEFAULT:
    return 1;
  case CO_NS_POLICY_AKASH: {
    /* The provider's own CC webhook selects tenant namespaces exactly so: akash-services has
     * akash.network=true but no akash.network/namespace. Unknown labels: not a tenant. */
    if (ns_labels == NULL)
      return 0;
    const char *akash = co_kv_get(ns_labels, "akash.network");
    return akash != NULL && strcmp(akash, "true") == 0 &&
           co_kv_get(ns_labels, "akash.network/namespace") != NULL;
  }
  }
  return 0;
}

const char *co_action_name(co_action_t a) {
  switch (a) {
  case CO_ACTION_NONE:
    return "None";
  case CO_ACTION_SET:
    return "Set";
  case CO_ACTION_RESTORE:
    return "Restore";
  case CO_ACTION_CONFLICT:
    return "Conflict";
  case CO_ACTION_DENIED:
    return "Denied";
  case CO_ACTION_FOREIGN:
    return "Foreign";
  }
  return "Unknown";
}

const char *co_source_name(co_source_t s) {
  switch (s) {
  case CO_SOURCE_NONE:
    return "None";
  case CO_SOURCE_CR:
    return "ConfidentialWorkload";
  case CO_SOURCE_ANNOTATION:
    return "Annotation";
  case CO_SOURCE_ENV:
    return "Env";
  }
  return "Unknown";
}

/* ---- value resolution ---- */

typedef struct {
  const co_policy_t *p;
  const char *current; /* runtimeClassName in force, NULL when none */
  int auto_done;       /* resolve_auto called (once per decision, so all sources agree) */
  const char *auto_class;
} ctx_t;

typedef enum {
  VAL_OFF,         /* explicit opt-out value */
  VAL_ON,          /* *cls is an allowed class */
  VAL_BAD_CLASS,   /* *cls names a class outside the allow-list */
  VAL_BAD_DEFAULT, /* the configured default class is not allowed (misconfiguration) */
  VAL_NO_AUTO      /* "auto" found no ready class */
} val_t;

static int is_true(const char *v) {
  return v[0] == '\0' || strcasecmp(v, "true") == 0 || strcasecmp(v, "yes") == 0 ||
         strcmp(v, "1") == 0 || strcasecmp(v, "on") == 0;
}

static int is_false(const char *v) {
  return strcasecmp(v, "false") == 0 || strcasecmp(v, "no") == 0 || strcmp(v, "0") == 0 ||
         strcasecmp(v, "off") == 0;
}

/* Resolves an opt-in value to a class. booleans: annotation/env values, where true/false
 * words are switches; a CR's value is a class name, "auto", or empty (default). */
static val_t resolve(ctx_t *c, const char *v, int booleans, const char **cls) {
  *cls = NULL;
  if (v == NULL)
    v = "";
  if (booleans && is_false(v))
    return VAL_OFF;
  if (booleans ? is_true(v) : v[0] == '\0') {
    *cls = c->p->default_class;
    return co_decide_class_allowed(c->p, *cls) ? VAL_ON : VAL_BAD_DEFAULT;
  }
  if (strcmp(v, CO_CLASS_AUTO) == 0) {
    /* An allowed class already in force satisfies "auto": switching whenever node readiness
     * changes would mean a rollout (downtime on Akash: maxSurge 0) per flap. */
    if (co_decide_class_allowed(c->p, c->current)) {
      *cls = c->current;
      return VAL_ON;
    }
    if (!c->auto_done) {
      c->auto_done = 1;
      c->auto_class = c->p->resolve_auto != NULL ? c->p->resolve_auto(c->p->resolve_ud) : NULL;
    }
    *cls = nonempty(c->auto_class);
    if (*cls == NULL)
      return VAL_NO_AUTO;
    return co_decide_class_allowed(c->p, *cls) ? VAL_ON : VAL_BAD_CLASS;
  }
  *cls = v;
  return co_decide_class_allowed(c->p, v) ? VAL_ON : VAL_BAD_CLASS;
}

/* "a, b, c" into buf, "..." when it does not fit. */
static const char *allowed_list(const co_policy_t *p, char *buf, size_t size) {
  size_t used = 0;
  buf[0] = '\0';
  for (size_t i = 0; p->allowed != NULL && i < p->n_allowed; i++) {
    if (p->allowed[i] == NULL)
      continue;
    int n = snprintf(buf + used, size - used, "%s%s", used ? ", " : "", p->allowed[i]);
    if (n < 0 || (size_t)n >= size - used) {
      if (size >= 4) {
        /* Overwrite the tail so the truncation is visible. */
        size_t at = used + 4 <= size ? used : size - 4;
        snprintf(buf + at, size - at, "%s", "...");
      }
      return buf;
    }
    used += (size_t)n;
  }
  if (used == 0)
    snprintf(buf, size, "%s", "none");
  return buf;
}

/* Fills a DENIED decision for a failed resolution. what: who asked, e.g. "annotation ...". */
static void deny(co_decision_t *out, const ctx_t *c, val_t r, const char *cls, const char *what) {
  char allowed[128];
  out->action = CO_ACTION_DENIED;
  out->class = NULL; /* nothing to write; the requested class is only in the message */
  switch (r) {
  case VAL_BAD_DEFAULT:
    out->reason = "ClassNotAllowed";
    say(out,
        "Opt-in by %s asks for the default runtime class, but the configured default \"%.*s\" "
        "is not an allowed sandbox class (allowed: %s); fix the operator configuration.",
        what, QUOTE_MAX, cls != NULL ? cls : "", allowed_list(c->p, allowed, sizeof(allowed)));
    break;
  case VAL_NO_AUTO:
    out->reason = "NoReadyRuntime";
    say(out,
        "Opt-in by %s asks for runtime class \"auto\", but no ready node offers an allowed "
        "sandbox class (allowed: %s); the workload is left as it is, never unsandboxed by the "
        "operator.",
        what, allowed_list(c->p, allowed, sizeof(allowed)));
    break;
  default:
    out->reason = "ClassNotAllowed";
    say(out,
        "Opt-in by %s denied: runtime class \"%.*s\" is not an allowed sandbox class "
        "(allowed: %s).",
        what, QUOTE_MAX, cls != NULL ? cls : "", allowed_list(c->p, allowed, sizeof(allowed)));
    break;
  }
}

/* ---- outcomes ---- */

static const char *source_reason(co_source_t s) {
  switch (s) {
  case CO_SOURCE_CR:
    return "OptedInByCR";
  case CO_SOURCE_ANNOTATION:
    return "OptedInByAnnotation";
  case CO_SOURCE_ENV:
    return "OptedInByEnv";
  case CO_SOURCE_NONE:
    break;
  }
  return "NotOptedIn";
}

/* The workload is opted in to cls (allowed) by src; what describes the source. */
static void apply(co_decision_t *out, const ctx_t *c, const char *orig, co_source_t src,
                  const char *cls, const char *what) {
  out->source = src;
  if (!co_decide_class_allowed(c->p, cls)) { /* unreachable: resolve() checked; rule 7 guard */
    deny(out, c, VAL_BAD_CLASS, cls, what);
    return;
  }
  if (str_eq(c->current, cls)) {
    out->action = CO_ACTION_NONE;
    out->class = cls;
    out->reason = "AlreadySandboxed";
    say(out, "Opted in by %s; runtime class \"%s\" is already in force.", what, cls);
    return;
  }
  if (c->current == NULL || orig != NULL || src == CO_SOURCE_CR) {
    /* Empty, ours (recorded original), or a CR that explicitly takes over. */
    out->action = CO_ACTION_SET;
    out->class = cls;
    out->reason = source_reason(src);
    if (c->current == NULL)
      say(out, "Opted in by %s; setting runtime class \"%s\".", what, cls);
    else if (orig != NULL)
      say(out, "Opted in by %s; setting runtime class \"%s\" (was \"%.*s\", set by the operator).",
          what, cls, QUOTE_MAX, c->current);
    else
      say(out,
          "Opted in by %s; replacing runtime class \"%.*s\" set by someone else with \"%s\" "
          "because the ConfidentialWorkload asks for it.",
          what, QUOTE_MAX, c->current, cls);
    return;
  }
  /* Someone else chose this class (the provider's nvidia or TEE class, the owner's own):
   * only a CR may take it over. */
  out->action = CO_ACTION_FOREIGN;
  out->class = c->current;
  out->reason = "ForeignRuntimeClass";
  say(out,
      "Opted in by %s for runtime class \"%s\", but runtime class \"%.*s\" was set by someone "
      "else; leaving it (a ConfidentialWorkload can take it over).",
      what, cls, QUOTE_MAX, c->current);
}

/* Not (or no longer) opted in. reason/why explain why. */
static void not_opted(co_decision_t *out, const ctx_t *c, int protected, const char *orig,
                      const char *reason, const char *why) {
  out->source = CO_SOURCE_NONE;
  out->reason = reason;
  if (orig == NULL || protected) {
    out->action = CO_ACTION_NONE;
    out->class = NULL;
    say(out, "%s", why);
    return;
  }
  /* We rewrote this workload before: go back to what the owner had, which is what removing the
   * opt-in asks for. */
  out->action = CO_ACTION_RESTORE;
  if (strcmp(reason, "NotOptedIn") == 0)
    out->reason = "OptInRemoved";
  const char *want = nonempty(orig);
  if (!str_eq(c->current, want) && !co_decide_class_allowed(c->p, c->current)) {
    /* The class in force is not one the operator writes: the owner changed it since our
     * rewrite. Their latest choice wins; only the stale record goes. */
    char now[QUOTE_MAX + 3];
    if (c->current != NULL)
      snprintf(now, sizeof(now), "\"%.*s\"", QUOTE_MAX, c->current);
    else
      snprintf(now, sizeof(now), "%s", "none");
    out->class = c->current;
    say(out,
        "%s The runtime class was changed to %s since the operator's rewrite; keeping it and "
        "dropping the recorded original \"%.*s\".",
        why, now, QUOTE_MAX, orig);
    return;
  }
  out->class = want;
  if (want != NULL)
    say(out, "%s Restoring the original runtime class \"%.*s\".", why, QUOTE_MAX, want);
  else
    say(out, "%s Restoring the original state (no runtime class).", why);
}

/* ---- sources ---- */

/* Why an annotation/env opt-in (what) does not count in ns. */
static void ns_why(char *buf, size_t size, const char *what, const char *ns, int protected) {
  const char *name = ns != NULL && ns[0] != '\0' ? ns : "(none)";
  if (protected)
    snprintf(buf, size,
             "Opt-in by %s does not count: namespace %.63s is a system or operator namespace "
             "that the operator never changes.",
             what, name);
  else
    snprintf(buf, size,
             "Opt-in by %s does not count in namespace %.63s (not allowed by the namespace "
             "policy; a ConfidentialWorkload there can still opt the workload in).",
             what, name);
}

static void decide_crs(co_decision_t *out, ctx_t *c, const co_decide_input_t *in,
                       const char *orig) {
  char what[128];
  const char *cls0 = NULL;
  /* A CR asking for something not allowed is reported before any disagreement: fixing that CR
   * is the first step either way. */
  for (size_t i = 0; i < in->n_crs; i++) {
    const char *cls;
    val_t r = resolve(c, in->crs[i].class, 0, &cls);
    if (r != VAL_ON) {
      snprintf(what, sizeof(what), "ConfidentialWorkload %s", or_q(in->crs[i].key));
      out->source = CO_SOURCE_CR;
      out->cr_key = in->crs[i].key;
      deny(out, c, r, cls, what);
      return;
    }
    if (i == 0)
      cls0 = cls;
  }
  for (size_t i = 1; i < in->n_crs; i++) {
    const char *cls;
    resolve(c, in->crs[i].class, 0, &cls); /* deterministic: auto is cached */
    if (strcmp(cls, cls0) != 0) {
      out->action = CO_ACTION_CONFLICT;
      out->source = CO_SOURCE_CR;
      out->cr_key = in->crs[0].key;
      out->reason = "Conflict";
      say(out,
          "ConfidentialWorkloads %s (runtime class \"%s\") and %s (runtime class \"%s\") both "
          "select this workload; neither applies until one of them changes.",
          or_q(in->crs[0].key), cls0, or_q(in->crs[i].key), cls);
      return;
    }
  }
  out->cr_key = in->crs[0].key;
  if (in->n_crs > 1)
    snprintf(what, sizeof(what), "ConfidentialWorkload %s (and %zu more agreeing)",
             or_q(in->crs[0].key), in->n_crs - 1);
  else
    snprintf(what, sizeof(what), "ConfidentialWorkload %s", or_q(in->crs[0].key));
  apply(out, c, orig, CO_SOURCE_CR, cls0, what);
  if (in->crs[0].hardening != NULL &&
      (out->action == CO_ACTION_SET || out->action == CO_ACTION_NONE)) {
    out->harden = 1;
    out->hardening = *in->crs[0].hardening;
  }
}

/* One env var, for messages: name=value, name bounded. */
typedef struct {
  const char *name, *value;
  int name_len;
} env_t;

static env_t env_split(const char *pair) {
  env_t e = {pair, "", 0};
  const char *eq = strchr(pair, '=');
  if (eq != NULL) {
    e.value = eq + 1;
    e.name_len = eq - pair > QUOTE_MAX ? QUOTE_MAX : (int)(eq - pair);
  }
  return e;
}

static void env_what(char *buf, size_t size, env_t e) {
  snprintf(buf, size, "env var %.*s=\"%.*s\"", e.name_len, e.name, QUOTE_MAX, e.value);
}

/* Env var opt-in. Values that opt in must agree; an opt-out value on one variable does not
 * cancel an opt-in on another (any container opts in). Returns 1 when it decided. */
static int decide_env(co_decision_t *out, ctx_t *c, const co_workload_t *w, const char *orig,
                      int ns_ok, int protected, const char *ns) {
  char what[160], why[384];
  const char *first_cls = NULL;
  env_t first = {NULL, NULL, 0}, off = {NULL, NULL, 0};
  CO_KV_FOREACH(&w->template_env, p) {
    env_t e = env_split(p);
    if (e.name_len == 0)
      continue;
    if (is_false(e.value)) {
      if (off.name == NULL)
        off = e;
      continue;
    }
    env_what(what, sizeof(what), e);
    if (!ns_ok) {
      ns_why(why, sizeof(why), what, ns, protected);
      not_opted(out, c, protected, orig, "NamespaceNotAllowed", why);
      return 1;
    }
    const char *cls;
    val_t r = resolve(c, e.value, 1, &cls);
    if (r != VAL_ON) {
      out->source = CO_SOURCE_ENV;
      deny(out, c, r, cls, what);
      return 1;
    }
    if (first_cls == NULL) {
      first_cls = cls;
      first = e;
    } else if (strcmp(first_cls, cls) != 0) {
      out->action = CO_ACTION_DENIED;
      out->source = CO_SOURCE_ENV;
      out->reason = "ConflictingOptIn";
      say(out,
          "Env vars %.*s and %.*s ask for different runtime classes (\"%s\" and \"%s\"); "
          "nothing applies until they agree.",
          first.name_len, first.name, e.name_len, e.name, first_cls, cls);
      return 1;
    }
  }
  if (first_cls != NULL) {
    env_what(what, sizeof(what), first);
    apply(out, c, orig, CO_SOURCE_ENV, first_cls, what);
    return 1;
  }
  if (off.name != NULL) {
    env_what(what, sizeof(what), off);
    snprintf(why, sizeof(why), "The %s opts out of sandboxing.", what);
    not_opted(out, c, protected, orig, "NotOptedIn", why);
    return 1;
  }
  return 0;
}

int co_decide(const co_policy_t *policy, const co_decide_input_t *in, co_decision_t *out) {
  if (out != NULL) {
    memset(out, 0, sizeof(*out));
    out->reason = "InvalidInput";
  }
  if (policy == NULL || in == NULL || out == NULL || in->workload == NULL ||
      (in->n_crs > 0 && in->crs == NULL) || (policy->n_allowed > 0 && policy->allowed == NULL))
    return CO_EINVAL;

  const co_workload_t *w = in->workload;
  const char *ns = w->meta.ns;
  ctx_t c = {.p = policy, .current = nonempty(w->runtime_class)};
  const char *orig = co_kv_get(&w->annotations, CO_ANN_ORIGINAL);
  int protected = ns_protected(policy, ns);
  int ns_ok = co_decide_namespace_allowed(policy, ns, in->ns_labels);
  char what[160], why[384];

  /* 1. ConfidentialWorkloads: an explicit request by someone with rights in the namespace, so
   * they count whatever the preset, except where the operator never acts. */
  if (in->n_crs > 0) {
    if (!protected) {
      decide_crs(out, &c, in, orig);
      return 0;
    }
    snprintf(
        why, sizeof(why),
        "ConfidentialWorkload %s is ignored: namespace %.63s is a system or operator namespace "
        "that the operator never changes.",
        or_q(in->crs[0].key), or_q(ns));
    not_opted(out, &c, protected, orig, "NamespaceNotAllowed", why);
    return 0;
  }

  /* 2. The annotation. Any value decides, "false" included, so an owner can exclude a
   * workload whose image happens to use an env var named like an opt-in one. */
  const char *ann = co_kv_get(&w->annotations, CO_ANN_RUNTIME);
  if (ann != NULL) {
    snprintf(what, sizeof(what), "annotation %s=\"%.*s\"", CO_ANN_RUNTIME, QUOTE_MAX, ann);
    if (!ns_ok && !is_false(ann)) {
      ns_why(why, sizeof(why), what, ns, protected);
      not_opted(out, &c, protected, orig, "NamespaceNotAllowed", why);
      return 0;
    }
    const char *cls;
    val_t r = resolve(&c, ann, 1, &cls);
    if (r == VAL_OFF) {
      snprintf(why, sizeof(why), "The %s opts out of sandboxing.", what);
      not_opted(out, &c, protected, orig, "NotOptedIn", why);
    } else if (r != VAL_ON) {
      out->source = CO_SOURCE_ANNOTATION;
      deny(out, &c, r, cls, what);
    } else {
      apply(out, &c, orig, CO_SOURCE_ANNOTATION, cls, what);
    }
    return 0;
  }

  /* 3. Env vars on any container or init container. */
  if (decide_env(out, &c, w, orig, ns_ok, protected, ns))
    return 0;

  not_opted(out, &c, protected, orig, "NotOptedIn", "The workload is not opted in.");
  return 0;
}
