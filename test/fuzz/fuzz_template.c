/* Fuzzes the node agent's reading of k3s containerd files: the rendered config.toml and an
 * existing template, both host data. Input: one flag byte (bit 0: a v3 template exists, bit 1:
 * a v2 template exists, bit 2: runsc is installed), then config.toml, then after a line
 * "=====" the template. Each run writes them into a host tree on tmpfs and runs a whole pass
 * (co_agent_pass: detection, template change, read-back), a second pass, and a removal.
 *
 * Invariants checked (abort = a finding): a pass that succeeded is idempotent (the second
 * writes nothing); a refused pass wrote nothing; removal restores a template that was not ours
 * byte for byte. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "co/nodeagent.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CD CO_K3S_CONTAINERD_DIR

static char root[64];

static void path(char *dst, size_t n, const char *rel) { snprintf(dst, n, "%s%s", root, rel); }

static void put(const char *rel, const char *d, size_t n) {
  char p[256];
  path(p, sizeof p, rel);
  FILE *f = fopen(p, "wb");
  if (f == NULL)
    abort();
  if (n > 0 && fwrite(d, 1, n, f) != n)
    abort();
  fclose(f);
}

/* Reads a file into buf (at most max bytes); returns its size or -1 when absent. */
static long get(const char *rel, char *buf, size_t max) {
  char p[256];
  path(p, sizeof p, rel);
  FILE *f = fopen(p, "rb");
  if (f == NULL)
    return -1;
  size_t n = fread(buf, 1, max, f);
  fclose(f);
  return (long)n;
}

static void cleanup(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", root);
  if (system(cmd) != 0)
    fprintf(stderr, "fuzz_template: could not remove %s\n", root);
}

static void setup(void) {
  if (root[0] != '\0')
    return;
  snprintf(root, sizeof root, "/dev/shm/co-fuzz-template-%d", (int)getpid());
  char cmd[256];
  snprintf(cmd, sizeof cmd, "mkdir -p %s%s %s/etc/systemd/system %s/usr/local/bin", root, CD, root,
           root);
  if (system(cmd) != 0)
    abort();
  put("/etc/systemd/system/k3s-agent.service", "[Unit]\n", 7);
  atexit(cleanup);
}

static void reset(int flags) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf %s%s/* %s%s/.[!.]* %s/usr/local/bin/* %s/dev", root, CD, root,
           CD, root, root);
  if (system(cmd) != 0)
    abort();
  if (flags & 4) {
    put("/usr/local/bin/runsc", "", 0);
    put("/usr/local/bin/containerd-shim-runsc-v1", "", 0);
  }
}

static const char *const classes[] = {"kata-qemu", "gvisor", NULL};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > 64 * 1024)
    return 0;
  setup();
  int flags = data[0];
  const char *d = (const char *)data + 1;
  size_t n = size - 1, cn = n;
  const char *tmpl = NULL;
  size_t tn = 0;
  for (size_t i = 0; i + 6 <= n; i++)
    if (memcmp(d + i, "=====\n", 6) == 0 && (i == 0 || d[i - 1] == '\n')) {
      cn = i;
      tmpl = d + i + 6;
      tn = n - i - 6;
      break;
    }
  reset(flags);
  put(CD "/config.toml", d, cn);
  const char *tname = NULL;
  if (tmpl != NULL && (flags & 1))
    tname = CD "/config-v3.toml.tmpl";
  else if (tmpl != NULL && (flags & 2))
    tname = CD "/config.toml.tmpl";
  if (tname != NULL)
    put(tname, tmpl, tn);

  co_agent_pass_in_t in = {root, 0, classes, flags & 8 ? 2 : 0};
  co_agent_pass_out_t o1, o2, o3;
  co_agent_pass(&in, &o1);
  if (o1.refused && o1.res.nchanged != 0)
    abort(); /* a refusal must not write */
  co_agent_pass(&in, &o2);
  if (o1.rc == 0 && (o2.rc != 0 || o2.res.nchanged != 0))
    abort(); /* not idempotent */
  in.remove = 1;
  co_agent_pass(&in, &o3);
  if (o1.rc == 0 && o3.rc == 0 && tname != NULL) {
    /* Removal may delete only a template of ours (there is no backup here); any other template
     * is left or restored byte for byte. */
    static const char mark[] = "# Managed by confidential-operator (";
    int ours = tn >= sizeof mark - 1 && memcmp(tmpl, mark, sizeof mark - 1) == 0;
    static char back[64 * 1024 + 1];
    long got = get(tname, back, sizeof back);
    if (got == -1 ? !ours : got != (long)tn || memcmp(back, tmpl, tn) != 0)
      abort(); /* removal did not restore the template, or deleted one not written by us */
  }
  co_agent_pass_free(&o1);
  co_agent_pass_free(&o2);
  co_agent_pass_free(&o3);
  return 0;
}
