/* Fuzzes the admission webhook's AdmissionReview handling: any input is answered either with
 * a well-formed AdmissionReview response carrying the request's uid (and, when patched, a
 * base64 JSONPatch that decodes to a JSON array) or with an error and a message; never both,
 * never neither. Decisions come from co_decide, as in the controller. */
#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "co/admission.h"
#include "co/alloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const allowed[] = {"kata-qemu", "kata-clh", "gvisor"};
static const co_policy_t policy = {.allowed = allowed,
                                   .n_allowed = 3,
                                   .default_class = "kata-qemu",
                                   .ns_policy = CO_NS_POLICY_DEFAULT,
                                   .operator_namespace = "confidential-system"};

static int decide(void *ud, char kind, const co_workload_t *w, co_decision_t *out) {
  /* Hardening too, so every review of a labelled workload also exercises the hardening plan
   * and its record (co/wplan.h). */
  static const co_hardening_t hard = {1, "256Mi", 0};
  static const co_decide_cr_t cr = {"shop/cr", "gvisor", &hard};
  co_decide_input_t in = {w, NULL, NULL, 0};
  if (kind != 'p' && co_kv_get(&w->labels, "tier") != NULL) {
    in.crs = &cr;
    in.n_crs = 1;
  }
  (void)ud;
  return co_decide(&policy, &in, out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  co_admission_t a;
  memset(&a, 0, sizeof(a));
  a.decide = decide;
  a.policy = &policy;
  a.fail_closed = size % 2;
  char *out = NULL, err[256];
  size_t len = 0;
  int rc = co_admission_review(&a, (const char *)data, size, &out, &len, err, sizeof(err));
  if (rc != 0) {
    if (out != NULL || err[0] == '\0')
      abort();
    return 0;
  }
  if (out == NULL || strlen(out) != len)
    abort();
  cJSON *r = cJSON_Parse(out);
  const cJSON *resp = cJSON_GetObjectItem(r, "response");
  if (!cJSON_IsString(cJSON_GetObjectItem(resp, "uid")) ||
      !cJSON_IsBool(cJSON_GetObjectItem(resp, "allowed")))
    abort();
  const char *p = cJSON_GetStringValue(cJSON_GetObjectItem(resp, "patch"));
  if (p != NULL) {
    size_t pl = strlen(p);
    unsigned char *dec = co_malloc(pl + 1);
    int n = EVP_DecodeBlock(dec, (const unsigned char *)p, (int)pl);
    if (n <= 0)
      abort();
    cJSON *ops = cJSON_ParseWithLength((const char *)dec, (size_t)n);
    if (!cJSON_IsArray(ops) || cJSON_GetArraySize(ops) == 0)
      abort();
    cJSON_Delete(ops);
    co_free(dec);
  }
  cJSON_Delete(r);
  co_free(out);
  return 0;
}
