/* Bounded growable buffer. */
#include "co/buf.h"

#include <stdio.h>
#include <string.h>

#include "co/alloc.h"
#include "co/error.h"

void co_buf_init(co_buf_t *b, size_t max) {
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
  b->max = max;
}

void co_buf_free(co_buf_t *b) {
  co_free(b->data);
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
}

void co_buf_reset(co_buf_t *b) {
  b->len = 0;
  if (b->data != NULL)
    b->data[0] = '\0';
}

/* Makes room for n more bytes plus the terminating NUL. */
static int reserve(co_buf_t *b, size_t n) {
  if (n > b->max || b->len > b->max - n)
    return CO_ETOOBIG;
  size_t need = b->len + n + 1;
  if (need <= b->cap)
    return CO_OK;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < need)
    cap = cap > (size_t)-1 / 2 ? need : cap * 2;
  if (cap > b->max + 1)
    cap = b->max + 1;
  b->data = co_realloc(b->data, cap);
  b->cap = cap;
  return CO_OK;
}

int co_buf_append(co_buf_t *b, const void *p, size_t n) {
  int rc = reserve(b, n);
  if (rc != 0)
    return rc;
  if (n > 0)
    memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return CO_OK;
}

int co_buf_appends(co_buf_t *b, const char *s) { return co_buf_append(b, s, strlen(s)); }

int co_buf_vappendf(co_buf_t *b, const char *fmt, va_list ap) {
  va_list cp;
  va_copy(cp, ap);
  int n = vsnprintf(NULL, 0, fmt, cp);
  va_end(cp);
  if (n < 0)
    return CO_EINVAL;
  int rc = reserve(b, (size_t)n);
  if (rc != 0)
    return rc;
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  b->len += (size_t)n;
  return CO_OK;
}

int co_buf_appendf(co_buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = co_buf_vappendf(b, fmt, ap);
  va_end(ap);
  return rc;
}

int co_buf_append_urlenc(co_buf_t *b, const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    unsigned char c = *p;
    int plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '-' || c == '.' || c == '_' || c == '~';
    int rc;
    if (plain) {
      rc = co_buf_append(b, p, 1);
    } else {
      char e[3] = {'%', hex[c >> 4], hex[c & 15]};
      rc = co_buf_append(b, e, 3);
    }
    if (rc != 0)
      return rc;
  }
  return CO_OK;
}

void co_buf_consume(co_buf_t *b, size_t n) {
  if (n >= b->len) {
    co_buf_reset(b);
    return;
  }
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
  b->data[b->len] = '\0';
}

const char *co_buf_str(const co_buf_t *b) { return b->data != NULL ? b->data : ""; }

char *co_buf_steal(co_buf_t *b) {
  char *p = b->data != NULL ? b->data : co_strdup("");
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
  return p;
}
