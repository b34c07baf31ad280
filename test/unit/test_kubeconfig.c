/* Kubeconfig loader: fixture files under data/kubeconfig/, inline documents for field-level
 * cases, and temporary trees for $HOME, oversize files and the in-cluster layout. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "co/alloc.h"
#include "co/error.h"
#include "co/kubeconfig.h"
#include "co_test.h"

#define DIR CO_TEST_DATA "/kubeconfig"
#define MAX_FILE ((size_t)4 << 20)

static const char ca_pem[] =
    "-----BEGIN CERTIFICATE-----\nfake-ca-for-unit-tests\n-----END CERTIFICATE-----\n";
static const char cert_pem[] =
    "-----BEGIN CERTIFICATE-----\nfake-client-certificate\n-----END CERTIFICATE-----\n";
static const char key_pem[] =
    "-----BEGIN PRIVATE KEY-----\nfake-client-key\n-----END PRIVATE KEY-----\n";

static char err[512];

static int load_fixture(co_kubeconfig_t *cfg, const char *name, const char *context) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", DIR, name);
  err[0] = '\0';
  return co_kubeconfig_load(cfg, path, context, err, sizeof err);
}

static int parse(co_kubeconfig_t *cfg, const char *yaml, const char *context) {
  err[0] = '\0';
  return co_kubeconfig_parse(cfg, yaml, strlen(yaml), context, "/base", err, sizeof err);
}

static void check_bytes(const unsigned char *got, size_t got_len, const char *want) {
  CO_CHECK_INT(got_len, ==, strlen(want));
  CO_CHECK(got != NULL && got_len == strlen(want) && memcmp(got, want, got_len) == 0);
}

/* A failed load leaves a zeroed struct and exactly one line of explanation. */
static void check_failed(const co_kubeconfig_t *cfg) {
  static const co_kubeconfig_t zero;
  CO_CHECK(memcmp(cfg, &zero, sizeof zero) == 0);
  CO_CHECK(err[0] != '\0');
  CO_CHECK(strchr(err, '\n') == NULL);
}

static void write_file(const char *path, const void *data, size_t len) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  CO_CHECK(fd >= 0);
  if (fd < 0)
    return;
  CO_CHECK(write(fd, data, len) == (ssize_t)len);
  close(fd);
}

/* --- loading the fixtures -------------------------------------------------------------------- */

static void test_token_user(void) {
  co_kubeconfig_t c;
  CO_CHECK_INT(load_fixture(&c, "full.yaml", NULL), ==, 0);
  CO_CHECK_STR(c.context, "token-ctx");
  CO_CHECK_STR(c.server, "https://prod.example.com:6443"); /* trailing slash dropped */
  CO_CHECK_STR(c.tls_server_name, "api.internal");
  CO_CHECK_INT(c.insecure, ==, 0);
  CO_CHECK_STR(c.ca_file, NULL);
  check_bytes(c.ca_data, c.ca_data_len, ca_pem);
  CO_CHECK_STR(c.token, "abc.def-ghi_jkl");
  CO_CHECK_STR(c.token_file, NULL);
  CO_CHECK_STR(c.client_cert_file, NULL);
  CO_CHECK(c.client_cert_data == NULL && c.client_key_data == NULL);
  CO_CHECK_STR(c.namespace, "team-a");
  CO_CHECK_INT(c.in_cluster, ==, 0);
  co_kubeconfig_free(&c);
}

static void test_token_file_and_relative_paths(void) {
  co_kubeconfig_t c;
  CO_CHECK_INT(load_fixture(&c, "full.yaml", "tokenfile-ctx"), ==, 0);
  CO_CHECK_STR(c.context, "tokenfile-ctx");
  CO_CHECK_STR(c.server, "https://[::1]:6443/prefix");
  CO_CHECK_STR(c.token, NULL);
  CO_CHECK_STR(c.token_file, DIR "/secrets/token");
  CO_CHECK_STR(c.ca_file, DIR "/certs/ca.crt");
  CO_CHECK(c.ca_data == NULL);
  CO_CHECK_STR(c.namespace, NULL);
  co_kubeconfig_free(&c);
}

static void test_client_cert_files_and_insecure(void) {
  co_kubeconfig_t c;
  CO_CHECK_INT(load_fixture(&c, "full.yaml", "certfile-ctx"), ==, 0);
  CO_CHECK_STR(c.server, "http://127.0.0.1:8080");
  CO_CHECK_INT(c.insecure, ==, 1);
  CO_CHECK_STR(c.client_cert_file, DIR "/certs/client.crt");
  CO_CHECK_STR(c.client_key_file, "/etc/abs/client.key"); /* absolute: kept */
  CO_CHECK_STR(c.tls_server_name, NULL);
  CO_CHECK_STR(c.token, NULL);
  CO_CHECK_STR(c.namespace, NULL); /* namespace: "" */
  co_kubeconfig_free(&c);
}

static void test_client_cert_data(void) {
  co_kubeconfig_t c;
  CO_CHECK_INT(load_fixture(&c, "full.yaml", "certdata-ctx"), ==, 0);
  check_bytes(c.client_cert_data, c.client_cert_data_len, cert_pem); /* wrapped over lines */
  check_bytes(c.client_key_data, c.client_key_data_len, key_pem);    /* two padding chars */
  check_bytes(c.ca_data, c.ca_data_len, ca_pem);                     /* one padding char */
  CO_CHECK_STR(c.client_cert_file, NULL);
  CO_CHECK_STR(c.namespace, NULL); /* namespace: ~ */
  co_kubeconfig_free(&c);
}

static void test_anonymous_context(void) {
  co_kubeconfig_t c;
  CO_CHECK_INT(load_fixture(&c, "full.yaml", "anon-ctx"), ==, 0);
  CO_CHECK_STR(c.server, "http://127.0.0.1:8080");
  CO_CHECK(c.token == NULL && c.token_file == NULL && c.client_cert_file == NULL);
  co_kubeconfig_free(&c);
}

/* A kubeconfig named by a relative path still yields absolute paths. */
static void test_relative_kubeconfig_path(void) {
  char old[4096], cwd[4096], want[8192];
  CO_CHECK(getcwd(old, sizeof old) != NULL);
  CO_CHECK_INT(chdir(CO_TEST_DATA), ==, 0);
  CO_CHECK(getcwd(cwd, sizeof cwd) != NULL);
  snprintf(want, sizeof want, "%s/kubeconfig/certs/ca.crt", cwd);
  co_kubeconfig_t c;
  CO_CHECK_INT(co_kubeconfig_load(&c, "kubeconfig/full.yaml", "tokenfile-ctx", err, sizeof err), ==,
               0);
  CO_CHECK_STR(c.ca_file, want);
  co_kubeconfig_free(&c);
  CO_CHECK_INT(chdir(old), ==, 0);
}

static void test_parse_base_dir(void) {
  static const char doc[] = "current-context: x\n"
                            "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
                            "clusters: [{name: c, cluster: {server: 'https://c',"
                            " certificate-authority: ca/ca.crt}}]\n"
                            "users: [{name: u, user: {tokenFile: tok}}]\n";
  co_kubeconfig_t c;
  CO_CHECK_INT(co_kubeconfig_parse(&c, doc, strlen(doc), NULL, NULL, err, sizeof err), ==, 0);
  CO_CHECK_STR(c.ca_file, "ca/ca.crt");
  CO_CHECK_STR(c.token_file, "tok");
  co_kubeconfig_free(&c);
  CO_CHECK_INT(co_kubeconfig_parse(&c, doc, strlen(doc), NULL, "/base/", err, sizeof err), ==, 0);
  CO_CHECK_STR(c.ca_file, "/base/ca/ca.crt");
  CO_CHECK_STR(c.token_file, "/base/tok");
  co_kubeconfig_free(&c);
}

/* --- $KUBECONFIG and $HOME ------------------------------------------------------------------- */

typedef struct {
  const char *env; /* file names relative to DIR, ':'-separated */
  const char *context;
  int rc;
  const char *context_used, *server, *token, *namespace, *msg;
} merge_case_t;

static void test_kubeconfig_merge(void) {
  static const merge_case_t cases[] = {
      /* a's current-context wins, and a-ctx comes from a. */
      {"merge-a.yaml:missing.yaml:merge-b.yaml", NULL, 0, "a-ctx", "https://from-a.example.com",
       "token-a", "ns-a", NULL},
      /* b-ctx exists only in b, but the cluster and user it names are taken from a. */
      {"merge-a.yaml:merge-b.yaml", "b-ctx", 0, "b-ctx", "https://from-a.example.com", "token-a",
       "ns-b", NULL},
      /* Reversed order: b wins everything it defines. */
      {"merge-b.yaml:merge-a.yaml", NULL, 0, "b-ctx", "https://from-b.example.com",
       "token-a-from-b", "ns-b", NULL},
      {"merge-b.yaml:merge-a.yaml", "a-ctx", 0, "a-ctx", "https://b-only.example.com", "token-b",
       "ns-a-from-b", NULL},
      /* current-context from the second file; the cluster from the first that has it. */
      {"merge-nocurrent.yaml:merge-b.yaml", NULL, 0, "b-ctx", "https://from-nocurrent.example.com",
       "token-a-from-b", "ns-b", NULL},
      /* Empty entries, empty and missing files are skipped. */
      {"::empty.yaml:nope.yaml::merge-b.yaml:", NULL, 0, "b-ctx", "https://from-b.example.com",
       "token-a-from-b", "ns-b", NULL},
      {"missing-1.yaml:missing-2.yaml", NULL, CO_ECONFIG, NULL, NULL, NULL, NULL,
       "every file listed is missing or empty"},
      {"empty.yaml:comments-only.yaml", NULL, CO_ECONFIG, NULL, NULL, NULL, NULL,
       "every file listed is missing or empty"},
      /* A broken file is an error even late in the list, as with kubectl. */
      {"merge-a.yaml:syntax-error.yaml", NULL, CO_EPARSE, NULL, NULL, NULL, NULL,
       "syntax-error.yaml: YAML syntax error at line 3"},
      {"merge-a.yaml", "nope", CO_ECONFIG, NULL, NULL, NULL, NULL,
       "KUBECONFIG=" DIR "/merge-a.yaml: context \"nope\" not found"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const merge_case_t *t = &cases[i];
    char env[2048] = "";
    size_t off = 0;
    const char *p = t->env;
    /* Prefix every non-empty element with DIR. */
    while (*p) {
      size_t n = strcspn(p, ":");
      if (n > 0)
        off += (size_t)snprintf(env + off, sizeof env - off, "%s/%.*s", DIR, (int)n, p);
      p += n;
      if (*p == ':') {
        off += (size_t)snprintf(env + off, sizeof env - off, ":");
        p++;
      }
    }
    setenv("KUBECONFIG", env, 1);
    co_kubeconfig_t c;
    int rc = co_kubeconfig_load(&c, NULL, t->context, err, sizeof err);
    if (rc != t->rc)
      fprintf(stderr, "# case %zu (%s): %s\n", i, t->env, err);
    CO_CHECK_INT(rc, ==, t->rc);
    if (t->rc == 0) {
      CO_CHECK_STR(c.context, t->context_used);
      CO_CHECK_STR(c.server, t->server);
      CO_CHECK_STR(c.token, t->token);
      CO_CHECK_STR(c.namespace, t->namespace);
    } else {
      check_failed(&c);
      CO_CHECK_CONTAINS(err, t->msg);
    }
    co_kubeconfig_free(&c);
  }
  /* An explicit path beats $KUBECONFIG. */
  setenv("KUBECONFIG", DIR "/merge-a.yaml", 1);
  co_kubeconfig_t c;
  CO_CHECK_INT(load_fixture(&c, "merge-b.yaml", NULL), ==, 0);
  CO_CHECK_STR(c.context, "b-ctx");
  co_kubeconfig_free(&c);
  unsetenv("KUBECONFIG");
}

static void test_default_home(void) {
  char home[] = "/tmp/co-kc-home-XXXXXX", kube[64], cfg[96];
  CO_CHECK(mkdtemp(home) != NULL);
  snprintf(kube, sizeof kube, "%s/.kube", home);
  snprintf(cfg, sizeof cfg, "%s/config", kube);
  CO_CHECK_INT(mkdir(kube, 0700), ==, 0);
  static const char doc[] = "current-context: h\n"
                            "contexts: [{name: h, context: {cluster: c}}]\n"
                            "clusters: [{name: c, cluster: {server: https://home.example.com, "
                            "certificate-authority: ca.crt}}]\n";
  write_file(cfg, doc, strlen(doc));
  const char *saved = getenv("HOME");
  char *old_home = co_strdup(saved);
  unsetenv("KUBECONFIG");
  setenv("HOME", home, 1);

  co_kubeconfig_t c;
  CO_CHECK_INT(co_kubeconfig_load(&c, NULL, NULL, err, sizeof err), ==, 0);
  CO_CHECK_STR(c.server, "https://home.example.com");
  char want[128];
  snprintf(want, sizeof want, "%s/ca.crt", kube);
  CO_CHECK_STR(c.ca_file, want);
  co_kubeconfig_free(&c);

  setenv("KUBECONFIG", "", 1); /* empty means unset, as for kubectl */
  CO_CHECK_INT(co_kubeconfig_load(&c, NULL, NULL, err, sizeof err), ==, 0);
  co_kubeconfig_free(&c);

  unlink(cfg);
  CO_CHECK_INT(co_kubeconfig_load(&c, NULL, NULL, err, sizeof err), ==, CO_EIO);
  check_failed(&c);
  CO_CHECK_CONTAINS(err, "/.kube/config: file not found");

  unsetenv("HOME");
  unsetenv("KUBECONFIG");
  CO_CHECK_INT(co_kubeconfig_load(&c, NULL, NULL, err, sizeof err), ==, CO_ECONFIG);
  check_failed(&c);
  CO_CHECK_CONTAINS(err, "HOME is not set");

  if (old_home != NULL)
    setenv("HOME", old_home, 1);
  co_free(old_home);
  rmdir(kube);
  rmdir(home);
}

/* --- failures, file by file ------------------------------------------------------------------ */

typedef struct {
  const char *file;
  const char *context;
  int rc;
  const char *msg;
} fail_case_t;

static void test_file_errors(void) {
  static const fail_case_t cases[] = {
      {"does-not-exist.yaml", NULL, CO_EIO, "does-not-exist.yaml: file not found"},
      {"", NULL, CO_EIO, "kubeconfig/: cannot read file: Is a directory"},
      {"empty.yaml", NULL, CO_ECONFIG, "empty.yaml: file is empty"},
      {"comments-only.yaml", NULL, CO_ECONFIG, "comments-only.yaml: file is empty"},
      {"syntax-error.yaml", NULL, CO_EPARSE,
       "syntax-error.yaml: YAML syntax error at line 3, column 19: mapping values are not "
       "allowed"},
      {"no-current-context.yaml", NULL, CO_ECONFIG,
       "no-current-context.yaml: no current-context is set"},
      {"context-not-found.yaml", NULL, CO_ECONFIG,
       "context-not-found.yaml: context \"missing\" not found"},
      {"full.yaml", "nope", CO_ECONFIG, "full.yaml: context \"nope\" not found"},
      {"full.yaml", "ghost-cluster-ctx", CO_ECONFIG,
       "full.yaml: cluster \"ghost\" (used by context \"ghost-cluster-ctx\") not found"},
      {"full.yaml", "ghost-user-ctx", CO_ECONFIG,
       "full.yaml: user \"ghost\" (used by context \"ghost-user-ctx\") not found"},
      {"full.yaml", "exec-ctx", CO_EUNSUPPORTED,
       "full.yaml: line 41: user \"exec-user\" uses an exec credential plugin, which is not "
       "supported; use a token or client certificate"},
      {"exec.yaml", NULL, CO_EUNSUPPORTED, "user \"eks\" uses an exec credential plugin"},
      {"no-server.yaml", NULL, CO_ECONFIG, "no-server.yaml: line 4: cluster \"c\" has no server"},
      {"bad-server.yaml", NULL, CO_ECONFIG,
       "cluster \"c\": server \"ftp://c.example.com\" is not an https:// or http:// URL"},
      {"bad-base64.yaml", NULL, CO_EPARSE,
       "bad-base64.yaml: line 7: cluster \"c\": certificate-authority-data is not valid base64"},
      {"alias.yaml", NULL, CO_EPARSE, "alias.yaml: line 3: YAML aliases are not supported"},
      {"duplicate-name.yaml", NULL, CO_ECONFIG, "clusters has two entries named \"c\""},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const fail_case_t *t = &cases[i];
    co_kubeconfig_t c;
    int rc = load_fixture(&c, t->file, t->context);
    if (rc != t->rc || strstr(err, t->msg) == NULL)
      fprintf(stderr, "# case %zu (%s)\n", i, t->file);
    CO_CHECK_INT(rc, ==, t->rc);
    check_failed(&c);
    CO_CHECK_CONTAINS(err, t->msg);
    co_kubeconfig_free(&c);
  }
}

/* --- field-level cases, inline -----------------------------------------------------------------
 */

#define CTX "current-context: x\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\n"
#define CLUSTER(body) "clusters:\n- name: c\n  cluster:\n    server: https://c.example.com\n" body
#define USER(body) "users:\n- name: u\n  user:\n" body
#define TOKEN USER("    token: t\n")

typedef struct {
  const char *yaml;
  int rc;
  const char *msg;
} parse_case_t;

static void test_parse_errors(void) {
  static const parse_case_t cases[] = {
      {CTX CLUSTER("    certificate-authority: /ca\n    certificate-authority-data: YQ==\n") TOKEN,
       CO_ECONFIG, "cluster \"c\" sets both certificate-authority and certificate-authority-data"},
      {CTX CLUSTER("    insecure-skip-tls-verify: true\n    certificate-authority: /ca\n") TOKEN,
       CO_ECONFIG, "sets insecure-skip-tls-verify together with a certificate authority"},
      {CTX CLUSTER("    insecure-skip-tls-verify: maybe\n") TOKEN, CO_EPARSE,
       "line 9: cluster \"c\": insecure-skip-tls-verify must be true or false"},
      {CTX CLUSTER("    insecure-skip-tls-verify: \"true\"\n") TOKEN, CO_EPARSE,
       "insecure-skip-tls-verify must be true or false"},
      {CTX CLUSTER("    proxy-url: http://proxy:3128\n") TOKEN, CO_EUNSUPPORTED,
       "proxy-url is not supported"},
      {CTX CLUSTER("    server: https://again.example.com\n") TOKEN, CO_EPARSE,
       "line 9: key \"server\" is given twice"},
      {CTX CLUSTER("") USER("    client-certificate: /c.crt\n"), CO_ECONFIG,
       "user \"u\" has a client certificate but no client key"},
      {CTX CLUSTER("") USER("    client-key-data: YQ==\n"), CO_ECONFIG,
       "user \"u\" has a client key but no client certificate"},
      {CTX CLUSTER("") USER("    client-certificate: /c\n    client-certificate-data: YQ==\n"
                            "    client-key: /k\n"),
       CO_ECONFIG, "sets both client-certificate and client-certificate-data"},
      {CTX CLUSTER("") USER("    client-certificate: /c\n    client-key: /k\n"
                            "    client-key-data: YQ==\n"),
       CO_ECONFIG, "sets both client-key and client-key-data"},
      {CTX CLUSTER("") USER("    client-key-data: 'Y Q=='\n    client-certificate: /c\n"),
       CO_EPARSE, "user \"u\": client-key-data is not valid base64"},
      {CTX CLUSTER("") USER("    username: admin\n    password: secret\n"), CO_EUNSUPPORTED,
       "user \"u\" uses a username and password, which is not supported"},
      {CTX CLUSTER("") USER("    auth-provider: {name: gcp}\n"), CO_EUNSUPPORTED,
       "user \"u\" uses an auth-provider plugin, which is not supported; use a token or client "
       "certificate"},
      {CTX CLUSTER("") USER("    as: system:admin\n"), CO_EUNSUPPORTED,
       "impersonation (as) is not supported"},
      {CTX CLUSTER("") USER("    token: \"abc\\r\\nX-Injected: 1\"\n"), CO_EPARSE,
       "user \"u\": token contains control characters"},
      {CTX CLUSTER("") USER("    token: \"abc\\0def\"\n"), CO_EPARSE,
       "token contains control characters"},
      {CTX CLUSTER("") USER("    token: [a, b]\n"), CO_EPARSE, "token must be a string"},
      {CTX CLUSTER("    certificate-authority-data: \"YW\\tJj\"\n") TOKEN, CO_EPARSE,
       "cluster \"c\": certificate-authority-data contains control characters"},
      {CTX "clusters:\n- name: c\n  cluster: {server: 'https://'}\n" TOKEN, CO_ECONFIG,
       "server \"https://\" is not an https:// or http:// URL"},
      {CTX "clusters:\n- name: c\n  cluster: {server: 'https://a b'}\n" TOKEN, CO_ECONFIG,
       "is not an https:// or http:// URL"},
      {CTX "clusters:\n- name: c\n  cluster: {server: {host: a}}\n" TOKEN, CO_EPARSE,
       "cluster \"c\": server must be a string"},
      {CTX "clusters:\n- name: c\n  cluster: https://c\n" TOKEN, CO_EPARSE,
       "cluster \"c\": cluster must be a mapping"},
      {CTX "clusters: {c: {server: https://c}}\n" TOKEN, CO_EPARSE, "clusters must be a list"},
      {CTX "clusters: [c]\n" TOKEN, CO_EPARSE, "each entry of clusters must be a mapping"},
      {"current-context: x\ncontexts: [{name: x, context: {user: u}}]\n", CO_ECONFIG,
       "context \"x\" names no cluster"},
      {"current-context: x\ncontexts: [{name: x, context: ~}]\n", CO_ECONFIG,
       "context \"x\" names no cluster"},
      {"current-context: x\ncontexts: [{name: x}]\n", CO_ECONFIG, "names no cluster"},
      {"- just\n- a list\n", CO_EPARSE, "kubeconfig: line 1: the top level must be a mapping"},
      {"current-context: x\n---\ncurrent-context: y\n", CO_EPARSE,
       "line 2: more than one YAML document"},
      {"", CO_ECONFIG, "kubeconfig: document is empty"},
      {"~\n", CO_ECONFIG, "document is empty"},
      {"a: b\nc: \"\xc3\x28\"\n", CO_EPARSE, "kubeconfig: invalid text at byte"},
      {"a: *unknown\n", CO_EPARSE, "YAML aliases are not supported"},
      {"a: &x 1\nb: *x\n", CO_EPARSE, "line 2: YAML aliases are not supported"},
      {"a: [1, 2\n", CO_EPARSE, "YAML syntax error at line 2"},
      {"current-context: [x]\n", CO_EPARSE, "top level: current-context must be a string"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const parse_case_t *t = &cases[i];
    co_kubeconfig_t c;
    int rc = parse(&c, t->yaml, NULL);
    if (rc != t->rc || strstr(err, t->msg) == NULL)
      fprintf(stderr, "# case %zu: %s\n", i, err);
    CO_CHECK_INT(rc, ==, t->rc);
    check_failed(&c);
    CO_CHECK_CONTAINS(err, t->msg);
    co_kubeconfig_free(&c);
  }
}

typedef struct {
  const char *spelling;
  int want;
} bool_case_t;

static void test_insecure_spellings(void) {
  static const bool_case_t cases[] = {{"true", 1},  {"True", 1},  {"yes", 1}, {"on", 1},
                                      {"false", 0}, {"FALSE", 0}, {"no", 0},  {"off", 0},
                                      {"~", 0},     {"''", -1},   {"1", -1},  {"tru", -1}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char doc[512];
    snprintf(doc, sizeof doc, CTX CLUSTER("    insecure-skip-tls-verify: %s\n") TOKEN,
             cases[i].spelling);
    co_kubeconfig_t c;
    int rc = parse(&c, doc, NULL);
    if (cases[i].want < 0) {
      CO_CHECK_INT(rc, ==, CO_EPARSE);
    } else {
      CO_CHECK_INT(rc, ==, 0);
      CO_CHECK_INT(c.insecure, ==, cases[i].want);
    }
    co_kubeconfig_free(&c);
  }
}

/* Other shapes kubectl accepts: JSON, quoted keys, an explicit "---", an empty context
 * argument meaning current-context, a user with both token and tokenFile. */
static void test_parse_shapes(void) {
  static const char json[] =
      "{\"apiVersion\":\"v1\",\"kind\":\"Config\",\"current-context\":\"j\","
      "\"clusters\":[{\"name\":\"c\",\"cluster\":{\"server\":\"https://json.example.com/\"}}],"
      "\"users\":[{\"name\":\"u\",\"user\":{\"token\":\"jt\",\"tokenFile\":\"/var/t\"}}],"
      "\"contexts\":[{\"name\":\"j\",\"context\":{\"cluster\":\"c\",\"user\":\"u\","
      "\"namespace\":\"jn\"}}]}";
  co_kubeconfig_t c;
  CO_CHECK_INT(co_kubeconfig_parse(&c, json, strlen(json), "", NULL, err, sizeof err), ==, 0);
  CO_CHECK_STR(c.context, "j");
  CO_CHECK_STR(c.server, "https://json.example.com");
  CO_CHECK_STR(c.token, "jt");
  CO_CHECK_STR(c.token_file, "/var/t");
  CO_CHECK_STR(c.namespace, "jn");
  co_kubeconfig_free(&c);

  /* Not NUL-terminated: the parser must stop at len. */
  static const char doc[] = "---\n" CTX CLUSTER("") TOKEN "\"current-context\": y\n";
  size_t len = strlen(doc) - strlen("\"current-context\": y\n");
  CO_CHECK_INT(co_kubeconfig_parse(&c, doc, len, NULL, NULL, err, sizeof err), ==, 0);
  CO_CHECK_STR(c.context, "x");
  CO_CHECK_STR(c.token, "t");
  co_kubeconfig_free(&c);
  /* The full text has current-context twice. */
  CO_CHECK_INT(co_kubeconfig_parse(&c, doc, strlen(doc), NULL, NULL, err, sizeof err), ==,
               CO_EPARSE);
  co_kubeconfig_free(&c);

  CO_CHECK_INT(co_kubeconfig_parse(&c, NULL, 0, NULL, NULL, err, sizeof err), ==, CO_ECONFIG);
  CO_CHECK_INT(co_kubeconfig_parse(&c, NULL, 1, NULL, NULL, NULL, 0), ==, CO_EINVAL);
}

typedef struct {
  const char *b64;
  const char *want; /* NULL: invalid */
  size_t want_len;
} b64_case_t;

static void test_base64(void) {
  static const b64_case_t cases[] = {
      {"YQ==", "a", 1},
      {"YWI=", "ab", 2},
      {"YWJj", "abc", 3},
      {"YWJjZA==", "abcd", 4},
      {"AAEC", "\0\1\2", 3},
      {"/+/+", "\xff\xef\xfe", 3},
      {"|\n      YWJj\n      ZA==\n", "abcd", 4},
      {"\"YW\\r\\nJj\"", "abc", 3},
      {"''", NULL, 0}, /* empty: unset, not an error */
      {"YQ=", NULL, 0},
      {"YQ", NULL, 0},
      {"Y===", NULL, 0},
      {"====", NULL, 0},
      {"YQ==YQ==", NULL, 0},
      {"YQ=a", NULL, 0},
      {"'YW Jj'", NULL, 0},
      {"YWJ!", NULL, 0},
      {"YWJj-_", NULL, 0}, /* URL alphabet is not Go's StdEncoding */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const b64_case_t *t = &cases[i];
    char doc[512];
    snprintf(doc, sizeof doc, CTX CLUSTER("    certificate-authority-data: %s\n") TOKEN, t->b64);
    co_kubeconfig_t c;
    int rc = parse(&c, doc, NULL);
    int invalid = t->want == NULL && strcmp(t->b64, "''") != 0;
    if (rc != (invalid ? CO_EPARSE : 0))
      fprintf(stderr, "# case %zu (%s): %s\n", i, t->b64, err);
    if (invalid) {
      CO_CHECK_INT(rc, ==, CO_EPARSE);
      CO_CHECK_CONTAINS(err, "certificate-authority-data is not valid base64");
    } else if (t->want == NULL) {
      CO_CHECK_INT(rc, ==, 0);
      CO_CHECK(c.ca_data == NULL);
      CO_CHECK_INT(c.ca_data_len, ==, 0);
    } else {
      CO_CHECK_INT(rc, ==, 0);
      CO_CHECK_INT(c.ca_data_len, ==, t->want_len);
      CO_CHECK(c.ca_data != NULL && c.ca_data_len == t->want_len &&
               memcmp(c.ca_data, t->want, t->want_len) == 0);
    }
    co_kubeconfig_free(&c);
  }
}

/* --- bounds ------------------------------------------------------------------------------------
 */

#define VALID CTX CLUSTER("") TOKEN

static int parse_with_tail(const char *tail_fmt, size_t n, char fill) {
  size_t head = strlen(VALID) + strlen(tail_fmt);
  char *doc = co_malloc(head + 2 * n + 64);
  size_t off = (size_t)snprintf(doc, head + 1, "%s%s", VALID, tail_fmt);
  memset(doc + off, fill, n);
  off += n;
  if (fill == '[') {
    memset(doc + off, ']', n);
    off += n;
  }
  doc[off++] = '\n';
  co_kubeconfig_t c;
  err[0] = '\0';
  int rc = co_kubeconfig_parse(&c, doc, off, NULL, NULL, err, sizeof err);
  if (rc == 0)
    CO_CHECK_STR(c.server, "https://c.example.com");
  else
    check_failed(&c);
  co_kubeconfig_free(&c);
  co_free(doc);
  return rc;
}

static void test_nesting_and_scalar_limits(void) {
  /* The root mapping is one level, so 63 sequences fit in 64 and 64 do not. */
  CO_CHECK_INT(parse_with_tail("extra: ", 63, '['), ==, 0);
  CO_CHECK_INT(parse_with_tail("extra: ", 64, '['), ==, CO_ETOOBIG);
  CO_CHECK_CONTAINS(err, "nested deeper than 64 levels");
  CO_CHECK_INT(parse_with_tail("extra: ", (size_t)1 << 20, 'a'), ==, 0);
  CO_CHECK_INT(parse_with_tail("extra: ", ((size_t)1 << 20) + 1, 'a'), ==, CO_ETOOBIG);
  CO_CHECK_CONTAINS(err, "line 13: a value is longer than the 1024 KiB limit");

  /* 256 Ki nodes: a flow list of 1-character items. */
  size_t items = (size_t)1 << 18;
  char *doc = co_malloc(items * 2 + 64);
  size_t off = (size_t)snprintf(doc, 64, "extra: [");
  for (size_t i = 0; i < items; i++) {
    doc[off++] = '1';
    doc[off++] = ',';
  }
  doc[off++] = ']';
  co_kubeconfig_t c;
  CO_CHECK_INT(co_kubeconfig_parse(&c, doc, off, NULL, NULL, err, sizeof err), ==, CO_ETOOBIG);
  CO_CHECK_CONTAINS(err, "more than 262144 YAML nodes");
  co_free(doc);
}

/* The 4 MiB limit: a valid file of exactly 4 MiB loads, one byte more does not. */
static void test_oversize_file(void) {
  char path[] = "/tmp/co-kc-big-XXXXXX";
  int fd = mkstemp(path);
  CO_CHECK(fd >= 0);
  if (fd < 0)
    return;
  close(fd);
  char *doc = co_malloc(MAX_FILE + 1);
  size_t off = (size_t)snprintf(doc, MAX_FILE, "%s#", VALID);
  memset(doc + off, 'x', MAX_FILE - off - 1);
  doc[MAX_FILE - 1] = '\n';
  doc[MAX_FILE] = '\n';

  write_file(path, doc, MAX_FILE);
  co_kubeconfig_t c;
  CO_CHECK_INT(co_kubeconfig_load(&c, path, NULL, err, sizeof err), ==, 0);
  CO_CHECK_STR(c.server, "https://c.example.com");
  co_kubeconfig_free(&c);

  write_file(path, doc, MAX_FILE + 1);
  CO_CHECK_INT(co_kubeconfig_load(&c, path, NULL, err, sizeof err), ==, CO_ETOOBIG);
  check_failed(&c);
  CO_CHECK_CONTAINS(err, path);
  CO_CHECK_CONTAINS(err, "file is larger than the 4096 KiB limit");

  CO_CHECK_INT(co_kubeconfig_parse(&c, doc, MAX_FILE + 1, NULL, NULL, err, sizeof err), ==,
               CO_ETOOBIG);
  CO_CHECK_CONTAINS(err, "more than the 4 MiB limit");
  co_free(doc);
  unlink(path);
}

/* --- in cluster --------------------------------------------------------------------------------
 */

static const char *const sa_dirs[] = {"/var", "/var/run", "/var/run/secrets",
                                      "/var/run/secrets/kubernetes.io",
                                      "/var/run/secrets/kubernetes.io/serviceaccount"};
static const char *const sa_files[] = {"token", "ca.crt", "namespace"};

/* Makes root/var/run/secrets/kubernetes.io/serviceaccount with the given files (NULL: absent). */
static void sa_make(char *root, const char *token, const char *ns) {
  CO_CHECK(mkdtemp(root) != NULL);
  char p[512];
  for (size_t i = 0; i < sizeof sa_dirs / sizeof sa_dirs[0]; i++) {
    snprintf(p, sizeof p, "%s%s", root, sa_dirs[i]);
    CO_CHECK_INT(mkdir(p, 0700), ==, 0);
  }
  const char *content[] = {token, "-----BEGIN CERTIFICATE-----\n", ns};
  for (size_t i = 0; i < 3; i++) {
    if (content[i] == NULL)
      continue;
    snprintf(p, sizeof p, "%s%s/%s", root, sa_dirs[4], sa_files[i]);
    write_file(p, content[i], strlen(content[i]));
  }
}

static void sa_remove(const char *root) {
  char p[512];
  for (size_t i = 0; i < 3; i++) {
    snprintf(p, sizeof p, "%s%s/%s", root, sa_dirs[4], sa_files[i]);
    unlink(p);
  }
  for (size_t i = sizeof sa_dirs / sizeof sa_dirs[0]; i-- > 0;) {
    snprintf(p, sizeof p, "%s%s", root, sa_dirs[i]);
    rmdir(p);
  }
  rmdir(root);
}

static void test_in_cluster(void) {
  char root[] = "/tmp/co-kc-sa-XXXXXX";
  sa_make(root, "  eyJhbGciOi.payload.sig\n", "team-ns\n");
  setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
  setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  char want[512];

  co_kubeconfig_t c;
  CO_CHECK_INT(co_kubeconfig_in_cluster(&c, root, err, sizeof err), ==, 0);
  CO_CHECK_STR(c.server, "https://10.96.0.1:443");
  CO_CHECK_STR(c.token, "eyJhbGciOi.payload.sig");
  snprintf(want, sizeof want, "%s%s/token", root, sa_dirs[4]);
  CO_CHECK_STR(c.token_file, want);
  snprintf(want, sizeof want, "%s%s/ca.crt", root, sa_dirs[4]);
  CO_CHECK_STR(c.ca_file, want);
  CO_CHECK_STR(c.namespace, "team-ns");
  CO_CHECK_STR(c.context, NULL);
  CO_CHECK_INT(c.in_cluster, ==, 1);
  CO_CHECK_INT(c.insecure, ==, 0);
  co_kubeconfig_free(&c);

  /* A trailing slash on root does not double up; an IPv6 host gets brackets. */
  snprintf(want, sizeof want, "%s/", root);
  setenv("KUBERNETES_SERVICE_HOST", "fd00:10:96::1", 1);
  setenv("KUBERNETES_SERVICE_PORT", "6443", 1);
  CO_CHECK_INT(co_kubeconfig_in_cluster(&c, want, err, sizeof err), ==, 0);
  CO_CHECK_STR(c.server, "https://[fd00:10:96::1]:6443");
  snprintf(want, sizeof want, "%s%s/token", root, sa_dirs[4]);
  CO_CHECK_STR(c.token_file, want);
  co_kubeconfig_free(&c);
  co_kubeconfig_free(&c); /* twice is fine */
  static const co_kubeconfig_t zero;
  CO_CHECK(memcmp(&c, &zero, sizeof zero) == 0);

  /* namespace is optional. */
  snprintf(want, sizeof want, "%s%s/namespace", root, sa_dirs[4]);
  unlink(want);
  CO_CHECK_INT(co_kubeconfig_in_cluster(&c, root, err, sizeof err), ==, 0);
  CO_CHECK_STR(c.namespace, NULL);
  co_kubeconfig_free(&c);

  /* An empty token is an error, a missing one too. */
  snprintf(want, sizeof want, "%s%s/token", root, sa_dirs[4]);
  write_file(want, " \n", 2);
  CO_CHECK_INT(co_kubeconfig_in_cluster(&c, root, err, sizeof err), ==, CO_ECONFIG);
  check_failed(&c);
  CO_CHECK_CONTAINS(err, "/serviceaccount/token: service account token is empty");
  unlink(want);
  CO_CHECK_INT(co_kubeconfig_in_cluster(&c, root, err, sizeof err), ==, CO_EIO);
  check_failed(&c);
  CO_CHECK_CONTAINS(err, "/serviceaccount/token: service account token not found");
  sa_remove(root);
}

typedef struct {
  const char *host, *port; /* NULL: unset */
  const char *msg;
} env_case_t;

static void test_in_cluster_env(void) {
  static const env_case_t cases[] = {
      {NULL, "443", "not running in a cluster: KUBERNETES_SERVICE_HOST is not set"},
      {"", "443", "not running in a cluster: KUBERNETES_SERVICE_HOST is not set"},
      {"10.0.0.1", NULL, "not running in a cluster: KUBERNETES_SERVICE_PORT is not set"},
      {"10.0.0.1", "https", "KUBERNETES_SERVICE_PORT \"https\" is not a port number"},
      {"10.0.0.1", "0", "is not a port number"},
      {"10.0.0.1", "65536", "is not a port number"},
      {"10.0.0.1", "443 ", "is not a port number"},
      {"evil.example.com/path?", "443",
       "KUBERNETES_SERVICE_HOST \"evil.example.com/path?\" is not"},
      {"user@host", "443", "is not a host name or IP address"},
  };
  char root[] = "/tmp/co-kc-sa-XXXXXX";
  sa_make(root, "tok", NULL);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const env_case_t *t = &cases[i];
    if (t->host != NULL)
      setenv("KUBERNETES_SERVICE_HOST", t->host, 1);
    else
      unsetenv("KUBERNETES_SERVICE_HOST");
    if (t->port != NULL)
      setenv("KUBERNETES_SERVICE_PORT", t->port, 1);
    else
      unsetenv("KUBERNETES_SERVICE_PORT");
    co_kubeconfig_t c;
    CO_CHECK_INT(co_kubeconfig_in_cluster(&c, root, err, sizeof err), ==, CO_ECONFIG);
    check_failed(&c);
    CO_CHECK_CONTAINS(err, t->msg);
  }
  /* The same tree is accepted once the environment is right. */
  setenv("KUBERNETES_SERVICE_HOST", "kubernetes.default.svc", 1);
  setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  co_kubeconfig_t c;
  CO_CHECK_INT(co_kubeconfig_in_cluster(&c, root, err, sizeof err), ==, 0);
  CO_CHECK_STR(c.server, "https://kubernetes.default.svc:443");
  CO_CHECK_STR(c.token, "tok");
  co_kubeconfig_free(&c);
  unsetenv("KUBERNETES_SERVICE_HOST");
  unsetenv("KUBERNETES_SERVICE_PORT");
  sa_remove(root);
}

static void test_free_zeroes(void) {
  co_kubeconfig_t c;
  memset(&c, 0, sizeof c);
  co_kubeconfig_free(&c);
  co_kubeconfig_free(NULL);
  CO_CHECK_INT(load_fixture(&c, "full.yaml", "certdata-ctx"), ==, 0);
  co_kubeconfig_free(&c);
  static const co_kubeconfig_t zero;
  CO_CHECK(memcmp(&c, &zero, sizeof zero) == 0);
  co_kubeconfig_free(&c);
  CO_CHECK(memcmp(&c, &zero, sizeof zero) == 0);
}

CO_TEST_MAIN(CO_TEST(test_token_user), CO_TEST(test_token_file_and_relative_paths),
             CO_TEST(test_client_cert_files_and_insecure), CO_TEST(test_client_cert_data),
             CO_TEST(test_anonymous_context), CO_TEST(test_relative_kubeconfig_path),
             CO_TEST(test_parse_base_dir), CO_TEST(test_kubeconfig_merge),
             CO_TEST(test_default_home), CO_TEST(test_file_errors), CO_TEST(test_parse_errors),
             CO_TEST(test_insecure_spellings), CO_TEST(test_parse_shapes), CO_TEST(test_base64),
             CO_TEST(test_nesting_and_scalar_limits), CO_TEST(test_oversize_file),
             CO_TEST(test_in_cluster), CO_TEST(test_in_cluster_env), CO_TEST(test_free_zeroes))
