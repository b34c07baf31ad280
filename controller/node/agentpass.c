/* One node-agent pass against the host (see co/nodeagent.h): hardware, k3s generation, the
 * template change or its removal, and the read-back of the rendered config. Blocking; the
 * agent runs it on libuv's thread pool, tests call it directly on fixture trees. */
#include <stdio.h>
#include <string.h>

#include "co/error.h"
#include "co/nodeagent.h"

/* Appends sep (when dst is not empty) and s. */
static void append(char *dst, size_t n, const char *sep, const char *s) {
  size_t len = strlen(dst);
  if (len + 1 < n)
    snprintf(dst + len, n - len, "%s%s", len ? sep : "", s);
}

static int enabled(const char *const *list, const char *cls) {
  for (; list != NULL && *list != NULL; list++)
    if (strcmp(*list, cls) == 0)
      return 1;
  return 0;
}

/* The handlers k3s must load after the change (prepare) and whether they are loaded. */
static void expect(const co_agent_pass_in_t *in, co_agent_pass_out_t *out) {
  const co_k3s_node_t *k = &out->k3s;
  const co_k3s_rendered_t *r = &out->rendered;
  int ok = 1, nkata = 0;
  char missing[256] = "";
  if (k->has_runsc) {
    append(out->expected, sizeof out->expected, ",", "runsc");
    if (!co_k3s_rendered_has(r, "runsc")) {
      ok = 0;
      append(missing, sizeof missing, ",", "runsc");
    }
  }
  for (int i = 0; out->kata[i] != NULL; i++, nkata++) {
    if (k->config_version != 2)
      continue; /* v3: kata-deploy writes these itself into the imported drop-in dir */
    append(out->expected, sizeof out->expected, ",", out->kata[i]);
    if (!co_k3s_rendered_has(r, out->kata[i])) {
      ok = 0;
      append(missing, sizeof missing, ",", out->kata[i]);
    }
  }
  int need_import = k->config_version == 3 && (k->has_runsc || nkata > 0);
  if (need_import && !r->imports_dropin) {
    ok = 0;
    append(missing, sizeof missing, ",", "the import of config-v3.toml.d");
  }
  (void)in;
  out->verified = out->rendered_rc == 0 && ok;
  if (out->expected[0] == '\0' && !need_import) {
    append(out->message, sizeof out->message, "; ",
           "no sandbox runtime to configure (no runsc binaries, no KVM)");
    out->verified = 1;
  } else if (!out->verified && out->rendered_rc == 0) {
    append(out->message, sizeof out->message, "; ", "the rendered config does not load ");
    append(out->message, sizeof out->message, "", missing);
    append(out->message, sizeof out->message, "", " yet");
  }
}

void co_agent_pass(const co_agent_pass_in_t *in, co_agent_pass_out_t *out) {
  memset(out, 0, sizeof *out);
  const char *root = in->host_root;
  co_hw_detect(root, &out->hw);
  out->nlabels = co_hw_labels(&out->hw, out->labels, sizeof out->labels / sizeof out->labels[0]);
  const char *kata[4];
  size_t nk = co_hw_kata_classes(&out->hw, kata, 4), k = 0;
  for (size_t i = 0; i < nk && k < CO_AGENT_MAX_KATA; i++)
    if (enabled(in->enabled, kata[i]))
      out->kata[k++] = kata[i];
  out->kata[k] = NULL;

  co_nodetemplate_opts_t o = {out->kata, in->containerd_major_hint};
  char err[256] = "";
  int drc = co_k3s_detect(root, &o, &out->k3s, err, sizeof err);
  out->detected = drc == 0;
  if (in->remove) {
    out->rc = co_nodetemplate_remove(root, &out->res);
  } else if (drc != 0) {
    out->rc = drc;
    snprintf(out->res.message, sizeof out->res.message, "%s", err);
  } else {
    out->rc = co_nodetemplate_apply(root, &o, &out->res);
  }
  snprintf(out->message, sizeof out->message, "%s", out->res.message);
  out->refused = !in->remove && (out->rc == CO_EUNSUPPORTED || out->rc == CO_EPARSE);
  if (out->rc != 0)
    return;

  char rerr[256] = "";
  out->rendered_rc = co_k3s_rendered_read(root, &out->rendered, rerr, sizeof rerr);
  if (out->rendered_rc != 0)
    append(out->message, sizeof out->message, "; ", rerr);
  if (in->remove)
    out->verified = out->rendered_rc != 0 || !out->rendered.ours;
  else if (out->detected)
    expect(in, out);
}

void co_agent_pass_free(co_agent_pass_out_t *out) {
  if (out != NULL)
    co_nodetemplate_result_free(&out->res);
}
