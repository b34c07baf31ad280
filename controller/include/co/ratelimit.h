/* Token bucket rate limiter (client-go's flowcontrol / workqueue BucketRateLimiter):
 * qps tokens per second, up to burst tokens stored. Pure: time is passed in. */
#ifndef CO_RATELIMIT_H
#define CO_RATELIMIT_H

#include <stdint.h>

typedef struct co_ratelimit_s {
  double qps;    /* <= 0 means unlimited */
  double burst;  /* bucket size, >= 1 */
  double tokens; /* may go negative: reserved future tokens */
  uint64_t last_ms;
} co_ratelimit_t;

/* Starts with a full bucket at time now_ms. qps <= 0 disables limiting. */
void co_ratelimit_init(co_ratelimit_t *r, double qps, int burst, uint64_t now_ms);
/* Takes one token and returns how long (ms) the caller must wait before acting on it; 0 =
 * now. Reservations queue up: successive calls return increasing delays. */
uint64_t co_ratelimit_reserve(co_ratelimit_t *r, uint64_t now_ms);
/* Returns 1 and takes a token if one is available now, else 0 (takes nothing). */
int co_ratelimit_try(co_ratelimit_t *r, uint64_t now_ms);

#endif
