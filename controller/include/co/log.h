/* Structured logging: one line per record, logfmt or JSON, on stderr by default.
 *
 *   co_log(CO_LOG_INFO, "watch started", CO_S("resource", name), CO_I("rv", rv));
 *
 * Values are escaped; keys named like credentials (token, authorization, password, key data)
 * are always written as "[redacted]". Not thread-safe (the process has one loop thread). */
#ifndef CO_LOG_H
#define CO_LOG_H

#include <stdio.h>

typedef enum {
  CO_LOG_DEBUG = 0,
  CO_LOG_INFO = 1,
  CO_LOG_WARN = 2,
  CO_LOG_ERROR = 3,
  CO_LOG_OFF = 4
} co_log_level_t;

typedef enum { CO_LOG_LOGFMT = 0, CO_LOG_JSON = 1 } co_log_format_t;

/* Field tags; use the CO_S / CO_I / CO_F / CO_B / CO_E macros, never these directly. */
enum { CO__LT_END = 0, CO__LT_STR, CO__LT_INT, CO__LT_DBL, CO__LT_BOOL, CO__LT_ERR };

#define CO_S(k, v) CO__LT_STR, (const char *)(k), (const char *)(v)
#define CO_I(k, v) CO__LT_INT, (const char *)(k), (long long)(v)
#define CO_F(k, v) CO__LT_DBL, (const char *)(k), (double)(v)
#define CO_B(k, v) CO__LT_BOOL, (const char *)(k), (int)((v) ? 1 : 0)
/* An error code: writes err=<name> and error=<text>. */
#define CO_E(v) CO__LT_ERR, "err", (int)(v)

#define co_log(...) co_log_impl(__func__, __VA_ARGS__, CO__LT_END)

void co_log_impl(const char *func, int level, const char *msg, ...);

/* Sets the minimum level written (default CO_LOG_INFO). */
void co_log_set_level(int level);
int co_log_get_level(void);
/* Parses "debug|info|warn|error|off"; returns 0 or CO_EINVAL. */
int co_log_parse_level(const char *s, int *level);
void co_log_set_format(int format);
/* Parses "logfmt|json"; returns 0 or CO_EINVAL. */
int co_log_parse_format(const char *s, int *format);
/* Redirects output (borrowed; default stderr). Used by tests. */
void co_log_set_stream(FILE *f);
/* Returns 1 when records of this level are written. */
int co_log_enabled(int level);

#endif
