/* A bump allocator on mmap'd blocks, installed as cJSON's hooks for one parse. */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include "co/jsonarena.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "co/alloc.h"

#define BLOCK_MIN (256 * 1024)
#define ALIGN 16

typedef struct co_arena_block_s {
  struct co_arena_block_s *next;
  size_t size; /* bytes mapped, this header included */
  size_t used;
} block_t;

#define HEADER (((sizeof(block_t) + ALIGN - 1) / ALIGN) * ALIGN)

static co_json_arena_t *current; /* the arena cJSON allocates from, during a parse only */

void co_json_arena_init(co_json_arena_t *a) {
  a->head = NULL;
  a->mapped = 0;
}

static void *arena_alloc(size_t n) {
  co_json_arena_t *a = current;
  n = (n + ALIGN - 1) & ~(size_t)(ALIGN - 1);
  block_t *b = a->head;
  if (b == NULL || b->size - b->used < n) {
    size_t size = HEADER + n > BLOCK_MIN ? HEADER + n : BLOCK_MIN;
    void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
      fprintf(stderr, "confidential-operator: out of memory mapping %zu bytes\n", size);
      abort();
    }
    b = m;
    b->next = a->head;
    b->size = size;
    b->used = HEADER;
    a->head = b;
    a->mapped += size;
  }
  void *p = (char *)b + b->used;
  b->used += n;
  return p;
}

/* Nodes freed during the parse (cJSON frees its partial tree on an error) go with the arena. */
static void arena_free(void *p) { (void)p; }

cJSON *co_json_arena_parse(co_json_arena_t *a, const char *data, size_t len) {
  cJSON_Hooks arena_hooks = {arena_alloc, arena_free};
  cJSON_Hooks heap_hooks = {co_malloc, co_free};
  current = a;
  cJSON_InitHooks(&arena_hooks);
  cJSON *root = cJSON_ParseWithLength(data, len);
  cJSON_InitHooks(&heap_hooks);
  current = NULL;
  return root;
}

void co_json_arena_release(co_json_arena_t *a) {
  block_t *b = a->head;
  while (b != NULL) {
    block_t *next = b->next;
    munmap(b, b->size);
    b = next;
  }
  a->head = NULL;
  a->mapped = 0;
}
