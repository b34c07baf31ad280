/* The `controller` subcommand: connects to the API server, runs the informers and (as the
 * issues land) the reconcilers, until SIGINT or SIGTERM. */
#ifndef CO_CONTROLLER_H
#define CO_CONTROLLER_H

#include <stddef.h>

typedef struct co_controller_opts_s {
  const char *kubeconfig; /* borrowed; NULL: $KUBECONFIG, in-cluster, then ~/.kube/config */
  const char *context;    /* borrowed; NULL: current-context */
  double qps;             /* client-side rate limit of every request but Events */
  int burst;
  double event_qps; /* Events' own rate limit; beyond it they wait, then are dropped */
  int event_burst;
  long stall_timeout_s; /* a watch silent for this long is replaced */
  int list_page_size;   /* objects per list page (limit) */
  /* Cluster policy (borrowed strings). */
  const char *runtime_classes;    /* comma list of enabled sandbox classes */
  const char *default_class;      /* class of an empty/"true" opt-in */
  const char *optin_env;          /* comma list of opt-in env var names */
  const char *namespace_policy;   /* "default" or "akash" */
  const char *operator_namespace; /* never touched; holds the leader election Lease */
  int leader_elect;               /* only the Lease holder writes */
  long lease_duration_s, renew_deadline_s, retry_period_s;
  const char *identity;          /* leader election identity (default: hostname_pid) */
  const char *http_bind_address; /* /metrics, /healthz, /readyz; "" or NULL: none */
  /* Admission webhook (borrowed strings). */
  const char *webhook_bind_address; /* "host:port" or ":port"; NULL or "" disables it */
  const char *webhook_config_name;  /* MutatingWebhookConfiguration that gets the caBundle */
  int webhook_fail_closed;          /* deny opted-in pods that would run unsandboxed */
  long webhook_cert_validity_s;     /* serving certificate validity */
  /* Node preparation (borrowed strings). */
  const char *node_namespace;      /* the node-agent and kata-deploy DaemonSets, probe pods */
  const char *node_agent_image;    /* image of the node-agent DaemonSet */
  const char *kata_deploy_version; /* tag of quay.io/kata-containers/kata-deploy */
  const char *probe_image;         /* probe pods: a small image with sh and uname */
  long probe_interval_s, probe_timeout_s, restart_timeout_s, eviction_timeout_s, node_resync_s;
  /* After SIGTERM/SIGINT, a shutdown still running after this long (or a second signal) logs
   * the parts still open and exits with code 3. */
  long shutdown_timeout_s;
} co_controller_opts_t;

void co_controller_opts_default(co_controller_opts_t *opts);

/* Runs until a termination signal; returns the process exit code (0 after a clean stop). */
int co_controller_run(const co_controller_opts_t *opts);

/* Loads the connection settings the way the controller does (flag, $KUBECONFIG, in-cluster,
 * ~/.kube/config). Returns 0 or a CO_E* code with a message in err. */
struct co_kubeconfig_s;
int co_controller_load_config(struct co_kubeconfig_s *cfg, const char *kubeconfig,
                              const char *context, char *err, size_t errlen);

#endif
