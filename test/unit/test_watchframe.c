/* Watch line framing fed at every split point of a recorded stream, and event decoding. */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "co/buf.h"
#include "co/error.h"
#include "co/watchframe.h"
#include "co_test.h"

typedef struct {
  co_buf_t out; /* lines joined with '|' */
  int lines;
} sink_t;

static int collect(void *ud, const char *line, size_t len) {
  sink_t *s = ud;
  co_buf_append(&s->out, line, len);
  co_buf_append(&s->out, "|", 1);
  s->lines++;
  return 0;
}

static char *read_file(const char *name, size_t *len) {
  char path[1024];
  snprintf(path, sizeof(path), "%s/watch/%s", CO_TEST_DATA, name);
  int fd = open(path, O_RDONLY);
  if (fd < 0)
    return NULL;
  co_buf_t b;
  co_buf_init(&b, 16 * 1024 * 1024);
  char tmp[4096];
  ssize_t n;
  while ((n = read(fd, tmp, sizeof(tmp))) > 0)
    co_buf_append(&b, tmp, (size_t)n);
  close(fd);
  *len = b.len;
  return co_buf_steal(&b);
}

static void feed_split(const char *data, size_t len, size_t cut, sink_t *s) {
  co_watchframe_t f;
  co_watchframe_init(&f, 1024 * 1024);
  co_buf_init(&s->out, 16 * 1024 * 1024);
  s->lines = 0;
  CO_CHECK_INT(co_watchframe_feed(&f, data, cut, collect, s), ==, 0);
  CO_CHECK_INT(co_watchframe_feed(&f, data + cut, len - cut, collect, s), ==, 0);
  CO_CHECK_INT(co_watchframe_pending(&f), ==, 0);
  co_watchframe_free(&f);
}

/* The recorded stream gives the same lines whatever the chunking. */
static void test_every_split_point(void) {
  size_t len;
  char *data = read_file("deployments.stream", &len);
  CO_CHECK(data != NULL);
  if (data == NULL)
    return;
  sink_t whole;
  feed_split(data, len, len, &whole);
  CO_CHECK_INT(whole.lines, >=, 5);
  for (size_t cut = 0; cut <= len; cut++) {
    sink_t s;
    feed_split(data, len, cut, &s);
    if (s.lines != whole.lines || s.out.len != whole.out.len ||
        memcmp(s.out.data, whole.out.data, s.out.len) != 0) {
      fprintf(stderr, "# split at %zu differs\n", cut);
      CO_CHECK(0);
      co_buf_free(&s.out);
      break;
    }
    co_buf_free(&s.out);
  }
  /* byte by byte */
  co_watchframe_t f;
  co_watchframe_init(&f, 1024 * 1024);
  sink_t s;
  co_buf_init(&s.out, 16 * 1024 * 1024);
  s.lines = 0;
  for (size_t i = 0; i < len; i++)
    CO_CHECK_INT(co_watchframe_feed(&f, data + i, 1, collect, &s), ==, 0);
  CO_CHECK_INT(s.lines, ==, whole.lines);
  CO_CHECK(s.out.len == whole.out.len && memcmp(s.out.data, whole.out.data, s.out.len) == 0);
  co_watchframe_free(&f);
  co_buf_free(&s.out);
  co_buf_free(&whole.out);
  free(data);
}

/* Every line of the recorded stream decodes to an event with an object. */
static void test_decode_recorded(void) {
  size_t len;
  char *data = read_file("deployments.stream", &len);
  if (data == NULL) {
    CO_CHECK(0);
    return;
  }
  int counts[6] = {0};
  char *p = data;
  while (p < data + len) {
    char *nl = memchr(p, '\n', (size_t)(data + len - p));
    size_t l = nl ? (size_t)(nl - p) : (size_t)(data + len - p);
    co_watch_event_t ev;
    CO_CHECK_INT(co_watch_event_parse(p, l, &ev), ==, 0);
    if (ev.root != NULL) {
      counts[ev.type]++;
      CO_CHECK(ev.object != NULL);
      if (ev.type != CO_WATCH_ERROR)
        CO_CHECK(ev.rv != NULL);
      co_watch_event_free(&ev);
    }
    p += l + 1;
  }
  CO_CHECK_INT(counts[CO_WATCH_ADDED], >=, 1);
  CO_CHECK_INT(counts[CO_WATCH_MODIFIED], >=, 1);
  CO_CHECK_INT(counts[CO_WATCH_DELETED], >=, 1);
  CO_CHECK_INT(counts[CO_WATCH_BOOKMARK], >=, 1);
  free(data);
}

static int stop_at_second(void *ud, const char *line, size_t len) {
  int *n = ud;
  (void)line;
  (void)len;
  return ++*n == 2 ? CO_EGONE : 0;
}

static void test_limits_and_errors(void) {
  co_watchframe_t f;
  co_watchframe_init(&f, 8);
  sink_t s;
  co_buf_init(&s.out, 1024);
  s.lines = 0;
  /* a line longer than the limit, whole in one chunk */
  CO_CHECK_INT(co_watchframe_feed(&f, "0123456789\n", 11, collect, &s), ==, CO_ETOOBIG);
  co_watchframe_reset(&f);
  /* a line that grows past the limit across chunks */
  CO_CHECK_INT(co_watchframe_feed(&f, "01234", 5, collect, &s), ==, 0);
  CO_CHECK_INT(co_watchframe_feed(&f, "56789", 5, collect, &s), ==, CO_ETOOBIG);
  co_watchframe_reset(&f);
  /* CRLF and blank lines */
  CO_CHECK_INT(co_watchframe_feed(&f, "ab\r\n\n\ncd\n", 9, collect, &s), ==, 0);
  CO_CHECK_STR(co_buf_str(&s.out), "ab|cd|");
  co_watchframe_free(&f);
  co_buf_free(&s.out);
  /* the callback's error stops feeding */
  co_watchframe_init(&f, 64);
  int n = 0;
  CO_CHECK_INT(co_watchframe_feed(&f, "a\nb\nc\n", 6, stop_at_second, &n), ==, CO_EGONE);
  CO_CHECK_INT(n, ==, 2);
  co_watchframe_free(&f);
}

static void test_event_parse(void) {
  co_watch_event_t ev;
  const char *gone = "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\","
                     "\"status\":\"Failure\",\"message\":\"too old resource version: 1 (5)\","
                     "\"reason\":\"Expired\",\"code\":410}}";
  CO_CHECK_INT(co_watch_event_parse(gone, strlen(gone), &ev), ==, 0);
  CO_CHECK_INT(ev.type, ==, CO_WATCH_ERROR);
  CO_CHECK_INT(ev.code, ==, 410);
  co_watch_event_free(&ev);
  const char *bm = "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"Deployment\",\"metadata\":"
                   "{\"resourceVersion\":\"12345\"}}}";
  CO_CHECK_INT(co_watch_event_parse(bm, strlen(bm), &ev), ==, 0);
  CO_CHECK_INT(ev.type, ==, CO_WATCH_BOOKMARK);
  CO_CHECK_STR(ev.rv, "12345");
  co_watch_event_free(&ev);
  static const char *bad[] = {"",
                              "{",
                              "[]",
                              "{\"type\":\"ADDED\"}",
                              "{\"type\":\"NOPE\",\"object\":{}}",
                              "{\"type\":1,\"object\":{}}",
                              "{\"type\":\"ADDED\",\"object\":[]}",
                              "null",
                              "{\"type\":\"ADDED\",\"object\":{}} trailing"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int rc = co_watch_event_parse(bad[i], strlen(bad[i]), &ev);
    if (rc == 0)
      fprintf(stderr, "# accepted: %s\n", bad[i]);
    CO_CHECK_INT(rc, ==, CO_EPARSE);
  }
}

CO_TEST_MAIN(CO_TEST(test_every_split_point), CO_TEST(test_decode_recorded),
             CO_TEST(test_limits_and_errors), CO_TEST(test_event_parse))
