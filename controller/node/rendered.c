/* Reads back the rendered k3s containerd config (see co/noderendered.h). A line scanner, like
 * the template patcher: only table headers, the root `version` and `imports` keys matter. */
#include "co/noderendered.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "co/alloc.h"
#include "co/buf.h"
#include "co/error.h"
#include "co/nodetemplate.h"

#define MAX_FILE ((size_t)256 * 1024)
#define MAX_IMPORTS 16
#define PATH_LEN 4096
/* Normalised runtime table prefixes (quotes made '"', blanks dropped). */
#define RT_V3 "plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes."
#define RT_V2 "plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes."

typedef struct {
  char imports[MAX_IMPORTS][PATH_LEN];
  size_t nimports;
} scan_t;

static int read_all(const char *path, co_buf_t *b) {
  co_buf_reset(b);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return errno == ENOENT ? CO_ENOTFOUND : CO_EIO;
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return CO_EIO;
  }
  char chunk[8192];
  int rc = CO_OK;
  for (;;) {
    ssize_t r = read(fd, chunk, sizeof chunk);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      rc = CO_EIO;
      break;
    }
    if (r == 0 || (rc = co_buf_append(b, chunk, (size_t)r)) != 0)
      break;
  }
  close(fd);
  if (rc == 0 && b->data == NULL)
    rc = co_buf_append(b, "", 0);
  if (rc == 0 && memchr(b->data, '\0', b->len) != NULL)
    rc = CO_EPARSE;
  return rc;
}

static void add_handler(co_k3s_rendered_t *r, const char *h, size_t n) {
  if (n == 0 || n > 63)
    return;
  for (size_t i = 0; i < n; i++) {
    char c = h[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '_'))
      return;
  }
  char name[64];
  memcpy(name, h, n);
  name[n] = '\0';
  if (co_k3s_rendered_has(r, name))
    return;
  size_t len = strlen(r->handlers);
  if (len + n + 2 > sizeof r->handlers)
    return;
  snprintf(r->handlers + len, sizeof r->handlers - len, "%s%s", len ? "," : "", name);
}

/* A table header "[ a.'b'.c ]": records a runtime handler when it names one. */
static int scan_header(co_k3s_rendered_t *r, const char *p, size_t n, int version) {
  char norm[512];
  size_t o = 0, i = 1;
  char q = 0;
  for (; i < n; i++) {
    char c = p[i];
    if (q) {
      if (c == q)
        q = 0, c = '"';
    } else if (c == '"' || c == '\'') {
      q = c, c = '"';
    } else if (c == ']') {
      break;
    } else if (c == ' ' || c == '\t') {
      continue;
    }
    if (o + 1 >= sizeof norm)
      return CO_OK; /* longer than any runtime table: not one */
    norm[o++] = c;
  }
  if (i == n)
    return CO_EPARSE;
  norm[o] = '\0';
  const char *pre = version == 2 ? RT_V2 : RT_V3;
  size_t pl = strlen(pre);
  if (strncmp(norm, pre, pl) != 0)
    return CO_OK;
  const char *h = norm + pl, *end;
  if (*h == '"') { /* quoted handler name */
    end = strchr(h + 1, '"');
    if (end == NULL)
      return CO_OK;
    add_handler(r, h + 1, (size_t)(end - h - 1));
    return CO_OK;
  }
  end = strchr(h, '.');
  add_handler(r, h, end ? (size_t)(end - h) : strlen(h));
  return CO_OK;
}

/* Collects the quoted strings of an imports value (one line of it). */
static void scan_imports(co_k3s_rendered_t *r, scan_t *s, const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (p[i] == '#')
      return;
    if (p[i] != '"' && p[i] != '\'')
      continue;
    const char *end = memchr(p + i + 1, p[i], n - i - 1);
    if (end == NULL)
      return;
    size_t len = (size_t)(end - (p + i + 1));
    if (s != NULL && s->nimports < MAX_IMPORTS && len > 0 && len < PATH_LEN) {
      memcpy(s->imports[s->nimports], p + i + 1, len);
      s->imports[s->nimports][len] = '\0';
      const char *imp = s->imports[s->nimports++];
      if (strstr(imp, "/config-v3.toml.d/") || strstr(imp, "/config.toml.d/"))
        r->imports_dropin = 1;
    }
    i = (size_t)(end - p);
  }
}

static int contains(const char *p, size_t n, const char *lit) {
  size_t m = strlen(lit);
  for (size_t i = 0; m <= n && i <= n - m; i++)
    if (memcmp(p + i, lit, m) == 0)
      return 1;
  return 0;
}

/* Scans one file: headers always; version, imports and our marker only for config.toml
 * (s != NULL). version is the file's own `version` when it has one. */
static int scan(co_k3s_rendered_t *r, scan_t *s, const char *d, size_t len, int version) {
  const char *cur = d, *end = d + len;
  int in_root = 1, in_imports = 0;
  /* The version line comes first in practice, but headers may precede it in a drop-in. */
  while (cur < end) {
    const char *nl = memchr(cur, '\n', (size_t)(end - cur));
    const char *p = cur;
    size_t n = nl ? (size_t)(nl - cur) : (size_t)(end - cur);
    cur = nl ? nl + 1 : end;
    while (n > 0 && (*p == ' ' || *p == '\t'))
      p++, n--;
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\r'))
      n--;
    if (s != NULL && contains(p, n, "confidential-operator"))
      r->ours = 1;
    if (in_imports) {
      scan_imports(r, s, p, n);
      if (memchr(p, ']', n))
        in_imports = 0;
      continue;
    }
    if (n == 0 || p[0] == '#')
      continue;
    if (p[0] == '[') {
      in_root = 0;
      int rc = scan_header(r, p, n, version);
      if (rc != 0)
        return rc;
      continue;
    }
    if (!in_root)
      continue;
    const char *eq = memchr(p, '=', n);
    if (eq == NULL)
      continue;
    size_t kl = (size_t)(eq - p);
    while (kl > 0 && (p[kl - 1] == ' ' || p[kl - 1] == '\t'))
      kl--;
    const char *v = eq + 1;
    size_t vn = n - (size_t)(v - p);
    if (kl == 7 && memcmp(p, "imports", 7) == 0) {
      scan_imports(r, s, v, vn);
      if (memchr(v, '[', vn) && !memchr(v, ']', vn))
        in_imports = 1;
    }
  }
  return CO_OK;
}

/* The root `version` of a file, 0 when absent (a first pass: headers depend on it). */
static int file_version(const char *d, size_t len) {
  const char *cur = d, *end = d + len;
  while (cur < end) {
    const char *nl = memchr(cur, '\n', (size_t)(end - cur));
    const char *p = cur;
    size_t n = nl ? (size_t)(nl - cur) : (size_t)(end - cur);
    cur = nl ? nl + 1 : end;
    while (n > 0 && (*p == ' ' || *p == '\t'))
      p++, n--;
    if (n > 0 && p[0] == '[')
      return 0;
    if (n > 7 && memcmp(p, "version", 7) == 0) {
      size_t i = 7;
      while (i < n && (p[i] == ' ' || p[i] == '\t'))
        i++;
      if (i < n && p[i] == '=') {
        i++;
        while (i < n && (p[i] == ' ' || p[i] == '\t'))
          i++;
        int v = 0, digits = 0;
        while (i < n && p[i] >= '0' && p[i] <= '9' && digits < 3)
          v = v * 10 + (p[i++] - '0'), digits++;
        return v;
      }
    }
  }
  return 0;
}

int co_k3s_rendered_has(const co_k3s_rendered_t *r, const char *handler) {
  size_t n = strlen(handler);
  const char *p = r->handlers;
  while (n > 0 && *p) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    if (len == n && memcmp(p, handler, n) == 0)
      return 1;
    if (comma == NULL)
      break;
    p = comma + 1;
  }
  return 0;
}

int co_k3s_rendered_read(const char *host_root, co_k3s_rendered_t *out, char *err, size_t errlen) {
  if (host_root == NULL || out == NULL)
    return CO_EINVAL;
  memset(out, 0, sizeof *out);
  char path[PATH_LEN];
  int w = snprintf(path, sizeof path, "%s" CO_K3S_CONTAINERD_DIR "/config.toml", host_root);
  if (w < 0 || (size_t)w >= sizeof path)
    return CO_ETOOBIG;
  scan_t *s = co_calloc(1, sizeof *s);
  co_buf_t b;
  co_buf_init(&b, MAX_FILE);
  int rc = read_all(path, &b);
  if (rc == 0) {
    out->version = file_version(b.data, b.len);
    rc = scan(out, s, b.data, b.len, out->version ? out->version : 3);
  }
  if (rc != 0) {
    co_set_err(err, errlen, "%s/config.toml: %s", CO_K3S_CONTAINERD_DIR,
               rc == CO_ENOTFOUND ? "missing (k3s has not rendered it yet)" : co_strerror(rc));
    co_buf_free(&b);
    co_free(s);
    return rc;
  }
  for (size_t i = 0; i < s->nimports && rc == 0; i++) {
    const char *imp = s->imports[i];
    if (imp[0] != '/' || strstr(imp, "/../") != NULL)
      continue; /* relative or escaping: containerd resolves it elsewhere; not ours to read */
    char pat[PATH_LEN];
    w = snprintf(pat, sizeof pat, "%s%s", host_root, imp);
    if (w < 0 || (size_t)w >= sizeof pat)
      continue;
    glob_t g;
    memset(&g, 0, sizeof g);
    if (glob(pat, 0, NULL, &g) == 0) {
      for (size_t k = 0; k < g.gl_pathc && rc == 0; k++) {
        int frc = read_all(g.gl_pathv[k], &b);
        if (frc != 0)
          continue; /* unreadable or too big: containerd would fail; not a handler of ours */
        out->imported++;
        int v = file_version(b.data, b.len);
        if (scan(out, NULL, b.data, b.len, v ? v : out->version) != 0)
          continue;
      }
    }
    globfree(&g);
  }
  co_buf_free(&b);
  co_free(s);
  return rc;
}
