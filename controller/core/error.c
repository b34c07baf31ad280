/* The error table's strings and the HTTP status mapping. */
#include "co/error.h"

#include <stdarg.h>
#include <stdio.h>

const char *co_strerror(int err) {
  switch (err) {
  case CO_OK:
    return "success";
#define CO__ERR_STR(name, value, text) \
  case (value):                        \
    return text;
    CO_ERRNO_MAP(CO__ERR_STR)
#undef CO__ERR_STR
  default:
    return "unknown error";
  }
}

const char *co_err_name(int err) {
  switch (err) {
  case CO_OK:
    return "CO_OK";
#define CO__ERR_NAME(name, value, text) \
  case (value):                         \
    return "CO_E" #name;
    CO_ERRNO_MAP(CO__ERR_NAME)
#undef CO__ERR_NAME
  default:
    return "CO_EUNKNOWN";
  }
}

int co_err_from_http(long status) {
  if (status >= 200 && status < 300)
    return CO_OK;
  switch (status) {
  case 400:
    return CO_EBADREQUEST;
  case 401:
    return CO_EUNAUTHORIZED;
  case 403:
    return CO_EFORBIDDEN;
  case 404:
    return CO_ENOTFOUND;
  case 405:
    return CO_EMETHOD;
  case 409:
    return CO_ECONFLICT;
  case 410:
    return CO_EGONE;
  case 413:
    return CO_ETOOBIG;
  case 422:
    return CO_EUNPROCESSABLE;
  case 429:
    return CO_ETOOMANY;
  case 503:
    return CO_EUNAVAILABLE;
  case 504:
    return CO_ETIMEOUT;
  default:
    break;
  }
  if (status >= 500 && status < 600)
    return CO_ESERVER;
  return CO_EHTTP;
}

void co_set_err(char *err, size_t errlen, const char *fmt, ...) {
  if (err == NULL || errlen == 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  if (vsnprintf(err, errlen, fmt, ap) < 0)
    err[0] = '\0';
  va_end(ap);
}
