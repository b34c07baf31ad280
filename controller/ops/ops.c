/* /metrics, /healthz and /readyz on a co_http server. */
#include "co/ops.h"

#include <string.h>

#include "co/buf.h"
#include "co/error.h"
#include "co/log.h"
#include "co/metrics.h"

#define METRICS_MAX (8u * 1024 * 1024)

static const double turn_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.002,
                                     0.005,  0.01,    0.025,  0.1,   0.5};

static co_metric_t *m_turn(void) {
  return co_metric_register(
      "confidential_operator_loop_busy_seconds",
      "Work the event loop did between two waits for I/O: the longest a request (an admission "
      "review, a probe) arriving meanwhile waits before it is read.",
      CO_METRIC_HISTOGRAM, NULL, turn_bounds, sizeof(turn_bounds) / sizeof(turn_bounds[0]));
}

/* Just before the loop waits for I/O: the time since the previous wait began, minus the time
 * that wait blocked, is the work of one turn. */
static void on_turn(uv_prepare_t *h) {
  co_ops_t *ops = h->data;
  uint64_t now = uv_hrtime(), idle = uv_metrics_idle_time(h->loop);
  if (ops->turn_ns != 0 && now - ops->turn_ns >= idle - ops->idle_ns)
    co_metric_observe(m_turn(), NULL, (double)(now - ops->turn_ns - (idle - ops->idle_ns)) / 1e9);
  ops->turn_ns = now;
  ops->idle_ns = idle;
}

static void on_metrics(co_http_request_t *req, void *data) {
  co_buf_t out;
  co_buf_init(&out, METRICS_MAX);
  int rc = co_metrics_render(&out);
  if (rc != 0) {
    co_log(CO_LOG_ERROR, "cannot render metrics", CO_E(rc));
    co_http_respond(req, 500, "text/plain", "metrics too large\n", 18);
  } else {
    co_http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", co_buf_str(&out),
                    out.len);
  }
  co_buf_free(&out);
}

/* Answered from the loop: an answer means the loop runs. */
static void on_healthz(co_http_request_t *req, void *data) {
  co_http_respond(req, 200, "text/plain", "ok\n", 3);
}

static void on_readyz(co_http_request_t *req, void *data) {
  co_ops_t *ops = data;
  char body[2048];
  size_t n = 0;
  int ready = 1;
  for (size_t i = 0; i < ops->nchecks; i++) {
    char why[256] = "";
    int ok = ops->checks[i].cb(ops->checks[i].data, why, sizeof(why));
    ready = ready && ok;
    int w = snprintf(body + n, sizeof(body) - n, "[%s]%s %s%s%s\n", ok ? "+" : "-",
                     ops->checks[i].name, ok ? "ok" : "failed", why[0] ? ": " : "", why);
    if (w > 0 && (size_t)w < sizeof(body) - n)
      n += (size_t)w;
  }
  int w = snprintf(body + n, sizeof(body) - n, "%s\n", ready ? "ok" : "not ready");
  if (w > 0 && (size_t)w < sizeof(body) - n)
    n += (size_t)w;
  co_http_respond(req, ready ? 200 : 503, "text/plain", body, n);
}

int co_ops_init(uv_loop_t *loop, co_ops_t *ops) {
  memset(ops, 0, sizeof(*ops));
  int rc = co_http_server_init(loop, &ops->http);
  if (rc != 0)
    return rc;
  ops->http.data = ops;
  co_http_server_route(&ops->http, "/metrics", NULL, on_metrics, ops);
  co_http_server_route(&ops->http, "/healthz", NULL, on_healthz, ops);
  co_http_server_route(&ops->http, "/readyz", NULL, on_readyz, ops);
  m_turn();
  /* Idle time is only accounted when asked for; an older libuv without it leaves the metric
   * counting whole turns, waits included. */
  (void)uv_loop_configure(loop, UV_METRICS_IDLE_TIME);
  uv_prepare_init(loop, &ops->turn);
  ops->turn.data = ops;
  uv_prepare_start(&ops->turn, on_turn);
  uv_unref((uv_handle_t *)&ops->turn); /* timing alone does not keep the loop running */
  return 0;
}

int co_ops_listen(co_ops_t *ops, const char *address) {
  return co_http_server_listen(&ops->http, address, NULL);
}

int co_ops_add_ready_check(co_ops_t *ops, const char *name, co_ops_ready_cb cb, void *data) {
  if (ops == NULL || name == NULL || cb == NULL)
    return CO_EINVAL;
  if (ops->nchecks == CO_OPS_MAX_CHECKS)
    return CO_ETOOBIG;
  ops->checks[ops->nchecks].name = name;
  ops->checks[ops->nchecks].cb = cb;
  ops->checks[ops->nchecks].data = data;
  ops->nchecks++;
  return 0;
}

static void closed_one(co_ops_t *ops) {
  if (--ops->pending_closes == 0 && ops->close_cb != NULL)
    ops->close_cb(ops);
}

static void on_http_closed(co_http_server_t *srv) { closed_one(srv->data); }

static void on_turn_closed(uv_handle_t *h) { closed_one(h->data); }

void co_ops_close(co_ops_t *ops, co_ops_close_cb cb) {
  ops->close_cb = cb;
  ops->pending_closes = 2;
  uv_close((uv_handle_t *)&ops->turn, on_turn_closed);
  co_http_server_close(&ops->http, on_http_closed);
}
