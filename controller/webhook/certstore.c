/* The webhook's certificate Secret: load, create, rotate, inject the CA (see co/certstore.h). */
#include "co/certstore.h"

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <string.h>

#include "co/alloc.h"
#include "co/buf.h"
#include "co/cert.h"
#include "co/error.h"
#include "co/log.h"
#include "co/watchframe.h"

#define CA_FACTOR 10
#define INJECT_EVERY_MS (5 * 60 * 1000)
#define PEM_MAX (64 * 1024)
#define PATH_MAX_LEN 1024
#define RETRY_MS 5000

typedef enum { OP_NONE = 0, OP_CREATE, OP_UPDATE, OP_CONFIG_GET, OP_CONFIG_PATCH } op_t;

struct co__certstore_state {
  co_client_t *client;
  char *ns, *name, *config;
  int64_t validity_s;
  const char *const *dns;
  size_t n_dns;
  const char *const *ips;
  size_t n_ips;
  co_reflector_t watch;
  uv_timer_t timer;
  co_req_t req;
  op_t op;
  int leader;
  int synced;       /* first list done */
  int seen;         /* the Secret exists (as last seen) */
  int seen_in_list; /* during a list */
  int valid;        /* the Secret's material is usable */
  char *rv;         /* its resourceVersion */
  char *ca_pem;     /* ca.crt as loaded: newest CA first */
  char *ca_key;     /* ca.key */
  char *injected;   /* caBundle last confirmed on the configuration */
  uint64_t inject_due_ms;
  uint64_t retry_ms; /* after a failure, nothing is tried before this time */
  uint64_t every_ms; /* tick period */
  /* A rotation that renews the CA waits for the caBundle before it is written. */
  char *pend_ca, *pend_ca_key, *pend_cert, *pend_key;
  int closing, open;
  co_certstore_cb close_cb;
};

typedef struct co__certstore_state state_t;

static void tick(co_certstore_t *cs);
static void on_timer(uv_timer_t *t);

/* Ticks on the next loop iteration: requests are not started from inside a watch stream's
 * data callback. */
static void kick(co_certstore_t *cs) {
  state_t *s = cs->s;
  if (!s->closing)
    uv_timer_start(&s->timer, on_timer, 0, s->every_ms);
}

static uint64_t now_ms(state_t *s) { return uv_now(s->client->loop); }

static char *b64(const char *p) {
  size_t n = strlen(p);
  char *out = co_malloc(4 * ((n + 2) / 3) + 1);
  EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)p, (int)n);
  return out;
}

/* A base64 data value of the Secret as a string, or NULL. */
static char *unb64(const cJSON *v) {
  if (!cJSON_IsString(v))
    return NULL;
  size_t n = strnlen(v->valuestring, PEM_MAX * 2);
  if (n == 0 || n % 4 != 0 || n >= PEM_MAX * 2)
    return NULL;
  char *out = co_malloc(n / 4 * 3 + 1);
  int l = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)v->valuestring, (int)n);
  if (l < 0) {
    co_free(out);
    return NULL;
  }
  out[l] = '\0'; /* padding decodes as NULs: the string ends at the first one */
  return out;
}

static void set_str(char **dst, char *v) {
  co_free(*dst);
  *dst = v;
}

static void clear_pending(state_t *s) {
  set_str(&s->pend_ca, NULL);
  set_str(&s->pend_ca_key, NULL);
  set_str(&s->pend_cert, NULL);
  set_str(&s->pend_key, NULL);
}

/* ---- the Secret as seen by the watch ----------------------------------------------------- */

static void load(co_certstore_t *cs, const cJSON *obj) {
  state_t *s = cs->s;
  const cJSON *md = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
  const cJSON *data = cJSON_GetObjectItemCaseSensitive(obj, "data");
  const char *rv = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(md, "resourceVersion"));
  s->seen = 1;
  set_str(&s->rv, co_strdup(rv));
  char *ca = unb64(cJSON_GetObjectItemCaseSensitive(data, "ca.crt"));
  char *cakey = unb64(cJSON_GetObjectItemCaseSensitive(data, "ca.key"));
  char *crt = unb64(cJSON_GetObjectItemCaseSensitive(data, "tls.crt"));
  char *key = unb64(cJSON_GetObjectItemCaseSensitive(data, "tls.key"));
  int ok = ca != NULL && cakey != NULL && crt != NULL && key != NULL &&
           co_cert_check(crt, key, ca) == 0 && co_cert_check(ca, cakey, NULL) == 0;
  s->valid = ok;
  if (!ok) {
    co_log(CO_LOG_WARN, "webhook certificate Secret is not usable", CO_S("secret", s->name),
           CO_S("rv", rv));
    co_free(ca);
    co_free(cakey);
    co_free(crt);
    co_free(key);
    return;
  }
  set_str(&s->ca_pem, ca);
  set_str(&s->ca_key, cakey);
  if (cs->cert_pem != NULL && strcmp(cs->cert_pem, crt) == 0 && strcmp(cs->key_pem, key) == 0) {
    co_free(crt);
    co_free(key);
    return;
  }
  set_str(&cs->cert_pem, crt);
  set_str(&cs->key_pem, key);
  cs->loaded = 1;
  cs->stats.loads++;
  int64_t left = 0;
  co_cert_remaining(crt, &left);
  co_log(CO_LOG_INFO, "webhook certificate loaded", CO_S("secret", s->name), CO_S("rv", rv),
         CO_I("expires_in_s", left));
  if (cs->on_loaded != NULL)
    cs->on_loaded(cs);
}

static void on_list_begin(co_reflector_t *r) { ((co_certstore_t *)r->data)->s->seen_in_list = 0; }

static void on_list_item(co_reflector_t *r, const cJSON *obj) {
  co_certstore_t *cs = r->data;
  cs->s->seen_in_list = 1;
  load(cs, obj);
}

static void on_list_end(co_reflector_t *r) {
  co_certstore_t *cs = r->data;
  cs->s->synced = 1;
  cs->s->seen = cs->s->seen_in_list;
  kick(cs);
}

static void on_event(co_reflector_t *r, int type, const cJSON *obj) {
  co_certstore_t *cs = r->data;
  if (type == CO_WATCH_ADDED || type == CO_WATCH_MODIFIED) {
    load(cs, obj);
  } else if (type == CO_WATCH_DELETED) {
    /* The material in use stays until a new Secret is loaded. */
    co_log(CO_LOG_WARN, "webhook certificate Secret deleted", CO_S("secret", cs->s->name));
    cs->s->seen = 0;
    cs->s->valid = 0;
    set_str(&cs->s->rv, NULL);
  }
  kick(cs);
}

/* ---- writes ------------------------------------------------------------------------------ */

static void op_done(co_req_t *req);

static int start(co_certstore_t *cs, op_t op, co_verb_t verb, const char *path, char *body) {
  state_t *s = cs->s;
  co_req_init(s->client, &s->req);
  s->req.data = cs;
  int rc = co_req_start(&s->req, verb, path, body, body ? strlen(body) : 0, op_done);
  co_free(body);
  if (rc == 0) {
    s->op = op;
  } else {
    cs->stats.errors++;
    s->retry_ms = now_ms(s) + RETRY_MS;
    co_log(CO_LOG_WARN, "cannot start a webhook certificate request", CO_S("path", path), CO_E(rc));
  }
  return rc;
}

static void secret_path(state_t *s, char *out, size_t len, int item) {
  snprintf(out, len, "/api/v1/namespaces/%s/secrets%s%s", s->ns, item ? "/" : "",
           item ? s->name : "");
}

/* Writes the Secret: POST when rv is NULL, else PUT guarded by rv. */
static void write_secret(co_certstore_t *cs, const char *ca, const char *cakey, const char *crt,
                         const char *key) {
  state_t *s = cs->s;
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "apiVersion", "v1");
  cJSON_AddStringToObject(o, "kind", "Secret");
  cJSON *md = cJSON_AddObjectToObject(o, "metadata");
  cJSON_AddStringToObject(md, "name", s->name);
  cJSON_AddStringToObject(md, "namespace", s->ns);
  if (s->rv != NULL)
    cJSON_AddStringToObject(md, "resourceVersion", s->rv);
  cJSON_AddStringToObject(cJSON_AddObjectToObject(md, "labels"), "app.kubernetes.io/name",
                          "confidential-operator");
  cJSON_AddStringToObject(o, "type", "kubernetes.io/tls");
  cJSON *d = cJSON_AddObjectToObject(o, "data");
  const char *keys[] = {"ca.crt", "ca.key", "tls.crt", "tls.key"};
  const char *vals[] = {ca, cakey, crt, key};
  for (size_t i = 0; i < 4; i++) {
    char *v = b64(vals[i]);
    cJSON_AddStringToObject(d, keys[i], v);
    co_free(v);
  }
  char *body = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  char *copy = co_strdup(body);
  cJSON_free(body);
  char path[PATH_MAX_LEN];
  secret_path(s, path, sizeof(path), s->rv != NULL);
  start(cs, s->rv != NULL ? OP_UPDATE : OP_CREATE, s->rv != NULL ? CO_PUT : CO_POST, path, copy);
}

/* New material: a serving certificate from the current CA, or a new CA too (ca_too), with the
 * old CA kept behind the new one while it is valid. Fills the pending fields. */
static int prepare(co_certstore_t *cs, int ca_too) {
  state_t *s = cs->s;
  char *ca = NULL, *cakey = NULL, *crt = NULL, *key = NULL;
  int rc = 0;
  if (ca_too) {
    rc = co_cert_generate_ca("confidential-operator-webhook-ca", s->validity_s * CA_FACTOR, &ca,
                             &cakey);
    int64_t left = 0;
    if (rc == 0 && s->ca_pem != NULL && s->valid && co_cert_remaining(s->ca_pem, &left) == 0 &&
        left > 0) {
      co_buf_t b;
      co_buf_init(&b, PEM_MAX * 2);
      /* Only the newest old CA: a bundle never grows past two. */
      const char *end = strstr(s->ca_pem, "-----END CERTIFICATE-----");
      size_t first = end != NULL ? (size_t)(end - s->ca_pem) + 25 : strlen(s->ca_pem);
      co_buf_appends(&b, ca);
      co_buf_append(&b, s->ca_pem, first);
      co_buf_appends(&b, "\n");
      co_free(ca);
      ca = co_buf_steal(&b);
      co_buf_free(&b);
    }
  } else {
    ca = co_strdup(s->ca_pem);
    cakey = co_strdup(s->ca_key);
  }
  if (rc == 0)
    rc = co_cert_issue(ca, cakey, s->dns, s->n_dns, s->ips, s->n_ips, s->validity_s, &crt, &key);
  if (rc != 0) {
    co_log(CO_LOG_ERROR, "cannot generate the webhook certificate", CO_E(rc));
    cs->stats.errors++;
    co_free(ca);
    co_free(cakey);
    return rc;
  }
  clear_pending(s);
  s->pend_ca = ca;
  s->pend_ca_key = cakey;
  s->pend_cert = crt;
  s->pend_key = key;
  return 0;
}

static void write_pending(co_certstore_t *cs) {
  state_t *s = cs->s;
  write_secret(cs, s->pend_ca, s->pend_ca_key, s->pend_cert, s->pend_key);
  clear_pending(s);
}

/* ---- caBundle ---------------------------------------------------------------------------- */

static const char *bundle_wanted(state_t *s) { return s->pend_ca ? s->pend_ca : s->ca_pem; }

static void config_get(co_certstore_t *cs) {
  char path[PATH_MAX_LEN];
  snprintf(path, sizeof(path),
           "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/%s", cs->s->config);
  start(cs, OP_CONFIG_GET, CO_GET, path, NULL);
}

/* After the GET: PATCH the webhooks whose caBundle differs; returns 1 when a PATCH started. */
static int config_patch(co_certstore_t *cs, cJSON *cfg) {
  state_t *s = cs->s;
  char *want = b64(bundle_wanted(s));
  cJSON *patch = cJSON_CreateObject();
  cJSON *hooks = cJSON_AddArrayToObject(patch, "webhooks");
  const cJSON *h;
  cJSON_ArrayForEach(h, cJSON_GetObjectItemCaseSensitive(cfg, "webhooks")) {
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(h, "name"));
    const char *have = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(h, "clientConfig"), "caBundle"));
    if (name == NULL || (have != NULL && strcmp(have, want) == 0))
      continue;
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "name", name);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(e, "clientConfig"), "caBundle", want);
    cJSON_AddItemToArray(hooks, e);
  }
  int n = cJSON_GetArraySize(hooks);
  char *body = n > 0 ? cJSON_PrintUnformatted(patch) : NULL;
  char *copy = body ? co_strdup(body) : NULL;
  cJSON_free(body);
  cJSON_Delete(patch);
  co_free(want);
  if (n == 0)
    return 0;
  char path[PATH_MAX_LEN];
  snprintf(path, sizeof(path),
           "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/%s", s->config);
  /* webhooks merge by name: only the caBundle of each listed webhook changes. */
  return start(cs, OP_CONFIG_PATCH, CO_PATCH_STRATEGIC, path, copy) == 0;
}

static void injected(co_certstore_t *cs) {
  state_t *s = cs->s;
  set_str(&s->injected, co_strdup(bundle_wanted(s)));
  s->inject_due_ms = now_ms(s) + INJECT_EVERY_MS;
}

static void maybe_closed(co_certstore_t *cs);

/* After the caBundle is confirmed: the pending Secret write, if any. */
static int after_injection(co_certstore_t *cs) {
  injected(cs);
  if (cs->s->pend_ca == NULL)
    return 0;
  write_pending(cs);
  return 1;
}

static void op_done(co_req_t *req) {
  co_certstore_t *cs = req->data;
  state_t *s = cs->s;
  op_t op = s->op;
  s->op = OP_NONE;
  int err = req->err;
  long status = req->http_status;
  char msg[256];
  snprintf(msg, sizeof(msg), "%s", req->status_message ? req->status_message : "");
  /* The configuration read, or the Secret a write returned (loaded at once below). */
  cJSON *cfg = err == 0 && op != OP_CONFIG_PATCH && op != OP_NONE
                   ? cJSON_ParseWithLength(req->body.data, req->body.len)
                   : NULL;
  co_req_cleanup(req);
  if (s->closing || err == CO_ECANCELED) {
    cJSON_Delete(cfg);
    if (s->closing)
      maybe_closed(cs);
    return;
  }
  int busy = 0;
  switch (op) {
  case OP_CREATE:
  case OP_UPDATE:
    if (err == 0) {
      if (op == OP_CREATE)
        cs->stats.creates++;
      else
        cs->stats.rotations++;
      co_log(CO_LOG_INFO,
             op == OP_CREATE ? "webhook certificate Secret created"
                             : "webhook certificate Secret rotated",
             CO_S("secret", s->name));
      if (cfg != NULL)
        load(cs, cfg); /* at once: the watch event may come after the next tick */
    } else if (err == CO_ECONFLICT || err == CO_EEXIST) {
      /* The winner's Secret arrives on the watch (within milliseconds): nothing is tried
       * before RETRY_MS, so no replica writes over it. */
      cs->stats.conflicts++;
      s->retry_ms = now_ms(s) + RETRY_MS;
      co_log(CO_LOG_INFO, "another replica wrote the webhook certificate first; using theirs",
             CO_S("secret", s->name));
    } else {
      cs->stats.errors++;
      s->retry_ms = now_ms(s) + RETRY_MS;
      co_log(CO_LOG_WARN, "webhook certificate Secret write failed", CO_E(err),
             CO_I("status", status), CO_S("message", msg));
    }
    break;
  case OP_CONFIG_GET:
  case OP_CONFIG_PATCH:
    if (err == 0 && op == OP_CONFIG_GET) {
      busy = config_patch(cs, cfg) || after_injection(cs);
    } else if (err == 0) {
      cs->stats.injections++;
      co_log(CO_LOG_INFO, "webhook CA bundle injected", CO_S("configuration", s->config));
      busy = after_injection(cs);
    } else if (err == CO_ENOTFOUND && op == OP_CONFIG_GET) {
      /* Nothing to keep in step (not installed yet, or removed): rotation goes on. */
      co_log(CO_LOG_WARN, "MutatingWebhookConfiguration not found; caBundle not injected",
             CO_S("name", s->config));
      busy = after_injection(cs);
      s->inject_due_ms = now_ms(s) + INJECT_EVERY_MS / 10;
    } else {
      cs->stats.errors++;
      s->retry_ms = now_ms(s) + RETRY_MS;
      co_log(CO_LOG_WARN,
             op == OP_CONFIG_GET ? "cannot read the MutatingWebhookConfiguration"
                                 : "cannot inject the webhook CA bundle",
             CO_S("name", s->config), CO_E(err), CO_S("message", msg));
    }
    break;
  case OP_NONE:
    break;
  }
  cJSON_Delete(cfg);
  if (!busy)
    tick(cs);
}

/* ---- the one place that decides what to do next -------------------------------------------- */

static void tick(co_certstore_t *cs) {
  state_t *s = cs->s;
  if (s->closing || s->op != OP_NONE || !s->synced)
    return;
  if (now_ms(s) < s->retry_ms) {
    /* Come back when the wait is over, not at the next period (up to a minute later). */
    uv_timer_start(&s->timer, on_timer, s->retry_ms - now_ms(s), s->every_ms);
    return;
  }
  if (!s->seen) {
    /* Any replica creates; the API server lets exactly one succeed. */
    set_str(&s->rv, NULL);
    if (prepare(cs, 1) == 0)
      write_pending(cs);
    return;
  }
  if (!s->leader)
    return;
  if (s->pend_ca == NULL) {
    int64_t cert_left = -1, ca_left = -1;
    if (s->valid) {
      co_cert_remaining(cs->cert_pem, &cert_left);
      co_cert_remaining(s->ca_pem, &ca_left);
    }
    int new_ca = !s->valid || ca_left < 2 * s->validity_s;
    if (new_ca || cert_left < s->validity_s / 3) {
      co_log(CO_LOG_INFO, "rotating the webhook certificate", CO_I("expires_in_s", cert_left),
             CO_I("ca_expires_in_s", ca_left), CO_B("new_ca", new_ca));
      if (prepare(cs, new_ca) != 0)
        return;
      if (!new_ca || s->config == NULL) {
        write_pending(cs);
        return;
      }
      config_get(cs); /* the caBundle first, then the Secret */
      return;
    }
  }
  if (s->config != NULL && s->valid &&
      (s->pend_ca != NULL || s->injected == NULL || strcmp(s->injected, s->ca_pem) != 0 ||
       now_ms(s) >= s->inject_due_ms))
    config_get(cs);
}

static void on_timer(uv_timer_t *t) { tick(t->data); }

/* ---- lifecycle ------------------------------------------------------------------------------ */

int co_certstore_init(co_client_t *client, co_certstore_t *cs, const co_certstore_opts_t *o) {
  memset(cs, 0, sizeof(*cs));
  if (o == NULL || o->ns == NULL || o->ns[0] == '\0' || o->validity_s <= 0 ||
      o->n_dns + o->n_ips == 0)
    return CO_EINVAL;
  state_t *s = co_calloc(1, sizeof(*s));
  cs->s = s;
  s->client = client;
  s->ns = co_strdup(o->ns);
  s->name = co_strdup(o->secret_name ? o->secret_name : CO_CERTSTORE_SECRET);
  s->config = o->config_name && o->config_name[0] ? co_strdup(o->config_name) : NULL;
  s->validity_s = o->validity_s;
  s->dns = o->dns;
  s->n_dns = o->n_dns;
  s->ips = o->ips;
  s->n_ips = o->n_ips;
  char path[PATH_MAX_LEN], sel[PATH_MAX_LEN];
  secret_path(s, path, sizeof(path), 0);
  snprintf(sel, sizeof(sel), "metadata.name=%s", s->name);
  static const co_reflector_ops_t ops = {on_list_begin, on_list_item, on_list_end, on_event};
  int rc = co_reflector_init(client, &s->watch, path, NULL, &ops);
  if (rc == 0)
    rc = co_reflector_set_field_selector(&s->watch, sel);
  if (rc != 0) {
    co_free(s->ns);
    co_free(s->name);
    co_free(s->config);
    co_free(s);
    cs->s = NULL;
    return rc;
  }
  s->watch.data = cs;
  uv_timer_init(client->loop, &s->timer);
  s->timer.data = cs;
  s->open = 2; /* reflector, timer */
  return 0;
}

int co_certstore_start(co_certstore_t *cs) {
  state_t *s = cs->s;
  /* A twentieth of the validity, so rotation (at a third left) is never late by much. */
  s->every_ms = (uint64_t)s->validity_s * 1000 / 20;
  if (s->every_ms < 1000)
    s->every_ms = 1000;
  if (s->every_ms > 60000)
    s->every_ms = 60000;
  uv_timer_start(&s->timer, on_timer, s->every_ms, s->every_ms);
  return co_reflector_start(&s->watch);
}

void co_certstore_set_leader(co_certstore_t *cs, int leading) {
  cs->s->leader = leading;
  if (leading && cs->s->every_ms > 0)
    kick(cs);
}

static void free_all(co_certstore_t *cs) {
  state_t *s = cs->s;
  co_certstore_cb cb = s->close_cb;
  clear_pending(s);
  co_free(s->ns);
  co_free(s->name);
  co_free(s->config);
  co_free(s->rv);
  co_free(s->ca_pem);
  co_free(s->ca_key);
  co_free(s->injected);
  co_free(s);
  cs->s = NULL;
  set_str(&cs->cert_pem, NULL);
  set_str(&cs->key_pem, NULL);
  cs->loaded = 0;
  if (cb != NULL)
    cb(cs);
}

static void maybe_closed(co_certstore_t *cs) {
  if (cs->s->open == 0 && cs->s->op == OP_NONE)
    free_all(cs);
}

static void on_part_closed(co_certstore_t *cs) {
  cs->s->open--;
  maybe_closed(cs);
}

static void on_reflector_closed(co_reflector_t *r) { on_part_closed(r->data); }

static void on_timer_closed(uv_handle_t *h) { on_part_closed(h->data); }

int co_certstore_requests(const co_certstore_t *cs) {
  if (cs->s == NULL)
    return 0;
  return (cs->s->op != OP_NONE) + co_req_active(&cs->s->watch.req);
}

void co_certstore_close(co_certstore_t *cs, co_certstore_cb cb) {
  state_t *s = cs->s;
  if (s == NULL || s->closing)
    return;
  s->closing = 1;
  s->close_cb = cb;
  if (s->op != OP_NONE)
    co_req_cancel(&s->req);
  uv_timer_stop(&s->timer);
  uv_close((uv_handle_t *)&s->timer, on_timer_closed);
  co_reflector_close(&s->watch, on_reflector_closed);
}
