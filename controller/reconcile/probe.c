/* Probe pods: their projection and the verdict on what they report (see co/nodeprep.h). */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "co/alloc.h"
#include "co/error.h"
#include "co/nodeprep.h"

static const cJSON *get(const cJSON *o, const char *k) {
  return cJSON_GetObjectItemCaseSensitive(o, k);
}

static char *dup_json_str(const cJSON *v) {
  return cJSON_IsString(v) && v->valuestring != NULL ? co_strdup(v->valuestring) : NULL;
}

static int probe_decode(const cJSON *obj, co_obj_t *out) {
  co_probe_pod_t *p = (co_probe_pod_t *)out;
  const cJSON *spec = get(obj, "spec"), *status = get(obj, "status");
  p->node = dup_json_str(get(spec, "nodeName"));
  p->class = dup_json_str(get(get(get(obj, "metadata"), "annotations"), CO_DOMAIN "/probe-class"));
  const cJSON *cs = cJSON_GetArrayItem(get(status, "containerStatuses"), 0);
  const cJSON *state = get(cs, "state");
  const cJSON *term = get(state, "terminated");
  if (cJSON_IsObject(term)) {
    p->finished = 1;
    const cJSON *ec = get(term, "exitCode");
    p->exit_code = cJSON_IsNumber(ec) ? ec->valueint : -1;
    p->message = dup_json_str(get(term, "message"));
    p->reason = dup_json_str(get(term, "reason"));
  } else if (cJSON_IsObject(get(state, "waiting"))) {
    p->reason = dup_json_str(get(get(state, "waiting"), "reason"));
  }
  if (p->reason == NULL)
    p->reason = dup_json_str(get(status, "phase"));
  return CO_OK;
}

static void probe_release(co_obj_t *o) {
  co_probe_pod_t *p = (co_probe_pod_t *)o;
  co_free(p->node);
  co_free(p->class);
  co_free(p->message);
  co_free(p->reason);
}

static int same(const char *a, const char *b) {
  return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static int probe_equal(const co_obj_t *a, const co_obj_t *b) {
  const co_probe_pod_t *x = (const co_probe_pod_t *)a, *y = (const co_probe_pod_t *)b;
  return x->finished == y->finished && x->exit_code == y->exit_code && same(x->node, y->node) &&
         same(x->class, y->class) && same(x->message, y->message) && same(x->reason, y->reason);
}

const co_resource_type_t co_type_probe_pods = {"probe pods", "/api/v1/pods", sizeof(co_probe_pod_t),
                                               probe_decode, probe_release,  probe_equal,
                                               NULL};

int co_probe_verdict(const co_probe_pod_t *p, const char *host_kernel, char *kernel,
                     size_t kernel_len, char *msg, size_t msg_len) {
  kernel[0] = '\0';
  const char *m = p->message != NULL ? p->message : "";
  while (*m != '\0' && isspace((unsigned char)*m))
    m++;
  size_t n = 0;
  while (m[n] != '\0' && !isspace((unsigned char)m[n]) && n + 1 < kernel_len)
    n++;
  memcpy(kernel, m, n);
  kernel[n] = '\0';
  if (p->exit_code != 0 || n == 0) {
    snprintf(msg, msg_len, "probe pod %s (exit code %d) without a kernel version",
             p->reason ? p->reason : "failed", p->exit_code);
    return 0;
  }
  if (host_kernel == NULL || host_kernel[0] == '\0') {
    snprintf(msg, msg_len, "sandbox kernel %s, but the node reports no kernelVersion to compare",
             kernel);
    return 0;
  }
  if (strcmp(kernel, host_kernel) == 0) {
    snprintf(msg, msg_len,
             "sandbox kernel %s is the host's kernel: the runtime does not isolate the kernel",
             kernel);
    return 0;
  }
  snprintf(msg, msg_len, "sandbox kernel %s differs from the host's %s", kernel, host_kernel);
  return 1;
}
