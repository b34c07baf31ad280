/* Allocation wrappers. Policy: an allocation failure of the process heap aborts with a
 * message (the pod is restarted by its supervisor); sizes that come from outside data are
 * bounded by the caller before allocating, and such bounds are reported as CO_ETOOBIG. */
#ifndef CO_ALLOC_H
#define CO_ALLOC_H

#include <stddef.h>

/* Returns owned memory; never NULL. Release with co_free. */
void *co_malloc(size_t n);
void *co_calloc(size_t count, size_t size);
/* Returns owned memory; p is invalid after the call (never write p = co_realloc(p, n)
 * expecting p to survive a failure: there is none, failure aborts). */
void *co_realloc(void *p, size_t n);
/* Returns an owned copy of s (NULL if s is NULL). */
char *co_strdup(const char *s);
/* Returns an owned NUL-terminated copy of the first n bytes of s. */
char *co_strndup(const char *s, size_t n);
void co_free(void *p);

/* Gives the heap's free pages back to the kernel (glibc keeps them otherwise). For the ends of
 * bursts that free much at once: a full list, a drained work queue. Costs a walk of the heap. */
void co_mem_trim(void);

/* Bytes of heap in use (allocated and not freed), or 0 where the C library cannot say. */
size_t co_mem_in_use(void);

/* Routes cJSON, libuv and libcurl allocations through the wrappers above, and maps blocks of
 * 16 KiB or more (glibc) outside the heap. Call once, before any of those libraries allocate
 * (libuv requires it before its first use). */
int co_alloc_install_hooks(void);

#endif
