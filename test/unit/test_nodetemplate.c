/* k3s containerd template patcher on fixture host trees (data/node/<case>/host): each case is
 * copied to a temporary directory, patched, compared file by file with data/node/<case>/expected
 * (diff -r, so leftover temp files fail too), patched again (unchanged), and removed (the tree
 * is byte-identical to host/ again). Refused cases must leave the tree untouched.
 * CO_TEST_REGEN=1 rewrites the expected trees from the current output (review the diff!). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "co/error.h"
#include "co/nodetemplate.h"
#include "co_test.h"

#define DIR CO_TEST_DATA "/node"
#define CD CO_K3S_CONTAINERD_DIR

static const char *const kata_qemu[] = {"kata-qemu", NULL};
static const char *const kata_snp[] = {"kata-qemu", "kata-qemu-snp", NULL};

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...) {
  char cmd[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  return system(cmd);
}

static void make_tmp(char *tmp, size_t n, const char *fixture) {
  snprintf(tmp, n, "/tmp/co-nodetemplate-XXXXXX");
  CO_CHECK(mkdtemp(tmp) != NULL);
  if (fixture) {
    char src[1024];
    snprintf(src, sizeof src, "%s/%s/host", DIR, fixture);
    CO_CHECK_INT(sh("cp -a '%s/.' '%s/'", src, tmp), ==, 0);
  }
}

static void rm_tmp(const char *tmp) { CO_CHECK_INT(sh("rm -rf '%s'%s", tmp, ""), ==, 0); }

/* The trees are identical (names, contents; diff prints the difference). */
static int same_tree(const char *want, const char *got) {
  return sh("diff -r -u '%s' '%s' >&2", want, got) == 0;
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return NULL;
  char *buf = calloc(1, 1 << 20);
  size_t n = fread(buf, 1, (1 << 20) - 1, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

static void spit(const char *path, const char *data) {
  FILE *f = fopen(path, "wb");
  CO_CHECK(f != NULL);
  if (f == NULL)
    return;
  fputs(data, f);
  fclose(f);
}

static void fpath(char *dst, size_t n, const char *root, const char *rel) {
  snprintf(dst, n, "%s" CD "/%s", root, rel);
}

/* Renders the template the way k3s does: `{{ template "base" . }}` becomes the base config. */
static void k3s_render(const char *root, const char *tmpl, const char *base) {
  char p[1024];
  fpath(p, sizeof p, root, tmpl);
  char *t = slurp(p);
  CO_CHECK(t != NULL);
  if (t == NULL)
    return;
  const char *at = strstr(t, "{{ template \"base\" . }}\n");
  CO_CHECK(at != NULL);
  if (at == NULL) {
    free(t);
    return;
  }
  size_t need = strlen(t) + strlen(base) + 1;
  char *out = malloc(need);
  snprintf(out, need, "%.*s%s%s", (int)(at - t), t, base,
           at + strlen("{{ template \"base\" . }}\n"));
  fpath(p, sizeof p, root, "config.toml");
  spit(p, out);
  free(out);
  free(t);
}

static void run_case(const char *name, const char *const *handlers, int want_rc, int want_restart) {
  char tmp[256], host[1024], expected[1024];
  snprintf(host, sizeof host, "%s/%s/host", DIR, name);
  snprintf(expected, sizeof expected, "%s/%s/expected", DIR, name);
  make_tmp(tmp, sizeof tmp, name);
  co_nodetemplate_opts_t opts = {.kata_handlers = handlers};
  co_nodetemplate_result_t res;

  int rc = co_nodetemplate_apply(tmp, &opts, &res);
  fprintf(stderr, "# %s apply: %d %s\n", name, rc, res.message);
  CO_CHECK_INT(rc, ==, want_rc);
  CO_CHECK(res.message[0] != '\0');
  if (want_rc == 0) {
    CO_CHECK_INT(res.restart_needed, ==, want_restart);
    CO_CHECK_INT(res.unchanged, ==, res.nchanged == 0);
    for (size_t i = 0; i < res.nchanged; i++)
      CO_CHECK(strncmp(res.changed[i], CD "/", strlen(CD) + 1) == 0);
    if (getenv("CO_TEST_REGEN")) {
      CO_CHECK_INT(sh("rm -rf '%s' && mkdir -p '%s'", expected, expected), ==, 0);
      CO_CHECK_INT(sh("cp -a '%s/.' '%s/'", tmp, expected), ==, 0);
    }
    CO_CHECK(same_tree(expected, tmp));
  } else {
    CO_CHECK_INT(res.nchanged, ==, 0);
    CO_CHECK(same_tree(host, tmp)); /* a refusal changes nothing */
  }
  co_nodetemplate_result_free(&res);

  /* Second run: nothing to do. */
  rc = co_nodetemplate_apply(tmp, &opts, &res);
  CO_CHECK_INT(rc, ==, want_rc);
  if (want_rc == 0) {
    CO_CHECK_INT(res.unchanged, ==, 1);
    CO_CHECK_INT(res.nchanged, ==, 0);
    CO_CHECK_INT(res.restart_needed, ==, 0);
    CO_CHECK_CONTAINS(res.message, "unchanged");
    CO_CHECK(same_tree(expected, tmp));
  }
  co_nodetemplate_result_free(&res);

  /* Removal restores the original tree byte for byte. */
  rc = co_nodetemplate_remove(tmp, &res);
  fprintf(stderr, "# %s remove: %d %s\n", name, rc, res.message);
  CO_CHECK_INT(rc, ==, 0);
  CO_CHECK_INT(res.restart_needed, ==, want_rc == 0 ? want_restart : 0);
  CO_CHECK(same_tree(host, tmp));
  co_nodetemplate_result_free(&res);
  rc = co_nodetemplate_remove(tmp, &res);
  CO_CHECK_INT(rc, ==, 0);
  CO_CHECK_INT(res.unchanged, ==, 1);
  co_nodetemplate_result_free(&res);
  rm_tmp(tmp);
}

/* --- fixture cases ---------------------------------------------------------------------------- */

static void test_v2_containerd1_with_runsc(void) { run_case("v2-runsc", kata_qemu, 0, 1); }
static void test_v3_no_import(void) { run_case("v3-noimport", kata_qemu, 0, 1); }
static void test_v3_no_import_runsc(void) { run_case("v3-noimport-runsc", kata_snp, 0, 1); }
static void test_v3_base_imports_dropin(void) { run_case("v3-imports-runsc", kata_qemu, 0, 1); }
static void test_v3_kata_deploy_327_template(void) {
  run_case("v3-kd327-template", kata_qemu, 0, 1);
}
static void test_admin_template_refused(void) {
  run_case("admin", kata_qemu, CO_EUNSUPPORTED, 0);
  char tmp[256];
  make_tmp(tmp, sizeof tmp, "admin");
  co_nodetemplate_result_t res;
  CO_CHECK_INT(co_nodetemplate_apply(tmp, NULL, &res), ==, CO_EUNSUPPORTED);
  CO_CHECK_CONTAINS(res.message, "config.toml.tmpl is an administrator's template");
  CO_CHECK_CONTAINS(res.message, "refusing");
  co_nodetemplate_result_free(&res);
  rm_tmp(tmp);
}
static void test_corrupt_template_refused(void) {
  run_case("corrupt", kata_qemu, CO_EPARSE, 0);
  char tmp[256];
  make_tmp(tmp, sizeof tmp, "corrupt");
  co_nodetemplate_result_t res;
  CO_CHECK_INT(co_nodetemplate_apply(tmp, NULL, &res), ==, CO_EPARSE);
  CO_CHECK_CONTAINS(res.message, "config-v3.toml.tmpl is corrupt");
  co_nodetemplate_result_free(&res);
  rm_tmp(tmp);
}
/* Nothing to add on a v3 node whose base imports the drop-in dir and without runsc. */
static void test_v3_imports_without_runsc_unchanged(void) {
  char tmp[256], p[1024];
  make_tmp(tmp, sizeof tmp, "v3-imports-runsc");
  snprintf(p, sizeof p, "%s/usr/local/bin/runsc", tmp);
  CO_CHECK_INT(unlink(p), ==, 0);
  co_nodetemplate_opts_t opts = {.kata_handlers = kata_qemu};
  co_nodetemplate_result_t res;
  CO_CHECK_INT(co_nodetemplate_apply(tmp, &opts, &res), ==, 0);
  CO_CHECK_INT(res.unchanged, ==, 1);
  CO_CHECK_INT(res.restart_needed, ==, 0);
  CO_CHECK_CONTAINS(res.message, "base imports the drop-in dir");
  co_nodetemplate_result_free(&res);
  rm_tmp(tmp);
}

/* --- detection -------------------------------------------------------------------------------- */

static void detect(const char *fixture, co_k3s_node_t *n, int want_rc) {
  char tmp[256], err[256] = "";
  make_tmp(tmp, sizeof tmp, fixture);
  CO_CHECK_INT(co_k3s_detect(tmp, NULL, n, err, sizeof err), ==, want_rc);
  rm_tmp(tmp);
}

static void test_detect_generations(void) {
  co_k3s_node_t n;
  detect("v2-runsc", &n, 0);
  CO_CHECK_INT(n.role, ==, CO_K3S_AGENT);
  CO_CHECK_STR(n.unit, "k3s-agent.service");
  CO_CHECK_INT(n.config_version, ==, 2);
  CO_CHECK_INT(n.containerd_major, ==, 1);
  CO_CHECK_STR(n.template_name, "config.toml.tmpl");
  CO_CHECK_STR(n.dropin_dir_name, "config.toml.d");
  CO_CHECK_INT(n.base_imports_dropin, ==, 0);
  CO_CHECK_INT(n.systemd_cgroup, ==, 1);
  CO_CHECK_INT(n.has_runsc, ==, 1);

  detect("v3-noimport", &n, 0);
  CO_CHECK_INT(n.role, ==, CO_K3S_SERVER);
  CO_CHECK_STR(n.unit, "k3s.service");
  CO_CHECK_INT(n.config_version, ==, 3);
  CO_CHECK_INT(n.containerd_major, ==, 2);
  CO_CHECK_STR(n.template_name, "config-v3.toml.tmpl");
  CO_CHECK_STR(n.dropin_dir_name, "config-v3.toml.d");
  CO_CHECK_INT(n.base_imports_dropin, ==, 0);
  CO_CHECK_INT(n.has_runsc, ==, 0);

  detect("v3-imports-runsc", &n, 0);
  CO_CHECK_INT(n.base_imports_dropin, ==, 1);
  CO_CHECK_INT(n.has_runsc, ==, 1);
}

static void test_detect_errors(void) {
  char tmp[256], err[256], p[1024];
  co_k3s_node_t n;
  make_tmp(tmp, sizeof tmp, NULL);
  CO_CHECK_INT(co_k3s_detect(tmp, NULL, &n, err, sizeof err), ==, CO_ENOTFOUND);
  CO_CHECK_CONTAINS(err, "not a k3s node");
  rm_tmp(tmp);

  make_tmp(tmp, sizeof tmp, "v3-noimport");
  fpath(p, sizeof p, tmp, "config.toml");
  CO_CHECK_INT(unlink(p), ==, 0);
  CO_CHECK_INT(co_k3s_detect(tmp, NULL, &n, err, sizeof err), ==, CO_ENOTFOUND);
  CO_CHECK_CONTAINS(err, "has not rendered it yet");
  /* No version line: unsupported, unless containerRuntimeVersion says containerd 2. */
  spit(p, "[plugins.'io.containerd.cri.v1.runtime']\n  enable_selinux = false\n");
  CO_CHECK_INT(co_k3s_detect(tmp, NULL, &n, err, sizeof err), ==, CO_EUNSUPPORTED);
  CO_CHECK_CONTAINS(err, "no `version` line");
  co_nodetemplate_opts_t hint = {.containerd_major_hint = 2};
  CO_CHECK_INT(co_k3s_detect(tmp, &hint, &n, err, sizeof err), ==, 0);
  CO_CHECK_INT(n.config_version, ==, 3);
  spit(p, "version = 4\n");
  CO_CHECK_INT(co_k3s_detect(tmp, NULL, &n, err, sizeof err), ==, CO_EUNSUPPORTED);
  spit(p, "version = two\n");
  CO_CHECK_INT(co_k3s_detect(tmp, NULL, &n, err, sizeof err), ==, CO_EPARSE);
  spit(p, "version = 3\n[plugins.'x'\n");
  CO_CHECK_INT(co_k3s_detect(tmp, NULL, &n, err, sizeof err), ==, CO_EPARSE);
  /* imports on a continuation line, and `version` inside a table does not count. */
  spit(p, "version = 3\nimports = [\n  \"/x/config-v3.toml.d/*.toml\",\n]\n[a]\nversion = 2\n");
  CO_CHECK_INT(co_k3s_detect(tmp, NULL, &n, err, sizeof err), ==, 0);
  CO_CHECK_INT(n.config_version, ==, 3);
  CO_CHECK_INT(n.base_imports_dropin, ==, 1);
  rm_tmp(tmp);

  /* Only one of the two gVisor binaries: no runsc. */
  make_tmp(tmp, sizeof tmp, "v2-runsc");
  snprintf(p, sizeof p, "%s/usr/local/bin/containerd-shim-runsc-v1", tmp);
  CO_CHECK_INT(unlink(p), ==, 0);
  CO_CHECK_INT(co_k3s_detect(tmp, NULL, &n, err, sizeof err), ==, 0);
  CO_CHECK_INT(n.has_runsc, ==, 0);
  rm_tmp(tmp);
}

/* --- after k3s re-renders ----------------------------------------------------------------------
 * Once k3s restarts, config.toml contains our additions; they must not be mistaken for the
 * base's (which would make the next run drop them or count them as declared by the base). */

static void test_rerendered_v3_is_stable(void) {
  char tmp[256], p[1024];
  make_tmp(tmp, sizeof tmp, "v3-noimport-runsc");
  fpath(p, sizeof p, tmp, "config.toml");
  char *base = slurp(p);
  co_nodetemplate_opts_t opts = {.kata_handlers = kata_qemu};
  co_nodetemplate_result_t res;
  CO_CHECK_INT(co_nodetemplate_apply(tmp, &opts, &res), ==, 0);
  co_nodetemplate_result_free(&res);
  k3s_render(tmp, "config-v3.toml.tmpl", base);
  char *rendered = slurp(p);
  CO_CHECK_CONTAINS(rendered, "config-v3.toml.d/*.toml\"] # confidential-operator\n");
  co_k3s_node_t n;
  CO_CHECK_INT(co_k3s_detect(tmp, NULL, &n, NULL, 0), ==, 0);
  CO_CHECK_INT(n.base_imports_dropin, ==, 0); /* our import, not the base's */
  CO_CHECK_INT(co_nodetemplate_apply(tmp, &opts, &res), ==, 0);
  CO_CHECK_INT(res.unchanged, ==, 1);
  co_nodetemplate_result_free(&res);
  free(rendered);
  free(base);
  rm_tmp(tmp);
}

static void test_rerendered_v2_is_stable(void) {
  char tmp[256], p[1024];
  make_tmp(tmp, sizeof tmp, "v2-runsc");
  fpath(p, sizeof p, tmp, "config.toml");
  char *base = slurp(p);
  co_nodetemplate_opts_t opts = {.kata_handlers = kata_snp};
  co_nodetemplate_result_t res;
  CO_CHECK_INT(co_nodetemplate_apply(tmp, &opts, &res), ==, 0);
  co_nodetemplate_result_free(&res);
  k3s_render(tmp, "config.toml.tmpl", base);
  CO_CHECK_INT(co_nodetemplate_apply(tmp, &opts, &res), ==, 0);
  CO_CHECK_INT(res.unchanged, ==, 1);
  CO_CHECK(strstr(res.message, "already declares") == NULL);
  co_nodetemplate_result_free(&res);
  free(base);
  rm_tmp(tmp);
}

/* --- refusals and edge cases ------------------------------------------------------------------ */

static void test_edited_managed_template_refused(void) {
  char tmp[256], p[1024];
  make_tmp(tmp, sizeof tmp, "v3-noimport");
  co_nodetemplate_opts_t opts = {.kata_handlers = kata_qemu};
  co_nodetemplate_result_t res;
  CO_CHECK_INT(co_nodetemplate_apply(tmp, &opts, &res), ==, 0);
  co_nodetemplate_result_free(&res);
  fpath(p, sizeof p, tmp, "config-v3.toml.tmpl");
  char *t = slurp(p);
  size_t need = strlen(t) + 64;
  char *edited = malloc(need);
  snprintf(edited, need, "%s[plugins.'x']\n  y = 1\n", t);
  spit(p, edited);
  CO_CHECK_INT(co_nodetemplate_apply(tmp, &opts, &res), ==, CO_EUNSUPPORTED);
  CO_CHECK_CONTAINS(res.message, "edited since");
  co_nodetemplate_result_free(&res);
  /* Removal leaves the admin's edit in place and says so. */
  CO_CHECK_INT(co_nodetemplate_remove(tmp, &res), ==, 0);
  CO_CHECK_CONTAINS(res.message, "edited after we wrote it");
  co_nodetemplate_result_free(&res);
  char *after = slurp(p);
  CO_CHECK_STR(after, edited);
  free(after);
  free(edited);
  free(t);
  rm_tmp(tmp);
}

static void test_rendered_copy_template_refused(void) {
  char tmp[256], p[1024], q[1024];
  make_tmp(tmp, sizeof tmp, "v2-runsc");
  fpath(p, sizeof p, tmp, "config.toml");
  fpath(q, sizeof q, tmp, "config.toml.tmpl");
  char *c = slurp(p);
  spit(q, c);
  co_nodetemplate_result_t res;
  CO_CHECK_INT(co_nodetemplate_apply(tmp, NULL, &res), ==, CO_EUNSUPPORTED);
  CO_CHECK_CONTAINS(res.message, "copy of a rendered config.toml");
  co_nodetemplate_result_free(&res);
  char *after = slurp(q);
  CO_CHECK_STR(after, c);
  free(after);
  free(c);
  rm_tmp(tmp);
}

/* A table the base already declares is never declared again. */
static void test_base_declared_table_skipped(void) {
  char tmp[256], p[1024], q[1024];
  make_tmp(tmp, sizeof tmp, "v2-runsc");
  fpath(p, sizeof p, tmp, "config.toml");
  char *c = slurp(p);
  size_t need = strlen(c) + 256;
  char *more = malloc(need);
  snprintf(more, need,
           "%s[ plugins . 'io.containerd.grpc.v1.cri' . containerd.runtimes.kata-qemu ]\n"
           "  runtime_type = \"io.containerd.kata-qemu.v2\"\n",
           c);
  spit(p, more);
  co_nodetemplate_opts_t opts = {.kata_handlers = kata_qemu};
  co_nodetemplate_result_t res;
  CO_CHECK_INT(co_nodetemplate_apply(tmp, &opts, &res), ==, 0);
  CO_CHECK_CONTAINS(res.message, "the base already declares kata-qemu: not added");
  co_nodetemplate_result_free(&res);
  fpath(q, sizeof q, tmp, "config.toml.tmpl");
  char *t = slurp(q);
  CO_CHECK(t != NULL && strstr(t, "runtimes.kata-qemu]") == NULL);
  CO_CHECK_CONTAINS(t, "runtimes.runsc]");
  free(t);
  free(more);
  free(c);
  rm_tmp(tmp);
}

static void test_invalid_handler_and_args(void) {
  char tmp[256];
  make_tmp(tmp, sizeof tmp, "v2-runsc");
  static const char *const bad[] = {"kata-qemu\"]\n[x", NULL};
  co_nodetemplate_opts_t opts = {.kata_handlers = bad};
  co_nodetemplate_result_t res;
  CO_CHECK_INT(co_nodetemplate_apply(tmp, &opts, &res), ==, CO_EINVAL);
  CO_CHECK_CONTAINS(res.message, "invalid kata handler");
  co_nodetemplate_result_free(&res);
  CO_CHECK_INT(co_nodetemplate_apply(NULL, &opts, &res), ==, CO_EINVAL);
  CO_CHECK_INT(co_nodetemplate_remove(NULL, &res), ==, CO_EINVAL);
  char host[1024];
  snprintf(host, sizeof host, "%s/v2-runsc/host", DIR);
  CO_CHECK(same_tree(host, tmp));
  rm_tmp(tmp);
}

/* Drop-in dir not empty at removal (kata-deploy's file): our files go, the dir stays. */
static void test_remove_keeps_foreign_dropins(void) {
  char tmp[256], p[1024];
  make_tmp(tmp, sizeof tmp, "v3-noimport-runsc");
  co_nodetemplate_opts_t opts = {.kata_handlers = kata_qemu};
  co_nodetemplate_result_t res;
  CO_CHECK_INT(co_nodetemplate_apply(tmp, &opts, &res), ==, 0);
  co_nodetemplate_result_free(&res);
  fpath(p, sizeof p, tmp, "config-v3.toml.d/kata-deploy.toml");
  spit(p, "# kata-deploy\n");
  CO_CHECK_INT(co_nodetemplate_remove(tmp, &res), ==, 0);
  CO_CHECK_CONTAINS(res.message, "not empty");
  co_nodetemplate_result_free(&res);
  struct stat st;
  CO_CHECK_INT(stat(p, &st), ==, 0);
  fpath(p, sizeof p, tmp, "config-v3.toml.d/" CO_K3S_RUNSC_DROPIN);
  CO_CHECK(stat(p, &st) != 0 && errno == ENOENT);
  fpath(p, sizeof p, tmp, "config-v3.toml.tmpl");
  CO_CHECK(stat(p, &st) != 0 && errno == ENOENT);
  rm_tmp(tmp);
}

/* After a k3s upgrade whose base imports config-v3.toml.d itself, our template (which adds the
 * same root key) is retired: restart needed, then nothing more to do. */
static void test_template_retired_after_k3s_upgrade(void) {
  char tmp[256], p[1024], q[1024];
  make_tmp(tmp, sizeof tmp, "v3-noimport");
  co_nodetemplate_opts_t opts = {.kata_handlers = kata_qemu};
  co_nodetemplate_result_t res;
  CO_CHECK_INT(co_nodetemplate_apply(tmp, &opts, &res), ==, 0);
  co_nodetemplate_result_free(&res);
  snprintf(q, sizeof q, "%s/v3-imports-runsc/host" CD "/config.toml", DIR);
  char *newbase = slurp(q);
  k3s_render(tmp, "config-v3.toml.tmpl", newbase); /* two root imports: k3s' and ours */
  CO_CHECK_INT(co_nodetemplate_apply(tmp, &opts, &res), ==, 0);
  CO_CHECK_INT(res.restart_needed, ==, 1);
  CO_CHECK_INT(res.nchanged, ==, 1);
  CO_CHECK_CONTAINS(res.message, "no longer needed");
  co_nodetemplate_result_free(&res);
  struct stat st;
  fpath(p, sizeof p, tmp, "config-v3.toml.tmpl");
  CO_CHECK(stat(p, &st) != 0 && errno == ENOENT);
  fpath(p, sizeof p, tmp, "config.toml");
  spit(p, newbase); /* k3s renders again from the stock template */
  CO_CHECK_INT(co_nodetemplate_apply(tmp, &opts, &res), ==, 0);
  CO_CHECK_INT(res.unchanged, ==, 1);
  co_nodetemplate_result_free(&res);
  free(newbase);
  rm_tmp(tmp);
}

/* Rust shims live under runtime-rs/ (node-install.md §1.3). */
static void test_runtime_rs_paths(void) {
  char tmp[256], p[1024];
  make_tmp(tmp, sizeof tmp, "v2-runsc");
  static const char *const rs[] = {"kata-qemu-runtime-rs", NULL};
  co_nodetemplate_opts_t opts = {.kata_handlers = rs};
  co_nodetemplate_result_t res;
  CO_CHECK_INT(co_nodetemplate_apply(tmp, &opts, &res), ==, 0);
  co_nodetemplate_result_free(&res);
  fpath(p, sizeof p, tmp, "config.toml.tmpl");
  char *t = slurp(p);
  CO_CHECK_CONTAINS(t, "runtime_path = \"/opt/kata/runtime-rs/bin/containerd-shim-kata-v2\"");
  CO_CHECK_CONTAINS(t, "/opt/kata/share/defaults/kata-containers/runtime-rs/runtimes/"
                       "qemu-runtime-rs/configuration-qemu-runtime-rs.toml");
  CO_CHECK_CONTAINS(t, "runtime_type = \"io.containerd.kata-qemu-runtime-rs.v2\"");
  free(t);
  rm_tmp(tmp);
}

CO_TEST_MAIN(CO_TEST(test_v2_containerd1_with_runsc), CO_TEST(test_v3_no_import),
             CO_TEST(test_v3_no_import_runsc), CO_TEST(test_v3_base_imports_dropin),
             CO_TEST(test_v3_kata_deploy_327_template), CO_TEST(test_admin_template_refused),
             CO_TEST(test_corrupt_template_refused),
             CO_TEST(test_v3_imports_without_runsc_unchanged), CO_TEST(test_detect_generations),
             CO_TEST(test_detect_errors), CO_TEST(test_rerendered_v3_is_stable),
             CO_TEST(test_rerendered_v2_is_stable), CO_TEST(test_edited_managed_template_refused),
             CO_TEST(test_rendered_copy_template_refused),
             CO_TEST(test_base_declared_table_skipped), CO_TEST(test_invalid_handler_and_args),
             CO_TEST(test_remove_keeps_foreign_dropins),
             CO_TEST(test_template_retired_after_k3s_upgrade), CO_TEST(test_runtime_rs_paths))
