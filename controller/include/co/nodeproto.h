/* The node preparation protocol: the labels, annotations and conditions through which the
 * controller and the node agent (one per opted-in node) talk, on the Node object only. Nothing
 * else is shared between them, so either can restart at any point and pick up from the Node.
 *
 * Who writes what:
 *
 *   admin       label  enabled=true            prepare this node (removing it undoes everything)
 *   controller  label  agent=true              node-agent DaemonSet nodeSelector; set while the
 *                                              node is enabled or still being cleaned up
 *   controller  label  prepared=true           kata-deploy DaemonSet nodeSelector; set one node
 *                                              at a time (kata-deploy restarts k3s itself, so
 *                                              this label is a restart grant too)
 *   agent       labels kvm, tee, sgx, tpm (+ the NFD-style snp/tdx labels)   detected hardware
 *   controller  label  runtime.<domain>/<class>=ready   only after verification and the probe
 *   agent       ann.   agent-state             one of the CO_AGENT_* states below
 *   agent       ann.   agent-runtimes          comma list of handlers in the rendered config
 *   agent       ann.   agent-changes           what the agent wrote (paths, comma list)
 *   agent       ann.   restart-request         opaque id: the agent needs k3s restarted
 *   controller  ann.   restart-grant           the id granted; at most one node of the cluster
 *                                              holds a grant (or prepared= without kata-deploy
 *                                              done); servers are granted last
 *   agent                                      after the restart and Ready=True: removes
 *                                              restart-request; the controller then removes
 *                                              restart-grant and may grant the next node
 *   controller  ann.   agent-action=remove     workloads evicted: the agent removes what it
 *                                              added (restart under the same grant rules) and
 *                                              sets agent-state=Removed; the controller then
 *                                              clears every label/annotation/condition here
 *   agent       cond.  ConfidentialRuntimeReady     reason = agent state, message = details
 *
 * The agent acts only on a node labelled enabled=true (prepare) or annotated agent-action=remove
 * (undo); elsewhere, and once it reported Removed with nothing left to remove, it writes nothing,
 * so the controller's clearing (two writes, in either order) is never written back.
 *   controller  cond.  ConfidentialSandboxVerified  probe results per class with times
 */
#ifndef CO_NODEPROTO_H
#define CO_NODEPROTO_H

#include "co/objects.h" /* CO_DOMAIN */

#define CO_NODE_LABEL_ENABLED CO_DOMAIN "/enabled"
#define CO_NODE_LABEL_AGENT CO_DOMAIN "/agent"
#define CO_NODE_LABEL_PREPARED CO_DOMAIN "/prepared"
#define CO_NODE_RUNTIME_LABEL_PREFIX "runtime." CO_DOMAIN "/" /* + class, value "ready" */

#define CO_NODE_ANN_AGENT_STATE CO_DOMAIN "/agent-state"
#define CO_NODE_ANN_AGENT_RUNTIMES CO_DOMAIN "/agent-runtimes"
#define CO_NODE_ANN_AGENT_CHANGES CO_DOMAIN "/agent-changes"
#define CO_NODE_ANN_RESTART_REQUEST CO_DOMAIN "/restart-request"
#define CO_NODE_ANN_RESTART_GRANT CO_DOMAIN "/restart-grant"
#define CO_NODE_ANN_AGENT_ACTION CO_DOMAIN "/agent-action"
#define CO_NODE_AGENT_ACTION_REMOVE "remove"

#define CO_NODE_COND_RUNTIME_READY "ConfidentialRuntimeReady"
#define CO_NODE_COND_SANDBOX_VERIFIED "ConfidentialSandboxVerified"

/* Agent states (annotation value and ConfidentialRuntimeReady reason). */
#define CO_AGENT_DETECTING "Detecting"
#define CO_AGENT_RESTART_REQUESTED "RestartRequested" /* waiting for restart-grant */
#define CO_AGENT_RESTARTING "Restarting"
#define CO_AGENT_PREPARED "Prepared" /* condition status True */
#define CO_AGENT_REFUSED "Refused"   /* template not understood: nothing written */
#define CO_AGENT_FAILED "Failed"     /* a host write or the restart failed */
#define CO_AGENT_REMOVING "Removing"
#define CO_AGENT_REMOVED "Removed"

#endif
