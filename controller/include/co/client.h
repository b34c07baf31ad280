/* HTTP client for the Kubernetes API server, single-threaded on a libuv loop: one libcurl
 * multi handle driven by curl_multi_socket_action, one uv_poll per socket and one uv_timer.
 *
 * Requests are caller-allocated (libuv style): co_req_init, co_req_start(cb); the callback
 * fires exactly once per successful start, later, on the loop (never from inside
 * co_req_start). After the callback the request may be started again or released with
 * co_req_cleanup. A request must not be freed while started.
 *
 * Behaviour shared by every request:
 * - bearer token or client certificate from the kubeconfig; a token file is re-read every
 *   token_reload_ms and after a 401 (the request is then retried once with the new token);
 * - client-side token buckets (qps/burst; one for Events, one for the rest) delay requests
 *   before they are sent;
 * - 429, and 5xx carrying Retry-After (or any 5xx for GET), are retried after Retry-After or
 *   an exponential backoff, at most max_retries times; streamed requests are never retried;
 * - a transfer that receives no byte for stall_timeout_s is aborted: CO_ESTALLED for a stream,
 *   CO_ETIMEOUT otherwise (transport failures are never retried here: callers back off);
 * - non-2xx answers keep the API server's Status reason and message on the request. */
#ifndef CO_CLIENT_H
#define CO_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "co/buf.h"
#include "co/kubeconfig.h"
#include "co/ratelimit.h"

typedef struct co_client_s co_client_t;
typedef struct co_req_s co_req_t;

typedef enum {
  CO_GET = 0,
  CO_POST,
  CO_PUT,
  CO_PATCH_MERGE,     /* application/merge-patch+json */
  CO_PATCH_JSON,      /* application/json-patch+json */
  CO_PATCH_STRATEGIC, /* application/strategic-merge-patch+json */
  CO_APPLY,           /* server-side apply; fieldManager added from the client options */
  CO_DELETE,
  CO__VERB_MAX
} co_verb_t;

/* Fires once per start. Read req->err, req->http_status, req->body, req->status_*. */
typedef void (*co_req_cb)(co_req_t *req);
/* Streamed body chunk of a 2xx answer (borrowed bytes). Return 0 to continue, or a CO_E*
 * code to abort the request, which then completes with that error. */
typedef int (*co_req_data_cb)(co_req_t *req, const char *data, size_t len);
typedef void (*co_client_close_cb)(co_client_t *client);

typedef struct co_client_opts_s {
  double qps;                /* default 20; <= 0 unlimited; every request but Events */
  int burst;                 /* default 40 */
  double event_qps;          /* default 5: Events (events.k8s.io) have a bucket of their own */
  int event_burst;           /* default 25 */
  unsigned max_retries;      /* default 10 */
  long connect_timeout_ms;   /* default 10000 */
  long request_timeout_ms;   /* non-streamed requests; default 60000 */
  long stall_timeout_s;      /* no byte received for this long aborts; default 90 */
  size_t max_body;           /* largest buffered response body; default 64 MiB */
  uint64_t token_reload_ms;  /* default 60000 */
  const char *user_agent;    /* borrowed; default "confidential-operator" */
  const char *field_manager; /* borrowed; default "confidential-operator" */
} co_client_opts_t;

typedef struct co_client_stats_s {
  uint64_t started;   /* requests sent to the server, retries included */
  uint64_t completed; /* callbacks delivered */
  uint64_t retries;
  uint64_t throttled; /* starts delayed by the client-side rate limit */
  uint64_t by_verb[CO__VERB_MAX];
  uint64_t by_class[6]; /* [0] no answer, [1..5] 1xx..5xx */
  uint64_t token_reloads;
} co_client_stats_t;

struct co__client_state;
struct co__req_state;

struct co_client_s {
  /* public */
  void *data;
  /* read-only */
  uv_loop_t *loop;
  co_client_stats_t stats;
  /* private */
  struct co__client_state *s;
};

struct co_req_s {
  /* public */
  void *data;
  int no_retry; /* set after co_req_init: never retry, not even a 429 (an eviction's 429 means
                   a PodDisruptionBudget blocks it: the caller decides when to try again) */
  /* read-only, valid from the callback until the next start or cleanup */
  int err;              /* 0 or a CO_E* code */
  long http_status;     /* 0 when no answer was received */
  co_buf_t body;        /* the response body (empty for streamed 2xx answers) */
  char *status_reason;  /* metav1.Status reason, e.g. "NotFound", "Expired"; or NULL */
  char *status_message; /* metav1.Status message, or the transport error text; or NULL */
  unsigned retries;     /* retries this request needed */
  co_verb_t verb;
  /* private */
  co_client_t *client;
  co_req_data_cb on_data;
  struct co__req_state *s;
};

void co_client_opts_default(co_client_opts_t *opts);

/* Prepares a client for cfg (borrowed during the call; what is needed is copied). opts may be
 * NULL. On failure returns a CO_E* code, writes a message to err and leaves nothing to close. */
int co_client_init(uv_loop_t *loop, co_client_t *client, const co_kubeconfig_t *cfg,
                   const co_client_opts_t *opts, char *err, size_t errlen);

/* Cancels every started request (their callbacks fire with CO_ECANCELED), closes the
 * handles and frees the client's memory; cb fires last, on the loop. */
void co_client_close(co_client_t *client, co_client_close_cb cb);

/* Requests started whose callback has not fired yet (0 once closed). */
size_t co_client_requests(const co_client_t *client);

/* Binds req to client; allocates nothing. */
void co_req_init(co_client_t *client, co_req_t *req);

/* Makes the answer's 2xx body be handed to on_data instead of being buffered (watch).
 * Must be called before co_req_start; cleared by co_req_cleanup. */
void co_req_set_stream(co_req_t *req, co_req_data_cb on_data);

/* Starts verb on path (e.g. "/api/v1/nodes?limit=500", already URL-encoded; copied). body
 * (copied; may be NULL) is sent as JSON. Returns 0, after which cb fires exactly once, or a
 * CO_E* code (CO_EBUSY if req is started), after which cb never fires. */
int co_req_start(co_req_t *req, co_verb_t verb, const char *path, const char *body, size_t body_len,
                 co_req_cb cb);

/* Asks a started request to stop; its callback fires later with CO_ECANCELED (or with its
 * real result if it completed first). No-op when not started. Safe from any callback. */
void co_req_cancel(co_req_t *req);

/* Returns 1 while started (the callback has not fired yet). */
int co_req_active(const co_req_t *req);

/* Frees the response data. Must not be called while started. */
void co_req_cleanup(co_req_t *req);

/* Name of a verb ("GET", "PATCH", "APPLY" ...), static. */
const char *co_verb_name(co_verb_t verb);

#endif
