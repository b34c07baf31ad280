/* HTTP server on libh2o (libuv flavour): listeners, routing, bounded bodies, TLS rotation and a
 * close that drains connections. HTTP parsing, TLS records and keep-alive are libh2o's. */
#include <h2o.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "co/alloc.h"
#include "co/error.h"
#include "co/http.h"
#include "co/log.h"

#define DRAIN_TICK_MS 20
/* During close, connections still open after this long are cut (their sockets shut down):
 * answers are small and written at once, so what remains is a peer that does not read, whose
 * stalled write libh2o would wait for forever (it has no write timeout). */
#define CLOSE_GRACE_MS 1000
/* Outside close, the drain timer only looks for dead connections (see sweep_dead). */
#define SWEEP_EVERY_MS 1000

typedef struct {
  char *path;
  size_t path_len;
  co_http_route_opts_t opts;
  co_http_handler_cb cb;
  void *data;
} route_t;

struct co_http_impl_s;

typedef struct {
  uv_tcp_t tcp; /* first member: the close callback gets this handle */
  struct co_http_impl_s *impl;
  h2o_accept_ctx_t accept_ctx;
  int tls;
  int port;
} listener_t;

typedef struct conn_s {
  uv_tcp_t tcp; /* first member: libh2o's close callback gets this handle */
  struct co_http_impl_s *impl;
  struct conn_s *prev, *next; /* every open connection, for the cut at close */
  /* A reference on the context current at accept, held until the handle is closed: libh2o
   * keeps that pointer without a reference and makes the connection's SSL from it only when
   * the first bytes arrive, however many rotations later. */
  SSL_CTX *ssl_ctx;
  int cut;
  int dead_seen; /* sweeps that found the handle dead */
} conn_t;

typedef struct {
  h2o_handler_t super;
  struct co_http_impl_s *impl;
} handler_t;

struct co_http_impl_s {
  co_http_server_t *srv;
  h2o_globalconf_t config;
  h2o_context_t ctx;
  route_t routes[CO_HTTP_MAX_ROUTES];
  size_t nroutes;
  listener_t *listeners[CO_HTTP_MAX_LISTENERS];
  size_t nlisteners;
  SSL_CTX *ssl_ctx; /* current certificate (one reference); TLS listeners point at it */
  size_t conns;     /* accepted TCP handles not yet closed */
  conn_t *conn_list;
  size_t open_listeners;
  uv_timer_t drain; /* sweeps dead connections; during close, also closes idle ones */
  uint64_t close_started_ms;
  uv_idle_t sentinel;
  co_http_close_cb close_cb;
  int closing;
};

/* ---- TLS ---- */

static int load_cert_chain(SSL_CTX *ssl, const char *cert_pem) {
  BIO *bio = BIO_new_mem_buf(cert_pem, -1);
  if (bio == NULL)
    return CO_ENOMEM;
  int rc = CO_ETLS;
  X509 *leaf = PEM_read_bio_X509_AUX(bio, NULL, NULL, NULL);
  if (leaf == NULL || SSL_CTX_use_certificate(ssl, leaf) != 1)
    goto out;
  X509 *ca;
  while ((ca = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
    if (SSL_CTX_add0_chain_cert(ssl, ca) != 1) {
      X509_free(ca);
      goto out;
    }
  }
  /* the loop ends at the end of the PEM data, which OpenSSL reports as an error */
  unsigned long e = ERR_peek_last_error();
  if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
    rc = 0;
out:
  X509_free(leaf);
  BIO_free(bio);
  ERR_clear_error();
  return rc;
}

static int load_key(SSL_CTX *ssl, const char *key_pem) {
  BIO *bio = BIO_new_mem_buf(key_pem, -1);
  if (bio == NULL)
    return CO_ENOMEM;
  EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
  int ok =
      key != NULL && SSL_CTX_use_PrivateKey(ssl, key) == 1 && SSL_CTX_check_private_key(ssl) == 1;
  EVP_PKEY_free(key);
  BIO_free(bio);
  ERR_clear_error();
  return ok ? 0 : CO_ETLS;
}

static int make_ssl_ctx(const char *cert_pem, const char *key_pem, SSL_CTX **out) {
  if (cert_pem == NULL || key_pem == NULL)
    return CO_ETLS;
  SSL_CTX *ssl = SSL_CTX_new(TLS_server_method());
  if (ssl == NULL)
    return CO_ENOMEM;
  SSL_CTX_set_min_proto_version(ssl, TLS1_2_VERSION);
  SSL_CTX_set_options(ssl, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  /* HTTP/2 by ALPN: the API server then multiplexes its admission calls over one connection
   * instead of opening (and handshaking) one per concurrent call. */
  h2o_ssl_register_alpn_protocols(ssl, h2o_http2_alpn_protocols);
  int rc = load_cert_chain(ssl, cert_pem);
  if (rc == 0)
    rc = load_key(ssl, key_pem);
  if (rc != 0) {
    SSL_CTX_free(ssl);
    return rc;
  }
  *out = ssl;
  return 0;
}

/* Installs a new context for connections accepted from now on and drops the server's
 * reference on the old one: connections accepted with it hold their own (conn_t). */
static void install_ssl_ctx(struct co_http_impl_s *impl, SSL_CTX *ssl) {
  SSL_CTX *old = impl->ssl_ctx;
  impl->ssl_ctx = ssl;
  for (size_t i = 0; i < impl->nlisteners; i++)
    if (impl->listeners[i]->tls)
      impl->listeners[i]->accept_ctx.ssl_ctx = ssl;
  SSL_CTX_free(old);
}

/* ---- requests ---- */

static const struct {
  unsigned bit;
  const char *name;
} methods[] = {{CO_HTTP_GET, "GET"}, {CO_HTTP_HEAD, "HEAD"},   {CO_HTTP_POST, "POST"},
               {CO_HTTP_PUT, "PUT"}, {CO_HTTP_PATCH, "PATCH"}, {CO_HTTP_DELETE, "DELETE"}};

static unsigned method_bit(h2o_iovec_t m) {
  for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
    if (m.len == strlen(methods[i].name) && memcmp(m.base, methods[i].name, m.len) == 0)
      return methods[i].bit;
  return 0;
}

static const char *reason(int status) {
  switch (status) {
  case 200:
    return "OK";
  case 201:
    return "Created";
  case 204:
    return "No Content";
  case 400:
    return "Bad Request";
  case 403:
    return "Forbidden";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 413:
    return "Payload Too Large";
  case 500:
    return "Internal Server Error";
  case 503:
    return "Service Unavailable";
  default:
    return "";
  }
}

static void send_response(h2o_req_t *hreq, int status, const char *content_type, const char *body,
                          size_t len, const char *hname, const char *hvalue) {
  static h2o_generator_t generator = {NULL, NULL};
  hreq->res.status = status;
  hreq->res.reason = reason(status);
  hreq->res.content_length = len;
  if (content_type != NULL)
    h2o_add_header(&hreq->pool, &hreq->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   h2o_strdup(&hreq->pool, content_type, SIZE_MAX).base, strlen(content_type));
  if (hname != NULL)
    h2o_add_header_by_str(&hreq->pool, &hreq->res.headers, hname, strlen(hname), 1, NULL,
                          h2o_strdup(&hreq->pool, hvalue, SIZE_MAX).base, strlen(hvalue));
  h2o_iovec_t buf = h2o_strdup(&hreq->pool, len > 0 ? body : "", len);
  h2o_start_response(hreq, &generator);
  h2o_send(hreq, &buf, 1, H2O_SEND_STATE_FINAL);
}

int co_http_respond(co_http_request_t *req, int status, const char *content_type, const char *body,
                    size_t len) {
  if (req == NULL || req->responded || status < 100 || status > 599 || (body == NULL && len > 0))
    return CO_EINVAL;
  req->responded = 1;
  send_response(req->impl, status, content_type, body, len, NULL, NULL);
  return 0;
}

static void allowed_methods(unsigned mask, char *out, size_t cap) {
  size_t n = 0;
  out[0] = '\0';
  for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
    if (!(mask & methods[i].bit))
      continue;
    int w = snprintf(out + n, cap - n, "%s%s", n > 0 ? ", " : "", methods[i].name);
    if (w < 0 || (size_t)w >= cap - n)
      return;
    n += (size_t)w;
  }
}

static const route_t *find_route(const struct co_http_impl_s *impl, h2o_iovec_t path) {
  for (size_t i = 0; i < impl->nroutes; i++)
    if (impl->routes[i].path_len == path.len &&
        memcmp(impl->routes[i].path, path.base, path.len) == 0)
      return &impl->routes[i];
  return NULL;
}

static int on_req(h2o_handler_t *self, h2o_req_t *hreq) {
  struct co_http_impl_s *impl = ((handler_t *)self)->impl;
  /* the path as sent, up to the query: routes are exact and never percent-encoded */
  h2o_iovec_t path = hreq->path;
  if (hreq->query_at != SIZE_MAX)
    path.len = hreq->query_at;
  const route_t *r = find_route(impl, path);
  if (r == NULL) {
    send_response(hreq, 404, "text/plain", "not found\n", 10, NULL, NULL);
    return 0;
  }
  if (!(method_bit(hreq->method) & r->opts.methods)) {
    char allow[64];
    allowed_methods(r->opts.methods, allow, sizeof(allow));
    send_response(hreq, 405, "text/plain", "method not allowed\n", 19, "allow", allow);
    return 0;
  }
  if (hreq->entity.len > r->opts.max_body) {
    hreq->http1_is_persistent = 0;
    send_response(hreq, 413, "text/plain", "request body too large\n", 23, NULL, NULL);
    return 0;
  }
  co_http_request_t req;
  memset(&req, 0, sizeof(req));
  req.method = hreq->method.base;
  req.method_len = hreq->method.len;
  req.path = path.base;
  req.path_len = path.len;
  if (hreq->query_at != SIZE_MAX) {
    req.query = hreq->path.base + hreq->query_at + 1;
    req.query_len = hreq->path.len - hreq->query_at - 1;
  }
  ssize_t ct = h2o_find_header(&hreq->headers, H2O_TOKEN_CONTENT_TYPE, -1);
  if (ct != -1) {
    req.content_type = hreq->headers.entries[ct].value.base;
    req.content_type_len = hreq->headers.entries[ct].value.len;
  }
  req.body = hreq->entity.base;
  req.body_len = hreq->entity.base != NULL ? hreq->entity.len : 0;
  req.tls = hreq->scheme == &H2O_URL_SCHEME_HTTPS;
  req.received_us = (int64_t)hreq->timestamps.request_begin_at.tv_sec * 1000000 +
                    hreq->timestamps.request_begin_at.tv_usec;
  req.impl = hreq;
  r->cb(&req, r->data);
  if (!req.responded) {
    co_log(CO_LOG_ERROR, "HTTP handler did not respond", CO_S("path", r->path));
    send_response(hreq, 500, "text/plain", "no response\n", 12, NULL, NULL);
  }
  return 0;
}

/* ---- connections ---- */

static void finish_close_if_done(struct co_http_impl_s *impl);

static void on_conn_closed(uv_handle_t *h) {
  conn_t *c = (conn_t *)h;
  struct co_http_impl_s *impl = c->impl;
  if (c->prev != NULL)
    c->prev->next = c->next;
  else
    impl->conn_list = c->next;
  if (c->next != NULL)
    c->next->prev = c->prev;
  SSL_CTX_free(c->ssl_ctx); /* libh2o freed the connection's SSL before closing the handle */
  co_free(c);
  impl->conns--;
}

static void on_tcp_close_free(uv_handle_t *h) { co_free(h); }

static void on_accept(uv_stream_t *server, int status) {
  listener_t *l = (listener_t *)server;
  struct co_http_impl_s *impl = l->impl;
  if (status != 0 || impl->closing)
    return;
  conn_t *c = co_calloc(1, sizeof(*c));
  c->impl = impl;
  uv_tcp_init(server->loop, &c->tcp);
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    uv_close((uv_handle_t *)&c->tcp, on_tcp_close_free);
    return;
  }
  impl->conns++;
  impl->srv->accepted++;
  c->next = impl->conn_list;
  if (c->next != NULL)
    c->next->prev = c;
  impl->conn_list = c;
  if (l->accept_ctx.ssl_ctx != NULL && SSL_CTX_up_ref(l->accept_ctx.ssl_ctx) == 1)
    c->ssl_ctx = l->accept_ctx.ssl_ctx;
  h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)&c->tcp, on_conn_closed);
  h2o_accept(&l->accept_ctx, sock);
}

static void on_drain(uv_timer_t *t);

/* ---- public API ---- */

int co_http_server_init(uv_loop_t *loop, co_http_server_t *srv) {
  if (loop == NULL || srv == NULL)
    return CO_EINVAL;
  memset(srv, 0, sizeof(*srv));
  /* a peer that hangs up mid-response must not kill the process (writes would raise SIGPIPE) */
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &sa, NULL);

  struct co_http_impl_s *impl = co_calloc(1, sizeof(*impl));
  impl->srv = srv;
  h2o_config_init(&impl->config);
  impl->config.max_request_entity_size = 1024;
  impl->config.http1.upgrade_to_http2 = 0; /* HTTP/2 over TLS by ALPN only, no h2c upgrade */
  h2o_hostconf_t *host =
      h2o_config_register_host(&impl->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
  h2o_pathconf_t *pc = h2o_config_register_path(host, "/", 0);
  handler_t *handler = (handler_t *)h2o_create_handler(pc, sizeof(*handler));
  handler->super.on_req = on_req;
  handler->impl = impl;
  h2o_context_init(&impl->ctx, loop, &impl->config);
  uv_timer_init(loop, &impl->drain);
  impl->drain.data = impl;
  uv_timer_start(&impl->drain, on_drain, SWEEP_EVERY_MS, SWEEP_EVERY_MS);
  uv_unref((uv_handle_t *)&impl->drain); /* the sweep alone keeps no loop running */
  uv_idle_init(loop, &impl->sentinel);
  srv->loop = loop;
  srv->impl = impl;
  return 0;
}

int co_http_server_route(co_http_server_t *srv, const char *path, const co_http_route_opts_t *opts,
                         co_http_handler_cb cb, void *data) {
  if (srv == NULL || srv->impl == NULL || path == NULL || path[0] != '/' || cb == NULL)
    return CO_EINVAL;
  struct co_http_impl_s *impl = srv->impl;
  co_http_route_opts_t o = {CO_HTTP_GET, 0};
  if (opts != NULL)
    o = *opts;
  if (o.methods == 0)
    o.methods = CO_HTTP_GET;
  if (o.max_body > CO_HTTP_MAX_BODY_LIMIT)
    return CO_EINVAL;
  if (find_route(impl, h2o_iovec_init(path, strlen(path))) != NULL)
    return CO_EEXIST;
  if (impl->nroutes == CO_HTTP_MAX_ROUTES)
    return CO_ETOOBIG;
  route_t *r = &impl->routes[impl->nroutes++];
  r->path = co_strdup(path);
  r->path_len = strlen(path);
  r->opts = o;
  r->cb = cb;
  r->data = data;
  /* libh2o buffers whole bodies up to this bound (and answers 413 itself beyond it); the
   * per-route bound is checked in on_req */
  if (o.max_body + 1 > impl->config.max_request_entity_size)
    impl->config.max_request_entity_size = o.max_body + 1;
  return 0;
}

static int parse_address(const char *address, struct sockaddr_storage *ss) {
  char host[64];
  const char *colon = strrchr(address, ':');
  if (colon == NULL || colon[1] == '\0')
    return CO_EINVAL;
  size_t hlen = (size_t)(colon - address);
  const char *h = address;
  if (hlen >= 2 && address[0] == '[' && address[hlen - 1] == ']') {
    h++;
    hlen -= 2;
  }
  if (hlen >= sizeof(host))
    return CO_EINVAL;
  memcpy(host, h, hlen);
  host[hlen] = '\0';
  char *end = NULL;
  unsigned long port = strtoul(colon + 1, &end, 10);
  if (end == colon + 1 || *end != '\0' || port > 65535)
    return CO_EINVAL;
  if (hlen == 0)
    return uv_ip4_addr("0.0.0.0", (int)port, (struct sockaddr_in *)ss) == 0 ? 0 : CO_EINVAL;
  if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0)
    return 0;
  if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0)
    return 0;
  return CO_EINVAL;
}

int co_http_server_listen(co_http_server_t *srv, const char *address, const co_http_tls_t *tls) {
  if (srv == NULL || srv->impl == NULL || address == NULL || srv->impl->closing)
    return CO_EINVAL;
  struct co_http_impl_s *impl = srv->impl;
  if (impl->nlisteners == CO_HTTP_MAX_LISTENERS)
    return CO_ETOOBIG;
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  int rc = parse_address(address, &ss);
  if (rc != 0)
    return rc;
  SSL_CTX *ssl = NULL;
  if (tls != NULL && (rc = make_ssl_ctx(tls->cert_pem, tls->key_pem, &ssl)) != 0)
    return rc;
  listener_t *l = co_calloc(1, sizeof(*l));
  l->impl = impl;
  l->tls = tls != NULL;
  uv_tcp_init(srv->loop, &l->tcp);
  if (uv_tcp_bind(&l->tcp, (const struct sockaddr *)&ss, 0) != 0 ||
      uv_listen((uv_stream_t *)&l->tcp, 128, on_accept) != 0) {
    uv_close((uv_handle_t *)&l->tcp, on_tcp_close_free);
    SSL_CTX_free(ssl);
    return CO_EIO;
  }
  struct sockaddr_storage bound;
  int blen = sizeof(bound);
  if (uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&bound, &blen) == 0)
    l->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                : ((struct sockaddr_in *)&bound)->sin_port);
  l->accept_ctx.ctx = &impl->ctx;
  l->accept_ctx.hosts = impl->config.hosts;
  impl->listeners[impl->nlisteners++] = l;
  impl->open_listeners++;
  if (ssl != NULL)
    install_ssl_ctx(impl, ssl);
  return 0;
}

int co_http_server_port(const co_http_server_t *srv, size_t index) {
  if (srv == NULL || srv->impl == NULL || index >= srv->impl->nlisteners)
    return -1;
  return srv->impl->listeners[index]->port;
}

int co_http_server_set_cert(co_http_server_t *srv, const char *cert_pem, const char *key_pem) {
  if (srv == NULL || srv->impl == NULL || srv->impl->ssl_ctx == NULL)
    return CO_EINVAL;
  SSL_CTX *ssl;
  int rc = make_ssl_ctx(cert_pem, key_pem, &ssl);
  if (rc != 0)
    return rc;
  install_ssl_ctx(srv->impl, ssl);
  return 0;
}

size_t co_http_server_connections(const co_http_server_t *srv) {
  return srv != NULL && srv->impl != NULL ? srv->impl->conns : 0;
}

/* ---- close ---- */

static void on_listener_closed(uv_handle_t *h) {
  listener_t *l = (listener_t *)h;
  l->impl->open_listeners--;
}

static void on_sentinel_closed(uv_handle_t *h) {
  struct co_http_impl_s *impl = h->data;
  co_http_server_t *srv = impl->srv;
  co_http_close_cb cb = impl->close_cb;
  for (size_t i = 0; i < impl->nlisteners; i++)
    co_free(impl->listeners[i]);
  for (size_t i = 0; i < impl->nroutes; i++)
    co_free(impl->routes[i].path);
  co_free(impl);
  srv->impl = NULL;
  if (cb != NULL)
    cb(srv);
}

/* The handles closed together with the drain timer (libh2o's timers, its async) finish in the
 * same close pass as the timer; the sentinel, closed from that pass, finishes in a later one,
 * after which the context memory that holds them can go. */
static void on_drain_closed(uv_handle_t *h) {
  struct co_http_impl_s *impl = h->data;
  impl->sentinel.data = impl;
  uv_close((uv_handle_t *)&impl->sentinel, on_sentinel_closed);
}

/* h2o_context_dispose without its nested uv_run (libuv forbids running the loop from a
 * callback): the handles it closes are awaited by on_drain_closed instead. */
static void dispose_context(h2o_context_t *ctx) {
  h2o_globalconf_t *config = ctx->globalconf;
  for (size_t i = 0; config->hosts[i] != NULL; ++i) {
    h2o_hostconf_t *hostconf = config->hosts[i];
    for (size_t j = 0; j != hostconf->paths.size; ++j)
      h2o_context_dispose_pathconf_context(ctx, hostconf->paths.entries + j);
    h2o_context_dispose_pathconf_context(ctx, &hostconf->fallback_path);
  }
  /* armed by h2o_context_request_shutdown to resend GOAWAY; every connection is gone by now */
  h2o_timeout_unlink(&ctx->http2._graceful_shutdown_timeout);
  free(ctx->_pathconfs_inited.entries);
  free(ctx->_module_configs);
  h2o_timeout_dispose(ctx->loop, &ctx->zero_timeout);
  h2o_timeout_dispose(ctx->loop, &ctx->one_sec_timeout);
  h2o_timeout_dispose(ctx->loop, &ctx->hundred_ms_timeout);
  h2o_timeout_dispose(ctx->loop, &ctx->handshake_timeout);
  h2o_timeout_dispose(ctx->loop, &ctx->http1.req_timeout);
  h2o_timeout_dispose(ctx->loop, &ctx->http2.idle_timeout);
  h2o_timeout_dispose(ctx->loop, &ctx->http2.graceful_shutdown_timeout);
  h2o_timeout_dispose(ctx->loop, &ctx->proxy.io_timeout);
  h2o_filecache_destroy(ctx->filecache);
  ctx->filecache = NULL;
  for (size_t i = 0; i != ctx->storage.size; ++i)
    if (ctx->storage.entries[i].dispose != NULL)
      ctx->storage.entries[i].dispose(ctx->storage.entries[i].data);
  free(ctx->storage.entries);
  h2o_multithread_unregister_receiver(ctx->queue, &ctx->receivers.hostinfo_getaddr);
  h2o_multithread_destroy_queue(ctx->queue);
  if (ctx->_timestamp_cache.value != NULL)
    h2o_mem_release_shared(ctx->_timestamp_cache.value);
}

static void finish_close_if_done(struct co_http_impl_s *impl) {
  if (impl->conns > 0 || impl->open_listeners > 0)
    return;
  uv_timer_stop(&impl->drain);
  dispose_context(&impl->ctx);
  h2o_config_dispose(&impl->config);
  SSL_CTX_free(impl->ssl_ctx);
  impl->ssl_ctx = NULL;
  impl->drain.data = impl;
  uv_close((uv_handle_t *)&impl->drain, on_drain_closed);
}

/* Expires, as if their time had come, connections waiting for a request (idle keep-alive or a
 * slow client) and TLS handshakes; connections answering a request finish it first and close
 * since shutdown was requested (libh2o then disables keep-alive). */
/* Shuts down the sockets of the connections still open: a stalled write then fails and
 * libh2o closes the connection through its own error path (the handle stays libh2o's). */
static void cut_connections(struct co_http_impl_s *impl) {
  size_t n = 0;
  for (conn_t *c = impl->conn_list; c != NULL; c = c->next) {
    uv_os_fd_t fd;
    if (c->cut || uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0)
      continue;
    c->cut = 1;
    shutdown(fd, SHUT_RDWR);
    n++;
  }
  if (n > 0)
    co_log(CO_LOG_WARN, "HTTP server close: connections cut after the grace period",
           CO_I("connections", n), CO_I("grace_ms", CLOSE_GRACE_MS));
}

/* A TLS connection whose peer reset it is left dead by libh2o 2.2: the read error makes libuv
 * mark the handle neither readable nor writable, libh2o then closes the connection by writing
 * a close_notify, uv_write fails at once, libh2o ignores that and waits for a write callback
 * that never comes: the connection (its socket, its memory) is never released, and a close
 * waits for it forever. A handle found dead (neither readable nor writable, no write queued,
 * not active) by two sweeps in a row, so that no callback was still pending, is closed again
 * through h2o_socket_close: with a write still marked in flight it disposes of the socket at
 * once (handle->data is the libh2o socket, set by h2o_uv_socket_create). */
static void sweep_dead(struct co_http_impl_s *impl) {
  size_t n = 0;
  for (conn_t *c = impl->conn_list; c != NULL; c = c->next) {
    uv_stream_t *st = (uv_stream_t *)&c->tcp;
    if (uv_is_closing((uv_handle_t *)st))
      continue;
    if (uv_is_readable(st) || uv_is_writable(st) || st->write_queue_size > 0 ||
        uv_is_active((uv_handle_t *)st)) {
      c->dead_seen = 0;
      continue;
    }
    if (++c->dead_seen < 2 || st->data == NULL)
      continue;
    h2o_socket_close(st->data);
    n++;
  }
  if (n > 0)
    co_log(CO_LOG_WARN, "HTTP server: released connections reset by their peer",
           CO_I("connections", n));
}

static void on_drain(uv_timer_t *t) {
  struct co_http_impl_s *impl = t->data;
  sweep_dead(impl);
  if (!impl->closing)
    return;
  h2o_timeout_run(t->loop, &impl->ctx.handshake_timeout, UINT64_MAX);
  h2o_timeout_run(t->loop, &impl->ctx.http1.req_timeout, UINT64_MAX);
  /* HTTP/2 connections without open streams (they got GOAWAY from the shutdown request) */
  h2o_timeout_run(t->loop, &impl->ctx.http2.idle_timeout, UINT64_MAX);
  if (impl->conns > 0 && uv_now(t->loop) - impl->close_started_ms >= CLOSE_GRACE_MS)
    cut_connections(impl);
  finish_close_if_done(impl);
}

void co_http_server_close(co_http_server_t *srv, co_http_close_cb cb) {
  if (srv == NULL || srv->impl == NULL || srv->impl->closing)
    return;
  struct co_http_impl_s *impl = srv->impl;
  impl->closing = 1;
  impl->close_cb = cb;
  impl->close_started_ms = uv_now(srv->loop);
  for (size_t i = 0; i < impl->nlisteners; i++)
    uv_close((uv_handle_t *)&impl->listeners[i]->tcp, on_listener_closed);
  h2o_context_request_shutdown(&impl->ctx);
  uv_ref((uv_handle_t *)&impl->drain);
  uv_timer_start(&impl->drain, on_drain, 0, DRAIN_TICK_MS);
}
