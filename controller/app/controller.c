/* The controller process: client, informers, signals, orderly shutdown. */
#include "co/controller.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "co/client.h"
#include "co/error.h"
#include "co/kubeconfig.h"
#include "co/log.h"
#include "co/objects.h"

enum { INF_DEPLOYMENTS, INF_STATEFULSETS, INF_NODES, INF_COUNT };

typedef struct app_s {
  uv_loop_t loop;
  co_client_t client;
  co_informer_t informers[INF_COUNT];
  uv_signal_t sigint, sigterm;
  int informers_open;
  int synced;
  int stopping;
  int exit_code;
  uint64_t started_ms;
} app_t;

void co_controller_opts_default(co_controller_opts_t *o) {
  memset(o, 0, sizeof(*o));
  o->qps = 20;
  o->burst = 40;
  o->stall_timeout_s = 90;
  o->list_page_size = 500;
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

static const char *type_name(co_informer_t *inf) { return inf->type->name; }

static void on_add(co_informer_t *inf, const co_obj_t *o) {
  co_log(CO_LOG_DEBUG, "informer event", CO_S("resource", type_name(inf)), CO_S("type", "add"),
         CO_S("key", o->key), CO_S("rv", o->rv));
}

static void on_update(co_informer_t *inf, const co_obj_t *old, const co_obj_t *o) {
  (void)old;
  co_log(CO_LOG_DEBUG, "informer event", CO_S("resource", type_name(inf)), CO_S("type", "update"),
         CO_S("key", o->key), CO_S("rv", o->rv));
}

static void on_delete(co_informer_t *inf, const co_obj_t *o) {
  co_log(CO_LOG_DEBUG, "informer event", CO_S("resource", type_name(inf)), CO_S("type", "delete"),
         CO_S("key", o->key), CO_S("rv", o->rv));
}

static void on_synced(co_informer_t *inf) {
  app_t *app = inf->data;
  co_log(CO_LOG_INFO, "cache synced", CO_S("resource", type_name(inf)),
         CO_I("objects", inf->count));
  if (++app->synced == INF_COUNT)
    co_log(CO_LOG_INFO, "all caches synced", CO_I("deployments", app->informers[0].count),
           CO_I("statefulsets", app->informers[1].count), CO_I("nodes", app->informers[2].count),
           CO_I("ms", uv_now(&app->loop) - app->started_ms));
}

static void on_client_closed(co_client_t *c) {
  app_t *app = c->data;
  uv_close((uv_handle_t *)&app->sigint, NULL);
  uv_close((uv_handle_t *)&app->sigterm, NULL);
}

static void on_informer_closed(co_informer_t *inf) {
  app_t *app = inf->data;
  const co_reflector_stats_t *st = &inf->reflector.stats;
  co_log(CO_LOG_INFO, "informer stopped", CO_S("resource", type_name(inf)),
         CO_I("lists", st->lists), CO_I("relists", st->relists), CO_I("watches", st->watches),
         CO_I("events", st->events), CO_I("expired", st->expired), CO_I("stalls", st->stalls),
         CO_I("errors", st->errors));
  if (--app->informers_open == 0)
    co_client_close(&app->client, on_client_closed);
}

static void stop(app_t *app) {
  if (app->stopping)
    return;
  app->stopping = 1;
  co_log(CO_LOG_INFO, "shutting down");
  for (int i = 0; i < INF_COUNT; i++)
    co_informer_close(&app->informers[i], on_informer_closed);
}

static void on_signal(uv_signal_t *h, int signum) {
  app_t *app = h->data;
  co_log(CO_LOG_INFO, "signal received", CO_S("signal", signum == SIGINT ? "SIGINT" : "SIGTERM"));
  stop(app);
}

int co_controller_run(const co_controller_opts_t *opts) {
  co_kubeconfig_t cfg;
  char err[512] = "";
  memset(&cfg, 0, sizeof(cfg));
  int rc = co_controller_load_config(&cfg, opts->kubeconfig, opts->context, err, sizeof(err));
  if (rc != 0) {
    co_log(CO_LOG_ERROR, "cannot load the API server configuration", CO_S("detail", err), CO_E(rc));
    return 2;
  }
  app_t *app = calloc(1, sizeof(*app));
  if (app == NULL)
    return 1;
  uv_loop_init(&app->loop);
  app->started_ms = uv_now(&app->loop);
  co_client_opts_t copts;
  co_client_opts_default(&copts);
  copts.qps = opts->qps;
  copts.burst = opts->burst;
  copts.stall_timeout_s = opts->stall_timeout_s;
  rc = co_client_init(&app->loop, &app->client, &cfg, &copts, err, sizeof(err));
  if (rc != 0) {
    co_log(CO_LOG_ERROR, "cannot create the API client", CO_S("detail", err), CO_E(rc));
    co_kubeconfig_free(&cfg);
    uv_loop_close(&app->loop);
    free(app);
    return 2;
  }
  app->client.data = app;
  co_log(CO_LOG_INFO, "starting controller", CO_S("server", cfg.server),
         CO_S("context", cfg.context ? cfg.context : (cfg.in_cluster ? "in-cluster" : "")),
         CO_F("qps", opts->qps), CO_I("burst", opts->burst));
  co_kubeconfig_free(&cfg);

  static const co_informer_handlers_t handlers = {on_add, on_update, on_delete, on_synced};
  const co_resource_type_t *types[INF_COUNT] = {&co_type_deployments, &co_type_statefulsets,
                                                &co_type_nodes};
  for (int i = 0; i < INF_COUNT; i++) {
    co_informer_init(&app->client, &app->informers[i], types[i], &handlers, NULL);
    app->informers[i].data = app;
    app->informers[i].reflector.page_limit = (unsigned)opts->list_page_size;
    app->informers_open++;
    co_informer_start(&app->informers[i]);
  }
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
  free(app);
  co_log(CO_LOG_INFO, "stopped");
  return code;
}
