/* Private to the node agent: the projection of its own Node. */
#ifndef CO_NODE_AGENTNODE_H
#define CO_NODE_AGENTNODE_H

#include "co/objects.h"

typedef struct {
  co_node_t node;       /* must come first: the shared projection */
  char *cond_status;    /* ConfidentialRuntimeReady status, or NULL */
  char *cond_reason;    /* its reason, or NULL */
  char *cond_message;   /* its message, or NULL */
  int containerd_major; /* from status.nodeInfo.containerRuntimeVersion; 0 = unknown */
} co_agent_node_t;

extern const co_resource_type_t co_type_agent_node;

#endif
