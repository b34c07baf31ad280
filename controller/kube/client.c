/* API server HTTP client: libcurl multi driven by one libuv loop.
 *
 * Request states: WAITING (rate limit or retry delay, in the sorted wait list), ACTIVE (an
 * easy handle in the multi), AWAIT_TOKEN (parked after a 401 until the token file has been
 * re-read). Completion always happens outside libcurl's callbacks: in check_multi_info after
 * curl_multi_socket_action returned, or in the idle pass that handles cancels and close. */
#include "co/client.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "co/alloc.h"
#include "co/error.h"
#include "co/log.h"
#include "co/metrics.h"

enum { RS_WAITING = 1, RS_ACTIVE, RS_AWAIT_TOKEN, RS_FAILED, RS_DONE };

/* Largest token file accepted; projected tokens are about 1 KiB. */
#define TOKEN_MAX (64 * 1024)

struct co__req_state {
  co_req_t *req;
  co_req_cb cb;
  char *url;
  char *body;
  size_t body_len;
  CURL *easy;
  struct curl_slist *headers;
  struct curl_slist *connect_to;
  int state;
  int canceled;
  int retried_401;
  int event;                         /* an events.k8s.io request: the events bucket */
  int stream_err;                    /* error raised while receiving; wins over curl's result */
  uint64_t ready_at;                 /* WAITING: when to send */
  struct co__req_state *prev, *next; /* every started request */
  struct co__req_state *qnext;       /* wait list or token list */
  struct co__req_state *dnext;       /* deferred cancel list */
  int deferred;
  int fail_err; /* RS_FAILED: the error to deliver from the idle pass */
  char errbuf[CURL_ERROR_SIZE];
};

typedef struct sock_ctx_s {
  uv_poll_t poll;
  curl_socket_t fd;
  co_client_t *client;
  struct sock_ctx_s *prev, *next;
} sock_ctx_t;

typedef struct token_work_s {
  uv_work_t work;
  char *path;  /* owned */
  char *token; /* result, owned */
  int err;
  co_client_t *client;
} token_work_t;

struct co__client_state {
  CURLM *multi;
  uv_timer_t curl_timer;
  uv_timer_t delay_timer;
  uv_timer_t token_timer;
  uv_idle_t idle;
  co_ratelimit_t bucket;
  co_ratelimit_t event_bucket; /* Events never take the tokens of the writes they report */
  co_client_opts_t opts;
  char *user_agent;
  char *field_manager;
  char *base_url;   /* URL prefix requests are appended to */
  char *connect_to; /* CURLOPT_CONNECT_TO entry for tls-server-name, or NULL */
  int insecure;
  char *ca_file;
  unsigned char *ca_data;
  size_t ca_data_len;
  char *cert_file, *key_file;
  unsigned char *cert_data, *key_data;
  size_t cert_data_len, key_data_len;
  char *token;
  char *token_file;
  struct co__req_state *all;
  struct co__req_state *waiting; /* sorted by ready_at */
  struct co__req_state *await_token;
  struct co__req_state *deferred; /* cancels to process in the idle pass */
  sock_ctx_t *socks;
  token_work_t *reload; /* in flight, or NULL */
  int closing;
  int close_swept;   /* the idle pass canceled every request */
  int close_started; /* handles are being closed */
  int pending_closes;
  co_client_close_cb close_cb;
};

static const char *verb_names[CO__VERB_MAX] = {"GET",   "POST",  "PUT",   "PATCH",
                                               "PATCH", "PATCH", "APPLY", "DELETE"};

const char *co_verb_name(co_verb_t verb) {
  return (unsigned)verb < CO__VERB_MAX ? verb_names[verb] : "?";
}

void co_client_opts_default(co_client_opts_t *o) {
  memset(o, 0, sizeof(*o));
  o->qps = 20;
  o->burst = 40;
  o->event_qps = 5;
  o->event_burst = 25;
  o->max_retries = 10;
  o->connect_timeout_ms = 10000;
  o->request_timeout_ms = 60000;
  o->stall_timeout_s = 90;
  o->max_body = 64u * 1024 * 1024;
  o->token_reload_ms = 60000;
  o->user_agent = "confidential-operator";
  o->field_manager = "confidential-operator";
}

static void check_multi_info(co_client_t *c);
static void start_transfer(co_client_t *c, struct co__req_state *rs);
static void enqueue(co_client_t *c, struct co__req_state *rs, uint64_t delay_ms);
static void kick_token_reload(co_client_t *c);
static void maybe_finish_close(co_client_t *c);
static void close_handles(co_client_t *c);

/* ---- sockets and timers (curl's multi_socket contract) ---------------------------------- */

static void sock_closed(uv_handle_t *h) {
  sock_ctx_t *sc = h->data;
  co_client_t *c = sc->client;
  co_free(sc);
  c->s->pending_closes--;
  maybe_finish_close(c);
}

static void sock_close(co_client_t *c, sock_ctx_t *sc) {
  uv_poll_stop(&sc->poll);
  if (sc->prev)
    sc->prev->next = sc->next;
  else
    c->s->socks = sc->next;
  if (sc->next)
    sc->next->prev = sc->prev;
  c->s->pending_closes++;
  uv_close((uv_handle_t *)&sc->poll, sock_closed);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  sock_ctx_t *sc = h->data;
  co_client_t *c = sc->client;
  int flags = 0;
  if (status < 0)
    flags = CURL_CSELECT_ERR;
  else {
    if (events & UV_READABLE)
      flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
      flags |= CURL_CSELECT_OUT;
  }
  int running;
  curl_multi_socket_action(c->s->multi, sc->fd, flags, &running);
  check_multi_info(c);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
  co_client_t *c = userp;
  sock_ctx_t *sc = socketp;
  (void)easy;
  if (what == CURL_POLL_REMOVE) {
    if (sc != NULL) {
      curl_multi_assign(c->s->multi, fd, NULL);
      sock_close(c, sc);
    }
    return 0;
  }
  if (sc == NULL) {
    sc = co_calloc(1, sizeof(*sc));
    sc->fd = fd;
    sc->client = c;
    if (uv_poll_init_socket(c->loop, &sc->poll, fd) != 0) {
      co_free(sc);
      return -1;
    }
    sc->poll.data = sc;
    sc->next = c->s->socks;
    if (sc->next)
      sc->next->prev = sc;
    c->s->socks = sc;
    curl_multi_assign(c->s->multi, fd, sc);
  }
  int events = 0;
  if (what & CURL_POLL_IN)
    events |= UV_READABLE;
  if (what & CURL_POLL_OUT)
    events |= UV_WRITABLE;
  uv_poll_start(&sc->poll, events, on_poll);
  return 0;
}

static void on_curl_timeout(uv_timer_t *t) {
  co_client_t *c = t->data;
  int running;
  curl_multi_socket_action(c->s->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_multi_info(c);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp) {
  co_client_t *c = userp;
  (void)multi;
  if (timeout_ms < 0)
    uv_timer_stop(&c->s->curl_timer);
  else /* 0 is scheduled for the next loop pass, never run re-entrantly */
    uv_timer_start(&c->s->curl_timer, on_curl_timeout, (uint64_t)timeout_ms, 0);
  return 0;
}

/* ---- completion ---------------------------------------------------------------------- */

static void unlink_all(co_client_t *c, struct co__req_state *rs) {
  if (rs->prev)
    rs->prev->next = rs->next;
  else
    c->s->all = rs->next;
  if (rs->next)
    rs->next->prev = rs->prev;
  rs->prev = rs->next = NULL;
}

static void remove_from(struct co__req_state **list, struct co__req_state *rs) {
  for (struct co__req_state **p = list; *p; p = &(*p)->qnext) {
    if (*p == rs) {
      *p = rs->qnext;
      rs->qnext = NULL;
      return;
    }
  }
}

static void remove_deferred(co_client_t *c, struct co__req_state *rs) {
  if (!rs->deferred)
    return;
  for (struct co__req_state **p = &c->s->deferred; *p; p = &(*p)->dnext) {
    if (*p == rs) {
      *p = rs->dnext;
      break;
    }
  }
  rs->deferred = 0;
  rs->dnext = NULL;
}

static void free_state(struct co__req_state *rs) {
  co_free(rs->url);
  co_free(rs->body);
  co_free(rs);
}

/* Delivers the callback. The state is detached first so the callback may restart req. */
static void complete(co_client_t *c, struct co__req_state *rs, int err) {
  co_req_t *req = rs->req;
  unlink_all(c, rs);
  remove_deferred(c, rs);
  rs->state = RS_DONE;
  req->err = err;
  req->s = NULL;
  c->stats.completed++;
  co_req_cb cb = rs->cb;
  free_state(rs);
  cb(req);
}

static void set_status_from_body(co_req_t *req) {
  if (req->body.len == 0)
    return;
  cJSON *st = cJSON_ParseWithLength(req->body.data, req->body.len);
  if (st == NULL)
    return;
  const cJSON *kind = cJSON_GetObjectItemCaseSensitive(st, "kind");
  if (cJSON_IsString(kind) && strcmp(kind->valuestring, "Status") == 0) {
    const cJSON *reason = cJSON_GetObjectItemCaseSensitive(st, "reason");
    const cJSON *message = cJSON_GetObjectItemCaseSensitive(st, "message");
    if (cJSON_IsString(reason)) {
      co_free(req->status_reason);
      req->status_reason = co_strdup(reason->valuestring);
    }
    if (cJSON_IsString(message)) {
      co_free(req->status_message);
      req->status_message = co_strdup(message->valuestring);
    }
  }
  cJSON_Delete(st);
}

/* Forgets a failed attempt's answer before the request is sent again, so that the final
 * result never carries the body, Status reason or error text of an earlier attempt. */
static void reset_answer(co_req_t *req) {
  co_buf_reset(&req->body);
  co_free(req->status_reason);
  co_free(req->status_message);
  req->status_reason = req->status_message = NULL;
}

static int map_curl_error(CURLcode rc, int streamed) {
  switch (rc) {
  case CURLE_OK:
    return CO_OK;
  case CURLE_OPERATION_TIMEDOUT:
    return streamed ? CO_ESTALLED : CO_ETIMEOUT;
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY:
  case CURLE_COULDNT_CONNECT:
    return CO_ECONNECT;
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_CRL_BADFILE:
  case CURLE_SSL_ENGINE_NOTFOUND:
  case CURLE_SSL_ENGINE_SETFAILED:
  case CURLE_SSL_SHUTDOWN_FAILED:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
  case CURLE_SSL_INVALIDCERTSTATUS:
  case CURLE_SSL_CLIENTCERT:
    return CO_ETLS;
  case CURLE_OUT_OF_MEMORY:
    return CO_ENOMEM;
  default:
    return CO_ETRANSPORT;
  }
}

/* The delay before retry n (0-based): Retry-After when given, else 500 ms doubling to 30 s. */
static uint64_t retry_delay_ms(long retry_after_s, unsigned n) {
  if (retry_after_s > 0)
    return (uint64_t)(retry_after_s > 60 ? 60 : retry_after_s) * 1000;
  uint64_t d = 500;
  for (unsigned i = 0; i < n && d < 30000; i++)
    d *= 2;
  return d < 30000 ? d : 30000;
}

/* Retries only what the server asked to be retried (429, Retry-After) or what is safe to
 * repeat (5xx on GET). Connection failures are left to the caller's own backoff (reflector,
 * work queue), so that an unreachable server is reported at once, not after minutes. */
static int retryable(const co_req_t *req, int err, long retry_after_s) {
  if (req->on_data != NULL || req->no_retry)
    return 0; /* the watch owner decides: it must resume from its own resourceVersion */
  if (req->http_status == 0)
    return 0; /* no answer at all */
  switch (err) {
  case CO_ETOOMANY:
    return 1;
  case CO_ESERVER:
  case CO_EUNAVAILABLE:
  case CO_ETIMEOUT:
    return retry_after_s > 0 || req->verb == CO_GET;
  default:
    return 0;
  }
}

static void finish_transfer(co_client_t *c, struct co__req_state *rs, CURLcode rc) {
  co_req_t *req = rs->req;
  long code = 0;
  curl_off_t retry_after = -1;
  curl_easy_getinfo(rs->easy, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_getinfo(rs->easy, CURLINFO_RETRY_AFTER, &retry_after);
  curl_easy_cleanup(rs->easy);
  rs->easy = NULL;
  curl_slist_free_all(rs->headers);
  rs->headers = NULL;
  curl_slist_free_all(rs->connect_to);
  rs->connect_to = NULL;
  req->http_status = code;
  c->stats.by_class[code >= 100 && code < 600 ? code / 100 : 0]++;
  co_metrics_api_request(verb_names[req->verb], code);

  int err;
  if (rs->canceled) {
    err = CO_ECANCELED;
  } else if (rs->stream_err != 0) {
    err = rs->stream_err;
  } else if (rc != CURLE_OK) {
    err = map_curl_error(rc, req->on_data != NULL);
    co_free(req->status_message);
    req->status_message = co_strdup(rs->errbuf[0] ? rs->errbuf : curl_easy_strerror(rc));
  } else {
    err = co_err_from_http(code);
    if (err != CO_OK)
      set_status_from_body(req);
  }

  if (err == CO_EUNAUTHORIZED && c->s->token_file != NULL && !rs->retried_401 && !c->s->closing) {
    /* Bound tokens rotate: read the file again, then retry once. */
    rs->retried_401 = 1;
    rs->state = RS_AWAIT_TOKEN;
    rs->qnext = c->s->await_token;
    c->s->await_token = rs;
    reset_answer(req);
    kick_token_reload(c);
    return;
  }
  long ra = retry_after > 0 ? (long)retry_after : 0;
  if (err != CO_OK && !c->s->closing && !rs->canceled && req->retries < c->s->opts.max_retries &&
      rc == CURLE_OK && retryable(req, err, ra)) {
    uint64_t delay = retry_delay_ms(ra, req->retries);
    co_log(CO_LOG_INFO, "retrying request", CO_S("verb", co_verb_name(req->verb)),
           CO_S("url", rs->url), CO_I("status", code), CO_E(err), CO_I("delay_ms", delay));
    req->retries++;
    c->stats.retries++;
    reset_answer(req);
    enqueue(c, rs, delay);
    return;
  }
  complete(c, rs, err);
}

static void check_multi_info(co_client_t *c) {
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(c->s->multi, &left)) != NULL) {
    if (msg->msg != CURLMSG_DONE)
      continue;
    CURL *easy = msg->easy_handle;
    CURLcode rc = msg->data.result;
    struct co__req_state *rs = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&rs);
    curl_multi_remove_handle(c->s->multi, easy);
    finish_transfer(c, rs, rc);
  }
}

/* ---- sending ------------------------------------------------------------------------- */

static size_t on_write(char *p, size_t size, size_t nmemb, void *ud) {
  struct co__req_state *rs = ud;
  co_req_t *req = rs->req;
  size_t n = size * nmemb;
  if (rs->canceled)
    return 0;
  if (req->on_data != NULL) {
    long code = 0;
    curl_easy_getinfo(rs->easy, CURLINFO_RESPONSE_CODE, &code);
    if (code >= 200 && code < 300) {
      int rc = req->on_data(req, p, n);
      if (rc != 0) {
        rs->stream_err = rc;
        return 0;
      }
      return n;
    }
  }
  if (co_buf_append(&req->body, p, n) != 0) {
    rs->stream_err = CO_ETOOBIG;
    return 0;
  }
  return n;
}

static const char *content_type(co_verb_t v) {
  switch (v) {
  case CO_PATCH_MERGE:
    return "Content-Type: application/merge-patch+json";
  case CO_PATCH_JSON:
    return "Content-Type: application/json-patch+json";
  case CO_PATCH_STRATEGIC:
    return "Content-Type: application/strategic-merge-patch+json";
  case CO_APPLY:
    return "Content-Type: application/apply-patch+yaml";
  default:
    return "Content-Type: application/json";
  }
}

static void setup_tls(co_client_t *c, CURL *e) {
  struct co__client_state *s = c->s;
  if (s->insecure) {
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (s->ca_file)
    curl_easy_setopt(e, CURLOPT_CAINFO, s->ca_file);
  if (s->ca_data) {
    struct curl_blob b = {s->ca_data, s->ca_data_len, CURL_BLOB_NOCOPY};
    curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &b);
  }
  if (s->cert_file)
    curl_easy_setopt(e, CURLOPT_SSLCERT, s->cert_file);
  if (s->cert_data) {
    struct curl_blob b = {s->cert_data, s->cert_data_len, CURL_BLOB_NOCOPY};
    curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &b);
    curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
  }
  if (s->key_file)
    curl_easy_setopt(e, CURLOPT_SSLKEY, s->key_file);
  if (s->key_data) {
    struct curl_blob b = {s->key_data, s->key_data_len, CURL_BLOB_NOCOPY};
    curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &b);
    curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
  }
}

static void on_idle(uv_idle_t *h);

/* A request that cannot be sent completes from the idle pass, so that its callback never
 * runs inside co_req_start. */
static void defer_fail(co_client_t *c, struct co__req_state *rs, int err) {
  rs->state = RS_FAILED;
  rs->fail_err = err;
  if (!rs->deferred) {
    rs->deferred = 1;
    rs->dnext = c->s->deferred;
    c->s->deferred = rs;
  }
  uv_idle_start(&c->s->idle, on_idle);
}

static void start_transfer(co_client_t *c, struct co__req_state *rs) {
  struct co__client_state *s = c->s;
  co_req_t *req = rs->req;
  CURL *e = curl_easy_init();
  if (e == NULL) {
    defer_fail(c, rs, CO_ENOMEM);
    return;
  }
  rs->easy = e;
  rs->state = RS_ACTIVE;
  rs->stream_err = 0;
  rs->errbuf[0] = '\0';
  curl_easy_setopt(e, CURLOPT_URL, rs->url);
  curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)rs);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, rs->errbuf);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
  /* Waiting for a connection to multiplex on only makes sense where HTTP/2 can be negotiated
   * (ALPN, https). On http:// the bundle learns it is HTTP/1.1 from a status line, and curl
   * does not wake the handles that wait for that: they would sit until some other transfer
   * ends, i.e. forever behind a watch. */
  if (strncmp(rs->url, "https:", 6) == 0)
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, s->opts.connect_timeout_ms);
  if (req->on_data == NULL)
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, s->opts.request_timeout_ms);
  /* Dead-stream detection: fewer than 1 byte/s for stall_timeout_s aborts the transfer. */
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, s->opts.stall_timeout_s);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, rs);
  curl_easy_setopt(e, CURLOPT_USERAGENT, s->user_agent);
  if (s->connect_to) {
    rs->connect_to = curl_slist_append(NULL, s->connect_to);
    curl_easy_setopt(e, CURLOPT_CONNECT_TO, rs->connect_to);
  }
  setup_tls(c, e);

  struct curl_slist *h = NULL;
  h = curl_slist_append(h, "Accept: application/json");
  if (s->token != NULL) {
    co_buf_t auth;
    co_buf_init(&auth, TOKEN_MAX + 64);
    co_buf_appendf(&auth, "Authorization: Bearer %s", s->token);
    h = curl_slist_append(h, co_buf_str(&auth));
    co_buf_free(&auth);
  }
  switch (req->verb) {
  case CO_GET:
    break;
  case CO_DELETE:
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE");
    break;
  case CO_POST:
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    break;
  case CO_PUT:
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "PUT");
    break;
  default:
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "PATCH");
    break;
  }
  if (req->verb != CO_GET) {
    h = curl_slist_append(h, content_type(req->verb));
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rs->body_len);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, rs->body != NULL ? rs->body : "");
  }
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
  rs->headers = h;
  c->stats.started++;
  c->stats.by_verb[req->verb]++;
  if (curl_multi_add_handle(s->multi, e) != CURLM_OK) {
    curl_easy_cleanup(e);
    rs->easy = NULL;
    curl_slist_free_all(rs->headers);
    rs->headers = NULL;
    curl_slist_free_all(rs->connect_to);
    rs->connect_to = NULL;
    defer_fail(c, rs, CO_ETRANSPORT);
  }
}

/* ---- waiting: rate limit and retry delays -------------------------------------------- */

static void on_delay_timer(uv_timer_t *t);

static void arm_delay_timer(co_client_t *c) {
  struct co__client_state *s = c->s;
  if (s->waiting == NULL) {
    uv_timer_stop(&s->delay_timer);
    return;
  }
  uint64_t now = uv_now(c->loop);
  uint64_t at = s->waiting->ready_at;
  uv_timer_start(&s->delay_timer, on_delay_timer, at > now ? at - now : 0, 0);
}

static void on_delay_timer(uv_timer_t *t) {
  co_client_t *c = t->data;
  struct co__client_state *s = c->s;
  uint64_t now = uv_now(c->loop);
  while (s->waiting != NULL && s->waiting->ready_at <= now) {
    struct co__req_state *rs = s->waiting;
    s->waiting = rs->qnext;
    rs->qnext = NULL;
    start_transfer(c, rs);
  }
  arm_delay_timer(c);
}

/* Sends rs after delay_ms and after a token of the client-side rate limit. */
static void enqueue(co_client_t *c, struct co__req_state *rs, uint64_t delay_ms) {
  struct co__client_state *s = c->s;
  uint64_t now = uv_now(c->loop);
  uint64_t wait = co_ratelimit_reserve(rs->event ? &s->event_bucket : &s->bucket, now);
  if (wait > 0)
    c->stats.throttled++;
  if (wait < delay_ms)
    wait = delay_ms;
  if (wait == 0) {
    start_transfer(c, rs);
    return;
  }
  rs->state = RS_WAITING;
  rs->ready_at = now + wait;
  struct co__req_state **p = &s->waiting;
  while (*p && (*p)->ready_at <= rs->ready_at)
    p = &(*p)->qnext;
  rs->qnext = *p;
  *p = rs;
  arm_delay_timer(c);
}

/* ---- token file ---------------------------------------------------------------------- */

/* Runs on the threadpool: the file read is the only blocking work. */
static void token_work(uv_work_t *w) {
  token_work_t *tw = w->data;
  int fd = open(tw->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    tw->err = CO_EIO;
    return;
  }
  char *buf = co_malloc(TOKEN_MAX + 1);
  size_t len = 0;
  for (;;) {
    ssize_t n = read(fd, buf + len, TOKEN_MAX + 1 - len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    len += (size_t)n;
    if (len > TOKEN_MAX)
      break;
  }
  close(fd);
  while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
    len--;
  if (len == 0 || len > TOKEN_MAX) {
    co_free(buf);
    tw->err = len == 0 ? CO_ECONFIG : CO_ETOOBIG;
    return;
  }
  buf[len] = '\0';
  tw->token = buf;
}

static void token_work_done(uv_work_t *w, int status) {
  token_work_t *tw = w->data;
  co_client_t *c = tw->client;
  struct co__client_state *s = c->s;
  s->reload = NULL;
  if (status == 0 && tw->err == 0) {
    if (s->token == NULL || strcmp(s->token, tw->token) != 0) {
      co_log(s->token == NULL ? CO_LOG_DEBUG : CO_LOG_INFO,
             s->token == NULL ? "bearer token loaded" : "bearer token reloaded",
             CO_S("file", s->token_file));
      co_free(s->token);
      s->token = tw->token;
      tw->token = NULL;
    }
    c->stats.token_reloads++;
  } else if (status == 0) {
    co_log(CO_LOG_WARN, "cannot reload bearer token", CO_S("file", s->token_file), CO_E(tw->err));
  }
  co_free(tw->token);
  co_free(tw->path);
  co_free(tw);
  /* Requests parked on a 401 go again (once); with the old token they will fail for real. */
  struct co__req_state *list = s->await_token;
  s->await_token = NULL;
  while (list != NULL) {
    struct co__req_state *rs = list;
    list = rs->qnext;
    rs->qnext = NULL;
    if (s->closing || rs->canceled)
      complete(c, rs, CO_ECANCELED);
    else
      enqueue(c, rs, 0);
  }
  if (s->closing && s->close_swept && !s->close_started)
    close_handles(c);
}

static void kick_token_reload(co_client_t *c) {
  struct co__client_state *s = c->s;
  if (s->reload != NULL || s->token_file == NULL || s->closing)
    return;
  token_work_t *tw = co_calloc(1, sizeof(*tw));
  tw->work.data = tw;
  tw->path = co_strdup(s->token_file);
  tw->client = c;
  s->reload = tw;
  if (uv_queue_work(c->loop, &tw->work, token_work, token_work_done) != 0) {
    s->reload = NULL;
    co_free(tw->path);
    co_free(tw);
    co_log(CO_LOG_WARN, "cannot schedule the token file read", CO_S("file", s->token_file));
    /* Parked requests go on with the token they have rather than wait forever. */
    struct co__req_state *list = s->await_token;
    s->await_token = NULL;
    while (list != NULL) {
      struct co__req_state *rs = list;
      list = rs->qnext;
      rs->qnext = NULL;
      enqueue(c, rs, 0);
    }
  }
}

static void on_token_timer(uv_timer_t *t) { kick_token_reload(t->data); }

/* ---- deferred work: cancels and close ------------------------------------------------ */

static void handle_closed(uv_handle_t *h) {
  co_client_t *c = h->data;
  c->s->pending_closes--;
  maybe_finish_close(c);
}

static void free_client_state(struct co__client_state *s) {
  co_free(s->user_agent);
  co_free(s->field_manager);
  co_free(s->base_url);
  co_free(s->connect_to);
  co_free(s->ca_file);
  co_free(s->ca_data);
  co_free(s->cert_file);
  co_free(s->key_file);
  co_free(s->cert_data);
  co_free(s->key_data);
  co_free(s->token);
  co_free(s->token_file);
  co_free(s);
}

static void maybe_finish_close(co_client_t *c) {
  struct co__client_state *s = c->s;
  if (!s->closing || !s->close_started || s->pending_closes > 0 || s->reload != NULL)
    return;
  co_client_close_cb cb = s->close_cb;
  free_client_state(s);
  c->s = NULL;
  if (cb)
    cb(c);
}

static void close_handles(co_client_t *c) {
  struct co__client_state *s = c->s;
  s->close_started = 1;
  curl_multi_cleanup(s->multi);
  s->multi = NULL;
  while (s->socks != NULL) /* sockets curl did not report removed */
    sock_close(c, s->socks);
  uv_handle_t *hs[] = {(uv_handle_t *)&s->curl_timer, (uv_handle_t *)&s->delay_timer,
                       (uv_handle_t *)&s->token_timer, (uv_handle_t *)&s->idle};
  for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++) {
    s->pending_closes++;
    uv_close(hs[i], handle_closed);
  }
  maybe_finish_close(c);
}

static void on_idle(uv_idle_t *h) {
  co_client_t *c = h->data;
  struct co__client_state *s = c->s;
  while (s->deferred != NULL) {
    struct co__req_state *rs = s->deferred;
    s->deferred = rs->dnext;
    rs->dnext = NULL;
    rs->deferred = 0;
    if (rs->state == RS_ACTIVE) {
      curl_multi_remove_handle(s->multi, rs->easy);
      finish_transfer(c, rs, CURLE_ABORTED_BY_CALLBACK);
    } else if (rs->state == RS_WAITING) {
      remove_from(&s->waiting, rs);
      complete(c, rs, CO_ECANCELED);
    } else if (rs->state == RS_FAILED) {
      complete(c, rs, rs->canceled ? CO_ECANCELED : rs->fail_err);
    }
    /* AWAIT_TOKEN completes when the reload finishes. */
  }
  if (s->closing && !s->close_swept) {
    for (struct co__req_state *rs = s->all, *next; rs != NULL; rs = next) {
      next = rs->next;
      if (rs->state == RS_ACTIVE) {
        rs->canceled = 1;
        curl_multi_remove_handle(s->multi, rs->easy);
        finish_transfer(c, rs, CURLE_ABORTED_BY_CALLBACK);
      } else if (rs->state == RS_WAITING) {
        remove_from(&s->waiting, rs);
        complete(c, rs, CO_ECANCELED);
      } else if (rs->state == RS_FAILED) {
        complete(c, rs, CO_ECANCELED);
      }
    }
    /* Callbacks above cannot start requests (closing); only 401-parked ones remain, and
     * they end when the token reload in flight finishes, which then closes the handles. */
    s->close_swept = 1;
    uv_idle_stop(h);
    if (s->reload == NULL)
      close_handles(c);
    return;
  }
  if (s->deferred == NULL)
    uv_idle_stop(h);
}

void co_req_cancel(co_req_t *req) {
  struct co__req_state *rs = req->s;
  if (rs == NULL || rs->canceled)
    return;
  rs->canceled = 1;
  co_client_t *c = req->client;
  if (rs->state == RS_AWAIT_TOKEN || rs->deferred)
    return;
  rs->deferred = 1;
  rs->dnext = c->s->deferred;
  c->s->deferred = rs;
  uv_idle_start(&c->s->idle, on_idle);
}

int co_req_active(const co_req_t *req) { return req->s != NULL; }

size_t co_client_requests(const co_client_t *client) {
  size_t n = 0;
  if (client->s != NULL)
    for (const struct co__req_state *rs = client->s->all; rs != NULL; rs = rs->next)
      n++;
  return n;
}

/* ---- public lifecycle ---------------------------------------------------------------- */

static int fail(char *err, size_t errlen, int rc, const char *msg) {
  if (err != NULL && errlen > 0)
    snprintf(err, errlen, "%s", msg);
  return rc;
}

static unsigned char *dup_bytes(const unsigned char *p, size_t n) {
  if (p == NULL)
    return NULL;
  unsigned char *q = co_malloc(n ? n : 1);
  memcpy(q, p, n);
  return q;
}

/* Splits cfg->server to build the request base URL, and the CONNECT_TO mapping that makes
 * curl check the certificate against tls-server-name while connecting to the real host. */
static int setup_server(struct co__client_state *s, const co_kubeconfig_t *cfg, char *err,
                        size_t errlen) {
  CURLU *u = curl_url();
  if (u == NULL)
    return CO_ENOMEM;
  int rc = CO_OK;
  if (curl_url_set(u, CURLUPART_URL, cfg->server, 0) != CURLUE_OK) {
    rc = fail(err, errlen, CO_ECONFIG, "server is not a valid URL");
    goto out;
  }
  char *scheme = NULL, *host = NULL, *port = NULL;
  curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
  curl_url_get(u, CURLUPART_HOST, &host, 0);
  curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
  if (scheme == NULL || host == NULL || port == NULL ||
      (strcmp(scheme, "https") != 0 && strcmp(scheme, "http") != 0)) {
    rc = fail(err, errlen, CO_ECONFIG, "server must be an http(s) URL with a host");
  } else {
    size_t n = strlen(cfg->server);
    while (n > 0 && cfg->server[n - 1] == '/')
      n--;
    if (cfg->tls_server_name != NULL && cfg->tls_server_name[0] != '\0') {
      co_buf_t b;
      co_buf_init(&b, 4096);
      co_buf_appendf(&b, "%s:%s:%s:%s", cfg->tls_server_name, port, host, port);
      s->connect_to = co_buf_steal(&b);
      co_buf_init(&b, 4096);
      char *path = NULL;
      curl_url_get(u, CURLUPART_PATH, &path, 0);
      size_t pl = path ? strlen(path) : 0;
      while (pl > 0 && path[pl - 1] == '/')
        pl--;
      co_buf_appendf(&b, "%s://%s:%s%.*s", scheme, cfg->tls_server_name, port, (int)pl,
                     path ? path : "");
      curl_free(path);
      s->base_url = co_buf_steal(&b);
    } else {
      s->base_url = co_strndup(cfg->server, n);
    }
  }
  curl_free(scheme);
  curl_free(host);
  curl_free(port);
out:
  curl_url_cleanup(u);
  return rc;
}

int co_client_init(uv_loop_t *loop, co_client_t *c, const co_kubeconfig_t *cfg,
                   const co_client_opts_t *opts, char *err, size_t errlen) {
  memset(c, 0, sizeof(*c));
  c->loop = loop;
  if (cfg == NULL || cfg->server == NULL)
    return fail(err, errlen, CO_ECONFIG, "no API server address configured");
  struct co__client_state *s = co_calloc(1, sizeof(*s));
  if (opts != NULL)
    s->opts = *opts;
  else
    co_client_opts_default(&s->opts);
  s->user_agent = co_strdup(s->opts.user_agent ? s->opts.user_agent : "confidential-operator");
  s->field_manager =
      co_strdup(s->opts.field_manager ? s->opts.field_manager : "confidential-operator");
  s->opts.user_agent = s->user_agent;
  s->opts.field_manager = s->field_manager;
  int rc = setup_server(s, cfg, err, errlen);
  if (rc != 0) {
    free_client_state(s);
    return rc;
  }
  s->insecure = cfg->insecure;
  s->ca_file = co_strdup(cfg->ca_file);
  s->ca_data = dup_bytes(cfg->ca_data, cfg->ca_data_len);
  s->ca_data_len = cfg->ca_data_len;
  s->cert_file = co_strdup(cfg->client_cert_file);
  s->key_file = co_strdup(cfg->client_key_file);
  s->cert_data = dup_bytes(cfg->client_cert_data, cfg->client_cert_data_len);
  s->cert_data_len = cfg->client_cert_data_len;
  s->key_data = dup_bytes(cfg->client_key_data, cfg->client_key_data_len);
  s->key_data_len = cfg->client_key_data_len;
  s->token = co_strdup(cfg->token);
  s->token_file = co_strdup(cfg->token_file);
  co_ratelimit_init(&s->bucket, s->opts.qps, s->opts.burst, uv_now(loop));
  co_ratelimit_init(&s->event_bucket, s->opts.event_qps, s->opts.event_burst, uv_now(loop));

  s->multi = curl_multi_init();
  if (s->multi == NULL) {
    free_client_state(s);
    return fail(err, errlen, CO_ENOMEM, "cannot create the HTTP client");
  }
  curl_multi_setopt(s->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
  curl_multi_setopt(s->multi, CURLMOPT_SOCKETDATA, c);
  curl_multi_setopt(s->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
  curl_multi_setopt(s->multi, CURLMOPT_TIMERDATA, c);
  curl_multi_setopt(s->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
  uv_timer_init(loop, &s->curl_timer);
  uv_timer_init(loop, &s->delay_timer);
  uv_timer_init(loop, &s->token_timer);
  uv_idle_init(loop, &s->idle);
  s->curl_timer.data = s->delay_timer.data = s->token_timer.data = s->idle.data = c;
  /* Nothing on the loop should be kept alive by these alone. */
  uv_unref((uv_handle_t *)&s->token_timer);
  c->s = s;
  if (s->token_file != NULL && s->opts.token_reload_ms > 0)
    uv_timer_start(&s->token_timer, on_token_timer, s->opts.token_reload_ms,
                   s->opts.token_reload_ms);
  return CO_OK;
}

void co_client_close(co_client_t *c, co_client_close_cb cb) {
  struct co__client_state *s = c->s;
  if (s == NULL || s->closing)
    return;
  s->closing = 1;
  s->close_cb = cb;
  uv_idle_start(&s->idle, on_idle);
}

void co_req_init(co_client_t *client, co_req_t *req) {
  memset(req, 0, sizeof(*req));
  req->client = client;
  co_buf_init(&req->body, client->s != NULL ? client->s->opts.max_body : 0);
}

void co_req_set_stream(co_req_t *req, co_req_data_cb on_data) { req->on_data = on_data; }

static int has_query_param(const char *path, const char *name) {
  const char *q = strchr(path, '?');
  size_t n = strlen(name);
  while (q != NULL) {
    q++;
    if (strncmp(q, name, n) == 0 && q[n] == '=')
      return 1;
    q = strchr(q, '&');
  }
  return 0;
}

int co_req_start(co_req_t *req, co_verb_t verb, const char *path, const char *body, size_t body_len,
                 co_req_cb cb) {
  co_client_t *c = req->client;
  if (req->s != NULL)
    return CO_EBUSY;
  if (c == NULL || c->s == NULL || c->s->closing)
    return CO_ECANCELED;
  if ((unsigned)verb >= CO__VERB_MAX || path == NULL || path[0] != '/' || cb == NULL)
    return CO_EINVAL;
  struct co__client_state *s = c->s;
  struct co__req_state *rs = co_calloc(1, sizeof(*rs));
  rs->req = req;
  rs->cb = cb;
  rs->event = strncmp(path, "/apis/events.k8s.io/", 20) == 0;
  co_buf_t url;
  co_buf_init(&url, 64 * 1024);
  int rc = co_buf_appendf(&url, "%s%s", s->base_url, path);
  if (rc == 0 && verb != CO_GET && verb != CO_DELETE && !has_query_param(path, "fieldManager")) {
    rc = co_buf_appends(&url, strchr(path, '?') ? "&fieldManager=" : "?fieldManager=");
    if (rc == 0)
      rc = co_buf_append_urlenc(&url, s->field_manager);
  }
  if (rc != 0) {
    co_buf_free(&url);
    co_free(rs);
    return rc;
  }
  rs->url = co_buf_steal(&url);
  if (body != NULL) {
    rs->body = co_strndup(body, body_len);
    rs->body_len = body_len;
  }
  /* Fresh answer fields; the request may be a reused one. */
  req->verb = verb;
  req->err = 0;
  req->http_status = 0;
  req->retries = 0;
  co_buf_reset(&req->body);
  co_free(req->status_reason);
  co_free(req->status_message);
  req->status_reason = req->status_message = NULL;
  req->s = rs;
  rs->next = s->all;
  if (rs->next)
    rs->next->prev = rs;
  s->all = rs;
  if (s->token == NULL && s->token_file != NULL) {
    /* The token file has not been read yet (a kubeconfig tokenFile): wait for it. */
    rs->state = RS_AWAIT_TOKEN;
    rs->qnext = s->await_token;
    s->await_token = rs;
    kick_token_reload(c);
    return CO_OK;
  }
  enqueue(c, rs, 0);
  return CO_OK;
}

void co_req_cleanup(co_req_t *req) {
  co_buf_free(&req->body);
  co_free(req->status_reason);
  co_free(req->status_message);
  req->status_reason = req->status_message = NULL;
  req->on_data = NULL;
}
