/* k3s containerd configuration for the node agent: detection of the k3s generation and the
 * planned, atomic, reversible change that makes the Kata and gVisor runtimes available.
 *
 * Facts (shared/reference/node-install.md §0, §1.1 step 6, §2, §4, §6):
 *   - k3s renders /var/lib/rancher/k3s/agent/etc/containerd/config.toml at every start from
 *     config-v3.toml.tmpl (containerd 2.x, `version = 3`) or config.toml.tmpl (containerd 1.x,
 *     `version = 2`); `{{ template "base" . }}` expands to the stock configuration.
 *   - Recent k3s (PR #13680) makes the base import config-v3.toml.d/ (config.toml.d/ for v2).
 *   - Never redeclare a table the base declares; never copy the rendered config into a template.
 *
 * What is written, per generation (paths relative to the host root):
 *   v3, base imports config-v3.toml.d: no template; the gVisor drop-in
 *       config-v3.toml.d/confidential-operator-runsc.toml (kata-deploy >= 3.28 writes its own).
 *   v3, no import: config-v3.toml.tmpl = an `imports` entry for config-v3.toml.d/ (glob *.toml)
 *       then `{{ template "base" . }}` (the root-table key must come before the base: after the
 *       base's last table header it would belong to that table), plus the gVisor drop-in.
 *   v2 (containerd 1.x, imports replace whole plugin sections): config.toml.tmpl =
 *       `{{ template "base" . }}` followed by the Kata and runsc runtime tables.
 *   runsc.toml next to config.toml, and the runsc tables, only when both `runsc` and
 *   `containerd-shim-runsc-v1` are on the k3s service PATH (node-install.md §2, §4).
 * Every file written starts with a marker line carrying a hash of the rest, so that the agent
 * recognises its own unmodified files; anything else is never overwritten. */
#ifndef CO_NODETEMPLATE_H
#define CO_NODETEMPLATE_H

#include <stddef.h>

typedef enum { CO_K3S_UNKNOWN = 0, CO_K3S_SERVER = 1, CO_K3S_AGENT = 2 } co_k3s_role_t;

/* Host-absolute paths (to be prefixed by the host root). */
#define CO_K3S_CONTAINERD_DIR "/var/lib/rancher/k3s/agent/etc/containerd"
#define CO_K3S_RUNSC_DROPIN "confidential-operator-runsc.toml"
#define CO_K3S_DROPIN_CREATED ".confidential-operator-created"

typedef struct {
  int role;                    /* co_k3s_role_t */
  const char *unit;            /* static: "k3s.service" / "k3s-agent.service" / NULL */
  int config_version;          /* `version` of the rendered config.toml: 2 or 3 */
  int containerd_major;        /* 1 for a v2 config, 2 for v3 */
  const char *template_name;   /* static: "config.toml.tmpl" or "config-v3.toml.tmpl" */
  const char *dropin_dir_name; /* static: "config.toml.d" or "config-v3.toml.d" */
  int base_imports_dropin;     /* the rendered config imports the drop-in dir (not via us) */
  int systemd_cgroup;          /* the rendered config sets SystemdCgroup = true */
  int has_runsc;               /* runsc and containerd-shim-runsc-v1 on the k3s PATH */
} co_k3s_node_t;

typedef struct {
  /* Kata handlers whose runtime tables go into a v2 template ("kata-qemu", "kata-qemu-snp"...;
   * borrowed, NULL-terminated, may be NULL). With v3 kata-deploy writes its own drop-in. */
  const char *const *kata_handlers;
  /* containerd major from the Node's containerRuntimeVersion, used only when the rendered
   * config has no `version` line (node-install.md §1.1 step 6); 0 = unknown. */
  int containerd_major_hint;
} co_nodetemplate_opts_t;

typedef struct {
  char **changed; /* owned: host-absolute paths written or removed */
  size_t nchanged;
  int restart_needed; /* k3s must be restarted for the change to take effect */
  int unchanged;      /* nothing was written or removed */
  char message[512];  /* one line for the node condition */
} co_nodetemplate_result_t;

/* Detects the k3s generation under host_root (borrowed). Returns 0, CO_ENOTFOUND (no k3s unit
 * or no rendered config.toml), CO_EPARSE (no usable `version`), CO_EUNSUPPORTED, CO_EIO;
 * err (may be NULL) receives one line. */
int co_k3s_detect(const char *host_root, const co_nodetemplate_opts_t *opts, co_k3s_node_t *out,
                  char *err, size_t errlen);

/* Detects, then writes what is missing (see above). Idempotent. Returns 0 (res filled),
 * CO_EUNSUPPORTED (a template or file not written by us is in the way: nothing changed),
 * CO_EPARSE (a corrupt template), or a detection / CO_EIO error; res->message explains. The
 * caller frees res with co_nodetemplate_result_free in every case. */
int co_nodetemplate_apply(const char *host_root, const co_nodetemplate_opts_t *opts,
                          co_nodetemplate_result_t *res);

/* Removes exactly what co_nodetemplate_apply wrote: restores each `.co-backup` (byte-identical)
 * or deletes the created file; files modified since are left alone and reported. */
int co_nodetemplate_remove(const char *host_root, co_nodetemplate_result_t *res);

void co_nodetemplate_result_free(co_nodetemplate_result_t *res);

#endif
