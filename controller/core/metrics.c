/* Metrics registry and Prometheus text rendering. Few families with few label sets each, so
 * lookups are linear scans over small arrays. */
#include "co/metrics.h"

#include <math.h>
#include <string.h>

#include "co/alloc.h"
#include "co/error.h"
#include "co/log.h"

#define MAX_COLLECTORS 8
#define DROPPED_NAME "confidential_operator_metrics_dropped_series_total"

typedef struct {
  char *values[CO_METRIC_MAX_LABELS]; /* owned */
  double value;                       /* counter, gauge; histogram: sum */
  unsigned long long count;           /* histogram */
  unsigned long long *buckets;        /* histogram: per bucket, not cumulative */
} series_t;

struct co_metric_s {
  const char *name;
  const char *help;
  co_metric_type_t type;
  const char *labels[CO_METRIC_MAX_LABELS];
  size_t nlabels;
  double bounds[CO_METRIC_MAX_BUCKETS];
  size_t nbounds;
  series_t *series;
  size_t nseries, cap;
};

static co_metric_t *families[CO_METRICS_MAX_FAMILIES];
static size_t nfamilies;
static struct {
  co_metrics_collect_cb cb;
  void *data;
} collectors[MAX_COLLECTORS];
static size_t ncollectors;
static unsigned long long dropped;

co_metric_t *co_metric_register(const char *name, const char *help, co_metric_type_t type,
                                const char *const *labels, const double *buckets, size_t nbuckets) {
  size_t nl = 0;
  while (labels != NULL && labels[nl] != NULL)
    nl++;
  if (name == NULL || help == NULL || nl > CO_METRIC_MAX_LABELS ||
      (type == CO_METRIC_HISTOGRAM && (nbuckets == 0 || nbuckets > CO_METRIC_MAX_BUCKETS)))
    return NULL;
  for (size_t i = 0; i < nfamilies; i++) {
    co_metric_t *m = families[i];
    if (strcmp(m->name, name) != 0)
      continue;
    if (m->type != type || m->nlabels != nl)
      return NULL;
    for (size_t j = 0; j < nl; j++)
      if (strcmp(m->labels[j], labels[j]) != 0)
        return NULL;
    return m;
  }
  if (nfamilies == CO_METRICS_MAX_FAMILIES)
    return NULL;
  co_metric_t *m = co_calloc(1, sizeof(*m));
  m->name = name;
  m->help = help;
  m->type = type;
  m->nlabels = nl;
  for (size_t j = 0; j < nl; j++)
    m->labels[j] = labels[j];
  if (type == CO_METRIC_HISTOGRAM) {
    memcpy(m->bounds, buckets, nbuckets * sizeof(double));
    m->nbounds = nbuckets;
  }
  families[nfamilies++] = m;
  return m;
}

static int same_values(const co_metric_t *m, const series_t *s, const char *const *values) {
  for (size_t i = 0; i < m->nlabels; i++) {
    const char *v = values[i] != NULL ? values[i] : "";
    if (strncmp(s->values[i], v, CO_METRIC_MAX_VALUE) != 0)
      return 0;
  }
  return 1;
}

/* Returns the label set's series, created on first use, or NULL when the family is full. */
static series_t *series_get(co_metric_t *m, const char *const *values) {
  for (size_t i = 0; i < m->nseries; i++)
    if (same_values(m, &m->series[i], values))
      return &m->series[i];
  if (m->nseries == CO_METRIC_MAX_SERIES) {
    if (dropped++ == 0)
      co_log(CO_LOG_WARN, "metric label sets exceed the bound; dropping new ones",
             CO_S("metric", m->name));
    return NULL;
  }
  if (m->nseries == m->cap) {
    m->cap = m->cap ? m->cap * 2 : 8;
    m->series = co_realloc(m->series, m->cap * sizeof(series_t));
  }
  series_t *s = &m->series[m->nseries++];
  memset(s, 0, sizeof(*s));
  for (size_t i = 0; i < m->nlabels; i++) {
    const char *v = values[i] != NULL ? values[i] : "";
    s->values[i] = co_strndup(v, strnlen(v, CO_METRIC_MAX_VALUE));
  }
  if (m->type == CO_METRIC_HISTOGRAM)
    s->buckets = co_calloc(m->nbounds, sizeof(unsigned long long));
  return s;
}

void co_metric_add(co_metric_t *m, const char *const *values, double v) {
  if (m == NULL || m->type == CO_METRIC_HISTOGRAM)
    return;
  series_t *s = series_get(m, values);
  if (s != NULL)
    s->value += v;
}

void co_metric_set(co_metric_t *m, const char *const *values, double v) {
  if (m == NULL || m->type == CO_METRIC_HISTOGRAM)
    return;
  series_t *s = series_get(m, values);
  if (s != NULL)
    s->value = v;
}

void co_metric_observe(co_metric_t *m, const char *const *values, double v) {
  if (m == NULL || m->type != CO_METRIC_HISTOGRAM)
    return;
  series_t *s = series_get(m, values);
  if (s == NULL)
    return;
  s->value += v;
  s->count++;
  for (size_t i = 0; i < m->nbounds; i++)
    if (v <= m->bounds[i]) {
      s->buckets[i]++;
      break;
    }
}

static void series_free(series_t *s) {
  for (size_t i = 0; i < CO_METRIC_MAX_LABELS; i++)
    co_free(s->values[i]);
  co_free(s->buckets);
}

void co_metric_clear(co_metric_t *m) {
  if (m == NULL)
    return;
  for (size_t i = 0; i < m->nseries; i++)
    series_free(&m->series[i]);
  m->nseries = 0;
}

double co_metric_value(co_metric_t *m, const char *const *values) {
  if (m == NULL)
    return 0;
  for (size_t i = 0; i < m->nseries; i++)
    if (same_values(m, &m->series[i], values))
      return m->type == CO_METRIC_HISTOGRAM ? (double)m->series[i].count : m->series[i].value;
  return 0;
}

int co_metrics_add_collector(co_metrics_collect_cb cb, void *data) {
  if (cb == NULL)
    return CO_EINVAL;
  if (ncollectors == MAX_COLLECTORS)
    return CO_ETOOBIG;
  collectors[ncollectors].cb = cb;
  collectors[ncollectors].data = data;
  ncollectors++;
  return 0;
}

void co_metrics_remove_collector(co_metrics_collect_cb cb, void *data) {
  for (size_t i = 0; i < ncollectors; i++)
    if (collectors[i].cb == cb && collectors[i].data == data) {
      memmove(&collectors[i], &collectors[i + 1], (ncollectors - i - 1) * sizeof(collectors[0]));
      ncollectors--;
      return;
    }
}

/* ---- rendering ---- */

static int append_number(co_buf_t *out, double v) {
  if (isnan(v))
    return co_buf_appends(out, "NaN");
  if (isinf(v))
    return co_buf_appends(out, v > 0 ? "+Inf" : "-Inf");
  if (v == floor(v) && fabs(v) < 1e15)
    return co_buf_appendf(out, "%.0f", v);
  return co_buf_appendf(out, "%.17g", v);
}

/* Escapes \ and newline (HELP), and " too in label values. */
static int append_escaped(co_buf_t *out, const char *s, int quote) {
  int rc = 0;
  for (; *s != '\0' && rc == 0; s++) {
    if (*s == '\\')
      rc = co_buf_appends(out, "\\\\");
    else if (*s == '\n')
      rc = co_buf_appends(out, "\\n");
    else if (quote && *s == '"')
      rc = co_buf_appends(out, "\\\"");
    else
      rc = co_buf_append(out, s, 1);
  }
  return rc;
}

/* name{labels[,le="bound"]} */
static int append_series_name(co_buf_t *out, const co_metric_t *m, const series_t *s,
                              const char *suffix, const char *le) {
  int rc = co_buf_appendf(out, "%s%s", m->name, suffix);
  if (m->nlabels == 0 && le == NULL)
    return rc;
  if (rc == 0)
    rc = co_buf_appends(out, "{");
  for (size_t i = 0; i < m->nlabels && rc == 0; i++) {
    rc = co_buf_appendf(out, "%s%s=\"", i > 0 ? "," : "", m->labels[i]);
    if (rc == 0)
      rc = append_escaped(out, s->values[i], 1);
    if (rc == 0)
      rc = co_buf_appends(out, "\"");
  }
  if (rc == 0 && le != NULL)
    rc = co_buf_appendf(out, "%sle=\"%s\"", m->nlabels > 0 ? "," : "", le);
  if (rc == 0)
    rc = co_buf_appends(out, "}");
  return rc;
}

static int render_histogram(co_buf_t *out, const co_metric_t *m, const series_t *s) {
  int rc = 0;
  unsigned long long cum = 0;
  char le[32];
  for (size_t b = 0; b <= m->nbounds && rc == 0; b++) {
    if (b < m->nbounds) {
      cum += s->buckets[b];
      snprintf(le, sizeof(le), "%g", m->bounds[b]);
    } else {
      cum = s->count;
      snprintf(le, sizeof(le), "+Inf");
    }
    rc = append_series_name(out, m, s, "_bucket", le);
    if (rc == 0)
      rc = co_buf_appendf(out, " %llu\n", cum);
  }
  if (rc == 0)
    rc = append_series_name(out, m, s, "_sum", NULL);
  if (rc == 0)
    rc = co_buf_appends(out, " ");
  if (rc == 0)
    rc = append_number(out, s->value);
  if (rc == 0)
    rc = co_buf_appends(out, "\n");
  if (rc == 0)
    rc = append_series_name(out, m, s, "_count", NULL);
  if (rc == 0)
    rc = co_buf_appendf(out, " %llu\n", s->count);
  return rc;
}

static int render_family(co_buf_t *out, const co_metric_t *m) {
  static const char *types[] = {"counter", "gauge", "histogram"};
  int rc = co_buf_appendf(out, "# HELP %s ", m->name);
  if (rc == 0)
    rc = append_escaped(out, m->help, 0);
  if (rc == 0)
    rc = co_buf_appendf(out, "\n# TYPE %s %s\n", m->name, types[m->type]);
  for (size_t i = 0; i < m->nseries && rc == 0; i++) {
    const series_t *s = &m->series[i];
    if (m->type == CO_METRIC_HISTOGRAM) {
      rc = render_histogram(out, m, s);
      continue;
    }
    rc = append_series_name(out, m, s, "", NULL);
    if (rc == 0)
      rc = co_buf_appends(out, " ");
    if (rc == 0)
      rc = append_number(out, s->value);
    if (rc == 0)
      rc = co_buf_appends(out, "\n");
  }
  return rc;
}

int co_metrics_render(co_buf_t *out) {
  for (size_t i = 0; i < ncollectors; i++)
    collectors[i].cb(collectors[i].data);
  int rc = 0;
  for (size_t i = 0; i < nfamilies && rc == 0; i++)
    rc = render_family(out, families[i]);
  if (rc == 0)
    rc = co_buf_appendf(out,
                        "# HELP " DROPPED_NAME " Label sets dropped because a metric had too "
                        "many.\n# TYPE " DROPPED_NAME " counter\n" DROPPED_NAME " %llu\n",
                        dropped);
  return rc;
}

void co_metrics_free_all(void) {
  for (size_t i = 0; i < nfamilies; i++) {
    co_metric_clear(families[i]);
    co_free(families[i]->series);
    co_free(families[i]);
  }
  nfamilies = 0;
  ncollectors = 0;
  dropped = 0;
}

/* ---- the operator's metrics ---- */

static co_metric_t *api_requests(void) {
  static const char *const labels[] = {"verb", "code", NULL};
  return co_metric_register(
      "confidential_operator_api_requests_total",
      "Requests to the Kubernetes API server by verb (HTTP method; APPLY: server-side apply) "
      "and response code (0: no response).",
      CO_METRIC_COUNTER, labels, NULL, 0);
}

static co_metric_t *reconciles(void) {
  static const char *const result[] = {"result", NULL};
  return co_metric_register("confidential_operator_reconciles_total",
                            "Reconciles by result (success, or error: retried with backoff).",
                            CO_METRIC_COUNTER, result, NULL, 0);
}

static co_metric_t *reconcile_seconds(void) {
  static const double bounds[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  return co_metric_register(
      "confidential_operator_reconcile_duration_seconds",
      "Time from a key leaving the work queue to its reconcile finishing (writes included).",
      CO_METRIC_HISTOGRAM, NULL, bounds, sizeof(bounds) / sizeof(bounds[0]));
}

void co_metrics_api_request(const char *verb, long code) {
  char c[16];
  snprintf(c, sizeof(c), "%ld", code);
  co_metric_add(api_requests(), (const char *const[]){verb, c}, 1);
}

void co_metrics_reconcile(int failed, double seconds) {
  co_metric_add(reconciles(), (const char *const[]){failed ? "error" : "success"}, 1);
  co_metric_observe(reconcile_seconds(), NULL, seconds);
}

void co_metrics_init_operator(const char *version, const char *git) {
  static const char *const labels[] = {"version", "git", NULL};
  co_metric_t *m =
      co_metric_register("confidential_operator_build_info", "Always 1; the labels tell the build.",
                         CO_METRIC_GAUGE, labels, NULL, 0);
  co_metric_set(m, (const char *const[]){version, git}, 1);
  /* every family from the first scrape on, with zeros where the label sets are known */
  api_requests();
  co_metric_add(reconciles(), (const char *const[]){"success"}, 0);
  co_metric_add(reconciles(), (const char *const[]){"error"}, 0);
  series_get(reconcile_seconds(), NULL);
}
