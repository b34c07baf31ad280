/* The `node-agent` subcommand: prepares the k3s node it runs on for the sandbox runtimes and
 * talks to the controller only through its own Node object (protocol: co/nodeproto.h).
 *
 * One pass (co_agent_pass, blocking host I/O, run on libuv's thread pool) detects the hardware
 * and the k3s generation, writes or removes the containerd template changes
 * (co/nodetemplate.h) and reads the rendered config back (co/noderendered.h). The loop side
 * (co_node_agent_run) publishes the result on the Node and runs the restart handshake:
 *
 *   pass --change needs a restart--> RestartRequested (restart-request=<id>)
 *        --restart-grant == <id>--> Restarting (runs the restart command)
 *        --exit 0, Node Ready, rendered config lists the handlers--> Prepared (request removed)
 *   agent-action=remove: the same with co_nodetemplate_remove, ending in Removed.
 *   Template not understood: Refused, nothing written. A failed write, restart or check: Failed.
 */
#ifndef CO_NODEAGENT_H
#define CO_NODEAGENT_H

#include <stddef.h>

#include "co/hardware.h"
#include "co/noderendered.h"
#include "co/nodetemplate.h"
#include "co/objects.h"

#define CO_AGENT_MAX_KATA 8

typedef struct {
  const char *host_root;      /* borrowed */
  int remove;                 /* agent-action=remove: undo instead of prepare */
  const char *const *enabled; /* borrowed, NULL-terminated: enabled RuntimeClasses; Kata
                                 handlers are those of co_hw_kata_classes among them */
  int containerd_major_hint;  /* from the Node's containerRuntimeVersion; 0 = unknown */
} co_agent_pass_in_t;

typedef struct {
  co_hw_t hw;
  co_hw_label_t labels[8];
  size_t nlabels;
  const char *kata[CO_AGENT_MAX_KATA + 1]; /* static names, NULL-terminated */
  int rc;                                  /* 0, or the detection / apply / remove error */
  co_k3s_node_t k3s;                       /* valid when detection succeeded */
  int detected;
  co_nodetemplate_result_t res; /* owned: co_agent_pass_free */
  co_k3s_rendered_t rendered;   /* valid when rendered_rc == 0 */
  int rendered_rc;
  char expected[256]; /* handlers the rendered config must list (comma list) */
  int verified;       /* prepare: every expected handler listed (and, v3, the
                         drop-in dir imported); remove: nothing of ours left */
  int refused;        /* rc means "not understood": nothing was written */
  char message[768];  /* one line for the node condition */
} co_agent_pass_out_t;

/* Runs one pass against the host (blocking). Fills out in every case; free with
 * co_agent_pass_free. Thread-safe as long as two passes never share a host root. */
void co_agent_pass(const co_agent_pass_in_t *in, co_agent_pass_out_t *out);
void co_agent_pass_free(co_agent_pass_out_t *out);

/* What the agent's Node (borrowed) asks of it: remove when annotated agent-action=remove,
 * prepare when labelled enabled=true, otherwise nothing: its pods are being evicted before the
 * removal, or the controller cleared the Node after it and the agent's pod is about to stop.
 * A pass there would prepare the node again or write back what the controller cleared. */
typedef enum { CO_AGENT_ACT_NONE, CO_AGENT_ACT_PREPARE, CO_AGENT_ACT_REMOVE } co_agent_act_t;
co_agent_act_t co_agent_node_action(const co_node_t *n);

typedef struct {
  const char *kubeconfig;      /* borrowed; NULL: $KUBECONFIG, in-cluster, ~/.kube/config */
  const char *host_root;       /* default "/host" */
  const char *node_name;       /* default $NODE_NAME */
  const char *restart_command; /* NULL: `systemctl restart <unit>` in PID 1's namespaces
                                  (co_host_exec); else /bin/sh -c, $CO_K3S_UNIT = the unit */
  const char *runtime_classes; /* comma list of enabled classes */
  long restart_timeout_s;      /* Ready + verified after a restart, else Failed (default 300) */
  long resync_s;               /* a pass at least this often (default 300) */
  int once;                    /* one pass, publish, exit */
} co_node_agent_opts_t;

void co_node_agent_opts_default(co_node_agent_opts_t *opts);

/* Runs until SIGINT/SIGTERM (or after one pass with once). Returns the exit code: 0, 1 when
 * the last state is Failed or Refused (once) or on a fatal error, 2 for bad options. */
int co_node_agent_run(const co_node_agent_opts_t *opts);

#endif
