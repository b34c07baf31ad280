/* Node agent pass (co_agent_pass) and the read-back of the rendered config
 * (co_k3s_rendered_read) on fixture host trees from data/node: what a pass expects k3s to load,
 * when it counts as verified (only after k3s re-rendered config.toml), refusals that write
 * nothing, idempotence, and removal back to the original tree. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "co/alloc.h"
#include "co/error.h"
#include "co/nodeagent.h"
#include "co/noderendered.h"
#include "co_test.h"

#define DIR CO_TEST_DATA "/node"
#define CD CO_K3S_CONTAINERD_DIR
#define BASE_LINE "{{ template \"base\" . }}\n"

static const char *const all_classes[] = {"kata-qemu", "kata-qemu-snp", "kata-qemu-tdx", "gvisor",
                                          NULL};

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...) {
  char cmd[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  return system(cmd);
}

/* Copies data/node/<fixture>/host to a new temporary directory (or makes an empty one). */
static void make_tmp(char *tmp, size_t n, const char *fixture) {
  snprintf(tmp, n, "/tmp/co-nodeagent-XXXXXX");
  CO_CHECK(mkdtemp(tmp) != NULL);
  if (fixture)
    CO_CHECK_INT(sh("cp -a '%s/%s/host/.' '%s/'", DIR, fixture, tmp), ==, 0);
}

static void rm_tmp(const char *tmp) { CO_CHECK_INT(sh("rm -rf '%s'", tmp), ==, 0); }

static void put(const char *root, const char *rel, const char *data) {
  char p[1024];
  snprintf(p, sizeof p, "%s%s", root, rel);
  CO_CHECK_INT(sh("mkdir -p \"$(dirname '%s')\"", p), ==, 0);
  FILE *f = fopen(p, "wb");
  CO_CHECK(f != NULL);
  if (f == NULL)
    return;
  fputs(data, f);
  fclose(f);
}

static char *slurp(const char *root, const char *rel) {
  char p[1024];
  snprintf(p, sizeof p, "%s%s", root, rel);
  FILE *f = fopen(p, "rb");
  if (f == NULL)
    return NULL;
  char *buf = calloc(1, 1 << 20);
  size_t n = fread(buf, 1, (1 << 20) - 1, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

static void add_runsc(const char *root) {
  put(root, "/usr/local/bin/runsc", "#!/bin/sh\n");
  put(root, "/usr/local/bin/containerd-shim-runsc-v1", "#!/bin/sh\n");
}

/* What k3s does at start: config.toml = the template with the base expanded, or the base. */
static void k3s_render(const char *root, const char *tmpl, const char *base) {
  char rel[256];
  snprintf(rel, sizeof rel, CD "/%s", tmpl);
  char *t = slurp(root, rel);
  if (t == NULL) {
    put(root, CD "/config.toml", base);
    return;
  }
  const char *at = strstr(t, BASE_LINE);
  CO_CHECK(at != NULL);
  size_t need = strlen(t) + strlen(base) + 1;
  char *out = malloc(need);
  snprintf(out, need, "%.*s%s%s", (int)(at ? at - t : 0), t, base,
           at ? at + strlen(BASE_LINE) : "");
  put(root, CD "/config.toml", out);
  free(out);
  free(t);
}

static void pass(const char *root, int remove, co_agent_pass_out_t *out) {
  co_agent_pass_in_t in = {root, remove, all_classes, 0};
  co_agent_pass(&in, out);
  fprintf(stderr, "# pass(%s): rc=%d verified=%d expected=%s handlers=%s message=%s\n",
          remove ? "remove" : "prepare", out->rc, out->verified, out->expected,
          out->rendered.handlers, out->message);
}

static int same_tree(const char *want, const char *got) {
  return sh("diff -r -u '%s' '%s' >&2", want, got) == 0;
}

/* containerd 2 without the drop-in import: template + drop-in, verified only once k3s has
 * re-rendered; idempotent; removal restores the tree. */
static void test_v3_prepare_verify_remove(void) {
  char tmp[256], orig[256];
  make_tmp(tmp, sizeof tmp, "v3-noimport");
  add_runsc(tmp);
  make_tmp(orig, sizeof orig, NULL);
  CO_CHECK_INT(sh("cp -a '%s/.' '%s/'", tmp, orig), ==, 0);
  char *base = slurp(tmp, CD "/config.toml");
  CO_CHECK(base != NULL);

  co_agent_pass_out_t o;
  pass(tmp, 0, &o);
  CO_CHECK_INT(o.rc, ==, 0);
  CO_CHECK_INT(o.detected, ==, 1);
  CO_CHECK_INT(o.k3s.config_version, ==, 3);
  CO_CHECK_STR(o.k3s.unit, "k3s.service"); /* the fixture is a server */
  CO_CHECK(o.res.nchanged > 0);
  CO_CHECK_INT(o.res.restart_needed, ==, 1);
  CO_CHECK_STR(o.expected, "runsc");
  CO_CHECK_INT(o.verified, ==, 0); /* k3s has not re-rendered yet */
  CO_CHECK_CONTAINS(o.message, "does not load runsc,the import of config-v3.toml.d");
  CO_CHECK_STR(o.kata[0], NULL); /* no /dev/kvm */
  co_agent_pass_free(&o);

  k3s_render(tmp, "config-v3.toml.tmpl", base);
  pass(tmp, 0, &o);
  CO_CHECK_INT(o.rc, ==, 0);
  CO_CHECK_INT(o.res.nchanged, ==, 0);
  CO_CHECK_INT(o.verified, ==, 1);
  CO_CHECK_INT(o.rendered.imports_dropin, ==, 1);
  CO_CHECK_INT(o.rendered.ours, ==, 1);
  CO_CHECK_INT(o.rendered.version, ==, 3);
  CO_CHECK(co_k3s_rendered_has(&o.rendered, "runsc"));
  CO_CHECK(co_k3s_rendered_has(&o.rendered, "runc"));
  co_agent_pass_free(&o);

  pass(tmp, 1, &o);
  CO_CHECK_INT(o.rc, ==, 0);
  CO_CHECK(o.res.nchanged > 0);
  CO_CHECK_INT(o.res.restart_needed, ==, 1);
  CO_CHECK_INT(o.verified, ==, 0); /* the rendered config is still ours until a restart */
  co_agent_pass_free(&o);
  k3s_render(tmp, "config-v3.toml.tmpl", base);
  pass(tmp, 1, &o);
  CO_CHECK_INT(o.rc, ==, 0);
  CO_CHECK_INT(o.res.nchanged, ==, 0);
  CO_CHECK_INT(o.verified, ==, 1);
  co_agent_pass_free(&o);
  CO_CHECK(same_tree(orig, tmp));
  free(base);
  rm_tmp(tmp);
  rm_tmp(orig);
}

/* containerd 1 (v2 template) on a KVM host: the Kata tables of the enabled classes the
 * hardware offers are expected in the rendered config, next to runsc. */
static void test_v2_kvm_expects_kata_tables(void) {
  char tmp[256];
  make_tmp(tmp, sizeof tmp, "v2-runsc");
  put(tmp, "/dev/kvm", "");
  char *base = slurp(tmp, CD "/config.toml");
  co_agent_pass_out_t o;
  pass(tmp, 0, &o);
  CO_CHECK_INT(o.rc, ==, 0);
  CO_CHECK_INT(o.hw.kvm, ==, 1);
  CO_CHECK_STR(o.kata[0], "kata-qemu");
  CO_CHECK_STR(o.kata[1], NULL);
  CO_CHECK_STR(o.expected, "runsc,kata-qemu");
  CO_CHECK_INT(o.verified, ==, 0);
  co_agent_pass_free(&o);
  k3s_render(tmp, "config.toml.tmpl", base);
  pass(tmp, 0, &o);
  CO_CHECK_INT(o.verified, ==, 1);
  CO_CHECK_INT(o.rendered.version, ==, 2);
  CO_CHECK(co_k3s_rendered_has(&o.rendered, "kata-qemu"));
  co_agent_pass_free(&o);

  /* kata-qemu not enabled: no Kata handler planned. */
  co_agent_pass_in_t in = {tmp, 0, (const char *const[]){"gvisor", NULL}, 0};
  co_agent_pass(&in, &o);
  CO_CHECK_STR(o.kata[0], NULL);
  co_agent_pass_free(&o);
  free(base);
  rm_tmp(tmp);
}

/* Templates the patcher does not understand: refused, nothing written; not a k3s host: an
 * error, not a refusal. */
static void test_refusals_write_nothing(void) {
  static const char *const cases[] = {"admin", "corrupt"};
  for (size_t i = 0; i < 2; i++) {
    char tmp[256], orig[256];
    make_tmp(tmp, sizeof tmp, cases[i]);
    make_tmp(orig, sizeof orig, cases[i]);
    co_agent_pass_out_t o;
    pass(tmp, 0, &o);
    CO_CHECK(o.rc == CO_EUNSUPPORTED || o.rc == CO_EPARSE);
    CO_CHECK_INT(o.refused, ==, 1);
    CO_CHECK_INT(o.res.nchanged, ==, 0);
    CO_CHECK(o.message[0] != '\0');
    CO_CHECK(o.nlabels >= 4); /* hardware is still reported */
    co_agent_pass_free(&o);
    CO_CHECK(same_tree(orig, tmp));
    rm_tmp(tmp);
    rm_tmp(orig);
  }
  char tmp[256];
  make_tmp(tmp, sizeof tmp, NULL);
  co_agent_pass_out_t o;
  pass(tmp, 0, &o);
  CO_CHECK_INT(o.rc, ==, CO_ENOTFOUND);
  CO_CHECK_INT(o.refused, ==, 0);
  CO_CHECK_CONTAINS(o.message, "not a k3s node");
  co_agent_pass_free(&o);
  rm_tmp(tmp);
}

/* The read-back follows imports (multi-line, globs), counts tables under the plugin id of each
 * file's own version only, and dedups handlers. */
static void test_rendered_read(void) {
  char tmp[256];
  make_tmp(tmp, sizeof tmp, NULL);
  co_k3s_rendered_t r;
  char err[256] = "";
  CO_CHECK_INT(co_k3s_rendered_read(tmp, &r, err, sizeof err), ==, CO_ENOTFOUND);
  CO_CHECK_CONTAINS(err, "missing");
  put(tmp, CD "/config.toml",
      "version = 3\n"
      "imports = [\n"
      "  \"" CD "/config-v3.toml.d/*.toml\", # k3s\n"
      "  'relative/x.toml',\n"
      "]\n"
      "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]\n"
      "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]\n"
      "[ plugins . \"io.containerd.cri.v1.runtime\" . containerd . runtimes . \"kata-qemu\" ]\n"
      "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.wrongid]\n");
  put(tmp, CD "/config-v3.toml.d/a.toml",
      "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runsc]\n"
      "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]\n");
  put(tmp, CD "/config-v3.toml.d/b.toml",
      "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.kata-clh]\n");
  put(tmp, CD "/config-v3.toml.d/c.txt",
      "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.ignored]\n");
  CO_CHECK_INT(co_k3s_rendered_read(tmp, &r, err, sizeof err), ==, 0);
  CO_CHECK_STR(r.handlers, "runc,kata-qemu,runsc,kata-clh");
  CO_CHECK_INT(r.imports_dropin, ==, 1);
  CO_CHECK_INT(r.ours, ==, 0);
  CO_CHECK_INT(r.imported, ==, 2);
  CO_CHECK(!co_k3s_rendered_has(&r, "wrongid"));
  CO_CHECK(!co_k3s_rendered_has(&r, "kata"));
  CO_CHECK(co_k3s_rendered_has(&r, "kata-clh"));

  put(tmp, CD "/config.toml", "version = 3\n[plugins.'io.containerd.cri.v1.runtime'\n");
  CO_CHECK_INT(co_k3s_rendered_read(tmp, &r, err, sizeof err), ==, CO_EPARSE);
  put(tmp, CD "/config.toml", "version = 3 # confidential-operator\n");
  CO_CHECK_INT(co_k3s_rendered_read(tmp, &r, NULL, 0), ==, 0);
  CO_CHECK_INT(r.ours, ==, 1);
  CO_CHECK_STR(r.handlers, "");
  rm_tmp(tmp);
}

/* The agent's Node as JSON text -> what it asks of the agent. */
static co_agent_act_t action_of(const char *json) {
  cJSON *obj = cJSON_Parse(json);
  CO_CHECK(obj != NULL);
  co_node_t *n = co_calloc(1, co_type_nodes.size);
  n->meta.name = "n1";
  CO_CHECK_INT(co_type_nodes.decode(obj, &n->meta), ==, 0);
  co_agent_act_t act = co_agent_node_action(n);
  co_type_nodes.release(&n->meta);
  co_free(n);
  cJSON_Delete(obj);
  return act;
}

#define D "confidential.cypherpunk.io/"

/* Prepare only on an opted-in node; remove when told, whatever the labels; nothing on a node
 * being evicted (enabled gone, no removal yet) or cleared by the controller after the removal
 * (while the agent's pod is still stopping it must not prepare the node again). */
static void test_node_action(void) {
  CO_CHECK_INT(co_agent_node_action(NULL), ==, CO_AGENT_ACT_NONE);
  CO_CHECK_INT(
      action_of("{\"metadata\":{\"labels\":{\"" D "enabled\":\"true\",\"" D "agent\":\"true\"}}}"),
      ==, CO_AGENT_ACT_PREPARE);
  CO_CHECK_INT(action_of("{\"metadata\":{\"labels\":{\"" D "enabled\":\"true\"},"
                         "\"annotations\":{\"" D "agent-action\":\"remove\"}}}"),
               ==, CO_AGENT_ACT_REMOVE);
  CO_CHECK_INT(action_of("{\"metadata\":{\"labels\":{\"" D "agent\":\"true\"},"
                         "\"annotations\":{\"" D "agent-action\":\"remove\",\"" D
                         "agent-state\":\"Removed\"}}}"),
               ==, CO_AGENT_ACT_REMOVE);
  /* Evicting: the enabled label is gone, agent=true and the agent's state are still there. */
  CO_CHECK_INT(action_of("{\"metadata\":{\"labels\":{\"" D "agent\":\"true\",\"" D
                         "kvm\":\"true\"},\"annotations\":{\"" D "agent-state\":\"Prepared\"}}}"),
               ==, CO_AGENT_ACT_NONE);
  /* Cleared by the controller. */
  CO_CHECK_INT(action_of("{\"metadata\":{\"labels\":{\"type\":\"kwok\"}}}"), ==, CO_AGENT_ACT_NONE);
  CO_CHECK_INT(action_of("{\"metadata\":{\"labels\":{\"" D "enabled\":\"false\"}}}"), ==,
               CO_AGENT_ACT_NONE);
  CO_CHECK_INT(action_of("{\"metadata\":{\"labels\":{\"" D "enabled\":\"true\"},"
                         "\"annotations\":{\"" D "agent-action\":\"keep\"}}}"),
               ==, CO_AGENT_ACT_PREPARE);
}

CO_TEST_MAIN(CO_TEST(test_v3_prepare_verify_remove), CO_TEST(test_v2_kvm_expects_kata_tables),
             CO_TEST(test_refusals_write_nothing), CO_TEST(test_rendered_read),
             CO_TEST(test_node_action))
