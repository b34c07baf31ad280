/* Watch stream framing and decoding. The API server sends one JSON event per line
 * ({"type":"ADDED","object":{...}}\n). Bytes arrive in arbitrary chunks; a partial line is
 * kept in a bounded buffer until its newline arrives, and each complete line is parsed once. */
#ifndef CO_WATCHFRAME_H
#define CO_WATCHFRAME_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "co/buf.h"

typedef struct co_watchframe_s {
  /* private */
  co_buf_t partial; /* bytes of a line whose newline has not arrived yet */
} co_watchframe_t;

/* Called once per complete line (without its newline; never empty); line is borrowed for
 * the call only. Return 0 to continue or a CO_E* code to stop feeding. */
typedef int (*co_watchframe_line_cb)(void *ud, const char *line, size_t len);

/* A line longer than max_line bytes is an error (CO_ETOOBIG), never silent growth. */
void co_watchframe_init(co_watchframe_t *f, size_t max_line);
/* Splits data into lines. Returns 0, CO_ETOOBIG, or the first non-zero code of cb. After an
 * error the framer must be reset before further use. Feeding a stream in any chunking gives
 * the same lines. */
int co_watchframe_feed(co_watchframe_t *f, const char *data, size_t len, co_watchframe_line_cb cb,
                       void *ud);
/* Returns the number of buffered bytes of an unfinished line. */
size_t co_watchframe_pending(const co_watchframe_t *f);
/* Drops any partial line (a new stream starts). */
void co_watchframe_reset(co_watchframe_t *f);
/* Frees the buffer. */
void co_watchframe_free(co_watchframe_t *f);

typedef enum {
  CO_WATCH_ADDED = 1,
  CO_WATCH_MODIFIED,
  CO_WATCH_DELETED,
  CO_WATCH_BOOKMARK,
  CO_WATCH_ERROR
} co_watch_type_t;

typedef struct co_watch_event_s {
  co_watch_type_t type;
  cJSON *root;         /* owned: the parsed line */
  const cJSON *object; /* borrowed from root: the event's object (a Status for ERROR) */
  const char *rv;      /* borrowed: object.metadata.resourceVersion, or NULL */
  int code;            /* ERROR: the Status code (e.g. 410), else 0 */
} co_watch_event_t;

/* Parses one line as a watch event. Returns 0 (free with co_watch_event_free) or CO_EPARSE
 * (not JSON, no known type, or no object; nothing to free). */
int co_watch_event_parse(const char *line, size_t len, co_watch_event_t *ev);
void co_watch_event_free(co_watch_event_t *ev);

#endif
