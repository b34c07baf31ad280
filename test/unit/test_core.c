/* Error table, bounded buffer, log writer and the JSON arena. */
#include <stdio.h>
#include <stdlib.h>

#include "co/buf.h"
#include "co/error.h"
#include "co/jsonarena.h"
#include "co/log.h"
#include "co_test.h"

static void test_error_table(void) {
  CO_CHECK_STR(co_strerror(0), "success");
  CO_CHECK_STR(co_err_name(CO_ENOTFOUND), "CO_ENOTFOUND");
  CO_CHECK_STR(co_strerror(CO_EGONE), "resource version expired (HTTP 410)");
  CO_CHECK_STR(co_err_name(12345), "CO_EUNKNOWN");
  /* every code has a distinct name */
#define CHECK_NAME(name, value, text) CO_CHECK_STR(co_err_name(value), "CO_E" #name);
  CO_ERRNO_MAP(CHECK_NAME)
#undef CHECK_NAME
}

static void test_http_mapping(void) {
  static const struct {
    long status;
    int err;
  } cases[] = {{200, 0},
               {201, 0},
               {299, 0},
               {400, CO_EBADREQUEST},
               {401, CO_EUNAUTHORIZED},
               {403, CO_EFORBIDDEN},
               {404, CO_ENOTFOUND},
               {409, CO_ECONFLICT},
               {410, CO_EGONE},
               {422, CO_EUNPROCESSABLE},
               {429, CO_ETOOMANY},
               {500, CO_ESERVER},
               {502, CO_ESERVER},
               {503, CO_EUNAVAILABLE},
               {504, CO_ETIMEOUT},
               {302, CO_EHTTP},
               {0, CO_EHTTP}};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
    CO_CHECK_INT(co_err_from_http(cases[i].status), ==, cases[i].err);
}

static void test_buf_bounds(void) {
  co_buf_t b;
  co_buf_init(&b, 8);
  CO_CHECK_STR(co_buf_str(&b), "");
  CO_CHECK_INT(co_buf_appends(&b, "12345"), ==, 0);
  CO_CHECK_INT(co_buf_appends(&b, "6789"), ==, CO_ETOOBIG);
  CO_CHECK_STR(co_buf_str(&b), "12345"); /* unchanged after a refused append */
  CO_CHECK_INT(co_buf_appendf(&b, "%d", 678), ==, 0);
  CO_CHECK_STR(co_buf_str(&b), "12345678");
  CO_CHECK_INT(co_buf_appendf(&b, "%c", 'x'), ==, CO_ETOOBIG);
  co_buf_consume(&b, 3);
  CO_CHECK_STR(co_buf_str(&b), "45678");
  CO_CHECK_INT(b.len, ==, 5);
  char *s = co_buf_steal(&b);
  CO_CHECK_STR(s, "45678");
  CO_CHECK_INT(b.len, ==, 0);
  free(s);
  co_buf_free(&b);
}

static void test_buf_urlenc(void) {
  co_buf_t b;
  co_buf_init(&b, 1024);
  co_buf_append_urlenc(&b, "app in (a,b),x!=y/z ~_-.");
  CO_CHECK_STR(co_buf_str(&b), "app%20in%20%28a%2Cb%29%2Cx%21%3Dy%2Fz%20~_-.");
  co_buf_free(&b);
}

static char *capture(int format, int level) {
  char *out = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&out, &len);
  co_log_set_stream(f);
  co_log_set_format(format);
  co_log_set_level(level);
  co_log(CO_LOG_INFO, "hello world", CO_S("key", "a b\"c"), CO_I("n", -42), CO_B("ok", 1),
         CO_S("token", "secret-value"), CO_S("bearer_token", "x"), CO_E(CO_ENOTFOUND));
  co_log(CO_LOG_DEBUG, "hidden unless debug");
  fclose(f);
  co_log_set_stream(NULL);
  return out;
}

static void test_log_logfmt(void) {
  char *s = capture(CO_LOG_LOGFMT, CO_LOG_INFO);
  CO_CHECK_CONTAINS(s, " level=info msg=\"hello world\" key=\"a b\\\"c\" n=-42 ok=true");
  CO_CHECK_CONTAINS(s, " token=[redacted]");
  CO_CHECK_CONTAINS(s, " err=CO_ENOTFOUND error=\"not found (HTTP 404)\"");
  CO_CHECK(strstr(s, "secret-value") == NULL);
  CO_CHECK(strstr(s, "hidden") == NULL);
  free(s);
}

static void test_log_json(void) {
  char *s = capture(CO_LOG_JSON, CO_LOG_DEBUG);
  CO_CHECK_CONTAINS(s, "\"level\":\"info\",\"msg\":\"hello world\",\"key\":\"a b\\\"c\",\"n\":-42");
  CO_CHECK_CONTAINS(s, "\"msg\":\"hidden unless debug\"");
  CO_CHECK(strstr(s, "secret-value") == NULL);
  free(s);
}

/* Invalid UTF-8 in a value becomes U+FFFD; valid multi-byte characters pass unchanged. */
static void test_log_json_invalid_utf8(void) {
  char *out = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&out, &len);
  co_log_set_stream(f);
  co_log_set_format(CO_LOG_JSON);
  co_log_set_level(CO_LOG_INFO);
  co_log(CO_LOG_INFO, "m",
         CO_S("k", "a\xff\xfe\xc3\x28\xe2\x82|\xc3\xa9\xe2\x82\xac\xed\xa0\x80\xc0\xaf"));
  fclose(f);
  co_log_set_stream(NULL);
  CO_CHECK_CONTAINS(out, "\"k\":\"a\\ufffd\\ufffd\\ufffd(\\ufffd\\ufffd|\xc3\xa9\xe2\x82\xac"
                         "\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\"");
  free(out);
}

static void test_log_levels(void) {
  int l;
  CO_CHECK_INT(co_log_parse_level("warn", &l), ==, 0);
  CO_CHECK_INT(l, ==, CO_LOG_WARN);
  CO_CHECK_INT(co_log_parse_level("loud", &l), ==, CO_EINVAL);
  int f;
  CO_CHECK_INT(co_log_parse_format("json", &f), ==, 0);
  CO_CHECK_INT(co_log_parse_format("xml", &f), ==, CO_EINVAL);
}

/* A page parsed into the arena reads like any tree; heap parses after it are unaffected; a
 * parse error leaves nothing behind but the arena's blocks. */
static void test_json_arena(void) {
  co_json_arena_t a;
  co_json_arena_init(&a);
  char doc[64 * 1024];
  size_t n = 0;
  n += (size_t)snprintf(doc + n, sizeof(doc) - n, "{\"items\":[");
  for (int i = 0; i < 1000; i++)
    n += (size_t)snprintf(doc + n, sizeof(doc) - n, "%s{\"name\":\"obj-%d\"}", i ? "," : "", i);
  n += (size_t)snprintf(doc + n, sizeof(doc) - n, "]}");
  cJSON *root = co_json_arena_parse(&a, doc, n);
  CO_CHECK(root != NULL);
  CO_CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItem(root, "items")), ==, 1000);
  const cJSON *last = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "items"), 999);
  CO_CHECK_STR(cJSON_GetObjectItem(last, "name")->valuestring, "obj-999");
  CO_CHECK(a.mapped >= 256 * 1024);
  /* The hooks are back on the heap: this tree is freed normally (ASan would see a bad free). */
  cJSON *heap = cJSON_Parse("{\"a\":[1,2,3]}");
  CO_CHECK(heap != NULL);
  cJSON_Delete(heap);
  CO_CHECK(co_json_arena_parse(&a, "{\"items\":[", 11) == NULL);
  co_json_arena_release(&a);
  CO_CHECK_INT((long)a.mapped, ==, 0);
  co_json_arena_release(&a); /* idempotent */
}

CO_TEST_MAIN(CO_TEST(test_error_table), CO_TEST(test_http_mapping), CO_TEST(test_buf_bounds),
             CO_TEST(test_buf_urlenc), CO_TEST(test_log_logfmt), CO_TEST(test_log_json),
             CO_TEST(test_log_json_invalid_utf8), CO_TEST(test_log_levels),
             CO_TEST(test_json_arena))
