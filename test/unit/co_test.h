/* Minimal unit test harness: each test file is one executable registered with ctest.
 *
 *   static void test_x(void) { CO_CHECK_INT(1 + 1, ==, 2); }
 *   CO_TEST_MAIN(CO_TEST(test_x))
 *
 * A failed check prints both operands and marks the test failed; the test continues so one
 * run shows every broken check. Output is TAP; the exit code is the number of failed tests. */
#ifndef CO_TEST_H
#define CO_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int co__test_failed;

#define CO_CHECK(cond)                                                           \
  do {                                                                           \
    if (!(cond)) {                                                               \
      fprintf(stderr, "# %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      co__test_failed = 1;                                                       \
    }                                                                            \
  } while (0)

#define CO_CHECK_INT(a, op, b)                                                                    \
  do {                                                                                            \
    long long co__a = (long long)(a), co__b = (long long)(b);                                     \
    if (!(co__a op co__b)) {                                                                      \
      fprintf(stderr, "# %s:%d: check failed: %s %s %s (%lld vs %lld)\n", __FILE__, __LINE__, #a, \
              #op, #b, co__a, co__b);                                                             \
      co__test_failed = 1;                                                                        \
    }                                                                                             \
  } while (0)

#define CO_CHECK_STR(a, b)                                                                        \
  do {                                                                                            \
    const char *co__a = (a), *co__b = (b);                                                        \
    if (co__a == NULL || co__b == NULL ? co__a != co__b : strcmp(co__a, co__b) != 0) {            \
      fprintf(stderr, "# %s:%d: check failed: %s == %s (\"%s\" vs \"%s\")\n", __FILE__, __LINE__, \
              #a, #b, co__a ? co__a : "(null)", co__b ? co__b : "(null)");                        \
      co__test_failed = 1;                                                                        \
    }                                                                                             \
  } while (0)

/* Checks that haystack contains needle. */
#define CO_CHECK_CONTAINS(hay, needle)                                                       \
  do {                                                                                       \
    const char *co__h = (hay), *co__n = (needle);                                            \
    if (co__h == NULL || strstr(co__h, co__n) == NULL) {                                     \
      fprintf(stderr, "# %s:%d: check failed: \"%s\" contains \"%s\"\n", __FILE__, __LINE__, \
              co__h ? co__h : "(null)", co__n);                                              \
      co__test_failed = 1;                                                                   \
    }                                                                                        \
  } while (0)

typedef struct {
  const char *name;
  void (*fn)(void);
} co__test_t;

#define CO_TEST(fn) \
  { #fn, fn }

#define CO_TEST_MAIN(...)                                                               \
  int main(int argc, char **argv) {                                                     \
    static const co__test_t tests[] = {__VA_ARGS__};                                    \
    size_t n = sizeof(tests) / sizeof(tests[0]);                                        \
    int failed = 0;                                                                     \
    printf("1..%zu\n", n);                                                              \
    for (size_t i = 0; i < n; i++) {                                                    \
      if (argc > 1 && strcmp(argv[1], tests[i].name) != 0)                              \
        continue;                                                                       \
      co__test_failed = 0;                                                              \
      tests[i].fn();                                                                    \
      printf("%s %zu - %s\n", co__test_failed ? "not ok" : "ok", i + 1, tests[i].name); \
      failed += co__test_failed;                                                        \
    }                                                                                   \
    fflush(stdout);                                                                     \
    return failed;                                                                      \
  }

#endif
