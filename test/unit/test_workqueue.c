/* Work queue on a real libuv loop: de-dup, per-key exclusion, worker limit, delays, rate
 * limiting, close. Every test ends with uv_loop_close() == 0 (all handles closed) and runs
 * under ASan in CI, so a leaked key fails the run. */
#include "co/workqueue.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "co/alloc.h"
#include "co/error.h"
#include "co_test.h"

#define MAX_REC 2048
#define KEY_LEN 24

typedef struct fx_s fx_t;

/* Per-test fixture: records every process_cb call and checks the queue's invariants. */
struct fx_s {
  uv_loop_t loop;
  co_wq_t wq;
  uint64_t t0;
  /* Test-specific behaviour on each key; must end in fx_done or fx_done_after. NULL means
   * "done at once". */
  void (*on_process)(fx_t *f, const char *key, size_t nth);
  char rec[MAX_REC][KEY_LEN]; /* keys in processing order */
  uint64_t at[MAX_REC];       /* ms since t0 when handed out */
  size_t n;
  char busy[MAX_REC][KEY_LEN]; /* keys processing according to the test */
  size_t nbusy;
  int depth, max_depth;  /* process_cb nesting: > 1 means re-entrant dispatch */
  size_t max_processing; /* max of wq->processing seen inside process_cb */
  int overlap;           /* a key handed out while it was still processing */
  int closed;
};

static size_t count(const fx_t *f, const char *key) {
  size_t c = 0;
  for (size_t i = 0; i < f->n; i++)
    c += strcmp(f->rec[i], key) == 0;
  return c;
}

/* Index of the nth (0-based) processing of key, or SIZE_MAX. */
static size_t find_nth(const fx_t *f, const char *key, size_t nth) {
  for (size_t i = 0; i < f->n; i++)
    if (strcmp(f->rec[i], key) == 0 && nth-- == 0)
      return i;
  return SIZE_MAX;
}

static uint64_t elapsed(fx_t *f) { return uv_now(&f->loop) - f->t0; }

static void busy_remove(fx_t *f, const char *key) {
  for (size_t i = 0; i < f->nbusy; i++) {
    if (strcmp(f->busy[i], key) == 0) {
      memmove(f->busy[i], f->busy[f->nbusy - 1], KEY_LEN);
      f->nbusy--;
      return;
    }
  }
}

/* Ends processing of key now. The borrowed key may die inside co_wq_done: use it first. */
static void fx_done(fx_t *f, const char *key) {
  busy_remove(f, key);
  co_wq_done(&f->wq, key);
}

typedef struct {
  uv_timer_t timer;
  fx_t *f;
  char key[KEY_LEN];
} later_t;

static void later_closed(uv_handle_t *h) { co_free(h->data); }

static void later_fire(uv_timer_t *t) {
  later_t *l = t->data;
  fx_done(l->f, l->key);
  uv_close((uv_handle_t *)t, later_closed);
}

/* Ends processing of key after ms, as an asynchronous reconcile would. */
static void fx_done_after(fx_t *f, const char *key, uint64_t ms) {
  later_t *l = co_calloc(1, sizeof(*l));
  l->f = f;
  snprintf(l->key, sizeof(l->key), "%s", key);
  uv_timer_init(&f->loop, &l->timer);
  l->timer.data = l;
  uv_timer_start(&l->timer, later_fire, ms, 0);
}

static void process(co_wq_t *wq, const char *key) {
  fx_t *f = wq->data;
  f->depth++;
  if (f->depth > f->max_depth)
    f->max_depth = f->depth;
  if (wq->processing > f->max_processing)
    f->max_processing = wq->processing;
  for (size_t i = 0; i < f->nbusy; i++)
    f->overlap += strcmp(f->busy[i], key) == 0;
  size_t nth = count(f, key);
  if (f->n < MAX_REC && f->nbusy < MAX_REC) {
    snprintf(f->busy[f->nbusy++], KEY_LEN, "%s", key);
    snprintf(f->rec[f->n], KEY_LEN, "%s", key);
    f->at[f->n++] = elapsed(f);
  }
  if (f->on_process != NULL)
    f->on_process(f, key, nth);
  else
    fx_done(f, key);
  f->depth--;
}

static void fx_init(fx_t *f, const co_wq_opts_t *opts) {
  memset(f, 0, sizeof(*f));
  CO_CHECK_INT(uv_loop_init(&f->loop), ==, 0);
  f->wq.data = f; /* set before init: init must leave the user's slot alone */
  CO_CHECK_INT(co_wq_init(&f->loop, &f->wq, opts, process), ==, 0);
  CO_CHECK(f->wq.data == f);
  uv_update_time(&f->loop);
  f->t0 = uv_now(&f->loop);
}

static void on_closed(co_wq_t *wq) {
  fx_t *f = wq->data;
  f->closed++;
}

/* Closes the queue, runs the loop dry and checks that nothing is left open. */
static void fx_finish(fx_t *f) {
  co_wq_close(&f->wq, on_closed);
  CO_CHECK_INT(f->closed, ==, 0); /* the close callback is never synchronous */
  uv_run(&f->loop, UV_RUN_DEFAULT);
  CO_CHECK_INT(f->closed, ==, 1);
  CO_CHECK_INT(f->overlap, ==, 0);
  CO_CHECK_INT(f->max_depth, <=, 1);
  CO_CHECK_INT(uv_loop_close(&f->loop), ==, 0);
}

static co_wq_opts_t opts_with(unsigned workers) {
  co_wq_opts_t o;
  co_wq_opts_default(&o);
  o.workers = workers;
  return o;
}

/* ---- tests ---- */

static void test_defaults_and_init_errors(void) {
  co_wq_opts_t o;
  co_wq_opts_default(&o);
  CO_CHECK_INT(o.workers, ==, 4);
  CO_CHECK_INT(o.base_delay_ms, ==, 5);
  CO_CHECK_INT(o.max_delay_ms, ==, 1000000);
  CO_CHECK(o.qps == 10);
  CO_CHECK_INT(o.burst, ==, 100);

  uv_loop_t loop;
  co_wq_t wq;
  CO_CHECK_INT(uv_loop_init(&loop), ==, 0);
  o.workers = 0;
  CO_CHECK_INT(co_wq_init(&loop, &wq, &o, process), ==, CO_EINVAL);
  CO_CHECK_INT(co_wq_init(&loop, &wq, NULL, NULL), ==, CO_EINVAL);
  /* A failed init leaves nothing to close. */
  CO_CHECK_INT(uv_loop_close(&loop), ==, 0);
}

/* The same key added three times is processed once. */
static void test_dedup(void) {
  fx_t f;
  fx_init(&f, NULL);
  co_wq_add(&f.wq, "a");
  co_wq_add(&f.wq, "a");
  co_wq_add(&f.wq, "a");
  co_wq_add(&f.wq, "b");
  co_wq_add(&f.wq, "a");
  CO_CHECK_INT(f.wq.queued, ==, 2);
  CO_CHECK_INT(co_wq_len(&f.wq), ==, 2);
  CO_CHECK_INT(co_wq_start(&f.wq), ==, 0);
  CO_CHECK_INT(f.n, ==, 0); /* start dispatches from the loop, not synchronously */
  uv_run(&f.loop, UV_RUN_DEFAULT);
  CO_CHECK_INT(count(&f, "a"), ==, 1);
  CO_CHECK_INT(count(&f, "b"), ==, 1);
  CO_CHECK_STR(f.rec[0], "a"); /* FIFO */
  CO_CHECK_INT(f.wq.adds, ==, 2);
  CO_CHECK_INT(co_wq_len(&f.wq), ==, 0);
  CO_CHECK_INT(f.wq.queued, ==, 0);
  CO_CHECK_INT(f.wq.nitems, ==, 0); /* finished keys are freed at once, not at close */
  fx_finish(&f);
}

/* First processing of "a" takes 30 ms; "a" is added twice meanwhile. It must not be handed
 * out again before done, and must be processed exactly once more after. */
static void concurrent_on_process(fx_t *f, const char *key, size_t nth) {
  if (nth == 0)
    fx_done_after(f, key, 30);
  else
    fx_done(f, key);
}

static void concurrent_add(uv_timer_t *t) {
  fx_t *f = t->data;
  co_wq_add(&f->wq, "a");
  co_wq_add(&f->wq, "a");
  uv_close((uv_handle_t *)t, NULL);
}

static void test_no_concurrent_processing_of_a_key(void) {
  co_wq_opts_t o = opts_with(4);
  fx_t f;
  uv_timer_t t;
  fx_init(&f, &o);
  f.on_process = concurrent_on_process;
  co_wq_add(&f.wq, "a");
  co_wq_start(&f.wq);
  uv_timer_init(&f.loop, &t);
  t.data = &f;
  uv_timer_start(&t, concurrent_add, 10, 0);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  CO_CHECK_INT(f.overlap, ==, 0);
  CO_CHECK_INT(count(&f, "a"), ==, 2);
  CO_CHECK_INT(f.n, ==, 2);
  CO_CHECK_INT(f.at[1], >=, 30); /* only after the first run ended */
  fx_finish(&f);
}

/* co_wq_done on a processing key that was added meanwhile queues it again: checked on the
 * counters right at the call, before the loop dispatches anything. */
static void dirty_on_process(fx_t *f, const char *key, size_t nth) {
  if (strcmp(key, "a") != 0 || nth != 0)
    fx_done(f, key); /* the first run of a is finished by dirty_step */
}

static void dirty_step(uv_timer_t *t) {
  fx_t *f = t->data;
  co_wq_t *wq = &f->wq;
  CO_CHECK_INT(wq->processing, ==, 1);
  co_wq_add(wq, "a");
  CO_CHECK_INT(wq->queued, ==, 0); /* dirty, not queued: it is still processing */
  CO_CHECK_INT(wq->processing, ==, 1);
  CO_CHECK_INT(co_wq_len(wq), ==, 1);
  /* done for keys that are not processing is ignored and must not disturb the counters */
  co_wq_done(wq, "unknown");
  co_wq_add(wq, "b");
  co_wq_done(wq, "b"); /* queued, not processing */
  CO_CHECK_INT(wq->processing, ==, 1);
  CO_CHECK_INT(wq->queued, ==, 1);
  fx_done(f, "a");
  CO_CHECK_INT(wq->processing, ==, 0);
  CO_CHECK_INT(wq->queued, ==, 2);
  CO_CHECK_INT(co_wq_len(wq), ==, 2);
  CO_CHECK_INT(f->n, ==, 1); /* done does not dispatch synchronously either */
  uv_close((uv_handle_t *)t, NULL);
}

static void test_done_requeues_dirty_key(void) {
  co_wq_opts_t o = opts_with(1);
  fx_t f;
  uv_timer_t t;
  fx_init(&f, &o);
  f.on_process = dirty_on_process;
  co_wq_add(&f.wq, "a");
  co_wq_start(&f.wq);
  uv_timer_init(&f.loop, &t);
  t.data = &f;
  uv_timer_start(&t, dirty_step, 5, 0);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  CO_CHECK_INT(count(&f, "a"), ==, 2);
  CO_CHECK_INT(count(&f, "b"), ==, 1);
  CO_CHECK_INT(f.wq.processing, ==, 0);
  CO_CHECK_INT(co_wq_len(&f.wq), ==, 0);
  fx_finish(&f);
}

/* With 2 workers and 5 slow keys, exactly 2 are processing at a time. */
static void slow_on_process(fx_t *f, const char *key, size_t nth) { fx_done_after(f, key, 10); }

static void test_worker_limit(void) {
  co_wq_opts_t o = opts_with(2);
  fx_t f;
  fx_init(&f, &o);
  f.on_process = slow_on_process;
  static const char *const keys[] = {"k0", "k1", "k2", "k3", "k4"};
  for (size_t i = 0; i < 5; i++)
    co_wq_add(&f.wq, keys[i]);
  co_wq_start(&f.wq);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  CO_CHECK_INT(f.max_processing, ==, 2);
  CO_CHECK_INT(f.n, ==, 5);
  for (size_t i = 0; i < 5; i++) {
    CO_CHECK_INT(count(&f, keys[i]), ==, 1);
    CO_CHECK_STR(f.rec[i], keys[i]); /* FIFO */
  }
  /* k2 waited for a free worker: at least one 10 ms run before it. */
  CO_CHECK_INT(f.at[2], >=, 10);
  CO_CHECK_INT(f.at[4], >=, 20);
  fx_finish(&f);
}

/* Keys come out in order of ready time; an earlier time for a delayed key wins; a delayed
 * key that is also added now is processed now and again when its time comes. */
static void test_add_after_order(void) {
  co_wq_opts_t o = opts_with(1);
  fx_t f;
  fx_init(&f, &o);
  co_wq_add_after(&f.wq, "c", 60);
  co_wq_add_after(&f.wq, "a", 20);
  co_wq_add_after(&f.wq, "x", 300);
  co_wq_add_after(&f.wq, "b", 40);
  co_wq_add_after(&f.wq, "y", 10);
  co_wq_add_after(&f.wq, "d", 0);   /* 0: added now */
  co_wq_add_after(&f.wq, "x", 30);  /* earlier: wins */
  co_wq_add_after(&f.wq, "y", 300); /* later: ignored */
  co_wq_add_after(&f.wq, "k", 50);
  co_wq_add(&f.wq, "k");
  CO_CHECK_INT(f.wq.delayed, ==, 6);
  CO_CHECK_INT(f.wq.queued, ==, 2);
  CO_CHECK_INT(co_wq_len(&f.wq), ==, 7);
  co_wq_start(&f.wq);
  uv_run(&f.loop, UV_RUN_DEFAULT);

  static const char *const want[] = {"d", "k", "y", "a", "x", "b", "k", "c"};
  static const uint64_t min_at[] = {0, 0, 10, 20, 30, 40, 50, 60};
  CO_CHECK_INT(f.n, ==, 8);
  for (size_t i = 0; i < 8 && i < f.n; i++) {
    CO_CHECK_STR(f.rec[i], want[i]);
    CO_CHECK_INT(f.at[i], >=, min_at[i]);
  }
  /* x came at 30, not 300 (uv_run would also have lasted 300 ms). */
  size_t ix = find_nth(&f, "x", 0);
  CO_CHECK(ix != SIZE_MAX && f.at[ix] < 250);
  CO_CHECK_INT(elapsed(&f), <, 250);
  /* Each delay fired at its own time: the timer was re-armed for earlier keys (all keys
   * being handed out together at 60 ms would keep the order and lower bounds). */
  size_t iy = find_nth(&f, "y", 0), ic = find_nth(&f, "c", 0);
  CO_CHECK(iy != SIZE_MAX && ic != SIZE_MAX && f.at[iy] < f.at[ic]);
  CO_CHECK_INT(f.wq.nitems, ==, 0);
  CO_CHECK_INT(f.wq.delayed, ==, 0);
  fx_finish(&f);
}

/* "k<n>" -> n, or SIZE_MAX. */
static size_t key_index(const char *key) {
  size_t n = 0;
  if (key[0] != 'k' || key[1] == '\0')
    return SIZE_MAX;
  for (const char *p = key + 1; *p != '\0'; p++) {
    if (*p < '0' || *p > '9' || n > 100000)
      return SIZE_MAX;
    n = n * 10 + (size_t)(*p - '0');
  }
  return n;
}

/* Many delays in random order: the heap hands them out sorted by (time, insertion). Enough
 * keys to grow the heap array several times and to release it when drained. */
#define NHEAP 2000

static void test_add_after_heap_order(void) {
  co_wq_opts_t o = opts_with(1);
  fx_t f;
  char key[KEY_LEN];
  uint64_t delay[NHEAP];
  uint64_t rng = 88172645463325252u;
  fx_init(&f, &o);
  for (size_t i = 0; i < NHEAP; i++) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    delay[i] = 1 + rng % 40;
    snprintf(key, sizeof(key), "k%zu", i);
    co_wq_add_after(&f.wq, key, delay[i]);
  }
  CO_CHECK_INT(f.wq.delayed, ==, NHEAP);
  co_wq_start(&f.wq);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  CO_CHECK_INT(f.n, ==, NHEAP);
  size_t prev = SIZE_MAX;
  for (size_t i = 0; i < f.n; i++) {
    size_t k = key_index(f.rec[i]);
    CO_CHECK(k < NHEAP);
    if (k >= NHEAP)
      continue;
    CO_CHECK_INT(f.at[i], >=, delay[k]);
    if (prev != SIZE_MAX) {
      int sorted = delay[prev] < delay[k] || (delay[prev] == delay[k] && prev < k);
      if (!sorted)
        fprintf(stderr, "# out of order: k%zu (%llu) before k%zu (%llu)\n", prev,
                (unsigned long long)delay[prev], k, (unsigned long long)delay[k]);
      CO_CHECK(sorted);
    }
    prev = k;
  }
  fx_finish(&f);
}

/* Per-key backoff doubles with each failure, per key, and co_wq_forget resets it. The global
 * bucket is unlimited here so only the per-key limiter acts. */
#define BASE 50

static void backoff_on_process(fx_t *f, const char *key, size_t nth) {
  co_wq_t *wq = &f->wq;
  if (strcmp(key, "a") != 0) {
    fx_done(f, key);
    return;
  }
  CO_CHECK_INT(co_wq_num_requeues(wq, key), ==, nth < 5 ? nth : 1);
  if (nth < 4) {
    co_wq_add_rate_limited(wq, key); /* fails again */
  } else if (nth == 4) {
    co_wq_add_rate_limited(wq, "b"); /* another key starts at the base delay */
    CO_CHECK_INT(co_wq_num_requeues(wq, "b"), ==, 1);
    CO_CHECK_INT(co_wq_num_requeues(wq, "a"), ==, 4);
    co_wq_forget(wq, key);
    CO_CHECK_INT(co_wq_num_requeues(wq, key), ==, 0);
    co_wq_add_rate_limited(wq, key); /* first failure again: base delay */
  } else {
    co_wq_forget(wq, key); /* success */
  }
  fx_done(f, key);
}

static void test_rate_limited_backoff_per_key(void) {
  co_wq_opts_t o = opts_with(4);
  o.base_delay_ms = BASE;
  o.qps = 0;
  fx_t f;
  fx_init(&f, &o);
  f.on_process = backoff_on_process;
  co_wq_add(&f.wq, "a");
  co_wq_start(&f.wq);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  CO_CHECK_INT(count(&f, "a"), ==, 6);
  CO_CHECK_INT(count(&f, "b"), ==, 1);
  /* Gap between processings i and i+1 of "a": base * 2^i for the 4 growing failures. */
  for (size_t i = 0; i + 1 < 5; i++) {
    size_t p = find_nth(&f, "a", i), q = find_nth(&f, "a", i + 1);
    if (p == SIZE_MAX || q == SIZE_MAX)
      continue;
    uint64_t gap = f.at[q] - f.at[p];
    CO_CHECK_INT(gap, >=, (uint64_t)BASE << i);
    CO_CHECK_INT(gap, <, (uint64_t)BASE << (i + 1)); /* not one step further */
  }
  /* After forget: base again, where the 5th failure would have waited 16 * base. */
  size_t p4 = find_nth(&f, "a", 4), p5 = find_nth(&f, "a", 5), pb = find_nth(&f, "b", 0);
  if (p4 != SIZE_MAX && p5 != SIZE_MAX && pb != SIZE_MAX) {
    CO_CHECK_INT(f.at[p5] - f.at[p4], >=, BASE);
    CO_CHECK_INT(f.at[p5] - f.at[p4], <, 8 * BASE);
    CO_CHECK_INT(f.at[pb] - f.at[p4], >=, BASE);
    CO_CHECK_INT(f.at[pb] - f.at[p4], <, 8 * BASE);
  }
  CO_CHECK_INT(co_wq_num_requeues(&f.wq, "a"), ==, 0);
  CO_CHECK_INT(co_wq_num_requeues(&f.wq, "b"), ==, 1); /* never forgotten */
  CO_CHECK_INT(co_wq_len(&f.wq), ==, 0);               /* failure counts are not keys */
  CO_CHECK_INT(f.wq.nitems, ==, 1);                    /* but b's record is kept until forget */
  fx_finish(&f);                                       /* frees b's failure record */
}

/* The delay is the max of per-key backoff and the global bucket: 10 qps with burst 1 spaces
 * first failures of distinct keys by 100 ms; a long per-key base wins over a free bucket. */
static void test_rate_limited_max_of_bucket(void) {
  co_wq_opts_t o = opts_with(4);
  o.base_delay_ms = 1;
  o.qps = 10;
  o.burst = 1;
  fx_t f;
  fx_init(&f, &o);
  co_wq_add_rate_limited(&f.wq, "a");
  co_wq_add_rate_limited(&f.wq, "b");
  co_wq_add_rate_limited(&f.wq, "c");
  CO_CHECK_INT(f.wq.delayed, ==, 3);
  co_wq_start(&f.wq);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  CO_CHECK_INT(f.n, ==, 3);
  static const char *const want[] = {"a", "b", "c"};
  static const uint64_t min_at[] = {1, 100, 200};
  for (size_t i = 0; i < 3 && i < f.n; i++) {
    CO_CHECK_STR(f.rec[i], want[i]);
    CO_CHECK_INT(f.at[i], >=, min_at[i]);
  }
  CO_CHECK_INT(f.at[0], <, 100); /* a got the burst token */
  fx_finish(&f);

  o.base_delay_ms = 150;
  o.qps = 1000;
  o.burst = 100;
  fx_init(&f, &o);
  co_wq_add_rate_limited(&f.wq, "slow");
  co_wq_start(&f.wq);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  CO_CHECK_INT(f.n, ==, 1);
  CO_CHECK_INT(f.at[0], >=, 150);
  fx_finish(&f);
}

/* Keys added from inside process_cb are processed later, never re-entrantly. */
static void adder_on_process(fx_t *f, const char *key, size_t nth) {
  if (strcmp(key, "a") == 0 && nth == 0) {
    co_wq_add(&f->wq, "b");
    co_wq_add(&f->wq, "c");
    co_wq_add(&f->wq, "a"); /* itself: dirty, requeued by done */
    co_wq_add_after(&f->wq, "d", 5);
    CO_CHECK_INT(f->n, ==, 1); /* none of the adds dispatched */
  }
  fx_done(f, key);
}

static void test_add_from_process_cb(void) {
  fx_t f;
  fx_init(&f, NULL);
  f.on_process = adder_on_process;
  co_wq_start(&f.wq);
  co_wq_add(&f.wq, "a");
  CO_CHECK_INT(f.n, ==, 0); /* not from inside co_wq_add */
  uv_run(&f.loop, UV_RUN_DEFAULT);
  CO_CHECK_INT(f.max_depth, ==, 1);
  static const char *const want[] = {"a", "b", "c", "a", "d"};
  CO_CHECK_INT(f.n, ==, 5);
  for (size_t i = 0; i < 5 && i < f.n; i++)
    CO_CHECK_STR(f.rec[i], want[i]);
  fx_finish(&f);
}

/* stop keeps keys queued; start resumes. */
static void stop_on_process(fx_t *f, const char *key, size_t nth) {
  co_wq_stop(&f->wq); /* from inside the callback: no further key in this pass */
  fx_done(f, key);
}

static void test_stop_start(void) {
  fx_t f;
  fx_init(&f, NULL);
  f.on_process = stop_on_process;
  co_wq_add(&f.wq, "a");
  co_wq_add(&f.wq, "b");
  co_wq_start(&f.wq);
  uv_run(&f.loop, UV_RUN_DEFAULT); /* returns: a stopped queue keeps no handle active */
  CO_CHECK_INT(f.n, ==, 1);
  CO_CHECK_INT(f.wq.queued, ==, 1);
  f.on_process = NULL;
  co_wq_start(&f.wq);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  CO_CHECK_INT(f.n, ==, 2);
  CO_CHECK_STR(f.rec[1], "b");
  fx_finish(&f);
}

/* Closing frees every key in every state; the queue itself is heap memory released in the
 * close callback, so any later use of it by the queue is an ASan error. */
typedef struct {
  int closed;
  int processed_q;
} close_ctx_t;

static void close_process(co_wq_t *wq, const char *key) {
  close_ctx_t *c = wq->data;
  c->processed_q += strcmp(key, "q") == 0;
  /* "p" is not done before close: a reconcile still running. */
}

static void close_cb_free(co_wq_t *wq) {
  close_ctx_t *c = wq->data;
  c->closed++;
  CO_CHECK_INT(wq->queued + wq->processing + wq->delayed, ==, 0);
  CO_CHECK_INT(co_wq_len(wq), ==, 0);
  co_free(wq);
}

static void test_close_frees_everything(void) {
  uv_loop_t loop;
  close_ctx_t c = {0};
  co_wq_opts_t o = opts_with(1);
  o.base_delay_ms = 1000;
  co_wq_t *wq = co_malloc(sizeof(*wq));
  CO_CHECK_INT(uv_loop_init(&loop), ==, 0);
  CO_CHECK_INT(co_wq_init(&loop, wq, &o, close_process), ==, 0);
  wq->data = &c;
  co_wq_add(wq, "p");
  co_wq_add(wq, "q");
  co_wq_add_after(wq, "d", 10000);
  co_wq_add_rate_limited(wq, "r");
  co_wq_add_rate_limited(wq, "r"); /* failure count 2, still one delay entry */
  co_wq_forget(wq, "r");
  co_wq_add_rate_limited(wq, "r");
  co_wq_start(wq);
  uv_run(&loop, UV_RUN_NOWAIT); /* one pass: p is handed out */

  CO_CHECK_INT(wq->processing, ==, 1); /* p */
  CO_CHECK_INT(wq->queued, ==, 1);     /* q: the one worker is busy */
  CO_CHECK_INT(wq->delayed, ==, 2);    /* d, r */
  CO_CHECK_INT(co_wq_len(wq), ==, 4);
  CO_CHECK_INT(co_wq_num_requeues(wq, "r"), ==, 1);
  co_wq_close(wq, close_cb_free);
  co_wq_close(wq, close_cb_free); /* idempotent */
  CO_CHECK_INT(co_wq_start(wq), ==, CO_EINVAL);
  co_wq_add(wq, "late");          /* ignored */
  co_wq_add_after(wq, "late", 5); /* ignored */
  co_wq_add_rate_limited(wq, "late");
  CO_CHECK_INT(co_wq_len(wq), ==, 4);
  co_wq_done(wq, "p"); /* still accepted until the close callback */
  CO_CHECK_INT(c.closed, ==, 0);

  uv_update_time(&loop);
  uint64_t start = uv_now(&loop);
  uv_run(&loop, UV_RUN_DEFAULT);
  CO_CHECK_INT(c.closed, ==, 1);
  CO_CHECK_INT(c.processed_q, ==, 0);
  /* The delays did not keep the loop alive: the timer was closed. */
  CO_CHECK_INT(uv_now(&loop) - start, <, 900);
  CO_CHECK_INT(uv_loop_close(&loop), ==, 0);
}

/* co_wq_close from inside process_cb (inside the dispatcher's own idle callback). */
static void close_inside_on_process(fx_t *f, const char *key, size_t nth) {
  co_wq_close(&f->wq, on_closed);
  fx_done(f, key);
}

static void test_close_inside_process_cb(void) {
  fx_t f;
  fx_init(&f, NULL);
  f.on_process = close_inside_on_process;
  co_wq_add(&f.wq, "a");
  co_wq_add(&f.wq, "b");
  co_wq_add(&f.wq, "c");
  co_wq_start(&f.wq);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  CO_CHECK_INT(f.n, ==, 1); /* nothing dispatched after close */
  CO_CHECK_INT(f.closed, ==, 1);
  CO_CHECK_INT(uv_loop_close(&f.loop), ==, 0);
}

/* on_done sees each processing once, with its duration and whether it asked for a retry. */
typedef struct {
  char key[KEY_LEN];
  uint64_t ns;
  int failed;
} done_rec_t;

static done_rec_t done_recs[8];
static size_t ndone;

static void observe_done(co_wq_t *wq, const char *key, uint64_t ns, int failed) {
  if (ndone < 8) {
    snprintf(done_recs[ndone].key, KEY_LEN, "%s", key);
    done_recs[ndone].ns = ns;
    done_recs[ndone].failed = failed;
    ndone++;
  }
}

static void observed_on_process(fx_t *f, const char *key, size_t nth) {
  if (strcmp(key, "slow") == 0) {
    fx_done_after(f, key, 30);
  } else if (nth == 0) {
    co_wq_add_rate_limited(&f->wq, key); /* fails once */
    fx_done(f, key);
  } else {
    co_wq_forget(&f->wq, key);
    fx_done(f, key);
  }
}

static void test_done_observer(void) {
  co_wq_opts_t o = opts_with(4);
  o.base_delay_ms = 1;
  fx_t f;
  fx_init(&f, &o);
  ndone = 0;
  f.wq.on_done = observe_done;
  f.on_process = observed_on_process;
  co_wq_add(&f.wq, "slow");
  co_wq_add(&f.wq, "flaky");
  co_wq_start(&f.wq);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  co_wq_done(&f.wq, "flaky"); /* not processing: not observed */
  CO_CHECK_INT(ndone, ==, 3);
  int flaky_failed = -1, flaky_ok = -1;
  for (size_t i = 0; i < ndone; i++) {
    if (strcmp(done_recs[i].key, "slow") == 0) {
      CO_CHECK_INT(done_recs[i].failed, ==, 0);
      CO_CHECK_INT(done_recs[i].ns, >=, 25 * 1000000ull);
    } else if (flaky_failed < 0) {
      flaky_failed = done_recs[i].failed;
    } else {
      flaky_ok = done_recs[i].failed;
    }
  }
  CO_CHECK_INT(flaky_failed, ==, 1);
  CO_CHECK_INT(flaky_ok, ==, 0);
  fx_finish(&f);
}

CO_TEST_MAIN(CO_TEST(test_defaults_and_init_errors), CO_TEST(test_dedup),
             CO_TEST(test_no_concurrent_processing_of_a_key), CO_TEST(test_done_requeues_dirty_key),
             CO_TEST(test_worker_limit), CO_TEST(test_add_after_order),
             CO_TEST(test_add_after_heap_order), CO_TEST(test_rate_limited_backoff_per_key),
             CO_TEST(test_rate_limited_max_of_bucket), CO_TEST(test_add_from_process_cb),
             CO_TEST(test_stop_start), CO_TEST(test_close_frees_everything),
             CO_TEST(test_close_inside_process_cb), CO_TEST(test_done_observer))
