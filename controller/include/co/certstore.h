/* The webhook's serving certificate, shared by every replica through one Secret.
 *
 * The Secret (type kubernetes.io/tls; keys ca.crt, ca.key, tls.crt, tls.key) in the operator's
 * namespace is followed with a list+watch restricted to it (fieldSelector metadata.name), so
 * every replica loads the same material and picks up a rotation within a watch event.
 *
 * - Missing Secret (after the first list, or deleted): any replica generates a CA and a
 *   serving certificate and creates it; a replica that loses the race (409) loads the winner's
 *   from the watch, so two replicas always end up with the same certificate.
 * - Rotation, only by the leader (co_certstore_set_leader): when the serving certificate has
 *   less than a third of its validity left, a new one signed by the same CA replaces it (PUT
 *   with the resourceVersion: a concurrent write makes it fail, and the watch brings the
 *   other one). The CA (valid 10x as long) is renewed when less than two serving validities
 *   are left: the new CA goes first in ca.crt, the old one stays behind it until it expires,
 *   and the caBundle is updated BEFORE the Secret, so the API server trusts the new
 *   certificate before any replica serves it. An unreadable Secret is replaced.
 * - caBundle: the leader keeps every webhook of the MutatingWebhookConfiguration config_name
 *   (GET, then a strategic merge PATCH of the webhooks whose caBundle differs) equal to ca.crt,
 *   after every change and every five minutes (a re-applied configuration is repaired).
 *
 * on_loaded fires (on the loop) whenever new serving material is loaded: cert_pem and key_pem
 * are then valid until the next on_loaded or close. Serving with the new one while open
 * connections finish with the old one keeps every request. */
#ifndef CO_CERTSTORE_H
#define CO_CERTSTORE_H

#include <stdint.h>
#include <uv.h>

#include "co/client.h"
#include "co/reflector.h"

#define CO_CERTSTORE_SECRET "confidential-operator-webhook-cert"

typedef struct co_certstore_s co_certstore_t;
typedef void (*co_certstore_cb)(co_certstore_t *cs);

typedef struct co_certstore_opts_s {
  const char *ns;          /* namespace of the Secret (the operator's) */
  const char *secret_name; /* NULL: CO_CERTSTORE_SECRET */
  const char *config_name; /* MutatingWebhookConfiguration to inject into; NULL/"": none */
  int64_t validity_s;      /* serving certificate validity (> 0) */
  const char *const *dns;  /* subjectAltNames of the serving certificate (borrowed) */
  size_t n_dns;
  const char *const *ips;
  size_t n_ips;
} co_certstore_opts_t;

typedef struct co_certstore_stats_s {
  uint64_t loads;      /* distinct serving certificates loaded */
  uint64_t creates;    /* Secrets created by this replica */
  uint64_t rotations;  /* Secrets replaced by this replica */
  uint64_t conflicts;  /* writes that lost against another replica (409) */
  uint64_t injections; /* caBundle PATCHes */
  uint64_t errors;
} co_certstore_stats_t;

struct co__certstore_state;

struct co_certstore_s {
  /* public */
  void *data;
  co_certstore_cb on_loaded;
  /* read-only */
  int loaded;     /* serving material available */
  char *cert_pem; /* owned: serving certificate */
  char *key_pem;  /* owned: its key */
  co_certstore_stats_t stats;
  /* private */
  struct co__certstore_state *s;
};

/* Copies what it needs of opts (dns/ips stay borrowed). Returns 0 or CO_EINVAL. */
int co_certstore_init(co_client_t *client, co_certstore_t *cs, const co_certstore_opts_t *opts);
int co_certstore_start(co_certstore_t *cs);
/* Only the leader rotates and injects; without leader election call it once with 1. */
void co_certstore_set_leader(co_certstore_t *cs, int leading);
/* API requests started and not answered (the Secret's list/watch, a write or a caBundle
 * request): what a close waits for. 0 once closed. */
int co_certstore_requests(const co_certstore_t *cs);
/* Stops everything and frees what it owns; cb fires once, later, on the loop. */
void co_certstore_close(co_certstore_t *cs, co_certstore_cb cb);

#endif
