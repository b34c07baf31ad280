/* The controller process: client, informers, reconciler, signals, orderly shutdown. */
#include "co/controller.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "co/alloc.h"
#include "co/client.h"
#include "co/error.h"
#include "co/kubeconfig.h"
#include "co/log.h"
#include "co/objects.h"
#include "co/lease.h"
#include "co/metrics.h"
#include "co/nodeproto.h"
#include "co/ops.h"
#include "co/nodeprep.h"
#include "co/reconcile.h"
#include "co/webhook.h"
#include "cwl.h"

enum {
  INF_DEPLOYMENTS,
  INF_STATEFULSETS,
  INF_NODES,
  INF_NAMESPACES,
  INF_PODS,
  INF_CWLS,
  INF_PROBES, /* node preparation's probe pods only (label selector) */
  INF_COUNT
};

#define MAX_LIST 16
#define PHASES_EVERY_MS 5000
/* Exit code of a shutdown that did not finish (deadline passed, or a second signal). */
#define EXIT_SHUTDOWN_INCOMPLETE 3

/* Parts that report closed; what is still set when the shutdown deadline passes is logged. */
enum {
  PART_OPS = 1u << 0,
  PART_NODEPREP = 1u << 1,
  PART_WEBHOOK = 1u << 2,
  PART_RECONCILER = 1u << 3,
  PART_LEASE = 1u << 4,
  PART_CLIENT = 1u << 5
};

typedef struct app_s {
  uv_loop_t loop;
  co_client_t client;
  co_informer_t informers[INF_COUNT];
  co_reconciler_t rec;
  co_nodeprep_t np;
  co_lease_t lease;
  co_ops_t ops;
  int ops_open;
  uint64_t phases_at; /* loop time of the last workloads-by-phase count */
  co_webhook_t webhook;
  int webhook_on;
  int leader_elect;
  co_policy_t policy;
  char *lists; /* owned copy of the comma lists, split in place */
  const char *classes[MAX_LIST];
  const char *optin[MAX_LIST];
  uv_signal_t sigint, sigterm;
  uv_timer_t deadline; /* armed by stop(): a shutdown must end within shutdown_timeout_ms */
  uint64_t shutdown_timeout_ms;
  unsigned open_parts; /* PART_* not yet reported closed */
  unsigned char inf_open[INF_COUNT];
  int informers_open;
  int synced;
  int started;
  int stopping;
  int exit_code;
  uint64_t started_ms;
} app_t;

void co_controller_opts_default(co_controller_opts_t *o) {
  memset(o, 0, sizeof(*o));
  o->qps = 20;
  o->burst = 40;
  o->event_qps = 5;
  o->event_burst = 25;
  o->stall_timeout_s = 90;
  o->list_page_size = 500;
  o->runtime_classes = "kata-qemu,kata-clh,kata-qemu-coco-dev,kata-qemu-snp,kata-qemu-tdx,gvisor";
  o->default_class = "kata-qemu";
  o->optin_env = "KATA,CONFIDENTIAL_RUNTIME";
  o->namespace_policy = "default";
  o->operator_namespace = "confidential-system";
  o->lease_duration_s = 15;
  o->renew_deadline_s = 10;
  o->retry_period_s = 2;
  o->http_bind_address = ":8080";
  o->webhook_bind_address = ":9443";
  o->webhook_config_name = "confidential-operator";
  o->webhook_cert_validity_s = 365L * 24 * 3600;
  o->node_namespace = "confidential-nodes";
  o->node_agent_image = "confidential-operator:dev";
  o->kata_deploy_version = CO_KATA_DEPLOY_DEFAULT_VERSION;
  o->probe_image = "busybox:1.36";
  o->probe_interval_s = 3600;
  o->probe_timeout_s = 300;
  o->restart_timeout_s = 900;
  o->eviction_timeout_s = 600;
  o->node_resync_s = 60;
  o->shutdown_timeout_s = 25;
}

int co_controller_load_config(co_kubeconfig_t *cfg, const char *kubeconfig, const char *context,
                              char *err, size_t errlen) {
  if (kubeconfig != NULL && kubeconfig[0] != '\0')
    return co_kubeconfig_load(cfg, kubeconfig, context, err, errlen);
  const char *env = getenv("KUBECONFIG");
  if (env != NULL && env[0] != '\0')
    return co_kubeconfig_load(cfg, NULL, context, err, errlen);
  if (getenv("KUBERNETES_SERVICE_HOST") != NULL)
    return co_kubeconfig_in_cluster(cfg, NULL, err, errlen);
  return co_kubeconfig_load(cfg, NULL, context, err, errlen);
}

/* Splits a comma list in place (s is modified); returns the count or -1 past max. */
static int split_list(char *s, const char **out, int max) {
  int n = 0;
  while (s != NULL && *s != '\0') {
    char *comma = strchr(s, ',');
    if (comma != NULL)
      *comma = '\0';
    if (*s != '\0') {
      if (n == max)
        return -1;
      out[n++] = s;
    }
    s = comma != NULL ? comma + 1 : NULL;
  }
  return n;
}

static int setup_policy(app_t *app, const co_controller_opts_t *o) {
  size_t a = strlen(o->runtime_classes), b = strlen(o->optin_env);
  app->lists = malloc(a + b + 2);
  if (app->lists == NULL)
    return CO_ENOMEM;
  memcpy(app->lists, o->runtime_classes, a + 1);
  memcpy(app->lists + a + 1, o->optin_env, b + 1);
  int nc = split_list(app->lists, app->classes, MAX_LIST);
  int ne = split_list(app->lists + a + 1, app->optin, MAX_LIST);
  if (nc <= 0 || ne < 0) {
    co_log(CO_LOG_ERROR, "invalid --runtime-classes or --optin-env (1 to 16 names)");
    return CO_EINVAL;
  }
  app->policy.allowed = app->classes;
  app->policy.n_allowed = (size_t)nc;
  app->policy.default_class = o->default_class;
  app->policy.operator_namespace = o->operator_namespace;
  if (strcmp(o->namespace_policy, "akash") == 0)
    app->policy.ns_policy = CO_NS_POLICY_AKASH;
  else if (strcmp(o->namespace_policy, "default") == 0)
    app->policy.ns_policy = CO_NS_POLICY_DEFAULT;
  else {
    co_log(CO_LOG_ERROR, "invalid --namespace-policy (default or akash)",
           CO_S("value", o->namespace_policy));
    return CO_EINVAL;
  }
  if (!co_decide_class_allowed(&app->policy, o->default_class)) {
    co_log(CO_LOG_ERROR, "--default-runtime-class is not one of --runtime-classes",
           CO_S("class", o->default_class));
    return CO_EINVAL;
  }
  co_objects_set_optin_env(app->optin, (unsigned)ne);
  return CO_OK;
}

static const char *type_name(co_informer_t *inf) { return inf->type->name; }

/* The reconciler writes; it runs once the caches are warm and, with leader election, only
 * in the Lease holder. */
static void maybe_start(app_t *app) {
  if (app->started || app->stopping || app->synced < INF_COUNT)
    return;
  if (app->leader_elect && !app->lease.leading)
    return;
  if (co_reconciler_start(&app->rec) == 0 && co_nodeprep_start(&app->np) == 0)
    app->started = 1;
}

static void stop(app_t *app);

static void on_lease_started(co_lease_t *l) {
  app_t *app = l->data;
  if (app->webhook_on)
    co_webhook_set_leader(&app->webhook, 1);
  maybe_start(app);
}

static void on_lease_stopped(co_lease_t *l) {
  app_t *app = l->data;
  /* Never two writers: a replica that lost the Lease stops; its supervisor restarts it. */
  co_log(CO_LOG_ERROR, "leadership lost, stopping");
  app->exit_code = 1;
  stop(app);
}

static int index_of(app_t *app, co_informer_t *inf) { return (int)(inf - app->informers); }

/* Routes a change to the reconciler keys it affects (only once it runs). */
static void notify(co_informer_t *inf, const co_obj_t *o) {
  app_t *app = inf->data;
  if (!app->started)
    return;
  switch (index_of(app, inf)) {
  case INF_DEPLOYMENTS:
    co_reconciler_workload_changed(&app->rec, 'd', o);
    break;
  case INF_STATEFULSETS:
    co_reconciler_workload_changed(&app->rec, 's', o);
    break;
  case INF_NODES:
    co_reconciler_nodes_changed(&app->rec);
    co_nodeprep_changed(&app->np);
    break;
  case INF_NAMESPACES:
    co_reconciler_namespace_changed(&app->rec, o);
    break;
  case INF_PODS:
    co_reconciler_pod_changed(&app->rec, o);
    co_nodeprep_changed(&app->np);
    break;
  case INF_PROBES:
    co_nodeprep_changed(&app->np);
    break;
  case INF_CWLS:
    co_reconciler_cr_changed(&app->rec, o);
    break;
  default:
    break;
  }
}

static void on_add(co_informer_t *inf, const co_obj_t *o) {
  co_log(CO_LOG_DEBUG, "informer event", CO_S("resource", type_name(inf)), CO_S("type", "add"),
         CO_S("key", o->key));
  notify(inf, o);
}

static void on_update(co_informer_t *inf, const co_obj_t *old, const co_obj_t *o) {
  (void)old;
  co_log(CO_LOG_DEBUG, "informer event", CO_S("resource", type_name(inf)), CO_S("type", "update"),
         CO_S("key", o->key));
  notify(inf, o);
}

static void on_delete(co_informer_t *inf, const co_obj_t *o) {
  co_log(CO_LOG_DEBUG, "informer event", CO_S("resource", type_name(inf)), CO_S("type", "delete"),
         CO_S("key", o->key));
  app_t *app = inf->data;
  if (index_of(app, inf) == INF_NODES)
    co_nodeprep_node_deleted(&app->np, o->name); /* a re-created node starts afresh */
  notify(inf, o);
}

static void on_synced(co_informer_t *inf) {
  app_t *app = inf->data;
  co_log(CO_LOG_INFO, "cache synced", CO_S("resource", type_name(inf)),
         CO_I("objects", inf->count));
  if (++app->synced < INF_COUNT)
    return;
  co_log(CO_LOG_INFO, "all caches synced",
         CO_I("deployments", app->informers[INF_DEPLOYMENTS].count),
         CO_I("statefulsets", app->informers[INF_STATEFULSETS].count),
         CO_I("nodes", app->informers[INF_NODES].count),
         CO_I("confidentialworkloads", app->informers[INF_CWLS].count),
         CO_I("ms", uv_now(&app->loop) - app->started_ms), CO_I("heap_bytes", co_mem_in_use()));
  co_mem_trim();
  maybe_start(app);
}

static void on_client_closed(co_client_t *c) {
  app_t *app = c->data;
  app->open_parts &= ~PART_CLIENT;
  uv_close((uv_handle_t *)&app->deadline, NULL);
  uv_close((uv_handle_t *)&app->sigint, NULL);
  uv_close((uv_handle_t *)&app->sigterm, NULL);
}

static void on_informer_closed(co_informer_t *inf) {
  app_t *app = inf->data;
  const co_reflector_stats_t *st = &inf->reflector.stats;
  app->inf_open[index_of(app, inf)] = 0;
  co_log(CO_LOG_INFO, "informer stopped", CO_S("resource", type_name(inf)),
         CO_I("lists", st->lists), CO_I("relists", st->relists), CO_I("watches", st->watches),
         CO_I("events", st->events), CO_I("expired", st->expired), CO_I("stalls", st->stalls),
         CO_I("errors", st->errors));
  if (--app->informers_open == 0)
    co_client_close(&app->client, on_client_closed);
}

static void close_informers(app_t *app) {
  for (int i = 0; i < INF_COUNT; i++)
    co_informer_close(&app->informers[i], on_informer_closed);
}

static void on_lease_closed(co_lease_t *l) {
  app_t *app = l->data;
  app->open_parts &= ~PART_LEASE;
  close_informers(app);
}

static void on_lease_released(co_lease_t *l) { co_lease_close(l, on_lease_closed); }

static void on_reconciler_closed(co_reconciler_t *rec) {
  app_t *app = rec->data;
  const co_reconciler_stats_t *s = &rec->stats;
  app->open_parts &= ~PART_RECONCILER;
  co_log(CO_LOG_INFO, "reconciler stopped", CO_I("reconciles", s->reconciles),
         CO_I("patches", s->patches), CO_I("restores", s->restores),
         CO_I("status_writes", s->status_writes), CO_I("errors", s->write_errors),
         CO_I("events", s->events), CO_I("events_dropped", s->events_dropped));
  if (app->leader_elect)
    co_lease_release(&app->lease, on_lease_released); /* the next replica leads at once */
  else
    close_informers(app);
}

/* ---- /metrics, /healthz, /readyz ---- */

static int caches_synced(void *data, char *why, size_t whylen) {
  app_t *app = data;
  if (app->synced >= INF_COUNT)
    return 1;
  snprintf(why, whylen, "%d of %d caches synced", app->synced, INF_COUNT);
  return 0;
}

static void count_phase(void *data, const char *kind, const char *phase) {
  co_metric_add(data, (const char *const[]){kind, phase}, 1);
}

/* Gauges computed at scrape time from what the process already holds (no API request). */
static void collect(void *data) {
  app_t *app = data;
  static const char *const resource[] = {"resource", NULL}, *const kp[] = {"kind", "phase", NULL},
                           *const rc[] = {"runtime_class", NULL};
  static const char *const phases[] = {"Pending", "Patched",  "RollingOut", "Sandboxed",
                                       "Failed",  "Conflict", "Denied"};
  co_metric_t *m = co_metric_register("confidential_operator_workqueue_depth",
                                      "Keys waiting in the work queue, ready to be reconciled.",
                                      CO_METRIC_GAUGE, NULL, NULL, 0);
  co_metric_set(m, NULL, (double)app->rec.queue.queued);
  m = co_metric_register("confidential_operator_leader",
                         "1 when this replica writes (holds the Lease, or runs without leader "
                         "election), else 0.",
                         CO_METRIC_GAUGE, NULL, NULL, 0);
  co_metric_set(m, NULL, !app->leader_elect || app->lease.leading ? 1 : 0);
  co_metric_t *restarts = co_metric_register(
      "confidential_operator_watch_restarts_total",
      "Watches started again after the first, per resource (server timeouts, errors, relists).",
      CO_METRIC_COUNTER, resource, NULL, 0);
  co_metric_t *relists = co_metric_register(
      "confidential_operator_relists_total",
      "Full lists after the first, per resource (expired resource version, failed watch).",
      CO_METRIC_COUNTER, resource, NULL, 0);
  for (int i = 0; i < INF_COUNT; i++) {
    const co_reflector_stats_t *st = &app->informers[i].reflector.stats;
    const char *const v[] = {type_name(&app->informers[i])};
    co_metric_set(restarts, v, st->watches > 0 ? (double)(st->watches - 1) : 0);
    co_metric_set(relists, v, (double)st->relists);
  }
  m = co_metric_register("confidential_operator_workloads",
                         "Opted-in Deployments and StatefulSets by kind and phase (as in the "
                         "ConfidentialWorkload status).",
                         CO_METRIC_GAUGE, kp, NULL, 0);
  /* A phase looks at the workload's pods: however often scraped, the loop spends that time at
   * most once per PHASES_EVERY_MS. */
  uint64_t now = uv_now(&app->loop);
  if (app->phases_at == 0 || now - app->phases_at >= PHASES_EVERY_MS) {
    co_metric_clear(m);
    for (size_t k = 0; k < 2; k++)
      for (size_t p = 0; p < sizeof(phases) / sizeof(phases[0]); p++)
        co_metric_set(m, (const char *const[]){k == 0 ? "Deployment" : "StatefulSet", phases[p]},
                      0);
    if (app->synced >= INF_COUNT) {
      co_reconciler_count_phases(&app->rec, count_phase, m);
      app->phases_at = now;
    }
  }
  m = co_metric_register("confidential_operator_nodes_ready",
                         "Nodes labelled " CO_NODE_RUNTIME_LABEL_PREFIX "<class>=ready, per class.",
                         CO_METRIC_GAUGE, rc, NULL, 0);
  co_metric_clear(m);
  for (size_t i = 0; i < app->policy.n_allowed; i++)
    co_metric_set(m, (const char *const[]){app->policy.allowed[i]}, 0);
  size_t pl = strlen(CO_NODE_RUNTIME_LABEL_PREFIX);
  for (const co_obj_t *o = co_informer_first(&app->informers[INF_NODES]); o != NULL;
       o = co_informer_next(o)) {
    CO_KV_FOREACH(&((const co_node_t *)o)->labels, p) {
      const char *eq = strchr(p, '=');
      if (eq == NULL || strncmp(p, CO_NODE_RUNTIME_LABEL_PREFIX, pl) != 0 ||
          strcmp(eq + 1, "ready") != 0)
        continue;
      char class[128];
      snprintf(class, sizeof(class), "%.*s", (int)(eq - p - (ptrdiff_t)pl), p + pl);
      co_metric_add(m, (const char *const[]){class}, 1);
    }
  }
}

static int start_ops(app_t *app, const char *address) {
  if (address == NULL || address[0] == '\0')
    return 0;
  int rc = co_ops_init(&app->loop, &app->ops);
  if (rc != 0)
    return rc;
  app->ops_open = 1;
  app->open_parts |= PART_OPS;
  app->ops.data = app;
  co_ops_add_ready_check(&app->ops, "informers-synced", caches_synced, app);
  co_metrics_add_collector(collect, app);
  rc = co_ops_listen(&app->ops, address);
  if (rc == 0)
    co_log(CO_LOG_INFO, "serving /metrics, /healthz, /readyz", CO_S("address", address),
           CO_I("port", co_http_server_port(&app->ops.http, 0)));
  return rc;
}

static void on_ops_closed(co_ops_t *ops) {
  app_t *app = ops->data;
  app->open_parts &= ~PART_OPS;
}

/* First thing on shutdown: the collector reads the informers and the reconciler. */
static void stop_ops(app_t *app) {
  if (!app->ops_open)
    return;
  app->ops_open = 0;
  co_metrics_remove_collector(collect, app);
  co_ops_close(&app->ops, on_ops_closed);
}

/* The webhook reads the reconciler's caches and uses the client: it goes first. */
static void on_webhook_closed(co_webhook_t *wh) {
  app_t *app = wh->data;
  app->open_parts &= ~PART_WEBHOOK;
  co_reconciler_close(&app->rec, on_reconciler_closed);
}

/* Node preparation stops first (leader-only writes), then the webhook, then the reconciler. */
static void on_nodeprep_closed(co_nodeprep_t *np) {
  app_t *app = np->data;
  const co_nodeprep_stats_t *s = &np->stats;
  app->open_parts &= ~PART_NODEPREP;
  co_log(CO_LOG_INFO, "node preparation stopped", CO_I("passes", s->passes),
         CO_I("node_writes", s->node_writes), CO_I("grants", s->grants), CO_I("probes", s->probes),
         CO_I("evictions", s->evictions), CO_I("errors", s->write_errors));
  if (app->webhook_on) {
    co_webhook_close(&app->webhook, on_webhook_closed);
    return;
  }
  co_reconciler_close(&app->rec, on_reconciler_closed);
}

/* ---- bounded shutdown ---- */

/* Logs, at error level, each part that has not reported closed and what it still holds, then
 * a summary naming them all. */
static void report_open(app_t *app, const char *why) {
  char names[512] = "";
  size_t n = 0;
#define OPEN_PART(name, ...)                                                            \
  do {                                                                                  \
    co_log(CO_LOG_ERROR, "shutdown: part still open", CO_S("part", name), __VA_ARGS__); \
    int w_ = snprintf(names + n, sizeof(names) - n, "%s%s", n > 0 ? "," : "", name);    \
    if (w_ > 0 && (size_t)w_ < sizeof(names) - n)                                       \
      n += (size_t)w_;                                                                  \
  } while (0)
  if (app->open_parts & PART_OPS)
    OPEN_PART("metrics-server", CO_I("connections", co_http_server_connections(&app->ops.http)));
  if (app->open_parts & PART_NODEPREP)
    OPEN_PART("node-preparation", CO_B("closing", app->np.closing),
              CO_I("requests_in_flight", app->np.in_flight),
              CO_I("workqueue_depth", app->np.queue.queued));
  if ((app->open_parts & PART_WEBHOOK) && app->webhook.http.impl != NULL)
    OPEN_PART("webhook-server",
              CO_I("connections", co_http_server_connections(&app->webhook.http)));
  if ((app->open_parts & PART_WEBHOOK) && app->webhook.certs.s != NULL)
    OPEN_PART("webhook-certificate-store",
              CO_I("requests_in_flight", co_certstore_requests(&app->webhook.certs)));
  if (app->open_parts & PART_RECONCILER)
    OPEN_PART("reconciler", CO_B("closing", app->rec.closing),
              CO_I("requests_in_flight", app->rec.in_flight),
              CO_I("events_pending", app->rec.events_pending),
              CO_I("workqueue_depth", app->rec.queue.queued));
  if (app->open_parts & PART_LEASE)
    OPEN_PART("leader-election", CO_B("leading", app->lease.leading));
  for (int i = 0; i < INF_COUNT; i++)
    if (app->inf_open[i]) {
      char part[64];
      snprintf(part, sizeof(part), "informer/%s", type_name(&app->informers[i]));
      OPEN_PART(part, CO_B("request_in_flight", co_req_active(&app->informers[i].reflector.req)));
    }
  if (app->open_parts & PART_CLIENT)
    OPEN_PART("api-client", CO_I("requests_in_flight", co_client_requests(&app->client)));
#undef OPEN_PART
  co_log(CO_LOG_ERROR, why, CO_S("open", names),
         CO_I("shutdown_timeout_s", app->shutdown_timeout_ms / 1000),
         CO_I("exit_code", EXIT_SHUTDOWN_INCOMPLETE));
}

/* The loop cannot be trusted to end (a part that never reports closed): exit from here.
 * _exit: nothing else runs (no atexit handlers, no leak check on what is still in use). */
static void exit_now(app_t *app, const char *why) {
  report_open(app, why);
  fflush(stdout);
  fflush(stderr);
  _exit(EXIT_SHUTDOWN_INCOMPLETE);
}

static void on_deadline(uv_timer_t *t) { exit_now(t->data, "shutdown deadline passed, exiting"); }

static void stop(app_t *app) {
  if (app->stopping)
    return;
  app->stopping = 1;
  co_log(CO_LOG_INFO, "shutting down", CO_I("shutdown_timeout_s", app->shutdown_timeout_ms / 1000));
  uv_timer_start(&app->deadline, on_deadline, app->shutdown_timeout_ms, 0);
  stop_ops(app);
  co_nodeprep_close(&app->np, on_nodeprep_closed);
}

static int webhook_decide(void *ud, char kind, const co_workload_t *w, co_decision_t *out) {
  app_t *app = ud;
  return co_reconciler_decide(&app->rec, kind, w, out);
}

static int webhook_synced(void *ud) { return ((app_t *)ud)->synced >= INF_COUNT; }

static int webhook_ready(void *data, char *why, size_t whylen) {
  app_t *app = data;
  if (co_webhook_ready(&app->webhook))
    return 1;
  snprintf(why, whylen, "webhook certificate not loaded yet");
  return 0;
}

static void setup_webhook(app_t *app, const co_controller_opts_t *o) {
  if (o->webhook_bind_address == NULL || o->webhook_bind_address[0] == '\0') {
    co_log(CO_LOG_INFO, "admission webhook disabled");
    return;
  }
  co_webhook_opts_t wo = {.bind_address = o->webhook_bind_address,
                          .namespace_ = o->operator_namespace,
                          .config_name = o->webhook_config_name,
                          .fail_closed = o->webhook_fail_closed,
                          .cert_validity_s = o->webhook_cert_validity_s,
                          .decide = webhook_decide,
                          .caches_synced = webhook_synced,
                          .ud = app,
                          .policy = &app->rec.policy};
  int rc = co_webhook_init(&app->client, &app->webhook, &wo);
  if (rc != 0) {
    co_log(CO_LOG_ERROR, "cannot set up the admission webhook", CO_E(rc));
    return;
  }
  app->webhook.data = app;
  app->webhook_on = 1;
  app->open_parts |= PART_WEBHOOK;
  if (app->ops_open)
    co_ops_add_ready_check(&app->ops, "webhook-cert-loaded", webhook_ready, app);
  co_log(CO_LOG_INFO, "admission webhook enabled", CO_S("address", o->webhook_bind_address),
         CO_S("configuration", o->webhook_config_name), CO_B("fail_closed", o->webhook_fail_closed),
         CO_I("cert_validity_s", o->webhook_cert_validity_s));
  if (!app->leader_elect)
    co_webhook_set_leader(&app->webhook, 1);
  co_webhook_start(&app->webhook);
}

static void on_signal(uv_signal_t *h, int signum) {
  app_t *app = h->data;
  const char *name = signum == SIGINT ? "SIGINT" : "SIGTERM";
  if (app->stopping) /* the supervisor, or the operator, will not wait any longer */
    exit_now(app, "second signal during shutdown, exiting");
  co_log(CO_LOG_INFO, "signal received", CO_S("signal", name));
  stop(app);
}

int co_controller_run(const co_controller_opts_t *opts) {
  co_kubeconfig_t cfg;
  char err[512] = "";
  memset(&cfg, 0, sizeof(cfg));
  app_t *app = calloc(1, sizeof(*app));
  if (app == NULL)
    return 1;
  if (setup_policy(app, opts) != 0) {
    free(app->lists);
    free(app);
    return 2;
  }
  int rc = co_controller_load_config(&cfg, opts->kubeconfig, opts->context, err, sizeof(err));
  if (rc != 0) {
    co_log(CO_LOG_ERROR, "cannot load the API server configuration", CO_S("detail", err), CO_E(rc));
    free(app->lists);
    free(app);
    return 2;
  }
  uv_loop_init(&app->loop);
  app->started_ms = uv_now(&app->loop);
  rc = start_ops(app, opts->http_bind_address);
  if (rc != 0) {
    co_log(CO_LOG_ERROR, "cannot serve --http-bind-address",
           CO_S("address", opts->http_bind_address), CO_E(rc));
    stop_ops(app);
    uv_run(&app->loop, UV_RUN_DEFAULT);
    co_kubeconfig_free(&cfg);
    uv_loop_close(&app->loop);
    free(app->lists);
    free(app);
    return 2;
  }
  co_client_opts_t copts;
  co_client_opts_default(&copts);
  copts.qps = opts->qps;
  copts.burst = opts->burst;
  copts.event_qps = opts->event_qps;
  copts.event_burst = opts->event_burst;
  copts.stall_timeout_s = opts->stall_timeout_s;
  rc = co_client_init(&app->loop, &app->client, &cfg, &copts, err, sizeof(err));
  if (rc != 0) {
    co_log(CO_LOG_ERROR, "cannot create the API client", CO_S("detail", err), CO_E(rc));
    co_kubeconfig_free(&cfg);
    stop_ops(app);
    uv_run(&app->loop, UV_RUN_DEFAULT);
    uv_loop_close(&app->loop);
    free(app->lists);
    free(app);
    return 2;
  }
  app->client.data = app;
  app->open_parts |= PART_CLIENT | PART_NODEPREP | PART_RECONCILER;
  app->shutdown_timeout_ms = (uint64_t)opts->shutdown_timeout_s * 1000;
  uv_timer_init(&app->loop, &app->deadline);
  app->deadline.data = app;
  co_log(CO_LOG_INFO, "starting controller", CO_S("server", cfg.server),
         CO_S("context", cfg.context ? cfg.context : (cfg.in_cluster ? "in-cluster" : "")),
         CO_F("qps", opts->qps), CO_I("burst", opts->burst),
         CO_S("runtime_classes", opts->runtime_classes), CO_S("default_class", opts->default_class),
         CO_S("namespace_policy", opts->namespace_policy));
  co_kubeconfig_free(&cfg);

  static const co_informer_handlers_t handlers = {on_add, on_update, on_delete, on_synced};
  const co_resource_type_t *types[INF_COUNT] = {
      &co_type_deployments, &co_type_statefulsets, &co_type_nodes,     &co_type_namespaces,
      &co_type_pods,        &co_type_cwl,          &co_type_probe_pods};
  for (int i = 0; i < INF_COUNT; i++) {
    co_informer_init(&app->client, &app->informers[i], types[i], &handlers,
                     i == INF_PROBES ? CO_PROBE_LABEL "=true" : NULL);
    app->informers[i].data = app;
    app->informers[i].reflector.page_limit = (unsigned)opts->list_page_size;
    app->informers_open++;
    app->inf_open[i] = 1;
  }
  co_informer_t *inf = app->informers;
  co_reconciler_init(&app->loop, &app->rec, &app->client, &inf[INF_DEPLOYMENTS],
                     &inf[INF_STATEFULSETS], &inf[INF_NAMESPACES], &inf[INF_PODS], &inf[INF_CWLS],
                     &inf[INF_NODES], &app->policy);
  app->rec.data = app;
  co_nodeprep_opts_t npo = {{opts->node_namespace, opts->node_agent_image,
                             opts->kata_deploy_version, opts->probe_image, app->classes,
                             app->policy.n_allowed, opts->default_class},
                            opts->probe_interval_s,
                            opts->probe_timeout_s,
                            opts->restart_timeout_s,
                            opts->eviction_timeout_s,
                            opts->node_resync_s};
  co_nodeprep_init(&app->loop, &app->np, &app->client, &inf[INF_NODES], &inf[INF_PODS],
                   &inf[INF_PROBES], &npo);
  app->np.data = app;
  app->leader_elect = opts->leader_elect;
  if (app->leader_elect) {
    char ident[300];
    if (opts->identity != NULL && opts->identity[0] != '\0')
      snprintf(ident, sizeof(ident), "%s", opts->identity);
    else {
      char host[256] = "";
      if (uv_os_gethostname(host, &(size_t){sizeof(host)}) != 0)
        snprintf(host, sizeof(host), "confidential-operator");
      snprintf(ident, sizeof(ident), "%s_%d", host, (int)uv_os_getpid());
    }
    co_lease_opts_t lo = {(uint64_t)opts->lease_duration_s * 1000,
                          (uint64_t)opts->renew_deadline_s * 1000,
                          (uint64_t)opts->retry_period_s * 1000};
    co_lease_init(&app->client, &app->lease, opts->operator_namespace, "confidential-operator",
                  ident, &lo);
    app->lease.data = app;
    app->lease.on_started = on_lease_started;
    app->lease.on_stopped = on_lease_stopped;
    app->open_parts |= PART_LEASE;
    co_log(CO_LOG_INFO, "leader election enabled", CO_S("identity", ident),
           CO_S("namespace", opts->operator_namespace));
    co_lease_start(&app->lease);
  }
  setup_webhook(app, opts);
  for (int i = 0; i < INF_COUNT; i++)
    co_informer_start(&app->informers[i]);
  uv_signal_init(&app->loop, &app->sigint);
  uv_signal_init(&app->loop, &app->sigterm);
  app->sigint.data = app->sigterm.data = app;
  uv_signal_start(&app->sigint, on_signal, SIGINT);
  uv_signal_start(&app->sigterm, on_signal, SIGTERM);

  uv_run(&app->loop, UV_RUN_DEFAULT);
  rc = uv_loop_close(&app->loop);
  if (rc != 0)
    co_log(CO_LOG_ERROR, "event loop closed with handles still open", CO_I("rc", rc));
  int code = rc == 0 ? app->exit_code : 1;
  free(app->lists);
  free(app);
  co_log(CO_LOG_INFO, "stopped");
  return code;
}
