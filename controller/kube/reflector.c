/* List + watch state machine of one collection. */
#include "co/reflector.h"

#include <string.h>

#include "co/alloc.h"
#include "co/error.h"
#include "co/jsonarena.h"
#include "co/log.h"

/* Longest watch line accepted: the API server's own request limit is 3 MiB per object,
 * and an event wraps one object. */
#define MAX_LINE (4u * 1024 * 1024)
#define DEFAULT_PAGE 500

static const char *state_names[] = {"idle", "listing", "watching", "backoff", "closing", "closed"};

const char *co_reflector_state_name(co_reflector_state_t s) {
  return (unsigned)s < sizeof(state_names) / sizeof(state_names[0]) ? state_names[s] : "?";
}

static void set_state(co_reflector_t *r, co_reflector_state_t st, int err);
static void maybe_closed(co_reflector_t *r);

static uint64_t next_rand(co_reflector_t *r) {
  uint64_t x = r->rng;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  r->rng = x;
  return x;
}

static void set_rv(co_reflector_t *r, const char *rv) {
  if (rv == NULL || rv[0] == '\0')
    return;
  if (r->resource_version != NULL && strcmp(r->resource_version, rv) == 0)
    return;
  co_free(r->resource_version);
  r->resource_version = co_strdup(rv);
}

static int append_selector(co_reflector_t *r, co_buf_t *b) {
  int rc = 0;
  if (r->selector != NULL) {
    rc = co_buf_appends(b, "&labelSelector=");
    if (rc == 0)
      rc = co_buf_appends(b, r->selector);
  }
  if (rc == 0 && r->field_selector != NULL) {
    rc = co_buf_appends(b, "&fieldSelector=");
    if (rc == 0)
      rc = co_buf_appends(b, r->field_selector);
  }
  return rc;
}

/* ---- list ---------------------------------------------------------------------------- */

static void on_list_done(co_req_t *req);

static void list_page(co_reflector_t *r) {
  co_buf_t p;
  co_buf_init(&p, 64 * 1024);
  int rc = co_buf_appendf(&p, "%s?limit=%u", r->path, r->page_limit);
  if (rc == 0 && r->cont != NULL) {
    rc = co_buf_appends(&p, "&continue=");
    if (rc == 0)
      rc = co_buf_append_urlenc(&p, r->cont);
  }
  if (rc == 0)
    rc = append_selector(r, &p);
  if (rc == 0) {
    co_req_set_stream(&r->req, NULL);
    rc = co_req_start(&r->req, CO_GET, co_buf_str(&p), NULL, 0, on_list_done);
  }
  co_buf_free(&p);
  if (rc != 0) {
    r->stats.errors++;
    r->relist_next = 1;
    set_state(r, CO_REFLECTOR_BACKOFF, rc);
  }
}

static void on_list_done(co_req_t *req) {
  co_reflector_t *r = req->data;
  if (r->state == CO_REFLECTOR_CLOSING) {
    maybe_closed(r);
    return;
  }
  int err = req->err;
  cJSON *root = NULL;
  co_json_arena_t arena;
  co_json_arena_init(&arena);
  if (err == 0) {
    root = co_json_arena_parse(&arena, req->body.data, req->body.len);
    if (root == NULL || !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(root, "items")))
      err = CO_EPARSE;
  }
  co_buf_free(&req->body); /* a page can be large: do not keep it until the next one */
  if (err != 0) {
    co_json_arena_release(&arena);
    if (err == CO_EGONE && r->cont != NULL) {
      /* The continue token expired: start the list over. */
      r->stats.expired++;
      co_free(r->cont);
      r->cont = NULL;
      co_log(CO_LOG_INFO, "list continue token expired, listing again", CO_S("path", r->path));
      list_page(r);
      return;
    }
    r->stats.errors++;
    co_log(CO_LOG_WARN, "list failed", CO_S("path", r->path), CO_E(err),
           CO_I("status", req->http_status), CO_S("reason", req->status_reason),
           CO_S("message", req->status_message));
    co_free(r->cont);
    r->cont = NULL;
    r->relist_next = 1;
    set_state(r, CO_REFLECTOR_BACKOFF, err);
    return;
  }
  r->stats.pages++;
  if (r->cont == NULL && r->ops.list_begin != NULL)
    r->ops.list_begin(r);
  const cJSON *item;
  cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(root, "items")) {
    if (cJSON_IsObject(item) && r->ops.list_item != NULL)
      r->ops.list_item(r, item);
  }
  const cJSON *md = cJSON_GetObjectItemCaseSensitive(root, "metadata");
  const cJSON *cont = cJSON_GetObjectItemCaseSensitive(md, "continue");
  const cJSON *rv = cJSON_GetObjectItemCaseSensitive(md, "resourceVersion");
  co_free(r->cont);
  r->cont = NULL;
  if (cJSON_IsString(cont) && cont->valuestring[0] != '\0') {
    r->cont = co_strdup(cont->valuestring);
    co_json_arena_release(&arena);
    list_page(r);
    return;
  }
  if (cJSON_IsString(rv))
    set_rv(r, rv->valuestring);
  co_json_arena_release(&arena);
  r->stats.lists++;
  if (r->ops.list_end != NULL)
    r->ops.list_end(r);
  if (r->state == CO_REFLECTOR_LISTING) /* list_end may have closed us */
    set_state(r, CO_REFLECTOR_WATCHING, 0);
}

/* ---- watch --------------------------------------------------------------------------- */

static void on_watch_done(co_req_t *req);

static int on_line(void *ud, const char *line, size_t len) {
  co_reflector_t *r = ud;
  co_watch_event_t ev;
  if (co_watch_event_parse(line, len, &ev) != 0) {
    co_log(CO_LOG_WARN, "malformed watch event", CO_S("path", r->path), CO_I("bytes", len));
    return CO_EPARSE;
  }
  int rc = 0;
  switch (ev.type) {
  case CO_WATCH_ERROR: {
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(ev.object, "message");
    co_log(ev.code == 410 ? CO_LOG_INFO : CO_LOG_WARN, "watch error event", CO_S("path", r->path),
           CO_I("code", ev.code), CO_S("message", cJSON_IsString(msg) ? msg->valuestring : ""));
    rc = ev.code == 410 ? CO_EGONE : co_err_from_http(ev.code ? ev.code : 500);
    break;
  }
  case CO_WATCH_BOOKMARK:
    r->stats.bookmarks++;
    set_rv(r, ev.rv);
    break;
  default:
    r->stats.events++;
    r->watch_events++;
    set_rv(r, ev.rv);
    if (r->ops.event != NULL)
      r->ops.event(r, (int)ev.type, ev.object);
    break;
  }
  co_watch_event_free(&ev);
  return rc;
}

static int on_watch_data(co_req_t *req, const char *data, size_t len) {
  co_reflector_t *r = req->data;
  if (r->state != CO_REFLECTOR_WATCHING)
    return CO_ECANCELED;
  return co_watchframe_feed(&r->frame, data, len, on_line, r);
}

static void start_watch(co_reflector_t *r) {
  unsigned span = r->timeout_max_s > r->timeout_min_s ? r->timeout_max_s - r->timeout_min_s : 0;
  unsigned timeout = r->timeout_min_s + (span ? (unsigned)(next_rand(r) % (span + 1)) : 0);
  co_buf_t p;
  co_buf_init(&p, 64 * 1024);
  int rc =
      co_buf_appendf(&p, "%s?watch=1&allowWatchBookmarks=true&timeoutSeconds=%u", r->path, timeout);
  if (rc == 0 && r->resource_version != NULL) {
    rc = co_buf_appends(&p, "&resourceVersion=");
    if (rc == 0)
      rc = co_buf_append_urlenc(&p, r->resource_version);
  }
  if (rc == 0)
    rc = append_selector(r, &p);
  if (rc == 0) {
    co_watchframe_reset(&r->frame);
    co_req_set_stream(&r->req, on_watch_data);
    rc = co_req_start(&r->req, CO_GET, co_buf_str(&p), NULL, 0, on_watch_done);
  }
  co_buf_free(&p);
  if (rc != 0) {
    r->stats.errors++;
    r->relist_next = 0;
    set_state(r, CO_REFLECTOR_BACKOFF, rc);
    return;
  }
  r->stats.watches++;
  r->watch_started_ms = uv_now(r->client->loop);
  r->watch_events = 0;
}

static void on_watch_done(co_req_t *req) {
  co_reflector_t *r = req->data;
  r->stats.watch_ends++;
  if (r->state == CO_REFLECTOR_CLOSING) {
    maybe_closed(r);
    return;
  }
  int err = req->err;
  switch (err) {
  case 0:
    /* The server ended the watch (timeoutSeconds): resume from the last version, unless it
     * ends them at once, which would otherwise become a tight loop. */
    if (uv_now(r->client->loop) - r->watch_started_ms >= 1000 || r->watch_events > 0) {
      co_log(CO_LOG_DEBUG, "watch ended, resuming", CO_S("path", r->path),
             CO_S("rv", r->resource_version));
      set_state(r, CO_REFLECTOR_WATCHING, 0);
      return;
    }
    co_log(CO_LOG_WARN, "watch ended immediately", CO_S("path", r->path));
    break;
  case CO_EGONE:
    r->stats.expired++;
    co_log(CO_LOG_INFO, "resource version expired, relisting", CO_S("path", r->path),
           CO_S("rv", r->resource_version));
    set_state(r, CO_REFLECTOR_LISTING, 0);
    return;
  case CO_ESTALLED:
    r->stats.stalls++;
    co_log(CO_LOG_WARN, "watch stream stalled, reconnecting", CO_S("path", r->path));
    break;
  default:
    r->stats.errors++;
    co_log(CO_LOG_WARN, "watch failed", CO_S("path", r->path), CO_E(err),
           CO_I("status", req->http_status), CO_S("reason", req->status_reason),
           CO_S("message", req->status_message));
    break;
  }
  r->relist_next = 0;
  set_state(r, CO_REFLECTOR_BACKOFF, err);
}

/* ---- transitions --------------------------------------------------------------------- */

static void on_backoff_timer(uv_timer_t *t) {
  co_reflector_t *r = t->data;
  if (r->state != CO_REFLECTOR_BACKOFF)
    return;
  set_state(r, r->relist_next ? CO_REFLECTOR_LISTING : CO_REFLECTOR_WATCHING, 0);
}

/* The one place where the state changes; entering a state starts its work. */
static void set_state(co_reflector_t *r, co_reflector_state_t st, int err) {
  co_reflector_state_t old = r->state;
  r->state = st;
  switch (st) {
  case CO_REFLECTOR_LISTING:
    if (old != CO_REFLECTOR_IDLE)
      r->stats.relists++;
    co_free(r->cont);
    r->cont = NULL;
    list_page(r);
    break;
  case CO_REFLECTOR_WATCHING:
    start_watch(r);
    break;
  case CO_REFLECTOR_BACKOFF: {
    uint64_t delay = co_backoff_next(&r->backoff, uv_now(r->client->loop));
    co_log(CO_LOG_INFO, "backing off", CO_S("path", r->path), CO_I("delay_ms", delay),
           CO_S("next", r->relist_next ? "list" : "watch"), CO_E(err));
    uv_timer_start(&r->timer, on_backoff_timer, delay, 0);
    break;
  }
  default:
    break;
  }
}

int co_reflector_init(co_client_t *client, co_reflector_t *r, const char *path,
                      const char *label_selector, const co_reflector_ops_t *ops) {
  memset(r, 0, sizeof(*r));
  if (path == NULL || path[0] != '/' || ops == NULL)
    return CO_EINVAL;
  r->client = client;
  r->ops = *ops;
  r->path = co_strdup(path);
  if (label_selector != NULL && label_selector[0] != '\0') {
    co_buf_t b;
    co_buf_init(&b, 16 * 1024);
    if (co_buf_append_urlenc(&b, label_selector) != 0) {
      co_buf_free(&b);
      co_free(r->path);
      return CO_ETOOBIG;
    }
    r->selector = co_buf_steal(&b);
  }
  r->page_limit = DEFAULT_PAGE;
  r->timeout_min_s = 300;
  r->timeout_max_s = 600;
  r->rng = (uv_hrtime() ^ (uint64_t)(uintptr_t)r) | 1;
  co_req_init(client, &r->req);
  r->req.data = r;
  co_watchframe_init(&r->frame, MAX_LINE);
  co_backoff_init(&r->backoff);
  uv_timer_init(client->loop, &r->timer);
  r->timer.data = r;
  return CO_OK;
}

int co_reflector_set_field_selector(co_reflector_t *r, const char *field_selector) {
  if (r->state != CO_REFLECTOR_IDLE || field_selector == NULL || field_selector[0] == '\0')
    return CO_EINVAL;
  co_buf_t b;
  co_buf_init(&b, 16 * 1024);
  if (co_buf_append_urlenc(&b, field_selector) != 0) {
    co_buf_free(&b);
    return CO_ETOOBIG;
  }
  co_free(r->field_selector);
  r->field_selector = co_buf_steal(&b);
  return CO_OK;
}

int co_reflector_start(co_reflector_t *r) {
  if (r->state != CO_REFLECTOR_IDLE)
    return CO_EBUSY;
  set_state(r, CO_REFLECTOR_LISTING, 0);
  return CO_OK;
}

static void on_timer_closed(uv_handle_t *h) {
  co_reflector_t *r = h->data;
  r->timer_closed = 1;
  maybe_closed(r);
}

static void maybe_closed(co_reflector_t *r) {
  if (r->state != CO_REFLECTOR_CLOSING || !r->timer_closed || co_req_active(&r->req))
    return;
  r->state = CO_REFLECTOR_CLOSED;
  co_req_cleanup(&r->req);
  co_watchframe_free(&r->frame);
  co_free(r->path);
  co_free(r->selector);
  co_free(r->field_selector);
  co_free(r->cont);
  co_free(r->resource_version);
  r->path = r->selector = r->field_selector = r->cont = r->resource_version = NULL;
  if (r->close_cb != NULL)
    r->close_cb(r);
}

void co_reflector_close(co_reflector_t *r, co_reflector_close_cb cb) {
  if (r->state == CO_REFLECTOR_CLOSING || r->state == CO_REFLECTOR_CLOSED)
    return;
  r->state = CO_REFLECTOR_CLOSING;
  r->close_cb = cb;
  uv_timer_stop(&r->timer);
  co_req_cancel(&r->req);
  uv_close((uv_handle_t *)&r->timer, on_timer_closed);
}
