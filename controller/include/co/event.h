/* Kubernetes Events (events.k8s.io/v1) as the controllers record them: one builder shared by
 * every reconciler, so all events look alike (reportingController, name, times). */
#ifndef CO_EVENT_H
#define CO_EVENT_H

#include <stddef.h>

typedef struct co_event_s {
  const char *instance;    /* reportingInstance (the host name) */
  const char *type;        /* "Normal" or "Warning" */
  const char *reason;      /* CamelCase */
  const char *action;      /* what the controller did */
  const char *api_version; /* of the object the event is about, e.g. "v1", "apps/v1" */
  const char *kind;
  const char *ns; /* "" or NULL for cluster-scoped objects (the event then lives in "default") */
  const char *name;
  const char *uid;  /* may be NULL */
  const char *note; /* human-readable message */
} co_event_t;

/* Returns the JSON body of the event (owned, co_free) and writes the collection path to POST
 * it to into path (at most len bytes). Everything is borrowed. */
char *co_event_body(const co_event_t *ev, char *path, size_t len);

#endif
