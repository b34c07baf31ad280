/* Leader election on a Lease: read, then take/renew with an optimistic write. */
#include "co/lease.h"

#include <cjson/cJSON.h>
#include <string.h>
#include <time.h>

#include "co/alloc.h"
#include "co/buf.h"
#include "co/error.h"
#include "co/objects.h"
#include "co/log.h"

enum { ST_IDLE, ST_RUNNING, ST_RELEASING, ST_RELEASED, ST_CLOSING, ST_CLOSED };

void co_lease_opts_default(co_lease_opts_t *o) {
  o->duration_ms = 15000;
  o->renew_deadline_ms = 10000;
  o->retry_ms = 2000;
}

static void micro_time(char *out, size_t len) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + n, len - n, ".%06ldZ", ts.tv_nsec / 1000);
}

static uint64_t now_ms(co_lease_t *l) { return uv_now(l->client->loop); }

static void lease_path(co_lease_t *l, char *out, size_t len, int collection) {
  if (collection)
    snprintf(out, len, "/apis/coordination.k8s.io/v1/namespaces/%s/leases", l->ns);
  else
    snprintf(out, len, "/apis/coordination.k8s.io/v1/namespaces/%s/leases/%s", l->ns, l->name);
}

static void on_get(co_req_t *req);
static void on_write(co_req_t *req);
static void maybe_done(co_lease_t *l);

static void schedule(co_lease_t *l, uint64_t ms);

static void set_leading(co_lease_t *l, int leading, const char *why) {
  if (l->leading == leading)
    return;
  l->leading = leading;
  co_log(leading ? CO_LOG_INFO : CO_LOG_WARN, leading ? "became leader" : "lost leadership",
         CO_S("lease", l->name), CO_S("identity", l->identity), CO_S("why", why));
  co_lease_cb cb = leading ? l->on_started : l->on_stopped;
  if (cb != NULL)
    cb(l);
}

static void check_deadline(co_lease_t *l) {
  if (l->leading && now_ms(l) - l->last_renew_ms > l->opts.renew_deadline_ms)
    set_leading(l, 0, "could not renew within the renew deadline");
}

static void get(co_lease_t *l) {
  char path[512];
  lease_path(l, path, sizeof(path), 0);
  if (co_req_start(&l->req, CO_GET, path, NULL, 0, on_get) != 0)
    schedule(l, l->opts.retry_ms);
}

static void on_timer(uv_timer_t *t) {
  co_lease_t *l = t->data;
  if (co_req_active(&l->req) || (l->state != ST_RUNNING && l->state != ST_RELEASING))
    return;
  get(l);
}

static void schedule(co_lease_t *l, uint64_t ms) {
  if (l->state == ST_RUNNING)
    uv_timer_start(&l->timer, on_timer, ms, 0);
}

static const char *str(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsString(v) ? v->valuestring : "";
}

static void write_lease(co_lease_t *l, cJSON *obj, int create) {
  char *body = cJSON_PrintUnformatted(obj);
  char path[512];
  lease_path(l, path, sizeof(path), create);
  int rc = co_req_start(&l->req, create ? CO_POST : CO_PUT, path, body, strlen(body), on_write);
  co_free(body);
  if (rc != 0)
    schedule(l, l->opts.retry_ms);
}

static void create_lease(co_lease_t *l) {
  char now[48];
  micro_time(now, sizeof(now));
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "apiVersion", "coordination.k8s.io/v1");
  cJSON_AddStringToObject(o, "kind", "Lease");
  cJSON *md = cJSON_AddObjectToObject(o, "metadata");
  cJSON_AddStringToObject(md, "name", l->name);
  cJSON_AddStringToObject(md, "namespace", l->ns);
  cJSON *spec = cJSON_AddObjectToObject(o, "spec");
  cJSON_AddStringToObject(spec, "holderIdentity", l->identity);
  cJSON_AddNumberToObject(spec, "leaseDurationSeconds", (double)(l->opts.duration_ms / 1000));
  cJSON_AddStringToObject(spec, "acquireTime", now);
  cJSON_AddStringToObject(spec, "renewTime", now);
  cJSON_AddNumberToObject(spec, "leaseTransitions", 0);
  write_lease(l, o, 1);
  cJSON_Delete(o);
}

static void replace_str(cJSON *o, const char *k, const char *v) {
  cJSON_DeleteItemFromObjectCaseSensitive(o, k);
  cJSON_AddStringToObject(o, k, v);
}

static void replace_num(cJSON *o, const char *k, double v) {
  cJSON_DeleteItemFromObjectCaseSensitive(o, k);
  cJSON_AddNumberToObject(o, k, v);
}

static void on_get(co_req_t *req) {
  co_lease_t *l = req->data;
  if (l->state == ST_CLOSING || l->state == ST_CLOSED) {
    maybe_done(l);
    return;
  }
  if (req->err == CO_ENOTFOUND && l->state == ST_RUNNING) {
    create_lease(l);
    return;
  }
  cJSON *obj = req->err == 0 ? cJSON_ParseWithLength(req->body.data, req->body.len) : NULL;
  cJSON *spec = cJSON_GetObjectItemCaseSensitive(obj, "spec");
  if (obj == NULL || !cJSON_IsObject(spec)) {
    if (req->err != 0)
      co_log(CO_LOG_WARN, "cannot read the leader election lease", CO_S("lease", l->name),
             CO_E(req->err), CO_S("message", req->status_message));
    cJSON_Delete(obj);
    if (l->state == ST_RELEASING) {
      l->state = ST_RELEASED;
      maybe_done(l);
      return;
    }
    check_deadline(l);
    schedule(l, l->opts.retry_ms);
    return;
  }
  const char *holder = str(spec, "holderIdentity");
  const char *renew = str(spec, "renewTime");
  uint64_t now = now_ms(l);
  if (l->seen_holder == NULL || strcmp(l->seen_holder, holder) != 0 ||
      strcmp(l->seen_renew, renew) != 0) {
    co_free(l->seen_holder);
    co_free(l->seen_renew);
    l->seen_holder = co_strdup(holder);
    l->seen_renew = co_strdup(renew);
    l->seen_at_ms = now;
  }
  int mine = strcmp(holder, l->identity) == 0;
  char stamp[48];
  micro_time(stamp, sizeof(stamp));
  if (l->state == ST_RELEASING) {
    if (!mine) {
      cJSON_Delete(obj);
      l->state = ST_RELEASED;
      maybe_done(l);
      return;
    }
    /* Hand it back: empty holder, shortest duration, so the next candidate takes it now. */
    replace_str(spec, "holderIdentity", "");
    replace_num(spec, "leaseDurationSeconds", 1);
    replace_str(spec, "renewTime", stamp);
    write_lease(l, obj, 0);
    cJSON_Delete(obj);
    return;
  }
  const cJSON *dur = cJSON_GetObjectItemCaseSensitive(spec, "leaseDurationSeconds");
  int64_t dur_s = co_json_int64(dur, 0);
  /* leaseDurationSeconds is an int32 on the server; a day bounds what another holder claims. */
  uint64_t held_ms =
      dur_s > 0 ? (uint64_t)(dur_s < 86400 ? dur_s : 86400) * 1000 : l->opts.duration_ms;
  if (!mine && holder[0] != '\0' && now - l->seen_at_ms < held_ms) {
    /* Someone else holds a live lease. */
    if (l->leading)
      set_leading(l, 0, "the lease is held by another candidate");
    cJSON_Delete(obj);
    schedule(l, l->opts.retry_ms);
    return;
  }
  if (!mine) {
    const cJSON *tr = cJSON_GetObjectItemCaseSensitive(spec, "leaseTransitions");
    replace_num(spec, "leaseTransitions", (cJSON_IsNumber(tr) ? tr->valuedouble : 0) + 1);
    replace_str(spec, "acquireTime", stamp);
    replace_str(spec, "holderIdentity", l->identity);
  }
  replace_str(spec, "renewTime", stamp);
  replace_num(spec, "leaseDurationSeconds", (double)(l->opts.duration_ms / 1000));
  write_lease(l, obj, 0);
  cJSON_Delete(obj);
}

static void on_write(co_req_t *req) {
  co_lease_t *l = req->data;
  if (l->state == ST_CLOSING || l->state == ST_CLOSED) {
    maybe_done(l);
    return;
  }
  if (l->state == ST_RELEASING) {
    if (req->err == 0) {
      co_log(CO_LOG_INFO, "leader election lease released", CO_S("lease", l->name));
      l->leading = 0;
      l->state = ST_RELEASED;
      maybe_done(l);
    } else {
      get(l); /* our renew raced the release, or a conflict: read and try once more */
    }
    return;
  }
  if (req->err == 0) {
    l->last_renew_ms = now_ms(l);
    co_free(l->seen_holder);
    co_free(l->seen_renew);
    l->seen_holder = co_strdup(l->identity);
    l->seen_renew = co_strdup(""); /* differs from any renewTime: the next read records it */
    l->seen_at_ms = l->last_renew_ms;
    set_leading(l, 1, "acquired");
  } else {
    if (req->err != CO_ECONFLICT && req->err != CO_EEXIST)
      co_log(CO_LOG_WARN, "cannot write the leader election lease", CO_S("lease", l->name),
             CO_E(req->err), CO_S("message", req->status_message));
    check_deadline(l);
  }
  schedule(l, l->opts.retry_ms);
}

int co_lease_init(co_client_t *client, co_lease_t *l, const char *ns, const char *name,
                  const char *identity, const co_lease_opts_t *opts) {
  memset(l, 0, sizeof(*l));
  if (ns == NULL || name == NULL || identity == NULL || identity[0] == '\0')
    return CO_EINVAL;
  l->client = client;
  if (opts != NULL)
    l->opts = *opts;
  else
    co_lease_opts_default(&l->opts);
  l->ns = co_strdup(ns);
  l->name = co_strdup(name);
  l->identity = co_strdup(identity);
  co_req_init(client, &l->req);
  l->req.data = l;
  uv_timer_init(client->loop, &l->timer);
  l->timer.data = l;
  return CO_OK;
}

int co_lease_start(co_lease_t *l) {
  if (l->state != ST_IDLE)
    return CO_EBUSY;
  l->state = ST_RUNNING;
  uv_timer_start(&l->timer, on_timer, 0, 0);
  return CO_OK;
}

static void on_release_idle(uv_timer_t *t) {
  co_lease_t *l = t->data;
  maybe_done(l);
}

void co_lease_release(co_lease_t *l, co_lease_cb cb) {
  if (l->state != ST_RUNNING && l->state != ST_IDLE) {
    return;
  }
  l->done_cb = cb;
  uv_timer_stop(&l->timer);
  if (!l->leading) {
    l->state = ST_RELEASED;
    uv_timer_start(&l->timer, on_release_idle, 0, 0); /* never call back re-entrantly */
    return;
  }
  l->state = ST_RELEASING;
  if (!co_req_active(&l->req))
    get(l);
}

static void on_timer_closed(uv_handle_t *h) {
  co_lease_t *l = h->data;
  l->state = ST_CLOSED;
  maybe_done(l);
}

static void maybe_done(co_lease_t *l) {
  if (l->state == ST_RELEASED) {
    co_lease_cb cb = l->done_cb;
    l->done_cb = NULL;
    if (cb != NULL)
      cb(l);
    return;
  }
  if (l->state != ST_CLOSED || co_req_active(&l->req))
    return;
  co_req_cleanup(&l->req);
  co_free(l->ns);
  co_free(l->name);
  co_free(l->identity);
  co_free(l->seen_holder);
  co_free(l->seen_renew);
  l->ns = l->name = l->identity = l->seen_holder = l->seen_renew = NULL;
  co_lease_cb cb = l->done_cb;
  l->done_cb = NULL;
  if (cb != NULL)
    cb(l);
}

void co_lease_close(co_lease_t *l, co_lease_cb cb) {
  if (l->state == ST_CLOSING || l->state == ST_CLOSED)
    return;
  l->state = ST_CLOSING;
  l->done_cb = cb;
  l->leading = 0;
  uv_timer_stop(&l->timer);
  co_req_cancel(&l->req);
  uv_close((uv_handle_t *)&l->timer, on_timer_closed);
}
