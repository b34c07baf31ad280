/* Work queue of string keys on a libuv loop, after client-go's workqueue. See co/workqueue.h.
 *
 * Every key known to the queue has one item in a hash table. An item's state is a set of
 * independent facts, as in client-go:
 *   DIRTY       needs processing (it is in the ready list unless it is also PROCESSING);
 *   QUEUED      it is in the ready list (implies DIRTY and not PROCESSING);
 *   PROCESSING  handed to process_cb, co_wq_done not called yet;
 *   delayed     it is in the delay heap (heap_idx != NOT_DELAYED); when its time comes it is
 *               added like co_wq_add, so a delayed key can also be dirty or processing;
 *   failures    counted by co_wq_add_rate_limited until co_wq_forget.
 * An item with none of these is freed at once (settle()).
 *
 * Dispatch runs from a uv_idle handle rather than from co_wq_add, so process_cb is never
 * entered re-entrantly from a caller of co_wq_add or co_wq_done. uv_idle over uv_prepare or
 * uv_check: an active idle handle makes the loop poll without blocking, so a pass that
 * stops early (budget, worker limit) continues on the next iteration without waiting for
 * unrelated I/O; and the handle is active only while a key can actually be dispatched, so it
 * neither spins while all workers are busy nor keeps an otherwise finished loop alive. A
 * prepare/check handle would have to stay active (and referenced) forever, and check runs
 * after the poll, so work added from a timer callback would wait for the next I/O event. */
#include "co/workqueue.h"

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "co/alloc.h"
#include "co/error.h"

/* uthash allocates through the project's wrappers; they abort on failure, so the uthash
 * failure path is unreachable. */
#define uthash_malloc(sz) co_malloc(sz)
#define uthash_free(ptr, sz) co_free(ptr)
#define uthash_fatal(msg) abort()
#include <uthash.h>

enum {
  ITEM_DIRTY = 1u << 0,
  ITEM_QUEUED = 1u << 1,
  ITEM_PROCESSING = 1u << 2,
  ITEM_KNOWN = 1u << 3, /* counted in wq->known */
  ITEM_FAILED = 1u << 4 /* co_wq_add_rate_limited while processing */
};

enum { WQ_STARTED = 1u << 0, WQ_CLOSING = 1u << 1 };

#define NOT_DELAYED SIZE_MAX

struct co_wq_item_s {
  char *key;                 /* owned */
  struct co_wq_item_s *next; /* ready list */
  uint64_t ready_at;         /* when delayed */
  uint64_t seq;              /* when delayed */
  size_t heap_idx;           /* NOT_DELAYED or the index in wq->heap */
  unsigned failures;
  unsigned flags;
  uint64_t started_ns; /* handed to process_cb */
  UT_hash_handle hh;
};

typedef struct co_wq_item_s item_t;

void co_wq_opts_default(co_wq_opts_t *opts) {
  opts->workers = 4;
  opts->base_delay_ms = 5;
  opts->max_delay_ms = 1000000;
  opts->qps = 10;
  opts->burst = 100;
}

/* ---- items ---- */

static item_t *item_find(const co_wq_t *wq, const char *key) {
  item_t *it = NULL;
  HASH_FIND_STR(wq->items, key, it);
  return it;
}

static item_t *item_get(co_wq_t *wq, const char *key) {
  item_t *it = item_find(wq, key);
  if (it != NULL)
    return it;
  it = co_calloc(1, sizeof(*it));
  it->key = co_strdup(key);
  it->heap_idx = NOT_DELAYED;
  HASH_ADD_KEYPTR(hh, wq->items, it->key, strlen(it->key), it);
  wq->nitems++;
  return it;
}

static void item_free(item_t *it) {
  co_free(it->key);
  co_free(it);
}

/* Recomputes whether the item counts for co_wq_len and frees it when nothing refers to it.
 * Called after every state change; the item must not be used afterwards. */
static void settle(co_wq_t *wq, item_t *it) {
  int active = (it->flags & (ITEM_DIRTY | ITEM_PROCESSING)) != 0 || it->heap_idx != NOT_DELAYED;
  if (active && !(it->flags & ITEM_KNOWN)) {
    it->flags |= ITEM_KNOWN;
    wq->known++;
  } else if (!active && (it->flags & ITEM_KNOWN)) {
    it->flags &= ~(unsigned)ITEM_KNOWN;
    wq->known--;
  }
  if (!active && it->failures == 0) {
    HASH_DEL(wq->items, it);
    wq->nitems--;
    item_free(it);
  }
}

/* ---- ready list and dispatch ---- */

static void ready_push(co_wq_t *wq, item_t *it) {
  it->flags |= ITEM_QUEUED;
  it->next = NULL;
  if (wq->ready_tail != NULL)
    wq->ready_tail->next = it;
  else
    wq->ready_head = it;
  wq->ready_tail = it;
  wq->queued++;
}

static item_t *ready_pop(co_wq_t *wq) {
  item_t *it = wq->ready_head;
  wq->ready_head = it->next;
  if (wq->ready_head == NULL)
    wq->ready_tail = NULL;
  it->next = NULL;
  it->flags &= ~(unsigned)ITEM_QUEUED;
  wq->queued--;
  return it;
}

static int can_dispatch(const co_wq_t *wq) {
  return (wq->flags & WQ_STARTED) && !(wq->flags & WQ_CLOSING) && wq->ready_head != NULL &&
         wq->processing < wq->opts.workers;
}

static void on_idle(uv_idle_t *handle) {
  co_wq_t *wq = handle->data;
  /* Keys added during this pass (by process_cb, or re-added by a synchronous co_wq_done) wait
   * for the next loop iteration, so a callback that keeps re-adding cannot starve I/O. */
  size_t budget = wq->queued;
  while (budget-- > 0 && can_dispatch(wq)) {
    item_t *it = ready_pop(wq);
    it->flags &= ~(unsigned)(ITEM_DIRTY | ITEM_FAILED);
    it->flags |= ITEM_PROCESSING;
    it->started_ns = uv_hrtime();
    wq->processing++;
    wq->adds++;
    /* The callback may call co_wq_done (which can free it), co_wq_stop or co_wq_close:
     * it is not touched again, and can_dispatch re-reads the flags. */
    wq->process_cb(wq, it->key);
  }
  /* After co_wq_close the handle is already closing and stopped. */
  if (!(wq->flags & WQ_CLOSING) && !can_dispatch(wq))
    uv_idle_stop(&wq->idle);
}

/* Arms the dispatcher when a key can be handed out; idempotent. */
static void kick(co_wq_t *wq) {
  if (can_dispatch(wq))
    uv_idle_start(&wq->idle, on_idle);
}

/* co_wq_add on an item: de-duplicates, and defers keys being processed to co_wq_done. */
static void mark_dirty(co_wq_t *wq, item_t *it) {
  if (it->flags & ITEM_DIRTY)
    return;
  it->flags |= ITEM_DIRTY;
  if (!(it->flags & ITEM_PROCESSING))
    ready_push(wq, it);
}

/* ---- delay heap (binary min-heap by ready time, then insertion order; iterative) ---- */

static int heap_less(const item_t *a, const item_t *b) {
  return a->ready_at != b->ready_at ? a->ready_at < b->ready_at : a->seq < b->seq;
}

static void heap_set(co_wq_t *wq, size_t i, item_t *it) {
  wq->heap[i] = it;
  it->heap_idx = i;
}

static void heap_up(co_wq_t *wq, size_t i) {
  item_t *it = wq->heap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!heap_less(it, wq->heap[parent]))
      break;
    heap_set(wq, i, wq->heap[parent]);
    i = parent;
  }
  heap_set(wq, i, it);
}

static void heap_down(co_wq_t *wq, size_t i) {
  size_t n = wq->delayed;
  item_t *it = wq->heap[i];
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= n)
      break;
    if (child + 1 < n && heap_less(wq->heap[child + 1], wq->heap[child]))
      child++;
    if (!heap_less(wq->heap[child], it))
      break;
    heap_set(wq, i, wq->heap[child]);
    i = child;
  }
  heap_set(wq, i, it);
}

static void heap_push(co_wq_t *wq, item_t *it) {
  if (wq->delayed == wq->heap_cap) {
    size_t cap = wq->heap_cap ? wq->heap_cap * 2 : 16;
    item_t **heap = co_realloc(wq->heap, cap * sizeof(*heap));
    wq->heap = heap;
    wq->heap_cap = cap;
  }
  heap_set(wq, wq->delayed, it);
  wq->delayed++;
  heap_up(wq, wq->delayed - 1);
}

static item_t *heap_pop(co_wq_t *wq) {
  item_t *top = wq->heap[0];
  wq->delayed--;
  if (wq->delayed > 0) {
    heap_set(wq, 0, wq->heap[wq->delayed]);
    heap_down(wq, 0);
  }
  top->heap_idx = NOT_DELAYED;
  return top;
}

static void on_timer(uv_timer_t *handle);

/* Points the one timer at the earliest delayed key. Restarting a libuv timer reorders its
 * heap, so it is left alone when the earliest time did not change. */
static void arm_timer(co_wq_t *wq) {
  if (wq->flags & WQ_CLOSING)
    return;
  if (wq->delayed == 0) {
    uv_timer_stop(&wq->timer);
    return;
  }
  uint64_t due = wq->heap[0]->ready_at;
  if (uv_is_active((uv_handle_t *)&wq->timer) && wq->timer_due == due)
    return;
  uint64_t now = uv_now(wq->loop);
  wq->timer_due = due;
  uv_timer_start(&wq->timer, on_timer, due > now ? due - now : 0, 0);
}

/* Moves every key whose time has come to the ready list. No user callback runs here. */
static void on_timer(uv_timer_t *handle) {
  co_wq_t *wq = handle->data;
  uint64_t now = uv_now(wq->loop);
  while (wq->delayed > 0 && wq->heap[0]->ready_at <= now) {
    item_t *it = heap_pop(wq);
    mark_dirty(wq, it);
    settle(wq, it);
  }
  /* A drained heap gives back the memory of a past burst of delayed keys. */
  if (wq->delayed == 0 && wq->heap_cap > 1024) {
    co_free(wq->heap);
    wq->heap = NULL;
    wq->heap_cap = 0;
  }
  arm_timer(wq);
  kick(wq);
}

/* ---- public API ---- */

int co_wq_init(uv_loop_t *loop, co_wq_t *wq, const co_wq_opts_t *opts, co_wq_process_cb cb) {
  co_wq_opts_t o;
  if (opts != NULL)
    o = *opts;
  else
    co_wq_opts_default(&o);
  if (loop == NULL || wq == NULL || cb == NULL || o.workers == 0 || (o.qps > 0 && o.burst < 1))
    return CO_EINVAL;

  void *data = wq->data; /* as libuv: init leaves the user's slot alone */
  memset(wq, 0, sizeof(*wq));
  wq->data = data;
  wq->loop = loop;
  wq->opts = o;
  wq->process_cb = cb;
  co_ratelimit_init(&wq->bucket, o.qps, o.burst, uv_now(loop));
  /* Neither init can fail on Unix (they only link the handle into the loop). Were the second
   * to fail, the first handle is closed and wq must outlive one more loop iteration. */
  int rc = uv_idle_init(loop, &wq->idle);
  if (rc != 0)
    return rc;
  rc = uv_timer_init(loop, &wq->timer);
  if (rc != 0) {
    uv_close((uv_handle_t *)&wq->idle, NULL);
    return rc;
  }
  wq->idle.data = wq;
  wq->timer.data = wq;
  return 0;
}

int co_wq_start(co_wq_t *wq) {
  if (wq->flags & WQ_CLOSING)
    return CO_EINVAL;
  wq->flags |= WQ_STARTED;
  kick(wq);
  return 0;
}

void co_wq_stop(co_wq_t *wq) {
  wq->flags &= ~(unsigned)WQ_STARTED;
  if (!(wq->flags & WQ_CLOSING))
    uv_idle_stop(&wq->idle);
}

void co_wq_add(co_wq_t *wq, const char *key) {
  if (key == NULL || (wq->flags & WQ_CLOSING))
    return;
  item_t *it = item_get(wq, key);
  mark_dirty(wq, it);
  settle(wq, it);
  kick(wq);
}

void co_wq_add_after(co_wq_t *wq, const char *key, uint64_t delay_ms) {
  if (delay_ms == 0) {
    co_wq_add(wq, key);
    return;
  }
  if (key == NULL || (wq->flags & WQ_CLOSING))
    return;
  uint64_t now = uv_now(wq->loop);
  uint64_t at = delay_ms > UINT64_MAX - now ? UINT64_MAX : now + delay_ms;
  item_t *it = item_get(wq, key);
  if (it->heap_idx == NOT_DELAYED) {
    it->ready_at = at;
    it->seq = wq->seq++;
    heap_push(wq, it);
  } else if (at < it->ready_at) {
    /* The earlier time wins; only moving towards the root is possible. */
    it->ready_at = at;
    heap_up(wq, it->heap_idx);
  }
  settle(wq, it);
  arm_timer(wq);
}

void co_wq_add_rate_limited(co_wq_t *wq, const char *key) {
  if (key == NULL || (wq->flags & WQ_CLOSING))
    return;
  item_t *it = item_get(wq, key);
  /* Per-key exponential: base * 2^failures, capped, without overflowing. */
  uint64_t base = wq->opts.base_delay_ms, max = wq->opts.max_delay_ms;
  unsigned exp = it->failures;
  uint64_t per_key = (exp >= 63 || base > (max >> exp)) ? max : base << exp;
  if (it->failures < UINT_MAX)
    it->failures++;
  if (it->flags & ITEM_PROCESSING)
    it->flags |= ITEM_FAILED;
  /* Both limiters are always consulted, as client-go's MaxOf: every failure takes a token
   * from the global bucket even when the per-key delay is the longer one. */
  uint64_t global = co_ratelimit_reserve(&wq->bucket, uv_now(wq->loop));
  uint64_t delay = per_key > global ? per_key : global;
  /* The item stays alive through its failure count, so adding by its own key is safe. */
  co_wq_add_after(wq, it->key, delay);
}

void co_wq_forget(co_wq_t *wq, const char *key) {
  if (key == NULL)
    return;
  item_t *it = item_find(wq, key);
  if (it == NULL)
    return;
  it->failures = 0;
  settle(wq, it);
}

unsigned co_wq_num_requeues(co_wq_t *wq, const char *key) {
  const item_t *it = key != NULL ? item_find(wq, key) : NULL;
  return it != NULL ? it->failures : 0;
}

void co_wq_done(co_wq_t *wq, const char *key) {
  if (key == NULL)
    return;
  item_t *it = item_find(wq, key);
  if (it == NULL || !(it->flags & ITEM_PROCESSING))
    return; /* not handed out: nothing to finish (client-go ignores it too) */
  it->flags &= ~(unsigned)ITEM_PROCESSING;
  wq->processing--;
  if (wq->on_done != NULL)
    wq->on_done(wq, it->key, uv_hrtime() - it->started_ns, (it->flags & ITEM_FAILED) != 0);
  /* Added while it was processing: its turn comes now. */
  if (it->flags & ITEM_DIRTY)
    ready_push(wq, it);
  settle(wq, it); /* may free it, and with it key when key is the borrowed pointer */
  kick(wq);
}

size_t co_wq_len(const co_wq_t *wq) { return wq->known; }

static void free_all(co_wq_t *wq) {
  item_t *it, *tmp;
  HASH_ITER(hh, wq->items, it, tmp) {
    HASH_DEL(wq->items, it);
    item_free(it);
  }
  co_free(wq->heap);
  wq->heap = NULL;
  wq->heap_cap = 0;
  wq->ready_head = wq->ready_tail = NULL;
  wq->queued = wq->processing = wq->delayed = wq->known = wq->nitems = 0;
}

static void on_handle_close(uv_handle_t *handle) {
  co_wq_t *wq = handle->data;
  /* Memory goes only after libuv is done with both handles embedded in wq. */
  if (--wq->pending_closes > 0)
    return;
  free_all(wq);
  if (wq->close_cb != NULL)
    wq->close_cb(wq); /* last use of wq: the callback may release it */
}

void co_wq_close(co_wq_t *wq, co_wq_close_cb cb) {
  if (wq->flags & WQ_CLOSING)
    return;
  wq->flags = (wq->flags & ~(unsigned)WQ_STARTED) | WQ_CLOSING;
  wq->close_cb = cb;
  wq->pending_closes = 2;
  uv_idle_stop(&wq->idle);
  uv_timer_stop(&wq->timer);
  uv_close((uv_handle_t *)&wq->idle, on_handle_close);
  uv_close((uv_handle_t *)&wq->timer, on_handle_close);
}
