/* Structured log writer: logfmt or JSON lines, values escaped, credentials redacted. */
#include "co/log.h"

#include <stdarg.h>
#include <string.h>
#include <time.h>

#include "co/buf.h"
#include "co/error.h"

static int g_level = CO_LOG_INFO;
static int g_format = CO_LOG_LOGFMT;
static FILE *g_stream;

static const char *level_names[] = {"debug", "info", "warn", "error", "off"};

void co_log_set_level(int level) { g_level = level; }
int co_log_get_level(void) { return g_level; }
void co_log_set_format(int format) { g_format = format; }
void co_log_set_stream(FILE *f) { g_stream = f; }
int co_log_enabled(int level) { return level >= g_level && level < CO_LOG_OFF; }

int co_log_parse_level(const char *s, int *level) {
  for (int i = 0; i <= CO_LOG_OFF; i++) {
    if (strcmp(s, level_names[i]) == 0) {
      *level = i;
      return CO_OK;
    }
  }
  return CO_EINVAL;
}

int co_log_parse_format(const char *s, int *format) {
  if (strcmp(s, "logfmt") == 0)
    *format = CO_LOG_LOGFMT;
  else if (strcmp(s, "json") == 0)
    *format = CO_LOG_JSON;
  else
    return CO_EINVAL;
  return CO_OK;
}

/* Keys whose values must never reach a log line. */
static int is_secret_key(const char *k) {
  static const char *secret[] = {"token",  "authorization", "password",
                                 "bearer", "client_key",    "key_data"};
  for (size_t i = 0; i < sizeof(secret) / sizeof(secret[0]); i++)
    if (strstr(k, secret[i]) != NULL)
      return 1;
  return 0;
}

/* Length of the valid UTF-8 sequence at p (1 to 4), or 0 when it is not valid (stray
 * continuation byte, overlong form, surrogate, beyond U+10FFFF, truncated). */
static size_t utf8_seq(const unsigned char *p) {
  unsigned c = p[0];
  size_t n;
  if (c < 0x80)
    return 1;
  if (c >= 0xc2 && c <= 0xdf)
    n = 2;
  else if (c >= 0xe0 && c <= 0xef)
    n = 3;
  else if (c >= 0xf0 && c <= 0xf4)
    n = 4;
  else
    return 0;
  for (size_t i = 1; i < n; i++)
    if ((p[i] & 0xc0) != 0x80)
      return 0; /* also stops at the terminating NUL */
  if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] > 0x9f) || (c == 0xf0 && p[1] < 0x90) ||
      (c == 0xf4 && p[1] > 0x8f))
    return 0;
  return n;
}

/* JSON string; bytes that are not valid UTF-8 (values come from the API server and from
 * tenants' objects) become U+FFFD, so that every line stays valid JSON. */
static void put_json_str(co_buf_t *b, const char *s) {
  co_buf_append(b, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    switch (*p) {
    case '"':
      co_buf_append(b, "\\\"", 2);
      break;
    case '\\':
      co_buf_append(b, "\\\\", 2);
      break;
    case '\n':
      co_buf_append(b, "\\n", 2);
      break;
    case '\r':
      co_buf_append(b, "\\r", 2);
      break;
    case '\t':
      co_buf_append(b, "\\t", 2);
      break;
    default:
      if (*p < 0x20 || *p == 0x7f) {
        co_buf_appendf(b, "\\u%04x", *p);
      } else {
        size_t n = utf8_seq(p);
        if (n == 0) {
          co_buf_appends(b, "\\ufffd");
        } else {
          co_buf_append(b, p, n);
          p += n - 1;
        }
      }
    }
  }
  co_buf_append(b, "\"", 1);
}

/* logfmt: bare when safe, else quoted with the JSON escapes. */
static void put_logfmt_str(co_buf_t *b, const char *s) {
  int bare = *s != '\0';
  for (const unsigned char *p = (const unsigned char *)s; *p && bare; p++)
    if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || *p >= 0x7f)
      bare = 0;
  if (bare)
    co_buf_appends(b, s);
  else
    put_json_str(b, s);
}

static void put_key(co_buf_t *b, const char *k) {
  if (g_format == CO_LOG_JSON) {
    co_buf_append(b, ",", 1);
    put_json_str(b, k);
    co_buf_append(b, ":", 1);
  } else {
    co_buf_appendf(b, " %s=", k);
  }
}

static void put_str(co_buf_t *b, const char *s) {
  if (s == NULL)
    s = "";
  if (g_format == CO_LOG_JSON)
    put_json_str(b, s);
  else
    put_logfmt_str(b, s);
}

void co_log_impl(const char *func, int level, const char *msg, ...) {
  if (!co_log_enabled(level))
    return;
  co_buf_t b;
  co_buf_init(&b, 64 * 1024);

  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char when[40];
  size_t wl = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(when + wl, sizeof(when) - wl, ".%03ldZ", ts.tv_nsec / 1000000);

  if (g_format == CO_LOG_JSON) {
    co_buf_appends(&b, "{\"ts\":");
    put_json_str(&b, when);
    co_buf_appendf(&b, ",\"level\":\"%s\",\"msg\":", level_names[level]);
    put_json_str(&b, msg);
  } else {
    co_buf_appendf(&b, "ts=%s level=%s msg=", when, level_names[level]);
    put_logfmt_str(&b, msg);
  }

  va_list ap;
  va_start(ap, msg);
  for (;;) {
    int tag = va_arg(ap, int);
    if (tag == CO__LT_END)
      break;
    const char *k = va_arg(ap, const char *);
    switch (tag) {
    case CO__LT_STR: {
      const char *v = va_arg(ap, const char *);
      put_key(&b, k);
      put_str(&b, is_secret_key(k) ? "[redacted]" : v);
      break;
    }
    case CO__LT_INT: {
      long long v = va_arg(ap, long long);
      put_key(&b, k);
      co_buf_appendf(&b, "%lld", v);
      break;
    }
    case CO__LT_DBL: {
      double v = va_arg(ap, double);
      put_key(&b, k);
      co_buf_appendf(&b, "%.6g", v);
      break;
    }
    case CO__LT_BOOL: {
      int v = va_arg(ap, int);
      put_key(&b, k);
      co_buf_appends(&b, v ? "true" : "false");
      break;
    }
    case CO__LT_ERR: {
      int v = va_arg(ap, int);
      put_key(&b, k);
      put_str(&b, co_err_name(v));
      put_key(&b, "error");
      put_str(&b, co_strerror(v));
      break;
    }
    default:
      break;
    }
  }
  va_end(ap);

  if (level >= CO_LOG_WARN || g_level == CO_LOG_DEBUG) {
    put_key(&b, "func");
    put_str(&b, func);
  }
  if (g_format == CO_LOG_JSON)
    co_buf_append(&b, "}", 1);
  co_buf_append(&b, "\n", 1);
  FILE *out = g_stream != NULL ? g_stream : stderr;
  fwrite(co_buf_str(&b), 1, b.len, out);
  fflush(out);
  co_buf_free(&b);
}
