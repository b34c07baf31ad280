/* Work queue of string keys on a libuv loop, after client-go's workqueue:
 * - a key is queued at most once (adding a queued key is a no-op);
 * - a key is never processed twice at once: a key added while it is being processed is
 *   marked dirty and queued again when co_wq_done is called for it;
 * - co_wq_add_rate_limited delays a key by max(per-key exponential backoff, global token
 *   bucket): per-key base 5 ms doubling to max 1000 s, global 10 qps / burst 100 by default;
 *   co_wq_forget clears the per-key failure count;
 * - up to `workers` keys are handed to process_cb at once (reconciles are asynchronous: the
 *   callback starts work and the owner calls co_wq_done when it finishes, possibly later).
 *
 * Lifecycle (libuv style): co_wq_init, co_wq_start, co_wq_stop, co_wq_close(cb). The queue
 * is caller-allocated; its memory may be released only in (or after) the close callback.
 * Single-threaded: every call on the loop thread. */
#ifndef CO_WORKQUEUE_H
#define CO_WORKQUEUE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "co/ratelimit.h"

typedef struct co_wq_s co_wq_t;

/* Called on the loop, never from inside another co_wq_* call, with a key to process. key is
 * borrowed and valid until co_wq_done is called for it (or the close callback runs), so a
 * caller that passes this pointer calls co_wq_forget / co_wq_add_rate_limited BEFORE
 * co_wq_done. Processing must end with exactly one co_wq_done(wq, key). */
typedef void (*co_wq_process_cb)(co_wq_t *wq, const char *key);
typedef void (*co_wq_close_cb)(co_wq_t *wq);

typedef struct co_wq_opts_s {
  unsigned workers;       /* keys processed at once; default 4 */
  uint64_t base_delay_ms; /* per-key backoff start; default 5 */
  uint64_t max_delay_ms;  /* per-key backoff cap; default 1000000 */
  double qps;             /* global bucket; default 10 */
  int burst;              /* default 100 */
} co_wq_opts_t;

struct co_wq_item_s;

/* Optional observer of co_wq_done: how long the key was processed, and whether
 * co_wq_add_rate_limited was called for it meanwhile (a failure, as in client-go). */
typedef void (*co_wq_done_cb)(co_wq_t *wq, const char *key, uint64_t processing_ns, int failed);

struct co_wq_s {
  /* public */
  void *data;
  co_wq_done_cb on_done; /* NULL by default; must not call back into the queue */
  /* read-only */
  uv_loop_t *loop;
  size_t queued;     /* keys waiting, ready now */
  size_t processing; /* keys handed out, not yet done */
  size_t delayed;    /* keys waiting for a delay */
  uint64_t adds;     /* total keys handed to process_cb */
  /* private */
  co_wq_opts_t opts;
  co_wq_process_cb process_cb;
  co_wq_close_cb close_cb;
  struct co_wq_item_s *items;                   /* uthash by key: every key with any state */
  struct co_wq_item_s *ready_head, *ready_tail; /* FIFO of keys ready now */
  struct co_wq_item_s **heap;                   /* min-heap of delayed keys by ready time */
  size_t heap_cap;
  uint64_t seq;       /* insertion counter: FIFO among equal ready times */
  uint64_t timer_due; /* ready time the timer is armed for, when it is active */
  size_t known;       /* keys queued, dirty, processing or delayed (co_wq_len) */
  size_t nitems;      /* items allocated: known keys plus idle failure records */
  co_ratelimit_t bucket;
  uv_timer_t timer; /* fires at the earliest delayed key */
  uv_idle_t idle;   /* active only while a key can be dispatched */
  unsigned flags;
  int pending_closes;
};

/* Fills opts with the defaults above. */
void co_wq_opts_default(co_wq_opts_t *opts);
/* opts (borrowed, copied) may be NULL for defaults. Returns 0, CO_EINVAL (workers 0, or a
 * burst below 1 with qps > 0) or a libuv error. On success co_wq_close must be called. */
int co_wq_init(uv_loop_t *loop, co_wq_t *wq, const co_wq_opts_t *opts, co_wq_process_cb cb);
/* Starts handing keys to the callback (from a later loop pass). Returns 0, or CO_EINVAL
 * after co_wq_close. */
int co_wq_start(co_wq_t *wq);
/* Stops handing out keys (queued keys stay queued). */
void co_wq_stop(co_wq_t *wq);
/* Queues key now (key is borrowed and copied). Ignored after co_wq_close. */
void co_wq_add(co_wq_t *wq, const char *key);
/* Queues key after delay_ms (an earlier pending time for the key wins); 0 = co_wq_add. A
 * delayed key may also be queued or processing: when its time comes it is added as by
 * co_wq_add (a no-op if it is still queued). */
void co_wq_add_after(co_wq_t *wq, const char *key, uint64_t delay_ms);
/* Queues key after its backoff (see above) and counts a failure for it. */
void co_wq_add_rate_limited(co_wq_t *wq, const char *key);
/* Forgets the failures of key (after a success). */
void co_wq_forget(co_wq_t *wq, const char *key);
/* Returns the failures counted for key. */
unsigned co_wq_num_requeues(co_wq_t *wq, const char *key);
/* Ends processing of key (handed out by process_cb); if key was added meanwhile, it is
 * queued again. Ignored for a key that is not processing. */
void co_wq_done(co_wq_t *wq, const char *key);
/* Returns the number of distinct keys known (queued, delayed or processing). */
size_t co_wq_len(const co_wq_t *wq);
/* Stops dispatching, closes the handles and frees all keys (queued, delayed, failure
 * counts and keys still processing: their borrowed pointers die before cb). Adds are ignored
 * from now on; co_wq_done is still accepted until cb. cb (may be NULL) fires once, later, on
 * the loop, after both handles are closed; wq may be released in it. */
void co_wq_close(co_wq_t *wq, co_wq_close_cb cb);

#endif
