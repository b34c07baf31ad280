/* Process-wide metrics registry (counters, gauges, histograms with labels), rendered in the
 * Prometheus text exposition format (version 0.0.4). One loop, one thread: no locking.
 *
 * Bounded: at most CO_METRICS_MAX_FAMILIES families, CO_METRIC_MAX_LABELS labels per family,
 * CO_METRIC_MAX_SERIES label sets per family (further label sets are dropped and counted in
 * confidential_operator_metrics_dropped_series_total), label values cut at
 * CO_METRIC_MAX_VALUE bytes, CO_METRIC_MAX_BUCKETS histogram buckets.
 *
 * Families live until co_metrics_free_all; the pointers returned by co_metric_register are
 * borrowed from the registry and stay valid until then. */
#ifndef CO_METRICS_H
#define CO_METRICS_H

#include <stddef.h>

#include "co/buf.h"

#define CO_METRICS_MAX_FAMILIES 64
#define CO_METRIC_MAX_LABELS 3
#define CO_METRIC_MAX_SERIES 512
#define CO_METRIC_MAX_VALUE 128
#define CO_METRIC_MAX_BUCKETS 16

typedef enum { CO_METRIC_COUNTER, CO_METRIC_GAUGE, CO_METRIC_HISTOGRAM } co_metric_type_t;

typedef struct co_metric_s co_metric_t;

/* Registers a family, or returns the one already registered under name (whose type and
 * labels must match, else NULL). name and help are static strings (borrowed for the life of
 * the registry); labels is a NULL-terminated array of static label names (NULL: none).
 * buckets (histograms only; copied) are the ascending upper bounds without +Inf. Returns NULL
 * on invalid input or when the registry is full. */
co_metric_t *co_metric_register(const char *name, const char *help, co_metric_type_t type,
                                const char *const *labels, const double *buckets, size_t nbuckets);

/* values: one label value per label name, in order (borrowed, copied); NULL when the family
 * has no labels. Calls on a NULL family are ignored. */
void co_metric_add(co_metric_t *m, const char *const *values, double v);     /* counter, gauge */
void co_metric_set(co_metric_t *m, const char *const *values, double v);     /* gauge; counter
                                                                                 mirrored from a
                                                                                 monotonic source */
void co_metric_observe(co_metric_t *m, const char *const *values, double v); /* histogram */
/* Drops every label set of the family (gauges recomputed at scrape time). */
void co_metric_clear(co_metric_t *m);
/* Returns the current value of a counter or gauge label set (0 when absent); the observation
 * count of a histogram. */
double co_metric_value(co_metric_t *m, const char *const *values);

/* Called by co_metrics_render before rendering, to set gauges computed on demand. */
typedef void (*co_metrics_collect_cb)(void *data);
/* Returns 0, CO_ETOOBIG (too many collectors) or CO_EINVAL. */
int co_metrics_add_collector(co_metrics_collect_cb cb, void *data);
void co_metrics_remove_collector(co_metrics_collect_cb cb, void *data);

/* Runs the collectors and appends every family to out. Returns 0 or CO_ETOOBIG (out full). */
int co_metrics_render(co_buf_t *out);

/* Frees every family and collector (tests; the end of the process). */
void co_metrics_free_all(void);

/* ---- the operator's metrics, for one-line instrumentation ---- */

/* A response (or transport failure: code 0) to an API server request; verb is the HTTP
 * method, or APPLY for server-side apply (borrowed). */
void co_metrics_api_request(const char *verb, long code);
/* One reconcile finished: failed when it asked to be retried with backoff. */
void co_metrics_reconcile(int failed, double seconds);
/* Registers the operator's families (so that they show from the first scrape) and the build
 * info (version and git description, borrowed, copied). */
void co_metrics_init_operator(const char *version, const char *git);

#endif
