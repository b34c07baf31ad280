/* Fuzzes the ConfidentialWorkload codec: any JSON document is decoded as a CR; whatever decodes
 * is validated and matched against a few label sets, and must equal a second decode of the
 * same document (equal is reflexive across copies, release frees everything). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "co/alloc.h"
#include "cwl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const allowed[] = {"kata-qemu", "kata-clh", "gvisor"};

/* "k=v\0" pairs, as the workload projections hold them. */
static char label_one[] = "app=tenant-app\0";
static char label_data[] = "app=tenant-app\0tier=backend\0sandbox=opt-out\0t=\0";
static const co_kv_t label_sets[] = {{NULL}, {label_one}, {label_data}};

static co_cwl_t *decode(const cJSON *j, int *rc) {
  co_cwl_t *cr = co_calloc(1, co_type_cwl.size);
  cr->meta.ns = "ns";
  cr->meta.name = "cr";
  *rc = co_type_cwl.decode(j, &cr->meta);
  return cr;
}

static void release(co_cwl_t *cr) {
  co_type_cwl.release(&cr->meta);
  co_free(cr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  cJSON *j = cJSON_ParseWithLength((const char *)data, size);
  if (j == NULL)
    return 0;
  int rc, rc2;
  co_cwl_t *a = decode(j, &rc);
  co_cwl_t *b = decode(j, &rc2);
  if (rc != rc2)
    abort();
  if (rc == 0) {
    if (!co_type_cwl.equal(&a->meta, &b->meta))
      abort();
    char msg[512];
    int v = co_cwl_validate(a, allowed, 3, msg, sizeof(msg));
    if ((v == 0) != (msg[0] == '\0') || strlen(msg) >= sizeof(msg))
      abort();
    (void)co_cwl_validate(a, NULL, 0, msg, 8);
    for (size_t i = 0; i < sizeof(label_sets) / sizeof(label_sets[0]); i++) {
      int m = co_selector_matches(a, &label_sets[i]);
      int t = co_cwl_targets(a, "Deployment", "ns", "api", &label_sets[i]);
      /* selected by selector implies targeted, unless the selector is empty */
      if (m && !t && (a->match_labels.data != NULL || a->n_exprs > 0))
        abort();
    }
    (void)co_cwl_refs(a, "StatefulSet", "postgres");
  }
  release(a);
  release(b);
  cJSON_Delete(j);
  return 0;
}
