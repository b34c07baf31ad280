/* List + watch of one collection, after client-go's reflector.
 *
 *   LISTING --list done--> WATCHING --stream ends cleanly--> WATCHING (from the last RV)
 *      ^                      |  410 (HTTP or ERROR event) --> LISTING (relist)
 *      |                      |  other error / stall --> BACKOFF --> WATCHING
 *      +---- BACKOFF <-- list error
 *
 * Lists are paginated (limit/continue); an expired continue token restarts the list. Watches
 * use allowWatchBookmarks and a random timeoutSeconds in [300, 600]; the resourceVersion is an
 * opaque string updated on every event and bookmark. Backoff: 800 ms doubling to 30 s with
 * jitter, reset after 2 minutes healthy. A stalled stream is cut by the client (CO_ESTALLED).
 * All transitions go through one function. Callbacks run on the loop. */
#ifndef CO_REFLECTOR_H
#define CO_REFLECTOR_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "co/backoff.h"
#include "co/client.h"
#include "co/watchframe.h"

typedef struct co_reflector_s co_reflector_t;

typedef struct co_reflector_ops_s {
  /* A full list starts (first one or relist). */
  void (*list_begin)(co_reflector_t *r);
  /* One item of a list page (borrowed). */
  void (*list_item)(co_reflector_t *r, const cJSON *obj);
  /* The list finished: items not delivered since list_begin no longer exist. */
  void (*list_end)(co_reflector_t *r);
  /* A watch event: CO_WATCH_ADDED, CO_WATCH_MODIFIED or CO_WATCH_DELETED (borrowed). */
  void (*event)(co_reflector_t *r, int type, const cJSON *obj);
} co_reflector_ops_t;

typedef enum {
  CO_REFLECTOR_IDLE = 0,
  CO_REFLECTOR_LISTING,
  CO_REFLECTOR_WATCHING,
  CO_REFLECTOR_BACKOFF,
  CO_REFLECTOR_CLOSING,
  CO_REFLECTOR_CLOSED
} co_reflector_state_t;

typedef struct co_reflector_stats_s {
  uint64_t lists;   /* full lists completed */
  uint64_t relists; /* lists started after the first one */
  uint64_t pages;
  uint64_t watches;    /* watch requests started */
  uint64_t watch_ends; /* watches that ended (any reason) */
  uint64_t expired;    /* 410 answers or ERROR events */
  uint64_t errors;     /* failed requests (before backoff) */
  uint64_t stalls;
  uint64_t events;
  uint64_t bookmarks;
} co_reflector_stats_t;

typedef void (*co_reflector_close_cb)(co_reflector_t *r);

struct co_reflector_s {
  /* public */
  void *data;
  /* read-only */
  co_reflector_state_t state;
  char *resource_version; /* owned; last seen, or NULL before the first list */
  co_reflector_stats_t stats;
  /* private */
  co_client_t *client;
  co_reflector_ops_t ops;
  char *path;           /* collection path, e.g. /apis/apps/v1/deployments */
  char *selector;       /* URL-encoded labelSelector or NULL */
  char *field_selector; /* URL-encoded fieldSelector or NULL */
  char *cont;           /* continue token of the list in progress */
  unsigned page_limit;
  unsigned timeout_min_s, timeout_max_s;
  co_req_t req;
  co_watchframe_t frame;
  co_backoff_t backoff;
  uv_timer_t timer;
  int relist_next; /* after the backoff, list (1) or watch (0) */
  uint64_t watch_started_ms;
  uint64_t watch_events; /* events of the current watch */
  int timer_closed;
  uint64_t rng;
  co_reflector_close_cb close_cb;
};

/* path is the collection path (copied). ops is copied. label_selector may be NULL. */
int co_reflector_init(co_client_t *client, co_reflector_t *r, const char *path,
                      const char *label_selector, const co_reflector_ops_t *ops);
/* Restricts the list and watch with a fieldSelector ("metadata.name=x"; copied). Only before
 * co_reflector_start. Returns 0, CO_EINVAL or CO_ETOOBIG. */
int co_reflector_set_field_selector(co_reflector_t *r, const char *field_selector);
/* Starts listing. */
int co_reflector_start(co_reflector_t *r);
/* Stops the request in flight and frees everything; cb fires once, later, on the loop. */
void co_reflector_close(co_reflector_t *r, co_reflector_close_cb cb);
const char *co_reflector_state_name(co_reflector_state_t s);

#endif
