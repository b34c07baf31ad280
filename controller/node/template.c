/* k3s containerd template patcher (see co/nodetemplate.h for what is written and why).
 *
 * No TOML library: Debian has none for C (only C++ cpptoml), and templates are Go templates, not
 * TOML. The rendered config is small; a bounded line scanner over (ptr, len) finds what is
 * needed: the root `version` and `imports` keys, `SystemdCgroup = true`, and table headers. */
#include "co/nodetemplate.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "co/alloc.h"
#include "co/buf.h"
#include "co/error.h"

#define MAX_FILE ((size_t)256 * 1024)
#define MAX_HEADERS 4096
#define PATH_MAX_LEN 4096

#define TPL_V2 "config.toml.tmpl"
#define TPL_V3 "config-v3.toml.tmpl"
#define DROPIN_V2 "config.toml.d"
#define DROPIN_V3 "config-v3.toml.d"
#define RUNSC_TOML "runsc.toml"
#define BACKUP_SUFFIX ".co-backup"
#define BASE_LINE "{{ template \"base\" . }}"
#define MARK_PREFIX "# Managed by confidential-operator (fnv1a64="
#define MARK_SUFFIX \
  "); edits make the node agent refuse to touch it; its removal restores what was here before.\n"
#define OUR_TAG "# confidential-operator"
#define BLOCK_BEGIN "# BEGIN confidential-operator runtimes"
#define BLOCK_END "# END confidential-operator runtimes"
/* Plugin ids (node-install.md §0 item 3, §2). */
#define CRI_V2 "plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes."
#define CRI_V3 "plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes."

/* ---- spans and lines ------------------------------------------------------------------------ */

typedef struct {
  const char *p;
  size_t n;
} span_t;

static span_t trim(span_t s) {
  while (s.n > 0 && (s.p[0] == ' ' || s.p[0] == '\t'))
    s.p++, s.n--;
  while (s.n > 0 && (s.p[s.n - 1] == ' ' || s.p[s.n - 1] == '\t' || s.p[s.n - 1] == '\r'))
    s.n--;
  return s;
}

static int span_eq(span_t s, const char *lit) {
  size_t n = strlen(lit);
  return s.n == n && memcmp(s.p, lit, n) == 0;
}

static int span_starts(span_t s, const char *lit) {
  size_t n = strlen(lit);
  return s.n >= n && memcmp(s.p, lit, n) == 0;
}

static int span_contains(span_t s, const char *lit) {
  size_t n = strlen(lit);
  if (n == 0)
    return 1;
  for (size_t i = 0; n <= s.n && i <= s.n - n; i++)
    if (memcmp(s.p + i, lit, n) == 0)
      return 1;
  return 0;
}

/* Takes the next line (without '\n') from [*cur, end); returns 0 at the end. */
static int next_line(const char **cur, const char *end, span_t *line) {
  if (*cur >= end)
    return 0;
  const char *nl = memchr(*cur, '\n', (size_t)(end - *cur));
  line->p = *cur;
  line->n = nl ? (size_t)(nl - *cur) : (size_t)(end - *cur);
  *cur = nl ? nl + 1 : end;
  return 1;
}

/* Splits "key = value # comment" into trimmed key and value (comment kept in value only when
 * quoted; a bare key without '=' gives 0). */
static int split_kv(span_t line, span_t *key, span_t *val) {
  const char *eq = memchr(line.p, '=', line.n);
  if (eq == NULL)
    return 0;
  *key = trim((span_t){line.p, (size_t)(eq - line.p)});
  *val = trim((span_t){eq + 1, line.n - (size_t)(eq + 1 - line.p)});
  return 1;
}

/* ---- files ---------------------------------------------------------------------------------- */

static int joinp(char *dst, size_t n, const char *a, const char *b, const char *c) {
  int w = snprintf(dst, n, "%s%s%s", a, b, c ? c : "");
  return w < 0 || (size_t)w >= n ? CO_ETOOBIG : CO_OK;
}

static int exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}

/* Reads a whole file of at most MAX_FILE bytes into out (reset first). */
static int read_file(const char *path, co_buf_t *out, mode_t *mode) {
  co_buf_reset(out);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return errno == ENOENT ? CO_ENOTFOUND : CO_EIO;
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return CO_EIO;
  }
  if (mode)
    *mode = st.st_mode & 07777;
  char chunk[8192];
  for (;;) {
    ssize_t r = read(fd, chunk, sizeof chunk);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      close(fd);
      return CO_EIO;
    }
    if (r == 0)
      break;
    if (co_buf_append(out, chunk, (size_t)r) != 0) {
      close(fd);
      return CO_ETOOBIG;
    }
  }
  close(fd);
  if (out->data == NULL)
    co_buf_append(out, "", 0);
  return CO_OK;
}

static int fsync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return CO_EIO;
  int rc = fsync(fd) == 0 ? CO_OK : CO_EIO;
  close(fd);
  return rc;
}

static void parent_of(const char *path, char *dir, size_t n) {
  const char *slash = strrchr(path, '/');
  size_t len = slash ? (size_t)(slash - path) : 0;
  if (len == 0) {
    snprintf(dir, n, "%s", slash ? "/" : ".");
    return;
  }
  snprintf(dir, n, "%.*s", (int)len, path);
}

/* Writes data to path atomically: temp file in the same dir, fsync, rename, fsync dir. */
static int write_atomic(const char *path, const char *data, size_t len, mode_t mode) {
  char dir[PATH_MAX_LEN], tmp[PATH_MAX_LEN];
  parent_of(path, dir, sizeof dir);
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  if (joinp(tmp, sizeof tmp, dir, "/.", base) != 0 || strlen(tmp) + 16 >= sizeof tmp)
    return CO_ETOOBIG;
  size_t tl = strlen(tmp);
  memcpy(tmp + tl, ".co-tmp-XXXXXX", 15);
  int fd = mkstemp(tmp);
  if (fd < 0)
    return CO_EIO;
  size_t off = 0;
  while (off < len) {
    ssize_t w = write(fd, data + off, len - off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      goto fail;
    off += (size_t)w;
  }
  if (fchmod(fd, mode) != 0 || fsync(fd) != 0)
    goto fail;
  if (close(fd) != 0) {
    fd = -1;
    goto fail;
  }
  fd = -1;
  if (rename(tmp, path) != 0)
    goto fail;
  return fsync_dir(dir);
fail:
  if (fd >= 0)
    close(fd);
  unlink(tmp);
  return CO_EIO;
}

/* ---- managed-file marker -------------------------------------------------------------------- */

static uint64_t fnv1a64(const char *p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

/* Appends the marker line and body to out. */
static int render_managed(co_buf_t *out, const char *body, size_t n) {
  int rc =
      co_buf_appendf(out, MARK_PREFIX "%016llx" MARK_SUFFIX, (unsigned long long)fnv1a64(body, n));
  return rc ? rc : co_buf_append(out, body, n);
}

enum { MF_FOREIGN = 0, MF_OURS = 1, MF_OURS_EDITED = 2 };

/* Classifies a file's content by its first line. */
static int managed_state(const char *data, size_t len) {
  span_t all = {data, len}, first;
  const char *cur = data;
  if (!span_starts(all, MARK_PREFIX) || !next_line(&cur, data + len, &first))
    return MF_FOREIGN;
  span_t hex = {data + strlen(MARK_PREFIX), 16};
  if (first.n < strlen(MARK_PREFIX) + 16)
    return MF_OURS_EDITED;
  uint64_t want = 0;
  for (size_t i = 0; i < hex.n; i++) {
    char c = hex.p[i];
    int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (v < 0)
      return MF_OURS_EDITED;
    want = want << 4 | (uint64_t)v;
  }
  size_t body = (size_t)(cur - data);
  if (cur[-1] != '\n' || fnv1a64(cur, len - body) != want)
    return MF_OURS_EDITED;
  char line[sizeof MARK_PREFIX + 16 + sizeof MARK_SUFFIX];
  snprintf(line, sizeof line, MARK_PREFIX "%.16s" MARK_SUFFIX, hex.p);
  return strlen(line) == body && memcmp(line, data, body) == 0 ? MF_OURS : MF_OURS_EDITED;
}

/* ---- rendered config.toml ------------------------------------------------------------------- */

typedef struct {
  int version;
  int imports_v2; /* a non-ours root `imports` naming config.toml.d */
  int imports_v3; /* ... naming config-v3.toml.d */
  int systemd_cgroup;
  char **headers; /* normalised table headers outside our block */
  size_t nheaders;
} rendered_t;

static void rendered_free(rendered_t *r) {
  for (size_t i = 0; i < r->nheaders; i++)
    co_free(r->headers[i]);
  co_free(r->headers);
  memset(r, 0, sizeof *r);
}

/* Normalises a header "[ a.'b' . c ]": whitespace outside quotes dropped, quotes made '"'. */
static char *norm_header(span_t s) {
  char *out = co_malloc(s.n + 1);
  size_t o = 0;
  char q = 0;
  for (size_t i = 0; i < s.n; i++) {
    char c = s.p[i];
    if (q) {
      if (c == q)
        q = 0, c = '"';
    } else if (c == '"' || c == '\'') {
      q = c, c = '"';
    } else if (c == ' ' || c == '\t') {
      continue;
    }
    out[o++] = c;
  }
  out[o] = '\0';
  return out;
}

static int has_header(const rendered_t *r, const char *hdr) {
  char *n = norm_header((span_t){hdr, strlen(hdr)});
  int found = 0;
  for (size_t i = 0; i < r->nheaders && !found; i++)
    found = strcmp(r->headers[i], n) == 0;
  co_free(n);
  return found;
}

static void scan_imports_value(rendered_t *r, span_t v) {
  if (span_contains(v, OUR_TAG))
    return;
  if (span_contains(v, DROPIN_V3 "/"))
    r->imports_v3 = 1;
  if (span_contains(v, DROPIN_V2 "/"))
    r->imports_v2 = 1;
}

static int parse_rendered(const char *data, size_t len, rendered_t *r) {
  memset(r, 0, sizeof *r);
  const char *cur = data, *end = data + len;
  span_t line;
  int in_root = 1, in_ours = 0, in_imports = 0;
  while (next_line(&cur, end, &line)) {
    span_t t = trim(line);
    if (span_starts(t, BLOCK_BEGIN)) {
      in_ours = 1;
      continue;
    }
    if (span_starts(t, BLOCK_END)) {
      in_ours = 0;
      continue;
    }
    if (in_imports) { /* continuation of a multi-line imports array */
      scan_imports_value(r, t);
      if (memchr(t.p, ']', t.n))
        in_imports = 0;
      continue;
    }
    if (t.n == 0 || t.p[0] == '#')
      continue;
    if (t.p[0] == '[') {
      in_root = 0;
      if (in_ours)
        continue;
      /* The header ends at the first ']' outside quotes ("[[x]]": array of tables). */
      size_t open = t.n > 1 && t.p[1] == '[' ? 2 : 1, i = open;
      char q = 0;
      for (; i < t.n; i++) {
        if (q && t.p[i] == q)
          q = 0;
        else if (!q && (t.p[i] == '"' || t.p[i] == '\''))
          q = t.p[i];
        else if (!q && t.p[i] == ']')
          break;
      }
      if (i == t.n)
        return CO_EPARSE;
      span_t inner = {t.p + open, i - open};
      if (r->nheaders == MAX_HEADERS)
        return CO_ETOOBIG;
      if (r->nheaders % 64 == 0)
        r->headers = co_realloc(r->headers, (r->nheaders + 64) * sizeof *r->headers);
      r->headers[r->nheaders++] = norm_header(inner);
      continue;
    }
    span_t k, v;
    if (!split_kv(t, &k, &v))
      continue;
    if (span_eq(k, "SystemdCgroup") && span_starts(v, "true"))
      r->systemd_cgroup = 1;
    if (!in_root)
      continue;
    if (span_eq(k, "version")) {
      int ver = 0;
      size_t i = 0;
      for (; i < v.n && i < 4 && v.p[i] >= '0' && v.p[i] <= '9'; i++)
        ver = ver * 10 + (v.p[i] - '0');
      span_t rest = trim((span_t){v.p + i, v.n - i});
      if (i == 0 || i == 4 || (rest.n > 0 && rest.p[0] != '#'))
        return CO_EPARSE;
      r->version = ver;
    } else if (span_eq(k, "imports")) {
      scan_imports_value(r, v);
      if (memchr(v.p, '[', v.n) && !memchr(v.p, ']', v.n))
        in_imports = 1;
    }
  }
  return CO_OK;
}

/* ---- detection ------------------------------------------------------------------------------ */

/* The k3s service PATH, searched for alternative runtimes (node-install.md §2). */
static const char *const bin_dirs[] = {"/usr/local/sbin", "/usr/local/bin", "/usr/sbin",
                                       "/usr/bin",        "/sbin",          "/bin"};

static int on_path(const char *root, const char *name) {
  char p[PATH_MAX_LEN];
  for (size_t i = 0; i < sizeof bin_dirs / sizeof bin_dirs[0]; i++) {
    char rel[256];
    snprintf(rel, sizeof rel, "%s/%s", bin_dirs[i], name);
    if (joinp(p, sizeof p, root, rel, NULL) == 0 && exists(p))
      return 1;
  }
  return 0;
}

static int detect_with(const char *root, const co_nodetemplate_opts_t *opts, co_k3s_node_t *out,
                       rendered_t *r, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  memset(r, 0, sizeof *r);
  char p[PATH_MAX_LEN];
  /* Units: kata-deploy's runtime detection uses k3s.service / k3s-agent.service (§1.1 step 1);
   * the k3s installer writes them to /etc/systemd/system. */
  int server = joinp(p, sizeof p, root, "/etc/systemd/system/k3s.service", NULL) == 0 && exists(p);
  int agent =
      joinp(p, sizeof p, root, "/etc/systemd/system/k3s-agent.service", NULL) == 0 && exists(p);
  if (server && agent) /* both units: the server data dir decides */
    agent = !(joinp(p, sizeof p, root, "/var/lib/rancher/k3s/server", NULL) == 0 && exists(p));
  if (!server && !agent) {
    co_set_err(err, errlen,
               "not a k3s node: neither k3s.service nor k3s-agent.service in "
               "/etc/systemd/system");
    return CO_ENOTFOUND;
  }
  out->role = agent ? CO_K3S_AGENT : CO_K3S_SERVER;
  out->unit = agent ? "k3s-agent.service" : "k3s.service";

  co_buf_t b;
  co_buf_init(&b, MAX_FILE);
  int rc = joinp(p, sizeof p, root, CO_K3S_CONTAINERD_DIR "/config.toml", NULL);
  if (rc == 0)
    rc = read_file(p, &b, NULL);
  if (rc != 0) {
    co_set_err(err, errlen, "%s/config.toml: %s", CO_K3S_CONTAINERD_DIR,
               rc == CO_ENOTFOUND ? "missing (k3s has not rendered it yet)" : co_strerror(rc));
    co_buf_free(&b);
    return rc;
  }
  if (memchr(b.data, '\0', b.len) != NULL)
    rc = CO_EPARSE;
  if (rc == 0)
    rc = parse_rendered(b.data, b.len, r);
  co_buf_free(&b);
  if (rc != 0) {
    co_set_err(err, errlen, "%s/config.toml: %s", CO_K3S_CONTAINERD_DIR,
               rc == CO_EPARSE ? "malformed (bad table header, version or NUL byte)"
                               : co_strerror(rc));
    rendered_free(r);
    return rc;
  }
  int ver = r->version;
  if (ver == 0 && opts && opts->containerd_major_hint >= 2)
    ver = 3; /* kata-deploy's fallback: containerRuntimeVersion major >= 2 (§1.1 step 6) */
  if (ver == 0) {
    co_set_err(err, errlen,
               "%s/config.toml has no `version` line (pre-2023 k3s using [plugins.cri] "
               "names?): not supported",
               CO_K3S_CONTAINERD_DIR);
    rendered_free(r);
    return CO_EUNSUPPORTED;
  }
  if (ver != 2 && ver != 3) {
    co_set_err(err, errlen, "%s/config.toml has `version = %d`: only 2 and 3 are supported",
               CO_K3S_CONTAINERD_DIR, ver);
    rendered_free(r);
    return CO_EUNSUPPORTED;
  }
  out->config_version = ver;
  out->containerd_major = ver == 3 ? 2 : 1;
  out->template_name = ver == 3 ? TPL_V3 : TPL_V2;
  out->dropin_dir_name = ver == 3 ? DROPIN_V3 : DROPIN_V2;
  out->base_imports_dropin = ver == 3 ? r->imports_v3 : r->imports_v2;
  out->systemd_cgroup = r->systemd_cgroup;
  out->has_runsc = on_path(root, "runsc") && on_path(root, "containerd-shim-runsc-v1");
  return CO_OK;
}

int co_k3s_detect(const char *host_root, const co_nodetemplate_opts_t *opts, co_k3s_node_t *out,
                  char *err, size_t errlen) {
  if (host_root == NULL || out == NULL)
    return CO_EINVAL;
  rendered_t r;
  int rc = detect_with(host_root, opts, out, &r, err, errlen);
  rendered_free(&r);
  return rc;
}

/* ---- desired contents ----------------------------------------------------------------------- */

static int valid_handler(const char *h) {
  size_t n = strlen(h);
  if (n < 6 || n > 63 || strncmp(h, "kata-", 5) != 0)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!((h[i] >= 'a' && h[i] <= 'z') || (h[i] >= '0' && h[i] <= '9') || h[i] == '-'))
      return 0;
  return 1;
}

/* Appends the runsc tables (gVisor configuration.md, node-install.md §4). */
static int append_runsc(co_buf_t *b, const char *cri) {
  return co_buf_appendf(b,
                        "[%srunsc]\n"
                        "  runtime_type = \"io.containerd.runsc.v1\"\n"
                        "[%srunsc.options]\n"
                        "  TypeUrl = \"io.containerd.runsc.v1.options\"\n"
                        "  ConfigPath = \"" CO_K3S_CONTAINERD_DIR "/" RUNSC_TOML "\"\n",
                        cri, cri);
}

/* Appends a Kata table with kata-deploy's keys and paths (node-install.md §1.2, §1.3 table:
 * Go shims under /opt/kata/bin, Rust shims (*-runtime-rs, dragonball) under runtime-rs/). */
static int append_kata(co_buf_t *b, const char *cri, const char *h) {
  const char *shim = h + 5;
  size_t n = strlen(shim);
  int rust =
      strcmp(shim, "dragonball") == 0 || (n > 11 && strcmp(shim + n - 11, "-runtime-rs") == 0);
  const char *rs = rust ? "runtime-rs/" : "";
  return co_buf_appendf(b,
                        "[%s%s]\n"
                        "  runtime_type = \"io.containerd.%s.v2\"\n"
                        "  runtime_path = \"/opt/kata/%sbin/containerd-shim-kata-v2\"\n"
                        "  privileged_without_host_devices = true\n"
                        "  pod_annotations = [\"io.katacontainers.*\"]\n"
                        "[%s%s.options]\n"
                        "  ConfigPath = \"/opt/kata/share/defaults/kata-containers/%sruntimes/%s/"
                        "configuration-%s.toml\"\n",
                        cri, h, h, rs, cri, h, rs, shim, shim);
}

typedef struct {
  const char *rel; /* relative to CO_K3S_CONTAINERD_DIR */
  co_buf_t want;   /* desired content (empty = nothing to write) */
  int is_template;
  int restart; /* containerd reads it only at start */
  int keep_foreign;
} plan_file_t;

enum { PF_RUNSC, PF_DROPIN, PF_TEMPLATE, PF_N };

static void note(co_buf_t *msg, const char *s) {
  if (msg->len > 0)
    co_buf_appends(msg, "; ");
  co_buf_appends(msg, s);
}

static int build_plan(const co_k3s_node_t *node, const rendered_t *r,
                      const co_nodetemplate_opts_t *opts, plan_file_t *pf, co_buf_t *msg) {
  pf[PF_RUNSC].rel = RUNSC_TOML;
  pf[PF_RUNSC].keep_foreign = 1;
  pf[PF_DROPIN].rel = node->config_version == 3 ? DROPIN_V3 "/" CO_K3S_RUNSC_DROPIN
                                                : DROPIN_V2 "/" CO_K3S_RUNSC_DROPIN;
  pf[PF_DROPIN].restart = 1;
  pf[PF_TEMPLATE].rel = node->template_name;
  pf[PF_TEMPLATE].is_template = 1;
  pf[PF_TEMPLATE].restart = 1;
  co_buf_t body;
  co_buf_init(&body, MAX_FILE);
  int rc = 0, nkata = 0;
  const char *cri = node->config_version == 3 ? CRI_V3 : CRI_V2;
  char hdr[256];

  int runsc = node->has_runsc;
  snprintf(hdr, sizeof hdr, "%srunsc", cri);
  if (runsc && has_header(r, hdr)) {
    note(msg, "the base already declares runsc: not added");
    runsc = 0;
  }
  if (runsc) {
    /* runsc.toml: systemd-cgroup follows k3s' cgroup driver (node-install.md §4 note 5, §6 #7). */
    co_buf_reset(&body);
    rc = co_buf_appends(&body, "[runsc_config]\n");
    if (rc == 0 && node->systemd_cgroup)
      rc = co_buf_appends(&body, "  systemd-cgroup = \"true\"\n");
    if (rc == 0)
      rc = render_managed(&pf[PF_RUNSC].want, body.data, body.len);
  }
  if (opts && opts->kata_handlers)
    for (const char *const *h = opts->kata_handlers; *h; h++) {
      if (!valid_handler(*h)) {
        co_buf_free(&body);
        co_buf_appendf(msg, "invalid kata handler name \"%.64s\"", *h);
        return CO_EINVAL;
      }
      nkata++;
    }

  if (rc == 0 && node->config_version == 3) {
    /* Kata: kata-deploy >= 3.28 writes config-v3.toml.d/kata-deploy.toml itself and requires
     * the rendered config to import the directory (§1.1 step 6). gVisor: our drop-in. */
    if (runsc) {
      co_buf_reset(&body);
      rc = append_runsc(&body, cri);
      if (rc == 0)
        rc = render_managed(&pf[PF_DROPIN].want, body.data, body.len);
    }
    if (rc == 0 && !node->base_imports_dropin && (runsc || nkata > 0)) {
      co_buf_reset(&body);
      rc = co_buf_appends(&body, "imports = [\"" CO_K3S_CONTAINERD_DIR "/" DROPIN_V3
                                 "/*.toml\"] " OUR_TAG "\n" BASE_LINE "\n");
      if (rc == 0)
        rc = render_managed(&pf[PF_TEMPLATE].want, body.data, body.len);
    }
  } else if (rc == 0) {
    /* containerd 1.x: an import replaces the whole CRI plugin section (containerd PR #9982), so
     * the tables are appended after the base in the template. */
    co_buf_reset(&body);
    rc = co_buf_appends(&body, BASE_LINE "\n" BLOCK_BEGIN "\n");
    int tables = 0;
    for (int i = 0; rc == 0 && i < nkata; i++) {
      snprintf(hdr, sizeof hdr, "%s%s", cri, opts->kata_handlers[i]);
      if (has_header(r, hdr)) {
        char m[128];
        snprintf(m, sizeof m, "the base already declares %s: not added", opts->kata_handlers[i]);
        note(msg, m);
        continue;
      }
      rc = append_kata(&body, cri, opts->kata_handlers[i]);
      tables++;
    }
    if (rc == 0 && runsc) {
      rc = append_runsc(&body, cri);
      tables++;
    }
    if (rc == 0)
      rc = co_buf_appends(&body, BLOCK_END "\n");
    if (rc == 0 && tables > 0)
      rc = render_managed(&pf[PF_TEMPLATE].want, body.data, body.len);
  }
  co_buf_free(&body);
  return rc;
}

/* ---- template classification ---------------------------------------------------------------- */

enum { TPL_OK_OURS, TPL_BASE_ONLY, TPL_EDITED, TPL_RENDERED_COPY, TPL_FOREIGN, TPL_CORRUPT };

static int classify_template(const char *d, size_t n) {
  span_t all = {d, n};
  if (memchr(d, '\0', n) != NULL)
    return TPL_CORRUPT;
  /* Go template actions must balance. */
  long depth = 0;
  for (size_t i = 0; i + 1 < n; i++) {
    if (d[i] == '{' && d[i + 1] == '{')
      depth++, i++;
    else if (d[i] == '}' && d[i + 1] == '}') {
      if (--depth < 0)
        return TPL_CORRUPT;
      i++;
    }
  }
  if (depth != 0)
    return TPL_CORRUPT;
  int ms = managed_state(d, n);
  if (ms == MF_OURS)
    return TPL_OK_OURS;
  if (ms == MF_OURS_EDITED)
    return TPL_EDITED;
  /* Only `{{ template "base" . }}` (kata-deploy 3.27 creates exactly that, §1.2). */
  const char *cur = d;
  span_t line;
  int base = 0, other = 0;
  while (next_line(&cur, d + n, &line)) {
    span_t t = trim(line);
    if (t.n == 0 || t.p[0] == '#')
      continue;
    if (span_eq(t, BASE_LINE))
      base++;
    else
      other++;
  }
  if (base == 1 && other == 0)
    return TPL_BASE_ONLY;
  if (base == 0 && span_contains(all, "DO NOT EDIT"))
    return TPL_RENDERED_COPY;
  return TPL_FOREIGN;
}

/* ---- apply / remove ------------------------------------------------------------------------- */

static void result_add(co_nodetemplate_result_t *res, const char *rel) {
  char p[PATH_MAX_LEN];
  snprintf(p, sizeof p, "%s/%s", CO_K3S_CONTAINERD_DIR, rel);
  res->changed = co_realloc(res->changed, (res->nchanged + 1) * sizeof *res->changed);
  res->changed[res->nchanged++] = co_strdup(p);
}

static void set_msg(co_nodetemplate_result_t *res, const co_buf_t *msg) {
  snprintf(res->message, sizeof res->message, "%s", co_buf_str(msg));
}

void co_nodetemplate_result_free(co_nodetemplate_result_t *res) {
  if (res == NULL)
    return;
  for (size_t i = 0; i < res->nchanged; i++)
    co_free(res->changed[i]);
  co_free(res->changed);
  res->changed = NULL;
  res->nchanged = 0;
}

static int ensure_dropin_dir(const char *root, const char *dirname, co_nodetemplate_result_t *res) {
  char dir[PATH_MAX_LEN], parent[PATH_MAX_LEN], mark[PATH_MAX_LEN];
  if (joinp(dir, sizeof dir, root, CO_K3S_CONTAINERD_DIR "/", dirname) != 0 ||
      joinp(parent, sizeof parent, root, CO_K3S_CONTAINERD_DIR, NULL) != 0 ||
      joinp(mark, sizeof mark, dir, "/" CO_K3S_DROPIN_CREATED, NULL) != 0)
    return CO_ETOOBIG;
  if (exists(dir))
    return CO_OK;
  if (mkdir(dir, 0755) != 0)
    return CO_EIO;
  /* Records that the directory is ours so that removal deletes it (not *.toml: not imported). */
  static const char txt[] = "created by confidential-operator; removed with its drop-ins\n";
  int rc = write_atomic(mark, txt, sizeof txt - 1, 0644);
  if (rc == 0)
    rc = fsync_dir(parent);
  char rel[128];
  snprintf(rel, sizeof rel, "%s/%s", dirname, CO_K3S_DROPIN_CREATED);
  result_add(res, rel);
  return rc;
}

int co_nodetemplate_apply(const char *host_root, const co_nodetemplate_opts_t *opts,
                          co_nodetemplate_result_t *res) {
  if (host_root == NULL || res == NULL)
    return CO_EINVAL;
  memset(res, 0, sizeof *res);
  co_k3s_node_t node;
  rendered_t r;
  int rc = detect_with(host_root, opts, &node, &r, res->message, sizeof res->message);
  if (rc != 0) {
    rendered_free(&r);
    return rc;
  }
  plan_file_t pf[PF_N];
  memset(pf, 0, sizeof pf);
  co_buf_t msg, cur;
  co_buf_init(&msg, sizeof res->message - 1);
  co_buf_init(&cur, MAX_FILE);
  for (int i = 0; i < PF_N; i++)
    co_buf_init(&pf[i].want, MAX_FILE);
  rc = build_plan(&node, &r, opts, pf, &msg);
  rendered_free(&r);

  /* Phase 1: decide every file before writing any, so a refusal changes nothing. */
  int action[PF_N] = {0}; /* 0 skip, 1 write, 2 backup then write, 3 retire */
  char path[PF_N][PATH_MAX_LEN];
  mode_t mode[PF_N];
  for (int i = 0; rc == 0 && i < PF_N; i++) {
    mode[i] = 0644;
    if (joinp(path[i], sizeof path[i], host_root, CO_K3S_CONTAINERD_DIR "/", pf[i].rel) != 0) {
      rc = CO_ETOOBIG;
      break;
    }
    int frc = read_file(path[i], &cur, &mode[i]);
    if (pf[i].want.len == 0) {
      if (frc != 0 || !pf[i].is_template)
        continue;
      int cls = classify_template(cur.data, cur.len);
      if (cls == TPL_CORRUPT) { /* nothing to write, but k3s renders from it */
        co_buf_reset(&msg);
        co_buf_appendf(&msg, "%s/%s is corrupt (NUL byte or unbalanced {{ }}): fix or remove it",
                       CO_K3S_CONTAINERD_DIR, pf[i].rel);
        rc = CO_EPARSE;
      } else if (cls == TPL_OK_OURS) {
        /* Ours but no longer needed, e.g. k3s was upgraded and its base now imports the drop-in
         * dir itself (a second root `imports` key would make the config invalid TOML). */
        action[i] = 3;
        note(&msg, "our template is no longer needed: retired");
      }
      continue;
    }
    if (frc == CO_ENOTFOUND) {
      mode[i] = 0644;
      action[i] = 1;
      continue;
    }
    if (frc != 0) {
      co_buf_appendf(&msg, "%s: %s", pf[i].rel, co_strerror(frc));
      rc = frc;
      break;
    }
    if (cur.len == pf[i].want.len && memcmp(cur.data, pf[i].want.data, cur.len) == 0)
      continue;
    if (pf[i].is_template) {
      switch (classify_template(cur.data, cur.len)) {
      case TPL_OK_OURS:
        action[i] = 1;
        break;
      case TPL_BASE_ONLY:
        action[i] = 2;
        break;
      case TPL_CORRUPT:
        co_buf_reset(&msg);
        co_buf_appendf(&msg,
                       "%s/%s is corrupt (NUL byte or unbalanced {{ }}): refusing to touch "
                       "it; fix or remove it",
                       CO_K3S_CONTAINERD_DIR, pf[i].rel);
        rc = CO_EPARSE;
        break;
      case TPL_EDITED:
        co_buf_reset(&msg);
        co_buf_appendf(&msg,
                       "%s/%s was written by confidential-operator but edited since: refusing "
                       "to overwrite it",
                       CO_K3S_CONTAINERD_DIR, pf[i].rel);
        rc = CO_EUNSUPPORTED;
        break;
      case TPL_RENDERED_COPY:
        co_buf_reset(&msg);
        co_buf_appendf(&msg,
                       "%s/%s is a copy of a rendered config.toml (kata-deploy <= 3.26 did "
                       "this): it freezes k3s' config; replace it with {{ template \"base\" . }} "
                       "or remove it, then retry",
                       CO_K3S_CONTAINERD_DIR, pf[i].rel);
        rc = CO_EUNSUPPORTED;
        break;
      default:
        co_buf_reset(&msg);
        co_buf_appendf(&msg,
                       "%s/%s is an administrator's template not written by "
                       "confidential-operator: refusing to change it; add the %s yourself",
                       CO_K3S_CONTAINERD_DIR, pf[i].rel,
                       node.config_version == 3 ? "import of config-v3.toml.d/*.toml"
                                                : "kata/runsc runtime tables");
        rc = CO_EUNSUPPORTED;
        break;
      }
    } else {
      int ms = managed_state(cur.data, cur.len);
      if (ms == MF_OURS) {
        action[i] = 1;
      } else if (pf[i].keep_foreign) {
        note(&msg, "keeping the existing runsc.toml");
      } else {
        co_buf_reset(&msg);
        co_buf_appendf(&msg,
                       "%s/%s exists and was not written by confidential-operator (or "
                       "was edited): refusing to overwrite it",
                       CO_K3S_CONTAINERD_DIR, pf[i].rel);
        rc = CO_EUNSUPPORTED;
      }
    }
  }

  /* Phase 2: write (runsc.toml, drop-in, template last: it makes containerd read the rest). */
  for (int i = 0; rc == 0 && i < PF_N; i++) {
    if (action[i] == 0)
      continue;
    if (action[i] == 3) { /* retire: restore the backup or delete */
      char bak[PATH_MAX_LEN], dir[PATH_MAX_LEN];
      if (joinp(bak, sizeof bak, path[i], BACKUP_SUFFIX, NULL) != 0) {
        rc = CO_ETOOBIG;
        break;
      }
      parent_of(path[i], dir, sizeof dir);
      if ((exists(bak) ? rename(bak, path[i]) : unlink(path[i])) != 0 || fsync_dir(dir) != 0) {
        rc = CO_EIO;
        co_buf_reset(&msg);
        co_buf_appendf(&msg, "retiring %s/%s: %s", CO_K3S_CONTAINERD_DIR, pf[i].rel,
                       strerror(errno));
        break;
      }
      result_add(res, pf[i].rel);
      res->restart_needed = 1;
      continue;
    }
    if (i == PF_DROPIN)
      rc = ensure_dropin_dir(host_root, node.dropin_dir_name, res);
    if (rc == 0 && action[i] == 2) {
      char bak[PATH_MAX_LEN];
      if (joinp(bak, sizeof bak, path[i], BACKUP_SUFFIX, NULL) != 0) {
        rc = CO_ETOOBIG;
        break;
      }
      if (!exists(bak)) { /* a backup is made once: it is what was there before us */
        rc = read_file(path[i], &cur, &mode[i]);
        if (rc == 0)
          rc = write_atomic(bak, cur.data, cur.len, mode[i]);
        if (rc == 0) {
          char rel[256];
          snprintf(rel, sizeof rel, "%s%s", pf[i].rel, BACKUP_SUFFIX);
          result_add(res, rel);
        }
      }
    }
    if (rc == 0)
      rc = write_atomic(path[i], pf[i].want.data, pf[i].want.len, mode[i]);
    if (rc != 0) {
      co_buf_reset(&msg);
      co_buf_appendf(&msg, "writing %s/%s: %s (%s)", CO_K3S_CONTAINERD_DIR, pf[i].rel,
                     co_strerror(rc), strerror(errno));
      break;
    }
    result_add(res, pf[i].rel);
    if (pf[i].restart)
      res->restart_needed = 1;
  }

  if (rc == 0) {
    res->unchanged = res->nchanged == 0;
    co_buf_t m2;
    co_buf_init(&m2, sizeof res->message - 1);
    co_buf_appendf(&m2, "k3s %s, containerd %d.x (config version %d, %s%s)%s: ",
                   node.role == CO_K3S_AGENT ? "agent" : "server", node.containerd_major,
                   node.config_version, node.template_name,
                   node.base_imports_dropin ? ", base imports the drop-in dir" : "",
                   node.has_runsc ? ", runsc present" : "");
    if (res->unchanged)
      co_buf_appends(&m2, "unchanged");
    else
      co_buf_appendf(&m2, "changed %zu path(s)%s%s", res->nchanged,
                     res->restart_needed ? "; restart " : "", res->restart_needed ? node.unit : "");
    if (msg.len > 0)
      co_buf_appendf(&m2, " (%s)", co_buf_str(&msg));
    set_msg(res, &m2);
    co_buf_free(&m2);
  } else {
    if (msg.len == 0)
      co_buf_appends(&msg, co_strerror(rc));
    set_msg(res, &msg);
  }
  for (int i = 0; i < PF_N; i++)
    co_buf_free(&pf[i].want);
  co_buf_free(&cur);
  co_buf_free(&msg);
  return rc;
}

/* Removes or restores one managed file; returns 1 when something changed. */
static int remove_one(const char *root, const char *rel, co_buf_t *cur, co_buf_t *msg,
                      co_nodetemplate_result_t *res, int *err) {
  char path[PATH_MAX_LEN], bak[PATH_MAX_LEN], dir[PATH_MAX_LEN];
  if (joinp(path, sizeof path, root, CO_K3S_CONTAINERD_DIR "/", rel) != 0 ||
      joinp(bak, sizeof bak, path, BACKUP_SUFFIX, NULL) != 0) {
    *err = CO_ETOOBIG;
    return 0;
  }
  parent_of(path, dir, sizeof dir);
  int frc = read_file(path, cur, NULL);
  if (frc == 0) {
    int ms = managed_state(cur->data, cur->len);
    if (ms == MF_FOREIGN)
      return 0; /* not ours (or already restored) */
    if (ms == MF_OURS_EDITED) {
      char m[300];
      snprintf(m, sizeof m, "%s was edited after we wrote it: left in place", rel);
      note(msg, m);
      return 0;
    }
  } else if (frc == CO_ETOOBIG) {
    return 0; /* larger than anything we write: not ours */
  } else if (frc != CO_ENOTFOUND) {
    *err = frc;
    return 0;
  }
  int changed = 0;
  if (exists(bak)) {
    if (rename(bak, path) != 0) {
      *err = CO_EIO;
      return 0;
    }
    changed = 1;
  } else if (frc == 0) {
    if (unlink(path) != 0) {
      *err = CO_EIO;
      return 0;
    }
    changed = 1;
  }
  if (changed) {
    if (fsync_dir(dir) != 0)
      *err = CO_EIO;
    result_add(res, rel);
  }
  return changed;
}

int co_nodetemplate_remove(const char *host_root, co_nodetemplate_result_t *res) {
  if (host_root == NULL || res == NULL)
    return CO_EINVAL;
  memset(res, 0, sizeof *res);
  static const char *const files[] = {TPL_V3, TPL_V2, DROPIN_V3 "/" CO_K3S_RUNSC_DROPIN,
                                      DROPIN_V2 "/" CO_K3S_RUNSC_DROPIN, RUNSC_TOML};
  static const int restarts[] = {1, 1, 1, 1, 0};
  co_buf_t cur, msg;
  co_buf_init(&cur, MAX_FILE);
  co_buf_init(&msg, sizeof res->message - 1);
  int rc = 0;
  for (size_t i = 0; i < sizeof files / sizeof files[0] && rc == 0; i++)
    if (remove_one(host_root, files[i], &cur, &msg, res, &rc) && restarts[i])
      res->restart_needed = 1;
  static const char *const dirs[] = {DROPIN_V3, DROPIN_V2};
  for (size_t i = 0; i < 2 && rc == 0; i++) {
    char dir[PATH_MAX_LEN], mark[PATH_MAX_LEN], parent[PATH_MAX_LEN];
    if (joinp(dir, sizeof dir, host_root, CO_K3S_CONTAINERD_DIR "/", dirs[i]) != 0 ||
        joinp(mark, sizeof mark, dir, "/" CO_K3S_DROPIN_CREATED, NULL) != 0 ||
        joinp(parent, sizeof parent, host_root, CO_K3S_CONTAINERD_DIR, NULL) != 0) {
      rc = CO_ETOOBIG;
      break;
    }
    if (!exists(mark))
      continue;
    char rel[128];
    snprintf(rel, sizeof rel, "%s/%s", dirs[i], CO_K3S_DROPIN_CREATED);
    if (unlink(mark) != 0) {
      rc = CO_EIO;
      break;
    }
    result_add(res, rel);
    if (rmdir(dir) == 0) {
      result_add(res, dirs[i]);
    } else {
      char m[200];
      snprintf(m, sizeof m, "%s is not empty (other drop-ins): left in place", dirs[i]);
      note(&msg, m);
    }
    if (fsync_dir(parent) != 0)
      rc = CO_EIO;
  }
  res->unchanged = res->nchanged == 0;
  co_buf_t m2;
  co_buf_init(&m2, sizeof res->message - 1);
  if (rc != 0)
    co_buf_appendf(&m2, "removal failed: %s", co_strerror(rc));
  else if (res->unchanged)
    co_buf_appends(&m2, "unchanged (nothing of ours to remove)");
  else
    co_buf_appendf(&m2, "removed or restored %zu path(s)%s", res->nchanged,
                   res->restart_needed ? "; restart k3s" : "");
  if (msg.len > 0)
    co_buf_appendf(&m2, " (%s)", co_buf_str(&msg));
  set_msg(res, &m2);
  co_buf_free(&m2);
  co_buf_free(&cur);
  co_buf_free(&msg);
  return rc;
}
