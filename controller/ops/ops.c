/* /metrics, /healthz and /readyz on a co_http server. */
#include "co/ops.h"

#include <string.h>

#include "co/buf.h"
#include "co/error.h"
#include "co/log.h"
#include "co/metrics.h"

#define METRICS_MAX (8u * 1024 * 1024)

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

static void on_http_closed(co_http_server_t *srv) {
  co_ops_t *ops = srv->data;
  if (ops->close_cb != NULL)
    ops->close_cb(ops);
}

void co_ops_close(co_ops_t *ops, co_ops_close_cb cb) {
  ops->close_cb = cb;
  co_http_server_close(&ops->http, on_http_closed);
}
