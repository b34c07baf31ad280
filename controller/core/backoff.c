/* Exponential backoff with jitter (client-go reflector defaults). See co/backoff.h. */
#include "co/backoff.h"

#include <stdint.h>

#define DEFAULT_SEED UINT64_C(0x9E3779B97F4A7C15)

/* splitmix64: spreads a seed (often a small number or an address) over all 64 bits, so
 * nearby seeds do not give correlated xorshift streams. */
static uint64_t mix64(uint64_t x) {
  x += UINT64_C(0x9E3779B97F4A7C15);
  x = (x ^ (x >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  x = (x ^ (x >> 27)) * UINT64_C(0x94D049BB133111EB);
  return x ^ (x >> 31);
}

static void seed_rng(co_backoff_t *b, uint64_t seed) {
  b->rng = mix64(seed);
  if (b->rng == 0) /* xorshift never leaves the all-zero state */
    b->rng = DEFAULT_SEED;
}

/* Returns a uniform double in [0, 1) from the top 53 bits of xorshift64. */
static double next_unit(co_backoff_t *b) {
  uint64_t x = b->rng;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  b->rng = x;
  return (double)(x >> 11) * (1.0 / 9007199254740992.0);
}

static uint64_t add_sat(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

void co_backoff_init_with(co_backoff_t *b, uint64_t initial_ms, uint64_t max_ms, double factor,
                          double jitter, uint64_t reset_ms, uint64_t seed) {
  b->initial_ms = initial_ms;
  b->max_ms = max_ms;
  b->factor = factor;
  b->jitter = jitter;
  b->reset_ms = reset_ms;
  b->cur_ms = 0;
  b->last_end_ms = 0;
  seed_rng(b, seed ? seed : DEFAULT_SEED);
}

void co_backoff_init(co_backoff_t *b) {
  /* Seeded from the object's address rather than a constant: jitter exists to spread the
   * retries of many clients, and a fixed seed would give every replica (and every backoff
   * in one process) the same "random" sequence. ASLR makes the address differ per process. */
  co_backoff_init_with(b, 800, 30000, 2.0, 1.0, 120000, (uint64_t)(uintptr_t)b);
}

void co_backoff_reset(co_backoff_t *b) {
  b->cur_ms = 0;
  b->last_end_ms = 0;
}

uint64_t co_backoff_next(co_backoff_t *b, uint64_t now_ms) {
  /* Healthy for longer than reset_ms since the last delay ended: the failure is new. */
  if (b->cur_ms != 0 && now_ms > b->last_end_ms && now_ms - b->last_end_ms > b->reset_ms)
    b->cur_ms = 0;

  if (b->cur_ms == 0) {
    b->cur_ms = b->initial_ms < b->max_ms ? b->initial_ms : b->max_ms;
  } else {
    double next = (double)b->cur_ms * b->factor;
    /* Written so that NaN and huge products land on the cap; a factor below zero is nonsense
     * but must not reach an undefined float-to-integer conversion. */
    if (!(next < (double)b->max_ms))
      b->cur_ms = b->max_ms;
    else
      b->cur_ms = next > 0 ? (uint64_t)next : 0;
  }

  uint64_t delay = b->cur_ms;
  if (b->jitter > 0) {
    /* As client-go's wait.Jitter: the cap applies before jitter, so with jitter 1.0 a capped
     * 30 s step waits up to 60 s. */
    double extra = (double)delay * b->jitter * next_unit(b);
    delay = extra < 9.0e18 ? add_sat(delay, (uint64_t)extra) : UINT64_MAX;
  }
  b->last_end_ms = add_sat(now_ms, delay);
  return delay;
}
