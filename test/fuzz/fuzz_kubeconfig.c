/* libFuzzer target for the kubeconfig parser. Beyond "no crash", it checks what the HTTP
 * client relies on: a successful parse yields an http(s) server without a trailing slash,
 * absolute paths (base_dir is absolute), consistent data lengths and a complete key pair;
 * a failure yields a CO_E* code, a zeroed struct and one line of explanation. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "co/alloc.h"
#include "co/error.h"
#include "co/kubeconfig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok) {
  if (!ok)
    abort();
}

static void check_path(const char *p) { check(p == NULL || p[0] == '/'); }

static void check_data(const unsigned char *p, size_t len) { check((p == NULL) == (len == 0)); }

static int parse(co_kubeconfig_t *cfg, const uint8_t *data, size_t size, const char *context) {
  char err[256];
  err[0] = '\0';
  int rc = co_kubeconfig_parse(cfg, (const char *)data, size, context, "/base", err, sizeof err);
  if (rc != 0) {
    static const co_kubeconfig_t zero;
    check(rc < 0 && rc > CO__ERR_LAST);
    check(err[0] != '\0' && strchr(err, '\n') == NULL);
    check(memcmp(cfg, &zero, sizeof zero) == 0);
    return rc;
  }
  size_t n = cfg->server != NULL ? strlen(cfg->server) : 0;
  check(n > 0 && cfg->server[n - 1] != '/');
  check(strncasecmp(cfg->server, "https://", 8) == 0 ||
        strncasecmp(cfg->server, "http://", 7) == 0);
  check(cfg->context != NULL && !cfg->in_cluster);
  check_path(cfg->ca_file);
  check_path(cfg->token_file);
  check_path(cfg->client_cert_file);
  check_path(cfg->client_key_file);
  check_data(cfg->ca_data, cfg->ca_data_len);
  check_data(cfg->client_cert_data, cfg->client_cert_data_len);
  check_data(cfg->client_key_data, cfg->client_key_data_len);
  check(!(cfg->ca_file != NULL && cfg->ca_data != NULL));
  int cert = cfg->client_cert_file != NULL || cfg->client_cert_data != NULL;
  int key = cfg->client_key_file != NULL || cfg->client_key_data != NULL;
  check(cert == key);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  co_kubeconfig_t cfg, again;
  if (parse(&cfg, data, size, NULL) == 0) {
    /* Naming the current context explicitly must give the same result. */
    char *ctx = co_strdup(cfg.context);
    check(parse(&again, data, size, ctx) == 0);
    check(strcmp(again.server, cfg.server) == 0);
    check((again.token == NULL && cfg.token == NULL) ||
          (again.token != NULL && cfg.token != NULL && strcmp(again.token, cfg.token) == 0));
    co_kubeconfig_free(&again);
    co_free(ctx);
  }
  co_kubeconfig_free(&cfg);
  co_kubeconfig_free(&cfg); /* twice is allowed */
  /* An explicit context the seeds define, to reach entries other than the current one. */
  parse(&cfg, data, size, "dev");
  co_kubeconfig_free(&cfg);
  return 0;
}
