/* Token bucket: burst, then one token per 1/qps; reservations queue; unlimited. */
#include "co/ratelimit.h"

#include <stdint.h>

#include "co_test.h"

/* A full bucket serves `burst` at once; the next reservations are spaced by 1/qps. */
static void test_burst_then_spacing(void) {
  static const uint64_t want[] = {0, 0, 0, 100, 200, 300, 400};
  co_ratelimit_t r;
  co_ratelimit_init(&r, 10, 3, 5000);
  for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
    CO_CHECK_INT(co_ratelimit_reserve(&r, 5000), ==, want[i]);
}

/* Reservations queue: after going negative, waiting refills only what time earned, so a
 * later call waits behind the earlier ones. */
static void test_negative_reservations_queue(void) {
  co_ratelimit_t r;
  co_ratelimit_init(&r, 10, 1, 0);
  CO_CHECK_INT(co_ratelimit_reserve(&r, 0), ==, 0);
  CO_CHECK_INT(co_ratelimit_reserve(&r, 0), ==, 100); /* tokens -1 */
  CO_CHECK_INT(co_ratelimit_reserve(&r, 0), ==, 200); /* tokens -2 */
  /* 150 ms later 1.5 tokens came back: -0.5; one more reservation: -1.5 -> 150 ms. */
  CO_CHECK_INT(co_ratelimit_reserve(&r, 150), ==, 150);
  CO_CHECK_INT(co_ratelimit_try(&r, 150), ==, 0);
  /* Long idle refills only up to burst. */
  CO_CHECK_INT(co_ratelimit_reserve(&r, 100000), ==, 0);
  CO_CHECK_INT(co_ratelimit_reserve(&r, 100000), ==, 100);
}

/* try takes a token only when one is available and never goes negative. */
static void test_try(void) {
  co_ratelimit_t r;
  co_ratelimit_init(&r, 2, 2, 0);
  CO_CHECK_INT(co_ratelimit_try(&r, 0), ==, 1);
  CO_CHECK_INT(co_ratelimit_try(&r, 0), ==, 1);
  CO_CHECK_INT(co_ratelimit_try(&r, 0), ==, 0);
  CO_CHECK_INT(co_ratelimit_try(&r, 499), ==, 0);
  CO_CHECK_INT(co_ratelimit_try(&r, 500), ==, 1);
  CO_CHECK_INT(co_ratelimit_try(&r, 500), ==, 0);
  /* A failed try took nothing: the next reservation waits for exactly one token. */
  CO_CHECK_INT(co_ratelimit_reserve(&r, 500), ==, 500);
}

/* Non-integral periods round up: a caller never acts before its token exists. */
static void test_round_up(void) {
  co_ratelimit_t r;
  co_ratelimit_init(&r, 3, 1, 0);
  CO_CHECK_INT(co_ratelimit_reserve(&r, 0), ==, 0);
  CO_CHECK_INT(co_ratelimit_reserve(&r, 0), ==, 334);
  CO_CHECK_INT(co_ratelimit_reserve(&r, 0), ==, 667);
  CO_CHECK_INT(co_ratelimit_reserve(&r, 0), ==, 1000);
}

/* A clock going backwards grants nothing. */
static void test_clock_backwards(void) {
  co_ratelimit_t r;
  co_ratelimit_init(&r, 10, 1, 1000);
  CO_CHECK_INT(co_ratelimit_reserve(&r, 1000), ==, 0);
  CO_CHECK_INT(co_ratelimit_reserve(&r, 500), ==, 100);
  CO_CHECK_INT(co_ratelimit_reserve(&r, 1100), ==, 100);
}

/* qps <= 0 disables limiting. */
static void test_unlimited(void) {
  co_ratelimit_t r;
  co_ratelimit_init(&r, 0, 1, 0);
  for (int i = 0; i < 1000; i++) {
    CO_CHECK_INT(co_ratelimit_reserve(&r, 0), ==, 0);
    CO_CHECK_INT(co_ratelimit_try(&r, 0), ==, 1);
  }
  co_ratelimit_init(&r, -1, 0, 0);
  CO_CHECK_INT(co_ratelimit_reserve(&r, 0), ==, 0);
  CO_CHECK_INT(co_ratelimit_reserve(&r, 0), ==, 0);
}

/* burst below 1 behaves as 1. */
static void test_burst_floor(void) {
  co_ratelimit_t r;
  co_ratelimit_init(&r, 10, 0, 0);
  CO_CHECK_INT(co_ratelimit_reserve(&r, 0), ==, 0);
  CO_CHECK_INT(co_ratelimit_reserve(&r, 0), ==, 100);
}

CO_TEST_MAIN(CO_TEST(test_burst_then_spacing), CO_TEST(test_negative_reservations_queue),
             CO_TEST(test_try), CO_TEST(test_round_up), CO_TEST(test_clock_backwards),
             CO_TEST(test_unlimited), CO_TEST(test_burst_floor))
