/* Leader election on a coordination.k8s.io/v1 Lease, after client-go's leaderelection:
 * every retry period the candidate reads the Lease and takes it when it is free, expired
 * (not renewed for its duration, measured on the local clock from when the record was last
 * seen to change) or already its own; writes carry the resourceVersion, so two candidates
 * never both win. The leader renews every retry period and gives up when it could not renew
 * for the renew deadline. co_lease_release hands the Lease back at shutdown (holder emptied),
 * so the next candidate takes over at its next retry instead of after the full duration.
 *
 * Lifecycle: co_lease_init, co_lease_start, co_lease_release(cb) and/or co_lease_close(cb).
 * Callbacks run on the loop. */
#ifndef CO_LEASE_H
#define CO_LEASE_H

#include <stdint.h>
#include <uv.h>

#include "co/client.h"

typedef struct co_lease_s co_lease_t;
typedef void (*co_lease_cb)(co_lease_t *lease);

typedef struct co_lease_opts_s {
  uint64_t duration_ms;       /* default 15000 */
  uint64_t renew_deadline_ms; /* default 10000 */
  uint64_t retry_ms;          /* default 2000 */
} co_lease_opts_t;

struct co_lease_s {
  /* public */
  void *data;
  co_lease_cb on_started; /* became leader */
  co_lease_cb on_stopped; /* lost the lease (renew deadline passed, or taken) */
  /* read-only */
  int leading;
  uint64_t transitions_seen;
  /* private */
  co_client_t *client;
  co_lease_opts_t opts;
  char *ns, *name, *identity;
  co_req_t req;
  uv_timer_t timer;
  uint64_t last_renew_ms; /* local time of our last successful write */
  char *seen_holder;      /* the record as last seen */
  char *seen_renew;
  uint64_t seen_at_ms; /* local time the record last changed */
  int state;
  co_lease_cb done_cb;
};

void co_lease_opts_default(co_lease_opts_t *opts);

/* ns, name and identity are copied. opts may be NULL. */
int co_lease_init(co_client_t *client, co_lease_t *lease, const char *ns, const char *name,
                  const char *identity, const co_lease_opts_t *opts);
/* Starts trying to acquire. */
int co_lease_start(co_lease_t *lease);
/* Stops renewing; if leading, empties the holder so another candidate takes over at once.
 * cb fires once when done (the lease may then be closed). */
void co_lease_release(co_lease_t *lease, co_lease_cb cb);
/* Stops everything and frees; cb fires once, later. */
void co_lease_close(co_lease_t *lease, co_lease_cb cb);

#endif
