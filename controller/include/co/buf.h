/* Bounded growable byte buffer (after curl's dynbuf): every buffer has a maximum size chosen
 * by its owner, and appending past it fails with CO_ETOOBIG instead of growing. */
#ifndef CO_BUF_H
#define CO_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct co_buf_s {
  char *data; /* NUL-terminated when len > 0 or after any append; may be NULL when empty */
  size_t len;
  size_t cap;
  size_t max; /* limit on len */
} co_buf_t;

/* Initialises an empty buffer that may hold at most max bytes. Allocates nothing. */
void co_buf_init(co_buf_t *b, size_t max);
/* Frees the storage and leaves the buffer empty and reusable with the same max. */
void co_buf_free(co_buf_t *b);
/* Empties the buffer, keeping its storage. */
void co_buf_reset(co_buf_t *b);
/* Appends n bytes; returns 0 or CO_ETOOBIG (the buffer is then unchanged). */
int co_buf_append(co_buf_t *b, const void *p, size_t n);
int co_buf_appends(co_buf_t *b, const char *s);
int co_buf_appendf(co_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int co_buf_vappendf(co_buf_t *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Appends s percent-encoded for use in a URL path segment or query value. */
int co_buf_append_urlenc(co_buf_t *b, const char *s);
/* Drops the first n bytes (n <= len). */
void co_buf_consume(co_buf_t *b, size_t n);
/* Returns the content as a C string ("" when empty); borrowed, valid until the next change. */
const char *co_buf_str(const co_buf_t *b);
/* Transfers the content to the caller (owned, NUL-terminated, never NULL); leaves b empty. */
char *co_buf_steal(co_buf_t *b);

#endif
