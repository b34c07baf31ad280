/* confidential-operator: flags, subcommand dispatch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "co/alloc.h"
#include "co/controller.h"
#include "co/nodeobjs.h"
#include "co/error.h"
#include "co/hostexec.h"
#include "co/log.h"
#include "co/metrics.h"
#include "co/nodeagent.h"
#include "co/status.h"

#ifndef CO_VERSION
#define CO_VERSION "0.0.0"
#endif
#ifndef CO_GIT_VERSION
#define CO_GIT_VERSION "unknown"
#endif

typedef enum {
  FLAG_STR,
  FLAG_DBL,
  FLAG_INT,
  FLAG_LONG,
  FLAG_VALIDITY,
  FLAG_BOOL,
  FLAG_LEVEL,
  FLAG_FORMAT
} flag_kind_t;

typedef struct flag_s {
  const char *name;
  flag_kind_t kind;
  void *ptr;
  const char *help;
} flag_t;

static int parse_long(const char *s, long min, long max, long *out) {
  char *end = NULL;
  long v = strtol(s, &end, 10);
  if (end == s || *end != '\0' || v < min || v > max)
    return CO_EINVAL;
  *out = v;
  return 0;
}

static int set_flag(const flag_t *f, const char *val) {
  switch (f->kind) {
  case FLAG_STR:
    *(const char **)f->ptr = val;
    return 0;
  case FLAG_DBL: {
    char *end = NULL;
    double d = strtod(val, &end);
    if (end == val || *end != '\0' || d < 0 || d > 1e6)
      return CO_EINVAL;
    *(double *)f->ptr = d;
    return 0;
  }
  case FLAG_INT: {
    long v;
    if (parse_long(val, 0, 1000000, &v) != 0)
      return CO_EINVAL;
    *(int *)f->ptr = (int)v;
    return 0;
  }
  case FLAG_LONG:
    return parse_long(val, 1, 86400, (long *)f->ptr);
  case FLAG_VALIDITY: /* seconds: a minute (tests) to ten years */
    return parse_long(val, 60, 10L * 366 * 86400, (long *)f->ptr);
  case FLAG_BOOL:
    if (strcmp(val, "true") == 0)
      *(int *)f->ptr = 1;
    else if (strcmp(val, "false") == 0)
      *(int *)f->ptr = 0;
    else
      return CO_EINVAL;
    return 0;
  case FLAG_LEVEL:
    return co_log_parse_level(val, (int *)f->ptr);
  case FLAG_FORMAT:
    return co_log_parse_format(val, (int *)f->ptr);
  }
  return CO_EINVAL;
}

static void print_flags(FILE *out, const flag_t *flags, size_t n) {
  for (size_t i = 0; i < n; i++)
    fprintf(out, "  --%-22s %s\n", flags[i].name, flags[i].help);
}

/* Accepts --name=value and --name value. Returns 0, 1 for --help, or -1 after an error. */
static int parse_flags(int argc, char **argv, const flag_t *flags, size_t n) {
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
      return 1;
    if (strncmp(a, "--", 2) != 0) {
      fprintf(stderr, "unexpected argument: %s\n", a);
      return -1;
    }
    a += 2;
    const char *eq = strchr(a, '=');
    size_t len = eq ? (size_t)(eq - a) : strlen(a);
    const flag_t *f = NULL;
    for (size_t k = 0; k < n; k++)
      if (strlen(flags[k].name) == len && strncmp(flags[k].name, a, len) == 0)
        f = &flags[k];
    if (f == NULL) {
      fprintf(stderr, "unknown flag: --%.*s\n", (int)len, a);
      return -1;
    }
    const char *val = eq ? eq + 1 : NULL;
    if (val == NULL) {
      if (i + 1 >= argc) {
        fprintf(stderr, "flag --%s needs a value\n", f->name);
        return -1;
      }
      val = argv[++i];
    }
    if (set_flag(f, val) != 0) {
      fprintf(stderr, "invalid value for --%s: %s\n", f->name, val);
      return -1;
    }
  }
  return 0;
}

static void usage(FILE *out) {
  fprintf(out,
          "confidential-operator runs Kubernetes workloads in sandboxes with their own kernel\n"
          "(Kata Containers, optionally in a TEE, or gVisor).\n\n"
          "Usage: confidential-operator <command> [flags]\n\n"
          "Commands:\n"
          "  controller   watch the cluster and reconcile (Deployment in confidential-system)\n"
          "  node-agent   prepare the node it runs on (DaemonSet on opted-in nodes)\n"
          "  status       print nodes x runtimes and workloads x state\n"
          "  version      print version and build information\n\n"
          "Run 'confidential-operator <command> --help' for the flags of a command.\n");
}

static int cmd_version(void) {
  printf("confidential-operator %s (%s)\n", CO_VERSION, CO_GIT_VERSION);
  return 0;
}

static int cmd_controller(int argc, char **argv) {
  co_controller_opts_t o;
  co_controller_opts_default(&o);
  int level = CO_LOG_INFO, format = CO_LOG_LOGFMT;
  const flag_t flags[] = {
      {"kubeconfig", FLAG_STR, &o.kubeconfig,
       "kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube/config)"},
      {"context", FLAG_STR, &o.context, "kubeconfig context (default: current-context)"},
      {"kube-api-qps", FLAG_DBL, &o.qps, "client-side API request rate limit (default 20)"},
      {"kube-api-burst", FLAG_INT, &o.burst, "client-side API request burst (default 40)"},
      {"event-qps", FLAG_DBL, &o.event_qps,
       "rate limit of Events, apart from --kube-api-qps; past it they are dropped (default 5)"},
      {"event-burst", FLAG_INT, &o.event_burst, "burst of Events (default 25)"},
      {"watch-stall-timeout", FLAG_LONG, &o.stall_timeout_s,
       "seconds without a byte before a watch is replaced (default 90)"},
      {"list-page-size", FLAG_INT, &o.list_page_size,
       "objects per page when listing (default 500)"},
      {"runtime-classes", FLAG_STR, &o.runtime_classes,
       "enabled sandbox RuntimeClasses, the only ones ever written (default kata-qemu,kata-clh,"
       "kata-qemu-coco-dev,kata-qemu-snp,kata-qemu-tdx,gvisor)"},
      {"default-runtime-class", FLAG_STR, &o.default_class,
       "class of an opt-in that names none (default kata-qemu)"},
      {"optin-env", FLAG_STR, &o.optin_env,
       "env var names that opt a workload in (default KATA,CONFIDENTIAL_RUNTIME)"},
      {"namespace-policy", FLAG_STR, &o.namespace_policy,
       "where env/annotation opt-ins count: default|akash (default default)"},
      {"operator-namespace", FLAG_STR, &o.operator_namespace,
       "the operator's own namespace, never touched (default confidential-system)"},
      {"leader-elect", FLAG_BOOL, &o.leader_elect,
       "true: only the holder of the Lease confidential-operator in --operator-namespace "
       "writes (default false; the install bundle sets true)"},
      {"leader-elect-lease-duration", FLAG_LONG, &o.lease_duration_s,
       "seconds a Lease is valid without renewal (default 15)"},
      {"leader-elect-renew-deadline", FLAG_LONG, &o.renew_deadline_s,
       "seconds the leader keeps trying to renew before it stops (default 10)"},
      {"leader-elect-retry-period", FLAG_LONG, &o.retry_period_s,
       "seconds between attempts (default 2)"},
      {"leader-elect-identity", FLAG_STR, &o.identity,
       "identity in the Lease (default hostname_pid)"},
      {"http-bind-address", FLAG_STR, &o.http_bind_address,
       "host:port or :port of /metrics, /healthz and /readyz; empty disables (default :8080)"},
      {"webhook-bind-address", FLAG_STR, &o.webhook_bind_address,
       "admission webhook HTTPS address host:port (default :9443; empty disables)"},
      {"webhook-config-name", FLAG_STR, &o.webhook_config_name,
       "MutatingWebhookConfiguration that gets the CA bundle (default confidential-operator)"},
      {"webhook-fail-closed", FLAG_BOOL, &o.webhook_fail_closed,
       "deny opted-in pods that would run without a sandbox class (default false)"},
      {"webhook-cert-validity", FLAG_VALIDITY, &o.webhook_cert_validity_s,
       "webhook serving certificate validity in seconds, 60 or more (default 31536000)"},
      {"node-namespace", FLAG_STR, &o.node_namespace,
       "namespace (privileged) of the node-agent and kata-deploy DaemonSets and the probe pods "
       "(default confidential-nodes)"},
      {"node-agent-image", FLAG_STR, &o.node_agent_image,
       "image of the node-agent DaemonSet (default confidential-operator:dev)"},
      {"kata-deploy-version", FLAG_STR, &o.kata_deploy_version,
       "tag of quay.io/kata-containers/kata-deploy (default " CO_KATA_DEPLOY_DEFAULT_VERSION ")"},
      {"probe-image", FLAG_STR, &o.probe_image,
       "image of the sandbox probe pods, needs sh and uname (default busybox:1.36)"},
      {"probe-interval", FLAG_LONG, &o.probe_interval_s,
       "seconds between probes of a runtime on a node; also after every restart (default 3600)"},
      {"probe-timeout", FLAG_LONG, &o.probe_timeout_s,
       "seconds a probe pod may take (default 300)"},
      {"restart-timeout", FLAG_LONG, &o.restart_timeout_s,
       "seconds after which a granted k3s restart is reported as not completing (default 900)"},
      {"eviction-timeout", FLAG_LONG, &o.eviction_timeout_s,
       "seconds of blocked evictions before removal reports EvictionTimedOut (default 600)"},
      {"node-resync", FLAG_LONG, &o.node_resync_s,
       "seconds between re-applies of the DaemonSets and RuntimeClasses (default 60)"},
      {"shutdown-timeout", FLAG_LONG, &o.shutdown_timeout_s,
       "seconds a shutdown may take after SIGTERM; then the parts still open are logged and "
       "the process exits 3, as on a second signal (default 25)"},
      {"log-level", FLAG_LEVEL, &level, "debug|info|warn|error (default info)"},
      {"log-format", FLAG_FORMAT, &format, "logfmt|json (default logfmt)"},
  };
  size_t n = sizeof(flags) / sizeof(flags[0]);
  int rc = parse_flags(argc, argv, flags, n);
  if (rc != 0) {
    FILE *out = rc > 0 ? stdout : stderr;
    fprintf(out, "Usage: confidential-operator controller [flags]\n\nFlags:\n");
    print_flags(out, flags, n);
    return rc > 0 ? 0 : 2;
  }
  co_log_set_level(level);
  co_log_set_format(format);
  co_metrics_init_operator(CO_VERSION, CO_GIT_VERSION);
  rc = co_controller_run(&o);
  co_metrics_free_all();
  return rc;
}

static int cmd_status(int argc, char **argv) {
  co_status_opts_t o;
  co_status_opts_default(&o);
  int level = CO_LOG_WARN;
  const flag_t flags[] = {
      {"kubeconfig", FLAG_STR, &o.kubeconfig,
       "kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube/config)"},
      {"context", FLAG_STR, &o.context, "kubeconfig context (default: current-context)"},
      {"namespace", FLAG_STR, &o.namespace,
       "-n: only the CRs and workloads of this namespace (default: all)"},
      {"output", FLAG_STR, &o.output, "-o: table|json (default table)"},
      {"all-workloads", FLAG_BOOL, &o.all_workloads,
       "also list Deployments/StatefulSets with a runtimeClassName or opt-in"},
      {"runtime-classes", FLAG_STR, &o.runtime_classes,
       "runtime classes always shown as node columns (comma list)"},
      {"optin-env", FLAG_STR, &o.optin_env,
       "env var names that opt a workload in (default KATA,CONFIDENTIAL_RUNTIME)"},
      {"list-page-size", FLAG_INT, &o.page_size, "objects per list page (default 500)"},
      {"log-level", FLAG_LEVEL, &level, "debug|info|warn|error (default warn)"},
  };
  size_t n = sizeof(flags) / sizeof(flags[0]);
  /* kubectl-style spellings: -n NS, -o FORMAT, and --all-workloads without a value. */
  static char ns_flag[] = "--namespace", out_flag[] = "--output";
  static char all_flag[] = "--all-workloads=true";
  char **args = co_calloc((size_t)argc + 1, sizeof(char *));
  for (int i = 0; i < argc; i++) {
    char *a = argv[i];
    args[i] = strcmp(a, "-n") == 0                ? ns_flag
              : strcmp(a, "-o") == 0              ? out_flag
              : strcmp(a, "--all-workloads") == 0 ? all_flag
                                                  : a;
  }
  int rc = parse_flags(argc, args, flags, n);
  co_free(args);
  if (rc != 0) {
    FILE *out = rc > 0 ? stdout : stderr;
    fprintf(out, "Usage: confidential-operator status [flags]\n\n"
                 "Prints the nodes with their runtime readiness, the ConfidentialWorkloads and\n"
                 "the state of their workloads. Exit status 1 after an API error.\n\nFlags:\n");
    print_flags(out, flags, n);
    return rc > 0 ? 0 : 2;
  }
  co_log_set_level(level);
  return co_status_run(&o);
}

static int cmd_node_agent(int argc, char **argv) {
  co_node_agent_opts_t o;
  co_node_agent_opts_default(&o);
  int level = CO_LOG_INFO, format = CO_LOG_LOGFMT;
  const flag_t flags[] = {
      {"kubeconfig", FLAG_STR, &o.kubeconfig,
       "kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube/config)"},
      {"host-root", FLAG_STR, &o.host_root, "where the host's / is mounted (default /host)"},
      {"node-name", FLAG_STR, &o.node_name, "this node's name (default $NODE_NAME)"},
      {"restart-command", FLAG_STR, &o.restart_command,
       "shell command restarting k3s, run with /bin/sh -c and $CO_K3S_UNIT set (default: "
       "systemctl restart <k3s.service|k3s-agent.service> in PID 1's namespaces)"},
      {"runtime-classes", FLAG_STR, &o.runtime_classes,
       "enabled sandbox RuntimeClasses; Kata handlers are configured for those the hardware "
       "offers (default kata-qemu,kata-clh,kata-qemu-coco-dev,kata-qemu-snp,kata-qemu-tdx,"
       "gvisor)"},
      {"restart-timeout", FLAG_LONG, &o.restart_timeout_s,
       "seconds for the node to be Ready with the runtimes loaded after a restart (default 300)"},
      {"resync-period", FLAG_LONG, &o.resync_s,
       "seconds between passes without a Node change (default 300)"},
      {"once", FLAG_BOOL, &o.once,
       "one pass: publish the result and exit (1 if Failed or Refused)"},
      {"log-level", FLAG_LEVEL, &level, "debug|info|warn|error (default info)"},
      {"log-format", FLAG_FORMAT, &format, "logfmt|json (default logfmt)"},
  };
  size_t n = sizeof(flags) / sizeof(flags[0]);
  static char once_flag[] = "--once=true";
  char **args = co_calloc((size_t)argc + 1, sizeof(char *));
  for (int i = 0; i < argc; i++)
    args[i] = strcmp(argv[i], "--once") == 0 ? once_flag : argv[i];
  int rc = parse_flags(argc, args, flags, n);
  co_free(args);
  if (rc != 0) {
    FILE *out = rc > 0 ? stdout : stderr;
    fprintf(out, "Usage: confidential-operator node-agent [flags]\n\n"
                 "Prepares the k3s node it runs on for the sandbox runtimes (containerd\n"
                 "template, gVisor drop-in, hardware labels) and restarts k3s when the\n"
                 "controller grants it. Runs in the node-agent DaemonSet.\n\nFlags:\n");
    print_flags(out, flags, n);
    return rc > 0 ? 0 : 2;
  }
  co_log_set_level(level);
  co_log_set_format(format);
  return co_node_agent_run(&o);
}

int main(int argc, char **argv) {
  if (co_alloc_install_hooks() != 0) {
    fprintf(stderr, "confidential-operator: cannot initialise libraries\n");
    return 1;
  }
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
    usage(stdout);
    return 0;
  }
  if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0)
    return cmd_version();
  if (strcmp(cmd, "controller") == 0)
    return cmd_controller(argc - 2, argv + 2);
  if (strcmp(cmd, "status") == 0)
    return cmd_status(argc - 2, argv + 2);
  if (strcmp(cmd, "node-agent") == 0)
    return cmd_node_agent(argc - 2, argv + 2);
  /* Internal: the node agent's default restart command re-executes the binary with it. */
  if (strcmp(cmd, "host-exec") == 0)
    return co_host_exec(argv + 2 + (argc > 2 && strcmp(argv[2], "--") == 0));
  fprintf(stderr, "unknown command: %s\n\n", cmd);
  usage(stderr);
  return 2;
}
