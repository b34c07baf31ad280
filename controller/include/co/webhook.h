/* The mutating admission webhook of the controller process: an HTTPS server on the controller's
 * loop serving POST /mutate (co_admission_review), with its certificate from the shared
 * Secret (co_certstore). The server listens once the first certificate is loaded and swaps
 * certificates on rotation without closing connections.
 *
 * Answers: 200 with the AdmissionReview response; 400 with a message for a malformed review;
 * 413 past CO_ADMISSION_MAX_BODY; 503 while the controller's caches are not synced (the API
 * server then applies the configuration's failurePolicy: Ignore in the bundle, and the
 * reconciler converges the object later). A failure to listen is logged and leaves the webhook
 * not ready; the controller keeps running (the reconciler is the backstop). */
#ifndef CO_WEBHOOK_H
#define CO_WEBHOOK_H

#include <stdint.h>
#include <uv.h>

#include "co/admission.h"
#include "co/certstore.h"
#include "co/client.h"
#include "co/http.h"

#define CO_WEBHOOK_PATH "/mutate"
#define CO_WEBHOOK_SERVICE "confidential-operator-webhook"

typedef struct co_webhook_s co_webhook_t;
typedef void (*co_webhook_cb)(co_webhook_t *wh);

typedef struct co_webhook_opts_s {
  const char *bind_address; /* "host:port" or ":port" (borrowed) */
  const char *namespace_;   /* operator namespace: the Secret, the Service DNS names */
  const char *config_name;  /* MutatingWebhookConfiguration for the caBundle ("" none) */
  int fail_closed;
  int64_t cert_validity_s;
  /* Decision with the controller's inputs (co_reconciler_decide) and whether its caches are
   * synced; both called on the loop with ud. */
  co_admission_decide_fn decide;
  int (*caches_synced)(void *ud);
  void *ud;
  const co_policy_t *policy; /* borrowed */
} co_webhook_opts_t;

struct co_webhook_s {
  /* public */
  void *data;
  /* read-only */
  int listening; /* serving with a loaded certificate */
  co_admission_t admission;
  co_certstore_t certs;
  co_http_server_t http;
  uint64_t unavailable; /* reviews answered 503 (caches not synced) */
  /* private */
  char *bind;
  char dns[2][320];
  const char *dns_ptrs[2];
  int (*caches_synced)(void *ud);
  void *ud;
  int open;
  co_webhook_cb close_cb;
};

/* opts is copied (policy stays borrowed). Returns 0 or a CO_E* code (nothing to close). */
int co_webhook_init(co_client_t *client, co_webhook_t *wh, const co_webhook_opts_t *opts);
int co_webhook_start(co_webhook_t *wh);
/* Only the leader rotates the certificate and injects the caBundle. */
void co_webhook_set_leader(co_webhook_t *wh, int leading);
/* 1 once the webhook serves with a loaded certificate. */
int co_webhook_ready(const co_webhook_t *wh);
/* Stops serving (requests in flight finish) and frees everything; cb fires once, later. */
void co_webhook_close(co_webhook_t *wh, co_webhook_cb cb);

#endif
