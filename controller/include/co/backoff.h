/* Exponential backoff with jitter, after client-go's reflector backoff manager:
 * initial 800 ms, doubling, capped at 30 s, jitter factor 1.0 (delay * [1, 2)), reset to the
 * initial delay once the operation has been healthy for reset_ms. Pure: time is passed in. */
#ifndef CO_BACKOFF_H
#define CO_BACKOFF_H

#include <stdint.h>

typedef struct co_backoff_s {
  /* public, set by init; may be changed before the first use */
  uint64_t initial_ms;
  uint64_t max_ms;
  double factor;
  double jitter;     /* 0 = none; 1.0 = up to +100% */
  uint64_t reset_ms; /* healthy time after which the next delay starts over */
  /* private */
  uint64_t cur_ms;      /* un-jittered delay of the last step; 0 = none yet */
  uint64_t last_end_ms; /* time the last delay ends */
  uint64_t rng;         /* xorshift state */
} co_backoff_t;

/* Defaults of client-go's reflector: 800 ms, 30 s, factor 2, jitter 1.0, reset 2 min. */
void co_backoff_init(co_backoff_t *b);
/* Custom parameters; seed 0 picks a fixed default seed (tests pass one for determinism). */
void co_backoff_init_with(co_backoff_t *b, uint64_t initial_ms, uint64_t max_ms, double factor,
                          double jitter, uint64_t reset_ms, uint64_t seed);
/* Returns the delay (ms) to wait before the next attempt, given the current time now_ms.
 * If more than reset_ms passed since the last delay ended, the sequence starts over. */
uint64_t co_backoff_next(co_backoff_t *b, uint64_t now_ms);
/* Forgets the history: the next delay is the initial one. */
void co_backoff_reset(co_backoff_t *b);

#endif
