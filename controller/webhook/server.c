/* The webhook's HTTPS endpoint (see co/webhook.h). */
#include "co/webhook.h"

#include <string.h>
#include <sys/time.h>

#include "co/alloc.h"
#include "co/error.h"
#include "co/log.h"
#include "co/metrics.h"

static const char *const loopback[] = {"127.0.0.1"};

/* ---- metrics: where admission latency goes (the API server only sees the sum) ---- */

static const double handler_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                        0.005,  0.01,    0.025,  0.1};
static const double request_bounds[] = {0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1};

static co_metric_t *m_reviews(void) {
  static const char *const labels[] = {"result", NULL};
  return co_metric_register("confidential_operator_webhook_reviews_total",
                            "Admission requests answered, by result (mutated, allowed, denied, "
                            "malformed: HTTP 400, unavailable: HTTP 503 before the caches synced).",
                            CO_METRIC_COUNTER, labels, NULL, 0);
}

static co_metric_t *m_handler(void) {
  return co_metric_register(
      "confidential_operator_webhook_handler_seconds",
      "Time the loop spent deciding one admission request and building its answer.",
      CO_METRIC_HISTOGRAM, NULL, handler_bounds,
      sizeof(handler_bounds) / sizeof(handler_bounds[0]));
}

static co_metric_t *m_request(void) {
  return co_metric_register(
      "confidential_operator_webhook_request_seconds",
      "Time from libh2o starting to read an admission request to its answer being queued, at "
      "the loop clock's resolution (about 1 ms): the handler plus the wait behind other work.",
      CO_METRIC_HISTOGRAM, NULL, request_bounds,
      sizeof(request_bounds) / sizeof(request_bounds[0]));
}

static co_metric_t *m_conns(void) {
  return co_metric_register("confidential_operator_webhook_connections_total",
                            "Connections accepted by the webhook (each costs a TLS handshake; "
                            "a steady rise means the API server does not keep them alive).",
                            CO_METRIC_COUNTER, NULL, NULL, 0);
}

static void collect(void *data) {
  co_webhook_t *wh = data;
  co_metric_set(m_conns(), NULL, (double)wh->http.accepted);
}

static void observe(const co_http_request_t *req, const char *result, uint64_t t0_ns) {
  struct timeval now;
  gettimeofday(&now, NULL);
  int64_t waited_us = (int64_t)now.tv_sec * 1000000 + now.tv_usec - req->received_us;
  co_metric_add(m_reviews(), (const char *const[]){result}, 1);
  co_metric_observe(m_handler(), NULL, (double)(uv_hrtime() - t0_ns) / 1e9);
  if (req->received_us > 0 && waited_us >= 0)
    co_metric_observe(m_request(), NULL, (double)waited_us / 1e6);
}

static void on_mutate(co_http_request_t *req, void *data) {
  co_webhook_t *wh = data;
  uint64_t t0 = uv_hrtime();
  if (wh->caches_synced != NULL && !wh->caches_synced(wh->ud)) {
    /* Deciding on half a cache could un-sandbox: let the failure policy and the reconciler
     * handle this one. */
    wh->unavailable++;
    static const char msg[] = "caches not synced yet\n";
    co_http_respond(req, 503, "text/plain", msg, sizeof(msg) - 1);
    observe(req, "unavailable", t0);
    return;
  }
  char *out = NULL, err[512];
  size_t len = 0;
  co_admission_stats_t before = wh->admission.stats;
  int rc =
      co_admission_review(&wh->admission, req->body, req->body_len, &out, &len, err, sizeof(err));
  if (rc != 0) {
    co_log(CO_LOG_WARN, "malformed AdmissionReview refused", CO_S("detail", err),
           CO_I("bytes", req->body_len));
    size_t el = strlen(err);
    if (el + 1 < sizeof(err))
      err[el++] = '\n';
    co_http_respond(req, 400, "text/plain", err, el);
    observe(req, "malformed", t0);
    return;
  }
  co_http_respond(req, 200, "application/json", out, len);
  co_free(out);
  const co_admission_stats_t *after = &wh->admission.stats;
  observe(req,
          after->denied != before.denied     ? "denied"
          : after->mutated != before.mutated ? "mutated"
                                             : "allowed",
          t0);
}

static void on_cert(co_certstore_t *cs) {
  co_webhook_t *wh = cs->data;
  if (wh->listening) {
    int rc = co_http_server_set_cert(&wh->http, cs->cert_pem, cs->key_pem);
    if (rc != 0)
      co_log(CO_LOG_ERROR, "cannot switch the webhook certificate", CO_E(rc));
    else
      co_log(CO_LOG_INFO, "webhook serves the new certificate for new connections");
    return;
  }
  co_http_tls_t tls = {cs->cert_pem, cs->key_pem};
  int rc = co_http_server_listen(&wh->http, wh->bind, &tls);
  if (rc != 0) {
    co_log(CO_LOG_ERROR, "webhook cannot listen; admission is left to the failure policy",
           CO_S("address", wh->bind), CO_E(rc));
    return;
  }
  wh->listening = 1;
  co_log(CO_LOG_INFO, "webhook listening", CO_S("address", wh->bind),
         CO_I("port", co_http_server_port(&wh->http, 0)), CO_S("path", CO_WEBHOOK_PATH));
}

int co_webhook_init(co_client_t *client, co_webhook_t *wh, const co_webhook_opts_t *o) {
  memset(wh, 0, sizeof(*wh));
  if (o == NULL || o->bind_address == NULL || o->bind_address[0] == '\0' || o->decide == NULL ||
      o->namespace_ == NULL || o->cert_validity_s <= 0)
    return CO_EINVAL;
  wh->admission.decide = o->decide;
  wh->admission.decide_ud = o->ud;
  wh->admission.policy = o->policy;
  wh->admission.fail_closed = o->fail_closed;
  wh->caches_synced = o->caches_synced;
  wh->ud = o->ud;
  snprintf(wh->dns[0], sizeof(wh->dns[0]), "%s.%s.svc", CO_WEBHOOK_SERVICE, o->namespace_);
  snprintf(wh->dns[1], sizeof(wh->dns[1]), "%s.%s.svc.cluster.local", CO_WEBHOOK_SERVICE,
           o->namespace_);
  wh->dns_ptrs[0] = wh->dns[0];
  wh->dns_ptrs[1] = wh->dns[1];
  co_certstore_opts_t co = {o->namespace_, NULL, o->config_name, o->cert_validity_s,
                            wh->dns_ptrs,  2,    loopback,       1};
  int rc = co_certstore_init(client, &wh->certs, &co);
  if (rc != 0)
    return rc;
  wh->certs.data = wh;
  wh->certs.on_loaded = on_cert;
  rc = co_http_server_init(client->loop, &wh->http);
  if (rc != 0) {
    co_certstore_close(&wh->certs, NULL);
    return rc;
  }
  wh->http.data = wh;
  co_http_route_opts_t ro = {CO_HTTP_POST, CO_ADMISSION_MAX_BODY};
  rc = co_http_server_route(&wh->http, CO_WEBHOOK_PATH, &ro, on_mutate, wh);
  if (rc != 0) {
    co_certstore_close(&wh->certs, NULL);
    co_http_server_close(&wh->http, NULL);
    return rc;
  }
  wh->bind = co_strdup(o->bind_address);
  wh->open = 2;
  /* every family from the first scrape on */
  static const char *const results[] = {"mutated", "allowed", "denied", "malformed", "unavailable"};
  for (size_t i = 0; i < sizeof(results) / sizeof(results[0]); i++)
    co_metric_add(m_reviews(), (const char *const[]){results[i]}, 0);
  m_handler();
  m_request();
  co_metrics_add_collector(collect, wh);
  return 0;
}

int co_webhook_start(co_webhook_t *wh) { return co_certstore_start(&wh->certs); }

void co_webhook_set_leader(co_webhook_t *wh, int leading) {
  co_certstore_set_leader(&wh->certs, leading);
}

int co_webhook_ready(const co_webhook_t *wh) { return wh->listening && wh->certs.loaded; }

static void part_closed(co_webhook_t *wh) {
  if (--wh->open > 0)
    return;
  co_log(CO_LOG_INFO, "webhook stopped", CO_I("reviews", wh->admission.stats.reviews),
         CO_I("mutated", wh->admission.stats.mutated), CO_I("denied", wh->admission.stats.denied),
         CO_I("malformed", wh->admission.stats.malformed), CO_I("unavailable", wh->unavailable));
  co_free(wh->bind);
  wh->bind = NULL;
  if (wh->close_cb != NULL)
    wh->close_cb(wh);
}

static void on_certs_closed(co_certstore_t *cs) { part_closed(cs->data); }

static void on_http_closed(co_http_server_t *srv) { part_closed(srv->data); }

void co_webhook_close(co_webhook_t *wh, co_webhook_cb cb) {
  co_metrics_remove_collector(collect, wh);
  wh->close_cb = cb;
  wh->listening = 0;
  co_http_server_close(&wh->http, on_http_closed);
  co_certstore_close(&wh->certs, on_certs_closed);
}
