/* Parsing of large JSON documents (list pages) into memory of their own.
 *
 * A list page of 500 objects becomes some 100,000 short-lived cJSON nodes. Allocated on the
 * heap, they interleave with the long-lived cache entries decoded from them, and the holes they
 * leave stay in the process's RSS after the page is gone. Parsed in an arena, they live in a
 * few mmap'd blocks that go back to the kernel the moment the page is decoded.
 *
 * One thread: cJSON's allocation hooks are global; they point at the arena only for the
 * duration of co_json_arena_parse. */
#ifndef CO_JSONARENA_H
#define CO_JSONARENA_H

#include <cjson/cJSON.h>
#include <stddef.h>

typedef struct co_json_arena_s {
  struct co_arena_block_s *head; /* owned; most recent block first */
  size_t mapped;                 /* bytes mapped, for logs and tests */
} co_json_arena_t;

void co_json_arena_init(co_json_arena_t *a);

/* Parses data[0..len). The returned tree belongs to the arena: read it, copy what must
 * outlive it, never pass it to cJSON_Delete. NULL on a parse error. The arena may be used
 * for several parses before it is released. */
cJSON *co_json_arena_parse(co_json_arena_t *a, const char *data, size_t len);

/* Unmaps every block; every tree parsed into the arena becomes invalid. */
void co_json_arena_release(co_json_arena_t *a);

#endif
