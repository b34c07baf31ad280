/* ConfidentialWorkload projection, validation and LabelSelector matching. */
#include "cwl.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "co/alloc.h"
#include "co/buf.h"
#include "co/error.h"

#define KV_MAX (1024 * 1024)
/* Integers beyond this are clamped (JSON numbers are doubles; the schema caps them far lower). */
#define INT_CLAMP 1000000000000.0

/* ---- JSON helpers ------------------------------------------------------------------------ */

static const cJSON *field(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsNull(v) ? NULL : v; /* null is absent, as for the API server */
}

/* Owned copy of the string field k into *out: dflt (copied, may be NULL) when absent,
 * CO_EPARSE when not a string. */
static int get_str(const cJSON *o, const char *k, const char *dflt, char **out) {
  const cJSON *v = field(o, k);
  if (v == NULL) {
    *out = co_strdup(dflt);
    return 0;
  }
  if (!cJSON_IsString(v))
    return CO_EPARSE;
  *out = co_strdup(v->valuestring);
  return 0;
}

/* Boolean field: dflt when absent, CO_EPARSE when not a boolean. */
static int get_bool(const cJSON *o, const char *k, int dflt, int *out) {
  const cJSON *v = field(o, k);
  if (v == NULL) {
    *out = dflt;
    return 0;
  }
  if (!cJSON_IsBool(v))
    return CO_EPARSE;
  *out = cJSON_IsTrue(v);
  return 0;
}

/* Integer value: CO_EPARSE unless an integral number; clamped to +-INT_CLAMP. */
static int as_int(const cJSON *v, int64_t *out) {
  if (!cJSON_IsNumber(v))
    return CO_EPARSE;
  double d = v->valuedouble;
  if (d != d) /* NaN */
    return CO_EPARSE;
  if (d > INT_CLAMP)
    d = INT_CLAMP;
  if (d < -INT_CLAMP)
    d = -INT_CLAMP;
  int64_t i = (int64_t)d;
  if ((double)i != d)
    return CO_EPARSE;
  *out = i;
  return 0;
}

static int str_equal(const char *a, const char *b) {
  return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* ---- label syntax (k8s.io/apimachinery/pkg/util/validation) -------------------------------- */

static int is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}
static int is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

/* IsDNS1123Subdomain over s[0..n). */
static int valid_subdomain(const char *s, size_t n) {
  if (n == 0 || n > 253)
    return 0;
  size_t start = 0;
  for (size_t i = 0; i <= n; i++) {
    if (i < n && s[i] != '.')
      continue;
    /* one label: s[start..i) */
    if (i == start || !is_lower_alnum(s[start]) || !is_lower_alnum(s[i - 1]))
      return 0;
    for (size_t j = start; j < i; j++)
      if (!is_lower_alnum(s[j]) && s[j] != '-')
        return 0;
    start = i + 1;
  }
  return 1;
}

/* Label value / qualified-name part over s[0..n): at most 63 of alphanumerics, '-', '_', '.',
 * starting and ending with an alphanumeric; empty allowed when allow_empty. */
static int valid_label_part(const char *s, size_t n, int allow_empty) {
  if (n == 0)
    return allow_empty;
  if (n > 63 || !is_alnum(s[0]) || !is_alnum(s[n - 1]))
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
      return 0;
  return 1;
}

/* IsQualifiedName: [DNS-1123 subdomain "/"] name. */
static int valid_label_key(const char *k, size_t n) {
  const char *slash = memchr(k, '/', n);
  if (slash == NULL)
    return valid_label_part(k, n, 0);
  size_t pl = (size_t)(slash - k);
  return valid_subdomain(k, pl) && valid_label_part(slash + 1, n - pl - 1, 0);
}

static int valid_label_value(const char *v) { return valid_label_part(v, strlen(v), 1); }

/* ---- decode ---------------------------------------------------------------------------- */

static int decode_match_labels(const cJSON *map, co_cwl_t *cr) {
  if (map == NULL)
    return 0;
  if (!cJSON_IsObject(map))
    return CO_EPARSE;
  if (cJSON_GetArraySize(map) > CO_CWL_MAX_MATCH_LABELS)
    return CO_ETOOBIG;
  co_buf_t b;
  co_buf_init(&b, KV_MAX);
  uint32_t n = 0;
  int rc = 0;
  const cJSON *it;
  cJSON_ArrayForEach(it, map) {
    if (!cJSON_IsString(it) || it->string == NULL) {
      rc = CO_EPARSE;
      break;
    }
    if (strchr(it->string, '=') != NULL) {
      /* Cannot be stored as "k=v" and no label key can contain '=': never matches. */
      cr->selector_bad_label_key = 1;
      continue;
    }
    if (co_buf_appendf(&b, "%s=%s", it->string, it->valuestring) != 0 ||
        co_buf_append(&b, "", 1) != 0) {
      rc = CO_ETOOBIG;
      break;
    }
    n++;
  }
  if (rc != 0 || n == 0) {
    co_buf_free(&b);
    return rc;
  }
  cr->match_labels.data = co_buf_steal(&b); /* its NUL ends the block */
  co_buf_free(&b);
  return 0;
}

static co_sel_op_t parse_op(const char *s) {
  if (strcmp(s, "In") == 0)
    return CO_SEL_OP_IN;
  if (strcmp(s, "NotIn") == 0)
    return CO_SEL_OP_NOT_IN;
  if (strcmp(s, "Exists") == 0)
    return CO_SEL_OP_EXISTS;
  if (strcmp(s, "DoesNotExist") == 0)
    return CO_SEL_OP_DOES_NOT_EXIST;
  return CO_SEL_OP_INVALID;
}

static int decode_expr(const cJSON *o, co_sel_expr_t *e) {
  if (!cJSON_IsObject(o))
    return CO_EPARSE;
  int rc = get_str(o, "key", "", &e->key);
  if (rc != 0)
    return rc;
  const cJSON *op = field(o, "operator");
  if (op != NULL && !cJSON_IsString(op))
    return CO_EPARSE;
  e->op = op != NULL ? parse_op(op->valuestring) : CO_SEL_OP_INVALID;
  const cJSON *vals = field(o, "values");
  if (vals == NULL)
    return 0;
  if (!cJSON_IsArray(vals))
    return CO_EPARSE;
  int n = cJSON_GetArraySize(vals);
  if (n > CO_CWL_MAX_VALUES)
    return CO_ETOOBIG;
  if (n == 0)
    return 0;
  e->values = co_calloc((size_t)n, sizeof(char *));
  e->n_values = (uint32_t)n;
  uint32_t i = 0;
  const cJSON *v;
  cJSON_ArrayForEach(v, vals) {
    if (!cJSON_IsString(v))
      return CO_EPARSE;
    e->values[i++] = co_strdup(v->valuestring);
  }
  return 0;
}

static int decode_selector(const cJSON *sel, co_cwl_t *cr) {
  if (sel == NULL)
    return 0;
  if (!cJSON_IsObject(sel))
    return CO_EPARSE;
  cr->has_selector = 1;
  int rc = decode_match_labels(field(sel, "matchLabels"), cr);
  if (rc != 0)
    return rc;
  const cJSON *exprs = field(sel, "matchExpressions");
  if (exprs == NULL)
    return 0;
  if (!cJSON_IsArray(exprs))
    return CO_EPARSE;
  int n = cJSON_GetArraySize(exprs);
  if (n > CO_CWL_MAX_EXPRESSIONS)
    return CO_ETOOBIG;
  if (n == 0)
    return 0;
  cr->exprs = co_calloc((size_t)n, sizeof(*cr->exprs));
  cr->n_exprs = (uint32_t)n;
  uint32_t i = 0;
  const cJSON *e;
  cJSON_ArrayForEach(e, exprs) {
    if ((rc = decode_expr(e, &cr->exprs[i++])) != 0)
      return rc;
  }
  return 0;
}

static int decode_target_refs(const cJSON *refs, co_cwl_t *cr) {
  if (refs == NULL)
    return 0;
  if (!cJSON_IsArray(refs))
    return CO_EPARSE;
  int n = cJSON_GetArraySize(refs);
  if (n > CO_CWL_MAX_TARGET_REFS)
    return CO_ETOOBIG;
  if (n == 0)
    return 0;
  cr->target_refs = co_calloc((size_t)n, sizeof(*cr->target_refs));
  cr->n_target_refs = (uint32_t)n;
  uint32_t i = 0;
  const cJSON *r;
  cJSON_ArrayForEach(r, refs) {
    co_target_ref_t *t = &cr->target_refs[i++];
    if (!cJSON_IsObject(r))
      return CO_EPARSE;
    int rc = get_str(r, "kind", "", &t->kind);
    if (rc == 0)
      rc = get_str(r, "name", "", &t->name);
    if (rc != 0)
      return rc;
  }
  return 0;
}

static int decode_hardening(const cJSON *h, co_cwl_t *cr) {
  cr->automount_sa_token = -1;
  if (h == NULL) {
    cr->empty_dir_size_limit = co_strdup(CO_CWL_DEFAULT_EMPTYDIR_LIMIT);
    return 0;
  }
  if (!cJSON_IsObject(h))
    return CO_EPARSE;
  cr->has_hardening = 1;
  int rc = get_bool(h, "memoryBackedEmptyDirs", 0, &cr->memory_backed_empty_dirs);
  if (rc == 0)
    rc = get_bool(h, "automountServiceAccountToken", -1, &cr->automount_sa_token);
  if (rc != 0)
    return rc;
  const cJSON *lim = field(h, "emptyDirSizeLimit");
  if (cJSON_IsNumber(lim)) {
    int64_t bytes;
    if ((rc = as_int(lim, &bytes)) != 0)
      return rc;
    char num[32];
    snprintf(num, sizeof(num), "%lld", (long long)bytes);
    cr->empty_dir_size_limit = co_strdup(num);
    return 0;
  }
  return get_str(h, "emptyDirSizeLimit", CO_CWL_DEFAULT_EMPTYDIR_LIMIT, &cr->empty_dir_size_limit);
}

static int decode_spec(const cJSON *spec, co_cwl_t *cr) {
  cr->on_failure = CO_ON_FAILURE_HOLD;
  cr->revert_after_s = CO_CWL_DEFAULT_REVERT_AFTER_S;
  if (spec != NULL && !cJSON_IsObject(spec))
    return CO_EPARSE;
  int rc = get_str(spec, "runtimeClassName", NULL, &cr->runtime_class);
  if (rc == 0)
    rc = decode_selector(field(spec, "selector"), cr);
  if (rc == 0)
    rc = decode_target_refs(field(spec, "targetRefs"), cr);
  if (rc == 0)
    rc = decode_hardening(field(spec, "hardening"), cr);
  if (rc != 0)
    return rc;
  const cJSON *of = field(spec, "onFailure");
  if (of != NULL) {
    if (!cJSON_IsString(of))
      return CO_EPARSE;
    if (strcmp(of->valuestring, "Hold") == 0)
      cr->on_failure = CO_ON_FAILURE_HOLD;
    else if (strcmp(of->valuestring, "Revert") == 0)
      cr->on_failure = CO_ON_FAILURE_REVERT;
    else
      cr->on_failure = CO_ON_FAILURE_INVALID;
  }
  const cJSON *ra = field(spec, "revertAfterSeconds");
  if (ra != NULL && (rc = as_int(ra, &cr->revert_after_s)) != 0)
    return rc;
  return 0;
}

static int cwl_decode(const cJSON *obj, co_obj_t *out) {
  co_cwl_t *cr = (co_cwl_t *)out;
  const cJSON *md = field(obj, "metadata");
  const cJSON *fins = field(md, "finalizers");
  if (fins != NULL) {
    if (!cJSON_IsArray(fins))
      return CO_EPARSE;
    const cJSON *f;
    cJSON_ArrayForEach(f, fins) {
      if (!cJSON_IsString(f))
        return CO_EPARSE;
      if (strcmp(f->valuestring, CO_CWL_FINALIZER) == 0 && !cr->has_finalizer) {
        cr->has_finalizer = 1;
        cr->finalizer_index = (int)cr->n_finalizers;
      }
      cr->n_finalizers++;
    }
  }
  int rc = decode_spec(field(obj, "spec"), cr);
  if (rc != 0)
    return rc;
  /* Status is the operator's own output: a malformed value reads as absent (and is rewritten)
   * rather than hiding the CR from the controller. */
  int64_t og;
  if (as_int(field(field(obj, "status"), "observedGeneration"), &og) == 0 && og > 0)
    cr->status_observed_generation = og;
  return 0;
}

static void cwl_release(co_obj_t *o) {
  co_cwl_t *cr = (co_cwl_t *)o;
  co_free(cr->runtime_class);
  co_free(cr->match_labels.data);
  for (uint32_t i = 0; i < cr->n_exprs; i++) {
    co_sel_expr_t *e = &cr->exprs[i];
    co_free(e->key);
    for (uint32_t j = 0; j < e->n_values; j++)
      co_free(e->values[j]);
    co_free(e->values);
  }
  co_free(cr->exprs);
  for (uint32_t i = 0; i < cr->n_target_refs; i++) {
    co_free(cr->target_refs[i].kind);
    co_free(cr->target_refs[i].name);
  }
  co_free(cr->target_refs);
  co_free(cr->empty_dir_size_limit);
  cr->runtime_class = NULL;
  memset(&cr->match_labels, 0, sizeof(cr->match_labels));
  cr->exprs = NULL;
  cr->n_exprs = 0;
  cr->target_refs = NULL;
  cr->n_target_refs = 0;
  cr->empty_dir_size_limit = NULL;
}

static int expr_equal(const co_sel_expr_t *a, const co_sel_expr_t *b) {
  if (a->op != b->op || a->n_values != b->n_values || !str_equal(a->key, b->key))
    return 0;
  for (uint32_t i = 0; i < a->n_values; i++)
    if (!str_equal(a->values[i], b->values[i]))
      return 0;
  return 1;
}

static int cwl_equal(const co_obj_t *a, const co_obj_t *b) {
  const co_cwl_t *x = (const co_cwl_t *)a, *y = (const co_cwl_t *)b;
  if (!str_equal(x->runtime_class, y->runtime_class) || x->has_selector != y->has_selector ||
      x->selector_bad_label_key != y->selector_bad_label_key ||
      !co_kv_equal(&x->match_labels, &y->match_labels) || x->n_exprs != y->n_exprs ||
      x->n_target_refs != y->n_target_refs || x->on_failure != y->on_failure ||
      x->revert_after_s != y->revert_after_s || x->has_hardening != y->has_hardening ||
      x->memory_backed_empty_dirs != y->memory_backed_empty_dirs ||
      !str_equal(x->empty_dir_size_limit, y->empty_dir_size_limit) ||
      x->automount_sa_token != y->automount_sa_token || x->has_finalizer != y->has_finalizer ||
      x->finalizer_index != y->finalizer_index || x->n_finalizers != y->n_finalizers ||
      x->status_observed_generation != y->status_observed_generation)
    return 0;
  for (uint32_t i = 0; i < x->n_exprs; i++)
    if (!expr_equal(&x->exprs[i], &y->exprs[i]))
      return 0;
  for (uint32_t i = 0; i < x->n_target_refs; i++)
    if (!str_equal(x->target_refs[i].kind, y->target_refs[i].kind) ||
        !str_equal(x->target_refs[i].name, y->target_refs[i].name))
      return 0;
  return 1;
}

const co_resource_type_t co_type_cwl = {"confidentialworkloads",
                                        "/apis/" CO_CWL_GROUP "/" CO_CWL_VERSION
                                        "/confidentialworkloads",
                                        sizeof(co_cwl_t),
                                        cwl_decode,
                                        cwl_release,
                                        cwl_equal,
                                        NULL};

/* ---- names ----------------------------------------------------------------------------- */

const char *co_sel_op_name(co_sel_op_t op) {
  switch (op) {
  case CO_SEL_OP_IN:
    return "In";
  case CO_SEL_OP_NOT_IN:
    return "NotIn";
  case CO_SEL_OP_EXISTS:
    return "Exists";
  case CO_SEL_OP_DOES_NOT_EXIST:
    return "DoesNotExist";
  case CO_SEL_OP_INVALID:
    break;
  }
  return "Invalid";
}

const char *co_on_failure_name(co_on_failure_t f) {
  return f == CO_ON_FAILURE_REVERT ? "Revert" : "Hold";
}

/* ---- selector -------------------------------------------------------------------------- */

/* Why a requirement makes the selector invalid (static text), or NULL when it is valid. */
static const char *expr_problem(const co_sel_expr_t *e) {
  if (e->key == NULL || !valid_label_key(e->key, strlen(e->key)))
    return "key is not a valid label key";
  switch (e->op) {
  case CO_SEL_OP_IN:
  case CO_SEL_OP_NOT_IN:
    if (e->n_values == 0)
      return "needs at least one value";
    for (uint32_t i = 0; i < e->n_values; i++)
      if (!valid_label_value(e->values[i]))
        return "has a value that is not a valid label value";
    return NULL;
  case CO_SEL_OP_EXISTS:
  case CO_SEL_OP_DOES_NOT_EXIST:
    return e->n_values > 0 ? "must not have values" : NULL;
  case CO_SEL_OP_INVALID:
    break;
  }
  return "operator is not In, NotIn, Exists or DoesNotExist";
}

/* The first matchLabels pair with an invalid key or value, or NULL. */
static const char *bad_match_label(const co_cwl_t *cr) {
  CO_KV_FOREACH(&cr->match_labels, p) {
    const char *eq = strchr(p, '=');
    if (eq == NULL || !valid_label_key(p, (size_t)(eq - p)) || !valid_label_value(eq + 1))
      return p;
  }
  return NULL;
}

static int value_in(const co_sel_expr_t *e, const char *v) {
  for (uint32_t i = 0; i < e->n_values; i++)
    if (strcmp(e->values[i], v) == 0)
      return 1;
  return 0;
}

int co_selector_matches(const co_cwl_t *cr, const co_kv_t *labels) {
  if (cr == NULL || !cr->has_selector || cr->selector_bad_label_key || bad_match_label(cr) != NULL)
    return 0;
  for (uint32_t i = 0; i < cr->n_exprs; i++)
    if (expr_problem(&cr->exprs[i]) != NULL)
      return 0;
  CO_KV_FOREACH(&cr->match_labels, p) {
    const char *eq = strchr(p, '='); /* present: checked by bad_match_label */
    const char *v = co_kv_getn(labels, p, (size_t)(eq - p));
    if (v == NULL || strcmp(v, eq + 1) != 0)
      return 0;
  }
  for (uint32_t i = 0; i < cr->n_exprs; i++) {
    const co_sel_expr_t *e = &cr->exprs[i];
    const char *v = co_kv_getn(labels, e->key, strlen(e->key));
    int ok = 0;
    switch (e->op) {
    case CO_SEL_OP_IN:
      ok = v != NULL && value_in(e, v);
      break;
    case CO_SEL_OP_NOT_IN:
      ok = v == NULL || !value_in(e, v);
      break;
    case CO_SEL_OP_EXISTS:
      ok = v != NULL;
      break;
    case CO_SEL_OP_DOES_NOT_EXIST:
      ok = v == NULL;
      break;
    case CO_SEL_OP_INVALID:
      break;
    }
    if (!ok)
      return 0;
  }
  return 1;
}

static int selector_empty(const co_cwl_t *cr) {
  return cr->match_labels.data == NULL && cr->n_exprs == 0 && !cr->selector_bad_label_key;
}

int co_cwl_refs(const co_cwl_t *cr, const char *kind, const char *name) {
  if (cr == NULL || kind == NULL || name == NULL)
    return 0;
  for (uint32_t i = 0; i < cr->n_target_refs; i++)
    if (str_equal(cr->target_refs[i].kind, kind) && str_equal(cr->target_refs[i].name, name))
      return 1;
  return 0;
}

int co_cwl_targets(const co_cwl_t *cr, const char *kind, const char *ns, const char *name,
                   const co_kv_t *labels) {
  if (cr == NULL || ns == NULL || strcmp(cr->meta.ns != NULL ? cr->meta.ns : "", ns) != 0)
    return 0;
  if (co_cwl_refs(cr, kind, name))
    return 1;
  return cr->has_selector && !selector_empty(cr) && co_selector_matches(cr, labels);
}

/* ---- validation ------------------------------------------------------------------------ */

typedef struct {
  char *p;
  size_t cap, len;
  int n;
} msg_t;

static void addf(msg_t *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void addf(msg_t *m, const char *fmt, ...) {
  m->n++;
  if (m->p == NULL || m->len + 1 >= m->cap)
    return;
  if (m->n > 1) {
    int w = snprintf(m->p + m->len, m->cap - m->len, "; ");
    m->len += (size_t)w < m->cap - m->len ? (size_t)w : m->cap - m->len - 1;
  }
  va_list ap;
  va_start(ap, fmt);
  int w = vsnprintf(m->p + m->len, m->cap - m->len, fmt, ap);
  va_end(ap);
  if (w > 0)
    m->len += (size_t)w < m->cap - m->len ? (size_t)w : m->cap - m->len - 1;
}

/* The pattern of spec.hardening.emptyDirSizeLimit: ^[1-9][0-9]*(Ki|Mi|Gi)?$ */
static int valid_size_limit(const char *s) {
  if (s == NULL || s[0] < '1' || s[0] > '9')
    return 0;
  size_t i = 1;
  while (s[i] >= '0' && s[i] <= '9')
    i++;
  if (s[i] == '\0')
    return 1;
  return (s[i] == 'K' || s[i] == 'M' || s[i] == 'G') && s[i + 1] == 'i' && s[i + 2] == '\0';
}

static void validate_class(const co_cwl_t *cr, const char *const *allowed, size_t n_allowed,
                           msg_t *m) {
  const char *c = cr->runtime_class;
  if (c == NULL || c[0] == '\0') {
    addf(m, "spec.runtimeClassName is required");
    return;
  }
  if (strcmp(c, "auto") == 0) {
    if (n_allowed == 0)
      addf(m, "spec.runtimeClassName auto: no sandbox RuntimeClass is enabled in this cluster");
    return;
  }
  for (size_t i = 0; i < n_allowed; i++)
    if (allowed[i] != NULL && strcmp(allowed[i], c) == 0)
      return;
  char list[256] = "none";
  size_t len = 0;
  for (size_t i = 0; i < n_allowed && len + 1 < sizeof(list); i++) {
    if (allowed[i] == NULL)
      continue;
    int w = snprintf(list + len, sizeof(list) - len, "%s%s", len ? ", " : "", allowed[i]);
    if (w < 0)
      break;
    len += (size_t)w < sizeof(list) - len ? (size_t)w : sizeof(list) - len - 1;
  }
  addf(m, "spec.runtimeClassName \"%.64s\" is not enabled in this cluster (enabled: %s)", c, list);
}

static void validate_selector(const co_cwl_t *cr, msg_t *m) {
  if (!cr->has_selector)
    return;
  if (selector_empty(cr)) {
    addf(m, "spec.selector must not be empty; use matchLabels or targetRefs");
    return;
  }
  if (cr->selector_bad_label_key)
    addf(m, "spec.selector.matchLabels has a key containing '=' that no label can carry; the "
            "selector never matches");
  const char *p = bad_match_label(cr);
  if (p != NULL) {
    addf(m,
         "spec.selector.matchLabels \"%.80s\" is not a valid label key/value pair; the selector "
         "never matches",
         p);
  }
  for (uint32_t i = 0; i < cr->n_exprs; i++) {
    const co_sel_expr_t *e = &cr->exprs[i];
    const char *why = expr_problem(e);
    if (why != NULL)
      addf(m,
           "spec.selector.matchExpressions[%u] (key \"%.64s\", operator %s) %s; the selector "
           "never matches",
           (unsigned)i, e->key != NULL ? e->key : "", co_sel_op_name(e->op), why);
  }
}

static void validate_target_refs(const co_cwl_t *cr, msg_t *m) {
  for (uint32_t i = 0; i < cr->n_target_refs; i++) {
    const co_target_ref_t *t = &cr->target_refs[i];
    if (strcmp(t->kind, "Deployment") != 0 && strcmp(t->kind, "StatefulSet") != 0)
      addf(m, "spec.targetRefs[%u].kind \"%.32s\" is not Deployment or StatefulSet", (unsigned)i,
           t->kind);
    if (!valid_subdomain(t->name, strlen(t->name)))
      addf(m, "spec.targetRefs[%u].name \"%.64s\" is not a valid object name", (unsigned)i,
           t->name);
    for (uint32_t j = 0; j < i; j++) {
      if (strcmp(t->kind, cr->target_refs[j].kind) == 0 &&
          strcmp(t->name, cr->target_refs[j].name) == 0) {
        addf(m, "spec.targetRefs[%u] duplicates spec.targetRefs[%u] (%.32s/%.64s)", (unsigned)i,
             (unsigned)j, t->kind, t->name);
        break;
      }
    }
  }
}

int co_cwl_validate(const co_cwl_t *cr, const char *const *allowed, size_t n_allowed, char *msg,
                    size_t msglen) {
  msg_t m = {msglen > 0 ? msg : NULL, msglen, 0, 0};
  if (m.p != NULL)
    m.p[0] = '\0';
  if (cr == NULL) {
    addf(&m, "no object");
    return CO_EINVAL;
  }
  validate_class(cr, allowed, n_allowed, &m);
  if (!cr->has_selector && cr->n_target_refs == 0)
    addf(&m, "spec must set selector or targetRefs (or both)");
  validate_selector(cr, &m);
  validate_target_refs(cr, &m);
  if (cr->on_failure == CO_ON_FAILURE_INVALID)
    addf(&m, "spec.onFailure must be Hold or Revert");
  if (cr->revert_after_s < CO_CWL_MIN_REVERT_AFTER_S ||
      cr->revert_after_s > CO_CWL_MAX_REVERT_AFTER_S)
    addf(&m, "spec.revertAfterSeconds must be between %d and %d (got %lld)",
         CO_CWL_MIN_REVERT_AFTER_S, CO_CWL_MAX_REVERT_AFTER_S, (long long)cr->revert_after_s);
  if (!valid_size_limit(cr->empty_dir_size_limit))
    addf(&m,
         "spec.hardening.emptyDirSizeLimit \"%.32s\" must be a positive number of bytes or of Ki, "
         "Mi or Gi",
         cr->empty_dir_size_limit != NULL ? cr->empty_dir_size_limit : "");
  return m.n > 0 ? CO_EINVAL : 0;
}
