/* Informer: reflector events applied to a cache of projections, with change handlers. */
#include "co/informer.h"

#include <string.h>

#include "co/alloc.h"
#include "co/error.h"
#include "co/objects.h"
#include "co/log.h"

static const char *str_field(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int hex_digit(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int co_uid_parse(const char *s, co_uid_t *out) {
  memset(out, 0, sizeof(*out));
  if (s == NULL || strlen(s) != CO_UID_STR_LEN - 1)
    return CO_EPARSE;
  co_uid_t u;
  size_t j = 0;
  for (size_t i = 0; i < CO_UID_STR_LEN - 1;) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i++] != '-')
        return CO_EPARSE;
      continue;
    }
    int hi = hex_digit(s[i]), lo = hex_digit(s[i + 1]);
    if (hi < 0 || lo < 0)
      return CO_EPARSE;
    u.b[j++] = (uint8_t)(hi << 4 | lo);
    i += 2;
  }
  *out = u;
  return CO_OK;
}

int co_uid_present(const co_uid_t *uid) {
  static const co_uid_t none;
  return memcmp(uid, &none, sizeof(none)) != 0;
}

int co_uid_same(const co_uid_t *a, const co_uid_t *b) {
  return co_uid_present(a) && memcmp(a, b, sizeof(*a)) == 0;
}

const char *co_uid_str(const co_uid_t *uid, char out[CO_UID_STR_LEN]) {
  static const char hex[] = "0123456789abcdef";
  if (!co_uid_present(uid))
    return NULL;
  char *p = out;
  for (size_t i = 0; i < sizeof(uid->b); i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10)
      *p++ = '-';
    *p++ = hex[uid->b[i] >> 4];
    *p++ = hex[uid->b[i] & 15];
  }
  *p = '\0';
  return out;
}

/* A namespace name shared by the informer's objects of that namespace: 10,000 cached
 * Deployments live in a few hundred namespaces at most. */
struct co_ns_name_s {
  UT_hash_handle hh;
  size_t refs;
  char name[];
};
typedef struct co_ns_name_s ns_name_t;

/* Returns the shared copy of ns[0..nl), one reference taken; "" for no namespace. */
static const char *ns_ref(co_informer_t *inf, const char *ns, size_t nl) {
  if (nl == 0)
    return "";
  ns_name_t *e = NULL;
  HASH_FIND(hh, inf->ns_names, ns, nl, e);
  if (e == NULL) {
    e = co_calloc(1, sizeof(*e) + nl + 1);
    memcpy(e->name, ns, nl + 1);
    HASH_ADD_KEYPTR(hh, inf->ns_names, e->name, nl, e);
  }
  e->refs++;
  return e->name;
}

static void ns_unref(co_informer_t *inf, const char *ns) {
  ns_name_t *e = NULL;
  if (ns[0] != '\0')
    HASH_FIND_STR(inf->ns_names, ns, e);
  if (e != NULL && --e->refs == 0) {
    HASH_DELETE(hh, inf->ns_names, e);
    co_free(e);
  }
}

/* Cached objects of a type with an owned list hold everything in one allocation. */
static void obj_free(co_informer_t *inf, co_obj_t *o) {
  if (o == NULL)
    return;
  const co_resource_type_t *t = inf->type;
  if (t->release != NULL && t->owned == NULL)
    t->release(o);
  ns_unref(inf, o->ns);
  co_free(o); /* the other strings of the header live in the same allocation */
}

static size_t owned_size(const co_resource_type_t *t, const co_obj_t *o) {
  size_t n = 0;
  for (const co_owned_field_t *f = t->owned; f->offset != 0; f++) {
    const char *field = (const char *)o + f->offset;
    if (f->kind == CO_OWNED_STR) {
      const char *s = *(char *const *)field;
      n += s != NULL ? strlen(s) + 1 : 0;
    } else {
      n += co_kv_size((const co_kv_t *)field);
    }
  }
  return n;
}

/* Moves o (decoded, header strings in base bytes after the projection) and decode's
 * allocations into one allocation; returns it, o and decode's copies are freed. */
static co_obj_t *obj_pack(const co_resource_type_t *t, co_obj_t *o, size_t base) {
  size_t extra = owned_size(t, o);
  co_obj_t *n = co_malloc(base + extra);
  memcpy(n, o, base);
  ptrdiff_t delta = (char *)n - (char *)o;
  /* header strings point into o's allocation (the namespace does not): rebase them */
  n->key += delta;
  n->name += delta;
  char *b = (char *)n + base;
  for (const co_owned_field_t *f = t->owned; f->offset != 0; f++) {
    char *field = (char *)n + f->offset;
    if (f->kind == CO_OWNED_STR) {
      char **sp = (char **)field;
      if (*sp != NULL) {
        size_t l = strlen(*sp) + 1;
        *sp = memcpy(b, *sp, l);
        b += l;
      }
    } else {
      co_kv_t *kv = (co_kv_t *)field;
      size_t l = co_kv_size(kv);
      if (l > 0) {
        kv->data = memcpy(b, kv->data, l);
        b += l;
      }
    }
  }
  t->release(o); /* decode's copies (o's fields still point at them) */
  co_free(o);
  return n;
}

/* Decodes the common header and the type's projection; returns owned or NULL. */
static co_obj_t *obj_decode(co_informer_t *inf, const cJSON *json) {
  const co_resource_type_t *t = inf->type;
  const cJSON *md = cJSON_GetObjectItemCaseSensitive(json, "metadata");
  const char *name = str_field(md, "name");
  const char *ns = str_field(md, "namespace");
  if (name == NULL || name[0] == '\0') {
    inf->stats.decode_errors++;
    co_log(CO_LOG_WARN, "object without a name skipped", CO_S("resource", t->name));
    return NULL;
  }
  if (ns == NULL)
    ns = "";
  size_t nl = strlen(ns), ml = strlen(name);
  /* One allocation per object: the projection, then "ns/name" (the key; name is its tail),
   * so that a cached object costs one malloc chunk, not six. The namespace is shared
   * (ns_ref). */
  size_t kl = nl > 0 ? nl + 1 + ml : ml;
  size_t base = t->size + kl + 1;
  co_obj_t *o = co_calloc(1, base);
  char *b = (char *)o + t->size;
  if (nl > 0) {
    memcpy(b, ns, nl);
    b[nl] = '/';
    memcpy(b + nl + 1, name, ml + 1);
    o->name = b + nl + 1;
  } else {
    memcpy(b, name, ml + 1);
    o->name = b;
  }
  o->key = b;
  co_uid_parse(str_field(md, "uid"), &o->uid); /* absent unless a UUID */
  o->ns = ns_ref(inf, ns, nl);
  const cJSON *gen = cJSON_GetObjectItemCaseSensitive(md, "generation");
  o->generation = co_json_int64(gen, 0);
  o->deleting = str_field(md, "deletionTimestamp") != NULL;
  if (t->decode != NULL && t->decode(json, o) != 0) {
    inf->stats.decode_errors++;
    co_log(CO_LOG_WARN, "object could not be decoded, skipped", CO_S("resource", t->name),
           CO_S("key", o->key));
    if (t->release != NULL)
      t->release(o);
    ns_unref(inf, o->ns);
    co_free(o);
    return NULL;
  }
  return t->owned != NULL ? obj_pack(t, o, base) : o;
}

static int same_header(const co_obj_t *a, const co_obj_t *b) {
  return memcmp(&a->uid, &b->uid, sizeof(a->uid)) == 0 && a->generation == b->generation &&
         a->deleting == b->deleting;
}

static void upsert(co_informer_t *inf, co_obj_t *o) {
  const co_resource_type_t *t = inf->type;
  co_obj_t *old = NULL;
  o->mark = inf->mark;
  HASH_FIND_STR(inf->cache, o->key, old);
  if (old == NULL) {
    o->seq = ++inf->seq;
    HASH_ADD_KEYPTR(hh, inf->cache, o->key, strlen(o->key), o);
    inf->count++;
    inf->stats.adds++;
    if (inf->handlers.on_add != NULL)
      inf->handlers.on_add(inf, o);
    return;
  }
  if (same_header(old, o) && (t->equal == NULL || t->equal(old, o))) {
    /* Nothing the controllers read changed: keep the old object (and a projected
     * resourceVersion: the version of the last change the projection saw). */
    old->mark = inf->mark;
    inf->stats.unchanged++;
    obj_free(inf, o);
    return;
  }
  HASH_DELETE(hh, inf->cache, old);
  o->seq = ++inf->seq;
  HASH_ADD_KEYPTR(hh, inf->cache, o->key, strlen(o->key), o);
  inf->stats.updates++;
  if (inf->handlers.on_update != NULL)
    inf->handlers.on_update(inf, old, o);
  obj_free(inf, old);
}

static void remove_obj(co_informer_t *inf, co_obj_t *old) {
  HASH_DELETE(hh, inf->cache, old);
  inf->count--;
  inf->stats.deletes++;
  if (inf->handlers.on_delete != NULL)
    inf->handlers.on_delete(inf, old);
  obj_free(inf, old);
}

static void on_list_begin(co_reflector_t *r) {
  co_informer_t *inf = r->data;
  inf->mark++;
  inf->pages_before = r->stats.pages - 1; /* list_begin comes with the first page */
}

static void on_list_item(co_reflector_t *r, const cJSON *json) {
  co_informer_t *inf = r->data;
  co_obj_t *o = obj_decode(inf, json);
  if (o != NULL)
    upsert(inf, o);
}

static void on_list_end(co_reflector_t *r) {
  co_informer_t *inf = r->data;
  co_obj_t *o, *tmp;
  HASH_ITER(hh, inf->cache, o, tmp) {
    if (o->mark != inf->mark)
      remove_obj(inf, o);
  }
  co_log(CO_LOG_DEBUG, "list complete", CO_S("resource", inf->type->name),
         CO_I("objects", inf->count), CO_I("pages", r->stats.pages - inf->pages_before),
         CO_S("rv", r->resource_version));
  if (!inf->synced) {
    inf->synced = 1;
    if (inf->handlers.on_synced != NULL)
      inf->handlers.on_synced(inf);
  }
}

static void on_event(co_reflector_t *r, int type, const cJSON *json) {
  co_informer_t *inf = r->data;
  if (type == CO_WATCH_DELETED) {
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(json, "metadata");
    const char *name = str_field(md, "name"), *ns = str_field(md, "namespace");
    if (name == NULL)
      return;
    co_buf_t key;
    co_buf_init(&key, 1024);
    if (ns != NULL && ns[0] != '\0')
      co_buf_appendf(&key, "%s/%s", ns, name);
    else
      co_buf_appends(&key, name);
    co_obj_t *old = NULL;
    HASH_FIND_STR(inf->cache, co_buf_str(&key), old);
    co_buf_free(&key);
    if (old != NULL)
      remove_obj(inf, old);
    return;
  }
  co_obj_t *o = obj_decode(inf, json);
  if (o != NULL)
    upsert(inf, o);
}

int co_informer_init(co_client_t *client, co_informer_t *inf, const co_resource_type_t *type,
                     const co_informer_handlers_t *handlers, const char *label_selector) {
  memset(inf, 0, sizeof(*inf));
  if (type == NULL || type->size < sizeof(co_obj_t))
    return CO_EINVAL;
  inf->type = type;
  if (handlers != NULL)
    inf->handlers = *handlers;
  static const co_reflector_ops_t ops = {on_list_begin, on_list_item, on_list_end, on_event};
  int rc = co_reflector_init(client, &inf->reflector, type->path, label_selector, &ops);
  if (rc != 0)
    return rc;
  inf->reflector.data = inf;
  return CO_OK;
}

int co_informer_set_field_selector(co_informer_t *inf, const char *field_selector) {
  return co_reflector_set_field_selector(&inf->reflector, field_selector);
}

int co_informer_start(co_informer_t *inf) { return co_reflector_start(&inf->reflector); }

static void on_reflector_closed(co_reflector_t *r) {
  co_informer_t *inf = r->data;
  co_obj_t *o, *tmp;
  HASH_ITER(hh, inf->cache, o, tmp) {
    HASH_DELETE(hh, inf->cache, o);
    obj_free(inf, o);
  }
  inf->count = 0; /* every namespace name went with its last object */
  if (inf->close_cb != NULL)
    inf->close_cb(inf);
}

void co_informer_close(co_informer_t *inf, co_informer_close_cb cb) {
  inf->close_cb = cb;
  co_reflector_close(&inf->reflector, on_reflector_closed);
}

const co_obj_t *co_informer_get(const co_informer_t *inf, const char *key) {
  co_obj_t *o = NULL;
  HASH_FIND_STR(inf->cache, key, o);
  return o;
}

const co_obj_t *co_informer_first(const co_informer_t *inf) { return inf->cache; }

const co_obj_t *co_informer_next(const co_obj_t *obj) { return obj->hh.next; }
