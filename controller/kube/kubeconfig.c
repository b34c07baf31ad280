/* Kubeconfig and in-cluster configuration loader.
 *
 * Each kubeconfig file is parsed with libyaml's event API into a small node tree (one array
 * per file, children linked by index). The files of $KUBECONFIG are kept side by side and
 * searched in order, which gives kubectl's merge rule (the first file to define a name wins)
 * without copying entries. Only the entries the chosen context uses are validated, as kubectl
 * does, so a broken user nobody selects does not stop the operator.
 *
 * Untrusted-input bounds: 4 MiB per file, 1 MiB per scalar, 64 levels of nesting, 256 Ki
 * nodes. YAML aliases are refused, so the tree never holds more than the text it came from. */
#include "co/kubeconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <yaml.h>

#include "co/alloc.h"
#include "co/buf.h"
#include "co/error.h"

#define MAX_FILE ((size_t)4 << 20)
#define MAX_SCALAR ((size_t)1 << 20)
#define MAX_DEPTH 64
#define MAX_NODES ((size_t)1 << 18)
#define MAX_SA_FILE ((size_t)1 << 20) /* service-account token and namespace files */
#define MAX_PATH ((size_t)1 << 16)
#define SA_REL "var/run/secrets/kubernetes.io/serviceaccount"

enum { N_SCALAR, N_SEQ, N_MAP };

typedef struct {
  int kind;
  int plain; /* scalar written without quotes: may spell null or a boolean */
  char *str; /* scalar value, NUL-terminated; may hold NUL bytes before len */
  size_t len;
  size_t first; /* first child; 0 means none (node 0 is the root, never a child) */
  size_t last;
  size_t next; /* next sibling; the children of a mapping alternate key, value */
  size_t line; /* 1-based, for messages */
} node_t;

typedef struct {
  node_t *nodes;
  size_t n, cap;
  char *label;    /* file path for messages */
  char *base_dir; /* resolves relative paths; NULL keeps them as written */
} doc_t;

typedef struct {
  doc_t *docs;
  size_t n, cap;
  const char *label; /* names the whole set when no single file is to blame */
} set_t;

/* get_str flags */
#define S_NEWLINES 1 /* base64 data may be wrapped over lines */

static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Writes one line to err. Names and values come from the file, so control characters are
 * replaced to keep the message on one line and the terminal sane. */
static int fail(char *err, size_t errlen, int code, const char *fmt, ...) {
  if (err != NULL && errlen > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    for (char *p = err; *p; p++)
      if ((unsigned char)*p < 0x20 || *p == 0x7f)
        *p = '?';
  }
  return code;
}

static int has_ctl(const char *s, size_t len, int allow_newlines) {
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (allow_newlines && (c == '\n' || c == '\r'))
      continue;
    if (c < 0x20 || c == 0x7f)
      return 1;
  }
  return 0;
}

static char *join_path(const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  while (a > 0 && dir[a - 1] == '/')
    a--;
  char *p = co_malloc(a + b + 2);
  memcpy(p, dir, a);
  p[a] = '/';
  memcpy(p + a + 1, name, b + 1);
  return p;
}

/* Returns an owned absolute form of path (made absolute against the working directory). */
static int absolute(const char *path, char **out) {
  if (path[0] == '/') {
    *out = co_strdup(path);
    return 0;
  }
  char cwd[4096];
  if (getcwd(cwd, sizeof cwd) == NULL)
    return CO_EIO;
  *out = join_path(cwd, path);
  return 0;
}

/* Relative paths in a kubeconfig are relative to the file's directory (kubectl's rule). */
static char *resolve_path(const char *base_dir, const char *p) {
  if (p == NULL)
    return NULL;
  if (p[0] == '/' || base_dir == NULL)
    return co_strdup(p);
  return join_path(base_dir, p);
}

/* Reads at most max bytes. Returns 0, CO_EIO (errno in *eno) or CO_ETOOBIG. */
static int read_file(const char *path, size_t max, co_buf_t *b, int *eno) {
  co_buf_init(b, max);
  *eno = 0;
  int fd;
  do
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    *eno = errno;
    return CO_EIO;
  }
  int rc = 0;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    *eno = errno;
    rc = CO_EIO;
  } else if (S_ISDIR(st.st_mode)) {
    *eno = EISDIR;
    rc = CO_EIO;
  } else if (S_ISREG(st.st_mode) && (uintmax_t)st.st_size > max) {
    rc = CO_ETOOBIG; /* refuse before reading; the loop below still bounds growing files */
  }
  char chunk[16384];
  while (rc == 0) {
    ssize_t r = read(fd, chunk, sizeof chunk);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      *eno = errno;
      rc = CO_EIO;
    } else if (r == 0) {
      break;
    } else if (co_buf_append(b, chunk, (size_t)r) != 0) {
      rc = CO_ETOOBIG;
    }
  }
  close(fd);
  if (rc != 0)
    co_buf_free(b);
  return rc;
}

static int read_fail(const char *path, const char *what, int rc, int eno, size_t max, char *err,
                     size_t errlen) {
  if (rc == CO_ETOOBIG)
    return fail(err, errlen, rc, "%s: %s is larger than the %zu KiB limit", path, what, max >> 10);
  if (eno == ENOENT)
    return fail(err, errlen, rc, "%s: %s not found", path, what);
  return fail(err, errlen, rc, "%s: cannot read %s: %s", path, what, strerror(eno));
}

/* --- YAML to node tree --------------------------------------------------------------------- */

static void doc_free(doc_t *d) {
  for (size_t i = 0; i < d->n; i++)
    co_free(d->nodes[i].str);
  co_free(d->nodes);
  co_free(d->label);
  co_free(d->base_dir);
  memset(d, 0, sizeof *d);
}

/* Appends a node as the last child of parent (or as the root when depth is 0). */
static int add_node(doc_t *d, int kind, const yaml_event_t *ev, const size_t *stack, size_t depth,
                    size_t *idx, char *err, size_t errlen) {
  size_t line = ev->start_mark.line + 1;
  if (d->n == MAX_NODES)
    return fail(err, errlen, CO_ETOOBIG, "%s: line %zu: more than %zu YAML nodes", d->label, line,
                MAX_NODES);
  if (kind == N_SCALAR && ev->data.scalar.length > MAX_SCALAR)
    return fail(err, errlen, CO_ETOOBIG, "%s: line %zu: a value is longer than the %zu KiB limit",
                d->label, line, MAX_SCALAR >> 10);
  if (d->n == d->cap) {
    d->cap = d->cap ? d->cap * 2 : 64;
    d->nodes = co_realloc(d->nodes, d->cap * sizeof *d->nodes);
  }
  size_t i = d->n++;
  node_t *n = &d->nodes[i];
  memset(n, 0, sizeof *n);
  n->kind = kind;
  n->line = line;
  if (kind == N_SCALAR) {
    n->str = co_strndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
    n->len = ev->data.scalar.length;
    n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
  }
  if (depth > 0) {
    node_t *p = &d->nodes[stack[depth - 1]];
    if (p->last != 0)
      d->nodes[p->last].next = i;
    else
      p->first = i;
    p->last = i;
  }
  *idx = i;
  return 0;
}

static int yaml_fail(const doc_t *d, const yaml_parser_t *p, char *err, size_t errlen) {
  const char *problem = p->problem != NULL ? p->problem : "malformed YAML";
  if (p->error == YAML_MEMORY_ERROR)
    return fail(err, errlen, CO_ENOMEM, "%s: out of memory parsing YAML", d->label);
  if (p->error == YAML_READER_ERROR)
    return fail(err, errlen, CO_EPARSE, "%s: invalid text at byte %zu: %s", d->label,
                p->problem_offset, problem);
  return fail(err, errlen, CO_EPARSE, "%s: YAML syntax error at line %zu, column %zu: %s%s%s%s",
              d->label, p->problem_mark.line + 1, p->problem_mark.column + 1, problem,
              p->context ? " (" : "", p->context ? p->context : "", p->context ? ")" : "");
}

/* Builds d's tree from one YAML document. Follows the shape of libyaml's own fuzz harness:
 * every event is deleted, and the parser on every path. */
static int parse_yaml(doc_t *d, const char *data, size_t len, char *err, size_t errlen) {
  yaml_parser_t p;
  if (!yaml_parser_initialize(&p))
    return fail(err, errlen, CO_ENOMEM, "%s: out of memory parsing YAML", d->label);
  yaml_parser_set_input_string(&p, (const unsigned char *)data, len);
  size_t stack[MAX_DEPTH];
  size_t depth = 0, ndocs = 0, idx;
  int rc = 0, done = 0;
  while (rc == 0 && !done) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&p, &ev)) {
      rc = yaml_fail(d, &p, err, errlen);
      break;
    }
    size_t line = ev.start_mark.line + 1;
    switch (ev.type) {
    case YAML_STREAM_END_EVENT:
      done = 1;
      break;
    case YAML_DOCUMENT_START_EVENT:
      if (++ndocs > 1)
        rc = fail(err, errlen, CO_EPARSE,
                  "%s: line %zu: more than one YAML document; a kubeconfig holds one", d->label,
                  line);
      break;
    case YAML_ALIAS_EVENT:
      /* Expanding aliases is how "billion laughs" inputs explode; kubeconfigs never need them. */
      rc = fail(err, errlen, CO_EPARSE, "%s: line %zu: YAML aliases are not supported", d->label,
                line);
      break;
    case YAML_SCALAR_EVENT:
      rc = add_node(d, N_SCALAR, &ev, stack, depth, &idx, err, errlen);
      break;
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT:
      if (depth == MAX_DEPTH) {
        rc = fail(err, errlen, CO_ETOOBIG, "%s: line %zu: nested deeper than %d levels", d->label,
                  line, MAX_DEPTH);
        break;
      }
      rc = add_node(d, ev.type == YAML_MAPPING_START_EVENT ? N_MAP : N_SEQ, &ev, stack, depth, &idx,
                    err, errlen);
      if (rc == 0)
        stack[depth++] = idx;
      break;
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
      depth--; /* libyaml only emits balanced events */
      break;
    default:
      break;
    }
    yaml_event_delete(&ev);
  }
  yaml_parser_delete(&p);
  return rc;
}

/* --- typed access ------------------------------------------------------------------------- */

static const node_t *node_at(const doc_t *d, size_t i) { return i != 0 ? &d->nodes[i] : NULL; }

static int scalar_is(const node_t *n, const char *s) {
  size_t l = strlen(s);
  return n->kind == N_SCALAR && n->len == l && memcmp(n->str, s, l) == 0;
}

/* YAML's null, and an empty value, which Go's decoder also leaves unset. */
static int is_null(const node_t *n) {
  if (n == NULL)
    return 1;
  if (n->kind != N_SCALAR || !n->plain)
    return 0;
  return n->len == 0 || scalar_is(n, "~") || scalar_is(n, "null") || scalar_is(n, "Null") ||
         scalar_is(n, "NULL");
}

/* Finds key in map (which may be NULL). A key given twice is refused: which one counts would
 * differ between tools, and the difference could be a credential. */
static int map_get(const doc_t *d, const node_t *map, const char *key, const node_t **out,
                   char *err, size_t errlen) {
  *out = NULL;
  if (map == NULL || map->kind != N_MAP)
    return 0;
  for (const node_t *k = node_at(d, map->first); k != NULL;) {
    const node_t *v = node_at(d, k->next);
    if (scalar_is(k, key)) {
      if (*out != NULL)
        return fail(err, errlen, CO_EPARSE, "%s: line %zu: key \"%s\" is given twice", d->label,
                    k->line, key);
      *out = v;
    }
    k = v != NULL ? node_at(d, v->next) : NULL;
  }
  return 0;
}

/* Borrowed string value of key, or NULL when absent, null or empty. */
static int get_str(const doc_t *d, const node_t *map, const char *key, const char *where, int flags,
                   const char **out, char *err, size_t errlen) {
  const node_t *v;
  *out = NULL;
  int rc = map_get(d, map, key, &v, err, errlen);
  if (rc != 0 || is_null(v))
    return rc;
  if (v->kind != N_SCALAR)
    return fail(err, errlen, CO_EPARSE, "%s: line %zu: %s: %s must be a string", d->label, v->line,
                where, key);
  if (has_ctl(v->str, v->len, flags & S_NEWLINES))
    return fail(err, errlen, CO_EPARSE, "%s: line %zu: %s: %s contains control characters",
                d->label, v->line, where, key);
  *out = v->len > 0 ? v->str : NULL; /* "" is Go's zero value: unset */
  return 0;
}

/* Accepts the spellings Go's YAML 1.1 decoder takes for a plain boolean. */
static int get_bool(const doc_t *d, const node_t *map, const char *key, const char *where, int *out,
                    char *err, size_t errlen) {
  static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes", "YES",
                                    "on",   "On",   "ON",   "y",   "Y"};
  static const char *const no[] = {"false", "False", "FALSE", "no", "No", "NO",
                                   "off",   "Off",   "OFF",   "n",  "N"};
  const node_t *v;
  *out = 0;
  int rc = map_get(d, map, key, &v, err, errlen);
  if (rc != 0 || is_null(v))
    return rc;
  for (size_t i = 0; v->kind == N_SCALAR && v->plain && i < sizeof yes / sizeof yes[0]; i++) {
    if (scalar_is(v, yes[i])) {
      *out = 1;
      return 0;
    }
    if (scalar_is(v, no[i]))
      return 0;
  }
  return fail(err, errlen, CO_EPARSE, "%s: line %zu: %s: %s must be true or false", d->label,
              v->line, where, key);
}

static int present(const doc_t *d, const node_t *map, const char *key, int *out, char *err,
                   size_t errlen) {
  const node_t *v;
  int rc = map_get(d, map, key, &v, err, errlen);
  *out = rc == 0 && !is_null(v);
  return rc;
}

/* Decodes standard, padded base64 as Go's encoding/json does for []byte: CR and LF are
 * skipped, anything else outside the alphabet is an error. The result is NUL-terminated for
 * the convenience of PEM consumers (the terminator is not counted in *outlen). */
static int b64_decode(const char *s, unsigned char **out, size_t *outlen) {
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t len = strlen(s), n = 0;
  unsigned char *in = co_malloc(len + 1);
  for (size_t i = 0; i < len; i++)
    if (s[i] != '\n' && s[i] != '\r')
      in[n++] = (unsigned char)s[i];
  *out = NULL;
  *outlen = 0;
  int rc = 0;
  size_t pad = 0;
  while (pad < n && pad < 3 && in[n - 1 - pad] == '=')
    pad++;
  if (n % 4 != 0 || pad > 2)
    rc = CO_EPARSE;
  for (size_t i = 0; rc == 0 && i < n - pad; i++)
    if (in[i] == '\0' || strchr(alphabet, in[i]) == NULL)
      rc = CO_EPARSE;
  if (rc == 0 && n > 0) {
    unsigned char *dst = co_malloc(n / 4 * 3 + 1);
    /* n <= MAX_SCALAR, so it fits an int. EVP_DecodeBlock counts the bytes the padding stands
     * for as zeros; subtract them. */
    int r = EVP_DecodeBlock(dst, in, (int)n);
    if (r < 0 || (size_t)r < pad) {
      co_free(dst);
      rc = CO_EPARSE;
    } else {
      *outlen = (size_t)r - pad;
      dst[*outlen] = '\0';
      *out = dst;
    }
  }
  co_free(in);
  return rc;
}

static int get_data(const doc_t *d, const node_t *map, const char *key, const char *where,
                    unsigned char **out, size_t *outlen, char *err, size_t errlen) {
  const char *s;
  *out = NULL;
  *outlen = 0;
  int rc = get_str(d, map, key, where, S_NEWLINES, &s, err, errlen);
  if (rc != 0 || s == NULL)
    return rc;
  if (b64_decode(s, out, outlen) != 0) {
    const node_t *v;
    map_get(d, map, key, &v, NULL, 0);
    return fail(err, errlen, CO_EPARSE, "%s: line %zu: %s: %s is not valid base64", d->label,
                v->line, where, key);
  }
  return 0;
}

/* --- resolution ----------------------------------------------------------------------------- */

static const node_t *root_of(const doc_t *d) { return d->n > 0 ? &d->nodes[0] : NULL; }

/* Finds the entry called name in list ("clusters") of the first file that has one and
 * returns its field ("cluster") mapping, which is NULL when empty. A name given twice within
 * one file is an error, as in client-go. */
static int find_named(const set_t *s, const char *list, const char *field, const char *name,
                      const doc_t **doc, const node_t **body, size_t *line, char *err,
                      size_t errlen) {
  *doc = NULL;
  *body = NULL;
  *line = 0;
  for (size_t i = 0; i < s->n && *doc == NULL; i++) {
    const doc_t *d = &s->docs[i];
    const node_t *seq;
    int rc = map_get(d, root_of(d), list, &seq, err, errlen);
    if (rc != 0)
      return rc;
    if (is_null(seq))
      continue;
    if (seq->kind != N_SEQ)
      return fail(err, errlen, CO_EPARSE, "%s: line %zu: %s must be a list", d->label, seq->line,
                  list);
    for (const node_t *it = node_at(d, seq->first); it != NULL; it = node_at(d, it->next)) {
      if (it->kind != N_MAP)
        return fail(err, errlen, CO_EPARSE, "%s: line %zu: each entry of %s must be a mapping",
                    d->label, it->line, list);
      const char *nm;
      rc = get_str(d, it, "name", list, 0, &nm, err, errlen);
      if (rc != 0)
        return rc;
      if (nm == NULL || strcmp(nm, name) != 0)
        continue;
      if (*doc != NULL)
        return fail(err, errlen, CO_ECONFIG, "%s: line %zu: %s has two entries named \"%.100s\"",
                    d->label, it->line, list, name);
      const node_t *b;
      rc = map_get(d, it, field, &b, err, errlen);
      if (rc != 0)
        return rc;
      if (!is_null(b) && b->kind != N_MAP)
        return fail(err, errlen, CO_EPARSE, "%s: line %zu: %s \"%s\": %s must be a mapping",
                    d->label, b->line, field, name, field);
      *doc = d;
      *body = is_null(b) ? NULL : b;
      *line = it->line;
    }
  }
  return 0;
}

/* Accepts http(s)://host[...] without whitespace; the HTTP client does the rest. */
static int server_ok(const char *s) {
  size_t skip;
  if (strncasecmp(s, "https://", 8) == 0)
    skip = 8;
  else if (strncasecmp(s, "http://", 7) == 0)
    skip = 7;
  else
    return 0;
  if (s[skip] == '\0' || strchr("/?#", s[skip]) != NULL)
    return 0;
  for (const char *p = s; *p; p++)
    if (*p == ' ')
      return 0;
  return 1;
}

static int load_cluster(co_kubeconfig_t *out, const doc_t *d, const node_t *c, size_t line,
                        const char *name, char *err, size_t errlen) {
  char where[160];
  snprintf(where, sizeof where, "cluster \"%.100s\"", name);
  const char *server, *sni, *ca;
  int rc, proxy;
  if ((rc = get_str(d, c, "server", where, 0, &server, err, errlen)) != 0 ||
      (rc = get_str(d, c, "tls-server-name", where, 0, &sni, err, errlen)) != 0 ||
      (rc = get_str(d, c, "certificate-authority", where, 0, &ca, err, errlen)) != 0 ||
      (rc = get_bool(d, c, "insecure-skip-tls-verify", where, &out->insecure, err, errlen)) != 0 ||
      (rc = present(d, c, "proxy-url", &proxy, err, errlen)) != 0)
    return rc;
  if (server == NULL)
    return fail(err, errlen, CO_ECONFIG, "%s: line %zu: %s has no server", d->label, line, where);
  if (!server_ok(server))
    return fail(err, errlen, CO_ECONFIG,
                "%s: line %zu: %s: server \"%.200s\" is not an https:// "
                "or http:// URL",
                d->label, line, where, server);
  /* Silently bypassing a configured proxy would fail in confusing ways; say so instead. */
  if (proxy)
    return fail(err, errlen, CO_EUNSUPPORTED,
                "%s: line %zu: %s: proxy-url is not supported; use HTTPS_PROXY", d->label, line,
                where);
  rc = get_data(d, c, "certificate-authority-data", where, &out->ca_data, &out->ca_data_len, err,
                errlen);
  if (rc != 0)
    return rc;
  /* Same refusals as client-go's validation: there is no right answer to pick silently. */
  if (ca != NULL && out->ca_data != NULL)
    return fail(err, errlen, CO_ECONFIG,
                "%s: line %zu: %s sets both certificate-authority and "
                "certificate-authority-data",
                d->label, line, where);
  if (out->insecure && (ca != NULL || out->ca_data != NULL))
    return fail(err, errlen, CO_ECONFIG,
                "%s: line %zu: %s sets insecure-skip-tls-verify together "
                "with a certificate authority",
                d->label, line, where);
  size_t n = strlen(server);
  while (n > 0 && server[n - 1] == '/')
    n--;
  out->server = co_strndup(server, n);
  out->tls_server_name = co_strdup(sni);
  out->ca_file = resolve_path(d->base_dir, ca);
  return 0;
}

static int load_user(co_kubeconfig_t *out, const doc_t *d, const node_t *u, size_t line,
                     const char *name, char *err, size_t errlen) {
  static const char *const imp[] = {"as", "as-uid", "as-groups", "as-user-extra"};
  char where[160];
  snprintf(where, sizeof where, "user \"%.100s\"", name);
  int rc, exec, ap, basic_u, basic_p, as;
  if ((rc = present(d, u, "exec", &exec, err, errlen)) != 0 ||
      (rc = present(d, u, "auth-provider", &ap, err, errlen)) != 0 ||
      (rc = present(d, u, "username", &basic_u, err, errlen)) != 0 ||
      (rc = present(d, u, "password", &basic_p, err, errlen)) != 0)
    return rc;
  if (exec)
    return fail(err, errlen, CO_EUNSUPPORTED,
                "%s: line %zu: user \"%.100s\" uses an exec "
                "credential plugin, which is not supported; use a token or client certificate",
                d->label, line, name);
  if (ap)
    return fail(err, errlen, CO_EUNSUPPORTED,
                "%s: line %zu: user \"%.100s\" uses an "
                "auth-provider plugin, which is not supported; use a token or client certificate",
                d->label, line, name);
  if (basic_u || basic_p)
    return fail(err, errlen, CO_EUNSUPPORTED,
                "%s: line %zu: user \"%.100s\" uses a username and "
                "password, which is not supported; use a token or client certificate",
                d->label, line, name);
  /* Ignoring impersonation would run with the caller's own, usually wider, rights. */
  for (size_t i = 0; i < sizeof imp / sizeof imp[0]; i++) {
    if ((rc = present(d, u, imp[i], &as, err, errlen)) != 0)
      return rc;
    if (as)
      return fail(err, errlen, CO_EUNSUPPORTED,
                  "%s: line %zu: %s: impersonation (%s) is not supported", d->label, line, where,
                  imp[i]);
  }
  const char *token, *token_file, *cert, *key;
  if ((rc = get_str(d, u, "token", where, 0, &token, err, errlen)) != 0 ||
      (rc = get_str(d, u, "tokenFile", where, 0, &token_file, err, errlen)) != 0 ||
      (rc = get_str(d, u, "client-certificate", where, 0, &cert, err, errlen)) != 0 ||
      (rc = get_str(d, u, "client-key", where, 0, &key, err, errlen)) != 0 ||
      (rc = get_data(d, u, "client-certificate-data", where, &out->client_cert_data,
                     &out->client_cert_data_len, err, errlen)) != 0 ||
      (rc = get_data(d, u, "client-key-data", where, &out->client_key_data,
                     &out->client_key_data_len, err, errlen)) != 0)
    return rc;
  if (cert != NULL && out->client_cert_data != NULL)
    return fail(err, errlen, CO_ECONFIG,
                "%s: line %zu: %s sets both client-certificate and "
                "client-certificate-data",
                d->label, line, where);
  if (key != NULL && out->client_key_data != NULL)
    return fail(err, errlen, CO_ECONFIG,
                "%s: line %zu: %s sets both client-key and "
                "client-key-data",
                d->label, line, where);
  int has_cert = cert != NULL || out->client_cert_data != NULL;
  int has_key = key != NULL || out->client_key_data != NULL;
  if (has_cert != has_key)
    return fail(err, errlen, CO_ECONFIG, "%s: line %zu: %s has a client %s but no client %s",
                d->label, line, where, has_cert ? "certificate" : "key",
                has_cert ? "key" : "certificate");
  out->token = co_strdup(token);
  out->token_file = resolve_path(d->base_dir, token_file);
  out->client_cert_file = resolve_path(d->base_dir, cert);
  out->client_key_file = resolve_path(d->base_dir, key);
  return 0;
}

/* current-context (or the given context) -> context -> cluster and user. Fills out; the
 * caller frees it on error. */
static int resolve(co_kubeconfig_t *out, const set_t *s, const char *context, char *err,
                   size_t errlen) {
  const char *name = context != NULL && context[0] != '\0' ? context : NULL;
  int rc;
  for (size_t i = 0; i < s->n && name == NULL; i++) {
    const doc_t *d = &s->docs[i];
    if ((rc = get_str(d, root_of(d), "current-context", "top level", 0, &name, err, errlen)) != 0)
      return rc;
  }
  if (name == NULL)
    return fail(err, errlen, CO_ECONFIG, "%s: no current-context is set and no context was given",
                s->label);

  const doc_t *d;
  const node_t *body;
  size_t line;
  if ((rc = find_named(s, "contexts", "context", name, &d, &body, &line, err, errlen)) != 0)
    return rc;
  if (d == NULL)
    return fail(err, errlen, CO_ECONFIG, "%s: context \"%.100s\" not found", s->label, name);
  char where[160];
  snprintf(where, sizeof where, "context \"%.100s\"", name);
  const char *cluster, *user, *ns;
  if ((rc = get_str(d, body, "cluster", where, 0, &cluster, err, errlen)) != 0 ||
      (rc = get_str(d, body, "user", where, 0, &user, err, errlen)) != 0 ||
      (rc = get_str(d, body, "namespace", where, 0, &ns, err, errlen)) != 0)
    return rc;
  if (cluster == NULL)
    return fail(err, errlen, CO_ECONFIG, "%s: line %zu: %s names no cluster", d->label, line,
                where);
  out->context = co_strdup(name);
  out->namespace = co_strdup(ns);

  if ((rc = find_named(s, "clusters", "cluster", cluster, &d, &body, &line, err, errlen)) != 0)
    return rc;
  if (d == NULL)
    return fail(err, errlen, CO_ECONFIG, "%s: cluster \"%.100s\" (used by %s) not found", s->label,
                cluster, where);
  if ((rc = load_cluster(out, d, body, line, cluster, err, errlen)) != 0)
    return rc;

  if (user == NULL) /* no user: anonymous requests, as kubectl allows */
    return 0;
  if ((rc = find_named(s, "users", "user", user, &d, &body, &line, err, errlen)) != 0)
    return rc;
  if (d == NULL)
    return fail(err, errlen, CO_ECONFIG, "%s: user \"%.100s\" (used by %s) not found", s->label,
                user, where);
  return load_user(out, d, body, line, user, err, errlen);
}

/* Parses data into d. *empty is set for a document that holds nothing, which the caller
 * treats as an error or, in a $KUBECONFIG list, as a file to skip. */
static int parse_doc(doc_t *d, const char *data, size_t len, int *empty, char *err, size_t errlen) {
  *empty = 0;
  if (len > MAX_FILE)
    return fail(err, errlen, CO_ETOOBIG, "%s: %zu bytes is more than the 4 MiB limit", d->label,
                len);
  int rc = parse_yaml(d, data, len, err, errlen);
  if (rc != 0)
    return rc;
  const node_t *root = root_of(d);
  if (is_null(root)) {
    *empty = 1;
    return 0;
  }
  if (root->kind != N_MAP)
    return fail(err, errlen, CO_EPARSE, "%s: line %zu: the top level must be a mapping", d->label,
                root->line);
  return 0;
}

static void set_free(set_t *s) {
  for (size_t i = 0; i < s->n; i++)
    doc_free(&s->docs[i]);
  co_free(s->docs);
  memset(s, 0, sizeof *s);
}

/* Reads and parses one file into s. With optional set, a missing or empty file is skipped
 * (kubectl's rule for $KUBECONFIG lists). */
static int add_file(set_t *s, const char *path, int optional, char *err, size_t errlen) {
  co_buf_t b;
  int eno;
  int rc = read_file(path, MAX_FILE, &b, &eno);
  if (rc == CO_EIO && eno == ENOENT && optional)
    return 0;
  if (rc != 0)
    return read_fail(path, "file", rc, eno, MAX_FILE, err, errlen);
  doc_t d = {0};
  d.label = co_strdup(path);
  char *abs;
  if (absolute(path, &abs) != 0) {
    int e = errno;
    co_buf_free(&b);
    doc_free(&d);
    return fail(err, errlen, CO_EIO, "%s: cannot find the working directory: %s", path,
                strerror(e));
  }
  char *slash = strrchr(abs, '/');
  slash[slash == abs ? 1 : 0] = '\0'; /* keep "/" for files at the root */
  d.base_dir = abs;
  int empty;
  rc = parse_doc(&d, co_buf_str(&b), b.len, &empty, err, errlen);
  co_buf_free(&b);
  if (rc == 0 && empty && !optional)
    rc = fail(err, errlen, CO_ECONFIG, "%s: file is empty", path);
  if (rc != 0 || empty) {
    doc_free(&d);
    return rc;
  }
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 4;
    s->docs = co_realloc(s->docs, s->cap * sizeof *s->docs);
  }
  s->docs[s->n++] = d;
  return 0;
}

int co_kubeconfig_load(co_kubeconfig_t *out, const char *path, const char *context, char *err,
                       size_t errlen) {
  memset(out, 0, sizeof *out);
  if (err != NULL && errlen > 0)
    err[0] = '\0';
  set_t s = {0};
  co_buf_t label;
  co_buf_init(&label, MAX_PATH);
  int rc = 0;
  const char *env = getenv("KUBECONFIG");
  if (path != NULL && path[0] != '\0') {
    s.label = path;
    rc = add_file(&s, path, 0, err, errlen);
  } else if (env != NULL && env[0] != '\0') {
    if (co_buf_appendf(&label, "KUBECONFIG=%s", env) != 0)
      rc = fail(err, errlen, CO_ETOOBIG, "KUBECONFIG is longer than %zu bytes", MAX_PATH);
    s.label = co_buf_str(&label);
    char *list = co_strdup(env);
    for (char *p = list; rc == 0 && p != NULL;) {
      char *colon = strchr(p, ':');
      if (colon != NULL)
        *colon = '\0';
      if (p[0] != '\0')
        rc = add_file(&s, p, 1, err, errlen);
      p = colon != NULL ? colon + 1 : NULL;
    }
    co_free(list);
    if (rc == 0 && s.n == 0)
      rc = fail(err, errlen, CO_ECONFIG, "%s: every file listed is missing or empty", s.label);
  } else {
    const char *home = getenv("HOME");
    if (home == NULL || home[0] == '\0') {
      rc = fail(err, errlen, CO_ECONFIG,
                "no kubeconfig: KUBECONFIG is not set and HOME is not set to find ~/.kube/config");
    } else {
      char *def = join_path(home, ".kube/config");
      if (co_buf_appends(&label, def) != 0)
        rc = fail(err, errlen, CO_ETOOBIG, "HOME is longer than %zu bytes", MAX_PATH);
      co_free(def);
      s.label = co_buf_str(&label);
      if (rc == 0)
        rc = add_file(&s, s.label, 0, err, errlen);
    }
  }
  if (rc == 0)
    rc = resolve(out, &s, context, err, errlen);
  set_free(&s);
  co_buf_free(&label);
  if (rc != 0)
    co_kubeconfig_free(out);
  return rc;
}

int co_kubeconfig_parse(co_kubeconfig_t *out, const char *data, size_t len, const char *context,
                        const char *base_dir, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  if (err != NULL && errlen > 0)
    err[0] = '\0';
  if (data == NULL && len > 0)
    return fail(err, errlen, CO_EINVAL, "kubeconfig: no data");
  doc_t d = {0};
  d.label = co_strdup("kubeconfig");
  d.base_dir = co_strdup(base_dir);
  set_t s = {&d, 1, 1, "kubeconfig"};
  int empty;
  int rc = parse_doc(&d, data != NULL ? data : "", len, &empty, err, errlen);
  if (rc == 0 && empty)
    rc = fail(err, errlen, CO_ECONFIG, "kubeconfig: document is empty");
  if (rc == 0)
    rc = resolve(out, &s, context, err, errlen);
  doc_free(&d);
  if (rc != 0)
    co_kubeconfig_free(out);
  return rc;
}

/* --- in cluster ----------------------------------------------------------------------------- */

static void trim(const char **s, size_t *len) {
  while (*len > 0 && strchr(" \t\r\n", (*s)[0]) != NULL) {
    (*s)++;
    (*len)--;
  }
  while (*len > 0 && strchr(" \t\r\n", (*s)[*len - 1]) != NULL)
    (*len)--;
}

/* Reads a small service-account file. Returns its trimmed content (owned) in *out, or NULL
 * when the file is missing and optional. */
static int read_sa_file(const char *path, const char *what, int optional, char **out, char *err,
                        size_t errlen) {
  co_buf_t b;
  int eno;
  *out = NULL;
  int rc = read_file(path, MAX_SA_FILE, &b, &eno);
  if (rc == CO_EIO && eno == ENOENT && optional)
    return 0;
  if (rc != 0)
    return read_fail(path, what, rc, eno, MAX_SA_FILE, err, errlen);
  const char *s = co_buf_str(&b);
  size_t len = b.len;
  trim(&s, &len);
  if (has_ctl(s, len, 0))
    rc = fail(err, errlen, CO_EPARSE, "%s: %s contains control characters", path, what);
  else if (len > 0)
    *out = co_strndup(s, len);
  else if (!optional)
    rc = fail(err, errlen, CO_ECONFIG, "%s: %s is empty", path, what);
  if (b.data != NULL) /* the file's copy of the token; the kept one is cleansed by its owner */
    OPENSSL_cleanse(b.data, b.len);
  co_buf_free(&b);
  return rc;
}

int co_kubeconfig_in_cluster(co_kubeconfig_t *out, const char *root, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  if (err != NULL && errlen > 0)
    err[0] = '\0';
  const char *host = getenv("KUBERNETES_SERVICE_HOST");
  const char *port = getenv("KUBERNETES_SERVICE_PORT");
  if (host == NULL || host[0] == '\0')
    return fail(err, errlen, CO_ECONFIG,
                "not running in a cluster: KUBERNETES_SERVICE_HOST is not set");
  if (port == NULL || port[0] == '\0')
    return fail(err, errlen, CO_ECONFIG,
                "not running in a cluster: KUBERNETES_SERVICE_PORT is not set");
  char *end;
  errno = 0;
  long portnum = strtol(port, &end, 10);
  if (errno != 0 || end == port || *end != '\0' || portnum < 1 || portnum > 65535)
    return fail(err, errlen, CO_ECONFIG, "KUBERNETES_SERVICE_PORT \"%.40s\" is not a port number",
                port);
  /* A host name, an IPv4 address or a bare IPv6 address; nothing that changes the URL's shape. */
  for (const char *p = host; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
          strchr(".-_:", *p) != NULL))
      return fail(err, errlen, CO_ECONFIG,
                  "KUBERNETES_SERVICE_HOST \"%.100s\" is not a host name or IP address", host);
  int v6 = strchr(host, ':') != NULL;
  co_buf_t url;
  co_buf_init(&url, MAX_PATH);
  if (co_buf_appendf(&url, "https://%s%s%s:%ld", v6 ? "[" : "", host, v6 ? "]" : "", portnum) !=
      0) {
    co_buf_free(&url);
    return fail(err, errlen, CO_ETOOBIG, "KUBERNETES_SERVICE_HOST is too long");
  }
  out->server = co_buf_steal(&url);

  char *base;
  int rc = 0;
  if (root == NULL || root[0] == '\0')
    base = co_strdup("/" SA_REL);
  else if (absolute(root, &base) == 0) {
    char *dir = join_path(base, SA_REL);
    co_free(base);
    base = dir;
  } else {
    base = NULL;
    rc = fail(err, errlen, CO_EIO, "cannot find the working directory: %s", strerror(errno));
  }
  if (rc == 0) {
    out->token_file = join_path(base, "token");
    out->ca_file = join_path(base, "ca.crt");
    char *ns_file = join_path(base, "namespace");
    rc = read_sa_file(out->token_file, "service account token", 0, &out->token, err, errlen);
    if (rc == 0)
      rc = read_sa_file(ns_file, "namespace file", 1, &out->namespace, err, errlen);
    co_free(ns_file);
  }
  co_free(base);
  out->in_cluster = 1;
  if (rc != 0)
    co_kubeconfig_free(out);
  return rc;
}

void co_kubeconfig_free(co_kubeconfig_t *cfg) {
  if (cfg == NULL)
    return;
  /* Credentials should not linger in freed heap memory. */
  if (cfg->token != NULL)
    OPENSSL_cleanse(cfg->token, strlen(cfg->token));
  if (cfg->client_key_data != NULL)
    OPENSSL_cleanse(cfg->client_key_data, cfg->client_key_data_len);
  co_free(cfg->context);
  co_free(cfg->server);
  co_free(cfg->tls_server_name);
  co_free(cfg->ca_file);
  co_free(cfg->ca_data);
  co_free(cfg->token);
  co_free(cfg->token_file);
  co_free(cfg->client_cert_file);
  co_free(cfg->client_cert_data);
  co_free(cfg->client_key_file);
  co_free(cfg->client_key_data);
  co_free(cfg->namespace);
  memset(cfg, 0, sizeof *cfg);
}
