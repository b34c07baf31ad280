/* Allocation wrappers and the hooks that route cJSON, libuv and libcurl through them. */
#include "co/alloc.h"

#include <cjson/cJSON.h>
#include <malloc.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "co/error.h"

#define CO_MMAP_THRESHOLD (16 * 1024)

static void oom(size_t n) {
  fprintf(stderr, "confidential-operator: out of memory allocating %zu bytes\n", n);
  abort();
}

void *co_malloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (p == NULL)
    oom(n);
  return p;
}

void *co_calloc(size_t count, size_t size) {
  void *p = calloc(count ? count : 1, size ? size : 1);
  if (p == NULL)
    oom(count * size);
  return p;
}

void *co_realloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (q == NULL)
    oom(n);
  return q;
}

char *co_strdup(const char *s) {
  if (s == NULL)
    return NULL;
  return co_strndup(s, strlen(s));
}

char *co_strndup(const char *s, size_t n) {
  char *p = co_malloc(n + 1);
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

void co_free(void *p) { free(p); }

void co_mem_trim(void) {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

size_t co_mem_in_use(void) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
#else
  return 0;
#endif
}

/* libcurl wants a strdup hook of its own signature. */
static char *curl_strdup_hook(const char *s) { return co_strdup(s); }

/* libuv's realloc contract: NULL on failure is allowed, but ours aborts instead. */
static void *uv_realloc_hook(void *p, size_t n) {
  if (n == 0) {
    free(p);
    return NULL;
  }
  return co_realloc(p, n);
}

int co_alloc_install_hooks(void) {
#ifdef __GLIBC__
  /* A fixed threshold (glibc raises its default one to the size of every mapped block freed):
   * the buffers that come and go with each request (response bodies growing to a list page,
   * libcurl's receive buffer) are mapped and unmapped, instead of leaving holes between the
   * long-lived cached objects that no trim can give back. */
  mallopt(M_MMAP_THRESHOLD, CO_MMAP_THRESHOLD);
#endif
  cJSON_Hooks hooks = {co_malloc, co_free};
  cJSON_InitHooks(&hooks);
  if (uv_replace_allocator(co_malloc, uv_realloc_hook, co_calloc, co_free) != 0)
    return CO_EBUSY;
  if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, co_malloc, co_free, uv_realloc_hook,
                           curl_strdup_hook, co_calloc) != CURLE_OK)
    return CO_EIO;
  return CO_OK;
}
