/* The node agent's view of its own Node: the shared node projection (co_type_nodes) plus the
 * agent's condition and the container runtime version, which only the agent reads. */
#include "agentnode.h"

#include <stdlib.h>
#include <string.h>

#include "co/alloc.h"
#include "co/error.h"
#include "co/nodeagent.h"
#include "co/nodeproto.h"

static char *dup_item(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsString(v) ? co_strdup(v->valuestring) : NULL;
}

static int decode(const cJSON *obj, co_obj_t *out) {
  int rc = co_type_nodes.decode(obj, out);
  if (rc != 0)
    return rc;
  co_agent_node_t *n = (co_agent_node_t *)out;
  const cJSON *status = cJSON_GetObjectItemCaseSensitive(obj, "status");
  const cJSON *c;
  cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(status, "conditions")) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(c, "type");
    if (!cJSON_IsString(t) || strcmp(t->valuestring, CO_NODE_COND_RUNTIME_READY) != 0)
      continue;
    n->cond_status = dup_item(c, "status");
    n->cond_reason = dup_item(c, "reason");
    n->cond_message = dup_item(c, "message");
    break;
  }
  const cJSON *info = cJSON_GetObjectItemCaseSensitive(status, "nodeInfo");
  const cJSON *crv = cJSON_GetObjectItemCaseSensitive(info, "containerRuntimeVersion");
  /* "containerd://2.0.4-k3s2": the major version (node-install.md §1.1 step 6 fallback). */
  if (cJSON_IsString(crv) && strncmp(crv->valuestring, "containerd://", 13) == 0) {
    const char *v = crv->valuestring + 13;
    if (v[0] >= '1' && v[0] <= '9' && (v[1] == '.' || v[1] == '\0'))
      n->containerd_major = v[0] - '0';
  }
  return CO_OK;
}

static void release(co_obj_t *o) {
  co_type_nodes.release(o);
  co_agent_node_t *n = (co_agent_node_t *)o;
  co_free(n->cond_status);
  co_free(n->cond_reason);
  co_free(n->cond_message);
}

static int str_eq(const char *a, const char *b) {
  return a == NULL || b == NULL ? a == b : strcmp(a, b) == 0;
}

static int equal(const co_obj_t *a, const co_obj_t *b) {
  const co_agent_node_t *x = (const co_agent_node_t *)a, *y = (const co_agent_node_t *)b;
  return co_type_nodes.equal(a, b) && str_eq(x->cond_status, y->cond_status) &&
         str_eq(x->cond_reason, y->cond_reason) && str_eq(x->cond_message, y->cond_message) &&
         x->containerd_major == y->containerd_major;
}

const co_resource_type_t co_type_agent_node = {
    "nodes", "/api/v1/nodes", sizeof(co_agent_node_t), decode, release, equal, NULL};

co_agent_act_t co_agent_node_action(const co_node_t *n) {
  if (n == NULL)
    return CO_AGENT_ACT_NONE;
  if (str_eq(co_kv_get(&n->annotations, CO_NODE_ANN_AGENT_ACTION), CO_NODE_AGENT_ACTION_REMOVE))
    return CO_AGENT_ACT_REMOVE;
  if (str_eq(co_kv_get(&n->labels, CO_NODE_LABEL_ENABLED), "true"))
    return CO_AGENT_ACT_PREPARE;
  return CO_AGENT_ACT_NONE;
}
