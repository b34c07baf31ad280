/* The `status` subcommand: a one-shot report for a user's shell (kubeconfig, like kubectl).
 *
 * Lists, concurrently and page by page (limit + continue), the Nodes, the
 * ConfidentialWorkloads (all namespaces or one), the RuntimeClasses the operator manages
 * (best effort: they only add columns) and, with all_workloads, the Deployments and
 * StatefulSets; then prints, once every list is complete:
 *
 *   NODES                  NAME READY OPTED-IN <one column per runtime class> TEE KERNEL
 *                          [RUNTIME-READY, with footnotes holding the condition messages]
 *   CONFIDENTIALWORKLOADS  NAMESPACE NAME RUNTIME READY REASON WORKLOADS
 *   WORKLOADS              NAMESPACE CWL KIND/NAME PHASE SANDBOXED MESSAGE
 *   OPTED-IN WORKLOADS     NAMESPACE KIND/NAME RUNTIME ORIGINAL OPT-IN READY (all_workloads)
 *
 * or, with output "json", one object:
 *   {"nodes":[...], "runtimeClasses":[...], "confidentialWorkloads":[...], "workloads":[...],
 *    "allWorkloads":[...] (all_workloads only), "errors":[...]}
 * where a list that failed is null and explained in "errors".
 *
 * Runtime class columns: every class named by a runtime.confidential.cypherpunk.io/<class>
 * node label, every RuntimeClass whose scheduling.nodeSelector uses such a label, every class
 * a ConfidentialWorkload requests or runs with, and runtime_classes. */
#ifndef CO_STATUS_H
#define CO_STATUS_H

#include <stdio.h>

typedef struct co_status_opts_s {
  const char *kubeconfig;      /* borrowed; NULL: $KUBECONFIG, in-cluster, then ~/.kube/config */
  const char *context;         /* borrowed; NULL: current-context */
  const char *namespace;       /* borrowed; NULL or "": every namespace */
  const char *output;          /* "table" (default) or "json" */
  int all_workloads;           /* also list opted-in Deployments/StatefulSets, CR or not */
  const char *runtime_classes; /* comma list of classes always shown as columns, or NULL */
  const char *optin_env;       /* comma list of opt-in env var names (default
                                  "KATA,CONFIDENTIAL_RUNTIME"), for all_workloads */
  int page_size;               /* objects per list page (default 500) */
  long request_timeout_s;      /* per request (default 30) */
  FILE *out;                   /* report (default stdout) */
  FILE *err;                   /* errors (default stderr) */
} co_status_opts_t;

void co_status_opts_default(co_status_opts_t *opts);

/* Runs the report. Returns the process exit code: 0 when every list succeeded, 1 after an API
 * or connection error (one line per failure on opts->err, with the API server's Status
 * message; whatever could be listed is still printed; a 404 on the ConfidentialWorkload list
 * is reported as the CRD not being installed), 2 for invalid options. */
int co_status_run(const co_status_opts_t *opts);

#endif
