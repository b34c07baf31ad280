/* Informer: a reflector plus a local cache of one resource, keyed by "namespace/name" (or
 * "name" for cluster-scoped resources). The cache keeps only a projection of each object:
 * the fields the controllers read, decoded once per event by the resource type's decode
 * function, never the whole JSON tree.
 *
 * Handlers run on the loop. on_update fires only when the projection changed (an update
 * that touches nothing the controllers read keeps the cached object as it was).
 * After a relist, objects that disappeared get on_delete. on_synced fires once, after the
 * first complete list. Objects passed to handlers are borrowed for the call. */
#ifndef CO_INFORMER_H
#define CO_INFORMER_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <uthash.h>

#include "co/reflector.h"

/* metadata.uid, a UUID the API server assigns, as its 16 bytes (not the 37 of its text: every
 * cached object holds one). All zero when absent. */
typedef struct co_uid_s {
  uint8_t b[16];
} co_uid_t;

#define CO_UID_STR_LEN 37 /* the text, NUL included */

/* Parses the text as the API server writes it (lowercase hex, "8-4-4-4-12"). Returns 0, or
 * CO_EPARSE with *out all zero (absent) for NULL or anything else. */
int co_uid_parse(const char *s, co_uid_t *out);
/* Writes the text of uid into out and returns out; returns NULL when uid is absent. */
const char *co_uid_str(const co_uid_t *uid, char out[CO_UID_STR_LEN]);
/* 1 unless uid is absent. */
int co_uid_present(const co_uid_t *uid);
/* 1 when a and b are the same uid, both present. */
int co_uid_same(const co_uid_t *a, const co_uid_t *b);

/* Common header of every cached projection; a projection struct starts with it. */
typedef struct co_obj_s {
  /* The strings are valid as long as the object. key and name live in the object's own
   * allocation, after the projection; ns is shared by the informer's objects of the same
   * namespace. */
  const char *key; /* "ns/name" or "name" */
  const char *ns;  /* "" if cluster-scoped */
  const char *name;
  co_uid_t uid; /* absent (all zero) if missing or not a UUID */
  int64_t generation;
  uint64_t seq;     /* when the object entered the cache (added or changed): iteration goes in
                       increasing seq, so a walk can resume after the cache changed */
  uint32_t mark;    /* relist sweep */
  uint8_t deleting; /* metadata.deletionTimestamp is set */
  UT_hash_handle hh;
} co_obj_t;

typedef struct co_informer_s co_informer_t;

/* Describes one resource to an informer. Static data; borrowed by the informer. */
/* A field of a projection that decode fills with its own allocation (see owned below). */
typedef struct co_owned_field_s {
  uint16_t offset; /* offsetof the field in the projection; 0 ends the list */
  uint8_t kind;    /* CO_OWNED_STR (char *) or CO_OWNED_KV (co_kv_t) */
} co_owned_field_t;

enum { CO_OWNED_STR = 1, CO_OWNED_KV = 2 };

typedef struct co_resource_type_s {
  const char *name; /* "deployments" */
  const char *path; /* collection path: "/apis/apps/v1/deployments" */
  size_t size;      /* size of the projection struct (>= sizeof(co_obj_t)) */
  /* Fills the projection-specific fields of out (zeroed; header already filled) from the
   * object. Returns 0 or CO_EPARSE (the object is then skipped and logged). */
  int (*decode)(const cJSON *obj, co_obj_t *out);
  /* Frees what decode allocated (not the header, not out itself). */
  void (*release)(co_obj_t *obj);
  /* 1 when a and b are equal in every projected field (header excluded). */
  int (*equal)(const co_obj_t *a, const co_obj_t *b);
  /* Optional: every field decode allocates, listed. The informer then copies them into the
   * object's own allocation (one malloc chunk per cached object, not one per field), frees
   * decode's copies with release, and never calls release on a cached object. */
  const co_owned_field_t *owned;
} co_resource_type_t;

typedef struct co_informer_handlers_s {
  void (*on_add)(co_informer_t *inf, const co_obj_t *obj);
  void (*on_update)(co_informer_t *inf, const co_obj_t *old_obj, const co_obj_t *new_obj);
  void (*on_delete)(co_informer_t *inf, const co_obj_t *old_obj);
  void (*on_synced)(co_informer_t *inf);
} co_informer_handlers_t;

typedef struct co_informer_stats_s {
  uint64_t adds, updates, deletes, unchanged, decode_errors;
} co_informer_stats_t;

typedef void (*co_informer_close_cb)(co_informer_t *inf);

struct co_informer_s {
  /* public */
  void *data;
  /* read-only */
  const co_resource_type_t *type;
  int synced;
  size_t count;
  co_informer_stats_t stats;
  co_reflector_t reflector;
  /* private */
  co_informer_handlers_t handlers;
  co_obj_t *cache;
  struct co_ns_name_s *ns_names; /* the namespaces of the cached objects, shared */
  uint32_t mark;
  uint64_t seq;          /* the last seq given */
  uint64_t pages_before; /* reflector page count before the current list */
  co_informer_close_cb close_cb;
};

/* type and handlers are borrowed/copied; label_selector may be NULL. */
int co_informer_init(co_client_t *client, co_informer_t *inf, const co_resource_type_t *type,
                     const co_informer_handlers_t *handlers, const char *label_selector);
/* Restricts the informer to objects matching a fieldSelector (e.g. "metadata.name=node-1" to
 * watch one object; copied). Only between init and start. Returns 0 or a CO_E* code. */
int co_informer_set_field_selector(co_informer_t *inf, const char *field_selector);
int co_informer_start(co_informer_t *inf);
/* Stops watching and frees the cache; cb fires once, later, on the loop. */
void co_informer_close(co_informer_t *inf, co_informer_close_cb cb);

/* Returns the cached object for key (borrowed, valid until the next loop callback of the
 * informer), or NULL. */
const co_obj_t *co_informer_get(const co_informer_t *inf, const char *key);
/* Iteration: co_informer_first then co_informer_next(obj) until NULL, in increasing seq
 * (objects that enter the cache go last). The cache must not change during the iteration (do
 * not return to the loop). */
const co_obj_t *co_informer_first(const co_informer_t *inf);
const co_obj_t *co_informer_next(const co_obj_t *obj);

#endif
