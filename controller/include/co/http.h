/* HTTP/1.1 (and HTTP/2 over TLS, by ALPN) server on the caller's libuv loop, built on libh2o (the
 * libuv flavour): several listeners per server (plaintext or TLS), exact-path routes, whole request
 * bodies bounded per route, synchronous responses. Used for /metrics, /healthz, /readyz and the
 * admission webhook.
 *
 * - A request whose path has no route gets 404; a method the route does not allow gets 405
 *   (with an Allow header); a body larger than the route's max_body gets 413.
 * - co_http_server_set_cert replaces the TLS certificate of every TLS listener: connections
 *   accepted afterwards use the new one, connections already open keep theirs and finish.
 * - A TLS connection its peer resets is released within two seconds (libh2o alone would keep
 *   it, and its socket, forever).
 * - Lifecycle (libuv style): co_http_server_init, co_http_server_route / _listen / _set_cert,
 *   co_http_server_close(cb). close stops accepting, lets in-flight requests finish, closes idle
 *   keep-alive connections, TLS handshakes and half-received requests at once, cuts what is
 *   still open a second later (a peer that does not read its answers would otherwise hold its
 *   connection, and the close, forever), and calls cb when every handle is closed; the caller-owned
 *   co_http_server_t may be released only in (or after) cb. Single-threaded: every call on
 *   the loop thread. */
#ifndef CO_HTTP_H
#define CO_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Methods a route accepts (bit mask). */
enum {
  CO_HTTP_GET = 1u << 0,
  CO_HTTP_HEAD = 1u << 1,
  CO_HTTP_POST = 1u << 2,
  CO_HTTP_PUT = 1u << 3,
  CO_HTTP_PATCH = 1u << 4,
  CO_HTTP_DELETE = 1u << 5
};

/* Limits of the server (routes and listeners are few: metrics, health, webhook). */
#define CO_HTTP_MAX_ROUTES 16
#define CO_HTTP_MAX_LISTENERS 4
#define CO_HTTP_MAX_BODY_LIMIT (64u * 1024 * 1024)

typedef struct co_http_server_s co_http_server_t;

/* A request, valid only during the handler call. Every pointer is borrowed from the server;
 * strings are NOT NUL-terminated: use the _len fields. */
typedef struct co_http_request_s {
  const char *method;
  size_t method_len;
  const char *path; /* without the query */
  size_t path_len;
  const char *query; /* after '?', without it; len 0 when absent */
  size_t query_len;
  const char *content_type; /* len 0 when absent */
  size_t content_type_len;
  const char *body; /* whole body, at most the route's max_body; len 0 when absent */
  size_t body_len;
  int tls; /* 1 when the request came over a TLS listener */
  /* Wall-clock time (µs since the epoch) at which libh2o began reading the request, at the
   * loop clock's resolution (about 1 ms): the handler's start minus this is the time the
   * request waited behind other work on the loop. */
  int64_t received_us;
  /* private */
  void *impl;
  int responded;
} co_http_request_t;

/* Handles one request. Must call co_http_respond exactly once before returning; when it does
 * not, the server answers 500. */
typedef void (*co_http_handler_cb)(co_http_request_t *req, void *data);
typedef void (*co_http_close_cb)(co_http_server_t *srv);

typedef struct co_http_route_opts_s {
  unsigned methods; /* CO_HTTP_* mask; 0 means GET */
  size_t max_body; /* largest accepted body in bytes (0: no body); at most CO_HTTP_MAX_BODY_LIMIT */
} co_http_route_opts_t;

/* TLS material in PEM (borrowed, copied during the call): the certificate, optionally followed
 * by its chain, and the private key. */
typedef struct co_http_tls_s {
  const char *cert_pem;
  const char *key_pem;
} co_http_tls_t;

struct co_http_impl_s;

struct co_http_server_s {
  /* public */
  void *data;
  /* read-only */
  uv_loop_t *loop;
  uint64_t accepted; /* TCP connections accepted (each TLS one costs a handshake) */
  /* private */
  struct co_http_impl_s *impl;
};

/* Initialises srv (caller-allocated) on loop. Returns 0 or CO_ENOMEM; on success
 * co_http_server_close must be called. */
int co_http_server_init(uv_loop_t *loop, co_http_server_t *srv);
/* Serves requests for exactly path (borrowed, copied; must start with '/') with cb; data is
 * passed to cb. opts (borrowed, copied) may be NULL: GET only, no body. Returns 0, CO_EINVAL
 * (bad path or options), CO_EEXIST (path already routed) or CO_ETOOBIG (too many routes).
 * Routes may be added before or after co_http_server_listen. */
int co_http_server_route(co_http_server_t *srv, const char *path, const co_http_route_opts_t *opts,
                         co_http_handler_cb cb, void *data);
/* Starts a listener on address "host:port", ":port" (all IPv4 interfaces) or "[v6]:port";
 * port 0 picks a free port (see co_http_server_port). tls may be NULL for plaintext; its
 * material is also replaced by later co_http_server_set_cert calls. Returns 0, CO_EINVAL (bad
 * address), CO_ETLS (bad certificate or key), CO_ETOOBIG (too many listeners) or CO_EIO (bind
 * or listen failed, e.g. port in use). */
int co_http_server_listen(co_http_server_t *srv, const char *address, const co_http_tls_t *tls);
/* Returns the local port of the index-th successful listen call (0-based), or -1. */
int co_http_server_port(const co_http_server_t *srv, size_t index);
/* Replaces the certificate and key (PEM, borrowed, copied) of every TLS listener for new
 * connections. Returns 0, CO_ETLS (material unusable: nothing changed) or CO_EINVAL (no TLS
 * listener). */
int co_http_server_set_cert(co_http_server_t *srv, const char *cert_pem, const char *key_pem);
/* Answers the request: status, content type (borrowed, may be NULL for none) and body (borrowed,
 * copied; may be NULL when len is 0). Returns 0, or CO_EINVAL when already answered. */
int co_http_respond(co_http_request_t *req, int status, const char *content_type, const char *body,
                    size_t len);
/* Connections accepted and not yet closed (0 once closed): what a close still waits for. */
size_t co_http_server_connections(const co_http_server_t *srv);
/* Stops accepting and closes the server (see the lifecycle above); cb may be NULL. Further
 * calls are ignored. */
void co_http_server_close(co_http_server_t *srv, co_http_close_cb cb);

#endif
