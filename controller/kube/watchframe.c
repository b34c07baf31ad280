/* Line framing and event decoding of watch streams. */
#include "co/watchframe.h"

#include <string.h>

#include "co/error.h"

void co_watchframe_init(co_watchframe_t *f, size_t max_line) { co_buf_init(&f->partial, max_line); }

void co_watchframe_reset(co_watchframe_t *f) { co_buf_reset(&f->partial); }

void co_watchframe_free(co_watchframe_t *f) { co_buf_free(&f->partial); }

size_t co_watchframe_pending(const co_watchframe_t *f) { return f->partial.len; }

static int emit(const char *line, size_t len, co_watchframe_line_cb cb, void *ud) {
  if (len > 0 && line[len - 1] == '\r')
    len--;
  if (len == 0)
    return 0;
  return cb(ud, line, len);
}

int co_watchframe_feed(co_watchframe_t *f, const char *data, size_t len, co_watchframe_line_cb cb,
                       void *ud) {
  while (len > 0) {
    const char *nl = memchr(data, '\n', len);
    if (nl == NULL) {
      /* No newline yet: keep the bytes, bounded by the line limit. */
      return co_buf_append(&f->partial, data, len);
    }
    size_t n = (size_t)(nl - data);
    int rc;
    if (f->partial.len == 0) {
      /* Whole line inside this chunk: parse it in place, no copy. */
      if (n > f->partial.max)
        return CO_ETOOBIG;
      rc = emit(data, n, cb, ud);
    } else {
      rc = co_buf_append(&f->partial, data, n);
      if (rc == 0)
        rc = emit(f->partial.data, f->partial.len, cb, ud);
      co_buf_reset(&f->partial);
    }
    if (rc != 0)
      return rc;
    data = nl + 1;
    len -= n + 1;
  }
  return 0;
}

static const struct {
  const char *name;
  co_watch_type_t type;
} types[] = {{"ADDED", CO_WATCH_ADDED},
             {"MODIFIED", CO_WATCH_MODIFIED},
             {"DELETED", CO_WATCH_DELETED},
             {"BOOKMARK", CO_WATCH_BOOKMARK},
             {"ERROR", CO_WATCH_ERROR}};

int co_watch_event_parse(const char *line, size_t len, co_watch_event_t *ev) {
  memset(ev, 0, sizeof(*ev));
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(line, len, &end, 0);
  if (root == NULL)
    return CO_EPARSE;
  /* One JSON value per line: anything but white space after it is malformed. */
  for (; end != NULL && end < line + len; end++) {
    if (*end != ' ' && *end != '\t' && *end != '\r' && *end != '\n') {
      cJSON_Delete(root);
      return CO_EPARSE;
    }
  }
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "type");
  const cJSON *obj = cJSON_GetObjectItemCaseSensitive(root, "object");
  if (!cJSON_IsString(type) || !cJSON_IsObject(obj)) {
    cJSON_Delete(root);
    return CO_EPARSE;
  }
  for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
    if (strcmp(type->valuestring, types[i].name) == 0)
      ev->type = types[i].type;
  if (ev->type == 0) {
    cJSON_Delete(root);
    return CO_EPARSE;
  }
  ev->root = root;
  ev->object = obj;
  const cJSON *md = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
  const cJSON *rv = cJSON_GetObjectItemCaseSensitive(md, "resourceVersion");
  if (cJSON_IsString(rv))
    ev->rv = rv->valuestring;
  if (ev->type == CO_WATCH_ERROR) {
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(obj, "code");
    if (cJSON_IsNumber(code) && code->valuedouble >= 0 && code->valuedouble < 1000)
      ev->code = (int)code->valuedouble;
  }
  return 0;
}

void co_watch_event_free(co_watch_event_t *ev) {
  cJSON_Delete(ev->root);
  memset(ev, 0, sizeof(*ev));
}
