/* What containerd loads on a k3s node, read back from the rendered configuration: the runtime
 * handlers declared in config.toml and in the files its `imports` name. This is the node agent's
 * check that a change took effect after k3s re-rendered its config (node-install.md §8: "verify
 * by grepping the rendered config.toml"), reported in the agent-runtimes annotation. */
#ifndef CO_NODERENDERED_H
#define CO_NODERENDERED_H

#include <stddef.h>

typedef struct {
  int version;         /* `version` of config.toml (0 when absent) */
  char handlers[1024]; /* runtime handlers, comma list in file order, without duplicates */
  int imports_dropin;  /* an `imports` entry names config-v3.toml.d/ or config.toml.d/ */
  int ours;            /* config.toml carries a line written by confidential-operator */
  size_t imported;     /* imported files read */
} co_k3s_rendered_t;

/* Reads <host_root>/var/lib/rancher/k3s/agent/etc/containerd/config.toml and the files its
 * imports match (glob patterns, host-absolute, looked up under host_root; each file at most
 * 256 KiB). Runtime tables count under the plugin id of the file's own `version` (3:
 * io.containerd.cri.v1.runtime, 2: io.containerd.grpc.v1.cri), as containerd reads them.
 * host_root is borrowed. Returns 0, CO_ENOTFOUND (no config.toml), CO_EPARSE, CO_ETOOBIG or
 * CO_EIO; err (may be NULL) receives one line. */
int co_k3s_rendered_read(const char *host_root, co_k3s_rendered_t *out, char *err, size_t errlen);

/* 1 when handler is in r->handlers. */
int co_k3s_rendered_has(const co_k3s_rendered_t *r, const char *handler);

#endif
