/* Backoff: client-go reflector sequence, jitter bounds, reset after a healthy period. */
#include "co/backoff.h"

#include <stdint.h>

#include "co_test.h"

/* Without jitter the sequence is exact: doubling from 800 ms, capped at 30 s. */
static void test_sequence_no_jitter(void) {
  static const uint64_t want[] = {800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000};
  co_backoff_t b;
  co_backoff_init_with(&b, 800, 30000, 2.0, 0.0, 120000, 1);
  uint64_t now = 1000;
  for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
    uint64_t d = co_backoff_next(&b, now);
    CO_CHECK_INT(d, ==, want[i]);
    now += d; /* retry right when the delay ends: never healthy long enough to reset */
  }
}

/* co_backoff_init gives client-go's reflector parameters. */
static void test_defaults(void) {
  co_backoff_t b;
  co_backoff_init(&b);
  CO_CHECK_INT(b.initial_ms, ==, 800);
  CO_CHECK_INT(b.max_ms, ==, 30000);
  CO_CHECK(b.factor == 2.0);
  CO_CHECK(b.jitter == 1.0);
  CO_CHECK_INT(b.reset_ms, ==, 120000);
  uint64_t d = co_backoff_next(&b, 0);
  CO_CHECK_INT(d, >=, 800);
  CO_CHECK_INT(d, <, 1600);
}

/* With jitter 1.0 every delay lies in [step, 2 * step), and the jitter really varies. */
static void test_jitter_bounds(void) {
  static const uint64_t step[] = {800, 1600, 3200, 6400, 12800, 25600, 30000, 30000};
  uint64_t min_extra = UINT64_MAX, max_extra = 0;
  for (uint64_t seed = 1; seed <= 200; seed++) {
    co_backoff_t b;
    co_backoff_init_with(&b, 800, 30000, 2.0, 1.0, 120000, seed);
    uint64_t now = 0;
    for (size_t i = 0; i < sizeof(step) / sizeof(step[0]); i++) {
      uint64_t d = co_backoff_next(&b, now);
      CO_CHECK_INT(d, >=, step[i]);
      CO_CHECK_INT(d, <, 2 * step[i]);
      uint64_t extra = (d - step[i]) * 1000 / step[i]; /* per mille of the step */
      min_extra = extra < min_extra ? extra : min_extra;
      max_extra = extra > max_extra ? extra : max_extra;
      now += d;
    }
  }
  /* 1600 uniform draws: the spread must cover most of [0, 1). */
  CO_CHECK_INT(min_extra, <, 50);
  CO_CHECK_INT(max_extra, >, 950);
}

/* Same seed, same sequence; different seeds, different sequences. */
static void test_seed_determinism(void) {
  co_backoff_t a, b, c;
  co_backoff_init_with(&a, 800, 30000, 2.0, 1.0, 120000, 42);
  co_backoff_init_with(&b, 800, 30000, 2.0, 1.0, 120000, 42);
  co_backoff_init_with(&c, 800, 30000, 2.0, 1.0, 120000, 43);
  int differ = 0;
  for (int i = 0; i < 10; i++) {
    uint64_t x = co_backoff_next(&a, 0), y = co_backoff_next(&b, 0), z = co_backoff_next(&c, 0);
    CO_CHECK_INT(x, ==, y);
    differ += x != z;
  }
  CO_CHECK_INT(differ, >, 0);
}

/* Healthy for more than reset_ms after the last delay ended: start over at the initial
 * delay. Exactly reset_ms is not enough (strictly more is required). */
static void test_reset_after_healthy(void) {
  co_backoff_t b;
  co_backoff_init_with(&b, 800, 30000, 2.0, 0.0, 120000, 1);
  uint64_t now = 0;
  CO_CHECK_INT(co_backoff_next(&b, now), ==, 800); /* ends at 800 */
  now = 800;
  CO_CHECK_INT(co_backoff_next(&b, now), ==, 1600); /* ends at 2400 */
  now = 2400 + 120000;                              /* healthy exactly reset_ms */
  CO_CHECK_INT(co_backoff_next(&b, now), ==, 3200); /* ends at now + 3200 */
  now += 3200 + 120001;                             /* healthy just over reset_ms */
  CO_CHECK_INT(co_backoff_next(&b, now), ==, 800);
  CO_CHECK_INT(co_backoff_next(&b, now + 800), ==, 1600);
}

/* A retry before the delay ended (now < last_end) neither resets nor breaks. */
static void test_early_retry_keeps_growing(void) {
  co_backoff_t b;
  co_backoff_init_with(&b, 100, 1000, 2.0, 0.0, 500, 1);
  CO_CHECK_INT(co_backoff_next(&b, 10000), ==, 100);
  CO_CHECK_INT(co_backoff_next(&b, 0), ==, 200);
  CO_CHECK_INT(co_backoff_next(&b, 0), ==, 400);
}

static void test_explicit_reset(void) {
  co_backoff_t b;
  co_backoff_init_with(&b, 800, 30000, 2.0, 0.0, 120000, 1);
  for (int i = 0; i < 5; i++)
    co_backoff_next(&b, 0);
  co_backoff_reset(&b);
  CO_CHECK_INT(co_backoff_next(&b, 0), ==, 800);
  CO_CHECK_INT(co_backoff_next(&b, 0), ==, 1600);
}

/* Extreme parameters saturate at the cap instead of overflowing. */
static void test_overflow_caps(void) {
  co_backoff_t b;
  co_backoff_init_with(&b, UINT64_MAX / 2, UINT64_MAX, 4.0, 0.0, 1, 1);
  CO_CHECK_INT(co_backoff_next(&b, 0) == UINT64_MAX / 2, ==, 1);
  CO_CHECK_INT(co_backoff_next(&b, 0) == UINT64_MAX, ==, 1);
  co_backoff_init_with(&b, 10, 20, 2.0, 1.0, 1, 7);
  for (int i = 0; i < 5; i++) {
    uint64_t d = co_backoff_next(&b, 0);
    CO_CHECK_INT(d, <, 40);
  }
}

CO_TEST_MAIN(CO_TEST(test_sequence_no_jitter), CO_TEST(test_defaults), CO_TEST(test_jitter_bounds),
             CO_TEST(test_seed_determinism), CO_TEST(test_reset_after_healthy),
             CO_TEST(test_early_retry_keeps_growing), CO_TEST(test_explicit_reset),
             CO_TEST(test_overflow_caps))
