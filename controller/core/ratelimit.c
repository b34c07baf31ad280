/* Token bucket with reservations, after golang.org/x/time/rate. See co/ratelimit.h. */
#include "co/ratelimit.h"

#include <math.h>
#include <stdint.h>

void co_ratelimit_init(co_ratelimit_t *r, double qps, int burst, uint64_t now_ms) {
  r->qps = qps;
  r->burst = burst < 1 ? 1.0 : (double)burst;
  r->tokens = r->burst;
  r->last_ms = now_ms;
}

static int unlimited(const co_ratelimit_t *r) { return !(r->qps > 0); /* also NaN */ }

/* Refills the tokens earned since last_ms. A clock that goes backwards earns nothing and
 * keeps last_ms, so no token is ever granted twice. */
static void advance(co_ratelimit_t *r, uint64_t now_ms) {
  if (now_ms <= r->last_ms)
    return;
  double t = r->tokens + (double)(now_ms - r->last_ms) * r->qps / 1000.0;
  r->tokens = t < r->burst ? t : r->burst;
  r->last_ms = now_ms;
}

uint64_t co_ratelimit_reserve(co_ratelimit_t *r, uint64_t now_ms) {
  if (unlimited(r))
    return 0;
  advance(r, now_ms);
  r->tokens -= 1.0;
  if (r->tokens >= 0)
    return 0;
  /* Round up so the caller never acts before its token exists; the small epsilon keeps
   * exact results such as 1 token at 10 qps = 100 ms from becoming 101 through rounding. */
  double wait = ceil(-r->tokens * 1000.0 / r->qps - 1e-6);
  if (!(wait < 1.8e19)) /* a vanishing qps; also keeps the conversion defined */
    return UINT64_MAX;
  return wait > 0 ? (uint64_t)wait : 0;
}

int co_ratelimit_try(co_ratelimit_t *r, uint64_t now_ms) {
  if (unlimited(r))
    return 1;
  advance(r, now_ms);
  /* The epsilon forgives float error in the refill (0.998 + 0.002 may fall just short). */
  if (r->tokens < 1.0 - 1e-9)
    return 0;
  r->tokens -= 1.0;
  return 1;
}
