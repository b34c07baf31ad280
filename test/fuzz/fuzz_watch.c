/* Fuzzes the watch stream path: framing in arbitrary chunks, event decoding, and the
 * projection decoders the informers apply to each event's object. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "co/alloc.h"
#include "co/informer.h"
#include "co/objects.h"
#include "co/watchframe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const co_resource_type_t *const types[] = {&co_type_deployments, &co_type_statefulsets,
                                                  &co_type_nodes};

static int on_line(void *ud, const char *line, size_t len) {
  (void)ud;
  co_watch_event_t ev;
  if (co_watch_event_parse(line, len, &ev) != 0)
    return 0;
  for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
    co_obj_t *o = co_calloc(1, types[i]->size);
    if (types[i]->decode(ev.object, o) == 0 && types[i]->equal != NULL)
      (void)types[i]->equal(o, o);
    types[i]->release(o);
    co_free(o);
  }
  co_watch_event_free(&ev);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  /* The first byte picks the chunk size, so every split pattern gets exercised. */
  size_t chunk = (size_t)data[0] % 64 + 1;
  const char *p = (const char *)data + 1;
  size_t n = size - 1;
  co_watchframe_t f;
  co_watchframe_init(&f, 64 * 1024);
  while (n > 0) {
    size_t c = n < chunk ? n : chunk;
    if (co_watchframe_feed(&f, p, c, on_line, NULL) != 0)
      co_watchframe_reset(&f);
    p += c;
    n -= c;
  }
  co_watchframe_free(&f);
  return 0;
}
