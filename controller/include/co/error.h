/* Error codes of confidential-operator: one table, negative values, 0 is success. */
#ifndef CO_ERROR_H
#define CO_ERROR_H

#include <stddef.h>

/* XX(name, value, text). Values are stable; never renumber. */
#define CO_ERRNO_MAP(XX)                                 \
  XX(NOMEM, -1, "out of memory")                         \
  XX(INVAL, -2, "invalid argument")                      \
  XX(CONFIG, -3, "invalid configuration")                \
  XX(IO, -4, "input/output error")                       \
  XX(TOOBIG, -5, "data exceeds limit")                   \
  XX(PARSE, -6, "malformed data")                        \
  XX(TLS, -7, "TLS error")                               \
  XX(CONNECT, -8, "cannot connect")                      \
  XX(TIMEOUT, -9, "timed out")                           \
  XX(CANCELED, -10, "canceled")                          \
  XX(TRANSPORT, -11, "transport error")                  \
  XX(BADREQUEST, -12, "bad request (HTTP 400)")          \
  XX(UNAUTHORIZED, -13, "unauthorized (HTTP 401)")       \
  XX(FORBIDDEN, -14, "forbidden (HTTP 403)")             \
  XX(NOTFOUND, -15, "not found (HTTP 404)")              \
  XX(METHOD, -16, "method not allowed (HTTP 405)")       \
  XX(CONFLICT, -17, "conflict (HTTP 409)")               \
  XX(GONE, -18, "resource version expired (HTTP 410)")   \
  XX(UNPROCESSABLE, -19, "invalid object (HTTP 422)")    \
  XX(TOOMANY, -20, "too many requests (HTTP 429)")       \
  XX(SERVER, -21, "server error (HTTP 5xx)")             \
  XX(UNAVAILABLE, -22, "service unavailable (HTTP 503)") \
  XX(HTTP, -23, "unexpected HTTP status")                \
  XX(EXIST, -24, "already exists")                       \
  XX(BUSY, -25, "resource busy")                         \
  XX(AGAIN, -26, "try again")                            \
  XX(UNSUPPORTED, -27, "not supported")                  \
  XX(STALLED, -28, "stream stalled")

typedef enum {
  CO_OK = 0,
#define CO__ERR_ENUM(name, value, text) CO_E##name = (value),
  CO_ERRNO_MAP(CO__ERR_ENUM)
#undef CO__ERR_ENUM
      CO__ERR_LAST = -29
} co_errno_t;

/* Returns a static, human-readable description of err (0 or a CO_E* value). */
const char *co_strerror(int err);

/* Returns the static symbolic name of err, e.g. "CO_ENOTFOUND". */
const char *co_err_name(int err);

/* Maps an HTTP status code to 0 (2xx) or the matching CO_E* value. */
int co_err_from_http(long status);

/* Writes a message into the caller's buffer err[0..errlen) (truncated to fit; nothing when err
 * is NULL or errlen is 0): the one way functions that return a CO_E* code explain it. */
void co_set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
