/* Operations endpoints of the controller on one HTTP server: GET /metrics (Prometheus text),
 * GET /healthz (200 while the loop answers) and GET /readyz (200 when every readiness check
 * passes, else 503 naming the failing ones). Other components add their readiness conditions
 * (caches synced, webhook certificate loaded) with co_ops_add_ready_check, and may add routes
 * or listeners to the public http server. It also times each turn of the loop (the work done
 * between two waits for I/O) into confidential_operator_loop_busy_seconds: the longest a request
 * arriving during a turn waits before it is read.
 *
 * Lifecycle (libuv style): co_ops_init, co_ops_listen, co_ops_close(cb); the caller-owned
 * co_ops_t may be released only in (or after) cb. Single-threaded. */
#ifndef CO_OPS_H
#define CO_OPS_H

#include <stddef.h>
#include <uv.h>

#include "co/http.h"

#define CO_OPS_MAX_CHECKS 8

/* Returns 1 when ready; otherwise 0, and may write a short reason into why (whylen bytes). */
typedef int (*co_ops_ready_cb)(void *data, char *why, size_t whylen);

typedef struct co_ops_s co_ops_t;
typedef void (*co_ops_close_cb)(co_ops_t *ops);

struct co_ops_s {
  /* public */
  void *data;
  co_http_server_t http;
  /* private */
  struct {
    const char *name; /* borrowed static string */
    co_ops_ready_cb cb;
    void *data;
  } checks[CO_OPS_MAX_CHECKS];
  size_t nchecks;
  co_ops_close_cb close_cb;
  uv_prepare_t turn;  /* runs just before each wait for I/O */
  uint64_t turn_ns;   /* when the previous wait began (uv_hrtime) */
  uint64_t idle_ns;   /* the loop's idle time then */
  int pending_closes; /* handles whose close callback is due */
};

/* Initialises ops and routes the three endpoints. Returns 0 or a CO_E* code; on success
 * co_ops_close must be called. */
int co_ops_init(uv_loop_t *loop, co_ops_t *ops);
/* Serves the endpoints on address (see co_http_server_listen; plaintext). */
int co_ops_listen(co_ops_t *ops, const char *address);
/* Adds a readiness condition; name is a static string. Returns 0, CO_EINVAL or CO_ETOOBIG. */
int co_ops_add_ready_check(co_ops_t *ops, const char *name, co_ops_ready_cb cb, void *data);
/* Closes the server and the loop timing; cb (may be NULL) fires once everything is closed. */
void co_ops_close(co_ops_t *ops, co_ops_close_cb cb);

#endif
