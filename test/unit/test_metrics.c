/* Metrics registry: registration rules, counters/gauges/histograms, the exact exposition text,
 * escaping, the series bound, collectors. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "co/alloc.h"
#include "co/buf.h"
#include "co/error.h"
#include "co/metrics.h"
#include "co/ops.h"
#include "co_test.h"

static char *render(void) {
  co_buf_t b;
  co_buf_init(&b, 1 << 20);
  CO_CHECK_INT(co_metrics_render(&b), ==, 0);
  return co_buf_steal(&b);
}

static void test_register(void) {
  static const char *const l1[] = {"a", NULL}, *const l2[] = {"b", NULL};
  co_metric_t *m = co_metric_register("t_total", "help", CO_METRIC_COUNTER, l1, NULL, 0);
  CO_CHECK(m != NULL);
  CO_CHECK(co_metric_register("t_total", "other help", CO_METRIC_COUNTER, l1, NULL, 0) == m);
  CO_CHECK(co_metric_register("t_total", "help", CO_METRIC_GAUGE, l1, NULL, 0) == NULL);
  CO_CHECK(co_metric_register("t_total", "help", CO_METRIC_COUNTER, l2, NULL, 0) == NULL);
  CO_CHECK(co_metric_register("t_total", "help", CO_METRIC_COUNTER, NULL, NULL, 0) == NULL);
  CO_CHECK(co_metric_register("h", "help", CO_METRIC_HISTOGRAM, NULL, NULL, 0) == NULL);
  static const char *const four[] = {"a", "b", "c", "d", NULL};
  CO_CHECK(co_metric_register("x", "help", CO_METRIC_GAUGE, four, NULL, 0) == NULL);
  co_metric_add(NULL, NULL, 1); /* ignored */
  co_metrics_free_all();
}

static void test_render_exact(void) {
  static const char *const vc[] = {"verb", "code", NULL};
  static const double bounds[] = {0.1, 1};
  co_metric_t *c = co_metric_register("req_total", "Requests.", CO_METRIC_COUNTER, vc, NULL, 0);
  co_metric_t *g = co_metric_register("depth", "Depth.", CO_METRIC_GAUGE, NULL, NULL, 0);
  co_metric_t *h =
      co_metric_register("lat_seconds", "Latency.", CO_METRIC_HISTOGRAM, NULL, bounds, 2);
  co_metric_add(c, (const char *const[]){"GET", "200"}, 1);
  co_metric_add(c, (const char *const[]){"GET", "200"}, 2);
  co_metric_add(c, (const char *const[]){"PATCH", "0"}, 1);
  co_metric_set(g, NULL, 7);
  co_metric_set(g, NULL, 5);
  co_metric_observe(h, NULL, 0.05);
  co_metric_observe(h, NULL, 0.5);
  co_metric_observe(h, NULL, 3);
  co_metric_observe(c, NULL, 1); /* wrong type: ignored */
  CO_CHECK(co_metric_value(c, (const char *const[]){"GET", "200"}) == 3);
  CO_CHECK(co_metric_value(c, (const char *const[]){"GET", "404"}) == 0);
  CO_CHECK(co_metric_value(h, NULL) == 3);
  char *out = render();
  CO_CHECK_STR(out, "# HELP req_total Requests.\n"
                    "# TYPE req_total counter\n"
                    "req_total{verb=\"GET\",code=\"200\"} 3\n"
                    "req_total{verb=\"PATCH\",code=\"0\"} 1\n"
                    "# HELP depth Depth.\n"
                    "# TYPE depth gauge\n"
                    "depth 5\n"
                    "# HELP lat_seconds Latency.\n"
                    "# TYPE lat_seconds histogram\n"
                    "lat_seconds_bucket{le=\"0.1\"} 1\n"
                    "lat_seconds_bucket{le=\"1\"} 2\n"
                    "lat_seconds_bucket{le=\"+Inf\"} 3\n"
                    "lat_seconds_sum 3.5499999999999998\n"
                    "lat_seconds_count 3\n"
                    "# HELP confidential_operator_metrics_dropped_series_total Label sets dropped "
                    "because a metric had too many.\n"
                    "# TYPE confidential_operator_metrics_dropped_series_total counter\n"
                    "confidential_operator_metrics_dropped_series_total 0\n");
  co_free(out);
  co_metrics_free_all();
}

static void test_escaping_and_bounds(void) {
  static const char *const l[] = {"v", NULL};
  co_metric_t *g = co_metric_register("g", "a \\ b\nc", CO_METRIC_GAUGE, l, NULL, 0);
  co_metric_set(g, (const char *const[]){"q\"u\\o\nte"}, NAN);
  co_metric_set(g, (const char *const[]){NULL}, INFINITY);
  char *out = render();
  CO_CHECK_CONTAINS(out, "# HELP g a \\\\ b\\nc\n");
  CO_CHECK_CONTAINS(out, "g{v=\"q\\\"u\\\\o\\nte\"} NaN\n");
  CO_CHECK_CONTAINS(out, "g{v=\"\"} +Inf\n");
  co_free(out);
  /* long values are cut; label sets beyond the bound are dropped and counted */
  char big[300];
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  co_metric_clear(g);
  co_metric_set(g, (const char *const[]){big}, 1);
  for (int i = 0; i < CO_METRIC_MAX_SERIES + 10; i++) {
    char v[16];
    snprintf(v, sizeof(v), "%d", i);
    co_metric_add(g, (const char *const[]){v}, 1);
  }
  out = render();
  char want[CO_METRIC_MAX_VALUE + 16];
  snprintf(want, sizeof(want), "g{v=\"%.*s\"} 1\n", CO_METRIC_MAX_VALUE, big);
  CO_CHECK_CONTAINS(out, want);
  CO_CHECK_CONTAINS(out, "confidential_operator_metrics_dropped_series_total 11\n");
  CO_CHECK(strstr(out, "g{v=\"510\"} 1\n") != NULL);
  CO_CHECK(strstr(out, "g{v=\"511\"}") == NULL);
  co_free(out);
  /* a full buffer is reported */
  co_buf_t small;
  co_buf_init(&small, 64);
  CO_CHECK_INT(co_metrics_render(&small), ==, CO_ETOOBIG);
  co_buf_free(&small);
  co_metrics_free_all();
}

static int collected;

static void collect(void *data) {
  collected++;
  co_metric_t *g =
      co_metric_register("live", "Set at scrape time.", CO_METRIC_GAUGE, NULL, NULL, 0);
  co_metric_set(g, NULL, *(int *)data);
}

static void test_collectors(void) {
  int v = 42;
  CO_CHECK_INT(co_metrics_add_collector(collect, &v), ==, 0);
  char *out = render();
  CO_CHECK_CONTAINS(out, "live 42\n");
  co_free(out);
  v = 43;
  out = render();
  CO_CHECK_CONTAINS(out, "live 43\n");
  co_free(out);
  co_metrics_remove_collector(collect, &v);
  v = 44;
  out = render();
  CO_CHECK_CONTAINS(out, "live 43\n");
  co_free(out);
  CO_CHECK_INT(collected, ==, 2);
  co_metrics_free_all();
}

static void test_operator_helpers(void) {
  co_metrics_init_operator("1.2.3", "abc");
  char *first = render();
  CO_CHECK_CONTAINS(first, "# TYPE confidential_operator_api_requests_total counter\n");
  CO_CHECK_CONTAINS(first, "confidential_operator_reconciles_total{result=\"error\"} 0\n");
  CO_CHECK_CONTAINS(first,
                    "confidential_operator_reconcile_duration_seconds_bucket{le=\"+Inf\"} 0\n");
  CO_CHECK_CONTAINS(first, "confidential_operator_reconcile_duration_seconds_count 0\n");
  co_free(first);
  co_metrics_api_request("PATCH", 200);
  co_metrics_api_request("PATCH", 200);
  co_metrics_api_request("GET", 0);
  co_metrics_reconcile(0, 0.002);
  co_metrics_reconcile(1, 20);
  char *out = render();
  CO_CHECK_CONTAINS(out,
                    "confidential_operator_api_requests_total{verb=\"PATCH\",code=\"200\"} 2\n");
  CO_CHECK_CONTAINS(out, "confidential_operator_api_requests_total{verb=\"GET\",code=\"0\"} 1\n");
  CO_CHECK_CONTAINS(out, "confidential_operator_reconciles_total{result=\"success\"} 1\n");
  CO_CHECK_CONTAINS(out, "confidential_operator_reconciles_total{result=\"error\"} 1\n");
  CO_CHECK_CONTAINS(out,
                    "confidential_operator_reconcile_duration_seconds_bucket{le=\"0.005\"} 1\n");
  CO_CHECK_CONTAINS(out, "confidential_operator_reconcile_duration_seconds_bucket{le=\"10\"} 1\n");
  CO_CHECK_CONTAINS(out,
                    "confidential_operator_reconcile_duration_seconds_bucket{le=\"+Inf\"} 2\n");
  CO_CHECK_CONTAINS(out, "confidential_operator_reconcile_duration_seconds_count 2\n");
  CO_CHECK_CONTAINS(out, "confidential_operator_build_info{version=\"1.2.3\",git=\"abc\"} 1\n");
  co_free(out);
  co_metrics_free_all();
}

/* The loop's turns: a callback that works 30 ms after the loop waited 150 ms idle counts as
 * one turn of 25-100 ms (the wait is not work), and closing ends the timing. */
static void on_done(uv_timer_t *t) {
  co_ops_close(t->data, NULL);
  uv_close((uv_handle_t *)t, NULL);
}

static void on_work(uv_timer_t *t) {
  uint64_t end = uv_hrtime() + 30 * 1000000ull;
  while (uv_hrtime() < end)
    ;
  uv_timer_start(t, on_done, 20, 0);
}

static long long bucket(const char *text, const char *le) {
  char pat[128];
  snprintf(pat, sizeof(pat), "confidential_operator_loop_busy_seconds_bucket{le=\"%s\"} ", le);
  const char *p = strstr(text, pat);
  return p != NULL ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

static void test_loop_turns(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  co_ops_t ops;
  CO_CHECK_INT(co_ops_init(&loop, &ops), ==, 0);
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  t.data = &ops;
  uv_timer_start(&t, on_work, 150, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CO_CHECK_INT(uv_loop_close(&loop), ==, 0);
  char *out = render();
  long long all = bucket(out, "+Inf");
  CO_CHECK_INT(all, >=, 1);
  CO_CHECK_INT(bucket(out, "0.025"), ==, all - 1); /* the working turn */
  CO_CHECK_INT(bucket(out, "0.1"), ==, all);       /* without the 150 ms idle wait */
  co_free(out);
  co_metrics_free_all();
}

CO_TEST_MAIN(CO_TEST(test_register), CO_TEST(test_render_exact), CO_TEST(test_escaping_and_bounds),
             CO_TEST(test_collectors), CO_TEST(test_operator_helpers), CO_TEST(test_loop_turns))
